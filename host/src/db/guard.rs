//! The write guard: a batch's writes apply only if every document its plugin
//! call read is, inside the batch's transaction, still what the plugin saw.
//! An application that wrote one of them in between is never overwritten:
//! the batch is refused with the documents that changed, and the run
//! processes them again in their new state.

use super::images::{id_key, raw_id};
use super::{ClientSession, Db, DbError, Result};
use crate::plugin::actions::ValidAction;
use bson::{Bson, Document, RawDocument, doc};
use std::collections::HashMap;

/// The documents one plugin call read: a pass's batch, as the reader gave
/// them to the plugin (raw BSON, projected by the pass's projection).
#[derive(Debug, Clone, Copy)]
pub struct Guard<'a> {
    pub collection: &'a str,
    pub projection: Option<&'a Document>,
    pub inputs: &'a [Vec<u8>],
}

impl Guard<'_> {
    /// `_id`s of the inputs, in input order.
    fn ids(&self) -> Vec<Bson> {
        self.inputs.iter().filter_map(|input| input_id(input)).collect()
    }
}

/// A batch whose writes carry the guard in their own filters.
#[derive(Debug)]
pub struct Pinned {
    /// The batch's actions, each update and delete of an input document
    /// filtered on that document being as the plugin saw it.
    pub actions: Vec<ValidAction>,
    pub updates: u64,
    pub deletes: u64,
}

impl Guard<'_> {
    /// The guard written into the batch's own writes, when every write is
    /// one update or delete of one input document by its `_id` (no upsert,
    /// no `multi`, on the pass's collection) and the pass projects top-level
    /// fields holding scalars: each filter becomes `{_id, <each field the
    /// plugin read: as it saw it>}`, and a write that matches nothing means
    /// the document changed. The server checks the guard on the document it
    /// writes anyway - no extra read. `None`: the batch needs the
    /// read-and-compare guard (inserts, writes elsewhere, upserts, `multi`,
    /// other filters, whole documents, other projections, documents or
    /// arrays in the projected fields).
    pub fn pin(&self, actions: &[ValidAction]) -> Option<Pinned> {
        // A whole document cannot be pinned field by field (a field the
        // application adds would go unseen).
        let fields = top_level_fields(self.projection?)?;
        let inputs: HashMap<Vec<u8>, &Vec<u8>> = self
            .inputs
            .iter()
            .filter_map(|input| Some((id_key(&input_id(input)?), input)))
            .collect();
        let (mut updates, mut deletes) = (0, 0);
        let mut pinned = Vec::with_capacity(actions.len());
        for action in actions {
            let pin = |collection: &str, filter: &Document| -> Option<Document> {
                if collection != self.collection || filter.len() != 1 {
                    return None;
                }
                let id = match filter.get("_id")? {
                    Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => return None,
                    Bson::RegularExpression(_) => return None,
                    id => id,
                };
                let input = Document::from_reader(inputs.get(&id_key(id))?.as_slice()).ok()?;
                guarded_filter(id, &input, &fields)
            };
            pinned.push(match action {
                ValidAction::Update {
                    collection,
                    filter,
                    update,
                    upsert: false,
                    multi: false,
                } => {
                    updates += 1;
                    ValidAction::Update {
                        collection: collection.clone(),
                        filter: pin(collection, filter)?,
                        update: update.clone(),
                        upsert: false,
                        multi: false,
                    }
                }
                ValidAction::Delete {
                    collection,
                    filter,
                    multi: false,
                } => {
                    deletes += 1;
                    ValidAction::Delete {
                        collection: collection.clone(),
                        filter: pin(collection, filter)?,
                        multi: false,
                    }
                }
                ValidAction::Report { .. } => action.clone(),
                _ => return None,
            });
        }
        Some(Pinned {
            actions: pinned,
            updates,
            deletes,
        })
    }
}

impl Guard<'_> {
    /// Whether the guard can be checked on the batch's before-images: every
    /// write is one update or delete of one input document by plain `_id`
    /// (no upsert, no `multi`, on the pass's collection) and the pass reads
    /// whole documents or top-level fields. Such a batch's before-images -
    /// read inside its transaction, before its writes, anyway - hold every
    /// document it writes as it is now.
    pub(super) fn fits_images(&self, actions: &[ValidAction]) -> bool {
        if self.projection.is_some_and(|p| top_level_fields(p).is_none()) {
            return false;
        }
        let inputs: std::collections::HashSet<Vec<u8>> =
            self.inputs.iter().filter_map(|i| Some(id_key(&input_id(i)?))).collect();
        actions.iter().all(|action| match action {
            ValidAction::Update {
                collection,
                filter,
                upsert: false,
                multi: false,
                ..
            }
            | ValidAction::Delete {
                collection,
                filter,
                multi: false,
            } => collection == self.collection && plain_input(filter).is_some_and(|key| inputs.contains(&key)),
            ValidAction::Report { .. } => true,
            _ => false,
        })
    }

    /// The guard checked on before-images (see [`Guard::fits_images`]): each
    /// written input document, cut to the pass's fields, must be byte for
    /// byte what the plugin was given. A difference is `GuardMissed`: the
    /// batch is tried again with the read-and-compare guard, which has the
    /// server project the documents and names the ones that changed.
    pub(super) fn check_images(&self, actions: &[ValidAction], before: &super::images::Before) -> Result<()> {
        let fields = self.projection.and_then(top_level_fields);
        let inputs: HashMap<Vec<u8>, &Vec<u8>> = self
            .inputs
            .iter()
            .filter_map(|input| Some((id_key(&input_id(input)?), input)))
            .collect();
        for action in actions {
            let (ValidAction::Update { filter, .. } | ValidAction::Delete { filter, .. }) = action else {
                continue;
            };
            let Some(key) = plain_input(filter) else {
                return Err(DbError::GuardMissed);
            };
            let (Some(input), Some(Some(now))) = (inputs.get(&key), before.image(self.collection, &key)) else {
                return Err(DbError::GuardMissed);
            };
            let same = match &fields {
                None => now == input.as_slice(),
                Some(fields) => cut(now, fields).is_some_and(|cut| cut.as_bytes() == input.as_slice()),
            };
            if !same {
                return Err(DbError::GuardMissed);
            }
        }
        Ok(())
    }
}

/// The `{_id}` key of a filter that is exactly `{_id: <plain value>}`.
fn plain_input(filter: &Document) -> Option<Vec<u8>> {
    if filter.len() != 1 {
        return None;
    }
    match filter.get("_id")? {
        Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => None,
        Bson::RegularExpression(_) => None,
        id => Some(id_key(id)),
    }
}

/// A document cut to `_id` and `fields`, in the document's own order - what
/// the server returns for an inclusion projection of top-level fields.
pub fn cut(document: &[u8], fields: &[String]) -> Option<bson::RawDocumentBuf> {
    let raw = RawDocument::from_bytes(document).ok()?;
    let mut out = bson::RawDocumentBuf::new();
    for element in raw {
        let (key, value) = element.ok()?;
        if key.as_str() == "_id" || fields.iter().any(|f| f == key.as_str()) {
            out.append(key, value);
        }
    }
    Some(out)
}

/// The fields an inclusion projection of top-level fields keeps (`_id`
/// aside, kept); `None` for any other projection (one excluding `_id` too).
pub fn top_level_fields(projection: &Document) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    for (key, value) in projection {
        let included = match value {
            Bson::Int32(n) => *n != 0,
            Bson::Int64(n) => *n != 0,
            Bson::Double(n) => *n != 0.0,
            Bson::Boolean(b) => *b,
            _ => return None,
        };
        if key == "_id" {
            // `cut` keeps `_id`: a projection without it is not cut here.
            if !included {
                return None;
            }
            continue;
        }
        if !included || key.contains('.') || key.starts_with('$') {
            return None;
        }
        fields.push(key.clone());
    }
    Some(fields)
}

/// `{_id: id, <field>: <condition>...}` matching the document only while
/// each of `fields` is as the plugin saw it in `input`: `{$eq: value, $not:
/// {$type: "array"}}` for a scalar (MongoDB's equality: an int and a double
/// of the same value are equal; and `$eq` alone also matches an array that
/// holds the value, so an application that turned `"a"` into `["a", "b"]`
/// would go unseen), `{$type: "null"}` for null, `{$exists: false}` where it was
/// missing. `None` when a value is a document, an array or a regular
/// expression (query equality on those has other meanings: array elements,
/// patterns): the batch then takes the read-and-compare guard. Plain
/// conditions, not `$expr`, so the server finds the document by `_id`.
fn guarded_filter(id: &Bson, input: &Document, fields: &[String]) -> Option<Document> {
    let mut filter = doc! {"_id": id.clone()};
    for field in fields {
        let condition = match input.get(field) {
            None => doc! {"$exists": false},
            Some(Bson::Null) => doc! {"$type": "null"},
            Some(Bson::Document(_) | Bson::Array(_) | Bson::RegularExpression(_)) => return None,
            Some(value) => doc! {"$eq": value.clone(), "$not": {"$type": "array"}},
        };
        filter.insert(field.clone(), condition);
    }
    Some(filter)
}

/// The `_id` of a raw input document.
pub fn input_id(input: &[u8]) -> Option<Bson> {
    RawDocument::from_bytes(input)
        .ok()?
        .get("_id")
        .ok()
        .flatten()
        .and_then(|v| Bson::try_from(v).ok())
}

impl Db {
    /// Reads the guarded documents (inside `session`'s transaction when
    /// given: from the snapshot the batch's writes apply to) and compares
    /// each with what the plugin saw, byte for byte. Fails with
    /// [`DbError::Conflict`] naming every document that changed or is gone.
    pub(super) async fn check_guard(&self, guard: &Guard<'_>, session: Option<&mut ClientSession>) -> Result<()> {
        if guard.inputs.is_empty() {
            return Ok(());
        }
        let found = self
            .find_ids(
                guard.collection,
                guard.ids(),
                guard.projection,
                session,
                "the batch's documents (write guard)",
            )
            .await?;
        let now: HashMap<Vec<u8>, Vec<u8>> = found
            .into_iter()
            .filter_map(|d| Some((id_key(&raw_id(&d)?), d.into_bytes())))
            .collect();
        let changed: Vec<Vec<u8>> = guard
            .inputs
            .iter()
            .filter_map(|input| {
                let key = id_key(&input_id(input)?);
                (now.get(&key) != Some(input)).then_some(key)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        Err(DbError::Conflict {
            collection: guard.collection.to_string(),
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(d: Document) -> Vec<u8> {
        d.to_vec().unwrap()
    }

    fn set(id: i32) -> ValidAction {
        ValidAction::Update {
            collection: "users".into(),
            filter: doc! {"_id": id},
            update: doc! {"$set": {"x": 1}},
            upsert: false,
            multi: false,
        }
    }

    #[test]
    fn per_document_writes_carry_the_guard_in_their_filters() {
        let inputs = vec![
            raw(doc! {"_id": 1, "email": "$a"}),
            raw(doc! {"_id": 2}),
            raw(doc! {"_id": 3, "email": null}),
        ];
        let projection = doc! {"email": 1};
        let guard = Guard {
            collection: "users",
            projection: Some(&projection),
            inputs: &inputs,
        };
        let report = ValidAction::Report {
            kind: "k".into(),
            key: "1".into(),
            message: "m".into(),
        };
        let pinned = guard.pin(&[set(1), report, set(2), set(3)]).expect("pinnable");
        assert_eq!((pinned.updates, pinned.deletes), (3, 0));
        let filters: Vec<&Document> = pinned
            .actions
            .iter()
            .filter_map(|a| match a {
                ValidAction::Update { filter, .. } => Some(filter),
                _ => None,
            })
            .collect();
        assert_eq!(
            filters,
            [
                &doc! {"_id": 1, "email": {"$eq": "$a", "$not": {"$type": "array"}}},
                &doc! {"_id": 2, "email": {"$exists": false}},
                &doc! {"_id": 3, "email": {"$type": "null"}},
            ]
        );
    }

    #[test]
    fn other_batches_need_the_read_and_compare_guard() {
        let inputs = vec![raw(doc! {"_id": 1, "a": {"b": 1}, "s": "x"})];
        let projection = doc! {"s": 1};
        let guard = Guard {
            collection: "users",
            projection: Some(&projection),
            inputs: &inputs,
        };
        let insert = ValidAction::Insert {
            collection: "users".into(),
            document: doc! {"_id": 9},
        };
        let update = |collection: &str, upsert: bool| ValidAction::Update {
            collection: collection.into(),
            filter: doc! {"_id": 1},
            update: doc! {"$set": {"x": 1}},
            upsert,
            multi: false,
        };
        let upsert = update("users", true);
        let elsewhere = update("teams", false);
        let not_an_input = set(7);
        for actions in [vec![insert], vec![upsert], vec![elsewhere], vec![not_an_input]] {
            assert!(guard.pin(&actions).is_none(), "{actions:?}");
        }
        assert!(guard.pin(&[set(1)]).is_some());
        let dotted = doc! {"a.b": 1};
        let excluding = doc! {"a": 0};
        let subdocument = doc! {"a": 1};
        for projection in [&dotted, &excluding, &subdocument] {
            let guard = Guard {
                projection: Some(projection),
                ..guard
            };
            assert!(guard.pin(&[set(1)]).is_none(), "{projection}");
        }
        let whole = Guard {
            projection: None,
            ..guard
        };
        assert!(whole.pin(&[set(1)]).is_none());
    }
}

#[cfg(test)]
mod image_tests {
    use super::*;

    #[test]
    fn a_document_cut_to_the_pass_fields_is_what_the_server_projects() {
        let full = doc! {"_id": 7, "b": 2, "email": "x@y", "a": {"n": 1}, "z": [1, 2]}
            .to_vec()
            .unwrap();
        let fields = vec!["email".to_string(), "z".to_string()];
        let projected = doc! {"_id": 7, "email": "x@y", "z": [1, 2]}.to_vec().unwrap();
        assert_eq!(cut(&full, &fields).unwrap().as_bytes(), projected.as_slice());
        let missing = vec!["nope".to_string()];
        assert_eq!(
            cut(&full, &missing).unwrap().as_bytes(),
            doc! {"_id": 7}.to_vec().unwrap().as_slice()
        );
    }

    #[test]
    fn only_writes_of_input_documents_by_id_fit_the_images() {
        let inputs = vec![doc! {"_id": 1, "s": "a"}.to_vec().unwrap()];
        let projection = doc! {"s": 1};
        let guard = Guard {
            collection: "c",
            projection: Some(&projection),
            inputs: &inputs,
        };
        let update = |id: i32, multi: bool| ValidAction::Update {
            collection: "c".into(),
            filter: doc! {"_id": id},
            update: doc! {"$set": {"t": 1}},
            upsert: false,
            multi,
        };
        assert!(guard.fits_images(&[update(1, false)]));
        assert!(!guard.fits_images(&[update(2, false)]), "not an input");
        assert!(!guard.fits_images(&[update(1, true)]), "multi");
        let dotted = doc! {"s.t": 1};
        assert!(
            !Guard {
                projection: Some(&dotted),
                ..guard
            }
            .fits_images(&[update(1, false)])
        );
    }
}
