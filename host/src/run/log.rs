//! Reading a run's log: the one interpreter of what a run's journal entries
//! say about its progress, used to resume a run, bind it to its plan and
//! restore its plugin's state. Pure: it reads entries, nothing else.

use super::batch::{checkpoint_of, committed_touched, decode_actions, id_of};
use super::plan::Plan;
use super::report::{Summary, Touched};
use crate::hash::Sha256Hash;
use crate::journal::{Entry, FollowWindow, LookupRecord, Record};
use crate::plugin::actions::ValidAction;
use bson::{Bson, Document};
use std::collections::{BTreeMap, BTreeSet};

/// What a run's journal says, entry by entry.
#[derive(Debug, Default)]
pub struct RunLog {
    /// Schema operations the latest `begin` call returned (not read from
    /// the journal: `run::schema` compares them with the journaled ones).
    pub begin_schema: Option<Vec<godwit_policy::SchemaOp>>,
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
    /// The follow phase (`--follow`) so far.
    pub follow: FollowLog,
    /// A fleet run: the partition bounds of each pass it split.
    pub partitions: BTreeMap<u32, Vec<Vec<u8>>>,
    begin_seen: bool,
}

/// What a run's journal says of its follow phase.
#[derive(Debug, Default)]
pub struct FollowLog {
    /// Where the run's change stream starts (`FollowFrom`): a follow run.
    pub from: Option<Vec<u8>>,
    /// The last window, unless the phase is done.
    pub window: Option<OpenWindow>,
    pub windows: u64,
    /// Documents the windows named.
    pub documents: u64,
    /// `FollowDone`: the proof is journaled.
    pub done: bool,
}

/// The last window of a follow phase and, per pass over a collection it
/// names documents of, those no applied batch has processed yet.
#[derive(Debug)]
pub struct OpenWindow {
    pub window: FollowWindow,
    pub remaining: BTreeMap<u32, BTreeSet<Vec<u8>>>,
}

impl FollowLog {
    /// Where the stream goes on from: after the last window, else its start.
    pub fn position(&self) -> Option<&[u8]> {
        self.window
            .as_ref()
            .map(|w| w.window.to.as_slice())
            .or(self.from.as_deref())
    }
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
        if !execute
            && log
                .pending
                .as_ref()
                .is_some_and(|p| matches!(p.record, Record::Finish(_)))
        {
            let finish = log.pending.take().expect("checked");
            log.applied.insert(finish.seq);
            log.finished = true;
        }
        Ok(log)
    }

    /// Interprets one more entry (the engine's own, just journaled, too).
    pub fn push(&mut self, entry: Entry) -> anyhow::Result<()> {
        let seq = entry.seq;
        match entry.record {
            Record::Planned(ref batch) => {
                if let (Some(p), Some(c)) = (batch.pass, checkpoint_of(batch)) {
                    self.checkpoints.insert(p, c);
                }
                let actions = decode_actions(batch, seq)?;
                self.summary.add(batch.pass, batch.counts.documents, &actions);
                let (bound, unbounded) = Touched::bound(&actions);
                self.summary.add_touched(batch.pass, bound);
                self.uncounted
                    .extend(unbounded.into_iter().map(|a| (batch.pass, a.clone())));
                self.applied.insert(seq);
            }
            Record::Prepared(ref batch) | Record::Finish(ref batch) => {
                if let (Record::Prepared(_), Some(pass)) = (&entry.record, batch.pass) {
                    self.prepared_inputs.push((pass, batch.inputs_hash));
                }
                self.last_batch = Some(seq);
                self.pending = Some(entry);
            }
            Record::Committed(commit) => {
                if let Some(batch) = self.pending.take_if(|p| p.seq == commit.batch_seq) {
                    self.committed(&batch)?;
                    self.summary.add_touched(commit.pass, committed_touched(&commit));
                }
            }
            Record::PassDone { pass } => {
                self.done_passes.insert(pass);
            }
            Record::Stamp { .. } => self.stamped = true,
            Record::Session { lsid } => self.sessions.extend(Document::from_reader(lsid.as_slice()).ok()),
            Record::Begin(ref call) | Record::Resume(ref call) => {
                if !self.begun {
                    // The first `Begin` (or the `Resume` of a run that
                    // crashed before its `Begin`) carries the plan's note.
                    self.plan = Plan::recorded(&call.note).map(str::to_string);
                }
                if let Record::Begin(call) = entry.record
                    && !self.begin_seen
                {
                    self.begin_lookups = call.lookups;
                    self.begin_seen = true;
                }
                self.begun = true;
            }
            // Schema operations: `run::schema` reads them from the journal itself.
            // A batch attempt's images: its commit names the one that counts.
            Record::Verify { .. }
            | Record::Images { .. }
            | Record::SchemaPlan(_)
            | Record::SchemaPrepared(_)
            | Record::SchemaApplied { .. }
            | Record::PartitionsDone { .. } => {}
            Record::Partitions { pass, bounds } => {
                self.partitions.insert(pass, bounds);
            }
            Record::FollowFrom { position } => {
                self.follow.from = Some(position);
                self.summary.follow.get_or_insert_default();
            }
            Record::FollowWindow(window) => {
                let remaining = self
                    .summary
                    .passes
                    .iter()
                    .enumerate()
                    .filter_map(|(index, pass)| {
                        let ids: BTreeSet<Vec<u8>> = window
                            .documents
                            .iter()
                            .filter(|(collection, _)| *collection == pass.collection)
                            .map(|(_, id)| id.clone())
                            .collect();
                        (!ids.is_empty()).then_some((index as u32, ids))
                    })
                    .collect();
                self.follow.windows = window.number;
                self.follow.documents += window.documents.len() as u64;
                let figures = self.summary.follow.get_or_insert_default();
                figures.windows = window.number;
                figures.events += window.events;
                figures.documents += window.documents.len() as u64;
                if window.cutover {
                    figures.cutover_at = window
                        .last_event_ms
                        .and_then(|ms| bson::DateTime::from_millis(ms).try_to_rfc3339_string().ok());
                }
                self.follow.window = Some(OpenWindow { window, remaining });
            }
            Record::FollowDone(_) => {
                self.follow.done = true;
                self.follow.window = None;
                self.summary.follow.get_or_insert_default().done = true;
            }
            // Refused by the write guard: nothing of it was written, and its
            // documents were (or will be) read again.
            Record::Conflict {
                batch_seq,
                pass,
                ref changed,
            } => {
                self.pending.take_if(|p| p.seq == batch_seq);
                self.summary.add_conflicts(pass, changed.len() as u64);
            }
        }
        Ok(())
    }

    /// Accounts for a `Prepared`/`Finish` entry whose commit is known
    /// (journaled, or settled on resume). Its touched documents are the
    /// caller's to add: they come from the commit.
    pub fn committed(&mut self, entry: &Entry) -> anyhow::Result<()> {
        let Some(batch) = entry.batch() else { return Ok(()) };
        if let (Some(p), Some(c)) = (batch.pass, checkpoint_of(batch)) {
            self.checkpoints.insert(p, c);
        }
        if let Record::Finish(_) = entry.record {
            self.finished = true;
        } else {
            // A batch of the follow phase: its documents of the window are done.
            if let (Some(pass), Some(open)) = (batch.pass, self.follow.window.as_mut())
                && let Some(remaining) = open.remaining.get_mut(&pass)
            {
                for input in &batch.inputs {
                    if let Some(id) = id_of(input) {
                        remaining.remove(&crate::db::id_key(&id));
                    }
                }
            }
            self.summary
                .add(batch.pass, batch.counts.documents, &decode_actions(batch, entry.seq)?);
        }
        self.applied.insert(entry.seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Batch, Call, Commit, EntryKind};
    use crate::plugin::actions::ValidAction;
    use bson::doc;

    fn entry(seq: u64, record: Record) -> Entry {
        let mut e = Entry::new(record, 0);
        e.seq = seq;
        e
    }

    /// A batch of pass `pass` whose last input has `_id` `last`, with one update.
    fn batch(pass: Option<u32>, last: i32) -> Batch {
        let update = ValidAction::Update {
            collection: "c".into(),
            filter: doc! {"_id": last},
            update: doc! {"$set": {"x": 1}},
            upsert: false,
            multi: false,
        };
        let mut b = Batch {
            pass,
            checkpoint: pass.map(|_| doc! {"_id": last}.to_vec().unwrap()),
            inputs_hash: [last as u8; 32],
            actions: vec![update.to_document().to_vec().unwrap()],
            ..Batch::default()
        };
        b.counts.documents = 2;
        b
    }

    fn committed(seq: u64, of: u64, updated: u64) -> Entry {
        entry(
            seq,
            Record::Committed(Commit {
                batch_seq: of,
                updated,
                ..Commit::default()
            }),
        )
    }

    fn read(entries: Vec<Entry>, execute: bool) -> RunLog {
        let summary = Summary::new([("p0", "c"), ("p1", "c")]);
        RunLog::read(entries.into_iter().map(Ok), summary, execute).unwrap()
    }

    #[test]
    fn an_execute_log_counts_only_committed_batches_and_keeps_the_last_prepared_pending() {
        let begin = Call {
            note: "plan 0123".into(),
            lookups: vec![LookupRecord {
                collection: "users".into(),
                filter: Vec::new(),
                projection: None,
                limit: 0,
                result: Ok(Vec::new()),
            }],
            fuel: 0,
        };
        let lsid = doc! {"id": 1}.to_vec().unwrap();
        let log = read(
            vec![
                entry(0, Record::Begin(begin)),
                entry(1, Record::Session { lsid }),
                entry(2, Record::Prepared(batch(Some(0), 10))),
                committed(3, 2, 2),
                entry(4, Record::Prepared(batch(Some(0), 20))),
            ],
            true,
        );
        assert_eq!(
            log.checkpoints.get(&0),
            Some(&Bson::Int32(10)),
            "only the committed batch moves the checkpoint"
        );
        assert_eq!(log.pending.as_ref().map(|p| p.seq), Some(4));
        assert_eq!(log.last_batch, Some(4));
        assert_eq!(log.applied, BTreeSet::from([2]));
        assert_eq!(log.prepared_inputs, vec![(0, [10; 32]), (0, [20; 32])]);
        assert_eq!(log.summary.passes[0].documents, 2);
        assert_eq!(log.summary.touched().updated, 2);
        assert_eq!(log.sessions, vec![doc! {"id": 1}]);
        assert!(log.begun && !log.finished && !log.stamped);
        assert_eq!(log.plan, Plan::recorded("plan 0123").map(str::to_string));
        assert_eq!(log.begin_lookups.len(), 1);
    }

    #[test]
    fn a_commit_for_another_batch_settles_nothing() {
        let log = read(
            vec![entry(0, Record::Prepared(batch(Some(1), 5))), committed(1, 7, 1)],
            true,
        );
        assert_eq!(log.pending.as_ref().map(|p| p.seq), Some(0));
        assert!(log.checkpoints.is_empty() && log.applied.is_empty());
    }

    #[test]
    fn settling_a_pending_batch_accounts_for_it() {
        let mut log = read(vec![entry(0, Record::Prepared(batch(Some(1), 5)))], true);
        let pending = log.pending.take().unwrap();
        log.committed(&pending).unwrap();
        assert_eq!(log.checkpoints.get(&1), Some(&Bson::Int32(5)));
        assert_eq!(log.applied, BTreeSet::from([0]));
        assert_eq!(log.summary.passes[1].batches, 1);
    }

    #[test]
    fn a_dry_log_applies_planned_batches_and_a_recorded_finish_is_done() {
        let log = read(
            vec![
                entry(0, Record::Planned(batch(Some(0), 3))),
                entry(1, Record::PassDone { pass: 0 }),
                entry(2, Record::Finish(batch(None, 0))),
            ],
            false,
        );
        assert!(log.finished && log.pending.is_none());
        assert_eq!(log.done_passes, BTreeSet::from([0]));
        assert_eq!(log.applied, BTreeSet::from([0, 2]));
        assert_eq!(log.checkpoints.get(&0), Some(&Bson::Int32(3)));
        // Pinned updates are counted from the actions: nothing left for the database.
        assert!(log.uncounted.is_empty());
        assert_eq!(log.summary.touched().updated, 1);
    }

    #[test]
    fn an_execute_finish_without_its_commit_stays_pending_and_a_stamp_is_seen() {
        let log = read(vec![entry(0, Record::Finish(batch(None, 0)))], true);
        assert!(!log.finished);
        assert_eq!(log.pending.as_ref().map(Entry::kind), Some(EntryKind::Finish));
        let log = read(
            vec![
                entry(0, Record::Finish(batch(None, 0))),
                committed(1, 0, 0),
                entry(2, Record::Stamp { note: String::new() }),
            ],
            true,
        );
        assert!(log.finished && log.stamped && log.pending.is_none());
    }

    #[test]
    fn only_the_first_begin_or_resume_names_the_plan() {
        let resume = Call {
            note: "something else".into(),
            ..Call::default()
        };
        let begin = Call {
            note: "plan 0123".into(),
            ..Call::default()
        };
        let log = read(
            vec![entry(0, Record::Resume(resume)), entry(1, Record::Begin(begin))],
            true,
        );
        assert!(log.begun);
        assert_eq!(log.plan, None, "the first Begin/Resume decides");
    }
}
