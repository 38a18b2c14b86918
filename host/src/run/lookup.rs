//! The plugin's `find` import served from MongoDB, with every lookup and its
//! result recorded so the journal can hold exactly what the plugin saw; and
//! replay of recorded lookups when a resumed run restores the plugin's state.

use crate::journal::LookupRecord;
use crate::plugin::sandbox::Lookup;
use bson::{Document, RawDocumentBuf};
use futures_util::TryStreamExt;
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
    fn find(
        &mut self,
        collection: &str,
        filter: &[u8],
        projection: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, String> {
        let limit = capped(limit);
        self.serve(collection, filter, projection, limit)
            .unwrap_or_else(|| Err(format!("replay: the journal recorded no lookup on {collection} here")))
    }
}

pub struct MongoLookup {
    pub db: mongodb::Database,
    pub handle: tokio::runtime::Handle,
    pub recorded: Recorded,
    pub replay: Replay,
}

impl Lookup for MongoLookup {
    fn find(
        &mut self,
        collection: &str,
        filter: &[u8],
        projection: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, String> {
        let limit = capped(limit);
        if let Some(replayed) = self.replay.serve(collection, filter, projection, limit) {
            return replayed;
        }
        let result = self.run(collection, filter, projection, limit);
        self.recorded.0.lock().unwrap().push(LookupRecord {
            collection: collection.to_string(),
            filter: filter.to_vec(),
            projection: projection.map(<[u8]>::to_vec),
            limit,
            result: result.clone(),
        });
        result
    }
}

impl MongoLookup {
    fn run(
        &self,
        collection: &str,
        filter: &[u8],
        projection: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, String> {
        let filter = Document::from_reader(filter).map_err(|e| format!("filter is not a BSON document: {e}"))?;
        let projection = projection
            .map(Document::from_reader)
            .transpose()
            .map_err(|e| format!("projection is not a BSON document: {e}"))?;
        let coll = self.db.collection::<RawDocumentBuf>(collection);
        // The plugin call runs inside `block_in_place`, so blocking on the
        // runtime here is allowed.
        self.handle.block_on(async {
            let mut find = coll.find(filter).limit(i64::from(limit)).sort(bson::doc! {"_id": 1});
            if let Some(p) = projection {
                find = find.projection(p);
            }
            let mut cursor = find.await.map_err(|e| format!("find on {collection} failed: {e}"))?;
            // Stop reading once the answer is too big for the plugin anyway,
            // rather than holding all of it in the host first.
            let (mut docs, mut bytes) = (Vec::new(), 0usize);
            while let Some(doc) = cursor
                .try_next()
                .await
                .map_err(|e| format!("find on {collection} failed: {e}"))?
            {
                bytes += doc.as_bytes().len();
                if bytes > crate::plugin::sandbox::MAX_LOOKUP_BYTES {
                    return Err(format!(
                        "find on `{collection}` returned more than {} bytes, the most one lookup may return",
                        crate::plugin::sandbox::MAX_LOOKUP_BYTES
                    ));
                }
                docs.push(doc.into_bytes());
            }
            Ok(docs)
        })
    }
}
