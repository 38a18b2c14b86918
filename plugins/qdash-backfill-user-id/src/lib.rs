//! Seed 000, QDash v1.8.0 `backfill-user-id`: every user without `user_id`
//! gets an immutable `usr_<hex>` id, then every denormalized `*_user_id`
//! reference across the project, collaboration, workflow and calibration
//! collections is filled from the username -> user_id map. Usernames stay
//! (they remain login names and display snapshots).
//!
//! The runbook's statistics come out as the run's reports: `summary` (one
//! JSON object: `users_without_user_id`, `collections.<name>.matched`,
//! `unresolved`), one `unresolved` report per reference whose username maps
//! to no user (deleted users, system authors, case mismatches - reported,
//! never invented), and one `unresolved_username` per distinct such name.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Where a username sits in a document of a collection and where its user
/// id goes. Paths may be dotted (nested documents).
#[derive(Debug, Clone, Copy)]
pub enum Ref {
    /// `from` holds one username; `to` gets its user id.
    Field { from: &'static str, to: &'static str },
    /// `from` is an array of usernames; `to` gets the parallel array of user
    /// ids, `null` where a username maps to no user.
    Names { from: &'static str, to: &'static str },
    /// `array` holds documents each with a username in `name`; each document
    /// gets its user id in `to`.
    Docs {
        array: &'static str,
        name: &'static str,
        to: &'static str,
    },
}

/// The collections QDash v1.8.0 denormalizes user references into, with
/// where each reference lives.
pub const COLLECTIONS: &[(&str, &[Ref])] = &[
    (
        "projects",
        &[Ref::Field {
            from: "owner_username",
            to: "owner_user_id",
        }],
    ),
    (
        "project_memberships",
        &[
            Ref::Field {
                from: "username",
                to: "user_id",
            },
            Ref::Field {
                from: "invited_by",
                to: "invited_by_user_id",
            },
        ],
    ),
    (
        "forum_posts",
        &[
            Ref::Field {
                from: "username",
                to: "user_id",
            },
            Ref::Docs {
                array: "replies",
                name: "username",
                to: "user_id",
            },
        ],
    ),
    (
        "issues",
        &[
            Ref::Field {
                from: "username",
                to: "user_id",
            },
            Ref::Names {
                from: "assignees",
                to: "assignee_user_ids",
            },
        ],
    ),
    (
        "notifications",
        &[Ref::Field {
            from: "recipient",
            to: "recipient_user_id",
        }],
    ),
    (
        "task_results",
        &[
            Ref::Field {
                from: "username",
                to: "user_id",
            },
            Ref::Field {
                from: "excluded_by",
                to: "excluded_by_user_id",
            },
        ],
    ),
    (
        "calibration_notes",
        &[
            Ref::Field {
                from: "username",
                to: "user_id",
            },
            Ref::Field {
                from: "review.reviewer",
                to: "review.reviewer_user_id",
            },
        ],
    ),
];

const USERS_PASS: usize = 0;

/// `usr_` and 32 hex digits of sha256 over the user's `_id`. Deterministic, so
/// a rerun after a crash (or a dry run previewing execute) gives the same id;
/// derived from `_id`, not the username, because the username may change
/// later while the id must not.
pub fn user_id_for(id: &Bson) -> String {
    let key = match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    };
    let digest = Sha256::digest(format!("qdash-user:{key}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("usr_{hex}")
}

pub struct BackfillUserId {
    /// username -> user_id (existing, or the one the users pass assigns).
    ids: HashMap<String, String>,
    /// Usernames held by more than one user: resolving them would guess.
    ambiguous: HashMap<String, usize>,
    tally: Tally,
    /// Unresolved username -> "collection.field" places it was referenced.
    unresolved: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Migration for BackfillUserId {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("qdash-backfill-user-id", "1.8.0")
            .requires(">=1.7.3")
            .description(
                "QDash v1.8.0: give users an immutable usr_<hex> user_id and fill every *_user_id reference \
                 from the username map; usernames are kept",
            )
            .pass(
                Pass::new("users", "users")
                    .projection(doc! {"username": 1, "user_id": 1})
                    .writes(["users"]),
            );
        for (collection, refs) in COLLECTIONS {
            let mut projection = Document::new();
            for r in *refs {
                let (a, b) = match r {
                    Ref::Field { from, to } | Ref::Names { from, to } => (*from, *to),
                    Ref::Docs { array, .. } => (*array, *array),
                };
                for path in [a, b] {
                    projection.insert(path.split('.').next().expect("non-empty path"), 1);
                }
            }
            manifest = manifest.pass(
                Pass::new(*collection, *collection)
                    .projection(projection)
                    .writes([*collection]),
            );
        }
        manifest
    }

    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        // Every user, paged: the map must be complete, or references to users
        // past a single lookup's cap would be reported unresolved wrongly.
        let users = cx.find_all("users", doc! {}, Some(doc! {"username": 1, "user_id": 1}), 5_000)?;
        let mut ids = HashMap::new();
        let mut holders: HashMap<String, usize> = HashMap::new();
        for user in &users {
            let Ok(username) = user.get_str("username") else {
                continue;
            };
            let id = match user.get_str("user_id") {
                Ok(existing) => existing.to_string(),
                Err(_) => user_id_for(user.get("_id").expect("find_all checks _id")),
            };
            *holders.entry(username.to_string()).or_default() += 1;
            ids.insert(username.to_string(), id);
        }
        let ambiguous: HashMap<String, usize> = holders.into_iter().filter(|(_, n)| *n > 1).collect();
        for name in ambiguous.keys() {
            ids.remove(name);
        }
        cx.info(format!(
            "{} users, {} distinct usernames mapped",
            users.len(),
            ids.len()
        ));
        let mut tally = Tally::new();
        tally.touch("users_without_user_id");
        for (collection, _) in COLLECTIONS {
            tally.touch(&format!("collections.{collection}.matched"));
        }
        tally.touch("unresolved");
        Ok(BackfillUserId {
            ids,
            ambiguous,
            tally,
            unresolved: BTreeMap::new(),
        })
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for document in batch {
            let id = document
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("document without _id"))?;
            if pass == USERS_PASS {
                if matches!(document.get("user_id"), None | Some(Bson::Null)) {
                    self.tally.incr("users_without_user_id");
                    actions.push(Action::set("users", id.clone(), doc! {"user_id": user_id_for(&id)}));
                }
                continue;
            }
            let (collection, refs) = COLLECTIONS[pass - 1];
            let mut set = Document::new();
            for r in refs {
                self.fill(collection, &document, &id, r, &mut set, &mut actions);
            }
            if !set.is_empty() {
                self.tally.incr(&format!("collections.{collection}.matched"));
                actions.push(Action::set(collection, id, set));
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let mut actions = vec![self.tally.report("summary", "backfill-user-id")];
        for (username, places) in &self.unresolved {
            let places: Vec<String> = places.iter().map(|(p, n)| format!("{p} x{n}")).collect();
            actions.push(Action::report(
                "unresolved_username",
                username.clone(),
                format!("no user named {username:?}; referenced in {}", places.join(", ")),
            ));
        }
        Ok(actions)
    }
}

/// Value at a dotted path through nested documents.
fn get_path<'a>(document: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut value = document.get(parts.next()?)?;
    for part in parts {
        value = value.as_document()?.get(part)?;
    }
    Some(value)
}

fn is_missing(value: Option<&Bson>) -> bool {
    matches!(value, None | Some(Bson::Null))
}

impl BackfillUserId {
    /// The user id of `username`, or `None` after reporting why there is none.
    fn resolve(&mut self, username: &str, place: &str, id: &Bson, actions: &mut Vec<Action>) -> Option<String> {
        if let Some(user_id) = self.ids.get(username) {
            return Some(user_id.clone());
        }
        let why = match self.ambiguous.get(username) {
            Some(n) => format!("{n} users are named {username:?}"),
            None => format!("no user named {username:?}"),
        };
        self.tally.incr("unresolved");
        *self
            .unresolved
            .entry(username.to_string())
            .or_default()
            .entry(place.to_string())
            .or_default() += 1;
        actions.push(Action::report(
            "unresolved",
            username,
            format!("{place} of _id {id}: {why}"),
        ));
        None
    }

    /// Adds to `set` what reference `r` of `document` still lacks.
    fn fill(
        &mut self,
        collection: &str,
        document: &Document,
        id: &Bson,
        r: &Ref,
        set: &mut Document,
        actions: &mut Vec<Action>,
    ) {
        match *r {
            Ref::Field { from, to } => {
                // Filled fields are left alone: the runbook's idempotency rule.
                if let (Some(Bson::String(username)), true) =
                    (get_path(document, from), is_missing(get_path(document, to)))
                    && let Some(user_id) = self.resolve(username, &format!("{collection}.{from}"), id, actions)
                {
                    set.insert(to, user_id);
                }
            }
            Ref::Names { from, to } => {
                let Some(Bson::Array(names)) = get_path(document, from) else {
                    return;
                };
                let existing = get_path(document, to).and_then(Bson::as_array);
                let mut wanted = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    let have = existing.and_then(|e| e.get(i)).filter(|v| !is_missing(Some(v)));
                    wanted.push(match (have, name) {
                        (Some(v), _) => v.clone(),
                        (None, Bson::String(username)) => self
                            .resolve(username, &format!("{collection}.{from}[{i}]"), id, actions)
                            .map_or(Bson::Null, Bson::String),
                        (None, _) => Bson::Null,
                    });
                }
                let changed = existing.is_none_or(|e| *e != wanted);
                if changed && wanted.iter().any(|v| !is_missing(Some(v))) {
                    set.insert(to, wanted);
                }
            }
            Ref::Docs { array, name, to } => {
                let Some(Bson::Array(items)) = get_path(document, array) else {
                    return;
                };
                let mut items = items.clone();
                let mut changed = false;
                for (i, item) in items.iter_mut().enumerate() {
                    let Bson::Document(item) = item else { continue };
                    if let (Ok(username), true) = (item.get_str(name), is_missing(item.get(to))) {
                        let username = username.to_string();
                        if let Some(user_id) =
                            self.resolve(&username, &format!("{collection}.{array}[{i}].{name}"), id, actions)
                        {
                            item.insert(to, user_id);
                            changed = true;
                        }
                    }
                }
                if changed {
                    set.insert(array, items);
                }
            }
        }
    }
}

godwit_sdk::export!(BackfillUserId);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    fn pass_of(collection: &str) -> usize {
        1 + COLLECTIONS.iter().position(|(c, _)| *c == collection).unwrap()
    }

    fn harness() -> Harness<BackfillUserId> {
        Harness::new().collection(
            "users",
            vec![
                doc! {"_id": 1, "username": "alice"},
                doc! {"_id": 2, "username": "bob", "user_id": "usr_bob"},
                doc! {"_id": 3, "username": "twin"},
                doc! {"_id": 4, "username": "twin"},
            ],
        )
    }

    fn reports(actions: &[Action], kind: &str) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Report(r) if r.kind == kind => Some(r.key.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ids_are_deterministic_per_user_and_distinct() {
        let a = user_id_for(&Bson::Int32(1));
        assert_eq!(a, user_id_for(&Bson::Int32(1)));
        assert_ne!(a, user_id_for(&Bson::Int32(2)));
        assert!(a.starts_with("usr_") && a.len() == 4 + 32, "{a}");
    }

    #[test]
    fn users_without_user_id_get_one_and_filled_ones_are_kept() {
        let mut h = harness();
        let actions = h
            .process(
                0,
                vec![
                    doc! {"_id": 1, "username": "alice"},
                    doc! {"_id": 2, "username": "bob", "user_id": "usr_bob"},
                ],
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::set("users", 1, doc! {"user_id": user_id_for(&Bson::Int32(1))})]
        );
    }

    #[test]
    fn fields_arrays_and_nested_documents_are_filled_from_the_map() {
        let mut h = harness();
        let alice = user_id_for(&Bson::Int32(1));
        let post = doc! {"_id": 10, "username": "bob", "replies": [{"username": "alice"}, {"username": "bob", "user_id": "usr_bob"}]};
        let actions = h.process(pass_of("forum_posts"), vec![post]).unwrap();
        assert_eq!(
            actions,
            vec![Action::set(
                "forum_posts",
                10,
                doc! {"user_id": "usr_bob", "replies": [{"username": "alice", "user_id": alice.clone()}, {"username": "bob", "user_id": "usr_bob"}]}
            )]
        );
        let note = doc! {"_id": 11, "username": "alice", "review": {"reviewer": "bob"}};
        let actions = h.process(pass_of("calibration_notes"), vec![note]).unwrap();
        assert_eq!(
            actions,
            vec![Action::set(
                "calibration_notes",
                11,
                doc! {"user_id": alice, "review.reviewer_user_id": "usr_bob"}
            )]
        );
    }

    #[test]
    fn unresolved_names_are_reported_not_invented() {
        let mut h = harness();
        // A deleted user, a system author, a case mismatch, an ambiguous name.
        let issue = doc! {"_id": 20, "username": "Alice", "assignees": ["bob", "ghost", "twin"]};
        let actions = h.process(pass_of("issues"), vec![issue]).unwrap();
        assert_eq!(reports(&actions, "unresolved"), ["Alice", "ghost", "twin"]);
        assert_eq!(
            actions.last().unwrap(),
            &Action::set(
                "issues",
                20,
                doc! {"assignee_user_ids": ["usr_bob", Bson::Null, Bson::Null]}
            )
        );
        let system = doc! {"_id": 21, "recipient": "system"};
        let actions = h.process(pass_of("notifications"), vec![system]).unwrap();
        assert_eq!(reports(&actions, "unresolved"), ["system"]);
        assert_eq!(actions.len(), 1, "no write for an unresolved field: {actions:?}");
        let finish = h.finish().unwrap();
        assert_eq!(
            reports(&finish, "unresolved_username"),
            ["Alice", "ghost", "system", "twin"]
        );
        assert_eq!(reports(&finish, "summary"), ["backfill-user-id"]);
    }

    #[test]
    fn a_filled_document_needs_nothing_but_still_reports_its_unresolved_rows() {
        let mut h = harness();
        let done = doc! {"_id": 30, "username": "bob", "user_id": "usr_bob", "assignees": ["ghost", "bob"], "assignee_user_ids": [Bson::Null, "usr_bob"]};
        let actions = h.process(pass_of("issues"), vec![done]).unwrap();
        assert_eq!(reports(&actions, "unresolved"), ["ghost"]);
        assert_eq!(actions.len(), 1, "{actions:?}");
    }

    #[test]
    fn summary_counts_what_the_runbook_shows() {
        let mut h = harness();
        h.process(0, vec![doc! {"_id": 1, "username": "alice"}]).unwrap();
        h.process(
            pass_of("projects"),
            vec![
                doc! {"_id": 1, "owner_username": "alice"},
                doc! {"_id": 2, "owner_username": "nobody"},
            ],
        )
        .unwrap();
        let finish = h.finish().unwrap();
        let Action::Report(summary) = &finish[0] else { panic!() };
        assert!(
            summary
                .message
                .starts_with(r#"{"users_without_user_id": 1, "collections.projects.matched": 1, "#),
            "{}",
            summary.message
        );
        assert!(summary.message.ends_with(r#""unresolved": 1}"#), "{}", summary.message);
    }
}
