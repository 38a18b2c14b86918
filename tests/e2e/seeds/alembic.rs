//! Seed 004, the Alembic revision-chain repair: a `down_revision` pointing at
//! a file name instead of a revision, two revisions claiming one version, a
//! forked graph - `godwit plan` names every problem and the files at once and
//! `upgrade` refuses before touching the database; and revision names far
//! longer than Alembic's 32-character column are stored and stamped intact.
//! (`chain.rs` covers each defect alone; these are the seed's combinations.)

use super::{json_documents, kill_midway};
use crate::db::{TestDb, server};
use crate::support::{command, godwit, plugin, stderr, stdout, verify_journal};
use bson::doc;

const LONG_NAME: &str = "merge_notifications_into_activitylog_0915_after_expand_alembic_version_len_0915_and_cleanup_mail_status_exclusivity";
const LONG_VERSION: &str = "1.3.0-merge-notifications-into-activitylog-0915+expand-verlen-0915.db-timeouts-relax-hotfix-0911.add-fk-cleanup-0907";

fn chain_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

#[test]
fn alembic_broken_graph_plan_names_each_problem_and_file_and_upgrade_refuses() {
    // The QA branch before the fix: a misreferenced down_revision (misref),
    // a second revision for 1.1.0 (dup) and a branch off 1.0.0 (fork).
    let dir = chain_dir(&[
        "chain-a",
        "chain-b",
        "chain-c",
        "chain-misref",
        "chain-dup",
        "chain-branch",
    ]);
    let f = |name: &str| dir.path().join(format!("{name}.wasm")).display().to_string();
    let out = godwit(&["plan", "--no-cache", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        format!(
            "gap: {} (1.3.0) requires =1.2.0-cleanup-mail-status-exclusivity-py, but the version before it is 1.2.0",
            f("chain-misref")
        ),
        format!("duplicate version 1.1.0: {}, {}", f("chain-b"), f("chain-dup")),
        format!(
            "more than one head: {}, {}, {}",
            f("chain-branch"),
            f("chain-c"),
            f("chain-misref")
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    // The same problems for automation.
    let out = godwit(&["plan", "--no-cache", "--json", dir.path().to_str().unwrap()]);
    let plan = json_documents(&stdout(&out)).remove(0);
    let kinds: Vec<&str> = plan["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["problem"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"gap") && kinds.contains(&"duplicate") && kinds.contains(&"multiple_heads"),
        "{plan:#}"
    );

    // Repairing only the misreference still leaves the duplicate and the fork.
    let partly = chain_dir(&["chain-a", "chain-b", "chain-c", "chain-dup", "chain-branch"]);
    let out = godwit(&["plan", "--no-cache", partly.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(11));
    assert!(!stderr(&out).contains("chain-misref"), "{}", stderr(&out));

    // upgrade refuses the broken graph before any write.
    let db = TestDb::new(server(), "seed_alembic_refuse");
    db.insert("items", (0..10).map(|i| doc! {"_id": i}).collect());
    let journal = tempfile::tempdir().unwrap();
    assert!(
        command(&db, journal.path(), &["init", "--version", "0.9.0"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let before = db.dump();
    let out = command(
        &db,
        journal.path(),
        &["upgrade", dir.path().to_str().unwrap(), "--execute"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains(&f("chain-misref")), "{}", stderr(&out));
    assert_eq!(db.dump(), before, "nothing written");
}

#[test]
fn alembic_long_revision_names_are_stored_and_stamped_intact_after_an_interrupted_upgrade() {
    assert!(LONG_NAME.len() > 100 && LONG_VERSION.len() > 100);
    let dir = chain_dir(&["chain-a", "chain-b", "chain-c", "chain-longname"]);
    let path = dir.path().to_str().unwrap();
    let out = godwit(&["plan", "--no-cache", "--json", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = json_documents(&stdout(&out)).remove(0);
    let head = &plan["chain"][3];
    assert_eq!(
        (head["name"].as_str(), head["version"].as_str()),
        (Some(LONG_NAME), Some(LONG_VERSION))
    );

    let db = TestDb::new(server(), "seed_alembic_long");
    let items = 600;
    db.insert(
        "items",
        (0..items)
            .map(|i| doc! {"_id": i, "subject": format!("mail {i}")})
            .collect(),
    );
    let journal = tempfile::tempdir().unwrap();
    assert!(
        command(&db, journal.path(), &["init", "--version", "0.9.0"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let marker = kill_midway(
        &db,
        journal.path(),
        &[
            "upgrade",
            path,
            "--execute",
            "--batch-size",
            "10",
            "--max-docs-per-sec",
            "400",
            "--lease",
            "3",
        ],
        |m| m.get_i64("seq").unwrap_or(0) >= 10,
    );
    eprintln!("alembic upgrade killed at {marker}");
    let out = command(&db, journal.path(), &["upgrade", path, "--execute", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let steps = json_documents(&stdout(&out));
    assert_eq!(steps[0]["resumed"], true, "the interrupted step is resumed first");
    let last = steps.last().unwrap();
    assert_eq!(
        (last["plugin"].as_str(), last["stamped_version"].as_str()),
        (Some(LONG_NAME), Some(LONG_VERSION))
    );

    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), LONG_VERSION);
    let history = schema.get_array("history").unwrap();
    let entry = history.last().unwrap().as_document().unwrap();
    assert_eq!(entry.get_str("plugin").unwrap(), LONG_NAME);
    assert_eq!(entry.get_str("version").unwrap(), LONG_VERSION);
    let versions: Vec<&str> = history
        .iter()
        .map(|h| h.as_document().unwrap().get_str("version").unwrap())
        .collect();
    assert_eq!(versions, ["0.9.0", "1.0.0", "1.1.0", "1.2.0", LONG_VERSION]);
    for item in db.find_all("items") {
        assert_eq!(item.get_str("v4").unwrap(), LONG_VERSION, "{item}");
        assert_eq!(item.get_str("v1").unwrap(), "1.0.0");
    }
    // Read back intact by status and the journal, and a second upgrade is a no-op.
    let out = command(&db, journal.path(), &["status", "--json"]).output().unwrap();
    let status = json_documents(&stdout(&out)).remove(0);
    assert_eq!(status["version"], LONG_VERSION);
    let out = command(&db, journal.path(), &["upgrade", path, "--execute"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains(&format!("is at version {LONG_VERSION}, the head")),
        "{}",
        stdout(&out)
    );
    let journal_list = godwit(&["journal", "list", "--journal", journal.path().to_str().unwrap()]);
    assert!(stdout(&journal_list).contains(LONG_NAME), "{}", stdout(&journal_list));
    verify_journal(journal.path());
}
