//! The local, hash-chained run journal (sled + bincode 2 + sha256).
//!
//! One sled database per project directory. Tree `runs` maps a run id to its
//! [`RunHeader`]; tree `entries/<run id>` maps a big-endian sequence number to
//! a [`StoredEntry`]: the bincode-encoded [`Entry`] and its hash,
//! `sha256(prev_hash || encoded entry)`. Every value carries a format version.
//! Encoded entries above [`INLINE_BODY_MAX`] bytes (a batch's inputs and
//! actions, a batch's before-images) are stored in the run's body file beside
//! sled instead, and sled keeps where (see [`bodies`] for why).
//!
//! **Invariant:** this module knows nothing about MongoDB or wasmtime; inputs
//! and actions are raw BSON bytes, produced and interpreted elsewhere.

use crate::hash::{Sha256Hash, sha256_parts, to_hex};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod bodies;
mod entry;

pub use entry::{
    Batch, Call, Commit, Counts, Entry, EntryKind, FollowDone, FollowWindow, Image, LastCommit, LookupRecord,
    PartitionDone, PartitionHolder, Record, SchemaIntent, SchemaPhase, SchemaPlan, Undo,
};

/// Version of the encoding of headers and entries. Bumped on any change.
pub const FORMAT_VERSION: u32 = 9;

/// Encoded entries up to this size stay in sled; larger ones go to the run's
/// body file. A run's small entries (commits, pass ends, stamps) are a few
/// hundred bytes each.
pub const INLINE_BODY_MAX: usize = 4 << 10;

/// sled's page cache for the journal.
const JOURNAL_CACHE_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {} is in use by another godwit process (sled holds its lock); wait for it or use another --journal", dir.display())]
    Locked { dir: PathBuf },
    #[error("cannot open journal {}: {source}", dir.display())]
    Open { dir: PathBuf, source: sled::Error },
    #[error("journal {}: {source}", dir.display())]
    Io { dir: PathBuf, source: sled::Error },
    #[error("journal run {run}: cannot write entry {seq}'s body to {}: {source}", path.display())]
    BodyWrite {
        run: String,
        seq: u64,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal run {run}: entry {seq}'s body file {} {reason}", path.display())]
    Body {
        run: String,
        seq: u64,
        path: PathBuf,
        reason: String,
    },
    #[error("journal run {run}: entry {seq} is corrupt: {reason}")]
    Corrupt { run: String, seq: u64, reason: String },
    #[error(
        "journal run {run}: batch entry {seq} lost its place in the chain to entry {found}, appended while it waited \
         to be written (a godwit bug: please report it); nothing of the batch was written to the database, and the \
         same command again redoes it"
    )]
    LostPlace { run: String, seq: u64, found: u64 },
    #[error("journal run {run}: entry {seq} does not match its hash (expected {expected}, found {actual})")]
    HashMismatch {
        run: String,
        seq: u64,
        expected: String,
        actual: String,
    },
    #[error("journal run {run}: entry {seq} should link to {expected}, but links to {actual}")]
    BrokenChain {
        run: String,
        seq: u64,
        expected: String,
        actual: String,
    },
    #[error("journal run {run}: sequence gap, expected entry {expected}, found {found}")]
    SequenceGap { run: String, expected: u64, found: u64 },
    #[error("journal run {run}: the run finished with {expected} entries, but the chain has {found} (truncated?)")]
    Truncated { run: String, expected: u64, found: u64 },
    #[error(
        "journal run {run}: the chain up to the stamp (entry {seq}) has head {found}, but the database's history \
         records {stored}; the journal was rewritten after the run"
    )]
    HeadMismatch {
        run: String,
        seq: u64,
        stored: String,
        found: String,
    },
    #[error("journal has no run {run}")]
    UnknownRun { run: String },
    #[error("journal run {run}: header is corrupt: {reason}")]
    CorruptHeader { run: String, reason: String },
    #[error(
        "journal run {run} is in journal format {found}, but this godwit ({host}) reads format {reads}; use the godwit \
         that wrote it to finish, verify or revert that run, or give this one a new journal (--journal DIR)"
    )]
    OtherFormat {
        run: String,
        found: u32,
        reads: u32,
        host: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, JournalError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum RunMode {
    DryRun,
    Execute,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum RunStatus {
    /// Started and not finished: resumable.
    Running,
    /// Every pass done (and, for an execute run, stamped).
    Finished,
    /// Given up by the operator (`--new-run`); never resumed.
    Abandoned,
}

/// What a run is: who ran which plugin with which parameters against which
/// database. Written once at start; only `status` and `finished_at_ms` change.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct RunHeader {
    pub format: u32,
    pub run_id: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub plugin_sha256: String,
    pub plugin_file: String,
    /// `--param` pairs, sorted by key.
    pub params: Vec<(String, String)>,
    pub params_hash: String,
    pub database: String,
    /// The connection string with any password removed.
    pub uri: String,
    pub metadata_collection: String,
    pub mode: RunMode,
    pub host_version: String,
    pub wasmtime_version: String,
    pub started_at_ms: i64,
    pub status: RunStatus,
    pub finished_at_ms: Option<i64>,
    /// When finished: the number of entries and the head hash, so that a
    /// truncated tail is caught even without the database.
    pub final_entries: Option<u64>,
    pub final_head: Option<String>,
    /// Execute runs: whether `Committed` entries carry before-images (off
    /// only with `--no-before-images`; such a run cannot be reverted).
    pub before_images: bool,
    /// For a revert: the run it reverts.
    pub reverts: Option<String>,
    /// For one partition of a fleet run (`--workers`): which one. Such a
    /// run processes only its partition's documents and is never stamped;
    /// its fleet run finishes, verifies and stamps.
    pub partition: Option<PartitionRef>,
}

/// One partition of a fleet run's pass: the `_id`s after `after` up to and
/// including `upto` in `_id` order (each `{"_id": value}` BSON; `None`: from
/// the first, to the last).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct PartitionRef {
    pub fleet_run: String,
    pub pass: u32,
    pub index: u32,
    pub after: Option<Vec<u8>>,
    pub upto: Option<Vec<u8>>,
}

/// A batch entry numbered for its place in a run's chain, written (appended
/// and flushed) at most once by [`Journal::write_pending`].
#[derive(Debug)]
pub struct Pending {
    run: String,
    entry: Entry,
    written: std::sync::Mutex<bool>,
}

impl Pending {
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The entry as [`Prepared`] once it is on disk; else back as it is.
    pub fn into_prepared(self) -> std::result::Result<Prepared, Entry> {
        match self.written.into_inner().unwrap_or_else(|p| p.into_inner()) {
            true => Ok(Prepared { entry: self.entry }),
            false => Err(self.entry),
        }
    }
}

/// A batch entry that is on disk (appended and flushed): made only by
/// [`Journal::prepare`], or read back from a run's log by
/// [`Prepared::journaled`] (what was read from disk is on disk).
#[derive(Debug)]
pub struct Prepared {
    entry: Entry,
}

impl Prepared {
    /// A `Prepared` or `Finish` entry read back from the journal.
    pub fn journaled(entry: Entry) -> Self {
        debug_assert!(matches!(entry.record, Record::Prepared(_) | Record::Finish(_)));
        Prepared { entry }
    }

    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    pub fn seq(&self) -> u64 {
        self.entry.seq
    }

    pub fn into_entry(self) -> Entry {
        self.entry
    }
}

/// What is stored per sequence number: the encoded entry (or where it is)
/// and its hash.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredEntry {
    pub body: Body,
    pub hash: Sha256Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Body {
    Inline(Vec<u8>),
    /// `len` bytes at `offset` in the run's body file.
    External {
        offset: u64,
        len: u64,
    },
}

/// Hash of the list of documents or actions of a batch.
pub fn hash_documents(docs: &[Vec<u8>]) -> Sha256Hash {
    sha256_parts(docs.iter().map(Vec::as_slice))
}

pub fn entry_hash(prev_hash: &Sha256Hash, body: &[u8]) -> Sha256Hash {
    sha256_parts([prev_hash.as_slice(), body])
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub struct Journal {
    dir: PathBuf,
    db: sled::Db,
    runs: sled::Tree,
    bodies: bodies::Bodies,
}

impl Journal {
    pub fn open(dir: &Path) -> Result<Self> {
        // sled caches up to 1 GiB by default, so a process's memory would
        // follow the journal's size; runs only append and read back in order.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(JOURNAL_CACHE_BYTES)
            .open()
            .map_err(|source| match &source {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
                {
                    JournalError::Locked { dir: dir.to_path_buf() }
                }
                _ => JournalError::Open {
                    dir: dir.to_path_buf(),
                    source,
                },
            })?;
        let runs = db.open_tree("runs").map_err(|source| JournalError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            db,
            runs,
            bodies: bodies::Bodies::new(dir),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This journal's identity (a random id made when it is first asked
    /// for): a fleet partition's run is named after the journal that holds
    /// it, so that a process finds its own runs and another's are new runs.
    pub fn id(&self) -> Result<String> {
        const KEY: &[u8] = b"journal_id";
        if let Some(id) = self.db.get(KEY).map_err(self.io())? {
            return Ok(String::from_utf8_lossy(&id).into_owned());
        }
        let id = bson::oid::ObjectId::new().to_hex();
        self.db.insert(KEY, id.as_bytes()).map_err(self.io())?;
        self.flush()?;
        Ok(id)
    }

    fn io(&self) -> impl Fn(sled::Error) -> JournalError + '_ {
        |source| JournalError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(self.io())?;
        Ok(())
    }

    /// Writes a run's header and makes it durable (headers change rarely:
    /// a run opened, abandoned or finished).
    pub fn put_header(&self, header: &RunHeader) -> Result<()> {
        let bytes = bincode::encode_to_vec(header, config()).expect("headers encode");
        self.runs.insert(header.run_id.as_bytes(), bytes).map_err(self.io())?;
        self.flush()
    }

    /// Marks a run finished: everything it journaled made durable, its chain
    /// verified, and the entry count and head recorded in its header (so a
    /// truncated tail is caught even without the database).
    pub fn finish_run(&self, header: &mut RunHeader, at_ms: i64) -> Result<VerifiedChain> {
        self.flush()?;
        let chain = self.verify(&header.run_id)?;
        header.status = RunStatus::Finished;
        header.finished_at_ms = Some(at_ms);
        header.final_entries = Some(chain.entries());
        header.final_head = Some(to_hex(&chain.head()));
        self.put_header(header)?;
        Ok(chain)
    }

    pub fn header(&self, run: &str) -> Result<RunHeader> {
        let bytes = self
            .runs
            .get(run.as_bytes())
            .map_err(self.io())?
            .ok_or_else(|| JournalError::UnknownRun { run: run.into() })?;
        decode_header(run, &bytes)
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunHeader>> {
        let mut headers = Vec::new();
        for item in self.runs.iter() {
            let (key, bytes) = item.map_err(self.io())?;
            headers.push(decode_header(&String::from_utf8_lossy(&key), &bytes)?);
        }
        headers.sort_by_key(|h| h.started_at_ms);
        Ok(headers)
    }

    fn entries_tree(&self, run: &str) -> Result<sled::Tree> {
        self.db.open_tree(format!("entries/{run}")).map_err(self.io())
    }

    /// Appends an entry to run `run`'s chain; returns it with seq and hashes filled.
    /// Not durable until [`Journal::flush`].
    pub fn append(&self, run: &str, mut entry: Entry) -> Result<(Entry, Sha256Hash)> {
        let tree = self.entries_tree(run)?;
        let (seq, prev_hash) = self.tail(run, &tree)?;
        entry.format = FORMAT_VERSION;
        entry.seq = seq;
        entry.prev_hash = prev_hash;
        let hash = self.write_linked(run, &tree, &entry)?;
        Ok((entry, hash))
    }

    /// The sequence number and hash the next entry of a run's chain links to.
    fn tail(&self, run: &str, tree: &sled::Tree) -> Result<(u64, Sha256Hash)> {
        match tree.last().map_err(self.io())? {
            Some((key, value)) => {
                let seq = seq_of(run, &key)?;
                let stored = decode_stored(run, seq, &value)?;
                Ok((seq + 1, stored.hash))
            }
            None => Ok((0, [0; 32])),
        }
    }

    /// Stores `entry`, already numbered and linked to the chain's last.
    fn write_linked(&self, run: &str, tree: &sled::Tree, entry: &Entry) -> Result<Sha256Hash> {
        let seq = entry.seq;
        let body = bincode::encode_to_vec(entry, config()).expect("entries encode");
        let hash = entry_hash(&entry.prev_hash, &body);
        let body = if body.len() <= INLINE_BODY_MAX {
            Body::Inline(body)
        } else {
            let offset = self
                .bodies
                .append(run, &body)
                .map_err(|source| JournalError::BodyWrite {
                    run: run.into(),
                    seq,
                    path: self.bodies.path(run),
                    source,
                })?;
            Body::External {
                offset,
                len: body.len() as u64,
            }
        };
        let stored = bincode::encode_to_vec(StoredEntry { body, hash }, config()).expect("entries encode");
        tree.insert(seq.to_be_bytes(), stored).map_err(self.io())?;
        Ok(hash)
    }

    /// A batch's entry numbered and linked as the next of run `run`'s
    /// chain, not yet written: [`Journal::write_pending`] writes it - on
    /// another thread while the batch's reads are in flight - and only then
    /// does [`Pending::into_prepared`] give the [`Prepared`] the database
    /// writer asks for.
    pub fn pending(&self, run: &str, mut entry: Entry) -> Result<Pending> {
        let (seq, prev_hash) = self.tail(run, &self.entries_tree(run)?)?;
        entry.format = FORMAT_VERSION;
        entry.seq = seq;
        entry.prev_hash = prev_hash;
        Ok(Pending {
            run: run.to_string(),
            entry,
            written: std::sync::Mutex::new(false),
        })
    }

    /// Appends a pending entry and makes it durable; a second call does
    /// nothing. Refused when another entry took its place in the chain
    /// meanwhile.
    pub fn write_pending(&self, pending: &Pending) -> Result<()> {
        let mut written = pending.written.lock().unwrap_or_else(|p| p.into_inner());
        if *written {
            return Ok(());
        }
        let (run, entry) = (pending.run.as_str(), &pending.entry);
        if failpoint_hit!("prepare-write-fails") {
            return Err(JournalError::BodyWrite {
                run: run.into(),
                seq: entry.seq,
                path: self.bodies.path(run),
                source: std::io::Error::other("no space left on device (failpoint)"),
            });
        }
        let tree = self.entries_tree(run)?;
        let (seq, prev_hash) = self.tail(run, &tree)?;
        if (seq, prev_hash) != (entry.seq, entry.prev_hash) {
            return Err(JournalError::LostPlace {
                run: run.to_string(),
                seq: entry.seq,
                found: seq.saturating_sub(1),
            });
        }
        self.write_linked(run, &tree, entry)?;
        failpoint!("prepared-before-flush");
        self.flush()?;
        failpoint!("prepared-flushed");
        *written = true;
        Ok(())
    }

    /// Appends a batch's entry and makes it durable: the only way to get a
    /// [`Prepared`], which is what the database writer asks for. A batch is
    /// therefore never written to the database before the journal holds it.
    pub fn prepare(&self, run: &str, entry: Entry) -> Result<Prepared> {
        let (entry, _) = self.append(run, entry)?;
        failpoint!("prepared-before-flush");
        self.flush()?;
        failpoint!("prepared-flushed");
        Ok(Prepared { entry })
    }

    /// Appends a record of something already done (a commit, a pass's end,
    /// a stamp) and makes it durable.
    pub fn record(&self, run: &str, entry: Entry) -> Result<Entry> {
        let (entry, _) = self.append(run, entry)?;
        self.flush()?;
        Ok(entry)
    }

    /// Appends a batch attempt's `Images` entry and makes it durable (inside
    /// the attempt's transaction, before its commit); gives its seq and hash,
    /// which the progress marker records.
    pub fn record_images(&self, run: &str, entry: Entry) -> Result<(u64, Sha256Hash)> {
        debug_assert_eq!(entry.kind(), EntryKind::Images);
        let (entry, hash) = self.append(run, entry)?;
        failpoint!("images-before-flush");
        self.flush()?;
        Ok((entry.seq, hash))
    }

    /// Every entry of a run, decoded but not verified against the chain.
    pub fn entries(&self, run: &str) -> Result<Vec<(Entry, Sha256Hash)>> {
        self.iter_entries(run)?.collect()
    }

    /// The entries of a run in order, read lazily (a long run's journal can
    /// be much larger than memory).
    pub fn iter_entries(&self, run: &str) -> Result<impl Iterator<Item = Result<(Entry, Sha256Hash)>> + '_> {
        let tree = self.entries_tree(run)?;
        let mut bodies = self.bodies.reader(run);
        let run = run.to_string();
        let mut prev = [0u8; 32];
        Ok(tree.iter().map(move |item| {
            let (key, value) = item.map_err(self.io())?;
            let seq = seq_of(&run, &key)?;
            let stored = decode_stored(&run, seq, &value)?;
            let external = matches!(stored.body, Body::External { .. });
            let body = load_body(&run, seq, stored.body, &mut bodies)?;
            // sled checksums what it stores; a body file does not, so its
            // bytes are checked against the hash sled holds before use.
            if external {
                check_hash(&run, seq, &prev, &body, &stored.hash)?;
            }
            prev = stored.hash;
            let entry = decode_entry(&run, seq, &body)?;
            Ok((entry, stored.hash))
        }))
    }

    /// Entry `seq` of run `run` with its hash, checked against the hash
    /// sled holds; `None` if the run has no such entry.
    pub fn entry_at(&self, run: &str, seq: u64) -> Result<Option<(Entry, Sha256Hash)>> {
        let tree = self.entries_tree(run)?;
        let Some(value) = tree.get(seq.to_be_bytes()).map_err(self.io())? else {
            return Ok(None);
        };
        let stored = decode_stored(run, seq, &value)?;
        let mut bodies = self.bodies.reader(run);
        let body = load_body(run, seq, stored.body, &mut bodies)?;
        let entry = decode_entry(run, seq, &body)?;
        check_hash(run, seq, &entry.prev_hash, &body, &stored.hash)?;
        Ok(Some((entry, stored.hash)))
    }

    /// Recomputes every hash and link of a run's chain. Returns the head hash
    /// (all zeros for an empty run) and the number of entries.
    pub fn verify(&self, run: &str) -> Result<VerifiedChain> {
        let header = self.header(run)?;
        let tree = self.entries_tree(run)?;
        let mut bodies = self.bodies.reader(run);
        let mut prev = [0u8; 32];
        let mut expected_seq = 0u64;
        let mut stamp = None;
        for item in tree.iter() {
            let (key, value) = item.map_err(self.io())?;
            let seq = seq_of(run, &key)?;
            if seq != expected_seq {
                return Err(JournalError::SequenceGap {
                    run: run.into(),
                    expected: expected_seq,
                    found: seq,
                });
            }
            let stored = decode_stored(run, seq, &value)?;
            let body = load_body(run, seq, stored.body, &mut bodies)?;
            check_hash(run, seq, &prev, &body, &stored.hash)?;
            let entry = decode_entry(run, seq, &body)?;
            if entry.prev_hash != prev {
                return Err(JournalError::BrokenChain {
                    run: run.into(),
                    seq,
                    expected: to_hex(&prev),
                    actual: to_hex(&entry.prev_hash),
                });
            }
            if entry.seq != seq {
                return Err(JournalError::Corrupt {
                    run: run.into(),
                    seq,
                    reason: format!("entry claims sequence {}", entry.seq),
                });
            }
            if entry.kind() == EntryKind::Stamp {
                stamp = Some((seq, entry.prev_hash));
            }
            prev = stored.hash;
            expected_seq += 1;
        }
        if let Some(expected) = header.final_entries
            && expected != expected_seq
        {
            return Err(JournalError::Truncated {
                run: run.into(),
                expected,
                found: expected_seq,
            });
        }
        Ok(VerifiedChain {
            run: run.into(),
            head: prev,
            entries: expected_seq,
            stamp,
        })
    }
}

/// Proof that a run's chain was checked: only [`Journal::verify`] builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    run: String,
    head: Sha256Hash,
    entries: u64,
    /// The `Stamp` entry's seq and the chain head before it (what the
    /// database's history records).
    stamp: Option<(u64, Sha256Hash)>,
}

impl VerifiedChain {
    pub fn run(&self) -> &str {
        &self.run
    }
    pub fn head(&self) -> Sha256Hash {
        self.head
    }
    pub fn entries(&self) -> u64 {
        self.entries
    }
    pub fn stamp(&self) -> Option<(u64, Sha256Hash)> {
        self.stamp
    }

    /// Compares the head before the stamp with the one the database's
    /// history recorded for this run.
    pub fn check_stored_head(&self, stored: &str) -> Result<()> {
        let (seq, head) = self.stamp.unwrap_or((self.entries, self.head));
        if to_hex(&head) != stored {
            return Err(JournalError::HeadMismatch {
                run: self.run.clone(),
                seq,
                stored: stored.into(),
                found: to_hex(&head),
            });
        }
        Ok(())
    }
}

fn seq_of(run: &str, key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| JournalError::Corrupt {
        run: run.into(),
        seq: u64::MAX,
        reason: format!("key of {} bytes", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn decode_stored(run: &str, seq: u64, bytes: &[u8]) -> Result<StoredEntry> {
    let (stored, used): (StoredEntry, usize) =
        bincode::decode_from_slice(bytes, config()).map_err(|e| JournalError::Corrupt {
            run: run.into(),
            seq,
            reason: e.to_string(),
        })?;
    if used != bytes.len() {
        return Err(JournalError::Corrupt {
            run: run.into(),
            seq,
            reason: "trailing bytes".into(),
        });
    }
    Ok(stored)
}

/// The entry's bytes hash, with the previous entry's hash, to what sled stored.
fn check_hash(run: &str, seq: u64, prev: &Sha256Hash, body: &[u8], stored: &Sha256Hash) -> Result<()> {
    let actual = entry_hash(prev, body);
    if actual != *stored {
        return Err(JournalError::HashMismatch {
            run: run.into(),
            seq,
            expected: to_hex(stored),
            actual: to_hex(&actual),
        });
    }
    Ok(())
}

fn load_body(run: &str, seq: u64, body: Body, bodies: &mut bodies::Reader) -> Result<Vec<u8>> {
    match body {
        Body::Inline(bytes) => Ok(bytes),
        Body::External { offset, len } => bodies.read(offset, len).map_err(|reason| JournalError::Body {
            run: run.into(),
            seq,
            path: bodies.path().to_path_buf(),
            reason,
        }),
    }
}

/// Every header and entry begins with its format version: one of another
/// version is refused as such, before the rest is decoded.
fn check_format(run: &str, bytes: &[u8]) -> Result<()> {
    match bincode::decode_from_slice::<u32, _>(bytes, config()) {
        Ok((found, _)) if found != FORMAT_VERSION && (1..FORMAT_VERSION + 8).contains(&found) => {
            Err(JournalError::OtherFormat {
                run: run.into(),
                found,
                reads: FORMAT_VERSION,
                host: concat!("godwit ", env!("CARGO_PKG_VERSION")),
            })
        }
        _ => Ok(()),
    }
}

fn decode_entry(run: &str, seq: u64, body: &[u8]) -> Result<Entry> {
    check_format(run, body)?;
    let (entry, used): (Entry, usize) =
        bincode::decode_from_slice(body, config()).map_err(|e| JournalError::Corrupt {
            run: run.into(),
            seq,
            reason: e.to_string(),
        })?;
    if used != body.len() || entry.format != FORMAT_VERSION {
        return Err(JournalError::Corrupt {
            run: run.into(),
            seq,
            reason: format!("format {} (this godwit reads {FORMAT_VERSION})", entry.format),
        });
    }
    Ok(entry)
}

fn decode_header(run: &str, bytes: &[u8]) -> Result<RunHeader> {
    check_format(run, bytes)?;
    let (header, _): (RunHeader, usize) =
        bincode::decode_from_slice(bytes, config()).map_err(|e| JournalError::CorruptHeader {
            run: run.into(),
            reason: e.to_string(),
        })?;
    if header.format != FORMAT_VERSION {
        return Err(JournalError::CorruptHeader {
            run: run.into(),
            reason: format!("format {} (this godwit reads {FORMAT_VERSION})", header.format),
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests;

/// Resolves each commit's images while a run's entries are read in order:
/// a commit whose images were journaled before its transaction committed
/// (`Commit::images_at`) gets them from that `Images` entry; the `Images`
/// entries of attempts that did not commit are passed over.
#[derive(Debug, Default)]
pub struct CommitImages {
    /// `Images` entries read and not yet claimed by a commit, by entry seq.
    waiting: std::collections::BTreeMap<u64, Vec<Image>>,
    /// The `Images` entry (seq, chain hash) a progress marker said was
    /// committed ([`LastCommit`]), whether or not a `Committed` entry names it.
    settled: Option<(u64, Sha256Hash)>,
}

impl CommitImages {
    /// Pairs a run's entries whose last commit's images `last` names: the
    /// process may have been killed before journaling that commit.
    pub fn settled(last: Option<&LastCommit>) -> Self {
        CommitImages {
            settled: last.and_then(|l| l.images),
            ..CommitImages::default()
        }
    }

    /// The images `entry` (whose chain hash is `hash`) committed: a
    /// `Committed` entry's own or those of the `Images` entry it names, or
    /// the settled `Images` entry's; empty for every other entry (an
    /// `Images` entry is kept until its commit comes).
    pub fn of(&mut self, entry: Entry, hash: &Sha256Hash) -> Vec<Image> {
        match entry.record {
            Record::Images { images, .. } if self.settled == Some((entry.seq, *hash)) => {
                // Its `Committed` entry, if there is one, then finds nothing.
                self.waiting.clear();
                images
            }
            Record::Images { images, .. } => {
                self.waiting.insert(entry.seq, images);
                Vec::new()
            }
            Record::Committed(commit) => match commit.images_at {
                Some(at) => {
                    let images = self.waiting.remove(&at).unwrap_or_default();
                    // Earlier attempts of this batch, or of earlier ones,
                    // never committed.
                    self.waiting = self.waiting.split_off(&at);
                    images
                }
                None => commit.images,
            },
            _ => Vec::new(),
        }
    }
}
