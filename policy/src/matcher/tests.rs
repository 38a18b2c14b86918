use super::*;
use bson::doc;
use cases::*;

mod cases {
    include!("cases.rs");
}

#[test]
fn filters_match_as_the_server_does() {
    let docs = matcher_documents();
    for (filter, want) in filter_cases() {
        let got: Vec<i32> = docs
            .iter()
            .filter(|d| matches(d, &filter).unwrap_or_else(|e| panic!("{filter}: {e}")))
            .map(|d| d.get_i32("_id").unwrap())
            .collect();
        assert_eq!(got, want, "{filter}");
    }
}

#[test]
fn projections_return_what_the_server_returns() {
    for (projection, doc, want) in projection_cases() {
        let got = project(&doc, &projection).unwrap_or_else(|e| panic!("{projection}: {e}"));
        // Field order matters: compare as bytes.
        assert_eq!(
            got.to_vec().unwrap(),
            want.to_vec().unwrap(),
            "{projection} on {doc}: got {got}, want {want}"
        );
    }
}

#[track_caller]
fn refused(filter: Document, text: &str) {
    // Refused for every document, whatever an earlier clause decided.
    for d in matcher_documents() {
        match matches(&d, &filter) {
            Err(e) => assert!(e.to_string().contains(text), "{filter}: {e}"),
            Ok(m) => panic!("{filter} on {d}: evaluated to {m}, want an error containing {text:?}"),
        }
    }
}

#[test]
fn what_cannot_be_evaluated_is_an_error_not_a_guess() {
    let regex = Bson::RegularExpression(bson::Regex {
        pattern: "^x".try_into().unwrap(),
        options: "".try_into().unwrap(),
    });
    refused(doc! {"a": regex.clone()}, "regular expression /^x/");
    refused(doc! {"a": {"$in": [1, regex.clone()]}}, "regular expression");
    refused(doc! {"a": {"$not": regex}}, "regular expression");
    refused(doc! {"_id": 0, "a": {"$regex": "x"}}, "`$regex` on `a`");
    refused(doc! {"a": {"$gt": Bson::MinKey}}, "MinKey");
    refused(doc! {"a": {"$mod": [0, 1]}}, "by 0");
    refused(doc! {"a": {"$size": -1}}, "negative");
    refused(doc! {"a": {"$size": 1.5}}, "server refuses");
    refused(doc! {"a": {"$type": "text"}}, "unknown type `text`");
    refused(
        doc! {"a": {"$elemMatch": {"$gt": 1, "b": 2}}},
        "mixes operators and fields",
    );
    refused(doc! {"a": {"$near": [0, 0]}}, "query operator `$near`");
    refused(doc! {"$text": {"$search": "x"}}, "top-level operator `$text`");
    let decimal: bson::Decimal128 = "1.5".parse().unwrap();
    refused(doc! {"a": decimal}, "Decimal128");
    // A value in the data the matcher cannot compare is an error as well.
    let e = matches(&doc! {"a": decimal}, &doc! {"a": 1}).unwrap_err();
    assert!(e.to_string().contains("Decimal128 value 1.5"), "{e}");
}

#[test]
fn projections_the_server_refuses_are_errors() {
    let refused = |p: Document, text: &str| {
        let e = project(&doc! {"_id": 1, "a": {"b": 1}}, &p).unwrap_err();
        assert!(e.to_string().contains(text), "{p}: {e}");
    };
    refused(doc! {"a": 1, "b": 0}, "mixes inclusion and exclusion");
    refused(doc! {"a": 1, "a.b": 1}, "path collision at `a.b`");
    refused(doc! {"a.b": 1, "a": 1}, "path collision at `a`");
    refused(doc! {"a.b": {"$elemMatch": {"k": 1}}}, "dotted path");
    refused(doc! {"a": {"$slice": [1, 0]}}, "limit of 0");
}

#[test]
fn bson_order_across_types() {
    use bson::oid::ObjectId;
    let ordered = [
        Bson::MinKey,
        Bson::Null,
        Bson::Double(f64::NAN),
        Bson::Int64(i64::MIN),
        Bson::Double(-1.5),
        Bson::Int32(1),
        Bson::Double(1.5),
        Bson::Int64(i64::MAX - 1),
        Bson::Int64(i64::MAX),
        Bson::Double(9.3e18),
        Bson::String("".into()),
        Bson::String("a".into()),
        Bson::String("b".into()),
        bson::bson!({}),
        bson::bson!({"a": 1}),
        // The values' types first, then the names.
        bson::bson!({"b": 0}),
        bson::bson!({"a": "x"}),
        bson::bson!([]),
        Bson::ObjectId(ObjectId::from_bytes([0; 12])),
        Bson::ObjectId(ObjectId::from_bytes([1; 12])),
        Bson::Boolean(false),
        Bson::Boolean(true),
        Bson::DateTime(bson::DateTime::from_millis(-1)),
        Bson::DateTime(bson::DateTime::from_millis(0)),
        Bson::MaxKey,
    ];
    for (i, a) in ordered.iter().enumerate() {
        for (j, b) in ordered.iter().enumerate() {
            assert_eq!(compare(a, b).unwrap(), i.cmp(&j), "{a} vs {b}");
        }
    }
    assert_eq!(compare(&Bson::Int32(2), &Bson::Double(2.0)).unwrap(), Ordering::Equal);
    assert_eq!(
        compare(&Bson::Int64(1 << 53 | 1), &Bson::Double((1u64 << 53) as f64)).unwrap(),
        Ordering::Greater
    );
}
