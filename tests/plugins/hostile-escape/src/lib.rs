//! A plugin whose every string carries terminal escape sequences, for the
//! host's escaping tests (`tests/e2e/escape.rs`, which holds the same strings
//! to compare the `--json` output with): its name (stored in history and the
//! journal), pass name, description, reports, log lines, stdout/stderr lines,
//! error message and panic message each hold an OSC 52 clipboard write, CSI
//! sequences, a bare CR, a newline that forges an `error:` or log line, and
//! bidi overrides. The `behaviour` parameter picks `ok` (reports, logs and a
//! `$set` on each document not yet touched), `error` or `panic`.

wit_bindgen::generate!({ path: "../../../wit", world: "godwit:migration/plugin" });

use exports::godwit::migration::migration::Guest;
use godwit::migration::host::log;
use godwit::migration::types::{Action, Error, Level, Manifest, Pass, Report, RunContext, Update};
use std::cell::RefCell;

/// OSC 52 (sets the clipboard to "pwned"), clear screen, CR, a forged
/// `error:` line and a right-to-left override.
pub const NAME: &str = "esc\x1b]52;c;cHduZWQ=\x07\x1b[2J\rname\nerror: forged name line\u{202e}exe.txt";
pub const PASS: &str = "pass\x1b[31m\rred\n2026-01-01T00:00:00Z ERROR forged log line\u{2066}isolate\u{2069}";
pub const DESCRIPTION: &str = "desc\x1b[8mhidden\x1b[0m\u{9b}31m c1 csi\x7f";
pub const KIND: &str = "kind\x1b[1m";
pub const KEY: &str = "key\r\x1b[K";
pub const MESSAGE: &str = "msg\x1b]8;;http://evil.example\x07link\x1b]8;;\x07\nerror: forged report line";
pub const LOG: &str = "log\x1b[2J\r\nERROR godwit: forged log line\u{202e}";
pub const STDOUT: &str = "stdout\x1b]52;c;c3Rkb3V0\x07\rforged";
pub const STDERR: &str = "stderr\x1b[31m\u{202e}reversed";
pub const ERROR: &str = "refusing\x1b[31m\nerror: forged error line\u{202e}";
pub const PANIC: &str = "panic\x1b]52;c;cGFuaWM=\x07\rerror: forged panic line";

thread_local! {
    static BEHAVIOUR: RefCell<String> = const { RefCell::new(String::new()) };
}

struct HostileEscape;

impl Guest for HostileEscape {
    fn get_manifest() -> Manifest {
        Manifest {
            name: NAME.into(),
            version: "1.0.0".into(),
            requires: None,
            description: DESCRIPTION.into(),
            passes: vec![Pass {
                name: PASS.into(),
                collection: "things".into(),
                filter: bson::doc! {"touched": {"$ne": true}}.to_vec().unwrap(),
                projection: None,
                batch_size: 10,
                writes: vec!["things".into()],
            }],
            schema: vec![],
            idempotent: true,
            reads: vec![],
        }
    }

    fn begin(params: Vec<u8>, _context: RunContext) -> Result<Vec<Action>, Error> {
        let params = bson::Document::from_reader(params.as_slice()).map_err(|e| Error {
            message: e.to_string(),
            document_id: None,
        })?;
        let behaviour = params.get_str("behaviour").unwrap_or("ok").to_string();
        BEHAVIOUR.with_borrow_mut(|b| *b = behaviour);
        Ok(vec![])
    }

    fn process(_pass: u32, batch: Vec<Vec<u8>>) -> Result<Vec<Action>, Error> {
        match BEHAVIOUR.with_borrow(|b| b.clone()).as_str() {
            "error" => {
                return Err(Error {
                    message: ERROR.into(),
                    document_id: None,
                });
            }
            "panic" => panic!("{PANIC}"),
            _ => {}
        }
        log(Level::Warn, LOG);
        println!("{STDOUT}");
        eprintln!("{STDERR}");
        let mut actions = vec![Action::Report(Report {
            kind: KIND.into(),
            key: KEY.into(),
            message: MESSAGE.into(),
        })];
        for raw in &batch {
            let id = bson::Document::from_reader(raw.as_slice())
                .ok()
                .and_then(|d| d.get("_id").cloned())
                .unwrap_or(bson::Bson::Null);
            actions.push(Action::Update(Update {
                collection: "things".into(),
                filter: bson::doc! {"_id": id}.to_vec().unwrap(),
                update: bson::doc! {"$set": {"touched": true}}.to_vec().unwrap(),
                upsert: false,
                multi: false,
            }));
        }
        Ok(actions)
    }

    fn finish() -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }
}

#[cfg(target_arch = "wasm32")]
export!(HostileEscape);
