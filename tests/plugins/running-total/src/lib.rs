//! Keeps a running total of `items.n` in `totals` (`_id: "sum"`): each batch
//! looks the total up, marks its items with the total after each of them and
//! raises the stored total by the batch's sum. Batch N+1 must read what batch
//! N wrote - the case where the host, which runs the next batch through the
//! plugin while this one commits, has to process it again.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct RunningTotal;

impl Migration for RunningTotal {
    fn manifest() -> Manifest {
        Manifest::new("running-total", "1.0.0")
            .description("items.running: the running total of items.n, kept in totals")
            .pass(
                Pass::new("items", "items")
                    .filter(doc! {"running": {"$exists": false}})
                    .batch_size(10)
                    .writes(["items", "totals"]),
            )
            .reads(["totals"])
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(RunningTotal)
    }

    fn process(&mut self, cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut total = cx
            .find("totals", doc! {"_id": "sum"}, None, 1)?
            .first()
            .and_then(|t| t.get_i64("value").ok())
            .unwrap_or(0);
        let mut actions = Vec::new();
        for item in &batch {
            let id = item.get("_id").cloned().unwrap_or(Bson::Null);
            total += item
                .get_i64("n")
                .map_err(|_| Error::new(format!("item {id} has no n")))?;
            actions.push(Action::set("items", id, doc! {"running": total}));
        }
        actions.push(Action::upsert(
            "totals",
            doc! {"_id": "sum"},
            doc! {"$set": {"value": total}},
        ));
        Ok(actions)
    }
}

godwit_sdk::export!(RunningTotal);
