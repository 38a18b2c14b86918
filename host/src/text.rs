//! Plugin-controlled text made safe for a terminal or a log line: control
//! characters, line breaks and bidi overrides become visible escapes.
//!
//! A plugin chooses its name, its passes' names, its reports, its error and
//! panic messages and its log lines; the database and the journal hand some of
//! them back later (`status`, `journal list`). Printed raw, an ESC sequence
//! rewrites the operator's terminal (OSC 52 writes the clipboard), a CR or a
//! newline forges a line of godwit's own, and a bidi override makes a line read
//! differently from what it says. Every human-readable printer goes through
//! [`escape`]; what is stored keeps the exact bytes (the journal is evidence),
//! and JSON output goes through [`json`].
//!
//! **Invariant:** the escaped form is printable and contains none of the
//! characters escaped, so escaping twice changes nothing (a log line escaped
//! by the sandbox and again by the log formatter reads the same).

use std::borrow::Cow;
use std::fmt;

/// True for the characters [`escape`] rewrites: C0 controls (newline, CR and
/// tab included), DEL, C1 controls (U+0080..U+009F: 8-bit CSI and OSC in some
/// terminals), the bidi embeddings, overrides, isolates and marks
/// (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C), and the Unicode
/// line and paragraph separators (U+2028, U+2029), which some viewers break
/// lines at.
pub fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{061c}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `text` with every character of [`needs_escape`] written as a visible
/// escape: `\n`, `\r`, `\t`, else `\u{1b}`-style (Rust's notation). Backslashes
/// are left as they are, so paths and regexes print unchanged; a literal
/// `\u{1b}` in the input therefore reads like an escaped ESC, which is
/// harmless (the JSON output tells them apart).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                use fmt::Write;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Displays its text through [`escape`]: `format!("{}", Escaped(name))`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(self.0))
    }
}

/// Serialized JSON made terminal-safe without changing what it decodes to.
/// serde_json already writes C0 controls as `\u00XX` escapes but leaves DEL,
/// C1 controls, bidi controls and line separators as raw UTF-8; outside
/// strings JSON holds only ASCII, so each of those is inside a string, where
/// the `\uXXXX` escape decodes to the same character. A parser therefore
/// reads the exact original strings.
pub fn json(serialized: &str) -> Cow<'_, str> {
    if !serialized.chars().any(needs_escape_in_json) {
        return Cow::Borrowed(serialized);
    }
    let mut out = String::with_capacity(serialized.len() + 16);
    for c in serialized.chars() {
        if needs_escape_in_json(c) {
            use fmt::Write;
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`needs_escape`] minus the whitespace JSON's own layout uses between
/// tokens (serde_json escapes these inside strings itself).
fn needs_escape_in_json(c: char) -> bool {
    needs_escape(c) && !matches!(c, '\n' | '\r' | '\t')
}

/// A time for people: RFC 3339 in UTC to the second (`2026-12-01T18:57:31Z`),
/// the one format every human-readable line uses (`--json` keeps its own).
pub fn time(at: bson::DateTime) -> String {
    let ms = at.timestamp_millis();
    bson::DateTime::from_millis(ms - ms.rem_euclid(1000))
        .try_to_rfc3339_string()
        .unwrap_or_else(|_| at.to_string())
}

/// `println!` for human-readable output: the whole line is formatted, then
/// escaped, so no argument can break out of it.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::text::stdout_line(&$crate::text::escape(&format!($($arg)*))) };
}

/// Writes one line to stdout. A reader that closed the pipe (`godwit status
/// | head -3`) has what it wanted: the rest of the output is dropped and the
/// command goes on to its end (a run still stamps, a lock is still
/// released) - where `println!` would panic. Other write errors panic as
/// `println!` does.
pub fn stdout_line(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}
pub(crate) use outln;

/// `eprintln!` with the line escaped, as [`outln!`].
macro_rules! errln {
    ($($arg:tt)*) => { eprintln!("{}", $crate::text::escape(&format!($($arg)*))) };
}
pub(crate) use errln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_utc_to_the_second() {
        let at = bson::DateTime::from_millis(1_796_151_451_789);
        assert_eq!(time(at), "2026-12-01T18:57:31Z");
        assert_eq!(time(bson::DateTime::from_millis(-1)), "1969-12-31T23:59:59Z");
    }

    #[track_caller]
    fn check(input: &str, expect: &str) {
        let escaped = escape(input);
        assert_eq!(escaped, expect);
        assert!(!escaped.chars().any(needs_escape), "{escaped:?}");
        assert_eq!(escape(&escaped), escaped, "escaping twice changes nothing");
    }

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        check("plain name-1.2 ünïcödé \\path", "plain name-1.2 ünïcödé \\path");
        check("\x1b]52;c;aGk=\x07", "\\u{1b}]52;c;aGk=\\u{7}");
        check("\x1b[2J\x1b[31mred", "\\u{1b}[2J\\u{1b}[31mred");
        check("ok\rerror: forged", "ok\\rerror: forged");
        check("line\nerror: forged\r\n", "line\\nerror: forged\\r\\n");
        check("tab\there\0nul", "tab\\there\\u{0}nul");
        check("del\x7f c1\u{9b}31m\u{85}", "del\\u{7f} c1\\u{9b}31m\\u{85}");
        check(
            "a\u{202e}cba\u{202c} \u{2066}x\u{2069} \u{200f}\u{061c}",
            "a\\u{202e}cba\\u{202c} \\u{2066}x\\u{2069} \\u{200f}\\u{61c}",
        );
        check("para\u{2028}sep\u{2029}", "para\\u{2028}sep\\u{2029}");
        assert!(matches!(escape("borrowed"), Cow::Borrowed(_)));
        assert_eq!(format!("[{:<8}]", Escaped("a\nb")), "[a\\nb    ]");
    }

    #[test]
    fn json_stays_exact_and_loses_raw_controls() {
        let original = "x\x1b]52;c;aGk=\x07\r\n\u{9b}\u{202e}\u{2028}\x7f\t";
        let value = serde_json::json!({"name": original});
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let safe = json(&pretty);
        assert!(
            !safe.chars().any(|c| needs_escape(c) && c != '\n'),
            "raw control left in {safe:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["name"], original);
    }
}
