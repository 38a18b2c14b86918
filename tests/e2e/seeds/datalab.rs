//! Seed 001, datalab's versioned upgrader: a 0.7.0 baseline stamp, then
//! `godwit upgrade` runs the 0.8.0 step (relationships pinned from `item_id`
//! to `refcode`, unresolvable ones deprecated) and the database reaches 0.8.0
//! with history.

use super::{figures, init, json_documents, kill_midway, report_count, run_steps};
use crate::db::{TestDb, server};
use crate::support::{command, plugin, stderr, stdout, verify_journal};
use bson::{Bson, Document, doc};
use std::collections::HashMap;

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
