//! `godwit revert RUN [--execute]`: puts back the documents an execute run
//! wrote, from its journaled before-images (dry run by default).

use super::{ConnectionArgs, GlobalArgs, UsageError, exit};
use crate::journal::{Journal, RunMode};
use crate::run::StopSignal;
use crate::run::revert::{Revert, RevertReport, RevertRequest};
use crate::text::outln;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct RevertCommand {
    /// The execute run to revert (see `godwit journal list`); a fleet run
    /// (`--workers`) is reverted with its partitions' runs, if this journal
    /// and the --worker-journal directories hold all of them.
    run: String,
    /// Write. Without it the revert is a dry run: it reports what it would
    /// restore and which documents changed since the run.
    #[arg(long)]
    execute: bool,
    /// Overwrite documents changed since the run, and revert a run even when
    /// later runs were stamped after it.
    #[arg(long)]
    force: bool,
    /// Documents per batch (one transaction each).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
    /// For a fleet run whose partitions `godwit worker` processes ran with
    /// journals of their own: a worker's journal directory, collected from
    /// it once it stopped (repeat for each). Read for the runs of the fleet
    /// run's partitions it holds; the revert's own run goes in --journal.
    #[arg(long = "worker-journal", value_name = "DIR")]
    worker_journals: Vec<PathBuf>,
    /// Lease of the database lock, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..))]
    lease: u64,
    #[command(flatten)]
    connection: ConnectionArgs,
}

impl RevertCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let journal = Journal::open(&self.connection.journal)?;
        let workers = self
            .worker_journals
            .iter()
            .map(|dir| worker_journal(dir, &self.connection.journal))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Fail on an unknown run before connecting.
        journal.header(&self.run)?;
        let request = RevertRequest {
            run: self.run.clone(),
            mode: if self.execute {
                RunMode::Execute
            } else {
                RunMode::DryRun
            },
            force: self.force,
            batch_size: self.batch_size as usize,
            lease: Duration::from_secs(self.lease),
        };
        let report = super::runtime()?.block_on(async {
            let db = self.connection.connect().await?;
            let stop = StopSignal::default();
            super::stop_on_signals(stop.clone());
            Revert {
                db: &db,
                journal: &journal,
                workers: &workers,
                stop: &stop,
            }
            .run(&request)
            .await
        })?;
        print(&report, global);
        Ok(ExitCode::from(if report.complete() {
            exit::OK
        } else {
            exit::REVERT_INCOMPLETE
        }))
    }
}

/// A worker's journal as `--worker-journal` names it: an existing journal
/// (opening a directory without one would create an empty journal there),
/// not `--journal` itself.
fn worker_journal(dir: &Path, journal: &Path) -> anyhow::Result<Journal> {
    let same = dir
        .canonicalize()
        .ok()
        .is_some_and(|d| journal.canonicalize().ok() == Some(d));
    if same {
        return Err(UsageError(format!(
            "--worker-journal {} is the --journal directory itself; name the other workers' journals",
            dir.display()
        ))
        .into());
    }
    if !dir.join("conf").is_file() || !dir.join("db").is_file() {
        return Err(UsageError(format!(
            "--worker-journal {} holds no godwit journal; name the --journal directory a `godwit worker` ran with",
            dir.display()
        ))
        .into());
    }
    Ok(Journal::open(dir)?)
}

fn print(report: &RevertReport, global: &GlobalArgs) {
    if global.json {
        super::print_json(report).expect("report serializes");
        return;
    }
    let verb = |dry: &'static str, done: &'static str| if report.execute { done } else { dry };
    match &report.run_id {
        Some(id) => outln!(
            "revert {id} of run {} ({} {}):",
            report.reverts,
            report.plugin,
            report.version
        ),
        None => outln!(
            "dry revert of run {} ({} {}):",
            report.reverts,
            report.plugin,
            report.version
        ),
    }
    outln!("  {:>8} documents the run wrote", report.documents);
    outln!(
        "  {:>8} {}",
        report.restore,
        verb("to restore from before-images", "restored from before-images")
    );
    outln!(
        "  {:>8} {}",
        report.remove,
        verb("inserted by the run, to delete", "inserted by the run, deleted")
    );
    outln!("  {:>8} already as before the run", report.unchanged);
    if report.conflicts > 0 {
        outln!(
            "  {:>8} changed since the run: {}",
            report.conflicts,
            match (report.forced, report.execute) {
                (true, true) => "overwritten (--force)",
                (true, false) => "would be overwritten (--force)",
                (false, _) => "left as they are (--force overwrites them)",
            }
        );
        for c in &report.conflicts_listed {
            outln!("           {} _id {}", c.collection, c.id);
        }
        if report.conflicts as usize > report.conflicts_listed.len() {
            outln!(
                "           ... and {} more",
                report.conflicts as usize - report.conflicts_listed.len()
            );
        }
    }
    for s in &report.schema {
        outln!("  schema: {}: {}", s.op, s.outcome);
    }
    match (&report.version_after, &report.version_note) {
        (Some(v), _) => outln!(
            "database version {} {}",
            verb("would go back to", "set back to"),
            v.as_deref().unwrap_or("(none)")
        ),
        (None, Some(note)) => outln!("{note}"),
        (None, None) => {}
    }
    if !report.execute {
        outln!("dry run: nothing was written; run again with --execute to revert");
    }
}
