//! `Engine::run`: one run from start (or resume) to its stamp. The steps
//! live in their own modules - reading the run's log (`log.rs`), binding
//! and restoring a resumed run (`resume.rs`), the plugin call (`stage.rs`),
//! the batch builder (`batch.rs`), the commit protocol (`commit.rs`),
//! verification and the stamp (`finish.rs`); this file is the order they
//! run in.

use super::batch::{BatchRecord, id_of, id_text};
use super::commit::{ActiveRun, Sink, Written, write_batch};
use super::log::RunLog;
use super::lookup::Recorded;
use super::pace::Pacer;
use super::plan::Plan;
use super::report::Summary;
use super::stage::PluginStage;
use super::{Bound, Engine, Outcome, RunRequest, Throttle, VerifyPolicy, batch_size_for, now_ms};
use crate::db::reader::{PassReader, ReadAhead, is_max_time_expired};
use crate::db::{DbError, LockHolder};
use crate::journal::{Entry, Record, RunHeader, RunMode, RunStatus, SchemaPhase};
use crate::plugin::actions;
use crate::timing::{Step as Timed, timed, timed_sync};
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
        // Refused before a run is opened: its batches could be applied twice.
        if request.mode == RunMode::Execute
            && !self.db.transactions
            && !manifest.idempotent
            && !request.allow_at_least_once
        {
            return Err(super::NotIdempotent {
                plugin: manifest.name.clone(),
                db: self.db.name.clone(),
            }
            .into());
        }
        self.check_repeat(request).await?;
        // Tests: another runner finishes a run of this version meanwhile.
        failpoint!("repeat-checked");
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
            let active = timed(Timed::Activate, self.activate(&header, request, log.sessions.clone())).await?;
            // Under the lock: no other runner can finish a run of this
            // version any more between this check and the writes.
            if let Err(e) = self.check_repeat_locked(request, &mut header, resumed).await {
                active.close().await;
                return Err(e);
            }
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
        .map(|active| match request.write_guard {
            true => active.guard(&self.plugin.manifest.passes),
            false => active,
        })
    }

    /// A fresh plugin instance fed the batches the run wrote so far (not
    /// the ones the write guard refused): the state an instance has that
    /// never saw the refused batches. A plugin that keeps no state is not
    /// fed them (see [`Engine::begin`]).
    fn restart_plugin(
        &self,
        header: &RunHeader,
        bound: &Bound,
        request: &RunRequest,
        log: &mut RunLog,
    ) -> anyhow::Result<PluginStage> {
        let recorded = Recorded::default();
        let instance = self.begin(header, bound, request, &recorded, log, true)?;
        Ok(PluginStage::new(
            instance,
            recorded,
            &bound.identity.run_id,
            &self.plugin.manifest.name,
        ))
    }

    /// The plugin processed documents whose actions were not written (the
    /// write guard refused them, or a batch processed ahead is processed
    /// again): one that keeps state restarts from the batches written; one
    /// that declares it keeps none (`godwit:migration/traits`) goes on as
    /// it is, and a refusal costs no replay.
    fn forget_unwritten(&self, driving: &mut Driving, step: &Step<'_>, log: &mut RunLog) -> anyhow::Result<()> {
        if self.plugin.keeps_state {
            driving.stage = Some(self.restart_plugin(step.header, step.bound, step.request, log)?);
        }
        Ok(())
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
            let instance = timed_sync(Timed::Begin, || {
                self.begin(header, bound, request, &recorded, log, resumed)
            })?;
            stage = Some(PluginStage::new(
                instance,
                recorded,
                &bound.identity.run_id,
                &manifest.name,
            ));
            // Schema operations `begin` returned: before the first pass.
            let returned = log.begin_schema.take().unwrap_or_default();
            let reviewed = bound.plan.as_ref().map(|p| p.run_id.clone());
            self.schema_plan(SchemaPhase::Begin, returned, header, reviewed.as_deref())
                .await?;
            self.schema_apply(SchemaPhase::Begin, sink, header, &mut log.summary)
                .await?;
        }

        let mut driving = Driving {
            stage,
            pacer: Pacer::new(request.max_commit, request.max_lag),
            throttle: request.max_docs_per_sec.map(Throttle::new),
        };
        if request.follow.is_some() {
            self.start_following(header, log, sink).await?;
        }
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
            if let Some(workers) = self.fleet_workers(request, log, index, execute) {
                self.observer.pass_started(index, &pass.name, None, 0);
                if self.fleet_pass(request, header, log, index, workers).await? == Flow::Stopped {
                    return Ok(self.interrupted(header, &log.summary));
                }
                self.observer.pass_finished(index);
                self.journal_partitions_done(&run, index).await?;
                self.journal
                    .record(&run, Entry::new(Record::PassDone { pass: index }, now_ms()))?;
                log.done_passes.insert(index);
                continue;
            }
            let checkpoint = log.checkpoints.get(&index);
            let opened = std::time::Instant::now();
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
            crate::timing::record(Timed::Open, opened);
            let mut reader = ReadAhead::new(reader, request.read_ahead);
            self.observer.pass_started(
                index,
                &pass.name,
                remaining,
                log.summary.passes[index as usize].documents,
            );
            let mut source = Source::Snapshot {
                reader: &mut reader,
                last: checkpoint.cloned(),
                reopen: Reopen {
                    db: self.db,
                    pass,
                    batch_size,
                    label: label.clone(),
                    query_timeout: request.query_timeout,
                    read_ahead: request.read_ahead,
                    upto: None,
                },
            };
            let mut step = Step {
                request,
                header,
                bound: &mut *bound,
                index,
                pass,
                batch_size,
                window: None,
            };
            if self.process(&mut step, log, sink, &mut driving, &mut source).await? == Flow::Stopped {
                return Ok(self.interrupted(header, &log.summary));
            }
            self.observer.pass_finished(index);
            self.journal
                .record(&run, Entry::new(Record::PassDone { pass: index }, now_ms()))?;
            log.done_passes.insert(index);
        }
        if request.follow.is_some() || log.follow.from.is_some() {
            match self.follow(request, header, log, bound, sink, &mut driving).await? {
                Flow::Stopped => return Ok(self.interrupted(header, &log.summary)),
                Flow::Done => {}
            }
        }
        let mut stage = driving.stage;

        if !log.finished {
            if self.stop.requested() {
                return Ok(self.interrupted(header, &log.summary));
            }
            let plugin = stage.as_mut().expect("the plugin is live until finish");
            let scope = actions::finish_scope(&manifest).with_policy(self.policy());
            let (record, schema) = plugin.finish(&scope, &manifest.schema, &format!("run {run}"))?;
            // Journaled before finish's batch: a resume after that batch
            // applies them from the journal.
            let reviewed = bound.plan.as_ref().map(|p| p.run_id.clone());
            self.schema_plan(SchemaPhase::Finish, schema, header, reviewed.as_deref())
                .await?;
            if let Some(plan) = bound.plan.as_mut() {
                let checked = plan.check_finish(self.journal, &record.actions_hash, &record.encoded, "finish");
                log.summary.plan = Some(Box::new(plan.check().clone()));
                checked.with_context(|| format!("run {run}"))?;
            }
            let empty = record.actions.is_empty();
            let touched = match sink {
                Sink::DryRun => Some(
                    self.dry_touched(&record.actions)
                        .await
                        .with_context(|| format!("run {run}, finish"))?,
                ),
                Sink::Execute(_) => None,
            };
            let (written, actions) = write_batch(sink, self.journal, &run, record)
                .await
                .with_context(|| format!("run {run}, finish"))?;
            let touched = match written {
                Written::Planned => touched.expect("counted"),
                Written::Committed { touched, .. } => touched,
                Written::Conflict { .. } => unreachable!("finish reads no documents: nothing to guard"),
            };
            log.summary.add(None, 0, &actions);
            log.summary.add_touched(None, touched);
            if empty {
                log.summary.finish.batches -= 1;
            }
        }
        // Schema operations `finish` returned: after its document actions.
        self.schema_apply(SchemaPhase::Finish, sink, header, &mut log.summary)
            .await?;

        let mut stamped = None;
        let mut verification = None;
        if execute {
            if !log.stamped {
                self.refuse_if_nothing_to_migrate(header, request).await?;
                // A dry re-run of a plugin that does not converge by design
                // would want its actions again: it is not verified.
                let verify = match manifest.idempotent {
                    true => request.verify,
                    false => VerifyPolicy::Skip,
                };
                let residue = match verify {
                    VerifyPolicy::Skip => None,
                    _ => match timed(Timed::Verify, self.verify_clean(header, &bound.identity, request)).await? {
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
                if residue_actions > 0 && verify == VerifyPolicy::Require {
                    return Ok(Outcome::Unclean {
                        header: header.clone(),
                        summary: log.summary.clone(),
                        residue: Box::new(residue.expect("verified")),
                    });
                }
                let verified = match (verify, residue_actions) {
                    (VerifyPolicy::Skip, _) if !manifest.idempotent => {
                        "skipped: the plugin declares idempotent: false".to_string()
                    }
                    (VerifyPolicy::Skip, _) => "skipped".to_string(),
                    (_, 0) => "clean".to_string(),
                    (_, n) => format!("residue of {n} write actions allowed (--allow-residue)"),
                };
                timed(
                    Timed::Stamp,
                    self.stamp(header, &log.summary, &verified, checked_version.as_deref()),
                )
                .await?;
                verification = Some(verified);
            }
            stamped = Some(manifest.version.to_string());
            self.db.delete_marker(&run).await?;
            if !log.partitions.is_empty() {
                self.db.delete_partitions(&run).await?;
            }
        }
        self.journal.finish_run(header, now_ms())?;
        Ok(Outcome::Finished {
            header: header.clone(),
            summary: log.summary.clone(),
            resumed,
            stamped,
            verified: verification,
        })
    }

    /// Processes documents of one pass from `source` batch by batch: the
    /// plugin call, the plan check, the write (or the dry run's record) and,
    /// when the write guard refuses a batch, the changed documents read
    /// again and processed anew. Executing, the next batch goes through the
    /// plugin while this one commits (see [`Ahead`]). `Flow::Stopped` when a
    /// stop was requested.
    pub(super) async fn process(
        &self,
        step: &mut Step<'_>,
        log: &mut RunLog,
        sink: &mut Sink,
        driving: &mut Driving,
        source: &mut Source<'_>,
    ) -> anyhow::Result<Flow> {
        let (run, index, pass) = (&step.header.run_id, step.index, step.pass);
        let allowed = actions::allowed(pass).with_policy(self.policy());
        let mut batch_no = log.summary.passes[index as usize].batches;
        let phase = match step.window {
            Some(window) => format!("follow window {window}, "),
            None => String::new(),
        };
        let label = |batch_no: u64, last_id: &bson::Bson| {
            format!(
                "run {run}, pass {index} ({}), {phase}batch {batch_no} (documents up to _id {last_id})",
                pass.name
            )
        };
        let last_of = |batch: &[Vec<u8>]| {
            id_of(batch.last().expect("not empty"))
                .with_context(|| format!("run {run}, pass {index} ({}): a document has no _id", pass.name))
        };
        // Documents read but not yet processed: what the write guard
        // refused, read again, waiting for their next attempt; or a batch
        // processed ahead that has to be processed again.
        let mut carried: Vec<Vec<u8>> = Vec::new();
        let mut conflicts = ConflictStreak::default();
        let mut ahead: Option<Ahead> = None;
        // Off for the rest of the pass once a batch processed ahead had to
        // be processed again (a plugin that looks up what the pass writes).
        let mut overlapping = matches!(sink, Sink::Execute(_));
        loop {
            if !self.between_batches(step.request, sink).await? {
                return Ok(Flow::Stopped);
            }
            let (last_id, mut record) = match ahead.take() {
                Some(Ahead::End) => return Ok(Flow::Done),
                Some(Ahead::Ready { last_id, record }) => (last_id, *record),
                Some(Ahead::Failed { .. }) => unreachable!("a failed batch processed ahead is carried"),
                None => {
                    let batch = if carried.is_empty() {
                        timed(Timed::ReadWait, source.next_batch(step.batch_size as usize)).await?
                    } else {
                        let n = conflicts.attempt_size(step.batch_size as usize).min(carried.len());
                        carried.drain(..n).collect()
                    };
                    failpoint!("batch-read");
                    if batch.is_empty() {
                        return Ok(Flow::Done);
                    }
                    let last_id = last_of(&batch)?;
                    let plugin = driving.stage.as_mut().expect("the plugin is live while passes remain");
                    let at = label(batch_no, &last_id);
                    let processed =
                        timed_sync(Timed::Plugin, || plugin.process(index, &allowed, batch, || at.clone()))?;
                    (last_id, processed)
                }
            };
            if step.window.is_some() {
                // The pass's own checkpoint is where its snapshot ended.
                record.checkpoint = None;
            }
            let at = label(batch_no, &last_id);
            let where_ = || at.clone();
            if let Some(plan) = step.bound.plan.as_mut() {
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
            let touched = match sink {
                Sink::DryRun => Some(self.dry_touched(&record.actions).await.with_context(where_)?),
                Sink::Execute(_) => None,
            };
            // The next batch, read now when it can go through the plugin
            // while this one commits.
            let next = match overlapping && carried.is_empty() && conflicts.count == 0 {
                true => {
                    let batch = timed(Timed::ReadWait, source.next_batch(step.batch_size as usize)).await?;
                    failpoint!("batch-read");
                    Some(batch)
                }
                false => None,
            };
            let (written, processed_ahead) = match next {
                Some(batch) if !batch.is_empty() => {
                    let last_id = last_of(&batch)?;
                    let at = label(batch_no + 1, &last_id);
                    let plugin = driving.stage.as_mut().expect("the plugin is live while passes remain");
                    let (written, processed) = crate::overlap::overlap(
                        timed(Timed::Batch, write_batch(sink, self.journal, run, record)),
                        || {
                            timed_sync(Timed::PluginAhead, || {
                                plugin.try_process(index, &allowed, batch, || at.clone())
                            })
                        },
                    )
                    .await;
                    let ahead = match processed {
                        Ok(record) => Ahead::Ready {
                            last_id,
                            record: Box::new(record),
                        },
                        Err(failed) => Ahead::Failed { batch: failed.batch },
                    };
                    (written, Some(ahead))
                }
                Some(_) => (
                    timed(Timed::Batch, write_batch(sink, self.journal, run, record)).await,
                    Some(Ahead::End),
                ),
                None => (
                    timed(Timed::Batch, write_batch(sink, self.journal, run, record)).await,
                    None,
                ),
            };
            let (written, actions) = written.with_context(where_)?;
            let touched = match written {
                Written::Planned => touched.expect("counted"),
                Written::Committed { seq, touched, took } => {
                    log.applied.insert(seq);
                    timed(
                        Timed::Pace,
                        driving.pacer.after_commit(self.db, took, &self.stop, self.observer),
                    )
                    .await;
                    log.summary.pacing = driving.pacer.figures;
                    touched
                }
                Written::Conflict { seq, changed, inputs } => {
                    log.summary.add_conflicts(index, changed.len() as u64);
                    conflicts.record(&where_(), seq, &changed, self.db.retry_for)?;
                    // The plugin saw documents whose actions were not
                    // written: it restarts from the batches that were.
                    self.forget_unwritten(driving, step, log)?;
                    let fresh = PassReader::reread(self.db, pass, &changed).await.with_context(where_)?;
                    let mut waiting = processed_ahead.map(Ahead::into_inputs).unwrap_or_default();
                    waiting.append(&mut carried);
                    carried = merge_reread(inputs, &changed, fresh, waiting);
                    source.refresh().await.with_context(where_)?;
                    conflicts.pause().await;
                    continue;
                }
            };
            conflicts = ConflictStreak::default();
            ahead = match processed_ahead {
                Some(Ahead::Ready { record, last_id }) if looked_up_written(&record, &actions) => {
                    // Its lookups ran before this batch's writes committed:
                    // processed again from a plugin that never saw it.
                    tracing::info!(
                        "{}: processed again: its lookups ran while batch {batch_no} committed, on a collection that \
                         batch wrote; the rest of the pass is processed one batch after the other",
                        label(batch_no + 1, &last_id)
                    );
                    overlapping = false;
                    self.forget_unwritten(driving, step, log)?;
                    carried = record.inputs;
                    None
                }
                Some(Ahead::Failed { batch }) => {
                    // Processed again in its turn, so that its error (or
                    // its success) is the one a run without overlap sees.
                    overlapping = false;
                    driving.stage = Some(self.restart_plugin(step.header, step.bound, step.request, log)?);
                    carried = batch;
                    None
                }
                other => other,
            };
            log.summary.add(Some(index), documents, &actions);
            if step.window.is_none() {
                log.checkpoints.insert(index, last_id);
            }
            log.summary.add_touched(Some(index), touched);
            if let Some(throttle) = driving.throttle.as_mut() {
                throttle.pace(documents, &self.stop).await;
            }
            self.observer.batch_done(index, documents);
            batch_no += 1;
            tracing::debug!(
                "run {run}: pass {index} batch {batch_no}: {documents} documents, {} actions",
                actions.len()
            );
        }
    }

    /// Between two batches: fails once another runner took the lease over,
    /// waits while the run is paused; `false` once a stop was requested.
    pub(super) async fn between_batches(&self, request: &RunRequest, sink: &Sink) -> anyhow::Result<bool> {
        if self.stop.requested() {
            return Ok(false);
        }
        if let Sink::Execute(active) = sink {
            active.check_lease()?;
        }
        self.wait_while_paused(request).await;
        Ok(!self.stop.requested())
    }

    /// Every batch is journaled (and flushed) before it is written, so a
    /// progress marker beyond the journal means the journal lost its tail.
    pub(super) async fn check_journal_not_behind(&self, run: &str, log: &RunLog) -> anyhow::Result<()> {
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
            version_record: self.db.record.as_ref().map(|r| r.collection.as_str()),
        }
    }
}

/// What `drive` carries from batch to batch and pass to pass.
pub(super) struct Driving {
    /// The plugin instance; `None` once nothing is left for it to do.
    pub stage: Option<PluginStage>,
    pub pacer: Pacer,
    pub throttle: Option<Throttle>,
}

/// One pass's documents being processed: what a batch needs to know.
pub(super) struct Step<'a> {
    pub request: &'a RunRequest,
    pub header: &'a RunHeader,
    pub bound: &'a mut Bound,
    pub index: u32,
    pub pass: &'a crate::plugin::contract::ValidPass,
    pub batch_size: u32,
    /// The follow window the documents come from; `None`: the snapshot.
    pub window: Option<u64>,
}

/// Where a pass's documents come from: its snapshot read in `_id` order,
/// or documents the follow phase read again.
pub(super) enum Source<'a> {
    Snapshot {
        reader: &'a mut ReadAhead,
        /// The `_id` of the last document handed out (else the checkpoint).
        last: Option<bson::Bson>,
        reopen: Reopen<'a>,
    },
    Given(std::vec::IntoIter<Vec<u8>>),
}

/// What reopening a pass's reader takes.
pub(super) struct Reopen<'a> {
    pub db: &'a crate::db::Db,
    pub pass: &'a crate::plugin::contract::ValidPass,
    pub batch_size: u32,
    pub label: String,
    pub query_timeout: std::time::Duration,
    pub read_ahead: usize,
    /// A fleet partition's last `_id` (`None`: the whole pass).
    pub upto: Option<Box<bson::Bson>>,
}

impl Source<'_> {
    async fn next_batch(&mut self, size: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            Source::Snapshot { reader, last, .. } => {
                let batch = reader.next_batch().await?;
                if let Some(id) = batch.last().and_then(|d| id_of(d)) {
                    *last = Some(id);
                }
                Ok(batch)
            }
            Source::Given(documents) => Ok(documents.by_ref().take(size).collect()),
        }
    }

    /// After the write guard refused a batch, the batches read ahead are
    /// as old as it was, and a server may hold a cursor to the point in
    /// time it was opened (SecantusDB does; under a steady write rate every
    /// later batch would then be refused once): the reader is opened again
    /// after the last document handed out, its read-ahead dropped.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        if let Source::Snapshot { reader, last, reopen } = self {
            let fresh = PassReader::open_range(
                reopen.db,
                reopen.pass,
                last.as_ref(),
                reopen.upto.as_deref(),
                reopen.batch_size,
                reopen.label.clone(),
                reopen.query_timeout,
            )
            .await?;
            **reader = ReadAhead::new(fresh, reopen.read_ahead);
        }
        Ok(())
    }
}

/// The batch after the one being committed, read and run through the plugin
/// while that one's writes were in flight: the plugin call of batch N+1
/// overlaps the commit of batch N. The plugin has then seen N+1 before N
/// committed; when N's write is refused, or N+1's lookups read a collection
/// N wrote, or N+1's call failed, the plugin restarts from the committed
/// batches and N+1 is processed again in its turn.
enum Ahead {
    /// The source had nothing more.
    End,
    Ready {
        last_id: bson::Bson,
        record: Box<BatchRecord>,
    },
    Failed {
        batch: Vec<Vec<u8>>,
    },
}

impl Ahead {
    fn into_inputs(self) -> Vec<Vec<u8>> {
        match self {
            Ahead::End => Vec::new(),
            Ahead::Ready { record, .. } => record.inputs,
            Ahead::Failed { batch } => batch,
        }
    }
}

/// Whether `record`'s lookups read a collection that `written` (the batch
/// committed while it was processed) wrote: they may have seen the database
/// without those writes.
fn looked_up_written(record: &BatchRecord, written: &[crate::plugin::actions::ValidAction]) -> bool {
    record.lookups.iter().any(|lookup| {
        written
            .iter()
            .any(|action| action.collection() == Some(lookup.collection.as_str()))
    })
}

/// Whether processing went to its end or stopped on request (Ctrl-C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Done,
    Stopped,
}

/// Consecutive refusals of the write guard in one pass: how long they have
/// lasted, how large the next attempt may be, how long to wait before it.
#[derive(Debug, Default)]
struct ConflictStreak {
    count: u32,
    since: Option<std::time::Instant>,
}

impl ConflictStreak {
    /// Documents the next attempt may take: the whole batch again (read
    /// afresh, it rarely conflicts twice), then half as many after each
    /// further refusal, down to one - under a steady application write rate
    /// a smaller batch spends less time between its read and its commit.
    fn attempt_size(&self, batch_size: usize) -> usize {
        (batch_size >> self.count.saturating_sub(1).min(31)).max(1)
    }

    /// Counts a refusal; gives up when refusals have gone on for longer than
    /// the database's retry time (`--retry-for`) - the document changes
    /// faster than the plugin can process it.
    fn record(
        &mut self,
        at: &str,
        seq: u64,
        changed: &[Vec<u8>],
        retry_for: std::time::Duration,
    ) -> anyhow::Result<()> {
        self.count += 1;
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        tracing::info!(
            "{at}: batch {seq} not written: {} document(s) changed since they were read (first {}); processing them \
             again",
            changed.len(),
            changed.first().map(|k| crate::db::key_text(k)).unwrap_or_default()
        );
        if self.count > 3 && since.elapsed() > retry_for {
            anyhow::bail!(
                "{at}: another writer changed {} between every read and commit for {} s ({} attempts); nothing of \
                 those attempts was written. Run the same command again when the application writes less, or raise \
                 --retry-for",
                changed.first().map(|k| crate::db::key_text(k)).unwrap_or_default(),
                since.elapsed().as_secs(),
                self.count
            );
        }
        Ok(())
    }

    /// Waits before the next attempt: not after the first refusal, then
    /// 20 ms doubling up to 1 s.
    async fn pause(&self) {
        if self.count > 1 {
            let ms = 20u64 << (self.count - 2).min(6);
            tokio::time::sleep(std::time::Duration::from_millis(ms.min(1000))).await;
        }
    }
}

/// The documents of a refused batch for their next attempt, in `_id` order:
/// unchanged ones as they were (the guard just read them so), changed ones
/// as read again - or left out when they no longer match the pass - then
/// whatever was still waiting.
fn merge_reread(
    inputs: Vec<Vec<u8>>,
    changed: &[Vec<u8>],
    fresh: Vec<bson::RawDocumentBuf>,
    waiting: Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let changed: std::collections::HashSet<&[u8]> = changed.iter().map(Vec::as_slice).collect();
    let mut fresh: std::collections::HashMap<Vec<u8>, Vec<u8>> = fresh
        .into_iter()
        .filter_map(|d| {
            let key = crate::db::id_key(&id_of(d.as_bytes())?);
            Some((key, d.into_bytes()))
        })
        .collect();
    let mut merged = Vec::with_capacity(inputs.len() + waiting.len());
    for input in inputs {
        let Some(key) = id_of(&input).map(|id| crate::db::id_key(&id)) else {
            continue;
        };
        if changed.contains(key.as_slice()) {
            merged.extend(fresh.remove(&key));
        } else {
            merged.push(input);
        }
    }
    merged.extend(waiting);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{RawDocumentBuf, doc};

    fn raw(d: bson::Document) -> Vec<u8> {
        d.to_vec().unwrap()
    }

    #[test]
    fn a_refused_batch_keeps_unchanged_documents_and_takes_changed_ones_as_read_again() {
        let inputs = vec![
            raw(doc! {"_id": 1, "v": "a"}),
            raw(doc! {"_id": 2, "v": "b"}),
            raw(doc! {"_id": 3, "v": "c"}),
        ];
        let changed = vec![raw(doc! {"_id": 2}), raw(doc! {"_id": 3})];
        // _id 2 was rewritten; _id 3 no longer matches the pass.
        let fresh = vec![RawDocumentBuf::from_bytes(raw(doc! {"_id": 2, "v": "B"})).unwrap()];
        let waiting = vec![raw(doc! {"_id": 4, "v": "d"})];
        let merged = merge_reread(inputs, &changed, fresh, waiting);
        let ids: Vec<_> = merged
            .iter()
            .map(|d| bson::Document::from_reader(d.as_slice()).unwrap())
            .collect();
        assert_eq!(
            ids,
            vec![
                doc! {"_id": 1, "v": "a"},
                doc! {"_id": 2, "v": "B"},
                doc! {"_id": 4, "v": "d"}
            ]
        );
    }

    #[test]
    fn attempts_shrink_after_repeated_refusals_down_to_one_document() {
        let mut streak = ConflictStreak::default();
        assert_eq!(streak.attempt_size(500), 500);
        streak.count = 1;
        assert_eq!(streak.attempt_size(500), 500);
        streak.count = 2;
        assert_eq!(streak.attempt_size(500), 250);
        streak.count = 40;
        assert_eq!(streak.attempt_size(500), 1);
    }
}
