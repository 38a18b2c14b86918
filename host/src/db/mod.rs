//! Everything godwit does to MongoDB: connecting, detecting transaction
//! support, the metadata collection - the schema version and history
//! (`schema.rs`), the lease lock (`lock.rs`), progress markers and applying
//! validated actions in bulk (`writer.rs`, `images.rs`) - and reading a
//! pass (`reader.rs`). **Invariant:** no other module talks to MongoDB
//! (lookups go through `run/lookup.rs`'s seam, served by a `Db`'s handle).

pub mod ddl;
mod follow;
mod guard;
mod images;
mod lock;
mod partition;
pub mod reader;
mod schema;
mod writer;

pub use follow::{Changes, Position, Window, cutover_id};
pub use guard::{Guard, Pinned, cut, input_id, top_level_fields};
pub use images::{MarkerImages, id_key, key_text};
pub use lock::{LOCK_ID, Lock, LockHolder};
pub use partition::{Claimant, FleetDoc, Partition, PartitionState, SplitBy};
pub use schema::{GODWIT_RUN_ID, HistoryEntry, INIT_PLUGIN, Recorded, RevertCounts, RunCounts, VersionRecord};
pub use writer::{Applied, BatchJournal, BatchWrite, Expectations, ImageJournal, WriteCounts};

use bson::{Document, doc};
use mongodb::options::ClientOptions;
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
    /// A commit the server failed without saying whether it was applied,
    /// still unsettled when `--retry-for` ran out: the progress marker
    /// settles it when the run is resumed.
    #[error(
        "{context}: the commit's outcome is unknown ({reason}) and {seconds} s of retries did not settle it; the \
         run stopped cleanly and is resumable: run the same command again (the progress marker says whether the \
         batch was written, and it is written once)"
    )]
    CommitUnsettled {
        context: String,
        seconds: u64,
        reason: String,
    },
    /// Not `source`: the driver's error, as its error source, would be
    /// printed in full - raw server reply bytes included - by every error
    /// chain; its readable part is in this message already.
    #[error("{context}: {}", describe(error))]
    Mongo {
        context: String,
        error: mongodb::error::Error,
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
    /// The server contradicts a schema operation (an index of its name with
    /// another definition, a rename whose source and target are both gone).
    #[error("{op}: {why}")]
    Schema { op: String, why: String },
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
    #[error(
        "database {db}: the version record {record} {problem}. godwit trusts the application's own entries there, \
         not a version without its entry nor an entry claiming to be godwit's that godwit did not write; read \
         `godwit status`, then repair the record (or set the version with `godwit init --version X --force`)"
    )]
    RecordUntrusted {
        db: String,
        record: String,
        problem: String,
    },
    #[error(
        "database {db}: the version in {record} changed while run {run_id} was going ({was} when it was checked, \
         now {now}) - the application or another tool set it; not stamped, and neither it nor godwit's schema \
         document was written. Find out who changed it (`godwit status`), then run the same command again"
    )]
    RecordMoved {
        db: String,
        record: String,
        run_id: String,
        was: String,
        now: String,
    },
    #[error(
        "database {db}: an adopted version record ({record}) is set in the same transaction as godwit's schema \
         document, and {uri} has no transactions (a standalone server); use a replica set, or run without \
         --version-record"
    )]
    RecordNeedsTransactions { db: String, record: String, uri: String },
    /// The run's journal could not hold a batch's images before its commit.
    #[error("run {run}: {reason}; nothing of the batch was written - run the same command again")]
    ImagesNotJournaled { run: String, reason: String },
    /// The run's journal could not hold a batch before its writes.
    #[error(
        "the journal could not hold batch entry {seq} before its writes ({reason}); nothing of it was written - fix \
         that, then run the same command again"
    )]
    NotJournaled { run: String, seq: u64, reason: String },
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
    /// The write guard refused a batch: `changed` (`{_id}` documents, BSON)
    /// are no longer what the plugin saw. Nothing of the batch was written.
    #[error(
        "{collection}: {} document(s) changed since the plugin read them (first {}); nothing of the batch was \
         written, and the documents are processed again",
        changed.len(),
        changed.first().map(|k| crate::db::images::key_text(k)).unwrap_or_default()
    )]
    Conflict { collection: String, changed: Vec<Vec<u8>> },
    /// A write carrying the guard in its filter matched nothing: a document
    /// changed. Internal: the batch is tried again with the read-and-compare
    /// guard, which names the documents ([`DbError::Conflict`]).
    #[error("a guarded write matched nothing: a document of the batch changed since it was read")]
    GuardMissed,
    /// The change stream cannot resume from the run's position: the server
    /// no longer holds that history (its oplog rolled over).
    #[error(
        "run {run}: the server no longer holds the changes since the run's last change-stream position ({reason}); \
         the follow phase cannot prove that every change was processed. Start the run again with --new-run, on a \
         server whose oplog covers the whole run (a larger oplog, or a shorter run)"
    )]
    HistoryLost { run: String, reason: String },
    #[error("{what}: {reason}; it was changed outside godwit. Start the run again with --new-run")]
    CorruptPosition { what: String, reason: String },
    #[error("{what}: this server cannot be followed; run without --follow")]
    NoStream { what: String },
}

pub type Result<T> = std::result::Result<T, DbError>;

/// A driver error as one readable line: its kind (for a server error, the
/// code, its name and the server's message) and its labels - never the
/// server's raw reply, which the driver's own `Display` appends as bytes
/// (kilobytes of hex for a write conflict).
pub fn describe(error: &mongodb::error::Error) -> String {
    let mut labels: Vec<&String> = error.labels().iter().collect();
    labels.sort();
    match labels.is_empty() {
        true => error.kind.to_string(),
        false => format!(
            "{} (labels: {})",
            error.kind,
            labels.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn mongo(context: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> DbError {
    let context = context.into();
    move |error| DbError::Mongo { context, error }
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
    /// The application's version document godwit reads and sets along
    /// with its own schema document (`--version-record`).
    pub record: Option<VersionRecord>,
}

pub struct ConnectOptions<'a> {
    pub uri: &'a str,
    pub db: &'a str,
    pub metadata_collection: &'a str,
    pub timeout: Duration,
    /// How long batches keep retrying through an outage ([`DEFAULT_RETRY_FOR`]).
    pub retry_for: Duration,
    /// An adopted version record ([`Db::record`]).
    pub record: Option<VersionRecord>,
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

/// A failed commit that may nevertheless have been applied: no reply (see
/// [`is_outage`], which covers the driver's `UnknownTransactionCommitResult`
/// label), or the server's `InternalError` (code 1), a fault inside the server
/// that says nothing of the transaction's fate. The caller settles it from a
/// document the transaction wrote (a run's progress marker, the schema
/// document) and writes again only if it is not there.
pub fn commit_outcome_unknown(error: &mongodb::error::Error) -> bool {
    const INTERNAL_ERROR: i32 = 1;
    is_outage(error) || matches!(&*error.kind, mongodb::error::ErrorKind::Command(c) if c.code == INTERNAL_ERROR)
}

/// The reply a server gives to a command that failed inside it: tests stand
/// it in for a failed commit (failpoint `commit-internal-error`).
#[cfg(feature = "failpoints")]
pub(crate) fn internal_error() -> mongodb::error::Error {
    let reply = doc! {"code": 1, "codeName": "InternalError", "errmsg": "internal server error (failpoint)"};
    let command: mongodb::error::CommandError = bson::deserialize_from_document(reply).expect("a CommandError");
    mongodb::error::ErrorKind::Command(command).into()
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
        if let Some(record) = &opts.record
            && !transactions
        {
            return Err(DbError::RecordNeedsTransactions {
                db: opts.db.to_string(),
                record: record.describe(opts.db),
                uri: redacted,
            });
        }
        Ok(Db {
            db: client.database(opts.db),
            client,
            name: opts.db.to_string(),
            uri: redacted,
            metadata: opts.metadata_collection.to_string(),
            transactions,
            retry_for: opts.retry_for,
            record: opts.record,
        })
    }

    fn meta(&self) -> mongodb::Collection<Document> {
        self.db.collection(&self.metadata)
    }

    /// How far the slowest secondary is behind the primary, from
    /// `replSetGetStatus`; `None` when the server reports no secondary (a
    /// standalone server, a one-member set) or does not say.
    pub async fn replication_lag(&self) -> Result<Option<Duration>> {
        let status = self
            .client
            .database("admin")
            .run_command(doc! {"replSetGetStatus": 1})
            .await;
        match status {
            Ok(status) => Ok(lag_of(&status)),
            // A standalone server has no replica set to ask about.
            Err(e) if matches!(&*e.kind, mongodb::error::ErrorKind::Command(_)) => Ok(None),
            Err(e) => Err(DbError::Mongo {
                context: format!("reading the replication lag of database {}", self.name),
                error: e,
            }),
        }
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
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*error.kind {
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        _ => error.to_string().contains("E11000"),
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

/// The largest lag of a secondary behind the primary in a
/// `replSetGetStatus` reply; `None` without a primary or secondaries.
fn lag_of(status: &bson::Document) -> Option<Duration> {
    let members = status.get_array("members").ok()?;
    let optime = |m: &bson::Document| m.get_datetime("optimeDate").ok().map(|d| d.timestamp_millis());
    let state = |m: &bson::Document| m.get_i32("state").ok();
    let docs: Vec<&bson::Document> = members.iter().filter_map(bson::Bson::as_document).collect();
    let primary = docs.iter().find(|m| state(m) == Some(1)).and_then(|m| optime(m))?;
    docs.iter()
        .filter(|m| state(m) == Some(2))
        .filter_map(|m| optime(m))
        .map(|secondary| Duration::from_millis((primary - secondary).max(0) as u64))
        .max()
}

#[cfg(test)]
mod lag_tests {
    use super::*;
    use bson::DateTime;

    #[test]
    fn lag_is_the_primary_optime_minus_the_slowest_secondary() {
        let at = DateTime::from_millis;
        let status = doc! {"members": [
            {"state": 2, "optimeDate": at(9_000)},
            {"state": 1, "optimeDate": at(10_000)},
            {"state": 2, "optimeDate": at(7_500)},
            {"state": 7, "optimeDate": at(1_000)},
        ]};
        assert_eq!(lag_of(&status), Some(Duration::from_millis(2_500)));
        let alone = doc! {"members": [{"state": 1, "optimeDate": at(10_000)}]};
        assert_eq!(lag_of(&alone), None);
        assert_eq!(lag_of(&doc! {"ok": 1}), None);
    }
}
