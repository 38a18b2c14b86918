//! Operator controls: throttle, pause file, `godwit.toml`, status, and no
//! password in what godwit prints.

use crate::db::{TestDb, server};
use crate::support::{command, plugin, run_ok, stderr, stdout};
use bson::doc;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn counters(db: &TestDb, n: i64) {
    db.insert("counters", (0..n).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
}

#[test]
fn throttled_run_takes_at_least_documents_over_rate_seconds() {
    let db = TestDb::new(server(), "throttle");
    counters(&db, 60);
    let journal = tempfile::tempdir().unwrap();
    let started = Instant::now();
    run_ok(
        &db,
        journal.path(),
        &[
            "run",
            plugin("increment").to_str().unwrap(),
            "--execute",
            "--max-docs-per-sec",
            "40",
        ],
    );
    // A behaviour check, not a benchmark: 60 documents at 40/s cannot take less than 1.5 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn pause_file_holds_the_run_until_removed() {
    let db = TestDb::new(server(), "pause");
    counters(&db, 30);
    let journal = tempfile::tempdir().unwrap();
    let pause = journal.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let child = command(
        &db,
        journal.path(),
        &[
            "run",
            plugin("increment").to_str().unwrap(),
            "--execute",
            "--pause-file",
            pause.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 0),
        "nothing applied while paused"
    );
    std::fs::remove_file(&pause).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 1));
}

#[test]
fn config_file_supplies_defaults_and_flags_override_it() {
    let db = TestDb::new(server(), "config");
    counters(&db, 5);
    let other = TestDb::named(&db.uri, &crate::db::fresh_db("config_other"));
    counters(&other, 3);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("godwit.toml"),
        format!("uri = {:?}\ndb = {:?}\njournal = \"state/journal\"\n", db.uri, db.name),
    )
    .unwrap();
    let godwit = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_godwit"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("MONGODB_URI")
            .env_remove("GODWIT_JOURNAL")
            .output()
            .unwrap()
    };
    let file = plugin("increment");
    let out = godwit(&["run", file.to_str().unwrap(), "--execute", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 1));
    assert!(
        dir.path().join("state/journal").is_dir(),
        "the journal directory comes from the config"
    );

    let out = godwit(&["run", file.to_str().unwrap(), "--execute", "--db", &other.name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        other.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 1),
        "--db overrides the config"
    );

    std::fs::write(dir.path().join("godwit.toml"), "uri = 3\n").unwrap();
    let out = godwit(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid config file godwit.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_shows_version_pending_plugins_unfinished_runs_and_lock() {
    let db = TestDb::new(server(), "status");
    db.insert("items", vec![doc! {"_id": 1}]);
    let journal = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    for name in ["chain-a", "chain-b"] {
        std::fs::copy(
            crate::support::plugin(name),
            plugins.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    assert!(
        command(&db, journal.path(), &["init", "--version", "1.0.0"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = command(
        &db,
        journal.path(),
        &["status", "--plugins", plugins.path().to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "version 1.0.0",
        "godwit init",
        "pending:",
        "1.1.0  chain-b",
        "unfinished runs: none",
        "lock: free",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn password_in_the_uri_never_appears_in_output() {
    let db = TestDb::new(server(), "secret");
    // The test server has no users: authentication fails, and the error must
    // name the server without the password.
    let port = db.uri.split(':').nth(2).unwrap().split('/').next().unwrap().to_string();
    let uri =
        format!("mongodb://alice:Pa55wordThatMustNotLeak@127.0.0.1:{port}/?authSource=admin&directConnection=true");
    let journal = tempfile::tempdir().unwrap();
    for args in [
        vec!["run", "--json", "--connect-timeout", "3"],
        vec!["status", "--json", "--connect-timeout", "3"],
        vec!["run", "-vv", "--connect-timeout", "3"],
    ] {
        let mut cmd = command(&db, journal.path(), &args[..1]);
        if args[0] == "run" {
            cmd.arg(plugin("increment"));
        }
        let out = cmd.args(&args[1..]).env("MONGODB_URI", &uri).output().unwrap();
        assert!(!out.status.success());
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("Pa55wordThatMustNotLeak"), "the password leaked: {all}");
        assert!(all.contains("alice:****@127.0.0.1"), "the redacted URI is named: {all}");
    }
    // Nothing else stored it either.
    let journal_bytes: Vec<u8> = walk(journal.path());
    assert!(!String::from_utf8_lossy(&journal_bytes).contains("Pa55wordThatMustNotLeak"));
}

fn walk(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes.extend(walk(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    bytes
}

/// Regression for the Alembic failure in seed 004 (a 32-character version
/// column): versions of any length are stored and read back as they are.
#[test]
fn long_version_strings_are_stored_as_they_are() {
    let db = TestDb::new(server(), "longver");
    let journal = tempfile::tempdir().unwrap();
    let version = "20260101.120000.0-merge.of.heads.c0ffee1234567890abcdef.and.feedbeef9876543210+build.2026.11.21";
    assert!(version.len() > 64);
    let out = command(&db, journal.path(), &["init", "--version", version])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), version);
    let out = command(&db, journal.path(), &["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["version"], version);
    // Refused without --force, accepted with it.
    let out = command(&db, journal.path(), &["init", "--version", "1.0.0"])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("already stamped"),
        "{}",
        stderr(&out)
    );
    assert!(
        command(&db, journal.path(), &["init", "--version", "1.0.0", "--force"])
            .output()
            .unwrap()
            .status
            .success()
    );
}
