use super::*;
use crate::chain::Problem;
use std::path::PathBuf;
use std::time::Duration;

fn s(text: &str) -> String {
    text.to_string()
}

fn file() -> PathBuf {
    PathBuf::from("plugin.wasm")
}

/// One value of every variant of every typed error, with its exit code.
fn rows() -> Vec<(anyhow::Error, u8)> {
    let io = || std::io::Error::other("disk on fire");
    let sled = || sled::Error::Unsupported(s("nope"));
    let run = || s("r1");
    let load = |e: LoadError| anyhow::Error::new(e);
    let call_error = || CallError::Trap {
        plugin: s("p"),
        call: s("process"),
        reason: s("fuel"),
    };
    let call = |e: CallError| anyhow::Error::new(e);
    let db = |e: DbError| anyhow::Error::new(e);
    let resume = |e: ResumeError| anyhow::Error::new(e);
    let plan = |e: PlanError| anyhow::Error::new(e);
    let journal = |e: JournalError| anyhow::Error::new(e);
    let version = |e: VersionError| anyhow::Error::new(e);
    let revert = |e: RevertError| anyhow::Error::new(e);
    vec![
        (anyhow::anyhow!("something else"), ERROR),
        (anyhow::Error::new(UsageError(s("no database given"))), USAGE),
        (
            anyhow::Error::new(crate::run::trial::InputError(s(
                "docs.jsonl:3: not an Extended JSON document",
            ))),
            USAGE,
        ),
        (
            anyhow::Error::new(UnknownDatabase {
                db: s("app"),
                uri: s("mongodb://h"),
            }),
            UNKNOWN_DATABASE,
        ),
        (
            anyhow::Error::new(super::super::tenants::NoDatabaseMatches {
                pattern: s("tenant_*"),
                uri: s("mongodb://h"),
                others: 3,
            }),
            UNKNOWN_DATABASE,
        ),
        // LoadError
        (
            load(LoadError::Read {
                file: file(),
                error: io(),
            }),
            PLUGIN_REFUSED,
        ),
        (load(LoadError::NotWasm { file: file() }), PLUGIN_REFUSED),
        (
            load(LoadError::NotComponentizable {
                file: file(),
                reason: s("r"),
            }),
            PLUGIN_REFUSED,
        ),
        (
            load(LoadError::Invalid {
                file: file(),
                reason: s("r"),
            }),
            PLUGIN_REFUSED,
        ),
        (
            load(LoadError::WrongContract {
                file: file(),
                found: s("0.2.0"),
            }),
            PLUGIN_REFUSED,
        ),
        (
            load(LoadError::NotAPlugin {
                file: file(),
                exports: s("x"),
            }),
            PLUGIN_REFUSED,
        ),
        (
            load(LoadError::Link {
                file: file(),
                reason: s("r"),
            }),
            PLUGIN_REFUSED,
        ),
        (
            load(LoadError::Call {
                file: file(),
                error: call_error(),
            }),
            PLUGIN_FAILED,
        ),
        (
            load(LoadError::Manifest {
                file: file(),
                reason: s("r"),
            }),
            PLUGIN_REFUSED,
        ),
        (
            load(LoadError::Traits {
                file: file(),
                reason: s("r"),
            }),
            PLUGIN_REFUSED,
        ),
        // CallError
        (call(call_error()), PLUGIN_FAILED),
        (
            call(CallError::Failed {
                plugin: s("p"),
                call: s("process"),
                message: s("m"),
                document_id: None,
            }),
            PLUGIN_FAILED,
        ),
        (
            call(CallError::Discarded {
                plugin: s("p"),
                call: s("process"),
            }),
            PLUGIN_FAILED,
        ),
        (
            call(CallError::TooManyActions {
                plugin: s("p"),
                call: s("process"),
                actions: 11,
                documents: 1,
                per_document: 10,
            }),
            PLUGIN_FAILED,
        ),
        (
            call(CallError::TooManyFinishActions {
                plugin: s("p"),
                actions: 10_001,
                limit: 10_000,
                per_document: 10,
            }),
            PLUGIN_FAILED,
        ),
        (
            anyhow::Error::new(ActionError {
                index: 0,
                kind: "update",
                collection: Some(s("users")),
                document: None,
                problem: s("p"),
            }),
            PLUGIN_FAILED,
        ),
        // DbError
        (
            db(DbError::BadUri {
                uri: s("x"),
                reason: s("r"),
            }),
            DATABASE,
        ),
        (
            db(DbError::Unreachable {
                uri: s("x"),
                timeout: Duration::from_secs(2),
                reason: s("r"),
            }),
            DATABASE,
        ),
        (
            db(DbError::LockHeld {
                db: s("app"),
                run_id: run(),
                plugin: s("p"),
                host: s("h"),
                pid: 1,
                expires_at: s("t"),
            }),
            LOCK_HELD,
        ),
        (
            db(DbError::LeaseLost {
                db: s("app"),
                run_id: run(),
            }),
            LOCK_HELD,
        ),
        (
            db(DbError::Outage {
                context: s("c"),
                seconds: 90,
                reason: s("r"),
            }),
            DATABASE,
        ),
        (
            db(DbError::CommitUnsettled {
                context: s("c"),
                seconds: 90,
                reason: s("r"),
            }),
            DATABASE,
        ),
        (
            db(DbError::Mongo {
                context: s("c"),
                error: mongodb::error::Error::custom("r"),
            }),
            DATABASE,
        ),
        (
            db(DbError::Changed {
                collection: s("users"),
                id: s("1"),
                expected: s("a"),
                found: s("b"),
            }),
            DATABASE,
        ),
        (
            db(DbError::SchemaTampered {
                db: s("app"),
                metadata: s("m"),
                problem: s("p"),
            }),
            VERSION,
        ),
        (
            db(DbError::VersionMoved {
                db: s("app"),
                run_id: run(),
                was: s("1.0.0"),
                now: s("2.0.0"),
            }),
            VERSION,
        ),
        (
            db(DbError::RecordUntrusted {
                db: s("app"),
                record: s("app.database_metadata {_id: \"v\"}"),
                problem: s("p"),
            }),
            VERSION,
        ),
        (
            db(DbError::RecordMoved {
                db: s("app"),
                record: s("r"),
                run_id: run(),
                was: s("1.0.0"),
                now: s("2.0.0"),
            }),
            VERSION,
        ),
        (
            db(DbError::RecordNeedsTransactions {
                db: s("app"),
                record: s("r"),
                uri: s("mongodb://h"),
            }),
            USAGE,
        ),
        (
            db(DbError::WriteFailed {
                collection: s("users"),
                index: 0,
                message: s("m"),
                target: s("t"),
            }),
            DATABASE,
        ),
        (
            db(DbError::CorruptMarker {
                db: s("app"),
                metadata: s("godwit_metadata"),
                run: run(),
                reason: s("r"),
            }),
            DATABASE,
        ),
        (db(DbError::NoId { collection: s("users") }), DATABASE),
        // ResumeError
        (
            resume(ResumeError::PluginChanged {
                run: run(),
                file: file(),
                journaled: s("a"),
                found: s("b"),
            }),
            RESUME_REFUSED,
        ),
        (
            resume(ResumeError::ParamsChanged {
                run: run(),
                journaled: s("a"),
                found: s("b"),
            }),
            RESUME_REFUSED,
        ),
        (
            resume(ResumeError::DatabaseChanged {
                run: run(),
                journaled: s("a"),
                found: s("b"),
            }),
            RESUME_REFUSED,
        ),
        (
            resume(ResumeError::ModeChanged {
                run: run(),
                journaled: "dry-run",
                found: "execute",
            }),
            RESUME_REFUSED,
        ),
        (
            resume(ResumeError::NotResumable {
                run: run(),
                status: s("finished"),
            }),
            RESUME_REFUSED,
        ),
        (
            resume(ResumeError::JournalBehind {
                run: run(),
                marker: 3,
                journaled: s("2"),
            }),
            RESUME_REFUSED,
        ),
        (
            resume(ResumeError::NotDeterministic {
                run: run(),
                plugin: s("p"),
                seq: 3,
                pass: 0,
                action: 0,
                document: s(""),
                error: s(""),
            }),
            REPLAY_DIVERGED,
        ),
        (
            resume(ResumeError::OtherPlugin {
                run: run(),
                journaled: s("a"),
                found: s("b"),
            }),
            RESUME_REFUSED,
        ),
        // PlanError
        (
            plan(PlanError::Unusable {
                plan: run(),
                problem: s("p"),
            }),
            RESUME_REFUSED,
        ),
        (
            plan(PlanError::OtherPlan {
                run: run(),
                recorded: s("a"),
                asked: s("b"),
            }),
            RESUME_REFUSED,
        ),
        (
            plan(PlanError::Diverged {
                at: s("pass 0"),
                plan: run(),
                planned_seq: 2,
                detail: s("d"),
            }),
            REPLAY_DIVERGED,
        ),
        // JournalError
        (journal(JournalError::Locked { dir: file() }), JOURNAL),
        (
            journal(JournalError::Open {
                dir: file(),
                source: sled(),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::Io {
                dir: file(),
                source: sled(),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::BodyWrite {
                run: run(),
                seq: 1,
                path: file(),
                source: io(),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::Body {
                run: run(),
                seq: 1,
                path: file(),
                reason: s("r"),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::Corrupt {
                run: run(),
                seq: 1,
                reason: s("r"),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::LostPlace {
                run: run(),
                seq: 2,
                found: 2,
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::HashMismatch {
                run: run(),
                seq: 1,
                expected: s("a"),
                actual: s("b"),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::BrokenChain {
                run: run(),
                seq: 1,
                expected: s("a"),
                actual: s("b"),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::SequenceGap {
                run: run(),
                expected: 1,
                found: 2,
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::Truncated {
                run: run(),
                expected: 9,
                found: 2,
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::HeadMismatch {
                run: run(),
                seq: 1,
                stored: s("a"),
                found: s("b"),
            }),
            JOURNAL,
        ),
        (journal(JournalError::UnknownRun { run: run() }), JOURNAL),
        (
            journal(JournalError::CorruptHeader {
                run: run(),
                reason: s("r"),
            }),
            JOURNAL,
        ),
        (
            journal(JournalError::OtherFormat {
                run: run(),
                found: 3,
                reads: 4,
                host: "godwit 0.1.0",
            }),
            JOURNAL,
        ),
        // The rest.
        (
            anyhow::Error::new(ChainError {
                dir: file(),
                problems: vec![Problem::MultipleHeads {
                    files: vec![file(), file()],
                }],
            }),
            CHAIN,
        ),
        (
            anyhow::Error::new(crate::chain::DriftError {
                dir: PathBuf::from("migrations"),
                db: s("app"),
                drift: vec![crate::chain::Drift::Changed {
                    version: s("1.0.0"),
                    file: file(),
                    run_id: run(),
                    recorded: s("aa"),
                    found: s("bb"),
                }],
            }),
            DRIFT,
        ),
        (
            anyhow::Error::new(crate::run::SchemaError::Blocked {
                run: run(),
                plugin: s("p"),
                op: s("create-index `email_1` on `users`"),
                why: s("duplicates"),
            }),
            SCHEMA_BLOCKED,
        ),
        (
            anyhow::Error::new(crate::run::SchemaError::Diverged {
                run: run(),
                plugin: s("p"),
                phase: "begin",
                journaled: 1,
                found: 2,
            }),
            REPLAY_DIVERGED,
        ),
        (
            anyhow::Error::new(crate::db::DbError::Schema {
                op: s("create-index"),
                why: s("exists"),
            }),
            SCHEMA_BLOCKED,
        ),
        (
            anyhow::Error::new(crate::run::NotIdempotent {
                plugin: s("increment"),
                db: s("app"),
            }),
            USAGE,
        ),
        (
            anyhow::Error::new(crate::run::AlreadyApplied {
                plugin: s("increment"),
                version: s("2.0.0"),
                earlier: s("its run r1 was already applied to database app"),
            }),
            USAGE,
        ),
        (
            anyhow::Error::new(NothingToMigrate {
                run: run(),
                plugin: s("p"),
                db: s("app"),
                collections: s("users"),
            }),
            NOTHING_TO_MIGRATE,
        ),
        (
            version(VersionError::Unstamped {
                db: s("app"),
                plugin: s("p"),
                requires: s(">=1"),
            }),
            VERSION,
        ),
        (
            version(VersionError::UnstampedData {
                db: s("app"),
                collections: s("users"),
            }),
            VERSION,
        ),
        (
            version(VersionError::Mismatch {
                db: s("app"),
                current: s("1.0.0"),
                plugin: s("p"),
                requires: s(">=2"),
            }),
            VERSION,
        ),
        // RevertError
        (revert(RevertError::DryRun { run: run() }), REVERT_REFUSED),
        (
            revert(RevertError::NotFinished {
                run: run(),
                status: s("running"),
            }),
            REVERT_REFUSED,
        ),
        (revert(RevertError::NoImages { run: run() }), REVERT_REFUSED),
        (
            revert(RevertError::Fleet {
                run: run(),
                why: s("it ran with --workers"),
            }),
            REVERT_REFUSED,
        ),
        (
            anyhow::Error::new(crate::run::FleetError::Unavailable {
                what: s("no fleet run of plugin p"),
                waited: 300,
            }),
            FLEET_UNAVAILABLE,
        ),
        (
            anyhow::Error::new(crate::run::FleetError::Ambiguous {
                plugin: s("p"),
                runs: s("a, b"),
            }),
            USAGE,
        ),
        (
            revert(RevertError::OtherDatabase {
                run: run(),
                journaled: s("a"),
                found: s("b"),
            }),
            REVERT_REFUSED,
        ),
        (
            revert(RevertError::NotLatest {
                run: run(),
                plugin: s("p"),
                version: s("1"),
                later: s("r2"),
                later_plugin: s("q"),
                later_version: s("2"),
            }),
            VERSION,
        ),
        (revert(RevertError::Stopped { run: run() }), INTERRUPTED),
    ]
}

#[test]
fn every_typed_error_has_its_code() {
    for (error, code) in rows() {
        let message = format!("{error:#}");
        assert_eq!(code_for(&error), code, "{message}");
        // As commands return them: with context around.
        let wrapped = error.context("running the plugin").context("godwit run");
        assert_eq!(code_for(&wrapped), code, "{message} (wrapped)");
    }
}

/// Codes the commands return themselves rather than through an error.
const RETURNED_BY_COMMANDS: &[u8] = &[OK, RESIDUE, REVERT_INCOMPLETE, SOME_DATABASES_FAILED, INTERRUPTED];

#[test]
fn every_code_is_produced_and_every_produced_code_is_listed() {
    let mut produced: Vec<u8> = rows().into_iter().map(|(_, code)| code).collect();
    produced.extend(RETURNED_BY_COMMANDS);
    produced.sort_unstable();
    produced.dedup();
    let mut all = ALL.to_vec();
    all.sort_unstable();
    assert_eq!(produced, all);
}

/// The codes README.md's "Exit codes" table lists, in order.
fn readme_codes() -> Vec<u8> {
    let readme = include_str!("../../../../README.md");
    let table = readme
        .split("### Exit codes")
        .nth(1)
        .expect("README has an `### Exit codes` section");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .filter(|cell| cell.chars().all(|c| c.is_ascii_digit()) && !cell.is_empty())
        .map(|cell| cell.parse().expect("a code"))
        .collect()
}

#[test]
fn the_readme_lists_exactly_these_codes() {
    assert_eq!(readme_codes(), ALL);
}
