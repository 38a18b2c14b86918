//! A live database: application writers keep changing the documents a run
//! migrates. Measured before the write guard: of 15,027 documents the
//! application wrote during a `normalize-emails` run, 9,437 ended with an
//! address computed from the value before the application's last write.
//! The guard compares, inside each batch's transaction, the documents the
//! plugin read with what the database holds; a changed one is read again
//! and processed again, never overwritten.

use crate::db::{TestDb, server};
use crate::support::{command, journal_export, plugin, stderr, verify_journal};
use bson::{Document, doc};
use rand::RngExt;
use std::process::Stdio;
use std::time::Duration;

const USERS: i32 = 1200;
const WRITERS: i32 = 4;

fn address(id: i32, version: i64) -> String {
    format!("  User{id}.V{version}@Example.COM")
}

/// A database of `n` users holding an application's addresses, stamped at
/// the version `normalize-emails` requires, and its journal directory.
fn users(prefix: &str, n: i32) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new(server(), prefix);
    let users: Vec<Document> = (0..n)
        .map(|id| doc! {"_id": id, "email": address(id, 0), "writes": 0_i64})
        .collect();
    db.insert("users", users);
    let journal = tempfile::tempdir().unwrap();
    crate::support::stamp(&db, journal.path(), "1.0.0");
    (db, journal)
}

/// Four application writers during execute runs of `normalize-emails`
/// SIGKILLed 20 times at random (at most 8 times per round on fresh data, so
/// that every kill lands mid-run) and resumed until they finish: no
/// application write is lost (every address is the application's last one,
/// or that one normalized - never one normalized from an older value), the
/// write guard did refuse batches (the test is not vacuous), and a plugin
/// that keeps state across batches never sees a refused batch's documents
/// twice in one state (normalize-emails would report a user colliding with
/// itself).
#[test]
fn application_writes_survive_an_execute_killed_twenty_times() {
    killed_twenty_times_under_writers(&[]);
}

/// The same without before-images: the guard is then the server's
/// projection of the field the pass reads, compared with what the plugin
/// was given (read-and-compare), not the before-images.
#[test]
fn application_writes_survive_an_execute_without_before_images_killed_twenty_times() {
    killed_twenty_times_under_writers(&["--no-before-images"]);
}

fn killed_twenty_times_under_writers(extra: &[&str]) {
    let file = plugin("normalize-emails");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--batch-size",
        "40",
        "--read-ahead",
        "4",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "300",
        // The writers keep writing after the passes: documents written after
        // their batch committed keep the application's address.
        "--allow-residue",
        "--json",
    ];
    args.extend(extra);
    let mut rng = rand::rng();
    let (mut kills, mut processes, mut rounds, mut conflicts, mut written, mut users_written) = (0, 0, 0, 0, 0, 0);
    while kills < 20 {
        rounds += 1;
        assert!(rounds <= 10, "20 kills did not land in 10 rounds");
        let (db, journal) = users("live", USERS);
        let writers = crate::writers::user_addresses(&db, USERS, WRITERS, address);
        let mut killed_this_round = 0;
        let last = loop {
            processes += 1;
            let mut child = command(&db, journal.path(), &args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if kills < 20 && killed_this_round < 8 {
                std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    kills += 1;
                    killed_this_round += 1;
                    continue;
                }
            }
            // The writers are still writing while the last process finishes.
            break child.wait_with_output().unwrap();
        };
        let (n, acknowledged) = writers.stop();
        written += n;
        users_written += acknowledged.len();
        assert!(
            last.status.success(),
            "the resumed run must finish under a steady write rate: {}",
            stderr(&last)
        );
        let report: serde_json::Value = serde_json::from_slice(&last.stdout).expect("--json report");
        let pass = &report["summary"]["passes"][0];
        conflicts += pass["conflicts"].as_u64().unwrap();
        assert_eq!(
            pass["reports"].get("conflict"),
            None,
            "normalize-emails saw a user twice in one state (a refused batch was not forgotten): {pass}"
        );
        assert_no_write_lost(&db, &acknowledged);
        verify_journal(journal.path());
    }
    assert!(
        conflicts > 0,
        "the writers never changed a document between its read and its commit: the test proves nothing"
    );
    eprintln!(
        "live {extra:?}: {written} application writes to {users_written} users during {processes} processes in \
         {rounds} rounds ({kills} SIGKILLs); {conflicts} documents refused by the write guard and processed again; 0 \
         application writes lost"
    );
}

/// Every user's address is the application's last one (`acknowledged`:
/// user -> the version of its last acknowledged write), or that one
/// normalized - never one normalized from an older value.
fn assert_no_write_lost(db: &TestDb, acknowledged: &std::collections::HashMap<i64, i64>) {
    let mut lost = Vec::new();
    for user in db.find_all("users") {
        let id = user.get_i32("_id").unwrap();
        let last = address(id, acknowledged.get(&i64::from(id)).copied().unwrap_or(0));
        let email = user.get_str("email").unwrap();
        if email != last && email != last.trim().to_lowercase() {
            lost.push(format!("user {id}: {email:?}, but the application last wrote {last:?}"));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} users written by the application lost their last write: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}

/// A plugin that declares it keeps no state across batches
/// (`lowercase-emails`, `keeps_state` false) goes on with the same instance
/// when the write guard refuses a batch: its run under four application
/// writers journals no `Resume` (no restart, no replay of the written
/// batches) however many documents were refused. `normalize-emails`, which
/// keeps state, is restarted and replayed after every refusal: a `Resume`
/// per refused batch. Neither loses an application write.
#[test]
fn a_plugin_that_keeps_no_state_is_not_restarted_after_a_refused_batch() {
    let run = |name: &str| -> (u64, usize, usize) {
        for _ in 0..5 {
            let (db, journal) = users("stateless", USERS);
            let writers = crate::writers::user_addresses(&db, USERS, WRITERS, address);
            let file = plugin(name);
            let out = command(
                &db,
                journal.path(),
                &[
                    "run",
                    file.to_str().unwrap(),
                    "--execute",
                    "--batch-size",
                    "40",
                    "--max-docs-per-sec",
                    "300",
                    "--allow-residue",
                    "--json",
                ],
            )
            .output()
            .unwrap();
            let (_, acknowledged) = writers.stop();
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            assert_no_write_lost(&db, &acknowledged);
            verify_journal(journal.path());
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json report");
            let conflicts = report["summary"]["passes"][0]["conflicts"].as_u64().unwrap();
            if conflicts == 0 {
                continue;
            }
            let entries = journal_export(journal.path(), report["run_id"].as_str().unwrap());
            let count = |kind: &str| entries.iter().filter(|e| e["kind"] == kind).count();
            return (conflicts, count("Conflict"), count("Resume"));
        }
        panic!("{name}: the writers never changed a document between its read and its commit in 5 runs");
    };
    let (conflicts, refused, resumes) = run("lowercase-emails");
    assert!(refused > 0, "{conflicts} conflicts but no Conflict entry");
    assert_eq!(
        resumes, 0,
        "lowercase-emails keeps no state, yet was restarted after {refused} refused batches"
    );
    let (stateful_conflicts, stateful_refused, stateful_resumes) = run("normalize-emails");
    assert!(
        stateful_resumes >= stateful_refused && stateful_refused > 0,
        "normalize-emails keeps state: a restart per refused batch ({stateful_refused} refused, {stateful_resumes} \
         restarts)"
    );
    eprintln!(
        "keeps no state: {conflicts} documents in {refused} batches refused, 0 restarts; keeps state: \
         {stateful_conflicts} documents in {stateful_refused} batches refused, {stateful_resumes} restarts"
    );
}

/// Pacing on the database's health: with a commit-latency target every
/// commit exceeds (1 ms), the run waits after each slow commit and still
/// finishes; the summary and `--json` give the figures. A replication-lag
/// target on a server that reports no secondary never waits.
#[test]
fn a_run_paced_on_commit_latency_waits_and_finishes() {
    let (db, journal) = users("live_paced", 200);
    let file = plugin("normalize-emails");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--batch-size",
        "20",
        "--max-commit-ms",
        "1",
        "--max-lag-ms",
        "1",
    ];
    let out = command(&db, journal.path(), &args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pacing = &report["summary"]["pacing"];
    assert_eq!(
        pacing["slow_commits"], 10,
        "every one of the 10 commits is slower than 1 ms: {pacing}"
    );
    assert!(pacing["waited_ms"].as_u64().unwrap() > 0, "{pacing}");
    assert!(pacing["slowest_commit_ms"].as_u64().unwrap() >= 1, "{pacing}");
    assert_eq!(pacing["lag_waits"], 0, "the test server has no secondary: {pacing}");
    let normalized = db
        .find_all("users")
        .iter()
        .filter(|u| u.get_str("email").unwrap() == u.get_str("email").unwrap().trim().to_lowercase())
        .count();
    assert_eq!(normalized, 200);
    // The terminal summary says it too.
    let (db, journal) = users("live_paced_text", 40);
    let out = command(&db, journal.path(), &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("paced: waited") && text.contains("2 times after a commit over --max-commit-ms"),
        "{text}"
    );
}

/// The resume path of the guard: a run killed inside its first batch's
/// transaction leaves that batch journaled as prepared; an application then
/// changes one of its documents. The resume must not apply the journaled
/// actions (computed from the old value): the guard refuses the batch, the
/// journal records the refusal, the document is processed in its new state,
/// and `journal replay` replays the written batches only, saying so.
#[test]
fn a_prepared_batch_whose_document_changed_is_not_applied_on_resume() {
    let (db, journal) = users("live_resume", 30);
    let file = plugin("normalize-emails");
    let args = ["run", file.to_str().unwrap(), "--execute", "--batch-size", "10"];
    let killed = command(&db, journal.path(), &args)
        .env("FAILPOINTS", "batch-before-writes=return")
        .output()
        .unwrap();
    assert_eq!(
        killed.status.code(),
        None,
        "killed by the failpoint: {}",
        stderr(&killed)
    );
    assert_eq!(
        db.find_one("users", doc! {"_id": 3}).unwrap().get_str("email").unwrap(),
        address(3, 0)
    );
    // The application writes user 3 while the run is down.
    crate::db::block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .collection::<Document>("users")
            .update_one(doc! {"_id": 3}, doc! {"$set": {"email": address(3, 7)}})
            .await
            .unwrap();
    });
    let out = command(&db, journal.path(), &args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["passes"][0]["conflicts"], 1, "{report}");
    assert_eq!(
        db.find_one("users", doc! {"_id": 3}).unwrap().get_str("email").unwrap(),
        address(3, 7).trim().to_lowercase(),
        "the application's address, normalized - not the one computed before it"
    );
    let run = report["run_id"].as_str().unwrap();
    let entries = journal_export(journal.path(), run);
    let conflicts: Vec<&serde_json::Value> = entries.iter().filter(|e| e["kind"] == "Conflict").collect();
    assert_eq!(conflicts.len(), 1, "{entries:?}");
    // The export names the refused batch and the document that changed.
    let refused = conflicts[0]["batch_seq"].as_u64().expect("the refused batch");
    assert!(
        entries
            .iter()
            .any(|e| e["seq"].as_u64() == Some(refused) && e["kind"] == "Prepared"),
        "batch_seq {refused} is a Prepared entry: {entries:?}"
    );
    assert_eq!(
        (&conflicts[0]["changed"], &conflicts[0]["pass"]),
        (&serde_json::json!([{"$numberInt": "3"}]), &serde_json::json!(0)),
        "{:?}",
        conflicts[0]
    );
    let replay = crate::support::journal_replay(journal.path(), run, &file, &["--no-cache"]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{text}{}", stderr(&replay));
    assert!(
        text.contains("4 of 4 batches identical (1 refused by the write guard, not replayed"),
        "{text}"
    );
    verify_journal(journal.path());
}

/// The guard in the writes' filters uses MongoDB's equality, under which
/// `{name: {$eq: "Ann"}}` also matches `name: ["Ann", "Bob"]`: an
/// application that turns a value the plugin read into an array holding it
/// must still be seen. The run is killed inside its first batch's
/// transaction (before any write); the application then makes account 3's
/// name an array; the resume must refuse the journaled batch (computed
/// from the plain name) and process account 3 as it is now.
#[test]
fn a_value_turned_into_an_array_holding_it_is_a_change() {
    // With before-images the guard is checked on them; without, on the
    // fields the pass reads, projected by the server: both must see the
    // change.
    for images in [true, false] {
        array_change_is_seen(images);
    }
}

fn array_change_is_seen(images: bool) {
    let db = TestDb::new(server(), "live_array");
    let accounts: Vec<Document> = (0..30_i64)
        .map(|id| doc! {"_id": id, "name": format!("Ann{id}"), "schema": 1})
        .collect();
    db.insert("accounts", accounts);
    let journal = tempfile::tempdir().unwrap();
    crate::support::stamp(&db, journal.path(), "1.0.0");
    let file = plugin("follow-shape");
    let mut args = vec!["run", file.to_str().unwrap(), "--execute", "--batch-size", "10"];
    if !images {
        args.push("--no-before-images");
    }
    let killed = command(&db, journal.path(), &args)
        .env("FAILPOINTS", "batch-before-writes=return")
        .output()
        .unwrap();
    assert_eq!(
        killed.status.code(),
        None,
        "killed by the failpoint: {}",
        stderr(&killed)
    );
    crate::db::block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .collection::<Document>("accounts")
            .update_one(doc! {"_id": 3_i64}, doc! {"$set": {"name": ["Ann3", "Bob"]}})
            .await
            .unwrap();
    });
    let out = command(&db, journal.path(), &args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["summary"]["passes"][0]["conflicts"], 1,
        "the array was not seen as a change (before-images {images}): {report}"
    );
    let account = db.find_one("accounts", doc! {"_id": 3_i64}).unwrap();
    assert_eq!(
        account.get_str("handle").unwrap(),
        "",
        "processed as it is now (a name that is no string gives an empty handle), not from the old name: {account}"
    );
    assert_eq!(
        account.get_array("name").unwrap().len(),
        2,
        "the application's write kept"
    );
    verify_journal(journal.path());
}

/// An application write between a batch's read and its commit must neither
/// be lost nor leave a stale before-image. The run is held after its first
/// plugin call (failpoint `plugin-called=sleep`) while the application
/// changes account 3 in a field the plugin does not read and account 5 in one
/// it reads: account 3 is migrated with the application's field kept (no
/// conflict: the fields the plugin read are unchanged), account 5 is
/// processed again from its new name, and a revert puts back the documents as
/// the application left them - so account 3's before-image holds its write.
#[cfg(feature = "failpoints")]
#[test]
fn a_write_between_read_and_commit_is_kept_and_in_the_before_image() {
    let db = TestDb::new(server(), "live_between");
    let accounts: Vec<Document> = (0..30_i64)
        .map(|id| doc! {"_id": id, "name": format!("Ann{id}"), "schema": 1})
        .collect();
    db.insert("accounts", accounts);
    let journal = tempfile::tempdir().unwrap();
    crate::support::stamp(&db, journal.path(), "1.0.0");
    let file = plugin("follow-shape");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--batch-size",
        "10",
        "--json",
    ];
    let child = command(&db, journal.path(), &args)
        .env("FAILPOINTS", "plugin-called=1*sleep(3000)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    crate::db::block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        let accounts = client.database(&db.name).collection::<Document>("accounts");
        accounts
            .update_one(
                doc! {"_id": 3_i64},
                doc! {"$set": {"note": "written by the application"}},
            )
            .await
            .unwrap();
        accounts
            .update_one(doc! {"_id": 5_i64}, doc! {"$set": {"name": "Zed5"}})
            .await
            .unwrap();
    });
    let with_writes = db.dump();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["summary"]["passes"][0]["conflicts"], 1,
        "only account 5 (a field the plugin read) is a conflict: {report}"
    );
    let three = db.find_one("accounts", doc! {"_id": 3_i64}).unwrap();
    assert_eq!(three.get_str("note").unwrap(), "written by the application", "{three}");
    assert_eq!(three.get_str("handle").unwrap(), "ann3", "{three}");
    let five = db.find_one("accounts", doc! {"_id": 5_i64}).unwrap();
    assert_eq!(
        five.get_str("handle").unwrap(),
        "zed5",
        "processed from its new name: {five}"
    );
    assert_eq!(five.get_i32("migrations").unwrap(), 1, "{five}");
    verify_journal(journal.path());

    let run = report["run_id"].as_str().unwrap();
    let out = command(&db, journal.path(), &["revert", run, "--execute", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let accounts = |dump: &[(String, Vec<Vec<u8>>)]| {
        dump.iter()
            .find(|(name, _)| name == "accounts")
            .map(|(_, docs)| docs.clone())
            .unwrap()
    };
    assert_eq!(
        accounts(&db.dump()),
        accounts(&with_writes),
        "the revert restores the documents as the application left them, its writes included"
    );
}
