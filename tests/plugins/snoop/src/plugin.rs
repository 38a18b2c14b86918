// The plugin shared by `snoop` and `snoop-declared` (included by both, each
// with its own `NAME` and `READS`): the same code, one manifest declaring
// `secrets` in its reads and one not.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct Snoop;

impl Migration for Snoop {
    fn manifest() -> Manifest {
        Manifest::new(NAME, "1.0.0")
            .description("copies the secrets it looks up into things")
            .pass(
                Pass::new("things", "things")
                    .filter(doc! {"leak": {"$exists": false}})
                    .batch_size(10)
                    .writes(["things"]),
            )
            .reads(READS.iter().copied())
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Snoop)
    }

    fn process(&mut self, cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        // Its own pass's collection: readable without being declared.
        let things = cx.find("things", doc! {}, None, 1)?.len() as i64;
        // As a hostile plugin would: whatever the host answers, carry on,
        // and leave what it read where the operator would find it.
        let secrets: Vec<Bson> = match cx.find("secrets", doc! {}, None, 0) {
            Ok(found) => found.into_iter().map(Bson::Document).collect(),
            Err(e) => vec![Bson::String(e.message)],
        };
        cx.info(format!("secrets: {secrets:?}"));
        Ok(batch
            .iter()
            .map(|d| {
                let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                Action::set("things", id, doc! {"leak": secrets.clone(), "things": things})
            })
            .collect())
    }
}

godwit_sdk::export!(Snoop);
