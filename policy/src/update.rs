//! The update allow-list and the rule for stored documents. An update is
//! either operators only (`$set`, `$unset`, `$inc`, `$mul`, `$rename`,
//! `$min`, `$max`, `$setOnInsert`, `$push`, `$pull`, `$pullAll`,
//! `$addToSet`, `$pop`, `$bit`, with `$each`/`$position`/`$slice`/`$sort`
//! modifiers) or a replacement document. `$currentDate` is refused: the
//! server's clock differs on replay. A replacement or inserted document, and
//! every value an operator stores, has no key starting with `$` and no key
//! containing `.` at any depth. Aggregation-pipeline updates cannot be
//! expressed: the contract's `update` is one document, not an array.

use crate::query::{check_filter, field_path, forbidden, literal};
use crate::{Rule, Violation};
use bson::{Bson, Document};

fn update(detail: String) -> Violation {
    Violation::new(Rule::Update, detail)
}

/// Checks an update: non-empty, operators only or a storable replacement.
pub fn check_update(doc: &Document) -> Result<(), Violation> {
    if doc.is_empty() {
        return Err(Violation::new(Rule::Empty, "update is empty"));
    }
    forbidden(doc).map_err(|v| prefixed("update", v))?;
    if !doc.keys().any(|k| k.starts_with('$')) {
        return storable(doc).map_err(|v| prefixed("update (a replacement document)", v));
    }
    for (op, arg) in doc {
        if !op.starts_with('$') {
            return Err(update(format!(
                "update mixes operators and the field `{op}` (use $set for fields)"
            )));
        }
        let Bson::Document(fields) = arg else {
            return Err(update(format!("update: `{op}` takes a document of fields")));
        };
        for (path, v) in fields {
            field_path(path, true).map_err(|e| update(format!("update: `{op}`: {e}")))?;
            operand(op, path, v).map_err(|v| prefixed("update", v))?;
        }
    }
    Ok(())
}

fn prefixed(what: &str, mut v: Violation) -> Violation {
    v.detail = format!("{what}: {}", v.detail);
    v
}

fn is_number(v: &Bson) -> bool {
    matches!(
        v,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
    )
}

fn operand(op: &str, path: &str, v: &Bson) -> Result<(), Violation> {
    let bad = |what: &str| Err(update(format!("`{op}` on `{path}` takes {what}")));
    match op {
        "$set" | "$setOnInsert" | "$min" | "$max" | "$unset" => storable_value(v),
        "$inc" | "$mul" => match v {
            v if is_number(v) => Ok(()),
            _ => bad("a number"),
        },
        "$rename" => match v {
            Bson::String(to) => field_path(to, false).map_err(|e| update(format!("`$rename` of `{path}`: {e}"))),
            _ => bad("the new field name as a string"),
        },
        "$push" | "$addToSet" => match v {
            Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => modifiers(op, path, d),
            other => storable_value(other),
        },
        "$pull" => match v {
            // A condition on the elements: operators, or a filter on their fields.
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                check_filter(&bson::doc! {"element": d.clone()})
            }
            Bson::Document(d) => check_filter(d),
            other => literal(other),
        },
        "$pullAll" => match v {
            Bson::Array(items) => items.iter().try_for_each(storable_value),
            _ => bad("an array"),
        },
        "$pop" => match v {
            Bson::Int32(1 | -1) | Bson::Int64(1 | -1) => Ok(()),
            Bson::Double(n) if *n == 1.0 || *n == -1.0 => Ok(()),
            _ => bad("1 or -1"),
        },
        "$bit" => match v {
            Bson::Document(d)
                if !d.is_empty()
                    && d.iter().all(|(k, n)| {
                        matches!(k.as_str(), "and" | "or" | "xor") && matches!(n, Bson::Int32(_) | Bson::Int64(_))
                    }) =>
            {
                Ok(())
            }
            _ => bad("a document of and/or/xor with integers"),
        },
        other => Err(update(format!("unknown update operator `{other}`"))),
    }
}

/// `$push` / `$addToSet` modifiers: `$each` required; `$position`, `$slice`
/// and `$sort` with `$push` only.
fn modifiers(op: &str, path: &str, d: &Document) -> Result<(), Violation> {
    let bad = |what: String| Err(update(format!("`{op}` on `{path}`: {what}")));
    if !d.contains_key("$each") {
        return bad("modifiers need `$each`".into());
    }
    for (m, v) in d {
        match (m.as_str(), v) {
            ("$each", Bson::Array(items)) => items.iter().try_for_each(storable_value)?,
            ("$each", _) => return bad("`$each` takes an array".into()),
            ("$position" | "$slice", Bson::Int32(_) | Bson::Int64(_)) if op == "$push" => {}
            ("$sort", Bson::Int32(1 | -1)) if op == "$push" => {}
            ("$sort", Bson::Document(by)) if op == "$push" => {
                for (field, dir) in by {
                    field_path(field, false).map_err(|e| update(format!("`$sort`: {e}")))?;
                    if !matches!(dir, Bson::Int32(1 | -1)) {
                        return bad(format!("`$sort` on `{field}` takes 1 or -1"));
                    }
                }
            }
            (other, _) => return bad(format!("unknown or misused modifier `{other}`")),
        }
    }
    Ok(())
}

fn storage(detail: String) -> Violation {
    Violation::new(Rule::StorageKey, detail)
}

/// A value stored as it is: embedded documents (in arrays too) have no key
/// that starts with `$` or contains `.`.
fn storable_value(v: &Bson) -> Result<(), Violation> {
    match v {
        Bson::Document(d) => storable(d),
        Bson::Array(items) => items.iter().try_for_each(storable_value),
        _ => Ok(()),
    }
}

fn storable(doc: &Document) -> Result<(), Violation> {
    for (key, v) in doc {
        if key.starts_with('$') {
            return Err(storage(format!(
                "key `{key}` starts with `$` (MongoDB would read it as an operator)"
            )));
        }
        if key.contains('.') {
            return Err(storage(format!(
                "key `{key}` contains `.` (MongoDB would read it as a path)"
            )));
        }
        storable_value(v)?;
    }
    Ok(())
}

/// Checks a document to insert: storable keys at any depth, nothing
/// nondeterministic.
pub fn check_document(doc: &Document) -> Result<(), Violation> {
    forbidden(doc)?;
    storable(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[track_caller]
    fn check(u: Document, expect: Result<(), &str>) {
        match (check_update(&u), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{u}: {e}"),
            (got, want) => panic!("{u}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn allowed_updates() {
        check(
            doc! {
                "$set": {"a": 1, "b.c": {"d": [1, {"e": 2}]}, "arr.$": 1, "all.$[].x": 2},
                "$unset": {"old": ""}, "$inc": {"n": 1}, "$mul": {"m": 1.5}, "$rename": {"x": "y.z"},
                "$min": {"lo": 1}, "$max": {"hi": 9}, "$setOnInsert": {"created": "2026"},
                "$pop": {"q": -1}, "$bit": {"flags": {"and": 5, "or": 2i64}},
            },
            Ok(()),
        );
        check(
            doc! {
                "$push": {"p": {"$each": [1, 2], "$position": 0, "$slice": -5, "$sort": {"k": 1}}, "p2": {"x": 1}},
                "$addToSet": {"s": {"$each": ["a"]}, "s2": "b"},
                "$pull": {"l": {"$gte": 6}, "l2": {"k": "v", "n": {"$lt": 2}}, "l3": 5},
                "$pullAll": {"pa": [1, 2]},
            },
            Ok(()),
        );
        check(doc! {"_id": 1, "name": "replacement", "nested": {"ok": [1]}}, Ok(()));
    }

    #[test]
    fn refused_updates() {
        check(doc! {}, Err("update is empty (rule non-empty"));
        check(
            doc! {"$currentDate": {"at": true}},
            Err("`$currentDate` is nondeterministic"),
        );
        check(doc! {"$set": {"r": {"$rand": {}}}}, Err("`$rand` is nondeterministic"));
        check(doc! {"$set": {"t": "$$NOW"}}, Err("`$$NOW` is nondeterministic"));
        check(doc! {"$set": {"a": {"$where": "1"}}}, Err("JavaScript"));
        check(
            doc! {"$set": {"a": 1}, "b": 2},
            Err("mixes operators and the field `b`"),
        );
        check(doc! {"$set": 1}, Err("`$set` takes a document"));
        check(
            doc! {"$setWindowFields": {"a": 1}},
            Err("unknown update operator `$setWindowFields` (rule update-operators"),
        );
        check(doc! {"$set": {"$a": 1}}, Err("`$` segment"));
        check(doc! {"$set": {"a.$[x]": 1}}, Err("`$` segment `$[x]`"));
        check(
            doc! {"$set": {"a": {"$b": 1}}},
            Err("key `$b` starts with `$` (MongoDB would read it as an operator) (rule storage-keys"),
        );
        check(doc! {"$set": {"a": [{"b.c": 1}]}}, Err("key `b.c` contains `.`"));
        check(doc! {"$inc": {"n": "1"}}, Err("`$inc` on `n` takes a number"));
        check(doc! {"$rename": {"a": "$b"}}, Err("`$rename` of `a`"));
        check(
            doc! {"$push": {"p": {"$each": [1], "$bogus": 1}}},
            Err("modifier `$bogus`"),
        );
        check(
            doc! {"$addToSet": {"p": {"$each": [1], "$slice": 1}}},
            Err("modifier `$slice`"),
        );
        check(doc! {"$push": {"p": {"$slice": 1}}}, Err("need `$each`"));
        check(doc! {"$pull": {"l": {"$where": "1"}}}, Err("JavaScript"));
        check(doc! {"$pull": {"l": {"$expr": {}}}}, Err("`$expr` is refused"));
        check(doc! {"$pop": {"q": 2}}, Err("1 or -1"));
        check(doc! {"$bit": {"f": {"nand": 1}}}, Err("and/or/xor"));
        check(doc! {"a": {"$b": 1}}, Err("replacement document): key `$b`"));
        check(doc! {"a.b": 1}, Err("key `a.b` contains `.`"));
    }

    #[test]
    fn documents() {
        assert!(check_document(&doc! {"_id": 1, "a": {"b": [{"c": 1}]}}).is_ok());
        let e = check_document(&doc! {"_id": 1, "a": [{"$set": 1}]}).unwrap_err();
        assert_eq!(e.rule, Rule::StorageKey);
        let e = check_document(&doc! {"a": {"x.y": 1}}).unwrap_err();
        assert!(e.detail.contains("`x.y` contains `.`"), "{e}");
        let e = check_document(&doc! {"a": {"$rand": {}}}).unwrap_err();
        assert_eq!(e.rule, Rule::Nondeterministic);
    }
}
