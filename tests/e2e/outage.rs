//! Database faults: the server is stopped in the middle of an execute run
//! (its data kept on disk) and started again. A short outage is ridden out
//! (batches retried with backoff, the cursor reopened after the last document
//! read, an unknown commit settled by the progress marker); a long one stops
//! the run cleanly after `--retry-for`, resumable. Either way every document
//! is incremented exactly once. The server's own fault on a commit is
//! injected two ways: a failpoint in godwit, and the server's `failCommand`.

use crate::db::{Restartable, TestDb, fresh_db};
use crate::support::{command, plugin, stderr, verify_journal};
use bson::doc;
use std::process::Stdio;
use std::time::{Duration, Instant};

const DOCS: i64 = 150;

fn setup() -> (Restartable, TestDb, tempfile::TempDir) {
    let server = Restartable::new();
    let db = TestDb::named(&server.uri, &fresh_db("outage"));
    db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    (server, db, tempfile::tempdir().unwrap())
}

fn args(file: &str, extra: &[&'static str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        file,
        "--execute",
        "--batch-size",
        "5",
        "--max-docs-per-sec",
        "50",
        "--lease",
        "30",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn exactly_once(db: &TestDb, journal: &std::path::Path) {
    let counters = db.find_all("counters");
    assert_eq!(counters.len(), DOCS as usize);
    let wrong: Vec<_> = counters.iter().filter(|d| d.get_i64("n").unwrap() != 1).collect();
    assert!(wrong.is_empty(), "not incremented exactly once: {wrong:?}");
    verify_journal(journal);
}

#[test]
fn a_short_outage_is_ridden_out() {
    let (mut server, db, journal) = setup();
    let file = plugin("increment");
    let args = args(file.to_str().unwrap(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = command(&db, journal.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.start();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the run did not survive the outage: {}",
        stderr(&out)
    );
    exactly_once(&db, journal.path());
}

#[test]
fn a_long_outage_stops_the_run_cleanly_and_it_resumes() {
    let (mut server, db, journal) = setup();
    let file = plugin("increment");
    let args = args(file.to_str().unwrap(), &["--retry-for", "3", "--connect-timeout", "1"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = command(&db, journal.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    server.stop();
    let stopped = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = stopped.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(waited < Duration::from_secs(20), "gave up after {waited:?}");
    let last = err.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(last.contains("database unreachable for"), "{err}");
    assert!(last.contains("resumable"), "{err}");

    server.start();
    let out = command(&db, journal.path(), &args).output().unwrap();
    assert!(out.status.success(), "resume after the outage failed: {}", stderr(&out));
    exactly_once(&db, journal.path());
    eprintln!("outage: gave up {waited:?} after the server stopped (--retry-for 3), resumed exactly once");
}

/// A commit that went through but whose reply never arrived (the
/// `commit-reply-lost` failpoint, on about half the batches): the batch is settled by
/// the progress marker written in the same transaction, never applied twice.
#[cfg(feature = "failpoints")]
#[test]
fn a_lost_commit_reply_is_settled_by_the_marker_not_applied_twice() {
    let err = increment_exactly_once_with("lostcommit", "commit-reply-lost=50%return");
    let settled = err
        .matches("the commit went through before the connection dropped")
        .count();
    assert!(settled > 0, "the failpoint never fired: {err}");
    eprintln!("lost commit replies: {settled} batches settled by the marker, none applied twice");
}

/// A commit the server fails with its own fault (`InternalError`, code 1 -
/// what SecantusDB answers when its storage engine rolls a transaction back
/// at commit time; the `commit-internal-error` failpoint, on about a third
/// of the batches, aborts the transaction and gives that reply): the outcome
/// is settled from the progress marker and the batch written again, never
/// lost and never applied twice, and the run ends clean.
#[cfg(feature = "failpoints")]
#[test]
fn a_server_fault_on_commit_is_settled_by_the_marker_and_retried() {
    let err = increment_exactly_once_with("faultcommit", "commit-internal-error=30%return");
    let faults = err
        .lines()
        .filter(|l| l.contains("commit outcome unknown") && l.contains("InternalError"))
        .count();
    assert!(faults > 0, "the failpoint never fired: {err}");
    eprintln!("server faults on commit: {faults} batches settled by the marker and written again, none lost");
}

/// Fresh counters on a server of their own that takes `failCommand`, with
/// every `commitTransaction` from now on answered `InternalError` (the
/// server's own fault) as `mode` says, each after `block_ms`.
struct FailingCommits {
    _server: crate::db::Server,
    db: TestDb,
    journal: tempfile::TempDir,
}

impl FailingCommits {
    fn new(name: &str, mode: bson::Bson, block_ms: i32) -> Self {
        let server = crate::db::with_test_commands();
        let db = TestDb::named(&server.uri, &fresh_db(name));
        db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
        db.admin_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": mode,
            "data": {
                "failCommands": ["commitTransaction"],
                "errorCode": 1,
                "blockConnection": block_ms > 0,
                "blockTimeMS": block_ms,
            },
        });
        FailingCommits {
            _server: server,
            db,
            journal: tempfile::tempdir().unwrap(),
        }
    }

    /// `increment` executed with `--retry-for 1`: its output.
    fn run(&self) -> std::process::Output {
        let file = plugin("increment");
        let args = ["--execute", "--batch-size", "10", "--retry-for", "1"];
        let args: Vec<&str> = ["run", file.to_str().unwrap()].into_iter().chain(args).collect();
        command(&self.db, self.journal.path(), &args).output().unwrap()
    }
}

/// The server's own fault on a commit, as the server sends it, after the
/// commit waited longer than `--retry-for` (a loaded server): the budget
/// counts from the failure, so the batch is still settled from the marker
/// and written once.
#[test]
fn a_slow_commit_the_server_fails_is_still_retried() {
    let faulty = FailingCommits::new("slowfault", doc! {"skip": 2, "times": 1}.into(), 1500);
    let out = faulty.run();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let faults = err
        .lines()
        .filter(|l| l.contains("commit outcome unknown") && l.contains("InternalError"))
        .count();
    assert_eq!(faults, 1, "{err}");
    exactly_once(&faulty.db, faulty.journal.path());
}

/// The server's fault on every commit: the run stops after `--retry-for`
/// in one line that says the outcome is unknown and the run resumable; the
/// same command finishes once the server is well, every counter once.
#[test]
fn a_commit_the_server_keeps_failing_stops_the_run_resumable() {
    let faulty = FailingCommits::new("keptfault", "alwaysOn".into(), 0);
    let out = faulty.run();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    let last = err.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(last.contains("committing batch"), "{err}");
    assert!(last.contains("the commit's outcome is unknown"), "{err}");
    assert!(last.contains("resumable: run the same command again"), "{err}");
    let counters = faulty.db.find_all("counters");
    assert!(
        counters.iter().all(|d| d.get_i64("n").unwrap() == 0),
        "nothing was written"
    );

    faulty
        .db
        .admin_command(doc! {"configureFailPoint": "failCommand", "mode": "off"});
    let out = faulty.run();
    assert!(out.status.success(), "the resume failed: {}", stderr(&out));
    exactly_once(&faulty.db, faulty.journal.path());
}

/// `increment` executed over fresh counters in database `name` with
/// `FAILPOINTS=failpoints`: it succeeds, every counter incremented exactly
/// once, the journal verifies. Its stderr.
#[cfg(feature = "failpoints")]
fn increment_exactly_once_with(name: &str, failpoints: &str) -> String {
    let db = TestDb::new(crate::db::server(), name);
    db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let out = command(
        &db,
        journal.path(),
        &["run", file.to_str().unwrap(), "--execute", "--batch-size", "10"],
    )
    .env("FAILPOINTS", failpoints)
    .output()
    .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    exactly_once(&db, journal.path());
    err
}
