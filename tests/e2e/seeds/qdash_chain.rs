//! QDash's migration history (upstream's `src/qdash/dbmodel/migration.py`,
//! `oqtopus-team/qdash`) as a godwit chain (`plugins/qdash-*`): upstream's own
//! test cases (`tests/qdash/dbmodel/test_migration.py` for the forum, and
//! `tests/qdash/api/routers/test_note.py` for the notes migrations) with the
//! same inputs and expected outputs, run through the real binary - where
//! upstream executes a second time, the database is stamped past the step by
//! then, so the repeat is the runbook's verifying dry run -, then the whole chain
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

/// The version the step before the forum thread numbers stamps (upstream's
/// 1.8.16 shipped both; the chain runs metric notes first, as upstream's file has them).
const METRIC_NOTES_STEP: &str = "1.8.16-metric-notes-to-target-notes";

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
    let existing = forum_post("project-a", 0, doc! {"number": 3, "title": "Existing numbered thread"});
    let missing = forum_post("project-a", 1, doc! {"title": "Missing numbered thread"});
    let reply = forum_post(
        "project-a",
        2,
        doc! {"content": "reply", "parent_id": id_of(&missing).to_hex()},
    );
    let orphan = forum_post("project-a", 3, doc! {"content": "orphan", "parent_id": "missing-root"});
    let ids = [&existing, &missing, &reply, &orphan].map(id_of);
    db.insert("forum_post", vec![existing, missing, reply, orphan]);
    db.insert("forum_counter", vec![doc! {"project_id": "project-a", "value": 10}]);
    init(&db, journal.path(), METRIC_NOTES_STEP);
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
    init(&db, journal.path(), METRIC_NOTES_STEP);
    let file = plugin("qdash-backfill-forum-thread-numbers");
    let data = |db: &TestDb| {
        db.dump()
            .into_iter()
            .filter(|(c, _)| c != "godwit_metadata")
            .collect::<Vec<_>>()
    };
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
    assert_eq!(schema.get_str("version").unwrap(), METRIC_NOTES_STEP, "not stamped");
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
    assert_eq!(
        review.get_array("labels").unwrap(),
        &vec![Bson::String("review".into())]
    );
    assert_eq!(plain.get_str("status").unwrap(), "open");
}

/// A `metric_note` document as QDash's `MetricNoteDocument` stores it.
fn metric_note(target_type: &str, target_id: &str, metric_key: &str, note: Document, scope: Document) -> Document {
    let mut d = doc! {
        "_id": ObjectId::new(), "project_id": "note_project", "chip_id": "chip-1",
        "target_type": target_type, "target_id": target_id, "metric_key": metric_key, "note": note,
    };
    d.extend(scope);
    d.insert("system_info", doc! {"created_at": bson::DateTime::from_millis(1_783_000_000_000), "updated_at": bson::DateTime::from_millis(1_783_000_000_000)});
    d
}

fn global_scope() -> Document {
    doc! {"scope_type": "global", "scope_key": "global", "cooldown_id": Bson::Null,
    "scope_started_at": Bson::Null, "scope_ended_at": Bson::Null, "scope_source": "legacy_global"}
}

/// upstream (`tests/qdash/api/routers/test_note.py`):
/// `test_migrate_metric_notes_to_target_notes_dry_run_and_execute`.
#[test]
fn qdash_metric_notes_to_target_notes_dry_run_and_execute() {
    let db = TestDb::new(server(), "seed_qdash_metric_notes");
    let journal = tempfile::tempdir().unwrap();
    let day = |d: i64| bson::DateTime::from_millis(1_767_225_600_000 + (d - 1) * 86_400_000);
    let qubit = doc! {
        "_id": ObjectId::new(), "project_id": "note_project", "username": "note_user", "chip_id": "chip-1",
        "qid": "21", "data": {},
        "note": {"content": "Pinned summary", "updated_by": "note_user", "updated_at": Bson::Null},
        "system_info": {"created_at": day(1), "updated_at": day(1)},
    };
    let qubit_id = id_of(&qubit);
    db.insert("qubit", vec![qubit]);
    db.insert(
        "metric_note",
        vec![metric_note(
            "qubit",
            "21",
            "t1",
            doc! {"content": "T1 has a long-tail outlier.", "updated_by": "alice", "updated_at": day(3)},
            doc! {"scope_type": "cooldown", "scope_key": "cooldown:cd-1", "cooldown_id": "cd-1",
            "scope_started_at": day(1), "scope_ended_at": day(2), "scope_source": "current_cooldown"},
        )],
    );
    init(&db, journal.path(), "1.8.0");
    let file = plugin("qdash-metric-notes-to-target-notes");
    let file = file.to_str().unwrap();
    let note = |db: &TestDb| {
        db.find_one("qubit", doc! {"_id": qubit_id})
            .unwrap()
            .get_document("note")
            .unwrap()
            .clone()
    };

    let dry = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    eprintln!("metric notes to target notes, dry run: {dry}");
    assert_eq!(dry["metric_notes_found"], 1);
    assert_eq!(dry["targets_updated"], 1);
    assert_eq!(note(&db).get_str("content").unwrap(), "Pinned summary");

    let executed = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(executed["stamped_version"], METRIC_NOTES_STEP);
    assert_eq!(figures(&executed)["targets_updated"], 1);
    let content = note(&db).get_str("content").unwrap().to_string();
    for part in [
        "Pinned summary",
        "## Legacy metric notes",
        "### t1",
        "T1 has a long-tail outlier.",
    ] {
        assert!(content.contains(part), "{part:?} in {content:?}");
    }
    assert_eq!(
        content,
        "Pinned summary\n\n---\n\n<!-- qdash:migrated-metric-notes -->\n## Legacy metric notes\n\n### t1\n\
         - Scope: `cooldown:cd-1`\n- Last edited: alice at 2026-01-03T00:00:00\n\nT1 has a long-tail outlier."
    );
    assert_eq!(note(&db).get_str("updated_by").unwrap(), "alice");
    assert_eq!(db.find_all("metric_note").len(), 1, "the source notes are kept");

    // Upstream executes again; stamped past this step, the repeat is the verifying dry run.
    let second = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    assert_eq!(second["targets_updated"], 0);
    assert_eq!(second["targets_skipped_already_migrated"], 1);
}

/// upstream (`tests/qdash/api/routers/test_note.py`):
/// `test_migrate_metric_notes_to_target_notes_reports_missing_targets`.
#[test]
fn qdash_metric_notes_to_target_notes_reports_missing_targets() {
    let db = TestDb::new(server(), "seed_qdash_metric_notes_missing");
    let journal = tempfile::tempdir().unwrap();
    db.insert(
        "metric_note",
        vec![metric_note(
            "coupling",
            "0-1",
            "zx90_gate_fidelity",
            doc! {"content": "Needs follow-up", "updated_by": "note_user", "updated_at": Bson::Null},
            global_scope(),
        )],
    );
    init(&db, journal.path(), "1.8.0");
    let file = plugin("qdash-metric-notes-to-target-notes");
    // No qubit or coupling collection at all: both passes are named as
    // missing collections, the metric_note pass runs.
    let stats = figures(&run_steps(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"]).remove(0));
    assert_eq!(stats["targets_missing"], 1);
    assert_eq!(stats["targets_updated"], 0);
    assert_eq!(stats["targets"][0]["action"], "missing_target");
}

fn cooldown(id: &str, started_at: bson::DateTime, ended_at: Option<bson::DateTime>) -> Document {
    doc! {
        "_id": ObjectId::new(), "project_id": "note_project", "cooldown_id": id, "cryo_id": "cryo-1", "description": "",
        "started_at": started_at, "ended_at": ended_at.map_or(Bson::Null, Bson::DateTime), "chip_ids": ["chip-1"],
        "note": {"content": "", "updated_by": "", "updated_at": Bson::Null}, "wiring_info": "", "wiring_blocks": [],
        "system_info": {"created_at": started_at, "updated_at": started_at},
    }
}

fn note_chip(current_cooldown_id: &str) -> Document {
    doc! {"_id": ObjectId::new(), "project_id": "note_project", "username": "note_user", "chip_id": "chip-1",
    "size": 64, "current_cooldown_id": current_cooldown_id}
}

fn note_qubit() -> Document {
    doc! {"_id": ObjectId::new(), "project_id": "note_project", "username": "note_user", "chip_id": "chip-1",
    "qid": "21", "data": {}}
}

/// upstream (`tests/qdash/api/routers/test_note.py`):
/// `test_migrate_metric_notes_to_latest_cooldown_target_notes`.
#[test]
fn qdash_metric_notes_to_latest_cooldown_target_notes() {
    let db = TestDb::new(server(), "seed_qdash_latest_cd_notes");
    let journal = tempfile::tempdir().unwrap();
    let day = |d: i64| bson::DateTime::from_millis(1_767_225_600_000 + (d - 1) * 86_400_000);
    db.insert("chip", vec![note_chip("cd-2")]);
    db.insert(
        "cooldown",
        vec![cooldown("cd-1", day(1), Some(day(2))), cooldown("cd-2", day(3), None)],
    );
    db.insert("qubit", vec![note_qubit()]);
    db.insert(
        "target_note",
        vec![doc! {
            "_id": ObjectId::new(), "project_id": "note_project", "chip_id": "chip-1", "target_type": "qubit",
            "target_id": "21", "note": {"content": "Latest CD summary", "updated_by": "note_user", "updated_at": Bson::Null},
            "comments": [], "scope_type": "cooldown", "scope_key": "cooldown:cd-2", "cooldown_id": "cd-2",
            "scope_started_at": day(3), "scope_ended_at": Bson::Null, "scope_source": "explicit_cooldown",
            "system_info": {"created_at": day(3), "updated_at": day(3)},
        }],
    );
    db.insert(
        "metric_note",
        vec![metric_note(
            "qubit",
            "21",
            "t1",
            doc! {"content": "Old T1 note", "updated_by": "alice", "updated_at": day(2)},
            doc! {"scope_type": "cooldown", "scope_key": "cooldown:cd-1", "cooldown_id": "cd-1",
            "scope_started_at": day(1), "scope_ended_at": day(2), "scope_source": "explicit_cooldown"},
        )],
    );
    init(&db, journal.path(), "1.8.22");
    let file = plugin("qdash-metric-notes-to-latest-cooldown-target-notes");
    let file = file.to_str().unwrap();
    let note = |db: &TestDb| {
        db.find_one("target_note", doc! {"scope_key": "cooldown:cd-2"})
            .unwrap()
            .get_document("note")
            .unwrap()
            .clone()
    };

    let dry = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    eprintln!("metric notes to latest cool-down target notes, dry run: {dry}");
    assert_eq!(dry["targets_updated"], 1);
    assert_eq!(note(&db).get_str("content").unwrap(), "Latest CD summary");

    let executed = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(executed["stamped_version"], "1.8.25");
    let executed = figures(&executed);
    assert_eq!(executed["targets_updated"], 1);
    assert_eq!(executed["metric_notes_deleted"], 0);
    let content = note(&db).get_str("content").unwrap().to_string();
    assert!(content.starts_with("Latest CD summary"), "{content:?}");
    for part in [
        "## Migrated legacy metric notes",
        "### t1",
        "- Scope: `cooldown:cd-1`",
        "Old T1 note",
    ] {
        assert!(content.contains(part), "{part:?} in {content:?}");
    }
    assert_eq!(note(&db).get_str("updated_by").unwrap(), "alice");

    let second = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    assert_eq!(second["targets_updated"], 0);
    assert_eq!(second["targets_skipped_already_migrated"], 1);
}

/// upstream (`tests/qdash/api/routers/test_note.py`):
/// `test_migrate_metric_notes_to_latest_cooldown_target_notes_can_delete_source`
/// (upstream's `--delete-source` is `--param delete_source=true`).
#[test]
fn qdash_metric_notes_to_latest_cooldown_target_notes_can_delete_source() {
    let db = TestDb::new(server(), "seed_qdash_latest_cd_delete");
    let journal = tempfile::tempdir().unwrap();
    db.insert("chip", vec![note_chip("cd-1")]);
    let day = |d: i64| bson::DateTime::from_millis(1_767_225_600_000 + (d - 1) * 86_400_000);
    db.insert("cooldown", vec![cooldown("cd-1", day(1), Some(day(2)))]);
    db.insert("qubit", vec![note_qubit()]);
    db.insert(
        "metric_note",
        vec![metric_note(
            "qubit",
            "21",
            "t1",
            doc! {"content": "Delete after migration", "updated_by": "alice", "updated_at": Bson::Null},
            global_scope(),
        )],
    );
    init(&db, journal.path(), "1.8.22");
    let file = plugin("qdash-metric-notes-to-latest-cooldown-target-notes");
    let stats = figures(
        &run_steps(
            &db,
            journal.path(),
            &[
                "run",
                file.to_str().unwrap(),
                "--execute",
                "--param",
                "delete_source=true",
            ],
        )
        .remove(0),
    );
    assert_eq!(stats["targets_updated"], 1);
    assert_eq!(stats["metric_notes_deleted"], 1);
    assert!(db.find_all("metric_note").is_empty());
    let target_note = db.find_one("target_note", doc! {"target_id": "21"}).unwrap();
    let content = target_note.get_document("note").unwrap().get_str("content").unwrap();
    assert!(content.contains("Delete after migration"), "{content:?}");
    assert_eq!(target_note.get_str("scope_key").unwrap(), "cooldown:cd-1");
    assert_eq!(target_note.get_array("comments").unwrap().len(), 0);
}

/// upstream (`tests/qdash/api/routers/test_note.py`):
/// `test_migrate_legacy_target_notes_to_comments`.
#[test]
fn qdash_legacy_target_notes_to_comments() {
    let db = TestDb::new(server(), "seed_qdash_legacy_notes");
    let journal = tempfile::tempdir().unwrap();
    let day = |d: i64| bson::DateTime::from_millis(1_767_225_600_000 + (d - 1) * 86_400_000);
    db.insert("chip", vec![note_chip("cd-1")]);
    db.insert("cooldown", vec![cooldown("cd-1", day(1), Some(day(2)))]);
    let mut qubit = note_qubit();
    qubit.insert(
        "note",
        doc! {"content": "Legacy global summary", "updated_by": "alice", "updated_at": day(3)},
    );
    qubit.insert("system_info", doc! {"created_at": day(1), "updated_at": day(1)});
    let qubit_id = id_of(&qubit);
    db.insert("qubit", vec![qubit]);
    db.insert(
        "target_note",
        vec![doc! {
            "_id": ObjectId::new(), "project_id": "note_project", "chip_id": "chip-1", "target_type": "qubit",
            "target_id": "21", "note": {"content": "Cooldown summary", "updated_by": "bob", "updated_at": day(4)},
            "comments": [], "scope_type": "cooldown", "scope_key": "cooldown:cd-1", "cooldown_id": "cd-1",
            "scope_started_at": day(1), "scope_ended_at": Bson::Null, "scope_source": "explicit_cooldown",
            "system_info": {"created_at": day(1), "updated_at": day(1)},
        }],
    );
    init(&db, journal.path(), "1.8.25");
    let file = plugin("qdash-legacy-target-notes-to-comments");
    let file = file.to_str().unwrap();
    let qubit_note = |db: &TestDb| {
        db.find_one("qubit", doc! {"_id": qubit_id})
            .unwrap()
            .get_document("note")
            .unwrap()
            .clone()
    };

    let dry = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    eprintln!("legacy target notes to comments, dry run: {dry}");
    assert_eq!(dry["legacy_notes_found"], 2);
    assert_eq!(dry["comments_created"], 2);
    assert_eq!(qubit_note(&db).get_str("content").unwrap(), "Legacy global summary");

    let executed = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(executed["stamped_version"], "1.8.26");
    let executed = figures(&executed);
    assert_eq!(executed["legacy_notes_found"], 2);
    assert_eq!(executed["comments_created"], 2);
    assert_eq!(executed["notes_cleared"], 2);
    assert_eq!(qubit_note(&db).get_str("content").unwrap(), "");
    assert!(
        db.find_one("target_note", doc! {"target_id": "21", "scope_key": "global"})
            .is_none()
    );
    let cooldown_note = db.find_one("target_note", doc! {"scope_key": "cooldown:cd-1"}).unwrap();
    assert_eq!(
        cooldown_note.get_document("note").unwrap().get_str("content").unwrap(),
        ""
    );
    let comments: Vec<&Document> = cooldown_note
        .get_array("comments")
        .unwrap()
        .iter()
        .map(|c| c.as_document().unwrap())
        .collect();
    let field = |key: &str| comments.iter().map(|c| c.get_str(key).unwrap()).collect::<Vec<_>>();
    assert_eq!(field("content"), ["Cooldown summary", "Legacy global summary"]);
    assert_eq!(field("created_by"), ["bob", "alice"]);
    assert_eq!(comments[1].get_datetime("created_at").unwrap(), &day(3));
    assert_eq!(comments[1].get("updated_at"), Some(&Bson::Null));
    assert_eq!(
        field("comment_id"),
        [
            "legacy-target-note-qubit-cooldown:cd-1",
            "legacy-qubit-qubit-cooldown:cd-1"
        ]
    );

    // Upstream executes again; stamped past this step, the repeat is the verifying dry run.
    let second = figures(&run_steps(&db, journal.path(), &["run", file]).remove(0));
    assert_eq!(second["legacy_notes_found"], 0);
    assert_eq!(second["comments_created"], 0);
    let cooldown_note = db.find_one("target_note", doc! {"scope_key": "cooldown:cd-1"}).unwrap();
    assert_eq!(cooldown_note.get_array("comments").unwrap().len(), 2);
}

/// upstream (`tests/qdash/api/routers/test_note.py`):
/// `test_migrate_legacy_target_notes_to_comments_relocates_prior_global_entries`.
#[test]
fn qdash_legacy_target_notes_to_comments_relocates_prior_global_entries() {
    let db = TestDb::new(server(), "seed_qdash_legacy_relocate");
    let journal = tempfile::tempdir().unwrap();
    let day = |d: i64| bson::DateTime::from_millis(1_767_225_600_000 + (d - 1) * 86_400_000);
    db.insert("chip", vec![note_chip("cd-1")]);
    db.insert("cooldown", vec![cooldown("cd-1", day(1), Some(day(2)))]);
    let mut qubit = note_qubit();
    qubit.insert("note", doc! {"content": "", "updated_by": "", "updated_at": Bson::Null});
    db.insert("qubit", vec![qubit]);
    db.insert(
        "target_note",
        vec![doc! {
            "_id": ObjectId::new(), "project_id": "note_project", "chip_id": "chip-1", "target_type": "qubit",
            "target_id": "21", "note": {"content": "", "updated_by": "", "updated_at": Bson::Null},
            "comments": [{"comment_id": "legacy-qubit-qubit-global", "content": "Previously migrated global summary",
                          "created_by": "alice", "created_at": day(3), "updated_by": "alice", "updated_at": Bson::Null}],
            "scope_type": "global", "scope_key": "global", "cooldown_id": Bson::Null, "scope_started_at": Bson::Null,
            "scope_ended_at": Bson::Null, "scope_source": "legacy_global",
            "system_info": {"created_at": day(1), "updated_at": day(1)},
        }],
    );
    init(&db, journal.path(), "1.8.25");
    let file = plugin("qdash-legacy-target-notes-to-comments");
    let stats = figures(&run_steps(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"]).remove(0));
    eprintln!("legacy target notes to comments, relocation: {stats}");
    assert_eq!(stats["comments_relocated"], 1);
    assert!(db.find_one("target_note", doc! {"scope_key": "global"}).is_none());
    let cooldown_note = db.find_one("target_note", doc! {"scope_key": "cooldown:cd-1"}).unwrap();
    let comments = cooldown_note.get_array("comments").unwrap();
    assert_eq!(comments.len(), 1);
    let comment = comments[0].as_document().unwrap();
    assert_eq!(
        comment.get_str("content").unwrap(),
        "Previously migrated global summary"
    );
    assert_eq!(
        comment.get_str("comment_id").unwrap(),
        "legacy-qubit-qubit-cooldown:cd-1"
    );
    assert_eq!(cooldown_note.get_str("scope_source").unwrap(), "current_cooldown");
}

/// The ported chain in version order: (plugin, version it stamps).
const CHAIN: [(&str, &str); 11] = [
    ("qdash-remove-best-data", "1.5.3"),
    ("qdash-fix-invalid-fidelity", "1.5.5"),
    ("qdash-slim-execution-history", "1.5.7-slim-execution-history"),
    ("qdash-remove-node-edge-info", "1.5.7"),
    ("qdash-remove-coupling-from-qubit", "1.7.2"),
    ("qdash-backfill-user-id", "1.8.0"),
    ("qdash-metric-notes-to-target-notes", METRIC_NOTES_STEP),
    ("qdash-backfill-forum-thread-numbers", "1.8.16"),
    ("qdash-migrate-forum-status", "1.8.22"),
    ("qdash-metric-notes-to-latest-cooldown-target-notes", "1.8.25"),
    ("qdash-legacy-target-notes-to-comments", "1.8.26"),
];

const ALICE_ID: &str = "usr_a11ce000000000000000000000000000";

/// A QDash database as a 1.5.2 installation that kept running until today
/// would have it: every field each migration of the chain is about, in the
/// collections upstream names.
struct Data {
    collections: Vec<(&'static str, Vec<Document>)>,
    /// `_id`s of the forum posts, by the name the test gives them.
    posts: std::collections::HashMap<&'static str, ObjectId>,
}

fn oid_n(n: u32) -> ObjectId {
    super::oid(n)
}

/// Midnight UTC of day `d` of July 2026.
fn day(d: i64) -> bson::DateTime {
    bson::DateTime::from_millis(1_782_864_000_000 + (d - 1) * 86_400_000)
}

fn generate() -> Data {
    let users = vec![
        doc! {"_id": oid_n(1), "username": "alice", "user_id": ALICE_ID},
        doc! {"_id": oid_n(2), "username": "bob"},
    ];
    let names = ["alice", "bob", "carol"];
    let mut qubit: Vec<Document> = (0..40u32)
        .map(|i| {
            let mut q = doc! {"_id": oid_n(100 + i), "project_id": "project-a", "chip_id": "64Q", "qid": i.to_string(), "username": names[i as usize % 3]};
            if i == 6 {
                q.insert("note", doc! {"content": "  Pinned 6  ", "updated_by": "bob", "updated_at": Bson::Null});
                q.insert("system_info", doc! {"created_at": day(1), "updated_at": day(1)});
            }
            if i % 3 == 0 {
                q.insert("best_data", doc! {"t1": {"value": 40.0 + f64::from(i), "unit": "us"}});
            }
            if i % 4 == 0 {
                q.insert("node_info", doc! {"position": {"x": i, "y": 0}, "fill": "#ffffff"});
            }
            q
        })
        .collect();
    for (j, qid) in ["024-Q025", "059-Q062", "000", "001", "07"].into_iter().enumerate() {
        let mut q =
            doc! {"_id": oid_n(150 + j as u32), "chip_id": "64Q", "qid": qid, "username": "alice", "user_id": ALICE_ID};
        if j == 2 {
            q.insert("best_data", doc! {});
        }
        if j == 0 {
            q.insert("node_info", Bson::Null);
        }
        qubit.push(q);
    }
    let qubit_history: Vec<Document> = (0..20u32)
        .map(|i| {
            let mut q = doc! {"_id": oid_n(200 + i), "chip_id": "64Q", "qid": (i % 8).to_string(), "username": "alice"};
            if i % 2 == 0 {
                q.insert("best_data", doc! {"x90_gate_fidelity": 0.99});
            }
            if i % 5 == 0 {
                q.insert("node_info", doc! {"size": 3});
            }
            q
        })
        .collect();
    let coupling: Vec<Document> = (0..15u32)
        .map(|i| {
            let mut c = doc! {"_id": oid_n(300 + i), "project_id": "project-a", "chip_id": "64Q", "qid": format!("{i}-{}", i + 1), "username": "bob"};
            if i % 3 == 0 {
                c.insert("best_data", doc! {"zx90_gate_fidelity": 0.97});
            }
            if i % 2 == 0 {
                c.insert("edge_info", doc! {"fill": "#000000"});
            }
            c
        })
        .collect();
    let coupling_history: Vec<Document> = (0..10u32)
        .map(|i| {
            let mut c =
                doc! {"_id": oid_n(400 + i), "chip_id": "64Q", "qid": "0-1", "username": "bob", "best_data": {}};
            if i % 3 == 0 {
                c.insert("edge_info", doc! {"size": 1});
            }
            c
        })
        .collect();
    let task_result_history: Vec<Document> = (0..30u32)
        .map(|i| {
            let status = if i % 3 == 2 { "running" } else { "completed" };
            let params = match i % 5 {
                0 => doc! {"average_gate_fidelity": {"value": 1.02 + f64::from(i) * 0.001, "unit": ""}, "t1": {"value": 30.0}},
                1 => doc! {"x90_fidelity": 0.99},
                2 => doc! {"bell_state_fidelity": {"value": 1.5}, "ZX90_Fidelity": 2},
                3 => doc! {},
                _ => doc! {"rabi_amplitude": {"value": 3.0}},
            };
            doc! {
                "_id": oid_n(500 + i), "task_id": format!("task-{i}"), "name": "CheckRabi", "qid": (i % 8).to_string(),
                "status": status, "output_parameters": params, "username": "alice",
            }
        })
        .collect();
    let execution_history: Vec<Document> = (0..25u32)
        .map(|i| {
            let mut e = doc! {"_id": oid_n(600 + i), "execution_id": format!("20260101-{i:03}"), "username": "bob"};
            match i % 4 {
                0 => {
                    e.insert("task_results", doc! {"task-1": {"status": "completed", "qid": "0"}});
                    e.insert("calib_data", doc! {"qubit": {"0": {"t1": 30.5}}, "coupling": {}});
                }
                1 => {
                    e.insert("task_results", doc! {});
                }
                2 => {
                    e.insert("calib_data", doc! {"qubit": {"1": {"t2": 12}}});
                }
                _ => {}
            }
            e
        })
        .collect();
    let mut posts = std::collections::HashMap::new();
    let mut forum = Vec::new();
    fn add(
        posts: &mut std::collections::HashMap<&'static str, ObjectId>,
        forum: &mut Vec<Document>,
        (name, project, minute, fields): (&'static str, &str, i64, Document),
    ) {
        let mut post = forum_post(project, minute, fields);
        post.insert("username", "alice");
        posts.insert(name, id_of(&post));
        forum.push(post);
    }
    for root in [
        ("a-r0", "project-a", 0, doc! {"number": 2, "labels": ["resolved"]}),
        ("a-r1", "project-a", 1, doc! {"is_closed": true}),
        (
            "a-r2",
            "project-a",
            2,
            doc! {"is_deleted": true, "labels": ["info", "anomaly"]},
        ),
        ("a-r3", "project-a", 3, doc! {"labels": []}),
        ("b-r0", "project-b", 4, doc! {"labels": ["Anomaly "]}),
    ] {
        add(&mut posts, &mut forum, root);
    }
    let r0 = posts["a-r0"].to_hex();
    let r1 = posts["a-r1"].to_hex();
    for reply in [
        (
            "a-r1-reply1",
            "project-a",
            5,
            doc! {"content": "reply", "parent_id": r1.clone()},
        ),
        (
            "a-r1-reply2",
            "project-a",
            6,
            doc! {"content": "reply", "parent_id": r1},
        ),
        (
            "a-r0-reply-numbered",
            "project-a",
            7,
            doc! {"content": "reply", "parent_id": r0.clone(), "number": 2},
        ),
        ("a-r0-reply", "project-a", 8, doc! {"content": "reply", "parent_id": r0}),
        (
            "a-orphan",
            "project-a",
            9,
            doc! {"content": "orphan", "parent_id": "gone"},
        ),
        (
            "a-orphan-deleted",
            "project-a",
            10,
            doc! {"content": "orphan", "parent_id": "gone", "is_deleted": true},
        ),
    ] {
        add(&mut posts, &mut forum, reply);
    }
    // a-r3 is a thread whose status was never written.
    let r3 = posts["a-r3"];
    forum.iter_mut().find(|p| id_of(p) == r3).unwrap().remove("status");
    Data {
        collections: vec![
            ("user", users),
            ("qubit", qubit),
            ("qubit_history", qubit_history),
            ("coupling", coupling),
            ("coupling_history", coupling_history),
            ("task_result_history", task_result_history),
            ("execution_history", execution_history),
            ("forum_post", forum),
            (
                "forum_counter",
                vec![doc! {"_id": oid_n(900), "project_id": "project-a", "value": 1}],
            ),
            ("metric_note", metric_notes()),
            // The chip's current cool-down id names none, so the latest
            // started one (cd-2) is the target notes' scope.
            (
                "chip",
                vec![
                    doc! {"_id": oid_n(940), "project_id": "project-a", "chip_id": "64Q", "username": "alice",
                    "user_id": ALICE_ID, "size": 64, "current_cooldown_id": "cd-9"},
                ],
            ),
            (
                "cooldown",
                vec![
                    doc! {"_id": oid_n(941), "project_id": "project-a", "cooldown_id": "cd-1", "cryo_id": "cryo-1",
                    "started_at": day(1), "ended_at": day(9), "chip_ids": ["64Q"]},
                    doc! {"_id": oid_n(942), "project_id": "project-a", "cooldown_id": "cd-2", "cryo_id": "cryo-1",
                    "started_at": day(10), "ended_at": Bson::Null, "chip_ids": ["64Q", "8Q"]},
                    doc! {"_id": oid_n(943), "project_id": "project-a", "cooldown_id": "cd-3", "cryo_id": "cryo-1",
                    "started_at": day(20), "ended_at": Bson::Null, "chip_ids": ["8Q"]},
                ],
            ),
            (
                "target_note",
                vec![doc! {
                    "_id": oid_n(950), "project_id": "project-a", "chip_id": "64Q", "target_type": "qubit", "target_id": "5",
                    "note": {"content": "CD2 summary", "updated_by": "bob", "updated_at": day(10)}, "comments": [],
                    "scope_type": "cooldown", "scope_key": "cooldown:cd-2", "cooldown_id": "cd-2",
                    "scope_started_at": day(10), "scope_ended_at": Bson::Null, "scope_source": "current_cooldown",
                    "system_info": {"created_at": day(10), "updated_at": day(10)},
                }],
            ),
        ],
        posts,
    }
}

/// Metric notes on qubits 5 (two), 6 and 7 (blank), coupling 0-1 and a
/// coupling that does not exist.
fn metric_notes() -> Vec<Document> {
    let note = |n: u32,
                target_type: &str,
                target_id: &str,
                metric: &str,
                note: Document,
                scope: Document,
                edited: i64| {
        let mut d = doc! {"_id": oid_n(800 + n), "project_id": "project-a", "chip_id": "64Q", "target_type": target_type,
        "target_id": target_id, "metric_key": metric, "note": note};
        d.extend(scope);
        d.insert("system_info", doc! {"created_at": day(1), "updated_at": day(edited)});
        d
    };
    let cd1 = doc! {"scope_type": "cooldown", "scope_key": "cooldown:cd-1", "cooldown_id": "cd-1",
    "scope_started_at": day(1), "scope_ended_at": day(9), "scope_source": "explicit_cooldown"};
    vec![
        note(
            0,
            "qubit",
            "5",
            "t2_echo",
            doc! {"content": "  T2 ok  ", "updated_by": "", "updated_at": Bson::Null},
            doc! {"scope_type": "time_range", "scope_key": ""},
            2,
        ),
        note(
            1,
            "qubit",
            "5",
            "t1",
            doc! {"content": "T1 drifts", "updated_by": "alice", "updated_at": day(3)},
            cd1.clone(),
            3,
        ),
        note(
            2,
            "qubit",
            "6",
            "t1",
            doc! {"content": "Six", "updated_by": "carol", "updated_at": day(4)},
            cd1.clone(),
            4,
        ),
        note(
            3,
            "qubit",
            "7",
            "t1",
            doc! {"content": "   ", "updated_by": "carol", "updated_at": day(4)},
            cd1.clone(),
            4,
        ),
        note(
            4,
            "coupling",
            "0-1",
            "zx90_gate_fidelity",
            doc! {"content": "ZX ok", "updated_by": "bob", "updated_at": day(5)},
            cd1.clone(),
            5,
        ),
        note(
            5,
            "coupling",
            "98-99",
            "zx90_gate_fidelity",
            doc! {"content": "Gone", "updated_by": "bob", "updated_at": day(5)},
            cd1,
            5,
        ),
    ]
}

/// The reference model: every step applied to the generated documents by
/// hand, and the figures each step must report.
struct Model {
    after: Vec<(&'static str, Vec<Document>)>,
    figures: Vec<serde_json::Value>,
    /// The figures of each step's dry-run preview (against the data as it
    /// was): the execute's, but for 1.8.26, which finds the notes earlier
    /// steps write.
    dry: Vec<serde_json::Value>,
}

fn count(docs: &[Document], pred: impl Fn(&Document) -> bool) -> usize {
    docs.iter().filter(|d| pred(d)).count()
}

fn model(data: &Data) -> Model {
    use serde_json::json;
    let mut c: std::collections::BTreeMap<&str, Vec<Document>> = data.collections.iter().cloned().collect();
    let mut figures = Vec::new();

    // 1.5.3 remove-best-data.
    let mut stats = serde_json::Map::new();
    for name in ["qubit", "qubit_history", "coupling", "coupling_history"] {
        let docs = c.get_mut(name).unwrap();
        stats.insert(name.into(), json!(count(docs, |d| d.contains_key("best_data"))));
        for d in docs.iter_mut() {
            d.remove("best_data");
        }
    }
    figures.push(serde_json::Value::Object(stats));

    // 1.5.5 fix-invalid-fidelity.
    let trh = c.get_mut("task_result_history").unwrap();
    let checked = count(trh, |d| d.get_str("status").ok() == Some("completed"));
    let (mut invalid, mut details) = (0, Vec::new());
    for d in trh.iter_mut().filter(|d| d.get_str("status").ok() == Some("completed")) {
        let params = d.get_document("output_parameters").unwrap().clone();
        let bad: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k.to_lowercase().contains("fidelity"))
            .filter_map(|(k, v)| {
                let v = match v {
                    Bson::Document(p) => p.get("value").cloned(),
                    other => Some(other.clone()),
                }?;
                let v = match v {
                    Bson::Double(x) => x,
                    Bson::Int32(n) => f64::from(n),
                    _ => return None,
                };
                (v > 1.0).then(|| (k.clone(), format!("{:.2}%", v * 100.0)))
            })
            .collect();
        if bad.is_empty() {
            continue;
        }
        invalid += 1;
        if details.len() < 10 {
            let params: serde_json::Map<String, serde_json::Value> =
                bad.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            details.push(json!({"task_id": d.get_str("task_id").unwrap(), "name": "CheckRabi",
                "qid": d.get_str("qid").unwrap(), "invalid_params": params}));
        }
        let listed: Vec<String> = bad.iter().map(|(k, v)| format!("{k}={v}")).collect();
        d.insert("status", "failed");
        d.insert("message", format!("Fidelity exceeds 100%: {}", listed.join(", ")));
    }
    figures.push(json!({"total_checked": checked, "invalid_found": invalid, "updated": invalid, "details": details}));

    // 1.5.7-slim-execution-history: every figure here is small enough that
    // the size estimate rounds to 0.0 MiB.
    let eh = c.get_mut("execution_history").unwrap();
    let non_empty = |d: &Document, f: &str| d.get_document(f).is_ok_and(|x| !x.is_empty());
    figures.push(json!({
        "total_documents": eh.len(),
        "with_task_results": count(eh, |d| non_empty(d, "task_results")),
        "with_calib_data": count(eh, |d| non_empty(d, "calib_data")),
        "updated": count(eh, |d| d.contains_key("task_results") || d.contains_key("calib_data")),
        "estimated_size_saved_mb": 0.0,
    }));
    for d in eh.iter_mut() {
        d.remove("task_results");
        d.remove("calib_data");
    }

    // 1.5.7 remove-node-edge-info.
    let mut stats = serde_json::Map::new();
    for (name, field) in [
        ("qubit", "node_info"),
        ("qubit_history", "node_info"),
        ("coupling", "edge_info"),
        ("coupling_history", "edge_info"),
    ] {
        let docs = c.get_mut(name).unwrap();
        stats.insert(name.into(), json!(count(docs, |d| d.contains_key(field))));
        for d in docs.iter_mut() {
            d.remove(field);
        }
    }
    figures.push(serde_json::Value::Object(stats));

    // 1.7.2 remove-coupling-from-qubit.
    let qubit = c.get_mut("qubit").unwrap();
    let qid = |d: &Document| d.get_str("qid").unwrap().to_string();
    let coupling_qids: Vec<String> = qubit.iter().map(qid).filter(|q| q.contains('-')).collect();
    let padded: Vec<String> = qubit
        .iter()
        .map(qid)
        .filter(|q| q.len() > 1 && q.starts_with('0') && q.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let sample = |qids: &[String]| -> Vec<serde_json::Value> {
        qids.iter().map(|q| json!({"qid": q, "chip_id": "64Q"})).collect()
    };
    figures.push(json!({
        "total_qubit_documents": qubit.len(),
        "coupling_qids": coupling_qids.len(),
        "zero_padded_duplicates": padded.len(),
        "total_invalid": coupling_qids.len() + padded.len(),
        "deleted": coupling_qids.len() + padded.len(),
        "sample_coupling_qids": sample(&coupling_qids),
        "sample_padded_qids": sample(&padded),
    }));
    qubit.retain(|d| !coupling_qids.contains(&qid(d)) && !padded.contains(&qid(d)));

    // 1.8.0 backfill-user-id (the collections this database has; the other
    // 15 of upstream's 22 are absent and report 0).
    let bob = super::qdash::expected_id(&Bson::ObjectId(oid_n(2)));
    c.get_mut("user").unwrap()[1].insert("user_id", bob.clone());
    let ids = [("alice", ALICE_ID.to_string()), ("bob", bob)];
    let mut collections = serde_json::Map::new();
    let mut unresolved = serde_json::Map::new();
    for name in [
        "forum_post",
        "task_result_history",
        "execution_history",
        "qubit",
        "qubit_history",
        "coupling",
        "coupling_history",
    ] {
        let (mut matched, mut updated, mut missing_users) = (0, 0, serde_json::Map::new());
        for d in c.get_mut(name).unwrap() {
            if !matches!(d.get("user_id"), None | Some(Bson::Null)) {
                continue;
            }
            matched += 1;
            let username = d.get_str("username").unwrap().to_string();
            match ids.iter().find(|(u, _)| *u == username) {
                Some((_, id)) => {
                    updated += 1;
                    d.insert("user_id", id.clone());
                }
                None => {
                    let n = missing_users
                        .get(&username)
                        .and_then(|v: &serde_json::Value| v.as_u64())
                        .unwrap_or(0);
                    missing_users.insert(username, json!(n + 1));
                }
            }
        }
        collections.insert(name.into(), json!({"matched": matched, "updated": updated}));
        if !missing_users.is_empty() {
            unresolved.insert(name.into(), serde_json::Value::Object(missing_users));
        }
    }
    figures.push(
        json!({"users_without_user_id": 1, "users_updated": 1, "collections": collections, "unresolved": unresolved}),
    );

    // 1.8.16-metric-notes-to-target-notes, written out by hand from the rules.
    let section = |notes: &[(&str, &str, &str, &str, &str)]| {
        let mut s = "<!-- qdash:migrated-metric-notes -->\n## Legacy metric notes".to_string();
        for (metric, scope, by, at, content) in notes {
            s.push_str(&format!(
                "\n\n### {metric}\n- Scope: `{scope}`\n- Last edited: {by} at {at}\n\n{content}"
            ));
        }
        s
    };
    let set_note = |docs: &mut Vec<Document>, id: ObjectId, content: String, by: &str, at: bson::DateTime| {
        let d = docs.iter_mut().find(|d| d.get_object_id("_id").unwrap() == id).unwrap();
        d.insert("note", doc! {"content": content, "updated_by": by, "updated_at": at});
    };
    let five = section(&[
        ("t1", "cooldown:cd-1", "alice", "2026-07-03T00:00:00", "T1 drifts"),
        ("t2_echo", "time_range", "unknown user", "unknown time", "T2 ok"),
    ]);
    set_note(c.get_mut("qubit").unwrap(), oid_n(105), five, "alice", day(3));
    let six = section(&[("t1", "cooldown:cd-1", "carol", "2026-07-04T00:00:00", "Six")]);
    set_note(
        c.get_mut("qubit").unwrap(),
        oid_n(106),
        format!("Pinned 6\n\n---\n\n{six}"),
        "carol",
        day(4),
    );
    let zx = section(&[(
        "zx90_gate_fidelity",
        "cooldown:cd-1",
        "bob",
        "2026-07-05T00:00:00",
        "ZX ok",
    )]);
    set_note(c.get_mut("coupling").unwrap(), oid_n(300), zx, "bob", day(5));
    let target = |t: &str, i: &str, n: u32, action: &str| json!({"project_id": "project-a", "chip_id": "64Q", "target_type": t, "target_id": i, "metric_note_count": n, "action": action});
    figures.push(json!({
        "metric_notes_found": 5, "targets_found": 4, "targets_updated": 3, "targets_skipped_already_migrated": 0,
        "targets_missing": 1,
        "targets": [target("coupling", "0-1", 1, "updated"), target("coupling", "98-99", 1, "missing_target"),
                    target("qubit", "5", 2, "updated"), target("qubit", "6", 1, "updated")],
    }));

    // 1.8.16 backfill-forum-thread-numbers: written out by hand from the
    // rules (roots in creation order, taken numbers skipped).
    let p = &data.posts;
    let numbers = [
        ("a-r1", 1),
        ("a-r2", 3),
        ("a-r3", 4),
        ("b-r0", 1),
        ("a-r1-reply1", 1),
        ("a-r1-reply2", 1),
        ("a-r0-reply", 2),
    ];
    let forum = c.get_mut("forum_post").unwrap();
    for (name, n) in numbers {
        forum
            .iter_mut()
            .find(|d| id_of(d) == p[name])
            .unwrap()
            .insert("number", n);
    }
    c.get_mut("forum_counter").unwrap()[0].insert("value", 4);
    figures.push(json!({
        "projects_found": 2, "root_threads_missing_number": 4, "root_threads_updated": 4, "replies_updated": 3,
        "orphan_replies_found": 1, "counters_updated": 2, "duplicate_root_numbers": {},
        "projects": [
            {"project_id": "project-a", "root_threads": 4, "root_threads_missing_number": 3, "replies_to_update": 3,
             "orphan_replies": 1, "duplicate_root_numbers": {}, "max_number": 4, "counter_value": 4, "action": "updated"},
            {"project_id": "project-b", "root_threads": 1, "root_threads_missing_number": 1, "replies_to_update": 0,
             "orphan_replies": 0, "duplicate_root_numbers": {}, "max_number": 1, "counter_value": 1, "action": "updated"},
        ],
    }));

    // 1.8.22 migrate-forum-status.
    let forum = c.get_mut("forum_post").unwrap();
    let post =
        |forum: &mut Vec<Document>, name: &str| -> usize { forum.iter().position(|d| id_of(d) == p[name]).unwrap() };
    let i = post(forum, "a-r0");
    forum[i].insert("labels", Vec::<String>::new());
    forum[i].insert("status", "resolved");
    let i = post(forum, "a-r1");
    forum[i].insert("status", "resolved");
    forum[i].remove("is_closed");
    let i = post(forum, "a-r2");
    forum[i].insert("labels", vec!["review"]);
    let i = post(forum, "a-r3");
    forum[i].insert("status", "open");
    let i = post(forum, "b-r0");
    forum[i].insert("labels", vec!["anomaly"]);
    figures.push(json!({
        "posts_found": forum.len(), "posts_to_update": 5, "status_from_is_closed": 1, "status_from_resolved_label": 1,
        "status_defaulted_open": 1, "labels_changed": 3, "is_closed_removed": 1,
    }));
    // 1.8.25 metric-notes-to-latest-cooldown-target-notes: the same groups,
    // into cd-2's target notes (qubit 5's exists, the others are inserted).
    let section = |notes: &[(&str, &str, &str, &str, &str)]| {
        let mut s =
            "<!-- qdash:migrated-metric-notes-to-latest-cooldown -->\n## Migrated legacy metric notes".to_string();
        for (metric, scope, by, at, content) in notes {
            s.push_str(&format!(
                "\n\n### {metric}\n- Scope: `{scope}`\n- Last edited: {by} at {at}\n\n{content}"
            ));
        }
        s
    };
    let five = section(&[
        ("t1", "cooldown:cd-1", "alice", "2026-07-03T00:00:00", "T1 drifts"),
        ("t2_echo", "time_range", "unknown user", "unknown time", "T2 ok"),
    ]);
    let notes = c.get_mut("target_note").unwrap();
    notes[0].insert(
        "note",
        doc! {"content": format!("CD2 summary\n\n---\n\n{five}"), "updated_by": "alice", "updated_at": day(3)},
    );
    notes[0].insert("scope_source", "explicit_cooldown");
    let inserted = |target_type: &str, target_id: &str, content: String, by: &str, at: bson::DateTime| {
        doc! {
            "project_id": "project-a", "chip_id": "64Q", "target_type": target_type, "target_id": target_id,
            "note": {"content": content, "updated_by": by, "updated_at": at}, "comments": [],
            "scope_type": "cooldown", "scope_key": "cooldown:cd-2", "cooldown_id": "cd-2",
            "scope_started_at": day(10), "scope_ended_at": Bson::Null, "scope_source": "explicit_cooldown",
        }
    };
    notes.push(inserted(
        "coupling",
        "0-1",
        section(&[(
            "zx90_gate_fidelity",
            "cooldown:cd-1",
            "bob",
            "2026-07-05T00:00:00",
            "ZX ok",
        )]),
        "bob",
        day(5),
    ));
    notes.push(inserted(
        "qubit",
        "6",
        section(&[("t1", "cooldown:cd-1", "carol", "2026-07-04T00:00:00", "Six")]),
        "carol",
        day(4),
    ));
    let target = |t: &str, i: &str, n: u32, action: &str| {
        let mut info = json!({"project_id": "project-a", "chip_id": "64Q", "target_type": t, "target_id": i, "metric_note_count": n, "action": action});
        if action == "updated" {
            info["cooldown_id"] = json!("cd-2");
        }
        info
    };
    figures.push(json!({
        "metric_notes_found": 5, "targets_found": 4, "targets_updated": 3, "targets_skipped_already_migrated": 0,
        "targets_missing": 1, "targets_without_cooldown": 0, "metric_notes_deleted": 0,
        "targets": [target("coupling", "0-1", 1, "updated"), target("coupling", "98-99", 1, "missing_target"),
                    target("qubit", "5", 2, "updated"), target("qubit", "6", 1, "updated")],
    }));

    // 1.8.26 legacy-target-notes-to-comments, from the state the steps
    // before left: every target note's summary, then every qubit's and
    // coupling's note, becomes a comment in the cd-2 target note; notes clear.
    let empty = || doc! {"content": "", "updated_by": "", "updated_at": Bson::Null};
    let mut targets = Vec::new();
    let comment = |id: String, note: &Document| {
        doc! {"comment_id": id, "content": note.get_str("content").unwrap().trim(),
        "created_by": note.get_str("updated_by").unwrap(), "created_at": note.get("updated_at").unwrap().clone(),
        "updated_by": note.get_str("updated_by").unwrap(), "updated_at": Bson::Null}
    };
    let info = |t: &str, i: &str, source: &str| {
        json!({"project_id": "project-a", "chip_id": "64Q", "target_type": t, "target_id": i,
               "scope_key": "cooldown:cd-2", "source": source, "action": "migrated"})
    };
    let mut comments: std::collections::BTreeMap<(String, String), Vec<Bson>> = Default::default();
    for note in c.get_mut("target_note").unwrap() {
        let (t, i) = (
            note.get_str("target_type").unwrap().to_string(),
            note.get_str("target_id").unwrap().to_string(),
        );
        let id = format!("legacy-target-note-{t}-cooldown:cd-2");
        comments
            .entry((t.clone(), i.clone()))
            .or_default()
            .push(comment(id, note.get_document("note").unwrap()).into());
        note.insert("note", empty());
        targets.push(info(&t, &i, "target_note"));
    }
    for (collection, t) in [("qubit", "qubit"), ("coupling", "coupling")] {
        for d in c.get_mut(collection).unwrap() {
            let Ok(note) = d.get_document("note") else { continue };
            if note.get_str("content").unwrap().trim().is_empty() {
                continue;
            }
            let i = d.get_str("qid").unwrap().to_string();
            let id = format!("legacy-{t}-{t}-cooldown:cd-2");
            comments
                .get_mut(&(t.to_string(), i.clone()))
                .unwrap()
                .push(comment(id, note).into());
            d.insert("note", empty());
            targets.push(info(t, &i, t));
        }
    }
    for note in c.get_mut("target_note").unwrap() {
        let key = (
            note.get_str("target_type").unwrap().to_string(),
            note.get_str("target_id").unwrap().to_string(),
        );
        note.insert("comments", comments.remove(&key).unwrap());
    }
    let n = targets.len();
    figures.push(
        json!({"legacy_notes_found": n, "comments_created": n, "comments_relocated": 0, "notes_cleared": n,
        "notes_skipped_already_migrated": 0, "targets": targets}),
    );
    // Its preview sees the data as generated: cd-2's summary of qubit 5, and
    // qubit 6's pinned note, whose target note would be created.
    let mut dry = figures.clone();
    let mut preview = vec![info("qubit", "5", "target_note"), info("qubit", "6", "qubit")];
    preview.sort_by_key(|v| v.to_string());
    *dry.last_mut().unwrap() = json!({"legacy_notes_found": 2, "comments_created": 2, "comments_relocated": 0,
        "notes_cleared": 2, "notes_skipped_already_migrated": 0, "targets": preview});

    // The counter upserted for project-b has a server-made _id: compared without it.
    let mut after: Vec<(&'static str, Vec<Document>)> = Vec::new();
    for (name, _) in &data.collections {
        after.push((name, c.remove(name).unwrap()));
    }
    Model { after, figures, dry }
}

/// The 1.8.26 step's `targets` as a set: target notes are taken in `_id`
/// order, and the ones 1.8.25 inserted have `_id`s godwit derived.
fn unordered(step: usize, mut figures: serde_json::Value) -> serde_json::Value {
    if CHAIN[step].0 == "qdash-legacy-target-notes-to-comments" {
        figures["targets"]
            .as_array_mut()
            .unwrap()
            .sort_by_key(|v| v.to_string());
    }
    figures
}

/// The backfill's summary, narrowed to the collections this database has.
fn narrow(step: usize, figures: serde_json::Value) -> serde_json::Value {
    let mut figures = unordered(step, figures);
    if CHAIN[step].0 != "qdash-backfill-user-id" {
        return figures;
    }
    let all = figures["collections"].as_object_mut().unwrap();
    assert_eq!(all.len(), 22, "upstream's 22 collections: {all:?}");
    all.retain(|_, v| v != &serde_json::json!({"matched": 0, "updated": 0}));
    figures
}

#[test]
fn qdash_chain_upgrades_an_init_stamped_database_through_every_ported_migration() {
    let started = std::time::Instant::now();
    let db = TestDb::new(server(), "seed_qdash_chain");
    let data = generate();
    for (name, docs) in &data.collections {
        db.insert(name, docs.clone());
    }
    let m = model(&data);
    let journal = tempfile::tempdir().unwrap();
    let chain = tempfile::tempdir().unwrap();
    for (name, _) in CHAIN {
        std::fs::copy(plugin(name), chain.path().join(format!("{name}.wasm"))).unwrap();
    }
    let dir = chain.path().to_str().unwrap();

    let out = crate::support::godwit(&["plan", "--no-cache", dir]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("chain of 11 plugins is consistent"),
        "{}",
        stdout(&out)
    );

    init(&db, journal.path(), "1.5.2");
    let snapshot = db.dump();

    // Dry upgrade: every step previewed against today's data. The steps touch
    // different fields (and the qubits the 1.7.2 step deletes hold ids the
    // backfill keeps), so each preview reports what its execute will.
    let dry = run_steps(&db, journal.path(), &["upgrade", dir]);
    assert_eq!(dry.len(), CHAIN.len());
    for (i, step) in dry.iter().enumerate() {
        assert_eq!(step["version"], CHAIN[i].1, "{step:#}");
        assert_eq!(
            narrow(i, figures(step)),
            unordered(i, m.dry[i].clone()),
            "dry run of {}",
            CHAIN[i].0
        );
    }
    assert_eq!(db.dump(), snapshot, "a dry upgrade writes nothing");

    // Execute, SIGKILLed in the middle of the first step, then resumed.
    let marker = super::kill_midway(
        &db,
        journal.path(),
        &[
            "upgrade",
            dir,
            "--execute",
            "--batch-size",
            "4",
            "--max-docs-per-sec",
            "40",
            "--lease",
            "3",
        ],
        |m| m.get_i64("seq").unwrap_or(0) >= 3,
    );
    eprintln!("qdash chain upgrade killed at {marker}");
    let exec = run_steps(&db, journal.path(), &["upgrade", dir, "--execute"]);
    assert_eq!(exec.len(), CHAIN.len(), "the resumed first step, then the ten others");
    assert_eq!(exec[0]["resumed"], true);
    for (i, step) in exec.iter().enumerate() {
        assert_eq!(step["stamped_version"], CHAIN[i].1, "{step:#}");
        assert_eq!(
            narrow(i, figures(step)),
            unordered(i, m.figures[i].clone()),
            "execute of {}",
            CHAIN[i].0
        );
        eprintln!("{} {}: {}", CHAIN[i].0, CHAIN[i].1, figures(step));
    }

    // Every final document as the model says.
    for (name, expected) in &m.after {
        let mut found = db.find_all(name);
        if *name == "forum_counter" {
            assert_eq!(found.len(), 2, "project-b's counter was created");
            let created = found.remove(1);
            assert_eq!(created.get_str("project_id").unwrap(), "project-b");
            assert_eq!(created.get("value"), Some(&Bson::Int32(1)));
        }
        if *name == "target_note" {
            // Inserted target notes get an _id godwit derives and
            // system_info at the run's start; so does the updated one.
            for note in &mut found {
                let info = note.remove("system_info").unwrap();
                let at = info
                    .as_document()
                    .unwrap()
                    .get_datetime("updated_at")
                    .unwrap()
                    .timestamp_millis();
                let age = bson::DateTime::now().timestamp_millis() - at;
                assert!(
                    (0..600_000).contains(&age),
                    "system_info.updated_at is the run's start, {age} ms ago"
                );
                if note.get_object_id("_id").unwrap() != oid_n(950) {
                    note.remove("_id");
                }
            }
            let mut expected = expected.clone();
            expected[0].remove("system_info");
            let key = |n: &Document| n.get_str("target_id").unwrap().to_string();
            found.sort_by_key(key);
            expected.sort_by_key(key);
            assert_eq!(found, expected, "target_note after the chain");
            continue;
        }
        if *name == "qubit" {
            // Qubit 6's system_info.updated_at is the metric notes run's start.
            let six = found
                .iter_mut()
                .find(|d| d.get_object_id("_id").unwrap() == oid_n(106))
                .unwrap();
            let at = six
                .get_document("system_info")
                .unwrap()
                .get_datetime("updated_at")
                .unwrap()
                .timestamp_millis();
            let age = bson::DateTime::now().timestamp_millis() - at;
            assert!(
                (0..600_000).contains(&age),
                "system_info.updated_at is the run's start, {age} ms ago"
            );
            six.get_document_mut("system_info")
                .unwrap()
                .insert("updated_at", day(1));
        }
        assert_eq!(&found, expected, "{name} after the chain");
    }
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    let versions: Vec<&str> = schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| h.as_document().unwrap().get_str("version").unwrap())
        .collect();
    let mut expected = vec!["1.5.2"];
    expected.extend(CHAIN.iter().map(|(_, v)| *v));
    assert_eq!(versions, expected);
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("is at version 1.8.26, the head"),
        "{}",
        stdout(&out)
    );
    crate::support::verify_journal(journal.path());
    eprintln!("qdash chain: 11 steps, {:.1} s", started.elapsed().as_secs_f64());
}
