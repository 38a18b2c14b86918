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

/// The fields an inclusion projection of top-level fields keeps (`_id`
/// aside); `None` for any other projection.
fn top_level_fields(projection: &Document) -> Option<Vec<String>> {
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
            .find_projected(
                guard.collection,
                doc! {"_id": {"$in": guard.ids()}},
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
