//! Everything godwit does to MongoDB: connecting, detecting transaction
//! support, the metadata collection (schema version and history, the lease
//! lock, progress markers), and applying validated actions in bulk.

mod images;
pub mod reader;

pub use images::id_key;

use crate::journal::Image;
use crate::plugin::actions::ValidAction;
use bson::{Bson, DateTime, Document, doc};
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Database};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid MongoDB URI {uri}: {reason}")]
    BadUri { uri: String, reason: String },
    #[error("cannot reach MongoDB at {uri} within {timeout:?}: {reason}")]
    Unreachable {
        uri: String,
        timeout: Duration,
        reason: String,
    },
    #[error(
        "database {db} is locked by another godwit run: run {run_id} of {plugin} on {host} (pid {pid}), lease until {expires_at}; \
         it is taken over automatically once the lease expires"
    )]
    LockHeld {
        db: String,
        run_id: String,
        plugin: String,
        host: String,
        pid: i64,
        expires_at: String,
    },
    #[error("run {run_id} lost its lock on database {db} (another runner took it over after the lease expired)")]
    LeaseLost { db: String, run_id: String },
    #[error(
        "database unreachable for {seconds} s while {context} ({reason}); the run stopped cleanly and is \
         resumable: run the same command again once the database is back"
    )]
    Outage {
        context: String,
        seconds: u64,
        reason: String,
    },
    #[error("{context}: {source}")]
    Mongo {
        context: String,
        source: mongodb::error::Error,
    },
    #[error(
        "{collection}: document _id {id} changed while it was being reverted (expected sha256 {expected}, found \
         {found}); nothing of this batch was written - run the revert again"
    )]
    Changed {
        collection: String,
        id: String,
        expected: String,
        found: String,
    },
    #[error(
        "database {db}: the schema document in {metadata} {problem}; it was changed outside godwit (by hand, or by \
         a plugin of an older godwit that let plugins write there). Read `godwit status`, then set the version the \
         schema is really at with `godwit init --version X --force`"
    )]
    SchemaTampered {
        db: String,
        metadata: String,
        problem: String,
    },
    #[error(
        "database {db}: the schema version changed while run {run_id} was going ({was} when it was checked, now \
         {now}); not stamped. Find out who changed it (`godwit status`), then run the same command again"
    )]
    VersionMoved {
        db: String,
        run_id: String,
        was: String,
        now: String,
    },
    #[error("{collection}: write of action {index} failed: {message} (filter or document {target})")]
    WriteFailed {
        collection: String,
        index: usize,
        message: String,
        target: String,
    },
    #[error(
        "database {db}: the progress marker of run {run} in {metadata} is corrupt ({reason}); it was changed outside \
         godwit, and the batch it records cannot be settled from it. Restore the metadata collection from a backup \
         and run the same command again (`godwit journal show {run}` lists what the run journaled)"
    )]
    CorruptMarker {
        db: String,
        metadata: String,
        run: String,
        reason: String,
    },
    #[error(
        "{collection}: a document the batch's actions match has no _id, so it cannot be given a before-image \
         (godwit keeps before-images by _id); give it an _id, or run with --no-before-images"
    )]
    NoId { collection: String },
}

pub type Result<T> = std::result::Result<T, DbError>;

fn mongo(context: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> DbError {
    let context = context.into();
    move |source| DbError::Mongo { context, source }
}

/// The connection string with any password replaced by `****`.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let redacted = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                user.to_string()
            };
            format!("{}{}{}", &uri[..scheme_end + 3], redacted, &rest[at..])
        }
        None => uri.to_string(),
    }
}

/// `text` with the URI's password (if any) replaced by `****`, for driver
/// messages that might echo the connection string.
fn scrub(text: &str, uri: &str) -> String {
    let password = uri.split_once("://").and_then(|(_, rest)| {
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let userinfo = &authority[..authority.rfind('@')?];
        userinfo.split_once(':').map(|(_, p)| p).filter(|p| !p.is_empty())
    });
    match password {
        Some(p) => text.replace(p, "****"),
        None => text.to_string(),
    }
}

/// A connected database with what godwit needs to know about the server.
#[derive(Clone)]
pub struct Db {
    pub client: Client,
    pub db: Database,
    pub name: String,
    pub uri: String,
    pub metadata: String,
    /// Multi-document transactions available (replica set or sharded cluster).
    pub transactions: bool,
    /// How long a batch keeps retrying through a database outage.
    pub retry_for: Duration,
}

pub struct ConnectOptions<'a> {
    pub uri: &'a str,
    pub db: &'a str,
    pub metadata_collection: &'a str,
    pub timeout: Duration,
    /// How long batches keep retrying through an outage ([`DEFAULT_RETRY_FOR`]).
    pub retry_for: Duration,
}

/// Default for [`ConnectOptions::retry_for`]: longer than MongoDB's default
/// transaction lifetime (60 s), after which a dead runner's open transaction
/// no longer blocks, and than a replica set election.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(90);

/// An error that a wait can cure: the server unreachable, restarting, or
/// stepping down, or a transaction conflict.
pub fn is_outage(error: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    // ShutdownInProgress, PrimarySteppedDown, NotWritablePrimary,
    // InterruptedAtShutdown, InterruptedDueToReplStateChange,
    // NotPrimaryOrSecondary, NotPrimaryNoSecondaryOk.
    const CODES: [i32; 7] = [91, 189, 10107, 11600, 11602, 13436, 13435];
    matches!(
        &*error.kind,
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } | ErrorKind::ServerSelection { .. }
    ) || matches!(&*error.kind, ErrorKind::Command(c) if CODES.contains(&c.code))
        || error.contains_label("RetryableWriteError")
        || error.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
}

impl Db {
    pub async fn connect(opts: ConnectOptions<'_>) -> Result<Db> {
        let redacted = redact_uri(opts.uri);
        let mut options = ClientOptions::parse(opts.uri).await.map_err(|e| DbError::BadUri {
            uri: redacted.clone(),
            reason: scrub(&e.kind.to_string(), opts.uri),
        })?;
        options.app_name = Some(format!("godwit {}", env!("CARGO_PKG_VERSION")));
        options.server_selection_timeout = Some(opts.timeout);
        options.connect_timeout = Some(opts.timeout);
        let client = Client::with_options(options).map_err(|e| DbError::BadUri {
            uri: redacted.clone(),
            reason: scrub(&e.kind.to_string(), opts.uri),
        })?;
        let hello = client
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| DbError::Unreachable {
                uri: redacted.clone(),
                timeout: opts.timeout,
                reason: scrub(&e.kind.to_string(), opts.uri),
            })?;
        let transactions = hello.get_str("setName").is_ok() || hello.get_str("msg").is_ok_and(|m| m == "isdbgrid");
        Ok(Db {
            db: client.database(opts.db),
            client,
            name: opts.db.to_string(),
            uri: redacted,
            metadata: opts.metadata_collection.to_string(),
            transactions,
            retry_for: opts.retry_for,
        })
    }

    fn meta(&self) -> mongodb::Collection<Document> {
        self.db.collection(&self.metadata)
    }

    /// The current schema document (`{_id: "schema", version, history}`), if any.
    pub async fn schema(&self) -> Result<Option<Document>> {
        self.meta()
            .find_one(doc! {"_id": "schema"})
            .await
            .map_err(mongo(format!(
                "reading the schema version from {}.{}",
                self.name, self.metadata
            )))
    }

    /// The schema version, once the schema document is known to be godwit's:
    /// see [`check_schema`].
    pub async fn current_version(&self) -> Result<Option<String>> {
        let Some(schema) = self.schema().await? else {
            return Ok(None);
        };
        self.check_schema(&schema)?;
        Ok(schema.get_str("version").ok().map(str::to_string))
    }

    /// Every version godwit sets goes with a history entry naming it (runs,
    /// reverts and `init` alike), so a version that is not its last history
    /// entry's was set by something else, and is not trusted: a chain must
    /// not skip a pending migration, or run one twice, on a forged version.
    /// An empty history is accepted (a version set before godwit kept one).
    pub fn check_schema(&self, schema: &Document) -> Result<()> {
        let version = schema.get("version").cloned().unwrap_or(Bson::Null);
        let history = schema.get_array("history").map(Vec::as_slice).unwrap_or_default();
        let Some(last) = history.last() else {
            return Ok(());
        };
        let tampered = |problem: String| DbError::SchemaTampered {
            db: self.name.clone(),
            metadata: self.metadata.clone(),
            problem,
        };
        let Some(last) = last.as_document() else {
            return Err(tampered(
                "ends its history with something that is not a history entry".into(),
            ));
        };
        let recorded = last.get("version").cloned().unwrap_or(Bson::Null);
        if recorded != version {
            return Err(tampered(format!(
                "says version {version}, but its last history entry (run {}) set {recorded}",
                last.get("run_id").map_or("?".into(), Bson::to_string)
            )));
        }
        Ok(())
    }

    /// The history entry of `run_id`, if the schema document holds one.
    pub async fn history_entry(&self, run_id: &str) -> Result<Option<Document>> {
        Ok(self
            .schema()
            .await?
            .and_then(|s| s.get_array("history").ok().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|h| h.as_document().cloned())
            .find(|h| h.get_str("run_id").ok() == Some(run_id)))
    }

    /// Records `version` and appends `history_entry`, once per run id, if the
    /// version is still `previous` (what the caller checked the run's
    /// requirement against): a version changed under a run is never
    /// overwritten. Returns false when the history already holds this run
    /// (stamped before a crash).
    pub async fn stamp(
        &self,
        version: &str,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        self.set_version(Some(version), previous, run_id, history_entry).await
    }

    /// Sets the version back (or removes it: `None`) after a revert and
    /// appends `history_entry`, once per run id, if the version is still
    /// `previous`.
    pub async fn restamp(
        &self,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        self.set_version(version, previous, run_id, history_entry).await
    }

    async fn set_version(
        &self,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        let schema = self.schema().await?;
        if let Some(schema) = &schema
            && let Ok(history) = schema.get_array("history")
            && history
                .iter()
                .any(|h| h.as_document().and_then(|d| d.get_str("run_id").ok()) == Some(run_id))
        {
            return Ok(false);
        }
        let now = schema.as_ref().and_then(|s| s.get_str("version").ok());
        let moved = || DbError::VersionMoved {
            db: self.name.clone(),
            run_id: run_id.to_string(),
            was: previous.unwrap_or("none").to_string(),
            now: now.unwrap_or("none").to_string(),
        };
        if now != previous {
            return Err(moved());
        }
        let version = version.map_or(Bson::Null, |v| Bson::String(v.to_string()));
        let set = doc! {"$set": {"version": version.clone(), "updated_at": DateTime::now()}, "$push": {"history": history_entry}};
        let context = || format!("setting version {version} in {}.{}", self.name, self.metadata);
        // Compare and set: the version read above must still be there when
        // the update lands. With no previous version the update upserts; a
        // schema document that gained a version meanwhile makes that upsert
        // a duplicate `_id`, which is the same refusal.
        let filter = match previous {
            Some(previous) => doc! {"_id": "schema", "version": previous},
            None => doc! {"_id": "schema", "version": {"$in": [Bson::Null]}},
        };
        let matched = match self.meta().update_one(filter, set).upsert(previous.is_none()).await {
            Ok(r) => r.matched_count + u64::from(r.upserted_id.is_some()),
            Err(e) if is_duplicate_key(&e) => 0,
            Err(e) => return Err(mongo(context())(e)),
        };
        if matched == 0 {
            return Err(moved());
        }
        Ok(true)
    }

    /// Whether the database has `collection`.
    pub async fn collection_exists(&self, collection: &str) -> Result<bool> {
        let names = self
            .db
            .list_collection_names()
            .filter(doc! {"name": collection})
            .await
            .map_err(mongo(format!("listing the collections of database {}", self.name)))?;
        Ok(!names.is_empty())
    }

    /// How many documents of `collection` match `filter`: what a dry run
    /// reports an unpinned `multi` update or delete would touch.
    pub async fn count_matching(&self, collection: &str, filter: &Document) -> Result<u64> {
        self.db
            .collection::<Document>(collection)
            .count_documents(filter.clone())
            .await
            .map_err(mongo(format!(
                "counting the documents of {collection} an action would touch"
            )))
    }

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

    /// Takes the lease lock, or fails naming its holder. A lock held by the
    /// same run on the same host is taken over at once: the journal's file
    /// lock already proves that the previous process of this run is gone.
    pub async fn acquire_lock(&self, holder: &LockHolder, lease: Duration) -> Result<Lock> {
        self.acquire_lock_over(holder, lease, &[]).await
    }

    /// Like [`Db::acquire_lock`], and also takes over a lock held by one of
    /// `finished` - runs the journal shows finished, which write no more (a
    /// process killed after finishing never released its lock).
    pub async fn acquire_lock_over(&self, holder: &LockHolder, lease: Duration, finished: &[String]) -> Result<Lock> {
        let now = DateTime::now();
        let expires = DateTime::from_millis(now.timestamp_millis() + lease.as_millis() as i64);
        let filter = doc! {
            "_id": "lock",
            "$or": [
                {"expires_at": {"$lte": now}},
                {"run_id": &holder.run_id, "host": &holder.host},
                {"run_id": {"$in": finished}},
            ],
        };
        let update = doc! {
            "$set": {
                "run_id": &holder.run_id, "plugin": &holder.plugin, "host": &holder.host,
                "pid": holder.pid, "acquired_at": now, "expires_at": expires,
            },
            "$inc": {"token": 1_i64},
        };
        let result = self
            .meta()
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        match result {
            Ok(Some(lock)) => Ok(Lock {
                token: lock.get_i64("token").unwrap_or(0),
                run_id: holder.run_id.clone(),
                busy: Default::default(),
            }),
            Ok(None) => unreachable!("upsert returns the document"),
            Err(e) if is_duplicate_key(&e) => {
                let held = self
                    .meta()
                    .find_one(doc! {"_id": "lock"})
                    .await
                    .map_err(mongo("reading the lock holder"))?
                    .unwrap_or_default();
                Err(DbError::LockHeld {
                    db: self.name.clone(),
                    run_id: held.get_str("run_id").unwrap_or("?").to_string(),
                    plugin: held.get_str("plugin").unwrap_or("?").to_string(),
                    host: held.get_str("host").unwrap_or("?").to_string(),
                    pid: held
                        .get_i64("pid")
                        .or_else(|_| held.get_i32("pid").map(i64::from))
                        .unwrap_or(0),
                    expires_at: held
                        .get_datetime("expires_at")
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                })
            }
            Err(e) => Err(mongo(format!("taking the lock on {}", self.name))(e)),
        }
    }

    /// Extends the lease; fails with `LeaseLost` if another runner took it.
    pub async fn renew_lock(&self, lock: &Lock, lease: Duration) -> Result<()> {
        let _busy = lock.busy.lock().await;
        let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + lease.as_millis() as i64);
        let result = self
            .meta()
            .update_one(
                doc! {"_id": "lock", "token": lock.token},
                doc! {"$set": {"expires_at": expires}},
            )
            .await
            .map_err(mongo("renewing the lock"))?;
        if result.matched_count == 0 {
            return Err(DbError::LeaseLost {
                db: self.name.clone(),
                run_id: lock.run_id.clone(),
            });
        }
        Ok(())
    }

    pub async fn release_lock(&self, lock: &Lock) -> Result<()> {
        self.meta()
            .delete_one(doc! {"_id": "lock", "token": lock.token})
            .await
            .map_err(mongo("releasing the lock"))?;
        Ok(())
    }

    /// A server session for a run's transactions; `None` without transactions.
    pub async fn session(&self) -> Result<Option<ClientSession>> {
        if !self.transactions {
            return Ok(None);
        }
        Ok(Some(
            self.client.start_session().await.map_err(mongo("starting a session"))?,
        ))
    }

    /// Ends sessions of dead processes of the same run, aborting any
    /// transaction they left open (it would hold its documents until the
    /// server's transaction lifetime limit).
    pub async fn kill_sessions(&self, lsids: Vec<Document>) -> Result<()> {
        if lsids.is_empty() {
            return Ok(());
        }
        self.client
            .database("admin")
            .run_command(doc! {"killSessions": lsids})
            .await
            .map_err(mongo("ending the sessions of interrupted processes of this run"))?;
        Ok(())
    }

    /// Applies one batch's actions and moves the run's progress marker to
    /// `seq`: in one transaction on `session` when the server supports them
    /// (exactly once), else as ordered bulk writes followed by the marker
    /// (at least once). Transient transaction errors (write conflicts) are
    /// and outages (server down, restarting, stepping down) are retried with
    /// backoff for up to [`Db::retry_for`]; after that the run stops with
    /// [`DbError::Outage`], resumable.
    pub async fn apply_batch(&self, batch: &BatchWrite<'_>, session: Option<&mut ClientSession>) -> Result<Applied> {
        let _busy = match batch.lock {
            Some(lock) => Some(lock.busy.lock().await),
            None => None,
        };
        let Some(session) = session else {
            return self.write_batch(batch, None).await;
        };
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        // A commit whose outcome is unknown (the connection dropped) may have
        // succeeded: the progress marker, written in the same transaction,
        // says whether it did, before the batch is written again.
        let mut maybe_committed = false;
        loop {
            let attempt = async {
                if maybe_committed {
                    if let Some(images) = self.marker_images(batch.run_id, batch.seq).await? {
                        tracing::warn!(
                            "batch {} of run {}: the commit went through before the connection dropped (progress \
                             marker); not applied again",
                            batch.seq,
                            batch.run_id
                        );
                        let counts = self.marker_counts(batch.run_id, batch.seq).await?.unwrap_or_default();
                        return Ok(Applied { counts, images });
                    }
                    maybe_committed = false;
                }
                session
                    .start_transaction()
                    .await
                    .map_err(mongo("starting a transaction"))?;
                let outcome = self.write_batch(batch, Some(&mut *session)).await;
                failpoint!("txn-before-commit");
                match outcome {
                    Ok(applied) => match commit(session).await {
                        // Tests: the commit went through but its reply is lost.
                        Ok(()) if failpoint_hit!("commit-reply-lost") => {
                            maybe_committed = true;
                            Err(DbError::Mongo {
                                context: format!("committing batch {} of run {}", batch.seq, batch.run_id),
                                source: mongodb::error::Error::custom("the commit reply was lost (failpoint)"),
                            })
                        }
                        Ok(()) => Ok(applied),
                        Err(e) => {
                            // Without a reply the commit may have gone through.
                            maybe_committed = is_outage(&e);
                            Err(DbError::Mongo {
                                context: format!("committing batch {} of run {}", batch.seq, batch.run_id),
                                source: e,
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
                Err(e) => e,
            };
            let (retry, outage) = match &error {
                DbError::Mongo { source, .. } => (
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
            if started.elapsed() > self.retry_for {
                return Err(match (outage, error) {
                    (true, DbError::Mongo { context, source }) => DbError::Outage {
                        context,
                        seconds: started.elapsed().as_secs(),
                        reason: source.kind.to_string(),
                    },
                    (_, error) => error,
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

    /// The body of a batch: before-images, writes, after-images, marker.
    async fn write_batch(&self, batch: &BatchWrite<'_>, mut session: Option<&mut ClientSession>) -> Result<Applied> {
        let before = if batch.capture_images {
            Some(self.read_before(batch.actions, session.as_deref_mut()).await?)
        } else {
            None
        };
        if let (Some(before), Some(expect)) = (&before, batch.expect) {
            before.check(expect)?;
        }
        let (counts, upserted) = self.write_actions(batch.actions, session.as_deref_mut()).await?;
        let images = match before {
            Some(before) => self.read_after(before, upserted, session.as_deref_mut()).await?,
            None => Vec::new(),
        };
        self.write_marker(batch, &images, counts, session).await?;
        Ok(Applied { counts, images })
    }

    async fn write_marker(
        &self,
        batch: &BatchWrite<'_>,
        images: &[Image],
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
        let mut statements = vec![doc! {
            "q": {"_id": format!("progress:{}", batch.run_id)},
            "u": {"$set": {
                "seq": batch.seq as i64, "pass": batch.pass.map(i64::from), "checkpoint": batch.checkpoint.clone(),
                "at": DateTime::now(), "images": first, "image_chunks": image_chunks,
                "counts": counts.to_document(),
            }},
            "upsert": true,
        }];
        if let Some(lock) = batch.lock {
            statements.push(
                doc! {"q": {"_id": "lock", "token": lock.token}, "u": {"$set": {"last_batch_at": DateTime::now()}}},
            );
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

const MAX_STATEMENTS: usize = 1000;
const MAX_COMMAND_BYTES: usize = 8 << 20;

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

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*error.kind {
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        _ => error.to_string().contains("E11000"),
    }
}

pub struct LockHolder {
    pub run_id: String,
    pub plugin: String,
    pub host: String,
    pub pid: i64,
}

#[derive(Debug, Clone)]
pub struct Lock {
    pub token: i64,
    pub run_id: String,
    /// Held by a batch transaction (which writes the lock document to fence
    /// itself) and by a renewal, so that this process's own renewal never
    /// write-conflicts with its own transaction; a takeover by another runner
    /// still does, which is the point of the fence.
    pub busy: std::sync::Arc<tokio::sync::Mutex<()>>,
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
}

pub type Expectations = std::collections::HashMap<(String, Vec<u8>), Option<crate::hash::Sha256Hash>>;

/// What applying a batch did.
#[derive(Debug, Default)]
pub struct Applied {
    pub counts: WriteCounts,
    pub images: Vec<Image>,
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

#[cfg(test)]
mod tests {
    use super::redact_uri;

    #[test]
    fn driver_messages_lose_the_password() {
        assert_eq!(
            super::scrub("auth failed for alice:s3cr@t", "mongodb://alice:s3cr@t@h/"),
            "auth failed for alice:****"
        );
        assert_eq!(super::scrub("no password", "mongodb://h/"), "no password");
    }

    #[test]
    fn passwords_are_redacted() {
        let check = |uri: &str, expect: &str| assert_eq!(redact_uri(uri), expect);
        check("mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017");
        check(
            "mongodb://alice:s3cr@t@db1,db2/app?x=1",
            "mongodb://alice:****@db1,db2/app?x=1",
        );
        check(
            "mongodb+srv://bob@cluster.example.net/",
            "mongodb+srv://bob@cluster.example.net/",
        );
        check(
            "mongodb://u:p@h/?authSource=admin",
            "mongodb://u:****@h/?authSource=admin",
        );
    }
}
