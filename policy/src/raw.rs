//! The structure of raw BSON bytes, walked without recursion before anything
//! decodes them: every length field inside its parent, every string and key
//! terminated, no element type the spec does not define, and nesting no
//! deeper than [`MAX_DEPTH`].
//!
//! The `bson` crate's decoder recurses once per nested document or array; a
//! plugin that returned ~48 KB of `{"a": {"a": ...}}` overflowed the host's
//! stack (exit 134) before any rule could look at it. Bytes that pass this
//! walk decode with a bounded recursion depth.

use crate::{MAX_BSON_BYTES, MAX_DEPTH, Rule, Violation};

fn malformed(what: &str, detail: String) -> Violation {
    Violation::new(Rule::Malformed, format!("{what} is not well-formed BSON: {detail}"))
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes(b.try_into().ok()?))
}

/// Checks that `bytes` is exactly one BSON document of at most
/// [`MAX_BSON_BYTES`] bytes and at most [`MAX_DEPTH`] levels (the document
/// itself is level 1; each embedded document or array adds one, as in
/// MongoDB's own limit). `what` names the bytes in the message ("filter").
///
/// The walk keeps one stack entry (the end offset) per open document, so
/// memory and time are linear in the input and every step moves forward by
/// at least one byte: malformed lengths cannot make it loop or read out of
/// bounds.
pub fn check_structure(what: &str, bytes: &[u8]) -> Result<(), Violation> {
    if bytes.len() > MAX_BSON_BYTES {
        return Err(Violation::new(
            Rule::Size,
            format!(
                "{what} is {} bytes, over MongoDB's limit of {MAX_BSON_BYTES} bytes per BSON document",
                bytes.len()
            ),
        ));
    }
    walk(what, bytes)
}

/// The structure and depth walk of [`check_structure`], whatever the size.
fn walk(what: &str, bytes: &[u8]) -> Result<(), Violation> {
    let total = read_i32(bytes, 0).ok_or_else(|| malformed(what, "shorter than a length field".into()))?;
    if total < 5 || total as usize != bytes.len() {
        return Err(malformed(
            what,
            format!("its length field says {total} bytes, but it has {}", bytes.len()),
        ));
    }
    // End offsets (exclusive, just past the terminating NUL) of the open documents.
    let mut open: Vec<usize> = vec![bytes.len()];
    let mut at = 4;
    while let Some(&end) = open.last() {
        let err = |pos: usize, detail: &str| malformed(what, format!("{detail} at byte {pos}"));
        // The value starting at `from` takes `n` bytes, before the document's NUL.
        let fixed = |from: usize, n: usize| -> Result<usize, Violation> {
            (from + n < end)
                .then_some(from + n)
                .ok_or_else(|| err(from, "a value runs past the end of its document"))
        };
        // A length-prefixed string: int32 length (including the NUL), bytes, NUL.
        let string = |from: usize| -> Result<usize, Violation> {
            let len = read_i32(bytes, from)
                .filter(|&n| n >= 1)
                .ok_or_else(|| err(from, "a string length is invalid"))?;
            let stop = from + 4 + len as usize;
            if stop >= end || bytes[stop - 1] != 0 {
                return Err(err(from, "a string runs past its document"));
            }
            Ok(stop)
        };
        let cstring = |from: usize| -> Result<usize, Violation> {
            bytes[from.min(end - 1)..end - 1]
                .iter()
                .position(|&b| b == 0)
                .map(|n| from + n + 1)
                .ok_or_else(|| err(from, "a key or regular expression is not NUL-terminated"))
        };
        if at + 1 == end {
            if bytes[at] != 0 {
                return Err(err(at, "a document does not end with a NUL byte"));
            }
            open.pop();
            at += 1;
            continue;
        }
        if at >= end {
            return Err(err(at, "an element runs past the end of its document"));
        }
        let kind = bytes[at];
        if kind == 0 {
            return Err(err(at, "a document ends before its length field says"));
        }
        let value = cstring(at + 1)?;
        at = match kind {
            0x01 | 0x09 | 0x11 | 0x12 => fixed(value, 8)?,
            0x10 => fixed(value, 4)?,
            0x13 => fixed(value, 16)?,
            0x07 => fixed(value, 12)?,
            0x08 => fixed(value, 1)?,
            0x06 | 0x0A | 0x7F | 0xFF => fixed(value, 0)?,
            0x02 | 0x0D | 0x0E => string(value)?,
            0x0C => fixed(string(value)?, 12)?,
            0x0B => cstring(cstring(value)?)?,
            0x05 => {
                let len = read_i32(bytes, value)
                    .filter(|&n| n >= 0)
                    .ok_or_else(|| err(value, "a binary length is invalid"))?;
                fixed(value, 4 + 1 + len as usize)?
            }
            0x03 | 0x04 | 0x0F => {
                // Code with scope (0x0F): int32 total, string, then a document.
                let (doc_at, stop) = if kind == 0x0F {
                    let total = read_i32(bytes, value)
                        .filter(|&n| n >= 14)
                        .ok_or_else(|| err(value, "a code-with-scope length is invalid"))?;
                    (string(value + 4)?, value + total as usize)
                } else {
                    let len = read_i32(bytes, value)
                        .filter(|&n| n >= 5)
                        .ok_or_else(|| err(value, "an embedded document length is invalid"))?;
                    (value, value + len as usize)
                };
                let doc_len = read_i32(bytes, doc_at).filter(|&n| n >= 5).unwrap_or(0) as usize;
                if stop >= end || doc_at + doc_len != stop {
                    return Err(err(value, "an embedded document runs past its parent"));
                }
                if open.len() >= MAX_DEPTH {
                    return Err(Violation::new(
                        Rule::Nesting,
                        format!("{what} nests deeper than {MAX_DEPTH} levels of documents and arrays"),
                    ));
                }
                open.push(stop);
                doc_at + 4
            }
            other => return Err(err(at, &format!("unknown element type 0x{other:02x}"))),
        };
    }
    if at != bytes.len() {
        return Err(malformed(what, format!("{} trailing bytes", bytes.len() - at)));
    }
    Ok(())
}

/// [`check_structure`], then decodes: the only way this crate turns plugin
/// bytes into a document.
pub fn decode(what: &str, bytes: &[u8]) -> Result<bson::Document, Violation> {
    check_structure(what, bytes)?;
    bson::Document::from_reader(bytes).map_err(|e| malformed(what, e.to_string()))
}

/// The `_id` a raw filter or document names, for error messages; `None` when
/// the bytes are malformed, too deep or carry no top-level `_id`.
pub fn document_id(bytes: &[u8]) -> Option<bson::Bson> {
    // Any size: an oversized document's error still names its `_id`.
    walk("document", bytes).ok()?;
    let doc = bson::RawDocument::from_bytes(bytes).ok()?;
    let id = doc.get("_id").ok().flatten()?;
    bson::Bson::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    /// `depth` documents nested in one another under key "a".
    fn nested(depth: usize) -> Vec<u8> {
        let mut d = doc! {};
        for _ in 1..depth {
            d = doc! {"a": d};
        }
        d.to_vec().unwrap()
    }

    /// The same nesting built directly as bytes, deep enough to overflow a
    /// recursive decoder (and the recursive encoder that would build it).
    fn nested_bytes(depth: usize) -> Vec<u8> {
        // Level L (1: the innermost) is 5 + 8 * (L - 1) bytes:
        // int32 length, 0x03 'a' 0x00, level L-1, 0x00.
        let mut out = Vec::with_capacity(depth * 8);
        for level in (2..=depth).rev() {
            out.extend(((5 + 8 * (level - 1)) as i32).to_le_bytes());
            out.extend([0x03, b'a', 0]);
        }
        out.extend([5, 0, 0, 0, 0]);
        out.resize(out.len() + depth - 1, 0);
        out
    }

    #[track_caller]
    fn check(bytes: &[u8], expect: Result<(), &str>) {
        match (check_structure("filter", bytes), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        check(&nested(MAX_DEPTH), Ok(()));
        check(&nested(MAX_DEPTH + 1), Err("nests deeper than 100 levels"));
        assert_eq!(nested_bytes(MAX_DEPTH), nested(MAX_DEPTH));
        // ~48 KB and ~8 MB of nesting: refused, not a stack overflow.
        check(&nested_bytes(6_000), Err("nests deeper than 100 levels"));
        check(&nested_bytes(1_000_000), Err("nests deeper than 100 levels"));
        let arrays = doc! {"a": [[[[1]]]]}.to_vec().unwrap();
        check(&arrays, Ok(()));
    }

    #[test]
    fn every_element_type_is_walked() {
        let all = doc! {
            "d": 1.5, "s": "x", "o": {"k": [1, "y", {"z": null}]}, "b": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] },
            "u": bson::Bson::Undefined, "id": bson::oid::ObjectId::from_bytes([1; 12]), "t": true, "dt": bson::DateTime::from_millis(5),
            "n": null, "re": crate::tests_regex("a.*", "i"),
            "js": bson::Bson::JavaScriptCode("1".into()),
            "jss": bson::Bson::JavaScriptCodeWithScope(bson::JavaScriptCodeWithScope { code: "x".into(), scope: doc! {"x": {"y": 1}} }),
            "i": 1, "ts": bson::Timestamp { time: 1, increment: 2 }, "l": 2i64, "dec": bson::Decimal128::from_bytes([0; 16]),
            "min": bson::Bson::MinKey, "max": bson::Bson::MaxKey, "sym": bson::Bson::Symbol("s".into()),
        };
        check(&all.to_vec().unwrap(), Ok(()));
    }

    #[test]
    fn malformed_lengths_are_refused() {
        check(&[], Err("shorter than a length field"));
        check(&[5, 0, 0], Err("shorter than a length field"));
        check(&[5, 0, 0, 0, 1], Err("does not end with a NUL"));
        check(&[6, 0, 0, 0, 0, 0], Err("ends before its length field says"));
        check(&[5, 0, 0, 0, 0, 0], Err("length field says 5 bytes, but it has 6"));
        check(&[0xff, 0xff, 0xff, 0x7f, 0], Err("length field says"));
        // A string whose length points far past the end.
        check(
            &[14, 0, 0, 0, 0x02, b'a', 0, 0xff, 0xff, 0xff, 0x7f, b'x', 0, 0],
            Err("string"),
        );
        // An embedded document claiming to be larger than its parent.
        check(
            &[13, 0, 0, 0, 0x03, b'a', 0, 200, 0, 0, 0, 0, 0],
            Err("embedded document"),
        );
        // A key with no terminator.
        check(&[8, 0, 0, 0, 0x10, b'a', b'b', 0], Err("not NUL-terminated"));
        check(&[8, 0, 0, 0, 0x42, b'a', 0, 0], Err("unknown element type 0x42"));
        check(&[12, 0, 0, 0, 0x10, b'a', 0, 1, 0, 0, 0, 0], Ok(()));
        check(&[11, 0, 0, 0, 0x10, b'a', 0, 1, 0, 0, 0], Err("past the end"));
    }

    #[test]
    fn size_is_checked_first() {
        let big = vec![0u8; MAX_BSON_BYTES + 1];
        check(&big, Err("over MongoDB's limit of 16777216 bytes"));
    }

    #[test]
    fn ids_of_deep_documents_are_not_decoded() {
        assert_eq!(
            document_id(&doc! {"_id": 7}.to_vec().unwrap()),
            Some(bson::Bson::Int32(7))
        );
        assert_eq!(document_id(&nested_bytes(10_000)), None);
    }
}
