//! Reading a run's log: the one interpreter of what a run's journal entries
//! say about its progress, used to resume a run, bind it to its plan and
//! restore its plugin's state. Pure: it reads entries, nothing else.

use super::batch::{checkpoint_of, committed_touched, decode_actions};
use super::plan::Plan;
use super::report::{Summary, Touched};
use crate::hash::Sha256Hash;
use crate::journal::{Entry, EntryKind, LookupRecord};
use crate::plugin::actions::ValidAction;
use bson::{Bson, Document};
use std::collections::{BTreeMap, BTreeSet};

/// What a run's journal says, entry by entry.
#[derive(Debug, Default)]
pub struct RunLog {
    /// Passes that read their last batch.
    pub done_passes: BTreeSet<u32>,
    /// Per pass, the `_id` of the last applied document.
    pub checkpoints: BTreeMap<u32, Bson>,
    /// A `Prepared`/`Finish` entry whose `Committed` is missing (execute),
    /// to be settled against the database's progress marker.
    pub pending: Option<Entry>,
    /// Sequence number of the last `Prepared`/`Finish` entry.
    pub last_batch: Option<u64>,
    /// `finish` ran and its actions are applied (or, dry, recorded).
    pub finished: bool,
    pub stamped: bool,
    /// Server sessions of earlier processes (their `lsid`s).
    pub sessions: Vec<Document>,
    /// A `Begin` or `Resume` entry exists.
    pub begun: bool,
    /// The reviewed dry run the first `Begin`/`Resume` names (`--plan`).
    pub plan: Option<String>,
    /// The lookups the first `begin` made (a resumed `begin` sees them again).
    pub begin_lookups: Vec<LookupRecord>,
    /// Batches whose actions are applied (dry: recorded), in order: what a
    /// resumed plugin is fed again to restore its state.
    pub applied: BTreeSet<u64>,
    /// Each `Prepared` batch: its pass and the hash of its inputs (what a
    /// plan counts as reviewed).
    pub prepared_inputs: Vec<(u32, Sha256Hash)>,
    /// The figures so far: actions per pass and, for committed batches,
    /// documents touched as the server counted them.
    pub summary: Summary,
    /// Actions of recorded dry-run batches whose documents touched only the
    /// database can count (an unpinned `multi` update or delete).
    pub uncounted: Vec<(Option<u32>, ValidAction)>,
    begin_seen: bool,
}

impl RunLog {
    /// Interprets a run's entries, in order. `summary` is the run's empty
    /// summary (its passes named); `execute` is the run's mode.
    pub fn read(
        entries: impl IntoIterator<Item = anyhow::Result<Entry>>,
        summary: Summary,
        execute: bool,
    ) -> anyhow::Result<Self> {
        let mut log = RunLog {
            summary,
            ..RunLog::default()
        };
        for entry in entries {
            log.push(entry?)?;
        }
        // In a dry run `Finish` is never committed: recorded is done.
        if !execute && log.pending.as_ref().is_some_and(|p| p.kind == EntryKind::Finish) {
            let finish = log.pending.take().expect("checked");
            log.applied.insert(finish.seq);
            log.finished = true;
        }
        Ok(log)
    }

    fn push(&mut self, entry: Entry) -> anyhow::Result<()> {
        match entry.kind {
            EntryKind::Planned => {
                if let (Some(p), Some(c)) = (entry.pass, checkpoint_of(&entry)) {
                    self.checkpoints.insert(p, c);
                }
                let actions = decode_actions(&entry)?;
                self.summary.add(entry.pass, entry.counts.documents, &actions);
                let (bound, unbounded) = Touched::bound(&actions);
                self.summary.add_touched(entry.pass, bound);
                self.uncounted
                    .extend(unbounded.into_iter().map(|a| (entry.pass, a.clone())));
                self.applied.insert(entry.seq);
            }
            EntryKind::Prepared | EntryKind::Finish => {
                if let (EntryKind::Prepared, Some(pass), Some(inputs)) = (entry.kind, entry.pass, entry.inputs_hash) {
                    self.prepared_inputs.push((pass, inputs));
                }
                self.last_batch = Some(entry.seq);
                self.pending = Some(entry);
            }
            EntryKind::Committed => {
                if let Some(batch) = self.pending.take_if(|p| Some(p.seq) == entry.batch_seq) {
                    self.committed(&batch)?;
                    self.summary.add_touched(batch.pass, committed_touched(&entry));
                }
            }
            EntryKind::PassDone => {
                self.done_passes.insert(entry.pass.unwrap_or(0));
            }
            EntryKind::Stamp => self.stamped = true,
            EntryKind::Session => self
                .sessions
                .extend(entry.session.and_then(|b| Document::from_reader(b.as_slice()).ok())),
            EntryKind::Begin | EntryKind::Resume => {
                if !self.begun {
                    // The first `Begin` (or the `Resume` of a run that
                    // crashed before its `Begin`) carries the plan's note.
                    self.plan = Plan::recorded(&entry.note).map(str::to_string);
                }
                if entry.kind == EntryKind::Begin && !self.begin_seen {
                    self.begin_lookups = entry.lookups;
                    self.begin_seen = true;
                }
                self.begun = true;
            }
            EntryKind::Verify => {}
        }
        Ok(())
    }

    /// Accounts for a `Prepared`/`Finish` entry whose commit is known
    /// (journaled, or settled on resume). Its touched documents are the
    /// caller's to add: they come from the commit.
    pub fn committed(&mut self, batch: &Entry) -> anyhow::Result<()> {
        if let (Some(p), Some(c)) = (batch.pass, checkpoint_of(batch)) {
            self.checkpoints.insert(p, c);
        }
        if batch.kind == EntryKind::Finish {
            self.finished = true;
        } else {
            self.summary.add(batch.pass, batch.counts.documents, &decode_actions(batch)?);
        }
        self.applied.insert(batch.seq);
        Ok(())
    }
}
