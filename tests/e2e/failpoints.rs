//! Failpoints at each step of the commit protocol (built with the
//! `failpoints` feature, as `just test` does): the real `godwit` process kills
//! itself (SIGKILL) at the first, second and third hit of each, is resumed
//! without failpoints, and the result must equal a run without faults: every
//! document incremented exactly once (`$inc` plugin), the journal verifies,
//! the run stamped once, and its before-images still revert everything.

#![cfg_attr(not(feature = "failpoints"), allow(dead_code, unused_imports))]

use crate::db::{TestDb, server};
use crate::support::{command, plugin, stderr, verify_journal};
use bson::doc;
use std::os::unix::process::ExitStatusExt;

const DOCS: i64 = 40;

/// Every step of the commit protocol, in the order a batch meets them.
const POINTS: [&str; 10] = [
    "batch-read",
    "plugin-called",
    "prepared-before-flush",
    "prepared-flushed",
    "images-before-flush",
    "txn-before-commit",
    "committed-before-journal",
    "stamp-before-db",
    "stamp-before-journal",
    "lock-renewed",
];

fn run_args(file: &str, point: &str) -> Vec<String> {
    let mut args: Vec<String> = ["run", file, "--execute", "--batch-size", "6", "--lease", "3"]
        .map(String::from)
        .to_vec();
    if point == "lock-renewed" {
        // Renewals come every lease/3 = 1 s: slow the run down to meet three.
        args.extend(["--max-docs-per-sec", "10"].map(String::from));
    }
    args
}

#[cfg(not(feature = "failpoints"))]
#[test]
fn failpoints_are_built_in() {
    panic!(
        "the failpoint tests need godwit built with them: cargo test --features godwit/failpoints (`just test` does)"
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn killed_at_every_failpoint_the_resumed_run_equals_a_run_without_faults() {
    let (mut killed, mut not_reached) = (0, Vec::new());
    for point in POINTS {
        for hit in 1..=3 {
            let armed = if hit == 1 {
                format!("{point}=return")
            } else {
                format!("{point}={}*off->return", hit - 1)
            };
            match kill_and_resume(point, &armed) {
                true => killed += 1,
                // Fewer hits than `hit` in a whole run (the stamp happens once).
                false => not_reached.push(format!("{point}#{hit}")),
            }
        }
    }
    eprintln!(
        "failpoints: {killed} kills at {} failpoints survived; not reached (fewer hits per run): {}",
        POINTS.len(),
        not_reached.join(", ")
    );
    assert!(killed >= POINTS.len() * 2, "too few kills: {killed}");
}

/// Killed after the finish batch committed and before its `Committed` entry
/// was journaled (the eighth commit: 40 documents in batches of 6 are seven).
/// The finish batch journals no images, so the progress marker it wrote must
/// not name the images of the batch before it: a marker that did made every
/// resume refuse with "the journal lost entries the database committed".
#[cfg(feature = "failpoints")]
#[test]
fn killed_between_the_finish_commit_and_its_journal_entry_the_run_resumes() {
    assert!(
        kill_and_resume("committed-before-journal", "committed-before-journal=7*off->return"),
        "the finish batch's commit was not reached"
    );
}

/// The journal fails to write the fourth batch's entry (a full disk): the
/// batch's reads were in flight beside the write, but none of its writes
/// reach the database - the run stops with exit 7 in one line naming the
/// run, the batch and the file, the three batches before it committed - and
/// the same command run again finishes with every counter incremented once.
#[cfg(feature = "failpoints")]
#[test]
fn a_batch_the_journal_cannot_hold_is_not_written() {
    let file = plugin("increment");
    let db = TestDb::new(server(), "journal_full");
    db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let args = ["run", file.to_str().unwrap(), "--execute", "--batch-size", "6"];
    let out = command(&db, journal.path(), &args)
        .env("FAILPOINTS", "prepare-write-fails=3*off->return")
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(
        text.contains("could not hold batch entry") && text.contains("no space left on device"),
        "{text}"
    );
    assert!(text.contains("nothing of it was written"), "{text}");
    let counts: Vec<i64> = db
        .find_all("counters")
        .iter()
        .map(|d| d.get_i64("n").unwrap())
        .collect();
    assert_eq!(
        counts.iter().filter(|&&n| n == 1).count(),
        18,
        "three batches of six: {counts:?}"
    );
    assert_eq!(
        counts.iter().filter(|&&n| n == 0).count(),
        DOCS as usize - 18,
        "{counts:?}"
    );
    verify_journal(journal.path());

    let out = command(&db, journal.path(), &args).output().unwrap();
    assert!(out.status.success(), "the same command again: {}", stderr(&out));
    let wrong: Vec<_> = db
        .find_all("counters")
        .into_iter()
        .filter(|d| d.get_i64("n").unwrap() != 1)
        .collect();
    assert!(wrong.is_empty(), "not incremented exactly once: {wrong:?}");
    verify_journal(journal.path());
}

/// Runs `increment` over 40 counters with failpoint `armed`; when it killed
/// the process, resumes without failpoints and checks the result equals a
/// run without faults, the journal verifies and the revert restores every
/// document. False when the run finished without reaching the failpoint.
#[cfg(feature = "failpoints")]
fn kill_and_resume(point: &str, armed: &str) -> bool {
    let file = plugin("increment");
    let file = file.to_str().unwrap();
    let db = TestDb::new(server(), "failpoint");
    db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let before = db.dump();
    let journal = tempfile::tempdir().unwrap();
    let args = run_args(file, point);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = command(&db, journal.path(), &args)
        .env("FAILPOINTS", armed)
        .output()
        .unwrap();
    if out.status.success() {
        return false;
    }
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{armed}: expected a kill, got {:?}: {}",
        out.status,
        stderr(&out)
    );
    // Resume without failpoints: the same command.
    let out = command(&db, journal.path(), &args).output().unwrap();
    assert!(out.status.success(), "{armed}: resume failed: {}", stderr(&out));

    let counters = db.find_all("counters");
    assert_eq!(counters.len(), DOCS as usize, "{armed}");
    let wrong: Vec<_> = counters.iter().filter(|d| d.get_i64("n").unwrap() != 1).collect();
    assert!(wrong.is_empty(), "{armed}: not incremented exactly once: {wrong:?}");
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    let history = schema.get_array("history").unwrap();
    assert_eq!(history.len(), 1, "{armed}: stamped once: {history:?}");
    verify_journal(journal.path());

    // The before-images survived the kill too.
    let runs = crate::support::journal_runs(journal.path());
    let run = runs[0]["run_id"].as_str().unwrap();
    let out = command(&db, journal.path(), &["revert", run, "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{armed}: revert failed: {}", stderr(&out));
    let restored: Vec<_> = db.dump().into_iter().filter(|(n, _)| n != "godwit_metadata").collect();
    let original: Vec<_> = before.into_iter().filter(|(n, _)| n != "godwit_metadata").collect();
    assert_eq!(restored, original, "{armed}: the revert restores every document");
    true
}

/// Killed mid-run and resumed, a plugin that declares it keeps no state
/// (`lowercase-emails`) is not fed the batches written before the kill (one
/// line says so) - where `normalize-emails`, which keeps state, is - and
/// `journal replay` still finds every batch identical. One that declares
/// so but keeps state anyway (`--param lie=yes`: it writes how many batches
/// its instance saw) finishes, but `journal replay`, which gives every
/// written batch to a fresh instance, names the batch where it diverged
/// (exit 12).
#[cfg(feature = "failpoints")]
#[test]
fn a_plugin_that_keeps_no_state_resumes_without_a_replay_and_a_liar_is_caught_by_journal_replay() {
    let resume = |name: &str, params: &[&str]| -> (String, std::process::Output) {
        let file = plugin(name);
        let db = TestDb::new(server(), "stateless_resume");
        let users: Vec<_> = (0..DOCS)
            .map(|i| doc! {"_id": i, "email": format!("User{i}@Example.COM")})
            .collect();
        db.insert("users", users);
        let journal = tempfile::tempdir().unwrap();
        crate::support::stamp(&db, journal.path(), "1.0.0");
        let mut args = vec![
            "run",
            file.to_str().unwrap(),
            "--execute",
            "--batch-size",
            "6",
            "--json",
        ];
        args.extend(params);
        let out = command(&db, journal.path(), &args)
            .env("FAILPOINTS", "batch-read=3*off->return")
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{name}: {}", stderr(&out));
        let out = command(&db, journal.path(), &args)
            .env("RUST_LOG", "godwit=info")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: the resume failed: {}", stderr(&out));
        let wrong: Vec<_> = db
            .find_all("users")
            .into_iter()
            .filter(|u| u.get_str("email").unwrap() != u.get_str("email").unwrap().to_lowercase())
            .collect();
        assert!(wrong.is_empty(), "{name}: {wrong:?}");
        verify_journal(journal.path());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json report");
        let run = report["run_id"].as_str().unwrap().to_string();
        let replay = crate::support::journal_replay(journal.path(), &run, &file, &[]);
        (stderr(&out), replay)
    };

    let (log, replay) = resume("lowercase-emails", &[]);
    assert!(
        log.contains("declares that it keeps no state across batches: the")
            && log.contains("batches written so far are not replayed into it"),
        "{log}"
    );
    assert!(!log.contains("restored the plugin's state"), "{log}");
    assert!(
        replay.status.success(),
        "{}{}",
        crate::support::stdout(&replay),
        stderr(&replay)
    );
    assert!(
        crate::support::stdout(&replay).contains("batches identical, each in a fresh instance"),
        "{}",
        crate::support::stdout(&replay)
    );

    let (log, _) = resume("normalize-emails", &[]);
    assert!(log.contains("restored the plugin's state by replaying"), "{log}");
    assert!(!log.contains("keeps no state"), "{log}");

    let (_, replay) = resume("lowercase-emails", &["--param", "lie=yes"]);
    let text = crate::support::stdout(&replay);
    assert_eq!(replay.status.code(), Some(12), "{text}{}", stderr(&replay));
    assert!(
        text.contains("diverged at batch") && text.contains("each batch went to a fresh instance"),
        "{text}"
    );
}
