//! Crash test (the sled pattern): the real `godwit` process is SIGKILLed at
//! uniformly random moments during an execute run of a `$inc` plugin, and the
//! process that resumes it is killed at random too, until one finishes. At the
//! end of each round every document was incremented exactly once, the journal
//! verifies and every run was stamped at most once. `GODWIT_CRASH_KILLS` sets
//! the number of kills (default 50; `just test-slow` runs 500).

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
    // A kill after the run finished but before the process exited makes the
    // test start a new run, which is refused (the plugin is not idempotent).
    // What must hold: no run is stamped twice, and the history accounts for
    // every increment once.
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

/// Most kills in one round before its last process is let finish, so that
/// every round ends even on a machine slow enough to be killed every time.
const KILLS_PER_ROUND: usize = 8;

/// Kill delays are uniform in `0..MAX_DELAY_MS`: a whole uninterrupted run of
/// `DOCS` documents in batches of 7 takes about 0.3-0.5 s here, so most
/// processes die somewhere between start-up and stamping.
const MAX_DELAY_MS: u64 = 600;

/// Whether the journal holds an unfinished run: the next process resumes it.
fn unfinished_run(journal: &std::path::Path) -> bool {
    if std::fs::read_dir(journal).map_or(true, |mut d| d.next().is_none()) {
        return false;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(["journal", "list", "--json", "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    assert!(out.status.success(), "journal list: {}", stderr(&out));
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    runs.iter()
        .any(|r| r["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("running")))
}

#[test]
fn killed_at_random_points_every_document_is_incremented_exactly_once() {
    let target: usize = std::env::var("GODWIT_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let file = plugin("increment");
    let file = file.to_str().unwrap();
    let mut rng = rand::rng();
    let (mut fresh_kills, mut resume_kills, mut rounds, mut resumes_finished) = (0, 0, 0, 0);
    let mut repeats_refused = 0;
    let started = std::time::Instant::now();
    while fresh_kills + resume_kills < target {
        rounds += 1;
        let db = TestDb::new(server(), "crash");
        db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
        let journal = tempfile::tempdir().unwrap();
        let mut killed_this_round = 0;
        loop {
            let resuming = unfinished_run(journal.path());
            let mut child = command(
                &db,
                journal.path(),
                &["run", file, "--execute", "--batch-size", "7", "--lease", "3"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
            std::thread::sleep(Duration::from_millis(rng.random_range(0..MAX_DELAY_MS)));
            let may_kill = fresh_kills + resume_kills < target && killed_this_round < KILLS_PER_ROUND;
            match child.try_wait().unwrap() {
                None if may_kill => {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    if resuming {
                        resume_kills += 1;
                    } else {
                        fresh_kills += 1;
                    }
                    killed_this_round += 1;
                }
                _ => {
                    let out = child.wait_with_output().unwrap();
                    let err = stderr(&out);
                    // The process killed last had finished the run (stamp and
                    // journal) before it died: the plugin is not idempotent,
                    // so this new run of it is refused, naming the override.
                    if !resuming && killed_this_round > 0 && out.status.code() == Some(2) {
                        assert!(
                            err.contains("declares idempotent: false") && err.contains("--allow-repeat"),
                            "refused without saying why: {err}"
                        );
                        repeats_refused += 1;
                        break;
                    }
                    assert!(out.status.success(), "run failed: {err}");
                    resumes_finished += usize::from(resuming);
                    break;
                }
            }
        }
        check_invariants(&db, journal.path());
    }
    eprintln!(
        "crash test: {} SIGKILLs survived ({fresh_kills} during a fresh execute run, {resume_kills} during a resumed run) \
         over {rounds} runs of {DOCS} documents, {resumes_finished} finished by a resume, {repeats_refused} new runs \
         after a finished one refused; every document incremented exactly once, every journal verified ({:.0} s)",
        fresh_kills + resume_kills,
        started.elapsed().as_secs_f64()
    );
}
