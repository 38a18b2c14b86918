use super::*;
use bson::{RawDocumentBuf, doc};
use cases::*;

mod cases {
    include!("cases.rs");
}

#[test]
fn updates_store_what_the_server_stores() {
    for (before, update, want) in update_cases() {
        let got = apply_update(&before, &update, Target::Existing);
        match (&got, &want) {
            // Field order and numeric types matter: compare as bytes.
            (Ok(got), Want::Stored(want)) if got.to_vec().unwrap() == want.to_vec().unwrap() => {}
            (Err(ApplyError::Refused(_)), Want::Refused) => {}
            (Err(ApplyError::Unsupported(_)), Want::Unsupported) => {}
            _ => panic!("{update} on {before}: got {got:?}, want {want:?}"),
        }
    }
}

/// MongoDB 5.0+'s order, which SecantusDB does not follow (so
/// `apply_update` leaves these to the server): fields by name, numeric
/// names by value, whatever the update's order; `$rename` appends.
#[test]
fn mongodb_applies_paths_in_order() {
    let rows = [
        (
            doc! {"_id": 1},
            doc! {"$set": {"b": 1, "a": 2}},
            doc! {"_id": 1, "a": 2, "b": 1},
        ),
        (
            doc! {"_id": 1},
            doc! {"$set": {"b": 1}, "$inc": {"a": 1}},
            doc! {"_id": 1, "a": 1, "b": 1},
        ),
        (
            doc! {"_id": 1},
            doc! {"$set": {"10": 1, "9": 2, "x": 3}},
            doc! {"_id": 1, "9": 2, "10": 1, "x": 3},
        ),
        (
            doc! {"_id": 1, "a": 1, "b": 2, "c": 3},
            doc! {"$rename": {"a": "b"}},
            doc! {"_id": 1, "c": 3, "b": 1},
        ),
    ];
    for (before, update, want) in rows {
        let ops = parse_ops(&update).unwrap();
        let got = run_ops(
            before.clone(),
            &ops,
            &sequence(&ops, Order::Paths),
            Target::Existing,
            Order::Paths,
        )
        .unwrap();
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap(), "{update}: got {got}");
        assert!(
            matches!(
                apply_update(&before, &update, Target::Existing),
                Err(ApplyError::Unsupported(_))
            ),
            "{update}"
        );
    }
}

#[test]
fn set_on_insert_applies_to_an_upserted_document() {
    let seed = doc! {"_id": 7, "k": 1};
    let update = doc! {"$inc": {"k": 1}, "$set": {"a": 2}, "$setOnInsert": {"b": 1}};
    let got = apply_update(&seed, &update, Target::Upserted).unwrap();
    assert_eq!(got, doc! {"_id": 7, "k": 2, "a": 2, "b": 1});
    let got = apply_update(&seed, &doc! {"x": 1}, Target::Upserted).unwrap();
    assert_eq!(got, doc! {"_id": 7, "x": 1});
}

#[test]
fn what_cannot_be_evaluated_is_an_error_not_a_guess() {
    let unsupported =
        |before: Document, update: Document, text: &str| match apply_update(&before, &update, Target::Existing) {
            Err(ApplyError::Unsupported(e)) => assert!(e.contains(text), "{update}: {e}"),
            other => panic!("{update} on {before}: {other:?}, want unsupported {text:?}"),
        };
    unsupported(doc! {"a": 1}, doc! {"$set": {"b": 1}}, "no `_id` first");
    unsupported(doc! {"_id": 1}, doc! {"$currentDate": {"t": true}}, "$currentDate");
    unsupported(
        doc! {"_id": 1, "a": [1]},
        doc! {"$set": {"a.$": 1}},
        "positional segment `$`",
    );
    unsupported(doc! {"_id": 1, "a": [1]}, doc! {"$set": {"a.01": 1}}, "leading zero");
    unsupported(doc! {"_id": 1, "a": []}, doc! {"$set": {"a.100000": 1}}, "padding");
    let regex = Bson::RegularExpression(bson::Regex {
        pattern: "^x".try_into().unwrap(),
        options: "".try_into().unwrap(),
    });
    unsupported(
        doc! {"_id": 1, "a": ["x"]},
        doc! {"$pull": {"a": regex}},
        "regular expression",
    );
    unsupported(doc! {"_id": 1, "a": -0.0}, doc! {"$inc": {"a": 0.0}}, "turns");
    unsupported(doc! {"_id": 1, "a": 1}, doc! {"$bit": {"a": {"or": 1i64}}}, "int64");
    unsupported(
        doc! {"_id": 1, "a": [1]},
        doc! {"$rename": {"a.x": "b"}},
        "cannot be followed",
    );
    unsupported(
        doc! {"_id": 1, "a": [1]},
        doc! {"$push": {"a": {"$each": [], "$slice": 1.5}}},
        "$slice",
    );
}

/// Where every order applies the same sequence, `apply_update_encoded`
/// evaluates once: it must store what evaluating every order and comparing
/// their bytes stores.
#[test]
fn one_evaluation_answers_as_all_orders_do() {
    let mut shortcut = 0;
    for (before, update, _) in update_cases() {
        if !update.keys().any(|k| k.starts_with('$')) {
            continue;
        }
        let Ok(ops) = parse_ops(&update) else { continue };
        let orders = [Order::Paths, Order::Given, Order::Bytes].map(|order| sequence(&ops, order));
        if ops.iter().any(|(_, op)| matches!(op, Op::RenameTo(_))) || orders.iter().any(|o| *o != orders[0]) {
            continue;
        }
        shortcut += 1;
        let each = [Order::Paths, Order::Given, Order::Bytes]
            .map(|order| run_ops(before.clone(), &ops, &orders[order as usize], Target::Existing, order));
        let got = apply_update_encoded(before.clone(), &update, Target::Existing);
        match (&got, &each[0]) {
            (Ok((after, bytes)), Ok(want)) => {
                assert_eq!(*bytes, after.to_vec().unwrap(), "{update}");
                for other in &each {
                    assert_eq!(
                        other.as_ref().map(|d| d.to_vec().unwrap()).ok(),
                        Some(bytes.clone()),
                        "{update} on {before}"
                    );
                }
                assert_eq!(after, want);
            }
            (Err(_), Err(_)) => assert!(each.iter().all(Result::is_err), "{update} on {before}"),
            _ => panic!("{update} on {before}: got {got:?}, each order {each:?}"),
        }
    }
    assert!(shortcut > 20, "only {shortcut} cases took the one-evaluation path");
}

/// The bytes path answers a backfill's `$set`/`$unset` of top-level fields
/// byte for byte as the general path does, and leaves the rest to it.
#[test]
fn the_bytes_path_stores_what_the_general_path_stores() {
    let rows = [
        (
            doc! {"_id": 1, "a": 1, "b": "x"},
            doc! {"$set": {"owner": "usr_1"}},
            true,
        ),
        (
            doc! {"_id": 1, "a": 1, "b": "x"},
            doc! {"$set": {"a": 2.5, "c": {"d": [1, 2]}}},
            true,
        ),
        (doc! {"_id": 1, "a": 1, "b": "x"}, doc! {"$set": {"a": 1}}, true),
        (
            doc! {"_id": 1, "a": 1, "b": "x"},
            doc! {"$unset": {"a": ""}, "$set": {"c": 1}},
            true,
        ),
        (
            doc! {"_id": 1, "a": 1, "b": "x"},
            doc! {"$set": {"c": 1}, "$unset": {"a": ""}},
            false,
        ),
        (doc! {"_id": 1, "a": 1, "b": "x"}, doc! {"$unset": {"z": ""}}, true),
        (
            doc! {"_id": "s", "a": 1},
            doc! {"$set": {"b": Bson::Null}, "$unset": {"c": 1}},
            true,
        ),
        // Names out of byte order, numeric, dotted or `_id`; other operators;
        // `_id` not first: the general path.
        (doc! {"_id": 1}, doc! {"$set": {"b": 1, "a": 2}}, false),
        (doc! {"_id": 1}, doc! {"$set": {"10": 1}}, false),
        (doc! {"_id": 1, "a": {"b": 1}}, doc! {"$set": {"a.b": 2}}, false),
        (doc! {"_id": 1}, doc! {"$set": {"_id": 2}}, false),
        (doc! {"_id": 1, "n": 1}, doc! {"$inc": {"n": 1}}, false),
        (doc! {"a": 1, "_id": 1}, doc! {"$set": {"b": 1}}, false),
        (
            doc! {"_id": 1, "a": 1},
            doc! {"$set": {"a": 1}, "$unset": {"a": ""}},
            false,
        ),
    ];
    for (before, update, on_bytes) in rows {
        let raw = RawDocumentBuf::try_from(&before).unwrap();
        assert_eq!(
            bytes::top_level(&raw, &update).is_some(),
            on_bytes,
            "{update} on {before}"
        );
        let general = apply_update(&before, &update, Target::Existing).map(|d| d.to_vec().unwrap());
        let got = apply_update_raw(&raw, &update, Target::Existing);
        match (&got, &general) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{update} on {before}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{update} on {before}"),
            _ => panic!("{update} on {before}: on bytes {got:?}, general {general:?}"),
        }
    }
    // Every case of the general path's table, through the bytes path.
    for (before, update, _) in update_cases() {
        let Ok(raw) = RawDocumentBuf::try_from(&before) else {
            continue;
        };
        let general = apply_update(&before, &update, Target::Existing).map(|d| d.to_vec().unwrap());
        let got = apply_update_raw(&raw, &update, Target::Existing);
        match (&got, &general) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{update} on {before}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{update} on {before}: on bytes {got:?}, general {general:?}"),
        }
    }
}

/// Updates a hostile plugin aims at the bytes path: an after-image over the
/// 16 MiB limit is refused as the general path refuses it; values nested
/// past the bytes path's budget, names with a NUL byte, empty or
/// non-document operators, and a document holding a field twice all leave
/// the bytes path and get the general path's answer - never a panic, never
/// bytes the general path would not store.
#[test]
fn hostile_updates_leave_the_bytes_path_or_are_refused_as_the_general_path_refuses_them() {
    let nested = |levels: usize| {
        let mut value = Bson::Int32(1);
        for _ in 0..levels {
            value = Bson::Document(doc! {"x": value});
        }
        value
    };
    let big = "x".repeat(9 * 1024 * 1024);
    let rows: Vec<(Document, Document)> = vec![
        (doc! {"_id": 1, "a": big.clone()}, doc! {"$set": {"b": big.clone()}}),
        (doc! {"_id": 1}, doc! {"$set": {"a": nested(crate::MAX_DEPTH / 2 + 5)}}),
        (doc! {"_id": 1}, doc! {"$set": {"a": nested(crate::MAX_DEPTH + 5)}}),
        (doc! {"_id": 1}, doc! {"$set": {"a\0b": 1}}),
        (doc! {"_id": 1}, doc! {"$set": {"": 1}}),
        (doc! {"_id": 1}, doc! {"$set": {}}),
        (doc! {"_id": 1}, doc! {"$set": 5}),
        (doc! {"_id": 1}, doc! {"$unset": {"$where": ""}}),
    ];
    for (before, update) in rows {
        let raw = RawDocumentBuf::try_from(&before).unwrap();
        let on_bytes = bytes::top_level(&raw, &update).is_some();
        let general = apply_update(&before, &update, Target::Existing)
            .and_then(|d| d.to_vec().map_err(|e| ApplyError::Refused(e.to_string())));
        let got = apply_update_raw(&raw, &update, Target::Existing);
        let what = format!("{:.200} on {:.200}", update.to_string(), before.to_string());
        match (&got, &general) {
            (Ok(a), Ok(b)) => assert!(a == b, "{what}: the paths differ"),
            (Err(_), Err(_)) => {}
            _ => panic!("{what}: on bytes {got:?}, general {general:?}"),
        }
        if on_bytes {
            let bytes = bytes::top_level(&raw, &update).unwrap();
            assert!(
                bytes.len() > crate::MAX_BSON_BYTES,
                "{what}: only the oversized row may stay on the bytes path"
            );
            assert!(matches!(got, Err(ApplyError::Refused(_))), "{what}: {got:?}");
        }
    }
    // A document holding `a` twice (a server never stores one, a hostile
    // input may): not the bytes path, and no panic on the general one.
    let mut twice = RawDocumentBuf::new();
    twice.append(bson::raw::cstr!("_id"), 1);
    twice.append(bson::raw::cstr!("a"), 1);
    twice.append(bson::raw::cstr!("a"), 2);
    let update = doc! {"$set": {"a": 3}};
    assert!(bytes::top_level(&twice, &update).is_none());
    let _ = apply_update_raw(&twice, &update, Target::Existing);
}
