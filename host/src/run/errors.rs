//! Why a run is refused or stopped before it writes: resuming with other
//! inputs, a journal behind the database, a plugin that does not reproduce
//! its batches, the schema version, nothing to migrate. Each has its exit
//! code in `cli`.

use std::path::PathBuf;

/// A plugin whose actions must not be applied twice, on a server where a
/// batch may be applied again (no transactions: at least once).
#[derive(Debug, thiserror::Error)]
#[error(
    "plugin {plugin:?} declares idempotent: false (applying its actions twice is wrong), but database {db} has no \
     transactions, so an interrupted batch may be applied again on resume; run it on a replica set, or pass \
     --allow-at-least-once to accept that"
)]
pub struct NotIdempotent {
    pub plugin: String,
    pub db: String,
}

/// A second execute of a plugin that declares `idempotent: false`, over
/// what an earlier run of it already applied to the database.
#[derive(Debug, thiserror::Error)]
#[error(
    "plugin {plugin:?} {version} declares idempotent: false (applying its actions twice is wrong), and {earlier}; \
     a new execute would apply its actions again. Revert that run first (godwit revert), or pass --allow-repeat \
     to apply them again anyway"
)]
pub struct AlreadyApplied {
    pub plugin: String,
    pub version: String,
    /// What the database or the journal holds, e.g. "run R was applied to
    /// database D and stamped (history)".
    pub earlier: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(
        "cannot resume run {run}: plugin {} has sha256 {found}, but the run was started with sha256 {journaled}; \
         run the original plugin, or start over with --new-run", file.display()
    )]
    PluginChanged {
        run: String,
        file: PathBuf,
        journaled: String,
        found: String,
    },
    #[error(
        "cannot resume run {run}: its parameters were {journaled}, now {found}; pass the same --param values, or start over with --new-run"
    )]
    ParamsChanged {
        run: String,
        journaled: String,
        found: String,
    },
    #[error("cannot resume run {run}: it ran on database {journaled}, not {found}")]
    DatabaseChanged {
        run: String,
        journaled: String,
        found: String,
    },
    #[error("cannot resume run {run}: it is a {journaled} run; this is a {found} run")]
    ModeChanged {
        run: String,
        journaled: &'static str,
        found: &'static str,
    },
    #[error("cannot resume run {run}: it is {status}")]
    NotResumable { run: String, status: String },
    #[error(
        "cannot resume run {run}: the database's progress marker is at batch {marker}, but the journal ends before \
         it (last batch {journaled}); the journal lost entries the database committed (a truncated or restored \
         journal directory?) - resuming would apply batches twice"
    )]
    JournalBehind {
        run: String,
        marker: u64,
        journaled: String,
    },
    #[error(
        "cannot resume run {run}: the database committed batch {seq} with its before-images in journal entry \
         {entry}, which journal {journal} does not hold; the journal lost entries the database committed (a \
         truncated or restored journal directory, or another --journal?) - resume with the journal the run was \
         started with"
    )]
    ImagesLost {
        run: String,
        seq: u64,
        entry: u64,
        journal: String,
    },
    /// Exit 12, like `journal replay`: the plugin did not reproduce what it did.
    #[error(
        "cannot resume run {run}: plugin {plugin} did not reproduce journaled batch {seq} (pass {pass}, action \
         {action}{document}) when restoring its state; it is not deterministic{error}. Make it return the same actions \
         for the same inputs and lookups, or start over with --new-run"
    )]
    NotDeterministic {
        run: String,
        plugin: String,
        seq: u64,
        pass: u32,
        action: usize,
        document: String,
        error: String,
    },
    #[error("cannot resume run {run}: it ran plugin {journaled}, not {found}")]
    OtherPlugin {
        run: String,
        journaled: String,
        found: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(
        "database {db} has no schema version, but {plugin} requires {requires}; \
         stamp the existing schema once with `godwit init --version X`"
    )]
    Unstamped {
        db: String,
        plugin: String,
        requires: String,
    },
    #[error(
        "database {db} has no schema version but holds data ({collections}); \
         stamp the version its schema is at with `godwit init --version X` first"
    )]
    UnstampedData { db: String, collections: String },
    #[error("database {db} is at version {current}, but {plugin} requires {requires}")]
    Mismatch {
        db: String,
        current: String,
        plugin: String,
        requires: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[error(
    "run {run}: no pass of plugin {plugin} found its collection in database {db} ({collections}), so nothing was \
     migrated and the version is not stamped. Check --db and the plugin's collection names (a prefix parameter?); if \
     the database really has none of them, run the same command again with --allow-missing-collections"
)]
pub struct NothingToMigrate {
    pub run: String,
    pub plugin: String,
    pub db: String,
    pub collections: String,
}

/// `--follow` asked of a run or a server that cannot follow.
#[derive(Debug, thiserror::Error)]
pub enum FollowRefused {
    #[error(
        "database {db}: --follow needs a replica set (change streams and transactions); this server is standalone. \
         Run without --follow, on a quiet database"
    )]
    NoReplicaSet { db: String },
    #[error(
        "run {run} was started without --follow: what other writers changed since it began was not tracked, so it \
         cannot follow now. Finish it without --follow, or start over with --new-run --follow"
    )]
    NotTracked { run: String },
}
