//! `godwit revert`: puts back every document an execute run wrote, from the
//! before-images in its journal, as a journaled run of its own, and sets the
//! schema version back to the one before the run.
//!
//! Per document the run touched, the plan compares the document as it is now
//! with the run's first before-image and last after-image:
//! - as before the run: nothing to do (already reverted, or never changed);
//! - as the run left it: restore the before-image (or delete it, if the run
//!   inserted it);
//! - anything else: changed since the run - left alone and reported, unless
//!   `--force`.
//!
//! The writes go through the same batch protocol as a run (journaled before,
//! applied with the progress marker in a transaction), and inside each
//! transaction every document is checked again against what the plan saw, so
//! a concurrent change aborts the batch instead of being overwritten.
//! Restoring a before-image is idempotent, so an interrupted revert is simply
//! run again: what it already restored counts as "as before the run".

use super::batch::{BatchRecord, Origin};
use super::commit::{ActiveRun, PreparedBatch};
use super::now_ms;
use crate::db::{Db, Expectations, HistoryEntry, LockHolder, RevertCounts, id_key};
use crate::hash::{Sha256Hash, sha256, to_hex};
use crate::journal::{Call, CommitImages, Entry, Journal, Record, RunHeader, RunMode, RunStatus, SchemaPhase};
use crate::plugin::actions::ValidAction;
use anyhow::Context;
use bson::{Bson, Document, doc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Plugin name recorded in the header and history of a revert run.
pub const REVERT_PLUGIN: &str = "godwit-revert";

/// Conflicts listed in the report (all are counted).
const MAX_LISTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    #[error("cannot revert run {run}: it was a dry run, it wrote nothing")]
    DryRun { run: String },
    #[error("cannot revert run {run}: it is {status}; finish it (resume) or abandon it first")]
    NotFinished { run: String, status: String },
    #[error("cannot revert run {run}: it ran with --no-before-images, so the journal has no before-images")]
    NoImages { run: String },
    #[error("cannot revert run {run}: it ran on database {journaled}, not {found}")]
    OtherDatabase {
        run: String,
        journaled: String,
        found: String,
    },
    #[error(
        "cannot revert run {run} ({plugin} {version}): run {later} ({later_plugin} {later_version}) was stamped after \
         it; revert that one first, or pass --force"
    )]
    NotLatest {
        run: String,
        plugin: String,
        version: String,
        later: String,
        later_plugin: String,
        later_version: String,
    },
    /// A partition's run alone, or a fleet run whose partitions' runs are
    /// not all in this journal (`why` says which, and what to do).
    #[error("cannot revert run {run}: {why}")]
    Fleet { run: String, why: String },
    /// Ctrl-C / SIGTERM between batches: exit 130, like an interrupted run.
    #[error("revert of run {run} stopped by the operator; what it restored stays restored - run it again to finish")]
    Stopped { run: String },
}

pub struct RevertRequest {
    pub run: String,
    pub mode: RunMode,
    /// Overwrite documents changed since the run; revert a run that is not
    /// the latest in the database's history.
    pub force: bool,
    pub batch_size: usize,
    pub lease: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub collection: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RevertReport {
    /// The revert's own run (execute only).
    pub run_id: Option<String>,
    pub reverts: String,
    pub plugin: String,
    pub version: String,
    pub execute: bool,
    /// Documents the run wrote.
    pub documents: u64,
    /// Updated or deleted by the run: put back from the before-image.
    pub restore: u64,
    /// Inserted by the run: deleted.
    pub remove: u64,
    /// Already as before the run.
    pub unchanged: u64,
    /// Changed since the run: left as they are (or overwritten with --force).
    pub conflicts: u64,
    pub conflicts_listed: Vec<Conflict>,
    pub forced: bool,
    /// Schema version after the revert; `None` inside: no version.
    pub version_after: Option<Option<String>>,
    /// Why the version was not set back, if it was not.
    pub version_note: Option<String>,
    /// The run's schema operations, last first: undone, or why not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema: Vec<super::schema::SchemaUndo>,
}

impl RevertReport {
    pub fn complete(&self) -> bool {
        self.forced || (self.conflicts == 0 && self.schema_left() == 0)
    }

    /// Schema operations the revert cannot undo.
    pub fn schema_left(&self) -> usize {
        self.schema.iter().filter(|s| !s.possible).count()
    }
}

/// What one document looked like to the run: first before-image, last after.
struct Touched {
    collection: String,
    key: Vec<u8>,
    before: Option<Vec<u8>>,
    after: Option<Sha256Hash>,
}

pub struct Revert<'a> {
    pub db: &'a Db,
    /// Other workers' journals of a fleet run (`--worker-journal`): read for
    /// the runs of its partitions they hold; nothing is written to them.
    pub workers: &'a [Journal],
    pub journal: &'a Journal,
    pub stop: &'a super::StopSignal,
}

impl Revert<'_> {
    pub async fn run(&self, request: &RevertRequest) -> anyhow::Result<RevertReport> {
        let target = self.check(request)?;
        let run = &target.run_id;
        // The chain must be intact: a tampered before-image must not be written back.
        let chain = self.journal.verify(run)?;
        let (history_note, version_after, stamp_note) = self.versions(&target, request.force).await?;

        let mut report = RevertReport {
            reverts: run.clone(),
            plugin: target.plugin_name.clone(),
            version: target.plugin_version.clone(),
            execute: request.mode == RunMode::Execute,
            forced: request.force,
            version_note: stamp_note.clone(),
            ..RevertReport::default()
        };

        // The runs whose commits wrote the documents: the run itself and,
        // for a fleet run, every run of its partitions (this journal must
        // hold them all).
        let (runs, last_commits) = self.runs_of(&target).await?;
        for (journal, part) in runs.iter().skip(1) {
            journal.verify(part)?;
        }
        // Each document's first commit (whose before-image is restored) and
        // last after-image, over every run, in the order they were written.
        let mut first: HashMap<(String, Vec<u8>), Written> = HashMap::new();
        for (index, (journal, part)) in runs.iter().enumerate() {
            let mut commit_images = CommitImages::settled(last_commits.get(part));
            for item in journal.iter_entries(part)? {
                let (entry, hash) = item?;
                let at = Position::of(&entry, index);
                for image in commit_images.of(entry, &hash) {
                    first
                        .entry((image.collection.clone(), image.id.clone()))
                        .and_modify(|w| w.add(at, image.after_hash))
                        .or_insert(Written {
                            first: at,
                            last: at,
                            after: image.after_hash,
                        });
                }
            }
        }
        report.documents = first.len() as u64;

        let mut header = None;
        let mut active = None;
        if report.execute {
            self.abandon_earlier(run).await?;
            let h = self.open_run(&target, &chain, request)?;
            let holder = LockHolder {
                run_id: h.run_id.clone(),
                plugin: REVERT_PLUGIN.into(),
                host: gethostname::gethostname().to_string_lossy().into_owned(),
                pid: i64::from(std::process::id()),
            };
            // The reverted run is finished: a lock it still holds is stale.
            active = Some(
                ActiveRun::start(
                    self.db,
                    self.journal,
                    holder,
                    request.lease,
                    std::slice::from_ref(run),
                    Vec::new(),
                    true,
                )
                .await?,
            );
            report.run_id = Some(h.run_id.clone());
            header = Some(h);
        }

        let result = async {
            // What `finish` changed in the schema is undone first, what
            // `begin` changed last: the documents are restored in between,
            // into the collections and under the indexes they were written with.
            let revert_run = header.as_ref().map(|h| h.run_id.clone());
            self.undo_schema(run, revert_run.as_deref(), SchemaPhase::Finish, &mut report)
                .await?;
            let mut pending = Vec::new();
            // Newest run first (a fleet run's `finish` batch, then its
            // partitions' runs, last started first); each document once,
            // back to how it was before the first commit that wrote it.
            for (index, (journal, part)) in runs.iter().enumerate().rev() {
                let mut commit_images = CommitImages::settled(last_commits.get(part));
                for item in journal.iter_entries(part)? {
                    let (entry, hash) = item?;
                    let at = Position::of(&entry, index);
                    for image in commit_images.of(entry, &hash) {
                        let key = (image.collection, image.id);
                        if first.get(&key).map(|w| w.first) != Some(at) {
                            continue;
                        }
                        let written = first.remove(&key).expect("present");
                        pending.push(Touched {
                            collection: key.0,
                            key: key.1,
                            before: image.before,
                            after: written.after,
                        });
                        if pending.len() >= request.batch_size {
                            self.batch(std::mem::take(&mut pending), request, active.as_mut(), &mut report)
                                .await?;
                            if self.stop.requested() {
                                return Err(RevertError::Stopped { run: run.clone() }.into());
                            }
                        }
                    }
                }
            }
            self.batch(pending, request, active.as_mut(), &mut report).await?;
            self.undo_schema(run, revert_run.as_deref(), SchemaPhase::Begin, &mut report)
                .await?;
            if let Some(h) = header.as_mut() {
                if report.complete() && stamp_note.is_none() {
                    self.stamp(h, &target, version_after.clone(), history_note.as_deref(), &report)
                        .await?;
                    report.version_after = Some(version_after.clone());
                } else if !report.complete() && report.schema_left() > 0 {
                    report.version_note = Some(format!(
                        "{} schema operations of the run cannot be undone (see above); the version stays (--force \
                         sets it back anyway)",
                        report.schema_left()
                    ));
                } else if !report.complete() {
                    report.version_note = Some(format!(
                        "{} documents changed since the run were left as they are; the version stays until the revert \
                         is complete (--force overwrites them)",
                        report.conflicts
                    ));
                }
                self.db.delete_marker(&h.run_id).await?;
                self.journal.finish_run(h, now_ms())?;
            } else if report.complete() && stamp_note.is_none() {
                report.version_after = Some(version_after.clone());
            }
            anyhow::Ok(())
        }
        .await;
        // Every exit path frees the database at once.
        if let Some(active) = active {
            active.close().await;
        }
        result?;
        Ok(report)
    }

    /// Undoes the schema operations `phase` of the run applied, last first.
    /// An execute journals each in the revert's own run (`revert_run`)
    /// before and after it is undone; undoing is idempotent, so a revert
    /// killed midway is run again.
    async fn undo_schema(
        &self,
        run: &str,
        revert_run: Option<&str>,
        phase: SchemaPhase,
        report: &mut RevertReport,
    ) -> anyhow::Result<()> {
        for intent in super::schema::undo_list(self.journal, run, phase)? {
            let prepared = match revert_run {
                Some(revert_run) => {
                    let record = Record::SchemaPrepared(crate::journal::SchemaIntent {
                        phase: SchemaPhase::Revert,
                        index: report.schema.len() as u32,
                        op: intent.op.clone(),
                        undo: crate::journal::Undo::Nothing {
                            why: format!("undoes a {} operation of run {run}", phase.name()),
                        },
                    });
                    Some(self.journal.record(revert_run, Entry::new(record, now_ms()))?.seq)
                }
                None => None,
            };
            let undone = super::schema::undo(self.db, &intent, report.execute)
                .await
                .with_context(|| format!("revert of run {run}: undoing a schema operation"))?;
            if let (Some(revert_run), Some(intent_seq)) = (revert_run, prepared) {
                let record = Record::SchemaApplied {
                    intent_seq,
                    note: undone.outcome.clone(),
                };
                self.journal.record(revert_run, Entry::new(record, now_ms()))?;
            }
            report.schema.push(undone);
        }
        Ok(())
    }

    /// The run to revert, if it can be.
    fn check(&self, request: &RevertRequest) -> anyhow::Result<RunHeader> {
        let target = self.journal.header(&request.run)?;
        let run = request.run.clone();
        if target.mode != RunMode::Execute {
            return Err(RevertError::DryRun { run }.into());
        }
        if target.status != RunStatus::Finished {
            return Err(RevertError::NotFinished {
                run,
                status: format!("{:?}", target.status).to_lowercase(),
            }
            .into());
        }
        if !target.before_images {
            return Err(RevertError::NoImages { run }.into());
        }
        if let Some(part) = &target.partition {
            let why = format!(
                "it is one partition of fleet run {0} (--workers); revert the fleet run as a whole: godwit revert {0}",
                part.fleet_run
            );
            return Err(RevertError::Fleet { run, why }.into());
        }
        if target.database != self.db.name {
            return Err(RevertError::OtherDatabase {
                run,
                journaled: target.database.clone(),
                found: self.db.name.clone(),
            }
            .into());
        }
        Ok(target)
    }

    /// The runs whose commits wrote `target`'s documents, each with the
    /// journal holding it: `target` itself, then, for a fleet run
    /// (`--workers`), every run of its partitions in this journal and the
    /// workers' journals given, oldest first - several for a partition taken
    /// over. Refused unless these journals hold every run that wrote a
    /// partition: each partition the fleet run split its passes into
    /// (`Record::Partitions`) has a finished run in one of them, every
    /// journal the work table names is among them (while it is there), and
    /// the documents these runs committed add up to those the fleet run
    /// counted over every worker (its history entry).
    async fn runs_of(&self, target: &RunHeader) -> anyhow::Result<(Vec<(&Journal, String)>, LastCommits)> {
        let run = &target.run_id;
        let mut split: BTreeMap<u32, u32> = BTreeMap::new();
        // Which runs wrote each partition, and where their journals were,
        // as the fleet run journaled them (the work table goes with the stamp).
        let mut writers: Vec<String> = Vec::new();
        let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut last_commits = LastCommits::new();
        for item in self.journal.iter_entries(run)? {
            match item?.0.record {
                Record::Partitions { pass, bounds } => {
                    split.insert(pass, bounds.len() as u32 + 1);
                }
                Record::PartitionsDone { partitions, .. } => {
                    for p in partitions {
                        writers.extend(p.runs);
                        last_commits.extend(p.last_commits.into_iter().map(|l| (l.run.clone(), l)));
                        where_journals_are(&mut holders, &p.holders);
                    }
                }
                _ => {}
            }
        }
        let mut parts: Vec<(&Journal, RunHeader)> = Vec::new();
        let mut ours = BTreeSet::new();
        for journal in std::iter::once(self.journal).chain(self.workers) {
            ours.insert(journal_suffix(&journal.id()?));
            for h in journal.runs()? {
                if h.partition.as_ref().is_some_and(|p| p.fleet_run == *run) {
                    parts.push((journal, h));
                }
            }
        }
        // Run ids begin with their start time: oldest first over every journal.
        parts.sort_by(|a, b| a.1.run_id.cmp(&b.1.run_id));
        let mut runs = vec![(self.journal, run.clone())];
        if split.is_empty() && parts.is_empty() {
            return Ok((runs, last_commits));
        }
        let here = match self.workers.len() {
            0 => "this journal",
            _ => "these journals",
        };
        // Partitions with no finished run here, and other journals that wrote.
        let mut missing = Vec::new();
        let mut others: BTreeSet<String> = BTreeSet::new();
        for (&pass, &count) in &split {
            for index in 0..count {
                let finished = parts.iter().any(|(_, h)| {
                    h.status == RunStatus::Finished
                        && h.partition.as_ref().is_some_and(|p| p.pass == pass && p.index == index)
                });
                if !finished {
                    missing.push(format!("{pass}.{index}"));
                }
            }
        }
        for state in self.db.partitions(run).await? {
            writers.extend(state.partition.runs);
            last_commits.extend(state.partition.last_commits.into_iter().map(|l| (l.run.clone(), l)));
            where_journals_are(&mut holders, &state.partition.holders);
        }
        for writer in &writers {
            if let Some(journal) = writer.rsplit_once('@').map(|(_, j)| journal_suffix(j))
                && !ours.contains(&journal)
            {
                others.insert(journal);
            }
        }
        runs.extend(parts.into_iter().map(|(journal, h)| (journal, h.run_id)));
        let mut why = Vec::new();
        if !missing.is_empty() {
            why.push(format!(
                "partitions {} have no finished run in {here}",
                missing.join(", ")
            ));
        }
        if !others.is_empty() {
            let list: Vec<String> = others
                .iter()
                .map(|j| match holders.get(j) {
                    Some(where_) => where_.iter().cloned().collect::<Vec<_>>().join(", "),
                    None => format!("journal id ...{j}"),
                })
                .collect();
            why.push(format!("runs of other journals wrote partitions: {}", list.join("; ")));
        }
        if why.is_empty()
            && let Some(counted) = self.fleet_documents(run).await?
        {
            let committed = self.committed_documents(&runs, &last_commits)?;
            if committed < counted {
                why.push(format!(
                    "its workers processed {counted} documents, the runs in {here} {committed} (the others by \
                     workers with another journal)"
                ));
            }
        }
        if why.is_empty() {
            return Ok((runs, last_commits));
        }
        let why = format!(
            "it ran with --workers and {}: their before-images are in the journals of those workers (`godwit worker` \
             with another --journal, or on another machine) - collect each worker's journal directory and pass it \
             with --worker-journal DIR (once per worker), or put the documents back from a backup taken before the \
             run, or run a migration that undoes it",
            why.join("; ")
        );
        Err(RevertError::Fleet { run: run.clone(), why }.into())
    }

    /// The documents fleet run `run`'s passes processed, as its workers'
    /// batches counted them (over every journal), from its history entry.
    async fn fleet_documents(&self, run: &str) -> anyhow::Result<Option<u64>> {
        Ok(self.db.history_entry(run).await?.and_then(|h| {
            h.raw
                .get_document("counts")
                .ok()
                .and_then(|c| c.get_i64("documents").ok())
                .map(|d| d as u64)
        }))
    }

    /// Documents of pass batches the runs `runs` committed (journaled).
    fn committed_documents(&self, runs: &[(&Journal, String)], last_commits: &LastCommits) -> anyhow::Result<u64> {
        let mut total = 0;
        for (journal, run) in runs {
            let mut batches: HashMap<u64, u64> = HashMap::new();
            // The last commit its marker named, when its images are here.
            let settled = last_commits
                .get(run)
                .and_then(|l| l.images.map(|images| (l.batch_seq, images)));
            for item in journal.iter_entries(run)? {
                let (entry, hash) = item?;
                match &entry.record {
                    Record::Prepared(batch) if batch.pass.is_some() => {
                        batches.insert(entry.seq, batch.counts.documents);
                    }
                    Record::Committed(commit) => total += batches.remove(&commit.batch_seq).unwrap_or(0),
                    Record::Images { batch_seq, .. }
                        if settled.is_some_and(|(seq, images)| seq == *batch_seq && images == (entry.seq, hash)) =>
                    {
                        total += batches.remove(batch_seq).unwrap_or(0);
                    }
                    _ => {}
                }
            }
        }
        Ok(total)
    }

    /// The version to go back to (the one before the run's history entry),
    /// a note for the history, and why the version stays, if it does.
    async fn versions(
        &self,
        target: &RunHeader,
        force: bool,
    ) -> anyhow::Result<(Option<String>, Option<String>, Option<String>)> {
        let run = &target.run_id;
        let history = self.db.history().await?;
        let Some(index) = history.iter().position(|h| h.run_id.as_deref() == Some(run)) else {
            return Ok((
                None,
                None,
                Some(format!(
                    "run {run} is not in the database's history (it was never stamped); the version is left as it is"
                )),
            ));
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        let later = &history[index + 1..];
        if let Some(done) = later.iter().find(|h| h.reverts.as_deref() == Some(run)) {
            return Ok((
                None,
                None,
                Some(format!(
                    "run {run} was already reverted by run {} (version set back then); the version is left as it is",
                    text(&done.run_id)
                )),
            ));
        }
        if let Some(later) = later.last()
            && !force
        {
            return Err(RevertError::NotLatest {
                run: run.clone(),
                plugin: target.plugin_name.clone(),
                version: target.plugin_version.clone(),
                later: text(&later.run_id),
                later_plugin: text(&later.plugin),
                later_version: text(&later.version),
            }
            .into());
        }
        // Before any document is put back: an application that stamped its
        // adopted version record after this run would have its version
        // overwritten by the revert's stamp.
        self.db.check_record_revert(run).await?;
        let previous = index.checked_sub(1).and_then(|i| history[i].version.clone());
        Ok((
            Some(format!(
                "reverts run {run} ({} {})",
                target.plugin_name, target.plugin_version
            )),
            previous,
            None,
        ))
    }

    /// Marks unfinished reverts of the same run abandoned and ends their
    /// server sessions (a killed revert may have left a transaction open).
    async fn abandon_earlier(&self, run: &str) -> anyhow::Result<()> {
        for mut h in self.journal.runs()? {
            if h.reverts.as_deref() != Some(run) || h.status != RunStatus::Running {
                continue;
            }
            let sessions: Vec<Document> = self
                .journal
                .iter_entries(&h.run_id)?
                .filter_map(|e| e.ok())
                .filter_map(|(e, _)| match e.record {
                    Record::Session { lsid } => Some(lsid),
                    _ => None,
                })
                .filter_map(|b| Document::from_reader(b.as_slice()).ok())
                .collect();
            if let Err(e) = self.db.kill_sessions(sessions).await {
                tracing::warn!("revert {}: {e}", h.run_id);
            }
            tracing::info!(
                "earlier revert {} of run {run} was interrupted; this revert takes over",
                h.run_id
            );
            h.status = RunStatus::Abandoned;
            self.journal.put_header(&h)?;
        }
        Ok(())
    }

    fn open_run(
        &self,
        target: &RunHeader,
        chain: &crate::journal::VerifiedChain,
        request: &RevertRequest,
    ) -> anyhow::Result<RunHeader> {
        let params = vec![
            ("force".to_string(), request.force.to_string()),
            ("run".to_string(), target.run_id.clone()),
        ];
        let header = RunHeader {
            format: crate::journal::FORMAT_VERSION,
            run_id: bson::oid::ObjectId::new().to_hex(),
            plugin_name: REVERT_PLUGIN.into(),
            plugin_version: env!("CARGO_PKG_VERSION").into(),
            plugin_sha256: target.plugin_sha256.clone(),
            plugin_file: format!("revert of run {}", target.run_id),
            params_hash: to_hex(&sha256(&super::params_document(&params).to_vec()?)),
            params,
            database: self.db.name.clone(),
            uri: self.db.uri.clone(),
            metadata_collection: self.db.metadata.clone(),
            mode: RunMode::Execute,
            host_version: env!("CARGO_PKG_VERSION").into(),
            wasmtime_version: crate::WASMTIME_VERSION.into(),
            started_at_ms: now_ms(),
            status: RunStatus::Running,
            finished_at_ms: None,
            final_entries: None,
            final_head: None,
            before_images: true,
            reverts: Some(target.run_id.clone()),
            partition: None,
        };
        self.journal.put_header(&header)?;
        let note = format!(
            "revert of run {} ({} {}), its journal head {} ({} entries)",
            target.run_id,
            target.plugin_name,
            target.plugin_version,
            to_hex(&chain.head()),
            chain.entries()
        );
        let begin = Call {
            note,
            ..Call::default()
        };
        self.journal
            .record(&header.run_id, Entry::new(Record::Begin(begin), now_ms()))?;
        Ok(header)
    }

    /// Classifies a batch of touched documents by their current state and,
    /// when executing, writes the restores.
    async fn batch(
        &self,
        touched: Vec<Touched>,
        request: &RevertRequest,
        active: Option<&mut ActiveRun>,
        report: &mut RevertReport,
    ) -> anyhow::Result<()> {
        if touched.is_empty() {
            return Ok(());
        }
        let current = self.current(&touched).await?;
        let (actions, expect) = classify(touched, &current, request.force, report)?;
        let Some(active) = active else { return Ok(()) };
        if actions.is_empty() {
            return Ok(());
        }
        let run = active.run().to_string();
        let record = BatchRecord::build(Origin::Revert, Vec::new(), actions, 0, Vec::new());
        let prepared = PreparedBatch::prepare(self.journal, &run, record)?;
        let committed = active
            .apply(self.journal, &prepared, Some(&expect))
            .await
            .with_context(|| format!("revert {run} of run {}, batch {}", request.run, prepared.seq()))?;
        // Not flushed on its own, like a run's: the next batch's `prepare`
        // or the revert's end makes it durable, and a revert run again
        // re-reads every document's state anyway.
        active.committed(self.journal, committed, "")?;
        Ok(())
    }

    /// sha256 of each touched document as it is now (absent: not in the map).
    async fn current(&self, touched: &[Touched]) -> anyhow::Result<HashMap<(String, Vec<u8>), Sha256Hash>> {
        let mut by_collection: Vec<(&str, Vec<Bson>)> = Vec::new();
        for t in touched {
            let id = Document::from_reader(t.key.as_slice())?
                .remove("_id")
                .context("a before-image key without _id")?;
            match by_collection.iter_mut().find(|(c, _)| *c == t.collection) {
                Some((_, ids)) => ids.push(id),
                None => by_collection.push((&t.collection, vec![id])),
            }
        }
        let mut current = HashMap::new();
        for (collection, ids) in by_collection {
            let docs = self
                .db
                .find_raw(collection, doc! {"_id": {"$in": ids}}, None, "documents to revert")
                .await?;
            for d in docs {
                if let Some(id) = d.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok()) {
                    current.insert((collection.to_string(), id_key(&id)), sha256(d.as_bytes()));
                }
            }
        }
        Ok(current)
    }

    async fn stamp(
        &self,
        header: &RunHeader,
        target: &RunHeader,
        version: Option<String>,
        note: Option<&str>,
        report: &RevertReport,
    ) -> anyhow::Result<()> {
        let run = &header.run_id;
        let chain = self.journal.verify(run)?;
        let history = HistoryEntry::Revert {
            run_id: run.clone(),
            plugin: REVERT_PLUGIN.into(),
            version: version.clone(),
            reverts: target.run_id.clone(),
            note: note.map(str::to_string),
            journal_head: to_hex(&chain.head()),
            journal_entries: chain.entries(),
            counts: RevertCounts {
                documents: report.documents,
                updates: report.restore,
                deletes: report.remove,
                conflicts: report.conflicts,
            },
            forced: report.forced,
            started_at_ms: header.started_at_ms,
            host_version: header.host_version.clone(),
        };
        let previous = self.db.current_version().await?;
        self.db.stamp(&history, previous.as_deref()).await?;
        let note = format!(
            "version {} (journal head before stamp {})",
            version.as_deref().unwrap_or("none"),
            to_hex(&chain.head())
        );
        self.journal.record(run, Entry::new(Record::Stamp { note }, now_ms()))?;
        Ok(())
    }
}

/// The last 12 characters of a journal id: what names a partition's run
/// (`<run>.<pass>.<k>@<journal>`, `.<token>` after it for a later run).
/// Each partition run's last commit as its progress marker said, by run.
type LastCommits = HashMap<String, crate::journal::LastCommit>;

/// Adds where each of `found`'s journals is to `holders` (by journal suffix).
fn where_journals_are(holders: &mut BTreeMap<String, BTreeSet<String>>, found: &[crate::journal::PartitionHolder]) {
    for h in found {
        holders
            .entry(journal_suffix(&h.journal))
            .or_default()
            .insert(h.describe());
    }
}

fn journal_suffix(id: &str) -> String {
    let id = id.split('.').next().unwrap_or(id);
    id[id.len().saturating_sub(12)..].to_string()
}

/// Where a commit stands among the commits of the runs reverted: by pass
/// (`finish`'s batch after every pass), then time, then run and entry.
/// Partitions of a pass hold different documents, and the runs of one
/// partition write one after another, so a document's commits sort in the
/// order they were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    pass: u32,
    at_ms: i64,
    run: usize,
    seq: u64,
}

impl Position {
    fn of(entry: &Entry, run: usize) -> Position {
        Position {
            pass: entry.pass().unwrap_or(u32::MAX),
            at_ms: entry.at_ms,
            run,
            seq: entry.seq,
        }
    }
}

/// One document's first and last commits, and its last after-image.
struct Written {
    first: Position,
    last: Position,
    after: Option<Sha256Hash>,
}

impl Written {
    fn add(&mut self, at: Position, after: Option<Sha256Hash>) {
        if at > self.last {
            self.last = at;
            self.after = after;
        }
        self.first = self.first.min(at);
    }
}

/// Sorts each touched document by how it is now (`current`: sha256 by
/// collection and `{_id}` key; absent: not there) against the run's first
/// before-image and last after-image, counts it in `report`, and returns the
/// writes that put the documents back with what each is expected to be when
/// they are written (the transaction re-checks it). Pure.
fn classify(
    touched: Vec<Touched>,
    current: &HashMap<(String, Vec<u8>), Sha256Hash>,
    force: bool,
    report: &mut RevertReport,
) -> anyhow::Result<(Vec<ValidAction>, Expectations)> {
    let mut actions = Vec::new();
    let mut expect = Expectations::new();
    for t in touched {
        let id_doc = Document::from_reader(t.key.as_slice())?;
        let now = current.get(&(t.collection.clone(), t.key.clone())).copied();
        if now == t.before.as_deref().map(sha256) {
            report.unchanged += 1;
            continue;
        }
        if now != t.after {
            report.conflicts += 1;
            if report.conflicts_listed.len() < MAX_LISTED {
                report.conflicts_listed.push(Conflict {
                    collection: t.collection.clone(),
                    id: id_doc.get("_id").map(ToString::to_string).unwrap_or_default(),
                });
            }
            if !force {
                continue;
            }
        }
        expect.insert((t.collection.clone(), t.key.clone()), now);
        match t.before {
            Some(before) => {
                report.restore += 1;
                actions.push(ValidAction::Update {
                    collection: t.collection,
                    filter: id_doc,
                    update: Document::from_reader(before.as_slice())?,
                    upsert: true,
                    multi: false,
                });
            }
            None => {
                report.remove += 1;
                actions.push(ValidAction::Delete {
                    collection: t.collection,
                    filter: id_doc,
                    multi: false,
                });
            }
        }
    }
    Ok((actions, expect))
}

#[cfg(test)]
mod tests;
