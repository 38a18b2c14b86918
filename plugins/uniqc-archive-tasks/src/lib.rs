//! Seed 002, uniqc schema v2 "archive support" (upstream
//! `uniqc/backend_adapter/task/store.py`, `_apply_v2`): `CREATE TABLE IF NOT
//! EXISTS archived_tasks` and its three indexes (`archived_backend_idx`,
//! `archived_status_idx`, `archived_submit_time_idx`), and nothing else.
//!
//! Upstream's v2 moves no task: tasks are archived later by the application
//! (`uniqc/gateway/db/archive_store.py`, per task or through the API's
//! `archive-expired`), which `uniqc-archive-expired` rebuilds as an optional
//! step. So this plugin has no pass: its schema operations, returned by
//! `setup`, are the whole migration. `archived_tasks`' primary key
//! `task_id` is the documents' `_id`, as in `tasks`.

use godwit_sdk::{Action, Context, Error, Index, Manifest, Migration, Params, SchemaKind, doc};

pub const ARCHIVE: &str = "archived_tasks";

/// uniqc v2's `CREATE INDEX IF NOT EXISTS` statements on `archived_tasks`:
/// name and column.
pub const ARCHIVE_INDEXES: [(&str, &str); 3] = [
    ("archived_backend_idx", "backend"),
    ("archived_status_idx", "status"),
    ("archived_submit_time_idx", "submit_time"),
];

pub struct ArchiveTable;

impl Migration for ArchiveTable {
    fn manifest() -> Manifest {
        Manifest::new("uniqc-archive-tasks", "2.0.0")
            .requires("^1.0")
            .description("uniqc v2: create archived_tasks and its three indexes")
            .schema(SchemaKind::CreateCollection, ARCHIVE)
            .schema(SchemaKind::CreateIndex, ARCHIVE)
    }

    /// No pass, so no batch: `process` only refuses a stray one, and `ArchiveTable` holds nothing to carry.
    fn keeps_state() -> bool {
        false
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(ArchiveTable)
    }

    fn setup(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let mut actions = vec![Action::create_collection(ARCHIVE, None)];
        for (name, field) in ARCHIVE_INDEXES {
            actions.push(Action::create_index(ARCHIVE, Index::new(name, doc! {field: 1})));
        }
        Ok(actions)
    }

    fn process(
        &mut self,
        _cx: &mut Context,
        pass: usize,
        _batch: Vec<godwit_sdk::Document>,
    ) -> Result<Vec<Action>, Error> {
        Err(Error::new(format!("uniqc v2 has no pass, got a batch for pass {pass}")))
    }
}

godwit_sdk::export!(ArchiveTable);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn creates_archived_tasks_and_its_three_indexes_and_moves_nothing() {
        let mut h = Harness::<ArchiveTable>::new();
        assert_eq!(
            h.setup().unwrap(),
            vec![
                Action::create_collection("archived_tasks", None),
                Action::create_index(
                    "archived_tasks",
                    Index::new("archived_backend_idx", doc! {"backend": 1})
                ),
                Action::create_index("archived_tasks", Index::new("archived_status_idx", doc! {"status": 1})),
                Action::create_index(
                    "archived_tasks",
                    Index::new("archived_submit_time_idx", doc! {"submit_time": 1})
                ),
            ]
        );
        assert!(ArchiveTable::manifest().passes.is_empty());
        assert_eq!(h.finish().unwrap(), vec![]);
    }
}
