//! Counts one more visit on every page: `$inc` of `visits` with no pass
//! filter, the migration issue 20 found without a home. Every run wants to
//! write every page again, so it never converges; it says so in its
//! manifest (`idempotent: false`).

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct CountVisits;

impl Migration for CountVisits {
    fn manifest() -> Manifest {
        Manifest::new("count-visits", "1.0.0")
            .description("$inc pages.visits by one")
            .not_idempotent()
            .pass(Pass::new("pages", "pages").batch_size(25).writes(["pages"]))
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(CountVisits)
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
                    "pages",
                    doc! {"_id": id},
                    doc! {"$inc": {"visits": 1}},
                ))
            })
            .collect()
    }
}

godwit_sdk::export!(CountVisits);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    /// Every page, visited or not, gets one more visit.
    #[test]
    fn one_more_visit_per_page() {
        let actions = Harness::<CountVisits>::new()
            .run_pass(0, vec![doc! {"_id": 1, "visits": 0}, doc! {"_id": 2, "visits": 7}])
            .unwrap();
        assert_eq!(actions.len(), 2);
        assert!(
            actions
                .iter()
                .all(|a| matches!(a, Action::Update { update, .. } if *update == doc! {"$inc": {"visits": 1}}))
        );
    }
}
