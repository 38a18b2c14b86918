//! Sets `status: "done"` on every task that has no `status` - but its pass's
//! projection leaves `status` out, so every task looks unfinished to it, run
//! after run: a plugin that never converges. `godwit plugin test --data`
//! must catch it at its second dry run.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct BlindStatus;

impl Migration for BlindStatus {
    fn manifest() -> Manifest {
        Manifest::new("blind-status", "1.0.0")
            .description("set tasks.status to done where it is missing (projection omits status: the bug)")
            .pass(
                Pass::new("tasks", "tasks")
                    .projection(doc! {"name": 1})
                    .writes(["tasks"]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(BlindStatus)
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for task in batch {
            let id = task.get("_id").cloned().ok_or_else(|| Error::new("task without _id"))?;
            if !task.contains_key("status") {
                actions.push(Action::set("tasks", id, doc! {"status": "done"}));
            }
        }
        Ok(actions)
    }
}

godwit_sdk::export!(BlindStatus);
