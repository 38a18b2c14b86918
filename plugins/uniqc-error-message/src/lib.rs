//! Seed 002, uniqc schema v3 (upstream `uniqc/backend_adapter/task/store.py`,
//! `_apply_v3`): `ALTER TABLE tasks ADD COLUMN error_message TEXT`, and the
//! same on `archived_tasks`. SQLite gives every existing row the column's
//! default, NULL; here every task, live or archived, that lacks the field
//! gets `error_message: null`. Upstream tolerates a column that already
//! exists ("duplicate column"); here a document that has the field keeps its
//! value, so a rerun never resets what the application wrote since.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub const FIELD: &str = "error_message";
/// The tables upstream's `_apply_v3` alters, in its order.
pub const COLLECTIONS: [&str; 2] = ["tasks", "archived_tasks"];

pub struct ErrorMessage;

impl Migration for ErrorMessage {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("uniqc-error-message", "3.0.0")
            .requires("^2.0")
            .description("uniqc v3: add error_message (default null) to tasks and archived_tasks");
        for collection in COLLECTIONS {
            manifest = manifest.pass(
                Pass::new(collection, collection)
                    .filter(doc! {FIELD: {"$exists": false}})
                    .projection(doc! {"_id": 1})
                    .writes([collection]),
            );
        }
        manifest
    }

    /// Each batch's actions come from the batch alone: every `_id` in it gets `error_message: null`.
    fn keeps_state() -> bool {
        false
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(ErrorMessage)
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let collection = COLLECTIONS[pass];
        batch
            .into_iter()
            .map(|d| {
                let id = d
                    .get("_id")
                    .cloned()
                    .ok_or_else(|| Error::new(format!("{collection} document without _id")))?;
                Ok(Action::set(collection, id, doc! {FIELD: Bson::Null}))
            })
            .collect()
    }
}

godwit_sdk::export!(ErrorMessage);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn both_collections_get_the_null_default() {
        let mut h = Harness::<ErrorMessage>::new();
        assert_eq!(
            h.process(0, vec![doc! {"_id": "t1"}]).unwrap(),
            vec![Action::set("tasks", "t1", doc! {FIELD: Bson::Null})]
        );
        assert_eq!(
            h.process(1, vec![doc! {"_id": "t2"}]).unwrap(),
            vec![Action::set("archived_tasks", "t2", doc! {FIELD: Bson::Null})]
        );
    }

    /// Upstream's "duplicate column" tolerance: an existing value stays.
    #[test]
    fn a_task_that_has_the_field_is_left_alone() {
        let mut h = Harness::<ErrorMessage>::new();
        let failed = doc! {"_id": "t3", "error_message": "bad chip"};
        assert_eq!(h.process(0, vec![failed]).unwrap(), vec![]);
    }

    #[test]
    fn requires_the_archive_schema() {
        let manifest = ErrorMessage::manifest();
        assert_eq!(
            (manifest.version.as_str(), manifest.requires.as_deref()),
            ("3.0.0", Some("^2.0"))
        );
    }
}
