//! `godwit run`: one migration plugin over the database, dry run by default.

use super::{ConnectionArgs, GlobalArgs, SandboxArgs, UnknownDatabase, UsageError, exit};
use crate::journal::{Journal, RunMode};
use crate::run::report::Summary;
use crate::run::{Engine, Outcome, ResumeChoice, RunRequest, StopSignal, VerifyPolicy};
use crate::text::{errln, outln};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How runs are carried out; shared by `run` and `upgrade`.
#[derive(Args)]
pub struct RunOptions {
    /// Apply the actions. Without it the run is a dry run: it reports what it
    /// would do and writes nothing to the database.
    #[arg(long)]
    pub execute: bool,
    /// Documents per plugin call, overriding the passes' own batch sizes.
    #[arg(long, env = "GODWIT_BATCH_SIZE", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: Option<u32>,
    /// Throttle: at most this many documents per second (for busy production databases).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_docs_per_sec: Option<u32>,
    /// Stamp even if verification (the passes re-run dry after an execute
    /// run) still finds write actions; the residue is recorded in history.
    #[arg(long, conflicts_with = "skip_verify")]
    pub allow_residue: bool,
    /// Stamp without verifying (for plugins whose actions never converge).
    #[arg(long)]
    pub skip_verify: bool,
    /// Stamp even when none of the plugin's passes found its collection in
    /// the database (without it such a run, which migrated nothing, is not
    /// stamped: exit 16).
    #[arg(long)]
    pub allow_missing_collections: bool,
    /// Run a plugin whose manifest says `idempotent: false` (its actions must
    /// not be applied twice) on a server without transactions, where an
    /// interrupted batch may be applied again on resume.
    #[arg(long)]
    pub allow_at_least_once: bool,
    /// Execute a plugin whose manifest says `idempotent: false` although an
    /// earlier run of the same version already changed this database (a
    /// finished run the history records, or an unfinished one `--new-run`
    /// would abandon): its actions are applied again.
    #[arg(long)]
    pub allow_repeat: bool,
    /// Lease of the database lock, in seconds; renewed while the run lives,
    /// taken over by another runner once expired.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..))]
    pub lease: u64,
    /// While this file exists the run pauses between batches (touch it to
    /// pause, remove it to continue).
    #[arg(long, value_name = "FILE", default_value = ".godwit/pause")]
    pub pause_file: PathBuf,
    /// Do not journal before-images of the documents an execute run writes
    /// (faster, but the run cannot be reverted with `godwit revert`).
    #[arg(long)]
    pub no_before_images: bool,
    /// Write a batch without first checking, inside its transaction, that
    /// the documents the plugin read are unchanged (the write guard). Only
    /// for a database no application writes to during the run: a document
    /// written after godwit read it would be overwritten.
    #[arg(long)]
    pub no_write_guard: bool,
    /// Execute: after a batch whose commit took longer than this, wait
    /// before the next one (as long as the commit overran, doubling while
    /// commits stay slow, at most 10 s); the progress line says so.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_commit_ms: Option<u64>,
    /// Wait while the replica set reports a secondary more than this far
    /// behind the primary (read every 0.5 s; a standalone server or a
    /// one-member set reports none).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_lag_ms: Option<u64>,
    /// Batches read from the database ahead of the one being processed and
    /// written (0: read each batch only when it is needed).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub read_ahead: u32,
    /// Seconds of server time (`maxTimeMS`) a pass's query may take without
    /// returning a document; past it the run stops with an error naming the pass.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::run::DEFAULT_QUERY_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub query_timeout: u64,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

impl RunOptions {
    pub fn request(&self, params: Vec<(String, String)>, resume: ResumeChoice) -> RunRequest {
        RunRequest {
            mode: if self.execute {
                RunMode::Execute
            } else {
                RunMode::DryRun
            },
            params,
            batch_size: self.batch_size,
            resume,
            lease: Duration::from_secs(self.lease),
            max_docs_per_sec: self.max_docs_per_sec,
            verify: match (self.allow_residue, self.skip_verify) {
                (true, _) => VerifyPolicy::AllowResidue,
                (_, true) => VerifyPolicy::Skip,
                _ => VerifyPolicy::Require,
            },
            pause_file: Some(self.pause_file.clone()),
            before_images: !self.no_before_images,
            write_guard: !self.no_write_guard,
            max_commit: self.max_commit_ms.map(Duration::from_millis),
            max_lag: self.max_lag_ms.map(Duration::from_millis),
            read_ahead: self.read_ahead as usize,
            plan: None,
            allow_missing_collections: self.allow_missing_collections,
            allow_at_least_once: self.allow_at_least_once,
            allow_repeat: self.allow_repeat,
            query_timeout: Duration::from_secs(self.query_timeout),
            follow: None,
            workers: None,
        }
    }
}

#[derive(Args)]
pub struct RunCommand {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// A parameter for the plugin's `begin` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Resume this unfinished run (by default the unfinished run of the same
    /// plugin, mode and database is resumed automatically).
    #[arg(long, value_name = "RUN", conflicts_with = "new_run")]
    resume: Option<String>,
    /// Abandon an unfinished run of this plugin on this database and start over.
    #[arg(long)]
    new_run: bool,
    /// Bind this execute run to the dry run RUN an operator reviewed: the
    /// plugin runs as that dry run, every batch whose inputs the dry run saw
    /// must return the reviewed actions (else nothing of it is written, exit
    /// 12), and batches it did not see are named in the summary.
    #[arg(long, value_name = "RUN", requires = "execute")]
    plan: Option<String>,
    /// Execute, on a live database: after the passes, keep processing the
    /// documents other writers insert or change (from a change stream opened
    /// before the first batch) until the cutover - `godwit cutover RUN`, or
    /// --follow-until-idle; then verify and stamp. Needs a replica set.
    #[arg(long, requires = "execute", conflicts_with = "plan")]
    follow: bool,
    /// With --follow: cut over by itself once no document has changed for this long.
    #[arg(long, value_name = "SECONDS", requires = "follow", value_parser = clap::value_parser!(u64).range(1..))]
    follow_until_idle: Option<u64>,
    /// Execute each pass with N workers at once, in this process (fleet
    /// mode): the pass's `_id` space is split into partitions in `_id` order
    /// across BSON types, journaled and written to a work table in the
    /// metadata collection; each worker claims one partition at a time
    /// under its own lease, fence, progress marker and journaled run. The
    /// version is stamped once, after every partition and verification.
    /// `godwit status` shows the partitions; the same command resumes.
    #[arg(long, value_name = "N", requires = "execute", conflicts_with_all = ["plan", "follow"],
          value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: Option<u32>,
    /// With --workers: partitions per pass (default: 4 per worker; fewer
    /// when the pass has fewer documents). A pass keeps the split it was
    /// given when the run reached it, on resume too.
    #[arg(long, value_name = "N", requires = "workers", value_parser = clap::value_parser!(u32).range(1..=10000))]
    partitions: Option<u32>,
    /// With --workers: how the split points are found. `scan` reads every
    /// `_id` the pass matches, in order (exact sizes; one index scan);
    /// `sample` sorts a random sample of 100 `_id`s per partition (`$sample`:
    /// sizes vary by about 10% (one standard deviation) without reading every
    /// `_id`); `auto` scans
    /// up to a million documents and samples above. Either way the bounds
    /// are journaled, and a resume keeps them.
    #[arg(long, value_enum, default_value_t = SplitArg::Auto, requires = "workers")]
    split_by: SplitArg,
    #[command(flatten)]
    options: RunOptions,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SplitArg {
    Auto,
    Scan,
    Sample,
}

impl From<SplitArg> for crate::db::SplitBy {
    fn from(arg: SplitArg) -> Self {
        match arg {
            SplitArg::Auto => crate::db::SplitBy::Auto,
            SplitArg::Scan => crate::db::SplitBy::Scan,
            SplitArg::Sample => crate::db::SplitBy::Sample,
        }
    }
}

/// Parses `--param k=v` values: keys non-empty and unique, sorted by key.
pub fn parse_params(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let bad = |message: String| Err(UsageError(message).into());
    let mut params: Vec<(String, String)> = Vec::new();
    for item in raw {
        let Some((key, value)) = item.split_once('=') else {
            return bad(format!("--param {item:?} is not KEY=VALUE"));
        };
        if key.is_empty() {
            return bad(format!("--param {item:?} has an empty key"));
        }
        if params.iter().any(|(k, _)| k == key) {
            return bad(format!("--param {key} is given twice"));
        }
        params.push((key.to_string(), value.to_string()));
    }
    params.sort();
    Ok(params)
}

impl RunCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        // Validate everything local before touching the database.
        let params = parse_params(&self.params)?;
        let options = &self.options;
        let plugin_host = options.sandbox.plugin_host()?;
        let started = std::time::Instant::now();
        let plugin = crate::timing::timed_sync(crate::timing::Step::Load, || plugin_host.load(&self.plugin))?;
        let resume = match (&self.resume, self.new_run) {
            (Some(run), _) => ResumeChoice::Run(run.clone()),
            (None, true) => ResumeChoice::New,
            (None, false) => ResumeChoice::Auto,
        };
        let mut request = options.request(params, resume);
        request.plan = self.plan.clone();
        request.follow = self.follow.then(|| crate::run::FollowRequest {
            until_idle: self.follow_until_idle.map(Duration::from_secs),
        });
        request.workers = self.workers.map(|count| crate::run::Workers {
            count,
            partitions: self.partitions.unwrap_or(count * 4),
            split: self.split_by.into(),
        });
        let runtime = super::runtime()?;
        let outcome = runtime.block_on(async {
            let connected = std::time::Instant::now();
            let db = options.connection.connect().await?;
            // A mistyped --db would otherwise be created by the run. With
            // --resume the engine names the database the run was on instead.
            if self.resume.is_none() {
                require_existing(&db).await?;
            }
            // Opened only now, so that a bad URI or database leaves no journal behind.
            let journal = Journal::open(&options.connection.journal)?;
            crate::timing::record(crate::timing::Step::Connect, connected);
            let stop = StopSignal::default();
            super::stop_on_signals(stop.clone());
            let observer = super::progress::Bars::for_terminal(global);
            let engine = Engine {
                observer: &observer,
                plugin: &plugin,
                db: &db,
                journal: &journal,
                stop,
            };
            engine.run(&request).await
        });
        crate::timing::record(crate::timing::Step::Run, started);
        crate::timing::report();
        let outcome = outcome?;
        let resume_hint = format!(
            "godwit run {} --resume {{run}}{}{}",
            self.plugin.display(),
            if options.execute { " --execute" } else { "" },
            journal_flag(&options.connection.journal)
        );
        Ok(print_outcome(
            &outcome,
            global,
            &resume_hint,
            &options.connection.journal,
        ))
    }
}

/// ` --journal PATH` when the journal is not the default one, so that a
/// command the output suggests finds the same journal.
pub fn journal_flag(journal: &std::path::Path) -> String {
    match journal == std::path::Path::new(super::DEFAULT_JOURNAL) {
        true => String::new(),
        false => format!(" --journal {}", shell_word(&journal.to_string_lossy())),
    }
}

/// The exit code of a run's outcome.
pub fn outcome_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Finished { .. } => exit::OK,
        Outcome::Interrupted { .. } => exit::INTERRUPTED,
        Outcome::Unclean { .. } => exit::RESIDUE,
    }
}

/// The `status` of a run's outcome, as `--json` and the summary line say it.
pub fn outcome_status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Finished { .. } => "finished",
        Outcome::Interrupted { .. } => "interrupted",
        Outcome::Unclean { .. } => "unclean",
    }
}

/// The run an outcome is of.
pub fn outcome_header(outcome: &Outcome) -> &crate::journal::RunHeader {
    match outcome {
        Outcome::Finished { header, .. } | Outcome::Interrupted { header, .. } | Outcome::Unclean { header, .. } => {
            header
        }
    }
}

/// A run's outcome as `run --json` prints it.
pub fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let header = outcome_header(outcome);
    let (summary, residue) = match outcome {
        Outcome::Finished { summary, .. } | Outcome::Interrupted { summary, .. } => (summary, None),
        Outcome::Unclean { summary, residue, .. } => (summary, Some(residue)),
    };
    let (stamped, verified) = match outcome {
        Outcome::Finished { stamped, verified, .. } => (stamped.clone(), verified.clone()),
        _ => (None, None),
    };
    serde_json::json!({
        "run_id": header.run_id,
        "plugin": header.plugin_name,
        "version": header.plugin_version,
        "sha256": header.plugin_sha256,
        "database": header.database,
        "mode": if header.mode == RunMode::Execute { "execute" } else { "dry_run" },
        "status": outcome_status(outcome),
        "resumed": matches!(outcome, Outcome::Finished { resumed: true, .. }),
        "stamped_version": stamped,
        "verified": verified,
        "summary": summary,
        "residue": residue,
    })
}

pub fn print_outcome(outcome: &Outcome, global: &GlobalArgs, resume_hint: &str, journal: &std::path::Path) -> ExitCode {
    let header = outcome_header(outcome);
    let (summary, residue) = match outcome {
        Outcome::Finished { summary, .. } | Outcome::Interrupted { summary, .. } => (summary, None),
        Outcome::Unclean { summary, residue, .. } => (summary, Some(residue)),
    };
    let (status, code) = (outcome_status(outcome), outcome_code(outcome));
    let execute = header.mode == RunMode::Execute;
    let (stamped, verified) = match outcome {
        Outcome::Finished { stamped, verified, .. } => (stamped.clone(), verified.clone()),
        _ => (None, None),
    };
    if global.json {
        super::print_json(&outcome_json(outcome)).expect("summary serializes");
    } else if global.quiet && code == exit::OK {
        // `-q`: success prints nothing; every other outcome still says why.
    } else {
        outln!(
            "{} run {} of {} {} on {}: {status}",
            if execute { "execute" } else { "dry" },
            header.run_id,
            header.plugin_name,
            header.plugin_version,
            header.database
        );
        let reports = format!("godwit journal reports {}{}", header.run_id, journal_flag(journal));
        print_summary(summary, execute, Some(&reports));
        if let Some(plan) = &summary.plan {
            outln!(
                "plan: {} batches as reviewed in dry run {}, {} with inputs the dry run did not see{}",
                plan.reviewed,
                plan.run,
                plan.unreviewed,
                if plan.finish.is_empty() {
                    String::new()
                } else {
                    format!("; finish: {}", plan.finish)
                }
            );
            for batch in &plan.unreviewed_batches {
                outln!("  not reviewed: {batch}");
            }
        }
        match (&stamped, status) {
            (Some(v), _) => {
                outln!("database {} stamped at version {v}", header.database);
                if let Some(verified) = verified.as_deref().filter(|v| *v != "clean") {
                    outln!("verification: {verified} (recorded in the history)");
                }
            }
            (None, "finished") if !execute => {
                outln!("dry run: nothing was written; run again with --execute to apply")
            }
            _ => {}
        }
        if let Some(residue) = residue {
            outln!(
                "verification: the passes, re-run dry, still want {} write actions:",
                residue.write_actions()
            );
            print_summary(residue, false, None);
        }
    }
    match status {
        "interrupted" => {
            errln!(
                "interrupted: the run is resumable; continue with: {}",
                resume_hint.replace("{run}", &header.run_id)
            )
        }
        // The run's passes are done: running the same command again resumes
        // it and only verifies again. Say what makes progress.
        "unclean" => errln!(
            "not stamped: the data is not clean after run {run} (see the residue above). Its passes are complete, so \
             running the same command again only verifies again: fix the cause, then start a run that reads the \
             documents again with --new-run; for a migration that never converges (an $inc counter) declare \
             idempotent: false in its manifest, or use --skip-verify; or stamp anyway with --allow-residue",
            run = header.run_id
        ),
        _ => {}
    }
    ExitCode::from(code)
}

/// `reports`: the command that lists every report of the journaled run the
/// summary is of (`godwit journal reports RUN [--journal PATH]`; `None`:
/// the summary of what is not journaled, a verification's residue).
pub fn print_summary(summary: &Summary, execute: bool, reports: Option<&str>) {
    let verb = if execute { "" } else { "would " };
    if let Some(follow) = &summary.follow {
        let end = match (&follow.cutover_at, follow.done) {
            (Some(at), true) => format!("cut over at {at}; every change up to it processed"),
            (_, true) => "done".to_string(),
            (_, false) => format!("{} pending, not cut over yet", follow.pending),
        };
        outln!(
            "  followed: {} changes naming {} documents, in {} windows after the passes; {end}",
            follow.events,
            follow.documents,
            follow.windows
        );
    }
    let pacing = summary.pacing;
    if pacing.slow_commits + pacing.lag_waits > 0 {
        outln!(
            "  paced: waited {:.1} s ({} times after a commit over --max-commit-ms, {} times for replication lag over \
             --max-lag-ms); slowest commit {} ms",
            pacing.waited_ms as f64 / 1000.0,
            pacing.slow_commits,
            pacing.lag_waits,
            pacing.slowest_commit_ms
        );
    }
    print_schema(summary, "begin");
    for (i, pass) in summary
        .passes
        .iter()
        .enumerate()
        .map(|(i, p)| (Some(i), p))
        .chain([(None, &summary.finish)])
    {
        if i.is_none() && pass.batches == 0 {
            continue;
        }
        let label = match i {
            Some(i) if pass.collection_missing => format!(
                "pass {i} {} ({}: no such collection, nothing read)",
                pass.name, pass.collection
            ),
            Some(i) => format!("pass {i} {} ({})", pass.name, pass.collection),
            None => "finish".to_string(),
        };
        outln!(
            "  {label}: {} documents in {} batches; {verb}update {}, {verb}insert {}, {verb}delete {}",
            pass.documents,
            pass.batches,
            pass.updates,
            pass.inserts,
            pass.deletes
        );
        // Actions are not documents: one `multi` delete can remove a
        // collection. The documents are what the operator must review.
        let t = pass.touched;
        if t.updated + t.inserted + t.deleted > 0 {
            let bound = if execute { "" } else { "at most " };
            outln!(
                "    documents: {verb}update {bound}{}, {verb}insert {bound}{}, {verb}delete {bound}{}",
                t.updated,
                t.inserted,
                t.deleted
            );
        }
        if pass.conflicts > 0 {
            outln!(
                "    conflicts: {} documents changed by another writer after they were read; processed again in \
                 their new state, never overwritten",
                pass.conflicts
            );
        }
        for (collection, n) in &pass.writes_by_collection {
            outln!("    {collection}: {n} write actions");
        }
        for (kind, report) in &pass.reports {
            outln!("    {kind}: {}", report.count);
            for sample in &report.samples {
                outln!("      {}: {}", sample.key, sample.message);
            }
            if let Some(command) = reports
                && report.count > report.samples.len() as u64
            {
                outln!("      all {}: {command} --kind {}", report.count, shell_word(kind));
            }
        }
    }
    print_schema(summary, "finish");
}

/// The schema operations of one phase: each, what it affects, and in an
/// execute what was done. Operation lines hold plugin-chosen names, escaped
/// by `outln!`.
fn print_schema(summary: &Summary, phase: &str) {
    for line in summary.schema.iter().filter(|l| l.phase == phase) {
        match &line.outcome {
            Some(outcome) => outln!("  schema ({phase}): {}: {outcome}; {}", line.op, line.effect),
            None => outln!("  schema ({phase}): would {}: {}", line.op, line.effect),
        }
    }
}

/// `word` as one shell word: as it is when it needs no quoting, else in
/// single quotes (a plugin picks its report kinds).
pub(super) fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Refuses a database that does not exist (MongoDB would create it on the first write).
pub async fn require_existing(db: &crate::db::Db) -> anyhow::Result<()> {
    let names = db
        .db
        .list_collection_names()
        .await
        .with_context(|| format!("listing the collections of database {}", db.name))?;
    if names.is_empty() {
        return Err(UnknownDatabase {
            db: db.name.clone(),
            uri: db.uri.clone(),
        }
        .into());
    }
    Ok(())
}

impl ConnectionArgs {
    /// `--version-record` and its field flags, validated (exit 2 when wrong).
    pub fn version_record(&self) -> anyhow::Result<Option<crate::db::VersionRecord>> {
        let Some(spec) = self.version_record.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let fields = [
            self.version_field.as_str(),
            self.history_field.as_str(),
            self.history_action_field.as_str(),
            self.history_time_field.as_str(),
        ];
        let record = crate::db::VersionRecord::parse(spec, fields, &self.history_set).map_err(super::UsageError)?;
        if record.collection == self.metadata_collection {
            return Err(super::UsageError(format!(
                "--version-record {spec:?} names godwit's own metadata collection; adopt the application's document"
            ))
            .into());
        }
        Ok(Some(record))
    }

    pub async fn connect(&self) -> anyhow::Result<crate::db::Db> {
        // Missing settings are a bad command line (exit 2), found before any
        // connection is tried.
        let missing = |what: &str| super::UsageError(what.to_string());
        // An empty value (`MONGODB_URI=`) is as missing as no value.
        let uri = (self.uri.as_deref())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| missing("no MongoDB URI: pass --uri, set MONGODB_URI, or set uri in godwit.toml"))?;
        let db = (self.db.as_deref())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| missing("no database: pass --db NAME, set GODWIT_DB, or set db in godwit.toml"))?;
        let record = self.version_record()?;
        Ok(crate::db::Db::connect(crate::db::ConnectOptions {
            uri,
            db,
            metadata_collection: &self.metadata_collection,
            timeout: Duration::from_secs_f64(self.connect_timeout),
            retry_for: Duration::from_secs(self.retry_for),
            record,
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_params, shell_word};

    #[test]
    fn report_kinds_as_shell_words() {
        assert_eq!(shell_word("conflict"), "conflict");
        assert_eq!(shell_word("upgrade_action"), "upgrade_action");
        assert_eq!(shell_word("two words"), "'two words'");
        assert_eq!(shell_word("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn params() {
        assert_eq!(
            parse_params(&["b=2".into(), "a=x=y".into(), "c=".into()]).unwrap(),
            vec![
                ("a".into(), "x=y".into()),
                ("b".into(), "2".into()),
                ("c".into(), "".into())
            ]
        );
        assert_eq!(
            parse_params(&["novalue".into()]).unwrap_err().to_string(),
            "--param \"novalue\" is not KEY=VALUE"
        );
        assert_eq!(
            parse_params(&["=v".into()]).unwrap_err().to_string(),
            "--param \"=v\" has an empty key"
        );
        assert_eq!(
            parse_params(&["a=1".into(), "a=2".into()]).unwrap_err().to_string(),
            "--param a is given twice"
        );
    }
}
