//! Fleet mode in one process (`run --execute --workers N`): each pass split
//! into partitions across BSON types, journaled, claimed by workers under
//! their own lease, fenced and resumed; stamped once.

use crate::db::{TestDb, server};
use crate::id_types::mixed_ids;
use crate::support::{command, godwit, plugin, run_ok, stderr, stdout, verify_journal};
use bson::{Document, doc};
use rand::RngExt;
use std::process::Stdio;
use std::time::Duration;

fn counters(db: &TestDb) -> usize {
    let docs: Vec<Document> = mixed_ids().into_iter().map(|id| doc! {"_id": id, "n": 0_i64}).collect();
    let count = docs.len();
    db.insert("counters", docs);
    count
}

/// Every document incremented exactly once, the version stamped once (one
/// history entry of the plugin) and the work table gone.
fn assert_migrated_once(db: &TestDb, count: usize) {
    let docs = db.find_all("counters");
    assert_eq!(docs.len(), count);
    let wrong: Vec<&Document> = docs.iter().filter(|d| d.get_i64("n").ok() != Some(1)).collect();
    assert!(
        wrong.is_empty(),
        "{} documents not incremented exactly once: {wrong:?}",
        wrong.len()
    );
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).expect("stamped");
    assert_eq!(schema.get_str("version").unwrap(), "2.0.0");
    let stamps = schema
        .get_array("history")
        .unwrap()
        .iter()
        .filter(|h| h.as_document().and_then(|h| h.get_str("version").ok()) == Some("2.0.0"))
        .count();
    assert_eq!(stamps, 1, "stamped once: {schema:?}");
    let left: Vec<Document> = db
        .find_all("godwit_metadata")
        .into_iter()
        .filter(|d| {
            d.get_str("kind").ok() == Some("partition") || d.get_str("_id").is_ok_and(|id| id.starts_with("progress:"))
        })
        .collect();
    assert!(
        left.is_empty(),
        "work table and markers removed after the stamp: {left:?}"
    );
}

/// `status` of a fleet run killed mid-way: its partitions, done, in flight
/// (the dead process's claims, until their lease runs out) and pending.
fn assert_status_shows_the_work_table(db: &TestDb, journal: &std::path::Path) {
    let status = run_ok(db, journal, &["status"]);
    let fleet = &status["fleet_runs"][0];
    let pass = &fleet["passes"][0];
    assert_eq!(pass["partitions"], 9, "{status}");
    let (done, pending, in_flight) = (
        pass["done"].as_u64().unwrap(),
        pass["pending"].as_u64().unwrap(),
        pass["in_flight"].as_array().unwrap().len() as u64,
    );
    assert_eq!(done + pending + in_flight, 9, "{status}");
    let unfinished = status["unfinished_runs"].as_array().unwrap();
    assert_eq!(unfinished.len(), 1, "the fleet run alone, not its partitions: {status}");
    assert_eq!(unfinished[0]["run_id"], fleet["run"], "{status}");
    let text = command(db, journal, &["status"]).output().unwrap();
    let line = format!(
        "fleet run {}, pass 0: 9 partitions: {done} done, ",
        fleet["run"].as_str().unwrap()
    );
    assert!(stdout(&text).contains(&line), "{}", stdout(&text));
}

/// The process's output once it exits; killed, and the test failed, if it
/// hangs (a claim waiting on a killed process's open transaction did).
fn finish_within(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("godwit hung for {limit:?}: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// Three workers over seven partitions of `_id`s of eight BSON types: every
/// document once, each partition its own journaled run, the bounds in the
/// fleet run's journal, the summary counting every document.
#[test]
fn workers_migrate_every_id_type_exactly_once() {
    let db = TestDb::new(server(), "fleet");
    let count = counters(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--workers",
        "3",
        "--partitions",
        "7",
        "--batch-size",
        "9",
    ];
    let out = run_ok(&db, journal.path(), &args);
    assert_eq!(out["stamped_version"], "2.0.0", "{out}");
    assert_eq!(out["summary"]["passes"][0]["documents"], count as u64, "{out}");
    assert_eq!(out["summary"]["passes"][0]["updates"], count as u64, "{out}");
    // Partitions do not overlap: on a quiet database no worker's batch
    // meets a document another worker wrote.
    assert_eq!(out["summary"]["passes"][0]["conflicts"], 0, "{out}");
    assert_migrated_once(&db, count);

    let run = out["run_id"].as_str().unwrap();
    let list = godwit(&[
        "journal",
        "list",
        "--json",
        "--journal",
        journal.path().to_str().unwrap(),
    ]);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    let parts: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .filter(|id| id.starts_with(&format!("{run}.0.")))
        .collect();
    assert_eq!(parts.len(), 7, "one journaled run per partition: {runs}");
    let show = godwit(&["journal", "show", run, "--journal", journal.path().to_str().unwrap()]);
    assert!(
        stdout(&show).contains("7 partitions, bounds: _id "),
        "the bounds are journaled: {}",
        stdout(&show)
    );
    verify_journal(journal.path());

    // Its partitions are not runs of their own to revert or resume.
    let revert = command(&db, journal.path(), &["revert", run, "--execute"])
        .output()
        .unwrap();
    assert_eq!(revert.status.code(), Some(14), "{}", stderr(&revert));
    assert!(stderr(&revert).contains("--workers"), "{}", stderr(&revert));
    let resume = command(
        &db,
        journal.path(),
        &["run", file.to_str().unwrap(), "--execute", "--resume", parts[0]],
    )
    .output()
    .unwrap();
    assert_eq!(resume.status.code(), Some(6), "{}", stderr(&resume));
    assert!(
        stderr(&resume).contains(&format!("a partition of fleet run {run}")),
        "{}",
        stderr(&resume)
    );
}

/// Fleet runs SIGKILLed at random - twelve times in all - and started again
/// with the same command (three times without `--workers`: the partitions
/// go on one at a time) until one finishes: every document incremented
/// exactly once, stamped once, every journal chain intact.
#[test]
fn a_fleet_run_killed_at_random_resumes_with_nothing_lost_or_applied_twice() {
    let file = plugin("increment");
    let file = file.to_str().unwrap();
    let with_workers = [
        "run",
        file,
        "--execute",
        "--workers",
        "4",
        "--partitions",
        "9",
        "--batch-size",
        "5",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "150",
    ];
    let alone = [
        "run",
        file,
        "--execute",
        "--batch-size",
        "5",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "150",
    ];
    let mut rng = rand::rng();
    let (mut kills, mut rounds, mut processes) = (0, 0, 0);
    let mut status_checked = false;
    while kills < 12 {
        rounds += 1;
        assert!(rounds <= 20, "twelve kills did not happen in 20 rounds");
        let db = TestDb::new(server(), "fleet_kill");
        let count = counters(&db);
        let journal = tempfile::tempdir().unwrap();
        let mut killed_this_round = 0;
        let last = loop {
            processes += 1;
            let args: &[&str] = if processes % 4 == 3 { &alone } else { &with_workers };
            let mut child = command(&db, journal.path(), args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if kills < 12 && killed_this_round < 5 {
                std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    kills += 1;
                    killed_this_round += 1;
                    // Once a killed process had split the pass.
                    let split = db
                        .find_all("godwit_metadata")
                        .iter()
                        .any(|d| d.get_str("kind").ok() == Some("partition"));
                    if split && !status_checked {
                        assert_status_shows_the_work_table(&db, journal.path());
                        status_checked = true;
                    }
                    continue;
                }
            }
            break finish_within(child, Duration::from_secs(180));
        };
        assert!(
            last.status.success(),
            "the last run must end stamped: {}",
            stderr(&last)
        );
        assert_migrated_once(&db, count);
        verify_journal(journal.path());
    }
    assert!(status_checked, "no process was killed after it split the pass");
    eprintln!("fleet: {kills} SIGKILLs over {processes} processes in {rounds} rounds, each document once");
}
