//! QDash's migration history (upstream's `src/qdash/dbmodel/migration.py`,
//! `oqtopus-team/qdash`) as a godwit chain (`plugins/qdash-*`): upstream's own
//! test cases (`tests/qdash/dbmodel/test_migration.py`) with the same inputs
//! and expected outputs, run through the real binary, then the whole chain
//! upgraded from an `init`-stamped database with every step's figures and
//! every final document checked against a model computed here.
//!
//! Where godwit's figures differ from upstream's by design, the test says so
//! next to the assertion: a plugin is never told whether it runs dry, so the
//! `*_updated` figures of a dry run count the writes the execute will make
//! (upstream's dry run reports 0 there).

use super::{figures, init, run_steps};
use crate::db::{TestDb, server};
use crate::support::{command, plugin, stderr, stdout};
use bson::oid::ObjectId;
use bson::{Bson, Document, doc};

/// A forum post as QDash's `ForumPostDocument` stores it (every field with
/// its model default), created `minute` minutes into the test's day.
fn forum_post(project_id: &str, minute: i64, fields: Document) -> Document {
    let at = bson::DateTime::from_millis(1_783_000_000_000 + minute * 60_000);
    let mut post = doc! {
        "_id": ObjectId::new(),
        "project_id": project_id,
        "number": Bson::Null,
        "category": "qubit",
        "user_id": Bson::Null,
        "username": "owner",
        "title": Bson::Null,
        "content": "root",
        "content_blocks": [],
        "labels": [],
        "assignee_username": Bson::Null,
        "status": "open",
        "chip_id": Bson::Null,
        "target_type": Bson::Null,
        "target_id": Bson::Null,
        "cooldown_id": Bson::Null,
        "parent_id": Bson::Null,
        "is_deleted": false,
        "is_ai_reply": false,
        "system_info": {"created_at": at, "updated_at": at},
    };
    post.extend(fields);
    post
}

fn id_of(post: &Document) -> ObjectId {
    post.get_object_id("_id").unwrap()
}

fn post_in(db: &TestDb, id: ObjectId) -> Document {
    db.find_one("forum_post", doc! {"_id": id})
        .unwrap_or_else(|| panic!("forum_post {id} is gone"))
}

/// upstream: `test_backfill_forum_thread_numbers_assigns_roots_replies_and_counter`.
#[test]
fn qdash_forum_thread_numbers_assigns_roots_replies_and_counter() {
    let db = TestDb::new(server(), "seed_qdash_forum_numbers");
    let journal = tempfile::tempdir().unwrap();
    let existing = forum_post(
        "project-a",
        0,
        doc! {"number": 3, "title": "Existing numbered thread"},
    );
    let missing = forum_post("project-a", 1, doc! {"title": "Missing numbered thread"});
    let reply = forum_post(
        "project-a",
        2,
        doc! {"content": "reply", "parent_id": id_of(&missing).to_hex()},
    );
    let orphan = forum_post(
        "project-a",
        3,
        doc! {"content": "orphan", "parent_id": "missing-root"},
    );
    let ids = [&existing, &missing, &reply, &orphan].map(id_of);
    db.insert("forum_post", vec![existing, missing, reply, orphan]);
    db.insert("forum_counter", vec![doc! {"project_id": "project-a", "value": 10}]);
    init(&db, journal.path(), "1.8.0");
    let file = plugin("qdash-backfill-forum-thread-numbers");
    let file = file.to_str().unwrap();
    let number = |db: &TestDb, i: usize| post_in(db, ids[i]).get("number").cloned();

    let snapshot = db.dump();
    let dry = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    eprintln!("forum thread numbers, dry run: {dry}");
    assert_eq!(dry["root_threads_missing_number"], 1);
    // Upstream's dry run says 0: it writes nothing. Ours counts what the execute will write.
    assert_eq!(dry["root_threads_updated"], 1);
    assert_eq!(dry["replies_updated"], 1);
    assert_eq!(dry["orphan_replies_found"], 1);
    assert_eq!(dry["projects"][0]["counter_value"], 10);
    assert_eq!(db.dump(), snapshot, "a dry run writes nothing");
    assert_eq!(number(&db, 0), Some(Bson::Int32(3)));
    for i in 1..4 {
        assert_eq!(number(&db, i), Some(Bson::Null));
    }

    let executed = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(executed["stamped_version"], "1.8.16");
    let executed = figures(&executed);
    assert_eq!(executed["root_threads_updated"], 1);
    assert_eq!(executed["replies_updated"], 1);
    assert_eq!(number(&db, 0), Some(Bson::Int32(3)));
    assert_eq!(number(&db, 1), Some(Bson::Int32(1)));
    assert_eq!(number(&db, 2), Some(Bson::Int32(1)));
    assert_eq!(number(&db, 3), Some(Bson::Null));
    let counter = db.find_one("forum_counter", doc! {"project_id": "project-a"}).unwrap();
    assert_eq!(counter.get("value"), Some(&Bson::Int32(10)));

    // Upstream runs the execute again; the database is stamped 1.8.16 now,
    // which this plugin's `requires` refuses to execute on, so the repeat is
    // the runbook's verifying dry run: nothing left to write.
    let repeated = run_steps(&db, journal.path(), &["run", file]).remove(0);
    assert_eq!(super::total(&repeated, "updates"), 0);
    let repeated = figures(&repeated);
    assert_eq!(repeated["root_threads_updated"], 0);
    assert_eq!(repeated["replies_updated"], 0);
}

/// upstream: `test_backfill_forum_thread_numbers_blocks_duplicate_existing_root_numbers`.
#[test]
fn qdash_forum_thread_numbers_blocks_duplicate_existing_root_numbers() {
    let db = TestDb::new(server(), "seed_qdash_forum_dups");
    let journal = tempfile::tempdir().unwrap();
    let first = forum_post("project-a", 0, doc! {"number": 1, "title": "First"});
    let second = forum_post("project-a", 1, doc! {"number": 1, "title": "Second"});
    let expected = format!(
        "duplicate_root_numbers: {{\"project-a\": {{\"1\": [\"{}\", \"{}\"]}}}}",
        id_of(&first).to_hex(),
        id_of(&second).to_hex()
    );
    db.insert("forum_post", vec![first, second]);
    init(&db, journal.path(), "1.8.0");
    let file = plugin("qdash-backfill-forum-thread-numbers");
    let data = |db: &TestDb| db.dump().into_iter().filter(|(c, _)| c != "godwit_metadata").collect::<Vec<_>>();
    let snapshot = data(&db);

    // Upstream's dry run lists the duplicates and its execute raises
    // MigrationError. A godwit plugin does not know it runs dry, so both
    // stop with the duplicates named; neither writes anything.
    for execute in [false, true] {
        let mut args = vec!["run", file.to_str().unwrap()];
        if execute {
            args.push("--execute");
        }
        let out = command(&db, journal.path(), &args).output().unwrap();
        assert_eq!(out.status.code(), Some(4), "{}\n{}", stdout(&out), stderr(&out));
        assert!(stderr(&out).contains(&expected), "{expected} in:\n{}", stderr(&out));
        assert_eq!(data(&db), snapshot, "nothing written (execute: {execute})");
    }
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "1.8.0", "not stamped");
    eprintln!("forum thread numbers, duplicates refused: {expected}");
}

/// upstream: `test_migrate_forum_status_moves_closed_and_legacy_labels`.
#[test]
fn qdash_forum_status_moves_closed_and_legacy_labels() {
    let db = TestDb::new(server(), "seed_qdash_forum_status");
    let journal = tempfile::tempdir().unwrap();
    let closed = forum_post(
        "project-a",
        0,
        doc! {"title": "Closed old thread", "labels": ["resolved"], "is_closed": true},
    );
    let review = forum_post(
        "project-a",
        1,
        doc! {"title": "Weekly discussion", "labels": ["discussion"]},
    );
    let mut plain = forum_post("project-a", 2, doc! {"title": "Plain thread"});
    plain.remove("status");
    let ids = [&closed, &review, &plain].map(id_of);
    db.insert("forum_post", vec![closed, review, plain]);
    init(&db, journal.path(), "1.8.16");
    let file = plugin("qdash-migrate-forum-status");
    let file = file.to_str().unwrap();

    let dry = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    eprintln!("forum status, dry run: {dry}");
    assert_eq!(dry["posts_to_update"], 3);
    assert_eq!(dry["status_from_resolved_label"], 1);
    assert_eq!(dry["labels_changed"], 2);
    assert_eq!(post_in(&db, ids[0]).get("is_closed"), Some(&Bson::Boolean(true)));

    let executed = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(executed["stamped_version"], "1.8.22");
    assert_eq!(figures(&executed)["posts_to_update"], 3);
    let (closed, review, plain) = (post_in(&db, ids[0]), post_in(&db, ids[1]), post_in(&db, ids[2]));
    assert_eq!(closed.get_str("status").unwrap(), "resolved");
    assert_eq!(closed.get_array("labels").unwrap(), &Vec::<Bson>::new());
    assert!(!closed.contains_key("is_closed"));
    assert_eq!(review.get_array("labels").unwrap(), &vec![Bson::String("review".into())]);
    assert_eq!(plain.get_str("status").unwrap(), "open");
}
