//! Seed 002, uniqc's schema history as a godwit chain: v1 is the baseline
//! stamp, v2 creates `archived_tasks` with its three indexes (schema
//! operations before the first pass) and moves completed and failed tasks
//! there (insert and delete in one transaction, so exactly once even when
//! killed), v3 adds
//! `compiled_circuit_json` with its default to every task.

use super::{figures, init, json_documents, kill_midway, run_steps};
use crate::db::{TestDb, server};
use crate::support::{command, plugin, stderr, stdout, verify_journal};
use bson::{Bson, Document, doc};
use std::collections::BTreeMap;

const TASKS: u32 = 1_200;
const STATUSES: [&str; 10] = [
    "completed",
    "completed",
    "failed",
    "running",
    "completed",
    "pending",
    "failed",
    "completed",
    "cancelled",
    "completed",
];

/// uniqc v2's `CREATE INDEX` statements on `archived_tasks`: name, column.
const INDEXES: [(&str, &str); 3] = [
    ("archived_backend_idx", "backend"),
    ("archived_status_idx", "status"),
    ("archived_submit_time_idx", "submit_time"),
];

/// The indexes of `archived_tasks` but `_id_`: name and its one field.
fn archive_indexes(db: &TestDb) -> [(String, String); 3] {
    let found: Vec<(String, String)> = db
        .indexes("archived_tasks")
        .into_iter()
        .filter(|i| i.0 != "_id_")
        .map(|(name, key, _)| {
            assert_eq!(key.len(), 1, "{name}: {key}");
            (name, key.keys().next().unwrap().clone())
        })
        .collect();
    found.try_into().unwrap_or_else(|f| panic!("three indexes: {f:?}"))
}

fn generate(db: &TestDb) -> Vec<Document> {
    let tasks: Vec<Document> = (0..TASKS)
        .map(|i| {
            let status = STATUSES[(i * 7 % 10) as usize];
            let backend = ["originq:wuyuan", "quafu:ScQ-P10", "dummy"][(i % 3) as usize];
            let shots = [1000, 2000, 0][(i % 3) as usize];
            let submit = format!("2026-05-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60);
            doc! {
                "_id": format!("tsk-{i:06}"),
                "backend": backend,
                "status": status,
                "shots": shots,
                "submit_time": &submit,
                "update_time": &submit,
                "result_json": if status == "completed" { Bson::String(format!("{{\"counts\": {{\"00\": {i}}}}}")) } else { Bson::Null },
                "metadata_json": "{}",
            }
        })
        .collect();
    db.insert("tasks", tasks.clone());
    tasks
}

#[test]
fn uniqc_archive_then_add_column_chain_killed_twice_moves_every_task_once() {
    let db = TestDb::new(server(), "seed_uniqc");
    let original = generate(&db);
    let to_archive = |t: &Document| matches!(t.get_str("status").unwrap(), "completed" | "failed");
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for t in original.iter().filter(|t| to_archive(t)) {
        *by_status.entry(t.get_str("status").unwrap()).or_default() += 1;
    }
    let archived = by_status.values().sum::<u64>();
    let journal = tempfile::tempdir().unwrap();
    let chain = tempfile::tempdir().unwrap();
    for name in ["uniqc-archive-tasks", "uniqc-compiled-circuit"] {
        std::fs::copy(plugin(name), chain.path().join(format!("{name}.wasm"))).unwrap();
    }
    let dir = chain.path().to_str().unwrap();
    init(&db, journal.path(), "1.0.0");
    let snapshot = db.dump();

    // Dry upgrade: both steps previewed against today's data.
    let steps = run_steps(&db, journal.path(), &["upgrade", dir]);
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert_eq!(
        figures(&steps[0]),
        serde_json::json!({"archived": archived, "completed": by_status["completed"], "failed": by_status["failed"]})
    );
    assert_eq!(steps[0]["summary"]["passes"][0]["inserts"], archived);
    assert_eq!(steps[0]["summary"]["passes"][0]["deletes"], archived);
    assert_eq!(steps[1]["version"], "3.0.0");
    assert_eq!(
        steps[1]["summary"]["passes"][0]["updates"], TASKS,
        "previewed before v2 moved anything"
    );
    // v2's schema step, previewed: the collection, then its three indexes.
    let schema: Vec<(String, String)> = steps[0]["summary"]["schema"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", steps[0]))
        .iter()
        .map(|l| {
            (
                l["op"].as_str().unwrap().to_string(),
                l["effect"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(schema.len(), 4, "{schema:?}");
    assert_eq!(schema[0].0, "create-collection `archived_tasks`");
    assert_eq!(schema[0].1, "creates collection `archived_tasks`");
    for (line, (name, field)) in schema[1..].iter().zip(INDEXES) {
        assert_eq!(
            line.0,
            format!("create-index `{name}` on `archived_tasks` {{ \"{field}\": 1 }}")
        );
        assert!(line.1.ends_with("on 0 documents"), "{line:?}");
    }
    assert_eq!(db.dump(), snapshot, "a dry upgrade writes nothing");
    assert!(db.indexes("archived_tasks").is_empty(), "nor creates anything");
    eprintln!("uniqc dry upgrade: {}", figures(&steps[0]));

    // Execute, SIGKILLed twice in the middle of the archive step.
    let args = [
        "upgrade",
        dir,
        "--execute",
        "--batch-size",
        "10",
        "--max-docs-per-sec",
        "250",
        "--lease",
        "3",
    ];
    for at in [8, 30] {
        let marker = kill_midway(&db, journal.path(), &args, |m| m.get_i64("seq").unwrap_or(0) >= at);
        eprintln!("uniqc upgrade killed at {marker}");
        // The schema step ran before the first batch.
        assert_eq!(
            archive_indexes(&db),
            INDEXES.map(|(n, f)| (n.to_string(), f.to_string()))
        );
        // Between kills: every task is in exactly one collection.
        let (hot, cold) = (db.find_all("tasks"), db.find_all("archived_tasks"));
        assert_eq!(hot.len() + cold.len(), TASKS as usize, "no task lost or duplicated");
        assert!(
            !cold.is_empty() && cold.len() < archived as usize,
            "killed midway: {} archived",
            cold.len()
        );
    }
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let exec = json_documents(&stdout(&out));
    assert_eq!(exec.len(), 2, "the resumed v2 step, then v3");
    assert_eq!(exec[0]["resumed"], true);
    assert_eq!(
        figures(&exec[0]),
        figures(&steps[0]),
        "every task archived exactly once"
    );
    assert_eq!(exec[1]["summary"]["passes"][0]["updates"], TASKS as u64 - archived);
    assert_eq!(exec[1]["summary"]["passes"][1]["updates"], archived);

    // Final documents: hot tasks unchanged but for the new column; archived
    // ones are the originals plus archived_at (the v2 run's start) and the column.
    let hot = db.find_all("tasks");
    let cold: BTreeMap<String, Document> = db
        .find_all("archived_tasks")
        .into_iter()
        .map(|d| (d.get_str("_id").unwrap().to_string(), d))
        .collect();
    assert_eq!(hot.len() as u64, TASKS as u64 - archived);
    assert_eq!(cold.len() as u64, archived);
    let stamps: std::collections::BTreeSet<&str> = cold.values().map(|d| d.get_str("archived_at").unwrap()).collect();
    assert_eq!(stamps.len(), 1, "one run, one archived_at: {stamps:?}");
    let stamp = *stamps.iter().next().unwrap();
    let at = bson::DateTime::parse_rfc3339_str(stamp)
        .unwrap_or_else(|e| panic!("archived_at {stamp:?} is not ISO-8601: {e}"));
    let age = bson::DateTime::now().timestamp_millis() - at.timestamp_millis();
    assert!((0..600_000).contains(&age), "archived_at {stamp} is the run's start");
    let mut hot = hot.into_iter();
    for task in &original {
        let mut want = task.clone();
        if to_archive(task) {
            want.insert("archived_at", stamp);
            want.insert("compiled_circuit_json", Bson::Null);
            assert_eq!(cold[task.get_str("_id").unwrap()], want);
        } else {
            want.insert("compiled_circuit_json", Bson::Null);
            assert_eq!(hot.next().as_ref(), Some(&want));
        }
    }

    assert_eq!(
        archive_indexes(&db),
        INDEXES.map(|(n, f)| (n.to_string(), f.to_string()))
    );
    let lines = exec[0]["summary"]["schema"].as_array().unwrap();
    assert!(
        lines.iter().all(|l| l["outcome"] == "applied earlier"),
        "the resumed run does not apply the schema step again: {lines:?}"
    );
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "3.0.0");
    let versions: Vec<&str> = schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| h.as_document().unwrap().get_str("version").unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0", "3.0.0"]);
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("is at version 3.0.0, the head"),
        "{}",
        stdout(&out)
    );
    verify_journal(journal.path());

    // Reverted, v3 then v2: every task back in `tasks` as it was, and
    // `archived_tasks` with its indexes gone.
    let list = crate::support::godwit(&[
        "journal",
        "list",
        "--json",
        "--journal",
        journal.path().to_str().unwrap(),
    ]);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    let executed = |name: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["plugin_name"] == name && r["mode"] == "Execute" && r["status"] == "Finished")
            .unwrap_or_else(|| panic!("{name}: {runs:#}"))["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for name in ["uniqc-compiled-circuit", "uniqc-archive-tasks"] {
        // v2 comes after v3's revert in the history: `revert` asks for
        // --force to go past it (nothing changed since, so it overwrites nothing).
        let run = executed(name);
        let mut args = vec!["revert", &run, "--execute"];
        if name == "uniqc-archive-tasks" {
            args.push("--force");
        }
        let out = command(&db, journal.path(), &args).output().unwrap();
        assert!(out.status.success(), "{name}: {}{}", stdout(&out), stderr(&out));
    }
    assert_eq!(db.find_all("tasks"), original, "every task back as it was");
    assert!(!db.collections().contains(&"archived_tasks".to_string()));
}
