//! QDash v1.8.16 `backfill-forum-thread-numbers` (`migrate_backfill_forum_thread_numbers`
//! in upstream's `src/qdash/dbmodel/migration.py`, `oqtopus-team/qdash`):
//! every root thread of `forum_post` gets a project-scoped number, every
//! reply its root's number, and `forum_counter` at least the highest number.
//! The rules are upstream's, the code is ours:
//!
//! - **Projects** are the non-empty string `project_id`s of root posts (a
//!   root has `parent_id` absent or `null`). Replies of projects without a
//!   root are not looked at.
//! - **Roots** of a project are ordered by `system_info.created_at`, then
//!   `_id` (MongoDB's sort order across types: absent and `null` first, then
//!   numbers, strings, ..., dates). A root keeps an existing number (an
//!   integer above 0); the others get the lowest numbers no root of the
//!   project holds yet, in that order. Deleted roots count too, so no number
//!   is ever reused.
//! - **Duplicates**: two roots of a project holding the same number stop the
//!   run before anything is written. Upstream's dry run lists them and its
//!   execute raises `MigrationError`; godwit never tells a plugin whether it
//!   runs dry, so here the dry run stops too, with the same map
//!   (`{"project": {"number": [root ids]}}`) in the error.
//! - **Replies** (`parent_id` not `null`) whose `parent_id` is the string form
//!   of a root's `_id` in the same project get that root's number unless they
//!   hold it already (numerically equal, as MongoDB's `$ne` compares). Other
//!   replies that are not deleted (`is_deleted: false`) are **orphans**:
//!   counted, never changed.
//! - **Counter**: `forum_counter.value` of the project is raised to the
//!   highest root number (a `$max` upsert keyed by `project_id`), never lowered.
//!
//! **Figures.** The `summary` report has upstream's keys: `projects_found`,
//! `root_threads_missing_number`, `root_threads_updated`, `replies_updated`,
//! `orphan_replies_found`, `counters_updated`, `duplicate_root_numbers` and
//! `projects` (per project: `root_threads`, `root_threads_missing_number`,
//! `replies_to_update`, `orphan_replies`, `duplicate_root_numbers`,
//! `max_number`, `counter_value`, `action`). As in every godwit plugin the
//! `*_updated` figures count the writes the plugin asks for, in a dry run too
//! (upstream's dry run reports `root_threads_updated: 0`), and
//! `counters_updated` counts only counters that need raising (upstream counts
//! every project's `$max`, also one that changes nothing), so that a second
//! dry run after the execute asks for no write at all.
//!
//! One difference in what is a number: upstream's `isinstance(n, int)` is also
//! true for a BSON boolean (Python's `True` is the integer 1); here only BSON
//! integers are numbers, a boolean is replaced like any other non-number.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

pub const FORUM_POST: &str = "forum_post";
pub const FORUM_COUNTER: &str = "forum_counter";

const ROOTS: usize = 0;
const NUMBER_ROOTS: usize = 1;
const REPLIES: usize = 2;

/// A string as a JSON string literal, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub use godwit_sdk::json_string as json_str;

/// Python's `str(_id)` for the `_id` types QDash documents have: an
/// ObjectId's hex, a string as it is, an integer in decimal.
pub fn id_string(id: &Bson) -> Option<String> {
    match id {
        Bson::ObjectId(oid) => Some(oid.to_hex()),
        Bson::String(s) => Some(s.clone()),
        Bson::Int32(n) => Some(n.to_string()),
        Bson::Int64(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An existing root number: an integer above 0.
fn valid_number(value: Option<&Bson>) -> Option<i64> {
    match value {
        Some(Bson::Int32(n)) if *n > 0 => Some(i64::from(*n)),
        Some(Bson::Int64(n)) if *n > 0 => Some(*n),
        _ => None,
    }
}

/// `value` equals `number` as MongoDB compares numbers.
fn numerically_equal(value: Option<&Bson>, number: i64) -> bool {
    match value {
        Some(Bson::Int32(n)) => i64::from(*n) == number,
        Some(Bson::Int64(n)) => *n == number,
        Some(Bson::Double(d)) => *d == number as f64,
        _ => false,
    }
}

/// A number as QDash's Python code stores it: int32 when it fits.
fn bson_int(n: i64) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(n), Bson::Int32)
}

/// MongoDB's order of BSON types in a sort (absent sorts as `null`).
fn type_rank(value: &Bson) -> u8 {
    match value {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::MaxKey => 13,
        _ => 12,
    }
}

/// MongoDB's sort order for the values a `created_at` or `_id` holds:
/// by type, then by value (strings by bytes, as the default collation).
fn sort_cmp(a: &Bson, b: &Bson) -> Ordering {
    let by_type = type_rank(a).cmp(&type_rank(b));
    if by_type != Ordering::Equal {
        return by_type;
    }
    let number = |v: &Bson| match v {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(d) => Some(*d),
        _ => None,
    };
    match (a, b) {
        (Bson::String(x), Bson::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => (x.time, x.increment).cmp(&(y.time, y.increment)),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        },
    }
}

#[derive(Debug, Clone)]
struct Root {
    id: Bson,
    /// `str(_id)`, what replies hold in `parent_id`.
    key: Option<String>,
    number: Option<i64>,
    created_at: Bson,
}

#[derive(Debug, Default)]
struct Project {
    roots: Vec<Root>,
    /// `str(_id)` of every root -> its number (existing or assigned).
    number_by_root: HashMap<String, i64>,
    missing: u64,
    replies_to_update: u64,
    orphans: u64,
    max_number: i64,
    counter_value: i64,
    /// The counter needs the `$max` upsert.
    counter_write: bool,
}

/// The plan made once every root has been read: numbers for the roots that
/// lack one, by root `_id`.
struct Plan {
    assignments: HashMap<Vec<u8>, i64>,
}

pub struct BackfillForumThreadNumbers {
    projects: BTreeMap<String, Project>,
    plan: Option<Plan>,
    tally: Tally,
}

/// Root numbers with the `str(_id)`s of the roots holding each, in first-seen order.
type NumberHolders = Vec<(i64, Vec<String>)>;

/// A stable map key for an `_id` of any type.
fn id_key(id: &Bson) -> Vec<u8> {
    doc! {"_id": id.clone()}.to_vec().expect("an _id encodes as BSON")
}

impl Migration for BackfillForumThreadNumbers {
    fn manifest() -> Manifest {
        let roots = doc! {"parent_id": Bson::Null};
        Manifest::new("qdash-backfill-forum-thread-numbers", "1.8.16")
            .requires(">=1.8.16-metric-notes-to-target-notes, <1.8.16")
            .description(
                "QDash v1.8.16 backfill-forum-thread-numbers: project-scoped numbers for forum root threads \
                 (existing ones kept, duplicates refused), replies get their root's number, forum_counter raised \
                 to the highest",
            )
            .pass(
                Pass::new("read-roots", FORUM_POST)
                    .filter(roots.clone())
                    .projection(doc! {"project_id": 1, "number": 1, "system_info.created_at": 1}),
            )
            .pass(
                Pass::new("number-roots", FORUM_POST)
                    .filter(roots)
                    .projection(doc! {"project_id": 1})
                    .writes([FORUM_POST, FORUM_COUNTER]),
            )
            .pass(
                Pass::new("number-replies", FORUM_POST)
                    .filter(doc! {"parent_id": {"$ne": Bson::Null}})
                    .projection(doc! {"project_id": 1, "parent_id": 1, "number": 1, "is_deleted": 1})
                    .writes([FORUM_POST]),
            )
            // The projects' counters, looked up before they are raised.
            .reads([FORUM_COUNTER])
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for key in [
            "projects_found",
            "root_threads_missing_number",
            "root_threads_updated",
            "replies_updated",
            "orphan_replies_found",
            "counters_updated",
        ] {
            tally.touch(key);
        }
        Ok(BackfillForumThreadNumbers {
            projects: BTreeMap::new(),
            plan: None,
            tally,
        })
    }

    fn process(&mut self, cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        if pass == ROOTS {
            for root in batch {
                self.read_root(root);
            }
            return Ok(actions);
        }
        self.plan(cx)?;
        for post in batch {
            let id = post
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a post came without _id"))?;
            if pass == NUMBER_ROOTS {
                let assigned = self
                    .plan
                    .as_ref()
                    .and_then(|p| p.assignments.get(&id_key(&id)).copied());
                if let Some(number) = assigned {
                    self.tally.incr("root_threads_updated");
                    actions.push(Action::set(FORUM_POST, id, doc! {"number": bson_int(number)}));
                }
            } else if pass == REPLIES {
                self.reply(&post, id, &mut actions);
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, cx: &mut Context) -> Result<Vec<Action>, Error> {
        self.plan(cx)?;
        let mut actions = Vec::new();
        for (project_id, project) in &self.projects {
            if project.counter_write {
                self.tally.incr("counters_updated");
                actions.push(Action::upsert(
                    FORUM_COUNTER,
                    doc! {"project_id": project_id},
                    doc! {"$max": {"value": bson_int(project.counter_value)}},
                ));
            }
        }
        actions.push(Action::report(
            "summary",
            "backfill-forum-thread-numbers",
            self.statistics(),
        ));
        Ok(actions)
    }
}

impl BackfillForumThreadNumbers {
    fn read_root(&mut self, root: Document) {
        let Some(Bson::String(project_id)) = root.get("project_id") else {
            return;
        };
        if project_id.is_empty() {
            return;
        }
        let id = root.get("_id").cloned().unwrap_or(Bson::Null);
        let created_at = root
            .get_document("system_info")
            .ok()
            .and_then(|s| s.get("created_at"))
            .cloned()
            .unwrap_or(Bson::Null);
        self.projects.entry(project_id.clone()).or_default().roots.push(Root {
            key: id_string(&id),
            number: valid_number(root.get("number")),
            id,
            created_at,
        });
    }

    /// Once, after the roots pass: orders each project's roots, refuses
    /// duplicate numbers, assigns the missing ones and reads the counters.
    fn plan(&mut self, cx: &mut Context) -> Result<(), Error> {
        if self.plan.is_some() {
            return Ok(());
        }
        let mut duplicates: Vec<(String, NumberHolders)> = Vec::new();
        let mut assignments = HashMap::new();
        for (project_id, project) in &mut self.projects {
            project
                .roots
                .sort_by(|a, b| sort_cmp(&a.created_at, &b.created_at).then_with(|| sort_cmp(&a.id, &b.id)));
            // Existing numbers in first-seen order (Python's dict order).
            let mut existing: NumberHolders = Vec::new();
            for root in &project.roots {
                if let Some(n) = root.number {
                    let holder = root.key.clone().unwrap_or_default();
                    match existing.iter_mut().find(|(m, _)| *m == n) {
                        Some((_, ids)) => ids.push(holder),
                        None => existing.push((n, vec![holder])),
                    }
                }
            }
            let dup: NumberHolders = existing.iter().filter(|(_, ids)| ids.len() > 1).cloned().collect();
            if !dup.is_empty() {
                duplicates.push((project_id.clone(), dup));
                continue;
            }
            let mut used: BTreeSet<i64> = existing.iter().map(|(n, _)| *n).collect();
            let mut next = 1;
            for root in &project.roots {
                let number = match root.number {
                    Some(n) => n,
                    None => {
                        while used.contains(&next) {
                            next += 1;
                        }
                        let n = next;
                        used.insert(n);
                        next += 1;
                        assignments.insert(id_key(&root.id), n);
                        project.missing += 1;
                        n
                    }
                };
                if let Some(key) = &root.key {
                    project.number_by_root.insert(key.clone(), number);
                }
            }
            project.max_number = used.last().copied().unwrap_or(0);
        }
        if !duplicates.is_empty() {
            let mut map = String::from("{");
            for (i, (project_id, dup)) in duplicates.iter().enumerate() {
                if i > 0 {
                    map.push_str(", ");
                }
                write!(map, "{}: {{", json_str(project_id)).expect("string write");
                for (j, (n, ids)) in dup.iter().enumerate() {
                    if j > 0 {
                        map.push_str(", ");
                    }
                    let ids: Vec<String> = ids.iter().map(|s| json_str(s)).collect();
                    write!(map, "\"{n}\": [{}]", ids.join(", ")).expect("string write");
                }
                map.push('}');
            }
            map.push('}');
            return Err(Error::new(format!(
                "duplicate forum root thread numbers already exist (duplicate_root_numbers: {map}); nothing was \
                 written - give each of these roots a number of its own, then run again"
            )));
        }
        let projects: Vec<&str> = self.projects.keys().map(String::as_str).collect();
        let counters = if projects.is_empty() {
            Vec::new()
        } else {
            cx.find_all(
                FORUM_COUNTER,
                doc! {"project_id": {"$in": projects}},
                Some(doc! {"project_id": 1, "value": 1}),
                0,
            )?
        };
        for (project_id, project) in &mut self.projects {
            let counter = counters
                .iter()
                .find(|c| c.get_str("project_id").ok() == Some(project_id.as_str()));
            // Upstream's `int(value or 0)`; a value of another type is kept
            // (a `$max` of a number would not change it anyway).
            let (current, raisable) = match counter.map(|c| c.get("value")) {
                None => (0, true),
                Some(None | Some(Bson::Null)) => (0, true),
                Some(Some(Bson::Int32(n))) => (i64::from(*n), true),
                Some(Some(Bson::Int64(n))) => (*n, true),
                Some(Some(Bson::Double(d))) => (d.trunc() as i64, true),
                Some(Some(_)) => (0, false),
            };
            project.counter_value = project.max_number.max(current);
            project.counter_write = raisable && (counter.is_none() || current < project.counter_value);
            if !raisable {
                cx.warn(format!(
                    "forum_counter of project {}: value is not a number, left as it is",
                    json_str(project_id)
                ));
            }
        }
        self.tally.add("projects_found", self.projects.len() as u64);
        let missing: u64 = self.projects.values().map(|p| p.missing).sum();
        self.tally.add("root_threads_missing_number", missing);
        self.plan = Some(Plan { assignments });
        Ok(())
    }

    fn reply(&mut self, post: &Document, id: Bson, actions: &mut Vec<Action>) {
        let Some(Bson::String(project_id)) = post.get("project_id") else {
            return;
        };
        let Some(project) = self.projects.get_mut(project_id) else {
            return;
        };
        let root_number = match post.get("parent_id") {
            Some(Bson::String(parent)) => project.number_by_root.get(parent).copied(),
            _ => None,
        };
        match root_number {
            Some(number) => {
                if !numerically_equal(post.get("number"), number) {
                    project.replies_to_update += 1;
                    self.tally.incr("replies_updated");
                    actions.push(Action::set(FORUM_POST, id, doc! {"number": bson_int(number)}));
                }
            }
            None => {
                if post.get("is_deleted") == Some(&Bson::Boolean(false)) {
                    project.orphans += 1;
                    self.tally.incr("orphan_replies_found");
                }
            }
        }
    }

    /// Upstream's statistics as JSON: the counters, then the nested parts.
    fn statistics(&self) -> String {
        let counters = self.tally.to_json();
        let mut out = counters[..counters.len() - 1].to_string();
        out.push_str(", \"duplicate_root_numbers\": {}, \"projects\": [");
        for (i, (project_id, p)) in self.projects.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write!(
                out,
                "{{\"project_id\": {}, \"root_threads\": {}, \"root_threads_missing_number\": {}, \
                 \"replies_to_update\": {}, \"orphan_replies\": {}, \"duplicate_root_numbers\": {{}}, \
                 \"max_number\": {}, \"counter_value\": {}, \"action\": \"updated\"}}",
                json_str(project_id),
                p.roots.len(),
                p.missing,
                p.replies_to_update,
                p.orphans,
                p.max_number,
                p.counter_value
            )
            .expect("string write");
        }
        out.push_str("]}");
        out
    }
}

godwit_sdk::export!(BackfillForumThreadNumbers);

#[cfg(test)]
mod tests;
