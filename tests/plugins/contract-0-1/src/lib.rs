//! A plugin built against `godwit:migration@0.1.0` with wit-bindgen
//! directly (the contract before schema operations): the host keeps running
//! it. Its pass sets `v1: true` on every `items` document without it.
//!
//! Contract 0.1 declares no reads. Every batch looks up `items`, its pass's
//! collection (always allowed); with `--param lookup=C` it also looks up
//! collection `C` and sets `seen` to the number of documents found, which
//! the host refuses unless the operator passes `--allow-undeclared-reads`.

wit_bindgen::generate!({ path: "wit", world: "godwit:migration/plugin" });

use exports::godwit::migration::migration::Guest;
use godwit::migration::host::find;
use godwit::migration::types::{Action, Error, Manifest, Pass, RunContext, Update};
use std::cell::RefCell;

struct Old;

thread_local! {
    /// The `lookup` parameter: a collection to look up in every batch.
    static LOOKUP: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn error(message: String) -> Error {
    Error {
        message,
        document_id: None,
    }
}

/// `{"v1": {"$ne": true}}` and friends, as BSON bytes built by hand (the
/// plugin was first written without a BSON library).
fn doc_bool(key: &str, op: Option<&str>, value: bool) -> Vec<u8> {
    let mut inner = Vec::new();
    match op {
        Some(op) => {
            let mut sub = Vec::new();
            sub.push(0x08);
            sub.extend(op.as_bytes());
            sub.push(0);
            sub.push(value as u8);
            let len = (sub.len() + 5) as i32;
            inner.push(0x03);
            inner.extend(key.as_bytes());
            inner.push(0);
            inner.extend(len.to_le_bytes());
            inner.extend(sub);
            inner.push(0);
        }
        None => {
            inner.push(0x08);
            inner.extend(key.as_bytes());
            inner.push(0);
            inner.push(value as u8);
        }
    }
    let mut out = ((inner.len() + 5) as i32).to_le_bytes().to_vec();
    out.extend(inner);
    out.push(0);
    out
}

/// `{"_id": <the document's _id>}`: the document's first element is its
/// `_id` as the host sends it.
fn id_filter(document: &[u8]) -> Vec<u8> {
    // Walk to the `_id` element and copy it.
    let mut i = 4;
    while i < document.len() - 1 {
        let tag = document[i];
        let name_end = i + 1 + document[i + 1..].iter().position(|&b| b == 0).unwrap();
        let name = &document[i + 1..name_end];
        let value = name_end + 1;
        let size = match tag {
            0x01 | 0x09 | 0x11 | 0x12 => 8,
            0x10 => 4,
            0x07 => 12,
            0x08 => 1,
            0x0A => 0,
            0x02 => 4 + i32::from_le_bytes(document[value..value + 4].try_into().unwrap()) as usize,
            0x03 | 0x04 => i32::from_le_bytes(document[value..value + 4].try_into().unwrap()) as usize,
            _ => panic!("unsupported _id type {tag}"),
        };
        if name == b"_id" {
            let element = &document[i..value + size];
            let mut out = ((element.len() + 5) as i32).to_le_bytes().to_vec();
            out.extend(element);
            out.push(0);
            return out;
        }
        i = value + size;
    }
    panic!("document without _id")
}

impl Guest for Old {
    fn get_manifest() -> Manifest {
        Manifest {
            name: "contract-0-1".into(),
            version: "1.0.0".into(),
            requires: None,
            description: "a plugin of contract 0.1".into(),
            passes: vec![Pass {
                name: "items".into(),
                collection: "items".into(),
                filter: doc_bool("v1", Some("$ne"), true),
                projection: None,
                batch_size: 0,
                writes: vec!["items".into()],
            }],
        }
    }
    fn begin(params: Vec<u8>, _: RunContext) -> Result<(), Error> {
        let params = bson::Document::from_reader(params.as_slice()).map_err(|e| error(e.to_string()))?;
        let lookup = params.get_str("lookup").ok().map(str::to_string);
        LOOKUP.with_borrow_mut(|l| *l = lookup);
        Ok(())
    }
    fn process(_: u32, batch: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        let all = bson::doc! {}.to_vec().unwrap();
        find("items", &all, None, 1).map_err(|e| error(format!("looking up items: {e}")))?;
        let seen = match LOOKUP.with_borrow(Clone::clone) {
            Some(collection) => Some(
                find(&collection, &all, None, 0)
                    .map_err(|e| error(format!("looking up {collection}: {e}")))?
                    .len() as i64,
            ),
            None => None,
        };
        Ok(batch
            .iter()
            .map(|d| {
                let update = match seen {
                    Some(seen) => bson::doc! {"$set": {"v1": true, "seen": seen}}.to_vec().unwrap(),
                    None => {
                        let mut set = b"\x03$set\x00".to_vec();
                        let inner = doc_bool("v1", None, true);
                        set.extend(inner);
                        let mut update = ((set.len() + 5) as i32).to_le_bytes().to_vec();
                        update.extend(set);
                        update.push(0);
                        update
                    }
                };
                Action::Update(Update {
                    collection: "items".into(),
                    filter: id_filter(d),
                    update,
                    upsert: false,
                    multi: false,
                })
            })
            .collect())
    }
    fn finish() -> Result<Vec<Action>, Error> {
        Ok(vec![])
    }
}

// Native linkers reject the export names; the tests build it for wasm only.
#[cfg(target_arch = "wasm32")]
export!(Old);
