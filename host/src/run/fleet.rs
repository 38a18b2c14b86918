//! Fleet mode (`--workers N`): one execute run's passes, each split into
//! partitions that workers process at once.
//!
//! The fleet run (the one the operator started) holds the database's lock,
//! calls `begin` and applies its schema operations, and for each pass:
//! 1. splits the pass's `_id` space into partitions (`Db::split_points`,
//!    in `_id` order across BSON types), journals the bounds
//!    (`Record::Partitions`, flushed) and writes the work table
//!    (`Db::write_partitions`); a resume takes the journaled bounds;
//! 2. runs N workers: each claims a pending partition (`Db::claim_partition`:
//!    a lease and a fencing token on the partition's document, the lock's
//!    protocol) and processes it as a run of its own - `<run>.<pass>.<k>`,
//!    with its own journal chain, progress marker, plugin instance and
//!    server session, every batch fenced by the claim - then marks it done;
//! 3. once every partition is done, adds their summaries to the run's.
//!
//! Then the fleet run calls `finish` (on its own instance, which processed
//! no batch), verifies the passes and stamps once. A partition's run is never
//! resumed on its own: resuming the fleet run claims its unfinished
//! partitions again, and a partition run found unfinished in the journal is
//! resumed like any run (its pending batch settled by its marker).

use super::commit::{ActiveRun, Sink};
use super::engine::{Driving, Flow, Reopen, Source, Step};
use super::log::RunLog;
use super::lookup::Recorded;
use super::pace::Pacer;
use super::report::Summary;
use super::stage::PluginStage;
use super::{Engine, RunRequest, Throttle, Workers, batch_size_for, now_ms};
use crate::db::reader::{PassReader, ReadAhead};
use crate::db::{Claimant, DbError, Lock, Partition, id_key};
use crate::journal::{Entry, PartitionRef, Record, RunHeader, RunStatus};
use bson::{Bson, Document};

/// The name of partition `index` of pass `pass` of fleet run `fleet`'s own run.
pub fn partition_run_id(fleet: &str, pass: u32, index: u32) -> String {
    format!("{fleet}.{pass}.{index}")
}

/// This process, among the claimants of a host: a partition claimed by
/// another process of this host is taken over at once once the fleet run's
/// lock is ours (that process is gone).
fn process_nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| bson::oid::ObjectId::new().to_hex())
}

impl Engine<'_> {
    /// The workers pass `index` runs with: `--workers`, or, for a pass an
    /// earlier process of the run already split, one worker (so that a
    /// resume without the flag goes on with the partitions rather than
    /// read the pass anew). `None`: the pass is read by the run itself - a
    /// dry run, or a pass this run began reading without partitions.
    pub(super) fn fleet_workers(
        &self,
        request: &RunRequest,
        log: &RunLog,
        index: u32,
        execute: bool,
    ) -> Option<Workers> {
        if !execute {
            return None;
        }
        let split = log.partitions.get(&index).map(|bounds| bounds.len() as u32 + 1);
        match (request.workers, split) {
            (Some(workers), Some(_)) => Some(workers),
            (Some(workers), None) if !log.checkpoints.contains_key(&index) => Some(workers),
            (Some(_), None) => {
                tracing::warn!("pass {index} was begun without --workers: it goes on read by the run alone");
                None
            }
            (None, Some(partitions)) => {
                tracing::info!(
                    "pass {index} was split into {partitions} partitions when the run began: going on with them, one \
                     at a time (--workers N for more at once)"
                );
                Some(Workers { count: 1, partitions })
            }
            (None, None) => None,
        }
    }

    /// Pass `index` of fleet run `header`, by `workers`: split (once), then
    /// processed partition by partition until every one is done.
    pub(super) async fn fleet_pass(
        &self,
        request: &RunRequest,
        header: &RunHeader,
        log: &mut RunLog,
        index: u32,
        workers: Workers,
    ) -> anyhow::Result<Flow> {
        let run = &header.run_id;
        let pass = &self.plugin.manifest.passes[index as usize];
        let bounds: Vec<Bson> = match log.partitions.get(&index) {
            Some(bounds) => bounds.iter().map(|b| bound_of(b)).collect::<anyhow::Result<_>>()?,
            None => {
                let bounds = self
                    .db
                    .split_points(pass, workers.partitions, request.query_timeout)
                    .await?;
                let encoded: Vec<Vec<u8>> = bounds.iter().map(id_key).collect();
                let record = Record::Partitions {
                    pass: index,
                    bounds: encoded.clone(),
                };
                self.journal.record(run, Entry::new(record, now_ms()))?;
                log.partitions.insert(index, encoded);
                bounds
            }
        };
        // Before the work table is written: a killed process's open
        // transaction may hold its documents.
        self.end_partition_sessions(run).await?;
        self.db.write_partitions(run, index, &bounds).await?;
        tracing::info!(
            "run {run}, pass {index} ({}): {} partitions, {} workers",
            pass.name,
            bounds.len() + 1,
            workers.count
        );
        let claimant = Claimant {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            process: process_nonce().to_string(),
            pid: i64::from(std::process::id()),
        };
        let results = futures_util::future::join_all(
            (0..workers.count).map(|_| self.fleet_worker(request, header, index, &claimant, workers)),
        )
        .await;
        let mut stopped = false;
        for result in results {
            stopped |= result? == Flow::Stopped;
        }
        if stopped {
            return Ok(Flow::Stopped);
        }
        let states = self.db.partitions(run).await?;
        if let Some(left) = states.iter().find(|s| s.partition.pass == index && !s.done) {
            anyhow::bail!(
                "run {run}, pass {index} ({}): partition {} is not done{}; run the same command again to go on with it",
                pass.name,
                left.partition.index,
                left.holder
                    .as_ref()
                    .map(|h| format!(" (claimed by {h})"))
                    .unwrap_or_default()
            );
        }
        // The pass's figures: what each partition's run journaled.
        for state in states.iter().filter(|s| s.partition.pass == index) {
            let part_run = partition_run_id(run, index, state.partition.index);
            let summary = self.partition_log(&part_run)?.summary;
            log.summary.passes[index as usize].absorb(&summary.passes[index as usize]);
        }
        Ok(Flow::Done)
    }

    /// Ends the server sessions of this fleet run's unfinished partition
    /// runs, which a killed process may have left in an open transaction: a
    /// claim (or a batch) touching what that transaction wrote would wait
    /// for it. Their runs' own resumes would end them too, but only after
    /// the claim.
    async fn end_partition_sessions(&self, run: &str) -> anyhow::Result<()> {
        let mut sessions = Vec::new();
        for h in self.journal.runs()? {
            let ours = h.partition.as_ref().is_some_and(|p| p.fleet_run == run);
            if ours && h.status == RunStatus::Running {
                sessions.extend(self.partition_log(&h.run_id)?.sessions);
            }
        }
        if !sessions.is_empty()
            && let Err(e) = self.db.kill_sessions(sessions).await
        {
            tracing::warn!("run {run}: {e}");
        }
        Ok(())
    }

    /// What a partition's run journaled (empty if this journal has none of it).
    fn partition_log(&self, run: &str) -> anyhow::Result<RunLog> {
        let manifest = &self.plugin.manifest;
        let summary = Summary::new(manifest.passes.iter().map(|p| (p.name.as_str(), p.collection.as_str())));
        match self.journal.runs()?.iter().any(|h| h.run_id == run) {
            true => RunLog::read(self.journal.iter_entries(run)?.map(|e| Ok(e?.0)), summary, true),
            false => RunLog::read(std::iter::empty(), summary, true),
        }
    }

    /// One worker: claims and processes partitions of pass `index` until
    /// none is left to claim. An error stops the other workers too.
    async fn fleet_worker(
        &self,
        request: &RunRequest,
        fleet: &RunHeader,
        index: u32,
        claimant: &Claimant,
        workers: Workers,
    ) -> anyhow::Result<Flow> {
        loop {
            if self.stop.requested() {
                return Ok(Flow::Stopped);
            }
            let claimed = self
                .db
                .claim_partition(&fleet.run_id, index, claimant, request.lease)
                .await?;
            let Some((partition, lock)) = claimed else {
                return Ok(Flow::Done);
            };
            match self.run_partition(request, fleet, partition, lock, workers).await {
                Ok(Flow::Done) => {}
                Ok(Flow::Stopped) => return Ok(Flow::Stopped),
                Err(e) => {
                    self.stop.request();
                    return Err(e);
                }
            }
        }
    }

    /// Processes one claimed partition as its own run (resumed if this
    /// journal has it unfinished), then marks it done.
    async fn run_partition(
        &self,
        request: &RunRequest,
        fleet: &RunHeader,
        partition: Partition,
        lock: Lock,
        workers: Workers,
    ) -> anyhow::Result<Flow> {
        let index = partition.pass;
        let run = partition_run_id(&fleet.run_id, index, partition.index);
        let existing = self.journal.runs()?.into_iter().find(|h| h.run_id == run);
        let (mut header, resumed) = match existing {
            Some(h) if h.status == RunStatus::Finished => {
                // Its run finished, but the process stopped before the work
                // table said so.
                let documents = self.partition_log(&run)?.summary.passes[index as usize].documents;
                self.finish_partition(&lock, &run, documents).await?;
                return Ok(Flow::Done);
            }
            Some(h) => (h, true),
            None => {
                let header = RunHeader {
                    run_id: run.clone(),
                    started_at_ms: now_ms(),
                    status: RunStatus::Running,
                    finished_at_ms: None,
                    final_entries: None,
                    final_head: None,
                    partition: Some(PartitionRef {
                        fleet_run: fleet.run_id.clone(),
                        pass: index,
                        index: partition.index,
                        after: partition.after.as_ref().map(id_key),
                        upto: partition.upto.as_ref().map(id_key),
                    }),
                    ..fleet.clone()
                };
                self.journal.put_header(&header)?;
                (header, false)
            }
        };
        let manifest = &self.plugin.manifest;
        let summary = Summary::new(manifest.passes.iter().map(|p| (p.name.as_str(), p.collection.as_str())));
        let entries = self.journal.iter_entries(&run)?;
        let mut log = RunLog::read(entries.map(|e| Ok(e?.0)), summary, true)?;
        let mut bound = self.bind(&header, None, &log)?;
        if let Err(e) = self.db.kill_sessions(log.sessions.clone()).await {
            tracing::warn!("run {run}: {e}");
        }
        let active = ActiveRun::holding(
            self.db,
            self.journal,
            &run,
            lock.clone(),
            request.lease,
            header.before_images,
        )
        .await?;
        let mut sink = Sink::Execute(Box::new(match request.write_guard {
            true => active.guard(&manifest.passes),
            false => active,
        }));
        let flow = self
            .drive_partition(
                request, &header, &mut log, &mut bound, &mut sink, &partition, resumed, workers,
            )
            .await;
        let result = match flow {
            Ok(Flow::Done) => {
                self.journal.finish_run(&mut header, now_ms())?;
                let documents = log.summary.passes[index as usize].documents;
                self.finish_partition(&lock, &run, documents).await.map(|()| Flow::Done)
            }
            other => other,
        };
        sink.close().await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive_partition(
        &self,
        request: &RunRequest,
        header: &RunHeader,
        log: &mut RunLog,
        bound: &mut super::Bound,
        sink: &mut Sink,
        partition: &Partition,
        resumed: bool,
        workers: Workers,
    ) -> anyhow::Result<Flow> {
        let run = &header.run_id;
        let index = partition.pass;
        let manifest = &self.plugin.manifest;
        let pass = &manifest.passes[index as usize];
        if let Sink::Execute(active) = sink {
            self.check_journal_not_behind(run, log).await?;
            if let Some(pending) = log.pending.take() {
                self.settle(header, pending, active, log).await?;
            }
        }
        if log.done_passes.contains(&index) {
            return Ok(Flow::Done);
        }
        let recorded = Recorded::default();
        let instance = self.begin(header, bound, request, &recorded, log, resumed)?;
        // The fleet run applied `begin`'s schema operations before any partition.
        log.begin_schema = None;
        let mut driving = Driving {
            stage: Some(PluginStage::new(
                instance,
                recorded,
                &bound.identity.run_id,
                &manifest.name,
            )),
            pacer: Pacer::new(request.max_commit, request.max_lag),
            // The run's rate, shared by its workers.
            throttle: request
                .max_docs_per_sec
                .map(|rate| Throttle::new((rate / workers.count).max(1))),
        };
        let batch_size = batch_size_for(request, pass);
        let label = format!(
            "run {} (partition {} of pass {index} ({})), run {run}",
            header
                .partition
                .as_ref()
                .map(|p| p.fleet_run.as_str())
                .unwrap_or_default(),
            partition.index,
            pass.name
        );
        let after = log.checkpoints.get(&index).or(partition.after.as_ref()).cloned();
        let reader = PassReader::open_range(
            self.db,
            pass,
            after.as_ref(),
            partition.upto.as_ref(),
            batch_size,
            label.clone(),
            request.query_timeout,
        )
        .await?;
        let mut reader = ReadAhead::new(reader, request.read_ahead);
        let mut source = Source::Snapshot {
            reader: &mut reader,
            last: after,
            reopen: Reopen {
                db: self.db,
                pass,
                batch_size,
                label,
                query_timeout: request.query_timeout,
                read_ahead: request.read_ahead,
                upto: partition.upto.clone().map(Box::new),
            },
        };
        let mut step = Step {
            request,
            header,
            bound,
            index,
            pass,
            batch_size,
            window: None,
        };
        if self.process(&mut step, log, sink, &mut driving, &mut source).await? == Flow::Stopped {
            return Ok(Flow::Stopped);
        }
        self.journal
            .record(run, Entry::new(Record::PassDone { pass: index }, now_ms()))?;
        log.done_passes.insert(index);
        Ok(Flow::Done)
    }

    /// Marks a partition done in the work table, only while its claim holds;
    /// its progress marker goes.
    async fn finish_partition(&self, lock: &Lock, run: &str, documents: u64) -> anyhow::Result<()> {
        self.db.delete_marker(run).await?;
        if !self.db.partition_done(lock, documents).await? {
            return Err(DbError::LeaseLost {
                db: self.db.name.clone(),
                run_id: run.to_string(),
            }
            .into());
        }
        Ok(())
    }
}

/// A journaled partition bound (`{"_id": value}` BSON).
fn bound_of(bytes: &[u8]) -> anyhow::Result<Bson> {
    Document::from_reader(bytes)
        .ok()
        .and_then(|mut d| d.remove("_id"))
        .ok_or_else(|| anyhow::anyhow!("a journaled partition bound is not {{\"_id\": value}} BSON"))
}
