//! QDash v1.8.26 `legacy-target-notes-to-comments`
//! (`migrate_legacy_target_notes_to_comments` in upstream's
//! `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`): the dashboard's
//! target summary became a list of author-tracked comments, so every
//! non-empty single summary becomes one comment attributed to its last
//! editor, and the single summary is cleared. The rules are upstream's, the
//! code is ours, in upstream's three steps:
//!
//! 1. **Target notes**: every `target_note` whose `note.content` is not blank
//!    gets the comment `legacy-target-note-<target_type>-<scope_key>`; its
//!    note is cleared.
//! 2. **Qubit and coupling notes**: every `qubit`, then `coupling`, whose
//!    `note.content` is not blank gets its comment
//!    (`legacy-<qubit|coupling>-<target_type>-<scope_key>`) in the target
//!    note of its chip's current (else latest started) cool-down, or the
//!    `global` one when the chip has none - created when missing; its note
//!    is cleared.
//! 3. **Relocation**: a `global` / `legacy_global` target note whose chip
//!    has a cool-down now hands its earlier migrated comments (ids starting
//!    `legacy-<t>-<t>-global`) to that cool-down's target note (renamed
//!    `legacy-<t>-<t>-cooldown:<id>`), keeps its other comments, and is
//!    deleted when nothing is left in it.
//!
//! A comment is `{comment_id, content (trimmed), created_by (the note's
//! updated_by, else "migration"), created_at (the note's updated_at, else the
//! run's start), updated_by (= created_by), updated_at: null}`. One whose id,
//! or whose content and author, the target note already holds is **already
//! migrated**: not added again (the note is still cleared). A cleared note is
//! QDash's empty `NoteModel` (`content ""`, `updated_by ""`, `updated_at
//! null`); every changed document gets `system_info.updated_at` = the run's
//! start (upstream's `now()`). Target notes are matched in `_id` order, which
//! stands in for upstream's natural order.
//!
//! Upstream saves whole documents through its models; here the fields named
//! above are set (a target note's `comments` as the whole list the plugin
//! computed from the one it read), new target notes are inserted with
//! QDash's model defaults, and emptied global ones deleted.
//!
//! **Figures.** The `summary` report has upstream's keys:
//! `legacy_notes_found`, `comments_created`, `comments_relocated`,
//! `notes_cleared`, `notes_skipped_already_migrated` and `targets` (per
//! summary or relocated comment: `project_id`, `chip_id`, `target_type`,
//! `target_id`, `scope_key`, `source`, `action` - `migrated`,
//! `already_migrated` or `relocated`; upstream's dry run says `dry_run`
//! there, and counts `notes_cleared` as 0, where this plugin, never told
//! whether it runs dry, reports what the execute does).
//!
//! All the work is in `finish`, after every note is read: its actions and its
//! cool-down lookups are bounded by the host's per-call limits (10,000 each).

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use std::collections::HashMap;

pub const TARGET_NOTE: &str = "target_note";
pub const QUBIT: &str = "qubit";
pub const COUPLING: &str = "coupling";

const TARGET_NOTES: usize = 0;

/// A string as a JSON string literal, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub use godwit_sdk::json_string as json_str;

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn string_field<'a>(doc: &'a Document, key: &str) -> &'a str {
    doc.get_str(key).unwrap_or("")
}

/// QDash's empty `NoteModel`.
fn empty_note() -> Document {
    doc! {"content": "", "updated_by": "", "updated_at": Bson::Null}
}

/// The trimmed content of a document's `note`, if not blank.
fn note_content(doc: &Document) -> Option<(String, Document)> {
    let note = doc.get_document("note").ok()?;
    let content = py_strip(note.get_str("content").ok()?);
    (!content.is_empty()).then(|| (content.to_string(), note.clone()))
}

/// A target note as this run sees it, changes included.
#[derive(Debug, Clone)]
struct TargetNote {
    /// `None` for one this run creates.
    id: Option<Bson>,
    doc: Document,
    comments: Vec<Document>,
    comments_changed: bool,
    note_cleared: bool,
    touched: bool,
    deleted: bool,
}

impl TargetNote {
    fn field(&self, key: &str) -> &str {
        string_field(&self.doc, key)
    }

    fn holds(&self, content: &str, created_by: &str) -> bool {
        self.comments
            .iter()
            .any(|c| py_strip(string_field(c, "content")) == content && string_field(c, "created_by") == created_by)
    }
}

/// A `qubit` or `coupling` with a legacy summary.
#[derive(Debug, Clone)]
struct Legacy {
    collection: &'static str,
    id: Bson,
    project_id: String,
    chip_id: String,
    qid: String,
    note: Document,
    content: String,
    has_system_info: bool,
}

/// Where a chip's legacy notes go: upstream's `scope_fields_for_legacy_target`.
#[derive(Debug, Clone)]
struct Scope {
    key: String,
    fields: Document,
}

pub struct LegacyTargetNotesToComments {
    notes: Vec<TargetNote>,
    legacy: Vec<Legacy>,
}

impl Migration for LegacyTargetNotesToComments {
    fn manifest() -> Manifest {
        let with_note = doc! {"note.content": {"$type": "string", "$ne": ""}};
        let projection = doc! {"project_id": 1, "chip_id": 1, "qid": 1, "note": 1, "system_info": 1};
        Manifest::new("qdash-legacy-target-notes-to-comments", "1.8.26")
            .requires(">=1.8.25, <1.8.26")
            .description(
                "QDash v1.8.26 legacy-target-notes-to-comments: single target summaries (target_note, qubit and \
                 coupling notes) become author-tracked comments of the target note and are cleared; earlier global \
                 comments move to the chip's cool-down",
            )
            .pass(Pass::new("target-notes", TARGET_NOTE).writes([TARGET_NOTE, QUBIT, COUPLING]))
            .pass(
                Pass::new("qubit-notes", QUBIT)
                    .filter(with_note.clone())
                    .projection(projection.clone())
                    .writes([QUBIT]),
            )
            .pass(
                Pass::new("coupling-notes", COUPLING)
                    .filter(with_note)
                    .projection(projection)
                    .writes([COUPLING]),
            )
            // The chip's cool-down is looked up for each global comment.
            .reads(["chip", "cooldown"])
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(LegacyTargetNotesToComments {
            notes: Vec::new(),
            legacy: Vec::new(),
        })
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        for doc in batch {
            let id = doc
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a document came without _id"))?;
            if pass == TARGET_NOTES {
                let comments = match doc.get("comments") {
                    Some(Bson::Array(items)) => items.iter().filter_map(|c| c.as_document().cloned()).collect(),
                    _ => Vec::new(),
                };
                self.notes.push(TargetNote {
                    id: Some(id),
                    doc,
                    comments,
                    comments_changed: false,
                    note_cleared: false,
                    touched: false,
                    deleted: false,
                });
                continue;
            }
            let Some((content, note)) = note_content(&doc) else {
                continue;
            };
            self.legacy.push(Legacy {
                collection: if pass == 1 { QUBIT } else { COUPLING },
                id,
                project_id: string_field(&doc, "project_id").to_string(),
                chip_id: string_field(&doc, "chip_id").to_string(),
                qid: string_field(&doc, "qid").to_string(),
                note,
                content,
                has_system_info: matches!(doc.get("system_info"), Some(Bson::Document(_))),
            });
        }
        Ok(Vec::new())
    }

    fn finish(&mut self, cx: &mut Context) -> Result<Vec<Action>, Error> {
        let now = cx.run().started_at();
        let mut run = Run {
            now,
            tally: Tally::new(),
            targets: Vec::new(),
            scopes: HashMap::new(),
        };
        for key in [
            "legacy_notes_found",
            "comments_created",
            "comments_relocated",
            "notes_cleared",
            "notes_skipped_already_migrated",
        ] {
            run.tally.touch(key);
        }
        let mut actions = Vec::new();

        // 1. Target notes with a summary of their own.
        let with_summary: Vec<usize> = (0..self.notes.len())
            .filter(|&i| note_content(&self.notes[i].doc).is_some())
            .collect();
        for i in with_summary {
            let (content, note) = note_content(&self.notes[i].doc).expect("filtered");
            run.tally.incr("legacy_notes_found");
            let info = run.info(&self.notes[i], None, "target_note");
            run.add_comment(&mut self.notes[i], &content, &note, "target-note", info);
            let target = &mut self.notes[i];
            target.doc.insert("note", empty_note());
            target.note_cleared = true;
            target.touched = true;
            run.tally.incr("notes_cleared");
        }

        // 2. Qubit, then coupling summaries, into the chip's scope.
        for legacy in std::mem::take(&mut self.legacy) {
            run.tally.incr("legacy_notes_found");
            let scope = run.scope(cx, &legacy.project_id, &legacy.chip_id)?;
            let target_type = legacy.collection;
            let i = self.get_or_create(&legacy.project_id, &legacy.chip_id, target_type, &legacy.qid, &scope);
            let info = run.info(&self.notes[i], Some(&scope.key), legacy.collection);
            run.add_comment(
                &mut self.notes[i],
                &legacy.content,
                &legacy.note,
                legacy.collection,
                info,
            );
            let mut set = doc! {"note": empty_note()};
            if legacy.has_system_info {
                set.insert("system_info.updated_at", now);
            }
            actions.push(Action::set(legacy.collection, legacy.id, set));
            self.notes[i].touched = true;
            run.tally.incr("notes_cleared");
        }

        // 3. Earlier global comments to the chip's cool-down.
        let globals: Vec<usize> = (0..self.notes.len())
            .filter(|&i| {
                let n = &self.notes[i];
                !n.deleted && n.field("scope_key") == "global" && n.field("scope_source") == "legacy_global"
            })
            .collect();
        for g in globals {
            let (project_id, chip_id, target_type, target_id) = {
                let n = &self.notes[g];
                (
                    n.field("project_id").to_string(),
                    n.field("chip_id").to_string(),
                    n.field("target_type").to_string(),
                    n.field("target_id").to_string(),
                )
            };
            let scope = run.scope(cx, &project_id, &chip_id)?;
            if scope.key == "global" {
                continue;
            }
            let prefix = format!("legacy-{target_type}-{target_type}-global");
            let migrated: Vec<Document> = self.notes[g]
                .comments
                .iter()
                .filter(|c| string_field(c, "comment_id").starts_with(&prefix))
                .cloned()
                .collect();
            if migrated.is_empty() {
                continue;
            }
            let t = self.get_or_create(&project_id, &chip_id, &target_type, &target_id, &scope);
            let mut moved = false;
            for comment in &migrated {
                let info = run.info(&self.notes[g], Some(&scope.key), "relocated_global");
                let content = py_strip(string_field(comment, "content"));
                if self.notes[t].holds(content, string_field(comment, "created_by")) {
                    run.targets.push(info + "\"already_migrated\"}");
                    run.tally.incr("notes_skipped_already_migrated");
                    continue;
                }
                let mut relocated = comment.clone();
                relocated.insert(
                    "comment_id",
                    format!("legacy-{target_type}-{target_type}-{}", scope.key),
                );
                self.notes[t].comments.push(relocated);
                self.notes[t].comments_changed = true;
                moved = true;
                run.tally.incr("comments_relocated");
                run.targets.push(info + "\"relocated\"}");
            }
            if moved {
                self.notes[t].touched = true;
                let global = &mut self.notes[g];
                global.comments.retain(|c| !migrated.contains(c));
                global.comments_changed = true;
                global.touched = true;
                if global.comments.is_empty() && note_content(&global.doc).is_none() {
                    global.deleted = true;
                }
            }
        }

        for note in &self.notes {
            actions.extend(note.action(now));
        }
        let counters = run.tally.to_json();
        let summary = format!(
            "{}, \"targets\": [{}]}}",
            &counters[..counters.len() - 1],
            run.targets.join(", ")
        );
        actions.push(Action::report("summary", "legacy-target-notes-to-comments", summary));
        Ok(actions)
    }
}

/// What one `finish` keeps while it goes through the three steps.
struct Run {
    now: godwit_sdk::bson::DateTime,
    tally: Tally,
    /// Upstream's `targets` entries, each missing its closing action.
    targets: Vec<String>,
    scopes: HashMap<(String, String), Scope>,
}

impl Run {
    /// A `targets` entry up to its `action` value.
    fn info(&self, note: &TargetNote, scope_key: Option<&str>, source: &str) -> String {
        format!(
            "{{\"project_id\": {}, \"chip_id\": {}, \"target_type\": {}, \"target_id\": {}, \"scope_key\": {}, \
             \"source\": {}, \"action\": ",
            json_str(note.field("project_id")),
            json_str(note.field("chip_id")),
            json_str(note.field("target_type")),
            json_str(note.field("target_id")),
            json_str(scope_key.unwrap_or(note.field("scope_key"))),
            json_str(source)
        )
    }

    /// Upstream's `add_comment`.
    fn add_comment(&mut self, target: &mut TargetNote, content: &str, note: &Document, source: &str, info: String) {
        let comment_id = format!(
            "legacy-{source}-{}-{}",
            target.field("target_type"),
            target.field("scope_key")
        );
        let by = string_field(note, "updated_by");
        let created_by = if by.is_empty() { "migration" } else { by };
        if target
            .comments
            .iter()
            .any(|c| string_field(c, "comment_id") == comment_id)
            || target.holds(content, created_by)
        {
            self.tally.incr("notes_skipped_already_migrated");
            self.targets.push(info + "\"already_migrated\"}");
            return;
        }
        let created_at = match note.get("updated_at") {
            Some(Bson::Null) | None => Bson::DateTime(self.now),
            Some(at) => at.clone(),
        };
        target.comments.push(doc! {
            "comment_id": comment_id, "content": content, "created_by": created_by, "created_at": created_at,
            "updated_by": created_by, "updated_at": Bson::Null,
        });
        target.comments_changed = true;
        self.tally.incr("comments_created");
        self.targets.push(info + "\"migrated\"}");
    }

    fn scope(&mut self, cx: &mut Context, project_id: &str, chip_id: &str) -> Result<Scope, Error> {
        let key = (project_id.to_string(), chip_id.to_string());
        if let Some(scope) = self.scopes.get(&key) {
            return Ok(scope.clone());
        }
        let scope = match latest_cooldown(cx, project_id, chip_id)? {
            None => Scope {
                key: "global".into(),
                fields: doc! {"scope_type": "global", "scope_key": "global", "cooldown_id": Bson::Null,
                "scope_started_at": Bson::Null, "scope_ended_at": Bson::Null, "scope_source": "legacy_global"},
            },
            Some(cooldown) => {
                let id = cooldown.get_str("cooldown_id").unwrap_or("").to_string();
                Scope {
                    key: format!("cooldown:{id}"),
                    fields: doc! {"scope_type": "cooldown", "scope_key": format!("cooldown:{id}"), "cooldown_id": id,
                    "scope_started_at": cooldown.get("started_at").cloned().unwrap_or(Bson::Null),
                    "scope_ended_at": cooldown.get("ended_at").cloned().unwrap_or(Bson::Null),
                    "scope_source": "current_cooldown"},
                }
            }
        };
        self.scopes.insert(key, scope.clone());
        Ok(scope)
    }
}

impl LegacyTargetNotesToComments {
    /// Upstream's `get_or_create_target_note`: the index of the first target
    /// note (existing ones in `_id` order, then created ones) for this
    /// target and scope, created when there is none.
    fn get_or_create(
        &mut self,
        project_id: &str,
        chip_id: &str,
        target_type: &str,
        target_id: &str,
        scope: &Scope,
    ) -> usize {
        let found = self.notes.iter().position(|n| {
            !n.deleted
                && n.field("project_id") == project_id
                && n.field("chip_id") == chip_id
                && n.field("target_type") == target_type
                && n.field("target_id") == target_id
                && n.field("scope_key") == scope.key
        });
        if let Some(i) = found {
            return i;
        }
        let mut doc = doc! {"project_id": project_id, "chip_id": chip_id, "target_type": target_type,
        "target_id": target_id, "note": empty_note(), "comments": []};
        doc.extend(scope.fields.clone());
        self.notes.push(TargetNote {
            id: None,
            doc,
            comments: Vec::new(),
            comments_changed: true,
            note_cleared: false,
            touched: true,
            deleted: false,
        });
        self.notes.len() - 1
    }
}

impl TargetNote {
    /// The one action that brings the stored document to this state.
    fn action(&self, now: godwit_sdk::bson::DateTime) -> Option<Action> {
        if !self.touched {
            return None;
        }
        let comments: Vec<Bson> = self.comments.iter().cloned().map(Bson::Document).collect();
        match &self.id {
            None => {
                let mut doc = self.doc.clone();
                doc.insert("comments", comments);
                doc.insert("system_info", doc! {"created_at": now, "updated_at": now});
                Some(Action::insert(TARGET_NOTE, doc))
            }
            Some(id) if self.deleted => Some(Action::delete_one(TARGET_NOTE, doc! {"_id": id.clone()})),
            Some(id) => {
                let mut set = Document::new();
                if self.note_cleared {
                    set.insert("note", empty_note());
                }
                if self.comments_changed {
                    set.insert("comments", comments);
                }
                if matches!(self.doc.get("system_info"), Some(Bson::Document(_))) {
                    set.insert("system_info.updated_at", now);
                }
                (!set.is_empty()).then(|| Action::set(TARGET_NOTE, id.clone(), set))
            }
        }
    }
}

/// Upstream's `_latest_cooldown_for_chip`: the chip's current cool-down if a
/// cool-down of the project with that id lists the chip, else the latest
/// started one listing it.
fn latest_cooldown(cx: &mut Context, project_id: &str, chip_id: &str) -> Result<Option<Document>, Error> {
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
        if let Some(cooldown) = found.into_iter().next() {
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
    let mut best: Option<Document> = None;
    for cooldown in all {
        if best.as_ref().is_none_or(|b| started(&cooldown) > started(b)) {
            best = Some(cooldown);
        }
    }
    Ok(best)
}

godwit_sdk::export!(LegacyTargetNotesToComments);
