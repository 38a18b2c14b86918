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
    assert_incremented_once(db, count, ("counters", "n"), "2.0.0");
}

/// `field` of every document of `collection` is 1, `version` stamped once,
/// the work table and the progress markers gone.
fn assert_incremented_once(db: &TestDb, count: usize, (collection, field): (&str, &str), version: &str) {
    let docs = db.find_all(collection);
    assert_eq!(docs.len(), count);
    let wrong: Vec<&Document> = docs.iter().filter(|d| d.get_i64(field).ok() != Some(1)).collect();
    assert!(
        wrong.is_empty(),
        "{} documents not incremented exactly once: {wrong:?}",
        wrong.len()
    );
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).expect("stamped");
    assert_eq!(schema.get_str("version").unwrap(), version);
    let stamps = schema
        .get_array("history")
        .unwrap()
        .iter()
        .filter(|h| h.as_document().and_then(|h| h.get_str("version").ok()) == Some(version))
        .count();
    assert_eq!(stamps, 1, "stamped once: {schema:?}");
    let left: Vec<Document> = db
        .find_all("godwit_metadata")
        .into_iter()
        .filter(|d| {
            matches!(d.get_str("kind").ok(), Some("partition" | "fleet"))
                || d.get_str("_id").is_ok_and(|id| id.starts_with("progress:"))
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
    let runs = crate::support::journal_runs(journal.path());
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

    // A worker started after the stamp (a retried pod) has nothing to do: exit 0.
    let late = tempfile::tempdir().unwrap();
    let worker = command(&db, late.path(), &["worker", file.to_str().unwrap(), "--wait", "1"])
        .output()
        .unwrap();
    assert!(worker.status.success(), "{}", stderr(&worker));
    assert!(
        stdout(&worker).contains(&format!("fleet run {run} is stamped")),
        "{}",
        stdout(&worker)
    );

    // Its partitions are not runs of their own to revert or resume: the
    // fleet run is reverted as a whole.
    let revert = command(&db, journal.path(), &["revert", parts[0], "--execute"])
        .output()
        .unwrap();
    assert_eq!(revert.status.code(), Some(14), "{}", stderr(&revert));
    assert!(
        stderr(&revert).contains(&format!(
            "one partition of fleet run {run} (--workers); revert the fleet run as a whole: godwit revert {run}"
        )),
        "{}",
        stderr(&revert)
    );
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

/// Split points from a random sample (`--split-by sample`, what passes of
/// over a million documents get): five partitions over 2,802 `_id`s of eight
/// BSON types, bounds wherever the sample put them - every document once,
/// no conflict, the bounds journaled.
#[test]
fn sampled_split_points_cover_every_id_type_exactly_once() {
    let db = TestDb::new(server(), "fleet_sampled");
    let ids = crate::id_types::mixed_ids_per_type(400);
    let count = ids.len();
    db.insert(
        "counters",
        ids.into_iter().map(|id| doc! {"_id": id, "n": 0_i64}).collect(),
    );
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--workers",
        "2",
        "--partitions",
        "5",
        "--split-by",
        "sample",
        "--batch-size",
        "50",
        "--json",
    ];
    let out = command(&db, journal.path(), &args)
        .env("RUST_LOG", "godwit=info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("4 split points from a sample of 500 of {count} documents")),
        "the sampled path ran: {}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["passes"][0]["documents"], count as u64, "{report}");
    assert_eq!(report["summary"]["passes"][0]["conflicts"], 0, "{report}");
    assert_migrated_once(&db, count);
    let run = report["run_id"].as_str().unwrap();
    let show = godwit(&["journal", "show", run, "--journal", journal.path().to_str().unwrap()]);
    assert!(
        stdout(&show).contains("5 partitions, bounds: _id "),
        "the bounds are journaled: {}",
        stdout(&show)
    );
    verify_journal(journal.path());
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
                    // (A process killed while writing the work table left part of it.)
                    let split = db
                        .find_all("godwit_metadata")
                        .iter()
                        .filter(|d| d.get_str("kind").ok() == Some("partition"))
                        .count()
                        == 9;
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

/// A fleet run and three `godwit worker` processes, each with its own
/// journal, on one partitioned collection; any of the four SIGKILLed at
/// random - thirty times in all - and started again: every document
/// incremented exactly once, every partition done, stamped once, every
/// journal verifies, every worker ends with exit 0. The plugin's `$inc`
/// has no pass filter (`count-visits`): a document processed twice - a
/// partition taken over from its start instead of its last commit, a stale
/// batch applied - would count two visits.
#[test]
fn four_processes_killed_thirty_times_migrate_every_document_once() {
    let file = plugin("count-visits");
    let file = file.to_str().unwrap();
    let run_args = [
        "run",
        file,
        "--execute",
        "--workers",
        "1",
        "--partitions",
        "12",
        "--batch-size",
        "4",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "40",
    ];
    let worker_args = ["worker", file, "--wait", "60", "--max-docs-per-sec", "40"];
    let mut rng = rand::rng();
    let (mut kills, mut rounds, mut processes, mut worker_runs, mut fresh_journals) = (0, 0, 0, 0, 0);
    while kills < 30 {
        rounds += 1;
        assert!(rounds <= 15, "thirty kills did not happen in 15 rounds");
        let db = TestDb::new(server(), "fleet_workers");
        let pages: Vec<Document> = mixed_ids()
            .into_iter()
            .map(|id| doc! {"_id": id, "visits": 0_i64})
            .collect();
        let count = pages.len();
        db.insert("pages", pages);
        // Every journal any process used; `current[i]`: process i's.
        let mut journals: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut current: Vec<usize> = (0..4).collect();
        let spawn = |i: usize, journal: &std::path::Path| {
            let args: &[&str] = if i == 0 { &run_args } else { &worker_args };
            command(&db, journal, args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut children: Vec<Option<std::process::Child>> =
            (0..4).map(|i| Some(spawn(i, journals[i].path()))).collect();
        processes += 4;
        let started = std::time::Instant::now();
        let mut outputs: Vec<Option<std::process::Output>> = vec![None, None, None, None];
        let mut next_kill = std::time::Instant::now() + Duration::from_millis(rng.random_range(200..700));
        while outputs.iter().any(Option::is_none) {
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "round {rounds} hung: {:?}",
                outputs.iter().map(|o| o.as_ref().map(|o| o.status)).collect::<Vec<_>>()
            );
            for i in 0..4 {
                if let Some(child) = children[i].as_mut()
                    && child.try_wait().unwrap().is_some()
                {
                    outputs[i] = Some(children[i].take().unwrap().wait_with_output().unwrap());
                }
            }
            if kills < 30 && std::time::Instant::now() >= next_kill {
                next_kill = std::time::Instant::now() + Duration::from_millis(rng.random_range(200..700));
                let i = rng.random_range(0..4);
                if let Some(mut child) = children[i].take() {
                    if child.try_wait().unwrap().is_none() {
                        child.kill().unwrap();
                        child.wait().unwrap();
                        kills += 1;
                        // Started again, as a Job restarts a failed pod - a
                        // worker sometimes without its journal (a pod on
                        // another node): the partitions it held are taken
                        // over by others once their lease runs out, from
                        // where their last batch committed.
                        if i > 0 && rng.random_range(0..3) == 0 {
                            journals.push(tempfile::tempdir().unwrap());
                            current[i] = journals.len() - 1;
                            fresh_journals += 1;
                        }
                        children[i] = Some(spawn(i, journals[current[i]].path()));
                        processes += 1;
                    } else {
                        outputs[i] = Some(child.wait_with_output().unwrap());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (i, out) in outputs.iter().enumerate() {
            let out = out.as_ref().unwrap();
            assert!(
                out.status.success(),
                "process {i} (of round {rounds}) failed: {}",
                stderr(out)
            );
        }
        assert_incremented_once(&db, count, ("pages", "visits"), "1.0.0");
        for journal in &journals {
            verify_journal(journal.path());
        }
        // The workers did their share: partition runs in their journals.
        for journal in journals.iter().skip(1) {
            let runs = crate::support::journal_runs(journal.path());
            worker_runs += runs
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["run_id"].as_str().is_some_and(|id| id.contains('@')))
                .count();
        }
    }
    assert!(worker_runs > 0, "the worker processes processed no partition");
    eprintln!(
        "fleet workers: {kills} SIGKILLs over {processes} processes (a run and three `godwit worker`) in {rounds} rounds, \
         each document once; {worker_runs} partition runs in the workers' journals, {fresh_journals} workers started \
         again without their journal"
    );
}

/// A worker with no fleet run to join - none started, or one of another
/// plugin file - gives up after `--wait` with exit 20 and one line saying
/// what to start; nothing is written.
#[test]
fn a_worker_with_no_fleet_run_to_join_says_what_to_start() {
    let db = TestDb::new(server(), "fleet_none");
    counters(&db);
    let journal = tempfile::tempdir().unwrap();
    let before = db.dump();
    let file = plugin("increment");
    let out = command(&db, journal.path(), &["worker", file.to_str().unwrap(), "--wait", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(20), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no fleet run of plugin increment 2.0.0")
            && err.contains("godwit run PLUGIN --execute --workers N")
            && err.contains("--wait"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(db.dump(), before, "nothing written");
}

/// The documents of every non-empty collection but godwit's own, as raw bytes.
fn user_data(db: &TestDb) -> Vec<(String, Vec<Vec<u8>>)> {
    db.dump()
        .into_iter()
        .filter(|(name, docs)| name != "godwit_metadata" && !docs.is_empty())
        .collect()
}

fn schema_version(db: &TestDb) -> Option<String> {
    db.find_one("godwit_metadata", doc! {"_id": "schema"})
        .and_then(|s| s.get_str("version").ok().map(str::to_string))
}

/// 600 orders for `reshape` (updates, `$unset`, deletes, inserts into
/// another collection, and a `finish` multi update and upsert), stamped
/// 2.0.0.
fn orders(prefix: &str) -> TestDb {
    let db = TestDb::new(server(), prefix);
    let statuses = ["open", "done", "cancelled", "open", "done"];
    db.insert(
        "orders",
        (0..600)
            .map(|i| {
                let mut d = doc! {"_id": i, "status": statuses[i as usize % 5], "total": i * 3};
                if i % 2 == 0 {
                    d.insert("note", format!("note {i}"));
                }
                d
            })
            .collect(),
    );
    let journal = tempfile::tempdir().unwrap();
    crate::support::stamp(&db, journal.path(), "2.0.0");
    db
}

/// A `--workers 3` run of `reshape` SIGKILLed three times and resumed,
/// then `godwit revert` of the fleet run: every document back byte for
/// byte (those the partitions' runs updated, deleted and inserted, and
/// those `finish` wrote), the version back to 2.0.0, exit 0; reverting
/// again finds nothing to do.
#[test]
fn revert_of_a_fleet_run_killed_and_resumed_restores_every_document() {
    let db = orders("fleet_revert");
    let before = user_data(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("reshape");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--workers",
        "3",
        "--partitions",
        "6",
        "--batch-size",
        "5",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "200",
    ];
    let mut rng = rand::rng();
    let mut kills = 0;
    let last = loop {
        let mut child = command(&db, journal.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if kills < 3 {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..900)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        break finish_within(child, Duration::from_secs(180));
    };
    assert!(last.status.success(), "{}", stderr(&last));
    assert_eq!(kills, 3, "every kill landed mid-run");
    assert_eq!(schema_version(&db).as_deref(), Some("3.0.0"));
    assert_ne!(user_data(&db), before);
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    let history = schema.get_array("history").unwrap();
    let run = history
        .last()
        .unwrap()
        .as_document()
        .unwrap()
        .get_str("run_id")
        .unwrap()
        .to_string();

    let out = command(&db, journal.path(), &["revert", &run, "--execute", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["conflicts"], 0, "{report}");
    assert!(
        report["restore"].as_u64().unwrap() > 0 && report["remove"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(
        user_data(&db),
        before,
        "every document as before the run, byte for byte"
    );
    assert_eq!(schema_version(&db).as_deref(), Some("2.0.0"), "the version is set back");
    verify_journal(journal.path());

    let again = command(&db, journal.path(), &["revert", &run, "--json"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["restore"], 0, "{again}");
    assert_eq!(again["remove"], 0, "{again}");
    eprintln!(
        "fleet revert: {kills} SIGKILLs, then {} documents restored and {} removed",
        report["restore"], report["remove"]
    );
}

/// A fleet run one of whose partitions a `godwit worker` with its own
/// journal processed: its before-images are not in the run's journal, so
/// `godwit revert` of the run is refused (exit 14) in one line naming what
/// is missing and what to do, and writes nothing. With the worker's journal
/// collected and passed (`--worker-journal`), the revert puts every
/// document back byte for byte and sets the version back; a directory
/// without a journal is refused as a usage error.
#[test]
fn revert_of_a_fleet_run_with_a_partition_in_another_journal_needs_that_journal() {
    let db = orders("fleet_revert_other");
    let original = user_data(&db);
    let journal = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let file = plugin("reshape");
    let file = file.to_str().unwrap();
    let run_args = [
        "run",
        file,
        "--execute",
        "--workers",
        "1",
        "--partitions",
        "6",
        "--batch-size",
        "5",
        "--max-docs-per-sec",
        "100",
    ];
    let fleet = command(&db, journal.path(), &run_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let worker = command(
        &db,
        other.path(),
        &["worker", file, "--wait", "60", "--max-docs-per-sec", "100"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let fleet = finish_within(fleet, Duration::from_secs(120));
    let worker = finish_within(worker, Duration::from_secs(120));
    assert!(fleet.status.success(), "{}", stderr(&fleet));
    assert!(worker.status.success(), "{}", stderr(&worker));
    let runs = crate::support::journal_runs(other.path());
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"].as_str().is_some_and(|id| id.contains('@'))),
        "the worker processed no partition: {runs}"
    );
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    let history = schema.get_array("history").unwrap();
    let run = history
        .last()
        .unwrap()
        .as_document()
        .unwrap()
        .get_str("run_id")
        .unwrap()
        .to_string();

    // The work table went with the stamp; the fleet run's journal keeps
    // which runs wrote each partition, and where their journals were.
    let other_dir = other.path().to_str().unwrap();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let done: Vec<serde_json::Value> = crate::support::journal_export(journal.path(), &run)
        .into_iter()
        .filter(|e| e["kind"] == "PartitionsDone")
        .collect();
    assert_eq!(done.len(), 1, "one PartitionsDone for the one pass: {done:?}");
    let partitions = done[0]["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 6, "{partitions:?}");
    let mut by_worker = 0;
    for p in partitions {
        let runs: Vec<&str> = p["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let paths: Vec<&str> = p["holders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap())
            .collect();
        assert!(!runs.is_empty() && !paths.is_empty(), "{p}");
        assert!(
            p["holders"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["host"] == host.as_str()),
            "{p}"
        );
        let journals = [journal.path().to_str().unwrap(), other_dir];
        assert!(paths.iter().all(|path| journals.contains(path)), "{p}");
        by_worker += paths.contains(&other_dir) as usize;
    }
    assert!(by_worker > 0, "no partition names the worker's journal: {partitions:?}");

    let before = db.dump();
    let out = command(&db, journal.path(), &["revert", &run, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot revert run {run}: it ran with --workers and partitions "
        )) && err.contains("have no finished run in this journal")
            && err.contains("runs of other journals wrote partitions: journal ...")
            && err.contains(&format!("on {host} at {other_dir}"))
            && err.contains("--worker-journal DIR")
            && err.contains("put the documents back from a backup"),
        "the refusal names where the worker's journal is: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(db.dump(), before, "nothing written");
    assert_eq!(schema_version(&db).as_deref(), Some("3.0.0"));

    let empty = tempfile::tempdir().unwrap();
    let out = command(
        &db,
        journal.path(),
        &[
            "revert",
            &run,
            "--execute",
            "--worker-journal",
            empty.path().to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("holds no godwit journal"), "{}", stderr(&out));
    assert_eq!(db.dump(), before, "nothing written");

    revert_with_worker_journal(&db, journal.path(), &run, other_dir);
    assert_eq!(
        user_data(&db),
        original,
        "every document as before the run, byte for byte, the worker's partitions too"
    );
    assert_eq!(schema_version(&db).as_deref(), Some("2.0.0"), "the version is set back");
    verify_journal(journal.path());
    verify_journal(other.path());
}

/// `godwit revert RUN --execute --worker-journal OTHER`: exit 0, no conflicts.
fn revert_with_worker_journal(db: &TestDb, journal: &std::path::Path, run: &str, other: &str) {
    let out = command(
        db,
        journal,
        &["revert", run, "--execute", "--json", "--worker-journal", other],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["conflicts"], 0, "{report}");
}

const USERS: i32 = 1200;
const WRITERS: i32 = 4;

fn address(id: i32, version: i64) -> String {
    format!("  User{id}.V{version}@Example.COM")
}

/// Four application writers keep changing users while a `--workers 3` run
/// of `normalize-emails` is SIGKILLed four times and resumed: exit 0, no
/// acknowledged application write lost (each user's address is its last
/// one, or that one normalized), every user the application never wrote
/// normalized, and the write guard refused batches whose documents were
/// then processed again (the test is not vacuous).
#[test]
fn a_fleet_run_under_live_writers_killed_and_resumed_loses_no_write() {
    let db = TestDb::new(server(), "fleet_live");
    let users: Vec<Document> = (0..USERS)
        .map(|id| doc! {"_id": id, "email": address(id, 0), "writes": 0_i64})
        .collect();
    db.insert("users", users);
    let journal = tempfile::tempdir().unwrap();
    crate::support::stamp(&db, journal.path(), "1.0.0");
    let file = plugin("normalize-emails");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--workers",
        "3",
        "--partitions",
        "6",
        "--batch-size",
        "40",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "300",
        "--allow-residue",
        "--json",
    ];
    let writers = crate::writers::user_addresses(&db, USERS, WRITERS, address);
    let mut rng = rand::rng();
    let mut kills = 0;
    let last = loop {
        let mut child = command(&db, journal.path(), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if kills < 4 {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        // The writers still write while the last process finishes.
        break finish_within(child, Duration::from_secs(180));
    };
    let (_, acknowledged) = writers.stop();
    assert!(last.status.success(), "{}", stderr(&last));
    assert_eq!(kills, 4, "every kill landed mid-run");
    let report: serde_json::Value = serde_json::from_slice(&last.stdout).expect("--json report");
    let pass = &report["summary"]["passes"][0];
    let (mut lost, mut unmigrated) = (Vec::new(), Vec::new());
    for user in db.find_all("users") {
        let id = user.get_i32("_id").unwrap();
        let email = user.get_str("email").unwrap();
        match acknowledged.get(&i64::from(id)) {
            Some(&version) => {
                let last = address(id, version);
                if email != last && email != last.trim().to_lowercase() {
                    lost.push(format!("user {id}: {email:?}, but the application last wrote {last:?}"));
                }
            }
            None if email != address(id, 0).trim().to_lowercase() => {
                unmigrated.push(format!("user {id}: {email:?}"));
            }
            None => {}
        }
    }
    assert!(
        lost.is_empty(),
        "{} application writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        unmigrated.is_empty(),
        "{} users the application never wrote are not migrated: {:?}",
        unmigrated.len(),
        &unmigrated[..unmigrated.len().min(5)]
    );
    let conflicts = pass["conflicts"].as_u64().unwrap();
    assert!(
        conflicts > 0,
        "the writers never met a batch: the test proves nothing: {pass}"
    );
    assert_eq!(
        schema_version(&db).as_deref(),
        Some(report["stamped_version"].as_str().unwrap())
    );
    verify_journal(journal.path());
    eprintln!(
        "fleet live: {kills} SIGKILLs, {} users written by {WRITERS} application writers, {conflicts} documents \
         refused by the write guard and processed again, 0 writes lost",
        acknowledged.len()
    );
}

/// A `godwit worker` with its own journal SIGKILLed right after its third
/// commit, before its journal recorded it (failpoint
/// `committed-before-journal`); the fleet run's worker then takes the
/// partition over and finishes it. The fleet run's journal keeps which runs
/// wrote each partition, where the killed worker's journal is, and what its
/// progress marker said it committed last. `godwit revert` without that
/// journal refuses (exit 14, naming it, nothing written); with it, the
/// commit the journal never recorded is settled from the kept marker and
/// every document goes back byte for byte.
#[cfg(feature = "failpoints")]
#[test]
fn revert_of_a_fleet_run_with_a_partition_taken_over_from_a_killed_worker_settles_its_last_commit() {
    use std::os::unix::process::ExitStatusExt;
    let db = orders("fleet_revert_taken");
    let original = user_data(&db);
    let journal = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let file = plugin("reshape");
    let file = file.to_str().unwrap();
    let run_args = [
        "run",
        file,
        "--execute",
        "--workers",
        "1",
        "--partitions",
        "2",
        "--batch-size",
        "5",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "100",
    ];
    let fleet = command(&db, journal.path(), &run_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The fleet run claims partition 0 first; the worker then takes partition 1.
    std::thread::sleep(Duration::from_millis(500));
    let worker = command(
        &db,
        other.path(),
        &["worker", file, "--wait", "60", "--max-docs-per-sec", "100"],
    )
    .env("FAILPOINTS", "committed-before-journal=2*off->return")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert_eq!(worker.status.signal(), Some(libc::SIGKILL), "{}", stderr(&worker));
    let fleet = finish_within(fleet, Duration::from_secs(120));
    assert!(fleet.status.success(), "{}", stderr(&fleet));
    let runs = crate::support::journal_runs(other.path());
    let foreign: Vec<&serde_json::Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["run_id"].as_str().is_some_and(|id| id.contains('@')))
        .collect();
    assert_eq!(foreign.len(), 1, "the worker began one partition: {runs}");
    assert_ne!(foreign[0]["status"], "finished", "and did not finish it: {runs}");
    let worker_run = foreign[0]["run_id"].as_str().unwrap();
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    let history = schema.get_array("history").unwrap();
    let run = history
        .last()
        .unwrap()
        .as_document()
        .unwrap()
        .get_str("run_id")
        .unwrap()
        .to_string();
    // The worker's journal holds two commits; its marker said three.
    let entries = crate::support::journal_export(other.path(), worker_run);
    let committed = entries.iter().filter(|e| e["kind"] == "Committed").count();
    assert_eq!(committed, 2, "killed after its third commit, before journaling it");
    let done = crate::support::journal_export(journal.path(), &run)
        .into_iter()
        .find(|e| e["kind"] == "PartitionsDone")
        .expect("the fleet run journaled its partitions");
    assert!(
        done["note"].as_str().unwrap().contains(worker_run),
        "the worker's run is named: {done}"
    );

    let before = db.dump();
    let out = command(&db, journal.path(), &["revert", &run, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    let err = stderr(&out);
    let other_dir = other.path().to_str().unwrap();
    assert!(
        err.contains(&format!(
            "cannot revert run {run}: it ran with --workers and runs of other journals wrote partitions: journal ..."
        )) && err.contains(&format!(" at {other_dir}"))
            && err.contains("put the documents back from a backup"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(db.dump(), before, "nothing written");

    revert_with_worker_journal(&db, journal.path(), &run, other_dir);
    assert_eq!(
        user_data(&db),
        original,
        "every document as before the run, byte for byte, the unjournaled commit's too"
    );
    verify_journal(journal.path());
    verify_journal(other.path());
}
