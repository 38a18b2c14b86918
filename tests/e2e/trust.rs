//! What the operator is shown is what happens: a plugin is never told the
//! run's mode, summaries and history count the documents actions touch, and
//! the schema version is trusted (and overwritten) only when godwit wrote it.

use crate::db::{TestDb, block_on, server};
use crate::support::{command, plugin, run_ok, stderr, stdout};
use bson::{Document, doc};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// Writes as another client of the server would (an application, a tool).
fn other_client(db: &TestDb, collection: &str, write: impl AsyncFnOnce(mongodb::Collection<Document>)) {
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        write(client.database(&db.name).collection::<Document>(collection)).await;
    });
}

fn update(db: &TestDb, filter: Document, update: Document) {
    other_client(db, "godwit_metadata", async |c| {
        c.update_one(filter, update).await.unwrap();
    });
}

fn schema(db: &TestDb) -> Document {
    db.find_one("godwit_metadata", doc! {"_id": "schema"})
        .expect("schema document")
}

fn error_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("error:")).collect()
}

#[test]
fn a_plugin_that_acts_only_when_executed_shows_every_document_in_the_dry_run() {
    let db = TestDb::new(server(), "twofaced");
    db.insert("things", (0..500).map(|i| doc! {"_id": i, "kind": "a"}).collect());
    db.insert("audit", (0..40).map(|i| doc! {"_id": i, "seen": i % 4 == 0}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("two-faced");
    let file = file.to_str().unwrap();
    let before = db.dump();

    let dry = run_ok(&db, journal.path(), &["run", file]);
    assert_eq!(db.dump(), before, "a dry run writes nothing");
    let pass = &dry["summary"]["passes"][0];
    assert_eq!(pass["deletes"], 10, "one pinned multi delete per batch of 50");
    assert_eq!(pass["touched"]["deleted"], 500, "the dry run names every document");
    assert_eq!(
        dry["summary"]["finish"]["touched"]["updated"], 30,
        "the unpinned update_many of finish, counted in the database"
    );
    let text = command(&db, journal.path(), &["run", file, "--new-run"])
        .output()
        .unwrap();
    assert!(
        stdout(&text).contains("documents: would update at most 0, would insert at most 0, would delete at most 500"),
        "{}",
        stdout(&text)
    );

    let exec = run_ok(&db, journal.path(), &["run", file, "--execute", "--skip-verify"]);
    assert_eq!(exec["summary"]["passes"][0]["touched"]["deleted"], 500);
    assert_eq!(exec["summary"]["finish"]["touched"]["updated"], 30);
    assert!(db.find_all("things").is_empty());
    let history = schema(&db).get_array("history").unwrap().clone();
    let counts = history
        .last()
        .unwrap()
        .as_document()
        .unwrap()
        .get_document("counts")
        .unwrap()
        .clone();
    assert_eq!(counts.get_i64("deletes").unwrap(), 10, "actions");
    assert_eq!(counts.get_i64("documents_deleted").unwrap(), 500, "documents");
    assert_eq!(counts.get_i64("documents_updated").unwrap(), 30);
}

#[test]
fn a_schema_version_changed_outside_godwit_is_not_trusted() {
    let db = TestDb::new(server(), "forged");
    db.insert("counters", (0..5_i64).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let init = command(&db, journal.path(), &["init", "--version", "1.0.0"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    // A plugin of an older godwit (or a hand) forges the version.
    update(&db, doc! {"_id": "schema"}, doc! {"$set": {"version": "99.0.0"}});
    let before = db.dump();

    let file = plugin("increment");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let errors = error_lines(&stderr(&out)).join("\n");
    assert!(
        errors.contains("says version \"99.0.0\", but its last history entry")
            && errors.contains("godwit init --version X --force"),
        "{errors}"
    );
    assert_eq!(error_lines(&stderr(&out)).len(), 1);
    assert_eq!(db.dump(), before, "nothing written");

    let status = command(&db, journal.path(), &["status"]).output().unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("warning: database"), "{}", stdout(&status));

    // The operator repairs it; then the run goes through.
    let repair = command(&db, journal.path(), &["init", "--version", "1.0.0", "--force"])
        .output()
        .unwrap();
    assert!(repair.status.success(), "{}", stderr(&repair));
    run_ok(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"]);
    assert_eq!(schema(&db).get_str("version").unwrap(), "2.0.0");
}

#[test]
fn a_version_stamped_by_another_tool_during_the_run_is_not_overwritten() {
    let db = TestDb::new(server(), "moved");
    db.insert("counters", (0..30_i64).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let pause = journal.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let file = plugin("increment");
    let mut child = command(
        &db,
        journal.path(),
        &[
            "run",
            file.to_str().unwrap(),
            "--execute",
            "--pause-file",
            pause.to_str().unwrap(),
        ],
    )
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let paused = line.contains("paused:");
        seen.push(line);
        if paused {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("paused:")), "{seen:?}");
    // Another tool stamps the database while the run is paused, keeping
    // its schema document consistent.
    other_client(&db, "godwit_metadata", async |c| {
        c.insert_one(
            doc! {"_id": "schema", "version": "1.5.0", "history": [{"run_id": "other-tool", "version": "1.5.0"}]},
        )
        .await
        .unwrap();
    });
    std::fs::remove_file(&pause).unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(9), "{rest:?}");
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{rest:?}");
    assert!(
        errors[0].contains("the schema version changed while run")
            && errors[0].contains("none when it was checked, now 1.5.0"),
        "{errors:?}"
    );
    assert_eq!(schema(&db).get_str("version").unwrap(), "1.5.0", "not overwritten");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_forged_history_entry_for_the_run_does_not_stand_in_for_its_stamp() {
    let db = TestDb::new(server(), "forgedrun");
    db.insert("counters", (0..12_i64).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let file = file.to_str().unwrap();
    let killed = command(&db, journal.path(), &["run", file, "--execute"])
        .env("FAILPOINTS", "stamp-before-db=return")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "killed before its stamp");
    let list = crate::support::journal_runs(journal.path());
    let run = list
        .as_array()
        .and_then(|runs| runs.first())
        .and_then(|r| r["run_id"].as_str())
        .map(String::from);
    let run = run.unwrap_or_else(|| panic!("journal list: {list}"));
    // Someone writes a history entry for the run, as if it had stamped.
    other_client(&db, "godwit_metadata", async |c| {
        c.insert_one(doc! {"_id": "schema", "version": "2.0.0", "history": [{"run_id": &run, "version": "2.0.0", "journal_head": "00"}]}).await.unwrap();
    });
    let out = command(&db, journal.path(), &["run", file, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let errors = error_lines(&stderr(&out)).join("\n");
    assert!(
        errors.contains(&format!(
            "holds a history entry for run {run} whose journal head \"00\" is not in that run's journal"
        )),
        "{errors}"
    );
}

fn owners_and_things(db: &TestDb) {
    db.insert(
        "owners",
        vec![
            doc! {"_id": 0, "name": "ada"},
            doc! {"_id": 1, "name": "grace"},
            doc! {"_id": 2, "name": "edsger"},
        ],
    );
    db.insert("things", (0..100).map(|i| doc! {"_id": i, "owner": i % 3}).collect());
}

fn run_id(report: &serde_json::Value) -> String {
    report["run_id"].as_str().expect("run_id").to_string()
}

#[test]
fn an_execute_bound_to_the_reviewed_dry_run_reproduces_it_and_names_what_changed() {
    let db = TestDb::new(server(), "plan");
    owners_and_things(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("owner-names");
    let file = file.to_str().unwrap();
    let dry = run_ok(&db, journal.path(), &["run", file]);
    let plan = run_id(&dry);
    // Someone edits one thing after the review: its batch was not reviewed.
    other_client(&db, "things", async |c| {
        c.update_one(doc! {"_id": 60}, doc! {"$set": {"note": "edited"}})
            .await
            .unwrap();
    });
    let exec = run_ok(&db, journal.path(), &["run", file, "--execute", "--plan", &plan]);
    let check = &exec["summary"]["plan"];
    assert_eq!(check["run"], plan.as_str());
    assert_eq!(check["reviewed"], 3, "{check}");
    assert_eq!(check["unreviewed"], 1, "{check}");
    assert_eq!(
        check["unreviewed_batches"][0],
        "pass 0 (things), batch 2 (_id 50 to 74)"
    );
    assert_eq!(check["finish"], "not held to the plan: some batches were not reviewed");
    // The plugin ran as the dry run: its clock is the dry run's start (and
    // the 3 batches hashed as reviewed, their inserts' host-given `_id`s
    // included).
    let runs = crate::support::journal_runs(journal.path());
    let started = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == plan.as_str())
        .unwrap()["started_at_ms"]
        .as_i64()
        .unwrap();
    for thing in db.find_all("things") {
        assert_eq!(thing.get_datetime("migrated_at").unwrap().timestamp_millis(), started);
        assert!(thing.get_str("owner_name").is_ok());
    }
    assert_eq!(db.find_all("audit").len(), 4);
    // Replay of the bound run reproduces it too.
    let replay = crate::support::journal_replay(journal.path(), &run_id(&exec), std::path::Path::new(file), &[]);
    assert!(replay.status.success(), "{}{}", stdout(&replay), stderr(&replay));
}

#[test]
fn an_execute_whose_actions_differ_from_the_reviewed_dry_run_writes_nothing() {
    let db = TestDb::new(server(), "plandiv");
    owners_and_things(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("owner-names");
    let file = file.to_str().unwrap();
    let plan = run_id(&run_ok(&db, journal.path(), &["run", file]));
    // The reference data changes after the review: same inputs, other actions.
    other_client(&db, "owners", async |c| {
        c.update_one(doc! {"_id": 1}, doc! {"$set": {"name": "hopper"}})
            .await
            .unwrap();
    });
    let before = db.dump();
    let out = command(&db, journal.path(), &["run", file, "--execute", "--plan", &plan])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let errors = error_lines(&stderr(&out)).join("\n");
    assert_eq!(error_lines(&stderr(&out)).len(), 1, "{errors}");
    assert!(
        errors.contains("pass 0 (things), batch 0 (_id 0 to 24)")
            && errors.contains(&format!("other actions than the reviewed dry run {plan}"))
            && errors.contains("\"grace\"")
            && errors.contains("\"hopper\""),
        "{errors}"
    );
    let after: Vec<_> = db.dump().into_iter().filter(|(c, _)| c != "godwit_metadata").collect();
    let before: Vec<_> = before.into_iter().filter(|(c, _)| c != "godwit_metadata").collect();
    assert_eq!(after, before, "nothing of the diverging batch was written");

    // Plans that cannot bind are refused before anything runs.
    let other = command(
        &db,
        journal.path(),
        &["run", file, "--execute", "--new-run", "--plan", "nope"],
    )
    .output()
    .unwrap();
    assert_eq!(other.status.code(), Some(6), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("--plan nope: no such run in the journal"),
        "{}",
        stderr(&other)
    );
    let params = command(
        &db,
        journal.path(),
        &["run", file, "--execute", "--new-run", "--param", "x=1", "--plan", &plan],
    )
    .output()
    .unwrap();
    assert_eq!(params.status.code(), Some(6), "{}", stderr(&params));
    assert!(
        stderr(&params).contains("it ran with parameters"),
        "{}",
        stderr(&params)
    );
    let dry = command(&db, journal.path(), &["run", file, "--plan", &plan])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(2), "--plan needs --execute: {}", stderr(&dry));
}

#[test]
fn a_run_whose_passes_find_no_collection_says_so_and_is_not_stamped() {
    let db = TestDb::new(server(), "nocoll");
    // The database exists, but holds `counter` where the plugin reads `counters`.
    db.insert("counter", (0..5_i64).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let file = file.to_str().unwrap();

    let dry = run_ok(&db, journal.path(), &["run", file]);
    assert_eq!(dry["summary"]["passes"][0]["collection_missing"], true);
    let text = command(&db, journal.path(), &["run", file, "--new-run"])
        .output()
        .unwrap();
    assert!(
        stdout(&text).contains("pass 0 counters (counters: no such collection, nothing read)"),
        "{}",
        stdout(&text)
    );
    assert!(
        stderr(&text).contains("collection counters does not exist in database"),
        "{}",
        stderr(&text)
    );

    let out = command(&db, journal.path(), &["run", file, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
    let errors = error_lines(&stderr(&out)).join("\n");
    assert_eq!(error_lines(&stderr(&out)).len(), 1, "{errors}");
    assert!(
        errors.contains("no pass of plugin increment found its collection in database")
            && errors.contains("--allow-missing-collections"),
        "{errors}"
    );
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": "schema"}).is_none(),
        "not stamped"
    );

    // The operator says the database really has none: the same command, allowed.
    let allowed = run_ok(
        &db,
        journal.path(),
        &["run", file, "--execute", "--allow-missing-collections"],
    );
    assert_eq!(allowed["stamped_version"], "2.0.0");
}
