//! Exit codes: the constants scripts branch on (README's "Exit codes" table,
//! which a test keeps equal to [`ALL`]) and [`code_for`], the one table from
//! typed errors to them. Each error enum is matched without a wildcard, so a
//! new variant does not compile until it has a code here.

use crate::chain::{ChainError, DriftError};
use crate::db::DbError;
use crate::journal::JournalError;
use crate::plugin::actions::ActionError;
use crate::plugin::{CallError, LoadError};
use crate::run::plan::PlanError;
use crate::run::revert::RevertError;
use crate::run::trial::InputError;
use crate::run::{
    AlreadyApplied, FleetError, FollowRefused, NotIdempotent, NothingToMigrate, ResumeError, SchemaError, VersionError,
};

use super::tenants::NoDatabaseMatches;
use super::{UnknownDatabase, UsageError};

pub const OK: u8 = 0;
/// Anything not listed below.
pub const ERROR: u8 = 1;
/// Bad command line (clap's own code), a missing URI or database, a bad
/// config file.
pub const USAGE: u8 = 2;
/// The plugin file was refused: unreadable, not wasm, wrong contract, bad manifest.
pub const PLUGIN_REFUSED: u8 = 3;
/// The plugin trapped (fuel, deadline, memory, panic), returned an error,
/// or returned an invalid action.
pub const PLUGIN_FAILED: u8 = 4;
/// Another run holds the database's lock.
pub const LOCK_HELD: u8 = 5;
/// The unfinished run cannot be resumed as asked (plugin, parameters,
/// database or mode differ).
pub const RESUME_REFUSED: u8 = 6;
/// The journal is corrupt, or locked by another process.
pub const JOURNAL: u8 = 7;
/// The database is unreachable, the URI is invalid, a write failed, a
/// progress marker is corrupt, or a document to image has no `_id`.
pub const DATABASE: u8 = 8;
/// The database's schema version does not satisfy the plugin's `requires`.
pub const VERSION: u8 = 9;
/// Verification after an execute run found write actions left (residue);
/// the version was not stamped.
pub const RESIDUE: u8 = 10;
/// The plugin directory is not a consistent chain (duplicates, gaps,
/// several heads, unreadable plugins).
pub const CHAIN: u8 = 11;
/// `journal replay`, `--plan` or a resume's state restore: the plugin did
/// not reproduce the journaled actions.
pub const REPLAY_DIVERGED: u8 = 12;
/// The database named by `--db` does not exist (it has no collections).
pub const UNKNOWN_DATABASE: u8 = 13;
/// `revert` refused: a dry run, an unfinished run, or no before-images.
pub const REVERT_REFUSED: u8 = 14;
/// `revert` left documents changed since the run as they are.
pub const REVERT_INCOMPLETE: u8 = 15;
/// An execute run found none of its passes' collections: not stamped
/// (`--allow-missing-collections` stamps anyway).
pub const NOTHING_TO_MIGRATE: u8 = 16;
/// `upgrade` (or `plan` against a database): the plugin file of a version
/// the database applied is not the one that ran (`--allow-drift` upgrades
/// anyway).
pub const DRIFT: u8 = 17;
/// A schema operation the database refuses as it is: a unique index over
/// duplicate keys, a target collection that exists, an index of the same
/// name with another definition. Nothing of the phase was sent.
pub const SCHEMA_BLOCKED: u8 = 18;
/// `upgrade --databases`: at least one database failed (each one's own
/// code is in the summary); the others were upgraded.
pub const SOME_DATABASES_FAILED: u8 = 19;
/// `worker`: no fleet run of the plugin to join, or its run does not hold
/// the database's lock (its process stopped), within `--wait`. Retrying
/// later may succeed (a Kubernetes Job retries it).
pub const FLEET_UNAVAILABLE: u8 = 20;
/// Stopped by Ctrl-C or SIGTERM after a clean batch boundary; resumable.
pub const INTERRUPTED: u8 = 130;

/// Every exit code godwit uses, as README.md lists them.
pub const ALL: &[u8] = &[
    OK,
    ERROR,
    USAGE,
    PLUGIN_REFUSED,
    PLUGIN_FAILED,
    LOCK_HELD,
    RESUME_REFUSED,
    JOURNAL,
    DATABASE,
    VERSION,
    RESIDUE,
    CHAIN,
    REPLAY_DIVERGED,
    UNKNOWN_DATABASE,
    REVERT_REFUSED,
    REVERT_INCOMPLETE,
    NOTHING_TO_MIGRATE,
    DRIFT,
    SCHEMA_BLOCKED,
    SOME_DATABASES_FAILED,
    FLEET_UNAVAILABLE,
    INTERRUPTED,
];

/// The exit code of a failed command: that of the first error in the chain
/// (outermost first) the table knows, else [`ERROR`]. Codes that are not
/// errors (`OK`, `RESIDUE`, `REVERT_INCOMPLETE`, `SOME_DATABASES_FAILED`, an interrupted run's
/// `INTERRUPTED`) are returned by the commands themselves.
pub fn code_for(error: &anyhow::Error) -> u8 {
    error.chain().find_map(code_of).unwrap_or(ERROR)
}

/// The table: the code of one typed error, `None` for an error type it
/// does not know.
fn code_of(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    macro_rules! table {
        ($($ty:ty => $code:expr),* $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$ty>() {
                #[allow(clippy::redundant_closure_call)]
                return Some(($code)(e));
            })*
        };
    }
    table! {
        UsageError => |_: &UsageError| USAGE,
        InputError => |_: &InputError| USAGE,
        UnknownDatabase => |_: &UnknownDatabase| UNKNOWN_DATABASE,
        NoDatabaseMatches => |_: &NoDatabaseMatches| UNKNOWN_DATABASE,
        LoadError => load,
        CallError => call,
        ActionError => |_: &ActionError| PLUGIN_FAILED,
        DbError => db,
        ResumeError => resume,
        PlanError => plan,
        JournalError => journal,
        ChainError => |_: &ChainError| CHAIN,
        DriftError => |_: &DriftError| DRIFT,
        NothingToMigrate => |_: &NothingToMigrate| NOTHING_TO_MIGRATE,
        NotIdempotent => |_: &NotIdempotent| USAGE,
        AlreadyApplied => |_: &AlreadyApplied| USAGE,
        VersionError => version,
        RevertError => revert,
        SchemaError => schema,
        FleetError => fleet,
        FollowRefused => follow,
    }
    None
}

fn follow(e: &FollowRefused) -> u8 {
    match e {
        FollowRefused::NoReplicaSet { .. } => USAGE,
        FollowRefused::NotTracked { .. } => RESUME_REFUSED,
    }
}

fn fleet(e: &FleetError) -> u8 {
    match e {
        FleetError::Unavailable { .. } => FLEET_UNAVAILABLE,
        FleetError::Ambiguous { .. } => USAGE,
    }
}

fn schema(e: &SchemaError) -> u8 {
    match e {
        SchemaError::Blocked { .. } => SCHEMA_BLOCKED,
        SchemaError::Diverged { .. } => REPLAY_DIVERGED,
    }
}

fn load(e: &LoadError) -> u8 {
    match e {
        // The plugin's own code ran (instantiation, the manifest) and failed.
        LoadError::Call { .. } => PLUGIN_FAILED,
        LoadError::Read { .. }
        | LoadError::NotWasm { .. }
        | LoadError::NotComponentizable { .. }
        | LoadError::Invalid { .. }
        | LoadError::WrongContract { .. }
        | LoadError::NotAPlugin { .. }
        | LoadError::Link { .. }
        | LoadError::Manifest { .. }
        | LoadError::Traits { .. } => PLUGIN_REFUSED,
    }
}

fn call(e: &CallError) -> u8 {
    match e {
        CallError::Trap { .. }
        | CallError::Failed { .. }
        | CallError::Discarded { .. }
        | CallError::TooManyActions { .. }
        | CallError::TooManyFinishActions { .. } => PLUGIN_FAILED,
    }
}

fn db(e: &DbError) -> u8 {
    match e {
        DbError::LockHeld { .. } | DbError::LeaseLost { .. } => LOCK_HELD,
        DbError::SchemaTampered { .. }
        | DbError::VersionMoved { .. }
        | DbError::RecordUntrusted { .. }
        | DbError::RecordMoved { .. } => VERSION,
        DbError::RecordNeedsTransactions { .. } => USAGE,
        DbError::Schema { .. } => SCHEMA_BLOCKED,
        DbError::ImagesNotJournaled { .. } | DbError::NotJournaled { .. } => JOURNAL,
        DbError::BadUri { .. }
        | DbError::Unreachable { .. }
        | DbError::Outage { .. }
        | DbError::CommitUnsettled { .. }
        | DbError::Mongo { .. }
        | DbError::Changed { .. }
        | DbError::Conflict { .. }
        | DbError::GuardMissed
        | DbError::WriteFailed { .. }
        | DbError::CorruptMarker { .. }
        | DbError::NoId { .. }
        | DbError::HistoryLost { .. }
        | DbError::CorruptPosition { .. }
        | DbError::NoStream { .. } => DATABASE,
    }
}

fn resume(e: &ResumeError) -> u8 {
    match e {
        ResumeError::NotDeterministic { .. } => REPLAY_DIVERGED,
        ResumeError::PluginChanged { .. }
        | ResumeError::ParamsChanged { .. }
        | ResumeError::DatabaseChanged { .. }
        | ResumeError::ModeChanged { .. }
        | ResumeError::NotResumable { .. }
        | ResumeError::JournalBehind { .. }
        | ResumeError::ImagesLost { .. }
        | ResumeError::OtherPlugin { .. } => RESUME_REFUSED,
    }
}

fn plan(e: &PlanError) -> u8 {
    match e {
        PlanError::Diverged { .. } => REPLAY_DIVERGED,
        PlanError::Unusable { .. } | PlanError::OtherPlan { .. } => RESUME_REFUSED,
    }
}

fn journal(e: &JournalError) -> u8 {
    match e {
        JournalError::Locked { .. }
        | JournalError::Open { .. }
        | JournalError::Io { .. }
        | JournalError::BodyWrite { .. }
        | JournalError::Body { .. }
        | JournalError::Corrupt { .. }
        | JournalError::LostPlace { .. }
        | JournalError::HashMismatch { .. }
        | JournalError::BrokenChain { .. }
        | JournalError::SequenceGap { .. }
        | JournalError::Truncated { .. }
        | JournalError::HeadMismatch { .. }
        | JournalError::UnknownRun { .. }
        | JournalError::CorruptHeader { .. }
        | JournalError::OtherFormat { .. } => JOURNAL,
    }
}

fn version(e: &VersionError) -> u8 {
    match e {
        VersionError::Unstamped { .. } | VersionError::UnstampedData { .. } | VersionError::Mismatch { .. } => VERSION,
    }
}

fn revert(e: &RevertError) -> u8 {
    match e {
        RevertError::NotLatest { .. } => VERSION,
        RevertError::Stopped { .. } => INTERRUPTED,
        RevertError::DryRun { .. }
        | RevertError::NotFinished { .. }
        | RevertError::NoImages { .. }
        | RevertError::OtherDatabase { .. }
        | RevertError::Fleet { .. } => REVERT_REFUSED,
    }
}

#[cfg(test)]
mod tests;
