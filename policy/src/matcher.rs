//! In-memory evaluation of the filters and projections the query allow-list
//! accepts, with MongoDB's semantics, for the SDK's test harness: which
//! documents a pass reads and what they look like after its projection.
//!
//! What MongoDB does and this module copies (the table in the tests, checked
//! against a real server by `tests/e2e/matcher.rs`):
//! - comparisons bracket by type: `{$gt: 5}` matches numbers only (ints,
//!   longs and doubles compare by value), `{$gt: "a"}` strings only; equality
//!   orders documents field by field, names included;
//! - a path through an array looks into each element document (`a.b` on
//!   `{a: [{b: 1}, {b: 2}]}` sees 1 and 2) and a numeric segment also takes
//!   the element at that index; a condition on an array value matches the
//!   array itself or any of its elements;
//! - a missing field equals `null` (and `$in: [null]`, `$gte: null`);
//!   `$ne`, `$nin`, `$not`, `$nor` and `$exists: false` are the negation of
//!   the whole positive condition, so `{a: {$ne: 1}}` refuses `{a: [1, 2]}`;
//! - projections include or exclude (never both, `_id` aside), keep `_id`
//!   unless it is excluded, and go through arrays on dotted paths.
//!
//! **Invariant:** never guesses. Anything it cannot evaluate exactly as the
//! server would - regular expressions, Decimal128, arguments the server
//! itself refuses - is an [`Unsupported`] error, never a silent match or
//! mismatch.

use bson::{Bson, Document};
use std::cmp::Ordering;

pub(crate) mod order;
mod project;
pub use order::compare;
use order::{Num, canonical, equal, number};
pub use project::project;

/// A filter or projection (or a value in the data) this module cannot
/// evaluate as MongoDB would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

type Result<T> = std::result::Result<T, Unsupported>;

fn unsupported<T>(detail: impl Into<String>) -> Result<T> {
    Err(Unsupported(detail.into()))
}

/// What a path yields in a document: a value (and whether it is an element
/// of the array the path ends on, which `$size` and `$elemMatch` do not
/// look into) or nothing.
#[derive(Debug, Clone, Copy)]
enum Found<'a> {
    Missing,
    Value { value: &'a Bson, element: bool },
}

fn lookup<'a>(doc: &'a Document, path: &str) -> Vec<Found<'a>> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut found = Vec::new();
    walk(doc.get(segments[0]), &segments[1..], true, &mut found);
    found
}

/// Follows `rest` from `value`. The array a path ends on is looked into (its
/// elements are candidates too) unless it was itself reached as an element
/// of an array by index: arrays in arrays are never looked into. A field
/// missing from a document is `Missing`; values of an array that are not
/// documents yield nothing (the server does not match `{"a.b": null}` on
/// `{a: [1]}`).
fn walk<'a>(value: Option<&'a Bson>, rest: &[&str], expand: bool, out: &mut Vec<Found<'a>>) {
    let Some(value) = value else {
        out.push(Found::Missing);
        return;
    };
    let Some((segment, rest)) = rest.split_first() else {
        out.push(Found::Value { value, element: false });
        if let (Bson::Array(items), true) = (value, expand) {
            out.extend(items.iter().map(|value| Found::Value { value, element: true }));
        }
        return;
    };
    match value {
        Bson::Document(d) => walk(d.get(*segment), rest, true, out),
        Bson::Array(items) => {
            if let Some(item) = index(segment).and_then(|i| items.get(i)) {
                walk(Some(item), rest, false, out);
            }
            for item in items {
                if let Bson::Document(d) = item {
                    walk(d.get(*segment), rest, true, out);
                }
            }
        }
        _ => out.push(Found::Missing),
    }
}

fn index(segment: &str) -> Option<usize> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// Evaluates every item (so that an unsupported clause fails even where an
/// earlier one already decided) and combines them.
fn all(items: impl IntoIterator<Item = Result<bool>>) -> Result<bool> {
    let mut result = true;
    for item in items {
        result &= item?;
    }
    Ok(result)
}

fn any(items: impl IntoIterator<Item = Result<bool>>) -> Result<bool> {
    let mut result = false;
    for item in items {
        result |= item?;
    }
    Ok(result)
}

/// Whether `doc` matches `filter` as MongoDB's `find` would decide. Every
/// clause is evaluated, so an operator this module cannot evaluate is an
/// error for every document, not only for those that reach it.
pub fn matches(doc: &Document, filter: &Document) -> Result<bool> {
    all(filter.iter().map(|(key, v)| clause(doc, key, v)))
}

fn filters<'a>(op: &str, v: &'a Bson) -> Result<Vec<&'a Document>> {
    match v {
        Bson::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Bson::Document(d) => Ok(d),
                _ => unsupported(format!("`{op}` takes an array of filter documents")),
            })
            .collect(),
        _ => unsupported(format!("`{op}` takes a non-empty array of filter documents")),
    }
}

fn clause(doc: &Document, key: &str, v: &Bson) -> Result<bool> {
    match key {
        "$and" => all(filters(key, v)?.into_iter().map(|f| matches(doc, f))),
        "$or" => any(filters(key, v)?.into_iter().map(|f| matches(doc, f))),
        "$nor" => Ok(!any(filters(key, v)?.into_iter().map(|f| matches(doc, f)))?),
        "$comment" => Ok(true),
        k if k.starts_with('$') => unsupported(format!("top-level operator `{k}`")),
        path => condition(&lookup(doc, path), path, v),
    }
}

fn is_operator_doc(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

/// The condition on one path: an operator document, or a value to equal.
fn condition(found: &[Found], path: &str, v: &Bson) -> Result<bool> {
    match v {
        Bson::Document(ops) if is_operator_doc(ops) => all(ops.iter().map(|(op, arg)| operator(found, path, op, arg))),
        other => equals(found, path, other),
    }
}

/// Refuses an argument the matcher cannot compare as the server does: a
/// regular expression (which matches strings), Decimal128 or DBPointer
/// anywhere inside it. Checked before any document is looked at, so the
/// answer does not depend on the data.
fn no_regex(path: &str, v: &Bson) -> Result<()> {
    fn inside(path: &str, v: &Bson) -> Result<()> {
        match v {
            Bson::Decimal128(d) => unsupported(format!("Decimal128 value {d} on `{path}` (no exact arithmetic here)")),
            Bson::DbPointer(_) => unsupported(format!("a DBPointer value on `{path}`")),
            Bson::Document(d) => d.values().try_for_each(|v| inside(path, v)),
            Bson::Array(items) => items.iter().try_for_each(|v| inside(path, v)),
            _ => Ok(()),
        }
    }
    match v {
        Bson::RegularExpression(r) => unsupported(format!(
            "regular expression /{}/{} on `{path}` (the harness does not run the server's PCRE)",
            r.pattern.as_str(),
            r.options.as_str()
        )),
        other => inside(path, other),
    }
}

/// Equality, with a missing field equal to `null`.
fn equals(found: &[Found], path: &str, v: &Bson) -> Result<bool> {
    no_regex(path, v)?;
    any(found.iter().map(|f| match f {
        Found::Missing => Ok(matches!(v, Bson::Null)),
        Found::Value { value, .. } => equal(value, v),
    }))
}

fn integral(path: &str, op: &str, v: &Bson) -> Result<i64> {
    match number(v)? {
        Some(Num::Int(n)) => Ok(n),
        Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
        _ => unsupported(format!("`{op}` on `{path}` with {v} (the server refuses it)")),
    }
}

fn operator(found: &[Found], path: &str, op: &str, arg: &Bson) -> Result<bool> {
    let values = || {
        found.iter().filter_map(|f| match f {
            Found::Value { value, element } => Some((*value, *element)),
            Found::Missing => None,
        })
    };
    match op {
        "$eq" => equals(found, path, arg),
        "$ne" => Ok(!equals(found, path, arg)?),
        "$gt" | "$gte" | "$lt" | "$lte" => {
            let wanted: &[Ordering] = match op {
                "$gt" => &[Ordering::Greater],
                "$gte" => &[Ordering::Greater, Ordering::Equal],
                "$lt" => &[Ordering::Less],
                _ => &[Ordering::Less, Ordering::Equal],
            };
            no_regex(path, arg)?;
            match arg {
                Bson::MinKey | Bson::MaxKey => {
                    return unsupported(format!("`{op}` on `{path}` with MinKey or MaxKey"));
                }
                // `null` brackets with missing fields: only `$gte`/`$lte` match, as equality.
                Bson::Null => {
                    return if wanted.contains(&Ordering::Equal) {
                        equals(found, path, arg)
                    } else {
                        Ok(false)
                    };
                }
                _ => {}
            }
            any(values().map(|(value, _)| {
                if canonical(value) != canonical(arg) {
                    return Ok(false);
                }
                // NaN equals NaN and is neither below nor above anything in a query
                // (though it sorts below every number).
                if value_is_nan(value) || value_is_nan(arg) {
                    return Ok(value_is_nan(value) && value_is_nan(arg) && wanted.contains(&Ordering::Equal));
                }
                Ok(wanted.contains(&compare(value, arg)?))
            }))
        }
        "$in" | "$nin" => {
            let Bson::Array(options) = arg else {
                return unsupported(format!("`{op}` on `{path}` takes an array"));
            };
            let found_any = any(options.iter().map(|o| equals(found, path, o)))?;
            Ok(found_any == (op == "$in"))
        }
        "$all" => {
            let Bson::Array(items) = arg else {
                return unsupported(format!("`$all` on `{path}` takes an array"));
            };
            if items.is_empty() {
                return Ok(false);
            }
            all(items.iter().map(|item| match item {
                Bson::Document(d) if d.len() == 1 && d.contains_key("$elemMatch") => {
                    operator(found, path, "$elemMatch", d.get("$elemMatch").expect("checked"))
                }
                other => equals(found, path, other),
            }))
        }
        "$exists" => {
            let wanted = match arg {
                Bson::Boolean(b) => *b,
                other => match number(other)? {
                    Some(Num::Int(n)) => n != 0,
                    Some(Num::Float(f)) => f != 0.0,
                    None => return unsupported(format!("`$exists` on `{path}` takes a boolean")),
                },
            };
            Ok(values().next().is_some() == wanted)
        }
        "$type" => {
            let wanted = match arg {
                Bson::Array(items) => items.iter().map(|t| type_code(path, t)).collect::<Result<Vec<_>>>()?,
                one => vec![type_code(path, one)?],
            };
            Ok(values().any(|(value, _)| wanted.iter().any(|t| t.matches(value))))
        }
        "$regex" | "$options" => unsupported(format!(
            "`{op}` on `{path}` (the harness does not run the server's PCRE)"
        )),
        "$not" => match arg {
            Bson::Document(ops) if is_operator_doc(ops) => Ok(!condition(found, path, arg)?),
            other => {
                no_regex(path, other)?;
                unsupported(format!("`$not` on `{path}` takes an operator document"))
            }
        },
        "$elemMatch" => {
            let Bson::Document(sub) = arg else {
                return unsupported(format!("`$elemMatch` on `{path}` takes a document"));
            };
            let form = elem_match_form(path, sub)?;
            any(values().filter(|(_, element)| !element).map(|(value, _)| match value {
                Bson::Array(items) => any(items.iter().map(|item| elem_matches(form, path, sub, item))),
                _ => Ok(false),
            }))
        }
        "$size" => {
            let n = integral(path, op, arg)?;
            if n < 0 {
                return unsupported(format!("`$size` on `{path}` with a negative size"));
            }
            Ok(values().any(|(value, element)| !element && matches!(value, Bson::Array(a) if a.len() as i64 == n)))
        }
        "$mod" => {
            let divisor_remainder = match arg {
                Bson::Array(items) if items.len() == 2 => {
                    (mod_operand(path, &items[0])?, mod_operand(path, &items[1])?)
                }
                _ => return unsupported(format!("`$mod` on `{path}` takes [divisor, remainder]")),
            };
            let (divisor, remainder) = divisor_remainder;
            if divisor == 0 {
                return unsupported(format!("`$mod` on `{path}` by 0 (the server refuses it)"));
            }
            any(values().map(|(value, _)| {
                Ok(match number(value)? {
                    Some(Num::Int(n)) => n.wrapping_rem(divisor) == remainder,
                    Some(Num::Float(f)) if f.is_finite() => (f.trunc() as i64).wrapping_rem(divisor) == remainder,
                    _ => false,
                })
            }))
        }
        "$bitsAllSet" | "$bitsAnySet" | "$bitsAllClear" | "$bitsAnyClear" => {
            let positions = bit_positions(path, op, arg)?;
            let (set, every) = match op {
                "$bitsAllSet" => (true, true),
                "$bitsAnySet" => (true, false),
                "$bitsAllClear" => (false, true),
                _ => (false, false),
            };
            any(values().map(|(value, _)| {
                let Some(bit) = bits_of(value)? else {
                    return Ok(false);
                };
                let test = |p: &u64| bit(*p) == set;
                Ok(if every {
                    positions.iter().all(test)
                } else {
                    positions.iter().any(test)
                })
            }))
        }
        other => unsupported(format!("query operator `{other}` on `{path}`")),
    }
}

fn value_is_nan(v: &Bson) -> bool {
    matches!(v, Bson::Double(f) if f.is_nan())
}

fn mod_operand(path: &str, v: &Bson) -> Result<i64> {
    match number(v)? {
        Some(Num::Int(n)) => Ok(n),
        Some(Num::Float(f)) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.trunc() as i64),
        _ => unsupported(format!("`$mod` on `{path}` with {v} (the server refuses it)")),
    }
}

/// The bit positions a `$bits*` argument names: a non-negative integer
/// mask, binary data (bit 0 is the first byte's lowest bit) or positions.
fn bit_positions(path: &str, op: &str, arg: &Bson) -> Result<Vec<u64>> {
    let refused = || Unsupported(format!("`{op}` on `{path}` with {arg} (the server refuses it)"));
    match arg {
        Bson::Binary(b) => Ok(binary_positions(&b.bytes)),
        Bson::Array(items) => items
            .iter()
            .map(|p| match integral(path, op, p) {
                Ok(n) if n >= 0 => Ok(n as u64),
                _ => Err(refused()),
            })
            .collect(),
        mask => match integral(path, op, mask) {
            Ok(n) if n >= 0 => Ok((0..63).filter(|p| n >> p & 1 == 1).collect()),
            _ => Err(refused()),
        },
    }
}

fn binary_positions(bytes: &[u8]) -> Vec<u64> {
    (0..bytes.len() as u64 * 8)
        .filter(|p| bytes[(p / 8) as usize] >> (p % 8) & 1 == 1)
        .collect()
}

/// The bits of a value `$bits*` looks at: an integral number as 64-bit
/// two's complement (sign-extended past bit 63) or binary data; other
/// values match no bit operator.
#[allow(clippy::type_complexity)]
fn bits_of(value: &Bson) -> Result<Option<Box<dyn Fn(u64) -> bool + '_>>> {
    Ok(match value {
        Bson::Binary(b) => Some(Box::new(move |p: u64| {
            b.bytes
                .get((p / 8) as usize)
                .is_some_and(|byte| byte >> (p % 8) & 1 == 1)
        })),
        other => {
            let n = match number(other)? {
                Some(Num::Int(n)) => n,
                Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => f as i64,
                _ => return Ok(None),
            };
            Some(Box::new(move |p: u64| n >> p.min(63) & 1 == 1))
        }
    })
}

#[derive(Debug, Clone, Copy)]
enum ElemMatch {
    /// `{$gt: 1, $lt: 5}`: operators on the element itself.
    Value,
    /// `{k: 1, v: {$gt: 2}}`: a filter on the element's fields.
    Object,
}

fn elem_match_form(path: &str, sub: &Document) -> Result<ElemMatch> {
    let operator = |k: &str| k.starts_with('$') && !matches!(k, "$and" | "$or" | "$nor");
    match (sub.keys().all(|k| operator(k)), sub.keys().any(|k| operator(k))) {
        (true, _) => Ok(ElemMatch::Value),
        (false, false) => Ok(ElemMatch::Object),
        _ => unsupported(format!(
            "`$elemMatch` on `{path}` mixes operators and fields (the server refuses it)"
        )),
    }
}

fn elem_matches(form: ElemMatch, path: &str, sub: &Document, item: &Bson) -> Result<bool> {
    match form {
        ElemMatch::Value => {
            let found = [Found::Value {
                value: item,
                element: false,
            }];
            all(sub.iter().map(|(op, arg)| operator(&found, path, op, arg)))
        }
        ElemMatch::Object => match item {
            Bson::Document(d) => matches(d, sub),
            Bson::Array(items) => {
                let d: Document = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i.to_string(), v.clone()))
                    .collect();
                matches(&d, sub)
            }
            _ => Ok(false),
        },
    }
}

/// One `$type` argument: a BSON type number or alias, or `"number"`.
#[derive(Debug, Clone, Copy)]
enum TypeCode {
    Code(i64),
    Number,
}

impl TypeCode {
    fn matches(self, v: &Bson) -> bool {
        match self {
            TypeCode::Number => matches!(
                v,
                Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_)
            ),
            TypeCode::Code(code) => v.element_type() as u8 as i8 as i64 == code,
        }
    }
}

fn type_code(path: &str, v: &Bson) -> Result<TypeCode> {
    const ALIASES: &[(&str, i64)] = &[
        ("double", 1),
        ("string", 2),
        ("object", 3),
        ("array", 4),
        ("binData", 5),
        ("undefined", 6),
        ("objectId", 7),
        ("bool", 8),
        ("date", 9),
        ("null", 10),
        ("regex", 11),
        ("dbPointer", 12),
        ("javascript", 13),
        ("symbol", 14),
        ("javascriptWithScope", 15),
        ("int", 16),
        ("timestamp", 17),
        ("long", 18),
        ("decimal", 19),
        ("minKey", -1),
        ("maxKey", 127),
    ];
    let known = |n: i64| (1..=19).contains(&n) || n == -1 || n == 127;
    match v {
        Bson::String(s) if s == "number" => Ok(TypeCode::Number),
        Bson::String(s) => match ALIASES.iter().find(|(name, _)| name == s) {
            Some((_, code)) => Ok(TypeCode::Code(*code)),
            None => unsupported(format!(
                "`$type` on `{path}` with unknown type `{s}` (the server refuses it)"
            )),
        },
        n => match integral(path, "$type", n) {
            Ok(code) if known(code) => Ok(TypeCode::Code(code)),
            _ => unsupported(format!(
                "`$type` on `{path}` with unknown type {n} (the server refuses it)"
            )),
        },
    }
}

#[cfg(test)]
mod tests;
