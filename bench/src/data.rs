//! The QDash-like dataset (seed 000, `backfill-user-id`) and the check that a
//! contestant really did the backfill.
//!
//! `users`: a few hundred users with `username` and `user_id`. `executions`:
//! execution-history documents (~500 bytes: project, chip, status, tags,
//! times, paths, a small note) each carrying the `username` of the user who
//! ran it; one in a hundred names a user that no longer exists ("unresolved"
//! in QDash's dry-run statistics). The backfill sets `owner_user_id` on every
//! execution whose username resolves. The data is a pure function of the
//! document count, so every contestant gets identical input.

use anyhow::{Context, bail};
use bson::oid::ObjectId;
use bson::{Document, RawDocumentBuf, doc};
use futures_util::TryStreamExt;
use mongodb::Database;
use std::collections::HashMap;

pub const USERS: &str = "users";
pub const EXECUTIONS: &str = "executions";
/// Users that exist; executions by `former-N` users do not resolve.
const USER_COUNT: u64 = 500;
const FORMER_USERS: u64 = 20;
/// Every UNRESOLVED_EVERY-th execution was run by a user who is gone.
const UNRESOLVED_EVERY: u64 = 100;
/// Documents per `insert` command while generating.
const INSERT_CHUNK: u64 = 5_000;

/// The same mixing function everywhere, so ids look random but are reproducible.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn username(i: u64) -> String {
    format!("user{i:04}")
}

fn user_id(i: u64) -> String {
    format!("usr_{:016x}", mix(i))
}

/// The username of execution `n`.
fn execution_username(n: u64) -> String {
    if n % UNRESOLVED_EVERY == UNRESOLVED_EVERY - 1 {
        format!("former-{}", mix(n) % FORMER_USERS)
    } else {
        username(mix(n) % USER_COUNT)
    }
}

/// How many of `docs` executions the backfill must update.
pub fn expected_updates(docs: u64) -> u64 {
    docs - docs / UNRESOLVED_EVERY
}

/// `_id`s ascend with `n`, as ObjectIds of documents inserted over time do.
fn execution_id(n: u64) -> ObjectId {
    let mut bytes = [0u8; 12];
    let seconds = 1_735_689_600u32 + (n / 16) as u32; // 2025-01-01, 16 executions a second
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    bytes[4..12].copy_from_slice(&n.to_be_bytes());
    ObjectId::from_bytes(bytes)
}

fn execution(n: u64) -> Document {
    let user = execution_username(n);
    let r = mix(n ^ 0xA5A5);
    let started = 1_735_689_600_000i64 + (n as i64) * 60_000;
    let elapsed = 30_000 + (r % 3_600_000) as i64;
    let chip = ["64Qv1", "64Qv2", "144Qv1"][(r % 3) as usize];
    doc! {
        "_id": execution_id(n),
        "project_id": format!("proj_{:03}", r % 12),
        "username": &user,
        "name": format!("calibration-{}", ["daily", "weekly", "ad-hoc", "bring-up"][(r >> 8) as usize % 4]),
        "execution_id": format!("2025{:02}{:02}-{:06}", 1 + (n / 40_000) % 12, 1 + (n / 1_300) % 28, n % 1_000_000),
        "chip_id": chip,
        "status": if r.is_multiple_of(17) { "failed" } else { "completed" },
        "tags": ["calibration", chip, format!("q{}", r % 64)],
        "flow_name": "one-qubit-calibration",
        "calib_data_path": format!("/app/calib_data/{user}/2025/{n:08}"),
        "start_at": bson::DateTime::from_millis(started),
        "end_at": bson::DateTime::from_millis(started + elapsed),
        "elapsed_time": format!("{}:{:02}:{:02}", elapsed / 3_600_000, elapsed / 60_000 % 60, elapsed / 1000 % 60),
        "message": if r.is_multiple_of(17) { "qubit 12 did not converge" } else { "" },
        "note": {
            "qubit_count": (r % 64) as i32,
            "fidelity": 0.95 + (r % 500) as f64 / 10_000.0,
            "operator_comment": "",
        },
        "system_info": {"python_version": "3.11.9", "qdash_version": "1.7.3", "host": format!("worker-{}", r % 8)},
    }
}

fn user(i: u64) -> Document {
    doc! {
        "_id": ObjectId::from_bytes({
            let mut b = [0u8; 12];
            b[4..12].copy_from_slice(&i.to_be_bytes());
            b
        }),
        "username": username(i),
        "user_id": user_id(i),
        "full_name": format!("User {i}"),
        "email": format!("{}@example.org", username(i)),
        "system_role": if i == 0 { "admin" } else { "user" },
        "disabled": false,
    }
}

/// Creates `users` and `executions` (`docs` documents) in `db`, which must be empty.
pub async fn generate(db: &Database, docs: u64) -> anyhow::Result<()> {
    db.collection::<Document>(USERS)
        .insert_many((0..USER_COUNT).map(user))
        .await
        .context("inserting users")?;
    // Two writers: the server, not document building, sets the pace.
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let coll = db.collection::<Document>(EXECUTIONS);
            tokio::spawn(async move {
                let mut start = w * INSERT_CHUNK;
                while start < docs {
                    let end = (start + INSERT_CHUNK).min(docs);
                    coll.insert_many((start..end).map(execution))
                        .ordered(false)
                        .await
                        .with_context(|| format!("inserting executions {start}..{end}"))?;
                    start += 2 * INSERT_CHUNK;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let count = db.collection::<Document>(EXECUTIONS).estimated_document_count().await?;
    if count != docs {
        bail!("generated {count} executions, wanted {docs}");
    }
    Ok(())
}

/// Average BSON size of an execution document (for the results' description).
pub fn average_document_bytes() -> usize {
    let sample: Vec<usize> = (0..1000)
        .map(|n| execution(n).to_vec().map_or(0, |b| b.len()))
        .collect();
    sample.iter().sum::<usize>() / sample.len()
}

/// What a contestant left in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Executions whose `owner_user_id` is their user's `user_id`.
    pub backfilled: u64,
    /// Executions with a wrong `owner_user_id`, or one where none belongs.
    pub wrong: u64,
    /// Executions whose `username` names a user that exists (what a
    /// complete backfill sets; the old application's writes change it).
    pub resolvable: u64,
}

/// The old version of the application during a live run (contestant (w)):
/// it saves executions the way an ODM's `save()` does - the whole document
/// replaced, here under another existing user - knowing nothing of
/// `owner_user_id`, so a replaced execution needs the backfill again.
/// Writes until `stop`; returns the writes the server acknowledged.
pub async fn old_application(
    db: Database,
    docs: u64,
    writer: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<u64> {
    let coll = db.collection::<Document>(EXECUTIONS);
    let mut written = 0u64;
    let mut i = writer;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let n = mix(i ^ 0x5EED) % docs;
        let mut replaced = execution(n);
        replaced.insert("username", username(mix(i) % USER_COUNT));
        // A write that meets a godwit transaction fails (write conflict) and
        // is not acknowledged; the application would retry it later.
        if coll.replace_one(doc! {"_id": execution_id(n)}, replaced).await.is_ok() {
            written += 1;
        }
        i += 4;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    Ok(written)
}

/// Reads every execution back and compares it with the expected backfill.
pub async fn check(db: &Database) -> anyhow::Result<Outcome> {
    let ids: HashMap<String, String> = (0..USER_COUNT).map(|i| (username(i), user_id(i))).collect();
    let mut cursor = db
        .collection::<RawDocumentBuf>(EXECUTIONS)
        .find(doc! {})
        .projection(doc! {"username": 1, "owner_user_id": 1})
        .batch_size(10_000)
        .await
        .context("reading executions back")?;
    let mut outcome = Outcome {
        backfilled: 0,
        wrong: 0,
        resolvable: 0,
    };
    while let Some(d) = cursor.try_next().await? {
        let name = d.get_str("username").unwrap_or_default();
        outcome.resolvable += u64::from(ids.contains_key(name));
        let found = d.get_str("owner_user_id").ok();
        match (ids.get(name).map(String::as_str), found) {
            (Some(want), Some(got)) if want == got => outcome.backfilled += 1,
            (_, None) => {}
            _ => outcome.wrong += 1,
        }
    }
    Ok(outcome)
}
