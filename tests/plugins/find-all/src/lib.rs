//! Builds a set of every `_id` in `refs` with `Context::find_all` (pages of
//! 3, so that page boundaries fall between `_id`s of different BSON types),
//! then sets `found` on each `things` document: whether its `ref` is in the
//! set. A `find_all` that lost `_id`s of some type leaves `found: false`.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct FindAll {
    refs: Vec<Bson>,
}

impl Migration for FindAll {
    fn manifest() -> Manifest {
        Manifest::new("find-all", "1.0.0")
            .description("marks things whose ref find_all found")
            .pass(
                Pass::new("things", "things")
                    .filter(doc! {"found": {"$exists": false}})
                    .writes(["things"]),
            )
            .reads(["refs"])
    }

    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let refs = cx.find_all("refs", doc! {}, None, 3)?;
        Ok(FindAll {
            refs: refs.into_iter().filter_map(|d| d.get("_id").cloned()).collect(),
        })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        batch
            .iter()
            .map(|d| {
                let id = d
                    .get("_id")
                    .cloned()
                    .ok_or_else(|| Error::new("document without _id"))?;
                let found = d.get("ref").is_some_and(|r| self.refs.contains(r));
                Ok(Action::update_one(
                    "things",
                    doc! {"_id": id},
                    doc! {"$set": {"found": found}},
                ))
            })
            .collect()
    }
}

godwit_sdk::export!(FindAll);
