//! Journal faults: the journal's files cut short at every byte offset of
//! their tail after a run was killed mid-batch (as a torn write would leave
//! them), and the journal directory held by another process. Godwit must
//! never panic, never apply a batch twice, and never resume past what the
//! journal can prove; it either resumes correctly or refuses with one clear
//! message.

#![cfg_attr(not(feature = "failpoints"), allow(dead_code, unused_imports))]

use crate::db::{TestDb, block_on, server};
use crate::support::{command, copy_dir, godwit, plugin, stderr};
use bson::{Document, doc};
use std::path::Path;

const DOCS: i64 = 60;

/// Puts `collection` back to `docs`.
fn reset(db: &TestDb, collection: &str, docs: &[Document]) {
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        let c = client.database(&db.name).collection::<Document>(collection);
        c.delete_many(doc! {}).await.unwrap();
        if !docs.is_empty() {
            c.insert_many(docs.to_vec()).await.unwrap();
        }
    });
}

#[cfg(feature = "failpoints")]
#[test]
fn a_torn_journal_tail_never_resumes_past_what_it_proves() {
    let db = TestDb::new(server(), "torn");
    db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--execute",
        "--batch-size",
        "6",
        "--lease",
        "3",
    ];
    // Killed right after the 5th batch committed, before its `committed`
    // entry: the journal's last write is that batch's flushed `prepared`.
    // (A kill inside the transaction would leave it open on the server,
    // where it blocks this test's own resets until godwit ends it.)
    let out = command(&db, journal.path(), &args)
        .env("FAILPOINTS", "committed-before-journal=4*off->return")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint did not fire: {}", stderr(&out));
    let counters = db.find_all("counters");
    let metadata: Vec<Document> = db
        .find_all("godwit_metadata")
        .into_iter()
        .filter(|d| d.get_str("_id").ok() != Some("lock"))
        .collect();

    // The files sled appends to, largest first; cut the tail of each.
    let mut files: Vec<(std::path::PathBuf, u64)> = walk(journal.path())
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .filter(|(_, len)| *len > 0)
        .collect();
    files.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let (target, len) = files[0].clone();
    let relative = target.strip_prefix(journal.path()).unwrap().to_path_buf();
    let tail = len.min(1024);
    let (mut opened, mut refused, mut resumed, mut refused_resume) = (0, 0, 0, 0);
    let scratch = tempfile::tempdir().unwrap();
    for cut in 1..=tail {
        let copy = scratch.path().join(format!("j{cut}"));
        copy_dir(journal.path(), &copy);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.join(&relative))
            .unwrap();
        f.set_len(len - cut).unwrap();
        drop(f);
        // Reading the cut journal: verified or refused, never a panic.
        let out = godwit(&["journal", "verify", "--journal", copy.to_str().unwrap()]);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "cut {cut}: {err}");
        match out.status.code() {
            Some(0) => opened += 1,
            Some(7) => refused += 1,
            other => panic!("cut {cut}: journal verify exited {other:?}: {err}"),
        }
        // Every 128th cut: resume the run on the database as the kill left it.
        if cut % 128 == 1 {
            reset(&db, "counters", &counters);
            reset(&db, "godwit_metadata", &metadata);
            let out = command(&db, &copy, &args).output().unwrap();
            let err = stderr(&out);
            assert!(!err.contains("panicked"), "cut {cut}: {err}");
            let after = db.find_all("counters");
            let twice: Vec<_> = after.iter().filter(|d| d.get_i64("n").unwrap() > 1).collect();
            assert!(twice.is_empty(), "cut {cut}: applied twice: {twice:?}");
            if out.status.success() {
                assert!(after.iter().all(|d| d.get_i64("n").unwrap() == 1), "cut {cut}");
                resumed += 1;
            } else {
                assert_eq!(
                    err.lines().filter(|l| l.starts_with("error:")).count(),
                    1,
                    "cut {cut}: {err}"
                );
                // The only acceptable refusal: the database is ahead of the journal.
                assert!(
                    err.contains("the journal lost entries the database committed"),
                    "cut {cut}: {err}"
                );
                refused_resume += 1;
            }
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    eprintln!(
        "torn tail: {} ({len} bytes) cut at each of its last {tail} byte offsets: {opened} verified, {refused} \
         refused (exit 7), no panic; resumed {resumed} times correctly, refused {refused_resume} times, no batch \
         applied twice",
        relative.display()
    );
}

/// Large entries (a batch's inputs and actions) live in the run's body file
/// beside sled. Its writes are synced before sled points to them, so only a
/// damaged disk or a hand can cut it; such a journal is refused, by `journal
/// verify` and by a resume alike, naming the file and the entry.
#[cfg(feature = "failpoints")]
#[test]
fn a_cut_body_file_is_refused_naming_it_and_nothing_is_applied_twice() {
    let db = TestDb::new(server(), "cutbody");
    let pad = "p".repeat(1_000);
    db.insert(
        "counters",
        (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64, "pad": &pad}).collect(),
    );
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    let args = ["run", file.to_str().unwrap(), "--execute", "--batch-size", "6"];
    let out = command(&db, journal.path(), &args)
        .env("FAILPOINTS", "committed-before-journal=4*off->return")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failpoint did not fire: {}", stderr(&out));
    let bodies: Vec<_> = walk(&journal.path().join("bodies"));
    assert_eq!(bodies.len(), 1, "one run, one body file: {bodies:?}");
    let len = std::fs::metadata(&bodies[0]).unwrap().len();
    assert!(len > 5 * 6 * 1_000, "five batches of six 1 KB documents: {len} bytes");
    let relative = bodies[0].strip_prefix(journal.path()).unwrap().to_path_buf();
    let counters = db.find_all("counters");

    for cut in [1, 1_000, len / 2] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(journal.path(), copy.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join(&relative))
            .unwrap();
        f.set_len(len - cut).unwrap();
        drop(f);

        let out = godwit(&["journal", "verify", "--journal", copy.path().to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(7), "cut {cut}: {err}");
        assert!(
            err.contains("body file") && err.contains(&relative.display().to_string()),
            "cut {cut}: names the body file: {err}"
        );

        let out = command(&db, copy.path(), &args).output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "cut {cut}: resumed on a journal it cannot read");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "cut {cut}: {err}"
        );
        assert!(
            err.contains("body file") && !err.contains("panicked"),
            "cut {cut}: {err}"
        );
        assert_eq!(db.find_all("counters"), counters, "cut {cut}: the database was written");
        eprintln!("body file cut by {cut} bytes: resume refused: {}", err.trim());
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn a_journal_held_by_another_process_is_refused_clearly() {
    let db = TestDb::new(server(), "held");
    db.insert("counters", (0..DOCS).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment");
    // A paused run holds the journal (sled's file lock) while it waits.
    let pause = journal.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let mut holder = command(
        &db,
        journal.path(),
        &["run", file.to_str().unwrap(), "--pause-file", pause.to_str().unwrap()],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("is in use by another godwit process"), "{err}");
    assert!(err.contains(journal.path().to_str().unwrap()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
