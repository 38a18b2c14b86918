//! QDash v1.5.3 `remove-best-data` (`migrate_remove_best_data` in upstream's
//! `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`): the `best_data`
//! field, no longer used since metrics are computed when they are read, is
//! removed from every document of `qubit`, `qubit_history`, `coupling` and
//! `coupling_history` that has it (whatever its value, `null` included).
//!
//! **Figures.** The `summary` report is upstream's statistics: per
//! collection, the number of documents holding `best_data` (keys `qubit`,
//! `qubit_history`, `coupling`, `coupling_history`), the same in a dry run
//! and an execute. A second dry run after the execute reports zeros.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};

/// Upstream's collections, in its order (the summary's order).
pub const COLLECTIONS: [&str; 4] = ["qubit", "qubit_history", "coupling", "coupling_history"];
pub const FIELD: &str = "best_data";

pub struct RemoveBestData {
    tally: Tally,
}

impl Migration for RemoveBestData {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("qdash-remove-best-data", "1.5.3")
            .requires("<1.5.3")
            .description(
                "QDash v1.5.3 remove-best-data: best_data removed from qubit, qubit_history, coupling and \
                 coupling_history",
            );
        for collection in COLLECTIONS {
            manifest = manifest.pass(
                Pass::new(collection, collection)
                    .filter(doc! {FIELD: {"$exists": true}})
                    .projection(doc! {"_id": 1})
                    .writes([collection]),
            );
        }
        manifest
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for collection in COLLECTIONS {
            tally.touch(collection);
        }
        Ok(RemoveBestData { tally })
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let collection = COLLECTIONS[pass];
        let mut actions = Vec::with_capacity(batch.len());
        for document in batch {
            let id = document
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a document came without _id"))?;
            self.tally.incr(collection);
            actions.push(Action::unset(collection, id, [FIELD]));
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![self.tally.report("summary", "remove-best-data")])
    }
}

godwit_sdk::export!(RemoveBestData);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn every_holder_loses_best_data_and_is_counted() {
        let mut h = Harness::<RemoveBestData>::new();
        let actions = h
            .run_pass(
                2,
                vec![doc! {"_id": 1, "best_data": {}}, doc! {"_id": 2, "best_data": null}],
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::unset("coupling", 1, [FIELD]),
                Action::unset("coupling", 2, [FIELD])
            ]
        );
        let summary = h.finish().unwrap();
        assert_eq!(
            summary,
            vec![Action::report(
                "summary",
                "remove-best-data",
                r#"{"qubit": 0, "qubit_history": 0, "coupling": 2, "coupling_history": 0}"#
            )]
        );
    }
}
