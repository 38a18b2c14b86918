//! The per-batch commit protocol, in one place, shared by run, resume and
//! revert:
//!
//! ```text
//! BatchRecord --Journal::pending, write_pending (append + flush, beside the batch's reads)--> PreparedBatch
//!   --ActiveRun::apply (one transaction: actions, progress marker, lock fence)--> CommittedBatch
//!   --ActiveRun::committed--> journal `Committed`
//! ```
//!
//! **Invariants**, each held by the only code that can build the next type:
//! - a batch's writes reach the database only once the journal holds it: a
//!   [`PreparedBatch`] is built only by [`PreparedBatch::prepare`] (the
//!   journal made it durable first), [`PreparedBatch::journaled`] (it was
//!   read back from disk) and [`ActiveRun::prepare_and_apply`], whose writer
//!   has the entry written ([`crate::db::BatchJournal`]) before the batch's
//!   first write and gives the batch back only if it was;
//! - only an [`ActiveRun`] writes, and it exists only while its run holds the
//!   database's lease lock; it releases the lock when closed, and a dropped
//!   one still stops renewing it (and releases it in the background);
//! - a dry run is [`Sink::DryRun`]: it has no lock, no session and no writer.

use super::batch::{self, BatchRecord, committed_entry, touched_of};
use super::now_ms;
use super::report::Touched;
use crate::db::{Applied, BatchWrite, Db, DbError, Expectations, Guard, Lock, LockHolder};
use crate::journal::{Entry, Image, Journal, Prepared, Record};
use crate::plugin::actions::ValidAction;
use crate::plugin::contract::ValidPass;
use bson::{Bson, Document};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where a run's batches go.
pub enum Sink {
    /// Journaled as `Planned`; nothing is written to the database.
    DryRun,
    /// Journaled as `Prepared`, then written under the run's lock.
    Execute(Box<ActiveRun>),
}

impl Sink {
    pub fn execute(&self) -> bool {
        matches!(self, Sink::Execute(_))
    }

    /// Stops lease renewal and releases the lock of an execute.
    pub async fn close(self) {
        if let Sink::Execute(active) = self {
            (*active).close().await;
        }
    }
}

/// A batch the journal holds on disk, ready to be written.
#[derive(Debug)]
pub struct PreparedBatch {
    prepared: Prepared,
    checkpoint: Option<Bson>,
    actions: Vec<ValidAction>,
}

impl PreparedBatch {
    /// Journals `record` as `Prepared` (or `Finish`) and flushes it.
    pub fn prepare(journal: &Journal, run: &str, record: BatchRecord) -> anyhow::Result<Self> {
        let (entry, checkpoint, actions) = record.into_entry(true, now_ms());
        let prepared = journal.prepare(run, entry)?;
        Ok(PreparedBatch {
            prepared,
            checkpoint,
            actions,
        })
    }

    /// A batch journaled by an earlier process whose commit was not
    /// journaled (resume settles it).
    pub fn journaled(entry: Entry) -> anyhow::Result<Self> {
        let journaled = entry.batch().expect("a Prepared or Finish entry");
        let actions = batch::decode_actions(journaled, entry.seq)?;
        let checkpoint = batch::checkpoint_of(journaled);
        Ok(PreparedBatch {
            prepared: Prepared::journaled(entry),
            checkpoint,
            actions,
        })
    }

    pub fn seq(&self) -> u64 {
        self.prepared.seq()
    }

    pub fn pass(&self) -> Option<u32> {
        self.prepared.entry().pass()
    }

    pub fn entry(&self) -> &Entry {
        self.prepared.entry()
    }

    /// The documents the plugin was given (moved out of the entry).
    fn into_inputs(self) -> Vec<Vec<u8>> {
        match self.prepared.into_entry().record {
            Record::Prepared(batch) | Record::Finish(batch) => batch.inputs,
            _ => Vec::new(),
        }
    }
}

/// A batch the database committed (with its progress marker).
#[derive(Debug)]
pub struct CommittedBatch {
    pub seq: u64,
    pub pass: Option<u32>,
    /// Documents touched, as the server's replies counted them.
    pub touched: Touched,
    /// Before-images and after-image hashes, when captured - or the
    /// journal's `Images` entry holding them.
    pub images: Vec<Image>,
    pub images_at: Option<u64>,
}

impl CommittedBatch {
    fn of(batch: &PreparedBatch, applied: Applied) -> Self {
        CommittedBatch {
            seq: batch.seq(),
            pass: batch.pass(),
            touched: touched_of(applied.counts),
            images: applied.images,
            images_at: applied.images_at,
        }
    }

    /// A batch an earlier process committed (its progress marker says so),
    /// with what the marker still holds of its counts and images.
    pub fn settled(
        batch: &PreparedBatch,
        counts: Option<crate::db::WriteCounts>,
        images: Vec<Image>,
        images_at: Option<u64>,
    ) -> Self {
        CommittedBatch {
            seq: batch.seq(),
            pass: batch.pass(),
            // A marker that moved on no longer holds the counts: they stay 0.
            touched: counts.map(touched_of).unwrap_or_default(),
            images,
            images_at,
        }
    }
}

/// An execute run holding the database: its lease lock (renewed in the
/// background), its server session and the journal entry naming that
/// session. Used by run, resume and revert.
pub struct ActiveRun {
    run: String,
    db: Db,
    lock: Lock,
    session: Option<mongodb::ClientSession>,
    lease_lost: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
    capture_images: bool,
    /// The passes whose batches are written only if the documents the
    /// plugin read are unchanged (the write guard); empty: no guard.
    guarded: Vec<ValidPass>,
    /// The follow phase's change-stream position, written with the marker.
    follow: Option<Vec<u8>>,
    released: bool,
}

impl ActiveRun {
    /// Ends the server sessions earlier processes of the run left (a
    /// transaction one of them left open must neither block our writes nor
    /// commit behind our back), takes the lock (over `stale`, runs known to
    /// be finished), starts a session and journals it. If a step after the
    /// lock fails, the lock is released before the error is returned: a
    /// retry must not meet "locked" until the lease expires.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        db: &Db,
        journal: &Journal,
        holder: LockHolder,
        lease: Duration,
        stale: &[String],
        old_sessions: Vec<Document>,
        capture_images: bool,
    ) -> anyhow::Result<Self> {
        if let Err(e) = db.kill_sessions(old_sessions).await {
            tracing::warn!("run {}: {e}", holder.run_id);
        }
        let lock = db.acquire_lock_over(&holder, lease, stale).await?;
        Self::holding(db, journal, &holder.run_id, lock, lease, capture_images).await
    }

    /// Run `run` writing under `lock`, already taken: the database's lock,
    /// or a fleet partition's claim (a partition's run, `run::fleet`).
    pub async fn holding(
        db: &Db,
        journal: &Journal,
        run: &str,
        lock: Lock,
        lease: Duration,
        capture_images: bool,
    ) -> anyhow::Result<Self> {
        let run = run.to_string();
        let started = async {
            let session = db.session().await?;
            if let Some(s) = &session {
                let lsid = s.id().to_vec()?;
                journal.record(&run, Entry::new(Record::Session { lsid }, now_ms()))?;
            }
            anyhow::Ok(session)
        }
        .await;
        let session = match started {
            Ok(session) => session,
            Err(e) => {
                release(db, &run, &lock).await;
                return Err(e);
            }
        };
        let lease_lost = Arc::new(AtomicBool::new(false));
        let renewal = spawn_renewal(db.clone(), lock.clone(), lease, lease_lost.clone());
        Ok(ActiveRun {
            run,
            db: db.clone(),
            lock,
            session,
            lease_lost,
            renewal,
            capture_images,
            guarded: Vec::new(),
            follow: None,
            released: false,
        })
    }

    /// Guards the batches of `passes`: each applies only if the documents
    /// its plugin call read are still, inside the batch's transaction, what
    /// the plugin saw; otherwise [`ActiveRun::apply`] fails with
    /// [`DbError::Conflict`] and writes nothing.
    pub fn guard(mut self, passes: &[ValidPass]) -> Self {
        self.guarded = passes.to_vec();
        self
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    /// The server session the run writes in (its `lsid`), if any.
    pub fn lsid(&self) -> Option<Document> {
        self.session.as_ref().map(|s| s.id().clone())
    }

    /// From now on the progress marker also says where the follow phase's
    /// change stream stands.
    pub fn follow_at(&mut self, position: &[u8]) {
        self.follow = Some(position.to_vec());
    }

    /// Fails once another runner has taken the lock over (the lease expired).
    pub fn check_lease(&self) -> Result<(), DbError> {
        if self.lease_lost.load(Ordering::SeqCst) {
            return Err(DbError::LeaseLost {
                db: self.db.name.clone(),
                run_id: self.run.clone(),
            });
        }
        Ok(())
    }

    /// Writes a prepared batch and moves the progress marker, in one
    /// transaction fenced by the lock; with `expect`, only if every document
    /// it names is still as expected; for a guarded pass, only if the
    /// documents the plugin read are unchanged.
    pub async fn apply(
        &mut self,
        journal: &Journal,
        batch: &PreparedBatch,
        expect: Option<&Expectations>,
    ) -> Result<CommittedBatch, DbError> {
        let applied = self
            .write(journal, batch.entry(), &batch.checkpoint, &batch.actions, expect, None)
            .await?;
        Ok(CommittedBatch::of(batch, applied))
    }

    /// Journals a new batch and applies it as [`ActiveRun::apply`] does,
    /// its journal entry written and flushed while the batch's reads (the
    /// guard's, the before-images) are in flight: the database sees none of
    /// its writes before the journal holds it. Gives the batch back as
    /// prepared whenever the journal holds it, with the outcome of its
    /// writes.
    pub async fn prepare_and_apply(
        &mut self,
        journal: &Journal,
        record: BatchRecord,
    ) -> anyhow::Result<(PreparedBatch, Result<CommittedBatch, DbError>)> {
        let (entry, checkpoint, actions) = record.into_entry(true, now_ms());
        let pending = journal.pending(&self.run, entry)?;
        let hook = PendingEntry {
            journal,
            pending: &pending,
        };
        let applied = self
            .write(journal, pending.entry(), &checkpoint, &actions, None, Some(&hook))
            .await;
        let prepared = match pending.into_prepared() {
            Ok(prepared) => prepared,
            // Not journaled, so not written: the error says why.
            Err(entry) => {
                return Err(match applied {
                    Err(e) => e.into(),
                    Ok(_) => anyhow::anyhow!(
                        "run {}: batch {} was written without its journal entry, a bug in godwit: please report \
                         it",
                        self.run,
                        entry.seq
                    ),
                });
            }
        };
        let batch = PreparedBatch {
            prepared,
            checkpoint,
            actions,
        };
        let committed = applied.map(|applied| CommittedBatch::of(&batch, applied));
        Ok((batch, committed))
    }

    async fn write(
        &mut self,
        journal: &Journal,
        entry: &Entry,
        checkpoint: &Option<Bson>,
        actions: &[ValidAction],
        expect: Option<&Expectations>,
        batch_journal: Option<&dyn crate::db::BatchJournal>,
    ) -> Result<crate::db::Applied, DbError> {
        let image_journal = JournalImages {
            journal,
            run: &self.run,
        };
        let guard = match (entry.pass(), entry.batch()) {
            (Some(pass), Some(journaled)) => self.guarded.get(pass as usize).map(|p| Guard {
                collection: &p.collection,
                projection: p.projection.as_ref(),
                inputs: &journaled.inputs,
            }),
            _ => None,
        };
        let write = BatchWrite {
            run_id: &self.run,
            seq: entry.seq,
            pass: entry.pass(),
            checkpoint: checkpoint.clone(),
            actions,
            lock: Some(&self.lock),
            capture_images: self.capture_images,
            expect,
            guard,
            follow: self.follow.as_deref(),
            documents: entry.batch().map_or(0, |b| b.counts.documents),
            image_journal: Some(&image_journal),
            journal: batch_journal,
        };
        self.db.apply_batch(&write, self.session.as_mut()).await
    }

    /// Journals a commit. Not flushed: if it is lost, the progress marker
    /// settles the batch on resume (the next `prepare` flushes it anyway).
    pub fn committed(&self, journal: &Journal, batch: CommittedBatch, note: &str) -> anyhow::Result<()> {
        journal.append(
            &self.run,
            committed_entry(
                batch.seq,
                batch.pass,
                batch.touched,
                batch.images,
                batch.images_at,
                note,
            ),
        )?;
        Ok(())
    }

    /// Stops renewing the lock and releases it: the database is free at
    /// once rather than at lease expiry.
    pub async fn close(mut self) {
        self.renewal.abort();
        release(&self.db, &self.run, &self.lock).await;
        self.released = true;
    }
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        self.renewal.abort();
        if !self.released {
            // A path that did not close the run (a panic): release in the
            // background, best effort; the lease expires anyway.
            let (db, run, lock) = (self.db.clone(), self.run.clone(), self.lock.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { release(&db, &run, &lock).await });
            }
        }
    }
}

/// A batch's journal entry, numbered but not yet written, as what must be
/// on disk before its writes.
struct PendingEntry<'a> {
    journal: &'a Journal,
    pending: &'a crate::journal::Pending,
}

impl crate::db::BatchJournal for PendingEntry<'_> {
    fn prepare(&self) -> Result<(), String> {
        self.journal.write_pending(self.pending).map_err(|e| e.to_string())
    }
}

/// A run's journal as the place a batch's images go before its commit.
struct JournalImages<'a> {
    journal: &'a Journal,
    run: &'a str,
}

impl crate::db::ImageJournal for JournalImages<'_> {
    fn journal(
        &self,
        seq: u64,
        pass: Option<u32>,
        images: Vec<Image>,
    ) -> Result<(u64, crate::hash::Sha256Hash), String> {
        let record = Record::Images {
            batch_seq: seq,
            pass,
            images,
        };
        self.journal
            .record_images(self.run, Entry::new(record, now_ms()))
            .map_err(|e| e.to_string())
    }

    fn holds(&self, entry: u64, hash: &crate::hash::Sha256Hash) -> Result<bool, String> {
        match self.journal.entry_at(self.run, entry) {
            Ok(Some((found, found_hash))) => {
                Ok(found.kind() == crate::journal::EntryKind::Images && found_hash == *hash)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}

async fn release(db: &Db, run: &str, lock: &Lock) {
    if let Err(e) = db.release_lock(lock).await {
        tracing::warn!("run {run}: could not release the lock (it expires by itself): {e}");
    }
}

fn spawn_renewal(db: Db, lock: Lock, lease: Duration, lost: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(lease / 3).await;
            match db.renew_lock(&lock, lease).await {
                Ok(()) => failpoint!("lock-renewed"),
                Err(DbError::LeaseLost { .. }) => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => tracing::warn!("renewing the lock failed (retrying): {e}"),
            }
        }
    })
}

/// What became of a batch given to [`write_batch`].
#[derive(Debug)]
pub enum Written {
    /// A dry run journaled it.
    Planned,
    /// The database committed batch `seq`; its transaction took `took`.
    Committed {
        seq: u64,
        touched: Touched,
        took: std::time::Duration,
    },
    /// The write guard refused batch `seq` (journaled as a `Conflict`):
    /// `changed` (`{_id}` BSON) were written by someone else since they were
    /// read; nothing of the batch was written. `inputs`: the batch's
    /// documents as the plugin saw them.
    Conflict {
        seq: u64,
        changed: Vec<Vec<u8>>,
        inputs: Vec<Vec<u8>>,
    },
}

/// Applies one batch through `sink`: a dry run journals it as `Planned`
/// (flushed); an execute prepares, applies and journals the commit - or,
/// when the write guard refuses the batch, journals the conflict. Gives the
/// batch's actions back (for the summary).
pub async fn write_batch(
    sink: &mut Sink,
    journal: &Journal,
    run: &str,
    record: BatchRecord,
) -> anyhow::Result<(Written, Vec<ValidAction>)> {
    match sink {
        Sink::DryRun => {
            let (entry, _, actions) = record.into_entry(false, now_ms());
            journal.record(run, entry)?;
            Ok((Written::Planned, actions))
        }
        Sink::Execute(active) => {
            let started = std::time::Instant::now();
            let (mut prepared, applied) = active.prepare_and_apply(journal, record).await?;
            let seq = prepared.seq();
            match applied {
                Ok(committed) => {
                    let took = started.elapsed();
                    failpoint!("committed-before-journal");
                    let touched = committed.touched;
                    crate::timing::timed_sync(crate::timing::Step::Committed, || {
                        active.committed(journal, committed, "")
                    })?;
                    let written = Written::Committed { seq, touched, took };
                    Ok((written, std::mem::take(&mut prepared.actions)))
                }
                Err(DbError::Conflict { changed, .. }) => {
                    conflicted(journal, run, &prepared, &changed)?;
                    let actions = std::mem::take(&mut prepared.actions);
                    let inputs = prepared.into_inputs();
                    Ok((Written::Conflict { seq, changed, inputs }, actions))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Journals (flushed) that the guard refused `batch`: a resume must not
/// apply it again.
pub fn conflicted(journal: &Journal, run: &str, batch: &PreparedBatch, changed: &[Vec<u8>]) -> anyhow::Result<()> {
    let record = Record::Conflict {
        batch_seq: batch.seq(),
        pass: batch.pass().unwrap_or_default(),
        changed: changed.to_vec(),
    };
    journal.record(run, Entry::new(record, now_ms()))?;
    Ok(())
}
