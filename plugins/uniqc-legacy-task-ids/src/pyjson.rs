//! Just enough of Python's `json` module for a `metadata_json` column:
//! `json.loads` into a value that keeps key order (a Python dict does), and
//! `json.dumps(value, ensure_ascii=False)` with its default separators
//! (`", "`, `": "`), so that a rewritten column reads byte for byte as
//! upstream's would.

use godwit_sdk::json_string;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer, as its digits (Python's `int` prints them back as read,
    /// but for a sign on zero).
    Int(String),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    /// Keys in first-seen order; a repeated key replaces the value in place,
    /// as assigning to a Python dict does.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// `d[key] = value` on a Python dict: in place if present, else last.
    pub fn set(entries: &mut Vec<(String, Value)>, key: &str, value: Value) {
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key.to_string(), value)),
        }
    }
}

/// `json.loads(text)`, or `None` where Python raises.
pub fn loads(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    p.ws();
    let value = p.value(0)?;
    p.ws();
    (p.at == p.s.len()).then_some(value)
}

/// `json.dumps(value, ensure_ascii=False)`.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(digits) => out.push_str(if digits == "-0" { "0" } else { digits }),
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => out.push_str(&json_string(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&json_string(key));
                out.push_str(": ");
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// Python's `float.__repr__`: the shortest round-trip digits, with an
/// exponent (`1e-05`, `1.5e+16`) below 1e-4 and from 1e16 on.
fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:?}` prints the same shortest digits and switches to an
    // exponent at the same thresholds; only the exponent is spelt differently.
    let debug = format!("{f:?}");
    match debug.split_once('e') {
        None => debug,
        Some((mantissa, exp)) => {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        let hit = self.s[self.at..].starts_with(word.as_bytes());
        if hit {
            self.at += word.len();
        }
        hit
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > 200 {
            return None;
        }
        match *self.s.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Some(Value::Object(entries));
                }
                loop {
                    self.ws();
                    if self.s.get(self.at) != Some(&b'"') {
                        return None;
                    }
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return None;
                    }
                    self.ws();
                    let item = self.value(depth + 1)?;
                    Value::set(&mut entries, &key, item);
                    self.ws();
                    if self.eat("}") {
                        return Some(Value::Object(entries));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Some(Value::Array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat("]") {
                        return Some(Value::Array(items));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(Value::Str),
            _ if self.eat("null") => Some(Value::Null),
            _ if self.eat("true") => Some(Value::Bool(true)),
            _ if self.eat("false") => Some(Value::Bool(false)),
            _ if self.eat("NaN") => Some(Value::Float(f64::NAN)),
            _ if self.eat("Infinity") => Some(Value::Float(f64::INFINITY)),
            _ if self.eat("-Infinity") => Some(Value::Float(f64::NEG_INFINITY)),
            _ => self.number(),
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        self.eat("-");
        match self.s.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut float = false;
        if self.s.get(self.at) == Some(&b'.') && self.s.get(self.at + 1).is_some_and(u8::is_ascii_digit) {
            float = true;
            self.at += 1;
            self.digits();
        }
        if matches!(self.s.get(self.at), Some(b'e' | b'E')) {
            let mark = self.at;
            self.at += 1;
            if matches!(self.s.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
                float = true;
                self.digits();
            } else {
                self.at = mark;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        if float {
            text.parse().ok().map(Value::Float)
        } else {
            Some(Value::Int(text.to_string()))
        }
    }

    fn digits(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let text = std::str::from_utf8(self.s.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(text, 16).ok()
    }

    /// A string literal starting at `"`. Python keeps a lone surrogate; a
    /// Rust string cannot, so such a string is refused (the column then
    /// counts as unparsable).
    fn string(&mut self) -> Option<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = std::str::from_utf8(&self.s[self.at..]).ok()?;
            let c = rest.chars().next()?;
            self.at += c.len_utf8();
            match c {
                '"' => return Some(out),
                '\\' => {
                    let e = *self.s.get(self.at)?;
                    self.at += 1;
                    out.push(match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let unit = self.hex4()?;
                            if (0xd800..0xdc00).contains(&unit) && self.eat("\\u") {
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return None;
                                }
                                char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00))?
                            } else {
                                char::from_u32(unit)?
                            }
                        }
                        _ => return None,
                    });
                }
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, what `json.dumps(json.loads(input), ensure_ascii=False)`
    /// prints in CPython 3.12).
    #[test]
    fn round_trips_as_python_does() {
        for (input, want) in [
            (r#"{}"#, "{}"),
            (r#"{"a":1,"b":[true,null,"x"]}"#, r#"{"a": 1, "b": [true, null, "x"]}"#),
            (r#"{"b": 1, "a": 2, "b": 3}"#, r#"{"b": 3, "a": 2}"#),
            (
                r#"[1.0, 1.50, 1e-5, 1.5e16, 0.0001, 123456789012345678901]"#,
                "[1.0, 1.5, 1e-05, 1.5e+16, 0.0001, 123456789012345678901]",
            ),
            (r#""\u00e9\ud83d\ude00\n\/""#, "\"é😀\\n/\""),
            (r#" {"k": -0} "#, r#"{"k": 0}"#),
            ("NaN", "NaN"),
        ] {
            assert_eq!(loads(input).map(|v| dumps(&v)).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn refuses_what_python_refuses() {
        for input in [
            "",
            "{",
            "{'a': 1}",
            "[1,]",
            "01",
            "not json",
            "{\"a\": 1} x",
            "\"\\ud800\"",
        ] {
            assert_eq!(loads(input), None, "{input}");
        }
    }
}
