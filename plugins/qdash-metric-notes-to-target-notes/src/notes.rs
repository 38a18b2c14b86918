//! QDash's legacy metric notes as both notes migrations read them
//! (`metric-notes-to-target-notes` and `metric-notes-to-latest-cooldown-
//! target-notes` share upstream's helpers): Python's `str.strip`, dates as
//! Python's `isoformat`, a note read from a `metric_note` document, the
//! section written into a target note, merging it, and the latest edit.
//! Compiled into both plugins (`#[path]`), like `tests/plugins/chain-a/src/step.rs`.

use godwit_sdk::{Bson, Document};

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Python's `datetime.isoformat()` of the naive UTC datetime pymongo decodes
/// a BSON date into (QDash's client is not `tz_aware`).
pub fn isoformat(value: &Bson) -> Option<String> {
    match value {
        Bson::DateTime(dt) => {
            let text = dt.try_to_rfc3339_string().ok()?;
            let base = text.get(..19)?.to_string();
            let millis = dt.timestamp_millis().rem_euclid(1000);
            Some(if millis == 0 {
                base
            } else {
                format!("{base}.{:06}", millis * 1000)
            })
        }
        Bson::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn string_field<'a>(doc: &'a Document, key: &str) -> &'a str {
    doc.get_str(key).unwrap_or("")
}

/// One metric note with what the section and the ordering need.
#[derive(Debug, Clone)]
pub struct MetricNote {
    /// The `metric_note` document's `_id`.
    pub id: Bson,
    pub metric_key: String,
    pub scope_key: String,
    pub scope_type: String,
    pub content: String,
    pub updated_by: String,
    pub updated_at: Option<Bson>,
    /// `note.updated_at`, else `system_info.updated_at`: the latest edit.
    pub edited_ms: Option<i64>,
}

impl MetricNote {
    /// The note of a `metric_note` document, if its content is not blank.
    pub fn from_document(doc: &Document) -> Option<MetricNote> {
        let note = doc.get_document("note").ok()?;
        let content = py_strip(note.get_str("content").ok()?);
        if content.is_empty() {
            return None;
        }
        let updated_at = note.get("updated_at").filter(|v| !matches!(v, Bson::Null)).cloned();
        let system_updated = doc
            .get_document("system_info")
            .ok()
            .and_then(|s| s.get_datetime("updated_at").ok());
        let edited_ms = match &updated_at {
            Some(Bson::DateTime(dt)) => Some(dt.timestamp_millis()),
            _ => system_updated.map(|dt| dt.timestamp_millis()),
        };
        Some(MetricNote {
            id: doc.get("_id")?.clone(),
            metric_key: string_field(doc, "metric_key").to_string(),
            scope_key: string_field(doc, "scope_key").to_string(),
            scope_type: string_field(doc, "scope_type").to_string(),
            content: content.to_string(),
            updated_by: string_field(note, "updated_by").to_string(),
            updated_at,
            edited_ms,
        })
    }

    pub fn iso(&self) -> Option<String> {
        self.updated_at.as_ref().and_then(isoformat)
    }
}

/// Upstream's `_format_migrated_metric_note_section`.
pub fn section(notes: &[MetricNote], marker: &str, title: &str) -> String {
    let mut lines = vec![marker.to_string(), format!("## {title}")];
    for note in notes {
        let scope = [&note.scope_key, &note.scope_type]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("unknown scope", |s| s.as_str());
        let by = if note.updated_by.is_empty() {
            "unknown user"
        } else {
            &note.updated_by
        };
        let at = note.iso().unwrap_or_else(|| "unknown time".to_string());
        lines.extend([
            String::new(),
            format!("### {}", note.metric_key),
            format!("- Scope: `{scope}`"),
            format!("- Last edited: {by} at {at}"),
            String::new(),
            note.content.clone(),
        ]);
    }
    py_strip(&lines.join("\n")).to_string()
}

/// Upstream's `_merge_migrated_metric_notes`: the new content, or `None` when
/// the target already holds the section.
pub fn merge(existing: &str, section: &str, marker: &str) -> Option<String> {
    let existing = py_strip(existing);
    if section.is_empty() || existing.contains(marker) {
        return None;
    }
    if existing.is_empty() {
        return Some(section.to_string());
    }
    Some(format!("{existing}\n\n---\n\n{section}"))
}

/// (`project_id`, `chip_id`, `target_type`, `target_id`).
pub type GroupKey = (String, String, String, String);

/// The target a `metric_note` document is about: upstream's grouping key.
pub fn group_key(doc: &Document) -> GroupKey {
    (
        string_field(doc, "project_id").to_string(),
        string_field(doc, "chip_id").to_string(),
        string_field(doc, "target_type").to_string(),
        string_field(doc, "target_id").to_string(),
    )
}

/// The note with the latest edit (the first of equals, as Python's `max`).
pub fn latest(notes: &[MetricNote]) -> &MetricNote {
    let mut best = &notes[0];
    for note in &notes[1..] {
        if note.edited_ms > best.edited_ms {
            best = note;
        }
    }
    best
}
