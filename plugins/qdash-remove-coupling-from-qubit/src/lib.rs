//! QDash v1.7.2 `remove-coupling-from-qubit` (`migrate_remove_coupling_from_qubit`
//! in upstream's `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`):
//! deletes the `qubit` documents a seed-import bug created. Valid qubit
//! `qid`s are non-padded numbers (`"0"`, `"1"`, ..., `"143"`); deleted are
//!
//! - **coupling qids**: a `qid` containing `-` (`"024-Q025"`, upstream's
//!   `{"qid": {"$regex": "-"}}`), and
//! - **zero-padded duplicates**: a `qid` of a `0` followed by one or more
//!   digits (`"000"`, `"023"`, upstream's `{"$regex": "^0\\d+$"}`, where `\d`
//!   is an ASCII digit and `$` also matches before a final newline, as in
//!   MongoDB's PCRE).
//!
//! Only string `qid`s are matched (QDash's model has `qid: str`).
//!
//! **Figures.** The `summary` report has upstream's keys: `total_qubit_documents`,
//! `coupling_qids`, `zero_padded_duplicates`, `total_invalid` (a document
//! matching both is counted once), `deleted`, and the first 10 of each kind
//! as `sample_coupling_qids` / `sample_padded_qids` (`{"qid", "chip_id"}`, in
//! `_id` order; upstream takes the server's natural order). `deleted` counts
//! the deletes the plugin asks for, in a dry run too (upstream's dry run
//! reports 0 there).

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};

pub const QUBIT: &str = "qubit";
const SAMPLES: usize = 10;

/// A string as a JSON string literal, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub use godwit_sdk::json_string as json_str;

/// Upstream's `{"$regex": "-"}`.
pub fn is_coupling_qid(qid: &str) -> bool {
    qid.contains('-')
}

/// Upstream's `{"$regex": "^0\\d+$"}` as PCRE runs it.
pub fn is_zero_padded(qid: &str) -> bool {
    let body = qid.strip_suffix('\n').unwrap_or(qid);
    body.len() >= 2 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit())
}

pub struct RemoveCouplingFromQubit {
    tally: Tally,
    coupling_samples: Vec<String>,
    padded_samples: Vec<String>,
}

impl Migration for RemoveCouplingFromQubit {
    fn manifest() -> Manifest {
        Manifest::new("qdash-remove-coupling-from-qubit", "1.7.2")
            .requires(">=1.5.7, <1.7.2")
            .description(
                "QDash v1.7.2 remove-coupling-from-qubit: qubit documents whose qid is coupling-format (holds \
                 '-') or zero-padded ('000') are deleted",
            )
            .pass(
                Pass::new(QUBIT, QUBIT)
                    .projection(doc! {"qid": 1, "chip_id": 1})
                    .writes([QUBIT]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for key in [
            "total_qubit_documents",
            "coupling_qids",
            "zero_padded_duplicates",
            "total_invalid",
            "deleted",
        ] {
            tally.touch(key);
        }
        Ok(RemoveCouplingFromQubit {
            tally,
            coupling_samples: Vec::new(),
            padded_samples: Vec::new(),
        })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for qubit in batch {
            let id = qubit
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a qubit came without _id"))?;
            self.tally.incr("total_qubit_documents");
            let Some(Bson::String(qid)) = qubit.get("qid") else {
                continue;
            };
            let (coupling, padded) = (is_coupling_qid(qid), is_zero_padded(qid));
            let sample = || {
                let chip_id = match qubit.get("chip_id") {
                    Some(Bson::String(s)) => json_str(s),
                    None => "\"\"".to_string(),
                    Some(_) => "null".to_string(),
                };
                format!("{{\"qid\": {}, \"chip_id\": {chip_id}}}", json_str(qid))
            };
            if coupling {
                self.tally.incr("coupling_qids");
                if self.coupling_samples.len() < SAMPLES {
                    self.coupling_samples.push(sample());
                }
            }
            if padded {
                self.tally.incr("zero_padded_duplicates");
                if self.padded_samples.len() < SAMPLES {
                    self.padded_samples.push(sample());
                }
            }
            if coupling || padded {
                self.tally.incr("total_invalid");
                self.tally.incr("deleted");
                actions.push(Action::delete_one(QUBIT, doc! {"_id": id}));
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let counters = self.tally.to_json();
        let summary = format!(
            "{}, \"sample_coupling_qids\": [{}], \"sample_padded_qids\": [{}]}}",
            &counters[..counters.len() - 1],
            self.coupling_samples.join(", "),
            self.padded_samples.join(", ")
        );
        Ok(vec![Action::report("summary", "remove-coupling-from-qubit", summary)])
    }
}

godwit_sdk::export!(RemoveCouplingFromQubit);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn upstream_patterns() {
        for qid in ["024-Q025", "059-Q062", "-"] {
            assert!(is_coupling_qid(qid), "{qid}");
        }
        for qid in ["000", "001", "023", "01\n"] {
            assert!(is_zero_padded(qid), "{qid:?}");
        }
        for qid in ["0", "1", "143", "10", "0a", "0\n", "00x", "０1"] {
            assert!(!is_zero_padded(qid) && !is_coupling_qid(qid), "{qid:?}");
        }
    }

    #[test]
    fn invalid_qubits_are_deleted_and_sampled() {
        let mut h = Harness::<RemoveCouplingFromQubit>::new();
        let actions = h
            .run_pass(
                0,
                vec![
                    doc! {"_id": 1, "qid": "0", "chip_id": "64Q"},
                    doc! {"_id": 2, "qid": "024-Q025", "chip_id": "64Q"},
                    doc! {"_id": 3, "qid": "000", "chip_id": "64Q"},
                    doc! {"_id": 4, "qid": "12", "chip_id": "64Q"},
                ],
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::delete_one(QUBIT, doc! {"_id": 2}),
                Action::delete_one(QUBIT, doc! {"_id": 3})
            ]
        );
        let Action::Report(summary) = &h.finish().unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            summary.message,
            "{\"total_qubit_documents\": 4, \"coupling_qids\": 1, \"zero_padded_duplicates\": 1, \
             \"total_invalid\": 2, \"deleted\": 2, \"sample_coupling_qids\": [{\"qid\": \"024-Q025\", \
             \"chip_id\": \"64Q\"}], \"sample_padded_qids\": [{\"qid\": \"000\", \"chip_id\": \"64Q\"}]}"
        );
    }
}
