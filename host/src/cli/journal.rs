//! `godwit journal list | verify`: what the local journal holds, and whether
//! its hash chains are intact.

use super::{GlobalArgs, exit};
use crate::hash::to_hex;
use crate::journal::{Journal, RunMode};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum JournalCommand {
    /// List the runs in the journal, oldest first.
    List {
        #[arg(long, env = "GODWIT_JOURNAL", default_value = ".godwit/journal")]
        journal: PathBuf,
    },
    /// Recompute every entry's hash and the chain of one run (or of all runs).
    Verify {
        run: Option<String>,
        #[arg(long, env = "GODWIT_JOURNAL", default_value = ".godwit/journal")]
        journal: PathBuf,
    },
}

impl JournalCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        match self {
            JournalCommand::List { journal } => {
                let journal = Journal::open(&journal)?;
                let runs = journal.runs()?;
                if global.json {
                    println!("{}", serde_json::to_string_pretty(&runs)?);
                } else {
                    for h in runs {
                        let mode = if h.mode == RunMode::Execute { "execute" } else { "dry" };
                        println!(
                            "{}  {} {}  {mode}  {:?}  db {}  started {}",
                            h.run_id,
                            h.plugin_name,
                            h.plugin_version,
                            h.status,
                            h.database,
                            bson::DateTime::from_millis(h.started_at_ms)
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            JournalCommand::Verify { run, journal } => {
                let journal = Journal::open(&journal)?;
                let runs = match run {
                    Some(run) => vec![run],
                    None => journal.runs()?.into_iter().map(|h| h.run_id).collect(),
                };
                for run in runs {
                    let chain = journal.verify(&run)?;
                    if global.json {
                        println!(
                            "{}",
                            serde_json::json!({"run_id": run, "entries": chain.entries(), "head": to_hex(&chain.head()), "ok": true})
                        );
                    } else {
                        println!(
                            "run {run}: {} entries verified, head {}",
                            chain.entries(),
                            to_hex(&chain.head())
                        );
                    }
                }
                Ok(ExitCode::from(exit::OK))
            }
        }
    }
}
