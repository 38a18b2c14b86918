//! `godwit cutover RUN`: ends the follow phase of a `--follow` run. The
//! request is a document in the metadata collection, so it works from any
//! machine that reaches the database; the run sees it in its change stream,
//! after every change made before it, drains up to it, verifies and stamps.

use super::{ConnectionArgs, GlobalArgs};
use crate::text::outln;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct CutoverCommand {
    /// The run to cut over (its id, as `godwit status` and the run's own
    /// output show it).
    run: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

impl CutoverCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let run = self.run.trim();
        if run.is_empty() || run.len() > 64 || !run.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(super::UsageError(format!(
                "{:?} is not a run id (24 hexadecimal digits, as `godwit status` shows them)",
                crate::text::escape(run)
            ))
            .into());
        }
        super::runtime()?.block_on(async {
            let db = self.connection.connect().await?;
            let by = format!(
                "godwit cutover on {} (pid {})",
                gethostname::gethostname().to_string_lossy(),
                std::process::id()
            );
            db.request_cutover(run, &by).await?;
            let holder = db
                .lock_document()
                .await?
                .and_then(|lock| lock.get_str("run_id").ok().map(str::to_string));
            let running = holder.as_deref() == Some(run);
            if global.json {
                super::print_json_line(&serde_json::json!({
                    "database": db.name, "run_id": run, "cutover_requested": true, "running": running,
                }))?;
            } else if running {
                outln!(
                    "cutover requested for run {run} on database {}: it processes the changes made up to now, then \
                     verifies and stamps",
                    db.name
                );
            } else {
                outln!(
                    "cutover requested for run {run} on database {}; the run does not hold the database now - it \
                     cuts over when it is resumed (run the same `godwit run ... --execute` command again)",
                    db.name
                );
            }
            Ok(ExitCode::SUCCESS)
        })
    }
}
