use super::*;
use crate::{Bson, Manifest, Pass, doc};

/// Builds a reference map with `find_all` in `begin`, pages of 3.
struct Paged(Vec<Document>);

impl Migration for Paged {
    fn manifest() -> Manifest {
        Manifest::new("paged", "1.0.0").pass(Pass::new("p", "c")).reads(["ref"])
    }
    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        Ok(Paged(cx.find_all("ref", doc! {"keep": true}, None, 3)?))
    }
    fn process(&mut self, _cx: &mut Context, _pass: usize, _batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }
}

#[test]
fn find_all_pages_past_the_page_size_in_id_order() {
    // Stored out of order, one in three filtered out.
    let docs: Vec<Document> = (0..10).rev().map(|i| doc! {"_id": i, "keep": i % 3 != 0}).collect();
    let mut h = Harness::<Paged>::new().collection("ref", docs);
    h.begin().unwrap();
    let ids: Vec<i32> = h
        .plugin
        .as_ref()
        .unwrap()
        .0
        .iter()
        .map(|d| d.get_i32("_id").unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 4, 5, 7, 8]);
    // Two full pages and an empty one: the paging stops on a short page.
    assert_eq!(h.lookups().len(), 3);
    assert_eq!(
        h.lookups()[1].1,
        doc! {"$and": [{"keep": true}, godwit_policy::after_id(&Bson::Int32(4))]}
    );
}

#[test]
fn find_all_pages_across_id_types_in_id_order() {
    // `_id`s of five types; a page boundary after the last int must not
    // lose the strings, subdocuments, ObjectIds and dates after it.
    let oid = crate::bson::oid::ObjectId::from_bytes([7; 12]);
    let date = crate::bson::DateTime::from_millis(5);
    let ids = [
        Bson::Int32(1),
        Bson::Int64(2),
        Bson::String("a".into()),
        Bson::Document(doc! {"k": 1}),
        Bson::ObjectId(oid),
        Bson::Boolean(true),
        Bson::DateTime(date),
    ];
    let docs: Vec<Document> = ids
        .iter()
        .rev()
        .map(|id| doc! {"_id": id.clone(), "keep": true})
        .collect();
    let mut h = Harness::<Paged>::new().collection("ref", docs);
    h.begin().unwrap();
    let found: Vec<Bson> = h
        .plugin
        .as_ref()
        .unwrap()
        .0
        .iter()
        .map(|d| d.get("_id").unwrap().clone())
        .collect();
    assert_eq!(found, ids);
}

/// Returns from `process` whatever the test put in `RETURN`.
struct Returns;

thread_local! {
    static RETURN: std::cell::RefCell<Vec<Action>> = const { std::cell::RefCell::new(Vec::new()) };
    static WRITES: std::cell::RefCell<Vec<String>> = std::cell::RefCell::new(vec!["c".to_string()]);
}

impl Migration for Returns {
    fn manifest() -> Manifest {
        Manifest::new("returns", "1.0.0").pass(Pass::new("p", "c").writes(WRITES.with_borrow(|w| w.clone())))
    }
    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Returns)
    }
    fn process(&mut self, _cx: &mut Context, _pass: usize, _batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        Ok(RETURN.with_borrow_mut(std::mem::take))
    }
    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(RETURN.with_borrow_mut(std::mem::take))
    }
}

/// The harness refuses what the host refuses: it calls the same crate.
#[test]
fn the_host_policy_applies() {
    let run = |actions: Vec<Action>, finish: bool| {
        RETURN.with_borrow_mut(|r| *r = actions);
        let mut h = Harness::<Returns>::new();
        let result = if finish {
            h.finish()
        } else {
            h.process(0, vec![doc! {"_id": 1}])
        };
        result.map(|_| ()).map_err(|e| e.message)
    };
    let fails = |actions: Vec<Action>, finish: bool, text: &str| {
        let e = run(actions, finish).unwrap_err();
        assert!(e.contains(text), "{e}");
    };
    assert_eq!(run(vec![Action::set("c", 1, doc! {"a": 1})], false), Ok(()));
    fails(
        vec![Action::update_one("c", doc! {"_id": 1}, doc! {})],
        false,
        "update is empty",
    );
    let blob = bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: vec![0; godwit_policy::MAX_BSON_BYTES],
    };
    fails(
        vec![Action::insert("c", doc! {"_id": 1, "b": blob})],
        false,
        "over MongoDB's limit",
    );
    fails(
        vec![Action::delete_many("c", doc! {"x": 1})],
        false,
        "pass 0 (p): action 0 (delete on `c`): filter of a multi-document action",
    );
    assert_eq!(run(vec![Action::delete_many("c", doc! {"x": 1})], true), Ok(()));
    fails(
        vec![Action::update_one("c", doc! {"$where": "1"}, doc! {"$set": {"a": 1}})],
        false,
        "`$where` runs JavaScript",
    );
    fails(
        vec![Action::set("c", 1, doc! {"a": 1}); 11],
        false,
        "11 actions for a batch of 1 documents",
    );
    fails(
        (0..10_001).map(|i| Action::insert("c", doc! {"_id": i})).collect(),
        true,
        "10001 actions",
    );
    WRITES.with_borrow_mut(|w| *w = vec!["godwit_metadata".into()]);
    let e = Harness::<Returns>::new().begin().unwrap_err();
    assert!(
        e.message
            .contains("pass 0 (\"p\"): writes: collection `godwit_metadata` is godwit's metadata collection"),
        "{e:?}"
    );
}

#[test]
fn and_combines_a_filter_on_id_with_the_page_bound() {
    let matches = |d: &Document, f: &Document| matcher::matches(d, f).unwrap();
    let doc = doc! {"_id": 5};
    assert!(matches(
        &doc,
        &doc! {"$and": [{"_id": {"$lt": 9}}, {"_id": {"$gt": 4}}]}
    ));
    assert!(!matches(
        &doc,
        &doc! {"$and": [{"_id": {"$lt": 9}}, {"_id": {"$gt": 5}}]}
    ));
    assert!(matches(&doc, &doc! {"x": {"$nin": [1]}}));
}

/// Reports every document it is handed, as the harness handed it.
struct Sees;

thread_local! {
    static PASS: std::cell::RefCell<Pass> = std::cell::RefCell::new(Pass::new("p", "c"));
}

impl Migration for Sees {
    fn manifest() -> Manifest {
        Manifest::new("sees", "1.0.0").pass(PASS.with_borrow(|p| p.clone()))
    }
    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Sees)
    }
    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        Ok(batch
            .iter()
            .map(|d| Action::report("seen", "batch", d.to_string()))
            .collect())
    }
}

fn seen(pass: Pass, documents: Vec<Document>, whole_pass: bool) -> Result<Vec<String>, String> {
    PASS.with_borrow_mut(|p| *p = pass);
    let mut h = Harness::<Sees>::new();
    let actions = if whole_pass {
        h.run_pass(0, documents)
    } else {
        h.process(0, documents)
    };
    actions
        .map(|a| {
            a.into_iter()
                .map(|a| match a {
                    Action::Report(r) => r.message,
                    other => panic!("{other:?}"),
                })
                .collect()
        })
        .map_err(|e| e.message)
}

#[test]
fn the_pass_filter_and_projection_apply_as_in_a_run() {
    let docs = || {
        vec![
            doc! {"_id": 3, "email": "C@x", "n": 1},
            doc! {"_id": "b", "email": 7},
            doc! {"_id": 1, "email": "A@x", "n": 2},
            doc! {"_id": 2, "n": 3},
        ]
    };
    let pass = Pass::new("p", "c")
        .filter(doc! {"email": {"$type": "string"}})
        .projection(doc! {"email": 1});
    // One batch as given: filtered and projected, in the given order.
    assert_eq!(
        seen(pass.clone(), docs(), false).unwrap(),
        [
            "{ \"_id\": 3, \"email\": \"C@x\" }",
            "{ \"_id\": 1, \"email\": \"A@x\" }"
        ]
    );
    // A whole pass: in `_id` order across types, in batches of the pass's size.
    let all = Pass::new("p", "c").projection(doc! {"n": 0, "_id": 0}).batch_size(1);
    assert_eq!(
        seen(all, docs(), true).unwrap(),
        [
            "{ \"email\": \"A@x\" }",
            "{}",
            "{ \"email\": \"C@x\" }",
            "{ \"email\": 7 }"
        ]
    );
    // Nothing matches: the plugin is not called.
    let none = Pass::new("p", "c").filter(doc! {"missing": {"$exists": true}});
    assert_eq!(seen(none, docs(), false).unwrap(), Vec::<String>::new());
    // What the harness cannot evaluate fails, naming the pass and the operator.
    let regex = Pass::new("p", "c").filter(doc! {"email": {"$regex": "@x$"}});
    let e = seen(regex, docs(), true).unwrap_err();
    assert!(
        e.starts_with(
            "pass 0 (p): the test harness cannot evaluate the pass's filter as MongoDB would: `$regex` on `email`"
        ),
        "{e}"
    );
    let mixed = Pass::new("p", "c").projection(doc! {"email": 1, "n": 0});
    let e = seen(mixed, docs(), false).unwrap_err();
    assert!(e.contains("projection mixes inclusion and exclusion"), "{e}");
}

#[test]
fn lookups_are_checked_and_served_as_the_host_serves_them() {
    let mut host = MemoryHost::default();
    host.collections.insert(
        "ref".into(),
        vec![
            doc! {"_id": "b", "n": 3, "x": 1},
            doc! {"_id": 2, "n": 1, "x": 1},
            doc! {"_id": 1, "n": [0, 5], "x": 1},
        ],
    );
    let found = host
        .find("ref", &doc! {"n": {"$gte": 2}}, Some(&doc! {"x": 0}), 0)
        .unwrap();
    assert_eq!(found, vec![doc! {"_id": 1, "n": [0, 5]}, doc! {"_id": "b", "n": 3}]);
    let fails = |host: &mut MemoryHost, filter: Document, projection: Option<Document>, text: &str| {
        let e = host.find("ref", &filter, projection.as_ref(), 0).unwrap_err();
        assert!(e.contains(text), "{e}");
    };
    fails(
        &mut host,
        doc! {"$where": "1"},
        None,
        "lookup on `ref` refused: `$where`",
    );
    fails(&mut host, doc! {}, Some(doc! {"x": "$y"}), "(rule projection");
    fails(
        &mut host,
        doc! {"n": {"$regex": "^1"}},
        None,
        "the test harness cannot evaluate this lookup as MongoDB would: `$regex` on `n`",
    );
}

/// Looks up `secrets` in `process` and carries on whatever the answer, as a
/// plugin that swallows the error would; `declared` puts it in `reads`.
struct Snoop;

thread_local! {
    static DECLARED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Migration for Snoop {
    fn manifest() -> Manifest {
        let m = Manifest::new("snoop", "1.0.0").pass(Pass::new("p", "c").writes(["c"]));
        if DECLARED.get() { m.reads(["secrets"]) } else { m }
    }
    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(Snoop)
    }
    fn process(&mut self, cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let _ = cx.find("c", doc! {}, None, 1)?;
        let seen = cx.find("secrets", doc! {}, None, 1).map(|d| d.len()).unwrap_or(0);
        Ok(batch
            .iter()
            .map(|d| Action::set("c", d.get("_id").unwrap().clone(), doc! {"seen": seen as i32}))
            .collect())
    }
}

#[test]
fn an_undeclared_lookup_fails_the_call_as_in_the_host() {
    let secrets = vec![doc! {"_id": 1, "password": "hunter2"}];
    DECLARED.set(false);
    let mut h = Harness::<Snoop>::new().collection("secrets", secrets.clone());
    let e = h.process(0, vec![doc! {"_id": 1}]).unwrap_err().to_string();
    assert!(
        e.contains(
            "pass 0 (p): lookup on `secrets` refused: collection `secrets` is neither read by a pass [c] nor in the \
             manifest's reads [] (rule undeclared-read: declare the collection in the manifest's `reads`)"
        ),
        "{e}"
    );
    DECLARED.set(true);
    let mut h = Harness::<Snoop>::new().collection("secrets", secrets);
    let actions = h.process(0, vec![doc! {"_id": 1}]).unwrap();
    assert_eq!(actions, vec![Action::set("c", 1, doc! {"seen": 1})]);
    // Declaring godwit's own state is refused with the manifest.
    let bad = Manifest::new("m", "1.0.0").reads(["godwit_metadata"]);
    let e = check_manifest(&bad).unwrap_err().to_string();
    assert!(
        e.contains("reads: collection `godwit_metadata` is godwit's metadata collection"),
        "{e}"
    );
}
