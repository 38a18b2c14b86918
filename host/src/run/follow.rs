//! The follow phase (`--follow`): after the snapshot passes, the documents
//! other writers inserted or changed since the run began go through the
//! same plugin and commit protocol, until the operator cuts over.
//!
//! ```text
//! run start   Db::changes(now) -> FollowFrom{position}       journaled before the first read
//! snapshot    the passes, as without --follow
//! follow      Changes::next_window -> FollowWindow{from, to, documents}   journaled, then
//!             per pass: the documents read again through its filter -> process (guarded writes)
//! cutover     the run's cutover document arrives in the stream: its window is the last
//! proof       FollowDone{from, to, windows}    then finish, verify, stamp
//! ```
//!
//! Windows chain (`from` is the previous window's `to`), so the journal
//! shows that no stretch of the stream was skipped. A resumed run finishes
//! the last window's documents no applied batch processed, then reads the
//! stream on from that window's end. godwit's own writes are left out of
//! the stream by their sessions' `lsid`s.

use super::engine::{Driving, Flow, Source, Step};
use super::log::{OpenWindow, RunLog};
use super::{Bound, Engine, RunRequest, batch_size_for, now_ms};
use crate::db::reader::PassReader;
use crate::journal::{Entry, FollowDone, FollowWindow, Record, RunHeader};
use crate::run::commit::Sink;
use anyhow::Context;
use std::time::{Duration, Instant};

/// How long the stream may stay silent before a window is closed and, with
/// `--follow-until-idle`, before the idle time starts to count.
const QUIET: Duration = Duration::from_millis(500);

/// The follow phase as the progress display shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowProgress {
    pub windows: u64,
    /// Documents processed (named by the stream and read again).
    pub documents: u64,
    /// Documents named by the window in hand, not yet processed.
    pub pending: u64,
    /// How far the last processed change lies behind now.
    pub lag: Option<Duration>,
    /// The cutover is requested: the run drains up to it.
    pub cutting_over: bool,
}

impl Engine<'_> {
    /// A run with `--follow` takes its change stream's position before it
    /// reads its first document, and journals it (flushed).
    pub(super) async fn start_following(
        &self,
        header: &RunHeader,
        log: &mut RunLog,
        sink: &Sink,
    ) -> anyhow::Result<()> {
        let run = &header.run_id;
        if log.follow.from.is_some() {
            return Ok(());
        }
        if !sink.execute() {
            anyhow::bail!(
                "run {run}: --follow needs --execute (a dry run writes nothing, so there is nothing to keep up to date)"
            );
        }
        if !self.db.transactions {
            let db = self.db.name.clone();
            return Err(super::FollowRefused::NoReplicaSet { db }.into());
        }
        if log.last_batch.is_some() || !log.done_passes.is_empty() {
            return Err(super::FollowRefused::NotTracked { run: run.clone() }.into());
        }
        let changes = self.db.changes(run, &self.pass_collections(), None, &[]).await?;
        let position = changes.position().to_vec();
        let entry = self
            .journal
            .record(run, Entry::new(Record::FollowFrom { position }, now_ms()))?;
        log.push(entry)?;
        tracing::info!("run {run}: following changes from now on (--follow)");
        Ok(())
    }

    fn pass_collections(&self) -> Vec<String> {
        let mut collections: Vec<String> = self
            .plugin
            .manifest
            .passes
            .iter()
            .map(|p| p.collection.clone())
            .collect();
        collections.sort();
        collections.dedup();
        collections
    }

    /// Reads the change stream from where the run's journal says it stands
    /// and processes window after window until the cutover; then journals
    /// the proof.
    pub(super) async fn follow(
        &self,
        request: &RunRequest,
        header: &RunHeader,
        log: &mut RunLog,
        bound: &mut Bound,
        sink: &mut Sink,
        driving: &mut Driving,
    ) -> anyhow::Result<Flow> {
        if log.follow.done {
            return Ok(Flow::Done);
        }
        let run = header.run_id.clone();
        let until_idle = request.follow.as_ref().and_then(|f| f.until_idle);
        if request.follow.is_none() {
            tracing::info!("run {run} was started with --follow: it follows again; end it with `godwit cutover {run}`");
        }
        let own = {
            let Sink::Execute(active) = sink else {
                anyhow::bail!("run {run}: a dry run has no follow phase");
            };
            let mut own = log.sessions.clone();
            own.extend(active.lsid());
            own
        };
        let from = log
            .follow
            .position()
            .context("a follow run has a stream position")?
            .to_vec();
        let mut changes = self
            .db
            .changes(&run, &self.pass_collections(), Some(&from), &own)
            .await?;
        let mut progress = FollowProgress {
            windows: log.follow.windows,
            ..FollowProgress::default()
        };
        let mut last_to = from;
        // The window the last process left unfinished.
        if let Some(open) = log.follow.window.take() {
            let cutover = open.window.cutover;
            let last_event_ms = open.window.last_event_ms;
            if let Flow::Stopped = self
                .process_window(request, header, log, bound, sink, driving, open, &mut progress)
                .await?
            {
                return Ok(Flow::Stopped);
            }
            if cutover {
                return self.follow_done(&run, log, last_to, last_event_ms).await;
            }
        }
        let window_max = self
            .plugin
            .manifest
            .passes
            .iter()
            .map(|p| batch_size_for(request, p) as usize)
            .max()
            .unwrap_or(1);
        let mut quiet_since = Instant::now();
        let mut cutover_requested = false;
        let mut last_said = Instant::now();
        loop {
            if !self.between_batches(request, sink).await? {
                return Ok(Flow::Stopped);
            }
            let window = changes.next_window(window_max, QUIET, &run).await?;
            if window.documents.is_empty() && !window.cutover {
                progress.lag = None;
                progress.pending = 0;
                self.observer.follow(&progress);
                if let Some(idle) = until_idle
                    && !cutover_requested
                    && quiet_since.elapsed() >= idle
                {
                    tracing::info!(
                        "run {run}: no change for {} s (--follow-until-idle): cutting over",
                        idle.as_secs()
                    );
                    self.db.request_cutover(&run, "--follow-until-idle").await?;
                    cutover_requested = true;
                    progress.cutting_over = true;
                }
                if last_said.elapsed() >= Duration::from_secs(30) {
                    tracing::info!(
                        "run {run}: following: {} documents in {} windows so far, nothing pending; end it with \
                         `godwit cutover {run}`",
                        progress.documents,
                        progress.windows
                    );
                    last_said = Instant::now();
                }
                continue;
            }
            if !window.documents.is_empty() {
                quiet_since = Instant::now();
            }
            let record = FollowWindow {
                number: log.follow.windows + 1,
                from: last_to.clone(),
                to: window.to.clone(),
                documents: window.documents,
                events: window.events,
                last_event_ms: window.last_event_ms,
                cutover: window.cutover,
            };
            let entry = self
                .journal
                .record(&run, Entry::new(Record::FollowWindow(record), now_ms()))?;
            log.push(entry)?;
            failpoint!("follow-window-journaled");
            let open = log.follow.window.take().expect("just journaled");
            let (to, cutover, last_event_ms) = (open.window.to.clone(), open.window.cutover, open.window.last_event_ms);
            if let Flow::Stopped = self
                .process_window(request, header, log, bound, sink, driving, open, &mut progress)
                .await?
            {
                return Ok(Flow::Stopped);
            }
            last_to = to;
            if cutover {
                return self.follow_done(&run, log, last_to, last_event_ms).await;
            }
        }
    }

    /// Processes a window's documents, pass by pass: each read again through
    /// the pass's filter (a document that no longer matches is left alone).
    #[allow(clippy::too_many_arguments)]
    async fn process_window(
        &self,
        request: &RunRequest,
        header: &RunHeader,
        log: &mut RunLog,
        bound: &mut Bound,
        sink: &mut Sink,
        driving: &mut Driving,
        open: OpenWindow,
        progress: &mut FollowProgress,
    ) -> anyhow::Result<Flow> {
        let number = open.window.number;
        if let Sink::Execute(active) = sink {
            active.follow_at(&open.window.to);
        }
        progress.windows = number;
        progress.pending = open.remaining.values().map(|ids| ids.len() as u64).sum();
        self.observer.follow(&progress.clone());
        let manifest = &self.plugin.manifest;
        for (index, ids) in open.remaining {
            let pass = &manifest.passes[index as usize];
            let keys: Vec<Vec<u8>> = ids.into_iter().collect();
            let named = keys.len() as u64;
            let documents: Vec<Vec<u8>> = PassReader::reread(self.db, pass, &keys)
                .await
                .with_context(|| {
                    format!(
                        "run {}, pass {index} ({}), follow window {number}",
                        header.run_id, pass.name
                    )
                })?
                .into_iter()
                .map(bson::RawDocumentBuf::into_bytes)
                .collect();
            let mut source = Source::Given(documents.into_iter());
            let mut step = Step {
                request,
                header,
                bound: &mut *bound,
                index,
                pass,
                batch_size: batch_size_for(request, pass),
                window: Some(number),
            };
            if self.process(&mut step, log, sink, driving, &mut source).await? == Flow::Stopped {
                return Ok(Flow::Stopped);
            }
            progress.pending = progress.pending.saturating_sub(named);
            progress.documents += named;
        }
        progress.lag = open
            .window
            .last_event_ms
            .map(|ms| Duration::from_millis(now_ms().saturating_sub(ms).max(0) as u64));
        if let Some(figures) = log.summary.follow.as_mut() {
            figures.lag_ms = progress.lag.map(|lag| lag.as_millis() as u64);
            figures.pending = progress.pending;
        }
        self.observer.follow(&progress.clone());
        Ok(Flow::Done)
    }

    /// Journals the proof that every change up to the cutover was processed.
    async fn follow_done(
        &self,
        run: &str,
        log: &mut RunLog,
        to: Vec<u8>,
        cutover_ms: Option<i64>,
    ) -> anyhow::Result<Flow> {
        let done = FollowDone {
            from: log.follow.from.clone().unwrap_or_default(),
            to,
            windows: log.follow.windows,
            documents: log.follow.documents,
            cutover_ms,
        };
        let entry = self
            .journal
            .record(run, Entry::new(Record::FollowDone(done), now_ms()))?;
        log.push(entry)?;
        if let Err(e) = self.db.delete_cutover(run).await {
            tracing::warn!("run {run}: {e}");
        }
        tracing::info!(
            "run {run}: follow phase done: {} documents named in {} windows, every change up to the cutover processed",
            log.follow.documents,
            log.follow.windows
        );
        Ok(Flow::Done)
    }
}
