//! [`Tally`]: named counters a plugin keeps across batches and hands to the
//! operator as one report, the figures a hand-written migration script would
//! print at its end ("users_without_user_id: 12", "rowsToBackfill: 40").

use crate::Action;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Named counters, reported as one JSON object.
///
/// The host's summary counts reports per kind and keeps only a few samples of
/// each, so a plugin that wants to show several figures would lose some of
/// them as separate reports of one kind. One report whose message is a JSON
/// object keeps every figure together, readable by people and by `jq`:
///
/// ```
/// let mut tally = godwit_sdk::Tally::new();
/// tally.add("teamsScanned", 3);
/// tally.add("warnings", 1);
/// assert_eq!(tally.to_json(), r#"{"teamsScanned": 3, "warnings": 1}"#);
/// ```
///
/// Counters appear in the order they were first touched (`touch` a counter
/// to show it at 0), so the report reads like the script it replaces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    order: Vec<String>,
    counts: BTreeMap<String, u64>,
}

impl Tally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `name` appear in the report even if it stays 0.
    pub fn touch(&mut self, name: &str) {
        self.add(name, 0);
    }

    pub fn add(&mut self, name: &str, n: u64) {
        match self.counts.get_mut(name) {
            Some(count) => *count += n,
            None => {
                self.order.push(name.to_string());
                self.counts.insert(name.to_string(), n);
            }
        }
    }

    pub fn incr(&mut self, name: &str) {
        self.add(name, 1);
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// `{"name": count, ...}` in first-touched order. Names are escaped as JSON
    /// strings, so any collection or field name is safe.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, name) in self.order.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write!(out, "{}: {}", json_string(name), self.counts[name]).expect("string write");
        }
        out.push('}');
        out
    }

    /// The counters as one report of `kind` (e.g. "summary") about `key`
    /// (e.g. the migration's name).
    pub fn report(&self, kind: &str, key: &str) -> Action {
        Action::report(kind, key, self.to_json())
    }
}

/// `s` as a JSON string literal, escaped exactly as Python's
/// `json.dumps(s, ensure_ascii=False)` writes it (so a plugin's report can
/// match its Python twin's byte for byte): `"`, `\\`, `\n`, `\r`, `\t`,
/// `\b`, `\f` by name, other control characters as `\u00XX`, the rest as is.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("string write"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` as a JSON string literal as Python's `json.dumps(s)` writes it with
/// its default `ensure_ascii=True`: [`json_string`]'s escapes, and every
/// character outside printable ASCII as `\uXXXX` (UTF-16 units, so a
/// character above U+FFFF is a surrogate pair).
pub fn json_string_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").expect("string write");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_touched_order_and_sums() {
        let mut t = Tally::new();
        t.incr("b");
        t.touch("a");
        t.add("b", 2);
        assert_eq!(t.get("b"), 3);
        assert_eq!(t.get("missing"), 0);
        assert_eq!(t.to_json(), r#"{"b": 3, "a": 0}"#);
    }

    #[test]
    fn escapes_names() {
        let mut t = Tally::new();
        t.incr("a\"b\\c\n");
        assert_eq!(t.to_json(), r#"{"a\"b\\c\n": 1}"#);
    }

    #[test]
    fn json_strings_escape_as_pythons_json_dumps() {
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            json_string("\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é"),
            "\"\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f}é\""
        );
    }

    #[test]
    fn ascii_json_strings_escape_everything_outside_printable_ascii() {
        assert_eq!(
            json_string_ascii("a\"\n\u{7f}é😀"),
            r#""a\"\n\u007f\u00e9\ud83d\ude00""#
        );
    }

    #[test]
    fn empty_is_an_empty_object() {
        assert_eq!(Tally::new().to_json(), "{}");
    }
}
