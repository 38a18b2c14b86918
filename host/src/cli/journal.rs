//! `godwit journal list | show | reports | verify | export | replay`: what
//! the local journal holds (every report of a run included), whether its hash chains are intact (and match the heads the
//! database's history recorded), and whether a plugin reproduces a run.

use super::{GlobalArgs, SandboxArgs, exit};
use crate::hash::to_hex;
use crate::journal::{Entry, Journal, Record, RunHeader, RunMode};
use crate::run::replay::replay;
use crate::text::outln;
use bson::{Bson, Document};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct JournalArg {
    /// Journal directory (a sled database).
    #[arg(long, env = "GODWIT_JOURNAL", default_value = super::DEFAULT_JOURNAL)]
    journal: PathBuf,
}

#[derive(Subcommand)]
pub enum JournalCommand {
    /// List the runs in the journal, oldest first.
    List {
        #[command(flatten)]
        journal: JournalArg,
    },
    /// Show a run's header and entries.
    Show {
        run: String,
        #[command(flatten)]
        journal: JournalArg,
    },
    /// Recompute every entry's hash and the chain of one run (or of all runs);
    /// with --uri and --db, also compare each chain's head with the head the
    /// database's history recorded.
    Verify {
        run: Option<String>,
        #[command(flatten)]
        journal: JournalArg,
        /// MongoDB connection string (compare heads with the database's history).
        #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
        uri: Option<String>,
        #[arg(long, env = "GODWIT_DB", requires = "uri")]
        db: Option<String>,
        #[arg(long, env = "GODWIT_METADATA_COLLECTION", default_value = "godwit_metadata")]
        metadata_collection: String,
    },
    /// Export a run's entries as JSON lines, documents as MongoDB Extended JSON.
    Export {
        run: String,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        #[command(flatten)]
        journal: JournalArg,
    },
    /// List every report a run's plugin returned (the run summary shows only
    /// the first few of each kind), in journal order; with --json one JSON
    /// object per line.
    Reports {
        /// The run (its id, as `journal list` shows it).
        run: String,
        /// Only the reports of this kind.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        #[command(flatten)]
        journal: JournalArg,
    },
    /// Re-execute a plugin on a run's journaled inputs and lookups (no
    /// database) and compare its actions with the journaled ones.
    Replay {
        run: String,
        #[arg(long)]
        plugin: PathBuf,
        #[command(flatten)]
        journal: JournalArg,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
}

fn ext(bytes: &[u8]) -> serde_json::Value {
    match Document::from_reader(bytes) {
        Ok(doc) => Bson::Document(doc).into_canonical_extjson(),
        Err(e) => serde_json::json!({"$invalidBson": e.to_string(), "$hex": hex::encode(bytes)}),
    }
}

/// The follow phase's entries: stream positions (resume tokens), windows
/// and the proof; a window's documents only in full.
fn follow_json(entry: &Entry, full: bool) -> Option<serde_json::Value> {
    let time = |ms: Option<i64>| ms.and_then(|ms| bson::DateTime::from_millis(ms).try_to_rfc3339_string().ok());
    match &entry.record {
        Record::FollowFrom { position } => Some(serde_json::json!({"from": ext(position)})),
        Record::FollowWindow(w) => {
            let mut json = serde_json::json!({
                "window": w.number, "from": ext(&w.from), "to": ext(&w.to), "events": w.events,
                "documents": w.documents.len(), "last_event_at": time(w.last_event_ms), "cutover": w.cutover,
            });
            if full {
                json["ids"] = w
                    .documents
                    .iter()
                    .map(|(collection, id)| {
                        let id = ext(id);
                        serde_json::json!({"collection": collection, "_id": id.get("_id").cloned().unwrap_or(id)})
                    })
                    .collect();
            }
            Some(json)
        }
        Record::FollowDone(d) => Some(serde_json::json!({
            "from": ext(&d.from), "to": ext(&d.to), "windows": d.windows, "documents": d.documents,
            "cutover_at": time(d.cutover_ms),
        })),
        _ => None,
    }
}

fn entry_json(run: &str, entry: &Entry, hash: &[u8; 32], full: bool) -> serde_json::Value {
    let batch = entry.batch();
    let batch_seq = match &entry.record {
        Record::Committed(commit) => Some(commit.batch_seq),
        Record::Conflict { batch_seq, .. } | Record::Images { batch_seq, .. } => Some(*batch_seq),
        _ => None,
    };
    let mut json = serde_json::json!({
        "run_id": run,
        "seq": entry.seq,
        "kind": entry.kind(),
        "at": bson::DateTime::from_millis(entry.at_ms).try_to_rfc3339_string().unwrap_or_default(),
        "pass": entry.pass(),
        "batch_seq": batch_seq,
        "checkpoint": batch.and_then(|b| b.checkpoint.as_deref()).map(ext),
        "inputs_sha256": batch.map(|b| to_hex(&b.inputs_hash)),
        "actions_sha256": batch.map(|b| to_hex(&b.actions_hash)),
        "counts": entry.counts(),
        "fuel": entry.fuel(),
        "note": note(entry),
        "images": entry.images().len(),
        // A commit whose images were journaled before it: that entry's seq.
        "images_at": match &entry.record {
            Record::Committed(commit) => commit.images_at,
            _ => None,
        },
        "prev_hash": to_hex(&entry.prev_hash),
        "hash": to_hex(hash),
    });
    if let Some(follow) = follow_json(entry, full) {
        json["follow"] = follow;
    }
    // The write guard's refusal: which documents another writer changed.
    if let Record::Conflict { changed, .. } = &entry.record {
        json["changed"] = changed
            .iter()
            .map(|key| {
                let id = ext(key);
                id.get("_id").cloned().unwrap_or(id)
            })
            .collect();
    }
    // A fleet pass done: which runs wrote each partition, and where the
    // journals of the processes that claimed it were (for collecting them).
    if let Record::PartitionsDone { partitions, .. } = &entry.record {
        json["partitions"] = partitions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "index": p.index,
                    "documents": p.documents,
                    "runs": p.runs,
                    "holders": p.holders.iter().map(|h| serde_json::json!({
                        "host": h.host, "journal": h.journal, "path": h.path,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    if full {
        let (inputs, actions) = batch.map_or((&[][..], &[][..]), |b| (&b.inputs[..], &b.actions[..]));
        json["inputs"] = inputs.iter().map(|d| ext(d)).collect();
        json["actions"] = actions.iter().map(|d| ext(d)).collect();
        json["lookups"] = entry
            .lookups()
            .iter()
            .map(|l| {
                serde_json::json!({
                    "collection": l.collection,
                    "filter": ext(&l.filter),
                    "projection": l.projection.as_deref().map(ext),
                    "limit": l.limit,
                    "result": match &l.result {
                        Ok(docs) => serde_json::json!({"ok": docs.iter().map(|d| ext(d)).collect::<Vec<_>>()}),
                        Err(e) => serde_json::json!({"error": e}),
                    },
                })
            })
            .collect();
        json["images"] = entry
            .images()
            .iter()
            .map(|image| {
                let id = ext(&image.id);
                serde_json::json!({
                    "collection": image.collection,
                    "_id": id.get("_id").cloned().unwrap_or(id),
                    "before": image.before.as_deref().map(ext),
                    "after_sha256": image.after_hash.as_ref().map(to_hex),
                })
            })
            .collect();
    }
    json
}

/// A run's header as `journal list/show --json` print it: the CLI's own
/// output type, so the journal's storage struct can change format without
/// changing what scripts read (the field names are those of format 3).
#[derive(serde::Serialize)]
pub(super) struct HeaderJson<'a> {
    format: u32,
    run_id: &'a str,
    plugin_name: &'a str,
    plugin_version: &'a str,
    plugin_sha256: &'a str,
    plugin_file: &'a str,
    params: &'a [(String, String)],
    params_hash: &'a str,
    database: &'a str,
    uri: &'a str,
    metadata_collection: &'a str,
    mode: RunMode,
    host_version: &'a str,
    wasmtime_version: &'a str,
    started_at_ms: i64,
    status: &'a crate::journal::RunStatus,
    finished_at_ms: Option<i64>,
    final_entries: Option<u64>,
    final_head: Option<&'a str>,
    before_images: bool,
    reverts: Option<&'a str>,
}

impl<'a> From<&'a RunHeader> for HeaderJson<'a> {
    fn from(h: &'a RunHeader) -> Self {
        HeaderJson {
            format: h.format,
            run_id: &h.run_id,
            plugin_name: &h.plugin_name,
            plugin_version: &h.plugin_version,
            plugin_sha256: &h.plugin_sha256,
            plugin_file: &h.plugin_file,
            params: &h.params,
            params_hash: &h.params_hash,
            database: &h.database,
            uri: &h.uri,
            metadata_collection: &h.metadata_collection,
            mode: h.mode,
            host_version: &h.host_version,
            wasmtime_version: &h.wasmtime_version,
            started_at_ms: h.started_at_ms,
            status: &h.status,
            finished_at_ms: h.finished_at_ms,
            final_entries: h.final_entries,
            final_head: h.final_head.as_deref(),
            before_images: h.before_images,
            reverts: h.reverts.as_deref(),
        }
    }
}

/// `journal reports`: one line per report, streamed (a run may hold
/// millions); plugin text escaped (`text::escape`, or `text::json`).
fn print_reports(journal: &Journal, run: &str, kind: Option<&str>, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut count = 0u64;
    for report in crate::run::reports::stream(journal, run, kind)? {
        let report = report?;
        count += 1;
        let line = if json {
            crate::text::json(&serde_json::to_string(&serde_json::json!({
                "run_id": run, "seq": report.seq, "pass": report.pass, "kind": report.kind,
                "key": report.key, "message": report.message, "pending": report.pending,
            }))?)
            .into_owned()
        } else {
            crate::text::escape(&format!(
                "{:>6}  {:<8} {}  {}: {}{}",
                report.seq,
                report.pass.map_or("finish".into(), |p| format!("pass {p}")),
                report.kind,
                report.key,
                report.message,
                if report.pending {
                    "  (batch not committed yet)"
                } else {
                    ""
                }
            ))
            .into_owned()
        };
        writeln!(out, "{line}")?;
    }
    if !json {
        let of_kind = kind.map(|k| format!(" of kind {k}")).unwrap_or_default();
        writeln!(
            out,
            "{}",
            crate::text::escape(&format!("{count} reports{of_kind} in run {run}"))
        )?;
    }
    out.flush()?;
    Ok(())
}

fn print_header(h: &RunHeader) {
    let mode = if h.mode == RunMode::Execute { "execute" } else { "dry" };
    outln!(
        "{}  {} {}  {mode}  {:?}  db {}  started {}",
        h.run_id,
        h.plugin_name,
        h.plugin_version,
        h.status,
        h.database,
        crate::text::time(bson::DateTime::from_millis(h.started_at_ms))
    );
}

impl JournalCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        match self {
            JournalCommand::List { journal } => {
                let journal = Journal::open(&journal.journal)?;
                let runs = journal.runs()?;
                if global.json {
                    super::print_json(&runs.iter().map(HeaderJson::from).collect::<Vec<_>>())?;
                } else {
                    runs.iter().for_each(print_header);
                }
                Ok(ExitCode::SUCCESS)
            }
            JournalCommand::Show { run, journal } => {
                let journal = Journal::open(&journal.journal)?;
                let header = journal.header(&run)?;
                let entries = journal.entries(&run)?;
                if global.json {
                    let entries: Vec<_> = entries.iter().map(|(e, h)| entry_json(&run, e, h, false)).collect();
                    let header = HeaderJson::from(&header);
                    super::print_json(&serde_json::json!({"header": header, "entries": entries}))?;
                    return Ok(ExitCode::SUCCESS);
                }
                print_header(&header);
                outln!("plugin {} sha256 {}", header.plugin_file, header.plugin_sha256);
                outln!("params {:?}  uri {}", header.params, header.uri);
                for (e, hash) in &entries {
                    let images = match e.images().len() {
                        0 => String::new(),
                        n => format!("  ({n} before-images)"),
                    };
                    let counts = e.counts();
                    outln!(
                        "{:>6}  {:<14} pass {:<4} docs {:>6}  upd {:>6} ins {:>6} del {:>6} rep {:>5}  {}  {}{images}",
                        e.seq,
                        format!("{:?}", e.kind()),
                        e.pass().map_or("-".into(), |p| p.to_string()),
                        counts.documents,
                        counts.updates,
                        counts.inserts,
                        counts.deletes,
                        counts.reports,
                        &to_hex(hash)[..16],
                        note(e)
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            JournalCommand::Export { run, journal, .. } => {
                let journal = Journal::open(&journal.journal)?;
                journal.header(&run)?;
                let mut out = std::io::stdout().lock();
                for item in journal.iter_entries(&run)? {
                    let (entry, hash) = item?;
                    use std::io::Write;
                    writeln!(
                        out,
                        "{}",
                        crate::text::json(&serde_json::to_string(&entry_json(&run, &entry, &hash, true))?)
                    )?;
                }
                Ok(ExitCode::SUCCESS)
            }
            JournalCommand::Reports { run, kind, journal } => {
                let journal = Journal::open(&journal.journal)?;
                match print_reports(&journal, &run, kind.as_deref(), global.json) {
                    // Piped into `head`: the reader has what it wanted.
                    Err(e)
                        if e.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
                            == Some(std::io::ErrorKind::BrokenPipe) => {}
                    other => other?,
                }
                Ok(ExitCode::SUCCESS)
            }
            JournalCommand::Verify {
                run,
                journal,
                uri,
                db,
                metadata_collection,
            } => {
                let journal = Journal::open(&journal.journal)?;
                let runs = match run {
                    Some(run) => vec![journal.header(&run)?],
                    None => journal.runs()?,
                };
                let stored = match (uri, db) {
                    (Some(uri), Some(db)) => Some(super::runtime()?.block_on(async {
                        let db = crate::db::Db::connect(crate::db::ConnectOptions {
                            uri: &uri,
                            db: &db,
                            metadata_collection: &metadata_collection,
                            timeout: std::time::Duration::from_secs(10),
                            retry_for: crate::db::DEFAULT_RETRY_FOR,
                            record: None,
                        })
                        .await?;
                        anyhow::Ok(db.history().await?)
                    })?),
                    _ => None,
                };
                for header in runs {
                    let run = &header.run_id;
                    let chain = journal.verify(run)?;
                    let recorded = stored.as_ref().and_then(|history| {
                        history
                            .iter()
                            .find(|h| h.run_id.as_deref() == Some(run))
                            .and_then(|h| h.journal_head.clone())
                    });
                    if let Some(stored_head) = &recorded {
                        chain.check_stored_head(stored_head)?;
                    }
                    let against = match (&stored, &recorded) {
                        (Some(_), Some(_)) => ", matches the database's history",
                        (Some(_), None) => ", not in the database's history",
                        _ => "",
                    };
                    if global.json {
                        super::print_json_line(&serde_json::json!({"run_id": run, "entries": chain.entries(),
                            "head": to_hex(&chain.head()), "database_head_checked": recorded.is_some(), "ok": true}))?;
                    } else {
                        outln!(
                            "run {run}: {} entries verified, head {}{against}",
                            chain.entries(),
                            to_hex(&chain.head())
                        );
                    }
                }
                Ok(ExitCode::from(exit::OK))
            }
            JournalCommand::Replay {
                run,
                plugin,
                journal,
                sandbox,
            } => {
                let plugin = sandbox.plugin_host()?.load(&plugin)?;
                let journal = Journal::open(&journal.journal)?;
                let report = replay(&journal, &run, &plugin)?;
                if global.json {
                    super::print_json(&report)?;
                } else {
                    print_replay(&report, &plugin);
                }
                Ok(ExitCode::from(if report.divergence.is_none() {
                    exit::OK
                } else {
                    exit::REPLAY_DIVERGED
                }))
            }
        }
    }
}

/// A replay's result in text: one line when the plugin reproduced every
/// batch, else where it diverged (`journal replay`, `plugin test`).
pub(super) fn print_replay(report: &crate::run::replay::ReplayReport, plugin: &crate::plugin::LoadedPlugin) {
    if !report.same_plugin {
        outln!(
            "note: {} (sha256 {}) is not the plugin the run used (sha256 {}); replaying anyway",
            plugin.file.display(),
            report.plugin_sha256,
            report.journaled_sha256
        );
    }
    match &report.divergence {
        None => outln!(
            "{} of {} batches identical{}{}",
            report.identical,
            report.batches,
            match report.refused {
                0 => String::new(),
                n => format!(" ({n} refused by the write guard, not replayed: nothing of them was written)"),
            },
            match report.each_alone {
                true => ", each in a fresh instance (the plugin declares that it keeps no state across batches)",
                false => "",
            }
        ),
        Some(d) => {
            outln!(
                "diverged at batch {} (journal entry {}, pass {}), action {}{}",
                report.batches,
                d.seq,
                d.pass.map_or("finish".into(), |p| p.to_string()),
                d.action,
                d.document
                    .as_ref()
                    .map(|id| format!(", document _id {id}"))
                    .unwrap_or_default()
            );
            if report.each_alone {
                outln!(
                    "  each batch went to a fresh instance: the plugin declares that it keeps no state across \
                     batches; if it keeps some, it must not declare so (keeps-state)"
                );
            }
            if let Some(e) = &d.error {
                outln!("  replay failed: {e}");
            }
            outln!("  journaled: {}", d.journaled.as_deref().unwrap_or("(none)"));
            outln!("  replayed:  {}", d.replayed.as_deref().unwrap_or("(none)"));
        }
    }
}

/// An entry's note; for schema entries, the operations they record (the
/// journal keeps them as BSON, which only the reader decodes).
fn note(entry: &crate::journal::Entry) -> String {
    use crate::journal::Record;
    let describe = |bytes: &[u8]| {
        crate::run::schema::decode_op(bytes)
            .map(|op| op.describe())
            .unwrap_or_else(|e| format!("{e:#}"))
    };
    match &entry.record {
        Record::SchemaPlan(plan) => format!(
            "{}: {}",
            plan.phase.name(),
            plan.ops.iter().map(|o| describe(o)).collect::<Vec<_>>().join("; ")
        ),
        Record::SchemaPrepared(intent) => {
            format!("{} #{}: {}", intent.phase.name(), intent.index, describe(&intent.op))
        }
        Record::Partitions { bounds, .. } => {
            let ids: Vec<String> = bounds.iter().map(|b| crate::db::key_text(b)).collect();
            crate::text::escape(&format!("{} partitions, bounds: {}", bounds.len() + 1, ids.join(", "))).into_owned()
        }
        Record::PartitionsDone { partitions, .. } => {
            let each: Vec<String> = partitions
                .iter()
                .map(|p| {
                    let holders: Vec<String> = p.holders.iter().map(|h| h.describe()).collect();
                    format!(
                        "#{} {} documents by {} (journals: {})",
                        p.index,
                        p.documents,
                        p.runs.join(", "),
                        holders.join(", ")
                    )
                })
                .collect();
            crate::text::escape(&format!("{} partitions done: {}", partitions.len(), each.join("; "))).into_owned()
        }
        _ => entry.note().to_string(),
    }
}
