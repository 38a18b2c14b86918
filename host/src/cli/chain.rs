//! `godwit plan DIR` and `godwit upgrade DIR`: a plugin directory as a version chain.

use super::run::{RunOptions, print_outcome};
use super::{ConnectionArgs, GlobalArgs, SandboxArgs, exit};
use crate::chain::{Chain, Drift, DriftError, drift_of};
use crate::journal::Journal;
use crate::run::{Engine, Outcome, ResumeChoice, StopSignal};
use crate::text::{errln, outln};
use anyhow::bail;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `godwit plan DIR`; with a database (`--db` and a URI: flag, environment or
/// config) it also compares every version the database applied with the
/// directory's plugin file for it (drift, exit 17).
#[derive(Args)]
pub struct PlanCommand {
    /// Directory of plugin components (*.wasm).
    #[arg(env = "GODWIT_PLUGINS")]
    dir: PathBuf,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    connection: ConnectionArgs,
}

impl PlanCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let host = self.sandbox.plugin_host()?;
        let chain = Chain::load(&host, &self.dir)?;
        let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        // Without a database there is no history to compare with: the
        // directory alone is checked.
        let drift = if given(&self.connection.uri) && given(&self.connection.db) {
            let history = super::runtime()?.block_on(async {
                let db = self.connection.connect().await?;
                anyhow::Ok(db.history().await?)
            })?;
            Some(drift_of(&chain.plugins, &history))
        } else {
            None
        };
        let drifted = drift.iter().flatten().any(Drift::refuses);
        if global.json {
            let plugins: Vec<_> = chain
                .plugins
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": p.file, "name": p.manifest.name, "version": p.manifest.version.to_string(),
                        "requires": p.manifest.requires.as_ref().map(ToString::to_string), "sha256": p.sha256_hex(),
                    })
                })
                .collect();
            super::print_json(&serde_json::json!({"chain": plugins, "problems": chain.problems, "drift": drift}))?;
        } else {
            for p in &chain.plugins {
                let requires = p
                    .manifest
                    .requires
                    .as_ref()
                    .map_or("any".to_string(), ToString::to_string);
                outln!(
                    "{:>12}  {:<28} requires {:<12} {}",
                    p.manifest.version.to_string(),
                    p.manifest.name,
                    requires,
                    p.file.display()
                );
            }
            for problem in &chain.problems {
                errln!("problem: {problem}");
            }
            for d in drift.iter().flatten() {
                errln!("{}: {d}", if d.refuses() { "drift" } else { "note" });
            }
            if chain.problems.is_empty() {
                outln!("chain of {} plugins is consistent", chain.plugins.len());
            }
            if let (Some(_), Some(db), false) = (&drift, &self.connection.db, drifted) {
                outln!(
                    "no drift: every plugin in the directory for a version database {db} applied is the file that ran"
                );
            }
        }
        Ok(ExitCode::from(if !chain.problems.is_empty() {
            exit::CHAIN
        } else if drifted {
            exit::DRIFT
        } else {
            exit::OK
        }))
    }
}

#[derive(Args)]
pub struct UpgradeCommand {
    /// Directory of plugin components (*.wasm), a version chain.
    #[arg(env = "GODWIT_PLUGINS")]
    dir: PathBuf,
    /// Upgrade even if the plugin file of a version the database applied is
    /// not the one that ran (its sha256 differs from the history's).
    #[arg(long)]
    allow_drift: bool,
    #[command(flatten)]
    options: RunOptions,
}

impl UpgradeCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let options = &self.options;
        let host = options.sandbox.plugin_host()?;
        let plugins = Chain::load(&host, &self.dir)?.valid(&self.dir)?;
        let journal = Journal::open(&options.connection.journal)?;
        super::runtime()?.block_on(async {
            let db = options.connection.connect().await?;
            let current = db.current_version().await?;
            let current = match &current {
                Some(v) => Some(semver::Version::parse(v).map_err(|e| {
                    anyhow::anyhow!(
                        "database {} has schema version {v:?}, which is not a semantic version: {e}",
                        db.name
                    )
                })?),
                None => {
                    let names = db.db.list_collection_names().await?;
                    let data: Vec<&String> = names
                        .iter()
                        .filter(|n| **n != db.metadata && !n.starts_with("system."))
                        .filter(|n| db.record.as_ref().is_none_or(|r| **n != r.collection))
                        .collect();
                    if !data.is_empty() {
                        bail!(crate::run::VersionError::UnstampedData {
                            db: db.name.clone(),
                            collections: data.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
                        });
                    }
                    None
                }
            };
            // The schema is trusted (checked above): compare what it applied
            // with the directory before any step runs.
            let drift = drift_of(&plugins, &db.history().await?);
            if !self.allow_drift && drift.iter().any(Drift::refuses) {
                bail!(DriftError {
                    dir: self.dir.clone(),
                    db: db.name.clone(),
                    drift,
                });
            }
            for d in &drift {
                let allowed = if d.refuses() {
                    "drift allowed (--allow-drift): "
                } else {
                    ""
                };
                errln!("warning: {allowed}{d}");
            }
            let pending: Vec<_> = plugins
                .iter()
                .filter(|p| current.as_ref().is_none_or(|c| p.manifest.version > *c))
                .collect();
            let at = current
                .as_ref()
                .map_or("no version".to_string(), |v| format!("version {v}"));
            if pending.is_empty() {
                if !global.json {
                    outln!(
                        "database {} is at {at}, the head of {}: nothing to do",
                        db.name,
                        self.dir.display()
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !global.json {
                let steps: Vec<String> = pending.iter().map(|p| p.manifest.version.to_string()).collect();
                outln!("database {} is at {at}; pending: {}", db.name, steps.join(" -> "));
            }
            let stop = StopSignal::default();
            super::stop_on_signals(stop.clone());
            let observer = super::progress::Bars::for_terminal(global);
            for plugin in pending {
                let engine = Engine {
                    observer: &observer,
                    plugin,
                    db: &db,
                    journal: &journal,
                    stop: stop.clone(),
                };
                let outcome = engine.run(&options.request(Vec::new(), ResumeChoice::Auto)).await?;
                let journal_dir = &options.connection.journal;
                let hint = format!(
                    "godwit upgrade {}{}{}",
                    self.dir.display(),
                    if options.execute { " --execute" } else { "" },
                    super::run::journal_flag(journal_dir)
                );
                let code = print_outcome(&outcome, global, &hint, journal_dir);
                if !matches!(outcome, Outcome::Finished { .. }) {
                    return Ok(code);
                }
            }
            if !options.execute && !global.json {
                outln!("dry run of the chain: nothing was written; each step was previewed against the current data");
            }
            Ok(ExitCode::SUCCESS)
        })
    }
}
