//! Seed 001, datalab's versioned upgrader: a 0.7.0 baseline stamp, then
//! `godwit upgrade` runs the 0.8.0 step (relationships pinned from `item_id`
//! to `refcode`, unresolvable ones deprecated) and the database reaches 0.8.0
//! with history. Then the same with datalab's own version document adopted
//! (`--version-record database_metadata:datalab_schema_version`): what
//! datalab's `get_db_version()` reads, its history in its own shape, an
//! application `auto_stamp` during a run, and the cases of datalab's
//! `tests/server/test_upgrade.py` that apply to what godwit does.

use super::{figures, init, json_documents, kill_midway, report_count, run_steps};
use crate::db::{TestDb, block_on, server};
use crate::support::{command, plugin, stderr, stdout, verify_journal};
use bson::{Bson, DateTime, Document, doc};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const ITEMS: u32 = 1_500;

fn item_id(i: u32) -> String {
    format!("sample-{i:05}")
}

/// Items; one in 40 has no refcode yet (cannot be a pin target). Each item has
/// 0-3 relationships: to existing items, to deleted ones (`deleted-*`), some
/// already pinned, some collection links without `item_id`.
fn generate(db: &TestDb) {
    let items: Vec<Document> = (0..ITEMS)
        .map(|i| {
            let mut item = doc! {"_id": super::oid(i), "item_id": item_id(i), "type": "samples"};
            if i % 40 != 7 {
                item.insert("refcode", format!("grey:{i:06X}"));
            }
            let relationships: Vec<Document> = (0..i % 4)
                .map(|k| {
                    let target = (i * 31 + k * 17) % ITEMS;
                    match (i + k) % 9 {
                        0 => doc! {"item_id": format!("deleted-{i}"), "relation": "parent", "type": "samples"},
                        1 => doc! {"collection_id": "batch-2024", "type": "collections"},
                        2 if target % 40 != 7 => {
                            doc! {"item_id": item_id(target), "refcode": format!("grey:{target:06X}"), "type": "samples"}
                        }
                        _ => doc! {"item_id": item_id(target), "relation": "is_part_of", "type": "samples"},
                    }
                })
                .collect();
            item.insert("relationships", relationships);
            item
        })
        .collect();
    db.insert("items", items);
}

/// The reference model: (pinned, deprecated, items updated) and each item's
/// expected relationships.
fn model(db: &TestDb) -> ((u64, u64, u64), HashMap<Bson, Vec<Bson>>) {
    let items = db.find_all("items");
    let refcodes: HashMap<String, String> = items
        .iter()
        .filter_map(|i| {
            Some((
                i.get_str("item_id").ok()?.to_string(),
                i.get_str("refcode").ok()?.to_string(),
            ))
        })
        .collect();
    let (mut pinned, mut deprecated, mut updated) = (0, 0, 0);
    let mut expected = HashMap::new();
    for item in &items {
        let mut changed = false;
        let rels: Vec<Bson> = item
            .get_array("relationships")
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.as_document().unwrap().clone();
                if let (Ok(target), false) = (r.get_str("item_id"), r.contains_key("refcode")) {
                    match refcodes.get(target) {
                        Some(code) => {
                            r.insert("refcode", code.clone());
                            pinned += 1;
                        }
                        None => {
                            r.insert("deprecated", true);
                            deprecated += 1;
                        }
                    }
                    changed = true;
                }
                Bson::Document(r)
            })
            .collect();
        updated += u64::from(changed);
        expected.insert(item.get("_id").unwrap().clone(), rels);
    }
    ((pinned, deprecated, updated), expected)
}

#[test]
fn datalab_upgrade_from_the_0_7_0_baseline_to_0_8_0_interrupted_and_resumed() {
    let db = TestDb::new(server(), "seed_datalab");
    generate(&db);
    let journal = tempfile::tempdir().unwrap();
    let chain = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin("datalab-pin-refcodes"),
        chain.path().join("datalab-pin-refcodes.wasm"),
    )
    .unwrap();
    let dir = chain.path().to_str().unwrap();
    let ((pinned, deprecated, updated), expected) = model(&db);
    assert!(pinned > 500 && deprecated > 100, "the data exercises both outcomes");

    // datalab's `admin.initialise-schema-version` for an existing deployment.
    init(&db, journal.path(), "0.7.0");
    let snapshot = db.dump();

    // Dry upgrade: the UpgradeAction descriptions with their counts.
    let steps = run_steps(&db, journal.path(), &["upgrade", dir]);
    assert_eq!(steps.len(), 1, "one pending step: {steps:#?}");
    let dry = &steps[0];
    assert_eq!(dry["version"], "0.8.0");
    let actions = &dry["summary"]["finish"]["reports"]["upgrade_action"]["samples"];
    assert_eq!(
        actions[0]["message"],
        format!("Pin {pinned} item_id reference(s) to their refcode (collection items, update)")
    );
    assert_eq!(
        actions[1]["message"],
        format!("Deprecate {deprecated} unresolvable item_id reference(s) (collection items, update)")
    );
    assert_eq!(
        figures(dry),
        serde_json::json!({"items_updated": updated, "pinned": pinned, "deprecated": deprecated})
    );
    assert_eq!(report_count(dry, "deprecated"), deprecated);
    assert_eq!(dry["summary"]["passes"][0]["updates"], updated);
    assert_eq!(db.dump(), snapshot, "a dry upgrade writes nothing");
    eprintln!("datalab dry upgrade: {}", figures(dry));

    // Execute, killed midway through the items, then the same command again.
    let marker = kill_midway(
        &db,
        journal.path(),
        &[
            "upgrade",
            dir,
            "--execute",
            "--batch-size",
            "20",
            "--max-docs-per-sec",
            "300",
            "--lease",
            "3",
        ],
        |m| m.get_i64("seq").unwrap_or(0) >= 15,
    );
    eprintln!("datalab upgrade killed at {marker}");
    assert_eq!(
        db.find_one("godwit_metadata", doc! {"_id": "schema"})
            .unwrap()
            .get_str("version")
            .unwrap(),
        "0.7.0",
        "not stamped while unfinished"
    );
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let exec = json_documents(&stdout(&out)).remove(0);
    assert_eq!(exec["resumed"], true);
    assert_eq!(exec["stamped_version"], "0.8.0");
    assert_eq!(
        figures(&exec),
        figures(dry),
        "applied exactly what the dry run announced"
    );

    for item in db.find_all("items") {
        let want = &expected[item.get("_id").unwrap()];
        assert_eq!(
            item.get_array("relationships").unwrap(),
            want,
            "item {}",
            item.get_str("item_id").unwrap()
        );
    }
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "0.8.0");
    let history: Vec<(&str, &str)> = schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| {
            let h = h.as_document().unwrap();
            (h.get_str("version").unwrap(), h.get_str("plugin").unwrap_or("init"))
        })
        .collect();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].0, "0.7.0");
    assert_eq!(history[1], ("0.8.0", "datalab-pin-refcodes"));

    // At the head: a second upgrade does nothing.
    let after = db.dump();
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is at version 0.8.0, the head"),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.dump(), after);
    verify_journal(journal.path());
}

// --- datalab's own version document, adopted ---------------------------------
//
// Upstream facts (datalab-org/datalab, `pydatalab/src/pydatalab/upgrade.py`,
// PR #1833): the version lives in the collection `database_metadata`
// (METADATA_COLLECTION), document `_id: "datalab_schema_version"`, field
// `version` (a string); every write `$set`s it and `$push`es to `history`
// `{version, action: "upgrade" | "initialise" | "auto_stamp", timestamp,
// datalab_version}`, upserting.

const METADATA: &str = "database_metadata";
const SCHEMA_VERSION_ID: &str = "datalab_schema_version";
const RECORD: &str = "database_metadata:datalab_schema_version";

/// `godwit ARGS` with datalab's version document adopted: the flags an
/// operator passes (or sets in godwit.toml, see the config test below).
fn adopted(db: &TestDb, journal: &Path, args: &[&str], datalab_version: &str) -> Command {
    let mut cmd = command(db, journal, args);
    cmd.args(["--version-record", RECORD, "--history-set"])
        .arg(format!("datalab_version={datalab_version}"));
    cmd
}

/// `adopted(...)` with `--json`, expected to succeed: its JSON documents.
fn adopted_ok(db: &TestDb, journal: &Path, args: &[&str], datalab_version: &str) -> Vec<serde_json::Value> {
    let out = adopted(db, journal, args, datalab_version)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "godwit {args:?}: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    json_documents(&stdout(&out))
}

/// What datalab's `DatabaseUpgrader.get_db_version()` returns: the document's
/// `version` when present and not empty, else none. A pure read.
fn get_db_version(db: &TestDb) -> Option<String> {
    let doc = db.find_one(METADATA, doc! {"_id": SCHEMA_VERSION_ID})?;
    doc.get_str("version")
        .ok()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn datalab_history(db: &TestDb) -> Vec<Document> {
    db.find_one(METADATA, doc! {"_id": SCHEMA_VERSION_ID})
        .and_then(|d| d.get_array("history").ok().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.as_document().unwrap().clone())
        .collect()
}

/// A history entry as datalab's `update_db_version` writes it.
fn datalab_entry(version: &str, action: &str, datalab_version: &str) -> Document {
    doc! {"version": version, "action": action, "timestamp": DateTime::now(), "datalab_version": datalab_version}
}

/// datalab's `update_db_version(version, action=...)`, as the application
/// (another client) runs it: `$set` + `$push`, upsert.
fn datalab_writes(db: &TestDb, version: &str, action: &str, datalab_version: &str) {
    let entry = datalab_entry(version, action, datalab_version);
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .collection::<Document>(METADATA)
            .update_one(
                doc! {"_id": SCHEMA_VERSION_ID},
                doc! {"$set": {"version": version}, "$push": {"history": entry}},
            )
            .upsert(true)
            .await
            .unwrap();
    });
}

fn godwit_schema(db: &TestDb) -> Option<Document> {
    db.find_one("godwit_metadata", doc! {"_id": "schema"})
}

/// A plugin directory holding `plugins` (a version chain).
fn chain_of(plugins: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in plugins {
        std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

#[test]
fn datalab_operator_adopts_datalab_version_document_upgrades_to_0_8_0_and_reverts() {
    let db = TestDb::new(server(), "seed_datalab_adopt");
    generate(&db);
    let journal = tempfile::tempdir().unwrap();
    let chain = chain_of(&["datalab-pin-refcodes"]);
    let dir = chain.path().to_str().unwrap();
    let ((_, _, updated), expected) = model(&db);
    // The deployment as datalab left it: initialised at 0.7.0 by
    // `admin.initialise-schema-version`, then a 0.7.1 server with no upgrade
    // in range auto-stamped at startup. godwit has never run here.
    datalab_writes(&db, "0.7.0", "initialise", "0.7.0");
    datalab_writes(&db, "0.7.1", "auto_stamp", "0.7.1");
    let before = datalab_history(&db);

    // `status` reads the version datalab reads, and says why godwit's differs.
    let status = adopted(&db, journal.path(), &["status", "--plugins", dir], "0.8.0")
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    assert!(text.contains("database seed_datalab_adopt"), "{text}");
    assert!(text.contains("no schema version"), "godwit's own: {text}");
    assert!(text.contains("version record seed_datalab_adopt_"), "{text}");
    assert!(
        text.contains("database_metadata {_id: \"datalab_schema_version\"}: version 0.7.1"),
        "{text}"
    );
    assert!(
        text.contains("the two versions differ: the application set it (action auto_stamp at"),
        "{text}"
    );
    assert!(
        text.contains("0.8.0  datalab-pin-refcodes"),
        "pending from 0.7.1: {text}"
    );
    assert!(text.contains("auto_stamp") && text.contains("application"), "{text}");

    // Dry upgrade: nothing written, datalab's document included.
    let snapshot = db.dump();
    let steps = adopted_ok(&db, journal.path(), &["upgrade", dir], "0.8.0");
    assert_eq!(steps.len(), 1, "{steps:#?}");
    assert_eq!(steps[0]["summary"]["passes"][0]["updates"], updated);
    assert_eq!(db.dump(), snapshot, "a dry upgrade writes nothing");

    let exec = adopted_ok(&db, journal.path(), &["upgrade", dir, "--execute"], "0.8.0").remove(0);
    assert_eq!(exec["stamped_version"], "0.8.0");
    let run = exec["run_id"].as_str().unwrap().to_string();
    for item in db.find_all("items") {
        assert_eq!(
            item.get_array("relationships").unwrap(),
            &expected[item.get("_id").unwrap()]
        );
    }

    // What datalab reads now, and its history: its own entries untouched,
    // then godwit's in datalab's shape plus godwit's keys.
    assert_eq!(get_db_version(&db).as_deref(), Some("0.8.0"));
    let history = datalab_history(&db);
    assert_eq!(history.len(), 3, "{history:#?}");
    assert_eq!(history[..2], before[..], "datalab's entries kept as they were");
    let ours = &history[2];
    let keys: Vec<&str> = ours.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "version",
            "action",
            "timestamp",
            "datalab_version",
            "godwit_run_id",
            "godwit_plugin",
            "godwit_sha256",
            "godwit_version"
        ]
    );
    assert_eq!(ours.get_str("version").unwrap(), "0.8.0");
    assert_eq!(ours.get_str("action").unwrap(), "upgrade");
    assert!(
        ours.get_datetime("timestamp").is_ok(),
        "a UTC datetime, as datalab writes"
    );
    assert_eq!(ours.get_str("datalab_version").unwrap(), "0.8.0");
    assert_eq!(ours.get_str("godwit_run_id").unwrap(), run);
    assert_eq!(ours.get_str("godwit_plugin").unwrap(), "datalab-pin-refcodes");
    assert_eq!(ours.get_str("godwit_sha256").unwrap(), exec["sha256"].as_str().unwrap());
    // godwit's schema document, the trust anchor, stamped in the same transaction.
    let schema = godwit_schema(&db).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "0.8.0");
    let runs: Vec<&str> = schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| h.as_document().unwrap().get_str("run_id").unwrap())
        .collect();
    assert_eq!(runs, [run.as_str()]);

    // At the head: nothing more, and status no longer reports a difference.
    let after = db.dump();
    let out = adopted(&db, journal.path(), &["upgrade", dir, "--execute"], "0.8.0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is at version 0.8.0, the head"),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.dump(), after);
    let status = adopted(&db, journal.path(), &["status"], "0.8.0").output().unwrap();
    assert!(!stdout(&status).contains("differ"), "{}", stdout(&status));

    // Revert sets datalab's version back too, with a "revert" entry.
    let out = adopted(&db, journal.path(), &["revert", &run, "--execute"], "0.8.0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(get_db_version(&db).as_deref(), Some("0.7.1"));
    let history = datalab_history(&db);
    assert_eq!(history.len(), 4);
    assert_eq!(history[3].get_str("action").unwrap(), "revert");
    assert_eq!(history[3].get_str("version").unwrap(), "0.7.1");
    assert_eq!(history[3].get_str("godwit_reverts").unwrap(), run);
    // godwit's own document goes back to what godwit had before its run: none.
    assert_eq!(godwit_schema(&db).unwrap().get("version"), Some(&Bson::Null));
    // And the next upgrade starts again from datalab's 0.7.1.
    let again = adopted_ok(&db, journal.path(), &["upgrade", dir, "--execute"], "0.8.0").remove(0);
    assert_eq!(again["stamped_version"], "0.8.0");
    assert_eq!(get_db_version(&db).as_deref(), Some("0.8.0"));

    // A datalab 0.8.1 server auto-stamps: reverting godwit's run now would
    // overwrite datalab's version - refused before anything is put back.
    datalab_writes(&db, "0.8.1", "auto_stamp", "0.8.1");
    let before = db.dump();
    let again = again["run_id"].as_str().unwrap();
    let out = adopted(&db, journal.path(), &["revert", again, "--execute"], "0.8.0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0.8.0 (set by run ") && stderr(&out).contains("now 0.8.1, action auto_stamp"),
        "{}",
        stderr(&out)
    );
    assert_eq!(db.dump(), before, "nothing put back, nothing stamped");
    verify_journal(journal.path());
}

#[test]
fn datalab_auto_stamp_during_a_run_is_not_overwritten() {
    let db = TestDb::new(server(), "seed_datalab_moved");
    generate(&db);
    datalab_writes(&db, "0.7.0", "initialise", "0.7.0");
    let journal = tempfile::tempdir().unwrap();
    let pause = journal.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let file = plugin("datalab-pin-refcodes");
    let file = file.to_str().unwrap();
    let mut child = adopted(
        &db,
        journal.path(),
        &["run", file, "--execute", "--pause-file", pause.to_str().unwrap()],
        "0.8.0",
    )
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let paused = line.contains("paused:");
        seen.push(line);
        if paused {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("paused:")), "{seen:?}");
    // A datalab 0.7.2 server starts meanwhile and auto-stamps (no upgrade of
    // its own lies in range).
    datalab_writes(&db, "0.7.2", "auto_stamp", "0.7.2");
    let moved = db.find_one(METADATA, doc! {"_id": SCHEMA_VERSION_ID}).unwrap();
    std::fs::remove_file(&pause).unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(9), "{rest:?}");
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{rest:?}");
    assert!(
        errors[0].contains("the version in seed_datalab_moved_")
            && errors[0].contains("database_metadata {_id: \"datalab_schema_version\"} changed while run")
            && errors[0].contains("0.7.0 when it was checked, now 0.7.2"),
        "{errors:?}"
    );
    // Neither document written: datalab's is the application's, godwit's absent.
    assert_eq!(db.find_one(METADATA, doc! {"_id": SCHEMA_VERSION_ID}).unwrap(), moved);
    assert_eq!(get_db_version(&db).as_deref(), Some("0.7.2"));
    assert!(godwit_schema(&db).is_none(), "both or neither");

    // The operator reads why (status), then runs the same command again:
    // ^0.7 still holds for 0.7.2, and the stamp follows datalab's entry.
    let status = adopted(&db, journal.path(), &["status"], "0.8.0").output().unwrap();
    assert!(
        stdout(&status).contains("the application set it (action auto_stamp at"),
        "{}",
        stdout(&status)
    );
    let out = adopted(&db, journal.path(), &["run", file, "--execute"], "0.8.0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let actions: Vec<String> = datalab_history(&db)
        .iter()
        .map(|h| format!("{} {}", h.get_str("version").unwrap(), h.get_str("action").unwrap()))
        .collect();
    assert_eq!(actions, ["0.7.0 initialise", "0.7.2 auto_stamp", "0.8.0 upgrade"]);
    assert_eq!(get_db_version(&db).as_deref(), Some("0.8.0"));
}

/// Killed after both documents were stamped (one transaction) and before
/// the journal recorded it: the same command again finds its own stamp and
/// adds no second entry to either history.
#[cfg(feature = "failpoints")]
#[test]
fn datalab_stamp_killed_before_the_journal_is_not_written_twice() {
    let db = TestDb::new(server(), "seed_datalab_crash");
    generate(&db);
    datalab_writes(&db, "0.7.0", "initialise", "0.7.0");
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("datalab-pin-refcodes");
    let args = ["run", file.to_str().unwrap(), "--execute"];
    let killed = adopted(&db, journal.path(), &args, "0.8.0")
        .env("FAILPOINTS", "stamp-before-journal=return")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "killed after its stamp");
    assert_eq!(
        get_db_version(&db).as_deref(),
        Some("0.8.0"),
        "both stamped before the kill"
    );
    let out = adopted(&db, journal.path(), &args, "0.8.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let actions: Vec<String> = datalab_history(&db)
        .iter()
        .map(|h| format!("{} {}", h.get_str("version").unwrap(), h.get_str("action").unwrap()))
        .collect();
    assert_eq!(actions, ["0.7.0 initialise", "0.8.0 upgrade"]);
    assert_eq!(godwit_schema(&db).unwrap().get_array("history").unwrap().len(), 1);
}

#[test]
fn a_godwit_entry_godwit_did_not_write_in_datalab_history_is_not_trusted() {
    let db = TestDb::new(server(), "seed_datalab_forged");
    generate(&db);
    let journal = tempfile::tempdir().unwrap();
    let chain = chain_of(&["datalab-pin-refcodes"]);
    let dir = chain.path().to_str().unwrap();
    datalab_writes(&db, "0.7.0", "initialise", "0.7.0");
    // Someone writes an entry claiming godwit ran 0.8.0.
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        let forged =
            doc! {"version": "0.7.5", "action": "upgrade", "timestamp": DateTime::now(), "godwit_run_id": "forged"};
        client
            .database(&db.name)
            .collection::<Document>(METADATA)
            .update_one(
                doc! {"_id": SCHEMA_VERSION_ID},
                doc! {"$set": {"version": "0.7.5"}, "$push": {"history": forged}},
            )
            .await
            .unwrap();
    });
    let before = db.dump();
    let out = adopted(&db, journal.path(), &["upgrade", dir, "--execute"], "0.8.0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds an entry of godwit run forged (version 0.7.5) that godwit's schema document"),
        "{}",
        stderr(&out)
    );
    assert_eq!(db.dump(), before, "nothing written");
    // A version moved without its history entry is not trusted either.
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .collection::<Document>(METADATA)
            .replace_one(
                doc! {"_id": SCHEMA_VERSION_ID},
                doc! {"version": "0.7.9", "history": [datalab_entry("0.7.0", "initialise", "0.7.0")]},
            )
            .await
            .unwrap();
    });
    let out = adopted(&db, journal.path(), &["upgrade", dir, "--execute"], "0.8.0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("says version 0.7.9, but its last history entry set 0.7.0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(get_db_version(&db).as_deref(), Some("0.7.9"), "not overwritten");
}

/// A plugin that declares the adopted record's collection among its writes
/// (to set the version datalab reads) is refused when the run starts, in
/// one line naming the rule, before anything is written; the same plugin
/// without the record adopted is just another migration.
#[test]
fn a_plugin_cannot_write_the_adopted_version_record() {
    let db = TestDb::new(server(), "seed_datalab_forge");
    generate(&db);
    datalab_writes(&db, "0.7.0", "initialise", "0.7.0");
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("forge-version-record");
    let before = db.dump();
    let out = adopted(
        &db,
        journal.path(),
        &["run", file.to_str().unwrap(), "--execute"],
        "0.8.0",
    )
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("forge-version-record")
            && err.contains("collection `database_metadata` holds the application's version record this run stamps")
            && err.contains("--version-record"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(db.dump(), before, "nothing written");
    assert_eq!(get_db_version(&db).as_deref(), Some("0.7.0"));
}

#[test]
fn the_version_record_comes_from_godwit_toml_like_the_other_settings() {
    let db = TestDb::new(server(), "seed_datalab_config");
    let journal = tempfile::tempdir().unwrap();
    let config = journal.path().join("godwit.toml");
    std::fs::write(
        &config,
        format!("version_record = \"{RECORD}\"\nhistory_set = [\"datalab_version=0.7.0\"]\n"),
    )
    .unwrap();
    let out = command(&db, journal.path(), &["init", "--version", "0.7.0"])
        .env("GODWIT_CONFIG", &config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get_db_version(&db).as_deref(), Some("0.7.0"));
    let history = datalab_history(&db);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].get_str("action").unwrap(), "initialise");
    assert_eq!(history[0].get_str("datalab_version").unwrap(), "0.7.0");
    // A bad record is a bad command line, found before any write.
    let out = command(
        &db,
        journal.path(),
        &["status", "--version-record", "database_metadata"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not COLLECTION:ID"), "{}", stderr(&out));
}

// --- datalab's own tests (`pydatalab/tests/server/test_upgrade.py`) ----------
//
// Same inputs and expected outputs where they apply to what godwit does.
// `_make_marker_upgrade(v)` is a godwit plugin at version v whose marker is
// an `items` field (`tests/plugins/datalab-marker-*`); an explicit
// `target_version` is the head of the plugin directory; `--from-version` on an
// unstamped database is `godwit init --version` first. Not carried over:
// `code_version()` and the startup check (`check_and_stamp_version`, the
// server's own code), preconditions (`NoDocumentsIn`: godwit has none; a
// plugin refuses in its `begin`), and upgrading an unstamped database to a
// target with no upgrade in range (godwit never stamps a version no plugin reaches).

const MARKED: u32 = 5;

fn marker_items(db: &TestDb) {
    db.insert(
        "items",
        (0..MARKED).map(|i| doc! {"_id": i as i64, "type": "samples"}).collect(),
    );
}

fn marked(db: &TestDb, field: &str) -> usize {
    db.find_all("items").iter().filter(|d| d.contains_key(field)).count()
}

fn init_adopted(db: &TestDb, journal: &Path, version: &str, force: bool) -> std::process::Output {
    let mut args = vec!["init", "--version", version];
    if force {
        args.push("--force");
    }
    adopted(db, journal, &args, "test").output().unwrap()
}

#[test]
fn datalab_test_upgrade_initialise_cases() {
    // test_unstamped_db_reads_as_none: reading writes nothing.
    let db = TestDb::new(server(), "dl_unstamped");
    let journal = tempfile::tempdir().unwrap();
    let status = adopted_ok(&db, journal.path(), &["status"], "test").remove(0);
    assert_eq!(status["version_record"]["version"], serde_json::Value::Null);
    assert_eq!(get_db_version(&db), None);
    assert!(db.find_one(METADATA, doc! {"_id": SCHEMA_VERSION_ID}).is_none());

    // test_update_and_read_roundtrip: 1.2.3.
    let out = init_adopted(&db, journal.path(), "1.2.3", false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get_db_version(&db).as_deref(), Some("1.2.3"));

    // test_initialise_records_version_without_running_upgrades: 99.0.0
    // registered, initialise(version="50.0.0") -> 50.0.0, marker not written.
    let db = TestDb::new(server(), "dl_init50");
    marker_items(&db);
    let out = init_adopted(&db, journal.path(), "50.0.0", false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get_db_version(&db).as_deref(), Some("50.0.0"));
    assert_eq!(marked(&db, "m99"), 0);

    // test_initialise_refuses_when_already_initialised: 1.0.0, then 2.0.0
    // refused (1.0.0 stays), then forced -> 2.0.0.
    let db = TestDb::new(server(), "dl_init_twice");
    assert!(init_adopted(&db, journal.path(), "1.0.0", false).status.success());
    let out = init_adopted(&db, journal.path(), "2.0.0", false);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already stamped at version 1.0.0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(get_db_version(&db).as_deref(), Some("1.0.0"));
    let out = init_adopted(&db, journal.path(), "2.0.0", true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get_db_version(&db).as_deref(), Some("2.0.0"));
    let actions: Vec<String> = datalab_history(&db)
        .iter()
        .map(|h| format!("{} {}", h.get_str("version").unwrap(), h.get_str("action").unwrap()))
        .collect();
    assert_eq!(actions, ["1.0.0 initialise", "2.0.0 initialise"]);
}

#[test]
fn datalab_test_upgrade_upgrade_cases() {
    let journal = tempfile::tempdir().unwrap();
    let chain99 = chain_of(&["datalab-marker-99"]);
    let dir99 = chain99.path().to_str().unwrap();

    // test_dry_run_makes_no_changes: stamped 98.0.0, 99.0.0 registered.
    let db = TestDb::new(server(), "dl_dry");
    marker_items(&db);
    datalab_writes(&db, "98.0.0", "upgrade", "98.0.0");
    let snapshot = db.dump();
    let steps = adopted_ok(&db, journal.path(), &["upgrade", dir99], "test");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["version"], "99.0.0");
    assert_eq!(steps[0]["summary"]["passes"][0]["updates"], MARKED);
    assert_eq!(db.dump(), snapshot);
    assert_eq!(get_db_version(&db).as_deref(), Some("98.0.0"));

    // test_upgrade_applies_and_records_version.
    adopted_ok(&db, journal.path(), &["upgrade", dir99, "--execute"], "test");
    assert_eq!(marked(&db, "m99"), MARKED as usize);
    assert_eq!(get_db_version(&db).as_deref(), Some("99.0.0"));

    // test_upgrade_noop_when_already_at_target.
    let after = db.dump();
    let out = adopted(&db, journal.path(), &["upgrade", dir99, "--execute"], "test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is at version 99.0.0, the head"),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.dump(), after);

    // test_upgrade_unstamped_with_pending_raises: nothing applied or recorded.
    let db = TestDb::new(server(), "dl_unstamped_pending");
    marker_items(&db);
    let out = adopted(&db, journal.path(), &["upgrade", dir99, "--execute"], "test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(stderr(&out).contains("godwit init --version X"), "{}", stderr(&out));
    assert_eq!(marked(&db, "m99"), 0);
    assert_eq!(get_db_version(&db), None);

    // test_upgrade_unstamped_with_from_version_applies: from 98.0.0.
    assert!(init_adopted(&db, journal.path(), "98.0.0", false).status.success());
    adopted_ok(&db, journal.path(), &["upgrade", dir99, "--execute"], "test");
    assert_eq!(marked(&db, "m99"), MARKED as usize);
    assert_eq!(get_db_version(&db).as_deref(), Some("99.0.0"));

    // test_from_version_contradicting_stamp_refuses: a stamped 98.0.0 is not
    // re-declared as 0.5.0 (godwit: init without --force).
    let db = TestDb::new(server(), "dl_contradict");
    marker_items(&db);
    datalab_writes(&db, "98.0.0", "upgrade", "98.0.0");
    let out = init_adopted(&db, journal.path(), "0.5.0", false);
    assert!(!out.status.success());
    assert_eq!(marked(&db, "m99"), 0);
    assert_eq!(get_db_version(&db).as_deref(), Some("98.0.0"));
}

#[test]
fn datalab_test_upgrade_history_audit_trail_and_ordering() {
    // test_history_audit_trail: 98.5.0 and 99.0.0 registered, initialise
    // 98.0.0, upgrade to 99.0.0.
    let db = TestDb::new(server(), "dl_audit");
    marker_items(&db);
    let journal = tempfile::tempdir().unwrap();
    let chain = chain_of(&["datalab-marker-99", "datalab-marker-98-5"]);
    let dir = chain.path().to_str().unwrap();
    assert!(init_adopted(&db, journal.path(), "98.0.0", false).status.success());
    // test_collect_upgrades, transposed: pending from the recorded version,
    // in version order (not file order).
    let status = adopted_ok(&db, journal.path(), &["status", "--plugins", dir], "test").remove(0);
    let pending: Vec<&str> = status["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["98.5.0", "99.0.0"]);
    adopted_ok(&db, journal.path(), &["upgrade", dir, "--execute"], "test");
    let history = datalab_history(&db);
    let pairs: Vec<(&str, &str)> = history
        .iter()
        .map(|h| (h.get_str("version").unwrap(), h.get_str("action").unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("98.0.0", "initialise"), ("98.5.0", "upgrade"), ("99.0.0", "upgrade")]
    );
    assert!(
        history
            .iter()
            .all(|h| h.contains_key("timestamp") && h.contains_key("datalab_version"))
    );
    let status = adopted_ok(&db, journal.path(), &["status", "--plugins", dir], "test").remove(0);
    assert_eq!(status["pending"], serde_json::json!([]));
    // test_auto_stamp_recorded_in_history: the application's auto_stamp is
    // its own, legitimate entry; godwit reads the version it set.
    datalab_writes(&db, "99.1.0", "auto_stamp", "99.1.0");
    let status = adopted_ok(&db, journal.path(), &["status"], "test").remove(0);
    assert_eq!(status["version_record"]["version"], "99.1.0");
    assert_eq!(status["version_record"]["problem"], serde_json::Value::Null);
    assert_eq!(status["version_record"]["differs"], true);
    assert_eq!(
        datalab_history(&db).last().unwrap().get_str("action").unwrap(),
        "auto_stamp"
    );
}
