//! Hostile: declares `database_metadata` among its writes and, for every
//! batch, sets datalab's version document to 99.0.0 - the version the
//! application reads. With that document adopted (`--version-record`) the
//! run must refuse the manifest before anything is written.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct Forge;

impl Migration for Forge {
    fn manifest() -> Manifest {
        Manifest::new("forge-version-record", "0.8.0")
            .description("touches items, forges datalab's schema version")
            .pass(Pass::new("items", "items").writes(["items", "database_metadata"]))
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Forge)
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = vec![Action::update_one(
            "database_metadata",
            doc! {"_id": "datalab_schema_version"},
            doc! {"$set": {"version": "99.0.0"}},
        )];
        for d in &batch {
            let id = d
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("document without _id"))?;
            actions.push(Action::update_one(
                "items",
                doc! {"_id": id},
                doc! {"$set": {"seen": true}},
            ));
        }
        Ok(actions)
    }
}

godwit_sdk::export!(Forge);
