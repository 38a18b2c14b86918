//! The plugin's `find` import served from MongoDB, with every lookup and its
//! result recorded so the journal can hold exactly what the plugin saw; and
//! replay of recorded lookups when a resumed run restores the plugin's state.
//! Each lookup runs under what remains of the call's deadline (`maxTimeMS`,
//! and the host stops waiting there) and byte budget, counted by
//! `plugin::sandbox`; godwit's metadata collection and `system.*` are
//! refused before anything is sent.

use crate::db::reader::FindError;
use crate::journal::LookupRecord;
use crate::plugin::sandbox::{Lookup, LookupError, LookupQuery};
use bson::Document;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Most documents one lookup returns (also the cap for `limit` 0).
pub use crate::plugin::sandbox::MAX_LOOKUP_DOCS;

fn capped(limit: u32) -> u32 {
    if limit == 0 {
        MAX_LOOKUP_DOCS
    } else {
        limit.min(MAX_LOOKUP_DOCS)
    }
}

#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<LookupRecord>>>);

impl Recorded {
    /// Takes the lookups made since the last call.
    pub fn drain(&self) -> Vec<LookupRecord> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// While loaded, lookups are answered from journaled records instead of the
/// database, in order: a resumed run re-feeds the plugin what it saw before.
#[derive(Clone, Default)]
pub struct Replay(Arc<Mutex<Option<VecDeque<LookupRecord>>>>);

impl Replay {
    pub fn load(&self, records: Vec<LookupRecord>) {
        *self.0.lock().unwrap() = Some(records.into());
    }

    /// Stops replaying; returns how many journaled lookups were not asked for.
    pub fn stop(&self) -> usize {
        self.0.lock().unwrap().take().map_or(0, |q| q.len())
    }

    fn serve(
        &self,
        collection: &str,
        filter: &[u8],
        projection: Option<&[u8]>,
        limit: u32,
    ) -> Option<Result<Vec<Vec<u8>>, String>> {
        let mut guard = self.0.lock().unwrap();
        let queue = guard.as_mut()?;
        Some(match queue.pop_front() {
            Some(r)
                if r.collection == collection
                    && r.filter == filter
                    && r.projection.as_deref() == projection
                    && r.limit == limit =>
            {
                r.result
            }
            Some(r) => Err(format!(
                "replay diverged: the plugin looked up {collection} where the journal recorded a lookup on {} \
                 (or with another filter)",
                r.collection
            )),
            None => Err(format!(
                "replay diverged: the plugin looked up {collection}, the journal recorded no further lookup"
            )),
        })
    }
}

/// Outside a run (`journal replay`), every lookup must come from the journal.
impl Lookup for Replay {
    fn find(&mut self, query: &LookupQuery<'_>) -> Result<Vec<Vec<u8>>, LookupError> {
        let limit = capped(query.limit);
        self.serve(query.collection, query.filter, query.projection, limit)
            .unwrap_or_else(|| {
                Err(format!(
                    "replay: the journal recorded no lookup on {} here",
                    query.collection
                ))
            })
            .map_err(LookupError::Failed)
    }
}

/// Lookups served from the run's database, each bounded by what remains of
/// the call's deadline and byte budget (see [`LookupQuery`]).
pub struct MongoLookup {
    pub db: crate::db::Db,
    pub handle: tokio::runtime::Handle,
    pub recorded: Recorded,
    pub replay: Replay,
    /// The plugin's name, for the log line of a refused lookup.
    pub plugin: String,
    /// godwit's own collection (`--metadata-collection`): never looked up.
    pub metadata_collection: String,
}

impl Lookup for MongoLookup {
    fn find(&mut self, query: &LookupQuery<'_>) -> Result<Vec<Vec<u8>>, LookupError> {
        let limit = capped(query.limit);
        let (collection, filter, projection) = (query.collection, query.filter, query.projection);
        if let Some(replayed) = self.replay.serve(collection, filter, projection, limit) {
            return replayed.map_err(LookupError::Failed);
        }
        let result = match self.run(query, limit) {
            // The call fails; nothing of it is journaled.
            Err(e @ (LookupError::TimedOut | LookupError::TooBig { .. } | LookupError::Unavailable(_))) => {
                return Err(e);
            }
            Err(LookupError::Failed(message)) => Err(message),
            Ok(docs) => Ok(docs),
        };
        self.recorded.0.lock().unwrap().push(LookupRecord {
            collection: collection.to_string(),
            filter: filter.to_vec(),
            projection: projection.map(<[u8]>::to_vec),
            limit,
            result: result.clone(),
        });
        result.map_err(LookupError::Failed)
    }
}

impl MongoLookup {
    /// The one place a lookup's raw request is checked before anything of it
    /// is decoded or sent: godwit's own state is out of reach (its metadata
    /// collection holds the schema version, the lock and the progress
    /// markers; `system.*` holds users and server state), and the filter and
    /// projection pass the plugin policy (`godwit-policy`: structure and
    /// nesting depth walked on the raw bytes - deep nesting would overflow
    /// the decoder's stack -, then the operator allow-lists).
    fn check_lookup_input(&self, collection: &str, filter: &[u8], projection: Option<&[u8]>) -> Result<(), String> {
        if collection.is_empty() {
            return Err("lookups on an empty collection name are refused".to_string());
        }
        if collection == self.metadata_collection {
            return Err(format!(
                "lookups on `{collection}` are refused: it is godwit's own metadata collection (schema version, \
                 lock, progress markers), out of reach of plugins"
            ));
        }
        if collection.starts_with("system.") {
            return Err(format!(
                "lookups on `{collection}` are refused: `system.*` collections are out of reach of plugins"
            ));
        }
        let cx = godwit_policy::Context {
            metadata_collection: Some(&self.metadata_collection),
            database: None,
            version_record: None,
        };
        let refused = |v: godwit_policy::Violation| format!("lookup on `{collection}` refused: {v}");
        godwit_policy::check_collection(&cx, collection).map_err(refused)?;
        godwit_policy::check_query(filter).map_err(refused)?;
        if let Some(projection) = projection {
            let projection = godwit_policy::decode("projection", projection).map_err(refused)?;
            godwit_policy::check_projection(&projection).map_err(refused)?;
        }
        Ok(())
    }

    fn run(&self, query: &LookupQuery<'_>, limit: u32) -> Result<Vec<Vec<u8>>, LookupError> {
        let collection = query.collection;
        if let Err(reason) = self.check_lookup_input(collection, query.filter, query.projection) {
            tracing::warn!(target: "godwit::plugin", plugin = %self.plugin, "lookup refused: {reason}");
            return Err(LookupError::Failed(reason));
        }
        let filter = Document::from_reader(query.filter)
            .map_err(|e| LookupError::Failed(format!("filter is not a BSON document: {e}")))?;
        let projection = query
            .projection
            .map(Document::from_reader)
            .transpose()
            .map_err(|e| LookupError::Failed(format!("projection is not a BSON document: {e}")))?;
        let find = self
            .db
            .find_bounded(collection, filter, projection, limit, query.max_time, query.max_bytes);
        // The plugin call runs inside `block_in_place`, so blocking on the
        // runtime here is allowed.
        self.handle.block_on(find).map_err(|e| match e {
            FindError::TimedOut => LookupError::TimedOut,
            FindError::TooBig { bytes } => LookupError::TooBig { bytes },
            FindError::Failed(e) => {
                LookupError::Failed(format!("find on {collection} failed: {}", crate::db::describe(&e)))
            }
        })
    }
}
