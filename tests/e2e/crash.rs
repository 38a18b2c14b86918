//! Crash test (the sled pattern): the real `godwit` process is SIGKILLed at
//! random moments during an execute run of a `$inc` plugin and resumed each
//! time. At the end every document was incremented exactly once, the journal
//! verifies and every run was stamped at most once. `GODWIT_CRASH_KILLS` sets the
//! number of kills (default 20; `just test-slow` runs more).

use crate::db::{TestDb, server};
use crate::support::{command, plugin, stderr, verify_journal};
use bson::doc;
use rand::RngExt;
use std::process::Stdio;
use std::time::Duration;

const DOCS: i64 = 300;

fn check_invariants(db: &TestDb, journal: &std::path::Path) {
    let counters = db.find_all("counters");
    assert_eq!(counters.len(), DOCS as usize);
    let wrong: Vec<_> = counters.iter().filter(|d| d.get_i64("n").unwrap() != 1).collect();
    assert!(wrong.is_empty(), "documents not incremented exactly once: {wrong:?}");
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).expect("stamped");
    assert_eq!(schema.get_str("version").unwrap(), "2.0.0");
    // A kill after the stamp but before the process exited makes the test start
    // a new run, which finds nothing to do and is stamped too. What must hold:
    // no run is stamped twice, and the history accounts for every increment once.
    let history: Vec<bson::Document> = schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| h.as_document().unwrap().clone())
        .collect();
    let mut runs: Vec<&str> = history.iter().map(|h| h.get_str("run_id").unwrap()).collect();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), history.len(), "a run was stamped twice: {history:?}");
    let updates: i64 = history
        .iter()
        .map(|h| h.get_document("counts").unwrap().get_i64("updates").unwrap())
        .sum();
    assert_eq!(
        updates, DOCS,
        "the stamped runs account for every increment exactly once: {history:?}"
    );
    verify_journal(journal);
}

#[test]
fn killed_at_random_points_every_document_is_incremented_exactly_once() {
    let target: usize = std::env::var("GODWIT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let file = plugin("increment");
    let file = file.to_str().unwrap();
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut rounds = 0;
    while kills < target {
        rounds += 1;
        let db = TestDb::new(server(), "crash");
        db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
        let journal = tempfile::tempdir().unwrap();
        loop {
            let mut child = command(
                &db,
                journal.path(),
                &["run", file, "--execute", "--batch-size", "7", "--lease", "3"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
            std::thread::sleep(Duration::from_millis(rng.random_range(0..1200)));
            match child.try_wait().unwrap() {
                Some(status) => {
                    let out = child.wait_with_output().unwrap();
                    assert!(status.success(), "run failed: {}", stderr(&out));
                    break;
                }
                None if kills < target => {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    kills += 1;
                }
                None => {
                    let out = child.wait_with_output().unwrap();
                    assert!(out.status.success(), "run failed: {}", stderr(&out));
                    break;
                }
            }
        }
        check_invariants(&db, journal.path());
    }
    eprintln!("crash test: {kills} kills over {rounds} runs, every document incremented exactly once");
}
