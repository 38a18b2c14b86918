//! Schema operations (contract 0.2) on the real server, through the real
//! binary and real components (`schema-ops`, `schema-undeclared`,
//! `contract-0-1`; the SDKs' `schema-ops-py` and `schema-ops-js`): each kind through dry run, execute SIGKILLed at a
//! failpoint of the schema step (`schema-prepared`: journaled, not sent;
//! `schema-sent`: sent, its `SchemaApplied` not journaled), resume, and
//! revert; a unique index over duplicates refused in the dry run with
//! samples; undeclared operations refused before anything is sent; a 0.1
//! plugin still running.

#![cfg_attr(not(feature = "failpoints"), allow(dead_code, unused_imports))]

use crate::db::{TestDb, server};
use crate::support::{command, godwit, plugin, stderr, stdout, verify_journal};
use bson::{Document, doc};
use std::os::unix::process::ExitStatusExt;

const USERS: i64 = 40;

/// `users` (with an index `old_idx`), `legacy` and `scratch` (with an
/// index and a validator): what every operation of `schema-ops` works on.
fn fixture() -> TestDb {
    let db = TestDb::new(server(), "schema");
    db.insert(
        "users",
        (0..USERS)
            .map(|i| match i % 10 {
                // Some users without an email: the validator change fails them.
                9 => doc! {"_id": i, "name": format!("u{i}")},
                _ => doc! {"_id": i, "name": format!("u{i}"), "email": format!("U{i}@example.com")},
            })
            .collect(),
    );
    db.command(doc! {"createIndexes": "users", "indexes": [{"key": {"name": 1}, "name": "old_idx"}]});
    db.insert("legacy", (0..5).map(|i| doc! {"_id": i, "v": i}).collect());
    db.command(doc! {"createIndexes": "legacy", "indexes": [{"key": {"v": -1}, "name": "v_desc"}]});
    db.command(doc! {"create": "scratch", "validator": {"n": {"$type": "int"}}});
    db.insert(
        "scratch",
        (0..7).map(|i| doc! {"_id": format!("s{i}"), "n": i}).collect(),
    );
    db.command(doc! {"createIndexes": "scratch", "indexes": [{"key": {"n": 1}, "name": "n_1", "unique": true}]});
    db
}

/// One collection: name, documents, indexes (name, key, unique), validator.
type Collection = (String, Vec<Vec<u8>>, Vec<(String, Document, bool)>, Option<Document>);

/// Everything a schema operation or its revert can change: collections,
/// their documents, indexes and validators (godwit's metadata aside).
fn state(db: &TestDb) -> Vec<Collection> {
    db.dump()
        .into_iter()
        .filter(|(name, _)| name != "godwit_metadata")
        .map(|(name, docs)| {
            let indexes = db.indexes(&name);
            let validator = db.validator(&name);
            (name, docs, indexes, validator)
        })
        .collect()
}

fn args<'a>(op: &'a str, phase: &'a str) -> Vec<String> {
    ["run", plugin("schema-ops").to_str().unwrap(), "--param"]
        .into_iter()
        .map(String::from)
        .chain([format!("op={op}"), "--param".into(), format!("phase={phase}")])
        .collect()
}

fn run_json(db: &TestDb, journal: &std::path::Path, args: &[String], extra: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = args.iter().map(String::as_str).chain(extra.iter().copied()).collect();
    let out = command(db, journal, &args).arg("--json").output().unwrap();
    assert!(out.status.success(), "godwit {args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)))
}

fn run_id(journal: &std::path::Path) -> String {
    let runs = crate::support::journal_runs(journal);
    runs.as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["mode"] == "Execute")
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One operation through the whole life: dry run (writes nothing, says
/// what it affects), execute killed at `point`'s `hit`-th hit, resume,
/// `check` on the result, a second execute refused as already stamped,
/// then revert back to the fixture's state.
#[cfg(feature = "failpoints")]
fn lifecycle(op: &str, phase: &str, point: &str, hit: u32, effect: &str, check: impl Fn(&TestDb)) {
    let db = fixture();
    let before = state(&db);
    let journal = tempfile::tempdir().unwrap();
    let args = args(op, phase);

    let dry = run_json(&db, journal.path(), &args, &[]);
    let lines = dry["summary"]["schema"].as_array().unwrap_or_else(|| panic!("{dry:#}"));
    assert!(!lines.is_empty(), "{dry:#}");
    let effects: Vec<&str> = lines.iter().map(|l| l["effect"].as_str().unwrap()).collect();
    assert!(
        effects.iter().any(|e| e.contains(effect)),
        "{op}: dry-run effects {effects:?} do not say {effect:?}"
    );
    assert!(lines.iter().all(|l| l["phase"] == phase), "{lines:?}");
    assert_eq!(state(&db), before, "{op}: a dry run changes nothing");

    // Killed inside the schema step.
    let armed = match hit {
        1 => format!("{point}=return"),
        n => format!("{point}={}*off->return", n - 1),
    };
    let exec: Vec<&str> = args.iter().map(String::as_str).chain(["--execute"]).collect();
    let out = command(&db, journal.path(), &exec)
        .env("FAILPOINTS", &armed)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{op} {armed}: expected a kill, got {:?}: {}",
        out.status,
        stderr(&out)
    );
    // Resumed: the same command.
    let done = run_json(
        &db,
        journal.path(),
        &exec.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(done["resumed"], true, "{done:#}");
    let outcomes: Vec<&str> = done["summary"]["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["outcome"].as_str().unwrap_or("none"))
        .collect();
    assert!(
        outcomes.iter().any(|o| o.starts_with("settled on resume")),
        "{op} {armed}: the interrupted operation is settled on resume: {outcomes:?}"
    );
    check(&db);
    verify_journal(journal.path());
    // A dry run now finds every operation done (as a second dry run after
    // an execute should: `plugin test --data` runs one).
    let again = run_json(&db, journal.path(), &args, &[]);
    for line in again["summary"]["schema"].as_array().unwrap() {
        assert!(
            line["effect"].as_str().unwrap().contains("nothing to do"),
            "{op}: {line}"
        );
    }
    // The run replays from its journal: the same schema operations, the same batches.
    let run = run_id(journal.path());
    let out = crate::support::journal_replay(journal.path(), &run, &plugin("schema-ops"), &["--json"]);
    assert!(out.status.success(), "{op}: replay: {}{}", stdout(&out), stderr(&out));
    let replayed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(replayed["divergence"].is_null(), "{op}: {replayed:#}");
    assert_eq!(replayed["batches"], replayed["identical"], "{replayed:#}");
    // ... and a plugin whose setup returns other operations does not.
    let out = crate::support::journal_replay(journal.path(), &run, &plugin("schema-undeclared"), &["--json"]);
    let other: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    assert!(
        other["divergence"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("begin")),
        "{op}: {}{}",
        stdout(&out),
        stderr(&out)
    );

    // Revert: the database as before the run.
    let out = command(&db, journal.path(), &["revert", &run, "--execute", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{op}: revert: {}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        report["schema"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["possible"] == true),
        "{report:#}"
    );
    assert_eq!(state(&db), before, "{op}: the revert puts the schema back");
    // The revert journaled each undo in its own run.
    let revert = report["run_id"].as_str().unwrap();
    let shown = godwit(&["journal", "show", revert, "--journal", journal.path().to_str().unwrap()]);
    let shown = stdout(&shown);
    let undone = report["schema"].as_array().unwrap().len();
    assert_eq!(shown.matches("SchemaApplied").count(), undone, "{shown}");
    verify_journal(journal.path());
}

#[cfg(feature = "failpoints")]
#[test]
fn create_index_with_partial_filter_and_collation_killed_before_sending_is_sent_on_resume_and_reverted() {
    lifecycle("create-index", "begin", "schema-prepared", 1, "on 36 documents", |db| {
        let idx = db.indexes("users");
        assert!(
            idx.iter().any(|i| i.0 == "email_ci" && i.1 == doc! {"email": 1}),
            "{idx:?}"
        );
    });
}

#[cfg(feature = "failpoints")]
#[test]
fn unique_index_killed_after_the_build_is_not_built_again_and_reverted() {
    lifecycle(
        "unique-index",
        "begin",
        "schema-sent",
        1,
        "on 36 documents (unique: no duplicates)",
        |db| {
            let idx = db.indexes("users");
            assert!(idx.iter().any(|i| i.0 == "email_unique" && i.2), "{idx:?}");
        },
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn ttl_index_from_finish_killed_and_resumed() {
    lifecycle(
        "ttl-index",
        "finish",
        "schema-prepared",
        1,
        "builds index `seen_ttl`",
        |db| {
            assert!(db.indexes("users").iter().any(|i| i.0 == "seen_ttl"));
            let reply = db.command(doc! {"listIndexes": "users"});
            let ttl = reply
                .get_document("cursor")
                .unwrap()
                .get_array("firstBatch")
                .unwrap()
                .iter()
                .any(|i| {
                    let i = i.as_document().unwrap();
                    i.get_str("name").ok() == Some("seen_ttl") && i.get("expireAfterSeconds").is_some()
                });
            assert!(ttl, "expireAfterSeconds set: {reply}");
        },
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn drop_index_is_re_created_from_its_journaled_spec_on_revert() {
    lifecycle(
        "drop-index",
        "finish",
        "schema-sent",
        1,
        "drops index `old_idx`",
        |db| {
            assert!(!db.indexes("users").iter().any(|i| i.0 == "old_idx"));
        },
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn create_collection_with_validator_killed_and_resumed_then_dropped_on_revert() {
    lifecycle(
        "create-collection",
        "begin",
        "schema-sent",
        1,
        "creates collection `audit`",
        |db| {
            assert!(db.collections().contains(&"audit".to_string()));
            assert!(db.validator("audit").unwrap().contains_key("$jsonSchema"));
        },
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn modify_validator_counts_failing_documents_and_revert_restores_none() {
    lifecycle(
        "modify-validator",
        "finish",
        "schema-prepared",
        1,
        "4 of 40 documents fail it",
        |db| {
            assert_eq!(
                db.validator("users").unwrap(),
                doc! {"$jsonSchema": {"required": ["email"]}}
            );
        },
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn rename_collection_killed_after_the_rename_is_settled_and_renamed_back() {
    lifecycle(
        "rename-collection",
        "begin",
        "schema-sent",
        1,
        "renames `legacy` (5 documents, 2 indexes) to `legacy_renamed`",
        |db| {
            let names = db.collections();
            assert!(names.contains(&"legacy_renamed".to_string()) && !names.contains(&"legacy".to_string()));
            assert_eq!(db.find_all("legacy_renamed").len(), 5);
        },
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn drop_collection_comes_back_with_documents_indexes_and_validator_from_before_images() {
    lifecycle(
        "drop-collection",
        "finish",
        "schema-sent",
        1,
        "drops `scratch`: 7 documents, 2 indexes",
        |db| assert!(!db.collections().contains(&"scratch".to_string())),
    );
}

/// Every kind in one phase, killed at a random operation (of six) at a
/// random one of the two failpoints; `GODWIT_SCHEMA_SEED` repeats a run.
#[cfg(feature = "failpoints")]
#[test]
fn all_six_kinds_killed_at_a_random_point_resume_and_revert() {
    let seed: u64 = std::env::var("GODWIT_SCHEMA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        });
    let point = ["schema-prepared", "schema-sent"][(seed % 2) as usize];
    let hit = (seed / 2 % 6) as u32 + 1;
    let phase = ["begin", "finish"][(seed / 12 % 2) as usize];
    eprintln!("schema kill: GODWIT_SCHEMA_SEED={seed} ({phase}, {point} hit {hit})");
    lifecycle("all", phase, point, hit, "creates collection `audit`", |db| {
        let names = db.collections();
        assert!(names.contains(&"audit".to_string()), "{names:?}");
        assert!(names.contains(&"legacy_renamed".to_string()), "{names:?}");
        assert!(!names.contains(&"scratch".to_string()), "{names:?}");
        let idx: Vec<String> = db.indexes("users").into_iter().map(|i| i.0).collect();
        assert_eq!(idx, ["_id_", "email_ci"], "{idx:?}");
    });
}

#[test]
fn a_unique_index_over_duplicates_is_refused_in_the_dry_run_with_samples() {
    let db = TestDb::new(server(), "schema_dup");
    db.insert(
        "users",
        (0..30)
            .map(|i| doc! {"_id": i, "email": format!("user{}@example.com", if i % 10 == 3 { 3 } else { i })})
            .collect(),
    );
    let before = state(&db);
    let journal = tempfile::tempdir().unwrap();
    for mode in [&[][..], &["--execute"][..]] {
        let args: Vec<String> = args("unique-index", "begin");
        let args: Vec<&str> = args.iter().map(String::as_str).chain(mode.iter().copied()).collect();
        let out = command(&db, journal.path(), &args).output().unwrap();
        assert_eq!(out.status.code(), Some(18), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains("duplicate keys"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains("plugin \"schema-ops\""), "{line}");
        assert!(line.contains("create-index `email_unique` on `users`"), "{line}");
        assert!(line.contains("1 duplicate keys over 3 documents"), "{line}");
        assert!(
            line.contains(r#"{ "email": "user3@example.com" } x3 (_id 3, 13, 23)"#),
            "{line}"
        );
        assert!(line.contains("remove the duplicates"), "{line}");
        assert!(line.contains("nothing of this step was sent"), "{line}");
    }
    assert_eq!(state(&db), before, "nothing built, nothing stamped");
    assert!(db.find_one("godwit_metadata", doc! {"_id": "schema"}).is_none());
}

#[test]
fn a_plugin_declaring_no_schema_operations_is_refused_before_anything_is_sent() {
    let db = TestDb::new(server(), "schema_undeclared");
    db.insert(
        "users",
        (0..5).map(|i| doc! {"_id": i, "email": format!("{i}@x")}).collect(),
    );
    let before = state(&db);
    let file = plugin("schema-undeclared");
    for from in ["setup", "process"] {
        let journal = tempfile::tempdir().unwrap();
        for mode in [&[][..], &["--execute"][..]] {
            let param = format!("from={from}");
            let args: Vec<&str> = ["run", file.to_str().unwrap(), "--param", &param]
                .into_iter()
                .chain(mode.iter().copied())
                .collect();
            let out = command(&db, journal.path(), &args).output().unwrap();
            assert_eq!(out.status.code(), Some(4), "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            let want = match from {
                "setup" => "create-index on `users` is not declared in the manifest's schema []",
                _ => "create-index returned from process",
            };
            let line = err
                .lines()
                .find(|l| l.contains(want))
                .unwrap_or_else(|| panic!("{err}"));
            assert!(line.contains("schema-undeclared"), "{line}");
            assert!(line.contains("rule schema-operations"), "{line}");
        }
    }
    assert_eq!(state(&db), before, "no index, no write");
    assert!(db.find_one("godwit_metadata", doc! {"_id": "schema"}).is_none());
}

#[test]
fn a_plugin_built_for_contract_0_1_still_runs() {
    let db = TestDb::new(server(), "schema_v01");
    db.insert("items", (0..12).map(|i| doc! {"_id": i}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("contract-0-1");
    let info = godwit(&["plugin", "inspect", file.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert_eq!(info["contract"], "godwit:migration@0.1.0");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let items = db.find_all("items");
    assert!(items.iter().all(|d| d.get_bool("v1").ok() == Some(true)), "{items:?}");
}

/// An execute bound to a reviewed dry run (`--plan`) runs the schema
/// operations that dry run showed, or none: a plugin that decides them from
/// data that changed since the review is refused before anything is sent.
#[test]
fn an_execute_bound_to_a_reviewed_dry_run_refuses_schema_operations_the_review_did_not_show() {
    let db = TestDb::new(server(), "schema_plan");
    db.insert(
        "users",
        (0..5).map(|i| doc! {"_id": i, "email": format!("{i}@x")}).collect(),
    );
    let journal = tempfile::tempdir().unwrap();
    let args = args("when-flagged", "begin");
    let dry = run_json(&db, journal.path(), &args, &[]);
    assert!(dry["summary"]["schema"].is_null(), "no operation reviewed: {dry:#}");
    let reviewed = dry["run_id"].as_str().unwrap().to_string();
    // The data the plugin looks up changes after the review.
    db.insert("users", vec![doc! {"_id": 99, "flag": true}]);
    let before = state(&db);
    let exec: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(["--execute", "--plan", &reviewed])
        .collect();
    let out = command(&db, journal.path(), &exec).output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("begin's schema operations"), "{err}");
    assert!(err.contains(&format!("reviewed dry run {reviewed}")), "{err}");
    assert!(
        err.contains("1 schema operations now (create-index `email_ci` on `users`"),
        "{err}"
    );
    assert_eq!(state(&db), before, "nothing sent");
}

/// The Python SDK's schema operations through a componentize-py component:
/// `setup`'s before the pass, `finish`'s after it, all undone by revert.
#[test]
fn python_plugin_schema_operations_run_and_revert() {
    sdk_schema_operations_run_and_revert("schema-ops-py");
}

/// The JavaScript SDK's, through a componentize-js component
/// (`tests/plugins-js/schema-ops-js`, the same operations): the glue maps
/// every kind and option onto contract 0.2's `schema-op`.
#[test]
fn javascript_plugin_schema_operations_run_and_revert() {
    sdk_schema_operations_run_and_revert("schema-ops-js");
}

/// `name` (an SDK's `schema-ops` twin) through dry run, execute and revert.
fn sdk_schema_operations_run_and_revert(name: &str) {
    let db = fixture();
    let before = state(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin(name);
    let run = ["run", file.to_str().unwrap()];
    let dry = run_json(&db, journal.path(), &run.map(String::from), &[]);
    let phases: Vec<&str> = dry["summary"]["schema"]
        .as_array()
        .unwrap_or_else(|| panic!("{dry:#}"))
        .iter()
        .map(|l| l["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["begin", "begin", "begin", "finish", "finish", "finish", "finish"]
    );
    assert_eq!(state(&db), before);
    run_json(&db, journal.path(), &run.map(String::from), &["--execute"]);
    let names = db.collections();
    assert!(names.contains(&"audit".to_string()) && names.contains(&"legacy_renamed".to_string()));
    assert!(!names.contains(&"scratch".to_string()), "{names:?}");
    let idx: Vec<String> = db.indexes("users").into_iter().map(|i| i.0).collect();
    assert_eq!(idx, ["_id_", "email_ci", "seen_ttl"]);
    // Every option the SDK was given reached the server.
    let listed = db.command(doc! {"listIndexes": "users"});
    let specs = listed.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
    let spec = |n: &str| {
        specs
            .iter()
            .map(|i| i.as_document().unwrap())
            .find(|i| i.get_str("name").ok() == Some(n))
            .unwrap_or_else(|| panic!("{n} not in {specs:?}"))
            .clone()
    };
    let email = spec("email_ci");
    assert_eq!(
        email.get_document("partialFilterExpression").unwrap(),
        &doc! {"email": {"$exists": true}},
        "{email}"
    );
    assert_eq!(
        email.get_document("collation").unwrap().get_str("locale").unwrap(),
        "en",
        "{email}"
    );
    let ttl = spec("seen_ttl");
    assert_eq!(
        ttl.get("expireAfterSeconds")
            .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from))),
        Some(3600),
        "{ttl}"
    );
    assert_eq!(
        db.validator("audit").unwrap(),
        doc! {"$jsonSchema": {"required": ["who"]}}
    );
    assert_eq!(
        db.validator("users").unwrap(),
        doc! {"$jsonSchema": {"required": ["email"]}}
    );
    let out = command(&db, journal.path(), &["revert", &run_id(journal.path()), "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(state(&db), before, "the revert puts the schema back");
}

/// What a revert cannot undo it lists, one line each, and the version stays
/// (exit 15): here a created collection that holds documents the run did
/// not write. A run without before-images (whose dropped collection could
/// not come back) is refused whole, as any such run is (exit 14).
#[test]
fn revert_says_what_it_cannot_undo_and_keeps_the_version() {
    let db = fixture();
    let journal = tempfile::tempdir().unwrap();
    run_json(
        &db,
        journal.path(),
        &args("create-collection", "finish"),
        &["--execute"],
    );
    db.insert("audit", vec![doc! {"_id": 1, "who": "app"}]);
    let run = run_id(journal.path());
    let out = command(&db, journal.path(), &["revert", &run, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(15), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("cannot undo"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(
            "create-collection `audit` with a validator: cannot undo: `audit` holds 1 documents the run did not write"
        ),
        "{line}"
    );
    assert!(text.contains("schema operations of the run cannot be undone"), "{text}");
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "1.0.0", "the version stays");
    assert_eq!(db.find_all("audit").len(), 1, "the application's document stays");

    let db = fixture();
    let journal = tempfile::tempdir().unwrap();
    run_json(
        &db,
        journal.path(),
        &args("drop-collection", "finish"),
        &["--execute", "--no-before-images"],
    );
    let run = run_id(journal.path());
    let out = command(&db, journal.path(), &["revert", &run, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(14), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("no before-images"), "{}", stderr(&out));
}

/// A resume compares a prepared operation with the server: an index of the
/// same name but another definition, created while the run was down, stops
/// the resume in one line saying what to do (exit 18), nothing overwritten.
#[cfg(feature = "failpoints")]
#[test]
fn a_resume_finding_another_index_of_the_same_name_stops_and_says_what_to_do() {
    let db = fixture();
    let journal = tempfile::tempdir().unwrap();
    let args = args("create-index", "begin");
    let exec: Vec<&str> = args.iter().map(String::as_str).chain(["--execute"]).collect();
    let out = command(&db, journal.path(), &exec)
        .env("FAILPOINTS", "schema-prepared=return")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", stderr(&out));
    db.command(doc! {"createIndexes": "users", "indexes": [{"key": {"name": -1}, "name": "email_ci"}]});
    let out = command(&db, journal.path(), &exec).output().unwrap();
    assert_eq!(out.status.code(), Some(18), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("plugin \"schema-ops\", begin schema operation 0 (create-index `email_ci`"),
        "{line}"
    );
    assert!(line.contains("exists with another definition"), "{line}");
    assert!(
        line.contains("drop it (drop-index) or name this one differently"),
        "{line}"
    );
    let idx = db.indexes("users");
    assert!(
        idx.iter().any(|i| i.0 == "email_ci" && i.1 == doc! {"name": -1}),
        "left as it was: {idx:?}"
    );
}

/// `plugin run` (no database) checks a plugin's schema operations as a run
/// does and lists them, as the journal stores them.
#[test]
fn plugin_run_lists_the_schema_operations_checked() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.jsonl");
    std::fs::write(&input, "{\"_id\": 1, \"email\": \"a@x\"}\n").unwrap();
    let file = plugin("schema-ops");
    let run = |params: &[&str]| {
        let mut args = vec![
            "plugin",
            "run",
            file.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ];
        args.extend(params);
        godwit(&args)
    };
    let out = run(&["--param", "op=all", "--param", "phase=finish"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let kinds = |phase: &str| -> Vec<String> {
        json["schema"][phase]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["op"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds("begin").is_empty(), "{json:#}");
    assert_eq!(
        kinds("finish"),
        [
            "create-collection",
            "create-index",
            "drop-index",
            "modify-validator",
            "rename-collection",
            "drop-collection"
        ]
    );
    assert_eq!(json["schema"]["finish"][1]["index"]["name"], "email_ci");
    // An undeclared one is refused as a run refuses it.
    let out = godwit(&[
        "plugin",
        "run",
        plugin("schema-undeclared").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not declared in the manifest's schema"),
        "{}",
        stderr(&out)
    );
}
