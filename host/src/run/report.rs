//! The run summary: per pass, documents scanned, actions by kind and the
//! documents those actions touch, with reports grouped by kind and the first
//! few samples of each.

use crate::plugin::actions::ValidAction;
use serde::Serialize;
use std::collections::BTreeMap;

/// Samples kept per report kind.
pub const SAMPLES: usize = 5;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub passes: Vec<PassSummary>,
    pub finish: PassSummary,
    /// Pacing on the database's health in this process (`--max-commit-ms`,
    /// `--max-lag-ms`).
    pub pacing: super::pace::Pacing,
    /// An execute bound to a reviewed dry run (`--plan`): how it compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Box<super::plan::PlanCheck>>,
    /// Schema operations (contract 0.2): each with what it would affect
    /// and, in an execute run, what was done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema: Vec<super::schema::SchemaLine>,
    /// The follow phase (`--follow`), when the run has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<FollowSummary>,
}

/// What the follow phase did: the change stream's windows after the
/// snapshot passes, the documents they named (each read again and, if it
/// still matched a pass, processed), and the cutover.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FollowSummary {
    pub windows: u64,
    /// Change events read (godwit's own writes are not among them).
    pub events: u64,
    /// Documents the events named, once per window.
    pub documents: u64,
    /// Documents named but not processed yet.
    pub pending: u64,
    /// How far behind the database's latest change the last processed
    /// window was when it was done, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// When the operator's cutover reached the database (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutover_at: Option<String>,
    /// The proof is journaled: every change up to the cutover was processed.
    pub done: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PassSummary {
    pub name: String,
    pub collection: String,
    /// The collection did not exist when the pass started: it read nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub collection_missing: bool,
    pub documents: u64,
    pub batches: u64,
    pub updates: u64,
    pub inserts: u64,
    pub deletes: u64,
    /// Documents the write actions touch: what the server reported in an
    /// execute run, an upper bound in a dry run. One action can touch many
    /// documents, so the action counts alone would understate a run.
    pub touched: Touched,
    /// Documents the write guard found changed by another writer between
    /// their read and their batch's commit: read and processed again, never
    /// overwritten. Each time counts.
    pub conflicts: u64,
    /// Write actions per target collection.
    pub writes_by_collection: BTreeMap<String, u64>,
    pub reports: BTreeMap<String, ReportKind>,
}

/// Documents touched by write actions.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Touched {
    /// Existing documents an update matched (a dry run: could match).
    pub updated: u64,
    /// Documents created, by inserts and by upserts that matched nothing.
    pub inserted: u64,
    pub deleted: u64,
}

impl Touched {
    pub fn add(&mut self, other: Touched) {
        self.updated += other.updated;
        self.inserted += other.inserted;
        self.deleted += other.deleted;
    }

    /// Upper bound of what `actions` can touch, without asking the database,
    /// and the actions it cannot bound that way (a `multi` update or delete
    /// whose filter does not pin `_id` values): their reach is the number of
    /// documents their filter matches, which the caller counts.
    pub fn bound(actions: &[ValidAction]) -> (Touched, Vec<&ValidAction>) {
        let mut touched = Touched::default();
        let mut unbounded = Vec::new();
        for action in actions {
            let reach = |filter: &bson::Document, multi: bool| if multi { pinned_ids(filter) } else { Some(1) };
            match action {
                ValidAction::Update {
                    filter, multi, upsert, ..
                } => match reach(filter, *multi) {
                    // An upsert either updates what it matches or creates one.
                    Some(n) if *upsert => {
                        touched.updated += n;
                        touched.inserted += 1;
                    }
                    Some(n) => touched.updated += n,
                    None => unbounded.push(action),
                },
                ValidAction::Insert { .. } => touched.inserted += 1,
                ValidAction::Delete { filter, multi, .. } => match reach(filter, *multi) {
                    Some(n) => touched.deleted += n,
                    None => unbounded.push(action),
                },
                ValidAction::Report { .. } => {}
            }
        }
        (touched, unbounded)
    }
}

/// How many documents a filter can match at most by its `_id` alone: one
/// for `{_id: v}` or `{_id: {$eq: v}}`, the list's length for
/// `{_id: {$in: [...]}}`; `None` when `_id` is not pinned to values.
pub fn pinned_ids(filter: &bson::Document) -> Option<u64> {
    match filter.get("_id")? {
        bson::Bson::Document(op) if op.keys().any(|k| k.starts_with('$')) => {
            if op.len() != 1 {
                return None;
            }
            match (op.keys().next()?.as_str(), op.values().next()?) {
                ("$eq", v) if !is_operator(v) => Some(1),
                ("$in", bson::Bson::Array(values)) if !values.iter().any(is_operator) => Some(values.len() as u64),
                _ => None,
            }
        }
        // A regular expression as the value matches by pattern, not equality.
        bson::Bson::RegularExpression(_) => None,
        _ => Some(1),
    }
}

fn is_operator(value: &bson::Bson) -> bool {
    matches!(value, bson::Bson::Document(d) if d.keys().any(|k| k.starts_with('$')))
        || matches!(value, bson::Bson::RegularExpression(_))
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReportKind {
    pub count: u64,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub key: String,
    pub message: String,
}

impl PassSummary {
    /// Adds what `other` counted of the same pass (a fleet run's partition).
    pub fn absorb(&mut self, other: &PassSummary) {
        self.collection_missing |= other.collection_missing;
        self.documents += other.documents;
        self.batches += other.batches;
        self.updates += other.updates;
        self.inserts += other.inserts;
        self.deletes += other.deletes;
        self.touched.add(other.touched);
        self.conflicts += other.conflicts;
        for (collection, n) in &other.writes_by_collection {
            *self.writes_by_collection.entry(collection.clone()).or_default() += n;
        }
        for (kind, report) in &other.reports {
            let entry = self.reports.entry(kind.clone()).or_default();
            entry.count += report.count;
            let room = SAMPLES.saturating_sub(entry.samples.len());
            entry.samples.extend(report.samples.iter().take(room).cloned());
        }
    }
}

impl Summary {
    pub fn new<'a>(passes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Summary {
            passes: passes
                .into_iter()
                .map(|(name, collection)| PassSummary {
                    name: name.into(),
                    collection: collection.into(),
                    ..Default::default()
                })
                .collect(),
            finish: PassSummary {
                name: "finish".into(),
                ..Default::default()
            },
            pacing: Default::default(),
            plan: None,
            follow: None,
            schema: Vec::new(),
        }
    }

    /// Adds one batch: `pass` None is `finish`.
    pub fn add(&mut self, pass: Option<u32>, documents: u64, actions: &[ValidAction]) {
        let target = match pass {
            Some(p) => &mut self.passes[p as usize],
            None => &mut self.finish,
        };
        target.documents += documents;
        target.batches += 1;
        for action in actions {
            match action {
                ValidAction::Update { .. } => target.updates += 1,
                ValidAction::Insert { .. } => target.inserts += 1,
                ValidAction::Delete { .. } => target.deletes += 1,
                ValidAction::Report { kind, key, message } => {
                    let entry = target.reports.entry(kind.clone()).or_default();
                    entry.count += 1;
                    if entry.samples.len() < SAMPLES {
                        entry.samples.push(Sample {
                            key: key.clone(),
                            message: message.clone(),
                        });
                    }
                }
            }
            if let Some(c) = action.collection() {
                *target.writes_by_collection.entry(c.to_string()).or_default() += 1;
            }
        }
    }

    pub fn write_actions(&self) -> u64 {
        self.passes
            .iter()
            .chain([&self.finish])
            .map(|p| p.updates + p.inserts + p.deletes)
            .sum()
    }

    pub fn documents(&self) -> u64 {
        self.passes.iter().map(|p| p.documents).sum()
    }

    /// Counts documents of pass `pass` the write guard found changed.
    pub fn add_conflicts(&mut self, pass: u32, documents: u64) {
        if let Some(p) = self.passes.get_mut(pass as usize) {
            p.conflicts += documents;
        }
    }

    /// Documents the write guard found changed, over the whole run.
    pub fn conflicts(&self) -> u64 {
        self.passes.iter().map(|p| p.conflicts).sum()
    }

    /// Adds documents touched to a pass (`None`: finish).
    pub fn add_touched(&mut self, pass: Option<u32>, touched: Touched) {
        match pass {
            Some(p) => self.passes[p as usize].touched.add(touched),
            None => self.finish.touched.add(touched),
        }
    }

    /// Documents touched by the whole run.
    pub fn touched(&self) -> Touched {
        let mut total = Touched::default();
        for pass in self.passes.iter().chain([&self.finish]) {
            total.add(pass.touched);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{Document, doc};

    fn update(filter: Document, multi: bool, upsert: bool) -> ValidAction {
        ValidAction::Update {
            collection: "c".into(),
            filter,
            update: doc! {"$set": {"a": 1}},
            upsert,
            multi,
        }
    }

    fn delete(filter: Document, multi: bool) -> ValidAction {
        ValidAction::Delete {
            collection: "c".into(),
            filter,
            multi,
        }
    }

    #[track_caller]
    fn check(actions: Vec<ValidAction>, expect: (u64, u64, u64), unbounded: usize) {
        let (touched, rest) = Touched::bound(&actions);
        assert_eq!((touched.updated, touched.inserted, touched.deleted), expect);
        assert_eq!(rest.len(), unbounded);
    }

    #[test]
    fn bounds_of_what_actions_touch() {
        check(vec![update(doc! {"_id": 1}, false, false)], (1, 0, 0), 0);
        check(vec![update(doc! {"name": "x"}, false, true)], (1, 1, 0), 0);
        check(
            vec![update(doc! {"_id": {"$in": [1, 2, 3]}}, true, false)],
            (3, 0, 0),
            0,
        );
        check(
            vec![update(doc! {"_id": {"$eq": 4}, "a": 1}, true, false)],
            (1, 0, 0),
            0,
        );
        check(vec![update(doc! {"status": "open"}, true, false)], (0, 0, 0), 1);
        check(vec![delete(doc! {"_id": {"$exists": true}}, true)], (0, 0, 0), 1);
        check(vec![delete(doc! {"_id": {"$in": [{"$gt": 1}]}}, true)], (0, 0, 0), 1);
        check(vec![delete(doc! {"_id": {"$gt": 1}}, false)], (0, 0, 1), 0);
        let pattern = bson::Regex {
            pattern: "^a".to_string().try_into().unwrap(),
            options: String::new().try_into().unwrap(),
        };
        check(vec![delete(doc! {"_id": pattern}, true)], (0, 0, 0), 1);
        check(
            vec![
                ValidAction::Insert {
                    collection: "c".into(),
                    document: doc! {},
                },
                delete(doc! {"_id": {"$in": [1, 2]}}, true),
            ],
            (0, 1, 2),
            0,
        );
    }
}
