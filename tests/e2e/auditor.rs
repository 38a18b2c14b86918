//! The auditor's tools on a real finished run: `journal verify` against a
//! tamper matrix (the last case only visible through the head the database's
//! history recorded), `journal export`, `journal show` and `journal replay`.

use crate::db::{TestDb, server};
use crate::support::{copy_dir, plugin, run_ok, stderr, stdout};
use bson::doc;
use godwit::journal::{Body, Entry, Record, StoredEntry, entry_hash};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A finished execute run of the example plugin: (database, journal dir, run id, entry count).
fn finished_run() -> (TestDb, tempfile::TempDir, String, u64) {
    let db = TestDb::new(server(), "audit");
    db.insert(
        "users",
        (0..40)
            .map(|i| doc! {"_id": i, "email": format!("User{i}@Example.com")})
            .collect(),
    );
    db.insert(
        "godwit_metadata",
        vec![doc! {"_id": "schema", "version": "1.0.0", "history": []}],
    );
    let journal = tempfile::tempdir().unwrap();
    let report = run_ok(
        &db,
        journal.path(),
        &[
            "run",
            plugin("normalize-emails").to_str().unwrap(),
            "--execute",
            "--batch-size",
            "8",
        ],
    );
    let run = report["run_id"].as_str().unwrap().to_string();
    let tree = sled::open(journal.path())
        .unwrap()
        .open_tree(format!("entries/{run}"))
        .unwrap();
    let count = tree.len() as u64;
    (db, journal, run, count)
}

/// A copy of the journal, changed by `tamper` on the run's entry tree.
fn tampered(journal: &Path, run: &str, tamper: impl FnOnce(&sled::Tree)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(journal, copy.path());
    {
        let db = sled::open(copy.path()).unwrap();
        tamper(&db.open_tree(format!("entries/{run}")).unwrap());
        db.flush().unwrap();
    }
    copy
}

/// `godwit journal ARGS --journal DIR`, without a database unless given.
fn journal_cmd(journal: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(["journal"])
        .args(args)
        .arg("--journal")
        .arg(journal)
        .env_remove("MONGODB_URI")
        .output()
        .unwrap()
}

fn verify(db: &TestDb, journal: &Path, run: &str, with_db: bool) -> Output {
    if with_db {
        journal_cmd(journal, &["verify", run, "--uri", &db.uri, "--db", &db.name])
    } else {
        journal_cmd(journal, &["verify", run])
    }
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn assert_refused(out: &Output, expect: &str) {
    assert_eq!(out.status.code(), Some(7), "{}{}", stdout(out), stderr(out));
    assert!(stderr(out).contains(expect), "expected {expect:?} in: {}", stderr(out));
}

#[test]
fn tamper_matrix_is_detected_with_the_right_sequence_number() {
    let (db, journal, run, count) = finished_run();
    assert!(count > 6, "{count} entries");
    let ok = verify(&db, journal.path(), &run, true);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("matches the database's history"),
        "{}",
        stdout(&ok)
    );

    // One flipped byte in each entry.
    for seq in 0..count {
        let copy = tampered(journal.path(), &run, |tree| {
            let mut value = tree.get(key(seq)).unwrap().unwrap().to_vec();
            let at = value.len() / 2;
            value[at] ^= 0x20;
            tree.insert(key(seq), value).unwrap();
        });
        assert_refused(&verify(&db, copy.path(), &run, false), &format!("entry {seq} "));
    }

    // A deleted entry.
    let copy = tampered(journal.path(), &run, |tree| {
        tree.remove(key(3)).unwrap();
    });
    assert_refused(
        &verify(&db, copy.path(), &run, false),
        "sequence gap, expected entry 3, found 4",
    );

    // Two entries swapped.
    let copy = tampered(journal.path(), &run, |tree| {
        let (a, b) = (tree.get(key(2)).unwrap().unwrap(), tree.get(key(5)).unwrap().unwrap());
        tree.insert(key(2), b).unwrap();
        tree.insert(key(5), a).unwrap();
    });
    assert_refused(&verify(&db, copy.path(), &run, false), "entry 2 ");

    // The tail truncated.
    let copy = tampered(journal.path(), &run, |tree| {
        tree.remove(key(count - 1)).unwrap();
        tree.remove(key(count - 2)).unwrap();
    });
    assert_refused(
        &verify(&db, copy.path(), &run, false),
        &format!("finished with {count} entries, but the chain has {}", count - 2),
    );

    // The whole chain re-hashed consistently after changing entry 2: locally
    // undetectable, caught by the head the database's history recorded.
    let config = bincode::config::standard();
    let copy = tampered(journal.path(), &run, |tree| {
        let mut prev = [0u8; 32];
        for seq in 0..count {
            let (stored, _): (StoredEntry, usize) =
                bincode::decode_from_slice(&tree.get(key(seq)).unwrap().unwrap(), config).unwrap();
            let Body::Inline(body) = stored.body else {
                panic!("batches of 8 documents are small enough to be stored in sled")
            };
            let (mut entry, _): (Entry, usize) = bincode::decode_from_slice(&body, config).unwrap();
            if seq == 2 {
                // Claim one more document updated than the batch's commit saw.
                match &mut entry.record {
                    Record::Committed(commit) => commit.updated += 1,
                    Record::Prepared(batch) => batch.counts.updates += 1,
                    other => panic!("entry 2 is a batch or its commit, not {other:?}"),
                }
            }
            entry.prev_hash = prev;
            let body = bincode::encode_to_vec(&entry, config).unwrap();
            let hash = entry_hash(&prev, &body);
            tree.insert(
                key(seq),
                bincode::encode_to_vec(
                    StoredEntry {
                        body: Body::Inline(body),
                        hash,
                    },
                    config,
                )
                .unwrap(),
            )
            .unwrap();
            prev = hash;
        }
    });
    let local = verify(&db, copy.path(), &run, false);
    assert!(
        local.status.success(),
        "a consistent rewrite passes the local check: {}",
        stderr(&local)
    );
    let stamp_seq = count - 1;
    assert_refused(
        &verify(&db, copy.path(), &run, true),
        &format!("the chain up to the stamp (entry {stamp_seq}) has head"),
    );
}

#[test]
fn export_show_and_replay_a_real_run() {
    // Five batches of 8 documents, and `finish`.
    let (_db, journal, run, count) = finished_run();
    let out = journal_cmd(journal.path(), &["export", &run]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, count);
    let first_batch = lines.iter().find(|l| l["kind"] == "Prepared").unwrap();
    assert_eq!(
        first_batch["inputs"][0],
        serde_json::json!({"_id": {"$numberInt": "0"}, "email": "User0@Example.com"})
    );
    assert_eq!(
        first_batch["actions"][0]["update"],
        serde_json::json!({"$set": {"email": "user0@example.com"}})
    );

    let out = journal_cmd(journal.path(), &["show", &run]);
    assert!(
        out.status.success() && stdout(&out).contains("Stamp"),
        "{}",
        stdout(&out)
    );

    let replay = |file: &PathBuf| {
        journal_cmd(
            journal.path(),
            &["replay", &run, "--no-cache", "--plugin", file.to_str().unwrap()],
        )
    };
    let out = replay(&plugin("normalize-emails"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("6 of 6 batches identical"), "{}", stdout(&out));

    // The same code in a different file: identical, but labelled.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.wasm");
    let mut bytes = std::fs::read(plugin("normalize-emails")).unwrap();
    bytes.extend_from_slice(&[0x00, 0x02, 0x01, b'x']);
    std::fs::write(&copy, bytes).unwrap();
    let out = replay(&copy);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is not the plugin the run used") && stdout(&out).contains("6 of 6 batches identical")
    );

    // A different plugin: the first divergence is named.
    let out = replay(&plugin("increment"));
    assert_eq!(out.status.code(), Some(12), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("diverged at batch 1") && stdout(&out).contains("action 0, document _id 0"),
        "{}",
        stdout(&out)
    );
}
