//! The follow phase (`--follow`): an application keeps inserting accounts
//! in the old shape and writing existing ones back to it while a run
//! migrates them; after the passes the run reads the changes since its start
//! from a change stream, processes them through the same plugin and guarded
//! commits, and ends at the operator's cutover with nothing left behind.
//! Killed again and again, it resumes from the stream position it
//! journaled, processing no change twice.

use crate::db::{TestDb, server, standalone};
use crate::support::{command, journal_export, plugin, stderr, stdout, verify_journal};
use bson::{Document, doc};
use rand::RngExt;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const WRITERS: i64 = 4;

fn name(id: i64, version: i64) -> String {
    format!("Account{id}.V{version}")
}

/// `n` accounts in the old shape (schema 1), the database stamped at the
/// version `follow-shape` requires, and a journal directory.
fn accounts(prefix: &str, n: i64) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new(server(), prefix);
    let docs: Vec<Document> = (0..n)
        .map(|id| doc! {"_id": id, "name": name(id, 0), "schema": 1})
        .collect();
    db.insert("accounts", docs);
    let journal = tempfile::tempdir().unwrap();
    crate::support::stamp(&db, journal.path(), "1.0.0");
    (db, journal)
}

/// Application writers of the old version: each owns the ids `≡ its
/// number (mod 4)`, and either writes one of its accounts back to the old
/// shape under a new name or inserts a new old-shape account; `stop` gives
/// the last name the server acknowledged for every account written.
struct Writers(crate::writers::Writers<i64>);

impl Writers {
    fn start(db: &TestDb, existing: i64) -> Self {
        use crate::writers::Write;
        let next = move |writer: i64, mine: &HashMap<i64, i64>| {
            let mut rng = rand::rng();
            let inserted = mine.keys().filter(|id| **id >= existing).count() as i64;
            let (insert, id) = match rng.random_bool(0.3) {
                true => (true, existing + writer + inserted * WRITERS),
                false => (false, rng.random_range(0..existing / WRITERS) * WRITERS + writer),
            };
            let version = mine.get(&id).copied().unwrap_or(0) + 1;
            let new_name = name(id, version);
            let write = match insert {
                true => Write::Insert(doc! {"_id": id, "name": &new_name, "schema": 1}),
                false => Write::Update(doc! {"_id": id}, doc! {"$set": {"name": &new_name, "schema": 1}}),
            };
            (id, write, version)
        };
        Writers(crate::writers::Writers::start(
            db,
            "accounts",
            WRITERS,
            Duration::from_millis(15),
            std::sync::Arc::new(next),
        ))
    }

    /// Stops the writers: acknowledged writes, and the last name of each
    /// account they wrote.
    fn stop(self) -> (u64, HashMap<i64, String>) {
        let (written, versions) = self.0.stop();
        (written, versions.into_iter().map(|(id, v)| (id, name(id, v))).collect())
    }
}

/// Every account is in the new shape, its handle made from the last name
/// the application gave it: no old-shape account left, no write lost.
fn assert_all_migrated(db: &TestDb, names: &HashMap<i64, String>, existing: i64) {
    let all = db.find_all("accounts");
    let mut wrong = Vec::new();
    for account in &all {
        let id = account.get_i64("_id").unwrap();
        let last = names.get(&id).cloned().unwrap_or_else(|| name(id, 0));
        let handle = account.get_str("handle").unwrap_or("<none>");
        if account.get_i32("schema").ok() != Some(2) || handle != last.to_lowercase() {
            wrong.push(format!(
                "account {id}: {account}, but the application last named it {last:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} accounts not migrated from their last write: {:?}",
        wrong.len(),
        all.len(),
        &wrong[..wrong.len().min(5)]
    );
    let inserted = names.keys().filter(|id| **id >= existing).count() as i64;
    assert_eq!(all.len() as i64, existing + inserted, "accounts lost or invented");
}

/// The run that holds the database's lock (the run id to cut over).
fn running_run(db: &TestDb) -> Option<String> {
    db.find_one("godwit_metadata", doc! {"_id": "lock"})
        .and_then(|lock| lock.get_str("run_id").ok().map(str::to_string))
}

fn wait(child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("the run did not end within {limit:?}: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// What the journal proves of the follow phase: it starts at `FollowFrom`,
/// each window begins where the one before ended (no stretch of the stream
/// skipped or read twice, across every resume), the last window is the
/// cutover and `FollowDone` closes the chain; within a window no account is
/// in two committed batches. Returns (windows, documents named).
fn check_follow_proof(entries: &[serde_json::Value]) -> (u64, u64) {
    let kind = |e: &serde_json::Value| e["kind"].as_str().unwrap_or_default().to_string();
    let from = entries
        .iter()
        .find(|e| kind(e) == "FollowFrom")
        .expect("a FollowFrom entry")["follow"]["from"]
        .clone();
    let mut at = from.clone();
    let mut windows = 0u64;
    let mut named = 0u64;
    let mut last_cutover = false;
    let mut committed: HashSet<u64> = HashSet::new();
    for e in entries {
        if kind(e) == "Committed" {
            committed.insert(e["batch_seq"].as_u64().unwrap());
        }
    }
    let mut in_window: HashSet<String> = HashSet::new();
    let mut done = None;
    for e in entries {
        match kind(e).as_str() {
            "FollowWindow" => {
                let w = &e["follow"];
                windows += 1;
                assert_eq!(
                    w["window"].as_u64(),
                    Some(windows),
                    "windows are numbered in order: {w}"
                );
                assert_eq!(
                    w["from"], at,
                    "window {windows} does not begin where the last one ended"
                );
                at = w["to"].clone();
                named += w["documents"].as_u64().unwrap();
                last_cutover = w["cutover"].as_bool().unwrap();
                in_window.clear();
            }
            "Prepared" if windows > 0 && committed.contains(&e["seq"].as_u64().unwrap()) => {
                for input in e["inputs"].as_array().unwrap() {
                    let id = input["_id"].to_string();
                    assert!(
                        in_window.insert(id.clone()),
                        "account {id} processed in two committed batches of window {windows}"
                    );
                }
            }
            "FollowDone" => done = Some(e["follow"].clone()),
            _ => {}
        }
    }
    let done = done.expect("the FollowDone proof");
    assert!(last_cutover, "the last window ends at the cutover");
    assert_eq!(done["from"], from);
    assert_eq!(
        done["to"], at,
        "the proof covers the stream up to the last window's end"
    );
    assert_eq!(done["windows"].as_u64(), Some(windows));
    (windows, named)
}

/// An application writes during the whole run - new accounts in the old
/// shape, existing ones written back to it - while the run migrates them
/// with `--follow`; the operator stops the old application and cuts over
/// with `godwit cutover RUN` from another process. The run drains, verifies
/// clean and stamps: every account is migrated from its last write.
#[test]
fn follow_migrates_what_the_application_writes_until_the_cutover() {
    const EXISTING: i64 = 400;
    let (db, journal) = accounts("follow", EXISTING);
    let file = plugin("follow-shape");
    let writers = Writers::start(&db, EXISTING);
    let child = command(
        &db,
        journal.path(),
        &[
            "run",
            file.to_str().unwrap(),
            "--execute",
            "--follow",
            "--batch-size",
            "25",
            "--max-docs-per-sec",
            "200",
            "--json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The passes take about 2 s; the writers go on for as long again
    // while the run follows.
    std::thread::sleep(Duration::from_secs(5));
    let (written, names) = writers.stop();
    let run = running_run(&db).expect("the run holds the lock while it follows");
    let cutover = command(&db, journal.path(), &["cutover", &run]).output().unwrap();
    assert!(cutover.status.success(), "{}", stderr(&cutover));
    assert!(
        stdout(&cutover).contains(&format!("cutover requested for run {run}")),
        "{}",
        stdout(&cutover)
    );
    let out = wait(child, Duration::from_secs(120));
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json report");
    assert_eq!(report["stamped_version"], "2.0.0", "{report}");
    let follow = &report["summary"]["follow"];
    assert_eq!(follow["done"], true, "{follow}");
    assert!(
        follow["documents"].as_u64().unwrap() > 0,
        "the run followed nothing: {follow}"
    );
    assert!(follow["cutover_at"].is_string(), "{follow}");
    assert_eq!(
        report["summary"]["passes"][0]["reports"].get("twice"),
        None,
        "an account was processed twice in one state: {report}"
    );
    assert_all_migrated(&db, &names, EXISTING);
    let (windows, named) = check_follow_proof(&journal_export(journal.path(), &run));
    assert_eq!(follow["windows"].as_u64(), Some(windows));
    assert_eq!(follow["documents"].as_u64(), Some(named));
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": format!("cutover:{run}")})
            .is_none(),
        "the cutover request is removed with the run's marker"
    );
    verify_journal(journal.path());
    eprintln!(
        "follow: {written} application writes to {} accounts; {named} documents named in {windows} windows after \
         the passes; every account migrated from its last write",
        names.len()
    );
}

/// godwit's own writes are not changes to follow: on a quiet database the
/// follow phase names no document, and `--follow-until-idle` cuts over by
/// itself. Refusals: a dry run, and a standalone server (no change streams,
/// no transactions), each with one line saying what to do.
#[test]
fn own_writes_are_not_followed_and_an_idle_run_cuts_over_by_itself() {
    let (db, journal) = accounts("follow_quiet", 120);
    let file = plugin("follow-shape");
    let out = command(
        &db,
        journal.path(),
        &[
            "run",
            file.to_str().unwrap(),
            "--execute",
            "--follow",
            "--follow-until-idle",
            "1",
            "--batch-size",
            "20",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let follow = &report["summary"]["follow"];
    assert_eq!(
        follow["documents"], 0,
        "godwit's own 120 writes were followed: {follow}"
    );
    assert_eq!(follow["windows"], 1, "one window: the cutover's: {follow}");
    assert_eq!(follow["done"], true);
    assert_eq!(report["stamped_version"], "2.0.0");
    let run = report["run_id"].as_str().unwrap();
    check_follow_proof(&journal_export(journal.path(), run));

    let dry = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--follow"])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(2), "{}", stderr(&dry));
    assert!(stderr(&dry).contains("--execute"), "{}", stderr(&dry));

    let server = standalone();
    let alone = TestDb::new(&server, "follow_standalone");
    alone.insert("accounts", vec![doc! {"_id": 1_i64, "name": "A", "schema": 1}]);
    let journal = tempfile::tempdir().unwrap();
    crate::support::stamp(&alone, journal.path(), "1.0.0");
    let refused = command(
        &alone,
        journal.path(),
        &["run", file.to_str().unwrap(), "--execute", "--follow"],
    )
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(
        text.contains("--follow needs a replica set") && text.contains("Run without --follow"),
        "{text}"
    );
    assert_eq!(
        alone
            .find_one("accounts", doc! {"_id": 1_i64})
            .unwrap()
            .get_i32("schema")
            .unwrap(),
        1,
        "nothing written"
    );
}

/// A follow run killed with SIGKILL 20 times while four application
/// writers keep writing - once right after it journaled a window
/// (failpoint), then at random - resumes each time from its journaled stream position: the
/// windows chain without a gap across the resumes, no account is processed
/// twice in one state or in two batches of one window, and after the
/// cutover every account is migrated from its last write.
#[test]
fn a_follow_run_killed_again_and_again_resumes_from_its_stream_position() {
    const EXISTING: i64 = 300;
    let (db, journal) = accounts("follow_killed", EXISTING);
    let file = plugin("follow-shape");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--follow",
        "--batch-size",
        "25",
        "--lease",
        "3",
        "--json",
    ];
    let writers = Writers::start(&db, EXISTING);
    let first = command(&db, journal.path(), &args)
        .env("FAILPOINTS", "follow-window-journaled=return")
        .output()
        .unwrap();
    assert_eq!(first.status.code(), None, "killed by the failpoint: {}", stderr(&first));
    let mut rng = rand::rng();
    let mut kills = 1;
    while kills < 20 {
        let mut child = command(&db, journal.path(), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(600..2000)));
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!("a follow run ended by itself ({status}): {}", stderr(&out));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    // The last process starts while the application still writes; the
    // operator then stops the old application and cuts over.
    let last = command(&db, journal.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (written, names) = writers.stop();
    let run = running_run(&db).expect("the last process holds the lock");
    let cutover = command(&db, journal.path(), &["cutover", &run]).output().unwrap();
    assert!(cutover.status.success(), "{}", stderr(&cutover));
    let last = wait(last, Duration::from_secs(120));
    assert!(last.status.success(), "{}", stderr(&last));
    let report: serde_json::Value = serde_json::from_slice(&last.stdout).unwrap();
    assert_eq!(report["stamped_version"], "2.0.0", "{report}");
    assert_eq!(
        report["summary"]["passes"][0]["reports"].get("twice"),
        None,
        "an account was processed twice in one state: {report}"
    );
    assert_all_migrated(&db, &names, EXISTING);
    assert_eq!(report["run_id"].as_str(), Some(run.as_str()));
    let entries = journal_export(journal.path(), &run);
    let (windows, named) = check_follow_proof(&entries);
    let first_window = entries.iter().position(|e| e["kind"] == "FollowWindow").unwrap();
    let resumed_in_follow = entries[first_window..]
        .iter()
        .filter(|e| e["kind"] == "Session")
        .count();
    assert!(
        resumed_in_follow >= 10,
        "only {resumed_in_follow} processes resumed during the follow phase: the kills did not test it"
    );
    verify_journal(journal.path());
    eprintln!(
        "follow killed: {written} application writes, {kills} SIGKILLs ({resumed_in_follow} resumes in the follow \
         phase); {named} documents named in {windows} windows; every account migrated from its last write"
    );
}

/// A run started without `--follow` and killed after its first batch cannot
/// follow when it resumes: what other writers changed since it began was
/// not tracked. The refusal is a resume refusal (exit 6) naming the run and
/// the way out, and writes nothing; the same command without `--follow`
/// finishes the run.
#[cfg(feature = "failpoints")]
#[test]
fn a_run_started_without_follow_refuses_to_follow_when_resumed() {
    let (db, journal) = accounts("follow_untracked", 60);
    let file = plugin("follow-shape");
    let run = |extra: &[&str], failpoints: Option<&str>| {
        let mut args = vec!["run", file.to_str().unwrap(), "--execute", "--batch-size", "20"];
        args.extend(extra);
        let mut cmd = command(&db, journal.path(), &args);
        if let Some(armed) = failpoints {
            cmd.env("FAILPOINTS", armed);
        }
        cmd.output().unwrap()
    };
    let killed = run(&[], Some("committed-before-journal=return"));
    assert!(!killed.status.success(), "{}", stderr(&killed));
    let before = db.find_all("accounts");
    let refused = run(&["--follow"], None);
    let text = stderr(&refused);
    assert_eq!(refused.status.code(), Some(6), "{text}");
    assert!(
        text.contains("was started without --follow") && text.contains("--new-run --follow"),
        "{text}"
    );
    assert_eq!(db.find_all("accounts"), before, "the refusal wrote nothing");
    let finished = run(&[], None);
    assert!(finished.status.success(), "{}", stderr(&finished));
}
