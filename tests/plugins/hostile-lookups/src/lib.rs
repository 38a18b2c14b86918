//! A plugin that abuses the host's `find` import on purpose, for the lookup
//! bounds tests (`tests/e2e/lookups.rs`). `begin` takes the `behaviour`
//! parameter; `process` carries it out on its first batch:
//!
//! - `flood`: small lookups (one document by `_id`) in a loop, without end;
//! - `fat`: lookups of the whole `blobs` collection in a loop, without end;
//! - `slow`: one lookup whose `$regex` backtracks catastrophically on `slow`;
//! - `read`: one lookup on the collection named by the `collection`
//!   parameter (godwit's metadata, `system.*`), which the manifest does not
//!   declare in its `reads` (it declares `blobs` and `slow`).
//!
//! Like a hostile plugin would, it ignores what the host answers and then
//! returns a valid `$set {touched: true}` for every document of the batch,
//! so a host that let the batch through would leave a visible trace; a
//! refused read is returned as the plugin's error (it wanted the data).

wit_bindgen::generate!({ path: "../../../wit", world: "godwit:migration/plugin" });

use exports::godwit::migration::migration::Guest;
use godwit::migration::host::find;
use godwit::migration::types::{Action, Error, Manifest, Pass, RunContext, Update};
use std::cell::RefCell;

thread_local! {
    static PARAMS: RefCell<bson::Document> = RefCell::new(bson::Document::new());
}

struct HostileLookups;

fn param(key: &str) -> String {
    PARAMS.with_borrow(|p| p.get_str(key).unwrap_or_default().to_string())
}

fn id_of(raw: &[u8]) -> bson::Bson {
    bson::Document::from_reader(raw)
        .ok()
        .and_then(|d| d.get("_id").cloned())
        .unwrap_or(bson::Bson::Null)
}

/// A valid write for every document of the batch.
fn touch_all(batch: &[Vec<u8>]) -> Vec<Action> {
    batch
        .iter()
        .map(|raw| {
            Action::Update(Update {
                collection: "things".into(),
                filter: bson::doc! {"_id": id_of(raw)}.to_vec().unwrap(),
                update: bson::doc! {"$set": {"touched": true}}.to_vec().unwrap(),
                upsert: false,
                multi: false,
            })
        })
        .collect()
}

fn error(message: String) -> Error {
    Error {
        message,
        document_id: None,
    }
}

/// `{"a": {"a": ... {"a": 1}}}`, `levels` deep, built as bytes (a
/// recursive encoder would itself overflow).
fn deep_filter(levels: usize) -> Vec<u8> {
    let mut doc = bson::doc! {"a": 1}.to_vec().unwrap();
    for _ in 0..levels {
        let mut outer = Vec::with_capacity(doc.len() + 8);
        let len = (4 + 1 + 2 + doc.len() + 1) as i32;
        outer.extend_from_slice(&len.to_le_bytes());
        outer.push(0x03);
        outer.extend_from_slice(b"a\0");
        outer.extend_from_slice(&doc);
        outer.push(0);
        doc = outer;
    }
    doc
}

impl Guest for HostileLookups {
    fn get_manifest() -> Manifest {
        Manifest {
            name: "hostile-lookups".into(),
            version: "0.0.1".into(),
            requires: None,
            description: "abuses lookups on purpose".into(),
            passes: vec![Pass {
                name: "things".into(),
                collection: "things".into(),
                filter: bson::doc! {}.to_vec().unwrap(),
                projection: None,
                batch_size: 10,
                writes: vec!["things".into()],
            }],
            schema: vec![],
            idempotent: true,
            // What `fat` and `slow` look up; `read` looks up undeclared
            // collections (godwit's own state) on purpose.
            reads: vec!["blobs".into(), "slow".into()],
        }
    }

    fn begin(params: Vec<u8>, _context: RunContext) -> Result<Vec<Action>, Error> {
        let params = bson::Document::from_reader(params.as_slice()).map_err(|e| error(e.to_string()))?;
        PARAMS.with_borrow_mut(|p| *p = params);
        Ok(vec![])
    }

    fn process(_pass: u32, batch: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        match param("behaviour").as_str() {
            "ok" => {}
            "flood" => {
                for i in 0u64.. {
                    let filter = bson::doc! {"_id": (i % 25) as i64}.to_vec().unwrap();
                    let _ = find("things", &filter, None, 1);
                }
            }
            "fat" => loop {
                let _ = find("blobs", &bson::doc! {}.to_vec().unwrap(), None, 0);
            },
            "slow" => {
                let filter = bson::doc! {"s": {"$regex": "^(a+)+$"}}.to_vec().unwrap();
                let _ = find("slow", &filter, None, 0);
            }
            "read" => {
                let collection = param("collection");
                let found = find(&collection, &bson::doc! {}.to_vec().unwrap(), None, 0)
                    .map_err(|e| error(format!("reading {collection}: {e}")))?;
                eprintln!("read {} documents of {collection}", found.len());
            }
            // A filter the plugin policy refuses: server-side JavaScript, or
            // nesting deep enough to overflow a recursive decoder's stack.
            "query" => {
                let filter = match param("query").as_str() {
                    "where" => bson::doc! {"$where": "sleep(100000) || true"}.to_vec().unwrap(),
                    _ => deep_filter(6_000),
                };
                find("things", &filter, None, 0).map_err(|e| error(format!("looking up things: {e}")))?;
            }
            other => return Err(error(format!("unknown behaviour {other:?}"))),
        }
        Ok(touch_all(&batch))
    }

    fn finish() -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }
}

#[cfg(target_arch = "wasm32")]
export!(HostileLookups);
