//! The command line: argument definitions, logging setup, and the exit code
//! of each outcome (`exit`). **Invariant:** only this module knows about clap,
//! terminals and exit codes.

mod chain;
mod config;
mod cutover;
pub mod exit;
pub mod fleet;
mod init;
mod journal;
mod new;
mod plugin;
mod plugin_test;
mod progress;
mod revert;
mod run;
mod status;
mod tenants;
mod worker;

use crate::plugin::cache::CompileCache;
use crate::plugin::contract::UndeclaredReads;
use crate::plugin::{Limits, PluginHost};
use crate::text::errln;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::field::MakeExt;

/// Where the journal lives unless `--journal` or `GODWIT_JOURNAL` says otherwise.
pub const DEFAULT_JOURNAL: &str = ".godwit/journal";

#[derive(Parser)]
#[command(
    name = "godwit",
    version,
    about = "Run database migrations shipped as sandboxed WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: GlobalArgs,
}

#[derive(Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors: no logs or progress bars, and a successful `run` prints nothing on stdout.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

/// Limits applied to every call into a plugin, and the compile cache: what
/// loading a plugin needs (its manifest and `keeps-state` are calls).
#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Fuel (about one unit per wasm instruction) a single plugin call may use.
    #[arg(long, default_value_t = Limits::default().fuel_per_call)]
    fuel: u64,
    /// Wall-clock limit of a single plugin call, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().call_timeout.as_secs_f64())]
    call_timeout: f64,
    /// Memory cap of a plugin instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().memory_bytes >> 20)]
    memory_limit: usize,
    /// Directory of the compiled-component cache [default: $GODWIT_CACHE_DIR or ~/.cache/godwit/components].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile the plugin without the on-disk cache.
    #[arg(long)]
    no_cache: bool,
}

impl LoadArgs {
    /// A host for commands that only load plugins (inspect, plan, status):
    /// no batch is processed, so the action and lookup rules keep their
    /// defaults.
    pub fn plugin_host(&self) -> anyhow::Result<PluginHost> {
        self.host(Limits::default().max_actions_per_document, UndeclaredReads::Refuse)
    }

    fn host(&self, max_actions_per_document: u32, undeclared_reads: UndeclaredReads) -> anyhow::Result<PluginHost> {
        if !(self.call_timeout > 0.0 && self.call_timeout.is_finite()) {
            return Err(UsageError(format!(
                "--call-timeout must be a positive number of seconds, got {}",
                self.call_timeout
            ))
            .into());
        }
        let limits = Limits {
            fuel_per_call: self.fuel,
            call_timeout: Duration::from_secs_f64(self.call_timeout),
            memory_bytes: self.memory_limit << 20,
            max_actions_per_document,
            undeclared_reads,
        };
        let cache = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(CompileCache::new(dir.clone())),
            (None, false) => CompileCache::default_dir().map(CompileCache::new),
        };
        PluginHost::new(limits, cache)
    }
}

/// [`LoadArgs`] and the rules of the calls that process documents: for the
/// commands that run a plugin on batches.
#[derive(Args, Clone)]
pub struct SandboxArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Most actions one plugin call may return per document of its batch.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_actions_per_document)]
    max_actions_per_document: u32,
    /// Let a plugin built for contract 0.1 (which declares no reads) look up
    /// any collection but godwit's metadata collection and system.*, as
    /// before reads were declared; without it such a plugin may look up its
    /// passes' collections only. Plugins of contract 0.2 declare their reads.
    #[arg(long)]
    allow_undeclared_reads: bool,
}

impl SandboxArgs {
    pub fn plugin_host(&self) -> anyhow::Result<PluginHost> {
        let undeclared_reads = match self.allow_undeclared_reads {
            true => UndeclaredReads::Allow,
            false => UndeclaredReads::Refuse,
        };
        self.load.host(self.max_actions_per_document, undeclared_reads)
    }
}

/// Where the database and the journal are.
#[derive(Args, Clone)]
pub struct ConnectionArgs {
    /// MongoDB connection string.
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    uri: Option<String>,
    /// Database to migrate.
    #[arg(long, env = "GODWIT_DB")]
    db: Option<String>,
    /// Collection holding godwit's schema version, history, lock and progress markers.
    #[arg(long, env = "GODWIT_METADATA_COLLECTION", default_value = "godwit_metadata")]
    metadata_collection: String,
    /// Seconds to wait for the server before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    connect_timeout: f64,
    /// Seconds a run keeps retrying through a database outage (server down,
    /// restarting, stepping down) before it stops, resumable.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::db::DEFAULT_RETRY_FOR.as_secs())]
    retry_for: u64,
    /// Journal directory (a sled database).
    #[arg(long, env = "GODWIT_JOURNAL", default_value = DEFAULT_JOURNAL)]
    journal: PathBuf,
    /// Adopt the application's own version document (its `_id` a string):
    /// the current version is read from it, and every stamp (run, upgrade,
    /// init, revert) sets it and appends to its history, in the
    /// application's shape, in the same transaction as godwit's schema
    /// document. Needs transactions (a replica set).
    #[arg(long, env = "GODWIT_VERSION_RECORD", value_name = "COLLECTION:ID")]
    version_record: Option<String>,
    /// The version record's version field (a string), in the document and in each history entry.
    #[arg(long, env = "GODWIT_VERSION_FIELD", value_name = "FIELD", default_value = "version")]
    version_field: String,
    /// The version record's array of history entries.
    #[arg(long, env = "GODWIT_HISTORY_FIELD", value_name = "FIELD", default_value = "history")]
    history_field: String,
    /// The key of a history entry saying what set the version: godwit writes
    /// "upgrade" (run, upgrade), "initialise" (init) or "revert".
    #[arg(
        long,
        env = "GODWIT_HISTORY_ACTION_FIELD",
        value_name = "FIELD",
        default_value = "action"
    )]
    history_action_field: String,
    /// The key of a history entry's time (a UTC datetime).
    #[arg(
        long,
        env = "GODWIT_HISTORY_TIME_FIELD",
        value_name = "FIELD",
        default_value = "timestamp"
    )]
    history_time_field: String,
    /// A constant KEY=VALUE (string) the application's history entries carry,
    /// added to godwit's (repeat, or separate with commas); godwit's own
    /// figures go under `godwit_*` keys.
    #[arg(long, env = "GODWIT_HISTORY_SET", value_name = "KEY=VALUE", value_delimiter = ',')]
    history_set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a migration plugin (dry run unless --execute).
    Run(Box<run::RunCommand>),
    /// Show a plugin directory's version chain and its problems; with a
    /// database (--db and a URI), also its drift from what the database applied.
    Plan(chain::PlanCommand),
    /// Run the pending plugins of a chain in order, stamping after each.
    Upgrade(Box<chain::UpgradeCommand>),
    /// Version, history, pending plugins and drift, unfinished runs, lock
    /// holder; with --version-record, the adopted record's version and
    /// history too, and why it differs from godwit's.
    Status(Box<status::StatusCommand>),
    /// Stamp the schema version of an existing database (with
    /// --version-record, the adopted record too, as an "initialise" entry).
    Init(init::InitCommand),
    /// End the follow phase of a `--follow` run: it processes the changes
    /// made up to now, then verifies and stamps.
    Cutover(cutover::CutoverCommand),
    /// Join a fleet run (`run --execute --workers N`) from another process
    /// or machine: claim and process its partitions until every one is done.
    Worker(Box<worker::WorkerCommand>),
    /// Kubernetes objects for a fleet run's workers (`fleet manifest`).
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Put back what an execute run wrote, from its journaled before-images
    /// (dry run by default); sets the version back to the one before it.
    Revert(Box<revert::RevertCommand>),
    /// List, show, verify, export and replay the local run journal; list a run's reports.
    #[command(subcommand)]
    Journal(journal::JournalCommand),
    /// Inspect, build or try plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Create a plugin project (Rust, Python or JavaScript) with the SDK vendored, tests and a README.
    New(new::NewCommand),
}

/// A bad command-line value found after clap's own checks (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `--db` names a database the server does not have.
#[derive(Debug, thiserror::Error)]
#[error(
    "database {db} does not exist on {uri} (it has no collections); check --db, or create it with `godwit init --version X`"
)]
pub struct UnknownDatabase {
    pub db: String,
    pub uri: String,
}

/// Prints one value as pretty JSON (`--json`), terminal-safe but decoding to
/// the exact original strings (see [`crate::text::json`]).
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<()> {
    crate::text::stdout_line(&crate::text::json(&serde_json::to_string_pretty(value)?));
    Ok(())
}

/// [`print_json`] on one line (JSON lines output).
pub fn print_json_line<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<()> {
    crate::text::stdout_line(&crate::text::json(&serde_json::to_string(value)?));
    Ok(())
}

/// The async runtime for commands that talk to MongoDB. Multi-threaded so
/// that plugin calls can block (`block_in_place`) while lookups run.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// First Ctrl-C / SIGTERM: stop after the current batch. Second: exit now
/// (as safe as kill -9: the journal and the progress marker settle it).
pub fn stop_on_signals(stop: crate::run::StopSignal) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut count = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            count += 1;
            if count == 1 {
                eprintln!(
                    "stopping after the current batch (press Ctrl-C again to stop at once; the run stays resumable)"
                );
                stop.request();
            } else {
                eprintln!("stopping now; resume the run to settle the batch in flight");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}

pub fn main() -> ExitCode {
    if let Err(error) = config::apply() {
        errln!("error: {error:#}");
        return ExitCode::from(exit::USAGE);
    }
    let cli = Cli::parse();
    init_logging(&cli.global);
    let result = match cli.command {
        Command::Run(command) => command.run(&cli.global),
        Command::Plan(command) => command.run(&cli.global),
        Command::Upgrade(command) => command.run(&cli.global),
        Command::Status(command) => command.run(&cli.global),
        Command::Init(command) => command.run(&cli.global),
        Command::Revert(command) => command.run(&cli.global),
        Command::Cutover(command) => command.run(&cli.global),
        Command::Worker(command) => command.run(&cli.global),
        Command::Fleet(command) => command.run(&cli.global),
        Command::Journal(command) => command.run(&cli.global),
        Command::Plugin(command) => command.run(&cli.global),
        Command::New(command) => command.run(&cli.global),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // Errors quote plugin text (names, messages, panics): one escaped line.
            errln!("error: {error:#}");
            ExitCode::from(exit::code_for(&error))
        }
    }
}

fn init_logging(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,godwit=info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Log lines carry plugin text (names, pass names, error and panic
    // messages): every field is escaped so that each event stays one line and
    // no escape sequence reaches the terminal. tracing-subscriber's own
    // sanitizing leaves newlines, CR and bidi controls through.
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let text = crate::text::escape(&text);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{field}={text}")
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .fmt_fields(fields)
        // Colours only on a terminal: piped or redirected logs hold no
        // escape sequence at all, not even ours.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
