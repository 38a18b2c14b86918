//! The journal's entries: one typed variant per kind of event in a run, so
//! that every entry carries exactly what its kind needs (a commit has no
//! inputs, a batch no images) and a reader matches on the variant instead
//! of checking optional fields.

use crate::hash::Sha256Hash;
use serde::{Deserialize, Serialize};

/// The kind of an entry, for display and filtering (`journal show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Begin,
    Resume,
    Prepared,
    Committed,
    Planned,
    PassDone,
    Finish,
    Verify,
    Stamp,
    Session,
    Conflict,
    FollowFrom,
    FollowWindow,
    FollowDone,
    SchemaPlan,
    SchemaPrepared,
    SchemaApplied,
    Partitions,
    Images,
    PartitionsDone,
}

/// One record in a run's hash chain. `append` fills `format`, `seq` and
/// `prev_hash`.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Entry {
    pub format: u32,
    pub seq: u64,
    pub at_ms: i64,
    pub record: Record,
    pub prev_hash: Sha256Hash,
}

/// One partition of a fleet run's pass, done (`Record::PartitionsDone`).
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct PartitionDone {
    pub index: u32,
    /// Documents its batches read, over every run that wrote it.
    pub documents: u64,
    /// Every run that committed a batch of it (`<fleet>.<pass>.<k>@<journal>`).
    pub runs: Vec<String>,
    pub holders: Vec<PartitionHolder>,
    /// Each run's last commit, as its progress marker said before the
    /// partition was done and the marker removed: a process killed between
    /// a commit and its `Committed` entry left that batch's images in an
    /// `Images` entry no commit names - this names it.
    pub last_commits: Vec<LastCommit>,
}

/// A run's last committed batch, from its progress marker.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct LastCommit {
    pub run: String,
    /// The seq of the batch's `Prepared` entry.
    pub batch_seq: u64,
    /// The `Images` entry the commit's images were journaled in (seq and
    /// chain hash); `None` when the marker held them itself.
    pub images: Option<(u64, Sha256Hash)>,
}

/// A process that claimed a partition: which journal, on which machine,
/// holds the runs it wrote.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct PartitionHolder {
    pub host: String,
    /// The journal's id ([`super::Journal::id`]; a run id's `@` suffix is
    /// its last 12 characters).
    pub journal: String,
    /// The journal's directory on `host`, absolute.
    pub path: String,
}

impl PartitionHolder {
    /// "journal ...<id> on HOST at PATH" (not escaped: the work table is
    /// written by whoever can write the database).
    pub fn describe(&self) -> String {
        format!(
            "journal ...{} on {} at {}",
            &self.journal[self.journal.len().saturating_sub(12)..],
            self.host,
            self.path
        )
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Record {
    /// The plugin's `begin` ran.
    Begin(Call),
    /// A resumed run called `begin` again on a fresh instance.
    Resume(Call),
    /// A dry-run batch: inputs and would-be actions, and its checkpoint.
    Planned(Batch),
    /// An execute batch, recorded (and flushed) before any write.
    Prepared(Batch),
    /// `finish` ran; its actions, if any.
    Finish(Batch),
    /// The batch `batch_seq` names was committed to the database.
    Committed(Commit),
    /// A pass read its last batch.
    PassDone { pass: u32 },
    /// The passes were re-run dry after the run: the write actions still
    /// wanted (the residue) over `documents` documents.
    Verify {
        documents: u64,
        write_actions: u64,
        note: String,
    },
    /// The schema version was stamped in the database.
    Stamp { note: String },
    /// A process attached to the run: its server session id (`lsid`, BSON),
    /// so that a later process can end the session's orphaned transaction.
    Session { lsid: Vec<u8> },
    /// The write guard refused the `Prepared` batch `batch_seq`: documents
    /// it read changed (an application wrote them) between the read and the
    /// commit. Nothing of it was written; its documents are read again and
    /// processed as a new batch. `changed`: their `{"_id": ...}` as BSON.
    Conflict {
        batch_seq: u64,
        pass: u32,
        changed: Vec<Vec<u8>>,
    },
    /// `--follow`: where the run's change stream starts (a resume token, as
    /// BSON), taken before the run read its first document.
    FollowFrom { position: Vec<u8> },
    /// Changes the stream delivered after the snapshot passes, processed
    /// next (pass by pass, in the `Prepared` batches that follow).
    FollowWindow(FollowWindow),
    /// The follow phase's proof: every change from `from` up to the
    /// operator's cutover was read, in windows that follow each other
    /// without a gap, and processed.
    FollowDone(FollowDone),
    /// The schema operations a plugin's `begin` or `finish` returned, in
    /// order, with what each would affect as the database was then; flushed
    /// before any of them (or finish's batch) is sent, so a resume takes
    /// them from here, never from the plugin.
    SchemaPlan(SchemaPlan),
    /// One schema operation about to be sent (flushed first), with how to
    /// undo it, read from the server just before.
    SchemaPrepared(SchemaIntent),
    /// The server reached the state the `SchemaPrepared` entry `intent_seq`
    /// asked for.
    SchemaApplied { intent_seq: u64, note: String },
    /// A fleet run (`--workers`) split pass `pass` into partitions at these
    /// `_id`s (each `{"_id": value}` BSON, in `_id` order): partition `k`
    /// holds the `_id`s after bound `k-1` up to and including bound `k`, the
    /// last one everything after the last bound. Flushed before the work
    /// table is written, so a resume splits the same way.
    Partitions { pass: u32, bounds: Vec<Vec<u8>> },
    /// Every partition of a fleet run's pass `pass` done: which runs wrote
    /// each, and the journals (host, directory) of the processes that
    /// claimed it - the work table, which goes when the run is stamped, as
    /// an auditor collecting the workers' journals needs it. Journaled by
    /// the fleet run before its `PassDone`.
    PartitionsDone { pass: u32, partitions: Vec<PartitionDone> },
    /// The before-images and after-image hashes of one attempt at writing
    /// the `Prepared` batch `batch_seq`, flushed inside the attempt's
    /// transaction, before its commit. The progress marker, written in the
    /// same transaction, names this entry: the attempt that committed is
    /// the one its `Committed` entry (or, when that was lost, the marker)
    /// points to; an attempt that did not commit leaves an entry nothing
    /// points to.
    Images {
        batch_seq: u64,
        pass: Option<u32>,
        images: Vec<Image>,
    },
}

/// One window of the follow phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct FollowWindow {
    /// 1, 2, ... in the run.
    pub number: u64,
    /// The stream positions it lies between: `from` is the previous
    /// window's `to` (the first: the run's `FollowFrom`).
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    /// The documents its events named: collection and `{"_id": ...}` BSON.
    pub documents: Vec<(String, Vec<u8>)>,
    pub events: u64,
    /// Server time of its last event (ms since the epoch).
    pub last_event_ms: Option<i64>,
    /// It ends at the cutover: the last window.
    pub cutover: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct FollowDone {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    pub windows: u64,
    /// Documents the windows named.
    pub documents: u64,
    /// Server time of the cutover.
    pub cutover_ms: Option<i64>,
}

/// When a phase of schema operations runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum SchemaPhase {
    /// Returned by `begin`: applied before the first pass.
    Begin,
    /// Returned by `finish`: applied after finish's document actions.
    Finish,
    /// A revert undoing a run's operations.
    Revert,
}

impl SchemaPhase {
    pub fn name(self) -> &'static str {
        match self {
            SchemaPhase::Begin => "begin",
            SchemaPhase::Finish => "finish",
            SchemaPhase::Revert => "revert",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct SchemaPlan {
    pub phase: SchemaPhase,
    /// Each operation as a BSON document (`{op: "create-index", ...}`).
    pub ops: Vec<Vec<u8>>,
    /// What each would affect, one line per operation.
    pub effects: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct SchemaIntent {
    pub phase: SchemaPhase,
    /// Its index in the phase's `SchemaPlan`.
    pub index: u32,
    pub op: Vec<u8>,
    pub undo: Undo,
}

/// How a revert puts back what one schema operation changed.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum Undo {
    /// The server was already as the operation wanted: nothing to undo.
    Nothing { why: String },
    /// These operations (BSON documents, in order) put it back.
    Ops(Vec<Vec<u8>>),
    /// A dropped collection: the operations that re-create it (collection,
    /// indexes) and its documents as they were just before the drop.
    Collection { ops: Vec<Vec<u8>>, documents: Vec<Vec<u8>> },
    /// It cannot be undone, and why.
    Impossible { why: String },
}

/// A plugin's `begin` call.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Call {
    pub fuel: u64,
    pub lookups: Vec<LookupRecord>,
    /// The reviewed dry run an execute is bound to (`plan <run>`), or what
    /// a revert reverts.
    pub note: String,
}

/// One `process` (or `finish`, or a revert's restores) and what it asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Batch {
    /// `None`: `finish` or a revert.
    pub pass: Option<u32>,
    /// `{"_id": <last _id of the batch>}` as BSON: where the pass resumes.
    pub checkpoint: Option<Vec<u8>>,
    pub inputs_hash: Sha256Hash,
    pub actions_hash: Sha256Hash,
    /// Input documents, and actions by kind.
    pub counts: Counts,
    pub fuel: u64,
    /// The batch as the plugin saw it (projected raw BSON documents).
    pub inputs: Vec<Vec<u8>>,
    /// The validated actions, each as a BSON document.
    pub actions: Vec<Vec<u8>>,
    pub lookups: Vec<LookupRecord>,
}

/// A batch the database committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Commit {
    /// The `Prepared` (or `Finish`) entry it settles.
    pub batch_seq: u64,
    pub pass: Option<u32>,
    /// Documents the writes touched, as the server's replies counted them.
    pub updated: u64,
    pub inserted: u64,
    pub deleted: u64,
    /// Every document the batch wrote, before and after - or, when
    /// `images_at` is set, in that `Images` entry (journaled before the
    /// commit) and empty here.
    pub images: Vec<Image>,
    pub images_at: Option<u64>,
    /// How it was settled, when settled on resume.
    pub note: String,
}

/// One journaled lookup: the plugin's `find` and what it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, bincode::Encode, bincode::Decode)]
pub struct LookupRecord {
    pub collection: String,
    pub filter: Vec<u8>,
    pub projection: Option<Vec<u8>>,
    pub limit: u32,
    pub result: std::result::Result<Vec<Vec<u8>>, String>,
}

/// One document a committed batch wrote: how it was before the batch (read
/// inside the batch's transaction) and a hash of how it was after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, bincode::Encode, bincode::Decode)]
pub struct Image {
    pub collection: String,
    /// `{"_id": <value>}` as BSON.
    pub id: Vec<u8>,
    /// The whole document before the batch; `None`: it did not exist (the batch inserted it).
    pub before: Option<Vec<u8>>,
    /// sha256 of the document's BSON after the batch; `None`: the batch deleted it.
    pub after_hash: Option<Sha256Hash>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, bincode::Encode, bincode::Decode)]
pub struct Counts {
    pub documents: u64,
    pub updates: u64,
    pub inserts: u64,
    pub deletes: u64,
    pub reports: u64,
}

impl Entry {
    /// An entry recording `record`; `append` fills the rest.
    pub fn new(record: Record, at_ms: i64) -> Self {
        Entry {
            format: super::FORMAT_VERSION,
            seq: 0,
            at_ms,
            record,
            prev_hash: [0; 32],
        }
    }

    pub fn kind(&self) -> EntryKind {
        match &self.record {
            Record::Begin(_) => EntryKind::Begin,
            Record::Resume(_) => EntryKind::Resume,
            Record::Planned(_) => EntryKind::Planned,
            Record::Prepared(_) => EntryKind::Prepared,
            Record::Finish(_) => EntryKind::Finish,
            Record::Committed(_) => EntryKind::Committed,
            Record::PassDone { .. } => EntryKind::PassDone,
            Record::Verify { .. } => EntryKind::Verify,
            Record::Stamp { .. } => EntryKind::Stamp,
            Record::Session { .. } => EntryKind::Session,
            Record::Conflict { .. } => EntryKind::Conflict,
            Record::FollowFrom { .. } => EntryKind::FollowFrom,
            Record::FollowWindow(_) => EntryKind::FollowWindow,
            Record::FollowDone(_) => EntryKind::FollowDone,
            Record::SchemaPlan(_) => EntryKind::SchemaPlan,
            Record::SchemaPrepared(_) => EntryKind::SchemaPrepared,
            Record::SchemaApplied { .. } => EntryKind::SchemaApplied,
            Record::Partitions { .. } => EntryKind::Partitions,
            Record::Images { .. } => EntryKind::Images,
            Record::PartitionsDone { .. } => EntryKind::PartitionsDone,
        }
    }

    /// The batch a `Planned`, `Prepared` or `Finish` entry records.
    pub fn batch(&self) -> Option<&Batch> {
        match &self.record {
            Record::Planned(b) | Record::Prepared(b) | Record::Finish(b) => Some(b),
            _ => None,
        }
    }

    /// The pass an entry is about, if any.
    pub fn pass(&self) -> Option<u32> {
        match &self.record {
            Record::Planned(b) | Record::Prepared(b) | Record::Finish(b) => b.pass,
            Record::Committed(c) => c.pass,
            Record::Images { pass, .. } => *pass,
            Record::PassDone { pass }
            | Record::Conflict { pass, .. }
            | Record::Partitions { pass, .. }
            | Record::PartitionsDone { pass, .. } => Some(*pass),
            _ => None,
        }
    }

    /// Its free-form note (plan, settlement, stamp, residue).
    pub fn note(&self) -> &str {
        match &self.record {
            Record::Begin(c) | Record::Resume(c) => &c.note,
            Record::Committed(c) => &c.note,
            Record::Verify { note, .. } | Record::Stamp { note } | Record::SchemaApplied { note, .. } => note,
            _ => "",
        }
    }

    /// Fuel the plugin used for the call this entry records.
    pub fn fuel(&self) -> u64 {
        match &self.record {
            Record::Begin(c) | Record::Resume(c) => c.fuel,
            Record::Planned(b) | Record::Prepared(b) | Record::Finish(b) => b.fuel,
            _ => 0,
        }
    }

    /// Lookups the call made.
    pub fn lookups(&self) -> &[LookupRecord] {
        match &self.record {
            Record::Begin(c) | Record::Resume(c) => &c.lookups,
            Record::Planned(b) | Record::Prepared(b) | Record::Finish(b) => &b.lookups,
            _ => &[],
        }
    }

    /// Before-images a commit or an `Images` entry holds (a commit with
    /// `images_at` holds none itself: see [`super::CommitImages`]).
    pub fn images(&self) -> &[Image] {
        match &self.record {
            Record::Committed(c) => &c.images,
            Record::Images { images, .. } => images,
            _ => &[],
        }
    }

    /// Figures for display: a batch's inputs and actions; a commit's
    /// documents touched (`updates`/`inserts`/`deletes`); a verification's
    /// documents and residue (`updates`).
    pub fn counts(&self) -> Counts {
        match &self.record {
            Record::Planned(b) | Record::Prepared(b) | Record::Finish(b) => b.counts.clone(),
            Record::Committed(c) => Counts {
                updates: c.updated,
                inserts: c.inserted,
                deletes: c.deleted,
                ..Counts::default()
            },
            Record::Verify {
                documents,
                write_actions,
                ..
            } => Counts {
                documents: *documents,
                updates: *write_actions,
                ..Counts::default()
            },
            _ => Counts::default(),
        }
    }
}
