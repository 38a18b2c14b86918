//! The run engine: streams each pass's documents from MongoDB through the
//! plugin in batches, validates the actions, journals them, applies them with
//! the progress marker (exactly once with transactions), resumes interrupted
//! runs, and stamps the schema version when an execute run finishes.
//!
//! Per batch, in execute mode (`commit.rs` holds the protocol, `engine.rs`
//! the order of a run):
//! 1. read the batch (`db::reader`: `_id` order, after the checkpoint);
//! 2. `process` in the plugin; validate the actions (`godwit-policy`);
//! 3. build the `BatchRecord` (`batch.rs`, pure);
//! 4. `ActiveRun::prepare_and_apply`: journal it as `Prepared`, flushed,
//!    while the transaction's reads (guard, before-images) are in flight,
//!    then - the journal holding it - the actions and the progress marker
//!    in one transaction fenced by the lock;
//! 5. journal `Committed` (flushed with the next `Prepared`).
//!
//! A `Prepared` entry without `Committed` is settled on resume by the marker
//! (`resume.rs`): committed if the marker reached its sequence number, else
//! re-applied from the journaled actions (the plugin is not asked again).
//! What a run's journal says is read by one interpreter, `log.rs`.

pub mod lookup;
pub mod pace;
pub mod plan;
pub mod replay;
pub mod report;
pub mod reports;
pub mod revert;
pub mod schema;
pub mod trial;

mod batch;
mod commit;
mod engine;
mod errors;
mod finish;
mod fleet;
pub use fleet::{FleetError, WorkOutcome, WorkRequest};
mod follow;
pub use follow::FollowProgress;
mod log;
mod resume;
mod stage;

pub use errors::{AlreadyApplied, FollowRefused, NotIdempotent, NothingToMigrate, ResumeError, VersionError};
pub use schema::SchemaError;

use crate::db::Db;
use crate::hash::sha256;
use crate::journal::{EntryKind, Journal, RunHeader, RunMode, hash_documents};
use crate::plugin::LoadedPlugin;
use crate::plugin::contract::ValidPass;
use bson::{Bson, Document};
use plan::Plan;
use report::Summary;
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

#[derive(Clone)]
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
    /// Execute: write a batch only if the documents its plugin call read are
    /// unchanged inside the batch's transaction (the write guard).
    pub write_guard: bool,
    /// Execute: wait after a batch whose commit took longer than this.
    pub max_commit: Option<Duration>,
    /// Wait while a secondary lags the primary by more than this.
    pub max_lag: Option<Duration>,
    /// Batches read ahead of the one in the plugin and the database (0: none).
    pub read_ahead: usize,
    /// Execute: the reviewed dry run this run is bound to (`--plan RUN`).
    pub plan: Option<String>,
    /// Stamp even if none of the passes' collections exists.
    pub allow_missing_collections: bool,
    /// Run a plugin that is not idempotent where batches are applied at
    /// least once (a server without transactions).
    pub allow_at_least_once: bool,
    /// Execute a plugin that is not idempotent again over a database its
    /// earlier run already changed (`--allow-repeat`).
    pub allow_repeat: bool,
    /// Server time (`maxTimeMS`) a pass's query may take without returning a
    /// document: a pass filter is plugin input too.
    pub query_timeout: Duration,
    /// Execute: after the snapshot passes, process what other writers
    /// change until the cutover (`--follow`).
    pub follow: Option<FollowRequest>,
    /// Execute: each pass split into partitions processed by workers at
    /// once (`--workers`, fleet mode; `fleet.rs`).
    pub workers: Option<Workers>,
}

/// `--workers N --partitions P`.
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    pub count: u32,
    pub partitions: u32,
    /// How a pass's `_id` space is split (`--split-by`).
    pub split: crate::db::SplitBy,
}

/// `--follow`: how the follow phase ends besides `godwit cutover RUN`.
#[derive(Debug, Clone, Default)]
pub struct FollowRequest {
    /// Cut over once the change stream has named no document for this long
    /// (`--follow-until-idle SECONDS`).
    pub until_idle: Option<Duration>,
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
    /// A plugin declaring `idempotent: false` is never verified: a dry
    /// re-run would want its actions again by design.
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
        /// What the stamp's history entry says of verification ("clean",
        /// "skipped: ...", the residue allowed), when this process stamped.
        verified: Option<String>,
    },
    Interrupted {
        header: RunHeader,
        summary: Summary,
    },
    /// Applied, but verification found write actions left: not stamped.
    Unclean {
        header: RunHeader,
        summary: Summary,
        residue: Box<Summary>,
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
    /// Pacing on the database's health: why the run waits (empty: it does not).
    fn health(&self, _text: &str) {}
    /// The follow phase (`--follow`): where it stands.
    fn follow(&self, _progress: &FollowProgress) {}
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
            if matches!(entry.kind(), EntryKind::Begin | EntryKind::Resume) {
                if let Some(plan) = Plan::recorded(entry.note()) {
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

/// Who the plugin runs as, and the reviewed dry run an execute is bound to.
pub struct Bound {
    pub identity: Identity,
    pub plan: Option<Plan>,
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
