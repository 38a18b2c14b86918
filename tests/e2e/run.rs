//! `godwit run` against a real server: dry runs write nothing, execute
//! applies what the dry run reported, stamps, resume refusals, throttled
//! graceful stop, transactions detection.

use crate::db::{TestDb, server, standalone};
use crate::support::{command, plugin, run_ok, stderr, stdout, verify_journal};
use bson::doc;

fn users(db: &TestDb, n: i32) {
    let docs = (0..n)
        .map(|i| match i % 4 {
            0 => doc! {"_id": i, "email": format!("user{i}@example.com")},
            1 => doc! {"_id": i, "email": format!(" User{i}@Example.COM")},
            2 => doc! {"_id": i, "email": format!("USER{i}@EXAMPLE.COM  "), "name": "x"},
            _ => doc! {"_id": i, "name": "no email"},
        })
        .collect();
    db.insert("users", docs);
    db.insert("orders", vec![doc! {"_id": 1, "user": 1}]);
}

fn counters(db: &TestDb, n: i64) {
    db.insert("counters", (0..n).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
}

#[test]
fn dry_run_leaves_every_collection_byte_for_byte_unchanged() {
    let db = TestDb::new(server(), "dry");
    users(&db, 120);
    // A stamped database, so that the dry run is a faithful preview of execute.
    db.insert(
        "godwit_metadata",
        vec![doc! {"_id": "schema", "version": "1.0.0", "history": []}],
    );
    let journal = tempfile::tempdir().unwrap();
    let before = db.dump();
    let report = run_ok(
        &db,
        journal.path(),
        &["run", plugin("normalize-emails").to_str().unwrap(), "--batch-size", "7"],
    );
    assert_eq!(report["mode"], "dry_run");
    assert_eq!(report["status"], "finished");
    assert_eq!(
        report["summary"]["passes"][0]["documents"], 90,
        "users with a string email"
    );
    assert_eq!(report["summary"]["passes"][0]["updates"], 60);
    assert_eq!(db.dump(), before, "a dry run must not change a byte");
    // Resuming or repeating a dry run writes nothing either.
    run_ok(
        &db,
        journal.path(),
        &["run", plugin("normalize-emails").to_str().unwrap()],
    );
    assert_eq!(db.dump(), before);
}

#[test]
fn execute_applies_exactly_the_reported_actions_then_a_second_run_finds_nothing() {
    let db = TestDb::new(server(), "exec");
    users(&db, 200);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("normalize-emails");
    let file = file.to_str().unwrap();

    // Unstamped database: the plugin requires >=1.0.0, so execute is refused with a hint.
    let out = command(&db, journal.path(), &["run", file, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no schema version") && stderr(&out).contains("godwit init"),
        "{}",
        stderr(&out)
    );
    let out = command(&db, journal.path(), &["init", "--version", "1.0.0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let dry = run_ok(&db, journal.path(), &["run", file]);
    let before = db.find_all("users");
    let exec = run_ok(&db, journal.path(), &["run", file, "--execute", "--batch-size", "16"]);
    assert_eq!(exec["status"], "finished");
    assert_eq!(exec["stamped_version"], "1.1.0");
    assert_eq!(
        exec["summary"]["passes"][0]["updates"],
        dry["summary"]["passes"][0]["updates"]
    );

    // Exactly the reported changes: every address normalized, nothing else touched.
    let after = db.find_all("users");
    let mut changed = 0;
    for (b, a) in before.iter().zip(&after) {
        match b.get_str("email") {
            Ok(email) => {
                let normalized = email.trim().to_lowercase();
                assert_eq!(a.get_str("email").unwrap(), normalized);
                changed += usize::from(normalized != email);
                let mut rest_b = b.clone();
                let mut rest_a = a.clone();
                rest_b.remove("email");
                rest_a.remove("email");
                assert_eq!(rest_a, rest_b);
            }
            Err(_) => assert_eq!(a, b),
        }
    }
    assert_eq!(serde_json::json!(changed), exec["summary"]["passes"][0]["updates"]);
    assert_eq!(db.find_all("orders"), vec![doc! {"_id": 1, "user": 1}]);

    let again = run_ok(&db, journal.path(), &["run", file, "--execute"]);
    assert_eq!(again["summary"]["passes"][0]["updates"], 0, "nothing left to do");
    assert_eq!(db.find_all("users"), after);

    // Stamp and history: the version, one entry per run, journal heads that verify.
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "1.1.0");
    let history = schema.get_array("history").unwrap();
    assert_eq!(history.len(), 3, "init + two runs: {history:?}");
    let first = history[1].as_document().unwrap();
    assert_eq!(first.get_str("run_id").unwrap(), exec["run_id"].as_str().unwrap());
    assert_eq!(first.get_str("sha256").unwrap(), exec["sha256"].as_str().unwrap());
    let verified = verify_journal(journal.path());
    assert!(verified.contains(first.get_str("run_id").unwrap()), "{verified}");
    // No progress marker or lock is left behind.
    let leftovers: Vec<_> = db
        .find_all("godwit_metadata")
        .into_iter()
        .filter(|d| d.get_str("_id").ok() != Some("schema"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Starts a throttled execute run and stops it with SIGTERM after its first batch.
fn interrupted_run(db: &TestDb, journal: &std::path::Path, file: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", file, "--execute", "--max-docs-per-sec", "40", "--json"];
    args.extend_from_slice(extra);
    let child = command(db, journal, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once it has committed a batch (its progress marker exists).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db
        .find_one("godwit_metadata", doc! {"_id": {"$regex": "^progress:"}})
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "the run never committed a batch");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stopped gracefully: {}", stderr(&out));
    assert!(
        stderr(&out).contains("the run is resumable; continue with: godwit run"),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["status"], "interrupted");
    report["run_id"].as_str().unwrap().to_string()
}

#[test]
fn graceful_stop_then_resume_completes_once() {
    let db = TestDb::new(server(), "stop");
    counters(&db, 200);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let run = interrupted_run(&db, journal.path(), file.to_str().unwrap(), &[]);
    let done: i64 = db.find_all("counters").iter().map(|d| d.get_i64("n").unwrap()).sum();
    assert!(done > 0 && done < 200, "stopped midway, {done} applied");
    let resumed = run_ok(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"]);
    assert_eq!(resumed["run_id"], run.as_str(), "the unfinished run is resumed");
    assert_eq!(resumed["resumed"], true);
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 1));
    assert_eq!(resumed["summary"]["passes"][0]["updates"], 200);
}

#[test]
fn resume_with_a_changed_plugin_params_or_database_is_refused_before_any_write() {
    let db = TestDb::new(server(), "refuse");
    counters(&db, 200);
    let journal = tempfile::tempdir().unwrap();
    let original = plugin("increment");
    let run = interrupted_run(&db, journal.path(), original.to_str().unwrap(), &["--param", "tag=a"]);
    let state = db.dump();

    // Same plugin name, different bytes: a custom section appended to the component.
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("increment.wasm");
    let mut bytes = std::fs::read(&original).unwrap();
    bytes.extend_from_slice(&[0x00, 0x04, 0x03, b'a', b'b', b'c']);
    std::fs::write(&changed, &bytes).unwrap();
    let out = command(
        &db,
        journal.path(),
        &["run", changed.to_str().unwrap(), "--execute", "--param", "tag=a"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    let original_sha = godwit::hash::to_hex(&godwit::hash::sha256(&std::fs::read(&original).unwrap()));
    let changed_sha = godwit::hash::to_hex(&godwit::hash::sha256(&bytes));
    assert!(
        err.contains(&run) && err.contains(&original_sha) && err.contains(&changed_sha),
        "{err}"
    );
    assert!(err.contains(changed.to_str().unwrap()), "names the file: {err}");

    let out = command(
        &db,
        journal.path(),
        &["run", original.to_str().unwrap(), "--execute", "--param", "tag=b"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its parameters were tag=a, now tag=b"),
        "{}",
        stderr(&out)
    );

    let other = TestDb::named(&db.uri, &crate::db::fresh_db("other"));
    let out = command(
        &other,
        journal.path(),
        &[
            "run",
            original.to_str().unwrap(),
            "--execute",
            "--param",
            "tag=a",
            "--resume",
            &run,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("it ran on database {}, not {}", db.name, other.name)),
        "{}",
        stderr(&out)
    );

    assert_eq!(db.dump(), state, "refusals write nothing");
    assert!(other.dump().is_empty());
}

#[test]
fn server_without_transactions_is_detected_and_the_weaker_guarantee_reported() {
    let server = standalone();
    let db = TestDb::new(&server, "standalone");
    counters(&db, 30);
    let journal = tempfile::tempdir().unwrap();
    // `increment` declares idempotent: false ($inc twice counts 2): refused
    // in one line naming the plugin and the override, before anything runs.
    let file = plugin("increment");
    let run = ["run", file.to_str().unwrap(), "--execute"];
    let out = command(&db, journal.path(), &run).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("plugin \"increment\" declares idempotent: false") && err.contains("--allow-at-least-once"),
        "{err}"
    );
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 0));
    assert!(db.find_one("godwit_metadata", doc! {"_id": "schema"}).is_none());
    // A dry run applies nothing: not refused.
    let out = command(&db, journal.path(), &run[..2]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = command(&db, journal.path(), &[&run[..], &["--allow-at-least-once"]].concat())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no transactions") && stderr(&out).contains("at least once"),
        "{}",
        stderr(&out)
    );
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 1));
}

/// The `$inc` migration issue 20 found without a home: `count-visits` adds
/// a visit to every page and declares `idempotent: false`. Its execute is
/// stamped without the verification (a dry re-run would want every write
/// again), the history says so, and a second execute - a new run, or
/// `--new-run` over an unfinished one - is refused in one line naming the
/// earlier run and `--allow-repeat`, until a revert undoes the run.
#[test]
fn a_migration_that_does_not_converge_is_stamped_unverified_and_never_applied_twice() {
    const PAGES: i64 = 60;
    let db = TestDb::new(server(), "visits");
    db.insert("pages", (0..PAGES).map(|i| doc! {"_id": i, "visits": i % 3}).collect());
    let visits = |db: &TestDb| -> Vec<i64> {
        db.find_all("pages")
            .iter()
            .map(|d| {
                d.get_i64("visits")
                    .or_else(|_| d.get_i32("visits").map(i64::from))
                    .unwrap()
            })
            .collect()
    };
    let start: Vec<i64> = visits(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("count-visits");
    let execute = ["run", file.to_str().unwrap(), "--execute"];

    // 1. Execute: applied once, stamped, verification skipped and recorded.
    let out = command(&db, journal.path(), &execute).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("verification: skipped: the plugin declares idempotent: false"),
        "{}",
        stdout(&out)
    );
    let once: Vec<i64> = start.iter().map(|v| v + 1).collect();
    assert_eq!(visits(&db), once);
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).expect("stamped");
    assert_eq!(schema.get_str("version").unwrap(), "1.0.0");
    let history = schema.get_array("history").unwrap();
    assert_eq!(history.len(), 1);
    let first = history[0].as_document().unwrap();
    assert_eq!(
        first.get_str("verified").unwrap(),
        "skipped: the plugin declares idempotent: false"
    );
    let run1 = first.get_str("run_id").unwrap().to_string();

    // 2. The same command again, and with --new-run: refused, nothing written.
    let state = db.dump();
    for args in [&execute[..], &[&execute[..], &["--new-run"]].concat()] {
        let out = command(&db, journal.path(), args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("plugin \"count-visits\" 1.0.0 declares idempotent: false")
                && err.contains(&format!("its run {run1} was already applied to database {}", db.name))
                && err.contains("--allow-repeat")
                && err.contains("godwit revert"),
            "{err}"
        );
        assert_eq!(db.dump(), state, "{args:?}: a refused run writes nothing");
    }
    // A dry run applies nothing: it runs, and warns that execute would be refused.
    let out = command(&db, journal.path(), &execute[..2]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("--execute would be refused"), "{}", stderr(&out));
    assert_eq!(db.dump(), state);

    // 3. Reverted, the run no longer counts: a new execute is no repeat.
    let out = command(&db, journal.path(), &["revert", &run1, "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "revert {run1}: {}", stderr(&out));
    assert_eq!(visits(&db), start);
    let out = command(&db, journal.path(), &execute).output().unwrap();
    assert!(out.status.success(), "after the revert: {}", stderr(&out));
    assert_eq!(visits(&db), once);

    // 4. An unfinished execute (killed after its second batch committed):
    // resuming it is no repeat; --new-run, abandoning its applied batches, is.
    let repeat = [&execute[..], &["--allow-repeat", "--batch-size", "20"]].concat();
    let out = command(&db, journal.path(), &repeat)
        .env("FAILPOINTS", "committed-before-journal=1*off->return")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint stops the run");
    let out = command(&db, journal.path(), &[&execute[..], &["--new-run"]].concat())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unfinished run") && err.contains("resume it instead") && err.contains("--allow-repeat"),
        "{err}"
    );
    // Resumed (no flag needed): every page has had exactly one more visit.
    let out = command(&db, journal.path(), &execute).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let twice: Vec<i64> = start.iter().map(|v| v + 2).collect();
    assert_eq!(visits(&db), twice, "the resumed run applied each page once");
    verify_journal(journal.path());
}

/// Two runners of a plugin that does not converge, on two machines (two
/// journals): the second passes the history check before the first has
/// stamped (a failpoint holds it there for 10 s), then takes the lock the
/// first has released. It is refused under the lock - the check is made
/// again there - and its opened run is abandoned, not left to be resumed.
#[test]
fn a_second_runner_of_a_migration_that_does_not_converge_is_refused_under_the_lock() {
    let db = TestDb::new(server(), "visits_race");
    db.insert("pages", (0..40_i64).map(|i| doc! {"_id": i, "visits": 0_i64}).collect());
    let (journal_a, journal_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = plugin("count-visits");
    let execute = ["run", file.to_str().unwrap(), "--execute"];
    let second = command(&db, journal_b.path(), &execute)
        .env("FAILPOINTS", "repeat-checked=sleep(10000)")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let first = command(&db, journal_a.path(), &execute).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let second = second.wait_with_output().unwrap();
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(
        err.contains("was already applied") && err.contains("--allow-repeat"),
        "{err}"
    );
    assert!(
        db.find_all("pages").iter().all(|d| d.get_i64("visits").unwrap() == 1),
        "applied once"
    );
    // The refused run is abandoned: the same command is refused again, not resumed.
    let again = command(&db, journal_b.path(), &execute).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(db.find_all("pages").iter().all(|d| d.get_i64("visits").unwrap() == 1));
}

#[test]
fn resumed_run_restores_plugin_state_and_reports_what_an_uninterrupted_run_would() {
    let db = TestDb::new(server(), "state");
    let mut docs: Vec<bson::Document> = (0..300)
        .map(|i| doc! {"_id": i, "email": format!(" User{i}@Example.COM")})
        .collect();
    // Collides with user 3 once normalized, but only in the last batch: the
    // plugin must still remember user 3 after the interruption.
    docs.push(doc! {"_id": 10_000, "email": "user3@EXAMPLE.com"});
    db.insert("users", docs);
    db.insert(
        "godwit_metadata",
        vec![doc! {"_id": "schema", "version": "1.0.0", "history": []}],
    );
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("normalize-emails");
    let file = file.to_str().unwrap();
    let dry = run_ok(&db, journal.path(), &["run", file, "--batch-size", "50"]);
    assert_eq!(dry["summary"]["passes"][0]["reports"]["conflict"]["count"], 1);

    interrupted_run(&db, journal.path(), file, &["--batch-size", "50"]);
    let resumed = run_ok(&db, journal.path(), &["run", file, "--execute", "--batch-size", "50"]);
    assert_eq!(resumed["resumed"], true);
    assert_eq!(
        resumed["summary"], dry["summary"],
        "the resumed run reports exactly what the dry run did"
    );
    let user = db.find_one("users", doc! {"_id": 10_000}).unwrap();
    assert_eq!(
        user.get_str("email").unwrap(),
        "user3@EXAMPLE.com",
        "the colliding address is reported, not merged"
    );
}

#[test]
fn residue_after_execute_is_not_stamped_unless_allowed() {
    let db = TestDb::new(server(), "residue");
    db.insert("things", (0..25).map(|i| doc! {"_id": i}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("hostile");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--param",
        "behaviour=stubborn",
        "--json",
    ];
    let out = command(&db, journal.path(), &args).output().unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("not stamped"), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["status"], "unclean");
    assert_eq!(report["residue"]["passes"][0]["updates"], 25);
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": "schema"}).is_none(),
        "not stamped"
    );
    let run = report["run_id"].clone();

    // The run stays resumable; with --allow-residue it is stamped, and the history says so.
    let mut allowed = args.to_vec();
    allowed.push("--allow-residue");
    let out = command(&db, journal.path(), &allowed).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["run_id"], run, "the unclean run was resumed and stamped");
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "0.0.1");
    let entry = schema.get_array("history").unwrap()[0].as_document().unwrap().clone();
    assert_eq!(
        entry.get_str("verified").unwrap(),
        "residue of 25 write actions allowed (--allow-residue)"
    );
}

#[test]
fn dry_run_json_report_for_a_known_dataset() {
    let db = TestDb::new(server(), "report");
    db.insert(
        "users",
        vec![
            doc! {"_id": 1, "email": "ada@example.com"},
            doc! {"_id": 2, "email": "Grace@Example.com"},
            doc! {"_id": 3, "email": " ADA@example.com"},
            doc! {"_id": 4, "email": "linus@example.com "},
            doc! {"_id": 5, "name": "no email"},
            doc! {"_id": 6, "email": "grace@example.com"},
        ],
    );
    let journal = tempfile::tempdir().unwrap();
    let report = run_ok(
        &db,
        journal.path(),
        &["run", plugin("normalize-emails").to_str().unwrap(), "--batch-size", "2"],
    );
    let expected = serde_json::json!({
        "passes": [{
            "name": "users",
            "collection": "users",
            "documents": 5,
            "batches": 3,
            "updates": 2,
            "inserts": 0,
            "deletes": 0,
            "touched": {"updated": 2, "inserted": 0, "deleted": 0},
            "conflicts": 0,
            "writes_by_collection": {"users": 2},
            "reports": {
                "conflict": {
                    "count": 2,
                    "samples": [
                        {"key": "ada@example.com", "message": "user 3 has the same address as user 1 once normalized"},
                        {"key": "grace@example.com", "message": "user 6 has the same address as user 2 once normalized"},
                    ],
                },
            },
        }],
        "finish": {
            "name": "finish", "collection": "", "documents": 0, "batches": 0, "updates": 0, "inserts": 0,
            "deletes": 0, "touched": {"updated": 0, "inserted": 0, "deleted": 0}, "conflicts": 0,
            "writes_by_collection": {},
            "reports": {},
        },
        "pacing": {"slow_commits": 0, "lag_waits": 0, "waited_ms": 0, "slowest_commit_ms": 0, "highest_lag_ms": null},
    });
    assert_eq!(report["summary"], expected);
}
