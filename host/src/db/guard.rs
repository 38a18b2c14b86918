//! The write guard: a batch's writes apply only if every document its plugin
//! call read is, inside the batch's transaction, still what the plugin saw.
//! An application that wrote one of them in between is never overwritten:
//! the batch is refused with the documents that changed, and the run
//! processes them again in their new state.

use super::images::{id_key, raw_id};
use super::{ClientSession, Db, DbError, Result};
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
        failpoint!("guard-before-read");
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
