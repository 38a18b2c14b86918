//! `Engine::run`: one run from start (or resume) to its stamp. The steps
//! live in their own modules - reading the run's log (`log.rs`), binding
//! and restoring a resumed run (`resume.rs`), the plugin call (`stage.rs`),
//! the batch builder (`batch.rs`), the commit protocol (`commit.rs`),
//! verification and the stamp (`finish.rs`); this file is the order they
//! run in.

use super::batch::{id_of, id_text};
use super::commit::{ActiveRun, Sink, write_batch};
use super::log::RunLog;
use super::lookup::Recorded;
use super::plan::Plan;
use super::report::Summary;
use super::stage::PluginStage;
use super::{Bound, Engine, Outcome, RunRequest, Throttle, VerifyPolicy, batch_size_for, now_ms};
use crate::db::reader::{PassReader, ReadAhead, is_max_time_expired};
use crate::db::{DbError, LockHolder};
use crate::journal::{Entry, Record, RunHeader, RunMode, RunStatus};
use crate::plugin::actions;
use anyhow::Context;

impl Engine<'_> {
    pub async fn run(&self, request: &RunRequest) -> anyhow::Result<Outcome> {
        let manifest = self.plugin.manifest.clone();
        // The manifest was checked at load, before this run's metadata
        // collection was known: now no pass may read or write it.
        crate::plugin::contract::check_for_run(&manifest, &self.policy()).map_err(|e| {
            crate::plugin::LoadError::Manifest {
                file: self.plugin.file.clone(),
                reason: format!("plugin {:?}, {}", manifest.name, e.0),
            }
        })?;
        for pass in &manifest.passes {
            let requested = request.batch_size.unwrap_or(pass.batch_size);
            if godwit_policy::clamp_batch_size(requested).1 {
                tracing::warn!(
                    "pass {:?}: batch size {requested} lowered to {} (the most godwit reads at once)",
                    pass.name,
                    godwit_policy::MAX_BATCH_SIZE
                );
            }
        }
        // A plan that cannot bind is refused before a run is opened.
        let plan = match (&request.plan, request.mode) {
            (Some(plan), RunMode::Execute) => Some(Plan::load(
                self.journal,
                plan,
                &self.plugin.sha256_hex(),
                &request.params,
                &self.db.name,
            )?),
            _ => None,
        };
        let (mut header, resumed) = self.open_run(request)?;
        let execute = header.mode == RunMode::Execute;

        // What the journal says so far: progress and the summary.
        let summary = Summary::new(manifest.passes.iter().map(|p| (p.name.as_str(), p.collection.as_str())));
        let entries = self.journal.iter_entries(&header.run_id)?;
        let mut log = RunLog::read(entries.map(|e| Ok(e?.0)), summary, execute)?;
        let mut bound = self.bind(&header, plan, &log)?;
        if execute && !self.db.transactions {
            tracing::warn!(
                "database {} has no transactions (standalone server): batches are applied at least once, not exactly once; \
                 an interrupted batch may be applied again on resume",
                self.db.name
            );
        }
        for (pass, action) in std::mem::take(&mut log.uncounted) {
            let touched = self.dry_touched(std::slice::from_ref(&action)).await?;
            log.summary.add_touched(pass, touched);
        }

        let mut sink = if execute {
            let active = self
                .activate(&header, request, std::mem::take(&mut log.sessions))
                .await?;
            Sink::Execute(Box::new(active))
        } else {
            Sink::DryRun
        };
        let result = self
            .drive(request, &mut header, &mut log, &mut bound, &mut sink, resumed)
            .await;
        // Every exit path of an execute frees the database at once.
        sink.close().await;
        result
    }

    /// Takes the database for an execute run (lock, session, lease renewal).
    async fn activate(
        &self,
        header: &RunHeader,
        request: &RunRequest,
        old_sessions: Vec<bson::Document>,
    ) -> anyhow::Result<ActiveRun> {
        let holder = LockHolder {
            run_id: header.run_id.clone(),
            plugin: format!("{} {}", header.plugin_name, header.plugin_version),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: i64::from(std::process::id()),
        };
        // A run of this journal that finished holds no lock any more, even
        // if its process died between finishing and releasing it (its lease
        // would otherwise refuse the next run for up to `--lease`).
        let finished: Vec<String> = self
            .journal
            .runs()?
            .into_iter()
            .filter(|h| h.status == RunStatus::Finished && h.database == self.db.name)
            .map(|h| h.run_id)
            .collect();
        ActiveRun::start(
            self.db,
            self.journal,
            holder,
            request.lease,
            &finished,
            old_sessions,
            header.before_images,
        )
        .await
    }

    async fn drive(
        &self,
        request: &RunRequest,
        header: &mut RunHeader,
        log: &mut RunLog,
        bound: &mut Bound,
        sink: &mut Sink,
        resumed: bool,
    ) -> anyhow::Result<Outcome> {
        if let Some(plan) = &bound.plan {
            log.summary.plan = Some(Box::new(plan.check().clone()));
        }
        let run = header.run_id.clone();
        let execute = sink.execute();
        let manifest = self.plugin.manifest.clone();

        // A stamp that reached the database just before a crash: the run is done.
        if execute && !log.stamped && self.stamped_in_database(&run).await? {
            log.stamped = true;
            log.finished = true;
            log.pending = None;
        }
        // The version the run's requirement was checked against: the stamp
        // replaces exactly this version, or refuses.
        let mut checked_version = None;
        if execute && !log.stamped {
            checked_version = self.check_requires().await?;
        } else if !execute && let Err(e) = self.check_requires().await {
            tracing::warn!("{e:#}; this dry run goes on, but --execute would be refused");
        }
        if let Sink::Execute(active) = sink {
            self.check_journal_not_behind(&run, log).await?;
            if let Some(pending) = log.pending.take() {
                self.settle(header, pending, active, log).await?;
            }
        }

        let mut stage: Option<PluginStage> = None;
        let all_passes_done = log.done_passes.len() == manifest.passes.len();
        if !(all_passes_done && log.finished) {
            let recorded = Recorded::default();
            let instance = self.begin(header, bound, request, &recorded, log, resumed)?;
            stage = Some(PluginStage::new(
                instance,
                recorded,
                &bound.identity.run_id,
                &manifest.name,
            ));
        }

        let mut throttle = request.max_docs_per_sec.map(Throttle::new);
        for (index, pass) in manifest.passes.iter().enumerate() {
            let index = index as u32;
            if log.done_passes.contains(&index) {
                continue;
            }
            let batch_size = batch_size_for(request, pass);
            let label = format!("run {run}, pass {index} ({})", pass.name);
            // A pass over a collection the database does not have reads
            // nothing: said at once, and in the summary, never silently.
            if !self.db.collection_exists(&pass.collection).await? {
                log.summary.passes[index as usize].collection_missing = true;
                tracing::warn!(
                    "{label}: collection {} does not exist in database {}; the pass reads nothing",
                    pass.collection,
                    self.db.name
                );
            }
            let checkpoint = log.checkpoints.get(&index);
            let reader = PassReader::open(
                self.db,
                pass,
                checkpoint,
                batch_size,
                label.clone(),
                request.query_timeout,
            )
            .await?;
            let remaining = if self.observer.wants_totals() {
                match reader.remaining(self.db, pass, checkpoint).await {
                    Ok(n) => Some(n),
                    // The total is only for the progress display.
                    Err(e) if is_max_time_expired(&e) => {
                        tracing::warn!("{label}: counting the pass's documents ran past --query-timeout; no total");
                        None
                    }
                    Err(source) => {
                        return Err(DbError::Mongo {
                            context: format!("{label}: counting the pass's documents"),
                            error: source,
                        }
                        .into());
                    }
                }
            } else {
                None
            };
            let mut reader = ReadAhead::new(reader, request.read_ahead);
            self.observer.pass_started(
                index,
                &pass.name,
                remaining,
                log.summary.passes[index as usize].documents,
            );
            let allowed = actions::allowed(pass).with_policy(self.policy());
            let mut batch_no = log.summary.passes[index as usize].batches;
            loop {
                if self.stop.requested() {
                    return Ok(self.interrupted(header, &log.summary));
                }
                if let Sink::Execute(active) = sink {
                    active.check_lease()?;
                }
                self.wait_while_paused(request).await;
                if self.stop.requested() {
                    return Ok(self.interrupted(header, &log.summary));
                }
                let batch = reader.next_batch().await?;
                failpoint!("batch-read");
                if batch.is_empty() {
                    self.observer.pass_finished(index);
                    self.journal
                        .record(&run, Entry::new(Record::PassDone { pass: index }, now_ms()))?;
                    log.done_passes.insert(index);
                    break;
                }
                let last_id = id_of(batch.last().expect("not empty"))
                    .with_context(|| format!("run {run}, pass {index} ({}): a document has no _id", pass.name))?;
                let where_ = || {
                    format!(
                        "run {run}, pass {index} ({}), batch {batch_no} (documents up to _id {last_id})",
                        pass.name
                    )
                };
                let plugin = stage.as_mut().expect("the plugin is live while passes remain");
                let record = plugin.process(index, &allowed, batch, where_)?;
                if let Some(plan) = bound.plan.as_mut() {
                    let first = record.inputs.first().map(|d| id_text(d)).unwrap_or_default();
                    let at = format!(
                        "pass {index} ({}), batch {batch_no} (_id {first} to {last_id})",
                        pass.name
                    );
                    let checked = plan.check_batch(
                        self.journal,
                        index,
                        &record.inputs_hash,
                        &record.actions_hash,
                        &record.encoded,
                        &at,
                    );
                    log.summary.plan = Some(Box::new(plan.check().clone()));
                    checked.with_context(|| format!("run {run}"))?;
                }
                let documents = record.counts.documents;
                let actions = record.actions.len();
                log.summary.add(Some(index), documents, &record.actions);
                let touched = match sink {
                    Sink::DryRun => Some(self.dry_touched(&record.actions).await.with_context(where_)?),
                    Sink::Execute(_) => None,
                };
                let written = write_batch(sink, self.journal, &run, record)
                    .await
                    .with_context(where_)?;
                log.checkpoints.insert(index, last_id);
                log.summary
                    .add_touched(Some(index), written.or(touched).expect("counted or written"));
                if let Some(throttle) = throttle.as_mut() {
                    throttle.pace(documents, &self.stop).await;
                }
                self.observer.batch_done(index, documents);
                batch_no += 1;
                tracing::debug!("run {run}: pass {index} batch {batch_no}: {documents} documents, {actions} actions");
            }
        }

        if !log.finished {
            if self.stop.requested() {
                return Ok(self.interrupted(header, &log.summary));
            }
            let plugin = stage.as_mut().expect("the plugin is live until finish");
            let scope = actions::finish_scope(&manifest).with_policy(self.policy());
            let record = plugin.finish(&scope, &format!("run {run}"))?;
            if let Some(plan) = bound.plan.as_mut() {
                let checked = plan.check_finish(self.journal, &record.actions_hash, &record.encoded, "finish");
                log.summary.plan = Some(Box::new(plan.check().clone()));
                checked.with_context(|| format!("run {run}"))?;
            }
            let empty = record.actions.is_empty();
            log.summary.add(None, 0, &record.actions);
            let touched = match sink {
                Sink::DryRun => Some(
                    self.dry_touched(&record.actions)
                        .await
                        .with_context(|| format!("run {run}, finish"))?,
                ),
                Sink::Execute(_) => None,
            };
            let written = write_batch(sink, self.journal, &run, record)
                .await
                .with_context(|| format!("run {run}, finish"))?;
            log.summary
                .add_touched(None, written.or(touched).expect("counted or written"));
            if empty {
                log.summary.finish.batches -= 1;
            }
        }

        let mut stamped = None;
        if execute {
            if !log.stamped {
                self.refuse_if_nothing_to_migrate(header, request).await?;
                let residue = match request.verify {
                    VerifyPolicy::Skip => None,
                    _ => match self.verify_clean(header, &bound.identity, request).await? {
                        Some(residue) => Some(residue),
                        None => return Ok(self.interrupted(header, &log.summary)),
                    },
                };
                let residue_actions = residue.as_ref().map_or(0, Summary::write_actions);
                if let Some(residue) = &residue {
                    let verified = Record::Verify {
                        documents: residue.documents(),
                        write_actions: residue_actions,
                        note: format!("{residue_actions} write actions left after the run"),
                    };
                    self.journal.record(&run, Entry::new(verified, now_ms()))?;
                }
                if residue_actions > 0 && request.verify == VerifyPolicy::Require {
                    return Ok(Outcome::Unclean {
                        header: header.clone(),
                        summary: log.summary.clone(),
                        residue: residue.expect("verified"),
                    });
                }
                let verified = match (request.verify, residue_actions) {
                    (VerifyPolicy::Skip, _) => "skipped".to_string(),
                    (_, 0) => "clean".to_string(),
                    (_, n) => format!("residue of {n} write actions allowed (--allow-residue)"),
                };
                self.stamp(header, &log.summary, &verified, checked_version.as_deref())
                    .await?;
            }
            stamped = Some(manifest.version.to_string());
            self.db.delete_marker(&run).await?;
        }
        self.journal.finish_run(header, now_ms())?;
        Ok(Outcome::Finished {
            header: header.clone(),
            summary: log.summary.clone(),
            resumed,
            stamped,
        })
    }

    /// Every batch is journaled (and flushed) before it is written, so a
    /// progress marker beyond the journal means the journal lost its tail.
    async fn check_journal_not_behind(&self, run: &str, log: &RunLog) -> anyhow::Result<()> {
        if let Some(marker) = self.db.marker_seq(run).await?
            && log.last_batch.is_none_or(|last| marker > last)
        {
            return Err(super::ResumeError::JournalBehind {
                run: run.to_string(),
                marker,
                journaled: log.last_batch.map_or("none".into(), |l| l.to_string()),
            }
            .into());
        }
        Ok(())
    }

    pub(super) fn interrupted(&self, header: &RunHeader, summary: &Summary) -> Outcome {
        // Everything journaled so far is durable; the header stays `Running`.
        Outcome::Interrupted {
            header: header.clone(),
            summary: summary.clone(),
        }
    }

    /// What the plugin policy needs to know about this run.
    pub(super) fn policy(&self) -> godwit_policy::Context<'_> {
        godwit_policy::Context {
            metadata_collection: Some(&self.db.metadata),
            database: Some(&self.db.name),
        }
    }
}
