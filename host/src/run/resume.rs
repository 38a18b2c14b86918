//! Opening a run and picking up where an earlier process of it stopped:
//! finding or creating the run's header (refusing a resume with another
//! plugin, parameters, database or mode), binding an execute to its
//! reviewed dry run, calling `begin` and restoring the plugin's state by
//! replaying the applied batches, and settling the batch an interrupted
//! process left prepared.

use super::commit::{ActiveRun, CommittedBatch, PreparedBatch};
use super::log::RunLog;
use super::lookup::{MongoLookup, Recorded, Replay};
use super::plan::{self, Plan};
use super::{
    Bound, Engine, Identity, ResumeChoice, ResumeError, RunRequest, mode_name, now_ms, params_document, params_text,
    run_seed,
};
use crate::db::DbError;
use crate::hash::{sha256, to_hex};
use crate::journal::{Call, Entry, Record, RunHeader, RunMode, RunStatus};
use crate::plugin::contract::{Mode, RunContext};
use crate::plugin::{InstanceOptions, PluginInstance};
use anyhow::Context;
use std::collections::BTreeSet;

impl Engine<'_> {
    /// Creates the run header, or finds the run to resume and checks that it
    /// may be resumed with this plugin, these parameters and this database.
    pub(super) fn open_run(&self, request: &RunRequest) -> anyhow::Result<(RunHeader, bool)> {
        let manifest = &self.plugin.manifest;
        let params_doc = params_document(&request.params);
        let params_hash = to_hex(&sha256(&params_doc.to_vec()?));
        // A fleet partition's run goes on only as part of its fleet run.
        let unfinished = |h: &RunHeader| {
            h.status == RunStatus::Running
                && h.plugin_name == manifest.name
                && h.database == self.db.name
                && h.mode == request.mode
                && h.partition.is_none()
        };
        let existing = match &request.resume {
            ResumeChoice::Run(id) => {
                let h = self.journal.header(id)?;
                if let Some(part) = &h.partition {
                    return Err(ResumeError::NotResumable {
                        run: id.clone(),
                        status: format!(
                            "a partition of fleet run {} (resume that run: --resume {})",
                            part.fleet_run, part.fleet_run
                        ),
                    }
                    .into());
                }
                if h.status != RunStatus::Running {
                    return Err(ResumeError::NotResumable {
                        run: id.clone(),
                        status: format!("{:?}", h.status).to_lowercase(),
                    }
                    .into());
                }
                if h.plugin_name != manifest.name {
                    return Err(ResumeError::OtherPlugin {
                        run: id.clone(),
                        journaled: h.plugin_name,
                        found: manifest.name.clone(),
                    }
                    .into());
                }
                if h.database != self.db.name {
                    return Err(ResumeError::DatabaseChanged {
                        run: id.clone(),
                        journaled: h.database,
                        found: self.db.name.clone(),
                    }
                    .into());
                }
                if h.mode != request.mode {
                    return Err(ResumeError::ModeChanged {
                        run: id.clone(),
                        journaled: mode_name(h.mode),
                        found: mode_name(request.mode),
                    }
                    .into());
                }
                Some(h)
            }
            ResumeChoice::Auto => self.journal.runs()?.into_iter().rev().find(unfinished),
            ResumeChoice::New => {
                let runs = self.journal.runs()?;
                let abandoned: Vec<String> = runs
                    .iter()
                    .filter(|h| unfinished(h))
                    .map(|h| h.run_id.clone())
                    .collect();
                let of_abandoned = |h: &RunHeader| {
                    h.status == RunStatus::Running
                        && h.partition.as_ref().is_some_and(|p| abandoned.contains(&p.fleet_run))
                };
                for mut h in runs.into_iter().filter(|h| unfinished(h) || of_abandoned(h)) {
                    tracing::warn!("abandoning unfinished run {} (--new-run)", h.run_id);
                    h.status = RunStatus::Abandoned;
                    h.finished_at_ms = Some(now_ms());
                    self.journal.put_header(&h)?;
                }
                None
            }
        };
        if let Some(h) = existing {
            if h.plugin_sha256 != self.plugin.sha256_hex() {
                return Err(ResumeError::PluginChanged {
                    run: h.run_id,
                    file: self.plugin.file.clone(),
                    journaled: h.plugin_sha256,
                    found: self.plugin.sha256_hex(),
                }
                .into());
            }
            if h.params_hash != params_hash {
                return Err(ResumeError::ParamsChanged {
                    run: h.run_id.clone(),
                    journaled: params_text(&h.params),
                    found: params_text(&request.params),
                }
                .into());
            }
            tracing::info!(
                "resuming run {} of {} {} (started {})",
                h.run_id,
                h.plugin_name,
                h.plugin_version,
                bson::DateTime::from_millis(h.started_at_ms)
            );
            return Ok((h, true));
        }
        let header = RunHeader {
            format: crate::journal::FORMAT_VERSION,
            run_id: bson::oid::ObjectId::new().to_hex(),
            plugin_name: manifest.name.clone(),
            plugin_version: manifest.version.to_string(),
            plugin_sha256: self.plugin.sha256_hex(),
            plugin_file: self.plugin.file.display().to_string(),
            params: request.params.clone(),
            params_hash,
            database: self.db.name.clone(),
            uri: self.db.uri.clone(),
            metadata_collection: self.db.metadata.clone(),
            mode: request.mode,
            host_version: env!("CARGO_PKG_VERSION").to_string(),
            wasmtime_version: crate::WASMTIME_VERSION.to_string(),
            started_at_ms: now_ms(),
            status: RunStatus::Running,
            finished_at_ms: None,
            final_entries: None,
            final_head: None,
            before_images: request.mode == RunMode::Execute && request.before_images,
            reverts: None,
            partition: None,
        };
        self.journal.put_header(&header)?;
        Ok((header, false))
    }

    /// A plugin declaring `idempotent: false` is executed at most once per
    /// database and version: a new run (not a resume) is refused while the
    /// database's history holds a run of this version that no revert undid,
    /// or while an unfinished run of it - which `--new-run` would abandon,
    /// its applied batches staying applied - is in the journal. A dry run
    /// only warns. `--allow-repeat` lifts it.
    pub(super) async fn check_repeat(&self, request: &RunRequest) -> anyhow::Result<()> {
        let manifest = &self.plugin.manifest;
        if manifest.idempotent || request.allow_repeat {
            return Ok(());
        }
        let unfinished: Vec<RunHeader> = self
            .journal
            .runs()?
            .into_iter()
            .filter(|h| {
                h.status == RunStatus::Running
                    && h.plugin_name == manifest.name
                    && h.database == self.db.name
                    && h.mode == RunMode::Execute
            })
            .collect();
        let earlier = match &request.resume {
            // Resuming continues the same run: nothing is applied twice.
            ResumeChoice::Run(_) => return Ok(()),
            ResumeChoice::Auto if request.mode == RunMode::Execute && !unfinished.is_empty() => return Ok(()),
            ResumeChoice::New if request.mode == RunMode::Execute && !unfinished.is_empty() => Some(format!(
                "its unfinished run {} may already have applied batches to database {} (--new-run would abandon \
                 it with those batches applied; resume it instead: the same command without --new-run)",
                unfinished
                    .iter()
                    .map(|h| h.run_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.db.name
            )),
            _ => None,
        };
        let earlier = match earlier {
            Some(e) => Some(e),
            None => self.applied_before().await?,
        };
        let Some(earlier) = earlier else { return Ok(()) };
        let refusal = super::AlreadyApplied {
            plugin: manifest.name.clone(),
            version: manifest.version.to_string(),
            earlier,
        };
        if request.mode == RunMode::Execute {
            return Err(refusal.into());
        }
        tracing::warn!("{refusal}; this dry run goes on, but --execute would be refused");
        Ok(())
    }

    /// A run of this plugin's name and version the database's history holds
    /// and no revert undid, said in words; checked before a run is opened
    /// and again under the lock ([`Engine::check_repeat_locked`]).
    async fn applied_before(&self) -> anyhow::Result<Option<String>> {
        let manifest = &self.plugin.manifest;
        let history = self.db.history().await?;
        let undone = |run: &str| history.iter().any(|h| h.reverts.as_deref() == Some(run));
        let version = manifest.version.to_string();
        Ok(history
            .iter()
            .rev()
            .filter(|h| h.reverts.is_none())
            .find(|h| {
                h.plugin.as_deref() == Some(manifest.name.as_str())
                    && h.version.as_deref() == Some(version.as_str())
                    && h.run_id.as_deref().is_some_and(|r| !undone(r))
            })
            .map(|h| {
                format!(
                    "its run {} was already applied to database {} (the history in {} records it{})",
                    h.run_id.as_deref().unwrap_or_default(),
                    self.db.name,
                    self.db.metadata,
                    h.finished_at
                        .map(|t| format!(", finished {}", crate::text::time(t)))
                        .unwrap_or_default()
                )
            }))
    }

    /// [`Engine::check_repeat`] again once the run holds the lock: another
    /// runner may have finished a run of this version between that check
    /// and the lock. A new run refused here is abandoned (never resumed).
    pub(super) async fn check_repeat_locked(
        &self,
        request: &RunRequest,
        header: &mut RunHeader,
        resumed: bool,
    ) -> anyhow::Result<()> {
        let manifest = &self.plugin.manifest;
        if resumed || manifest.idempotent || request.allow_repeat || header.mode != RunMode::Execute {
            return Ok(());
        }
        let Some(earlier) = self.applied_before().await? else {
            return Ok(());
        };
        header.status = RunStatus::Abandoned;
        header.finished_at_ms = Some(now_ms());
        self.journal.put_header(header)?;
        Err(super::AlreadyApplied {
            plugin: manifest.name.clone(),
            version: manifest.version.to_string(),
            earlier,
        }
        .into())
    }

    /// Binds an execute run to the reviewed dry run `--plan` names - or, on
    /// resume, to the one its journal recorded - and counts the batches an
    /// earlier process of the run already checked against it.
    pub(super) fn bind(&self, header: &RunHeader, asked: Option<Plan>, log: &RunLog) -> anyhow::Result<Bound> {
        let run = &header.run_id;
        if header.mode == RunMode::DryRun {
            return Ok(Bound {
                identity: Identity::of(header),
                plan: None,
            });
        }
        let (recorded, begun) = (log.plan.clone(), log.begun);
        let plan = match (recorded, asked) {
            (Some(recorded), Some(asked)) if recorded != asked.run_id => {
                return Err(plan::PlanError::OtherPlan {
                    run: run.clone(),
                    recorded,
                    asked: asked.run_id,
                }
                .into());
            }
            (Some(_), Some(asked)) => Some(asked),
            (Some(recorded), None) => Some(Plan::load(
                self.journal,
                &recorded,
                &header.plugin_sha256,
                &header.params,
                &header.database,
            )?),
            (None, Some(asked)) if begun => {
                return Err(plan::PlanError::Unusable {
                    plan: asked.run_id.clone(),
                    problem: format!(
                        "run {run} was started without a plan, so its earlier batches were not checked; start over \
                         with --new-run --plan {}",
                        asked.run_id
                    ),
                }
                .into());
            }
            (None, asked) => asked,
        };
        let Some(mut plan) = plan else {
            return Ok(Bound {
                identity: Identity::of(header),
                plan: None,
            });
        };
        for (pass, inputs) in &log.prepared_inputs {
            plan.count_earlier(*pass, inputs);
        }
        Ok(Bound {
            identity: Identity {
                run_id: plan.run_id.clone(),
                started_at_ms: plan.started_at_ms,
            },
            plan: Some(plan),
        })
    }

    /// A new plugin instance for run `header`, with lookups served from the
    /// database (recorded in `recorded`, or replayed from `replay`).
    pub(super) fn instance(
        &self,
        header: &RunHeader,
        identity: &Identity,
        recorded: &Recorded,
        replay: &Replay,
    ) -> anyhow::Result<PluginInstance> {
        let run = &header.run_id;
        let lookup = MongoLookup {
            db: self.db.clone(),
            handle: tokio::runtime::Handle::current(),
            recorded: recorded.clone(),
            replay: replay.clone(),
            plugin: self.plugin.manifest.name.clone(),
            metadata_collection: self.db.metadata.clone(),
        };
        self.plugin
            .instantiate(InstanceOptions {
                lookup: Box::new(lookup),
                started_at_ms: identity.started_at_ms,
                random_seed: run_seed(&identity.run_id),
                metadata_collection: Some(self.db.metadata.clone()),
            })
            .with_context(|| format!("run {run}"))
    }

    /// What `begin` is told about the run. The contract (0.1) has a `mode`
    /// field, but a plugin that knew it could behave in the dry run an
    /// operator reviews and differently in the execute that follows; so
    /// every call says `execute`, in dry runs, verification and replays
    /// alike, and the dry run shows what an execute would do.
    pub fn context(header: &RunHeader, identity: &Identity) -> RunContext {
        RunContext {
            run_id: identity.run_id.clone(),
            mode: Mode::Execute,
            started_at_ms: identity.started_at_ms,
            database: header.database.clone(),
        }
    }

    pub(super) fn begin(
        &self,
        header: &RunHeader,
        bound: &Bound,
        request: &RunRequest,
        recorded: &Recorded,
        log: &mut RunLog,
        resumed: bool,
    ) -> anyhow::Result<PluginInstance> {
        let run = &header.run_id;
        let replay = Replay::default();
        let mut instance = self.instance(header, &bound.identity, recorded, &replay)?;
        let context = Self::context(header, &bound.identity);
        let params = params_document(&request.params);
        if resumed {
            // `begin` sees what it saw when the run started, not the database
            // as our own writes have changed it since.
            replay.load(log.begin_lookups.clone());
        }
        let returned =
            tokio::task::block_in_place(|| instance.begin(&params, &context)).with_context(|| format!("run {run}"))?;
        let manifest = &self.plugin.manifest;
        let (_, schema) = crate::plugin::actions::split_schema(
            &manifest.schema,
            godwit_policy::SchemaSource::Begin,
            &self.policy(),
            returned,
        )
        .with_context(|| format!("run {run}, begin: plugin {} returned an invalid action", manifest.name))?;
        log.begin_schema = Some(schema);
        replay.stop();
        let call = Call {
            fuel: instance.fuel_used(),
            lookups: recorded.drain(),
            note: bound.plan.as_ref().map(Plan::note).unwrap_or_default(),
        };
        let record = if resumed {
            Record::Resume(call)
        } else {
            // A restart within this process (after the write guard refused
            // a batch) shows `begin` what it saw here.
            log.begin_lookups = call.lookups.clone();
            Record::Begin(call)
        };
        self.journal.record(run, Entry::new(record, now_ms()))?;
        if resumed && self.plugin.keeps_state {
            self.restore_state(&mut instance, run, &bound.identity.run_id, &replay, &log.applied)?;
        } else if resumed && !log.applied.is_empty() {
            // Nor is its determinism checked here: `journal replay` does.
            tracing::info!(
                "run {run}: plugin {} declares that it keeps no state across batches: the {} batches written \
                 so far are not replayed into it",
                manifest.name,
                log.applied.len()
            );
        }
        Ok(instance)
    }

    /// A fresh instance knows nothing of the batches before the interruption:
    /// feed it every applied batch again (with the lookups it saw then) so
    /// that state it keeps across batches is what an uninterrupted run would
    /// have. The actions must come out identical, which also proves the
    /// plugin deterministic; they are not applied again.
    fn restore_state(
        &self,
        instance: &mut PluginInstance,
        run: &str,
        identity_run: &str,
        replay: &Replay,
        applied: &BTreeSet<u64>,
    ) -> anyhow::Result<()> {
        let manifest = &self.plugin.manifest;
        let mut replayed = 0u64;
        for item in self.journal.iter_entries(run)? {
            let (entry, _) = item?;
            if !applied.contains(&entry.seq) {
                continue;
            }
            let Some(batch) = entry.batch() else { continue };
            let Some(pass) = batch.pass else { continue };
            let diverged = tokio::task::block_in_place(|| {
                super::replay::compare(instance, self.plugin, replay, identity_run, entry.seq, batch, &[])
            });
            if let Some(d) = diverged {
                return Err(ResumeError::NotDeterministic {
                    run: run.to_string(),
                    plugin: manifest.name.clone(),
                    seq: entry.seq,
                    pass,
                    action: d.action,
                    document: d.document.map(|id| format!(", document _id {id}")).unwrap_or_default(),
                    error: d.error.map(|e| format!(" ({e})")).unwrap_or_default(),
                }
                .into());
            }
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!("run {run}: restored the plugin's state by replaying {replayed} journaled batches");
        }
        Ok(())
    }

    /// Settles a batch journaled as prepared whose commit was not journaled:
    /// committed if the database's progress marker reached it, else applied
    /// again from the journaled actions (the plugin is not asked again).
    pub(super) async fn settle(
        &self,
        header: &RunHeader,
        pending: Entry,
        active: &mut ActiveRun,
        log: &mut RunLog,
    ) -> anyhow::Result<()> {
        let run = header.run_id.as_str();
        let batch = PreparedBatch::journaled(pending)?;
        let seq = batch.seq();
        let marker_seq = self.db.marker_seq(run).await?;
        let (committed, note) = if marker_seq.is_some_and(|m| m >= seq) {
            let counts = self.db.marker_counts(run, seq).await?;
            // The marker, written in the same transaction, holds the images
            // or names the journal entry they were flushed to before it.
            let (mut images, mut images_at) = (Vec::new(), None);
            if header.before_images {
                let lost = || {
                    format!(
                        "run {run}: batch {seq} committed, but its progress marker has moved on and its before-images \
                         are lost"
                    )
                };
                match self.db.marker_images(run, seq).await?.with_context(lost)? {
                    crate::db::MarkerImages::Inline(inline) => images = inline,
                    crate::db::MarkerImages::Journaled { entry, hash } => {
                        let found = self.journal.entry_at(run, entry)?;
                        if !found.is_some_and(|(e, h)| {
                            h == hash && matches!(e.record, Record::Images { batch_seq, .. } if batch_seq == seq)
                        }) {
                            return Err(super::ResumeError::ImagesLost {
                                run: run.to_string(),
                                seq,
                                entry,
                                journal: self.journal.dir().display().to_string(),
                            }
                            .into());
                        }
                        images_at = Some(entry);
                    }
                }
            }
            let committed = CommittedBatch::settled(&batch, counts, images, images_at);
            (committed, "settled on resume: the progress marker shows it committed")
        } else {
            match active.apply(self.journal, &batch, None).await {
                Ok(committed) => (committed, "settled on resume: re-applied from the journal"),
                // Its documents changed since they were read: the pass reads
                // them again from its checkpoint, which this batch never moved.
                Err(DbError::Conflict { changed, .. }) => {
                    tracing::info!(
                        "run {run}: batch {seq} not applied on resume: {} of its documents changed since they were \
                         read; they are processed again",
                        changed.len()
                    );
                    super::commit::conflicted(self.journal, run, &batch, &changed)?;
                    log.summary
                        .add_conflicts(batch.pass().unwrap_or_default(), changed.len() as u64);
                    return Ok(());
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("run {run}: re-applying journaled batch {seq}")));
                }
            }
        };
        tracing::info!("run {run}: batch {seq} {note}");
        let touched = committed.touched;
        // Made durable with the next entry the run records; if lost, the
        // marker settles the batch again.
        active.committed(self.journal, committed, note)?;
        log.summary.add_touched(batch.pass(), touched);
        log.committed(batch.entry())
    }
}
