//! QDash v1.8.22 `migrate-forum-status` (`migrate_forum_status` in upstream's
//! `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`): forum threads
//! move from the deprecated `is_closed` flag and legacy topic labels to the
//! `status` workflow field. The rules are upstream's, the code is ours; every
//! document of `forum_post` is looked at:
//!
//! - **Labels** (only when `labels` is an array): non-strings are dropped;
//!   each string is trimmed and lowercased; `resolved` is removed (and makes
//!   the thread resolved); `discussion`, `info` and `mtg` become `review`;
//!   anything else outside the allowed `review` and `anomaly` becomes
//!   `review`; duplicates collapse and only the first label is kept.
//! - **Status**: a `resolved` label, else `is_closed: true`, makes it
//!   `resolved`; otherwise a status outside QDash's `open`, `investigating`,
//!   `identified`, `resolved` (absent included) becomes `open`; a valid one
//!   is kept.
//! - `is_closed` is removed wherever it exists, whatever its value.
//!
//! **Figures.** The `summary` report has upstream's keys and meanings:
//! `posts_found`, `posts_to_update`, `status_from_is_closed`,
//! `status_from_resolved_label`, `status_defaulted_open`, `labels_changed`,
//! `is_closed_removed`. Upstream reports the same figures in its dry run and
//! its execute; so does this plugin.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};

pub const FORUM_POST: &str = "forum_post";

/// QDash's `FORUM_THREAD_STATUSES`.
pub const STATUSES: [&str; 4] = ["open", "investigating", "identified", "resolved"];
const ALLOWED_LABELS: [&str; 2] = ["review", "anomaly"];

/// Python's `str.strip()` whitespace: Unicode white space plus the four
/// information separators Python also counts.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A label as upstream's `label_aliases` rewrites it.
fn alias(label: &str) -> &str {
    match label {
        "discussion" | "info" | "mtg" => "review",
        other => other,
    }
}

/// What one post needs: the update, if any, and which counters it moves.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub set: Document,
    pub unset: bool,
    pub from_is_closed: bool,
    pub from_resolved_label: bool,
    pub defaulted_open: bool,
    pub labels_changed: bool,
}

/// Upstream's rules for one post.
pub fn migrate(post: &Document) -> Outcome {
    let mut out = Outcome::default();
    let current = post.get("status");
    let labels: &[Bson] = match post.get("labels") {
        Some(Bson::Array(labels)) => labels,
        _ => &[],
    };
    let mut normalized: Vec<String> = Vec::new();
    let mut has_resolved = false;
    let mut changed = false;
    for raw in labels {
        let Bson::String(raw) = raw else {
            changed = true;
            continue;
        };
        let label = raw.trim_matches(is_py_space).to_lowercase();
        if label == "resolved" {
            has_resolved = true;
            changed = true;
            continue;
        }
        let mut label = alias(&label).to_string();
        if !ALLOWED_LABELS.contains(&label.as_str()) {
            label = "review".to_string();
            changed = true;
        }
        if label != *raw {
            changed = true;
        }
        if !normalized.contains(&label) {
            normalized.push(label);
        }
    }
    if normalized.len() > 1 {
        normalized.truncate(1);
        changed = true;
    }
    let valid = match current {
        Some(Bson::String(s)) if STATUSES.contains(&s.as_str()) => Some(s.as_str()),
        _ => None,
    };
    let next = if has_resolved {
        out.from_resolved_label = valid != Some("resolved");
        "resolved"
    } else if post.get("is_closed") == Some(&Bson::Boolean(true)) {
        out.from_is_closed = valid != Some("resolved");
        "resolved"
    } else if let Some(valid) = valid {
        valid
    } else {
        out.defaulted_open = true;
        "open"
    };
    if current != Some(&Bson::String(next.to_string())) {
        out.set.insert("status", next);
    }
    let same = labels.len() == normalized.len()
        && labels
            .iter()
            .zip(&normalized)
            .all(|(raw, label)| matches!(raw, Bson::String(s) if s == label));
    if changed || !same {
        out.set.insert("labels", normalized);
        out.labels_changed = true;
    }
    out.unset = post.contains_key("is_closed");
    out
}

pub struct MigrateForumStatus {
    tally: Tally,
}

impl Migration for MigrateForumStatus {
    fn manifest() -> Manifest {
        Manifest::new("qdash-migrate-forum-status", "1.8.22")
            .requires(">=1.8.16, <1.8.22")
            .description(
                "QDash v1.8.22 migrate-forum-status: forum threads' is_closed and legacy labels become status \
                 (resolved/open), labels collapse to review/anomaly, is_closed is removed",
            )
            .pass(
                Pass::new("forum-status", FORUM_POST)
                    .projection(doc! {"status": 1, "labels": 1, "is_closed": 1})
                    .writes([FORUM_POST]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for key in [
            "posts_found",
            "posts_to_update",
            "status_from_is_closed",
            "status_from_resolved_label",
            "status_defaulted_open",
            "labels_changed",
            "is_closed_removed",
        ] {
            tally.touch(key);
        }
        Ok(MigrateForumStatus { tally })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for post in batch {
            let id = post
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a post came without _id"))?;
            self.tally.incr("posts_found");
            let out = migrate(&post);
            for (counter, moved) in [
                ("status_from_is_closed", out.from_is_closed),
                ("status_from_resolved_label", out.from_resolved_label),
                ("status_defaulted_open", out.defaulted_open),
                ("labels_changed", out.labels_changed),
                ("is_closed_removed", out.unset),
            ] {
                if moved {
                    self.tally.incr(counter);
                }
            }
            if out.set.is_empty() && !out.unset {
                continue;
            }
            self.tally.incr("posts_to_update");
            let mut update = Document::new();
            if !out.set.is_empty() {
                update.insert("$set", out.set);
            }
            if out.unset {
                update.insert("$unset", doc! {"is_closed": ""});
            }
            actions.push(Action::update_one(FORUM_POST, doc! {"_id": id}, update));
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![self.tally.report("summary", "migrate-forum-status")])
    }
}

godwit_sdk::export!(MigrateForumStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_closed_review_and_plain_threads() {
        let closed = migrate(&doc! {"status": "open", "labels": ["resolved"], "is_closed": true});
        assert_eq!(closed.set, doc! {"status": "resolved", "labels": []});
        assert!(closed.unset && closed.from_resolved_label && closed.labels_changed && !closed.from_is_closed);
        let review = migrate(&doc! {"status": "open", "labels": ["discussion"]});
        assert_eq!(review.set, doc! {"labels": ["review"]});
        let plain = migrate(&doc! {"labels": []});
        assert_eq!(plain.set, doc! {"status": "open"});
        assert!(plain.defaulted_open && !plain.labels_changed && !plain.unset);
    }

    #[test]
    fn labels_are_trimmed_lowered_aliased_and_only_the_first_is_kept() {
        let out = migrate(&doc! {"status": "identified", "labels": [" Anomaly ", 3, "mtg", "weird"]});
        assert_eq!(out.set, doc! {"labels": ["anomaly"]});
        let done = migrate(&doc! {"status": "identified", "labels": ["anomaly"]});
        assert_eq!(done, Outcome::default(), "already migrated");
        let kept = migrate(&doc! {"status": "investigating", "is_closed": false});
        assert_eq!(kept.set, Document::new());
        assert!(kept.unset, "is_closed goes whatever its value");
    }
}
