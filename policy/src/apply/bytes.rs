//! The update most backfills send, `$set` and `$unset` of top-level fields,
//! applied to the encoded document itself: every other field is copied as
//! it was, a set field keeps its place, a new one goes last, an unset one
//! goes. Anything else takes the general path ([`super::apply_update_encoded`]).

use super::{ApplyError, Result, Target, apply_update_encoded, depth_over, refused};
use bson::raw::CStr;
use bson::{Bson, Document, RawBson, RawDocument, RawDocumentBuf};

/// [`super::apply_update`] on an encoded document, to the encoded document
/// the server stores.
pub fn apply_update_raw(doc: &RawDocument, update: &Document, target: Target) -> Result<Vec<u8>> {
    if target == Target::Existing
        && let Some(after) = top_level(doc, update)
    {
        if after.len() > crate::MAX_BSON_BYTES {
            return refused(format!(
                "the after-image is {} bytes, over the 16 MiB limit",
                after.len()
            ));
        }
        return Ok(after);
    }
    let doc =
        Document::try_from(doc).map_err(|e| ApplyError::Unsupported(format!("the document does not decode: {e}")))?;
    apply_update_encoded(doc, update, target).map(|(_, bytes)| bytes)
}

/// One top-level field an update sets (`Some`) or unsets (`None`).
type Edit<'u> = (&'u CStr, Option<&'u Bson>);

/// `None` unless the update is one the bytes answer for exactly as the
/// general path would: `$set`/`$unset` of distinct plain top-level names,
/// given in byte order (so every server's order is the update's), values
/// nesting shallowly, and a document with `_id` first and each named field
/// at most once.
pub(super) fn top_level<'u>(doc: &RawDocument, update: &'u Document) -> Option<Vec<u8>> {
    let mut edits: Vec<Edit<'u>> = Vec::new();
    for (operator, fields) in update {
        let Bson::Document(fields) = fields else { return None };
        if fields.is_empty() {
            return None;
        }
        let set = match operator.as_str() {
            "$set" => true,
            "$unset" => false,
            _ => return None,
        };
        for (name, value) in fields {
            let plain = !name.is_empty()
                && name != "_id"
                && !name.starts_with('$')
                && !name.contains('.')
                && !name.bytes().all(|b| b.is_ascii_digit());
            if !plain {
                return None;
            }
            if let Some((last, _)) = edits.last()
                && last.as_str().as_bytes() >= name.as_bytes()
            {
                return None;
            }
            if set && deep(value, crate::MAX_DEPTH / 2) {
                return None;
            }
            let name: &CStr = name.as_str().try_into().ok()?;
            edits.push((name, set.then_some(value)));
        }
    }
    if edits.is_empty() {
        return None;
    }
    let mut seen = vec![false; edits.len()];
    let mut after = RawDocumentBuf::new();
    let mut elements = doc.iter_elements();
    let first = elements.next()?.ok()?;
    if first.key().as_str() != "_id" {
        return None;
    }
    after.append(first.key(), first.value().ok()?);
    for element in elements {
        let Ok(element) = element else { return None };
        let key = element.key();
        match edits.iter().position(|(name, _)| *name == key) {
            Some(at) => {
                if std::mem::replace(&mut seen[at], true) {
                    return None;
                }
                if let Some(value) = edits[at].1 {
                    after.append(key, RawBson::try_from(value.clone()).ok()?);
                }
            }
            None => after.append(key, element.value().ok()?),
        }
    }
    for ((name, value), seen) in edits.iter().zip(seen) {
        if let (Some(value), false) = (value, seen) {
            after.append(*name, RawBson::try_from((*value).clone()).ok()?);
        }
    }
    Some(after.into_bytes())
}

/// Whether `value` nests more than `budget` levels.
fn deep(value: &Bson, budget: usize) -> bool {
    match value {
        Bson::Document(d) => depth_over(d, budget),
        Bson::Array(items) => budget == 0 || items.iter().any(|v| deep(v, budget - 1)),
        _ => false,
    }
}
