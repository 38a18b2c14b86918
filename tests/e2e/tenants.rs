//! `godwit upgrade DIR --databases PATTERN`: one chain over many databases
//! (one per tenant) - a failing database does not stop the others, the
//! summary names it with its exit code, and a rerun continues only what is
//! pending.

use crate::db::{TestDb, fresh_db, server};
use crate::support::{plugin, stderr, stdout};
use bson::doc;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A plugin directory with the three-step test chain (1.0.0 -> 1.1.0 -> 1.2.0).
fn chain_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["chain-a", "chain-b", "chain-c"] {
        std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// `godwit ARGS` against the test server without `--db`, with its own journal.
fn godwit_on(uri: &str, journal: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(args)
        .env("MONGODB_URI", uri)
        .env("GODWIT_JOURNAL", journal)
        .env_remove("GODWIT_DB")
        .env(
            "GODWIT_CACHE_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"),
        )
        .env("RUST_LOG", "warn")
        .output()
        .expect("run godwit")
}

/// Databases named `base_SUFFIX`, each with 12 `items`, stamped at 0.9.0.
fn tenants(base: &str, suffixes: &[String], journal: &Path) -> Vec<TestDb> {
    suffixes
        .iter()
        .map(|suffix| {
            let db = TestDb::named(&server().uri, &format!("{base}_{suffix}"));
            db.insert("items", (0..12).map(|i| doc! {"_id": i}).collect());
            crate::support::stamp(&db, journal, "0.9.0");
            db
        })
        .collect()
}

fn version(db: &TestDb) -> Option<String> {
    db.find_one("godwit_metadata", doc! {"_id": "schema"})
        .map(|s| s.get_str("version").unwrap().to_string())
}

fn history(db: &TestDb) -> Vec<(String, String)> {
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| {
            let h = h.as_document().unwrap();
            (
                h.get_str("version").unwrap().to_string(),
                h.get_str("run_id").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn twenty_tenants_one_failing_the_others_finish_and_a_rerun_continues_only_it() {
    let base = fresh_db("tenants");
    let journal = tempfile::tempdir().unwrap();
    let suffixes: Vec<String> = (0..20).map(|i| format!("{i:02}")).collect();
    let dbs = tenants(&base, &suffixes, journal.path());
    let dir = chain_dir();
    let dir = dir.path().to_str().unwrap();
    let pattern = format!("{base}_*");
    let uri = &server().uri;

    // Tenant 07's items refuse the second step's field (a validator): its
    // chain-b write fails on the server after chain-a was stamped.
    let bad = &dbs[7];
    bad.command(doc! {"collMod": "items", "validator": {"v2": {"$exists": false}}});

    let out = godwit_on(
        uri,
        journal.path(),
        &["upgrade", dir, "--databases", &pattern, "--execute"],
    );
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(19), "{text}\n{err}");
    // Every tenant but 07 is at the head, each step stamped.
    for (i, db) in dbs.iter().enumerate() {
        if i == 7 {
            continue;
        }
        assert_eq!(version(db).as_deref(), Some("1.2.0"), "{}", db.name);
        let versions: Vec<String> = history(db).into_iter().map(|(v, _)| v).collect();
        assert_eq!(versions, ["0.9.0", "1.0.0", "1.1.0", "1.2.0"], "{}", db.name);
        for item in db.find_all("items") {
            assert_eq!(item.get_str("v3").unwrap(), "1.2.0", "{}", db.name);
        }
    }
    // 07 kept its first step and nothing of the failed one.
    assert_eq!(version(bad).as_deref(), Some("1.0.0"));
    assert!(bad.find_all("items").iter().all(|i| !i.contains_key("v2")));
    // The summary names it with its exit code, the step, and the command
    // that continues it.
    let name = &bad.name;
    assert!(
        text.contains(&format!(
            "  {name}  failed (exit 8) 0.9.0 -> 1.0.0; ran chain-a 1.0.0; failed in chain-b 1.1.0"
        )),
        "{text}"
    );
    assert!(text.contains("19 upgraded, 1 failed"), "{text}");
    assert!(err.contains(&format!("failed: {name} (exit 8)")), "{err}");
    assert!(
        err.contains(&format!(
            "continue with: godwit upgrade {dir} --databases {name} --execute"
        )),
        "{err}"
    );
    // The failed step's error says which database and run.
    let failed_run = err
        .lines()
        .find_map(|l| l.strip_prefix(&format!("error: database {name}: run ")))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("no error line for {name}: {err}"))
        .to_string();
    assert!(err.contains("Document failed validation"), "{err}");

    // The cause fixed, the same command again: only 07 runs, continuing the
    // failed run; the 19 others are untouched.
    let others: Vec<_> = dbs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, db)| db.dump())
        .collect();
    bad.command(doc! {"collMod": "items", "validator": {}});
    let out = godwit_on(
        uri,
        journal.path(),
        &["upgrade", dir, "--databases", &pattern, "--execute", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = report["databases"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["database"], dbs[i].name, "name order");
        assert_eq!(row["exit_code"], 0);
        assert_eq!(row["to_version"], "1.2.0");
        if i == 7 {
            assert_eq!(row["outcome"], "upgraded", "{row}");
            assert_eq!(row["from_version"], "1.0.0");
            let ran: Vec<(&str, &str)> = row["plugins_run"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["plugin"].as_str().unwrap(), s["status"].as_str().unwrap()))
                .collect();
            assert_eq!(ran, [("chain-b", "finished"), ("chain-c", "finished")]);
            assert_eq!(row["plugins_run"][0]["run_id"], failed_run, "the failed run resumed");
        } else {
            assert_eq!(row["outcome"], "up_to_date", "{row}");
            assert_eq!(row["plugins_run"], serde_json::json!([]));
        }
    }
    assert_eq!(report["counts"]["upgraded"], 1);
    assert_eq!(report["counts"]["up_to_date"], 19);
    assert_eq!(report["rerun"], serde_json::Value::Null);
    let after: Vec<_> = dbs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, db)| db.dump())
        .collect();
    assert!(others == after, "the 19 upgraded databases were not touched again");
    let versions: Vec<String> = history(bad).into_iter().map(|(v, _)| v).collect();
    assert_eq!(versions, ["0.9.0", "1.0.0", "1.1.0", "1.2.0"]);
    assert_eq!(history(bad)[2].1, failed_run);
    for item in bad.find_all("items") {
        assert_eq!(
            (item.get_str("v2").unwrap(), item.get_str("v3").unwrap()),
            ("1.1.0", "1.2.0")
        );
    }
    crate::support::verify_journal(journal.path());
}

#[test]
fn the_pattern_selects_by_name_and_nothing_else_is_touched() {
    let base = fresh_db("tenantsel");
    let journal = tempfile::tempdir().unwrap();
    let suffixes: Vec<String> = ["a1", "a2", "b1", "b22", "keep"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let dbs = tenants(&base, &suffixes, journal.path());
    let dir = chain_dir();
    let dir = dir.path().to_str().unwrap();
    let uri = &server().uri;
    let dumps = |dbs: &[TestDb]| dbs.iter().map(TestDb::dump).collect::<Vec<_>>();
    let before = dumps(&dbs);

    // Nothing matches: one line naming the pattern, exit 13, nothing written.
    let out = godwit_on(
        uri,
        journal.path(),
        &[
            "upgrade",
            dir,
            "--databases",
            &format!("{base}_zz*,{base}_c?"),
            "--execute",
        ],
    );
    assert_eq!(out.status.code(), Some(13), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: no database on ")
            && err.contains(&format!("matches --databases \"{base}_zz*,{base}_c?\"")),
        "{err}"
    );
    // --db and --databases together: refused before the database is read.
    let out = godwit_on(
        uri,
        journal.path(),
        &[
            "upgrade",
            dir,
            "--databases",
            &format!("{base}_*"),
            "--db",
            &dbs[0].name,
            "--execute",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("drop --db"), "{}", stderr(&out));
    // A dry run over the matching ones writes nothing and previews each.
    let pattern = format!("{base}_a?,{base}_b?");
    let out = godwit_on(
        uri,
        journal.path(),
        &["upgrade", dir, "--databases", &pattern, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let previewed: Vec<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["outcome"], "previewed", "{r}");
            r["database"].as_str().unwrap()
        })
        .collect();
    assert_eq!(previewed, [&dbs[0].name, &dbs[1].name, &dbs[2].name]);
    assert_eq!(dumps(&dbs), before, "a dry run writes nothing");

    let out = godwit_on(
        uri,
        journal.path(),
        &["upgrade", dir, "--databases", &pattern, "--execute"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "3 databases match --databases {pattern}: {}, {}, {}",
            dbs[0].name, dbs[1].name, dbs[2].name
        )),
        "{}",
        stdout(&out)
    );
    for db in &dbs[..3] {
        assert_eq!(version(db).as_deref(), Some("1.2.0"), "{}", db.name);
    }
    // b22 (`?` is one character) and keep are as they were.
    assert_eq!(dumps(&dbs[3..]), before[3..], "non-matching databases untouched");
}

#[test]
fn fail_fast_stops_at_the_first_failing_database() {
    let base = fresh_db("tenantff");
    let journal = tempfile::tempdir().unwrap();
    let suffixes: Vec<String> = ["1", "2", "3"].iter().map(|s| s.to_string()).collect();
    let dbs = tenants(&base, &suffixes, journal.path());
    let dir = chain_dir();
    let dir = dir.path().to_str().unwrap();
    // Tenant 1 is locked by another runner (a live lease): exit 5 for it.
    let far = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() + 3_600_000);
    dbs[0].insert(
        "godwit_metadata",
        vec![
            doc! {"_id": "lock", "run_id": "elsewhere", "host": "other-host", "pid": 1_i64,
            "plugin": "chain-a 1.0.0", "expires_at": far, "token": 1_i64},
        ],
    );
    let later: Vec<_> = dbs[1..].iter().map(TestDb::dump).collect();
    let out = godwit_on(
        &server().uri,
        journal.path(),
        &[
            "upgrade",
            dir,
            "--databases",
            &format!("{base}_*"),
            "--execute",
            "--fail-fast",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(19), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows: Vec<(&str, i64)> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["outcome"].as_str().unwrap(), r["exit_code"].as_i64().unwrap()))
        .collect();
    assert_eq!(rows, [("failed", 5), ("skipped", 0), ("skipped", 0)]);
    assert_eq!(
        report["rerun"],
        format!(
            "godwit upgrade {dir} --databases {0}_1,{0}_2,{0}_3 --execute --journal {1}",
            base,
            journal.path().display()
        )
    );
    assert_eq!(
        dbs[1..].iter().map(TestDb::dump).collect::<Vec<_>>(),
        later,
        "skipped databases untouched"
    );
}

#[test]
fn database_names_are_escaped_on_the_terminal_and_exact_in_json() {
    let base = fresh_db("tenantesc");
    let journal = tempfile::tempdir().unwrap();
    // MongoDB allows control characters in database names; a tenant's
    // name is not the operator's to choose.
    let suffixes: Vec<String> = ["\u{1b}[31mred", "a\nerror: forged", "\u{202e}evil"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let dbs = tenants(&base, &suffixes, journal.path());
    let far = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() + 3_600_000);
    dbs[1].insert(
        "godwit_metadata",
        vec![doc! {"_id": "lock", "run_id": "elsewhere", "host": "h", "pid": 1_i64, "plugin": "p", "expires_at": far, "token": 1_i64}],
    );
    let dir = chain_dir();
    let dir = dir.path().to_str().unwrap();
    let pattern = format!("{base}_*");
    let out = godwit_on(
        &server().uri,
        journal.path(),
        &["upgrade", dir, "--databases", &pattern, "--execute"],
    );
    assert_eq!(out.status.code(), Some(19), "{}", stderr(&out));
    let (text, err) = (stdout(&out), stderr(&out));
    for output in [&text, &err] {
        assert!(
            !output.chars().any(|c| c == '\u{1b}' || c == '\u{202e}' || c == '\r'),
            "raw control character in:\n{output}"
        );
        assert!(!output.lines().any(|l| l.starts_with("error: forged")), "{output}");
    }
    // A summary row: the name as shown, padded, then the outcome.
    let row = |shown: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("  ")?.strip_prefix(shown)?.strip_prefix(' '))
            .map(|rest| rest.trim_start().to_string())
            .unwrap_or_else(|| panic!("no summary row for {shown}: {text}"))
    };
    assert!(row(&format!("{base}_\\u{{1b}}[31mred")).starts_with("upgraded 0.9.0 -> 1.2.0"));
    assert!(row(&format!("{base}_a\\nerror: forged")).starts_with("failed (exit 5)"));
    assert!(
        err.contains(&format!("failed: {base}_a\\nerror: forged (exit 5)")),
        "{err}"
    );
    // JSON keeps the exact names (escaped only as JSON escapes them).
    dbs[1].command(doc! {"delete": "godwit_metadata", "deletes": [{"q": {"_id": "lock"}, "limit": 1}]});
    let out = godwit_on(
        &server().uri,
        journal.path(),
        &["upgrade", dir, "--databases", &pattern, "--execute", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains('\u{1b}'), "raw ESC in JSON");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["database"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = dbs.iter().map(|d| d.name.as_str()).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(report["counts"]["upgraded"], 1);
    assert_eq!(report["counts"]["up_to_date"], 2);
}

#[test]
fn sigterm_stops_after_the_current_batch_skips_the_rest_and_the_rerun_finishes_all() {
    let base = fresh_db("tenantint");
    let journal = tempfile::tempdir().unwrap();
    let suffixes: Vec<String> = ["1", "2", "3"].iter().map(|s| s.to_string()).collect();
    let dbs = tenants(&base, &suffixes, journal.path());
    let dir = chain_dir();
    let dir = dir.path().to_str().unwrap();
    let pattern = format!("{base}_*");
    let args = [
        "upgrade",
        dir,
        "--databases",
        &pattern,
        "--execute",
        "--json",
        "--batch-size",
        "2",
        "--max-docs-per-sec",
        "4",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(args)
        .env("MONGODB_URI", &server().uri)
        .env("GODWIT_JOURNAL", journal.path())
        .env(
            "GODWIT_CACHE_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"),
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first database's first step holds its lock, SIGTERM.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dbs[0].find_one("godwit_metadata", doc! {"_id": "lock"}).is_none() {
        assert!(std::time::Instant::now() < deadline, "the first step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) with the pid of our own child and a valid signal.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows: Vec<(&str, i64)> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["outcome"].as_str().unwrap(), r["exit_code"].as_i64().unwrap()))
        .collect();
    assert_eq!(rows, [("interrupted", 130), ("skipped", 0), ("skipped", 0)]);
    let interrupted = report["databases"][0]["plugins_run"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(report["databases"][0]["plugins_run"][0]["status"], "interrupted");
    for db in &dbs[1..] {
        assert_eq!(version(db).as_deref(), Some("0.9.0"), "{} was not started", db.name);
    }

    // The same command again (full speed): the interrupted run resumes, every database reaches the head.
    let out = godwit_on(&server().uri, journal.path(), &args[..6]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["counts"]["upgraded"], 3, "{report}");
    assert_eq!(report["databases"][0]["plugins_run"][0]["run_id"], interrupted);
    for db in &dbs {
        assert_eq!(version(db).as_deref(), Some("1.2.0"), "{}", db.name);
    }
}
