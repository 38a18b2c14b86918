//! Seed 002, uniqc schema v2 "archive support": `archived_tasks` is created
//! with uniqc's three indexes (`archived_backend_idx`, `archived_status_idx`,
//! `archived_submit_time_idx`: schema operations returned by `setup`, applied
//! before the first pass), then completed and failed tasks move from `tasks`
//! to it with every field plus `archived_at` (ISO-8601 UTC), keeping the hot
//! `tasks` collection small.
//!
//! Each task's insert and delete are actions of the same batch, and the host
//! applies a batch in one transaction with its progress marker: a run killed
//! at any point leaves every task in exactly one of the two collections, and
//! a resumed run neither archives a task twice nor loses one.
//!
//! `archived_at` is the run's start time (the plugin has no clock: the host
//! freezes it). Every task of one run is stamped alike, also after a resume,
//! which makes the value reproducible by `journal replay`.

use godwit_sdk::{Action, Context, Document, Error, Index, Manifest, Migration, Params, Pass, SchemaKind, Tally, doc};

/// Statuses that leave the hot path (uniqc's archive rule).
pub const ARCHIVED_STATUSES: [&str; 2] = ["completed", "failed"];

/// uniqc v2's `CREATE INDEX IF NOT EXISTS` statements on `archived_tasks`:
/// name and column.
pub const ARCHIVE_INDEXES: [(&str, &str); 3] = [
    ("archived_backend_idx", "backend"),
    ("archived_status_idx", "status"),
    ("archived_submit_time_idx", "submit_time"),
];

pub struct ArchiveTasks {
    archived_at: String,
    tally: Tally,
}

impl Migration for ArchiveTasks {
    fn manifest() -> Manifest {
        Manifest::new("uniqc-archive-tasks", "2.0.0")
            .requires("^1.0")
            .description("uniqc v2: move completed and failed tasks to archived_tasks with archived_at")
            .pass(
                Pass::new("archive", "tasks")
                    .filter(doc! {"status": {"$in": ARCHIVED_STATUSES.to_vec()}})
                    .writes(["archived_tasks", "tasks"]),
            )
            .schema(SchemaKind::CreateCollection, "archived_tasks")
            .schema(SchemaKind::CreateIndex, "archived_tasks")
    }

    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let archived_at = cx
            .run()
            .started_at()
            .try_to_rfc3339_string()
            .map_err(|e| Error::new(format!("run start is not a representable date: {e}")))?;
        let mut tally = Tally::new();
        tally.touch("archived");
        for status in ARCHIVED_STATUSES {
            tally.touch(status);
        }
        Ok(ArchiveTasks { archived_at, tally })
    }

    /// `CREATE TABLE archived_tasks` and its indexes, before any task moves.
    /// (The `_id` is uniqc's `task_id` primary key.)
    fn setup(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let mut actions = vec![Action::create_collection("archived_tasks", None)];
        for (name, field) in ARCHIVE_INDEXES {
            actions.push(Action::create_index(
                "archived_tasks",
                Index::new(name, doc! {field: 1}),
            ));
        }
        Ok(actions)
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::with_capacity(batch.len() * 2);
        for mut task in batch {
            let id = task.get("_id").cloned().ok_or_else(|| Error::new("task without _id"))?;
            let status = task
                .get_str("status")
                .map_err(|e| Error::new(format!("task status: {e}")).for_document(id.clone()))?
                .to_string();
            task.insert("archived_at", self.archived_at.clone());
            // The copy keeps the task's `_id`: were it ever inserted twice, the
            // unique index would refuse it rather than duplicate the task.
            actions.push(Action::insert("archived_tasks", task));
            actions.push(Action::delete_one("tasks", doc! {"_id": id}));
            self.tally.incr("archived");
            self.tally.incr(&status);
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![self.tally.report("summary", "archive")])
    }
}

godwit_sdk::export!(ArchiveTasks);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn creates_archived_tasks_and_its_three_indexes_first() {
        let mut h = Harness::<ArchiveTasks>::new();
        let setup = h.setup().unwrap();
        assert_eq!(setup.len(), 4);
        assert_eq!(setup[0], Action::create_collection("archived_tasks", None));
        assert_eq!(
            setup[3],
            Action::create_index(
                "archived_tasks",
                Index::new("archived_submit_time_idx", doc! {"submit_time": 1})
            )
        );
    }

    #[test]
    fn moves_each_task_with_archived_at_from_the_run_start() {
        let mut h = Harness::<ArchiveTasks>::new();
        let task = doc! {"_id": "t1", "status": "failed", "backend": "sim", "shots": 100};
        let actions = h.process(0, vec![task]).unwrap();
        assert_eq!(
            actions,
            vec![
                Action::insert(
                    "archived_tasks",
                    doc! {"_id": "t1", "status": "failed", "backend": "sim", "shots": 100, "archived_at": "2026-01-01T00:00:00Z"}
                ),
                Action::delete_one("tasks", doc! {"_id": "t1"}),
            ]
        );
        assert_eq!(
            h.finish().unwrap(),
            vec![Action::report(
                "summary",
                "archive",
                r#"{"archived": 1, "completed": 0, "failed": 1}"#
            )]
        );
    }

    /// The pass's filter keeps such a task from the plugin (the harness
    /// applies it as a run does); should one reach `process` anyway, the
    /// error names it.
    #[test]
    fn a_task_without_status_is_an_error_naming_it() {
        let mut h = Harness::<ArchiveTasks>::new();
        assert_eq!(h.process(0, vec![doc! {"_id": "t9"}]).unwrap(), vec![]);
        let err = h.process_as_given(0, vec![doc! {"_id": "t9"}]).unwrap_err();
        assert_eq!(err.document_id, Some("t9".into()));
    }
}
