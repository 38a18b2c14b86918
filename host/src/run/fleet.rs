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
use crate::db::{Claimant, DbError, FleetDoc, Lock, Partition, id_key};
use crate::journal::{Entry, PartitionDone, PartitionRef, Record, RunHeader, RunStatus};
use bson::{Bson, Document};

/// The run of partition `index` of pass `pass` of fleet run `fleet` in the
/// journal `journal` (its id; the first 12 characters name it).
pub fn partition_run_id(fleet: &str, pass: u32, index: u32, journal: &str) -> String {
    format!(
        "{fleet}.{pass}.{index}@{}",
        &journal[journal.len().saturating_sub(12)..]
    )
}

/// Where `journal` is, as an absolute path when it can be made one.
fn journal_path(journal: &crate::journal::Journal) -> String {
    let dir = journal.dir();
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// This process, among the claimants that share its journal: a partition
/// claimed by another process with this journal is taken over at once (that
/// process is gone: a journal is open in one process at a time).
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
                Some(Workers {
                    count: 1,
                    partitions,
                    split: crate::db::SplitBy::Auto,
                })
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
                    .split_points(pass, workers.partitions, workers.split, request.query_timeout)
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
        self.db
            .announce_fleet(&FleetDoc {
                run: run.clone(),
                plugin: header.plugin_name.clone(),
                version: header.plugin_version.clone(),
                sha256: header.plugin_sha256.clone(),
                params: header.params.clone(),
                pass: index,
                before_images: header.before_images,
                write_guard: request.write_guard,
                batch_size: request.batch_size,
                lease_secs: request.lease.as_secs(),
            })
            .await?;
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
            journal: self.journal.id()?,
            path: journal_path(self.journal),
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
        // The pass's figures: what this journal's partition runs journaled;
        // its documents as every worker's batches counted them.
        let figures = &mut log.summary.passes[index as usize];
        for state in states.iter().filter(|s| s.partition.pass == index) {
            for h in self.partition_runs(run, &state.partition)? {
                figures.absorb(&self.partition_log(&h.run_id)?.summary.passes[index as usize]);
            }
        }
        figures.documents = states
            .iter()
            .filter(|s| s.partition.pass == index)
            .map(|s| s.documents)
            .sum();
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

    /// Journals (`Record::PartitionsDone`) which runs wrote each partition
    /// of fleet run `run`'s pass `pass`, and the journals of the processes
    /// that claimed it, from the work table - which goes when the run is
    /// stamped; an auditor collects the workers' journals by it.
    pub(super) async fn journal_partitions_done(&self, run: &str, pass: u32) -> anyhow::Result<()> {
        let partitions = self
            .db
            .partitions(run)
            .await?
            .into_iter()
            .filter(|s| s.partition.pass == pass)
            .map(|s| PartitionDone {
                index: s.partition.index,
                documents: s.documents,
                runs: s.partition.runs,
                holders: s.partition.holders,
                last_commits: s.partition.last_commits,
            })
            .collect();
        let record = Record::PartitionsDone { pass, partitions };
        self.journal.record(run, Entry::new(record, now_ms()))?;
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
            if self.stop.requested() || !self.fleet_alive(&fleet.run_id).await? {
                return Ok(Flow::Stopped);
            }
            let orphaned = self.db.expired_sessions(&fleet.run_id, index).await?;
            if !orphaned.is_empty()
                && let Err(e) = self.db.kill_sessions(orphaned).await
            {
                tracing::warn!("run {}: {e}", fleet.run_id);
            }
            let claimed = self
                .db
                .claim_partition(&fleet.run_id, index, claimant, request.lease)
                .await?;
            let Some((partition, lock)) = claimed else {
                // Nothing to claim: done, or partitions other workers hold
                // (taken over here if their lease runs out).
                let states = self.db.partitions(&fleet.run_id).await?;
                if states.iter().filter(|s| s.partition.pass == index).all(|s| s.done) {
                    return Ok(Flow::Done);
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
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
        let (mut header, resumed) = match self.partition_header(fleet, &partition, &lock)? {
            Some(opened) => opened,
            None => {
                // Its run finished, but the process stopped before the work
                // table said so.
                self.finish_partition(&lock, &partition).await?;
                return Ok(Flow::Done);
            }
        };
        let run = header.run_id.clone();
        let manifest = &self.plugin.manifest;
        let summary = Summary::new(manifest.passes.iter().map(|p| (p.name.as_str(), p.collection.as_str())));
        let entries = self.journal.iter_entries(&run)?;
        let mut log = RunLog::read(entries.map(|e| Ok(e?.0)), summary, true)?;
        let mut bound = self.bind(&header, None, &log)?;
        // The sessions earlier holders wrote in: ours (journaled), and the
        // previous holder's (recorded with the claim), whose open
        // transaction would otherwise block this partition's writes.
        let mut sessions = log.sessions.clone();
        sessions.extend(partition.session.clone());
        if let Err(e) = self.db.kill_sessions(sessions).await {
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
        if let Some(lsid) = active.lsid() {
            self.db.claim_session(&lock, lsid).await?;
        }
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
                self.finish_partition(&lock, &partition).await.map(|()| Flow::Done)
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
        // Our own run's checkpoint, else where the partition's last batch
        // (another worker's) ended, else the partition's start.
        let after = log
            .checkpoints
            .get(&index)
            .or(partition.checkpoint.as_ref())
            .or(partition.after.as_ref())
            .cloned();
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

    /// Marks a partition done in the work table, only while its claim
    /// holds. Its progress markers go: every partition run's of this
    /// journal, and those of every run that wrote a batch of it.
    async fn finish_partition(&self, lock: &Lock, partition: &Partition) -> anyhow::Result<()> {
        let mut runs: Vec<String> = self
            .partition_runs(&lock.run_id, partition)?
            .into_iter()
            .map(|h| h.run_id)
            .collect();
        runs.extend(partition.runs.iter().cloned());
        runs.sort();
        runs.dedup();
        let lost = || DbError::LeaseLost {
            db: self.db.name.clone(),
            run_id: lock.doc_id.clone(),
        };
        // What the markers say was committed last, for revert: a run killed
        // between a commit and its journal entry (kept, then journaled by
        // the fleet run in `PartitionsDone`).
        if !self.db.keep_last_commits(lock, &runs).await? {
            return Err(lost().into());
        }
        for run in &runs {
            self.db.delete_marker(run).await?;
        }
        if !self.db.partition_done(lock).await? {
            return Err(lost().into());
        }
        Ok(())
    }

    /// This journal's runs of one partition of fleet run `fleet`, oldest first.
    fn partition_runs(&self, fleet: &str, partition: &Partition) -> anyhow::Result<Vec<RunHeader>> {
        let mut runs: Vec<RunHeader> = self
            .journal
            .runs()?
            .into_iter()
            .filter(|h| {
                h.partition
                    .as_ref()
                    .is_some_and(|p| p.fleet_run == fleet && p.pass == partition.pass && p.index == partition.index)
            })
            .collect();
        runs.sort_by_key(|h| h.started_at_ms);
        Ok(runs)
    }

    /// The run that goes on with a claimed partition, and whether it is
    /// resumed: this journal's last run of it, if it is unfinished and no
    /// other run wrote to the partition after it; else a new run, which
    /// starts where the partition's last committed batch ended (whoever
    /// wrote it) - a run of ours overtaken by another worker is abandoned:
    /// its uncommitted batch is stale. `None`: our last run of it finished
    /// (only the work table does not say so yet).
    fn partition_header(
        &self,
        fleet: &RunHeader,
        partition: &Partition,
        lock: &Lock,
    ) -> anyhow::Result<Option<(RunHeader, bool)>> {
        let runs = self.partition_runs(&fleet.run_id, partition)?;
        if let Some(last) = runs.last() {
            let overtaken = partition.last_run.as_ref().is_some_and(|w| *w != last.run_id);
            match last.status {
                RunStatus::Finished if !overtaken => return Ok(None),
                RunStatus::Running if !overtaken => return Ok(Some((last.clone(), true))),
                RunStatus::Running => {
                    tracing::info!(
                        "run {}: another worker went on with its partition ({}); abandoned",
                        last.run_id,
                        partition.last_run.as_deref().unwrap_or_default()
                    );
                    let mut abandoned = last.clone();
                    abandoned.status = RunStatus::Abandoned;
                    abandoned.finished_at_ms = Some(now_ms());
                    self.journal.put_header(&abandoned)?;
                }
                _ => {}
            }
        }
        let base = partition_run_id(&fleet.run_id, partition.pass, partition.index, &self.journal.id()?);
        let run_id = match runs.is_empty() {
            true => base,
            false => format!("{base}.{}", lock.token),
        };
        let header = RunHeader {
            run_id,
            started_at_ms: now_ms(),
            status: RunStatus::Running,
            finished_at_ms: None,
            final_entries: None,
            final_head: None,
            partition: Some(PartitionRef {
                fleet_run: fleet.run_id.clone(),
                pass: partition.pass,
                index: partition.index,
                after: partition.after.as_ref().map(id_key),
                upto: partition.upto.as_ref().map(id_key),
            }),
            ..fleet.clone()
        };
        self.journal.put_header(&header)?;
        Ok(Some((header, false)))
    }
}

/// A journaled partition bound (`{"_id": value}` BSON).
fn bound_of(bytes: &[u8]) -> anyhow::Result<Bson> {
    Document::from_reader(bytes)
        .ok()
        .and_then(|mut d| d.remove("_id"))
        .ok_or_else(|| anyhow::anyhow!("a journaled partition bound is not {{\"_id\": value}} BSON"))
}

/// `godwit worker`: what a worker process is asked to do.
pub struct WorkRequest {
    /// The fleet run to join; `None`: the one unfinished fleet run of the plugin.
    pub run: Option<String>,
    /// Workers in this process.
    pub workers: u32,
    /// How long to wait for a fleet run to join (one not started yet, or
    /// whose process is restarting) before giving up.
    pub wait: std::time::Duration,
    /// Pacing and reading, this process's own: `--max-docs-per-sec` (for
    /// this process), `--max-commit-ms`, `--max-lag-ms`, `--read-ahead`,
    /// `--query-timeout`, `--pause-file`.
    pub local: RunRequest,
}

/// What a worker process did.
#[derive(Debug, serde::Serialize)]
pub struct WorkOutcome {
    pub run: Option<String>,
    /// `finished` (every partition of every pass done: the fleet run
    /// verifies and stamps), `stamped` (the run was stamped meanwhile) or
    /// `interrupted` (Ctrl-C).
    pub status: &'static str,
}

impl Engine<'_> {
    /// A worker process: joins the plugin's fleet run on this database
    /// (its `fleet:` document, which the run writes when it splits a pass)
    /// and claims partitions of the pass the run is on - while the run
    /// holds the database's lock - until every partition of the last pass
    /// is done, or the run is stamped.
    pub async fn work(&self, request: &WorkRequest) -> anyhow::Result<WorkOutcome> {
        let started = std::time::Instant::now();
        let sha256 = self.plugin.sha256_hex();
        let manifest = &self.plugin.manifest;
        let mut joined: Option<String> = None;
        let claimant = Claimant {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            process: process_nonce().to_string(),
            pid: i64::from(std::process::id()),
            journal: self.journal.id()?,
            path: journal_path(self.journal),
        };
        // Since when this process has had nothing to join (reset while it works).
        let mut waiting_since = started;
        let give_up = |what: String, since: std::time::Instant| -> anyhow::Result<()> {
            match since.elapsed() > request.wait {
                true => Err(FleetError::Unavailable {
                    what,
                    waited: request.wait.as_secs(),
                }
                .into()),
                false => Ok(()),
            }
        };
        loop {
            if self.stop.requested() {
                return Ok(WorkOutcome {
                    run: joined,
                    status: "interrupted",
                });
            }
            let mut fleets = self.db.fleets(&sha256).await?;
            if request.run.is_none() && fleets.len() > 1 {
                // An abandoned fleet run leaves its document: the live one
                // holds the database's lock.
                let mut alive = Vec::new();
                for fleet in fleets {
                    if self.fleet_alive(&fleet.run).await? {
                        alive.push(fleet);
                    }
                }
                fleets = alive;
            }
            let fleet = match &request.run {
                Some(run) => fleets.into_iter().find(|f| f.run == *run),
                None if fleets.len() > 1 => {
                    let runs: Vec<&str> = fleets.iter().map(|f| f.run.as_str()).collect();
                    return Err(FleetError::Ambiguous {
                        plugin: manifest.name.clone(),
                        runs: runs.join(", "),
                    }
                    .into());
                }
                None => fleets.into_iter().next(),
            };
            let Some(fleet) = fleet else {
                // A run of this plugin file already stamped (this worker may
                // have been started again after the run finished).
                let stamped = self.db.history().await?.into_iter().find(|h| {
                    h.sha256.as_deref() == Some(sha256.as_str())
                        && request.run.as_ref().is_none_or(|r| h.run_id.as_ref() == Some(r))
                });
                if joined.is_some() || stamped.is_some() {
                    // Its `fleet:` document goes with the stamp.
                    return Ok(WorkOutcome {
                        run: joined.or(stamped.and_then(|h| h.run_id)),
                        status: "stamped",
                    });
                }
                give_up(
                    format!(
                        "no fleet run of plugin {} {} (sha256 {}) on database {}{}: start one with `godwit run PLUGIN \
                     --execute --workers N` (the same plugin file)",
                        manifest.name,
                        manifest.version,
                        &sha256[..12],
                        self.db.name,
                        request.run.as_ref().map(|r| format!(" named {r}")).unwrap_or_default()
                    ),
                    waiting_since,
                )?;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            };
            if joined.is_none() {
                // Transactions an earlier process with this journal left open.
                self.end_partition_sessions(&fleet.run).await?;
            }
            joined = Some(fleet.run.clone());
            // The run must be alive: it holds the database's lock.
            if !self.fleet_alive(&fleet.run).await? {
                give_up(
                    format!(
                        "fleet run {} does not hold the lock of database {} (its process stopped?): resume it with \
                     `godwit run PLUGIN --execute --workers N`",
                        fleet.run, self.db.name
                    ),
                    waiting_since,
                )?;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            waiting_since = std::time::Instant::now();
            let header = self.fleet_header(&fleet);
            let mut run_request = RunRequest {
                params: fleet.params.clone(),
                mode: crate::journal::RunMode::Execute,
                batch_size: fleet.batch_size,
                lease: std::time::Duration::from_secs(fleet.lease_secs),
                before_images: fleet.before_images,
                write_guard: fleet.write_guard,
                ..request.local.clone()
            };
            let workers = Workers {
                count: request.workers,
                partitions: 0,
                split: crate::db::SplitBy::Auto,
            };
            run_request.workers = Some(workers);
            let index = fleet.pass;
            let results = futures_util::future::join_all(
                (0..workers.count).map(|_| self.fleet_worker(&run_request, &header, index, &claimant, workers)),
            )
            .await;
            let mut stopped = false;
            for result in results {
                stopped |= result? == Flow::Stopped;
            }
            if stopped {
                continue;
            }
            if index as usize + 1 == manifest.passes.len() {
                return Ok(WorkOutcome {
                    run: joined,
                    status: "finished",
                });
            }
            // The run splits the next pass once every partition of this one is done.
            loop {
                if self.stop.requested() {
                    break;
                }
                match self.db.fleets(&sha256).await?.into_iter().find(|f| f.run == fleet.run) {
                    Some(next) if next.pass == index => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                    _ => break,
                }
            }
        }
    }

    /// Whether fleet run `run` holds the database's lock (its process is
    /// alive): partitions are claimed only then.
    async fn fleet_alive(&self, run: &str) -> anyhow::Result<bool> {
        let lock = self.db.lock_document().await?;
        Ok(lock.as_ref().is_some_and(|l| {
            l.get_str("run_id").is_ok_and(|r| r == run)
                && l.get_datetime("expires_at").is_ok_and(|e| *e > bson::DateTime::now())
        }))
    }

    /// The fleet run's header as a worker process builds it from the
    /// run's `fleet:` document (its own journal holds only its partitions).
    fn fleet_header(&self, fleet: &crate::db::FleetDoc) -> RunHeader {
        let params_doc = super::params_document(&fleet.params);
        RunHeader {
            format: crate::journal::FORMAT_VERSION,
            run_id: fleet.run.clone(),
            plugin_name: fleet.plugin.clone(),
            plugin_version: fleet.version.clone(),
            plugin_sha256: fleet.sha256.clone(),
            plugin_file: self.plugin.file.display().to_string(),
            params: fleet.params.clone(),
            params_hash: crate::hash::to_hex(&crate::hash::sha256(&params_doc.to_vec().unwrap_or_default())),
            database: self.db.name.clone(),
            uri: self.db.uri.clone(),
            metadata_collection: self.db.metadata.clone(),
            mode: crate::journal::RunMode::Execute,
            host_version: env!("CARGO_PKG_VERSION").to_string(),
            wasmtime_version: crate::WASMTIME_VERSION.to_string(),
            started_at_ms: now_ms(),
            status: RunStatus::Running,
            finished_at_ms: None,
            final_entries: None,
            final_head: None,
            before_images: fleet.before_images,
            reverts: None,
            partition: None,
        }
    }
}

/// Why a worker process cannot work.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{what} (waited {waited} s; --wait SECONDS to wait longer)")]
    Unavailable { what: String, waited: u64 },
    #[error("plugin {plugin} has several unfinished fleet runs on this database ({runs}): name one with --run RUN")]
    Ambiguous { plugin: String, runs: String },
}
