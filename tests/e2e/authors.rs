//! The plugin author's and reviewer's workflow (issue 20): `plugin run` (one
//! call of a plugin on documents from a file, no database - checked against
//! what a real dry run of the same documents journals), `journal reports`
//! (every report of a run, not only the summary's samples) and chain drift
//! (`plan`, `status` and `upgrade` compare the plugin files of applied
//! versions with the sha256 the database's history recorded).

use crate::db::{TestDb, server};
use crate::support::{command, plugin, run_ok, stderr, stdout};
use bson::{Bson, Document, doc};
use godwit::text::needs_escape;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn godwit() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_godwit"));
    cmd.env(
        "GODWIT_CACHE_DIR",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"),
    )
    .env("RUST_LOG", "warn")
    .env_remove("MONGODB_URI")
    .env_remove("GODWIT_DB");
    cmd
}

/// `godwit plugin run FILE --input PATH ARGS...`.
fn plugin_run(file: &Path, input: &Path, args: &[&str]) -> Output {
    godwit()
        .args(["plugin", "run"])
        .arg(file)
        .arg("--input")
        .arg(input)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// No raw control character on either stream (the newlines between lines aside).
#[track_caller]
fn assert_terminal_safe(out: &Output) {
    for text in [stdout(out), stderr(out)] {
        assert!(
            !text.chars().any(|c| needs_escape(c) && c != '\n'),
            "raw control character in:\n{text:?}"
        );
    }
}

/// The one line on stderr, which must contain every piece of `expect`.
#[track_caller]
fn assert_one_error_line(out: &Output, code: i32, expect: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line:\n{err}");
    for piece in expect {
        assert!(err.contains(piece), "missing {piece:?} in:\n{err}");
    }
}

/// Documents as one Extended JSON object per line, the way an author would
/// dump them (`mongoexport` writes the same form).
fn jsonl(docs: &[Document]) -> String {
    docs.iter()
        .map(|d| Bson::Document(d.clone()).into_relaxed_extjson().to_string() + "\n")
        .collect()
}

/// The actions a run journaled, batch by batch (`journal export`).
fn journaled_actions(journal: &Path, run: &str) -> Vec<serde_json::Value> {
    crate::support::journal_export(journal, run)
        .into_iter()
        .filter(|e| e["kind"] == "Planned")
        .flat_map(|e| e["actions"].as_array().unwrap().clone())
        .collect()
}

/// Canonical Extended JSON of a relaxed one, so both sides compare exactly.
fn canonical(relaxed: &serde_json::Value) -> serde_json::Value {
    Bson::try_from(relaxed.clone()).unwrap().into_canonical_extjson()
}

#[test]
fn plugin_run_returns_what_a_dry_run_of_the_same_documents_journals() {
    let users = vec![
        doc! {"_id": 4, "email": " Ada@Example.COM ", "name": "ada"},
        doc! {"_id": 1, "email": "bob@example.com"},
        doc! {"_id": 3, "email": "ADA@example.com"},
        doc! {"_id": 2, "email": "Carol@Example.com", "tags": ["x", {"y": 1.5}]},
        // Not a string: the pass's filter leaves it out.
        doc! {"_id": 5, "email": 7},
        doc! {"_id": 6, "email": "bob@EXAMPLE.com"},
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.jsonl");
    // Out of `_id` order, with an empty line: `plugin run` reads as a pass would.
    std::fs::write(&input, jsonl(&users[..3]) + "\n" + &jsonl(&users[3..])).unwrap();
    let wasm = plugin("normalize-emails");
    let tried = json(&plugin_run(&wasm, &input, &[]));
    assert_eq!(tried["pass"]["name"], "users");
    assert_eq!(tried["input"]["documents"], 6);
    assert_eq!(tried["input"]["given"], 5, "the filter leaves out _id 5");

    // The same documents in a real collection, through a real dry run.
    let db = TestDb::new(server(), "authors_run");
    db.insert("users", users.clone());
    let journal = tempfile::tempdir().unwrap();
    let report = run_ok(&db, journal.path(), &["run", wasm.to_str().unwrap()]);
    let run = report["run_id"].as_str().unwrap();
    let journaled = journaled_actions(journal.path(), run);
    let writes: Vec<_> = journaled.iter().filter(|a| a["op"] != "report").cloned().collect();
    let reports: Vec<_> = journaled.iter().filter(|a| a["op"] == "report").collect();
    let tried_writes: Vec<_> = tried["process"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(canonical)
        .collect();
    assert_eq!(tried_writes, writes, "the same write actions, in the same order");
    assert_eq!(tried["process"]["counts"]["updates"], 2);
    let tried_reports = tried["process"]["reports"].as_array().unwrap();
    assert_eq!(tried_reports.len(), reports.len());
    assert_eq!(tried_reports.len(), 2, "two collisions: {tried_reports:?}");
    for (t, j) in tried_reports.iter().zip(&reports) {
        assert_eq!(
            (&t["kind"], &t["key"], &t["message"]),
            (&j["kind"], &j["key"], &j["message"])
        );
    }
    assert_eq!(tried["finish"]["counts"]["updates"], 0);

    // `--as-given`: every document as written, in the file's order, unfiltered.
    let out = plugin_run(&wasm, &input, &["--as-given", "--no-finish"]);
    assert_one_error_line(&out, 4, &["plugin normalize-emails failed in process", "\"_id\": 5"]);

    // Standard input, a pass by name, a parameter (this plugin ignores it).
    let mut child = godwit()
        .args(["plugin", "run"])
        .arg(&wasm)
        .args(["--input", "-", "--pass", "users", "--param", "k=v"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"_id": {"$oid": "65a1b2c3d4e5f60718293a4b"}, "email": "X@Y"}"#)
        .unwrap();
    let piped = json(&child.wait_with_output().unwrap());
    assert_eq!(piped["params"]["k"], "v");
    assert_eq!(
        piped["process"]["actions"][0]["filter"]["_id"]["$oid"],
        "65a1b2c3d4e5f60718293a4b"
    );
    assert_eq!(piped["process"]["actions"][0]["update"]["$set"]["email"], "x@y");
}

#[test]
fn plugin_run_refuses_bad_input_and_lookups_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin("normalize-emails");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    let bad = write(
        "bad.jsonl",
        "{\"_id\": 1, \"email\": \"a@b\"}\n\n{\"_id\": 2, \"email\": \n",
    );
    let out = plugin_run(&wasm, &bad, &[]);
    assert_one_error_line(
        &out,
        2,
        &[&format!("{}:3: not an Extended JSON document", bad.display())],
    );

    let not_object = write("array.jsonl", "[1, 2]\n");
    let out = plugin_run(&wasm, &not_object, &[]);
    assert_one_error_line(&out, 2, &[&format!("{}:1:", not_object.display()), "one JSON object"]);

    let bad_type = write("date.jsonl", "{\"_id\": {\"$date\": \"yesterday\"}}\n");
    let out = plugin_run(&wasm, &bad_type, &[]);
    assert_one_error_line(&out, 2, &[&format!("{}:1:", bad_type.display()), "field \"_id\""]);

    let no_id = write("noid.jsonl", "{\"email\": \"a@b\"}\n");
    let out = plugin_run(&wasm, &no_id, &[]);
    assert_one_error_line(&out, 2, &[&format!("{}:1: the document has no _id", no_id.display())]);

    let twice = write(
        "twice.jsonl",
        "{\"_id\": 1, \"email\": \"a@b\"}\n{\"_id\": 1.0, \"email\": \"c@d\"}\n",
    );
    let out = plugin_run(&wasm, &twice, &[]);
    assert_one_error_line(&out, 2, &[&format!("{}:2: _id", twice.display()), "line 1"]);

    let out = plugin_run(&wasm, &dir.path().join("missing.jsonl"), &[]);
    assert_one_error_line(&out, 2, &["cannot read input", "missing.jsonl"]);

    let good = write("good.jsonl", "{\"_id\": 1, \"email\": \"a@b\"}\n");
    let out = plugin_run(&wasm, &good, &["--pass", "nope"]);
    assert_one_error_line(&out, 2, &["has no pass \"nope\"", "\"users\""]);

    // A lookup has no database to go to: the call fails and says so.
    let out = plugin_run(&plugin("qdash-backfill-user-id"), &good, &[]);
    assert_one_error_line(
        &out,
        4,
        &[
            "trapped in begin",
            "looked up `user`",
            "`godwit plugin run` has no database",
        ],
    );

    // Actions are checked as in a run: a policy violation is refused (exit 4).
    let out = plugin_run(
        &plugin("hostile-policy"),
        &good,
        &["--param", "behaviour=where-filter", "--as-given"],
    );
    assert_one_error_line(&out, 4, &["returned an invalid action", "$where"]);
}

// The hostile-escape plugin's strings (tests/plugins/hostile-escape/src/lib.rs).
const KIND: &str = "kind\x1b[1m";
const KEY: &str = "key\r\x1b[K";
const MESSAGE: &str = "msg\x1b]8;;http://evil.example\x07link\x1b]8;;\x07\nerror: forged report line";

#[test]
fn plugin_run_output_is_escaped_json_that_decodes_to_the_plugins_strings() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("things.jsonl");
    std::fs::write(&input, jsonl(&[doc! {"_id": 1}, doc! {"_id": 2, "touched": true}])).unwrap();
    let out = plugin_run(&plugin("hostile-escape"), &input, &[]);
    assert_terminal_safe(&out);
    let tried = json(&out);
    assert_eq!(tried["input"]["given"], 1, "the filter leaves out the touched document");
    let report = &tried["process"]["reports"][0];
    assert_eq!(
        (report["kind"].as_str(), report["key"].as_str()),
        (Some(KIND), Some(KEY))
    );
    assert_eq!(report["message"], MESSAGE);
}

/// `journal reports RUN ARGS...` against a journal directory.
fn reports(journal: &Path, run: &str, args: &[&str]) -> Output {
    godwit()
        .args(["journal", "reports", run, "--journal"])
        .arg(journal)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn journal_reports_lists_every_report_the_summary_only_samples() {
    let db = TestDb::new(server(), "authors_reports");
    // Twelve users share one address once normalized: eleven `conflict`
    // reports, spread over batches of four.
    db.insert(
        "users",
        (0..12)
            .map(|i| doc! {"_id": i, "email": format!("{}Ada@Example.com", " ".repeat(i as usize))})
            .chain((12..20).map(|i| doc! {"_id": i, "email": format!("user{i}@example.com")}))
            .collect(),
    );
    let journal = tempfile::tempdir().unwrap();
    let wasm = plugin("normalize-emails");
    let wasm = wasm.to_str().unwrap();
    let init = command(&db, journal.path(), &["init", "--version", "1.0.0"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let args = ["run", wasm, "--execute", "--batch-size", "4", "--skip-verify"];
    let out = command(&db, journal.path(), &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let run = text.split_whitespace().nth(2).unwrap().to_string();
    // The command names the journal the run used (not the default one).
    let hint = format!(
        "godwit journal reports {run} --journal {} --kind conflict",
        journal.path().display()
    );
    assert!(
        text.contains(&format!("all 11: {hint}")),
        "the summary names the command:\n{text}"
    );
    // Typed as printed, without GODWIT_JOURNAL, it lists all eleven.
    let words: Vec<&str> = hint.split_whitespace().collect();
    let listed = godwit().args(&words[1..]).arg("--json").output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(
        stdout(&listed).matches("\"conflict\"").count(),
        11,
        "{}",
        stdout(&listed)
    );
    assert_eq!(
        text.matches("ada@example.com: user").count(),
        5,
        "five samples:\n{text}"
    );

    let out = reports(journal.path(), &run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 12, "{lines:?}");
    assert_eq!(lines[11], format!("11 reports in run {run}"));
    for (i, line) in lines[..11].iter().enumerate() {
        assert!(line.contains("pass 0"), "{line}");
        assert!(
            line.ends_with(&format!(
                "conflict  ada@example.com: user {} has the same address as user 0 once normalized",
                i + 1
            )),
            "{line}"
        );
    }

    let out = reports(journal.path(), &run, &["--kind", "conflict", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 11);
    let batches: std::collections::BTreeSet<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(batches.len(), 3, "reports of three batches: {rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["run_id"] == run.as_str() && r["kind"] == "conflict" && r["pass"] == 0)
    );

    let out = reports(journal.path(), &run, &["--kind", "other"]);
    assert_eq!(stdout(&out).trim(), format!("0 reports of kind other in run {run}"));

    // A dry run's reports are listed too, and agree with its summary's count.
    let dry = run_ok(&db, journal.path(), &["run", wasm, "--batch-size", "4"]);
    let dry_run = dry["run_id"].as_str().unwrap();
    let out = reports(journal.path(), dry_run, &["--json"]);
    // The execute run made every address unique.
    assert_eq!(stdout(&out).lines().count(), 11, "{}", stdout(&out));
    assert_eq!(dry["summary"]["passes"][0]["reports"]["conflict"]["count"], 11);

    let out = reports(journal.path(), "no-such-run", &[]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
}

#[test]
fn journal_reports_and_the_summary_hint_escape_plugin_text() {
    let db = TestDb::new(server(), "authors_reports_escape");
    // Batches of ten: one report each, six in all (one more than the samples).
    db.insert("things", (0..60).map(|i| doc! {"_id": i}).collect());
    let journal = tempfile::tempdir().unwrap();
    let wasm = plugin("hostile-escape");
    let out = command(&db, journal.path(), &["run", wasm.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_terminal_safe(&out);
    let text = stdout(&out);
    let run = text.split_whitespace().nth(2).unwrap().to_string();
    // The kind is quoted for the shell, and escaped for the terminal.
    assert!(
        text.contains(&format!(
            "all 6: godwit journal reports {run} --journal {} --kind 'kind\\u{{1b}}[1m'",
            journal.path().display()
        )),
        "{text}"
    );

    let out = reports(journal.path(), &run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_terminal_safe(&out);
    assert_eq!(stdout(&out).lines().count(), 7);
    assert!(
        stdout(&out).contains("\\nerror: forged report line"),
        "{}",
        stdout(&out)
    );

    let out = reports(journal.path(), &run, &["--kind", KIND, "--json"]);
    assert_terminal_safe(&out);
    let rows: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6);
    for row in rows {
        assert_eq!(
            (row["kind"].as_str(), row["key"].as_str(), row["message"].as_str()),
            (Some(KIND), Some(KEY), Some(MESSAGE))
        );
    }
}

/// A plugin directory holding copies of the named test components.
fn chain_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

fn sha256_of(file: &Path) -> String {
    let out = godwit()
        .args(["plugin", "inspect", "--json"])
        .arg(file)
        .output()
        .unwrap();
    json(&out)["sha256"].as_str().unwrap().to_string()
}

/// The same plugin rebuilt: a custom section appended changes the file's
/// sha256, not what it does or declares.
fn rebuild(file: &Path) {
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(b"\x00\x07\x05driftx").unwrap();
}

#[test]
fn chain_drift_is_named_by_plan_and_status_and_refused_by_upgrade() {
    let db = TestDb::new(server(), "authors_drift");
    db.insert("items", (0..10).map(|i| doc! {"_id": i}).collect());
    let journal = tempfile::tempdir().unwrap();
    let chain = chain_dir(&["chain-a", "chain-b", "chain-c"]);
    let dir = chain.path().to_str().unwrap();
    let run = |args: &[&str]| command(&db, journal.path(), args).output().unwrap();
    assert!(run(&["init", "--version", "0.9.0"]).status.success());
    let out = run(&["upgrade", dir, "--execute"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The files that ran: no drift.
    let out = run(&["plan", dir]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("no drift"), "{}", stdout(&out));

    // chain-b rebuilt after it ran.
    let b = chain.path().join("chain-b.wasm");
    let recorded = sha256_of(&plugin("chain-b"));
    rebuild(&b);
    let found = sha256_of(&b);
    assert_ne!(recorded, found);
    let history = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    let b_run = history.get_array("history").unwrap()[2]
        .as_document()
        .unwrap()
        .get_str("run_id")
        .unwrap()
        .to_string();
    let drift_line = format!(
        "version 1.1.0: {} has sha256 {}..., but run {b_run} applied sha256 {}...",
        b.display(),
        &found[..12],
        &recorded[..12]
    );

    let out = run(&["plan", dir]);
    assert_eq!(out.status.code(), Some(17), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("drift: {drift_line}")),
        "{}",
        stderr(&out)
    );
    let out = run(&["plan", dir, "--json"]);
    assert_eq!(out.status.code(), Some(17), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["drift"][0]["drift"], "changed");
    assert_eq!(plan["drift"][0]["found"], found.as_str());
    assert_eq!(plan["drift"][0]["recorded"], recorded.as_str());
    // Without a database there is nothing to compare with.
    let out = godwit().args(["plan", dir]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = run(&["status", "--plugins", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("drift: {drift_line}")),
        "{}",
        stdout(&out)
    );

    // Upgrade refuses before anything runs, naming the flag.
    let before = db.dump();
    let out = run(&["upgrade", dir, "--execute"]);
    assert_one_error_line(&out, 17, &[&drift_line, "--allow-drift"]);
    assert_eq!(db.dump(), before, "nothing written");
    let out = run(&["upgrade", dir, "--execute", "--allow-drift"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("drift allowed (--allow-drift): {drift_line}")),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("is at version 1.2.0, the head"),
        "{}",
        stdout(&out)
    );

    // An applied version without its plugin is named, not refused.
    std::fs::copy(plugin("chain-b"), &b).unwrap();
    std::fs::remove_file(chain.path().join("chain-a.wasm")).unwrap();
    let a_run = history.get_array("history").unwrap()[1]
        .as_document()
        .unwrap()
        .get_str("run_id")
        .unwrap()
        .to_string();
    let missing = format!("version 1.0.0: no plugin in the directory (run {a_run} applied chain-a, sha256 ");
    let out = run(&["plan", dir]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("note: {missing}")), "{}", stderr(&out));
    let out = run(&["status", "--plugins", dir]);
    assert!(stdout(&out).contains(&format!("note: {missing}")), "{}", stdout(&out));
    let out = run(&["upgrade", dir, "--execute"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("warning: {missing}")),
        "{}",
        stderr(&out)
    );
}
