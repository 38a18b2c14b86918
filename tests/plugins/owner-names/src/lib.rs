//! Copies each thing's owner name from the `owners` collection (one lookup
//! per batch), stamps it with the run's start time, and inserts one audit
//! row per batch without an `_id` (godwit derives it from the run). Its
//! actions depend on reference data, the run's identity and the host's
//! `_id`s: what `--plan` must reproduce, or refuse.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, doc};
use std::collections::HashMap;

pub struct OwnerNames {
    started_at: godwit_sdk::bson::DateTime,
}

impl Migration for OwnerNames {
    fn manifest() -> Manifest {
        Manifest::new("owner-names", "1.1.0")
            .description("things.owner_name from owners.name")
            .pass(
                Pass::new("things", "things")
                    .filter(doc! {"owner_name": {"$exists": false}})
                    .batch_size(25)
                    .writes(["things", "audit"]),
            )
            .reads(["owners"])
    }

    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        Ok(OwnerNames {
            started_at: cx.run().started_at(),
        })
    }

    fn process(&mut self, cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let owners: HashMap<String, String> = cx
            .find("owners", doc! {}, None, 0)?
            .into_iter()
            .filter_map(|o| Some((o.get("_id")?.to_string(), o.get_str("name").ok()?.to_string())))
            .collect();
        let mut actions = Vec::new();
        for thing in &batch {
            let id = thing.get("_id").cloned().unwrap_or(Bson::Null);
            let owner = thing.get("owner").map(Bson::to_string).unwrap_or_default();
            match owners.get(&owner) {
                Some(name) => actions.push(Action::update_one(
                    "things",
                    doc! {"_id": id},
                    doc! {"$set": {"owner_name": name, "migrated_at": self.started_at}},
                )),
                None => actions.push(Action::report(
                    "unknown-owner",
                    id.to_string(),
                    format!("owner {owner}"),
                )),
            }
        }
        actions.push(Action::insert(
            "audit",
            doc! {"batch_of": batch.len() as i64, "at": self.started_at},
        ));
        Ok(actions)
    }
}

godwit_sdk::export!(OwnerNames);
