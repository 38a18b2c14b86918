use super::*;

fn header(run: &str) -> RunHeader {
    RunHeader {
        format: FORMAT_VERSION,
        run_id: run.into(),
        plugin_name: "p".into(),
        plugin_version: "1.0.0".into(),
        plugin_sha256: "00".into(),
        plugin_file: "p.wasm".into(),
        params: vec![],
        params_hash: "00".into(),
        database: "db".into(),
        uri: "mongodb://localhost".into(),
        metadata_collection: "godwit_metadata".into(),
        mode: RunMode::Execute,
        host_version: "0".into(),
        wasmtime_version: "0".into(),
        started_at_ms: 1,
        status: RunStatus::Running,
        finished_at_ms: None,
        final_entries: None,
        final_head: None,
        before_images: true,
        reverts: None,
        partition: None,
    }
}

fn journal_with_entries(n: u64) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j")).unwrap();
    journal.put_header(&header("r1")).unwrap();
    for i in 0..n {
        let batch = Batch {
            inputs: vec![vec![i as u8; 4]],
            ..Batch::default()
        };
        journal
            .append("r1", Entry::new(Record::Prepared(batch), i as i64))
            .unwrap();
    }
    journal.flush().unwrap();
    (dir, journal)
}

#[test]
fn a_journal_of_another_format_is_refused_naming_both_versions() {
    let (_dir, journal) = journal_with_entries(1);
    let mut old = header("old");
    old.format = FORMAT_VERSION - 1;
    journal.put_header(&old).unwrap();
    let e = journal.header("old").unwrap_err();
    assert!(matches!(e, JournalError::OtherFormat { found, reads: FORMAT_VERSION, .. } if found == FORMAT_VERSION - 1));
    let text = e.to_string();
    assert!(
        text.contains(&format!("journal format {}", FORMAT_VERSION - 1)),
        "{text}"
    );
    assert!(text.contains(&format!("reads format {FORMAT_VERSION}")), "{text}");
    assert!(text.contains("--journal"), "says what to do: {text}");

    // An entry written by an older godwit, in a chain this one reads.
    let mut entry = Entry::new(Record::Stamp { note: String::new() }, 0);
    entry.format = FORMAT_VERSION - 1;
    let body = bincode::encode_to_vec(&entry, config()).unwrap();
    let e = decode_entry("r1", 1, &body).unwrap_err();
    assert!(matches!(e, JournalError::OtherFormat { .. }), "{e}");
}

#[test]
fn chain_verifies_and_survives_reopen() {
    let (dir, journal) = journal_with_entries(5);
    let head = journal.verify("r1").unwrap();
    assert_eq!(head.entries(), 5);
    drop(journal);
    let journal = Journal::open(&dir.path().join("j")).unwrap();
    assert_eq!(journal.verify("r1").unwrap(), head);
    assert_eq!(journal.entries("r1").unwrap().len(), 5);
}

#[test]
fn flipped_byte_is_reported_with_its_sequence_number() {
    let (_dir, journal) = journal_with_entries(5);
    let tree = journal.entries_tree("r1").unwrap();
    let mut value = tree.get(2u64.to_be_bytes()).unwrap().unwrap().to_vec();
    let mid = value.len() / 2;
    value[mid] ^= 0x01;
    tree.insert(2u64.to_be_bytes(), value).unwrap();
    let err = journal.verify("r1").unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::HashMismatch { seq: 2, .. } | JournalError::Corrupt { seq: 2, .. }
        ),
        "{err}"
    );
}

#[test]
fn deleted_entry_is_a_sequence_gap() {
    let (_dir, journal) = journal_with_entries(5);
    journal.entries_tree("r1").unwrap().remove(3u64.to_be_bytes()).unwrap();
    let err = journal.verify("r1").unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::SequenceGap {
                expected: 3,
                found: 4,
                ..
            }
        ),
        "{err}"
    );
}

/// Entries big enough to live in the run's body file.
fn journal_with_big_entries(n: u64) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j")).unwrap();
    journal.put_header(&header("r1")).unwrap();
    for i in 0..n {
        let batch = Batch {
            inputs: (0..100).map(|d| vec![(i + d) as u8; 100]).collect(),
            ..Batch::default()
        };
        journal
            .append("r1", Entry::new(Record::Prepared(batch), i as i64))
            .unwrap();
        // A small one between, kept inline.
        journal
            .append("r1", Entry::new(Record::Committed(Commit::default()), i as i64))
            .unwrap();
    }
    journal.flush().unwrap();
    (dir, journal)
}

fn stored(journal: &Journal, seq: u64) -> StoredEntry {
    let value = journal
        .entries_tree("r1")
        .unwrap()
        .get(seq.to_be_bytes())
        .unwrap()
        .unwrap();
    decode_stored("r1", seq, &value).unwrap()
}

#[test]
fn large_entries_live_in_the_body_file_and_verify() {
    let (dir, journal) = journal_with_big_entries(3);
    assert!(matches!(stored(&journal, 0).body, Body::External { offset: 0, .. }));
    assert!(matches!(stored(&journal, 1).body, Body::Inline(_)));
    assert!(matches!(stored(&journal, 2).body, Body::External { offset, .. } if offset > 0));
    let head = journal.verify("r1").unwrap();
    assert_eq!(head.entries(), 6);
    drop(journal);
    let journal = Journal::open(&dir.path().join("j")).unwrap();
    assert_eq!(journal.verify("r1").unwrap(), head);
    let entries = journal.entries("r1").unwrap();
    assert_eq!(entries[2].0.batch().unwrap().inputs[0], vec![1u8; 100]);
    // Appending after a reopen continues the file.
    journal.append("r1", entries[2].0.clone()).unwrap();
    assert_eq!(journal.verify("r1").unwrap().entries(), 7);
}

#[test]
fn changed_truncated_or_missing_body_file_is_named_with_the_entry() {
    let (dir, journal) = journal_with_big_entries(3);
    let file = dir.path().join("j").join("bodies").join("r1");
    let original = std::fs::read(&file).unwrap();
    let Body::External { offset, len } = stored(&journal, 2).body else {
        panic!("entry 2 is external")
    };

    let mut changed = original.clone();
    changed[(offset + len / 2) as usize] ^= 0x01;
    std::fs::write(&file, &changed).unwrap();
    let err = journal.verify("r1").unwrap_err();
    assert!(matches!(err, JournalError::HashMismatch { seq: 2, .. }), "{err}");
    let err = journal.entries("r1").unwrap_err();
    assert!(
        matches!(err, JournalError::HashMismatch { seq: 2, .. }),
        "reading: {err}"
    );

    std::fs::write(&file, &original[..(offset + len - 1) as usize]).unwrap();
    let err = journal.verify("r1").unwrap_err().to_string();
    assert!(
        err.starts_with("journal run r1: entry 2's body file ")
            && err.contains("bodies/r1 ends at byte")
            && err.contains("(truncated?)"),
        "{err}"
    );

    std::fs::remove_file(&file).unwrap();
    let err = journal.verify("r1").unwrap_err().to_string();
    assert!(
        err.contains("entry 0's body file") && err.ends_with("is missing"),
        "{err}"
    );
}

#[test]
fn odd_run_ids_get_a_file_name_inside_the_directory() {
    let bodies = bodies::Bodies::new(Path::new("/j"));
    assert_eq!(
        bodies.path("65a0f0c2e4b0a1b2c3d4e5f6"),
        Path::new("/j/bodies/65a0f0c2e4b0a1b2c3d4e5f6")
    );
    let odd = bodies.path("../../etc/passwd");
    assert_eq!(odd.parent().unwrap(), Path::new("/j/bodies"));
    assert!(odd.file_name().unwrap().to_str().unwrap().starts_with('x'));
}

#[test]
fn unknown_run_is_named() {
    let (_dir, journal) = journal_with_entries(0);
    assert_eq!(
        journal.verify("nope").unwrap_err().to_string(),
        "journal has no run nope"
    );
}

/// A pending batch entry is written where the chain ended when it was
/// numbered, once; if another entry took that place meanwhile it is
/// refused as such, not reported as a corrupt journal, and the chain holds
/// no trace of it.
#[test]
fn a_pending_entry_that_lost_its_place_in_the_chain_is_refused_not_called_corrupt() {
    let (_dir, journal) = journal_with_entries(2);
    let entry = || Entry::new(Record::Prepared(Batch::default()), 9);
    let pending = journal.pending("r1", entry()).unwrap();
    journal.write_pending(&pending).unwrap();
    journal.write_pending(&pending).unwrap();
    assert_eq!(journal.iter_entries("r1").unwrap().count(), 3, "written once");

    let late = journal.pending("r1", entry()).unwrap();
    journal.append("r1", entry()).unwrap();
    let e = journal.write_pending(&late).unwrap_err();
    assert!(matches!(e, JournalError::LostPlace { seq: 3, found: 3, .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        !text.contains("corrupt") && text.contains("nothing of the batch was written"),
        "{text}"
    );
    assert_eq!(journal.iter_entries("r1").unwrap().count(), 4);
}

#[test]
fn which_runs_and_journals_wrote_each_partition_is_read_back_as_journaled() {
    let (_dir, journal) = journal_with_entries(1);
    let record = Record::PartitionsDone {
        pass: 2,
        partitions: vec![PartitionDone {
            index: 3,
            documents: 40,
            runs: vec!["r1.2.3@0123456789ab".into(), "r1.2.3@ba9876543210.4".into()],
            holders: vec![PartitionHolder {
                host: "node-7".into(),
                journal: "65f0a1b2c3d40123456789ab".into(),
                path: "/var/lib/godwit/journal-3".into(),
            }],
            last_commits: vec![LastCommit {
                run: "r1.2.3@0123456789ab".into(),
                batch_seq: 17,
                images: Some((18, [7; 32])),
            }],
        }],
    };
    journal.append("r1", Entry::new(record.clone(), 5)).unwrap();
    journal.flush().unwrap();
    let last = journal.iter_entries("r1").unwrap().last().unwrap().unwrap().0;
    assert_eq!(last.record, record);
    assert_eq!(last.kind(), EntryKind::PartitionsDone);
    assert_eq!(last.pass(), Some(2));
    journal.verify("r1").unwrap();
    let Record::PartitionsDone { partitions, .. } = &last.record else {
        unreachable!()
    };
    assert_eq!(
        partitions[0].holders[0].describe(),
        "journal ...0123456789ab on node-7 at /var/lib/godwit/journal-3"
    );
}
