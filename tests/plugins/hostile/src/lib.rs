//! A plugin that misbehaves on purpose, for the host's sandbox tests. The
//! `behaviour` parameter given to `begin` picks the misbehaviour; `process`
//! (or `begin` itself, for `*-in-begin`) carries it out.
//!
//! The behaviours that return bad actions (`foreign-collection`,
//! `empty-filter`, `action-flood`, `huge-bson`, `huge-find`) first emit a valid
//! `$set {touched: true}` for every document of the batch, so that a host
//! which let any part of such a batch through would leave a visible trace.

wit_bindgen::generate!({ path: "../../../wit", world: "godwit:migration/plugin" });

use exports::godwit::migration::migration::Guest;
use godwit::migration::types::{Action, Delete, Error, Manifest, Pass, Report, RunContext, Update};
use std::cell::RefCell;

thread_local! {
    static BEHAVIOUR: RefCell<String> = const { RefCell::new(String::new()) };
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

struct Hostile;

fn report(key: &str, message: String) -> Action {
    Action::Report(Report {
        kind: "probe".into(),
        key: key.into(),
        message,
    })
}

fn id_of(raw: &[u8]) -> bson::Bson {
    bson::Document::from_reader(raw)
        .ok()
        .and_then(|d| d.get("_id").cloned())
        .unwrap_or(bson::Bson::Null)
}

fn update(collection: &str, filter: bson::Document, update: bson::Document) -> Action {
    Action::Update(Update {
        collection: collection.into(),
        filter: filter.to_vec().unwrap(),
        update: update.to_vec().unwrap(),
        upsert: false,
        multi: false,
    })
}

/// A valid write for every document of the batch.
fn touch_all(batch: &[Vec<u8>]) -> Vec<Action> {
    batch
        .iter()
        .map(|raw| {
            update(
                "things",
                bson::doc! {"_id": id_of(raw)},
                bson::doc! {"$set": {"touched": true}},
            )
        })
        .collect()
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

impl Guest for Hostile {
    fn get_manifest() -> Manifest {
        Manifest {
            name: "hostile".into(),
            version: "0.0.1".into(),
            requires: None,
            description: "misbehaves on purpose".into(),
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
            reads: vec!["haystack".into()],
        }
    }

    fn begin(params: Vec<u8>, _context: RunContext) -> Result<Vec<Action>, Error> {
        let params = bson::Document::from_reader(params.as_slice()).map_err(|e| Error {
            message: e.to_string(),
            document_id: None,
        })?;
        let behaviour = params.get_str("behaviour").unwrap_or("ok").to_string();
        match behaviour.as_str() {
            "loop-in-begin" => spin(),
            "panic-in-begin" => panic!("hostile plugin panics in begin on purpose"),
            // Blocks in a host call (the WASI monotonic clock), where fuel and
            // the epoch deadline do not reach.
            "sleep-in-begin" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            _ => {}
        }
        BEHAVIOUR.with_borrow_mut(|b| *b = behaviour);
        Ok(vec![])
    }

    fn process(_pass: u32, batch: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        let behaviour = BEHAVIOUR.with_borrow(|b| b.clone());
        match behaviour.as_str() {
            "ok" => Ok(vec![report("count", batch.len().to_string())]),
            "loop" => spin(),
            "oom" => {
                // Keep every allocation alive so that memory only grows.
                loop {
                    HOARD.with_borrow_mut(|h| h.push(vec![1u8; 8 << 20]));
                }
            }
            "panic" => panic!("hostile plugin panics on purpose (batch of {})", batch.len()),
            "probe" => {
                let file = match std::fs::read_to_string("/etc/passwd") {
                    Ok(text) => format!("read {} bytes", text.len()),
                    Err(e) => format!("error: {e}"),
                };
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis().to_string())
                    .unwrap_or_default();
                let dirs = std::fs::read_dir("/")
                    .map(|d| d.count().to_string())
                    .unwrap_or_else(|e| format!("error: {e}"));
                let net = std::net::TcpStream::connect("127.0.0.1:22")
                    .map(|_| "connected".to_string())
                    .unwrap_or_else(|e| format!("error: {e}"));
                println!("hostile probe writes to stdout");
                Ok(vec![
                    report("file", file),
                    report("env", format!("{} variables: {}", env.len(), env.join(","))),
                    report("args", format!("{} arguments", args.len())),
                    report("clock", now),
                    report("readdir", dirs),
                    report("network", net),
                ])
            }
            "malformed-bson" => Ok(vec![Action::Update(Update {
                collection: "things".into(),
                filter: vec![0x05, 0x00, 0x00],
                update: b"not bson at all".to_vec(),
                upsert: false,
                multi: false,
            })]),
            // Updates that never match: the data never becomes clean, so the
            // verification after an execute run finds the same work again.
            "stubborn" => Ok(batch
                .iter()
                .map(|raw| {
                    let id = bson::Document::from_reader(raw.as_slice())
                        .ok()
                        .and_then(|d| d.get("_id").cloned());
                    Action::Update(Update {
                        collection: "things".into(),
                        filter: bson::doc! {"_id": id, "never": true}.to_vec().unwrap(),
                        update: bson::doc! {"$set": {"touched": true}}.to_vec().unwrap(),
                        upsert: false,
                        multi: false,
                    })
                })
                .collect()),
            "foreign-collection" => {
                let mut actions = touch_all(&batch);
                actions.push(update(
                    "orders",
                    bson::doc! {"_id": id_of(&batch[batch.len() / 2])},
                    bson::doc! {"$set": {"stolen": true}},
                ));
                Ok(actions)
            }
            "empty-filter" => {
                let mut actions = touch_all(&batch);
                actions.push(Action::Delete(Delete {
                    collection: "things".into(),
                    filter: bson::doc! {}.to_vec().unwrap(),
                    multi: true,
                }));
                Ok(actions)
            }
            "action-flood" => Ok((0..100).flat_map(|_| touch_all(&batch)).collect()),
            "huge-bson" => {
                let mut actions = touch_all(&batch);
                let blob = bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: vec![7u8; 17 << 20],
                };
                actions.push(update(
                    "things",
                    bson::doc! {"_id": id_of(&batch[0])},
                    bson::doc! {"$set": {"blob": blob}},
                ));
                Ok(actions)
            }
            // A lookup without a limit over a big collection; a hostile plugin
            // ignores whatever the host answers and writes anyway.
            "huge-find" => {
                let filter = bson::doc! {}.to_vec().unwrap();
                let _ = godwit::migration::host::find("haystack", &filter, None, 0);
                Ok(touch_all(&batch))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(touch_all(&batch))
            }
            "error" => Err(Error {
                message: "refusing on purpose".into(),
                document_id: Some(bson::doc! {"_id": 42}.to_vec().unwrap()),
            }),
            other => Err(Error {
                message: format!("unknown behaviour {other:?}"),
                document_id: None,
            }),
        }
    }

    fn finish() -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }
}

#[cfg(target_arch = "wasm32")]
export!(Hostile);
