//! `_id`s of every BSON type a collection may hold. MongoDB's `$gt` matches
//! only values of the checkpoint's own type bracket, so a reader resuming
//! at `_id > checkpoint` used to skip every later type (measured: 8,500 of
//! 12,500 documents never migrated); the SDK's paged `find_all` had the
//! same flaw. Both now continue across brackets in `_id` order.

use crate::db::{TestDb, server};
use crate::support::{command, plugin, run_ok, stderr, verify_journal};
use bson::{Bson, Document, doc, oid::ObjectId};
use rand::RngExt;
use std::process::Stdio;
use std::time::Duration;

/// Documents per type (booleans: the two there are).
const PER_TYPE: u32 = 40;

/// `_id`s of int, long, double, string, ObjectId, subdocument, bool and
/// date, interleaved so that no type is stored as a block.
pub(crate) fn mixed_ids() -> Vec<Bson> {
    mixed_ids_per_type(PER_TYPE)
}

/// Both booleans and `per_type` `_id`s of each of seven other BSON types.
pub(crate) fn mixed_ids_per_type(per_type: u32) -> Vec<Bson> {
    let mut ids = vec![Bson::Boolean(false), Bson::Boolean(true)];
    for i in 0..per_type {
        let mut oid = [0u8; 12];
        oid[8..].copy_from_slice(&i.to_be_bytes());
        ids.extend([
            Bson::Int32(i as i32),
            Bson::Int64(1_000_000 + i64::from(i)),
            Bson::Double(f64::from(i) + 0.5),
            Bson::String(format!("id-{i:03}")),
            Bson::ObjectId(ObjectId::from_bytes(oid)),
            Bson::Document(doc! {"k": i}),
            Bson::DateTime(bson::DateTime::from_millis(i64::from(i) * 1000)),
        ]);
    }
    ids
}

fn counters(db: &TestDb) {
    let docs: Vec<Document> = mixed_ids().into_iter().map(|id| doc! {"_id": id, "n": 0_i64}).collect();
    db.insert("counters", docs);
}

/// Execute runs of the `$inc` plugin over mixed `_id` types, SIGKILLed at
/// random - ten times in all, at most four times per round - and resumed
/// until the last process of the round finishes: every document is
/// incremented exactly once and the last process exits 0 (verified clean,
/// stamped). Throttled so that every process dies mid-run, whatever the
/// machine's speed; a round that finished starts over on fresh data.
#[test]
fn every_id_type_is_migrated_exactly_once_through_ten_kills() {
    let file = plugin("increment");
    let file = file.to_str().unwrap();
    let args = [
        "run",
        file,
        "--execute",
        "--batch-size",
        "7",
        "--lease",
        "3",
        "--max-docs-per-sec",
        "200",
    ];
    let mut rng = rand::rng();
    let (mut kills, mut rounds, mut processes) = (0, 0, 0);
    while kills < 10 {
        rounds += 1;
        assert!(rounds <= 20, "ten kills did not happen in 20 rounds");
        let db = TestDb::new(server(), "id_types");
        counters(&db);
        let journal = tempfile::tempdir().unwrap();
        let mut killed_this_round = 0;
        let last = loop {
            processes += 1;
            let mut child = command(&db, journal.path(), &args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if kills < 10 && killed_this_round < 4 {
                std::thread::sleep(Duration::from_millis(rng.random_range(100..900)));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    let out = child.wait_with_output().unwrap();
                    // A process that finished just before the signal (not
                    // yet reaped) was not killed: its run is done.
                    if out.status.success() {
                        break out;
                    }
                    kills += 1;
                    killed_this_round += 1;
                    continue;
                }
            }
            break child.wait_with_output().unwrap();
        };
        assert!(
            last.status.success(),
            "the last run must end clean and stamped: {}",
            stderr(&last)
        );
        let docs = db.find_all("counters");
        assert_eq!(docs.len(), mixed_ids().len());
        let wrong: Vec<&Document> = docs.iter().filter(|d| d.get_i64("n").ok() != Some(1)).collect();
        assert!(
            wrong.is_empty(),
            "{} documents not incremented exactly once: {wrong:?}",
            wrong.len()
        );
        let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).expect("stamped");
        assert_eq!(schema.get_str("version").unwrap(), "2.0.0");
        verify_journal(journal.path());
    }
    eprintln!(
        "id types: {kills} SIGKILLs over {processes} processes in {rounds} rounds; each round {} documents of 8 _id \
         types incremented exactly once",
        mixed_ids().len()
    );
}

/// The SDK's `find_all` pages (of 3) across `_id` types: every reference
/// of every type is found.
#[test]
fn find_all_pages_across_id_types() {
    let db = TestDb::new(server(), "id_types_find_all");
    let refs: Vec<Document> = mixed_ids().into_iter().map(|id| doc! {"_id": id}).collect();
    let things: Vec<Document> = mixed_ids()
        .into_iter()
        .enumerate()
        .map(|(i, id)| doc! {"_id": i as i64, "ref": id})
        .collect();
    db.insert("refs", refs);
    db.insert("things", things);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("find-all");
    run_ok(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"]);
    let missed: Vec<Document> = db
        .find_all("things")
        .into_iter()
        .filter(|d| d.get_bool("found").ok() != Some(true))
        .collect();
    assert!(
        missed.is_empty(),
        "find_all lost {} references: {missed:?}",
        missed.len()
    );
}
