//! `godwit worker PLUGIN`: a worker process of a fleet run (`run --execute
//! --workers N` started it). It finds the run by the plugin's sha256 in the
//! database's metadata collection, claims partitions of the pass the run is
//! on while the run holds the database's lock, processes each as a run in
//! its own journal, and exits once every partition of the last pass is done
//! (the fleet run then verifies and stamps) or the run was stamped. Any
//! number of them, on any machines: a Kubernetes Indexed Job's pods.

use super::{ConnectionArgs, GlobalArgs, SandboxArgs};
use crate::journal::Journal;
use crate::run::{Engine, ResumeChoice, RunRequest, StopSignal, VerifyPolicy, WorkRequest};
use crate::text::outln;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct WorkerCommand {
    /// The plugin component (.wasm): the same file the fleet run runs (its
    /// sha256 finds the run).
    plugin: std::path::PathBuf,
    /// The fleet run to join (by default the plugin's one unfinished fleet
    /// run on the database).
    #[arg(long, value_name = "RUN")]
    run: Option<String>,
    /// Partitions this process works on at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,
    /// Seconds to wait for a fleet run to join (not started yet, or its
    /// process restarting) before giving up with exit 20.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    wait: u64,
    /// Throttle: at most this many documents per second, for this process.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_docs_per_sec: Option<u32>,
    /// After a batch whose commit took longer than this, wait before the
    /// next one (as `run --max-commit-ms`).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    max_commit_ms: Option<u64>,
    /// Wait while a secondary lags the primary by more than this (as `run --max-lag-ms`).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    max_lag_ms: Option<u64>,
    /// Batches read ahead of the one being processed (0: none).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=16))]
    read_ahead: u32,
    /// Seconds of server time a partition's query may take without returning a document.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::run::DEFAULT_QUERY_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    query_timeout: u64,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

impl WorkerCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let plugin = self.sandbox.plugin_host()?.load(&self.plugin)?;
        // What the fleet run's own document does not set: this process's pacing.
        let local = RunRequest {
            mode: crate::journal::RunMode::Execute,
            params: Vec::new(),
            batch_size: None,
            resume: ResumeChoice::Auto,
            lease: Duration::from_secs(30),
            max_docs_per_sec: self.max_docs_per_sec,
            verify: VerifyPolicy::Require,
            pause_file: None,
            before_images: true,
            write_guard: true,
            max_commit: self.max_commit_ms.map(Duration::from_millis),
            max_lag: self.max_lag_ms.map(Duration::from_millis),
            read_ahead: self.read_ahead as usize,
            plan: None,
            allow_missing_collections: false,
            allow_at_least_once: false,
            allow_repeat: false,
            query_timeout: Duration::from_secs(self.query_timeout),
            follow: None,
            workers: None,
        };
        let request = WorkRequest {
            run: self.run.clone(),
            workers: self.workers,
            wait: Duration::from_secs(self.wait),
            local,
        };
        let outcome = super::runtime()?.block_on(async {
            let db = self.connection.connect().await?;
            let journal = Journal::open(&self.connection.journal)?;
            let stop = StopSignal::default();
            super::stop_on_signals(stop.clone());
            let observer = crate::run::Quiet;
            let engine = Engine {
                observer: &observer,
                plugin: &plugin,
                db: &db,
                journal: &journal,
                stop,
            };
            engine.work(&request).await
        })?;
        if global.json {
            super::print_json(&serde_json::to_value(&outcome)?)?;
        } else if !global.quiet {
            let run = outcome.run.as_deref().unwrap_or("?");
            match outcome.status {
                "finished" => outln!(
                    "worker: fleet run {run}: every partition is done; the run verifies and stamps (`godwit status`)"
                ),
                "stamped" => outln!("worker: fleet run {run} is stamped; nothing left to do"),
                _ => outln!("worker: stopped; fleet run {run} goes on (start a worker again to help it)"),
            }
        }
        Ok(match outcome.status {
            "interrupted" => ExitCode::from(super::exit::INTERRUPTED),
            _ => ExitCode::SUCCESS,
        })
    }
}
