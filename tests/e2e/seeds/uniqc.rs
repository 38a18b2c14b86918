//! Seed 002, uniqc's task store schema history (upstream
//! `IAI-USTC-Quantum/UnifiedQuantum`, `uniqc/backend_adapter/task/store.py`'s
//! `MIGRATIONS`; a SQLite file versioned by `PRAGMA user_version`) as a
//! godwit chain on its MongoDB transposition - a table is a collection, a row
//! a document with the columns as fields, the primary key its `_id`:
//! v1 is the `init` baseline, v2 creates `archived_tasks` and its indexes,
//! v3 adds `error_message`, v4 creates the shard tables, v5 re-keys
//! platform-id tasks to `uqt_*` tasks with one shard each, and the optional
//! 5.1.0 step is the API's `archive-expired` (terminal tasks 72 hours old,
//! moved with their shards as `ArchiveStore.archive_task` does).
//!
//! The chain test upgrades a database of tasks in upstream's column shapes
//! (platform ids of each kind, every status, the time formats uniqc parses)
//! to v4, lets "the application" write what v3/v4's uniqc writes (error
//! messages, archived tasks, `uqt_*` tasks with shards), then upgrades to the
//! head, SIGKILLed twice inside v5, and checks every final document against a
//! model computed here. The second test runs upstream's own archive test
//! cases (`uniqc/test/gateway/test_tasks_and_archive_api.py`,
//! `uniqc/test/cloud/test_task_id_indirection.py`) through the binary.

use super::{figures, init, json_documents, kill_midway, run_steps};
use crate::db::{TestDb, server};
use crate::support::{command, godwit, plugin, stderr, stdout, verify_journal};
use bson::{Bson, Document, doc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const LEGACY: i64 = 1_200;
const UNIQC: i64 = 60;
const STATUSES: [&str; 5] = ["pending", "running", "success", "failed", "cancelled"];
const TERMINAL: [&str; 3] = ["success", "failed", "cancelled"];
/// Task ages, in hours before the test starts: either side of 72.
const AGES: [i64; 7] = [1, 24, 71, 73, 100, 500, 2000];
const HOUR: i64 = 3_600_000;
/// The chain's plugins, by upstream `user_version` (5.1.0: the optional
/// archive step).
const CHAIN: [&str; 5] = [
    "uniqc-archive-tasks",
    "uniqc-error-message",
    "uniqc-task-shards",
    "uniqc-legacy-task-ids",
    "uniqc-archive-expired",
];

/// The indexes of `collection` but `_id_`: name and its one field.
fn indexes(db: &TestDb, collection: &str) -> Vec<(String, String)> {
    db.indexes(collection)
        .into_iter()
        .filter(|i| i.0 != "_id_")
        .map(|(name, key, _)| {
            assert_eq!(key.len(), 1, "{name}: {key}");
            (name, key.keys().next().unwrap().clone())
        })
        .collect()
}

fn named(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, f)| (n.to_string(), f.to_string())).collect()
}

/// `YYYY-MM-DDTHH:MM:SS` of a UTC instant.
fn seconds(ms: i64) -> String {
    bson::DateTime::from_millis(ms).try_to_rfc3339_string().unwrap()[..19].to_string()
}

/// Python's `datetime.isoformat()` of an aware UTC time.
fn isoformat(ms: i64) -> String {
    match ms.rem_euclid(1000) {
        0 => format!("{}+00:00", seconds(ms)),
        milli => format!("{}.{:06}+00:00", seconds(ms), milli * 1000),
    }
}

/// The same instant in the other spellings uniqc's `_parse_time` reads.
fn spelled(ms: i64, style: i64) -> String {
    match style {
        0..=2 => isoformat(ms),
        3 => format!("{}.{:03}Z", seconds(ms), ms.rem_euclid(1000)),
        4 => format!("{}.{:06}", seconds(ms), ms.rem_euclid(1000) * 1000),
        _ => format!("{}.{:06}+08:00", seconds(ms + 8 * HOUR), ms.rem_euclid(1000) * 1000),
    }
}

/// The model's uniqc id of a legacy task: sha256 over
/// "uniqc-legacy-task-id", the table and the old id (each NUL-terminated),
/// 16 bytes as a version-8 UUID's hex digits.
fn uniqc_id(table: &str, old: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("uniqc-legacy-task-id\0{table}\0{old}\0"));
    let mut b: Vec<u8> = h.finalize()[..16].to_vec();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("uqt_{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

fn mix(i: i64) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d
}

/// A platform's task id and the backend that issued it, by kind: OriginQ's
/// MD5, an IBM job id, a Quafu id, the dummy adapter's uuid.
fn platform_id(i: i64) -> (String, &'static str) {
    let (a, b) = (mix(i), mix(i + 100_000));
    match i % 4 {
        0 => (format!("{a:016X}{b:016X}"), "originq:WK_C180"),
        1 => (format!("d{:019x}", a >> 4), "ibm:ibm_fez"),
        2 => (format!("{b:016X}"), "quafu:ScQ-P18"),
        _ => {
            let h = format!("{a:016x}{b:016x}");
            (
                format!("{}-{}-4{}-8{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..]),
                "dummy:local:simulator",
            )
        }
    }
}

/// A `metadata_json` uniqc may hold for legacy task `id`, what v5 writes
/// there, and how v5 reads it (its figure's name).
fn metadata(i: i64, id: &str) -> (&'static str, String, &'static str) {
    let stamp = format!(r#""legacy_platform_id": "{id}""#);
    match i % 6 {
        0 => ("{}", format!("{{{stamp}}}"), "metadata_object"),
        1 => (
            r#"{"submitted_by": "alice", "circuit": "QINIT 2\nH q[0]"}"#,
            format!(r#"{{"submitted_by": "alice", "circuit": "QINIT 2\nH q[0]", {stamp}}}"#),
            "metadata_object",
        ),
        2 => ("", format!("{{{stamp}}}"), "metadata_empty"),
        3 => ("not json", format!("{{{stamp}}}"), "metadata_unparsable"),
        4 => (
            "[1, 2]",
            format!(r#"{{"legacy_metadata_raw": [1, 2], {stamp}}}"#),
            "metadata_not_object",
        ),
        _ => (
            r#"{"shots_hint":1,"label":"é"}"#,
            format!(r#"{{"shots_hint": 1, "label": "é", {stamp}}}"#),
            "metadata_object",
        ),
    }
}

/// A task as the model sees it: the document, and the instant upstream's
/// `_parse_time` reads from it (`None`: unreadable).
#[derive(Clone)]
struct Task {
    doc: Document,
    time: Option<i64>,
}

/// uniqc v1's `tasks` rows, transposed (`task_id` is `_id`); with each
/// row's expected v5 `metadata_json` and figure.
fn v1_tasks(t0: i64) -> Vec<(Task, String, &'static str)> {
    (0..LEGACY)
        .map(|i| {
            let (id, backend) = platform_id(i);
            let status = STATUSES[((i * 3 + i / 7) % 5) as usize];
            let updated = t0 - AGES[(i % 7) as usize] * HOUR - (i * 7919) % 1000;
            let submitted = updated - 5 * 60_000;
            let (update_time, time) = match i {
                _ if i % 97 == 5 => (String::new(), Some(submitted)),
                _ if i % 89 == 7 => ("yesterday".to_string(), None),
                _ => (spelled(updated, i % 6), Some(updated)),
            };
            let (meta, want, read) = metadata(i, &id);
            let result = match status {
                "success" => Bson::String(format!(r#"{{"00": {}, "11": {}}}"#, 500 + i % 50, 500 - i % 50)),
                _ => Bson::Null,
            };
            let shots = [1000, 4000, 100, 1024][(i % 4) as usize];
            let doc = doc! {
                "_id": &id, "backend": backend, "status": status, "shots": shots,
                "submit_time": isoformat(submitted), "update_time": update_time,
                "result_json": result, "metadata_json": meta,
            };
            (Task { doc, time }, want, read)
        })
        .collect()
}

/// Tasks uniqc v4 submitted (`uqt_*` ids) and their shards.
fn v4_tasks(t0: i64) -> Vec<(Task, Vec<Document>)> {
    (0..UNIQC)
        .map(|j| {
            let id = format!("uqt_{:016x}{:016x}", mix(j + 7), mix(j + 9));
            let status = STATUSES[(j % 5) as usize];
            let updated = t0 - AGES[(j % 7) as usize] * HOUR - 250;
            let backend = "dummy:local:virtual-line-2";
            let shards = (0..1 + j % 4)
                .map(|k| {
                    doc! {
                        "_id": {"uniqc_task_id": &id, "shard_index": k as i32},
                        "platform_task_id": format!("plat-{j}-{k}"), "backend": backend,
                        "circuit_count": 1, "sub_index_offset": k as i32,
                        "status": if TERMINAL.contains(&status) { status } else { "running" },
                        "result_json": Bson::Null, "error_message": Bson::Null,
                        "submit_time": isoformat(updated - 60_000), "update_time": isoformat(updated),
                    }
                })
                .collect();
            let doc = doc! {
                "_id": &id, "backend": backend, "status": status, "shots": 50,
                "submit_time": isoformat(updated - 60_000), "update_time": isoformat(updated),
                "result_json": Bson::Null, "metadata_json": r#"{"circuit_count": 2}"#,
                "error_message": if status == "failed" { Bson::String("auth".into()) } else { Bson::Null },
            };
            (
                Task {
                    doc,
                    time: Some(updated),
                },
                shards,
            )
        })
        .collect()
}

fn with(mut d: Document, key: &str, value: impl Into<Bson>) -> Document {
    d.insert(key, value.into());
    d
}

fn id_of(d: &Document) -> String {
    d.get("_id").unwrap().to_string()
}

fn by_id(docs: Vec<Document>) -> BTreeMap<String, Document> {
    docs.into_iter().map(|d| (id_of(&d), d)).collect()
}

/// Replaces every document of `collection` (the application's writes).
fn replace_all(db: &TestDb, collection: &str, docs: Vec<Document>) {
    db.command(doc! {"delete": collection, "deletes": [{"q": {}, "limit": 0}]});
    if !docs.is_empty() {
        db.insert(collection, docs);
    }
}

/// v5's task and shard for a legacy task of `table`.
fn rekeyed(table: &str, task: &Document, metadata: &str) -> (Document, Document) {
    let old = task.get_str("_id").unwrap();
    let new = uniqc_id(table, old);
    let mut parent = doc! {"_id": &new};
    for column in [
        "backend",
        "status",
        "shots",
        "submit_time",
        "update_time",
        "result_json",
    ] {
        parent.insert(column, task.get(column).unwrap().clone());
    }
    parent.insert("metadata_json", metadata);
    parent.insert("error_message", task.get("error_message").unwrap().clone());
    let mut shard = doc! {
        "_id": {"uniqc_task_id": &new, "shard_index": 0}, "platform_task_id": old,
        "backend": task.get("backend").unwrap().clone(), "circuit_count": 1, "sub_index_offset": 0,
        "status": task.get("status").unwrap().clone(), "result_json": task.get("result_json").unwrap().clone(),
        "error_message": task.get("error_message").unwrap().clone(),
        "submit_time": task.get("submit_time").unwrap().clone(), "update_time": task.get("update_time").unwrap().clone(),
    };
    if let Ok(at) = task.get_str("archived_at") {
        parent.insert("archived_at", at);
        shard.insert("archived_at", at);
    }
    (parent, shard)
}

/// The last finished execute run of `plugin`, from `journal list`.
fn executed(journal: &std::path::Path, plugin: &str) -> serde_json::Value {
    let list = godwit(&["journal", "list", "--json", "--journal", journal.to_str().unwrap()]);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["plugin_name"] == plugin && r["mode"] == "Execute" && r["status"] == "Finished")
        .unwrap_or_else(|| panic!("{plugin}: {runs:#}"))
        .clone()
}

/// The start of the last finished execute run of `plugin`.
fn started_at(journal: &std::path::Path, plugin: &str) -> i64 {
    executed(journal, plugin)["started_at_ms"].as_i64().unwrap()
}

fn chain_dir(plugins: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in plugins {
        std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

#[test]
fn uniqc_schema_history_v1_to_v5_and_archive_expired_killed_twice_in_v5() {
    let db = TestDb::new(server(), "seed_uniqc");
    let journal = tempfile::tempdir().unwrap();
    let t0 = bson::DateTime::now().timestamp_millis();
    let v1 = v1_tasks(t0);
    db.insert("tasks", v1.iter().map(|(t, ..)| t.doc.clone()).collect());
    init(&db, journal.path(), "1.0.0");

    // v2..v4, previewed then executed: schema steps and the new column.
    let to_v4 = chain_dir(&CHAIN[..3]);
    let dir = to_v4.path().to_str().unwrap();
    let snapshot = db.dump();
    let steps = run_steps(&db, journal.path(), &["upgrade", dir]);
    let versions: Vec<&str> = steps.iter().map(|s| s["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["2.0.0", "3.0.0", "4.0.0"]);
    let ops = |s: &serde_json::Value| -> Vec<String> {
        s["summary"]["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["op"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ops(&steps[0]),
        [
            "create-collection `archived_tasks`",
            "create-index `archived_backend_idx` on `archived_tasks` { \"backend\": 1 }",
            "create-index `archived_status_idx` on `archived_tasks` { \"status\": 1 }",
            "create-index `archived_submit_time_idx` on `archived_tasks` { \"submit_time\": 1 }",
        ]
    );
    assert!(
        steps[0]["summary"]["passes"].as_array().unwrap().is_empty(),
        "v2 moves no task"
    );
    assert_eq!(steps[1]["summary"]["passes"][0]["updates"], LEGACY);
    assert_eq!(ops(&steps[2]).len(), 5, "{:#}", steps[2]);
    assert_eq!(db.dump(), snapshot, "a dry upgrade writes nothing");
    let exec = run_steps(&db, journal.path(), &["upgrade", dir, "--execute"]);
    assert_eq!(exec.len(), 3);
    assert_eq!(
        indexes(&db, "archived_tasks"),
        named(&[
            ("archived_backend_idx", "backend"),
            ("archived_status_idx", "status"),
            ("archived_submit_time_idx", "submit_time")
        ])
    );
    assert_eq!(
        indexes(&db, "task_shards"),
        named(&[
            ("task_shards_platform_idx", "platform_task_id"),
            ("task_shards_status_idx", "status")
        ])
    );
    assert_eq!(
        indexes(&db, "archived_task_shards"),
        named(&[("archived_task_shards_platform_idx", "platform_task_id")])
    );
    let v3: Vec<Document> = v1
        .iter()
        .map(|(t, ..)| with(t.doc.clone(), "error_message", Bson::Null))
        .collect();
    assert_eq!(
        by_id(db.find_all("tasks")),
        by_id(v3.clone()),
        "v3: error_message null on every task"
    );
    assert!(db.find_all("archived_tasks").is_empty());

    // uniqc v4 at work: error messages on failed tasks, some terminal tasks
    // archived through the API (`archived_at` an hour after their update),
    // new `uqt_*` tasks with their shards, live and archived.
    let mut live: Vec<(Task, String, &str)> = Vec::new();
    let mut archived: Vec<(Task, String, &str)> = Vec::new();
    for ((task, want, read), mut doc) in v1.into_iter().zip(v3) {
        let i = live.len() + archived.len();
        if doc.get_str("status").unwrap() == "failed" && i.is_multiple_of(2) {
            doc.insert("error_message", format!("bad chip {i}"));
        }
        let task = Task { doc, ..task };
        if i.is_multiple_of(10) && TERMINAL.contains(&task.doc.get_str("status").unwrap()) {
            let at = isoformat(task.time.unwrap_or(t0 - 2000 * HOUR) + HOUR);
            archived.push((
                Task {
                    doc: with(task.doc, "archived_at", at),
                    ..task
                },
                want,
                read,
            ));
        } else {
            live.push((task, want, read));
        }
    }
    let v4 = v4_tasks(t0);
    let (v4_live, v4_archived) = v4.split_at(UNIQC as usize - 6);
    let app_archived_at = isoformat(t0 - 10 * HOUR);
    replace_all(
        &db,
        "tasks",
        live.iter()
            .map(|(t, ..)| t.doc.clone())
            .chain(v4_live.iter().map(|(t, _)| t.doc.clone()))
            .collect(),
    );
    db.insert(
        "archived_tasks",
        archived
            .iter()
            .map(|(t, ..)| t.doc.clone())
            .chain(
                v4_archived
                    .iter()
                    .map(|(t, _)| with(t.doc.clone(), "archived_at", app_archived_at.clone())),
            )
            .collect(),
    );
    db.insert("task_shards", v4_live.iter().flat_map(|(_, s)| s.clone()).collect());
    db.insert(
        "archived_task_shards",
        v4_archived
            .iter()
            .flat_map(|(_, s)| {
                s.iter()
                    .map(|d| with(d.clone(), "archived_at", app_archived_at.clone()))
            })
            .collect(),
    );

    // The model of v5: every legacy task under its uniqc id with one shard.
    let mut reads: BTreeMap<&str, i64> = BTreeMap::new();
    let mut want_tasks = Vec::new();
    let mut want_archive = Vec::new();
    let mut want_archived_shards = Vec::new();
    for (task, metadata, read) in &live {
        *reads.entry(read).or_default() += 1;
        let (parent, shard) = rekeyed("tasks", &task.doc, metadata);
        want_tasks.push((
            Task {
                doc: parent,
                time: task.time,
            },
            vec![shard],
        ));
    }
    for (task, metadata, read) in &archived {
        *reads.entry(read).or_default() += 1;
        let (parent, shard) = rekeyed("archived_tasks", &task.doc, metadata);
        want_archive.push(parent);
        want_archived_shards.push(shard);
    }
    want_tasks.extend(v4_live.iter().cloned());
    for (task, shards) in v4_archived {
        want_archive.push(with(task.doc.clone(), "archived_at", app_archived_at.clone()));
        want_archived_shards.extend(
            shards
                .iter()
                .map(|d| with(d.clone(), "archived_at", app_archived_at.clone())),
        );
    }

    // The archive step is optional: the chain is whole without it.
    let without = chain_dir(&CHAIN[..4]);
    for chain in [without.path(), to_v4.path()] {
        let plan = godwit(&["plan", chain.to_str().unwrap()]);
        assert!(plan.status.success(), "{}{}", stdout(&plan), stderr(&plan));
    }

    // The rest of the chain, previewed: v5's figures.
    let to_head = chain_dir(&CHAIN);
    let dir = to_head.path().to_str().unwrap();
    let snapshot = db.dump();
    let collections = ["tasks", "task_shards", "archived_tasks", "archived_task_shards"];
    let at_v4 = collections.map(|c| db.find_all(c));
    let steps = run_steps(&db, journal.path(), &["upgrade", dir]);
    let versions: Vec<&str> = steps.iter().map(|s| s["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["5.0.0", "5.1.0"]);
    let v5_figures = serde_json::json!({
        "tasks_migrated": live.len(),
        "archived_tasks_migrated": archived.len(),
        "metadata_object": reads["metadata_object"],
        "metadata_empty": reads["metadata_empty"],
        "metadata_unparsable": reads["metadata_unparsable"],
        "metadata_not_object": reads["metadata_not_object"],
    });
    assert_eq!(figures(&steps[0]), v5_figures);
    assert_eq!(db.dump(), snapshot, "a dry upgrade writes nothing");

    // Executed, SIGKILLed twice inside v5: every legacy task is under exactly
    // one id at every kill, and under the new one only with its shard.
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
        let tasks = by_id(db.find_all("tasks"));
        let shards = by_id(db.find_all("task_shards"));
        let mut moved = 0;
        for (task, ..) in &live {
            let old = task.doc.get_str("_id").unwrap();
            let new = uniqc_id("tasks", old);
            let shard = Bson::Document(doc! {"uniqc_task_id": &new, "shard_index": 0}).to_string();
            let (was, is) = (
                tasks.contains_key(&Bson::from(old).to_string()),
                tasks.contains_key(&Bson::from(new.as_str()).to_string()),
            );
            assert!(was != is, "{old}: under exactly one id (old {was}, new {is})");
            assert_eq!(is, shards.contains_key(&shard), "{old}: shard iff re-keyed");
            moved += is as usize;
        }
        assert!(moved > 0 && moved < live.len(), "killed midway: {moved} re-keyed");
        assert_eq!(tasks.len(), live.len() + v4_live.len());
    }
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let exec = json_documents(&stdout(&out));
    assert_eq!(exec.len(), 2, "the resumed v5 step, then 5.1.0");
    assert_eq!(exec[0]["resumed"], true);
    assert_eq!(figures(&exec[0]), v5_figures, "every legacy task re-keyed exactly once");

    // The model of archive-expired, from the run's recorded start.
    let start = started_at(journal.path(), "uniqc-archive-expired");
    assert!((t0..t0 + 30 * 60_000).contains(&start), "started {start}, test at {t0}");
    let stamp = isoformat(start);
    let mut expect =
        serde_json::json!({"count": 0, "shards": 0, "skipped_running": 0, "too_recent": 0, "unreadable_time": 0});
    let mut count = |key: &str| *expect.get_mut(key).unwrap() = (expect[key].as_u64().unwrap() + 1).into();
    let mut final_tasks = Vec::new();
    let mut final_shards = Vec::new();
    for (task, shards) in want_tasks {
        let status = task.doc.get_str("status").unwrap();
        let expired = match task.time {
            _ if !TERMINAL.contains(&status) => {
                count("skipped_running");
                false
            }
            None => {
                count("unreadable_time");
                false
            }
            Some(at) if at > start - 72 * HOUR => {
                count("too_recent");
                false
            }
            Some(_) => true,
        };
        if expired {
            count("count");
            for shard in shards {
                count("shards");
                want_archived_shards.push(with(shard, "archived_at", stamp.clone()));
            }
            want_archive.push(with(task.doc, "archived_at", stamp.clone()));
        } else {
            final_tasks.push(task.doc);
            final_shards.extend(shards);
        }
    }
    assert_eq!(figures(&exec[1]), expect);
    assert!(expect["count"].as_u64().unwrap() > 100 && expect["too_recent"].as_u64().unwrap() > 100);

    for (collection, want) in [
        ("tasks", final_tasks),
        ("task_shards", final_shards),
        ("archived_tasks", want_archive),
        ("archived_task_shards", want_archived_shards),
    ] {
        let (found, want) = (by_id(db.find_all(collection)), by_id(want));
        assert_eq!(found.len(), want.len(), "{collection}");
        for (id, doc) in &want {
            assert_eq!(found.get(id), Some(doc), "{collection} {id}");
        }
    }

    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    let history: Vec<&str> = schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| h.as_document().unwrap().get_str("version").unwrap())
        .collect();
    assert_eq!(history, ["1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0", "5.1.0"]);
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("is at version 5.1.0, the head"),
        "{}",
        stdout(&out)
    );
    // Archive-expired again, right away: nothing is old enough any more.
    let again = run_steps(
        &db,
        journal.path(),
        &["run", plugin("uniqc-archive-expired").to_str().unwrap()],
    );
    assert_eq!(figures(&again[0])["count"], 0);
    verify_journal(journal.path());

    // Reverted, 5.1.0 then v5: every collection back as uniqc v4 left it.
    for name in ["uniqc-archive-expired", "uniqc-legacy-task-ids"] {
        let run = executed(journal.path(), name)["run_id"].as_str().unwrap().to_string();
        let mut args = vec!["revert", &run, "--execute"];
        if name == "uniqc-legacy-task-ids" {
            args.push("--force"); // past 5.1.0's revert in the history
        }
        let out = command(&db, journal.path(), &args).output().unwrap();
        assert!(out.status.success(), "{name}: {}{}", stdout(&out), stderr(&out));
    }
    assert_eq!(
        collections.map(|c| db.find_all(c)),
        at_v4,
        "every document back as it was"
    );
}

/// upstream's `_make_task`: a `dummy:local:simulator` task, 100 shots,
/// result `{"00": 50, "11": 50}`, metadata `{"submitted_by": "test"}`,
/// saved `at` (uniqc's `save` stamps `update_time`).
fn make_task(id: &str, status: &str, at: &str) -> Document {
    doc! {
        "_id": id, "backend": "dummy:local:simulator", "status": status, "shots": 100,
        "submit_time": at, "update_time": at, "result_json": r#"{"00": 50, "11": 50}"#,
        "metadata_json": r#"{"submitted_by": "test"}"#, "error_message": Bson::Null,
    }
}

/// upstream: `test_archive_store_archives_and_lists`,
/// `test_archive_store_get_returns_full_info`,
/// `test_archive_store_filter_by_status_and_backend` (tasks `a1`, `a2`,
/// `ok`, `bad`), and `test_archive_and_restore_preserves_shards`'s archive
/// half (a pending `uqt_*` parent with shards `p0`, `p1`). Upstream archives
/// each by id; here through archive-expired's parameters, as the API would.
#[test]
fn uniqc_upstream_archive_cases() {
    let db = TestDb::new(server(), "seed_uniqc_archive");
    let journal = tempfile::tempdir().unwrap();
    let saved = isoformat(bson::DateTime::now().timestamp_millis() - 60_000);
    let uid = "uqt_0f4c2a1e9b8d47c6a5e3f2d1c0b9a8f7";
    db.insert(
        "tasks",
        vec![
            make_task("a1", "success", &saved),
            make_task("a2", "success", &saved),
            make_task("ok", "success", &saved),
            make_task("bad", "failed", &saved),
            with(
                make_task(uid, "pending", &saved),
                "backend",
                "dummy:local:virtual-line-2",
            ),
        ],
    );
    let shard = |i: i32| {
        doc! {
            "_id": {"uniqc_task_id": uid, "shard_index": i}, "platform_task_id": format!("p{i}"),
            "backend": "dummy:local:virtual-line-2", "circuit_count": 1, "sub_index_offset": i,
            "status": "success", "result_json": r#"{"00": 50, "11": 50}"#, "error_message": Bson::Null,
            "submit_time": &saved, "update_time": &saved,
        }
    };
    db.insert("task_shards", vec![shard(0), shard(1)]);
    init(&db, journal.path(), "5.0.0");
    let file = plugin("uniqc-archive-expired");
    let file = file.to_str().unwrap();
    let archive = |params: &[&str]| {
        let mut args = vec!["run", file, "--execute"];
        for p in params {
            args.extend(["--param", p]);
        }
        figures(&run_steps(&db, journal.path(), &args)[0])
    };

    // The API's defaults: saved a minute ago is not 72 hours old.
    assert_eq!(archive(&[])["too_recent"], 4);
    assert!(db.find_all("archived_tasks").is_empty());

    // hours=0: every terminal task saved before now; the pending parent stays.
    let first = archive(&["hours=0"]);
    assert_eq!(
        (first["count"].as_u64(), first["skipped_running"].as_u64()),
        (Some(4), Some(1))
    );
    let stamp = isoformat(started_at(journal.path(), "uniqc-archive-expired"));
    let listed = by_id(db.find_all("archived_tasks"));
    let ids: Vec<&str> = listed.values().map(|d| d.get_str("_id").unwrap()).collect();
    assert_eq!(ids, ["a1", "a2", "bad", "ok"]);
    let a1 = &listed[&Bson::from("a1").to_string()];
    assert_eq!(
        a1,
        &with(make_task("a1", "success", &saved), "archived_at", stamp.clone())
    );
    assert_eq!(a1.get_str("result_json").unwrap(), r#"{"00": 50, "11": 50}"#);
    let success: Vec<&str> = listed
        .values()
        .filter(|d| d.get_str("status").unwrap() == "success")
        .map(|d| d.get_str("_id").unwrap())
        .collect();
    assert_eq!(success, ["a1", "a2", "ok"]);
    // "Second archive of the same task returns False": nothing left to move.
    assert_eq!(archive(&["hours=0"])["count"], 0);
    assert_eq!(db.find_all("archived_tasks").len(), 4);

    // terminal_only=false: the pending parent too, its shards cascaded out
    // of the live table into the archive.
    let second = archive(&["hours=0", "terminal_only=false"]);
    assert_eq!(
        (second["count"].as_u64(), second["shards"].as_u64()),
        (Some(1), Some(2))
    );
    let stamp = isoformat(started_at(journal.path(), "uniqc-archive-expired"));
    assert!(db.find_all("tasks").is_empty());
    assert!(db.find_all("task_shards").is_empty(), "cascaded out of the live table");
    assert_eq!(
        db.find_all("archived_task_shards"),
        vec![
            with(shard(0), "archived_at", stamp.clone()),
            with(shard(1), "archived_at", stamp)
        ]
    );
    let platform: Vec<&str> = vec!["p0", "p1"];
    let archived_platform: Vec<String> = db
        .find_all("archived_task_shards")
        .iter()
        .map(|s| s.get_str("platform_task_id").unwrap().to_string())
        .collect();
    assert_eq!(archived_platform, platform);
}
