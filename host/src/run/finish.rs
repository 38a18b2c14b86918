//! The end of an execute run: refusing one that migrated nothing, checking
//! the plugin's `requires` against the database's version, verifying that
//! the passes have nothing left to do, and stamping the version with the
//! run's history entry (compare-and-set on the version checked). Also what
//! a dry run reports as touched, and pausing between batches.

use super::lookup::{Recorded, Replay};
use super::report::{Summary, Touched};
use super::{Engine, Identity, NothingToMigrate, RunRequest, VersionError, batch_size_for, now_ms, params_document};
use crate::db::reader::PassReader;
use crate::db::{DbError, HistoryEntry, RunCounts};
use crate::hash::to_hex;
use crate::journal::{Entry, Record, RunHeader};
use crate::plugin::actions::{self, ValidAction};
use anyhow::Context;
use std::time::Duration;

impl Engine<'_> {
    /// A migration that silently did nothing must not look like success: if
    /// none of the passes' collections exists (checked after the run, so a
    /// pass may read what an earlier one created), the version is not
    /// stamped unless the operator allows it.
    pub(super) async fn refuse_if_nothing_to_migrate(
        &self,
        header: &RunHeader,
        request: &RunRequest,
    ) -> anyhow::Result<()> {
        let passes = &self.plugin.manifest.passes;
        if request.allow_missing_collections || passes.is_empty() {
            return Ok(());
        }
        for pass in passes {
            if self.db.collection_exists(&pass.collection).await? {
                return Ok(());
            }
        }
        let mut collections: Vec<&str> = passes.iter().map(|p| p.collection.as_str()).collect();
        collections.dedup();
        Err(NothingToMigrate {
            run: header.run_id.clone(),
            plugin: header.plugin_name.clone(),
            db: self.db.name.clone(),
            collections: collections.join(", "),
        }
        .into())
    }

    /// What a dry run reports `actions` would touch: their upper bound, with
    /// each unpinned `multi` update or delete counted in the database.
    pub(super) async fn dry_touched(&self, actions: &[ValidAction]) -> anyhow::Result<Touched> {
        let (mut touched, unbounded) = Touched::bound(actions);
        for action in unbounded {
            match action {
                ValidAction::Update {
                    collection,
                    filter,
                    upsert,
                    ..
                } => {
                    let n = self.db.count_matching(collection, filter).await?;
                    touched.updated += n;
                    touched.inserted += u64::from(*upsert && n == 0);
                }
                ValidAction::Delete { collection, filter, .. } => {
                    touched.deleted += self.db.count_matching(collection, filter).await?;
                }
                ValidAction::Insert { .. } | ValidAction::Report { .. } => {}
            }
        }
        Ok(touched)
    }

    /// Whether the database's history holds this run's stamp (written just
    /// before a crash). A history entry is trusted only if the journal head
    /// it records is one this run's journal reached: an entry forged for the
    /// run's id (it would make godwit skip its own stamp) is refused.
    pub(super) async fn stamped_in_database(&self, run: &str) -> anyhow::Result<bool> {
        let Some(entry) = self.db.history_entry(run).await? else {
            return Ok(false);
        };
        let head = entry.journal_head.unwrap_or_default();
        for item in self.journal.iter_entries(run)? {
            if to_hex(&item?.1) == head {
                return Ok(true);
            }
        }
        Err(DbError::SchemaTampered {
            db: self.db.name.clone(),
            metadata: self.db.metadata.clone(),
            problem: format!(
                "holds a history entry for run {run} whose journal head {head:?} is not in that run's journal"
            ),
        }
        .into())
    }

    /// Checks the plugin's `requires` against the database's version, and
    /// returns that version (stamping compares and sets against it).
    pub(super) async fn check_requires(&self) -> anyhow::Result<Option<String>> {
        let current = self.db.current_version().await?;
        let manifest = &self.plugin.manifest;
        let Some(requires) = &manifest.requires else {
            return Ok(current);
        };
        let plugin = format!("{} {}", manifest.name, manifest.version);
        match current {
            None => Err(VersionError::Unstamped {
                db: self.db.name.clone(),
                plugin,
                requires: requires.to_string(),
            }
            .into()),
            Some(current) => {
                let matches = semver::Version::parse(&current).is_ok_and(|v| requires.matches(&v));
                if matches {
                    Ok(Some(current))
                } else {
                    Err(VersionError::Mismatch {
                        db: self.db.name.clone(),
                        current,
                        plugin,
                        requires: requires.to_string(),
                    }
                    .into())
                }
            }
        }
    }

    /// Holds the run between batches while the pause file exists (the lease
    /// keeps being renewed); a stop request ends the pause.
    pub(super) async fn wait_while_paused(&self, request: &RunRequest) {
        let Some(file) = &request.pause_file else { return };
        if !file.exists() {
            return;
        }
        tracing::warn!(
            "paused: {} exists; remove it to continue (Ctrl-C stops)",
            file.display()
        );
        self.observer.paused(true);
        while file.exists() && !self.stop.requested() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.observer.paused(false);
        tracing::info!("resumed: {} is gone", file.display());
    }

    /// Re-runs every pass dry with a fresh instance and collects the actions
    /// that are still wanted. `None` when stopped by the operator.
    pub(super) async fn verify_clean(
        &self,
        header: &RunHeader,
        identity: &Identity,
        request: &RunRequest,
    ) -> anyhow::Result<Option<Summary>> {
        let run = &header.run_id;
        let manifest = &self.plugin.manifest;
        let mut instance = self.instance(header, identity, &Recorded::default(), &Replay::default())?;
        let params = params_document(&request.params);
        let context = Self::context(header, identity);
        tokio::task::block_in_place(|| instance.begin(&params, &context))
            .with_context(|| format!("run {run}, verification"))?;
        let mut residue = Summary::new(manifest.passes.iter().map(|p| (p.name.as_str(), p.collection.as_str())));
        for (index, pass) in manifest.passes.iter().enumerate() {
            let index = index as u32;
            let label = format!("run {run}, verification, pass {index} ({})", pass.name);
            let mut reader = PassReader::open(
                self.db,
                pass,
                None,
                batch_size_for(request, pass),
                label.clone(),
                request.query_timeout,
            )
            .await?;
            loop {
                if self.stop.requested() {
                    return Ok(None);
                }
                let batch = reader.next_batch().await?;
                if batch.is_empty() {
                    break;
                }
                let raw =
                    tokio::task::block_in_place(|| instance.process(index, &batch)).with_context(|| label.clone())?;
                let valid = actions::validate(&actions::allowed(pass), raw).with_context(|| label.clone())?;
                residue.add(Some(index), batch.len() as u64, &valid);
            }
        }
        tracing::info!(
            "run {run}: verification re-ran the passes dry: {} write actions left",
            residue.write_actions()
        );
        Ok(Some(residue))
    }

    pub(super) async fn stamp(
        &self,
        header: &RunHeader,
        summary: &Summary,
        verified: &str,
        previous: Option<&str>,
    ) -> anyhow::Result<()> {
        let run = &header.run_id;
        let chain = self.journal.verify(run)?;
        let manifest = &self.plugin.manifest;
        let all = || summary.passes.iter().chain([&summary.finish]);
        let counts = RunCounts {
            documents: summary.documents(),
            updates: all().map(|p| p.updates).sum(),
            inserts: all().map(|p| p.inserts).sum(),
            deletes: all().map(|p| p.deletes).sum(),
            documents_updated: summary.touched().updated,
            documents_inserted: summary.touched().inserted,
            documents_deleted: summary.touched().deleted,
        };
        let history = HistoryEntry::Run {
            run_id: run.clone(),
            plugin: manifest.name.clone(),
            version: manifest.version.to_string(),
            sha256: header.plugin_sha256.clone(),
            params: params_document(&header.params),
            journal_head: to_hex(&chain.head()),
            journal_entries: chain.entries(),
            counts,
            started_at_ms: header.started_at_ms,
            host_version: header.host_version.clone(),
            verified: verified.to_string(),
        };
        // The head the entry names must survive a crash: the entries since
        // the last flush (finish's batch, with --skip-verify or a plugin
        // that is not idempotent no verification record) are made durable
        // before the database can hold a head the journal lost.
        self.journal.flush()?;
        failpoint!("stamp-before-db");
        if !self.db.stamp(&history, previous).await? {
            // Stamped before a crash: trusted only if it is this run's.
            self.stamped_in_database(run).await?;
        }
        failpoint!("stamp-before-journal");
        let note = format!(
            "version {} (journal head before stamp {})",
            manifest.version,
            to_hex(&chain.head())
        );
        self.journal.record(run, Entry::new(Record::Stamp { note }, now_ms()))?;
        Ok(())
    }
}
