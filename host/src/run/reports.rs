//! Every report a run's plugin returned, streamed from the journal in order:
//! the run summary keeps only the first [`super::report::SAMPLES`] of each
//! kind, `godwit journal reports` lists them all.
//!
//! The reports counted are the ones the summary counts: in a dry run every
//! recorded batch's (`Planned`, and `Finish`); in an execute run those of
//! each batch (`Prepared` or `Finish`) once its `Committed` entry settles it.
//! A batch an unfinished run left without its `Committed` is listed last,
//! marked pending (a resume settles it); one that a later batch replaced
//! (the run was abandoned and never settled it) is not listed, as it is not
//! counted. At most one batch's reports are held in memory.

use crate::journal::{Batch, Entry, Journal, Record, RunMode};
use crate::plugin::actions::ValidAction;
use anyhow::Context;
use bson::Document;
use std::collections::VecDeque;

/// One report, as the plugin returned it, and where in the run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JournaledReport {
    /// Journal entry of the batch that returned it.
    pub seq: u64,
    /// The pass (`None`: `finish`).
    pub pass: Option<u32>,
    pub kind: String,
    pub key: String,
    pub message: String,
    /// An execute run's batch the journal does not show committed yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// Streams the reports of run `run`, of kind `kind` only if given.
pub fn stream<'a>(
    journal: &'a Journal,
    run: &str,
    kind: Option<&'a str>,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<JournaledReport>> + 'a> {
    let header = journal.header(run)?;
    let entries = journal
        .iter_entries(run)?
        .map(|e| -> anyhow::Result<Entry> { Ok(e?.0) });
    Ok(Reports {
        entries: Box::new(entries),
        execute: header.mode == RunMode::Execute,
        kind,
        ready: VecDeque::new(),
        pending: None,
        done: false,
    })
}

struct Reports<'a> {
    entries: Box<dyn Iterator<Item = anyhow::Result<Entry>> + 'a>,
    execute: bool,
    kind: Option<&'a str>,
    /// Reports of settled batches, not yet handed out.
    ready: VecDeque<JournaledReport>,
    /// An execute run's batch waiting for its `Committed` entry.
    pending: Option<(u64, Vec<JournaledReport>)>,
    done: bool,
}

impl Reports<'_> {
    /// The reports of one batch (of the kind asked for).
    fn of(&self, seq: u64, batch: &Batch) -> anyhow::Result<Vec<JournaledReport>> {
        let mut reports = Vec::new();
        for (i, raw) in batch.actions.iter().enumerate() {
            let action = Document::from_reader(raw.as_slice())
                .map_err(anyhow::Error::from)
                .and_then(|d| Ok(ValidAction::from_document(&d)?))
                .with_context(|| format!("journal entry {seq}, action {i}: not an action"))?;
            if let ValidAction::Report { kind, key, message } = action
                && self.kind.is_none_or(|k| k == kind)
            {
                reports.push(JournaledReport {
                    seq,
                    pass: batch.pass,
                    kind,
                    key,
                    message,
                    pending: false,
                });
            }
        }
        Ok(reports)
    }

    fn push(&mut self, entry: Entry) -> anyhow::Result<()> {
        match &entry.record {
            Record::Planned(batch) => self.ready.extend(self.of(entry.seq, batch)?),
            Record::Finish(batch) if !self.execute => self.ready.extend(self.of(entry.seq, batch)?),
            Record::Prepared(batch) | Record::Finish(batch) => {
                // A batch still pending here was never settled (as `RunLog` reads it).
                self.pending = Some((entry.seq, self.of(entry.seq, batch)?));
            }
            Record::Committed(commit) => {
                if let Some((_, reports)) = self.pending.take_if(|(seq, _)| *seq == commit.batch_seq) {
                    self.ready.extend(reports);
                }
            }
            // Refused by the write guard: nothing of it was written.
            Record::Conflict { batch_seq, .. } => {
                self.pending.take_if(|(seq, _)| seq == batch_seq);
            }
            _ => {}
        }
        Ok(())
    }
}

impl Iterator for Reports<'_> {
    type Item = anyhow::Result<JournaledReport>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(report) = self.ready.pop_front() {
                return Some(Ok(report));
            }
            if self.done {
                return None;
            }
            match self.entries.next() {
                Some(Ok(entry)) => {
                    if let Err(e) = self.push(entry) {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    if let Some((_, reports)) = self.pending.take() {
                        self.ready
                            .extend(reports.into_iter().map(|r| JournaledReport { pending: true, ..r }));
                    }
                }
            }
        }
    }
}
