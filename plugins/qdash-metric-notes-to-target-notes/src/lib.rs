//! QDash v1.8.16 `metric-notes-to-target-notes` (`migrate_metric_notes_to_target_notes`
//! in upstream's `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`):
//! the per-metric dashboard notes of `metric_note` are copied into the pinned
//! note (`note`) of the qubit or coupling they are about, as one appended
//! "Legacy metric notes" section per target. The `metric_note` documents are
//! kept. The rules are upstream's, the code is ours:
//!
//! - Notes whose `note.content` is empty after trimming are ignored. The
//!   others are grouped by (`project_id`, `chip_id`, `target_type`,
//!   `target_id`); groups are taken in that order, each group's notes by
//!   `metric_key`, `scope_key`, then `note.updated_at`.
//! - A group's target is the `qubit` (`target_type` `qubit`) or else the
//!   `coupling` document with the same `project_id`, `chip_id` and `qid` =
//!   `target_id` (the first in `_id` order; upstream takes the server's first).
//!   None: the target is **missing**, counted, nothing written.
//! - The section starts with the marker `<!-- qdash:migrated-metric-notes -->`
//!   and `## Legacy metric notes`, then per note `### <metric_key>`,
//!   ``- Scope: `<scope_key, else scope_type, else unknown scope>` ``,
//!   `- Last edited: <updated_by, else unknown user> at <updated_at as Python's
//!   isoformat of the naive UTC datetime pymongo reads, else unknown time>`
//!   and the trimmed content. A target whose note already holds the marker is
//!   **already migrated**; otherwise its trimmed content (if any), `---` and
//!   the section become its note, attributed to the group's latest edit
//!   (`updated_by`, else `migration`; its `updated_at`, else the run's start),
//!   and `system_info.updated_at` becomes the run's start (upstream's
//!   `now()`; a plugin's clock is the run's start).
//! - Upstream saves the whole target document back through its model; here
//!   only `note` and `system_info.updated_at` are set, every other field is
//!   kept as it is.
//!
//! **Figures.** The `summary` report has upstream's keys: `metric_notes_found`,
//! `targets_found`, `targets_updated`, `targets_skipped_already_migrated`,
//! `targets_missing` and `targets` (per group: `project_id`, `chip_id`,
//! `target_type`, `target_id`, `metric_note_count`, `action` - `updated`,
//! `already_migrated` or `missing_target`). Upstream counts `targets_updated`
//! in its dry run too; so does this plugin.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use std::collections::BTreeMap;
use std::fmt::Write;

pub const METRIC_NOTE: &str = "metric_note";
pub const QUBIT: &str = "qubit";
pub const COUPLING: &str = "coupling";
pub const MARKER: &str = "<!-- qdash:migrated-metric-notes -->";
pub const TITLE: &str = "Legacy metric notes";

const NOTES: usize = 0;
const QUBITS: usize = 1;

/// A string as a JSON string literal, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub use godwit_sdk::json_string as json_str;

mod notes;
use notes::{GroupKey, group_key, string_field};
pub use notes::{MetricNote, isoformat, latest, merge, py_strip, section};

#[derive(Debug, Default)]
struct Group {
    notes: Vec<MetricNote>,
    action: Option<&'static str>,
}

pub struct MetricNotesToTargetNotes {
    groups: BTreeMap<GroupKey, Group>,
    sorted: bool,
    found: u64,
    tally: Tally,
}

impl Migration for MetricNotesToTargetNotes {
    fn manifest() -> Manifest {
        let target = doc! {"project_id": 1, "chip_id": 1, "qid": 1, "note": 1, "system_info": 1};
        Manifest::new(
            "qdash-metric-notes-to-target-notes",
            "1.8.16-metric-notes-to-target-notes",
        )
        .requires(">=1.8.0, <1.8.16-metric-notes-to-target-notes")
        .description(
            "QDash v1.8.16 metric-notes-to-target-notes: per-metric dashboard notes appended, once, to the \
                 pinned note of their qubit or coupling; metric_note is kept",
        )
        .pass(Pass::new("read-metric-notes", METRIC_NOTE).projection(doc! {
            "project_id": 1, "chip_id": 1, "target_type": 1, "target_id": 1, "metric_key": 1,
            "scope_key": 1, "scope_type": 1, "note": 1, "system_info.updated_at": 1,
        }))
        .pass(Pass::new(QUBIT, QUBIT).projection(target.clone()).writes([QUBIT]))
        .pass(Pass::new(COUPLING, COUPLING).projection(target).writes([COUPLING]))
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(MetricNotesToTargetNotes {
            groups: BTreeMap::new(),
            sorted: false,
            found: 0,
            tally: Tally::new(),
        })
    }

    fn process(&mut self, cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        if pass == NOTES {
            for doc in batch {
                let Some(note) = MetricNote::from_document(&doc) else {
                    continue;
                };
                self.found += 1;
                let key = group_key(&doc);
                self.groups.entry(key).or_default().notes.push(note);
            }
            return Ok(actions);
        }
        self.sort();
        let collection = if pass == QUBITS { QUBIT } else { COUPLING };
        let started_at = cx.run().started_at();
        for target in batch {
            let id = target
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a target came without _id"))?;
            let (project_id, chip_id) = (string_field(&target, "project_id"), string_field(&target, "chip_id"));
            let Ok(qid) = target.get_str("qid") else {
                continue;
            };
            let mut content = match target.get_document("note") {
                Ok(note) => string_field(note, "content").to_string(),
                Err(_) => String::new(),
            };
            let mut written: Option<Document> = None;
            // Every group this document is the target of (one, unless the
            // database spells a coupling's target_type in several ways).
            for ((p, c, t, i), group) in self.groups.iter_mut() {
                let model = if t == QUBIT { QUBIT } else { COUPLING };
                if group.action.is_some() || model != collection || p != project_id || c != chip_id || i != qid {
                    continue;
                }
                let section = section(&group.notes, MARKER, TITLE);
                match merge(&content, &section, MARKER) {
                    None => group.action = Some("already_migrated"),
                    Some(merged) => {
                        group.action = Some("updated");
                        let last = latest(&group.notes);
                        let by = if last.updated_by.is_empty() {
                            "migration"
                        } else {
                            &last.updated_by
                        };
                        let at = last.updated_at.clone().unwrap_or(Bson::DateTime(started_at));
                        written = Some(doc! {"content": merged.clone(), "updated_by": by, "updated_at": at});
                        content = merged;
                    }
                }
            }
            if let Some(note) = written {
                let mut set = doc! {"note": note};
                if matches!(target.get("system_info"), Some(Bson::Document(_))) {
                    set.insert("system_info.updated_at", started_at);
                }
                actions.push(Action::set(collection, id, set));
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        self.sort();
        let count = |action: &str| self.groups.values().filter(|g| g.action == Some(action)).count() as u64;
        self.tally.add("metric_notes_found", self.found);
        self.tally.add("targets_found", self.groups.len() as u64);
        self.tally.add("targets_updated", count("updated"));
        self.tally
            .add("targets_skipped_already_migrated", count("already_migrated"));
        self.tally.add(
            "targets_missing",
            self.groups.values().filter(|g| g.action.is_none()).count() as u64,
        );
        let counters = self.tally.to_json();
        let mut out = format!("{}, \"targets\": [", &counters[..counters.len() - 1]);
        for (n, ((p, c, t, i), group)) in self.groups.iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            write!(
                out,
                "{{\"project_id\": {}, \"chip_id\": {}, \"target_type\": {}, \"target_id\": {}, \
                 \"metric_note_count\": {}, \"action\": \"{}\"}}",
                json_str(p),
                json_str(c),
                json_str(t),
                json_str(i),
                group.notes.len(),
                group.action.unwrap_or("missing_target")
            )
            .expect("string write");
        }
        out.push_str("]}");
        Ok(vec![Action::report("summary", "metric-notes-to-target-notes", out)])
    }
}

impl MetricNotesToTargetNotes {
    /// Each group's notes in upstream's order, once all notes are read.
    fn sort(&mut self) {
        if self.sorted {
            return;
        }
        for group in self.groups.values_mut() {
            group.notes.sort_by(|a, b| {
                (&a.metric_key, &a.scope_key, a.iso().unwrap_or_default()).cmp(&(
                    &b.metric_key,
                    &b.scope_key,
                    b.iso().unwrap_or_default(),
                ))
            });
        }
        self.sorted = true;
    }
}

godwit_sdk::export!(MetricNotesToTargetNotes);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::bson;
    use godwit_sdk::testing::Harness;

    fn t1_note() -> Document {
        doc! {
            "_id": 1, "project_id": "note_project", "chip_id": "chip-1", "target_type": "qubit",
            "target_id": "21", "metric_key": "t1",
            "note": {"content": "T1 has a long-tail outlier.", "updated_by": "alice",
                     "updated_at": bson::DateTime::from_millis(1_767_398_400_000)},
            "scope_type": "cooldown", "scope_key": "cooldown:cd-1",
        }
    }

    #[test]
    fn upstream_pinned_summary_gets_the_legacy_section() {
        let mut h = Harness::<MetricNotesToTargetNotes>::new();
        h.run_pass(NOTES, vec![t1_note()]).unwrap();
        let qubit = doc! {"_id": 7, "project_id": "note_project", "chip_id": "chip-1", "qid": "21",
        "note": {"content": "Pinned summary", "updated_by": "note_user", "updated_at": null},
        "system_info": {"updated_at": bson::DateTime::from_millis(0)}};
        let actions = h.run_pass(QUBITS, vec![qubit]).unwrap();
        let content = "Pinned summary\n\n---\n\n<!-- qdash:migrated-metric-notes -->\n## Legacy metric notes\n\n\
                       ### t1\n- Scope: `cooldown:cd-1`\n- Last edited: alice at 2026-01-03T00:00:00\n\n\
                       T1 has a long-tail outlier.";
        assert_eq!(
            actions,
            vec![Action::set(
                QUBIT,
                7,
                doc! {"note": {"content": content, "updated_by": "alice",
                  "updated_at": bson::DateTime::from_millis(1_767_398_400_000)},
                "system_info.updated_at": bson::DateTime::from_millis(1_767_225_600_000)}
            )]
        );
        let Action::Report(summary) = &h.finish().unwrap()[0] else {
            panic!()
        };
        assert!(summary.message.starts_with(
            "{\"metric_notes_found\": 1, \"targets_found\": 1, \"targets_updated\": 1, \
             \"targets_skipped_already_migrated\": 0, \"targets_missing\": 0, \"targets\": [{"
        ));
        assert_eq!(merge(content, "x", MARKER), None, "already migrated");
    }
}
