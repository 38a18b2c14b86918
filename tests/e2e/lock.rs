//! The lease lock: a second runner is refused naming the holder; a killed
//! holder's lease is taken over once it expires.

use crate::db::{TestDb, server};
use crate::support::{command, plugin, stderr};
use bson::doc;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn wait_for_lock(db: &TestDb) -> bson::Document {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(lock) = db.find_one("godwit_metadata", doc! {"_id": "lock"}) {
            return lock;
        }
        assert!(Instant::now() < deadline, "the first runner never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn second_runner_is_refused_and_a_killed_holders_lease_is_taken_over() {
    let db = TestDb::new(server(), "lock");
    db.insert("counters", (0..400_i64).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let file = plugin("increment");
    let file = file.to_str().unwrap();
    let journal_a = tempfile::tempdir().unwrap();
    let journal_b = tempfile::tempdir().unwrap();

    let mut a = command(
        &db,
        journal_a.path(),
        &["run", file, "--execute", "--max-docs-per-sec", "20", "--lease", "3"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let lock = wait_for_lock(&db);
    let holder_run = lock.get_str("run_id").unwrap().to_string();
    assert_eq!(lock.get_i64("pid").unwrap(), i64::from(a.id()));

    // B, with a journal of its own, is refused and told who holds the lock.
    let out = command(&db, journal_b.path(), &["run", file, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&holder_run) && err.contains(&format!("pid {}", a.id())) && err.contains("increment 2.0.0"),
        "{err}"
    );

    // A dies without releasing the lock; B is refused until the lease expires.
    a.kill().unwrap();
    a.wait().unwrap();
    let killed_at = Instant::now();
    let out = command(&db, journal_b.path(), &["run", file, "--execute"])
        .output()
        .unwrap();
    if killed_at.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            out.status.code(),
            Some(5),
            "the lease has not expired yet: {}",
            stderr(&out)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let taken_over = loop {
        let out = command(&db, journal_b.path(), &["run", file, "--execute", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert!(Instant::now() < deadline, "the expired lease was never taken over");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(taken_over["status"], "finished");
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": "lock"}).is_none(),
        "B released the lock"
    );
}
