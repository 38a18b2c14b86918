//! Seed 002, uniqc schema v3 "compiled circuit storage" (`ALTER TABLE tasks
//! ADD COLUMN compiled_circuit_json TEXT`, same for `archived_tasks`): every
//! task, hot or archived, gets the field with the column's default, `null`,
//! until the submit tooling fills it. Chained after v2 by `requires`.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub const FIELD: &str = "compiled_circuit_json";
const COLLECTIONS: [&str; 2] = ["tasks", "archived_tasks"];

pub struct CompiledCircuit;

impl Migration for CompiledCircuit {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("uniqc-compiled-circuit", "3.0.0")
            .requires("^2.0")
            .description("uniqc v3: add compiled_circuit_json (default null) to tasks and archived_tasks");
        for collection in COLLECTIONS {
            // Only documents without the field: rerunning never resets a value
            // the application has written since.
            manifest = manifest.pass(
                Pass::new(collection, collection)
                    .filter(doc! {FIELD: {"$exists": false}})
                    .projection(doc! {"_id": 1})
                    .writes([collection]),
            );
        }
        manifest
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(CompiledCircuit)
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

godwit_sdk::export!(CompiledCircuit);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn both_collections_get_the_null_default() {
        let mut h = Harness::<CompiledCircuit>::new();
        assert_eq!(
            h.process(0, vec![doc! {"_id": "t1"}]).unwrap(),
            vec![Action::set("tasks", "t1", doc! {FIELD: Bson::Null})]
        );
        assert_eq!(
            h.process(1, vec![doc! {"_id": "t2"}]).unwrap(),
            vec![Action::set("archived_tasks", "t2", doc! {FIELD: Bson::Null})]
        );
    }

    #[test]
    fn requires_the_archive_schema() {
        let manifest = CompiledCircuit::manifest();
        assert_eq!(
            (manifest.version.as_str(), manifest.requires.as_deref()),
            ("3.0.0", Some("^2.0"))
        );
    }
}
