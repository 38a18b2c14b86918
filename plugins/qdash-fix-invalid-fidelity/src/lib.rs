//! QDash v1.5.5 `fix-invalid-fidelity` (`migrate_fix_invalid_fidelity` in
//! upstream's `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`): a
//! completed task result reporting a fidelity above 100% is a measurement or
//! calculation error, so it is marked failed. The rules are upstream's, the
//! code is ours:
//!
//! - Looked at: every `task_result_history` document with `status:
//!   "completed"`.
//! - Its `output_parameters` whose name contains `fidelity` (any case) are
//!   checked; a parameter is either `{"value": v, ...}` or `v` itself. A
//!   value is **invalid** when it is a number (BSON int32, int64 or double)
//!   above `1.0`.
//! - A document with an invalid parameter gets `status: "failed"` and
//!   `message: "Fidelity exceeds 100%: <name>=<value * 100, 2 decimals>%, ..."`
//!   (every invalid parameter, in the document's order).
//! - An `output_parameters` that is not a document (upstream would crash on
//!   it) is left as it is and reported `skipped`.
//!
//! **Figures.** The `summary` report has upstream's keys: `total_checked`,
//! `invalid_found`, `updated` and `details` (the first 10 invalid documents,
//! in `_id` order: `task_id`, `name`, `qid`, `invalid_params`). `updated`
//! counts the updates the plugin asks for, in a dry run too (upstream's dry
//! run reports 0 there).

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};

pub const TASK_RESULT_HISTORY: &str = "task_result_history";
const DETAILS: usize = 10;

/// A string as a JSON string literal, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub use godwit_sdk::json_string as json_str;

/// A detail's `task_id`, `name` or `qid`: a string, `""` when absent, `null` otherwise.
fn detail_text(value: Option<&Bson>) -> String {
    match value {
        Some(Bson::String(s)) => json_str(s),
        None => "\"\"".to_string(),
        Some(_) => "null".to_string(),
    }
}

/// `value * 100` with two decimals, as upstream's `f"{value * 100:.2f}%"`.
pub fn percent(value: f64) -> String {
    format!("{:.2}%", value * 100.0)
}

/// The invalid fidelity parameters of `output_parameters`, in order.
pub fn invalid_params(output_parameters: &Document) -> Vec<(String, f64)> {
    let mut invalid = Vec::new();
    for (name, data) in output_parameters {
        if !name.to_lowercase().contains("fidelity") {
            continue;
        }
        let value = match data {
            Bson::Document(d) => d.get("value"),
            other => Some(other),
        };
        let value = match value {
            Some(Bson::Int32(n)) => f64::from(*n),
            Some(Bson::Int64(n)) => *n as f64,
            Some(Bson::Double(d)) => *d,
            _ => continue,
        };
        if value > 1.0 {
            invalid.push((name.clone(), value));
        }
    }
    invalid
}

pub struct FixInvalidFidelity {
    tally: Tally,
    details: Vec<String>,
}

impl Migration for FixInvalidFidelity {
    fn manifest() -> Manifest {
        Manifest::new("qdash-fix-invalid-fidelity", "1.5.5")
            .requires(">=1.5.3, <1.5.5")
            .description(
                "QDash v1.5.5 fix-invalid-fidelity: completed task_result_history entries with a fidelity output \
                 parameter above 100% get status failed and a message naming the values",
            )
            .pass(
                Pass::new(TASK_RESULT_HISTORY, TASK_RESULT_HISTORY)
                    .filter(doc! {"status": "completed"})
                    .projection(doc! {"output_parameters": 1, "task_id": 1, "name": 1, "qid": 1})
                    .writes([TASK_RESULT_HISTORY]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for key in ["total_checked", "invalid_found", "updated"] {
            tally.touch(key);
        }
        Ok(FixInvalidFidelity {
            tally,
            details: Vec::new(),
        })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for result in batch {
            let id = result
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a task result came without _id"))?;
            self.tally.incr("total_checked");
            let params = match result.get("output_parameters") {
                None | Some(Bson::Null) => continue,
                Some(Bson::Document(params)) => params,
                Some(_) => {
                    actions.push(Action::report(
                        "skipped",
                        TASK_RESULT_HISTORY,
                        format!("task result {id}: output_parameters is not a document, left as it is"),
                    ));
                    continue;
                }
            };
            let invalid = invalid_params(params);
            if invalid.is_empty() {
                continue;
            }
            self.tally.incr("invalid_found");
            let listed: Vec<String> = invalid
                .iter()
                .map(|(name, v)| format!("{name}={}", percent(*v)))
                .collect();
            if self.details.len() < DETAILS {
                let params: Vec<String> = invalid
                    .iter()
                    .map(|(name, v)| format!("{}: {}", json_str(name), json_str(&percent(*v))))
                    .collect();
                self.details.push(format!(
                    "{{\"task_id\": {}, \"name\": {}, \"qid\": {}, \"invalid_params\": {{{}}}}}",
                    detail_text(result.get("task_id")),
                    detail_text(result.get("name")),
                    detail_text(result.get("qid")),
                    params.join(", ")
                ));
            }
            self.tally.incr("updated");
            actions.push(Action::set(
                TASK_RESULT_HISTORY,
                id,
                doc! {"status": "failed", "message": format!("Fidelity exceeds 100%: {}", listed.join(", "))},
            ));
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let counters = self.tally.to_json();
        let summary = format!(
            "{}, \"details\": [{}]}}",
            &counters[..counters.len() - 1],
            self.details.join(", ")
        );
        Ok(vec![Action::report("summary", "fix-invalid-fidelity", summary)])
    }
}

godwit_sdk::export!(FixInvalidFidelity);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn fidelities_above_one_fail_the_result() {
        let mut h = Harness::<FixInvalidFidelity>::new();
        let actions = h
            .run_pass(
                0,
                vec![
                    // The pass reads completed results only (the harness applies its filter).
                    doc! {"_id": 1, "status": "completed", "task_id": "t1", "name": "RandomizedBenchmarking", "qid": "3",
                    "output_parameters": {"average_gate_fidelity": {"value": 1.0234, "unit": ""}, "X90_Fidelity": 2, "t1": 50.0}},
                    doc! {"_id": 2, "status": "completed", "output_parameters": {"fidelity": {"value": 1.0}, "bell_fidelity": 0.98}},
                    doc! {"_id": 3, "status": "completed", "output_parameters": {}},
                    // Not read by the pass: failed already.
                    doc! {"_id": 4, "status": "failed", "output_parameters": {"fidelity": 3.0}},
                ],
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::set(
                TASK_RESULT_HISTORY,
                1,
                doc! {"status": "failed", "message": "Fidelity exceeds 100%: average_gate_fidelity=102.34%, X90_Fidelity=200.00%"}
            )]
        );
        let Action::Report(summary) = &h.finish().unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            summary.message,
            "{\"total_checked\": 3, \"invalid_found\": 1, \"updated\": 1, \"details\": [{\"task_id\": \"t1\", \
             \"name\": \"RandomizedBenchmarking\", \"qid\": \"3\", \"invalid_params\": {\"average_gate_fidelity\": \
             \"102.34%\", \"X90_Fidelity\": \"200.00%\"}}]}"
        );
    }
}
