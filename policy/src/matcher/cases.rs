// The matcher's table: documents, filters with the `_id`s they match, and
// projections with what they return. Shared by the unit tests next to it and
// by `tests/e2e/matcher.rs`, which runs every row against a real server
// (`include!`d there, so plain items only).

#[allow(unused_imports)]
use bson::{Bson, Document, doc};

/// The documents every filter case runs over, `_id` 1 to 21: numbers of
/// each type, strings, null and missing, arrays (empty, nested, of
/// documents), documents with the same fields in another order, NaN, a
/// date, binary data.
pub fn matcher_documents() -> Vec<Document> {
    let values: Vec<Option<Bson>> = vec![
        Some(Bson::Int32(1)),
        Some(Bson::Double(2.5)),
        Some(Bson::Int64(3)),
        Some(Bson::String("x".into())),
        Some(Bson::Null),
        None,
        Some(bson::bson!([1, 5])),
        Some(bson::bson!([])),
        Some(bson::bson!({"b": 1})),
        Some(bson::bson!([{"b": 1}, {"c": 2}])),
        Some(bson::bson!([{"b": 2, "c": 3}, {"b": 7}])),
        Some(Bson::Boolean(true)),
        Some(bson::bson!([[1, 5]])),
        Some(Bson::Double(f64::NAN)),
        Some(Bson::DateTime(bson::DateTime::from_millis(1_000_000))),
        Some(bson::bson!({"c": 1, "b": 1})),
        Some(Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![5],
        })),
        Some(Bson::Int32(-3)),
        Some(bson::bson!([1, "x", null])),
        Some(bson::bson!({"b": [1, 2]})),
        Some(Bson::Double(10.0)),
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let mut d = doc! {"_id": i as i32 + 1};
            if let Some(a) = a {
                d.insert("a", a);
            }
            d
        })
        .collect()
}

/// Every `_id` of [`matcher_documents`] but `except`.
fn all_but(except: &[i32]) -> Vec<i32> {
    (1..=21).filter(|i| !except.contains(i)).collect()
}

/// Filters and the `_id`s of [`matcher_documents`] they match.
pub fn filter_cases() -> Vec<(Document, Vec<i32>)> {
    let nan = Bson::Double(f64::NAN);
    vec![
        // Equality: numbers by value across types, arrays by element or whole.
        (doc! {"a": 1}, vec![1, 7, 19]),
        (doc! {"a": 1.0}, vec![1, 7, 19]),
        (doc! {"a": {"$eq": 3}}, vec![3]),
        (doc! {"a": [1, 5]}, vec![7, 13]),
        (doc! {"a": {"$in": [[1, 5]]}}, vec![7, 13]),
        (doc! {"a": {"b": 1}}, vec![9, 10]),
        // Documents compare field by field, in order.
        (doc! {"a": {"c": 1, "b": 1}}, vec![16]),
        (doc! {"a": {"b": 1, "c": 1}}, vec![]),
        // Comparisons bracket by type; NaN is only equal to NaN.
        (doc! {"a": {"$gt": 2}}, vec![2, 3, 7, 21]),
        (doc! {"a": {"$lt": 2}}, vec![1, 7, 18, 19]),
        (doc! {"a": {"$lt": 100}}, vec![1, 2, 3, 7, 18, 19, 21]),
        (doc! {"a": {"$gte": "a"}}, vec![4, 19]),
        (doc! {"a": {"$gt": bson::DateTime::from_millis(0)}}, vec![15]),
        (doc! {"a": {"$gte": nan.clone()}}, vec![14]),
        (doc! {"a": {"$gt": nan}}, vec![]),
        // Each operator of a field on its own: one element may satisfy $gt, another $lt.
        (doc! {"a": {"$gt": 0, "$lt": 2}}, vec![1, 7, 19]),
        (doc! {"a": {"$gt": 3, "$lt": 2}}, vec![7]),
        (doc! {"$and": [{"a": {"$gt": 0}}, {"a": {"$lt": 2}}]}, vec![1, 7, 19]),
        // Missing equals null; negations negate the whole condition.
        (doc! {"a": null}, vec![5, 6, 19]),
        (doc! {"a": {"$in": [null]}}, vec![5, 6, 19]),
        (doc! {"a": {"$lte": null}}, vec![5, 6, 19]),
        (doc! {"a": {"$gt": null}}, vec![]),
        (doc! {"a": {"$ne": null}}, all_but(&[5, 6, 19])),
        (doc! {"a": {"$ne": 1}}, all_but(&[1, 7, 19])),
        (doc! {"a": {"$nin": [1, null]}}, all_but(&[1, 5, 6, 7, 19])),
        (doc! {"a": {"$not": {"$gt": 2}}}, all_but(&[2, 3, 7, 21])),
        (doc! {"a": {"$exists": false}}, vec![6]),
        (doc! {"a": {"$exists": 0}}, vec![6]),
        (doc! {"a": {"$exists": true}}, all_but(&[6])),
        // Paths through documents and arrays of documents; numeric segments index.
        (doc! {"a.b": 1}, vec![9, 10, 16, 20]),
        (doc! {"a.b": {"$ne": 1}}, all_but(&[9, 10, 16, 20])),
        (doc! {"a.b": {"$exists": true}}, vec![9, 10, 11, 16, 20]),
        // An array without documents has no `b` to be null.
        (doc! {"a.b": null}, all_but(&[7, 8, 9, 11, 13, 16, 19, 20])),
        (doc! {"a.b": {"$exists": false}}, all_but(&[9, 10, 11, 16, 20])),
        (doc! {"a.b": {"$size": 2}}, vec![20]),
        // An array reached by index is not looked into.
        (doc! {"a.0": 1}, vec![7, 19]),
        (doc! {"a.0": [1, 5]}, vec![13]),
        (doc! {"a.1": 5}, vec![7]),
        (doc! {"$or": [{"a": 1}, {"a.c": 2}]}, vec![1, 7, 10, 19]),
        (
            doc! {"$nor": [{"a": {"$type": "number"}}, {"a": {"$exists": false}}], "$comment": "why"},
            all_but(&[1, 2, 3, 6, 7, 14, 18, 19, 21]),
        ),
        // Array operators look at the array, not into nested arrays.
        (doc! {"a": {"$size": 2}}, vec![7, 10, 11]),
        (doc! {"a": {"$size": 0}}, vec![8]),
        (doc! {"a": {"$all": [1, 5]}}, vec![7]),
        (doc! {"a": {"$all": [{"$elemMatch": {"b": 7}}]}}, vec![11]),
        (doc! {"a": {"$elemMatch": {"b": {"$gte": 2}}}}, vec![11]),
        (doc! {"a": {"$elemMatch": {"c": {"$exists": true}}}}, vec![10, 11]),
        (doc! {"a": {"$elemMatch": {"$gt": 1, "$lt": 6}}}, vec![7]),
        (doc! {"a": {"$elemMatch": {"$eq": null}}}, vec![19]),
        (doc! {"a": {"$in": [2.5, "x"]}}, vec![2, 4, 19]),
        // Types, remainders, bits.
        (doc! {"a": {"$type": "string"}}, vec![4, 19]),
        (doc! {"a": {"$type": "array"}}, vec![7, 8, 10, 11, 13, 19]),
        (doc! {"a": {"$type": "number"}}, vec![1, 2, 3, 7, 14, 18, 19, 21]),
        (doc! {"a": {"$type": 16}}, vec![1, 7, 18, 19]),
        (doc! {"a": {"$type": ["long", "bool"]}}, vec![3, 12]),
        (doc! {"a": {"$mod": [4, 2]}}, vec![2, 21]),
        (doc! {"a": {"$bitsAllSet": 5}}, vec![7, 17, 18]),
        (doc! {"a": {"$bitsAnyClear": [0]}}, vec![21]),
    ]
}

/// Projections: (projection, document, what `find` returns).
pub fn projection_cases() -> Vec<(Document, Document, Document)> {
    let flat = doc! {"_id": 1, "a": 1, "b": 2, "c": {"d": 3, "e": 4}};
    let arrays = doc! {"_id": 2, "a": [{"b": 1, "c": 2}, {"c": 3}, 5, [{"b": 4, "c": 5}]]};
    let list = doc! {"_id": 4, "a": [1, 2, 3, 4], "b": 1, "c": 2};
    let elems = doc! {"_id": 5, "a": [{"k": 1}, {"k": 2}, {"k": 3}], "b": 1, "c": 2};
    vec![
        (doc! {"a": 1}, flat.clone(), doc! {"_id": 1, "a": 1}),
        (doc! {"a": 0}, flat.clone(), doc! {"_id": 1, "b": 2, "c": {"d": 3, "e": 4}}),
        (doc! {"_id": 0, "a": 1}, flat.clone(), doc! {"a": 1}),
        (doc! {"_id": 0}, flat.clone(), doc! {"a": 1, "b": 2, "c": {"d": 3, "e": 4}}),
        (doc! {"_id": 1}, flat.clone(), doc! {"_id": 1}),
        (doc! {}, flat.clone(), flat.clone()),
        (doc! {"z": 1}, flat.clone(), doc! {"_id": 1}),
        (doc! {"c.d": 1}, flat.clone(), doc! {"_id": 1, "c": {"d": 3}}),
        (doc! {"c.d": 0}, flat.clone(), doc! {"_id": 1, "a": 1, "b": 2, "c": {"e": 4}}),
        (doc! {"c.d": 1, "c.e": true}, flat.clone(), doc! {"_id": 1, "c": {"d": 3, "e": 4}}),
        (doc! {"a.b": 1}, flat.clone(), doc! {"_id": 1}),
        (doc! {"c.z": 1}, flat, doc! {"_id": 1, "c": {}}),
        (
            doc! {"a.b": 1},
            arrays.clone(),
            doc! {"_id": 2, "a": [{"b": 1}, {}, [{"b": 4}]]},
        ),
        (
            doc! {"a.b": 0},
            arrays,
            doc! {"_id": 2, "a": [{"c": 2}, {"c": 3}, 5, [{"c": 5}]]},
        ),
        (doc! {"a": {"$slice": 2}}, list.clone(), doc! {"_id": 4, "a": [1, 2], "b": 1, "c": 2}),
        (doc! {"a": {"$slice": -1}}, list.clone(), doc! {"_id": 4, "a": [4], "b": 1, "c": 2}),
        (doc! {"a": {"$slice": [1, 2]}}, list.clone(), doc! {"_id": 4, "a": [2, 3], "b": 1, "c": 2}),
        (doc! {"a": {"$slice": [-3, 1]}}, list.clone(), doc! {"_id": 4, "a": [2], "b": 1, "c": 2}),
        (doc! {"a": {"$slice": 1}, "b": 1}, list, doc! {"_id": 4, "a": [1], "b": 1}),
        (
            doc! {"a": {"$elemMatch": {"k": {"$gte": 2}}}},
            elems.clone(),
            doc! {"_id": 5, "a": [{"k": 2}]},
        ),
        (
            doc! {"a": {"$elemMatch": {"k": {"$gte": 2}}}, "c": 1},
            elems,
            doc! {"_id": 5, "c": 2, "a": [{"k": 2}]},
        ),
    ]
}
