//! QDash v1.5.7 `remove-node-edge-info` (`migrate_remove_node_edge_info` in
//! upstream's `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`): the
//! deprecated UI fields go - `node_info` from every document of `qubit` and
//! `qubit_history` that has it, `edge_info` from `coupling` and
//! `coupling_history` (whatever the value, `null` included).
//!
//! **Figures.** The `summary` report is upstream's statistics: per
//! collection, the number of documents holding the field (keys `qubit`,
//! `qubit_history`, `coupling`, `coupling_history`), the same in a dry run
//! and an execute. A second dry run after the execute reports zeros.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};

/// Upstream's collections and the field each loses, in its order.
pub const FIELDS: [(&str, &str); 4] = [
    ("qubit", "node_info"),
    ("qubit_history", "node_info"),
    ("coupling", "edge_info"),
    ("coupling_history", "edge_info"),
];

pub struct RemoveNodeEdgeInfo {
    tally: Tally,
}

impl Migration for RemoveNodeEdgeInfo {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("qdash-remove-node-edge-info", "1.5.7")
            .requires(">=1.5.7-slim-execution-history, <1.5.7")
            .description(
                "QDash v1.5.7 remove-node-edge-info: node_info removed from qubit and qubit_history, edge_info \
                 from coupling and coupling_history",
            );
        for (collection, field) in FIELDS {
            manifest = manifest.pass(
                Pass::new(collection, collection)
                    .filter(doc! {field: {"$exists": true}})
                    .projection(doc! {"_id": 1})
                    .writes([collection]),
            );
        }
        manifest
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for (collection, _) in FIELDS {
            tally.touch(collection);
        }
        Ok(RemoveNodeEdgeInfo { tally })
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let (collection, field) = FIELDS[pass];
        let mut actions = Vec::with_capacity(batch.len());
        for document in batch {
            let id = document
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a document came without _id"))?;
            self.tally.incr(collection);
            actions.push(Action::unset(collection, id, [field]));
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![self.tally.report("summary", "remove-node-edge-info")])
    }
}

godwit_sdk::export!(RemoveNodeEdgeInfo);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn qubits_lose_node_info_couplings_edge_info() {
        let mut h = Harness::<RemoveNodeEdgeInfo>::new();
        assert_eq!(
            h.run_pass(1, vec![doc! {"_id": 1, "node_info": {}}]).unwrap(),
            vec![Action::unset("qubit_history", 1, ["node_info"])]
        );
        assert_eq!(
            h.run_pass(3, vec![doc! {"_id": 2, "edge_info": null}]).unwrap(),
            vec![Action::unset("coupling_history", 2, ["edge_info"])]
        );
        assert_eq!(
            h.finish().unwrap(),
            vec![Action::report(
                "summary",
                "remove-node-edge-info",
                r#"{"qubit": 0, "qubit_history": 1, "coupling": 0, "coupling_history": 1}"#
            )]
        );
    }
}
