//! The run engine: streams each pass's documents from MongoDB through the
//! plugin in batches, validates the actions, journals them, applies them with
//! the progress marker (exactly once with transactions), resumes interrupted
//! runs, and stamps the schema version when an execute run finishes.
//!
//! Per batch, in execute mode:
//! 1. read the batch (`_id` order, after the checkpoint);
//! 2. `process` in the plugin; validate the actions;
//! 3. journal a `Prepared` entry (inputs, actions, hashes) and flush it;
//! 4. apply the actions and move the progress marker in one transaction;
//! 5. journal `Committed` (flushed with the next `Prepared`).
//!
//! A `Prepared` entry without `Committed` is settled on resume by the marker:
//! committed if the marker reached its sequence number, else re-applied from
//! the journaled actions (the plugin is not asked again).

pub mod lookup;
pub mod plan;
pub mod replay;
pub mod report;
pub mod revert;
mod errors;

pub use errors::{NothingToMigrate, ResumeError, VersionError};

use crate::db::reader::{PassReader, ReadAhead};
use crate::db::{BatchWrite, Db, DbError, Lock, LockHolder, WriteCounts};
use crate::hash::{sha256, to_hex};
use crate::journal::{Entry, EntryKind, Journal, RunHeader, RunMode, RunStatus, hash_documents};
use crate::plugin::actions::{self, ValidAction};
use crate::plugin::contract::{Mode, RunContext, ValidPass};
use crate::plugin::{InstanceOptions, LoadedPlugin, PluginInstance};
use anyhow::Context;
use bson::{Bson, Document, RawDocumentBuf, doc};
use lookup::{MongoLookup, Recorded, Replay};
use plan::Plan;
use report::{Summary, Touched};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Batch size when neither the command line nor the pass sets one.
pub const DEFAULT_BATCH_SIZE: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeChoice {
    /// Continue the unfinished run of this plugin on this database, if any.
    Auto,
    /// Continue this run.
    Run(String),
    /// Abandon any unfinished run of this plugin on this database; start anew.
    New,
}

pub struct RunRequest {
    pub mode: RunMode,
    /// `--param` pairs, sorted by key, keys unique.
    pub params: Vec<(String, String)>,
    pub batch_size: Option<u32>,
    pub resume: ResumeChoice,
    pub lease: Duration,
    /// Throttle for busy production databases: documents per second, at most.
    pub max_docs_per_sec: Option<u32>,
    pub verify: VerifyPolicy,
    /// While this file exists, the run pauses between batches.
    pub pause_file: Option<PathBuf>,
    /// Execute: journal before-images (what `godwit revert` restores).
    pub before_images: bool,
    /// Batches read ahead of the one in the plugin and the database (0: none).
    pub read_ahead: usize,
    /// Execute: the reviewed dry run this run is bound to (`--plan RUN`).
    pub plan: Option<String>,
    /// Stamp even if none of the passes' collections exists.
    pub allow_missing_collections: bool,
    /// Server time (`maxTimeMS`) a pass's query may take without returning a
    /// document: a pass filter is plugin input too.
    pub query_timeout: Duration,
}

/// Default of [`RunRequest::query_timeout`]: a healthy server answers a
/// batch in well under this, even when the filter scans a large unindexed
/// collection; a pathological filter (a catastrophic `$regex`) is stopped.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What an execute run checks before it stamps the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyPolicy {
    /// Re-run the passes dry; stamp only if they return no write action.
    Require,
    /// Verify and report, but stamp even with residue (recorded in history).
    AllowResidue,
    /// Stamp without verifying (for plugins that never converge; recorded).
    Skip,
}

/// Set by Ctrl-C / SIGTERM: stop after the current batch.
#[derive(Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub enum Outcome {
    Finished {
        header: RunHeader,
        summary: Summary,
        resumed: bool,
        stamped: Option<String>,
    },
    Interrupted {
        header: RunHeader,
        summary: Summary,
    },
    /// Applied, but verification found write actions left: not stamped.
    Unclean {
        header: RunHeader,
        summary: Summary,
        residue: Summary,
    },
}

pub struct Engine<'a> {
    pub plugin: &'a LoadedPlugin,
    pub db: &'a Db,
    pub journal: &'a Journal,
    pub stop: StopSignal,
    pub observer: &'a dyn Observer,
}

/// Told about progress as a run goes (the CLI draws progress bars with it).
pub trait Observer: Sync {
    /// Whether `pass_started` wants the pass's total (a `count_documents`).
    fn wants_totals(&self) -> bool {
        false
    }
    /// `remaining`: documents left to read (when wanted); `done`: read before a resume.
    fn pass_started(&self, _pass: u32, _name: &str, _remaining: Option<u64>, _done: u64) {}
    fn batch_done(&self, _pass: u32, _documents: u64) {}
    fn pass_finished(&self, _pass: u32) {}
    fn paused(&self, _paused: bool) {}
}

/// Observes nothing.
pub struct Quiet;

impl Observer for Quiet {}

fn now_ms() -> i64 {
    bson::DateTime::now().timestamp_millis()
}

fn mode_name(mode: RunMode) -> &'static str {
    match mode {
        RunMode::DryRun => "dry",
        RunMode::Execute => "execute",
    }
}

/// Who the plugin is told it runs as: the run id (from which its random
/// seed and the `_id`s godwit gives its inserts derive) and the start time
/// (its frozen clock). A run's own, except for an execute bound to a
/// reviewed dry run (`--plan`), which runs as that dry run so that a
/// deterministic plugin returns the reviewed actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub run_id: String,
    pub started_at_ms: i64,
}

impl Identity {
    pub fn of(header: &RunHeader) -> Self {
        Identity {
            run_id: header.run_id.clone(),
            started_at_ms: header.started_at_ms,
        }
    }

    /// The identity a journaled run's plugin had: its own, or that of the
    /// plan its `Begin` entry names.
    pub fn journaled(journal: &Journal, header: &RunHeader) -> anyhow::Result<Self> {
        for item in journal.iter_entries(&header.run_id)? {
            let (entry, _) = item?;
            // The first `Begin` (or the `Resume` of a run that crashed
            // before its `Begin`) carries the plan's note.
            if matches!(entry.kind, EntryKind::Begin | EntryKind::Resume) {
                if let Some(plan) = Plan::recorded(&entry.note) {
                    let planned = journal.header(plan)?;
                    return Ok(Identity {
                        run_id: planned.run_id,
                        started_at_ms: planned.started_at_ms,
                    });
                }
                break;
            }
        }
        Ok(Identity::of(header))
    }
}

/// The seed of a run's guest randomness: derived from the run id, so that a
/// resume and a replay see the same random numbers.
pub fn run_seed(run_id: &str) -> u64 {
    u64::from_le_bytes(sha256(run_id.as_bytes())[..8].try_into().expect("8 bytes"))
}

/// Seed of the `_id`s given to a batch's inserts that have none: the run,
/// the pass (`None`: finish) and the batch's inputs.
pub(crate) fn insert_id_seed(run: &str, pass: Option<u32>, inputs: &[Vec<u8>]) -> crate::hash::Sha256Hash {
    let pass = pass.map_or(u64::MAX, u64::from).to_le_bytes();
    crate::hash::sha256_parts([run.as_bytes(), &pass, &hash_documents(inputs)])
}

pub fn params_document(params: &[(String, String)]) -> Document {
    params
        .iter()
        .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
        .collect()
}

fn params_text(params: &[(String, String)]) -> String {
    if params.is_empty() {
        return "(none)".into();
    }
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The mutable state one `drive` works on.
struct DriveState<'a> {
    header: &'a mut RunHeader,
    progress: &'a mut Progress,
    summary: &'a mut Summary,
    lock: Option<&'a Lock>,
    session: &'a mut Option<mongodb::ClientSession>,
    lease_lost: &'a AtomicBool,
    resumed: bool,
    bound: &'a mut Bound,
}

/// Who the plugin runs as, and the reviewed dry run an execute is bound to.
pub struct Bound {
    pub identity: Identity,
    pub plan: Option<Plan>,
}

/// What the journal says about a run's progress.
#[derive(Default)]
struct Progress {
    done_passes: BTreeSet<u32>,
    /// Checkpoint (`_id` of the last applied document) per pass.
    checkpoints: std::collections::BTreeMap<u32, Bson>,
    /// A `Prepared`/`Finish` entry whose `Committed` is missing.
    pending: Option<Entry>,
    /// Sequence number of the last `Prepared`/`Finish` entry.
    last_batch: Option<u64>,
    finished: bool,
    stamped: bool,
}

impl Progress {
    /// Accounts for a `Prepared`/`Finish` entry whose commit is known.
    fn committed(&mut self, batch: &Entry, summary: &mut Summary) -> anyhow::Result<()> {
        if let (Some(p), Some(c)) = (batch.pass, checkpoint_of(batch)) {
            self.checkpoints.insert(p, c);
        }
        if batch.kind == EntryKind::Finish {
            self.finished = true;
        } else {
            summary.add(batch.pass, batch.counts.documents, &decode_actions(batch)?);
        }
        Ok(())
    }
}

/// Documents touched, from the server's counts: an update reply's `n`
/// includes the documents its upserts created.
fn touched_of(counts: WriteCounts) -> Touched {
    Touched {
        updated: counts.matched.saturating_sub(counts.upserted),
        inserted: counts.inserted + counts.upserted,
        deleted: counts.deleted,
    }
}

/// A `Committed` entry's counts are the documents its batch touched (a
/// `Prepared` entry's are its actions).
fn set_committed_touched(entry: &mut Entry, touched: Touched) {
    entry.counts.updates = touched.updated;
    entry.counts.inserts = touched.inserted;
    entry.counts.deletes = touched.deleted;
}

fn committed_touched(entry: &Entry) -> Touched {
    Touched {
        updated: entry.counts.updates,
        inserted: entry.counts.inserts,
        deleted: entry.counts.deletes,
    }
}

/// The `_id` of a raw document, for messages.
fn id_text(raw: &[u8]) -> String {
    RawDocumentBuf::from_bytes(raw.to_vec())
        .ok()
        .and_then(|d| d.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok()))
        .map_or_else(|| "?".into(), |id| id.to_string())
}

fn checkpoint_of(entry: &Entry) -> Option<Bson> {
    entry
        .checkpoint
        .as_ref()
        .and_then(|b| Document::from_reader(b.as_slice()).ok())
        .and_then(|d| d.get("_id").cloned())
}

fn decode_actions(entry: &Entry) -> anyhow::Result<Vec<ValidAction>> {
    entry
        .actions
        .iter()
        .map(|bytes| {
            let doc = Document::from_reader(bytes.as_slice())?;
            Ok(ValidAction::from_document(&doc)?)
        })
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("journal entry {}: actions do not decode", entry.seq))
}

impl Engine<'_> {
    pub async fn run(&self, request: &RunRequest) -> anyhow::Result<Outcome> {
        let manifest = self.plugin.manifest.clone();
        // The manifest was checked at load, before this run's metadata
        // collection was known: now no pass may read or write it.
        crate::plugin::contract::check_for_run(&manifest, &self.policy()).map_err(|e| {
            crate::plugin::LoadError::Manifest {
                file: self.plugin.file.clone(),
                reason: format!("plugin {:?}, {}", manifest.name, e.0),
            }
        })?;
        for pass in &manifest.passes {
            let requested = request.batch_size.unwrap_or(pass.batch_size);
            if godwit_policy::clamp_batch_size(requested).1 {
                tracing::warn!(
                    "pass {:?}: batch size {requested} lowered to {} (the most godwit reads at once)",
                    pass.name,
                    godwit_policy::MAX_BATCH_SIZE
                );
            }
        }
        // A plan that cannot bind is refused before a run is opened.
        let plan = match (&request.plan, request.mode) {
            (Some(plan), RunMode::Execute) => Some(Plan::load(
                self.journal,
                plan,
                &self.plugin.sha256_hex(),
                &request.params,
                &self.db.name,
            )?),
            _ => None,
        };
        let (mut header, resumed) = self.open_run(request)?;
        let run = header.run_id.clone();
        let execute = header.mode == RunMode::Execute;
        let mut bound = self.bind(&header, plan, resumed)?;
        if execute && !self.db.transactions {
            tracing::warn!(
                "database {} has no transactions (standalone server): batches are applied at least once, not exactly once; \
                 an interrupted batch may be applied again on resume",
                self.db.name
            );
        }

        // Replay the journal: progress and the summary so far.
        let mut summary = Summary::new(manifest.passes.iter().map(|p| (p.name.as_str(), p.collection.as_str())));
        let mut progress = Progress::default();
        let mut old_sessions = Vec::new();
        for item in self.journal.iter_entries(&run)? {
            let (entry, _) = item?;
            match entry.kind {
                EntryKind::Planned => {
                    if let (Some(p), Some(c)) = (entry.pass, checkpoint_of(&entry)) {
                        progress.checkpoints.insert(p, c);
                    }
                    let actions = decode_actions(&entry)?;
                    summary.add(entry.pass, entry.counts.documents, &actions);
                    summary.add_touched(entry.pass, self.dry_touched(&actions).await?);
                }
                EntryKind::Prepared | EntryKind::Finish => {
                    progress.last_batch = Some(entry.seq);
                    progress.pending = Some(entry);
                }
                EntryKind::Committed => {
                    if let Some(pending) = progress.pending.take_if(|p| Some(p.seq) == entry.batch_seq) {
                        progress.committed(&pending, &mut summary)?;
                        summary.add_touched(pending.pass, committed_touched(&entry));
                    }
                }
                EntryKind::PassDone => {
                    progress.done_passes.insert(entry.pass.unwrap_or(0));
                }
                EntryKind::Stamp => progress.stamped = true,
                EntryKind::Session => {
                    old_sessions.extend(entry.session.and_then(|b| Document::from_reader(b.as_slice()).ok()))
                }
                EntryKind::Begin | EntryKind::Resume | EntryKind::Verify => {}
            }
        }
        // In a dry run `Finish` is never committed: recorded is done.
        if !execute && progress.pending.as_ref().is_some_and(|p| p.kind == EntryKind::Finish) {
            progress.pending = None;
            progress.finished = true;
        }

        if execute {
            // Earlier processes of this run are dead: this process holds the
            // run's journal, which sled locks per process. End their sessions
            // first, so that a transaction one of them left open neither
            // blocks our writes (the lock document included) nor commits
            // behind our back.
            if let Err(e) = self.db.kill_sessions(old_sessions).await {
                tracing::warn!("run {run}: {e}");
            }
        }
        let lock = if execute {
            Some(self.take_lock(&header, request.lease).await?)
        } else {
            None
        };
        let mut session = None;
        if execute {
            // Whatever fails from here on, the lock taken above is released
            // below: a retry must not meet "locked" until the lease expires.
            let started = async {
                let session = self.db.session().await?;
                if let Some(s) = &session {
                    let mut entry = Entry::new(EntryKind::Session, now_ms());
                    entry.session = Some(s.id().to_vec()?);
                    self.journal.append(&run, entry)?;
                    self.journal.flush()?;
                }
                anyhow::Ok(session)
            }
            .await;
            match started {
                Ok(s) => session = s,
                Err(e) => {
                    if let Some(lock) = &lock {
                        self.release(&run, lock).await;
                    }
                    return Err(e);
                }
            }
        }
        let lease_lost = Arc::new(AtomicBool::new(false));
        let renewal = lock
            .as_ref()
            .map(|lock| self.spawn_renewal(lock.clone(), request.lease, lease_lost.clone()));
        let mut ctx = DriveState {
            header: &mut header,
            progress: &mut progress,
            summary: &mut summary,
            lock: lock.as_ref(),
            session: &mut session,
            lease_lost: &lease_lost,
            resumed,
            bound: &mut bound,
        };
        let result = self.drive(request, &mut ctx).await;
        if let Some(renewal) = renewal {
            renewal.abort();
        }
        if let Some(lock) = &lock {
            self.release(&run, lock).await;
        }
        result
    }

    /// A run that stopped (finished, interrupted or failed) frees the
    /// database at once rather than at lease expiry.
    async fn release(&self, run: &str, lock: &Lock) {
        if let Err(e) = self.db.release_lock(lock).await {
            tracing::warn!("run {run}: could not release the lock (it expires by itself): {e}");
        }
    }

    async fn drive(&self, request: &RunRequest, state: &mut DriveState<'_>) -> anyhow::Result<Outcome> {
        let DriveState {
            header,
            progress,
            summary,
            lock,
            session,
            lease_lost,
            resumed,
            bound,
        } = state;
        let (lock, lease_lost, resumed) = (*lock, *lease_lost, *resumed);
        if let Some(plan) = &bound.plan {
            summary.plan = Some(Box::new(plan.check().clone()));
        }
        let run = header.run_id.clone();
        let execute = header.mode == RunMode::Execute;
        let manifest = self.plugin.manifest.clone();

        // A stamp that reached the database just before a crash: the run is done.
        if execute && !progress.stamped && self.stamped_in_database(&run).await? {
            progress.stamped = true;
            progress.finished = true;
            progress.pending = None;
        }
        // The version the run's requirement was checked against: the stamp
        // replaces exactly this version, or refuses.
        let mut checked_version = None;
        if execute && !progress.stamped {
            checked_version = self.check_requires().await?;
        } else if !execute && let Err(e) = self.check_requires().await {
            tracing::warn!("{e:#}; this dry run goes on, but --execute would be refused");
        }

        if execute && let Some(marker) = self.db.marker(&run).await?.and_then(|m| m.get_i64("seq").ok()) {
            // Every batch is journaled (and flushed) before it is written, so
            // a marker beyond the journal means the journal lost its tail.
            if progress.last_batch.is_none_or(|last| (marker as u64) > last) {
                return Err(ResumeError::JournalBehind {
                    run: run.clone(),
                    marker: marker as u64,
                    journaled: progress.last_batch.map_or("none".into(), |l| l.to_string()),
                }
                .into());
            }
        }
        if let Some(pending) = progress.pending.take() {
            self.settle(header, pending, lock, session.as_mut(), summary, progress)
                .await?;
        }

        let recorded = Recorded::default();
        let mut instance: Option<PluginInstance> = None;
        let all_passes_done = progress.done_passes.len() == manifest.passes.len();
        if !(all_passes_done && progress.finished) {
            instance = Some(self.begin(header, bound, request, &recorded, resumed)?);
        }

        let mut throttle = request.max_docs_per_sec.map(Throttle::new);
        for (index, pass) in manifest.passes.iter().enumerate() {
            let index = index as u32;
            if progress.done_passes.contains(&index) {
                continue;
            }
            let batch_size = batch_size_for(request, pass);
            let label = format!("run {run}, pass {index} ({})", pass.name);
            // A pass over a collection the database does not have reads
            // nothing: said at once, and in the summary, never silently.
            if !self.db.collection_exists(&pass.collection).await? {
                summary.passes[index as usize].collection_missing = true;
                tracing::warn!(
                    "{label}: collection {} does not exist in database {}; the pass reads nothing",
                    pass.collection,
                    self.db.name
                );
            }
            let reader = PassReader::open(
                self.db,
                pass,
                progress.checkpoints.get(&index),
                batch_size,
                label.clone(),
                request.query_timeout,
            )
            .await?;
            let remaining = if self.observer.wants_totals() {
                match reader.remaining(self.db, pass, progress.checkpoints.get(&index)).await {
                    Ok(n) => Some(n),
                    // The total is only for the progress display.
                    Err(e) if crate::db::reader::is_max_time_expired(&e) => {
                        tracing::warn!("{label}: counting the pass's documents ran past --query-timeout; no total");
                        None
                    }
                    Err(e) => return Err(e).with_context(|| label.clone()),
                }
            } else {
                None
            };
            let mut reader = ReadAhead::new(reader, request.read_ahead);
            self.observer
                .pass_started(index, &pass.name, remaining, summary.passes[index as usize].documents);
            let allowed = actions::allowed(pass).with_policy(self.policy());
            let mut batch_no = summary.passes[index as usize].batches;
            loop {
                if self.stop.requested() {
                    return Ok(self.interrupted(header, summary));
                }
                if lease_lost.load(Ordering::SeqCst) {
                    return Err(DbError::LeaseLost {
                        db: self.db.name.clone(),
                        run_id: run.clone(),
                    }
                    .into());
                }
                self.wait_while_paused(request).await;
                if self.stop.requested() {
                    return Ok(self.interrupted(header, summary));
                }
                let batch = reader.next_batch().await?;
                failpoint!("batch-read");
                if batch.is_empty() {
                    self.observer.pass_finished(index);
                    let mut entry = Entry::new(EntryKind::PassDone, now_ms());
                    entry.pass = Some(index);
                    self.journal.append(&run, entry)?;
                    self.journal.flush()?;
                    progress.done_passes.insert(index);
                    break;
                }
                let last_id = RawDocumentBuf::from_bytes(batch.last().unwrap().clone())
                    .ok()
                    .and_then(|d| d.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok()))
                    .with_context(|| format!("run {run}, pass {index} ({}): a document has no _id", pass.name))?;
                let where_ = || {
                    format!(
                        "run {run}, pass {index} ({}), batch {batch_no} (documents up to _id {last_id})",
                        pass.name
                    )
                };
                let plugin = instance.as_mut().expect("instance exists while passes remain");
                let raw = tokio::task::block_in_place(|| plugin.process(index, &batch)).with_context(where_)?;
                failpoint!("plugin-called");
                let mut valid = actions::validate(&allowed, raw)
                    .with_context(|| format!("{}: plugin {} returned an invalid action", where_(), manifest.name))?;
                actions::assign_insert_ids(&mut valid, || {
                    insert_id_seed(&bound.identity.run_id, Some(index), &batch)
                });
                let mut entry = Entry::new(
                    if execute {
                        EntryKind::Prepared
                    } else {
                        EntryKind::Planned
                    },
                    now_ms(),
                );
                entry.pass = Some(index);
                entry.checkpoint = Some(doc! {"_id": last_id.clone()}.to_vec()?);
                entry.fuel = plugin.fuel_used();
                entry.lookups = recorded.drain();
                self.fill_batch(&mut entry, batch, &valid);
                if let Some(plan) = bound.plan.as_mut() {
                    let (inputs, actions) = (
                        entry.inputs_hash.unwrap_or_default(),
                        entry.actions_hash.unwrap_or_default(),
                    );
                    let first = entry.inputs.first().map(|d| id_text(d)).unwrap_or_default();
                    let at = format!(
                        "pass {index} ({}), batch {batch_no} (_id {first} to {last_id})",
                        pass.name
                    );
                    let checked = plan.check_batch(self.journal, index, &inputs, &actions, &entry.actions, &at);
                    summary.plan = Some(Box::new(plan.check().clone()));
                    checked.with_context(|| format!("run {run}"))?;
                }
                let documents = entry.counts.documents;
                let touched = self
                    .record_and_apply(
                        &run,
                        entry,
                        &valid,
                        Some(last_id.clone()),
                        lock,
                        session.as_mut(),
                        execute,
                        header.before_images,
                    )
                    .await
                    .with_context(where_)?;
                let touched = match touched {
                    Some(touched) => touched,
                    None => self.dry_touched(&valid).await.with_context(where_)?,
                };
                progress.checkpoints.insert(index, last_id);
                summary.add(Some(index), documents, &valid);
                summary.add_touched(Some(index), touched);
                if let Some(throttle) = throttle.as_mut() {
                    throttle.pace(documents, &self.stop).await;
                }
                self.observer.batch_done(index, documents);
                batch_no += 1;
                tracing::debug!(
                    "run {run}: pass {index} batch {batch_no}: {documents} documents, {} actions",
                    valid.len()
                );
            }
        }

        if !progress.finished {
            if self.stop.requested() {
                return Ok(self.interrupted(header, summary));
            }
            let plugin = instance.as_mut().expect("instance exists until finish");
            let raw = tokio::task::block_in_place(|| plugin.finish()).with_context(|| format!("run {run}: finish"))?;
            let scope = actions::finish_scope(&manifest).with_policy(self.policy());
            let mut valid = actions::validate(&scope, raw)
                .with_context(|| format!("run {run}, finish: plugin {} returned an invalid action", manifest.name))?;
            actions::assign_insert_ids(&mut valid, || insert_id_seed(&bound.identity.run_id, None, &[]));
            let mut entry = Entry::new(EntryKind::Finish, now_ms());
            entry.fuel = plugin.fuel_used();
            entry.lookups = recorded.drain();
            self.fill_batch(&mut entry, Vec::new(), &valid);
            if let Some(plan) = bound.plan.as_mut() {
                let actions = entry.actions_hash.unwrap_or_default();
                let checked = plan.check_finish(self.journal, &actions, &entry.actions, "finish");
                summary.plan = Some(Box::new(plan.check().clone()));
                checked.with_context(|| format!("run {run}"))?;
            }
            let touched = self
                .record_and_apply(
                    &run,
                    entry,
                    &valid,
                    None,
                    lock,
                    session.as_mut(),
                    execute,
                    header.before_images,
                )
                .await
                .with_context(|| format!("run {run}, finish"))?;
            summary.add(None, 0, &valid);
            let touched = match touched {
                Some(touched) => touched,
                None => self
                    .dry_touched(&valid)
                    .await
                    .with_context(|| format!("run {run}, finish"))?,
            };
            summary.add_touched(None, touched);
            if valid.is_empty() {
                summary.finish.batches -= 1;
            }
        }

        let mut stamped = None;
        if execute {
            if !progress.stamped {
                self.refuse_if_nothing_to_migrate(header, request).await?;
                let residue = match request.verify {
                    VerifyPolicy::Skip => None,
                    _ => match self.verify_clean(header, &bound.identity, request).await? {
                        Some(residue) => Some(residue),
                        None => return Ok(self.interrupted(header, summary)),
                    },
                };
                let residue_actions = residue.as_ref().map_or(0, Summary::write_actions);
                if let Some(residue) = &residue {
                    let mut entry = Entry::new(EntryKind::Verify, now_ms());
                    entry.counts.documents = residue.documents();
                    entry.counts.updates = residue_actions;
                    entry.note = format!("{residue_actions} write actions left after the run");
                    self.journal.append(&run, entry)?;
                    self.journal.flush()?;
                }
                if residue_actions > 0 && request.verify == VerifyPolicy::Require {
                    return Ok(Outcome::Unclean {
                        header: header.clone(),
                        summary: summary.clone(),
                        residue: residue.expect("verified"),
                    });
                }
                let verified = match (request.verify, residue_actions) {
                    (VerifyPolicy::Skip, _) => "skipped".to_string(),
                    (_, 0) => "clean".to_string(),
                    (_, n) => format!("residue of {n} write actions allowed (--allow-residue)"),
                };
                self.stamp(header, summary, &verified, checked_version.as_deref())
                    .await?;
            }
            stamped = Some(manifest.version.to_string());
            self.db.delete_marker(&run).await?;
        }
        self.journal.flush()?;
        let chain = self.journal.verify(&run)?;
        header.status = RunStatus::Finished;
        header.finished_at_ms = Some(now_ms());
        header.final_entries = Some(chain.entries());
        header.final_head = Some(to_hex(&chain.head()));
        self.journal.put_header(header)?;
        self.journal.flush()?;
        Ok(Outcome::Finished {
            header: header.clone(),
            summary: summary.clone(),
            resumed,
            stamped,
        })
    }

    /// Journals a batch (flushed before anything is written); in execute
    /// mode applies it with the progress marker, journals the commit and
    /// returns what the server said the writes touched.
    #[allow(clippy::too_many_arguments)]
    async fn record_and_apply(
        &self,
        run: &str,
        entry: Entry,
        valid: &[ValidAction],
        checkpoint: Option<Bson>,
        lock: Option<&Lock>,
        session: Option<&mut mongodb::ClientSession>,
        execute: bool,
        capture_images: bool,
    ) -> anyhow::Result<Option<Touched>> {
        let pass = entry.pass;
        let (entry, _) = self.journal.append(run, entry)?;
        failpoint!("prepared-before-flush");
        self.journal.flush()?;
        failpoint!("prepared-flushed");
        if execute {
            let write = BatchWrite {
                run_id: run,
                seq: entry.seq,
                pass,
                checkpoint,
                actions: valid,
                lock,
                capture_images,
                expect: None,
            };
            let applied = self.db.apply_batch(&write, session).await?;
            failpoint!("committed-before-journal");
            let mut committed = Entry::new(EntryKind::Committed, now_ms());
            committed.batch_seq = Some(entry.seq);
            committed.pass = pass;
            committed.images = applied.images;
            let touched = touched_of(applied.counts);
            set_committed_touched(&mut committed, touched);
            // Not flushed here: if it is lost, the progress marker settles the batch.
            self.journal.append(run, committed)?;
            return Ok(Some(touched));
        }
        Ok(None)
    }

    /// A migration that silently did nothing must not look like success: if
    /// none of the passes' collections exists (checked after the run, so a
    /// pass may read what an earlier one created), the version is not
    /// stamped unless the operator allows it.
    async fn refuse_if_nothing_to_migrate(&self, header: &RunHeader, request: &RunRequest) -> anyhow::Result<()> {
        let passes = &self.plugin.manifest.passes;
        if request.allow_missing_collections || passes.is_empty() {
            return Ok(());
        }
        for pass in passes {
            if self.db.collection_exists(&pass.collection).await? {
                return Ok(());
            }
        }
        let mut collections: Vec<&str> = passes.iter().map(|p| p.collection.as_str()).collect();
        collections.dedup();
        Err(NothingToMigrate {
            run: header.run_id.clone(),
            plugin: header.plugin_name.clone(),
            db: self.db.name.clone(),
            collections: collections.join(", "),
        }
        .into())
    }

    /// What a dry run reports `actions` would touch: their upper bound, with
    /// each unpinned `multi` update or delete counted in the database.
    async fn dry_touched(&self, actions: &[ValidAction]) -> anyhow::Result<Touched> {
        let (mut touched, unbounded) = Touched::bound(actions);
        for action in unbounded {
            match action {
                ValidAction::Update {
                    collection,
                    filter,
                    upsert,
                    ..
                } => {
                    let n = self.db.count_matching(collection, filter).await?;
                    touched.updated += n;
                    touched.inserted += u64::from(*upsert && n == 0);
                }
                ValidAction::Delete { collection, filter, .. } => {
                    touched.deleted += self.db.count_matching(collection, filter).await?;
                }
                ValidAction::Insert { .. } | ValidAction::Report { .. } => {}
            }
        }
        Ok(touched)
    }

    fn fill_batch(&self, entry: &mut Entry, inputs: Vec<Vec<u8>>, valid: &[ValidAction]) {
        let encoded: Vec<Vec<u8>> = valid
            .iter()
            .map(|a| a.to_document().to_vec().expect("validated actions encode"))
            .collect();
        entry.counts.documents = inputs.len() as u64;
        for action in valid {
            match action {
                ValidAction::Update { .. } => entry.counts.updates += 1,
                ValidAction::Insert { .. } => entry.counts.inserts += 1,
                ValidAction::Delete { .. } => entry.counts.deletes += 1,
                ValidAction::Report { .. } => entry.counts.reports += 1,
            }
        }
        entry.inputs_hash = Some(hash_documents(&inputs));
        entry.actions_hash = Some(hash_documents(&encoded));
        entry.inputs = inputs;
        entry.actions = encoded;
    }

    fn interrupted(&self, header: &RunHeader, summary: &Summary) -> Outcome {
        // Everything journaled so far is durable; the header stays `Running`.
        Outcome::Interrupted {
            header: header.clone(),
            summary: summary.clone(),
        }
    }

    /// Binds an execute run to the reviewed dry run `--plan` names - or, on
    /// resume, to the one its journal recorded - and counts the batches an
    /// earlier process of the run already checked against it.
    fn bind(&self, header: &RunHeader, asked: Option<Plan>, resumed: bool) -> anyhow::Result<Bound> {
        let run = &header.run_id;
        if header.mode == RunMode::DryRun {
            return Ok(Bound {
                identity: Identity::of(header),
                plan: None,
            });
        }
        let mut recorded = None;
        let mut begun = false;
        if resumed {
            for item in self.journal.iter_entries(run)? {
                let (entry, _) = item?;
                if matches!(entry.kind, EntryKind::Begin | EntryKind::Resume) {
                    begun = true;
                    recorded = Plan::recorded(&entry.note).map(str::to_string);
                    break;
                }
            }
        }
        let plan = match (recorded, asked) {
            (Some(recorded), Some(asked)) if recorded != asked.run_id => {
                return Err(plan::PlanError::OtherPlan {
                    run: run.clone(),
                    recorded,
                    asked: asked.run_id,
                }
                .into());
            }
            (Some(_), Some(asked)) => Some(asked),
            (Some(recorded), None) => Some(Plan::load(
                self.journal,
                &recorded,
                &header.plugin_sha256,
                &header.params,
                &header.database,
            )?),
            (None, Some(asked)) if begun => {
                return Err(plan::PlanError::Unusable {
                    plan: asked.run_id.clone(),
                    problem: format!(
                        "run {run} was started without a plan, so its earlier batches were not checked; start over \
                         with --new-run --plan {}",
                        asked.run_id
                    ),
                }
                .into());
            }
            (None, asked) => asked,
        };
        let Some(mut plan) = plan else {
            return Ok(Bound {
                identity: Identity::of(header),
                plan: None,
            });
        };
        for item in self.journal.iter_entries(run)? {
            let (entry, _) = item?;
            if let (EntryKind::Prepared, Some(pass), Some(inputs)) = (entry.kind, entry.pass, entry.inputs_hash) {
                plan.count_earlier(pass, &inputs);
            }
        }
        Ok(Bound {
            identity: Identity {
                run_id: plan.run_id.clone(),
                started_at_ms: plan.started_at_ms,
            },
            plan: Some(plan),
        })
    }

    /// What the plugin policy needs to know about this run.
    fn policy(&self) -> godwit_policy::Context<'_> {
        godwit_policy::Context {
            metadata_collection: Some(&self.db.metadata),
            database: Some(&self.db.name),
        }
    }

    /// Creates the run header, or finds the run to resume and checks that it
    /// may be resumed with this plugin, these parameters and this database.
    fn open_run(&self, request: &RunRequest) -> anyhow::Result<(RunHeader, bool)> {
        let manifest = &self.plugin.manifest;
        let params_doc = params_document(&request.params);
        let params_hash = to_hex(&sha256(&params_doc.to_vec()?));
        let unfinished = |h: &RunHeader| {
            h.status == RunStatus::Running
                && h.plugin_name == manifest.name
                && h.database == self.db.name
                && h.mode == request.mode
        };
        let existing = match &request.resume {
            ResumeChoice::Run(id) => {
                let h = self.journal.header(id)?;
                if h.status != RunStatus::Running {
                    return Err(ResumeError::NotResumable {
                        run: id.clone(),
                        status: format!("{:?}", h.status).to_lowercase(),
                    }
                    .into());
                }
                if h.plugin_name != manifest.name {
                    return Err(ResumeError::OtherPlugin {
                        run: id.clone(),
                        journaled: h.plugin_name,
                        found: manifest.name.clone(),
                    }
                    .into());
                }
                if h.database != self.db.name {
                    return Err(ResumeError::DatabaseChanged {
                        run: id.clone(),
                        journaled: h.database,
                        found: self.db.name.clone(),
                    }
                    .into());
                }
                if h.mode != request.mode {
                    return Err(ResumeError::ModeChanged {
                        run: id.clone(),
                        journaled: mode_name(h.mode),
                        found: mode_name(request.mode),
                    }
                    .into());
                }
                Some(h)
            }
            ResumeChoice::Auto => self.journal.runs()?.into_iter().rev().find(unfinished),
            ResumeChoice::New => {
                for mut h in self.journal.runs()?.into_iter().filter(unfinished) {
                    tracing::warn!("abandoning unfinished run {} (--new-run)", h.run_id);
                    h.status = RunStatus::Abandoned;
                    h.finished_at_ms = Some(now_ms());
                    self.journal.put_header(&h)?;
                }
                None
            }
        };
        if let Some(h) = existing {
            if h.plugin_sha256 != self.plugin.sha256_hex() {
                return Err(ResumeError::PluginChanged {
                    run: h.run_id,
                    file: self.plugin.file.clone(),
                    journaled: h.plugin_sha256,
                    found: self.plugin.sha256_hex(),
                }
                .into());
            }
            if h.params_hash != params_hash {
                return Err(ResumeError::ParamsChanged {
                    run: h.run_id.clone(),
                    journaled: params_text(&h.params),
                    found: params_text(&request.params),
                }
                .into());
            }
            tracing::info!(
                "resuming run {} of {} {} (started {})",
                h.run_id,
                h.plugin_name,
                h.plugin_version,
                bson::DateTime::from_millis(h.started_at_ms)
            );
            return Ok((h, true));
        }
        let header = RunHeader {
            format: crate::journal::FORMAT_VERSION,
            run_id: bson::oid::ObjectId::new().to_hex(),
            plugin_name: manifest.name.clone(),
            plugin_version: manifest.version.to_string(),
            plugin_sha256: self.plugin.sha256_hex(),
            plugin_file: self.plugin.file.display().to_string(),
            params: request.params.clone(),
            params_hash,
            database: self.db.name.clone(),
            uri: self.db.uri.clone(),
            metadata_collection: self.db.metadata.clone(),
            mode: request.mode,
            host_version: env!("CARGO_PKG_VERSION").to_string(),
            wasmtime_version: crate::WASMTIME_VERSION.to_string(),
            started_at_ms: now_ms(),
            status: RunStatus::Running,
            finished_at_ms: None,
            final_entries: None,
            final_head: None,
            before_images: request.mode == RunMode::Execute && request.before_images,
            reverts: None,
        };
        self.journal.put_header(&header)?;
        self.journal.flush()?;
        Ok((header, false))
    }

    /// A new plugin instance for run `header`, with lookups served from the
    /// database (recorded in `recorded`, or replayed from `replay`).
    fn instance(
        &self,
        header: &RunHeader,
        identity: &Identity,
        recorded: &Recorded,
        replay: &Replay,
    ) -> anyhow::Result<PluginInstance> {
        let run = &header.run_id;
        let lookup = MongoLookup {
            db: self.db.db.clone(),
            handle: tokio::runtime::Handle::current(),
            recorded: recorded.clone(),
            replay: replay.clone(),
            plugin: self.plugin.manifest.name.clone(),
            metadata_collection: self.db.metadata.clone(),
        };
        self.plugin
            .instantiate(InstanceOptions {
                lookup: Box::new(lookup),
                started_at_ms: identity.started_at_ms,
                random_seed: run_seed(&identity.run_id),
            })
            .with_context(|| format!("run {run}"))
    }

    /// What `begin` is told about the run. The contract (0.1) has a `mode`
    /// field, but a plugin that knew it could behave in the dry run an
    /// operator reviews and differently in the execute that follows; so
    /// every call says `execute`, in dry runs, verification and replays
    /// alike, and the dry run shows what an execute would do.
    pub fn context(header: &RunHeader, identity: &Identity) -> RunContext {
        RunContext {
            run_id: identity.run_id.clone(),
            mode: Mode::Execute,
            started_at_ms: identity.started_at_ms,
            database: header.database.clone(),
        }
    }

    fn begin(
        &self,
        header: &RunHeader,
        bound: &Bound,
        request: &RunRequest,
        recorded: &Recorded,
        resumed: bool,
    ) -> anyhow::Result<PluginInstance> {
        let run = &header.run_id;
        let replay = Replay::default();
        let mut instance = self.instance(header, &bound.identity, recorded, &replay)?;
        let context = Self::context(header, &bound.identity);
        let params = params_document(&request.params);
        if resumed {
            // `begin` sees what it saw when the run started, not the database
            // as our own writes have changed it since.
            let first_begin = self.journal.iter_entries(run)?.find_map(|item| match item {
                Ok((entry, _)) if entry.kind == EntryKind::Begin => Some(Ok(entry.lookups)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            });
            replay.load(first_begin.transpose()?.unwrap_or_default());
        }
        tokio::task::block_in_place(|| instance.begin(&params, &context)).with_context(|| format!("run {run}"))?;
        replay.stop();
        let mut entry = Entry::new(if resumed { EntryKind::Resume } else { EntryKind::Begin }, now_ms());
        entry.fuel = instance.fuel_used();
        entry.lookups = recorded.drain();
        if let Some(plan) = &bound.plan {
            entry.note = plan.note();
        }
        self.journal.append(run, entry)?;
        self.journal.flush()?;
        if resumed {
            self.restore_state(&mut instance, run, &bound.identity.run_id, &replay)?;
        }
        Ok(instance)
    }

    /// A fresh instance knows nothing of the batches before the interruption:
    /// feed it every applied batch again (with the lookups it saw then) so
    /// that state it keeps across batches is what an uninterrupted run would
    /// have. The actions must come out identical, which also proves the
    /// plugin deterministic; they are not applied again.
    fn restore_state(
        &self,
        instance: &mut PluginInstance,
        run: &str,
        identity_run: &str,
        replay: &Replay,
    ) -> anyhow::Result<()> {
        let manifest = &self.plugin.manifest;
        let mut pending: Option<Entry> = None;
        let mut replayed = 0u64;
        for item in self.journal.iter_entries(run)? {
            let (entry, _) = item?;
            let batch = match entry.kind {
                EntryKind::Planned => Some(entry),
                EntryKind::Prepared => {
                    pending = Some(entry);
                    None
                }
                EntryKind::Committed => pending.take_if(|p| Some(p.seq) == entry.batch_seq),
                _ => None,
            };
            let Some(batch) = batch else { continue };
            let Some(pass) = batch.pass else { continue };
            let diverged = tokio::task::block_in_place(|| {
                self::replay::compare(instance, self.plugin, replay, identity_run, &batch)
            });
            if let Some(d) = diverged {
                return Err(ResumeError::NotDeterministic {
                    run: run.to_string(),
                    plugin: manifest.name.clone(),
                    seq: batch.seq,
                    pass,
                    action: d.action,
                    document: d.document.map(|id| format!(", document _id {id}")).unwrap_or_default(),
                    error: d.error.map(|e| format!(" ({e})")).unwrap_or_default(),
                }
                .into());
            }
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!("run {run}: restored the plugin's state by replaying {replayed} journaled batches");
        }
        Ok(())
    }

    /// Settles a batch journaled as prepared whose commit was not journaled.
    async fn settle(
        &self,
        header: &RunHeader,
        pending: Entry,
        lock: Option<&Lock>,
        session: Option<&mut mongodb::ClientSession>,
        summary: &mut Summary,
        progress: &mut Progress,
    ) -> anyhow::Result<()> {
        let run = header.run_id.as_str();
        let capture_images = header.before_images;
        let marker_seq = self.db.marker(run).await?.and_then(|m| m.get_i64("seq").ok());
        let committed = marker_seq.is_some_and(|seq| seq >= pending.seq as i64);
        let mut images = Vec::new();
        let counts;
        let note = if committed {
            counts = self.db.marker_counts(run, pending.seq).await?;
            // The images travelled with the marker, in the same transaction.
            if capture_images {
                images = self.db.marker_images(run, pending.seq).await?.with_context(|| {
                    format!(
                        "run {run}: batch {} committed, but its progress marker has moved on and its before-images \
                         are lost",
                        pending.seq
                    )
                })?;
            }
            "settled on resume: the progress marker shows it committed".to_string()
        } else {
            let actions = decode_actions(&pending)?;
            let applied = self
                .db
                .apply_batch(
                    &BatchWrite {
                        run_id: run,
                        seq: pending.seq,
                        pass: pending.pass,
                        checkpoint: checkpoint_of(&pending),
                        actions: &actions,
                        lock,
                        capture_images,
                        expect: None,
                    },
                    session,
                )
                .await
                .with_context(|| format!("run {run}: re-applying journaled batch {}", pending.seq))?;
            images = applied.images;
            counts = Some(applied.counts);
            "settled on resume: re-applied from the journal".to_string()
        };
        tracing::info!("run {run}: batch {} {note}", pending.seq);
        let mut entry = Entry::new(EntryKind::Committed, now_ms());
        entry.batch_seq = Some(pending.seq);
        entry.pass = pending.pass;
        entry.note = note;
        entry.images = images;
        // A marker that moved on no longer holds the counts: they stay 0.
        let touched = counts.map(touched_of).unwrap_or_default();
        set_committed_touched(&mut entry, touched);
        self.journal.append(run, entry)?;
        self.journal.flush()?;
        summary.add_touched(pending.pass, touched);
        progress.committed(&pending, summary)
    }

    async fn take_lock(&self, header: &RunHeader, lease: Duration) -> anyhow::Result<Lock> {
        let holder = LockHolder {
            run_id: header.run_id.clone(),
            plugin: format!("{} {}", header.plugin_name, header.plugin_version),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: i64::from(std::process::id()),
        };
        // A run of this journal that finished holds no lock any more, even
        // if its process died between finishing and releasing it (its lease
        // would otherwise refuse the next run for up to `--lease`).
        let finished: Vec<String> = self
            .journal
            .runs()?
            .into_iter()
            .filter(|h| h.status == RunStatus::Finished && h.database == self.db.name)
            .map(|h| h.run_id)
            .collect();
        Ok(self.db.acquire_lock_over(&holder, lease, &finished).await?)
    }

    fn spawn_renewal(&self, lock: Lock, lease: Duration, lost: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match db.renew_lock(&lock, lease).await {
                    Ok(()) => failpoint!("lock-renewed"),
                    Err(DbError::LeaseLost { .. }) => {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => tracing::warn!("renewing the lock failed (retrying): {e}"),
                }
            }
        })
    }

    /// Whether the database's history holds this run's stamp (written just
    /// before a crash). A history entry is trusted only if the journal head
    /// it records is one this run's journal reached: an entry forged for the
    /// run's id (it would make godwit skip its own stamp) is refused.
    async fn stamped_in_database(&self, run: &str) -> anyhow::Result<bool> {
        let Some(entry) = self.db.history_entry(run).await? else {
            return Ok(false);
        };
        let head = entry.get_str("journal_head").unwrap_or_default();
        for item in self.journal.iter_entries(run)? {
            if to_hex(&item?.1) == head {
                return Ok(true);
            }
        }
        Err(DbError::SchemaTampered {
            db: self.db.name.clone(),
            metadata: self.db.metadata.clone(),
            problem: format!(
                "holds a history entry for run {run} whose journal head {head:?} is not in that run's journal"
            ),
        }
        .into())
    }

    /// Checks the plugin's `requires` against the database's version, and
    /// returns that version (stamping compares and sets against it).
    async fn check_requires(&self) -> anyhow::Result<Option<String>> {
        let current = self.db.current_version().await?;
        let manifest = &self.plugin.manifest;
        let Some(requires) = &manifest.requires else {
            return Ok(current);
        };
        let plugin = format!("{} {}", manifest.name, manifest.version);
        match current {
            None => Err(VersionError::Unstamped {
                db: self.db.name.clone(),
                plugin,
                requires: requires.to_string(),
            }
            .into()),
            Some(current) => {
                let matches = semver::Version::parse(&current).is_ok_and(|v| requires.matches(&v));
                if matches {
                    Ok(Some(current))
                } else {
                    Err(VersionError::Mismatch {
                        db: self.db.name.clone(),
                        current,
                        plugin,
                        requires: requires.to_string(),
                    }
                    .into())
                }
            }
        }
    }

    /// Holds the run between batches while the pause file exists (the lease
    /// keeps being renewed); a stop request ends the pause.
    async fn wait_while_paused(&self, request: &RunRequest) {
        let Some(file) = &request.pause_file else { return };
        if !file.exists() {
            return;
        }
        tracing::warn!(
            "paused: {} exists; remove it to continue (Ctrl-C stops)",
            file.display()
        );
        self.observer.paused(true);
        while file.exists() && !self.stop.requested() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.observer.paused(false);
        tracing::info!("resumed: {} is gone", file.display());
    }

    /// Re-runs every pass dry with a fresh instance and collects the actions
    /// that are still wanted. `None` when stopped by the operator.
    async fn verify_clean(
        &self,
        header: &RunHeader,
        identity: &Identity,
        request: &RunRequest,
    ) -> anyhow::Result<Option<Summary>> {
        let run = &header.run_id;
        let manifest = &self.plugin.manifest;
        let mut instance = self.instance(header, identity, &Recorded::default(), &Replay::default())?;
        let params = params_document(&request.params);
        let context = Self::context(header, identity);
        tokio::task::block_in_place(|| instance.begin(&params, &context))
            .with_context(|| format!("run {run}, verification"))?;
        let mut residue = Summary::new(manifest.passes.iter().map(|p| (p.name.as_str(), p.collection.as_str())));
        for (index, pass) in manifest.passes.iter().enumerate() {
            let index = index as u32;
            let label = format!("run {run}, verification, pass {index} ({})", pass.name);
            let mut reader = PassReader::open(
                self.db,
                pass,
                None,
                batch_size_for(request, pass),
                label.clone(),
                request.query_timeout,
            )
            .await?;
            loop {
                if self.stop.requested() {
                    return Ok(None);
                }
                let batch = reader.next_batch().await?;
                if batch.is_empty() {
                    break;
                }
                let raw =
                    tokio::task::block_in_place(|| instance.process(index, &batch)).with_context(|| label.clone())?;
                let valid = actions::validate(&actions::allowed(pass), raw).with_context(|| label.clone())?;
                residue.add(Some(index), batch.len() as u64, &valid);
            }
        }
        tracing::info!(
            "run {run}: verification re-ran the passes dry: {} write actions left",
            residue.write_actions()
        );
        Ok(Some(residue))
    }

    async fn stamp(
        &self,
        header: &RunHeader,
        summary: &Summary,
        verified: &str,
        previous: Option<&str>,
    ) -> anyhow::Result<()> {
        let run = &header.run_id;
        let chain = self.journal.verify(run)?;
        let manifest = &self.plugin.manifest;
        let counts = doc! {
            "documents": summary.documents() as i64,
            "updates": summary.passes.iter().chain([&summary.finish]).map(|p| p.updates).sum::<u64>() as i64,
            "inserts": summary.passes.iter().chain([&summary.finish]).map(|p| p.inserts).sum::<u64>() as i64,
            "deletes": summary.passes.iter().chain([&summary.finish]).map(|p| p.deletes).sum::<u64>() as i64,
            // Documents, as the server reported them: one action may touch many.
            "documents_updated": summary.touched().updated as i64,
            "documents_inserted": summary.touched().inserted as i64,
            "documents_deleted": summary.touched().deleted as i64,
        };
        let history = doc! {
            "run_id": run,
            "plugin": &manifest.name,
            "version": manifest.version.to_string(),
            "sha256": &header.plugin_sha256,
            "params": params_document(&header.params),
            "journal_head": to_hex(&chain.head()),
            "journal_entries": chain.entries() as i64,
            "counts": counts,
            "started_at": bson::DateTime::from_millis(header.started_at_ms),
            "finished_at": bson::DateTime::now(),
            "host_version": &header.host_version,
            "verified": verified,
        };
        failpoint!("stamp-before-db");
        if !self
            .db
            .stamp(&manifest.version.to_string(), previous, run, history)
            .await?
        {
            // Stamped before a crash: trusted only if it is this run's.
            self.stamped_in_database(run).await?;
        }
        failpoint!("stamp-before-journal");
        let mut entry = Entry::new(EntryKind::Stamp, now_ms());
        entry.note = format!(
            "version {} (journal head before stamp {})",
            manifest.version,
            to_hex(&chain.head())
        );
        self.journal.append(run, entry)?;
        self.journal.flush()?;
        Ok(())
    }
}

/// The operator's `--batch-size`, else the pass's, else the default; never
/// above `godwit_policy::MAX_BATCH_SIZE` (`run` warns when it lowers one).
fn batch_size_for(request: &RunRequest, pass: &ValidPass) -> u32 {
    let requested = request
        .batch_size
        .or((pass.batch_size > 0).then_some(pass.batch_size))
        .unwrap_or(DEFAULT_BATCH_SIZE);
    godwit_policy::clamp_batch_size(requested).0.max(1)
}

/// Keeps the document rate at or under a limit by sleeping between batches.
struct Throttle {
    per_sec: f64,
    started: tokio::time::Instant,
    documents: u64,
}

impl Throttle {
    fn new(per_sec: u32) -> Self {
        Throttle {
            per_sec: f64::from(per_sec.max(1)),
            started: tokio::time::Instant::now(),
            documents: 0,
        }
    }

    /// Sleeps until the rate allows the next batch, waking early on a stop request.
    async fn pace(&mut self, documents: u64, stop: &StopSignal) {
        self.documents += documents;
        let due = self.started + Duration::from_secs_f64(self.documents as f64 / self.per_sec);
        while !stop.requested() && tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due.min(tokio::time::Instant::now() + Duration::from_millis(50))).await;
        }
    }
}
