//! The password of the MongoDB URI never leaves godwit: every command an
//! operator or auditor runs (dry run, execute, a failing run, status, journal
//! list/show/verify/export, verbose logs, JSON, help) is run with a URI whose
//! password the server really accepts, and its stdout, its stderr, every file
//! of the journal directory (raw bytes) and godwit's metadata in the database
//! are searched for the password.

use crate::db::{TestDb, block_on, server};
use crate::support::{plugin, stderr, stdout};
use bson::doc;
use std::path::Path;

const PASSWORD: &str = "Sw0rdfishNeverPrinted";

/// A user with `PASSWORD` on the shared test server (SecantusDB checks
/// credentials once a user exists), and a URI that logs in as it.
fn uri_with_password(db: &TestDb) -> String {
    let user = format!("faults_secret_{}", std::process::id());
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        let admin = client.database("admin");
        // Created once per test process; a second test would find it there.
        let _ = admin
            .run_command(doc! {"createUser": &user, "pwd": PASSWORD, "roles": ["root"]})
            .await;
    });
    let rest = db.uri.strip_prefix("mongodb://").unwrap();
    let (host, options) = rest.split_once('/').unwrap();
    format!("mongodb://{user}:{PASSWORD}@{host}/{options}&authSource=admin")
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_uri_password_appears_in_no_output_journal_file_or_metadata() {
    let db = TestDb::new(server(), "secrets");
    db.insert("counters", (0..30_i64).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    db.insert("things", (0..12).map(|i| doc! {"_id": i}).collect());
    let uri = uri_with_password(&db);
    let journal = tempfile::tempdir().unwrap();
    let increment = plugin("increment");
    let increment = increment.to_str().unwrap();
    let hostile = plugin("hostile");
    let hostile = hostile.to_str().unwrap();

    let mut outputs = 0;
    let mut run = |args: &[&str], expect_success: bool| -> String {
        // Everything through the environment, as an operator's shell would;
        // no RUST_LOG, so that -v/-vv really log more.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_godwit"))
            .args(args)
            .env("MONGODB_URI", &uri)
            .env("GODWIT_DB", &db.name)
            .env("GODWIT_JOURNAL", journal.path())
            .env(
                "GODWIT_CACHE_DIR",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"),
            )
            .env_remove("RUST_LOG")
            .env_remove("GODWIT_CONFIG")
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.success(), expect_success, "godwit {args:?}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "godwit {args:?} printed the password:\n{text}"
        );
        outputs += 1;
        text
    };

    // Runs: dry, execute (JSON and text, verbose logs at every level), a
    // failing run, status, the journal commands, help with the URI in the environment.
    let dry = run(&["run", increment, "--json", "-vv"], true);
    assert!(dry.contains("\"mode\": \"dry_run\""), "{dry}");
    run(&["run", increment, "-v"], true);
    let exec = run(
        &["run", increment, "--execute", "--json", "-vv", "--batch-size", "7"],
        true,
    );
    let run_id = serde_json::from_str::<serde_json::Value>(&stdout_json(&exec)).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = run(
        &["run", hostile, "--execute", "--param", "behaviour=panic", "-vv"],
        false,
    );
    assert!(failed.contains("plugin hostile trapped"), "{failed}");
    run(
        &["run", hostile, "--param", "behaviour=error", "--new-run", "--json"],
        false,
    );
    let status = run(&["status", "-v"], true);
    assert!(status.contains("unfinished runs"), "{status}");
    run(&["status", "--json"], true);
    run(&["init", "--version", "9.9.9", "--force", "-vv"], true);
    let list = run(&["journal", "list"], true);
    assert!(list.contains(&run_id), "{list}");
    run(&["journal", "list", "--json"], true);
    for sub in ["show", "export"] {
        let text = run(&["journal", sub, &run_id], true);
        assert!(text.contains(&run_id), "{text}");
        run(&["journal", sub, &run_id, "--json"], true);
    }
    // With MONGODB_URI and GODWIT_DB set, verify also checks the database's history.
    run(&["journal", "verify", "-vv"], true);
    run(&["journal", "verify", &run_id, "--json"], true);
    run(&["journal", "replay", &run_id, "--plugin", increment], true);
    run(&["run", "--help"], true);
    run(&["status", "--help"], true);

    // Every file of the journal, raw.
    let mut journal_files = Vec::new();
    files(journal.path(), &mut journal_files);
    assert!(!journal_files.is_empty());
    let mut journal_bytes = 0;
    for file in &journal_files {
        let bytes = std::fs::read(file).unwrap();
        journal_bytes += bytes.len();
        assert!(
            !contains(&bytes, PASSWORD.as_bytes()),
            "the password is in journal file {}",
            file.display()
        );
    }
    // The run headers do hold the URI, redacted.
    let all: Vec<u8> = journal_files.iter().flat_map(|f| std::fs::read(f).unwrap()).collect();
    assert!(contains(&all, b":****@"), "the journal records the redacted URI");

    // godwit's metadata in the database (history, lock, markers).
    let metadata = format!("{:?}", db.find_all("godwit_metadata"));
    assert!(!metadata.contains(PASSWORD), "{metadata}");

    eprintln!(
        "secrets: password absent from {outputs} command outputs (stdout+stderr), {} journal files ({journal_bytes} bytes) \
         and the metadata collection",
        journal_files.len()
    );
}

/// The JSON document in a `--json` run's combined output (logs go to stderr,
/// after it here).
fn stdout_json(text: &str) -> String {
    let start = text.find("{\n").expect("a JSON document");
    let end = text[start..].find("\n}").expect("its end") + start + 2;
    text[start..end].to_string()
}
