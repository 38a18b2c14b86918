//! Seed 002, uniqc schema v4 (upstream `uniqc/backend_adapter/task/store.py`,
//! `_apply_v4`): the `task_shards` and `archived_task_shards` tables that map
//! one uniqc task id to the platform jobs behind it, with upstream's three
//! indexes (`task_shards_platform_idx`, `task_shards_status_idx`,
//! `archived_task_shards_platform_idx`). Like v2, schema only: no pass.
//!
//! A shard's primary key `(uniqc_task_id, shard_index)` is its `_id`, the
//! document `{uniqc_task_id, shard_index}` (in that order), so the `_id_`
//! index is upstream's primary key; the other columns are fields. Upstream's
//! `FOREIGN KEY (uniqc_task_id) REFERENCES tasks(task_id) ON DELETE CASCADE`
//! has no MongoDB counterpart: whoever deletes a task deletes its shards
//! (`uniqc-archive-expired` moves them with their task, as upstream's
//! `ArchiveStore.archive_task` does).

use godwit_sdk::{Action, Context, Document, Error, Index, Manifest, Migration, Params, SchemaKind, doc};

pub const SHARDS: &str = "task_shards";
pub const ARCHIVED_SHARDS: &str = "archived_task_shards";

/// Upstream v4's statements in its order: each table, then its indexes
/// (name, column).
pub const TABLES: [(&str, &[(&str, &str)]); 2] = [
    (
        SHARDS,
        &[
            ("task_shards_platform_idx", "platform_task_id"),
            ("task_shards_status_idx", "status"),
        ],
    ),
    (
        ARCHIVED_SHARDS,
        &[("archived_task_shards_platform_idx", "platform_task_id")],
    ),
];

pub struct TaskShards;

impl Migration for TaskShards {
    fn manifest() -> Manifest {
        Manifest::new("uniqc-task-shards", "4.0.0")
            .requires("^3.0")
            .description("uniqc v4: create task_shards and archived_task_shards with their indexes")
            .schema(SchemaKind::CreateCollection, SHARDS)
            .schema(SchemaKind::CreateIndex, SHARDS)
            .schema(SchemaKind::CreateCollection, ARCHIVED_SHARDS)
            .schema(SchemaKind::CreateIndex, ARCHIVED_SHARDS)
    }

    /// No pass, so no batch: `process` only refuses a stray one, and `TaskShards` holds nothing to carry.
    fn keeps_state() -> bool {
        false
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(TaskShards)
    }

    fn setup(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for (table, indexes) in TABLES {
            actions.push(Action::create_collection(table, None));
            for (name, field) in indexes {
                actions.push(Action::create_index(table, Index::new(*name, doc! {*field: 1})));
            }
        }
        Ok(actions)
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, _batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        Err(Error::new(format!("uniqc v4 has no pass, got a batch for pass {pass}")))
    }
}

godwit_sdk::export!(TaskShards);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn creates_both_shard_tables_and_upstreams_three_indexes() {
        let mut h = Harness::<TaskShards>::new();
        let index = |c: &str, n: &str, f: &str| Action::create_index(c, Index::new(n, doc! {f: 1}));
        assert_eq!(
            h.setup().unwrap(),
            vec![
                Action::create_collection("task_shards", None),
                index("task_shards", "task_shards_platform_idx", "platform_task_id"),
                index("task_shards", "task_shards_status_idx", "status"),
                Action::create_collection("archived_task_shards", None),
                index(
                    "archived_task_shards",
                    "archived_task_shards_platform_idx",
                    "platform_task_id"
                ),
            ]
        );
        assert_eq!(TaskShards::manifest().requires.as_deref(), Some("^3.0"));
    }
}
