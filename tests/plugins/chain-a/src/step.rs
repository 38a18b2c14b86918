// Shared by the chain-* test plugins (each includes this file): one step of a
// version chain that sets a field on every `items` document lacking it.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct Step;

impl Migration for Step {
    fn manifest() -> Manifest {
        let manifest = Manifest::new(NAME, VERSION)
            .description(format!("sets items.{FIELD}"))
            .pass(Pass::new("items", "items").filter(doc! {FIELD: {"$exists": false}}).writes(["items"]));
        match REQUIRES {
            Some(requires) => manifest.requires(requires),
            None => manifest,
        }
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Step)
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        batch
            .iter()
            .map(|d| {
                let id = d.get("_id").cloned().ok_or_else(|| Error::new("item without _id"))?;
                Ok(Action::set("items", id, doc! {FIELD: VERSION}))
            })
            .collect()
    }
}

godwit_sdk::export!(Step);
