//! The query allow-list: filters of passes, updates, deletes and lookups,
//! and projections. A filter is field paths and known query operators only;
//! server-side JavaScript (`$where`, `$function`, `$accumulator`),
//! aggregation expressions (`$expr`, not vetted), internal (`$_internal*`)
//! and unknown operators are refused, as are `$rand`, `$$NOW` and
//! `$$CLUSTER_TIME` anywhere (a replay would see other values).

use crate::{Rule, Violation};
use bson::{Bson, Document};

/// Operators that take one literal value.
const COMPARISON: &[&str] = &["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"];
const BITS: &[&str] = &["$bitsAllClear", "$bitsAllSet", "$bitsAnyClear", "$bitsAnySet"];
const LOGICAL: &[&str] = &["$and", "$or", "$nor"];
/// Refused with their own reason wherever they appear.
const JAVASCRIPT: &[&str] = &["$where", "$function", "$accumulator"];

fn query(detail: String) -> Violation {
    Violation::new(Rule::Query, detail)
}

/// Refuses, anywhere inside `doc` (keys and string values, at any depth),
/// server-side JavaScript, internal operators and the nondeterministic
/// `$rand`, `$$NOW` and `$$CLUSTER_TIME`. Runs before the allow-lists so
/// that these get their own reason wherever they hide.
pub(crate) fn forbidden(doc: &Document) -> Result<(), Violation> {
    fn value(v: &Bson) -> Result<(), Violation> {
        match v {
            Bson::Document(d) => forbidden(d),
            Bson::Array(items) => items.iter().try_for_each(value),
            Bson::String(s) => match ["$$NOW", "$$CLUSTER_TIME"].into_iter().find(|v| s.starts_with(v)) {
                Some(variable) => Err(Violation::new(
                    Rule::Nondeterministic,
                    format!("`{variable}` is nondeterministic (a replay would see another value)"),
                )),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
    for (key, v) in doc {
        if JAVASCRIPT.contains(&key.as_str()) {
            return Err(query(format!("`{key}` runs JavaScript on the server")));
        }
        if key.starts_with("$_internal") {
            return Err(query(format!("`{key}` is an internal operator")));
        }
        if key == "$rand" || key == "$currentDate" {
            return Err(Violation::new(
                Rule::Nondeterministic,
                format!("`{key}` is nondeterministic (a replay would see another value)"),
            ));
        }
        value(v)?;
    }
    Ok(())
}

/// A field path: not empty, no empty segment, no segment starting with `$`
/// (update paths may use the positional `$` and `$[]`).
pub(crate) fn field_path(path: &str, positional: bool) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty field name".into());
    }
    for segment in path.split('.') {
        if segment.is_empty() {
            return Err(format!("field path `{path}` has an empty segment"));
        }
        if segment.starts_with('$') && !(positional && (segment == "$" || segment == "$[]")) {
            return Err(format!("field path `{path}` has a `$` segment `{segment}`"));
        }
    }
    Ok(())
}

/// A value compared as it is: documents inside it have no `$` keys (which
/// a server would read as operators in some places and not in others).
pub(crate) fn literal(v: &Bson) -> Result<(), Violation> {
    match v {
        Bson::Document(d) => d.iter().try_for_each(|(k, v)| {
            if k.starts_with('$') {
                Err(query(format!(
                    "`{k}` key inside a value (only operators may start with `$`)"
                )))
            } else {
                literal(v)
            }
        }),
        Bson::Array(items) => items.iter().try_for_each(literal),
        _ => Ok(()),
    }
}

fn is_number(v: &Bson) -> bool {
    matches!(
        v,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
    )
}

fn is_operator_doc(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

/// Checks a filter document (a pass's, an update's or delete's, or a
/// lookup's): field paths with conditions, and `$and`/`$or`/`$nor`/`$comment`.
pub fn check_filter(filter: &Document) -> Result<(), Violation> {
    forbidden(filter)?;
    clauses(filter)
}

fn clauses(filter: &Document) -> Result<(), Violation> {
    for (key, v) in filter {
        match key.as_str() {
            k if LOGICAL.contains(&k) => logical(k, v)?,
            "$comment" => literal(v)?,
            "$expr" => {
                return Err(query(
                    "`$expr` is refused (aggregation expressions are not vetted)".into(),
                ));
            }
            k if k.starts_with('$') => return Err(query(format!("unknown top-level query operator `{k}`"))),
            path => {
                field_path(path, false).map_err(query)?;
                condition(path, v)?;
            }
        }
    }
    Ok(())
}

fn logical(op: &str, v: &Bson) -> Result<(), Violation> {
    match v {
        Bson::Array(items) if !items.is_empty() => items.iter().try_for_each(|item| match item {
            Bson::Document(d) => clauses(d),
            _ => Err(query(format!("`{op}` takes an array of filter documents"))),
        }),
        _ => Err(query(format!("`{op}` takes a non-empty array of filter documents"))),
    }
}

/// The condition on one field: a literal (equality), a regular expression,
/// or a document of query operators.
fn condition(path: &str, v: &Bson) -> Result<(), Violation> {
    match v {
        Bson::Document(d) if is_operator_doc(d) => operators(path, d),
        other => literal(other),
    }
}

fn operators(path: &str, ops: &Document) -> Result<(), Violation> {
    if ops.is_empty() {
        return Err(query(format!("`{path}` has an empty operator document")));
    }
    for (op, arg) in ops {
        operator(path, op, arg)?;
    }
    Ok(())
}

fn operator(path: &str, op: &str, arg: &Bson) -> Result<(), Violation> {
    let bad = |what: &str| Err(query(format!("`{op}` on `{path}` takes {what}")));
    match op {
        o if COMPARISON.contains(&o) => literal(arg),
        "$in" | "$nin" | "$all" => match arg {
            Bson::Array(items) => items.iter().try_for_each(|item| match item {
                // `$all` may hold `{$elemMatch: ...}` clauses.
                Bson::Document(d) if op == "$all" && d.len() == 1 && d.contains_key("$elemMatch") => operators(path, d),
                other => literal(other),
            }),
            _ => bad("an array"),
        },
        "$exists" => match arg {
            Bson::Boolean(_) => Ok(()),
            v if is_number(v) => Ok(()),
            _ => bad("a boolean"),
        },
        "$type" => {
            let ok = |v: &Bson| matches!(v, Bson::String(_)) || is_number(v);
            match arg {
                Bson::Array(items) if items.iter().all(ok) => Ok(()),
                v if ok(v) => Ok(()),
                _ => bad("a type name or number, or an array of them"),
            }
        }
        "$regex" => match arg {
            Bson::String(_) | Bson::RegularExpression(_) => Ok(()),
            _ => bad("a string or regular expression"),
        },
        "$options" => match arg {
            Bson::String(_) => Ok(()),
            _ => bad("a string"),
        },
        "$not" => match arg {
            Bson::RegularExpression(_) => Ok(()),
            Bson::Document(d) if is_operator_doc(d) => operators(path, d),
            _ => bad("a regular expression or an operator document"),
        },
        "$elemMatch" => match arg {
            Bson::Document(d) if !d.is_empty() => {
                // Either operators on the element itself or a filter on its fields.
                for (k, v) in d {
                    if LOGICAL.contains(&k.as_str()) {
                        logical(k, v)?;
                    } else if k.starts_with('$') {
                        operator(path, k, v)?;
                    } else {
                        field_path(k, false).map_err(query)?;
                        condition(k, v)?;
                    }
                }
                Ok(())
            }
            _ => bad("a non-empty document"),
        },
        "$size" => match arg {
            v if is_number(v) => Ok(()),
            _ => bad("a number"),
        },
        "$mod" => match arg {
            Bson::Array(items) if items.len() == 2 && items.iter().all(is_number) => Ok(()),
            _ => bad("an array of two numbers"),
        },
        o if BITS.contains(&o) => match arg {
            Bson::Binary(_) => Ok(()),
            Bson::Array(items) if items.iter().all(is_number) => Ok(()),
            v if is_number(v) => Ok(()),
            _ => bad("a bitmask (number or binary) or an array of bit positions"),
        },
        "$expr" => Err(query(
            "`$expr` is refused (aggregation expressions are not vetted)".into(),
        )),
        other => Err(query(format!("unknown query operator `{other}` on `{path}`"))),
    }
}

/// Checks a projection: field paths with 0/1/true/false, or `$slice` and
/// `$elemMatch` on a field.
pub fn check_projection(projection: &Document) -> Result<(), Violation> {
    forbidden(projection)?;
    let bad = |detail: String| Err(Violation::new(Rule::Projection, detail));
    for (path, v) in projection {
        if let Err(e) = field_path(path, false) {
            return bad(e);
        }
        match v {
            Bson::Boolean(_) => {}
            Bson::Int32(0 | 1) | Bson::Int64(0 | 1) => {}
            Bson::Double(n) if *n == 0.0 || *n == 1.0 => {}
            Bson::Document(d) if d.len() == 1 && d.contains_key("$slice") => match d.get("$slice") {
                Some(Bson::Int32(_) | Bson::Int64(_)) => {}
                Some(Bson::Array(a))
                    if a.len() == 2 && a.iter().all(|n| matches!(n, Bson::Int32(_) | Bson::Int64(_))) => {}
                _ => return bad(format!("`$slice` on `{path}` takes a number or [skip, limit]")),
            },
            Bson::Document(d) if d.len() == 1 && d.contains_key("$elemMatch") => {
                operators(path, d).map_err(|e| Violation::new(Rule::Projection, e.detail))?
            }
            other => return bad(format!("`{path}` is projected with {other}, not 0/1/true/false")),
        }
    }
    Ok(())
}

/// Decodes a lookup's (or any plugin's) filter bytes after the structure
/// and depth check, and checks it against the allow-list.
pub fn check_query(raw: &[u8]) -> Result<Document, Violation> {
    let filter = crate::decode("filter", raw)?;
    check_filter(&filter)?;
    Ok(filter)
}

/// Whether `filter` pins the documents it may touch by `_id`: `{_id: v}`,
/// `{_id: {$eq: v}}` or `{_id: {$in: [v, ...]}}` with plain values (no
/// operator documents, regular expressions or arrays), whatever else it
/// says. Only such a filter touches no more documents than it names.
pub fn is_pinned(filter: &Document) -> bool {
    fn plain(v: &Bson) -> bool {
        match v {
            Bson::RegularExpression(_) | Bson::Array(_) => false,
            Bson::Document(d) => !d.keys().any(|k| k.starts_with('$')),
            _ => true,
        }
    }
    match filter.get("_id") {
        Some(Bson::Document(d)) if is_operator_doc(d) => {
            d.len() == 1
                && match d.iter().next() {
                    Some((op, v)) if op == "$eq" => plain(v),
                    Some((op, Bson::Array(items))) if op == "$in" => items.iter().all(plain),
                    _ => false,
                }
        }
        Some(v) => plain(v),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[track_caller]
    fn check(filter: Document, expect: Result<(), &str>) {
        match (check_filter(&filter), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{filter}: {e}"),
            (got, want) => panic!("{filter}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn allowed_queries() {
        check(doc! {}, Ok(()));
        check(doc! {"a": 1, "b.c": "x", "d": {"e": [1, 2]}}, Ok(()));
        check(
            doc! {"a": {"$eq": 1, "$ne": 2, "$gt": 0, "$gte": 0, "$lt": 9, "$lte": 9}, "b": {"$in": [1, "x"], "$nin": [2]}},
            Ok(()),
        );
        check(
            doc! {"a": {"$exists": true, "$type": ["string", 16]}, "b": {"$type": "int"}},
            Ok(()),
        );
        check(
            doc! {"a": {"$regex": "^x", "$options": "i"}, "b": {"$not": {"$regex": "y"}}},
            Ok(()),
        );
        check(doc! {"a": crate::tests_regex("^x", "")}, Ok(()));
        check(
            doc! {"a": {"$elemMatch": {"k": 1, "v": {"$gt": 2}}}, "b": {"$elemMatch": {"$gt": 1, "$lt": 5}}},
            Ok(()),
        );
        check(doc! {"a": {"$size": 2, "$all": [1, 2]}, "b": {"$mod": [4, 0]}}, Ok(()));
        check(
            doc! {"a": {"$bitsAllSet": 5, "$bitsAnyClear": [1, 3], "$bitsAllClear": 0, "$bitsAnySet": 1}},
            Ok(()),
        );
        check(
            doc! {"$and": [{"a": 1}, {"$or": [{"b": 2}, {"c": {"$nor": []}}]}], "$comment": "why"},
            Err("`$nor` on `c`"),
        );
        check(
            doc! {"$and": [{"a": 1}, {"$or": [{"b": 2}, {"$nor": [{"c": 3}]}]}], "$comment": "why"},
            Ok(()),
        );
    }

    #[test]
    fn refused_queries() {
        check(
            doc! {"$where": "sleep(100)"},
            Err("`$where` runs JavaScript on the server (rule query-operators"),
        );
        check(
            doc! {"a": {"$elemMatch": {"$where": "1"}}},
            Err("`$where` runs JavaScript"),
        );
        check(
            doc! {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}},
            Err("`$function` runs JavaScript"),
        );
        check(
            doc! {"$expr": {"$accumulator": {}}},
            Err("`$accumulator` runs JavaScript"),
        );
        check(doc! {"$expr": {"$eq": ["$a", 1]}}, Err("`$expr` is refused"));
        check(doc! {"a": {"$_internalSchemaType": 1}}, Err("internal operator"));
        check(
            doc! {"$expr": {"$lt": [{"$rand": {}}, 0.5]}},
            Err("`$rand` is nondeterministic"),
        );
        check(doc! {"a": {"$lt": "$$NOW"}}, Err("`$$NOW` is nondeterministic"));
        check(
            doc! {"a": {"$in": ["$$CLUSTER_TIME"]}},
            Err("`$$CLUSTER_TIME` is nondeterministic"),
        );
        check(
            doc! {"a": {"$near": [0, 0]}},
            Err("unknown query operator `$near` on `a`"),
        );
        check(
            doc! {"$text": {"$search": "x"}},
            Err("unknown top-level query operator `$text`"),
        );
        check(doc! {"$and": []}, Err("non-empty array"));
        check(doc! {"$or": [1]}, Err("array of filter documents"));
        check(doc! {"a..b": 1}, Err("empty segment"));
        check(doc! {"a.$b": 1}, Err("`$` segment"));
        check(doc! {"a": {"$eq": {"$gt": 1}}}, Err("`$gt` key inside a value"));
        check(doc! {"a": {"b": {"$gt": 1}}}, Err("`$gt` key inside a value"));
        check(doc! {"a": {}}, Ok(()));
        check(doc! {"a": {"$size": "2"}}, Err("`$size` on `a` takes a number"));
        check(doc! {"a": {"$not": 5}}, Err("`$not` on `a` takes"));
        check(doc! {"a": {"$in": 5}}, Err("takes an array"));
    }

    #[test]
    fn projections() {
        let check = |p: Document, expect: Result<(), &str>| match (check_projection(&p), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{p}: {e}"),
            (got, want) => panic!("{p}: got {got:?}, want {want:?}"),
        };
        check(doc! {"a": 1, "b.c": true, "_id": 0, "d": 1.0}, Ok(()));
        check(
            doc! {"a": {"$slice": 5}, "b": {"$slice": [1, 2]}, "c": {"$elemMatch": {"k": 1}}},
            Ok(()),
        );
        check(doc! {"a": "$b"}, Err("not 0/1/true/false (rule projection"));
        check(doc! {"a": 2}, Err("not 0/1"));
        check(doc! {"a": {"$meta": "textScore"}}, Err("not 0/1"));
        check(doc! {"a": {"$function": {}}}, Err("JavaScript"));
        check(doc! {"$a": 1}, Err("`$` segment"));
    }

    #[test]
    fn pins() {
        let pinned = |f: Document| is_pinned(&f);
        assert!(pinned(doc! {"_id": 1}));
        assert!(pinned(doc! {"_id": "x", "other": {"$gt": 1}}));
        assert!(pinned(doc! {"_id": {"$eq": bson::oid::ObjectId::from_bytes([1; 12])}}));
        assert!(pinned(doc! {"_id": {"$in": [1, 2]}}));
        assert!(pinned(doc! {"_id": {"a": 1, "b": 2}}));
        assert!(!pinned(doc! {"_id": {"$exists": true}}));
        assert!(!pinned(doc! {"_id": {"$in": [1], "$gt": 0}}));
        assert!(!pinned(doc! {"_id": {"$in": [{"$gt": 0}]}}));
        assert!(!pinned(doc! {"_id": {"$ne": 1}}));
        assert!(!pinned(doc! {"_id": [1, 2]}));
        assert!(!pinned(doc! {"_id": crate::tests_regex(".", "")}));
        assert!(!pinned(doc! {"a": 1}));
        assert!(!pinned(doc! {"$or": [{"_id": 1}]}));
    }
}
