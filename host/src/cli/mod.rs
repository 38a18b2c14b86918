//! The command line: argument definitions, logging setup, and the mapping of
//! errors to exit codes. **Invariant:** only this module knows about clap,
//! terminals and exit codes.

mod plugin;

use crate::plugin::cache::CompileCache;
use crate::plugin::{CallError, Limits, LoadError, PluginHost};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "godwit", version, about = "Run database migrations shipped as sandboxed WebAssembly components")]
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
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

/// Limits applied to every call into a plugin.
#[derive(Args, Clone)]
pub struct SandboxArgs {
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

impl SandboxArgs {
    pub fn plugin_host(&self) -> anyhow::Result<PluginHost> {
        if !(self.call_timeout > 0.0 && self.call_timeout.is_finite()) {
            anyhow::bail!("--call-timeout must be a positive number of seconds, got {}", self.call_timeout);
        }
        let limits = Limits {
            fuel_per_call: self.fuel,
            call_timeout: Duration::from_secs_f64(self.call_timeout),
            memory_bytes: self.memory_limit << 20,
        };
        let cache = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(CompileCache::new(dir.clone())),
            (None, false) => CompileCache::default_dir().map(CompileCache::new),
        };
        PluginHost::new(limits, cache)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Inspect or build plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Exit codes; each class of failure has its own so that scripts can branch.
/// Documented in README.md.
pub mod exit {
    pub const OK: u8 = 0;
    /// Anything not listed below.
    pub const ERROR: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The plugin file was refused: unreadable, not wasm, wrong contract, bad manifest.
    pub const PLUGIN_REFUSED: u8 = 3;
    /// The plugin trapped (fuel, deadline, memory, panic) or returned an error.
    pub const PLUGIN_FAILED: u8 = 4;
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let result = match cli.command {
        Command::Plugin(command) => command.run(&cli.global),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code_for(&error))
        }
    }
}

fn exit_code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(load) = cause.downcast_ref::<LoadError>() {
            return match load {
                LoadError::Call { .. } => exit::PLUGIN_FAILED,
                _ => exit::PLUGIN_REFUSED,
            };
        }
        if cause.downcast_ref::<CallError>().is_some() {
            return exit::PLUGIN_FAILED;
        }
    }
    exit::ERROR
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
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
