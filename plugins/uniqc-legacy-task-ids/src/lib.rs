//! Seed 002, uniqc schema v5 (upstream `uniqc/backend_adapter/task/store.py`,
//! `_apply_v5` and `_migrate_legacy_table`): before v4 a task's id was the
//! platform's job id; v5 gives every such task a uniqc id (`uqt_` + 32 hex
//! digits) and records the platform id as the task's one shard. Upstream's
//! rules, per task of `tasks` and then of `archived_tasks`:
//! - a task whose id already starts with `uqt_` is left alone;
//! - `metadata_json` is read as JSON (missing or empty: `{}`; not JSON: `{}`;
//!   JSON but not an object: `{"legacy_metadata_raw": <it>}`), gets
//!   `legacy_platform_id: <old id>` and is written back as Python's
//!   `json.dumps(..., ensure_ascii=False)` writes it;
//! - the task is inserted again under the new id with upstream's columns
//!   (`backend`, `status`, `shots`, `submit_time`, `update_time`,
//!   `result_json`, the new `metadata_json`, `error_message` - null when the
//!   task has none -, and for archived tasks `archived_at`);
//! - one shard is inserted (into `task_shards`, or `archived_task_shards` with
//!   the task's `archived_at`): `shard_index` 0, `platform_task_id` the old
//!   id, `circuit_count` 1, `sub_index_offset` 0, and the task's `backend`,
//!   `status`, `result_json`, `error_message`, `submit_time`, `update_time`;
//! - the old task is deleted last.
//!
//! A MongoDB `_id` cannot change, so the re-keying is what upstream does
//! too: an insert and a delete. The three actions of a task are in one batch,
//! which the host applies in one transaction with its progress marker: a run
//! killed anywhere leaves every task under exactly one id, with its shard iff
//! under the new one.
//!
//! Where this differs from upstream, on purpose:
//! - upstream's new id is random (`uuid4().hex`); here it is derived:
//!   sha256("uniqc-legacy-task-id\0" + table + "\0" + old id), shaped as a
//!   version-8 UUID's 32 hex digits, so a resumed run, a dry run and
//!   `journal replay` give the same ids (the shape `is_uniqc_task_id` and
//!   upstream's tests check: `uqt_` + 32 characters);
//! - fields a task has beyond uniqc's columns are kept (after them) rather
//!   than dropped, and a task whose `_id` is not a string, or that lacks a
//!   `NOT NULL` column, stops the run naming it.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use sha2::{Digest, Sha256};

pub mod pyjson;
use pyjson::Value;

pub const PREFIX: &str = "uqt_";
/// Upstream's order: `tasks` into `task_shards`, then the archive.
pub const TABLES: [(&str, &str); 2] = [("tasks", "task_shards"), ("archived_tasks", "archived_task_shards")];
/// The task columns upstream's INSERT names, in its order (`task_id` aside);
/// `true` for `NOT NULL`.
const TASK_COLUMNS: [(&str, bool); 8] = [
    ("backend", true),
    ("status", true),
    ("shots", true),
    ("submit_time", true),
    ("update_time", true),
    ("result_json", false),
    ("metadata_json", true),
    ("error_message", false),
];

/// The uniqc id a legacy task of `table` gets (see the module doc).
pub fn uniqc_id(table: &str, old_id: &str) -> String {
    let mut hasher = Sha256::new();
    for part in ["uniqc-legacy-task-id", table, old_id] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let mut bytes: [u8; 16] = hasher.finalize()[..16].try_into().expect("16 bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}

/// Upstream's new `metadata_json` for a legacy task, and how its old value read.
pub fn stamped_metadata(old: Option<&str>, old_id: &str) -> (String, &'static str) {
    let (mut entries, read) = match old.filter(|s| !s.is_empty()).map(pyjson::loads) {
        None => (Vec::new(), "metadata_empty"),
        Some(None) => (Vec::new(), "metadata_unparsable"),
        Some(Some(Value::Object(entries))) => (entries, "metadata_object"),
        Some(Some(other)) => (vec![("legacy_metadata_raw".to_string(), other)], "metadata_not_object"),
    };
    Value::set(&mut entries, "legacy_platform_id", Value::Str(old_id.to_string()));
    (pyjson::dumps(&Value::Object(entries)), read)
}

pub struct LegacyTaskIds {
    tally: Tally,
}

impl Migration for LegacyTaskIds {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("uniqc-legacy-task-ids", "5.0.0")
            .requires("^4.0")
            .description("uniqc v5: legacy platform-id tasks become uqt_* tasks with one shard each");
        for (table, shards) in TABLES {
            // Upstream skips ids starting with `uqt_`: the strings in
            // ["uqt_", "uqt`") (a range, not a regular expression, so that
            // the SDK's harness evaluates it too). The pass must not see the
            // tasks it re-inserts under their new ids.
            manifest = manifest.pass(
                Pass::new(table, table)
                    .filter(doc! {"_id": {"$not": {"$gte": PREFIX, "$lt": "uqt`"}}})
                    .writes([table, shards]),
            );
        }
        manifest
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for name in [
            "tasks_migrated",
            "archived_tasks_migrated",
            "metadata_object",
            "metadata_empty",
            "metadata_unparsable",
            "metadata_not_object",
        ] {
            tally.touch(name);
        }
        Ok(LegacyTaskIds { tally })
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let (table, shard_table) = TABLES[pass];
        let archived = pass == 1;
        let mut actions = Vec::new();
        for task in batch {
            let id = task
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new(format!("{table} document without _id")))?;
            let Bson::String(old_id) = &id else {
                return Err(Error::new(format!("{table}: task_id is TEXT in uniqc, found {id}")).for_document(id));
            };
            if old_id.starts_with(PREFIX) {
                continue; // the filter keeps them out; never migrate one twice
            }
            let fail = |m: String| Error::new(format!("{table} {old_id}: {m}")).for_document(id.clone());
            let column = |name: &str, required: bool| match task.get(name) {
                Some(value) => Ok(value.clone()),
                None if required => Err(fail(format!("no {name} (NOT NULL in uniqc)"))),
                None => Ok(Bson::Null),
            };
            let metadata = match task.get("metadata_json") {
                None | Some(Bson::Null) => None,
                Some(Bson::String(s)) => Some(s.as_str()),
                Some(other) => return Err(fail(format!("metadata_json is TEXT in uniqc, found {other}"))),
            };
            let (metadata, read) = stamped_metadata(metadata, old_id);
            self.tally.incr(read);

            let new_id = uniqc_id(table, old_id);
            let mut parent = doc! {"_id": &new_id};
            for (name, required) in TASK_COLUMNS {
                let value = match name {
                    "metadata_json" => Bson::String(metadata.clone()),
                    _ => column(name, required)?,
                };
                parent.insert(name, value);
            }
            let mut shard = doc! {
                "_id": {"uniqc_task_id": &new_id, "shard_index": 0},
                "platform_task_id": old_id.as_str(),
                "backend": column("backend", true)?,
                "circuit_count": 1,
                "sub_index_offset": 0,
                "status": column("status", true)?,
                "result_json": column("result_json", false)?,
                "error_message": column("error_message", false)?,
                "submit_time": column("submit_time", true)?,
                "update_time": column("update_time", true)?,
            };
            if archived {
                let at = column("archived_at", true)?;
                parent.insert("archived_at", at.clone());
                shard.insert("archived_at", at);
            }
            for (name, value) in &task {
                if !parent.contains_key(name) && name != "_id" {
                    parent.insert(name, value.clone());
                }
            }
            actions.push(Action::insert(table, parent));
            actions.push(Action::insert(shard_table, shard));
            actions.push(Action::delete_one(table, doc! {"_id": id.clone()}));
            self.tally.incr(if archived {
                "archived_tasks_migrated"
            } else {
                "tasks_migrated"
            });
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![self.tally.report("summary", "legacy_task_ids")])
    }
}

godwit_sdk::export!(LegacyTaskIds);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    /// Upstream `test_generate_uniqc_task_id_format` and
    /// `test_is_uniqc_task_id_rejects_other_formats`, on the derived ids.
    #[test]
    fn ids_have_upstreams_format_and_depend_on_table_and_old_id() {
        let id = uniqc_id("tasks", "ABC123DEADBEEF");
        assert!(id.starts_with("uqt_") && id.len() == "uqt_".len() + 32, "{id}");
        assert!(
            id[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&id[16..17], "8", "a version-8 UUID");
        assert_eq!(id, uniqc_id("tasks", "ABC123DEADBEEF"));
        assert_ne!(id, uniqc_id("archived_tasks", "ABC123DEADBEEF"));
        assert_ne!(id, uniqc_id("tasks", "ABC123DEADBEEG"));
    }

    #[test]
    fn metadata_rules() {
        for (old, want, read) in [
            (None, r#"{"legacy_platform_id": "p1"}"#, "metadata_empty"),
            (Some(""), r#"{"legacy_platform_id": "p1"}"#, "metadata_empty"),
            (Some("{oops"), r#"{"legacy_platform_id": "p1"}"#, "metadata_unparsable"),
            (
                Some("[1,2]"),
                r#"{"legacy_metadata_raw": [1, 2], "legacy_platform_id": "p1"}"#,
                "metadata_not_object",
            ),
            (
                Some(r#""note""#),
                r#"{"legacy_metadata_raw": "note", "legacy_platform_id": "p1"}"#,
                "metadata_not_object",
            ),
            (
                Some(r#"{"submitted_by": "test"}"#),
                r#"{"submitted_by": "test", "legacy_platform_id": "p1"}"#,
                "metadata_object",
            ),
            (
                Some(r#"{"legacy_platform_id": "x", "k": "é"}"#),
                r#"{"legacy_platform_id": "p1", "k": "é"}"#,
                "metadata_object",
            ),
        ] {
            assert_eq!(stamped_metadata(old, "p1"), (want.to_string(), read), "{old:?}");
        }
    }

    #[test]
    fn a_legacy_task_is_reinserted_under_its_uniqc_id_with_one_shard() {
        let mut h = Harness::<LegacyTaskIds>::new();
        let task = doc! {
            "_id": "d3f0c1", "backend": "originq:WK_C180", "status": "failed", "shots": 1000,
            "submit_time": "2026-05-01T00:00:00+00:00", "update_time": "2026-05-01T00:01:00+00:00",
            "result_json": Bson::Null, "metadata_json": "{}", "error_message": "bad chip",
        };
        let new_id = uniqc_id("tasks", "d3f0c1");
        let uniqc = doc! {"_id": "uqt_0123", "status": "success"};
        let err = Harness::<LegacyTaskIds>::new()
            .process(0, vec![uniqc.clone(), doc! {"_id": "uqt`"}])
            .unwrap_err();
        assert!(
            err.message.contains("uqt`: no backend"),
            "past the range: {}",
            err.message
        );
        let actions = h.process(0, vec![task, uniqc]).unwrap();
        assert_eq!(
            actions,
            vec![
                Action::insert(
                    "tasks",
                    doc! {
                        "_id": &new_id, "backend": "originq:WK_C180", "status": "failed", "shots": 1000,
                        "submit_time": "2026-05-01T00:00:00+00:00", "update_time": "2026-05-01T00:01:00+00:00",
                        "result_json": Bson::Null, "metadata_json": r#"{"legacy_platform_id": "d3f0c1"}"#,
                        "error_message": "bad chip",
                    }
                ),
                Action::insert(
                    "task_shards",
                    doc! {
                        "_id": {"uniqc_task_id": &new_id, "shard_index": 0}, "platform_task_id": "d3f0c1",
                        "backend": "originq:WK_C180", "circuit_count": 1, "sub_index_offset": 0, "status": "failed",
                        "result_json": Bson::Null, "error_message": "bad chip",
                        "submit_time": "2026-05-01T00:00:00+00:00", "update_time": "2026-05-01T00:01:00+00:00",
                    }
                ),
                Action::delete_one("tasks", doc! {"_id": "d3f0c1"}),
            ]
        );
        let summary = h.finish().unwrap();
        assert_eq!(
            summary,
            vec![Action::report(
                "summary",
                "legacy_task_ids",
                r#"{"tasks_migrated": 1, "archived_tasks_migrated": 0, "metadata_object": 1, "metadata_empty": 0, "metadata_unparsable": 0, "metadata_not_object": 0}"#
            )]
        );
    }

    #[test]
    fn an_archived_task_keeps_archived_at_on_task_and_shard() {
        let mut h = Harness::<LegacyTaskIds>::new();
        let task = doc! {
            "_id": "job-1", "backend": "ibm:fez", "status": "success", "shots": 10,
            "submit_time": "s", "update_time": "u", "result_json": "{}", "metadata_json": "{}",
            "archived_at": "2026-05-02T00:00:00+00:00",
        };
        let actions = h.process(1, vec![task]).unwrap();
        let new_id = uniqc_id("archived_tasks", "job-1");
        let Action::Insert { collection, document } = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (collection.as_str(), document.get_str("_id").unwrap()),
            ("archived_tasks", new_id.as_str())
        );
        assert_eq!(
            document.get("error_message"),
            Some(&Bson::Null),
            "no error_message: null"
        );
        assert_eq!(document.get_str("archived_at").unwrap(), "2026-05-02T00:00:00+00:00");
        let Action::Insert { collection, document } = &actions[1] else {
            panic!("{actions:?}")
        };
        assert_eq!(collection, "archived_task_shards");
        assert_eq!(document.get_str("archived_at").unwrap(), "2026-05-02T00:00:00+00:00");
        assert_eq!(actions[2], Action::delete_one("archived_tasks", doc! {"_id": "job-1"}));
    }

    #[test]
    fn data_not_in_uniqcs_shape_stops_naming_the_task() {
        let mut h = Harness::<LegacyTaskIds>::new();
        let err = h.process(0, vec![doc! {"_id": "p9", "status": "success"}]).unwrap_err();
        assert_eq!(err.document_id, Some("p9".into()));
        assert!(err.message.contains("no backend"), "{}", err.message);
        let err = h.process(0, vec![doc! {"_id": 7}]).unwrap_err();
        assert!(err.message.contains("TEXT"), "{}", err.message);
    }
}
