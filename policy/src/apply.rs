//! The after-image of an update, computed in memory from the before-image:
//! the document the server will store when it applies an update the
//! allow-list accepts (`update::check_update`) to one document, byte for
//! byte, so that the host can hash it without reading it back.
//!
//! What MongoDB (5.0 and later) does and this module copies (the table in
//! `apply/cases.rs`, and a differential test over random documents and
//! updates, run against a real server by `tests/e2e/update_eval.rs`):
//! - every operator's paths form one tree; two paths where one is a prefix
//!   of the other (or equal) conflict and the whole update fails; the tree is
//!   applied in order of its paths, segment by segment, names in byte order
//!   and numeric names in numeric order - so new fields are appended in that
//!   order whatever the order of the update's operators and fields;
//! - an existing field keeps its position when its value changes; a new
//!   field goes at the end of its document, with missing intermediate
//!   documents created on the way (a numeric segment names a field there, not
//!   an index); a numeric segment indexes an array, and setting past its end
//!   pads it with nulls;
//! - `$rename` is applied at its destination's place in the tree: the
//!   destination is removed, appended with the source's value, and the
//!   source removed; paths through arrays on either side fail;
//! - `$inc` and `$mul` keep int32 while the result fits, promote an
//!   overflowing int32 result to int64, fail on int64 overflow, and give a
//!   double as soon as a double is involved; on a missing field `$inc`
//!   stores its operand plus int32 zero (`-0.0` becomes `0.0`) and `$mul`
//!   its operand times int32 zero (`-0.0` for a negative double); `$bit`
//!   works on int32s;
//! - `$min`, `$max`, `$addToSet`, `$pull` and `$pullAll` compare in BSON's
//!   order (`matcher::compare`: `1` equals `1.0`); `$pull` with a condition
//!   evaluates it with `matcher::matches`;
//! - operators that cannot create (`$unset`, `$pull`, `$pullAll`, `$pop`) do
//!   nothing where the path does not lead anywhere; the others fail where it
//!   cannot be created (through a scalar, or a name on an array).
//!
//! **Invariant:** never guesses. What it cannot evaluate exactly as the
//! server would is [`ApplyError::Unsupported`] (Decimal128 arithmetic and
//! comparisons, regular expressions, the positional `$` and `$[]`, updates
//! of `_id`, `$sort` through arrays or over non-documents, and where
//! SecantusDB, the test server, differs from MongoDB: see `Order` and
//! `same`), and what the server refuses is
//! [`ApplyError::Refused`]; in both cases the host reads the after-image
//! from the server instead.

use crate::matcher::{self, compare};
use bson::{Bson, Document};
use std::cmp::Ordering;

/// Why an update's after-image was not computed here: the host then reads
/// it from the server (which either stores something or fails the write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The server refuses this update on this document (a conflict between
    /// paths, arithmetic on a string, a field that cannot be created).
    #[error("the server would refuse the update: {0}")]
    Refused(String),
    /// Something this module does not evaluate exactly as the server would.
    #[error("not evaluated here: {0}")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, ApplyError>;

fn refused<T>(detail: impl Into<String>) -> Result<T> {
    Err(ApplyError::Refused(detail.into()))
}

fn unsupported<T>(detail: impl Into<String>) -> Result<T> {
    Err(ApplyError::Unsupported(detail.into()))
}

impl From<matcher::Unsupported> for ApplyError {
    fn from(e: matcher::Unsupported) -> Self {
        ApplyError::Unsupported(e.0)
    }
}

/// Which document an update applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A document the filter matched: `$setOnInsert` does nothing.
    Existing,
    /// The document an upsert inserts: the given document is the one the
    /// server seeds from the filter's equalities (with its `_id`), and
    /// `$setOnInsert` applies.
    Upserted,
}

/// The document the server stores after applying `update` (operators or a
/// replacement, as [`crate::check_update`] accepts) to `doc`. An update that
/// changes nothing returns `doc` unchanged.
pub fn apply_update(doc: &Document, update: &Document, target: Target) -> Result<Document> {
    apply_update_encoded(doc.clone(), update, target).map(|(after, _)| after)
}

/// [`apply_update`] on a document the caller gives up, with the after-image
/// also encoded (what it hashes to is what the server stores).
pub fn apply_update_encoded(doc: Document, update: &Document, target: Target) -> Result<(Document, Vec<u8>)> {
    if doc.keys().next().map(String::as_str) != Some("_id") {
        return unsupported("the document has no `_id` first (the server would place one)");
    }
    let after = if update.keys().any(|k| k.starts_with('$')) {
        let ops = parse_ops(update)?;
        let orders = [Order::Paths, Order::Given, Order::Bytes].map(|order| sequence(&ops, order));
        let renames = ops.iter().any(|(_, op)| matches!(op, Op::RenameTo(_)));
        if !renames && orders[1..].iter().all(|o| *o == orders[0]) {
            // Every order applies the same operations in the same sequence
            // (one path, or paths already in byte and path order): one
            // evaluation answers for all.
            run_ops(doc, &ops, &orders[0], target, Order::Paths)?
        } else {
            // Answer only where every order stores the same bytes (see `Order`).
            let [paths, others @ ..] = [Order::Paths, Order::Given, Order::Bytes]
                .map(|order| run_ops(doc.clone(), &ops, &orders[order as usize], target, order));
            let paths_bytes = paths.as_ref().ok().map(encode).transpose()?;
            for other in others {
                match (&paths, &other) {
                    (Ok(_), Ok(other)) if paths_bytes.as_ref() == Some(&encode(other)?) => {}
                    (Err(_), Err(_)) => {}
                    (Err(ApplyError::Unsupported(e)), _) | (_, Err(ApplyError::Unsupported(e))) => {
                        return unsupported(e.clone());
                    }
                    _ => {
                        return unsupported(
                            "the field order depends on the server (MongoDB 5.0+ applies the update's paths in order, \
                             SecantusDB in the update's own order, or by bytes for an upsert)",
                        );
                    }
                }
            }
            paths?
        }
    } else {
        replacement(&doc, update)?
    };
    let bytes = encode(&after)?;
    if bytes.len() > crate::MAX_BSON_BYTES {
        return refused(format!(
            "the after-image is {} bytes, over the 16 MiB limit",
            bytes.len()
        ));
    }
    if depth_over(&after, crate::MAX_DEPTH) {
        return unsupported("the after-image nests deeper than 100 levels");
    }
    Ok((after, bytes))
}

fn encode(doc: &Document) -> Result<Vec<u8>> {
    doc.to_vec()
        .map_err(|e| ApplyError::Unsupported(format!("the after-image does not encode: {e}")))
}

fn depth_over(doc: &Document, budget: usize) -> bool {
    fn value(v: &Bson, budget: usize) -> bool {
        match v {
            Bson::Document(d) => depth_over(d, budget),
            Bson::Array(items) => budget <= 1 || items.iter().any(|v| value(v, budget - 1)),
            _ => false,
        }
    }
    budget == 0 || doc.values().any(|v| value(v, budget - 1))
}

/// A replacement keeps the document's `_id`, first.
fn replacement(doc: &Document, replacement: &Document) -> Result<Document> {
    let id = doc.get("_id").expect("checked by the caller");
    if let Some(given) = replacement.get("_id") {
        if !same_bytes(given, id) {
            return refused("a replacement may not change `_id`");
        }
        if replacement.keys().next().map(String::as_str) != Some("_id") {
            return unsupported("a replacement with `_id` not first");
        }
        return Ok(replacement.clone());
    }
    let mut after = Document::new();
    after.insert("_id", id.clone());
    after.extend(replacement.clone());
    Ok(after)
}

fn same_bytes(a: &Bson, b: &Bson) -> bool {
    let bytes = |v: &Bson| bson::doc! {"v": v.clone()}.to_vec().ok();
    bytes(a).is_some() && bytes(a) == bytes(b)
}

/// One operator at one path of the update's tree.
#[derive(Debug)]
enum Op<'a> {
    Set(&'a Bson),
    SetOnInsert(&'a Bson),
    Unset,
    Inc(Num),
    Mul(Num),
    Min(&'a Bson),
    Max(&'a Bson),
    Push(Push<'a>),
    AddToSet(Vec<&'a Bson>),
    Pull(&'a Bson),
    PullAll(&'a [Bson]),
    Pop {
        first: bool,
    },
    Bit(Vec<(BitOp, Num)>),
    /// `$rename`'s destination, with its source's path.
    RenameTo(Vec<&'a str>),
    /// `$rename`'s source: only takes its place in the tree (conflicts).
    RenameFrom,
}

#[derive(Debug)]
struct Push<'a> {
    each: Vec<&'a Bson>,
    position: Option<i64>,
    slice: Option<i64>,
    sort: Option<Sort<'a>>,
}

#[derive(Debug)]
enum Sort<'a> {
    Values(bool),
    Fields(Vec<(Vec<&'a str>, bool)>),
}

#[derive(Debug, Clone, Copy)]
enum BitOp {
    And,
    Or,
    Xor,
}

/// The order a server applies an update's paths in. MongoDB 5.0 and later
/// apply its tree in path order (`Paths`), whatever the order of the
/// update's operators and fields, and `$rename` appends its destination
/// even where it exists (its documentation: "the operation may not preserve
/// the order of the fields"). SecantusDB, the test server, applies them in
/// the update document's order and renames onto an existing destination in
/// place (`Given`), and builds an upserted document in byte order of the
/// paths, numeric names included (`Bytes`); measured by
/// `tests/e2e/update_eval.rs`. They differ only in the order of fields an
/// update adds or renames; [`apply_update`] answers where all agree and
/// leaves the rest to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Paths,
    Given,
    Bytes,
}

/// An update's operations, each at its path, in the update's own order;
/// refused where one path is on another's way (the server's conflict).
fn parse_ops(update: &Document) -> Result<Vec<(Vec<&str>, Op<'_>)>> {
    let mut ops: Vec<(Vec<&str>, Op)> = Vec::new();
    for (name, arg) in update {
        let Bson::Document(fields) = arg else {
            return refused(format!("`{name}` takes a document of fields"));
        };
        for (path, v) in fields {
            let at = segments(path)?;
            let op = match name.as_str() {
                "$set" => Op::Set(v),
                "$setOnInsert" => Op::SetOnInsert(v),
                "$unset" => Op::Unset,
                "$inc" => Op::Inc(operand_number(name, path, v)?),
                "$mul" => Op::Mul(operand_number(name, path, v)?),
                "$min" => Op::Min(v),
                "$max" => Op::Max(v),
                "$push" => Op::Push(push(path, v)?),
                "$addToSet" => Op::AddToSet(add_to_set(path, v)?),
                "$pull" => Op::Pull(v),
                "$pullAll" => match v {
                    Bson::Array(items) => Op::PullAll(items),
                    _ => return refused(format!("`$pullAll` on `{path}` takes an array")),
                },
                "$pop" => match v {
                    Bson::Int32(1) | Bson::Int64(1) => Op::Pop { first: false },
                    Bson::Int32(-1) | Bson::Int64(-1) => Op::Pop { first: true },
                    Bson::Double(n) if *n == 1.0 => Op::Pop { first: false },
                    Bson::Double(n) if *n == -1.0 => Op::Pop { first: true },
                    _ => return refused(format!("`$pop` on `{path}` takes 1 or -1")),
                },
                "$bit" => Op::Bit(bit(path, v)?),
                "$rename" => {
                    let Bson::String(to) = v else {
                        return refused(format!("`$rename` of `{path}` takes a string"));
                    };
                    let to = segments(to)?;
                    if to == at {
                        return refused(format!("`$rename` of `{path}` to itself"));
                    }
                    ops.push((at.clone(), Op::RenameFrom));
                    ops.push((to, Op::RenameTo(at)));
                    continue;
                }
                "$currentDate" => return unsupported("`$currentDate` (the server's clock)"),
                other => return unsupported(format!("update operator `{other}`")),
            };
            ops.push((at, op));
        }
    }
    // The server's tree applies its paths in path order; one path on
    // another's way is a conflict it refuses. A prefix sorts just before
    // its extensions, so neighbours tell.
    let mut sorted: Vec<&Vec<&str>> = ops.iter().map(|(path, _)| path).collect();
    sorted.sort_by(|a, b| compare_paths(a, b));
    for pair in sorted.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.starts_with(a) {
            return refused(format!("updating `{}` and `{}` conflicts", a.join("."), b.join(".")));
        }
    }
    Ok(ops)
}

/// The sequence, as indexes into `ops`, in which a server of `order`
/// applies them.
fn sequence(ops: &[(Vec<&str>, Op)], order: Order) -> Vec<usize> {
    let mut at: Vec<usize> = (0..ops.len()).collect();
    match order {
        Order::Paths => at.sort_by(|&a, &b| compare_paths(&ops[a].0, &ops[b].0)),
        Order::Bytes => at.sort_by(|&a, &b| ops[a].0.cmp(&ops[b].0)),
        Order::Given => {}
    }
    at
}

fn run_ops(
    mut doc: Document,
    ops: &[(Vec<&str>, Op)],
    sequence: &[usize],
    target: Target,
    order: Order,
) -> Result<Document> {
    for &i in sequence {
        let (path, op) = &ops[i];
        apply_one(&mut doc, path, op, target, order)?;
    }
    Ok(doc)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The server's order of a node's children (`cmpPathsAndArrayIndexes`):
/// numeric names by value, others by bytes.
fn compare_segments(a: &str, b: &str) -> Ordering {
    if a.len() != b.len() && is_digits(a) && is_digits(b) {
        a.len().cmp(&b.len())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

fn compare_paths(a: &[&str], b: &[&str]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = compare_segments(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn segments(path: &str) -> Result<Vec<&str>> {
    let segments: Vec<&str> = path.split('.').collect();
    for s in &segments {
        if s.is_empty() {
            return refused(format!("field path `{path}` has an empty segment"));
        }
        if s.starts_with('$') {
            return unsupported(format!("positional segment `{s}` in `{path}` (the server resolves it)"));
        }
        if s.len() > 1 && s.starts_with('0') && is_digits(s) {
            return unsupported(format!("numeric segment `{s}` with a leading zero in `{path}`"));
        }
    }
    if segments[0] == "_id" {
        return unsupported(format!("`{path}` updates `_id`"));
    }
    Ok(segments)
}

/// An int32, int64 or double, with the server's arithmetic (`SafeNum`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    I32(i32),
    I64(i64),
    F64(f64),
}

impl Num {
    fn of(v: &Bson) -> Result<Option<Num>> {
        Ok(match v {
            Bson::Int32(n) => Some(Num::I32(*n)),
            Bson::Int64(n) => Some(Num::I64(*n)),
            Bson::Double(n) => Some(Num::F64(*n)),
            Bson::Decimal128(d) => return unsupported(format!("Decimal128 value {d} (no exact arithmetic here)")),
            _ => None,
        })
    }

    fn bson(self) -> Bson {
        match self {
            Num::I32(n) => Bson::Int32(n),
            Num::I64(n) => Bson::Int64(n),
            Num::F64(n) => Bson::Double(n),
        }
    }

    fn wide(self) -> Option<i64> {
        match self {
            Num::I32(n) => Some(i64::from(n)),
            Num::I64(n) => Some(n),
            Num::F64(_) => None,
        }
    }

    fn float(self) -> f64 {
        match self {
            Num::I32(n) => f64::from(n),
            Num::I64(n) => n as f64,
            Num::F64(n) => n,
        }
    }

    /// `None` where the server fails (int64 overflow).
    fn add(self, other: Num) -> Option<Num> {
        match (self, other) {
            (Num::I32(a), Num::I32(b)) => {
                Some(a.checked_add(b).map_or(Num::I64(i64::from(a) + i64::from(b)), Num::I32))
            }
            (a, b) => match (a.wide(), b.wide()) {
                (Some(a), Some(b)) => a.checked_add(b).map(Num::I64),
                _ => Some(Num::F64(a.float() + b.float())),
            },
        }
    }

    fn mul(self, other: Num) -> Option<Num> {
        match (self, other) {
            (Num::I32(a), Num::I32(b)) => {
                Some(a.checked_mul(b).map_or(Num::I64(i64::from(a) * i64::from(b)), Num::I32))
            }
            (a, b) => match (a.wide(), b.wide()) {
                (Some(a), Some(b)) => a.checked_mul(b).map(Num::I64),
                _ => Some(Num::F64(a.float() * b.float())),
            },
        }
    }

    fn bit(self, op: BitOp, other: Num) -> Num {
        let f = |a: i64, b: i64| match op {
            BitOp::And => a & b,
            BitOp::Or => a | b,
            BitOp::Xor => a ^ b,
        };
        match (self, other) {
            (Num::I32(a), Num::I32(b)) => Num::I32(f(i64::from(a), i64::from(b)) as i32),
            (a, b) => Num::I64(f(a.wide().expect("integral"), b.wide().expect("integral"))),
        }
    }
}

fn operand_number(op: &str, path: &str, v: &Bson) -> Result<Num> {
    match Num::of(v)? {
        Some(n) => Ok(n),
        None => refused(format!("`{op}` on `{path}` takes a number")),
    }
}

fn bit(path: &str, v: &Bson) -> Result<Vec<(BitOp, Num)>> {
    let Bson::Document(d) = v else {
        return refused(format!("`$bit` on `{path}` takes a document"));
    };
    if d.is_empty() {
        return refused(format!("`$bit` on `{path}` takes and/or/xor"));
    }
    d.iter()
        .map(|(k, n)| {
            let op = match k.as_str() {
                "and" => BitOp::And,
                "or" => BitOp::Or,
                "xor" => BitOp::Xor,
                _ => return refused(format!("`$bit` on `{path}`: unknown `{k}`")),
            };
            match n {
                Bson::Int32(n) => Ok((op, Num::I32(*n))),
                Bson::Int64(_) => unsupported(format!(
                    "`$bit` on `{path}` with an int64 (MongoDB stores an int64, SecantusDB an int32 where it fits)"
                )),
                _ => refused(format!("`$bit` on `{path}` takes integers")),
            }
        })
        .collect()
}

fn has_modifiers(v: &Bson) -> Option<&Document> {
    match v {
        Bson::Document(d) if d.keys().any(|k| k.starts_with('$')) => Some(d),
        _ => None,
    }
}

fn each<'a>(op: &str, path: &str, d: &'a Document) -> Result<Vec<&'a Bson>> {
    match d.get("$each") {
        Some(Bson::Array(items)) => Ok(items.iter().collect()),
        _ => refused(format!("`{op}` on `{path}` needs `$each` with an array")),
    }
}

fn int_modifier(path: &str, m: &str, v: &Bson) -> Result<i64> {
    match v {
        Bson::Int32(n) => Ok(i64::from(*n)),
        Bson::Int64(n) => Ok(*n),
        _ => unsupported(format!("`{m}` on `{path}` with {v}")),
    }
}

fn push<'a>(path: &str, v: &'a Bson) -> Result<Push<'a>> {
    let Some(d) = has_modifiers(v) else {
        return Ok(Push {
            each: vec![v],
            position: None,
            slice: None,
            sort: None,
        });
    };
    let mut push = Push {
        each: each("$push", path, d)?,
        position: None,
        slice: None,
        sort: None,
    };
    for (m, v) in d {
        match m.as_str() {
            "$each" => {}
            "$position" => push.position = Some(int_modifier(path, m, v)?),
            "$slice" => push.slice = Some(int_modifier(path, m, v)?),
            "$sort" => {
                push.sort = Some(match v {
                    Bson::Int32(1) => Sort::Values(true),
                    Bson::Int32(-1) => Sort::Values(false),
                    Bson::Document(by) if !by.is_empty() => Sort::Fields(
                        by.iter()
                            .map(|(field, dir)| match dir {
                                Bson::Int32(1) => Ok((field.split('.').collect(), true)),
                                Bson::Int32(-1) => Ok((field.split('.').collect(), false)),
                                _ => unsupported(format!("`$sort` on `{path}` by {dir}")),
                            })
                            .collect::<Result<_>>()?,
                    ),
                    other => return unsupported(format!("`$sort` on `{path}` with {other}")),
                })
            }
            other => return refused(format!("`$push` on `{path}`: unknown modifier `{other}`")),
        }
    }
    Ok(push)
}

fn add_to_set<'a>(path: &str, v: &'a Bson) -> Result<Vec<&'a Bson>> {
    let items = match has_modifiers(v) {
        Some(d) if d.len() == 1 => each("$addToSet", path, d)?,
        Some(_) => return refused(format!("`$addToSet` on `{path}` takes only `$each`")),
        None => vec![v],
    };
    // The server drops repeats from the values first, keeping the first.
    let mut unique: Vec<&Bson> = Vec::new();
    for item in items {
        if !contains(unique.iter().copied(), item)? {
            unique.push(item);
        }
    }
    Ok(unique)
}

fn contains<'a>(mut items: impl Iterator<Item = &'a Bson>, v: &Bson) -> Result<bool> {
    items.try_fold(false, |found, item| Ok(found || same(item, v)?))
}

/// BSON equality (`1` equals `1.0`, `true` does not equal `1`), where
/// SecantusDB agrees: its `$pullAll` (measured; `$pull` and `$addToSet`
/// assumed alike) compares as Python does, where `true == 1` and
/// `false == 0`, inside arrays and documents too.
fn same(a: &Bson, b: &Bson) -> Result<bool> {
    let equal = compare(a, b)? == Ordering::Equal;
    if !equal && loosely_equal(a, b) {
        return unsupported(format!(
            "comparing {a} with {b} (SecantusDB equates them, MongoDB does not)"
        ));
    }
    Ok(equal)
}

fn loosely_equal(a: &Bson, b: &Bson) -> bool {
    let number = |v: &Bson| match v {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        Bson::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    match (a, b) {
        (Bson::Array(x), Bson::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| loosely_equal(a, b)),
        (Bson::Document(x), Bson::Document(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && loosely_equal(a, b))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => compare(a, b).is_ok_and(|o| o == Ordering::Equal),
        },
    }
}

/// What an operator does to the value at its path.
enum Edit {
    Keep,
    /// Stores a value: in place if the field exists, else appended (with
    /// missing intermediate documents created).
    Put(Bson),
    /// Removes the field and appends it with this value (`$rename`).
    Append(Bson),
    /// Removes a field (an array element becomes null).
    Remove,
}

/// Where the value an operator sees is.
#[derive(Clone, Copy)]
struct At {
    /// An array is on the way to it (or holds it).
    through_array: bool,
}

type Visit<'f> = &'f mut dyn FnMut(Option<&Bson>, At) -> Result<Edit>;

fn apply_one(doc: &mut Document, path: &[&str], op: &Op, target: Target, order: Order) -> Result<()> {
    let shown = path.join(".");
    match op {
        Op::RenameFrom => Ok(()),
        Op::RenameTo(from) => {
            let Some(value) = rename_source(doc, from)? else {
                return Ok(());
            };
            visit_doc(doc, path, At { through_array: false }, &mut |_, at| {
                if at.through_array {
                    return refused(format!("`$rename` to `{shown}`: the destination is in an array"));
                }
                Ok(match order {
                    Order::Paths => Edit::Append(value.clone()),
                    Order::Given | Order::Bytes => Edit::Put(value.clone()),
                })
            })?;
            visit_doc(doc, from, At { through_array: false }, &mut |_, _| Ok(Edit::Remove))
        }
        op => visit_doc(doc, path, At { through_array: false }, &mut |current, _| {
            edit(op, &shown, current, target)
        }),
    }
}

/// The value `$rename` moves, or `None` if its source is missing.
fn rename_source(doc: &Document, from: &[&str]) -> Result<Option<Bson>> {
    let shown = from.join(".");
    let mut current = doc.get(from[0]);
    let mut through_array = false;
    for segment in &from[1..] {
        current = match current {
            None => return Ok(None),
            Some(Bson::Document(d)) => d.get(*segment),
            Some(Bson::Array(items)) => {
                through_array = true;
                match index(segment) {
                    Some(i) => items.get(i),
                    None => return not_followed(&shown),
                }
            }
            Some(_) => return not_followed(&shown),
        };
    }
    match current {
        Some(_) if through_array => refused(format!("`$rename` from `{shown}`: the source is in an array")),
        other => Ok(other.cloned()),
    }
}

/// MongoDB refuses a `$rename` whose source path cannot be followed (a
/// name on an array, anything on a scalar); SecantusDB does nothing.
fn not_followed(shown: &str) -> Result<Option<Bson>> {
    unsupported(format!(
        "`$rename` from `{shown}`, a path that cannot be followed (MongoDB refuses it, SecantusDB ignores it)"
    ))
}

fn index(segment: &str) -> Option<usize> {
    if !is_digits(segment) {
        return None;
    }
    segment.parse().ok()
}

/// The most nulls the evaluator pads an array with (the server's own limit
/// is 1,500,000; beyond this the server decides).
const MAX_PADDING: usize = 10_000;

/// A value for a missing path: the rest of the path as nested documents.
fn nested(rest: &[&str], value: Bson) -> Bson {
    rest.iter().rev().fold(value, |v, segment| {
        let mut d = Document::new();
        d.insert(*segment, v);
        Bson::Document(d)
    })
}

fn visit_doc(doc: &mut Document, path: &[&str], at: At, f: Visit) -> Result<()> {
    let (segment, rest) = path.split_first().expect("paths have a segment");
    if rest.is_empty() {
        match f(doc.get(*segment), at)? {
            Edit::Keep => {}
            Edit::Put(v) => {
                doc.insert(*segment, v);
            }
            Edit::Append(v) => {
                doc.remove(*segment);
                doc.insert(*segment, v);
            }
            Edit::Remove => {
                doc.remove(*segment);
            }
        }
        return Ok(());
    }
    match doc.get_mut(*segment) {
        Some(value) => visit_value(value, rest, at, f),
        None => match f(None, at)? {
            Edit::Put(v) | Edit::Append(v) => {
                doc.insert(*segment, nested(rest, v));
                Ok(())
            }
            Edit::Keep | Edit::Remove => Ok(()),
        },
    }
}

fn visit_value(value: &mut Bson, path: &[&str], at: At, f: Visit) -> Result<()> {
    match value {
        Bson::Document(d) => visit_doc(d, path, at, f),
        Bson::Array(items) => visit_array(items, path, f),
        _ => not_viable(path, at, f),
    }
}

/// A path that leads through a scalar, or by name through an array: what
/// cannot create does nothing, what would create fails.
fn not_viable(path: &[&str], at: At, f: Visit) -> Result<()> {
    match f(None, at)? {
        Edit::Keep | Edit::Remove => Ok(()),
        Edit::Put(_) | Edit::Append(_) => refused(format!("cannot create field `{}`", path[0])),
    }
}

fn visit_array(items: &mut Vec<Bson>, path: &[&str], f: Visit) -> Result<()> {
    let at = At { through_array: true };
    let (segment, rest) = path.split_first().expect("paths have a segment");
    let Some(i) = index(segment) else {
        return not_viable(path, at, f);
    };
    let pad = |items: &mut Vec<Bson>, v: Bson| {
        if i - items.len() > MAX_PADDING {
            return unsupported(format!("padding an array to index {i}"));
        }
        items.resize(i, Bson::Null);
        items.push(v);
        Ok(())
    };
    if rest.is_empty() {
        return match f(items.get(i), at)? {
            Edit::Keep => Ok(()),
            Edit::Put(v) | Edit::Append(v) if i < items.len() => {
                items[i] = v;
                Ok(())
            }
            Edit::Put(v) | Edit::Append(v) => pad(items, v),
            Edit::Remove => {
                if let Some(item) = items.get_mut(i) {
                    *item = Bson::Null;
                }
                Ok(())
            }
        };
    }
    match items.get_mut(i) {
        Some(value) => visit_value(value, rest, at, f),
        None => match f(None, at)? {
            Edit::Put(v) | Edit::Append(v) => pad(items, nested(rest, v)),
            Edit::Keep | Edit::Remove => Ok(()),
        },
    }
}

/// Keeps an unchanged number as it is (the server's no-op), and refuses to
/// guess whether the server sees `0.0` and `-0.0` as the same value.
fn arithmetic(shown: &str, current: Num, result: Option<Num>, op: &str) -> Result<Edit> {
    let Some(result) = result else {
        return refused(format!("`{op}` on `{shown}` overflows int64"));
    };
    if let (Num::F64(a), Num::F64(b)) = (current, result)
        && a == b
        && a.to_bits() != b.to_bits()
    {
        return unsupported(format!("`{op}` on `{shown}` turns {a} into {b}"));
    }
    if same_num(current, result) {
        return Ok(Edit::Keep);
    }
    Ok(Edit::Put(result.bson()))
}

fn same_num(a: Num, b: Num) -> bool {
    match (a, b) {
        (Num::I32(a), Num::I32(b)) => a == b,
        (Num::I64(a), Num::I64(b)) => a == b,
        (Num::F64(a), Num::F64(b)) => a.to_bits() == b.to_bits(),
        _ => false,
    }
}

fn edit(op: &Op, shown: &str, current: Option<&Bson>, target: Target) -> Result<Edit> {
    let not_array = |op: &str, v: &Bson| {
        refused(format!(
            "`{op}` on `{shown}`: the field is a {:?}, not an array",
            v.element_type()
        ))
    };
    Ok(match (op, current) {
        (Op::Set(v), _) => Edit::Put((*v).clone()),
        (Op::SetOnInsert(v), _) if target == Target::Upserted => Edit::Put((*v).clone()),
        (Op::SetOnInsert(_), _) => Edit::Keep,
        (Op::Unset, Some(_)) => Edit::Remove,
        (Op::Unset, None) => Edit::Keep,
        // The server adds int32 zero (so `-0.0` is stored as `0.0`).
        (Op::Inc(n), None) => Edit::Put(n.add(Num::I32(0)).expect("plus zero fits").bson()),
        (Op::Mul(n), None) => Edit::Put(n.mul(Num::I32(0)).expect("times zero fits").bson()),
        (Op::Inc(n) | Op::Mul(n), Some(v)) => {
            let name = if matches!(op, Op::Inc(_)) { "$inc" } else { "$mul" };
            let Some(current) = Num::of(v)? else {
                return refused(format!("`{name}` on `{shown}`: the field is not a number"));
            };
            let result = if name == "$inc" { n.add(current) } else { n.mul(current) };
            return arithmetic(shown, current, result, name);
        }
        (Op::Min(v) | Op::Max(v), None) => Edit::Put((*v).clone()),
        (Op::Min(v) | Op::Max(v), Some(current)) => {
            let wanted = if matches!(op, Op::Min(_)) {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            if compare(v, current)? == wanted {
                Edit::Put((*v).clone())
            } else {
                Edit::Keep
            }
        }
        (Op::Push(p), None) => Edit::Put(Bson::Array(pushed(shown, Vec::new(), p)?)),
        (Op::Push(p), Some(Bson::Array(items))) => Edit::Put(Bson::Array(pushed(shown, items.clone(), p)?)),
        (Op::Push(_), Some(v)) => return not_array("$push", v),
        (Op::AddToSet(values), current) => {
            let mut items = match current {
                None => Vec::new(),
                Some(Bson::Array(items)) => items.clone(),
                Some(v) => return not_array("$addToSet", v),
            };
            for v in values {
                if !contains(items.iter(), v)? {
                    items.push((*v).clone());
                }
            }
            Edit::Put(Bson::Array(items))
        }
        (Op::Pull(_) | Op::PullAll(_) | Op::Pop { .. }, None) => Edit::Keep,
        (Op::Pull(cond), Some(Bson::Array(items))) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                if !pulls(cond, item)? {
                    kept.push(item.clone());
                }
            }
            Edit::Put(Bson::Array(kept))
        }
        (Op::PullAll(values), Some(Bson::Array(items))) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                if !contains(values.iter(), item)? {
                    kept.push(item.clone());
                }
            }
            Edit::Put(Bson::Array(kept))
        }
        (Op::Pop { first }, Some(Bson::Array(items))) => {
            let mut items = items.clone();
            if !items.is_empty() {
                if *first {
                    items.remove(0);
                } else {
                    items.pop();
                }
            }
            Edit::Put(Bson::Array(items))
        }
        (Op::Pull(_), Some(v)) => return not_array("$pull", v),
        (Op::PullAll(_), Some(v)) => return not_array("$pullAll", v),
        (Op::Pop { .. }, Some(v)) => return not_array("$pop", v),
        (Op::Bit(ops), current) => {
            let start = match current {
                None => Num::I32(0),
                Some(Bson::Int32(n)) => Num::I32(*n),
                Some(Bson::Int64(_)) => {
                    return unsupported(format!(
                        "`$bit` on the int64 `{shown}` (MongoDB stores an int64, SecantusDB an int32 where it fits)"
                    ));
                }
                Some(_) => return refused(format!("`$bit` on `{shown}`: the field is not an integer")),
            };
            let result = ops.iter().fold(start, |n, (op, m)| n.bit(*op, *m));
            match current {
                None => Edit::Put(result.bson()),
                Some(_) => return arithmetic(shown, start, Some(result), "$bit"),
            }
        }
        (Op::RenameTo(_) | Op::RenameFrom, _) => unreachable!("renames are applied by `apply_one`"),
    })
}

/// Whether `$pull`'s condition takes `item` out: a document without
/// operators is a filter on document elements, an operator document a
/// condition on the element itself, anything else a value to equal.
fn pulls(cond: &Bson, item: &Bson) -> Result<bool> {
    match cond {
        Bson::Document(d)
            if d.keys()
                .next()
                .is_none_or(|k| !k.starts_with('$') || matches!(k.as_str(), "$and" | "$or" | "$nor")) =>
        {
            match item {
                Bson::Document(element) => Ok(matcher::matches(element, d)?),
                _ => Ok(false),
            }
        }
        Bson::Document(_) => Ok(matcher::matches(
            &bson::doc! {"element": item.clone()},
            &bson::doc! {"element": cond.clone()},
        )?),
        Bson::RegularExpression(_) => unsupported("`$pull` with a regular expression"),
        value => same(value, item),
    }
}

fn pushed(shown: &str, mut items: Vec<Bson>, p: &Push) -> Result<Vec<Bson>> {
    let len = items.len() as i64;
    let at = match p.position {
        None => len,
        Some(n) if n < 0 => (len + n).max(0),
        Some(n) => n.min(len),
    } as usize;
    items.splice(at..at, p.each.iter().map(|v| (*v).clone()));
    if let Some(sort) = &p.sort {
        items = sorted(shown, items, sort)?;
    }
    if let Some(n) = p.slice {
        let keep = n.unsigned_abs().min(items.len() as u64) as usize;
        if n >= 0 {
            items.truncate(keep);
        } else {
            items.drain(..items.len() - keep);
        }
    }
    Ok(items)
}

/// `$push`'s `$sort`, stable; by fields only over documents whose sort
/// fields are reached without arrays (a missing field sorts as null).
fn sorted(shown: &str, items: Vec<Bson>, sort: &Sort) -> Result<Vec<Bson>> {
    let keyed: Vec<(Vec<Bson>, Bson)> = match sort {
        Sort::Values(_) => items.into_iter().map(|v| (vec![v.clone()], v)).collect(),
        Sort::Fields(fields) => items
            .into_iter()
            .map(|item| {
                let Bson::Document(d) = &item else {
                    return unsupported(format!("`$sort` by fields on `{shown}` over a non-document element"));
                };
                let key = fields
                    .iter()
                    .map(|(path, _)| sort_key(shown, d, path))
                    .collect::<Result<Vec<_>>>()?;
                Ok((key, item))
            })
            .collect::<Result<_>>()?,
    };
    let directions: Vec<bool> = match sort {
        Sort::Values(up) => vec![*up],
        Sort::Fields(fields) => fields.iter().map(|(_, up)| *up).collect(),
    };
    // Compare every pair first: an unsupported comparison fails the whole
    // sort instead of leaving a guess in the order.
    for (a, _) in &keyed {
        for (b, _) in &keyed {
            for (x, y) in a.iter().zip(b) {
                compare(x, y)?;
            }
        }
    }
    let mut keyed = keyed;
    keyed.sort_by(|(a, _), (b, _)| {
        for ((x, y), up) in a.iter().zip(b).zip(&directions) {
            let o = compare(x, y).expect("compared above");
            let o = if *up { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    Ok(keyed.into_iter().map(|(_, item)| item).collect())
}

fn sort_key(shown: &str, doc: &Document, path: &[&str]) -> Result<Bson> {
    let mut current = doc.get(path[0]);
    for segment in &path[1..] {
        current = match current {
            Some(Bson::Document(d)) => d.get(*segment),
            Some(Bson::Array(_)) => break,
            _ => None,
        };
    }
    match current {
        Some(Bson::Array(_)) => unsupported(format!("`$sort` on `{shown}` by a field holding or inside an array")),
        Some(v) => Ok(v.clone()),
        None => Ok(Bson::Null),
    }
}

mod bytes;
pub use bytes::apply_update_raw;

#[cfg(test)]
mod tests;
