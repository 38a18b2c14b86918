//! Every kind of write a revert must undo: `$set` and `$unset` on the
//! documents of the pass, inserts without `_id` (the host gives them one),
//! deletes, and in `finish` a multi update with a non-`_id` filter and an
//! upsert that creates a document.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct Reshape {
    done: i64,
}

impl Migration for Reshape {
    fn manifest() -> Manifest {
        Manifest::new("reshape", "3.0.0")
            .description("archive done orders, drop cancelled ones, tag open ones")
            .pass(
                Pass::new("orders", "orders")
                    .filter(doc! {"reshaped": {"$exists": false}})
                    .batch_size(16)
                    .writes(["orders", "archive", "totals"]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Reshape { done: 0 })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for order in batch {
            let id = order
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("order without _id"))?;
            match order.get_str("status").unwrap_or("") {
                "cancelled" => actions.push(Action::delete_one("orders", doc! {"_id": id})),
                "done" => {
                    self.done += 1;
                    actions.push(Action::insert(
                        "archive",
                        doc! {"order": id.clone(), "total": order.get("total").cloned()},
                    ));
                    actions.push(Action::update_one(
                        "orders",
                        doc! {"_id": id},
                        doc! {"$set": {"reshaped": true, "archived": true}, "$unset": {"note": ""}},
                    ));
                }
                _ => actions.push(Action::set("orders", id, doc! {"reshaped": true})),
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![
            Action::update_many("orders", doc! {"status": "open"}, doc! {"$set": {"tag": "reviewed"}}),
            Action::upsert("totals", doc! {"name": "done"}, doc! {"$set": {"count": self.done}}),
        ])
    }
}

godwit_sdk::export!(Reshape);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn each_status_gets_its_write() {
        let mut h = Harness::<Reshape>::new();
        let actions = h
            .run_pass(
                0,
                vec![
                    doc! {"_id": 1, "status": "cancelled"},
                    doc! {"_id": 2, "status": "done", "total": 5},
                    doc! {"_id": 3, "status": "open"},
                ],
            )
            .unwrap();
        assert_eq!(actions.len(), 4);
        assert_eq!(actions[0], Action::delete_one("orders", doc! {"_id": 1}));
        assert_eq!(h.finish().unwrap().len(), 2);
    }
}
