//! Seed 000, QDash v1.8.0 `backfill-user-id`, on a generated database with
//! QDash's own collection and field names (`user` and the 22 collections of
//! upstream's `USER_ID_FIELD_MIGRATIONS`): the runbook's dry run -> execute
//! (killed midway, resumed) -> dry run again, every figure and every final
//! document checked against a reference model written here from upstream's
//! `migrate_backfill_user_id`, independently of the plugin.

use super::{init, kill_midway, marker_pass, oid, pass, report_count, run_steps, total};
use crate::db::{TestDb, server};
use crate::support::{plugin, verify_journal};
use bson::{Bson, Document, doc};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write;

/// Upstream's `USER_ID_FIELD_MIGRATIONS`, copied from QDash's migration.py
/// (facts, not code), with how many documents the test generates in each.
/// (collection, its (username field, user id field) pairs, documents generated).
type Collection = (&'static str, &'static [(&'static str, &'static str)], u32);

const COLLECTIONS: &[Collection] = &[
    ("project", &[("owner_username", "owner_user_id")], 100),
    (
        "project_membership",
        &[("username", "user_id"), ("invited_by", "invited_by_user_id")],
        200,
    ),
    (
        "notification",
        &[
            ("recipient_username", "recipient_user_id"),
            ("actor_username", "actor_user_id"),
        ],
        250,
    ),
    ("note_event", &[("actor", "actor_user_id")], 150),
    ("cooldown_wiring_event", &[("actor", "actor_user_id")], 80),
    ("forum_post", &[("username", "user_id")], 200),
    ("issue", &[("username", "user_id")], 150),
    ("issue_knowledge", &[("reviewed_by", "reviewed_by_user_id")], 80),
    ("backend", &[("username", "user_id")], 40),
    ("task", &[("username", "user_id")], 120),
    ("tag", &[("username", "user_id")], 60),
    ("flows", &[("username", "user_id")], 80),
    ("execution_history", &[("username", "user_id")], 300),
    ("execution_counter", &[("username", "user_id")], 60),
    ("chip", &[("username", "user_id")], 40),
    ("chip_history", &[("username", "user_id")], 120),
    ("qubit", &[("username", "user_id")], 200),
    ("qubit_history", &[("username", "user_id")], 250),
    ("coupling", &[("username", "user_id")], 150),
    ("coupling_history", &[("username", "user_id")], 200),
    ("calibration_note", &[("username", "user_id")], 150),
    (
        "task_result_history",
        &[("username", "user_id"), ("excluded_by", "excluded_by_user_id")],
        400,
    ),
];

const USERS: u32 = 240;

/// Documents generated per collection: the counts above times this (6: about
/// 21,000 in all; the run is throttled in proportion so that it is killed
/// midway). `GODWIT_QDASH_SCALE` sets it (`just scenario-qdash-large`: 15,
/// about 54,000 documents).
fn scale() -> u32 {
    std::env::var("GODWIT_QDASH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s| s >= 1)
        .unwrap_or(6)
}

/// Usernames the data references that resolve to nobody: deleted users,
/// system authors, case variants (`User7` for `user7`, `CAROL`), a
/// precomposed `josé` where the user is `jose` + a combining acute accent,
/// and names that need escaping.
const UNKNOWN: &[&str] = &[
    "former_ana",
    "former_ben",
    "system",
    "github-actions",
    "qdash-bot",
    "User7",
    "CAROL",
    "jos\u{e9}",
    "o\"brien\\",
    "tab\tname",
];

/// A small deterministic mixer (splitmix64) for choosing cases.
fn mix(k: u64) -> u64 {
    let mut z = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn username_of(i: u32) -> Option<String> {
    match i {
        0 => Some(String::new()),
        1 => None,
        2 => Some("Carol".into()),
        3 => Some("carol".into()),
        4 => Some("jose\u{301}".into()),
        _ => Some(format!("user{i}")),
    }
}

/// The users: ids already given by v1.8.0 code, missing ones in all three
/// spellings, a few non-string ids, a blank and an absent username.
fn users() -> Vec<Document> {
    (0..USERS)
        .map(|i| {
            let mut user = doc! {"_id": oid(i), "hashed_password": "x", "system_role": "user", "disabled": i % 50 == 9};
            if let Some(name) = username_of(i) {
                user.insert("username", name);
            }
            match (i, i % 8) {
                (0 | 1, _) => {}
                (_, 0 | 1) => {
                    user.insert("user_id", format!("usr_{:032x}", u128::from(mix(u64::from(i)))));
                }
                (_, 3) => {
                    user.insert("user_id", Bson::Null);
                }
                (_, 4) => {
                    user.insert("user_id", "");
                }
                (_, 7) if i % 16 == 7 => {
                    user.insert("user_id", Bson::Int32(i as i32));
                }
                _ => {}
            }
            user
        })
        .collect()
}

/// The username of reference `k`: mostly real users, some unknown, some
/// users whose `user_id` is not a string, the case-variant pair.
fn name(k: u64) -> String {
    let r = mix(k) % 100;
    match r {
        0..=6 => UNKNOWN[(mix(k ^ 1) % UNKNOWN.len() as u64) as usize].to_string(),
        7 => format!("user{}", 16 * (mix(k ^ 2) % 15) + 7),
        8..=9 => ["Carol", "carol", "jose\u{301}"][(mix(k ^ 3) % 3) as usize].to_string(),
        _ => format!("user{}", 5 + mix(k ^ 4) % u64::from(USERS - 5)),
    }
}

/// The username field of reference `k`: a name, or blank, null, absent, a
/// number, an array of names.
fn from_value(k: u64) -> Option<Bson> {
    match mix(k ^ 5) % 100 {
        0..=3 => Some(Bson::String(String::new())),
        4..=5 => Some(Bson::Null),
        6..=7 => None,
        8 => Some(Bson::Int32(5)),
        9..=10 => Some(Bson::Array(vec![name(k).into(), name(k + 1).into()])),
        _ => Some(Bson::String(name(k))),
    }
}

/// The id field of reference `k`: missing in its three spellings, or a value
/// the migration must keep (an id, a number, an array with existing entries).
fn to_value(k: u64) -> Option<Bson> {
    match mix(k ^ 6) % 100 {
        0..=54 => None,
        55..=64 => Some(Bson::Null),
        65..=74 => Some(Bson::String(String::new())),
        75..=84 => Some(Bson::String(format!("usr_{:032x}", mix(k ^ 7)))),
        85..=88 => Some(Bson::Int32(0)),
        _ => Some(Bson::Array(vec![format!("usr_{:032x}", mix(k ^ 8)).into(), Bson::Null])),
    }
}

fn generate(db: &TestDb) {
    db.insert("user", users());
    let mut n = 1_000_000;
    for (c, (collection, pairs, count)) in COLLECTIONS.iter().enumerate() {
        let docs = (0..*count * scale())
            .map(|i| {
                n += 1;
                let k = u64::from(n);
                let mut d = doc! {"_id": oid(n), "project_id": format!("proj-{}", i % 7)};
                for (p, (from, to)) in pairs.iter().enumerate() {
                    let k = k * 4 + p as u64;
                    if let Some(v) = from_value(k) {
                        d.insert(*from, v);
                    }
                    if let Some(v) = to_value(k) {
                        d.insert(*to, v);
                    }
                }
                // Usernames the migration does not cover stay as they are:
                // nested note authors, label arrays.
                d.insert("user_note", doc! {"content": "T1 drift", "updated_by": name(k ^ 9)});
                d.insert("labels", vec![format!("c{c}"), name(k ^ 10)]);
                d
            })
            .collect();
        db.insert(collection, docs);
    }
}

/// `usr_` + the first 16 bytes of sha256 over "godwit/qdash-backfill-user-id",
/// NUL, the namespace (empty), NUL and the BSON of `{_id}`, version 8, RFC
/// variant: the derivation the plugin documents, written down again here.
pub(super) fn expected_id(id: &Bson) -> String {
    let mut h = Sha256::new();
    h.update(b"godwit/qdash-backfill-user-id\0\0");
    h.update(doc! {"_id": id.clone()}.to_vec().unwrap());
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("usr_{}", hex::encode(b))
}

fn missing(v: Option<&Bson>) -> bool {
    matches!(v, None | Some(Bson::Null)) || v.and_then(Bson::as_str) == Some("")
}

/// Python's dict: insertion-ordered counts.
#[derive(Default, Clone, Debug)]
struct Ordered(Vec<(String, u64)>);

impl Ordered {
    fn add(&mut self, key: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, n)) => *n += 1,
            None => self.0.push((key.to_string(), 1)),
        }
    }
}

/// What upstream's `migrate_backfill_user_id` computes on the data (pair by
/// pair, documents in `_id` order), plus the writes and reports godwit shows.
#[derive(Default, Debug)]
struct Model {
    map: HashMap<String, String>,
    users_without_user_id: u64,
    users_to_update: u64,
    /// Users skipped with a report (blank or absent username, non-string id).
    users_skipped: u64,
    matched: HashMap<&'static str, u64>,
    updated: HashMap<&'static str, u64>,
    unresolved: HashMap<&'static str, Ordered>,
    unresolved_refs: u64,
    skipped_refs: u64,
    /// Documents that get one `$set`, per collection.
    writes: HashMap<&'static str, u64>,
    /// Every document as it must be after execute.
    after: HashMap<&'static str, Vec<Document>>,
}

fn model(db: &TestDb) -> Model {
    let mut m = Model::default();
    let users = db.find_all("user");
    // Upstream's map: users with string username and string user_id, then
    // the generated ids of users missing one (non-blank username only).
    for u in &users {
        if let (Ok(name), Ok(id)) = (u.get_str("username"), u.get_str("user_id")) {
            m.map.insert(name.to_string(), id.to_string());
        }
    }
    let mut after_users = Vec::new();
    for u in &users {
        let mut a = u.clone();
        if missing(u.get("user_id")) {
            m.users_without_user_id += 1;
            match u.get_str("username") {
                Ok(name) if !name.is_empty() => {
                    let id = expected_id(u.get("_id").unwrap());
                    m.map.insert(name.to_string(), id.clone());
                    a.insert("user_id", id);
                    m.users_to_update += 1;
                }
                _ => m.users_skipped += 1,
            }
        } else if !matches!(u.get("user_id"), Some(Bson::String(_))) {
            m.users_skipped += 1;
        }
        after_users.push(a);
    }
    m.after.insert("user", after_users);
    for (collection, pairs, _) in COLLECTIONS {
        let docs = db.find_all(collection);
        let mut after = docs.clone();
        let (mut matched, mut updated) = (0, 0);
        let mut unresolved = Ordered::default();
        for (from, to) in *pairs {
            for (d, a) in docs.iter().zip(after.iter_mut()) {
                match d.get(*from) {
                    Some(Bson::String(name)) if !name.is_empty() => {
                        if matches!(d.get(*to), Some(Bson::Array(_))) {
                            m.skipped_refs += 1;
                        } else if missing(d.get(*to)) {
                            matched += 1;
                            match m.map.get(name).filter(|id| !id.is_empty()) {
                                Some(id) => {
                                    updated += 1;
                                    a.insert(*to, id.clone());
                                }
                                None => {
                                    unresolved.add(name);
                                    m.unresolved_refs += 1;
                                }
                            }
                        }
                    }
                    Some(Bson::Array(_)) if missing(d.get(*to)) => m.skipped_refs += 1,
                    _ => {}
                }
            }
        }
        let writes = docs.iter().zip(&after).filter(|(d, a)| d != a).count() as u64;
        m.writes.insert(collection, writes);
        m.matched.insert(collection, matched);
        m.updated.insert(collection, updated);
        m.unresolved.insert(collection, unresolved);
        m.after.insert(collection, after);
    }
    m
}

/// Upstream's statistics dict as Python's `json.dumps(stats,
/// ensure_ascii=False)` prints it (serde_json escapes strings the same way).
/// Upstream's statistics for model `m`. `users_updated` and `updated` count
/// the writes the plugin asks for, in a dry run too: godwit never tells a
/// plugin whether it runs dry (upstream's own dry run reports 0 there).
fn statistics(m: &Model) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let users_updated = m.users_to_update;
    let mut out = format!(
        "{{\"users_without_user_id\": {}, \"users_updated\": {users_updated}, \"collections\": {{",
        m.users_without_user_id
    );
    let parts: Vec<String> = COLLECTIONS
        .iter()
        .map(|(c, _, _)| {
            let updated = m.updated[c];
            format!("{}: {{\"matched\": {}, \"updated\": {updated}}}", q(c), m.matched[c])
        })
        .collect();
    out.push_str(&parts.join(", "));
    out.push_str("}, \"unresolved\": {");
    let parts: Vec<String> = COLLECTIONS
        .iter()
        .filter(|(c, _, _)| !m.unresolved[c].0.is_empty())
        .map(|(c, _, _)| {
            let names: Vec<String> = m.unresolved[c]
                .0
                .iter()
                .map(|(n, k)| format!("{}: {k}", q(n)))
                .collect();
            format!("{}: {{{}}}", q(c), names.join(", "))
        })
        .collect();
    out.push_str(&parts.join(", "));
    out.push_str("}}");
    out
}

fn summary_message(report: &serde_json::Value) -> String {
    let message = report["summary"]["finish"]["reports"]["summary"]["samples"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no summary report in {report:#}"));
    serde_json::from_str::<serde_json::Value>(message)
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {message}"));
    message.to_string()
}

/// The model's figures in the dry-run report: the summary byte for byte, the
/// host's per-pass write counts, the report counts.
fn check_figures(report: &serde_json::Value, m: &Model, label: &str) {
    assert_eq!(summary_message(report), statistics(m), "{label}: summary");
    assert_eq!(pass(report, "user")["updates"], m.users_to_update, "{label}: user");
    for (c, _, _) in COLLECTIONS {
        assert_eq!(
            pass(report, c)["updates"],
            m.writes[c],
            "{label}: {c}: one $set per document"
        );
    }
    assert_eq!(report_count(report, "unresolved"), m.unresolved_refs, "{label}");
    assert_eq!(
        report_count(report, "skipped"),
        m.skipped_refs + m.users_skipped,
        "{label}"
    );
}

#[test]
fn qdash_backfill_user_id_dry_run_execute_interrupted_then_clean() {
    scenario(RUST, "seed_qdash");
}

/// The same migration written in Python (`plugins-py/qdash-backfill-user-id-py`,
/// built with componentize-py) passes the same scenario, and its dry-run
/// report (every count, sample key and message, pass by pass) is the Rust
/// plugin's, byte for byte.
#[test]
fn qdash_backfill_user_id_in_python_dry_run_execute_interrupted_then_clean() {
    scenario("qdash-backfill-user-id-py", "seed_qdash_py");
}

/// The same migration written in JavaScript (`plugins-js/qdash-backfill-user-id-js`,
/// built with esbuild and componentize-js by `godwit plugin build`) passes
/// the same scenario, kill and resume included, and its dry-run report is
/// the Rust plugin's, byte for byte.
#[test]
fn qdash_backfill_user_id_in_javascript_dry_run_execute_interrupted_then_clean() {
    scenario("qdash-backfill-user-id-js", "seed_qdash_js");
}

/// The reference implementation, `plugins/qdash-backfill-user-id`.
const RUST: &str = "qdash-backfill-user-id";

fn scenario(component: &str, database: &str) {
    let started = std::time::Instant::now();
    let db = TestDb::new(server(), database);
    generate(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin(component);
    let file = file.to_str().unwrap();
    init(&db, journal.path(), "1.7.3");
    let m = model(&db);
    let documents: usize = COLLECTIONS.iter().map(|(c, _, _)| m.after[c].len()).sum();
    assert!(
        m.unresolved_refs > 100
            && m.skipped_refs > 20
            && m.users_skipped >= 3
            && COLLECTIONS
                .iter()
                .all(|(c, _, _)| m.writes[c] > 0 && !m.unresolved[c].0.is_empty()),
        "the data exercises every case: {m:?}"
    );
    let snapshot = db.dump();

    // Dry run: the runbook's statistics, nothing written.
    let dry = run_steps(&db, journal.path(), &["run", file]).remove(0);
    eprintln!(
        "qdash dry run ({component}, {} users, {documents} documents): {}",
        USERS,
        summary_message(&dry)
    );
    check_figures(&dry, &m, "dry run");
    assert_eq!(db.dump(), snapshot, "a dry run writes nothing");
    if component != RUST {
        let rust = plugin(RUST);
        let reference = run_steps(&db, journal.path(), &["run", rust.to_str().unwrap()]).remove(0);
        assert_eq!(
            serde_json::to_string(&dry["summary"]).unwrap(),
            serde_json::to_string(&reference["summary"]).unwrap(),
            "{component}'s dry run report differs from the Rust plugin's"
        );
        // Beyond the report's samples: every action of every batch (each
        // write and each report's key and message), replayed through the
        // Rust plugin on the other run's journaled inputs, is the same.
        let run = dry["run_id"].as_str().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_godwit"))
            .args([
                "journal",
                "replay",
                run,
                "--json",
                "--plugin",
                rust.to_str().unwrap(),
                "--journal",
            ])
            .arg(journal.path())
            .env_remove("MONGODB_URI")
            .output()
            .unwrap();
        let replay: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("replay --json ({e}): {}", crate::support::stderr(&out)));
        assert!(out.status.success(), "{replay:#}");
        assert_eq!(replay["divergence"], serde_json::Value::Null, "{replay:#}");
        assert_eq!(replay["identical"], replay["batches"], "{replay:#}");
        eprintln!(
            "{component}: {} of {} dry-run batches replayed identically by the Rust plugin",
            replay["identical"], replay["batches"]
        );
    }

    // Execute, killed in the middle (from pass 8, `issue_knowledge`, on: a
    // slow machine may poll past it), then resumed.
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
            &(400 * scale()).to_string(),
            "--lease",
            "3",
        ],
        |marker| marker_pass(marker).is_some_and(|p| p >= 8),
    );
    eprintln!(
        "qdash execute killed in pass {:?}, batch seq {:?}",
        marker_pass(&marker),
        marker.get_i64("seq").ok()
    );
    assert_eq!(
        db.find_all("user"),
        m.after["user"],
        "the user pass was done before the kill"
    );
    let last = COLLECTIONS.last().unwrap().0;
    let untouched: Vec<Document> = snapshot
        .iter()
        .find(|(c, _)| c == last)
        .unwrap()
        .1
        .iter()
        .map(|raw| Document::from_reader(raw.as_slice()).unwrap())
        .collect();
    assert_eq!(db.find_all(last), untouched, "the last pass had not started");
    let exec = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(exec["resumed"], true, "{exec:#}");
    assert_eq!(exec["status"], "finished");
    assert_eq!(exec["stamped_version"], "1.8.0");
    check_figures(&exec, &m, "execute");
    assert_eq!(total(&exec, "updates"), total(&dry, "updates"));

    // Every final document, the users included, is what the model says.
    for (c, expected) in &m.after {
        assert_eq!(&db.find_all(c), expected, "{c} after the migration");
    }

    // Verify as the runbook says: dry run again. Nothing left to write; what
    // stays is what upstream's verification would show too: the unresolved
    // references (still matched, as upstream counts them) and the users
    // whose blank or absent username gets no id.
    let again = run_steps(&db, journal.path(), &["run", file]).remove(0);
    assert_eq!(total(&again, "updates"), 0);
    let mut clean = Model {
        users_without_user_id: m.users_without_user_id - m.users_to_update,
        users_skipped: m.users_skipped,
        unresolved_refs: m.unresolved_refs,
        skipped_refs: m.skipped_refs,
        unresolved: m.unresolved.clone(),
        ..Model::default()
    };
    for (c, _, _) in COLLECTIONS {
        clean.matched.insert(c, m.unresolved[c].0.iter().map(|(_, n)| n).sum());
        clean.updated.insert(c, 0);
        clean.writes.insert(c, 0);
    }
    check_figures(&again, &clean, "second dry run");
    assert_eq!(clean.users_without_user_id, 2, "the blank and the absent username");
    verify_journal(journal.path());
    let mut line = String::new();
    write!(
        line,
        "qdash scenario with {component}: {:.1} s",
        started.elapsed().as_secs_f64()
    )
    .unwrap();
    eprintln!("{line}");
}
