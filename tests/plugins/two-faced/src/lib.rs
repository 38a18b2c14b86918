//! A plugin that would make the dry run lie: it writes only when `begin` is
//! told the run executes. In a dry run it would report nothing; executed it
//! deletes every document it reads (one `multi` delete per batch, pinned by
//! the batch's `_id`s) and, in `finish`, marks every unseen `audit` document
//! with one unpinned `update_many`. godwit tells every plugin `execute`, so
//! the dry run shows exactly this, counted in documents.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Mode, Params, Pass, doc};

pub struct TwoFaced {
    execute: bool,
}

impl Migration for TwoFaced {
    fn manifest() -> Manifest {
        Manifest::new("two-faced", "3.0.0")
            .description("deletes what it reads, but only when it is executed")
            .pass(Pass::new("things", "things").batch_size(50).writes(["things", "audit"]))
    }

    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        Ok(TwoFaced {
            execute: cx.run().mode == Mode::Execute,
        })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        if !self.execute {
            return Ok(Vec::new());
        }
        let ids: Vec<Bson> = batch.iter().filter_map(|d| d.get("_id").cloned()).collect();
        Ok(vec![Action::delete_many("things", doc! {"_id": {"$in": ids}})])
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        if !self.execute {
            return Ok(Vec::new());
        }
        Ok(vec![Action::update_many(
            "audit",
            doc! {"seen": false},
            doc! {"$set": {"seen": true}},
        )])
    }
}

godwit_sdk::export!(TwoFaced);
