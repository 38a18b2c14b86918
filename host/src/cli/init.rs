//! `godwit init --version X`: stamps the schema version of an existing database once
//! (with an adopted version record, that document too, as an "initialise" entry).

use super::{ConnectionArgs, GlobalArgs};
use crate::db::HistoryEntry;
use crate::text::outln;
use anyhow::bail;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct InitCommand {
    /// The semantic version the database's current schema corresponds to.
    #[arg(long)]
    version: String,
    /// Stamp even if the database already has a version.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

impl InitCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        if let Err(e) = semver::Version::parse(&self.version) {
            bail!("--version {:?} is not a semantic version: {e}", self.version);
        }
        super::runtime()?.block_on(async {
            let db = self.connection.connect().await?;
            // `--force` is how an operator repairs a schema document changed
            // outside godwit, so it reads the version unchecked.
            let current = if self.force {
                match &db.record {
                    Some(record) => db.adopted().await?.and_then(|d| record.version_of(&d)),
                    None => db
                        .schema()
                        .await?
                        .and_then(|s| s.get_str("version").ok().map(str::to_string)),
                }
            } else {
                db.current_version().await?
            };
            if let Some(current) = &current
                && !self.force
            {
                let place = db
                    .record
                    .as_ref()
                    .map(|r| format!(" (in {})", r.describe(&db.name)))
                    .unwrap_or_default();
                bail!(
                    "database {} is already stamped at version {current}{place}; use --force to overwrite",
                    db.name
                );
            }
            let entry = HistoryEntry::Init {
                run_id: format!("init-{}", bson::oid::ObjectId::new().to_hex()),
                version: self.version.clone(),
                host_version: env!("CARGO_PKG_VERSION").into(),
                forced: self.force,
            };
            db.stamp(&entry, current.as_deref()).await?;
            let record = db.record.as_ref().map(|r| r.describe(&db.name));
            if global.json {
                super::print_json_line(
                    &serde_json::json!({"database": db.name, "version": self.version, "version_record": record}),
                )?;
            } else {
                outln!("database {} stamped at version {}", db.name, self.version);
                if let Some(record) = record {
                    outln!(
                        "version record {record} set to {} (action \"initialise\")",
                        self.version
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        })
    }
}
