//! Schema operations of a run (contract 0.2): the ones `begin` returned,
//! applied before the first pass, and the ones `finish` returned, applied
//! after finish's document actions.
//!
//! A phase is journaled as one `SchemaPlan` (the operations and what each
//! would affect; flushed before anything of the phase - or finish's batch -
//! is sent), then per operation a `SchemaPrepared` (with its undo, read
//! from the server just before; flushed) and, once the server is in the
//! state asked for, `SchemaApplied`. A resume takes the phase from the
//! journal, never from the plugin, and settles a prepared operation by
//! comparing it with the server (`Db::ensure`): an index build a kill
//! interrupted is asked for again, which finishes or restarts it; one that
//! completed is not sent again.
//!
//! A dry run and the first attempt of an execute check every operation of
//! the phase first (`Db::effect`) and refuse the whole phase, before
//! anything is sent, if the database would refuse one (a unique index over
//! duplicate keys: with samples).

use super::commit::Sink;
use super::report::Summary;
use super::{Engine, now_ms};
use crate::db::ddl::{Ensured, Undoing};
use crate::db::{Db, DbError};
use crate::journal::{Entry, Journal, Record, RunHeader, SchemaIntent, SchemaPhase, SchemaPlan, Undo};
use bson::Document;
use godwit_policy::SchemaOp;
use std::collections::{BTreeMap, BTreeSet};

/// One schema operation as the summary shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SchemaLine {
    pub phase: &'static str,
    pub op: String,
    /// What it would affect (dry run), or did when it was checked.
    pub effect: String,
    /// Execute: what was done ("applied", "already there", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The database, as it is, refuses an operation: nothing of the phase
    /// was sent.
    #[error("run {run}: plugin {plugin:?}, {op}: {why}; nothing of this step was sent to the database")]
    Blocked {
        run: String,
        plugin: String,
        op: String,
        why: String,
    },
    /// A resumed plugin's `begin`/`finish` returned other schema operations
    /// than the run journaled.
    #[error(
        "run {run}: plugin {plugin:?} returned {found} schema operations from {phase}, but the run journaled {journaled} \
         others; the plugin is not deterministic or its file changed - resume with the plugin file that started the run"
    )]
    Diverged {
        run: String,
        plugin: String,
        phase: &'static str,
        journaled: usize,
        found: usize,
    },
}

/// What a run's journal says about the schema operations of one phase.
#[derive(Debug, Default)]
pub struct Journaled {
    pub plan: Option<SchemaPlan>,
    /// The seq of the `SchemaPlan` entry.
    pub plan_seq: u64,
    /// Index in the plan -> (seq of its `SchemaPrepared`, the intent).
    pub intents: BTreeMap<u32, (u64, SchemaIntent)>,
    /// `SchemaPrepared` seqs that have their `SchemaApplied`.
    pub applied: BTreeSet<u64>,
}

impl Journaled {
    pub fn read(journal: &Journal, run: &str, phase: SchemaPhase) -> anyhow::Result<Journaled> {
        let mut found = Journaled::default();
        for item in journal.iter_entries(run)? {
            let (entry, _) = item?;
            match entry.record {
                Record::SchemaPlan(plan) if plan.phase == phase && found.plan.is_none() => {
                    found.plan = Some(plan);
                    found.plan_seq = entry.seq;
                }
                Record::SchemaPrepared(intent) if intent.phase == phase => {
                    found.intents.insert(intent.index, (entry.seq, intent));
                }
                Record::SchemaApplied { intent_seq, .. } => {
                    found.applied.insert(intent_seq);
                }
                _ => {}
            }
        }
        Ok(found)
    }
}

pub fn decode_op(bytes: &[u8]) -> anyhow::Result<SchemaOp> {
    let d = Document::from_reader(bytes)?;
    SchemaOp::from_document(&d).map_err(|e| anyhow::anyhow!("a journaled schema operation is unreadable: {e}"))
}

fn encode_op(op: &SchemaOp) -> Vec<u8> {
    op.to_document().to_vec().expect("schema operations encode")
}

fn undo_of(undoing: Undoing) -> Undo {
    match undoing {
        Undoing::Nothing(why) => Undo::Nothing { why },
        Undoing::Ops(ops) => Undo::Ops(ops.iter().map(encode_op).collect()),
        Undoing::Collection { ops, documents } => Undo::Collection {
            ops: ops.iter().map(encode_op).collect(),
            documents,
        },
        Undoing::Impossible(why) => Undo::Impossible { why },
    }
}

impl Engine<'_> {
    /// Journals the schema operations the plugin returned for `phase`
    /// (checked against the database first: a phase the database would
    /// refuse is refused whole), or, if the run journaled them already,
    /// checks that the plugin returned the same ones.
    /// `reviewed`: the dry run an execute is bound to (`--plan`): the
    /// operations must be the ones it showed.
    pub(super) async fn schema_plan(
        &self,
        phase: SchemaPhase,
        returned: Vec<SchemaOp>,
        header: &RunHeader,
        reviewed: Option<&str>,
    ) -> anyhow::Result<()> {
        let run = &header.run_id;
        let plugin = &self.plugin.manifest.name;
        if let Some(dry) = reviewed {
            let planned = Journaled::read(self.journal, dry, phase)?;
            let ops = match &planned.plan {
                Some(plan) => plan
                    .ops
                    .iter()
                    .map(|b| decode_op(b))
                    .collect::<anyhow::Result<Vec<_>>>()?,
                None => Vec::new(),
            };
            if ops != returned {
                return Err(super::plan::PlanError::Diverged {
                    at: format!("run {run}, {}'s schema operations", phase.name()),
                    plan: dry.to_string(),
                    planned_seq: planned.plan_seq,
                    detail: format!(
                        "{} schema operations now ({}), {} in the review",
                        returned.len(),
                        returned.iter().map(SchemaOp::describe).collect::<Vec<_>>().join("; "),
                        ops.len()
                    ),
                }
                .into());
            }
        }
        if let Some(plan) = Journaled::read(self.journal, run, phase)?.plan {
            let ops = plan
                .ops
                .iter()
                .map(|b| decode_op(b))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if returned != ops {
                return Err(SchemaError::Diverged {
                    run: run.clone(),
                    plugin: plugin.clone(),
                    phase: phase.name(),
                    journaled: ops.len(),
                    found: returned.len(),
                }
                .into());
            }
            return Ok(());
        }
        if returned.is_empty() {
            return Ok(());
        }
        let mut effects = Vec::with_capacity(returned.len());
        for op in &returned {
            let effect = self.db.effect(op).await?;
            if let Some(why) = effect.blocker {
                return Err(SchemaError::Blocked {
                    run: run.clone(),
                    plugin: plugin.clone(),
                    op: op.describe(),
                    why,
                }
                .into());
            }
            effects.push(effect.line);
        }
        let plan = SchemaPlan {
            phase,
            ops: returned.iter().map(encode_op).collect(),
            effects,
        };
        self.journal
            .record(run, Entry::new(Record::SchemaPlan(plan), now_ms()))?;
        Ok(())
    }

    /// Applies the journaled schema operations of `phase` (an execute), or
    /// only lists them in the summary (a dry run). Each operation applied
    /// before is skipped; one prepared but not known applied is settled
    /// against the server.
    pub(super) async fn schema_apply(
        &self,
        phase: SchemaPhase,
        sink: &Sink,
        header: &RunHeader,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let run = &header.run_id;
        let journaled = Journaled::read(self.journal, run, phase)?;
        let Some(plan) = &journaled.plan else {
            return Ok(());
        };
        let ops = plan
            .ops
            .iter()
            .map(|b| decode_op(b))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let effects = &plan.effects;
        let first = summary.schema.len();
        for (op, effect) in ops.iter().zip(effects.iter()) {
            summary.schema.push(SchemaLine {
                phase: phase.name(),
                op: op.describe(),
                effect: effect.clone(),
                outcome: None,
            });
        }
        let Sink::Execute(active) = sink else {
            return Ok(());
        };
        for (index, op) in ops.iter().enumerate() {
            active.check_lease()?;
            let at = || {
                format!(
                    "run {run}, plugin {:?}, {} schema operation {index} ({})",
                    self.plugin.manifest.name,
                    phase.name(),
                    op.describe()
                )
            };
            let outcome = match journaled.intents.get(&(index as u32)) {
                Some((seq, _)) if journaled.applied.contains(seq) => "applied earlier".to_string(),
                Some((seq, _)) => {
                    // Prepared, then interrupted: the server says how far it got.
                    let ensured = self
                        .db
                        .ensure(op)
                        .await
                        .map_err(|e| anyhow::Error::new(e).context(at()))?;
                    let note = match ensured {
                        Ensured::AlreadyThere => "settled on resume: the server had applied it",
                        Ensured::Sent => "settled on resume: sent again (it had not been applied, or not completed)",
                    };
                    self.journal.record(
                        run,
                        Entry::new(
                            Record::SchemaApplied {
                                intent_seq: *seq,
                                note: note.into(),
                            },
                            now_ms(),
                        ),
                    )?;
                    note.to_string()
                }
                None => {
                    let undo = undo_of(
                        self.db
                            .undoing(op, header.before_images)
                            .await
                            .map_err(|e| anyhow::Error::new(e).context(at()))?,
                    );
                    let intent = SchemaIntent {
                        phase,
                        index: index as u32,
                        op: encode_op(op),
                        undo,
                    };
                    let prepared = self
                        .journal
                        .record(run, Entry::new(Record::SchemaPrepared(intent), now_ms()))?;
                    failpoint!("schema-prepared");
                    let ensured = self
                        .db
                        .ensure(op)
                        .await
                        .map_err(|e| anyhow::Error::new(e).context(at()))?;
                    failpoint!("schema-sent");
                    let note = match ensured {
                        Ensured::AlreadyThere => "already there",
                        Ensured::Sent => "applied",
                    };
                    self.journal.record(
                        run,
                        Entry::new(
                            Record::SchemaApplied {
                                intent_seq: prepared.seq,
                                note: note.into(),
                            },
                            now_ms(),
                        ),
                    )?;
                    note.to_string()
                }
            };
            summary.schema[first + index].outcome = Some(outcome);
        }
        Ok(())
    }
}

/// What a revert did, or could not do, about one schema operation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SchemaUndo {
    pub op: String,
    /// "undone: ...", "would undo: ...", "nothing to undo: ...", "cannot undo: ...".
    pub outcome: String,
    /// Whether it can be (or was) undone; false: the revert says why not.
    pub possible: bool,
}

/// The schema operations of a run that a revert has to undo, in the order
/// it undoes them: `phase`'s, last first.
pub fn undo_list(journal: &Journal, run: &str, phase: SchemaPhase) -> anyhow::Result<Vec<SchemaIntent>> {
    let journaled = Journaled::read(journal, run, phase)?;
    // A prepared operation may have reached the server before a kill: its
    // undo is wanted as much as an applied one's (each undo checks the
    // server first).
    Ok(journaled
        .intents
        .into_values()
        .rev()
        .map(|(_, intent)| intent)
        .collect())
}

/// Undoes one journaled schema operation (`execute`) or says what undoing
/// it would do. Every step checks the server first, so a revert killed
/// midway is run again.
pub async fn undo(db: &Db, intent: &SchemaIntent, execute: bool) -> anyhow::Result<SchemaUndo> {
    let op = decode_op(&intent.op)?;
    let described = op.describe();
    let done = |outcome: String, possible: bool| SchemaUndo {
        op: described.clone(),
        outcome,
        possible,
    };
    let ops = match &intent.undo {
        Undo::Nothing { why } => return Ok(done(format!("nothing to undo: {why}"), true)),
        Undo::Impossible { why } => return Ok(done(format!("cannot undo: {why}"), false)),
        Undo::Ops(ops) | Undo::Collection { ops, .. } => {
            ops.iter().map(|b| decode_op(b)).collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    // A collection the run created is dropped only if empty: documents in
    // it now are not the run's (the run's own were removed by the
    // document restores before this step).
    // (A dry revert restores nothing, so it cannot tell yet.)
    if let (SchemaOp::CreateCollection { collection, .. }, [SchemaOp::DropCollection { .. }]) = (&op, ops.as_slice())
        && execute
    {
        let n = db.count_documents(collection).await?;
        if n > 0 {
            return Ok(done(
                format!(
                    "cannot undo: `{collection}` holds {n} documents the run did not write; drop it by hand if they \
                     are not needed"
                ),
                false,
            ));
        }
    }
    // A dropped collection comes back only where nothing took its name.
    if let (SchemaOp::DropCollection { collection }, Undo::Collection { documents, .. }) = (&op, &intent.undo) {
        let mut restored = 0;
        if execute {
            for step in &ops {
                db.ensure(step).await?;
            }
            restored = db.restore_documents(collection, documents).await?;
        }
        return Ok(done(
            format!(
                "{} `{collection}` with its indexes and {} documents ({restored} inserted now)",
                if execute { "re-created" } else { "would re-create" },
                documents.len()
            ),
            true,
        ));
    }
    let mut lines = Vec::new();
    for step in &ops {
        if execute {
            match db.ensure(step).await {
                Ok(Ensured::Sent) => lines.push(step.describe()),
                Ok(Ensured::AlreadyThere) => lines.push(format!("{} (already so)", step.describe())),
                Err(DbError::Schema { why, .. }) => {
                    return Ok(done(format!("cannot undo: {} refused: {why}", step.describe()), false));
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            lines.push(step.describe());
        }
    }
    Ok(done(
        format!(
            "{}: {}",
            if execute { "undone" } else { "would undo" },
            lines.join("; ")
        ),
        true,
    ))
}
