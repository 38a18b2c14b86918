//! Seed 000, QDash v1.8.0 `backfill-user-id`: users get `usr_<hex>` ids and
//! every `*_user_id` reference is filled from the username map, across seven
//! collections, with the runbook's dry run -> execute -> dry run again flow.

use super::{figures, init, kill_midway, marker_pass, oid, pass, report_count, run_steps, total};
use crate::db::{TestDb, server};
use crate::support::{plugin, verify_journal};
use bson::{Bson, Document, doc};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

const USERS: u32 = 300;
/// Users that already have an id (created by v1.8.0 code before the migration).
const WITH_ID: u32 = 40;

/// Written down independently of the plugin: `usr_` + 32 hex digits of
/// sha256("qdash-user:" + the user's ObjectId in hex).
fn expected_id(user: u32) -> String {
    let digest = Sha256::digest(format!("qdash-user:{}", oid(user).to_hex()).as_bytes());
    format!("usr_{}", hex::encode(&digest[..16]))
}

/// Usernames referenced by the data that no user has: deleted users, system
/// authors, a case mismatch (`User7` for `user7`).
const UNKNOWN: &[&str] = &["former_ana", "former_ben", "system", "github-actions", "User7"];

/// The username referenced by the `k`th reference of a generated document:
/// mostly real users, one in 23 an unknown name.
fn name(k: u32) -> String {
    if k % 23 == 5 {
        UNKNOWN[(k / 23) as usize % UNKNOWN.len()].to_string()
    } else {
        format!("user{}", (k * 7919) % USERS)
    }
}

/// The reference model: the id `username` resolves to, if any.
fn resolve(ids: &HashMap<String, String>, username: &str) -> Option<String> {
    ids.get(username).cloned()
}

fn generate(db: &TestDb) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    let users: Vec<Document> = (0..USERS)
        .map(|i| {
            let username = format!("user{i}");
            let mut user = doc! {"_id": oid(i), "username": &username, "display_name": format!("User {i}")};
            if i < WITH_ID {
                user.insert("user_id", format!("usr_existing{i:04}"));
                ids.insert(username, format!("usr_existing{i:04}"));
            } else {
                ids.insert(username, expected_id(i));
            }
            user
        })
        .collect();
    db.insert("users", users);
    let mut k = 0;
    let mut next = || {
        k += 1;
        name(k)
    };
    let mut n = 1_000_000;
    let mut id = || {
        n += 1;
        oid(n)
    };
    db.insert(
        "projects",
        (0..200)
            .map(|i| doc! {"_id": id(), "name": format!("chip-{i}"), "owner_username": next()})
            .collect(),
    );
    db.insert(
        "project_memberships",
        (0..600)
            .map(|i| {
                let username = next();
                let mut m =
                    doc! {"_id": id(), "project": format!("chip-{}", i % 200), "username": &username, "role": "viewer"};
                if i % 3 == 0 {
                    m.insert("invited_by", next());
                }
                // Rows already written by v1.8.0 code: left as they are.
                if i % 10 == 0
                    && let Some(uid) = resolve(&ids, &username)
                {
                    m.insert("user_id", uid);
                }
                m
            })
            .collect(),
    );
    db.insert(
        "forum_posts",
        (0..300)
            .map(|i| {
                let replies: Vec<Document> = (0..i % 4).map(|_| doc! {"username": next(), "body": "+1"}).collect();
                doc! {"_id": id(), "username": next(), "title": format!("post {i}"), "replies": replies}
            })
            .collect(),
    );
    db.insert(
        "issues",
        (0..300)
            .map(|i| {
                let assignees: Vec<String> = (0..i % 3).map(|_| next()).collect();
                doc! {"_id": id(), "username": next(), "assignees": assignees}
            })
            .collect(),
    );
    db.insert(
        "notifications",
        (0..600)
            .map(|_| doc! {"_id": id(), "recipient": next(), "read": false})
            .collect(),
    );
    db.insert(
        "task_results",
        (0..600)
            .map(|i| {
                let mut t = doc! {"_id": id(), "username": next(), "qid": format!("Q{:02}", i % 64)};
                if i % 8 == 0 {
                    t.insert("excluded_by", next());
                }
                t
            })
            .collect(),
    );
    db.insert(
        "calibration_notes",
        (0..200)
            .map(|i| {
                let mut note = doc! {"_id": id(), "username": next(), "note": "t1 drift"};
                if i % 2 == 0 {
                    note.insert("review", doc! {"reviewer": next(), "ok": true});
                }
                note
            })
            .collect(),
    );
    ids
}

/// (collection, references): `("f", "t")` a field, `("[]f", "t")` an array of
/// usernames, `("f[].n", "t")` documents in array `f` with username `n`.
const REFS: &[(&str, &[(&str, &str)])] = &[
    ("projects", &[("owner_username", "owner_user_id")]),
    (
        "project_memberships",
        &[("username", "user_id"), ("invited_by", "invited_by_user_id")],
    ),
    (
        "forum_posts",
        &[("username", "user_id"), ("replies[].username", "user_id")],
    ),
    (
        "issues",
        &[("username", "user_id"), ("[]assignees", "assignee_user_ids")],
    ),
    ("notifications", &[("recipient", "recipient_user_id")]),
    (
        "task_results",
        &[("username", "user_id"), ("excluded_by", "excluded_by_user_id")],
    ),
    (
        "calibration_notes",
        &[("username", "user_id"), ("review.reviewer", "review.reviewer_user_id")],
    ),
];

fn get<'a>(d: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut v = d.get(parts.next()?)?;
    for p in parts {
        v = v.as_document()?.get(p)?;
    }
    Some(v)
}

/// What the model expects of the data before the run: per collection the
/// documents needing a write, and the number of unresolved references.
fn expectations(db: &TestDb, ids: &HashMap<String, String>) -> (HashMap<&'static str, u64>, u64, BTreeSet<String>) {
    let mut matched = HashMap::new();
    let mut unresolved = 0;
    let mut names = BTreeSet::new();
    for (collection, refs) in REFS {
        let mut m = 0;
        for d in db.find_all(collection) {
            let mut needs = false;
            for (from, to) in *refs {
                let usernames: Vec<(String, bool)> = if let Some(array) = from.strip_prefix("[]") {
                    let have = d.get_array(to).ok();
                    d.get_array(array)
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.as_str().unwrap().to_string(), have.and_then(|h| h.get(i)).is_some()))
                        .collect()
                } else if let Some((array, field)) = from.split_once("[].") {
                    d.get_array(array)
                        .unwrap()
                        .iter()
                        .map(|r| {
                            let r = r.as_document().unwrap();
                            (r.get_str(field).unwrap().to_string(), r.contains_key(to))
                        })
                        .collect()
                } else {
                    get(&d, from)
                        .map(|n| (n.as_str().unwrap().to_string(), get(&d, to).is_some()))
                        .into_iter()
                        .collect()
                };
                for (username, filled) in usernames {
                    match (filled, resolve(ids, &username)) {
                        (true, _) => {}
                        (false, Some(_)) => needs = true,
                        (false, None) => {
                            unresolved += 1;
                            names.insert(username);
                        }
                    }
                }
            }
            m += u64::from(needs);
        }
        matched.insert(*collection, m);
    }
    (matched, unresolved, names)
}

/// Every reference carries its user's id (or none, when unresolved), every
/// pre-existing id is unchanged, usernames and other fields are kept.
fn check_final(db: &TestDb, ids: &HashMap<String, String>, before: &HashMap<&str, Vec<Document>>) {
    for (i, user) in db.find_all("users").iter().enumerate() {
        let want = if (i as u32) < WITH_ID {
            format!("usr_existing{i:04}")
        } else {
            expected_id(i as u32)
        };
        assert_eq!(user.get_str("user_id").unwrap(), want, "user {user}");
        assert_eq!(user.get_str("username").unwrap(), format!("user{i}"), "username kept");
    }
    for (collection, refs) in REFS {
        let after = db.find_all(collection);
        assert_eq!(
            after.len(),
            before[collection].len(),
            "{collection}: no document added or lost"
        );
        for (b, a) in before[collection].iter().zip(&after) {
            let mut expect = b.clone();
            for (from, to) in *refs {
                if let Some(array) = from.strip_prefix("[]") {
                    let names = b.get_array(array).unwrap();
                    let wanted: Vec<Bson> = names
                        .iter()
                        .map(|n| resolve(ids, n.as_str().unwrap()).map_or(Bson::Null, Bson::String))
                        .collect();
                    if wanted.iter().any(|w| *w != Bson::Null) {
                        expect.insert(*to, wanted);
                    }
                } else if let Some((array, field)) = from.split_once("[].") {
                    let items: Vec<Bson> = b
                        .get_array(array)
                        .unwrap()
                        .iter()
                        .map(|r| {
                            let mut r = r.as_document().unwrap().clone();
                            if let Some(uid) = resolve(ids, r.get_str(field).unwrap()) {
                                r.insert(*to, uid);
                            }
                            Bson::Document(r)
                        })
                        .collect();
                    expect.insert(array, items);
                } else if let Some(username) = get(b, from).and_then(Bson::as_str)
                    && get(b, to).is_none()
                    && let Some(uid) = resolve(ids, username)
                {
                    match to.split_once('.') {
                        Some((outer, inner)) => {
                            expect.get_document_mut(outer).unwrap().insert(inner, uid);
                        }
                        None => {
                            expect.insert(*to, uid);
                        }
                    }
                }
            }
            assert_eq!(a, &expect, "{collection} document after the migration");
        }
    }
}

#[test]
fn qdash_backfill_user_id_dry_run_execute_interrupted_then_clean() {
    scenario(RUST, "seed_qdash");
}

/// The same migration written in Python (`plugins-py/qdash-backfill-user-id-py`,
/// built with componentize-py) passes the same scenario: same figures, same
/// final documents, killed and resumed exactly once, under the default limits.
#[test]
fn qdash_backfill_user_id_in_python_dry_run_execute_interrupted_then_clean() {
    scenario("qdash-backfill-user-id-py", "seed_qdash_py");
}

/// The reference implementation, `plugins/qdash-backfill-user-id`.
const RUST: &str = "qdash-backfill-user-id";

fn scenario(component: &str, database: &str) {
    let started = std::time::Instant::now();
    let db = TestDb::new(server(), database);
    let ids = generate(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin(component);
    let file = file.to_str().unwrap();
    init(&db, journal.path(), "1.7.3");
    let (matched, unresolved, unknown_names) = expectations(&db, &ids);
    assert!(
        unresolved > 50 && matched.values().all(|m| *m > 0),
        "the data exercises every case"
    );
    let before: HashMap<&str, Vec<Document>> = REFS.iter().map(|(c, _)| (*c, db.find_all(c))).collect();
    let snapshot = db.dump();

    // Dry run: the runbook's statistics, nothing written.
    let dry = run_steps(&db, journal.path(), &["run", file]).remove(0);
    let stats = figures(&dry);
    eprintln!("qdash dry run ({component}): {stats}");
    assert_eq!(stats["users_without_user_id"], USERS - WITH_ID, "{stats}");
    for (collection, m) in &matched {
        assert_eq!(
            stats[format!("collections.{collection}.matched")],
            *m,
            "{collection}: {stats}"
        );
        assert_eq!(
            pass(&dry, collection)["updates"],
            *m,
            "{collection}: one update per matched document"
        );
    }
    assert_eq!(stats["unresolved"], unresolved, "{stats}");
    assert_eq!(report_count(&dry, "unresolved"), unresolved);
    assert_eq!(report_count(&dry, "unresolved_username"), unknown_names.len() as u64);
    for sample in dry["summary"]["finish"]["reports"]["unresolved_username"]["samples"]
        .as_array()
        .unwrap()
    {
        assert!(unknown_names.contains(sample["key"].as_str().unwrap()), "{sample}");
    }
    assert_eq!(db.dump(), snapshot, "a dry run writes nothing");
    if component != RUST {
        // Another language, the same report: every count, every sample
        // (keys and messages), pass by pass, as the Rust plugin's.
        let rust = plugin(RUST);
        let reference = run_steps(&db, journal.path(), &["run", rust.to_str().unwrap()]).remove(0);
        assert_eq!(
            dry["summary"], reference["summary"],
            "{component}'s dry run report differs from the Rust plugin's"
        );
    }

    // Execute, killed in the middle of the run (from the fourth pass,
    // forum_posts, on: a slow machine may poll past it), then resumed.
    let marker = kill_midway(
        &db,
        journal.path(),
        &[
            "run",
            file,
            "--execute",
            "--batch-size",
            "25",
            "--max-docs-per-sec",
            "600",
            "--lease",
            "3",
        ],
        |m| marker_pass(m).is_some_and(|p| p >= 3),
    );
    eprintln!("qdash execute killed at {marker}");
    let half = db.find_all("users");
    assert!(
        half.iter().all(|u| u.contains_key("user_id")),
        "the users pass was done before the kill"
    );
    assert!(
        db.find_all("calibration_notes")
            .iter()
            .all(|n| !n.contains_key("user_id")),
        "the last pass had not started"
    );
    let exec = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(exec["resumed"], true, "{exec:#}");
    assert_eq!(exec["status"], "finished");
    assert_eq!(exec["stamped_version"], "1.8.0");
    assert_eq!(
        figures(&exec),
        stats,
        "execute did what the dry run announced, exactly once"
    );
    assert_eq!(total(&exec, "updates"), total(&dry, "updates"));
    check_final(&db, &ids, &before);

    // Verify as the runbook says: dry run again, clean but for the same unresolved rows.
    let again = run_steps(&db, journal.path(), &["run", file]).remove(0);
    let clean = figures(&again);
    assert_eq!(clean["users_without_user_id"], 0, "{clean}");
    for collection in matched.keys() {
        assert_eq!(clean[format!("collections.{collection}.matched")], 0, "{clean}");
    }
    assert_eq!(
        clean["unresolved"], unresolved,
        "the same unresolved rows remain: {clean}"
    );
    assert_eq!(report_count(&again, "unresolved_username"), unknown_names.len() as u64);
    assert_eq!(total(&again, "updates"), 0);
    verify_journal(journal.path());
    eprintln!(
        "qdash scenario with {component}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
