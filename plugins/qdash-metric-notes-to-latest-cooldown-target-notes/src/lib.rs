//! QDash v1.8.25 `metric-notes-to-latest-cooldown-target-notes`
//! (`migrate_metric_notes_to_latest_cooldown_target_notes` in upstream's
//! `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`): every target's
//! per-metric dashboard notes (`metric_note`) are collapsed into the
//! `target_note` of its chip's current or most recent cool-down, as one
//! appended "Migrated legacy metric notes" section that keeps each note's
//! original scope. The rules are upstream's, the code is ours:
//!
//! - Notes, groups and their order as in 1.8.16's `metric-notes-to-target-notes`:
//!   blank notes ignored, grouped by (`project_id`, `chip_id`, `target_type`,
//!   `target_id`), each group's notes by `metric_key`, `scope_key`,
//!   `note.updated_at`.
//! - A group whose `qubit` (or, for any other `target_type`, `coupling`)
//!   document does not exist is **missing**.
//! - The **cool-down**: the `chip`'s `current_cooldown_id` if a `cooldown` of
//!   the project with that id lists the chip in `chip_ids`; else the
//!   project's cool-down listing the chip with the latest `started_at`. None:
//!   the group is **without cool-down**, nothing written.
//! - The target note is the `target_note` of the group's target with
//!   `scope_key` `cooldown:<cooldown_id>`. If its note holds the marker
//!   `<!-- qdash:migrated-metric-notes-to-latest-cooldown -->` it is **already
//!   migrated**. Otherwise its trimmed content, `---` and the section become
//!   its note (attributed to the group's latest edit, as in 1.8.16), and its
//!   scope becomes the cool-down's (`scope_type` `cooldown`, `cooldown_id`,
//!   `scope_started_at`, `scope_ended_at`, `scope_source`
//!   `explicit_cooldown`, `system_info.updated_at` the run's start); with no
//!   such target note one is inserted, with QDash's model defaults
//!   (`comments: []`, `system_info` at the run's start).
//! - `--param delete_source=true` (upstream's `--delete-source`) also deletes
//!   the group's `metric_note` documents once its target note has the
//!   section (updated now, or already migrated).
//! - Upstream saves whole documents through its model; here only the fields
//!   named above are set.
//!
//! **Figures.** The `summary` report has upstream's keys: `metric_notes_found`,
//! `targets_found`, `targets_updated`, `targets_skipped_already_migrated`,
//! `targets_missing`, `targets_without_cooldown`, `metric_notes_deleted` and
//! `targets` (per group: `project_id`, `chip_id`, `target_type`,
//! `target_id`, `metric_note_count`, `action` - `updated`,
//! `already_migrated`, `missing_target` or `missing_cooldown` -, then
//! `cooldown_id` when one was found and `metric_notes_deleted` when deleting).
//! `metric_notes_deleted` counts the deletes the plugin asks for, in a dry
//! run too (upstream's dry run reports 0 there).
//!
//! The work happens in `finish`, after every note is read: its lookups
//! (targets, chips, cool-downs, target notes) and its actions are bounded by
//! the host's per-call limits (10,000 each), far above a QDash database's
//! targets with notes.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

pub const METRIC_NOTE: &str = "metric_note";
pub const TARGET_NOTE: &str = "target_note";
pub const MARKER: &str = "<!-- qdash:migrated-metric-notes-to-latest-cooldown -->";
pub const TITLE: &str = "Migrated legacy metric notes";

/// A string as a JSON string literal, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub use godwit_sdk::json_string as json_str;

#[path = "../../qdash-metric-notes-to-target-notes/src/notes.rs"]
mod notes;
use notes::{GroupKey, MetricNote, group_key, latest, merge, section, string_field};
pub use notes::{isoformat, py_strip};

#[derive(Debug, Clone)]
struct Cooldown {
    id: String,
    started_at: Bson,
    ended_at: Bson,
}

pub struct MetricNotesToLatestCooldownTargetNotes {
    delete_source: bool,
    groups: BTreeMap<GroupKey, Vec<MetricNote>>,
    found: u64,
}

impl Migration for MetricNotesToLatestCooldownTargetNotes {
    fn manifest() -> Manifest {
        Manifest::new("qdash-metric-notes-to-latest-cooldown-target-notes", "1.8.25")
            .requires(">=1.8.22, <1.8.25")
            .description(
                "QDash v1.8.25 metric-notes-to-latest-cooldown-target-notes: per-metric dashboard notes appended, \
                 once, to the target_note of each target's latest cool-down (inserted when missing); \
                 --param delete_source=true also deletes the migrated metric_note documents",
            )
            .pass(
                Pass::new("read-metric-notes", METRIC_NOTE)
                    .projection(doc! {
                        "project_id": 1, "chip_id": 1, "target_type": 1, "target_id": 1, "metric_key": 1,
                        "scope_key": 1, "scope_type": 1, "note": 1, "system_info.updated_at": 1,
                    })
                    .writes([TARGET_NOTE, METRIC_NOTE]),
            )
            // In `finish`: each note's target (qubit or coupling), its chip and
            // latest cool-down, and the target note already there.
            .reads(["qubit", "coupling", "chip", "cooldown", TARGET_NOTE])
    }

    fn begin(params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(MetricNotesToLatestCooldownTargetNotes {
            delete_source: params.parse_or("delete_source", false)?,
            groups: BTreeMap::new(),
            found: 0,
        })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        for doc in batch {
            let Some(note) = MetricNote::from_document(&doc) else {
                continue;
            };
            self.found += 1;
            let key = group_key(&doc);
            self.groups.entry(key).or_default().push(note);
        }
        Ok(Vec::new())
    }

    fn finish(&mut self, cx: &mut Context) -> Result<Vec<Action>, Error> {
        let now = cx.run().started_at();
        let mut tally = Tally::new();
        tally.add("metric_notes_found", self.found);
        tally.add("targets_found", self.groups.len() as u64);
        for key in [
            "targets_updated",
            "targets_skipped_already_migrated",
            "targets_missing",
            "targets_without_cooldown",
            "metric_notes_deleted",
        ] {
            tally.touch(key);
        }
        let mut actions = Vec::new();
        let mut targets = Vec::new();
        let mut cooldowns: HashMap<(String, String), Option<Cooldown>> = HashMap::new();
        for ((project_id, chip_id, target_type, target_id), notes) in &mut self.groups {
            notes.sort_by(|a, b| {
                (&a.metric_key, &a.scope_key, a.iso().unwrap_or_default()).cmp(&(
                    &b.metric_key,
                    &b.scope_key,
                    b.iso().unwrap_or_default(),
                ))
            });
            let mut info = format!(
                "{{\"project_id\": {}, \"chip_id\": {}, \"target_type\": {}, \"target_id\": {}, \
                 \"metric_note_count\": {}, \"action\": ",
                json_str(project_id),
                json_str(chip_id),
                json_str(target_type),
                json_str(target_id),
                notes.len()
            );
            let model = if target_type == "qubit" { "qubit" } else { "coupling" };
            let target = cx.find(
                model,
                doc! {"project_id": project_id.as_str(), "chip_id": chip_id.as_str(), "qid": target_id.as_str()},
                Some(doc! {"_id": 1}),
                1,
            )?;
            if target.is_empty() {
                tally.incr("targets_missing");
                targets.push(info + "\"missing_target\"}");
                continue;
            }
            let cooldown = match cooldowns.get(&(project_id.clone(), chip_id.clone())) {
                Some(found) => found.clone(),
                None => {
                    let found = latest_cooldown(cx, project_id, chip_id)?;
                    cooldowns.insert((project_id.clone(), chip_id.clone()), found.clone());
                    found
                }
            };
            let Some(cooldown) = cooldown else {
                tally.incr("targets_without_cooldown");
                targets.push(info + "\"missing_cooldown\"}");
                continue;
            };
            let scope_key = format!("cooldown:{}", cooldown.id);
            let existing = cx
                .find(
                    TARGET_NOTE,
                    doc! {"project_id": project_id.as_str(), "chip_id": chip_id.as_str(), "target_type": target_type.as_str(),
                    "target_id": target_id.as_str(), "scope_key": &scope_key},
                    Some(doc! {"note": 1, "system_info": 1}),
                    1,
                )?
                .into_iter()
                .next();
            let existing_content = existing
                .as_ref()
                .and_then(|t| t.get_document("note").ok())
                .map_or("", |n| string_field(n, "content"));
            let action = match merge(existing_content, &section(notes, MARKER, TITLE), MARKER) {
                None => {
                    tally.incr("targets_skipped_already_migrated");
                    "already_migrated"
                }
                Some(merged) => {
                    let last = latest(notes);
                    let by = if last.updated_by.is_empty() {
                        "migration"
                    } else {
                        &last.updated_by
                    };
                    let note = doc! {
                        "content": merged, "updated_by": by,
                        "updated_at": last.updated_at.clone().unwrap_or(Bson::DateTime(now)),
                    };
                    match existing {
                        None => actions.push(Action::insert(
                            TARGET_NOTE,
                            doc! {
                                "project_id": project_id.as_str(), "chip_id": chip_id.as_str(), "target_type": target_type.as_str(),
                                "target_id": target_id.as_str(), "note": note, "comments": [],
                                "scope_type": "cooldown", "scope_key": &scope_key, "cooldown_id": &cooldown.id,
                                "scope_started_at": cooldown.started_at.clone(),
                                "scope_ended_at": cooldown.ended_at.clone(),
                                "scope_source": "explicit_cooldown",
                                "system_info": {"created_at": now, "updated_at": now},
                            },
                        )),
                        Some(target_note) => {
                            let mut set = doc! {
                                "note": note, "scope_type": "cooldown", "cooldown_id": &cooldown.id,
                                "scope_started_at": cooldown.started_at.clone(),
                                "scope_ended_at": cooldown.ended_at.clone(),
                                "scope_source": "explicit_cooldown",
                            };
                            if matches!(target_note.get("system_info"), Some(Bson::Document(_))) {
                                set.insert("system_info.updated_at", now);
                            }
                            let id = target_note.get("_id").cloned().unwrap_or(Bson::Null);
                            actions.push(Action::set(TARGET_NOTE, id, set));
                        }
                    }
                    tally.incr("targets_updated");
                    "updated"
                }
            };
            write!(info, "\"{action}\", \"cooldown_id\": {}", json_str(&cooldown.id)).expect("string write");
            if self.delete_source {
                for note in notes.iter() {
                    actions.push(Action::delete_one(METRIC_NOTE, doc! {"_id": note.id.clone()}));
                    tally.incr("metric_notes_deleted");
                }
                write!(info, ", \"metric_notes_deleted\": {}", notes.len()).expect("string write");
            }
            targets.push(info + "}");
        }
        let counters = tally.to_json();
        let summary = format!(
            "{}, \"targets\": [{}]}}",
            &counters[..counters.len() - 1],
            targets.join(", ")
        );
        actions.push(Action::report(
            "summary",
            "metric-notes-to-latest-cooldown-target-notes",
            summary,
        ));
        Ok(actions)
    }
}

fn cooldown_of(doc: &Document) -> Option<Cooldown> {
    Some(Cooldown {
        id: doc.get_str("cooldown_id").ok()?.to_string(),
        started_at: doc.get("started_at").cloned().unwrap_or(Bson::Null),
        ended_at: doc.get("ended_at").cloned().unwrap_or(Bson::Null),
    })
}

/// Upstream's `_latest_cooldown_for_chip`.
fn latest_cooldown(cx: &mut Context, project_id: &str, chip_id: &str) -> Result<Option<Cooldown>, Error> {
    let projection = doc! {"cooldown_id": 1, "started_at": 1, "ended_at": 1};
    let chip = cx.find(
        "chip",
        doc! {"project_id": project_id, "chip_id": chip_id},
        Some(doc! {"current_cooldown_id": 1}),
        1,
    )?;
    if let Some(Ok(current)) = chip.first().map(|c| c.get_str("current_cooldown_id"))
        && !current.is_empty()
    {
        let found = cx.find(
            "cooldown",
            doc! {"project_id": project_id, "cooldown_id": current, "chip_ids": chip_id},
            Some(projection.clone()),
            1,
        )?;
        if let Some(cooldown) = found.first().and_then(cooldown_of) {
            return Ok(Some(cooldown));
        }
    }
    let all = cx.find_all(
        "cooldown",
        doc! {"project_id": project_id, "chip_ids": chip_id},
        Some(projection),
        0,
    )?;
    let started = |c: &Document| c.get_datetime("started_at").map(|d| d.timestamp_millis()).ok();
    let mut best: Option<&Document> = None;
    for cooldown in &all {
        if best.is_none_or(|b| started(cooldown) > started(b)) {
            best = Some(cooldown);
        }
    }
    Ok(best.and_then(cooldown_of))
}

godwit_sdk::export!(MetricNotesToLatestCooldownTargetNotes);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::bson;
    use godwit_sdk::testing::Harness;

    fn day(d: i64) -> bson::DateTime {
        bson::DateTime::from_millis(1_767_225_600_000 + (d - 1) * 86_400_000)
    }

    #[test]
    fn upstream_latest_cooldown_summary_gets_the_section() {
        let mut h = Harness::<MetricNotesToLatestCooldownTargetNotes>::new()
            .collection("qubit", vec![doc! {"_id": 1, "project_id": "p", "chip_id": "chip-1", "qid": "21"}])
            .collection("chip", vec![doc! {"_id": 2, "project_id": "p", "chip_id": "chip-1", "current_cooldown_id": "cd-2"}])
            // `chip_ids` as one string: the in-memory host matches by equality,
            // not array elements (the end-to-end test has real arrays).
            .collection(
                "cooldown",
                vec![
                    doc! {"_id": 3, "project_id": "p", "cooldown_id": "cd-1", "chip_ids": "chip-1", "started_at": day(1), "ended_at": day(2)},
                    doc! {"_id": 4, "project_id": "p", "cooldown_id": "cd-2", "chip_ids": "chip-1", "started_at": day(3), "ended_at": null},
                ],
            )
            .collection(
                TARGET_NOTE,
                vec![doc! {"_id": 5, "project_id": "p", "chip_id": "chip-1", "target_type": "qubit", "target_id": "21",
                    "note": {"content": "Latest CD summary", "updated_by": "note_user", "updated_at": null},
                    "scope_key": "cooldown:cd-2", "system_info": {"updated_at": day(1)}}],
            );
        h.run_pass(
            0,
            vec![
                doc! {"_id": 9, "project_id": "p", "chip_id": "chip-1", "target_type": "qubit", "target_id": "21",
                "metric_key": "t1", "note": {"content": "Old T1 note", "updated_by": "alice", "updated_at": day(2)},
                "scope_type": "cooldown", "scope_key": "cooldown:cd-1"},
            ],
        )
        .unwrap();
        let actions = h.finish().unwrap();
        let content = "Latest CD summary\n\n---\n\n<!-- qdash:migrated-metric-notes-to-latest-cooldown -->\n\
                       ## Migrated legacy metric notes\n\n### t1\n- Scope: `cooldown:cd-1`\n\
                       - Last edited: alice at 2026-01-02T00:00:00\n\nOld T1 note";
        assert_eq!(
            actions[0],
            Action::set(
                TARGET_NOTE,
                5,
                doc! {"note": {"content": content, "updated_by": "alice", "updated_at": day(2)},
                "scope_type": "cooldown", "cooldown_id": "cd-2", "scope_started_at": day(3),
                "scope_ended_at": null, "scope_source": "explicit_cooldown", "system_info.updated_at": day(1)}
            )
        );
    }
}
