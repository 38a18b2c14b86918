//! Applying a batch: its actions as bulk `update`/`insert`/`delete`
//! commands, its before-images, and the run's progress marker
//! (`{_id: "progress:<run>", seq, pass, checkpoint, counts, images}`), in
//! one transaction where the server has them; retried through transient
//! errors and outages.

use super::{Db, DbError, Lock, Result, commit_outcome_unknown, images, is_outage, mongo};
use crate::hash::Sha256Hash;
use crate::journal::Image;
use crate::overlap::overlap;
use crate::plugin::actions::ValidAction;
use crate::timing::{Step, timed};
use bson::{Bson, DateTime, Document, doc};
use mongodb::ClientSession;
use std::collections::HashMap;
use std::time::Duration;

impl Db {
    /// What the server reported batch `seq` touched, kept in the progress
    /// marker by the batch's own transaction; `None` once the marker moved on.
    pub async fn marker_counts(&self, run_id: &str, seq: u64) -> Result<Option<WriteCounts>> {
        Ok(self
            .marker(run_id)
            .await?
            .filter(|m| m.get_i64("seq").ok() == Some(seq as i64))
            .and_then(|m| m.get_document("counts").ok().map(WriteCounts::from_document)))
    }

    /// Progress marker of a run: `{_id: "progress:<run>", seq, pass, checkpoint}`.
    pub async fn marker(&self, run_id: &str) -> Result<Option<Document>> {
        self.meta()
            .find_one(doc! {"_id": format!("progress:{run_id}")})
            .await
            .map_err(mongo(format!("reading the progress marker of run {run_id}")))
    }

    /// The last batch the run's progress marker says committed; `None`
    /// without a marker. A marker without a sequence number is corrupt: the
    /// run cannot know which batches committed, and stops rather than apply
    /// one twice.
    pub async fn marker_seq(&self, run_id: &str) -> Result<Option<u64>> {
        let Some(marker) = self.marker(run_id).await? else {
            return Ok(None);
        };
        match marker.get("seq") {
            Some(Bson::Int64(seq)) if *seq >= 0 => Ok(Some(*seq as u64)),
            other => Err(DbError::CorruptMarker {
                db: self.name.clone(),
                metadata: self.metadata.clone(),
                run: run_id.to_string(),
                reason: format!("its batch sequence number `seq` is {other:?}, not a count"),
            }),
        }
    }

    pub async fn delete_marker(&self, run_id: &str) -> Result<()> {
        self.meta()
            .delete_one(doc! {"_id": format!("progress:{run_id}")})
            .await
            .map_err(mongo(format!("removing the progress marker of run {run_id}")))?;
        self.meta()
            .delete_many(doc! {"kind": "images", "run": run_id})
            .await
            .map_err(mongo(format!("removing the before-image chunks of run {run_id}")))?;
        Ok(())
    }

    /// Applies one batch's actions and moves the run's progress marker to
    /// `seq`: in one transaction on `session` when the server supports them
    /// (exactly once), else as ordered bulk writes followed by the marker
    /// (at least once). Transient transaction errors (write conflicts),
    /// outages (server down, restarting, stepping down) and commits of
    /// unknown outcome are retried with backoff for up to [`Db::retry_for`]
    /// from the first failure; after that the run stops with
    /// [`DbError::Outage`] or [`DbError::CommitUnsettled`], resumable.
    pub async fn apply_batch(&self, batch: &BatchWrite<'_>, session: Option<&mut ClientSession>) -> Result<Applied> {
        let _busy = match batch.lock {
            Some(lock) => Some(lock.busy.lock().await),
            None => None,
        };
        let Some(session) = session else {
            return match self.write_batch(batch, false, None).await {
                // Without a transaction the guarded writes that matched are
                // applied (at least once, as this mode promises); the
                // comparison names the rest - and those just written - to be
                // read and processed again.
                Err(DbError::GuardMissed) => {
                    let guard = batch.guard.as_ref().expect("a guarded batch");
                    self.check_guard(guard, None).await?;
                    // Changed and changed back since: the run stops
                    // (resumable) rather than count the batch as written.
                    Err(DbError::GuardMissed)
                }
                other => other,
            };
        };
        let mut full_guard = false;
        // `--retry-for` counts from the first failed attempt, as the
        // reader's does: one slow attempt (a loaded server) must not use up
        // the budget and leave a failure that was never retried.
        let mut failing_since: Option<std::time::Instant> = None;
        let mut backoff = Duration::from_millis(50);
        // A commit whose outcome is unknown (the connection dropped) may have
        // succeeded: the progress marker, written in the same transaction,
        // says whether it did, before the batch is written again.
        let mut maybe_committed = false;
        loop {
            let attempt = async {
                if maybe_committed {
                    if let Some(images) = self.marker_images(batch.run_id, batch.seq).await? {
                        let (images, images_at) = self.committed_images(batch, images)?;
                        tracing::warn!(
                            "batch {} of run {}: the commit went through before the connection dropped (progress \
                             marker); not applied again",
                            batch.seq,
                            batch.run_id
                        );
                        let counts = self.marker_counts(batch.run_id, batch.seq).await?.unwrap_or_default();
                        return Ok(Applied {
                            counts,
                            images,
                            images_at,
                        });
                    }
                    maybe_committed = false;
                }
                session
                    .start_transaction()
                    .await
                    .map_err(mongo("starting a transaction"))?;
                let outcome = self.write_batch(batch, full_guard, Some(&mut *session)).await;
                failpoint!("txn-before-commit");
                match outcome {
                    Ok(applied) => match timed(Step::DbCommit, commit_or_failpoint(session)).await {
                        // Tests: the commit went through but its reply is lost.
                        Ok(()) if failpoint_hit!("commit-reply-lost") => {
                            maybe_committed = true;
                            Err(DbError::Mongo {
                                context: format!("committing batch {} of run {}", batch.seq, batch.run_id),
                                error: mongodb::error::Error::custom("the commit reply was lost (failpoint)"),
                            })
                        }
                        Ok(()) => Ok(applied),
                        Err(e) => {
                            // Without a reply, or with the server's own
                            // fault, the commit may have gone through.
                            maybe_committed = commit_outcome_unknown(&e);
                            Err(DbError::Mongo {
                                context: format!("committing batch {} of run {}", batch.seq, batch.run_id),
                                error: e,
                            })
                        }
                    },
                    Err(e) => {
                        let _ = session.abort_transaction().await;
                        Err(e)
                    }
                }
            }
            .await;
            let error = match attempt {
                Ok(applied) => return Ok(applied),
                Err(DbError::GuardMissed) if !full_guard => {
                    tracing::debug!(
                        "batch {} of run {}: a guarded write matched nothing; comparing the batch's documents",
                        batch.seq,
                        batch.run_id
                    );
                    full_guard = true;
                    continue;
                }
                Err(e) => e,
            };
            let (retry, outage) = match &error {
                DbError::Mongo { error: source, .. } => (
                    maybe_committed
                        || source.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
                        || is_outage(source),
                    is_outage(source),
                ),
                _ => (false, false),
            };
            if !retry {
                return Err(error);
            }
            let since = *failing_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > self.retry_for {
                if maybe_committed {
                    release_transaction(&self.meta(), session).await;
                }
                return Err(match (outage, maybe_committed, error) {
                    (true, _, DbError::Mongo { context, error: source }) => DbError::Outage {
                        context,
                        seconds: since.elapsed().as_secs(),
                        reason: source.kind.to_string(),
                    },
                    (_, true, DbError::Mongo { context, error: source }) => DbError::CommitUnsettled {
                        context,
                        seconds: since.elapsed().as_secs(),
                        reason: super::describe(&source),
                    },
                    (.., error) => error,
                });
            }
            tracing::warn!(
                "batch {} of run {}: {}, retrying in {backoff:?}: {error}",
                batch.seq,
                batch.run_id,
                if maybe_committed {
                    "commit outcome unknown, checking the progress marker"
                } else if outage {
                    "database unavailable"
                } else {
                    "transient error"
                }
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// The body of a batch: the write guard, before-images, writes,
    /// after-images, marker.
    async fn write_batch(
        &self,
        batch: &BatchWrite<'_>,
        full_guard: bool,
        mut session: Option<&mut ClientSession>,
    ) -> Result<Applied> {
        // The guard in the writes' own filters where the batch allows it,
        // else a read of the batch's documents compared with the inputs
        // (without a transaction the check and the writes are then two
        // steps: an application write between them is still possible).
        // In a transaction, a batch whose writes are all of its own
        // documents by `_id` checks the guard on the documents as read in
        // it: the before-images with them. That read costs the server less
        // than the guard in every write's filter (godwit-bench, 2026-12-02:
        // (b) with the filters at 0.69x of (u), (c) with the read at 1.00x
        // of (v)). Without images to keep, a pass that reads only some
        // fields has the server project them: the read-and-compare guard
        // reads less than whole documents.
        let on_images = match &batch.guard {
            Some(guard) => {
                !full_guard
                    && session.is_some()
                    && (batch.capture_images || guard.projection.is_none())
                    && guard.fits_images(batch.actions)
            }
            None => false,
        };
        let pinned = match &batch.guard {
            Some(guard) if !full_guard && !on_images && session.is_none() => guard.pin(batch.actions),
            _ => None,
        };
        let read_guard = batch.guard.as_ref().filter(|_| pinned.is_none() && !on_images);
        let read_images = batch.capture_images || on_images;
        let reads = async {
            if let Some(guard) = read_guard {
                self.check_guard(guard, session.as_deref_mut()).await?;
            }
            match read_images {
                true => self.read_before(batch.actions, session.as_deref_mut()).await.map(Some),
                false => Ok(None),
            }
        };
        // The batch's journal entry is written and flushed while its reads
        // are in flight; the writes wait for both. A journal that failed
        // says why first: the reads' answer no longer matters.
        let not_journaled = |reason| DbError::NotJournaled {
            run: batch.run_id.to_string(),
            seq: batch.seq,
            reason,
        };
        let reads_since = std::time::Instant::now();
        let before = match batch.journal {
            Some(journal) if read_guard.is_some() || read_images => {
                let (before, journaled) = overlap(reads, || journal.prepare()).await;
                journaled.map_err(not_journaled)?;
                before?
            }
            Some(journal) => {
                journal.prepare().map_err(not_journaled)?;
                reads.await?
            }
            None => reads.await?,
        };
        crate::timing::record(Step::DbReads, reads_since);
        failpoint!("batch-before-writes");
        // In a transaction without upserts, the images can be made whole and
        // journaled before the writes return: the writes they record commit
        // with the marker that names them, or not at all.
        let early = session.is_some()
            && batch
                .actions
                .iter()
                .all(|a| !matches!(a, ValidAction::Update { upsert: true, .. }));
        // What the before-images say: the guard and the expectations hold,
        // and what the writes leave (evaluated in memory) - journaled here
        // when the evaluator answered for every document.
        let checked = |before: images::Before| -> Result<AfterWrites> {
            if let (Some(guard), true) = (&batch.guard, on_images) {
                guard.check_images(batch.actions, &before)?;
            }
            if let Some(expect) = batch.expect {
                before.check(expect)?;
            }
            if !batch.capture_images {
                return Ok(AfterWrites::Nothing);
            }
            let evaluated = images::evaluate_after(batch.actions, &before);
            if !(early && images::all_known(&before, &evaluated)) {
                return Ok(AfterWrites::ToRead(before, evaluated));
            }
            let images = images::assemble(before, evaluated, &HashMap::new());
            self.journal_images(batch, images)
        };
        let writes = pinned.as_ref().map_or(batch.actions, |p| p.actions.as_slice());
        let writes_since = std::time::Instant::now();
        let (written, after) = match before {
            // In a transaction a failed check aborts the writes, so the
            // checks, the evaluation and the journaling run on a thread of
            // their own while the server writes: the client's CPU and the
            // journal's flush overlap the round trip.
            Some(before) if session.is_some() => {
                let (written, after) =
                    overlap(self.write_actions(writes, session.as_deref_mut()), || checked(before)).await;
                // A failed check, not the writes' error, says why.
                let after = after?;
                (written?, after)
            }
            Some(before) => {
                let after = checked(before)?;
                (self.write_actions(writes, session.as_deref_mut()).await?, after)
            }
            None => (
                self.write_actions(writes, session.as_deref_mut()).await?,
                AfterWrites::Nothing,
            ),
        };
        crate::timing::record(Step::DbWrites, writes_since);
        let (counts, upserted) = written;
        if let Some(pinned) = &pinned
            && (counts.matched < pinned.updates || counts.deleted < pinned.deletes)
        {
            // A document changed: which one, the read-and-compare guard
            // says - in a new transaction (this one's writes are undone).
            return Err(DbError::GuardMissed);
        }
        // The images go to the journal (flushed) before the commit, the
        // marker names where: a crash after the commit loses neither.
        let after = match after {
            AfterWrites::ToRead(before, evaluated) => {
                let images = timed(
                    Step::DbAfterRead,
                    self.read_after(before, evaluated, upserted, session.as_deref_mut()),
                )
                .await?;
                self.journal_images(batch, images)?
            }
            done => done,
        };
        let (images, journaled) = match after {
            AfterWrites::Nothing => (Vec::new(), None),
            AfterWrites::Images(images) => (images, None),
            AfterWrites::Journaled(at) => (Vec::new(), Some(at)),
            AfterWrites::ToRead(..) => unreachable!("read above"),
        };
        timed(
            Step::DbMarker,
            self.write_marker(batch, &images, journaled, counts, session),
        )
        .await?;
        Ok(Applied {
            counts,
            images,
            images_at: journaled.map(|(at, _)| at),
        })
    }

    /// A batch's images into the run's journal (flushed) when it has one,
    /// else kept for the marker.
    fn journal_images(&self, batch: &BatchWrite<'_>, images: Vec<Image>) -> Result<AfterWrites> {
        match batch.image_journal {
            Some(journal) if !images.is_empty() => journal
                .journal(batch.seq, batch.pass, images)
                .map(AfterWrites::Journaled)
                .map_err(|reason| DbError::ImagesNotJournaled {
                    run: batch.run_id.to_string(),
                    reason,
                }),
            _ => Ok(AfterWrites::Images(images)),
        }
    }

    /// What a batch whose commit went through (its marker says so) committed
    /// of images: those the marker holds, or the journal entry it names.
    fn committed_images(
        &self,
        batch: &BatchWrite<'_>,
        images: images::MarkerImages,
    ) -> Result<(Vec<Image>, Option<u64>)> {
        match images {
            images::MarkerImages::Inline(images) => Ok((images, None)),
            images::MarkerImages::Journaled { entry, hash } => {
                let journal = batch.image_journal.ok_or_else(|| DbError::ImagesNotJournaled {
                    run: batch.run_id.to_string(),
                    reason: format!("batch {} committed with its images in journal entry {entry}", batch.seq),
                })?;
                match journal.holds(entry, &hash) {
                    Ok(true) => Ok((Vec::new(), Some(entry))),
                    Ok(false) => Err(DbError::ImagesNotJournaled {
                        run: batch.run_id.to_string(),
                        reason: format!(
                            "batch {} committed, but journal entry {entry} is not the images its progress marker \
                             names (another journal?)",
                            batch.seq
                        ),
                    }),
                    Err(reason) => Err(DbError::ImagesNotJournaled {
                        run: batch.run_id.to_string(),
                        reason,
                    }),
                }
            }
        }
    }

    async fn write_marker(
        &self,
        batch: &BatchWrite<'_>,
        images: &[Image],
        journaled: Option<(u64, Sha256Hash)>,
        counts: WriteCounts,
        session: Option<&mut ClientSession>,
    ) -> Result<()> {
        let mut chunks = images::image_chunks(images).into_iter();
        let first = chunks.next().unwrap_or_default();
        let extra: Vec<Document> = chunks
            .enumerate()
            .map(|(i, chunk)| {
                doc! {
                    "q": {"_id": images::chunk_id(batch.run_id, i as i64 + 1)},
                    "u": {"kind": "images", "run": batch.run_id, "seq": batch.seq as i64, "images": chunk},
                    "upsert": true,
                }
            })
            .collect();
        let image_chunks = 1 + extra.len() as i64;
        // One command, one round trip: the marker, the fence and any extra
        // image chunks. Each statement matches or upserts exactly one
        // document, so `n` short of the statement count means the fence
        // missed: the write only counts while this run holds the lock.
        let mut set = doc! {
            "seq": batch.seq as i64, "pass": batch.pass.map(i64::from), "checkpoint": batch.checkpoint.clone(),
            "at": DateTime::now(), "images": first, "image_chunks": image_chunks,
            "counts": counts.to_document(),
        };
        if let Some((entry, hash)) = journaled {
            set.insert("images_at", entry as i64);
            set.insert(
                "images_sha256",
                bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: hash.to_vec(),
                },
            );
        }
        if let Some(position) = batch.follow.and_then(|p| Document::from_reader(p).ok()) {
            set.insert("follow", position);
        }
        let mut update = doc! {"$set": set};
        if journaled.is_none() {
            // The marker is one document per run: a batch without
            // journaled images (none, or none to journal) must not leave
            // the previous batch's entry named as its own.
            update.insert("$unset", doc! {"images_at": "", "images_sha256": ""});
        }
        let mut statements = vec![doc! {
            "q": {"_id": format!("progress:{}", batch.run_id)},
            "u": update,
            "upsert": true,
        }];
        if let Some(lock) = batch.lock {
            let mut fence = doc! {"last_batch_at": DateTime::now()};
            // A fleet partition's claim also records how far the partition
            // is committed, and by which run: another worker that takes the
            // partition over goes on from there.
            if lock.doc_id != super::LOCK_ID {
                fence.insert("last_run", batch.run_id);
                if let Some(checkpoint) = &batch.checkpoint {
                    fence.insert("checkpoint", doc! {"_id": checkpoint.clone()});
                }
            }
            let mut update = doc! {"$set": fence};
            if lock.doc_id != super::LOCK_ID {
                update.insert("$inc", doc! {"documents": batch.documents as i64});
                // Every run that wrote to it: their markers go when it is done.
                update.insert("$addToSet", doc! {"runs": batch.run_id});
            }
            statements.push(doc! {"q": {"_id": &lock.doc_id, "token": lock.token}, "u": update});
        }
        statements.extend(extra);
        let expected = statements.len() as i64;
        let action = self
            .db
            .run_command(doc! {"update": &self.metadata, "updates": statements, "ordered": true});
        let reply = match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(mongo(format!("moving the progress marker of run {}", batch.run_id)))?;
        let n = reply
            .get_i32("n")
            .map(i64::from)
            .or_else(|_| reply.get_i64("n"))
            .unwrap_or(0);
        if n < expected {
            return Err(DbError::LeaseLost {
                db: self.name.clone(),
                run_id: batch.run_id.to_string(),
            });
        }
        Ok(())
    }

    /// Runs the actions as `update`/`insert`/`delete` commands, many
    /// statements per command, consecutive actions of one kind on one
    /// collection grouped so that the order of writes is preserved.
    async fn write_actions(
        &self,
        actions: &[ValidAction],
        mut session: Option<&mut ClientSession>,
    ) -> Result<(WriteCounts, Vec<(String, Bson)>)> {
        let mut counts = WriteCounts::default();
        let mut upserted = Vec::new();
        // Reports are not written: leaving them out before grouping keeps a
        // report between two updates from splitting their command in two.
        let (indexes, writes): (Vec<usize>, Vec<&ValidAction>) =
            actions.iter().enumerate().filter(|(_, a)| a.is_write()).unzip();
        let mut start = 0;
        while start < writes.len() {
            let key = group_key(writes[start]);
            let mut end = start + 1;
            let mut bytes = approx_size(writes[start]);
            while end < writes.len()
                && group_key(writes[end]) == key
                && end - start < MAX_STATEMENTS
                && bytes < MAX_COMMAND_BYTES
            {
                bytes += approx_size(writes[end]);
                end += 1;
            }
            let group = &writes[start..end];
            let (collection, command) = command_for(group);
            let action = self.db.run_command(command);
            let reply = match session.as_deref_mut() {
                Some(s) => action.session(s).await,
                None => action.await,
            }
            .map_err(mongo(format!("writing {collection}")))?;
            if let Ok(errors) = reply.get_array("writeErrors")
                && let Some(first) = errors.first().and_then(Bson::as_document)
            {
                let index = first.get_i32("index").unwrap_or(0) as usize;
                return Err(DbError::WriteFailed {
                    collection: collection.clone(),
                    index: indexes[start + index.min(group.len() - 1)],
                    message: first.get_str("errmsg").unwrap_or("write error").to_string(),
                    target: describe_target(group[index.min(group.len() - 1)]),
                });
            }
            let n = reply
                .get_i32("n")
                .map(i64::from)
                .or_else(|_| reply.get_i64("n"))
                .unwrap_or(0) as u64;
            match &group[0] {
                ValidAction::Update { .. } => {
                    counts.matched += n;
                    counts.modified += reply
                        .get_i32("nModified")
                        .map(i64::from)
                        .or_else(|_| reply.get_i64("nModified"))
                        .unwrap_or(0) as u64;
                    for item in reply.get_array("upserted").map(Vec::as_slice).unwrap_or_default() {
                        counts.upserted += 1;
                        if let Some(id) = item.as_document().and_then(|d| d.get("_id")) {
                            upserted.push((collection.clone(), id.clone()));
                        }
                    }
                }
                ValidAction::Insert { .. } => counts.inserted += n,
                ValidAction::Delete { .. } => counts.deleted += n,
                ValidAction::Report { .. } => {}
            }
            start = end;
        }
        Ok((counts, upserted))
    }
}

fn group_key(action: &ValidAction) -> (u8, &str) {
    let kind = match action {
        ValidAction::Update { .. } => 0,
        ValidAction::Insert { .. } => 1,
        ValidAction::Delete { .. } => 2,
        ValidAction::Report { .. } => 3,
    };
    (kind, action.collection().unwrap_or(""))
}

/// Encoded size of the statement an action becomes, so that a command stays
/// well under the server's 48 MB message limit.
fn approx_size(action: &ValidAction) -> usize {
    let size = |doc: &Document| doc.to_vec().map_or(0, |b| b.len());
    match action {
        ValidAction::Update { filter, update, .. } => size(filter) + size(update) + 32,
        ValidAction::Insert { document, .. } => size(document) + 16,
        ValidAction::Delete { filter, .. } => size(filter) + 32,
        ValidAction::Report { .. } => 0,
    }
}

fn command_for(group: &[&ValidAction]) -> (String, Document) {
    let collection = group[0].collection().unwrap_or_default().to_string();
    let command = match &group[0] {
        ValidAction::Update { .. } => {
            let updates: Vec<Document> = group
                .iter()
                .filter_map(|a| match a {
                    ValidAction::Update {
                        filter,
                        update,
                        upsert,
                        multi,
                        ..
                    } => Some(doc! {"q": filter.clone(), "u": update.clone(), "upsert": *upsert, "multi": *multi}),
                    _ => None,
                })
                .collect();
            doc! {"update": &collection, "updates": updates, "ordered": true}
        }
        ValidAction::Insert { .. } => {
            let documents: Vec<Document> = group
                .iter()
                .filter_map(|a| match a {
                    ValidAction::Insert { document, .. } => Some(document.clone()),
                    _ => None,
                })
                .collect();
            doc! {"insert": &collection, "documents": documents, "ordered": true}
        }
        ValidAction::Delete { .. } => {
            let deletes: Vec<Document> = group
                .iter()
                .filter_map(|a| match a {
                    ValidAction::Delete { filter, multi, .. } => {
                        Some(doc! {"q": filter.clone(), "limit": if *multi { 0 } else { 1 }})
                    }
                    _ => None,
                })
                .collect();
            doc! {"delete": &collection, "deletes": deletes, "ordered": true}
        }
        ValidAction::Report { .. } => unreachable!("reports are never written"),
    };
    (collection, command)
}

fn describe_target(action: &ValidAction) -> String {
    match action {
        ValidAction::Update { filter, .. } | ValidAction::Delete { filter, .. } => filter.to_string(),
        ValidAction::Insert { document, .. } => document
            .get("_id")
            .map_or_else(|| "without _id".into(), |id| format!("_id {id}")),
        ValidAction::Report { .. } => String::new(),
    }
}

/// One batch's writes plus where the progress marker moves.
pub struct BatchWrite<'a> {
    pub run_id: &'a str,
    pub seq: u64,
    pub pass: Option<u32>,
    pub checkpoint: Option<Bson>,
    pub actions: &'a [ValidAction],
    pub lock: Option<&'a Lock>,
    /// Read before-images and after-image hashes inside the transaction.
    pub capture_images: bool,
    /// Write only if these documents (collection, `{_id}` BSON) are, inside
    /// the transaction, as expected (sha256 of their BSON; `None`: absent).
    /// Needs `capture_images`.
    pub expect: Option<&'a Expectations>,
    /// Write only if the documents the plugin read are still as it saw them
    /// (the write guard; checked inside the transaction).
    pub guard: Option<super::Guard<'a>>,
    /// The follow phase's change-stream position, kept with the marker.
    pub follow: Option<&'a [u8]>,
    /// Documents the batch's plugin call was given (a fleet partition's
    /// claim counts them).
    pub documents: u64,
    /// Where the images go before the commit; `None`: in the marker.
    pub image_journal: Option<&'a dyn ImageJournal>,
    /// Writes the batch's own journal entry before its first write; `None`:
    /// the journal holds it already.
    pub journal: Option<&'a dyn BatchJournal>,
}

/// Makes a batch durable in the run's journal before the database sees any
/// of its writes. Called before each attempt's writes, beside its reads;
/// only the first call writes.
pub trait BatchJournal: Sync {
    fn prepare(&self) -> std::result::Result<(), String>;
}

/// Makes a batch's images durable in the run's journal before the
/// transaction that writes them commits; the progress marker then carries
/// only where they are (a journal entry and its hash), not the images.
pub trait ImageJournal: Sync {
    /// Journals (and flushes) the images of one attempt at batch `seq`;
    /// gives the journal entry holding them and its hash.
    fn journal(
        &self,
        seq: u64,
        pass: Option<u32>,
        images: Vec<Image>,
    ) -> std::result::Result<(u64, Sha256Hash), String>;
    /// Whether journal entry `entry` exists with hash `hash`.
    fn holds(&self, entry: u64, hash: &Sha256Hash) -> std::result::Result<bool, String>;
}

pub type Expectations = std::collections::HashMap<(String, Vec<u8>), Option<crate::hash::Sha256Hash>>;

/// A batch's images once its writes are known.
enum AfterWrites {
    /// None captured.
    Nothing,
    /// Whole, for the marker (no journal).
    Images(Vec<Image>),
    /// Whole, in the journal entry with this seq and hash.
    Journaled((u64, Sha256Hash)),
    /// The after-images the evaluator left to read back.
    ToRead(images::Before, images::Evaluations),
}

/// What applying a batch did.
#[derive(Debug, Default)]
pub struct Applied {
    pub counts: WriteCounts,
    pub images: Vec<Image>,
    /// The journal entry holding the images, when they went there.
    pub images_at: Option<u64>,
}

/// What the server's replies said a batch's writes did. `matched` is the
/// update replies' `n`, which counts upserted documents too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub matched: u64,
    pub modified: u64,
    pub upserted: u64,
    pub inserted: u64,
    pub deleted: u64,
}

impl WriteCounts {
    fn to_document(self) -> Document {
        doc! {
            "matched": self.matched as i64, "modified": self.modified as i64, "upserted": self.upserted as i64,
            "inserted": self.inserted as i64, "deleted": self.deleted as i64,
        }
    }

    fn from_document(doc: &Document) -> Self {
        let n = |k: &str| doc.get_i64(k).unwrap_or(0).max(0) as u64;
        WriteCounts {
            matched: n("matched"),
            modified: n("modified"),
            upserted: n("upserted"),
            inserted: n("inserted"),
            deleted: n("deleted"),
        }
    }
}

const MAX_STATEMENTS: usize = 1000;
const MAX_COMMAND_BYTES: usize = 8 << 20;

/// A commit that failed may leave its transaction open on the server (a
/// command refused before it ran), holding its writes until the server's
/// transaction lifetime runs out, and every later write to those documents
/// waiting on it. A new transaction on the same session ends it: one read in
/// it, then an abort. Best effort: the run is stopping anyway.
async fn release_transaction(meta: &mongodb::Collection<Document>, session: &mut ClientSession) {
    let released = async {
        session.start_transaction().await?;
        meta.find_one(doc! {"_id": "release"}).session(&mut *session).await?;
        session.abort_transaction().await
    };
    if let Err(e) = released.await {
        tracing::debug!("ending the failed commit's transaction: {e}");
    }
}

/// [`commit`], except where a test has the server fail it instead (failpoint
/// `commit-internal-error`: the transaction is aborted and the reply is the
/// server's `InternalError`, as a server that faults during the commit gives).
async fn commit_or_failpoint(session: &mut ClientSession) -> std::result::Result<(), mongodb::error::Error> {
    #[cfg(feature = "failpoints")]
    if failpoint_hit!("commit-internal-error") {
        let _ = session.abort_transaction().await;
        return Err(super::internal_error());
    }
    commit(session).await
}

async fn commit(session: &mut ClientSession) -> std::result::Result<(), mongodb::error::Error> {
    // An unknown commit result is retried: committing twice is safe, the
    // server answers for the same transaction.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match session.commit_transaction().await {
            Err(e) if attempts < 3 && e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT) => {
                continue;
            }
            other => return other,
        }
    }
}
