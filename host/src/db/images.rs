//! Before-images: the documents a batch writes, read inside the batch's
//! transaction just before its writes, each paired with the hash of what
//! the writes left - evaluated in memory while the writes run, read back
//! only where the evaluator does not answer. They go to the journal before
//! the commit, and the progress marker (written in the same transaction)
//! names the entry, so that a batch whose `Committed` journal entry was lost
//! in a crash still has them when the resume settles it by the marker.

use super::{ClientSession, Db, DbError, Result, mongo};
use crate::hash::sha256;
use crate::journal::Image;
use crate::plugin::actions::ValidAction;
use bson::{Binary, Bson, Document, RawDocumentBuf, doc, oid::ObjectId, spec::BinarySubtype};
use futures_util::TryStreamExt;
use mongodb::action::Action as _;
use std::collections::{HashMap, HashSet};

/// `(collection, {"_id": value} as BSON)`: one document.
type Key = (String, Vec<u8>);

/// Marker and chunk documents stay well under the 16 MB document limit.
const MAX_CHUNK_BYTES: usize = 8 << 20;

/// What a batch's documents were before its writes.
#[derive(Default)]
pub(super) struct Before {
    /// Documents in the order the batch first touches them.
    order: Vec<Key>,
    before: HashMap<Key, Option<Vec<u8>>>,
}

impl Before {
    /// Fails unless every expected document is as expected.
    pub(super) fn check(&self, expect: &super::Expectations) -> Result<()> {
        for ((collection, key), expected) in expect {
            let found = self
                .before
                .get(&(collection.clone(), key.clone()))
                .and_then(|b| b.as_deref().map(sha256));
            if found != *expected {
                let show = |h: Option<[u8; 32]>| h.map_or("(absent)".to_string(), |h| crate::hash::to_hex(&h));
                return Err(DbError::Changed {
                    collection: collection.clone(),
                    id: id_of_key(key).map_or("?".into(), |id| id.to_string()),
                    expected: show(*expected),
                    found: show(found),
                });
            }
        }
        Ok(())
    }

    /// The document `key` of `collection` as read: `None` if the batch's
    /// writes did not name it, `Some(None)` if it did not exist.
    pub(super) fn image(&self, collection: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.before
            .get(&(collection.to_string(), key.to_vec()))
            .map(|b| b.as_deref())
    }

    pub(super) fn touch(&mut self, key: Key, before: Option<Vec<u8>>) {
        if !self.before.contains_key(&key) {
            self.order.push(key.clone());
            self.before.insert(key, before);
        }
    }
}

pub fn id_key(id: &Bson) -> Vec<u8> {
    doc! {"_id": id.clone()}.to_vec().expect("an _id encodes")
}

fn id_of_key(key: &[u8]) -> Option<Bson> {
    Document::from_reader(key).ok()?.remove("_id")
}

/// An `{_id}` key as `_id <value>`, for messages.
pub fn key_text(key: &[u8]) -> String {
    id_of_key(key).map_or_else(|| "_id ?".into(), |id| format!("_id {id}"))
}

/// The value of a filter that is exactly `{_id: <plain value>}`.
fn plain_id(filter: &Document) -> Option<&Bson> {
    if filter.len() != 1 {
        return None;
    }
    match filter.get("_id")? {
        Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => None,
        v => Some(v),
    }
}

/// How a read is asked for: the documents expected (the first reply's
/// size) and, for a range of `_id`s, how many to read at most.
#[derive(Default, Clone, Copy)]
struct Shape {
    expect: Option<usize>,
    limit: Option<usize>,
}

/// ObjectIds read as a range rather than by `$in`: at least this many.
const RANGE_MIN_IDS: usize = 8;
/// Documents read past twice the ids asked for before a range is cut short.
const RANGE_SLACK: usize = 16;

/// The least and greatest of many `_id`s that are all ObjectIds (no other
/// type equals one, so the range holds every document asked for).
struct IdRange {
    low: ObjectId,
    high: ObjectId,
    wanted: HashSet<ObjectId>,
}

impl IdRange {
    fn of(ids: &[Bson]) -> Option<Self> {
        if ids.len() < RANGE_MIN_IDS {
            return None;
        }
        let wanted = ids
            .iter()
            .map(|id| match id {
                Bson::ObjectId(id) => Some(*id),
                _ => None,
            })
            .collect::<Option<HashSet<ObjectId>>>()?;
        Some(IdRange {
            low: *wanted.iter().min()?,
            high: *wanted.iter().max()?,
            wanted,
        })
    }
}

pub(super) fn raw_id(doc: &RawDocumentBuf) -> Option<Bson> {
    doc.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok())
}

impl Db {
    /// Finds documents with a raw cursor, inside `session`'s transaction if given.
    pub async fn find_raw(
        &self,
        collection: &str,
        filter: Document,
        session: Option<&mut ClientSession>,
        what: &str,
    ) -> Result<Vec<RawDocumentBuf>> {
        self.find_projected(collection, filter, None, session, what).await
    }

    /// [`Db::find_raw`] with a projection.
    pub async fn find_projected(
        &self,
        collection: &str,
        filter: Document,
        projection: Option<&Document>,
        session: Option<&mut ClientSession>,
        what: &str,
    ) -> Result<Vec<RawDocumentBuf>> {
        self.find_shaped(collection, filter, projection, Shape::default(), session, what)
            .await
    }

    async fn find_shaped(
        &self,
        collection: &str,
        filter: Document,
        projection: Option<&Document>,
        shape: Shape,
        session: Option<&mut ClientSession>,
        what: &str,
    ) -> Result<Vec<RawDocumentBuf>> {
        let coll = self.db.collection::<RawDocumentBuf>(collection);
        let context = || format!("reading {what} in {}.{collection}", self.name);
        let find = coll
            .find(filter)
            .optional(projection, |find, p| find.projection(p.clone()))
            // All in the first reply where they fit (16 MiB): the server's
            // default first batch of 101 documents costs a `getMore`. One
            // more than expected, because a reply filled exactly leaves the
            // cursor open and its `getMore` comes back empty; a limit ends
            // the cursor by itself.
            .optional(shape.expect, |find, n| {
                let n = if shape.limit == Some(n) { n } else { n.saturating_add(1) };
                find.batch_size(n.clamp(1, u32::MAX as usize) as u32)
            })
            .optional(shape.limit, |find, n| {
                find.sort(doc! {"_id": 1}).limit(i64::try_from(n).unwrap_or(i64::MAX))
            });
        match session {
            Some(session) => {
                let mut cursor = find.session(&mut *session).await.map_err(mongo(context()))?;
                let mut docs = Vec::new();
                while let Some(doc) = cursor.next(session).await {
                    docs.push(doc.map_err(mongo(context()))?);
                }
                Ok(docs)
            }
            None => find
                .await
                .map_err(mongo(context()))?
                .try_collect()
                .await
                .map_err(mongo(context())),
        }
    }

    /// The documents with these `_id`s as they are now (projected), in one
    /// reply where they fit. Many ObjectIds - a batch's, which ascend with
    /// the pass - are read as one range of the `_id` index, least to
    /// greatest, rather than by `$in`: the server walks the range for about
    /// half the cost of as many point lookups (SecantusDB, 1,000
    /// ObjectIds: 6-8 ms against 10-16 ms inside a transaction, 2026-12-02).
    /// Documents of the range not asked for are left out. The range is read
    /// up to twice as many documents as asked for; those asked for beyond
    /// it (a sparse pass) are read by `$in`.
    pub(super) async fn find_ids(
        &self,
        collection: &str,
        ids: Vec<Bson>,
        projection: Option<&Document>,
        mut session: Option<&mut ClientSession>,
        what: &str,
    ) -> Result<Vec<RawDocumentBuf>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let Some(range) = IdRange::of(&ids) else {
            let shape = Shape {
                expect: Some(ids.len()),
                limit: None,
            };
            let filter = doc! {"_id": {"$in": ids}};
            return self
                .find_shaped(collection, filter, projection, shape, session, what)
                .await;
        };
        let limit = 2 * range.wanted.len() + RANGE_SLACK;
        let shape = Shape {
            expect: Some(limit),
            limit: Some(limit),
        };
        let filter = doc! {"_id": {"$gte": range.low, "$lte": range.high}};
        let found = self
            .find_shaped(collection, filter, projection, shape, session.as_deref_mut(), what)
            .await?;
        let cut_short = found.len() >= limit;
        let mut missing = range.wanted;
        let mut docs: Vec<RawDocumentBuf> = found
            .into_iter()
            .filter(|doc| match doc.get("_id") {
                Ok(Some(bson::RawBsonRef::ObjectId(id))) => missing.remove(&id),
                _ => false,
            })
            .collect();
        if cut_short && !missing.is_empty() {
            let rest: Vec<Bson> = missing.into_iter().map(Bson::ObjectId).collect();
            let shape = Shape {
                expect: Some(rest.len()),
                limit: None,
            };
            let filter = doc! {"_id": {"$in": rest}};
            docs.extend(
                self.find_shaped(collection, filter, projection, shape, session, what)
                    .await?,
            );
        }
        Ok(docs)
    }

    /// Reads every document the batch's updates and deletes can match, as it
    /// is now. Filters that name one `_id` are read together with `$in`.
    /// Inserted documents are recorded as absent before.
    pub(super) async fn read_before(
        &self,
        actions: &[ValidAction],
        mut session: Option<&mut ClientSession>,
    ) -> Result<Before> {
        let mut collections: Vec<(&str, Vec<Bson>, Vec<Document>)> = Vec::new();
        for action in actions {
            let (collection, filter) = match action {
                ValidAction::Update { collection, filter, .. } | ValidAction::Delete { collection, filter, .. } => {
                    (collection.as_str(), filter)
                }
                _ => continue,
            };
            let index = match collections.iter().position(|(c, ..)| *c == collection) {
                Some(i) => i,
                None => {
                    collections.push((collection, Vec::new(), Vec::new()));
                    collections.len() - 1
                }
            };
            let (_, ids, others) = &mut collections[index];
            match plain_id(filter) {
                Some(id) => ids.push(id.clone()),
                None => others.push(filter.clone()),
            }
        }
        let mut before = Before {
            order: Vec::new(),
            before: HashMap::new(),
        };
        for (collection, ids, mut others) in collections {
            let found = if others.is_empty() {
                self.find_ids(collection, ids, None, session.as_deref_mut(), "before-images")
                    .await?
            } else {
                if !ids.is_empty() {
                    others.push(doc! {"_id": {"$in": ids}});
                }
                let filter = if others.len() == 1 {
                    others.pop().expect("one filter")
                } else {
                    doc! {"$or": others}
                };
                self.find_raw(collection, filter, session.as_deref_mut(), "before-images")
                    .await?
            };
            for doc in found {
                let id = raw_id(&doc).ok_or_else(|| DbError::NoId {
                    collection: collection.to_string(),
                })?;
                before.touch((collection.to_string(), id_key(&id)), Some(doc.into_bytes()));
            }
        }
        // Documents inserted by the batch did not exist (an existing `_id`
        // fails the insert and with it the batch).
        for action in actions {
            if let ValidAction::Insert { collection, document } = action
                && let Some(id) = document.get("_id")
            {
                before.touch((collection.clone(), id_key(id)), None);
            }
        }
        Ok(before)
    }

    /// Pairs each before-image with the hash of the document as the batch
    /// left it: computed in memory from the before-image and the batch's
    /// writes ([`evaluate_after`], done while the writes ran) wherever that is exact, and
    /// read back from the server (inside the transaction) only for the rest:
    /// writes the evaluator does not cover, filters other than one `_id`,
    /// `multi`, and the documents upserts created.
    pub(super) async fn read_after(
        &self,
        mut before: Before,
        mut after: Evaluations,
        upserted: Vec<(String, Bson)>,
        mut session: Option<&mut ClientSession>,
    ) -> Result<Vec<Image>> {
        for (collection, id) in upserted {
            let key = (collection, id_key(&id));
            after.insert(key.clone(), Evaluated::Unknown);
            before.touch(key, None);
        }
        let mut to_read: Vec<(&str, Vec<Bson>)> = Vec::new();
        for (collection, key) in &before.order {
            if !matches!(after.get(&(collection.clone(), key.clone())), Some(Evaluated::Known(_))) {
                let id = id_of_key(key).expect("keys hold an _id");
                match to_read.iter_mut().find(|(c, _)| c == collection) {
                    Some((_, ids)) => ids.push(id),
                    None => to_read.push((collection, vec![id])),
                }
            }
        }
        let mut read: HashMap<Key, [u8; 32]> = HashMap::new();
        for (collection, ids) in to_read {
            for doc in self
                .find_ids(collection, ids, None, session.as_deref_mut(), "after-images")
                .await?
            {
                if let Some(id) = raw_id(&doc) {
                    read.insert((collection.to_string(), id_key(&id)), sha256(doc.as_bytes()));
                }
            }
        }
        Ok(assemble(before, after, &read))
    }

    /// The before-images committed with batch `seq` of `run_id`, as its
    /// progress marker has them: the images themselves, or the journal
    /// entry holding them; `None` if the marker is at another batch.
    pub async fn marker_images(&self, run_id: &str, seq: u64) -> Result<Option<MarkerImages>> {
        let Some(marker) = self.marker(run_id).await? else {
            return Ok(None);
        };
        if marker.get_i64("seq").ok() != Some(seq as i64) {
            return Ok(None);
        }
        let corrupt = |what: &str| DbError::CorruptMarker {
            db: self.name.clone(),
            metadata: self.metadata.clone(),
            run: run_id.to_string(),
            reason: format!("unreadable before-images of batch {seq}: {what}"),
        };
        if let Ok(entry) = marker.get_i64("images_at") {
            let hash = marker
                .get_binary_generic("images_sha256")
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                .ok_or_else(|| corrupt("images_sha256"))?;
            return Ok(Some(MarkerImages::Journaled {
                entry: entry as u64,
                hash,
            }));
        }
        let mut images = images_from_bson(marker.get_array("images").map_err(|_| corrupt("images"))?)
            .ok_or_else(|| corrupt("images"))?;
        let chunks = marker.get_i64("image_chunks").unwrap_or(1);
        for chunk in 1..chunks {
            let doc = self
                .meta()
                .find_one(doc! {"_id": chunk_id(run_id, chunk), "seq": seq as i64})
                .await
                .map_err(mongo(format!("reading the before-images of run {run_id}, batch {seq}")))?
                .ok_or_else(|| corrupt("a chunk is missing"))?;
            images.extend(
                images_from_bson(doc.get_array("images").map_err(|_| corrupt("chunk"))?)
                    .ok_or_else(|| corrupt("chunk"))?,
            );
        }
        Ok(Some(MarkerImages::Inline(images)))
    }
}

/// What a progress marker holds of its batch's images.
#[derive(Debug)]
pub enum MarkerImages {
    /// The images (a batch written without a journal for them).
    Inline(Vec<Image>),
    /// Where the run's journal holds them: an `Images` entry and its hash.
    Journaled { entry: u64, hash: crate::hash::Sha256Hash },
}

/// A document's state after the batch's writes, as far as they were
/// evaluated in memory.
pub(super) enum Evaluated {
    /// The hash of the document the writes leave (`None`: absent).
    Known(Option<[u8; 32]>),
    /// To be read from the server.
    Unknown,
}

/// What [`evaluate_after`] found of each document a batch names.
pub(super) type Evaluations = HashMap<Key, Evaluated>;

/// The batch's writes applied in memory, in order, to the documents read
/// before them: a write of one document by plain `_id` (no `multi`) is
/// followed exactly, through [`godwit_policy::apply_update_raw`] for updates; a
/// write the evaluator does not answer for, and any other filter or `multi`
/// (which may touch any document of its collection), leave the documents
/// concerned [`Evaluated::Unknown`].
/// Whether the evaluator answered for every document the batch touches:
/// the images need no read back ([`assemble`] with nothing read).
pub(super) fn all_known(before: &Before, after: &Evaluations) -> bool {
    before
        .order
        .iter()
        .all(|key| matches!(after.get(key), Some(Evaluated::Known(_))))
}

/// Each document's before-image with the hash of what the writes left:
/// evaluated, else as `read` back from the server.
pub(super) fn assemble(mut before: Before, mut after: Evaluations, read: &HashMap<Key, [u8; 32]>) -> Vec<Image> {
    let mut images = Vec::with_capacity(before.order.len());
    for key in before.order {
        let prior = before.before.remove(&key).flatten();
        let after_hash = match after.remove(&key) {
            Some(Evaluated::Known(hash)) => hash,
            _ => read.get(&key).copied(),
        };
        if prior.is_none() && after_hash.is_none() {
            // Neither before nor after: nothing to revert.
            continue;
        }
        images.push(Image {
            collection: key.0,
            id: key.1,
            before: prior,
            after_hash,
        });
    }
    images
}

pub(super) fn evaluate_after(actions: &[ValidAction], before: &Before) -> Evaluations {
    // The document as the batch's writes left it, encoded (`None`:
    // absent); `unknown`: not followed any more.
    let mut state: HashMap<Key, Option<Vec<u8>>> = HashMap::new();
    let mut unknown: std::collections::HashSet<Key> = std::collections::HashSet::new();
    let mut lost_collections: Vec<&str> = Vec::new();
    for action in actions {
        match action {
            ValidAction::Update {
                collection,
                filter,
                update,
                upsert,
                multi: false,
            } if let Some(id) = plain_id(filter) => {
                let key = (collection.clone(), id_key(id));
                if unknown.contains(&key) {
                    continue;
                }
                let earlier = state.get(&key).map(|d| d.as_deref());
                let after = match earlier.or_else(|| before.image(&key.0, &key.1)) {
                    Some(Some(bytes)) => bson::RawDocument::from_bytes(bytes)
                        .ok()
                        .and_then(|doc| {
                            godwit_policy::apply_update_raw(doc, update, godwit_policy::Target::Existing).ok()
                        })
                        .map(Some),
                    // Absent: the update matches nothing, unless it upserts
                    // (the server's reply names the document; it is read).
                    Some(None) if !*upsert => Some(None),
                    _ => None,
                };
                match after {
                    Some(after) => {
                        state.insert(key, after);
                    }
                    None => {
                        unknown.insert(key);
                    }
                }
            }
            ValidAction::Delete {
                collection,
                filter,
                multi: false,
            } if let Some(id) = plain_id(filter) => {
                let key = (collection.clone(), id_key(id));
                if !unknown.contains(&key) {
                    state.insert(key, None);
                }
            }
            ValidAction::Insert { collection, document } => match document.get("_id") {
                // The server stores a document whose `_id` comes first as given.
                Some(id) if document.keys().next().map(String::as_str) == Some("_id") => {
                    let key = (collection.clone(), id_key(id));
                    match document.to_vec() {
                        Ok(bytes) if !unknown.contains(&key) => {
                            state.insert(key, Some(bytes));
                        }
                        Ok(_) => {}
                        Err(_) => {
                            unknown.insert(key);
                        }
                    }
                }
                Some(id) => {
                    unknown.insert((collection.clone(), id_key(id)));
                }
                None => {}
            },
            ValidAction::Report { .. } => {}
            other => lost_collections.extend(other.collection()),
        }
    }
    before
        .order
        .iter()
        .map(|key| {
            let evaluated = if unknown.contains(key) || lost_collections.contains(&key.0.as_str()) {
                Evaluated::Unknown
            } else {
                match state
                    .get(key)
                    .map(|d| d.as_deref())
                    .or_else(|| before.image(&key.0, &key.1))
                {
                    // Written by a followed write, or not written: as it was.
                    Some(after) => Evaluated::Known(after.map(sha256)),
                    None => Evaluated::Unknown,
                }
            };
            (key.clone(), evaluated)
        })
        .collect()
}

pub(super) fn chunk_id(run_id: &str, chunk: i64) -> String {
    format!("images:{run_id}:{chunk}")
}

/// The images split into marker-sized chunks of BSON documents.
pub(super) fn image_chunks(images: &[Image]) -> Vec<Vec<Bson>> {
    let binary = |bytes: &[u8]| {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: bytes.to_vec(),
        })
    };
    let mut chunks = vec![Vec::new()];
    let mut size = 0;
    for image in images {
        let doc = doc! {
            "c": &image.collection,
            "id": binary(&image.id),
            "b": image.before.as_deref().map_or(Bson::Null, binary),
            "a": image.after_hash.as_ref().map_or(Bson::Null, |h| binary(h)),
        };
        let len = image.id.len() + image.before.as_ref().map_or(0, Vec::len) + image.collection.len() + 64;
        if size + len > MAX_CHUNK_BYTES && size > 0 {
            chunks.push(Vec::new());
            size = 0;
        }
        size += len;
        chunks.last_mut().expect("a chunk").push(Bson::Document(doc));
    }
    chunks
}

fn images_from_bson(array: &[Bson]) -> Option<Vec<Image>> {
    let bytes = |doc: &Document, key: &str| -> Option<Option<Vec<u8>>> {
        match doc.get(key)? {
            Bson::Null => Some(None),
            Bson::Binary(b) => Some(Some(b.bytes.clone())),
            _ => None,
        }
    };
    array
        .iter()
        .map(|item| {
            let doc = item.as_document()?;
            Some(Image {
                collection: doc.get_str("c").ok()?.to_string(),
                id: bytes(doc, "id")??,
                before: bytes(doc, "b")?,
                after_hash: match bytes(doc, "a")? {
                    Some(h) => Some(h.try_into().ok()?),
                    None => None,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_survive_the_marker_encoding_and_split_into_chunks() {
        let image = |i: u8, before: Option<usize>| Image {
            collection: "users".into(),
            id: id_key(&Bson::Int32(i.into())),
            before: before.map(|n| vec![i; n]),
            after_hash: i.is_multiple_of(2).then_some([i; 32]),
        };
        let images = vec![
            image(1, Some(10)),
            image(2, None),
            image(3, Some(5 << 20)),
            image(4, Some(5 << 20)),
        ];
        let chunks = image_chunks(&images);
        assert_eq!(chunks.len(), 2, "two 5 MB images do not fit one chunk");
        let back: Vec<Image> = chunks.iter().flat_map(|c| images_from_bson(c).unwrap()).collect();
        assert_eq!(back, images);
    }

    #[test]
    fn only_plain_id_filters_are_read_by_in() {
        assert!(plain_id(&doc! {"_id": 1}).is_some());
        assert!(plain_id(&doc! {"_id": {"a": 1}}).is_some());
        assert!(plain_id(&doc! {"_id": {"$gt": 1}}).is_none());
        assert!(plain_id(&doc! {"_id": 1, "n": 0}).is_none());
    }
}
