//! QDash v1.5.7 `slim-execution-history` (`migrate_slim_execution_history` in
//! upstream's `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`):
//! `execution_history` documents no longer carry `task_results` (now in
//! `task_result_history`) or `calib_data` (now in `qubit`/`coupling`); both
//! are removed from every document holding either, whatever the value, so
//! that 256+ qubit systems stay under MongoDB's 16 MB document limit.
//!
//! **Figures.** The `summary` report has upstream's keys: `total_documents`,
//! `with_task_results` and `with_calib_data` (the field exists and is not
//! `{}`, as upstream's `{"$exists": true, "$ne": {}}` counts), `updated` (the
//! documents holding either field, which the execute rewrites; counted in a
//! dry run too, where upstream reports 0) and `estimated_size_saved_mb`:
//! upstream's estimate - the mean length of the two fields as JSON over the
//! first 10 counted documents, times the larger of the two counts, in MiB,
//! rounded to 2 decimals. The JSON length follows Python's
//! `json.dumps(value, default=str)` (ASCII escapes, `", "` and `": "`
//! separators, dates as `str(datetime)`); the first 10 are taken in `_id`
//! order (upstream's in the server's natural order), so on a real database the
//! estimate can differ from upstream's a little. It is an estimate either way.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use std::fmt::Write;

pub const EXECUTION_HISTORY: &str = "execution_history";
pub const FIELDS: [&str; 2] = ["task_results", "calib_data"];
const SAMPLES: usize = 10;

/// Upstream's `{"$exists": true, "$ne": {}}` on one field.
fn counted(value: Option<&Bson>) -> bool {
    let empty = |v: &Bson| matches!(v, Bson::Document(d) if d.is_empty());
    match value {
        None => false,
        Some(Bson::Array(items)) => !items.iter().any(empty),
        Some(v) => !empty(v),
    }
}

/// Python's truthiness of the decoded value (`if task_results := ...`).
fn truthy(value: &Bson) -> bool {
    match value {
        Bson::Null | Bson::Undefined => false,
        Bson::Document(d) => !d.is_empty(),
        Bson::Array(a) => !a.is_empty(),
        Bson::String(s) => !s.is_empty(),
        Bson::Boolean(b) => *b,
        Bson::Int32(n) => *n != 0,
        Bson::Int64(n) => *n != 0,
        Bson::Double(d) => *d != 0.0,
        _ => true,
    }
}

/// Python's `repr(float)`, which `json.dumps` writes.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn py_str(s: &str, out: &mut String) {
    out.push_str(&godwit_sdk::json_string_ascii(s));
}

/// `json.dumps(value, default=str)` as Python writes the value pymongo decodes.
pub fn py_json(value: &Bson, out: &mut String) {
    match value {
        Bson::Null | Bson::Undefined => out.push_str("null"),
        Bson::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Bson::Int32(n) => write!(out, "{n}").expect("string write"),
        Bson::Int64(n) => write!(out, "{n}").expect("string write"),
        Bson::Double(d) => out.push_str(&py_float(*d)),
        Bson::String(s) => py_str(s, out),
        Bson::Document(d) => {
            out.push('{');
            for (i, (k, v)) in d.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_str(k, out);
                out.push_str(": ");
                py_json(v, out);
            }
            out.push('}');
        }
        Bson::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json(v, out);
            }
            out.push(']');
        }
        // `str()` of what pymongo decodes: a naive UTC datetime, an ObjectId's hex.
        Bson::DateTime(dt) => {
            let text = dt.try_to_rfc3339_string().unwrap_or_default();
            let millis = dt.timestamp_millis().rem_euclid(1000);
            let base = text.get(..19).unwrap_or("").replace('T', " ");
            if millis == 0 {
                py_str(&base, out);
            } else {
                py_str(&format!("{base}.{:06}", millis * 1000), out);
            }
        }
        Bson::ObjectId(oid) => py_str(&oid.to_hex(), out),
        other => py_str(&other.to_string(), out),
    }
}

pub struct SlimExecutionHistory {
    tally: Tally,
    sampled: u64,
    sampled_size: u64,
}

impl Migration for SlimExecutionHistory {
    fn manifest() -> Manifest {
        Manifest::new("qdash-slim-execution-history", "1.5.7-slim-execution-history")
            .requires(">=1.5.5, <1.5.7-slim-execution-history")
            .description(
                "QDash v1.5.7 slim-execution-history: task_results and calib_data removed from execution_history \
                 (now kept in task_result_history and qubit/coupling)",
            )
            .pass(
                Pass::new(EXECUTION_HISTORY, EXECUTION_HISTORY)
                    .projection(doc! {"task_results": 1, "calib_data": 1})
                    .writes([EXECUTION_HISTORY]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for key in ["total_documents", "with_task_results", "with_calib_data", "updated"] {
            tally.touch(key);
        }
        Ok(SlimExecutionHistory {
            tally,
            sampled: 0,
            sampled_size: 0,
        })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for execution in batch {
            let id = execution
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("an execution came without _id"))?;
            self.tally.incr("total_documents");
            let (results, calib) = (execution.get(FIELDS[0]), execution.get(FIELDS[1]));
            if counted(results) {
                self.tally.incr("with_task_results");
            }
            if counted(calib) {
                self.tally.incr("with_calib_data");
            }
            if (counted(results) || counted(calib)) && self.sampled < SAMPLES as u64 {
                self.sampled += 1;
                for value in [results, calib].into_iter().flatten().filter(|v| truthy(v)) {
                    let mut json = String::new();
                    py_json(value, &mut json);
                    self.sampled_size += json.len() as u64;
                }
            }
            if results.is_some() || calib.is_some() {
                self.tally.incr("updated");
                actions.push(Action::unset(EXECUTION_HISTORY, id, FIELDS));
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let mb = if self.sampled == 0 {
            0.0
        } else {
            let average = self.sampled_size as f64 / self.sampled as f64;
            let affected = self
                .tally
                .get("with_task_results")
                .max(self.tally.get("with_calib_data"));
            average * affected as f64 / (1024.0 * 1024.0)
        };
        let rounded: f64 = format!("{mb:.2}").parse().expect("a formatted float parses");
        let counters = self.tally.to_json();
        let summary = format!(
            "{}, \"estimated_size_saved_mb\": {}}}",
            &counters[..counters.len() - 1],
            py_float(rounded)
        );
        Ok(vec![Action::report("summary", "slim-execution-history", summary)])
    }
}

godwit_sdk::export!(SlimExecutionHistory);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn python_json_of_decoded_values() {
        let mut s = String::new();
        py_json(
            &Bson::Document(
                doc! {"a": [1, 2.5, 1e-5, 1e16, "é", null, true], "b": {}, "t": bson::DateTime::from_millis(1_500)},
            ),
            &mut s,
        );
        assert_eq!(
            s,
            r#"{"a": [1, 2.5, 1e-05, 1e+16, "\u00e9", null, true], "b": {}, "t": "1970-01-01 00:00:01.500000"}"#
        );
    }

    use godwit_sdk::bson;

    #[test]
    fn both_fields_go_and_the_figures_are_upstreams() {
        let mut h = Harness::<SlimExecutionHistory>::new();
        let actions = h
            .run_pass(
                0,
                vec![
                    doc! {"_id": 1, "task_results": {"t": {"status": "completed"}}, "calib_data": {}},
                    doc! {"_id": 2, "calib_data": {"qubit": {"0": {"x": 1}}}},
                    doc! {"_id": 3, "task_results": {}},
                    doc! {"_id": 4},
                ],
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::unset(EXECUTION_HISTORY, 1, FIELDS),
                Action::unset(EXECUTION_HISTORY, 2, FIELDS),
                Action::unset(EXECUTION_HISTORY, 3, FIELDS),
            ]
        );
        let Action::Report(summary) = &h.finish().unwrap()[0] else {
            panic!()
        };
        // Sizes: {"t": {"status": "completed"}} is 30 characters, {"qubit": {"0": {"x": 1}}} 25;
        // (30 + 25) / 2 * 1 document / MiB rounds to 0.0.
        assert_eq!(
            summary.message,
            "{\"total_documents\": 4, \"with_task_results\": 1, \"with_calib_data\": 1, \"updated\": 3, \
             \"estimated_size_saved_mb\": 0.0}"
        );
    }
}
