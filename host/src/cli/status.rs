//! `godwit status`: the database's version and history, the pending chain
//! and its drift from what the database applied,
//! unfinished runs in the journal, and the lock holder.

use super::{ConnectionArgs, GlobalArgs, LoadArgs};
use crate::chain::Chain;
use crate::db::Recorded;
use crate::journal::{Journal, JournalError, RunStatus};
use crate::text::outln;
use bson::Bson;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct StatusCommand {
    /// Plugin directory (a version chain) to list the pending plugins of.
    #[arg(long, env = "GODWIT_PLUGINS")]
    plugins: Option<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    sandbox: LoadArgs,
}

impl StatusCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let chain = match &self.plugins {
            Some(dir) => Some(Chain::load(&self.sandbox.plugin_host()?, dir)?),
            None => None,
        };
        // A journal in use by a running godwit cannot be opened; say so and go on.
        // No journal directory: nothing ran here yet (and `status` creates none).
        let journal = &self.connection.journal;
        let (unfinished, journal_note) = match journal.exists().then(|| Journal::open(journal)) {
            None => (Vec::new(), None),
            Some(Ok(journal)) => {
                let runs = journal.runs()?;
                (
                    // A fleet partition's run shows in its fleet run's work table.
                    runs.into_iter()
                        .filter(|h| h.status == RunStatus::Running && h.partition.is_none())
                        .collect::<Vec<_>>(),
                    None,
                )
            }
            Some(Err(e @ JournalError::Locked { .. })) => (Vec::new(), Some(e.to_string())),
            Some(Err(e)) => return Err(e.into()),
        };
        super::runtime()?.block_on(async {
            let db = self.connection.connect().await?;
            let schema = db.schema().await?;
            // Shown, not fatal: `status` is where an operator looks first.
            let schema_problem = schema.as_ref().and_then(|s| db.check_schema(s).err()).map(|e| e.to_string());
            let version = schema.as_ref().and_then(|s| s.get_str("version").ok()).map(str::to_string);
            let history = schema.as_ref().map(Recorded::all).unwrap_or_default();
            let adopted = adopted_view(&db, schema.as_ref(), version.as_deref()).await?;
            // Each applied version's plugin file against the one that ran.
            let drift = chain.as_ref().map(|c| crate::chain::drift_of(&c.plugins, &history));
            let lock = db.lock_document().await?;
            let fleet = fleet_view(db.work_table(bson::Document::new()).await?);
            // With an adopted record, pending is counted from the version the application reads.
            let effective = match &adopted {
                Some(a) => a.version.as_deref(),
                None => version.as_deref(),
            };
            let current = effective.and_then(|v| semver::Version::parse(v).ok());
            let pending: Vec<_> = chain
                .iter()
                .flat_map(|c| c.plugins.iter())
                .filter(|p| current.as_ref().is_none_or(|c| p.manifest.version > *c))
                .collect();
            if global.json {
                let json = serde_json::json!({
                    "database": db.name,
                    "version": version,
                    "schema_problem": schema_problem,
                    "version_record": adopted.as_ref().map(|a| serde_json::json!({
                        "record": a.record,
                        "version": a.version,
                        "differs": a.differs,
                        "why": a.why,
                        "problem": a.problem,
                        "history": a.history.iter().map(|h| Bson::Document(h.clone()).into_relaxed_extjson()).collect::<Vec<_>>(),
                    })),
                    "history": history.iter().map(|h| Bson::Document(h.raw.clone()).into_relaxed_extjson()).collect::<Vec<_>>(),
                    "pending": pending.iter().map(|p| serde_json::json!({
                        "name": p.manifest.name, "version": p.manifest.version.to_string(), "file": p.file,
                    })).collect::<Vec<_>>(),
                    "chain_problems": chain.as_ref().map(|c| &c.problems),
                    "drift": drift,
                    "unfinished_runs": unfinished.iter().map(super::journal::HeaderJson::from).collect::<Vec<_>>(),
                    "journal": journal_note,
                    "lock": lock.map(|l| Bson::Document(l).into_relaxed_extjson()),
                    "fleet_runs": fleet,
                });
                super::print_json(&json)?;
                return Ok(ExitCode::SUCCESS);
            }
            outln!("database {}: {}", db.name, version.as_deref().map_or("no schema version".into(), |v| format!("version {v}")));
            if let Some(problem) = &schema_problem {
                outln!("warning: {problem}");
            }
            if let Some(a) = &adopted {
                outln!(
                    "version record {}: {}",
                    a.record,
                    a.version.as_deref().map_or("no version".into(), |v| format!("version {v}"))
                );
                if let Some(why) = &a.why {
                    outln!("note: the two versions differ: {why}");
                }
                if let Some(problem) = &a.problem {
                    outln!("warning: {problem}");
                }
                if !a.history.is_empty() {
                    outln!("version record history:");
                    for h in &a.history {
                        outln!("  {}", entry_line(h, &db));
                    }
                }
            }
            if !history.is_empty() {
                outln!("history:");
                for h in &history {
                    outln!(
                        "  {:>10}  {:<24} run {}  finished {}{}{}",
                        h.version.as_deref().unwrap_or("?"),
                        h.plugin.as_deref().unwrap_or("?"),
                        h.run_id.as_deref().unwrap_or("?"),
                        h.finished_at.map(crate::text::time).unwrap_or_default(),
                        h.verified.as_ref().map(|v| format!("  verified: {v}")).unwrap_or_default(),
                        h.reverts.as_ref().map(|r| format!("  reverts: {r}")).unwrap_or_default(),
                    );
                }
            }
            if let Some(chain) = &chain {
                if pending.is_empty() {
                    outln!("pending: none (at the head of {})", self.plugins.as_ref().unwrap().display());
                } else {
                    outln!("pending:");
                    for p in &pending {
                        outln!("  {:>10}  {:<24} {}", p.manifest.version.to_string(), p.manifest.name, p.file.display());
                    }
                }
                for problem in &chain.problems {
                    outln!("chain problem: {problem}");
                }
                for d in drift.iter().flatten() {
                    if d.refuses() {
                        outln!("drift: {d} (upgrade refuses it without --allow-drift)");
                    } else {
                        outln!("note: {d}");
                    }
                }
            }
            match journal_note {
                Some(note) => outln!("journal: {note}"),
                None if unfinished.is_empty() => outln!("unfinished runs: none"),
                None => {
                    outln!("unfinished runs (resume by running the same command again):");
                    for h in &unfinished {
                        let mode = if h.mode == crate::journal::RunMode::Execute { "execute" } else { "dry" };
                        outln!("  {}  {} {}  {mode}  db {}", h.run_id, h.plugin_name, h.plugin_version, h.database);
                    }
                }
            }
            for run in &fleet {
                for pass in &run.passes {
                    outln!(
                        "fleet run {}, pass {}: {} partitions: {} done, {} in flight, {} pending{}",
                        run.run,
                        pass.pass,
                        pass.partitions,
                        pass.done,
                        pass.in_flight.len(),
                        pass.pending,
                        match pass.in_flight.is_empty() {
                            true => String::new(),
                            false => format!(" (held by {})", crate::text::escape(&pass.in_flight.join(", "))),
                        }
                    );
                }
            }
            match lock {
                Some(l) => outln!(
                    "lock: held by run {} ({}) on {} pid {}, lease until {}",
                    l.get_str("run_id").unwrap_or("?"),
                    l.get_str("plugin").unwrap_or("?"),
                    l.get_str("host").unwrap_or("?"),
                    l.get_i64("pid").unwrap_or(0),
                    l.get_datetime("expires_at").map(|d| crate::text::time(*d)).unwrap_or_default()
                ),
                None => outln!("lock: free"),
            }
            Ok(ExitCode::SUCCESS)
        })
    }
}

/// A fleet run's work table as `status` shows it: per pass, partitions
/// done, in flight (and who holds them) and pending.
#[derive(serde::Serialize)]
struct FleetView {
    run: String,
    passes: Vec<FleetPass>,
}

#[derive(serde::Serialize, Default)]
struct FleetPass {
    pass: u32,
    partitions: u64,
    done: u64,
    pending: u64,
    /// `partition k: host pid N` for each partition whose claim's lease runs.
    in_flight: Vec<String>,
    documents_done: u64,
}

fn fleet_view(table: Vec<(String, crate::db::PartitionState)>) -> Vec<FleetView> {
    let mut runs: Vec<FleetView> = Vec::new();
    for (run, state) in table {
        if runs.last().is_none_or(|r| r.run != run) {
            runs.push(FleetView {
                run,
                passes: Vec::new(),
            });
        }
        let view = runs.last_mut().expect("pushed");
        let pass = state.partition.pass;
        if view.passes.last().is_none_or(|p| p.pass != pass) {
            view.passes.push(FleetPass {
                pass,
                ..Default::default()
            });
        }
        let figures = view.passes.last_mut().expect("pushed");
        figures.partitions += 1;
        match (state.done, &state.holder) {
            (true, _) => {
                figures.done += 1;
                figures.documents_done += state.documents;
            }
            (false, Some(holder)) => figures
                .in_flight
                .push(format!("partition {}: {holder}", state.partition.index)),
            (false, None) => figures.pending += 1,
        }
    }
    runs
}

/// An adopted version record as `status` shows it, next to godwit's own version.
struct AdoptedView {
    record: String,
    version: Option<String>,
    differs: bool,
    /// Why the record's version is not godwit's, when it is not.
    why: Option<String>,
    problem: Option<String>,
    history: Vec<bson::Document>,
}

async fn adopted_view(
    db: &crate::db::Db,
    schema: Option<&bson::Document>,
    ours: Option<&str>,
) -> anyhow::Result<Option<AdoptedView>> {
    let Some(record) = &db.record else { return Ok(None) };
    let document = db.adopted().await?;
    let version = document.as_ref().and_then(|d| record.version_of(d));
    let history: Vec<bson::Document> = document
        .as_ref()
        .and_then(|d| d.get_array(&record.history_field).ok())
        .map(|h| h.iter().filter_map(Bson::as_document).cloned().collect())
        .unwrap_or_default();
    let problem = document
        .as_ref()
        .and_then(|d| db.check_record(record, d, schema).err())
        .map(|e| e.to_string());
    let differs = version.as_deref() != ours;
    let why = differs.then(|| {
        let last = history.last();
        let ours = ours.unwrap_or("none");
        match last {
            None if document.is_none() => {
                format!("the record does not exist yet; godwit's first stamp creates it (godwit: {ours})")
            }
            None => format!("the record's version was set without a history entry (godwit: {ours})"),
            Some(h) if h.contains_key(crate::db::GODWIT_RUN_ID) => format!(
                "godwit's schema document says {ours}, the record's last entry is godwit run {}",
                h.get_str(crate::db::GODWIT_RUN_ID).unwrap_or("?")
            ),
            Some(h) => format!(
                "the application set it ({} {}{}) - godwit's own version is {ours}; godwit reads the record's",
                record.action_field,
                h.get_str(&record.action_field).unwrap_or("?"),
                h.get_datetime(&record.time_field)
                    .map(|t| format!(" at {}", crate::text::time(*t)))
                    .unwrap_or_default()
            ),
        }
    });
    Ok(Some(AdoptedView {
        record: record.describe(&db.name),
        version,
        differs,
        why,
        problem,
        history,
    }))
}

/// One adopted history entry: version, action, time, and whose it is.
fn entry_line(h: &bson::Document, db: &crate::db::Db) -> String {
    let record = db.record.as_ref().expect("an adopted record");
    let by = match h.get_str(crate::db::GODWIT_RUN_ID) {
        Ok(run) => format!("godwit run {run} ({})", h.get_str("godwit_plugin").unwrap_or("?")),
        Err(_) => "application".to_string(),
    };
    format!(
        "{:>10}  {:<12} {}  {by}",
        h.get_str(&record.version_field).unwrap_or("?"),
        h.get_str(&record.action_field).unwrap_or("?"),
        h.get_datetime(&record.time_field)
            .map(|t| crate::text::time(*t))
            .unwrap_or_default(),
    )
}
