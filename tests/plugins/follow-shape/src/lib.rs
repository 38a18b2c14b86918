//! Moves `accounts` from schema 1 to schema 2: `handle` becomes the
//! lower-cased `name`. The pass reads only old-shape accounts, so an
//! account the run migrated is not read again unless an application writes
//! it back to the old shape. Each account processed in one state (`_id`
//! and `name`) is remembered: seeing it again in the same state is reported
//! as `twice` - the follow phase, and a resume from its journaled stream
//! position, must process every change exactly once.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};
use std::collections::HashSet;

pub struct FollowShape {
    seen: HashSet<String>,
}

impl Migration for FollowShape {
    fn manifest() -> Manifest {
        Manifest::new("follow-shape", "2.0.0")
            .requires(">=1.0.0")
            .description("accounts: schema 1 -> 2 (handle = lower-cased name)")
            .pass(
                Pass::new("accounts", "accounts")
                    .filter(doc! {"schema": {"$ne": 2}})
                    .projection(doc! {"name": 1, "schema": 1})
                    .batch_size(50)
                    .writes(["accounts"]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(FollowShape { seen: HashSet::new() })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for account in batch {
            let id = account
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("account without _id"))?;
            let name = account.get_str("name").unwrap_or("").to_string();
            if !self.seen.insert(format!("{id}/{name}")) {
                actions.push(Action::report(
                    "twice",
                    id.to_string(),
                    format!("account {id} processed twice with name {name:?}"),
                ));
            }
            actions.push(Action::update_one(
                "accounts",
                doc! {"_id": id},
                doc! {"$set": {"schema": 2, "handle": name.to_lowercase()}, "$inc": {"migrations": 1}},
            ));
        }
        Ok(actions)
    }
}

godwit_sdk::export!(FollowShape);
