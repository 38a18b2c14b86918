//! Reading a pass: its documents in `_id` order after a checkpoint, as
//! batches of raw BSON, through database outages and past the server's
//! per-cursor `maxTimeMS`; optionally read ahead of the batch being
//! processed.

use super::{Db, DbError, is_outage};
use crate::plugin::contract::ValidPass;
use anyhow::Context;
use bson::{Bson, Document, RawDocumentBuf, doc};
use futures_util::TryStreamExt;
use std::time::Duration;

/// MongoDB's error code for an operation cut off at its `maxTimeMS`.
const MAX_TIME_MS_EXPIRED: i32 = 50;

/// Whether the server cut an operation off at its `maxTimeMS`.
pub fn is_max_time_expired(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == MAX_TIME_MS_EXPIRED)
}

/// Reads one pass's documents in `_id` order, after a checkpoint, in batches.
pub struct PassReader {
    cursor: mongodb::Cursor<RawDocumentBuf>,
    batch_size: usize,
    label: String,
    db: Db,
    pass: ValidPass,
    /// `_id` of the last document read: where a cursor lost in an outage reopens.
    last: Option<Bson>,
    /// The cursor's `maxTimeMS`; documents read since it was opened.
    query_timeout: Duration,
    read_on_cursor: usize,
    /// A fleet run's partition: the last `_id` this reader reads.
    upto: Option<Bson>,
}

impl PassReader {
    pub async fn open(
        db: &Db,
        pass: &ValidPass,
        checkpoint: Option<&Bson>,
        batch_size: u32,
        label: String,
        query_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::open_range(db, pass, checkpoint, None, batch_size, label, query_timeout).await
    }

    /// Like [`PassReader::open`], reading only up to `upto` (included) in
    /// `_id` order: one partition of a fleet run.
    pub async fn open_range(
        db: &Db,
        pass: &ValidPass,
        checkpoint: Option<&Bson>,
        upto: Option<&Bson>,
        batch_size: u32,
        label: String,
        query_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let cursor = Self::cursor(db, pass, checkpoint, upto, batch_size, query_timeout)
            .await
            .map_err(|e| query_error(e, &label, query_timeout))
            .with_context(|| format!("{label}: reading {}.{}", db.name, pass.collection))?;
        Ok(PassReader {
            cursor,
            batch_size: batch_size as usize,
            label,
            db: db.clone(),
            pass: pass.clone(),
            last: checkpoint.cloned(),
            query_timeout,
            read_on_cursor: 0,
            upto: upto.cloned(),
        })
    }

    /// The pass's filter, after the checkpoint in `_id` order - across BSON
    /// types (`godwit_policy::after_id`): `$gt` alone would skip every `_id`
    /// of a later type than the checkpoint's.
    /// With `upto`, only up to that `_id` (`godwit_policy::up_to_id`).
    fn filter(pass: &ValidPass, after: Option<&Bson>, upto: Option<&Bson>) -> Document {
        let mut parts = vec![Bson::Document(pass.filter.clone())];
        parts.extend(after.map(|a| Bson::Document(godwit_policy::after_id(a))));
        parts.extend(upto.map(|u| Bson::Document(godwit_policy::up_to_id(u))));
        match parts.len() {
            1 => pass.filter.clone(),
            _ => doc! {"$and": parts},
        }
    }

    async fn cursor(
        db: &Db,
        pass: &ValidPass,
        after: Option<&Bson>,
        upto: Option<&Bson>,
        batch_size: u32,
        query_timeout: Duration,
    ) -> mongodb::error::Result<mongodb::Cursor<RawDocumentBuf>> {
        let coll = db.db.collection::<RawDocumentBuf>(&pass.collection);
        // The server counts `maxTimeMS` over the cursor's whole life (it
        // cannot be set per getMore), so `next_batch` reopens a cursor that
        // used it up while still returning documents.
        let mut find = coll
            .find(Self::filter(pass, after, upto))
            .sort(doc! {"_id": 1})
            .batch_size(batch_size)
            .max_time(query_timeout);
        if let Some(projection) = &pass.projection {
            find = find.projection(projection.clone());
        }
        find.await
    }

    /// The documents `changed` names (`{_id}` BSON) as they are now, if they
    /// still match the pass, projected as the pass reads them: what the
    /// plugin is given again after the write guard refused their batch.
    pub async fn reread(db: &Db, pass: &ValidPass, changed: &[Vec<u8>]) -> super::Result<Vec<RawDocumentBuf>> {
        let ids: Vec<Bson> = changed
            .iter()
            .filter_map(|key| Document::from_reader(key.as_slice()).ok()?.remove("_id"))
            .collect();
        let filter = doc! {"$and": [pass.filter.clone(), {"_id": {"$in": ids}}]};
        db.find_projected(
            &pass.collection,
            filter,
            pass.projection.as_ref(),
            None,
            "documents changed since they were read",
        )
        .await
    }

    /// Documents the pass still has to read.
    pub async fn remaining(&self, db: &Db, pass: &ValidPass, checkpoint: Option<&Bson>) -> mongodb::error::Result<u64> {
        db.db
            .collection::<RawDocumentBuf>(&pass.collection)
            .count_documents(Self::filter(pass, checkpoint, self.upto.as_ref()))
            .max_time(self.query_timeout)
            .await
    }

    /// A fresh cursor after the last document read.
    async fn reopen(&mut self) -> mongodb::error::Result<()> {
        self.cursor = Self::cursor(
            &self.db,
            &self.pass,
            self.last.as_ref(),
            self.upto.as_ref(),
            self.batch_size as u32,
            self.query_timeout,
        )
        .await?;
        self.read_on_cursor = 0;
        Ok(())
    }

    /// The next batch of raw documents; empty at the end of the pass. Through
    /// a database outage the cursor is reopened after the last document read,
    /// for up to the database's retry time.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut outage: Option<std::time::Instant> = None;
        let mut backoff = Duration::from_millis(100);
        while batch.len() < self.batch_size {
            match self.cursor.try_next().await {
                Ok(Some(doc)) => {
                    self.last = doc.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok());
                    batch.push(doc.into_bytes());
                    self.read_on_cursor += 1;
                }
                Ok(None) => break,
                // The cursor used up its server time while making progress:
                // a long pass, not a slow filter. Go on with a fresh one.
                Err(e) if is_max_time_expired(&e) && self.read_on_cursor > 0 => {
                    tracing::debug!("{}: the pass's cursor used its --query-timeout; reopening", self.label);
                    self.reopen()
                        .await
                        .map_err(|e| query_error(e, &self.label, self.query_timeout))?;
                }
                // A restarted server has forgotten the cursor (CursorNotFound).
                Err(e)
                    if is_outage(&e) || matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == 43) =>
                {
                    let since = *outage.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > self.db.retry_for {
                        return Err(DbError::Outage {
                            context: format!("{}: reading the next batch", self.label),
                            seconds: since.elapsed().as_secs(),
                            reason: e.kind.to_string(),
                        }
                        .into());
                    }
                    tracing::warn!(
                        "{}: database unavailable, reading again in {backoff:?}: {}",
                        self.label,
                        e.kind
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    // Still down: the next read fails again and backs off more.
                    let _ = self.reopen().await;
                }
                Err(e) => {
                    return Err(query_error(e, &self.label, self.query_timeout))
                        .with_context(|| format!("{}: reading the next batch", self.label));
                }
            }
        }
        Ok(batch)
    }
}

/// A pass's query cut off by the server at `--query-timeout` without
/// returning a document becomes an error naming the pass and the bound
/// (exit 8, like any failed query); other errors are `DbError::Mongo` too
/// (the server's message, never its raw reply).
fn query_error(e: mongodb::error::Error, label: &str, query_timeout: Duration) -> anyhow::Error {
    if is_max_time_expired(&e) {
        DbError::Mongo {
            context: format!(
                "{label}: the server spent more than --query-timeout {}s on the pass's query without returning a \
                 document; its filter is too slow for this collection (narrow or index it, or raise --query-timeout)",
                query_timeout.as_secs_f64()
            ),
            error: e,
        }
        .into()
    } else {
        DbError::Mongo {
            context: "the pass's query".into(),
            error: e,
        }
        .into()
    }
}

/// A pass reader running ahead: the next batches are read from the
/// database while the current one is in the plugin and being written.
/// Only reads overlap; batches are still processed, journaled and committed
/// strictly in order, so the commit protocol is unchanged. What is read ahead
/// and not yet processed when the run stops is simply dropped (the
/// checkpoint only moves with commits).
pub enum ReadAhead {
    Inline(Box<PassReader>),
    Task {
        batches: tokio::sync::mpsc::Receiver<anyhow::Result<Vec<Vec<u8>>>>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl ReadAhead {
    pub fn new(mut reader: PassReader, depth: usize) -> Self {
        if depth == 0 {
            return ReadAhead::Inline(Box::new(reader));
        }
        let (tx, batches) = tokio::sync::mpsc::channel(depth);
        let task = tokio::spawn(async move {
            loop {
                let batch = reader.next_batch().await;
                let last = !matches!(&batch, Ok(b) if !b.is_empty());
                if tx.send(batch).await.is_err() || last {
                    return;
                }
            }
        });
        ReadAhead::Task { batches, task }
    }

    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            ReadAhead::Inline(reader) => reader.next_batch().await,
            ReadAhead::Task { batches, .. } => batches.recv().await.unwrap_or_else(|| Ok(Vec::new())),
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let ReadAhead::Task { task, .. } = self {
            task.abort();
        }
    }
}

/// Why a bounded `find` (a plugin's lookup) returned nothing.
#[derive(Debug)]
pub enum FindError {
    /// The server or the host stopped it at `max_time`.
    TimedOut,
    /// The answer grew past `max_bytes`.
    TooBig {
        bytes: usize,
    },
    Failed(mongodb::error::Error),
}

impl Db {
    /// Documents of `collection` matching `filter`, in `_id` order, at most
    /// `limit`, as raw BSON: a plugin's lookup. The server stops the query
    /// at `max_time` (`maxTimeMS`: a real mongod kills it rather than let it
    /// slow every other client), and so does the host, so a server that
    /// ignores `maxTimeMS` cannot hold the call past it; reading stops once
    /// the answer passes `max_bytes`, rather than holding all of it first.
    pub async fn find_bounded(
        &self,
        collection: &str,
        filter: Document,
        projection: Option<Document>,
        limit: u32,
        max_time: Duration,
        max_bytes: usize,
    ) -> std::result::Result<Vec<Vec<u8>>, FindError> {
        let failed = |e: mongodb::error::Error| {
            if is_max_time_expired(&e) {
                FindError::TimedOut
            } else {
                FindError::Failed(e)
            }
        };
        let coll = self.db.collection::<RawDocumentBuf>(collection);
        let read = async {
            let mut find = coll
                .find(filter)
                .limit(i64::from(limit))
                .sort(doc! {"_id": 1})
                .max_time(max_time);
            if let Some(p) = projection {
                find = find.projection(p);
            }
            let mut cursor = find.await.map_err(failed)?;
            let (mut docs, mut bytes) = (Vec::new(), 0usize);
            while let Some(doc) = cursor.try_next().await.map_err(failed)? {
                bytes += doc.as_bytes().len();
                if bytes > max_bytes {
                    return Err(FindError::TooBig { bytes });
                }
                docs.push(doc.into_bytes());
            }
            Ok(docs)
        };
        tokio::time::timeout(max_time, read)
            .await
            .unwrap_or(Err(FindError::TimedOut))
    }
}
