//! `godwit plan DIR` and `godwit upgrade DIR`: a plugin directory as a version
//! chain; `upgrade --databases` over many databases is in `tenants`.

use super::run::{RunOptions, outcome_code, outcome_header, outcome_json, outcome_status, print_outcome, shell_word};
use super::tenants::DatabasePattern;
use super::{ConnectionArgs, GlobalArgs, LoadArgs, UsageError, exit};
use crate::chain::{Chain, Drift, DriftError, drift_of};
use crate::db::Db;
use crate::journal::Journal;
use crate::plugin::LoadedPlugin;
use crate::run::{Engine, Observer, ResumeChoice, StopSignal};
use crate::text::{errln, outln};
use anyhow::bail;
use clap::Args;
use std::path::{Path, PathBuf};
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
    sandbox: LoadArgs,
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
    /// Upgrade every database whose name matches, one after the other in
    /// name order (one per tenant), instead of --db: a comma-separated list
    /// of names or globs (`*` any run of characters, `?` one), e.g.
    /// 'tenant_*' or 'acme,globex'. admin, local and config never match. A
    /// database that fails does not stop the others (unless --fail-fast);
    /// the summary names each database's outcome and exit code.
    #[arg(long, value_name = "PATTERN")]
    databases: Option<String>,
    /// With --databases: stop at the first database that fails; the rest
    /// are reported as skipped.
    #[arg(long, requires = "databases")]
    fail_fast: bool,
    #[command(flatten)]
    options: RunOptions,
}

/// What every database's upgrade shares: the chain, the journal, the
/// options, and how to print.
pub(super) struct Upgrade<'a> {
    pub dir: &'a Path,
    pub plugins: &'a [LoadedPlugin],
    pub journal: &'a Journal,
    pub options: &'a RunOptions,
    pub allow_drift: bool,
    pub global: &'a GlobalArgs,
    pub observer: &'a dyn Observer,
    pub stop: StopSignal,
    /// `--databases`: each database is one of many; step JSON is gathered
    /// into the summary rather than printed, and hints name the database.
    pub fleet: bool,
}

/// One database's upgrade as it went: where it started, what ran, and its
/// exit code (0, or the code of the step that did not finish).
#[derive(Default)]
pub(super) struct Upgraded {
    pub from: Option<semver::Version>,
    pub pending: Vec<String>,
    /// Each step that ran (plugin, version, run id, status), in order.
    pub runs: Vec<Step>,
    /// The step being run (`plugin version`) when the upgrade stopped with an error.
    pub failed_step: Option<String>,
    pub code: u8,
}

#[derive(serde::Serialize)]
pub(super) struct Step {
    pub plugin: String,
    pub version: String,
    pub run_id: String,
    pub status: &'static str,
    /// With --json in fleet mode: the step's report as `upgrade --json` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

impl UpgradeCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let options = &self.options;
        // Everything local is checked before the database is touched.
        let pattern = self.databases.as_deref().map(DatabasePattern::parse).transpose()?;
        if pattern.is_some() && options.connection.db.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(UsageError(
                "--databases selects the databases itself: drop --db (or GODWIT_DB, or db in godwit.toml)".to_string(),
            )
            .into());
        }
        let host = options.sandbox.plugin_host()?;
        let plugins = Chain::load(&host, &self.dir)?.valid(&self.dir)?;
        let journal = Journal::open(&options.connection.journal)?;
        super::runtime()?.block_on(async {
            let stop = StopSignal::default();
            super::stop_on_signals(stop.clone());
            let observer = super::progress::Bars::for_terminal(global);
            let upgrade = Upgrade {
                dir: &self.dir,
                plugins: &plugins,
                journal: &journal,
                options,
                allow_drift: self.allow_drift,
                global,
                observer: &observer,
                stop,
                fleet: pattern.is_some(),
            };
            match &pattern {
                None => {
                    let db = options.connection.connect().await?;
                    let mut upgraded = Upgraded::default();
                    upgrade.database(&db, &mut upgraded).await?;
                    if upgraded.code == exit::OK && !upgraded.pending.is_empty() && !options.execute && !global.json {
                        outln!(
                            "dry run of the chain: nothing was written; each step was previewed against the current data"
                        );
                    }
                    Ok(ExitCode::from(upgraded.code))
                }
                Some(pattern) => upgrade.databases(pattern, self.fail_fast).await,
            }
        })
    }
}

impl Upgrade<'_> {
    /// The command that continues `db`'s upgrade (interrupted, failed).
    pub fn rerun_hint(&self, databases: Option<&str>) -> String {
        format!(
            "godwit upgrade {}{}{}{}",
            shell_word(&self.dir.display().to_string()),
            databases.map_or(String::new(), |d| format!(" --databases {}", shell_word(d))),
            if self.options.execute { " --execute" } else { "" },
            super::run::journal_flag(&self.options.connection.journal)
        )
    }

    /// Runs the pending part of the chain on one database, stamping after
    /// each step; stops at the first step that does not finish. `upgraded`
    /// says how far it got, also when it returns an error.
    pub async fn database(&self, db: &Db, upgraded: &mut Upgraded) -> anyhow::Result<()> {
        let (options, global) = (self.options, self.global);
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
        let drift = drift_of(self.plugins, &db.history().await?);
        if !self.allow_drift && drift.iter().any(Drift::refuses) {
            bail!(DriftError {
                dir: self.dir.to_path_buf(),
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
        let pending: Vec<_> = self
            .plugins
            .iter()
            .filter(|p| current.as_ref().is_none_or(|c| p.manifest.version > *c))
            .collect();
        upgraded.from = current.clone();
        upgraded.pending = pending.iter().map(|p| p.manifest.version.to_string()).collect();
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
            return Ok(());
        }
        if !global.json {
            outln!(
                "database {} is at {at}; pending: {}",
                db.name,
                upgraded.pending.join(" -> ")
            );
        }
        let hint = self.rerun_hint(self.fleet.then_some(db.name.as_str()));
        for plugin in pending {
            upgraded.failed_step = Some(format!("{} {}", plugin.manifest.name, plugin.manifest.version));
            let engine = Engine {
                observer: self.observer,
                plugin,
                db,
                journal: self.journal,
                stop: self.stop.clone(),
            };
            let outcome = engine.run(&options.request(Vec::new(), ResumeChoice::Auto)).await?;
            upgraded.failed_step = None;
            let journal_dir = &options.connection.journal;
            let (code, report) = if self.fleet && global.json {
                (outcome_code(&outcome), Some(outcome_json(&outcome)))
            } else {
                let _ = print_outcome(&outcome, global, &hint, journal_dir);
                (outcome_code(&outcome), None)
            };
            let header = outcome_header(&outcome);
            upgraded.runs.push(Step {
                plugin: header.plugin_name.clone(),
                version: header.plugin_version.clone(),
                run_id: header.run_id.clone(),
                status: outcome_status(&outcome),
                report,
            });
            if code != exit::OK {
                upgraded.code = code;
                break;
            }
        }
        Ok(())
    }
}
