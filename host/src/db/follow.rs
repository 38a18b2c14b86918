//! The follow phase's change stream (`--follow`): which documents of the
//! passes' collections other writers inserted or changed since a position
//! in the stream, and the operator's cutover request, read in stream order.
//!
//! The stream is opened on the database with one `$match`: inserts,
//! updates and replaces in the passes' collections that no session of the
//! run wrote (godwit's own batches commit in transactions, whose change
//! events carry their session's `lsid`), plus any write to the run's
//! cutover document in the metadata collection. The cutover document is how
//! `godwit cutover RUN` (or the run itself, after `--follow-until-idle`)
//! ends the phase: its event arrives after every change made before it, so
//! "drained up to the cutover" is "read up to that event".

use super::{Db, DbError, Result, mongo};
use bson::{Bson, DateTime, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ResumeToken;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A position in the change stream: its resume token, as BSON.
pub type Position = Vec<u8>;

pub fn position_of(token: &ResumeToken) -> Position {
    bson::serialize_to_vec(token).expect("a resume token is a document")
}

fn token_of(position: &[u8]) -> Option<ResumeToken> {
    bson::deserialize_from_slice(position).ok()
}

/// The `_id` of a run's cutover document in the metadata collection.
pub fn cutover_id(run: &str) -> String {
    format!("cutover:{run}")
}

/// What the stream said between two positions.
#[derive(Debug, Default)]
pub struct Window {
    /// Where the window ends: the position after its last event.
    pub to: Position,
    /// Documents the events named, per collection, as `{_id}` BSON (each once).
    pub documents: Vec<(String, Vec<u8>)>,
    /// Events read (repeats of one document included).
    pub events: u64,
    /// Events of godwit's own sessions that reached us (the server filters
    /// them out; any left are skipped here).
    pub own: u64,
    /// Server time of the window's last event, in ms since the epoch.
    pub last_event_ms: Option<i64>,
    /// The window ends at the run's cutover document.
    pub cutover: bool,
}

/// A change stream over a run's pass collections.
pub struct Changes {
    stream: ChangeStream<Document>,
    collections: BTreeSet<String>,
    metadata: String,
    cutover: String,
    own: Vec<Bson>,
    /// The position of the last event read (the start, before any).
    at: Position,
}

impl Db {
    /// The stream of changes to `collections` after `from` (`None`: from
    /// now), without the writes of the sessions `own` (their `lsid`s).
    pub async fn changes(
        &self,
        run: &str,
        collections: &[String],
        from: Option<&[u8]>,
        own: &[Document],
    ) -> Result<Changes> {
        let own: Vec<Bson> = own.iter().filter_map(|lsid| lsid.get("id").cloned()).collect();
        let cutover = cutover_id(run);
        let pipeline = vec![doc! {"$match": {"$or": [
            {
                "ns.coll": {"$in": collections},
                "operationType": {"$in": ["insert", "update", "replace"]},
                "lsid.id": {"$nin": own.clone()},
            },
            {"ns.coll": &self.metadata, "documentKey._id": &cutover},
        ]}}];
        let token = match from {
            Some(bytes) => Some(token_of(bytes).ok_or_else(|| DbError::CorruptPosition {
                what: format!("the change stream position journaled for run {run}"),
                reason: "not a resume token".into(),
            })?),
            None => None,
        };
        let stream = self
            .db
            .watch()
            .pipeline(pipeline)
            .resume_after(token)
            .max_await_time(Duration::from_millis(250))
            .await
            .map_err(|e| stream_error(run, e))?
            .with_type::<Document>();
        let at = stream.resume_token().map(|t| position_of(&t)).unwrap_or_default();
        if at.is_empty() {
            return Err(DbError::NoStream {
                what: format!(
                    "the change stream of database {} gave no position to resume from (run {run})",
                    self.name
                ),
            });
        }
        Ok(Changes {
            stream,
            collections: collections.iter().cloned().collect(),
            metadata: self.metadata.clone(),
            cutover,
            own,
            at,
        })
    }

    /// Asks the run `run` to end its follow phase: writes its cutover
    /// document; the run sees it in its change stream.
    pub async fn request_cutover(&self, run: &str, by: &str) -> Result<()> {
        self.meta()
            .update_one(
                doc! {"_id": cutover_id(run)},
                doc! {"$set": {"kind": "cutover", "run": run, "by": by, "at": DateTime::now()}},
            )
            .upsert(true)
            .await
            .map_err(mongo(format!("requesting the cutover of run {run}")))?;
        Ok(())
    }

    pub async fn delete_cutover(&self, run: &str) -> Result<()> {
        self.meta()
            .delete_one(doc! {"_id": cutover_id(run)})
            .await
            .map_err(mongo(format!("removing the cutover request of run {run}")))?;
        Ok(())
    }
}

fn stream_error(run: &str, error: mongodb::error::Error) -> DbError {
    // ChangeStreamHistoryLost (286), or a token the server cannot resume from (280).
    if matches!(&*error.kind, mongodb::error::ErrorKind::Command(c) if c.code == 286 || c.code == 280) {
        return DbError::HistoryLost {
            run: run.to_string(),
            reason: super::describe(&error),
        };
    }
    DbError::Mongo {
        context: format!("reading the change stream of run {run}"),
        error,
    }
}

impl Changes {
    /// The position after the last event read.
    pub fn position(&self) -> &[u8] {
        &self.at
    }

    /// Reads events until `max` documents are named, the cutover document
    /// is seen, or the stream has nothing more for about `quiet`; the window
    /// starts after the last event read before.
    pub async fn next_window(&mut self, max: usize, quiet: Duration, run: &str) -> Result<Window> {
        let mut window = Window::default();
        let mut seen: BTreeSet<(String, Vec<u8>)> = BTreeSet::new();
        let started = Instant::now();
        loop {
            let event = self.stream.next_if_any().await.map_err(|e| stream_error(run, e))?;
            if let Some(token) = self.stream.resume_token() {
                self.at = position_of(&token);
            }
            let Some(event) = event else {
                if !window.documents.is_empty() || started.elapsed() >= quiet {
                    break;
                }
                // The server waits up to `max_await_time` for an event; one
                // that answers at once is not asked again in a tight loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            window.events += 1;
            window.last_event_ms = event_ms(&event).or(window.last_event_ms);
            let ns = event.get_document("ns").ok();
            let coll = ns.and_then(|ns| ns.get_str("coll").ok()).unwrap_or_default();
            let key = event.get_document("documentKey").ok().and_then(|k| k.get("_id"));
            if coll == self.metadata {
                if key.and_then(Bson::as_str) == Some(self.cutover.as_str()) {
                    window.cutover = true;
                    break;
                }
                continue;
            }
            let lsid = event.get_document("lsid").ok().and_then(|l| l.get("id"));
            if lsid.is_some_and(|id| self.own.contains(id)) {
                window.own += 1;
                continue;
            }
            if !self.collections.contains(coll) {
                continue;
            }
            let Some(id) = key else { continue };
            let entry = (coll.to_string(), super::id_key(id));
            if seen.insert(entry.clone()) {
                window.documents.push(entry);
            }
            if window.documents.len() >= max {
                break;
            }
        }
        window.to = self.at.clone();
        Ok(window)
    }
}

/// When the event happened: its `wallTime`, else its cluster time's seconds.
fn event_ms(event: &Document) -> Option<i64> {
    if let Ok(wall) = event.get_datetime("wallTime") {
        return Some(wall.timestamp_millis());
    }
    event
        .get_timestamp("clusterTime")
        .ok()
        .map(|t| i64::from(t.time) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_survives_its_encoding() {
        let token: ResumeToken = bson::deserialize_from_document(doc! {"_data": "8263A1"}).unwrap();
        let bytes = position_of(&token);
        assert_eq!(token_of(&bytes), Some(token));
        assert!(token_of(b"junk").is_none());
    }

    #[test]
    fn an_event_time_is_its_wall_time_or_its_cluster_time() {
        let wall = doc! {"wallTime": DateTime::from_millis(1_700_000_000_123)};
        assert_eq!(event_ms(&wall), Some(1_700_000_000_123));
        let cluster = doc! {"clusterTime": bson::Timestamp { time: 1_700_000_000, increment: 4 }};
        assert_eq!(event_ms(&cluster), Some(1_700_000_000_000));
        assert_eq!(event_ms(&doc! {}), None);
    }
}
