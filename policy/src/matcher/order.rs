//! MongoDB's order of BSON values: canonical types first (numbers of every
//! type compare by value, exactly), then values; the order `find` sorts
//! by and equality in filters uses.

use super::{Result, unsupported};
use bson::Bson;
use std::cmp::Ordering;

/// MongoDB's canonical type order (`canonicalizeBSONType`): values of
/// different classes compare by this, numbers are one class, and so are
/// strings and symbols.
pub(crate) fn canonical(v: &Bson) -> i32 {
    match v {
        Bson::MinKey => -1,
        Bson::Undefined => 0,
        Bson::Null => 5,
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 127,
    }
}

/// A number as an integer or a double (Decimal128 has no arithmetic in the
/// `bson` crate: unsupported).
#[derive(Clone, Copy)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

pub(super) fn number(v: &Bson) -> Result<Option<Num>> {
    Ok(match v {
        Bson::Int32(n) => Some(Num::Int(i64::from(*n))),
        Bson::Int64(n) => Some(Num::Int(*n)),
        Bson::Double(n) => Some(Num::Float(*n)),
        Bson::Decimal128(d) => return unsupported(format!("Decimal128 value {d} (no exact arithmetic here)")),
        _ => None,
    })
}

/// `i` against `f` exactly (an `i64` does not always fit an `f64`). NaN is
/// below every number, as MongoDB sorts it.
fn int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    // 2^63 as a double; every double at or above it exceeds every i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    match i.cmp(&(whole as i64)) {
        Ordering::Equal if f > whole => Ordering::Less,
        Ordering::Equal if f < whole => Ordering::Greater,
        other => other,
    }
}

fn compare_numbers(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => a.cmp(&b),
        (Num::Int(a), Num::Float(b)) => int_float(a, b),
        (Num::Float(a), Num::Int(b)) => int_float(b, a).reverse(),
        (Num::Float(a), Num::Float(b)) => match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => a.partial_cmp(&b).expect("no NaN"),
        },
    }
}

/// MongoDB's total order of BSON values (sorts, `_id` order, equality):
/// first the canonical type, then the value; documents compare field by
/// field (the value's type, the name, the value), then by length.
pub fn compare(a: &Bson, b: &Bson) -> Result<Ordering> {
    let by_type = canonical(a).cmp(&canonical(b));
    if by_type != Ordering::Equal {
        return Ok(by_type);
    }
    Ok(match (a, b) {
        (Bson::String(a) | Bson::Symbol(a), Bson::String(b) | Bson::Symbol(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Bson::Document(a), Bson::Document(b)) => {
            for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                let o = canonical(va)
                    .cmp(&canonical(vb))
                    .then_with(|| ka.as_bytes().cmp(kb.as_bytes()));
                let o = if o == Ordering::Equal { compare(va, vb)? } else { o };
                if o != Ordering::Equal {
                    return Ok(o);
                }
            }
            a.len().cmp(&b.len())
        }
        (Bson::Array(a), Bson::Array(b)) => {
            for (va, vb) in a.iter().zip(b.iter()) {
                let o = compare(va, vb)?;
                if o != Ordering::Equal {
                    return Ok(o);
                }
            }
            a.len().cmp(&b.len())
        }
        (Bson::Binary(a), Bson::Binary(b)) => a
            .bytes
            .len()
            .cmp(&b.bytes.len())
            .then_with(|| u8::from(a.subtype).cmp(&u8::from(b.subtype)))
            .then_with(|| a.bytes.cmp(&b.bytes)),
        (Bson::ObjectId(a), Bson::ObjectId(b)) => a.bytes().cmp(&b.bytes()),
        (Bson::Boolean(a), Bson::Boolean(b)) => a.cmp(b),
        (Bson::DateTime(a), Bson::DateTime(b)) => a.timestamp_millis().cmp(&b.timestamp_millis()),
        (Bson::Timestamp(a), Bson::Timestamp(b)) => (a.time, a.increment).cmp(&(b.time, b.increment)),
        (Bson::RegularExpression(a), Bson::RegularExpression(b)) => a
            .pattern
            .as_str()
            .cmp(b.pattern.as_str())
            .then_with(|| a.options.as_str().cmp(b.options.as_str())),
        (Bson::JavaScriptCode(a), Bson::JavaScriptCode(b)) => a.cmp(b),
        (Bson::JavaScriptCodeWithScope(a), Bson::JavaScriptCodeWithScope(b)) => {
            let o = a.code.cmp(&b.code);
            if o != Ordering::Equal {
                return Ok(o);
            }
            compare(&Bson::Document(a.scope.clone()), &Bson::Document(b.scope.clone()))?
        }
        (Bson::DbPointer(_), _) => return unsupported("a DBPointer value"),
        (a, b) => match (number(a)?, number(b)?) {
            (Some(a), Some(b)) => compare_numbers(a, b),
            // MinKey, MaxKey, null and undefined: one value each.
            _ => Ordering::Equal,
        },
    })
}

pub(super) fn equal(a: &Bson, b: &Bson) -> Result<bool> {
    Ok(compare(a, b)? == Ordering::Equal)
}
