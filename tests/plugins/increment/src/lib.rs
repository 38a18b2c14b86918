//! Increments `n` of every document in `counters` - an update that is wrong
//! if applied twice, so crash tests can see any double apply.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct Increment;

impl Migration for Increment {
    fn manifest() -> Manifest {
        Manifest::new("increment", "2.0.0")
            .description("$inc counters.n by one")
            // Applied twice, a document would count 2.
            .not_idempotent()
            // Only documents not yet incremented, so that the verification
            // after the run (the pass re-run dry) finds nothing left to do.
            .pass(
                Pass::new("counters", "counters")
                    .filter(doc! {"n": 0})
                    .batch_size(10)
                    .writes(["counters"]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Increment)
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        batch
            .iter()
            .map(|d| {
                let id = d
                    .get("_id")
                    .cloned()
                    .ok_or_else(|| Error::new("document without _id"))?;
                Ok(Action::update_one(
                    "counters",
                    doc! {"_id": id},
                    doc! {"$inc": {"n": 1}},
                ))
            })
            .collect()
    }
}

godwit_sdk::export!(Increment);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    /// As a run reads the collection: documents already incremented (or
    /// without `n`) are not handed to the plugin.
    #[test]
    fn one_increment_per_document() {
        let actions = Harness::<Increment>::new()
            .run_pass(
                0,
                vec![
                    doc! {"_id": 2, "n": 0},
                    doc! {"_id": 3, "n": 1},
                    doc! {"_id": 4},
                    doc! {"_id": 1, "n": 0},
                ],
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::update_one("counters", doc! {"_id": 1}, doc! {"$inc": {"n": 1}}),
                Action::update_one("counters", doc! {"_id": 2}, doc! {"$inc": {"n": 1}}),
            ]
        );
    }
}
