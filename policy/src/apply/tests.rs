use super::*;
use bson::doc;
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
        let got = operators(&before, &update, Target::Existing, Order::Paths).unwrap();
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
