//! The plugin policy (`godwit-policy`) against hostile plugins
//! (`tests/plugins/hostile-policy*`), in execute mode on a real server: one
//! test per finding of issue 14 that the policy answers. Each is refused
//! before any write, with exit code 3 (manifest) or 4 (action), one `error:`
//! line naming the plugin, the pass and batch (or `finish`) and the rule,
//! and a full dump of the database - godwit's metadata collection included -
//! unchanged. One well-behaved plugin uses every allowed operator and runs.

use crate::db::{TestDb, server};
use crate::support::{command, godwit, plugin, stderr};
use bson::{Bson, Document, doc};

/// 25 `things` (batches of 10), an unrelated `orders`, and a stamped schema
/// version with history in godwit's metadata collection.
fn seeded(things: i32) -> TestDb {
    let db = TestDb::new(server(), "policy");
    if things > 0 {
        db.insert("things", (0..things).map(|i| doc! {"_id": i, "n": i}).collect());
    }
    db.insert("orders", vec![doc! {"_id": 5, "user": 1}]);
    db.insert(
        "godwit_metadata",
        vec![doc! {"_id": "schema", "version": "1.0.0", "history": [{"run_id": "earlier", "version": "1.0.0"}]}],
    );
    db
}

/// Runs `name` with `behaviour` in execute mode over `things` documents and
/// checks it was refused cleanly; returns the error line.
fn refused(name: &str, behaviour: &str, things: i32, code: i32, expect: &[&str]) -> String {
    let db = seeded(things);
    let before = db.dump();
    let journal = tempfile::tempdir().unwrap();
    let param = format!("behaviour={behaviour}");
    let out = command(
        &db,
        journal.path(),
        &["run", plugin(name).to_str().unwrap(), "--execute", "--param", &param],
    )
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{name} {behaviour}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{name} {behaviour}: one error line: {err}");
    let line = errors[0];
    let plugin_named = format!("plugin {name}");
    let plugin_quoted = format!("plugin {name:?}");
    assert!(
        line.contains(&plugin_named) || line.contains(&plugin_quoted),
        "{behaviour}: the plugin is not named: {line}"
    );
    for part in expect {
        assert!(line.contains(part), "{name} {behaviour}: {part:?} missing from: {line}");
    }
    assert!(line.contains("(rule "), "{behaviour}: no rule named: {line}");
    assert_eq!(db.dump(), before, "{name} {behaviour}: the database changed");
    eprintln!("policy {name} {behaviour}: refused, exit {code}: {line}");
    line.to_string()
}

const ACTIONS: &str = "hostile-policy";
/// Where a refused action of the first batch is named.
const FIRST_BATCH: &[&str] = &["pass 0 (things)", "batch 0 (documents up to _id 9)"];

fn action(behaviour: &str, expect: &[&str]) -> String {
    let parts: Vec<&str> = FIRST_BATCH.iter().chain(expect).copied().collect();
    refused(ACTIONS, behaviour, 25, 4, &parts)
}

#[test]
fn writes_to_the_metadata_collection_are_refused_when_the_run_starts() {
    // Finding 1: the version forge and the lock forge, same manifest.
    for behaviour in ["forge-version", "forge-lock"] {
        refused(
            "hostile-policy-metadata-writes",
            behaviour,
            25,
            3,
            &[
                "invalid manifest",
                "pass 0 (\"things\"): writes: collection `godwit_metadata` is godwit's metadata collection",
                "rule collection-name",
            ],
        );
    }
}

/// A manifest naming godwit's (default) metadata collection is refused on
/// sight: by `plugin inspect`, before any run, with the rule named.
#[test]
fn inspect_refuses_a_manifest_naming_the_metadata_collection() {
    for name in [
        "hostile-policy-metadata-writes",
        "hostile-policy-metadata-reads",
        "hostile-policy-metadata-declared-reads",
    ] {
        let file = plugin(name);
        let out = godwit(&["plugin", "inspect", file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "plugin inspect {name}: {err}");
        assert!(
            err.contains("collection `godwit_metadata` is godwit's metadata collection") && err.contains("(rule "),
            "{name}: {err}"
        );
    }
}

/// A manifest declaring godwit's own state in its `reads` (what its lookups
/// may read) is refused on sight, as in `writes`, naming the list.
#[test]
fn inspect_refuses_declared_reads_of_godwits_own_state() {
    for (name, expect) in [
        (
            "hostile-policy-metadata-declared-reads",
            "reads: collection `godwit_metadata` is godwit's metadata collection",
        ),
        (
            "hostile-policy-system-declared-reads",
            "reads: collection \"system.users\" is a system collection (system.*)",
        ),
    ] {
        let file = plugin(name);
        let out = godwit(&["plugin", "inspect", file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "plugin inspect {name}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{name}: one error line: {err}");
        assert!(
            errors[0].contains(&format!("plugin {name:?}: {expect}")) && errors[0].contains("(rule collection-name"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_pass_reading_the_metadata_collection_is_refused() {
    refused(
        "hostile-policy-metadata-reads",
        "touch",
        25,
        3,
        &["pass 0 (\"things\"): collection: collection `godwit_metadata` is godwit's metadata collection"],
    );
}

#[test]
fn a_multi_delete_that_pins_nothing_is_refused() {
    // Finding 2: `{_id: {$exists: true}}` passed "not empty" and deleted all.
    action(
        "delete-all",
        &[
            "action 10 (delete on `things`",
            "does not pin documents by _id",
            "rule pinned-filter: pin the filter by _id",
        ],
    );
}

#[test]
fn server_side_javascript_in_an_action_filter_is_refused() {
    for (behaviour, operator, kind) in [
        ("where-filter", "$where", "update"),
        ("function-filter", "$function", "update"),
        ("accumulator-filter", "$accumulator", "delete"),
    ] {
        let runs = format!("filter: `{operator}` runs JavaScript on the server");
        let on = format!("action 10 ({kind} on `things`, document _id 0)");
        action(behaviour, &[&on, &runs, "rule query-operators"]);
    }
}

#[test]
fn server_side_javascript_in_a_pass_filter_is_refused() {
    refused(
        "hostile-policy-js-filter",
        "touch",
        25,
        3,
        &[
            "pass 0 (\"things\"): filter: `$where` runs JavaScript on the server",
            "rule query-operators",
        ],
    );
}

/// A pass filter the server refuses: one error line with the server's
/// message (code, name, text), exit 8 - never the raw reply bytes the
/// driver's own error text appends.
#[test]
fn a_query_the_server_refuses_is_reported_with_its_message_not_its_raw_reply() {
    let db = seeded(25);
    let before = db.dump();
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("hostile-policy-server-refused");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    let line = errors[0];
    assert!(
        line.contains("pass 0 (things)") && line.contains("Command failed"),
        "{line}"
    );
    assert!(
        !line.contains("server response") && !line.contains("RawDocumentBuf"),
        "raw reply in: {line}"
    );
    assert!(line.len() < 600, "{} bytes: {line}", line.len());
    assert_eq!(db.dump(), before);
}

#[test]
fn current_date_is_refused_as_nondeterministic() {
    action(
        "current-date",
        &[
            "action 10 (update on `things`, document _id 0)",
            "`$currentDate` is nondeterministic",
            "rule deterministic",
        ],
    );
}

#[test]
fn dollar_and_dotted_keys_in_an_inserted_document_are_refused() {
    action(
        "dollar-key-insert",
        &[
            "action 10 (insert on `things`, document _id 1000)",
            "key `$set` starts with `$`",
            "rule storage-keys",
        ],
    );
    action(
        "dotted-key-insert",
        &[
            "action 10 (insert on `things`, document _id 1001)",
            "key `a.b` contains `.`",
            "rule storage-keys",
        ],
    );
}

#[test]
fn deep_nesting_in_an_action_filter_or_inserted_document_is_refused() {
    // Finding 4: ~48 KB of nesting overflowed the host's stack (exit 134).
    action(
        "deep-action-filter",
        &[
            "action 10 (update on `things`)",
            "filter nests deeper than 100 levels",
            "rule nesting-depth",
        ],
    );
    action(
        "deep-insert",
        &[
            "action 10 (insert on `things`)",
            "document nests deeper than 100 levels",
            "rule nesting-depth",
        ],
    );
}

#[test]
fn deep_nesting_in_a_manifest_filter_is_refused_by_run_and_inspect() {
    refused(
        "hostile-policy-deep-filter",
        "touch",
        25,
        3,
        &[
            "pass 0 (\"things\"): filter nests deeper than 100 levels",
            "rule nesting-depth",
        ],
    );
    let file = plugin("hostile-policy-deep-filter");
    let out = godwit(&["plugin", "inspect", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "plugin inspect: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("filter nests deeper than 100 levels"), "{err}");
}

#[test]
fn finish_returning_20000_inserts_is_refused_at_the_cap() {
    // Finding 10. No `things`: finish is the run's first write (a pass's
    // batches would leave their progress marker in the metadata collection).
    let line = refused(
        ACTIONS,
        "finish-flood",
        0,
        4,
        &["finish", "returned 20000 actions from finish"],
    );
    assert!(line.contains("more than the limit of 10000"), "{line}");
}

#[test]
fn a_batch_size_of_2_pow_31_is_clamped_and_the_run_completes() {
    // Finding 8 aborted the host ("memory allocation of 51539607528 bytes
    // failed") with the lock held; the policy lowers the batch size instead.
    let db = seeded(25);
    let journal = tempfile::tempdir().unwrap();
    let out = command(
        &db,
        journal.path(),
        &[
            "run",
            plugin("hostile-policy-huge-batch").to_str().unwrap(),
            "--execute",
        ],
    )
    .output()
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("batch size 2147483647 lowered to 10000"), "{err}");
    let things = db.find_all("things");
    assert_eq!(things.len(), 25);
    assert!(
        things.iter().all(|t| t.get_bool("touched").ok() == Some(true)),
        "{things:?}"
    );
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": "lock"}).is_none(),
        "lock released"
    );
}

/// The well-behaved side: every allowed query and update operator, a
/// natural-key upsert, an insert, a replacement, a delete, and unpinned
/// multi-document actions from `finish` - applied as MongoDB would.
#[test]
fn a_plugin_using_every_allowed_operator_runs() {
    let db = seeded(25);
    let journal = tempfile::tempdir().unwrap();
    let out = command(
        &db,
        journal.path(),
        &[
            "run",
            plugin(ACTIONS).to_str().unwrap(),
            "--execute",
            "--param",
            "behaviour=allowed",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let things = db.find_all("things");
    assert_eq!(things.len(), 25);
    for (i, t) in things.iter().enumerate() {
        let i = i as i32;
        let want = doc! {
            "_id": i, "n": i + 100, "touched": true, "tags": ["a", "b", "c"], "nums": [1, 2], "arr": [{"k": 1, "v": 9}],
            "arr2": [{"x": 7}, {"x": 7}], "drop": [2], "pos": ["first", "second"], "bits": 8, "lo": 5, "hi": 5, "m": 6,
            "s": "Xyz", "sub": {"a": 1}, "renamed": "x", "set": ["p", "q"], "reviewed": true,
        };
        let got: Document = t
            .iter()
            .filter(|(k, _)| want.contains_key(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sorted = |d: &Document| {
            let mut v: Vec<(String, Bson)> = d.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(sorted(&got), sorted(&want), "thing {i}: {t}");
        assert_eq!(t.len(), want.len(), "thing {i} has other fields: {t}");
    }
    let totals = db.find_all("totals");
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(totals[0].get_i32("count").ok(), Some(25));
    assert_eq!(totals[0].get_str("created").ok(), Some("allowed"));
    let log = db.find_all("log");
    let mut ids: Vec<&str> = log.iter().map(|d| d.get_str("_id").unwrap()).collect();
    ids.sort_by_key(|id| id[4..].parse::<u32>().unwrap());
    let want: Vec<String> = (5..20).map(|i| format!("log-{i}")).collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        log.iter()
            .all(|d| d.get_bool("replaced").ok() == Some(true) && !d.contains_key("nested"))
    );
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").ok(), Some("0.0.1"), "stamped: {schema}");
}
