//! `godwit plan` and `godwit upgrade`: version chains of real components.

use crate::db::{TestDb, server};
use crate::support::{command, godwit, plugin, stderr, stdout};
use bson::doc;
use std::path::Path;

/// A plugin directory holding copies of the named test components.
fn chain_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// `plan` on a chain: exit code, and lines expected on stderr.
fn check(dir: &Path, code: i32, expect: &[&str]) {
    let out = godwit(&["plan", "--no-cache", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(code), "{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    for expected in expect {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn plan_reports_each_defect_naming_the_files() {
    let d = |dir: &tempfile::TempDir, name: &str| dir.path().join(format!("{name}.wasm")).display().to_string();

    let good = chain_dir(&["chain-a", "chain-b", "chain-c"]);
    check(good.path(), 0, &[]);

    let dup = chain_dir(&["chain-a", "chain-b", "chain-dup"]);
    check(
        dup.path(),
        11,
        &[&format!(
            "duplicate version 1.1.0: {}, {}",
            d(&dup, "chain-b"),
            d(&dup, "chain-dup")
        )],
    );

    let gap = chain_dir(&["chain-a", "chain-b", "chain-c", "chain-gap"]);
    check(
        gap.path(),
        11,
        &[&format!(
            "gap: {} (2.1.0) requires ^2.0, but the version before it is 1.2.0",
            d(&gap, "chain-gap")
        )],
    );

    let heads = chain_dir(&["chain-a", "chain-branch", "chain-b"]);
    check(
        heads.path(),
        11,
        &[&format!(
            "more than one head: {}, {}",
            d(&heads, "chain-branch"),
            d(&heads, "chain-b")
        )],
    );

    let badver = chain_dir(&["chain-a", "chain-badver"]);
    check(
        badver.path(),
        11,
        &[&format!(
            "{}: invalid manifest: version \"v2\" is not a semantic version",
            d(&badver, "chain-badver")
        )],
    );

    let unreadable = chain_dir(&["chain-a"]);
    std::fs::write(unreadable.path().join("notes.wasm"), "not wasm").unwrap();
    check(
        unreadable.path(),
        11,
        &[&format!("{} is not a WebAssembly file", d(&unreadable, "notes"))],
    );
}

#[test]
fn upgrade_runs_the_chain_from_the_stamp_to_the_head_then_is_a_no_op() {
    let db = TestDb::new(server(), "chain");
    db.insert("items", (0..40).map(|i| doc! {"_id": i}).collect());
    let journal = tempfile::tempdir().unwrap();
    let dir = chain_dir(&["chain-a", "chain-b", "chain-c"]);
    let dir = dir.path().to_str().unwrap();

    // Data but no stamp: refused with a hint, before anything runs.
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(stderr(&out).contains("godwit init --version"), "{}", stderr(&out));

    // A defective chain is refused before the database is touched.
    let bad = chain_dir(&["chain-a", "chain-b", "chain-dup"]);
    let out = command(
        &db,
        journal.path(),
        &["upgrade", bad.path().to_str().unwrap(), "--execute"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));

    assert!(
        command(&db, journal.path(), &["init", "--version", "0.9.0"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let before = db.dump();
    let out = command(&db, journal.path(), &["upgrade", dir]).output().unwrap();
    assert!(out.status.success(), "dry upgrade: {}", stderr(&out));
    assert_eq!(db.dump(), before, "a dry upgrade writes nothing");

    let out = command(&db, journal.path(), &["upgrade", dir, "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("pending: 1.0.0 -> 1.1.0 -> 1.2.0"),
        "{}",
        stdout(&out)
    );
    let schema = db.find_one("godwit_metadata", doc! {"_id": "schema"}).unwrap();
    assert_eq!(schema.get_str("version").unwrap(), "1.2.0");
    let versions: Vec<&str> = schema
        .get_array("history")
        .unwrap()
        .iter()
        .map(|h| h.as_document().unwrap().get_str("version").unwrap())
        .collect();
    assert_eq!(
        versions,
        ["0.9.0", "1.0.0", "1.1.0", "1.2.0"],
        "stamped after each step"
    );
    for item in db.find_all("items") {
        assert_eq!(
            (
                item.get_str("v1").unwrap(),
                item.get_str("v2").unwrap(),
                item.get_str("v3").unwrap()
            ),
            ("1.0.0", "1.1.0", "1.2.0")
        );
    }

    let after = db.dump();
    let out = command(&db, journal.path(), &["upgrade", dir, "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is at version 1.2.0, the head"),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.dump(), after, "a second upgrade is a no-op");
}
