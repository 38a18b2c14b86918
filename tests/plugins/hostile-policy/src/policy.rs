// Shared by the hostile-policy* test plugins (each includes this file with
// its own `VARIANT`): everything the plugin policy must refuse, and one
// well-behaved behaviour (`allowed`) that uses every operator it allows.

wit_bindgen::generate!({ path: "../../../wit", world: "godwit:migration/plugin" });

use bson::{Document, doc};
use exports::godwit::migration::migration::Guest;
use godwit::migration::types::{Action, Delete, Error, Insert, Manifest, Pass, Report, RunContext, Update};
use std::cell::RefCell;

/// Which manifest the plugin declares.
#[allow(dead_code)]
enum Variant {
    /// Reads and writes `things` (plus `totals` and `log`): a fair manifest.
    Actions,
    /// Declares godwit's metadata collection in `writes`.
    MetadataWrites,
    /// Reads godwit's metadata collection in a pass.
    MetadataReads,
    /// A pass filter nested ~48 KB deep.
    DeepFilter,
    /// A pass filter with `$where`.
    JsFilter,
    /// Batches of 2^31-1 documents.
    HugeBatch,
    /// A pass filter the server refuses (`$type: 99`).
    ServerRefused,
    /// Declares godwit's metadata collection in the manifest's `reads`.
    MetadataDeclaredReads,
    /// Declares `system.users` in the manifest's `reads`.
    SystemDeclaredReads,
}

/// Levels of nesting in the deep filters and documents: ~48 KB of bytes,
/// which overflowed the host's stack before the policy checked depth.
const DEEP: usize = 6_000;

thread_local! {
    static BEHAVIOUR: RefCell<String> = const { RefCell::new(String::new()) };
}

struct HostilePolicy;

/// `{"_id": id, "deep": {"a": {"a": ... {}}}}` with `DEEP` levels, built as
/// bytes without recursion (the guest's encoder would recurse too).
fn deep(id: Option<&bson::Bson>) -> Vec<u8> {
    let mut inner = vec![5, 0, 0, 0, 0];
    for _ in 1..DEEP {
        let mut next = ((inner.len() + 8) as i32).to_le_bytes().to_vec();
        next.extend([0x03, b'a', 0]);
        next.extend(&inner);
        next.push(0);
        inner = next;
    }
    let mut head = match id {
        Some(id) => doc! {"_id": id.clone()}.to_vec().unwrap(),
        None => doc! {}.to_vec().unwrap(),
    };
    head.pop(); // the terminating NUL: elements follow
    let mut out = head[4..].to_vec();
    out.extend([0x03]);
    out.extend(b"deep\0");
    out.extend(&inner);
    out.push(0);
    let mut doc = ((out.len() + 4) as i32).to_le_bytes().to_vec();
    doc.extend(out);
    doc
}

fn id_of(raw: &[u8]) -> bson::Bson {
    Document::from_reader(raw)
        .ok()
        .and_then(|d| d.get("_id").cloned())
        .unwrap_or(bson::Bson::Null)
}

fn update(collection: &str, filter: Document, update: Document, multi: bool) -> Action {
    Action::Update(Update {
        collection: collection.into(),
        filter: filter.to_vec().unwrap(),
        update: update.to_vec().unwrap(),
        upsert: false,
        multi,
    })
}

fn insert(collection: &str, document: Document) -> Action {
    Action::Insert(Insert {
        collection: collection.into(),
        document: document.to_vec().unwrap(),
    })
}

fn delete(collection: &str, filter: Document, multi: bool) -> Action {
    Action::Delete(Delete {
        collection: collection.into(),
        filter: filter.to_vec().unwrap(),
        multi,
    })
}

/// A valid write for every document of the batch: a host that let any part
/// of a refused batch through would leave a visible trace.
fn touch_all(batch: &[Vec<u8>]) -> Vec<Action> {
    batch
        .iter()
        .map(|raw| update("things", doc! {"_id": id_of(raw)}, doc! {"$set": {"touched": true}}, false))
        .collect()
}

/// Every allowed query and update operator, on one `things` document (and
/// `totals` and `log`): seven actions whose end state the test checks.
fn allowed(id: &bson::Bson) -> Vec<Action> {
    let i = id.as_i32().unwrap_or(0);
    let log_id = format!("log-{i}");
    vec![
        // Pinned multi update (`$in` of one id), with every comparison, element,
        // evaluation, bitwise and logical query operator.
        update(
            "things",
            doc! {
                "_id": {"$in": [id.clone()]},
                "n": {"$gte": 0, "$lte": 1000, "$gt": -1, "$lt": 1000, "$ne": -1, "$eq": i, "$nin": [-1],
                      "$exists": true, "$type": "number", "$mod": [1, 0], "$bitsAllClear": [30], "$bitsAnyClear": [30],
                      "$bitsAllSet": 0, "$not": {"$lt": 0}},
                "$and": [{"n": {"$in": [i]}}],
                "$or": [{"n": i}, {"n": -5}],
                "$nor": [{"n": -1}],
                "$comment": "every allowed query operator",
            },
            doc! {
                "$set": {"touched": true, "tags": ["c", "a", "b"], "nums": [1, 2, 3, 4], "arr": [{"k": 1, "v": 0}, {"k": 2, "v": 0}],
                         "arr2": [{"x": 0}, {"x": 0}], "drop": [1, 2, 1], "pos": ["second"], "bits": 12, "old": "x",
                         "gone": 1, "lo": 10, "hi": 1, "m": 2, "s": "Xyz", "sub.a": 1},
                "$inc": {"n": 100},
                "$setOnInsert": {"never": true},
            },
            true,
        ),
        update(
            "things",
            doc! {"_id": id.clone(), "arr.k": 1},
            doc! {
                "$set": {"arr.$.v": 9}, "$rename": {"old": "renamed"}, "$unset": {"gone": ""}, "$min": {"lo": 5},
                "$max": {"hi": 5}, "$mul": {"m": 3}, "$bit": {"bits": {"and": 10}}, "$pop": {"nums": 1},
            },
            false,
        ),
        update(
            "things",
            doc! {
                "_id": {"$eq": id.clone()}, "arr": {"$elemMatch": {"k": 1, "v": {"$gte": 0}}},
                "tags": {"$all": ["a"], "$size": 3}, "s": {"$regex": "^x", "$options": "i"}, "sub.a": {"$exists": true},
            },
            doc! {
                "$push": {"tags": {"$each": ["d"], "$sort": 1, "$slice": 3}, "pos": {"$each": ["first"], "$position": 0}},
                "$addToSet": {"set": {"$each": ["p", "q", "p"]}},
                "$pull": {"nums": {"$gte": 3}, "arr": {"k": 2, "v": {"$lt": 5}}},
                "$pullAll": {"drop": [1]},
                "$set": {"arr2.$[].x": 7},
            },
            false,
        ),
        // A natural-key upsert (one document at most): no `_id` needed.
        Action::Update(Update {
            collection: "totals".into(),
            filter: doc! {"name": "things"}.to_vec().unwrap(),
            update: doc! {"$inc": {"count": 1}, "$setOnInsert": {"created": "allowed"}}.to_vec().unwrap(),
            upsert: true,
            multi: false,
        }),
        insert("log", doc! {"_id": &log_id, "n": i, "nested": {"a": [1, {"b": 2}]}}),
        // A replacement document.
        update("log", doc! {"_id": &log_id}, doc! {"n": i, "replaced": true}, false),
        delete("log", doc! {"_id": &log_id, "n": {"$gte": 20}}, false),
    ]
}

impl Guest for HostilePolicy {
    fn get_manifest() -> Manifest {
        let things = |filter: Vec<u8>, writes: &[&str]| Pass {
            name: "things".into(),
            collection: "things".into(),
            filter,
            projection: None,
            batch_size: 10,
            writes: writes.iter().map(|w| w.to_string()).collect(),
        };
        let all = doc! {}.to_vec().unwrap();
        let (name, pass) = match VARIANT {
            Variant::Actions => ("hostile-policy", things(all, &["things", "totals", "log"])),
            Variant::MetadataWrites => (
                "hostile-policy-metadata-writes",
                things(all, &["things", "godwit_metadata"]),
            ),
            Variant::MetadataReads => (
                "hostile-policy-metadata-reads",
                Pass {
                    collection: "godwit_metadata".into(),
                    ..things(all, &["things"])
                },
            ),
            Variant::DeepFilter => ("hostile-policy-deep-filter", things(deep(None), &["things"])),
            Variant::JsFilter => (
                "hostile-policy-js-filter",
                things(doc! {"$where": "sleep(100) || true"}.to_vec().unwrap(), &["things"]),
            ),
            Variant::ServerRefused => (
                "hostile-policy-server-refused",
                things(doc! {"n": {"$type": 99}}.to_vec().unwrap(), &["things"]),
            ),
            Variant::HugeBatch => (
                "hostile-policy-huge-batch",
                Pass {
                    batch_size: i32::MAX as u32,
                    ..things(all, &["things"])
                },
            ),
            Variant::MetadataDeclaredReads => ("hostile-policy-metadata-declared-reads", things(all, &["things"])),
            Variant::SystemDeclaredReads => ("hostile-policy-system-declared-reads", things(all, &["things"])),
        };
        let reads = match VARIANT {
            Variant::MetadataDeclaredReads => vec!["teams".into(), "godwit_metadata".into()],
            Variant::SystemDeclaredReads => vec!["teams".into(), "system.users".into()],
            _ => Vec::new(),
        };
        Manifest {
            name: name.into(),
            version: "0.0.1".into(),
            requires: None,
            description: "asks for what the plugin policy forbids".into(),
            passes: vec![pass],
            schema: vec![],
            idempotent: true,
            reads,
        }
    }

    fn begin(params: Vec<u8>, _context: RunContext) -> Result<Vec<Action>, Error> {
        let params = Document::from_reader(params.as_slice()).map_err(|e| Error {
            message: e.to_string(),
            document_id: None,
        })?;
        let behaviour = params.get_str("behaviour").unwrap_or("touch").to_string();
        BEHAVIOUR.with_borrow_mut(|b| *b = behaviour);
        Ok(vec![])
    }

    fn process(_pass: u32, batch: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        let behaviour = BEHAVIOUR.with_borrow(|b| b.clone());
        let first = id_of(&batch[0]);
        let mut actions = touch_all(&batch);
        let bad = match behaviour.as_str() {
            // Only documents not yet touched: the verification after the
            // run (the pass re-run dry) then finds nothing left to do.
            "touch" => {
                return Ok(batch
                    .iter()
                    .filter(|raw| Document::from_reader(raw.as_slice()).is_ok_and(|d| !d.contains_key("touched")))
                    .flat_map(|raw| touch_all(std::slice::from_ref(raw)))
                    .collect());
            }
            "allowed" => {
                return Ok(batch
                    .iter()
                    .filter_map(|raw| Document::from_reader(raw.as_slice()).ok())
                    .filter(|d| !d.contains_key("touched"))
                    .flat_map(|d| allowed(d.get("_id").unwrap()))
                    .collect());
            }
            "finish-flood" => return Ok(Vec::new()),
            // Passes "the filter is not empty", hits every document.
            "delete-all" => delete("things", doc! {"_id": {"$exists": true}}, true),
            "where-filter" => update(
                "things",
                doc! {"_id": &first, "$where": "sleep(100) || true"},
                doc! {"$set": {"x": 1}},
                false,
            ),
            "function-filter" => update(
                "things",
                doc! {"_id": &first, "$expr": {"$function": {"body": "function() { return true }", "args": [], "lang": "js"}}},
                doc! {"$set": {"x": 1}},
                false,
            ),
            "accumulator-filter" => delete(
                "things",
                doc! {"_id": &first, "$expr": {"$accumulator": {"init": "function() {}", "accumulate": "function() {}",
                    "accumulateArgs": [], "merge": "function() {}", "lang": "js"}}},
                false,
            ),
            "current-date" => update("things", doc! {"_id": &first}, doc! {"$currentDate": {"at": true}}, false),
            "dollar-key-insert" => insert("things", doc! {"_id": 1000, "profile": {"$set": {"admin": true}}}),
            "dotted-key-insert" => insert("things", doc! {"_id": 1001, "a.b": 1}),
            "deep-action-filter" => Action::Update(Update {
                collection: "things".into(),
                filter: deep(Some(&first)),
                update: doc! {"$set": {"x": 1}}.to_vec().unwrap(),
                upsert: false,
                multi: false,
            }),
            "deep-insert" => Action::Insert(Insert {
                collection: "things".into(),
                document: deep(Some(&bson::Bson::Int32(1002))),
            }),
            // The forgeries of finding 1 (refused when the run starts, as
            // the manifest declares the metadata collection).
            "forge-version" => Action::Update(Update {
                collection: "godwit_metadata".into(),
                filter: doc! {"_id": "schema"}.to_vec().unwrap(),
                update: doc! {"$set": {"version": "99.0.0", "history": []}}.to_vec().unwrap(),
                upsert: true,
                multi: false,
            }),
            "forge-lock" => Action::Update(Update {
                collection: "godwit_metadata".into(),
                filter: doc! {"_id": "lock"}.to_vec().unwrap(),
                update: doc! {"$set": {"expires_at": bson::DateTime::from_millis(253_402_300_799_000)}}
                    .to_vec()
                    .unwrap(),
                upsert: true,
                multi: false,
            }),
            other => {
                return Err(Error {
                    message: format!("unknown behaviour {other:?}"),
                    document_id: None,
                });
            }
        };
        actions.push(bad);
        Ok(actions)
    }

    fn finish() -> Result<Vec<Action>, Error> {
        Ok(match BEHAVIOUR.with_borrow(|b| b.clone()).as_str() {
            "finish-flood" => (0..20_000).map(|i| insert("things", doc! {"_id": 10_000 + i})).collect(),
            // Unpinned multi-document actions are fine from finish.
            "allowed" => vec![
                update("things", doc! {"touched": true}, doc! {"$set": {"reviewed": true}}, true),
                delete("log", doc! {"replaced": true, "n": {"$lt": 5}}, true),
                Action::Report(Report {
                    kind: "done".into(),
                    key: "allowed".into(),
                    message: "every allowed operator applied".into(),
                }),
            ],
            _ => Vec::new(),
        })
    }
}

#[cfg(target_arch = "wasm32")]
export!(HostilePolicy);
