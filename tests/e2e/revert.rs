//! `godwit revert`: before-images journaled by execute runs put every
//! document back - updated, inserted (with ids the host gave them), deleted,
//! multi-updated and upserted ones - documents changed since the run block
//! their own revert unless forced, and before-images survive a crash between
//! commit and journal (they travel in the progress marker).

use crate::db::{TestDb, server};
use crate::support::{command, godwit, plugin, run_ok, stderr, stdout, verify_journal};
use bson::{Document, doc};
use std::process::Stdio;
use std::time::Duration;

/// The documents of every non-empty collection but godwit's own, as raw bytes.
fn user_data(db: &TestDb) -> Vec<(String, Vec<Vec<u8>>)> {
    db.dump()
        .into_iter()
        .filter(|(name, docs)| name != "godwit_metadata" && !docs.is_empty())
        .collect()
}

fn orders_db() -> TestDb {
    let db = TestDb::new(server(), "revert");
    let statuses = ["open", "done", "cancelled", "open", "done"];
    db.insert(
        "orders",
        (0..120)
            .map(|i| {
                let mut d = doc! {"_id": i, "status": statuses[i as usize % 5], "total": i * 3};
                if i % 2 == 0 {
                    d.insert("note", format!("note {i}"));
                }
                d
            })
            .collect(),
    );
    db.insert("archive", vec![doc! {"_id": "old", "order": -1}]);
    let journal = tempfile::tempdir().unwrap();
    run_ok(&db, journal.path(), &["init", "--version", "2.0.0"]);
    db
}

fn version(db: &TestDb) -> Option<String> {
    db.find_one("godwit_metadata", doc! {"_id": "schema"})
        .and_then(|s| s.get_str("version").ok().map(str::to_string))
}

fn revert(db: &TestDb, journal: &std::path::Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = command(db, journal, &[&["revert"], args].concat())
        .arg("--json")
        .output()
        .unwrap();
    let json = serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr(&out))
}

#[test]
fn revert_restores_every_document_and_the_version() {
    let db = orders_db();
    let journal = tempfile::tempdir().unwrap();
    let before = user_data(&db);
    let file = plugin("reshape");
    let report = run_ok(
        &db,
        journal.path(),
        &["run", file.to_str().unwrap(), "--execute", "--batch-size", "16"],
    );
    let run = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(version(&db).as_deref(), Some("3.0.0"));
    let after = user_data(&db);
    assert_ne!(before, after);
    // Inserts without _id got ids the journal knows; 48 done orders archived.
    assert_eq!(db.find_all("archive").len(), 1 + 48);
    assert_eq!(db.find_all("totals").len(), 1, "the upsert created a document");

    // Export carries the before-images.
    let export = godwit(&["journal", "export", &run, "--journal", journal.path().to_str().unwrap()]);
    assert!(export.status.success(), "{}", stderr(&export));
    let lines: Vec<serde_json::Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let images: Vec<&serde_json::Value> = lines
        .iter()
        .flat_map(|l| l["images"].as_array().into_iter().flatten())
        .collect();
    // Per batch: 120 orders in the pass (24 deleted, 96 updated), 48 archive
    // inserts, and in finish the 48 open orders again (multi update) and 1 upsert.
    assert_eq!(images.len(), 120 + 48 + 48 + 1, "{} images", images.len());
    let deleted = images
        .iter()
        .find(|i| i["collection"] == "orders" && i["_id"] == serde_json::json!({"$numberInt": "2"}))
        .expect("order 2 (cancelled) has a before-image");
    assert_eq!(deleted["before"]["status"], "cancelled");
    assert!(deleted["after_sha256"].is_null(), "deleted by the run");
    // Each after-image hash - computed in memory from the before-image and
    // the writes where the evaluator answers, read back where it does not
    // (the multi update, the upsert) - is the hash of the document the
    // server holds now.
    use sha2::Digest;
    let stored: std::collections::HashMap<(String, String), String> = after
        .iter()
        .flat_map(|(collection, docs)| {
            docs.iter().map(move |bytes| {
                let id = bson::Document::from_reader(bytes.as_slice())
                    .unwrap()
                    .get("_id")
                    .cloned();
                let hash: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
                ((collection.clone(), format!("{id:?}")), hash)
            })
        })
        .collect();
    // The last image of each document holds its hash as the run left it.
    let mut last: std::collections::HashMap<(String, String), Option<&str>> = std::collections::HashMap::new();
    for image in &images {
        let id = bson::Bson::try_from(image["_id"].clone()).unwrap();
        let key = (
            image["collection"].as_str().unwrap().to_string(),
            format!("{:?}", Some(id)),
        );
        last.insert(key, image["after_sha256"].as_str());
    }
    let mut checked = 0;
    for (key, after_hash) in &last {
        let Some(after_hash) = after_hash else { continue };
        assert_eq!(
            stored.get(key).map(String::as_str),
            Some(*after_hash),
            "after-image of {key:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 96 + 48 + 1, "updated orders, archive inserts, the upsert");

    // Dry revert: counts, nothing written.
    let (code, dry, err) = revert(&db, journal.path(), &[&run]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(dry["restore"], 120 - 24 + 24, "{dry}");
    assert_eq!(dry["remove"], 48 + 1, "{dry}");
    assert_eq!(dry["conflicts"], 0);
    assert_eq!(dry["version_after"], "2.0.0");
    assert_eq!(user_data(&db), after, "a dry revert writes nothing");

    let (code, done, err) = revert(&db, journal.path(), &[&run, "--execute"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(user_data(&db), before, "the revert restores the data byte for byte");
    assert_eq!(version(&db).as_deref(), Some("2.0.0"));
    let revert_run = done["run_id"].as_str().unwrap().to_string();
    let verified = verify_journal(journal.path());
    assert!(verified.contains(&revert_run), "{verified}");
    let verify = command(
        &db,
        journal.path(),
        &["journal", "verify", &revert_run, "--uri", &db.uri],
    )
    .output()
    .unwrap();
    assert!(
        stdout(&verify).contains("matches the database's history"),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );

    // Again: everything is already as before; the version stays.
    let (code, again, err) = revert(&db, journal.path(), &[&run, "--execute"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["unchanged"], again["documents"], "{again}");
    assert!(
        again["version_note"].as_str().unwrap().contains("already reverted"),
        "{again}"
    );
    assert_eq!(again["restore"], 0);
    assert_eq!(user_data(&db), before);
}

#[test]
fn a_document_changed_after_the_run_blocks_only_its_own_revert_unless_forced() {
    let db = orders_db();
    let journal = tempfile::tempdir().unwrap();
    let before = user_data(&db);
    let file = plugin("reshape");
    let report = run_ok(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"]);
    let run = report["run_id"].as_str().unwrap().to_string();
    // The application edits order 3 after the migration.
    crate::db::block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .collection::<Document>("orders")
            .update_one(doc! {"_id": 3}, doc! {"$set": {"total": 999}})
            .await
            .unwrap();
    });

    let (code, dry, _) = revert(&db, journal.path(), &[&run]);
    assert_eq!(code, 15, "a dry revert with conflicts says it would be incomplete");
    assert_eq!(dry["conflicts"], 1);
    assert_eq!(dry["conflicts_listed"][0]["collection"], "orders");
    assert_eq!(dry["conflicts_listed"][0]["id"], "3");

    let out = command(&db, journal.path(), &["revert", &run, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    assert!(stdout(&out).contains("orders _id 3"), "{}", stdout(&out));
    let order3 = db.find_one("orders", doc! {"_id": 3}).unwrap();
    assert_eq!(order3.get_i32("total").unwrap(), 999, "the edited document is kept");
    assert!(order3.get_bool("reshaped").unwrap());
    assert_eq!(
        version(&db).as_deref(),
        Some("3.0.0"),
        "an incomplete revert keeps the version"
    );
    let order4 = db.find_one("orders", doc! {"_id": 4}).unwrap();
    assert!(!order4.contains_key("reshaped"), "the other documents are reverted");

    let (code, forced, err) = revert(&db, journal.path(), &[&run, "--execute", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(forced["conflicts"], 1);
    assert_eq!(forced["restore"], 1, "only order 3 was left: {forced}");
    assert_eq!(user_data(&db), before);
    assert_eq!(version(&db).as_deref(), Some("2.0.0"));
}

#[test]
fn refusals_name_the_run() {
    let db = orders_db();
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("reshape");
    let dry = run_ok(&db, journal.path(), &["run", file.to_str().unwrap()]);
    let (code, _, err) = revert(&db, journal.path(), &[dry["run_id"].as_str().unwrap()]);
    assert_eq!(code, 14, "{err}");
    assert!(err.contains("was a dry run"), "{err}");

    let fast = run_ok(
        &db,
        journal.path(),
        &["run", file.to_str().unwrap(), "--execute", "--no-before-images"],
    );
    let run = fast["run_id"].as_str().unwrap();
    let (code, _, err) = revert(&db, journal.path(), &[run]);
    assert_eq!(code, 14, "{err}");
    assert!(
        err.contains(&format!("cannot revert run {run}: it ran with --no-before-images")),
        "{err}"
    );

    let (code, _, err) = revert(&db, journal.path(), &["nope"]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("journal has no run nope"), "{err}");
}

/// Before-images of ObjectId-keyed documents are read as one range of the
/// `_id` index: in a sparse pass (one document in four to migrate) the range
/// holds more than it may read, and the rest are read by `$in`; in a dense
/// one it holds only the batch. Either way the journal holds an image of
/// exactly each document written - none of the range's others - and the
/// revert puts every document back.
#[test]
fn before_images_of_a_sparse_range_of_object_ids_are_exactly_the_written_documents() {
    let db = TestDb::new(server(), "revertrange");
    let oid = |i: u32| {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&1_700_000_000u32.to_be_bytes());
        bytes[8..].copy_from_slice(&i.to_be_bytes());
        bson::oid::ObjectId::from_bytes(bytes)
    };
    // 0..200 sparse (every fourth to increment), 200..300 dense.
    let docs: Vec<Document> = (0..300u32)
        .map(|i| doc! {"_id": oid(i), "n": if i >= 200 || i % 4 == 0 { 0_i64 } else { 7_i64 }})
        .collect();
    let wanted: Vec<bson::oid::ObjectId> = (0..300u32).filter(|i| *i >= 200 || i % 4 == 0).map(oid).collect();
    db.insert("counters", docs);
    let before = user_data(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let report = run_ok(
        &db,
        journal.path(),
        &["run", file.to_str().unwrap(), "--execute", "--batch-size", "10"],
    );
    let run = report["run_id"].as_str().unwrap().to_string();
    // A document the read left out would look changed to the write guard.
    assert_eq!(report["summary"]["passes"][0]["conflicts"], 0, "{report}");
    for d in db.find_all("counters") {
        let id = d.get_object_id("_id").unwrap();
        let expected = if wanted.contains(&id) { 1 } else { 7 };
        assert_eq!(d.get_i64("n").unwrap(), expected, "{d}");
    }
    let export = godwit(&["journal", "export", &run, "--journal", journal.path().to_str().unwrap()]);
    assert!(export.status.success(), "{}", stderr(&export));
    let mut imaged: Vec<String> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .flat_map(|l| l["images"].as_array().cloned().unwrap_or_default())
        .map(|image| {
            assert_eq!(image["before"]["n"], serde_json::json!({"$numberLong": "0"}), "{image}");
            image["_id"]["$oid"].as_str().unwrap().to_string()
        })
        .collect();
    imaged.sort();
    let mut expected: Vec<String> = wanted.iter().map(|id| id.to_hex()).collect();
    expected.sort();
    assert_eq!(
        imaged, expected,
        "one before-image per document written, none of the range's others"
    );
    let (code, done, err) = revert(&db, journal.path(), &[&run, "--execute"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(done["restore"], wanted.len(), "{done}");
    assert_eq!(user_data(&db), before);
}

/// The sequence number the run's progress marker has reached (-1: none yet).
fn marker_seq(db: &TestDb) -> i64 {
    db.find_one("godwit_metadata", doc! {"_id": {"$regex": "^progress:"}})
        .and_then(|m| m.get_i64("seq").ok())
        .unwrap_or(-1)
}

/// Before-images of a batch whose `Committed` entry a SIGKILL lost are
/// recovered from the progress marker: after kills and resumes, the revert
/// still restores everything.
#[test]
fn before_images_survive_kills_and_the_revert_restores_everything() {
    let db = TestDb::new(server(), "revertcrash");
    db.insert("counters", (0..300).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let before = user_data(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let mut kills = 0;
    let run = loop {
        let finished = crate::support::journal_runs(journal.path());
        if let Some(run) = finished.as_array().unwrap().iter().find(|h| h["status"] == "Finished") {
            break run["run_id"].as_str().unwrap().to_string();
        }
        let mut child = command(
            &db,
            journal.path(),
            &[
                "run",
                file.to_str().unwrap(),
                "--execute",
                "--batch-size",
                "3",
                "--lease",
                "3",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        // Killed once it has committed another 5 to 13 batches (the progress
        // marker's seq counts journal entries, about two per batch), not
        // after a fixed time: kills land mid-run however fast the machine.
        let target = marker_seq(&db) + 10 + 2 * (kills % 5);
        while child.try_wait().unwrap().is_none() {
            if marker_seq(&db) >= target {
                child.kill().unwrap();
                kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
    };
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 1));
    let (code, done, err) = revert(&db, journal.path(), &[&run, "--execute"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(done["restore"], 300, "{done}");
    assert_eq!(user_data(&db), before);
    assert!(kills >= 3, "only {kills} kills: the run was too fast for this test");
    eprintln!("revert after {kills} kills restored all 300 documents");
}

/// SIGTERM (or Ctrl-C) during `revert --execute` stops it between batches
/// with exit 130, like an interrupted run; running it again finishes it.
#[test]
fn an_interrupted_revert_exits_130_and_finishes_when_run_again() {
    let db = TestDb::new(server(), "revertstop");
    db.insert("counters", (0..300).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let before = user_data(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let run = run_ok(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let child = command(&db, journal.path(), &["revert", &run, "--execute", "--batch-size", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once it has restored a document, with ~299 batches to go.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !db.find_all("counters").iter().any(|d| d.get_i64("n").ok() == Some(0)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the revert never restored a document"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let errors: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(String::from)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!("revert of run {run} stopped by the operator")),
        "{errors:?}"
    );
    let restored = db
        .find_all("counters")
        .iter()
        .filter(|d| d.get_i64("n").ok() == Some(0))
        .count();
    assert!(restored < 300, "stopped before the end ({restored} restored)");
    let (code, done, err) = revert(&db, journal.path(), &[&run, "--execute"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        done["restore"].as_u64().unwrap() + done["unchanged"].as_u64().unwrap(),
        300,
        "{done}"
    );
    assert_eq!(user_data(&db), before);
}

/// True if `s` starts with an RFC 3339 UTC time to the second (`2026-12-01T18:57:31Z`).
fn starts_with_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..20].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Issue 20 item 9: `-q` printed the run summary, times printed as
/// `+00:00:00`, and `status` did not show that a history entry is a revert.
#[test]
fn quiet_run_prints_nothing_times_are_rfc3339_and_status_shows_the_revert() {
    let db = orders_db();
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("reshape");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "-q prints nothing on success");

    let journal_arg = journal.path().to_str().unwrap();
    let list = godwit(&["journal", "list", "--journal", journal_arg]);
    assert!(list.status.success(), "{}", stderr(&list));
    let list = stdout(&list);
    let started = list.split("started ").nth(1).expect("journal list shows the start");
    assert!(starts_with_rfc3339_utc(started), "{list}");
    let run = list.split_whitespace().next().unwrap().to_string();

    let (code, _, err) = revert(&db, journal.path(), &[&run, "--execute"]);
    assert_eq!(code, 0, "{err}");
    let status = command(&db, journal.path(), &["status"]).output().unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let status = stdout(&status);
    assert!(status.contains(&format!("reverts: {run}")), "{status}");
    assert!(!status.contains("+00:00"), "{status}");
    let finished: Vec<&str> = status.split("  finished ").skip(1).collect();
    assert_eq!(finished.len(), 3, "init, the run, its revert: {status}");
    assert!(finished.iter().all(|f| starts_with_rfc3339_utc(f)), "{status}");
}
