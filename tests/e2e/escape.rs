//! Terminal injection (issue 14, finding 9): a plugin whose name, pass name,
//! description, reports, log lines, stdout/stderr, error and panic messages
//! carry escape sequences (OSC 52 clipboard writes, CSI), bare CRs, newlines
//! that forge `error:` and log lines, and bidi overrides. Every command that
//! prints them (run, status, journal list/show/export, plugin inspect, plan,
//! revert) must print no raw control character - the name comes back from
//! history and the journal long after the run - and show the escaped form;
//! `--json` must decode to the exact original strings.

use crate::db::{TestDb, server};
use crate::support::{plugin, stderr, stdout};
use bson::doc;
use godwit::text::{escape, needs_escape};

// The plugin's strings (tests/plugins/hostile-escape/src/lib.rs), byte for byte.
const NAME: &str = "esc\x1b]52;c;cHduZWQ=\x07\x1b[2J\rname\nerror: forged name line\u{202e}exe.txt";
const PASS: &str = "pass\x1b[31m\rred\n2026-01-01T00:00:00Z ERROR forged log line\u{2066}isolate\u{2069}";
const DESCRIPTION: &str = "desc\x1b[8mhidden\x1b[0m\u{9b}31m c1 csi\x7f";
const KIND: &str = "kind\x1b[1m";
const KEY: &str = "key\r\x1b[K";
const MESSAGE: &str = "msg\x1b]8;;http://evil.example\x07link\x1b]8;;\x07\nerror: forged report line";
const LOG: &str = "log\x1b[2J\r\nERROR godwit: forged log line\u{202e}";
const STDOUT: &str = "stdout\x1b]52;c;c3Rkb3V0\x07\rforged";
const STDERR: &str = "stderr\x1b[31m\u{202e}reversed";
const ERROR: &str = "refusing\x1b[31m\nerror: forged error line\u{202e}";
const PANIC: &str = "panic\x1b]52;c;cGFuaWM=\x07\rerror: forged panic line";

fn cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache")
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// No raw control character, bidi control or line separator anywhere but
/// the newlines between lines, and no line forged by the plugin: each line
/// that carries the plugin's word "forged" shows the escaped line break
/// before it.
#[track_caller]
fn assert_clean(what: &str, out: &Output) {
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if let Some(c) = text.chars().find(|c| needs_escape(*c) && *c != '\n') {
            panic!("{what}: raw {c:?} on {stream}:\n{text}");
        }
        for line in text.lines() {
            let forged = line.find("forged").is_some_and(|at| {
                let before = &line[..at];
                !(before.contains("\\n") || before.contains("\\r"))
            });
            assert!(!forged, "{what}: a forged line on {stream}: {line}");
        }
    }
}

#[track_caller]
fn assert_shows(what: &str, text: &str, originals: &[&str]) {
    for original in originals {
        let escaped = escape(original);
        assert!(text.contains(&*escaped), "{what}: {escaped} missing from:\n{text}");
    }
}

fn json(what: &str, out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", out.stdout))
}

#[test]
fn plugin_text_reaches_no_terminal_raw_and_json_keeps_it_exact() {
    let db = TestDb::new(server(), "escape");
    db.insert("things", (0..12).map(|i| doc! {"_id": i}).collect());
    let journal = tempfile::tempdir().unwrap();
    let chain = tempfile::tempdir().unwrap();
    let file = chain.path().join("hostile-escape.wasm");
    std::fs::copy(plugin("hostile-escape"), &file).unwrap();
    let file = file.to_str().unwrap();
    let dir = chain.path().to_str().unwrap();

    let mut commands = 0;
    let mut godwit = |args: &[&str], code: i32| -> Output {
        // Connection and journal through the environment (not every command
        // takes --db); every log level, so that the plugin's info-level
        // stdout lines show.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_godwit"))
            .args(args)
            .env("MONGODB_URI", &db.uri)
            .env("GODWIT_DB", &db.name)
            .env("GODWIT_JOURNAL", journal.path())
            .env("GODWIT_CACHE_DIR", cache_dir())
            .env("RUST_LOG", "info")
            .env_remove("GODWIT_CONFIG")
            .output()
            .unwrap();
        let out = Output {
            code: out.status.code(),
            stdout: stdout(&out),
            stderr: stderr(&out),
        };
        assert_eq!(out.code, Some(code), "godwit {args:?}:\n{}{}", out.stdout, out.stderr);
        assert_clean(&format!("godwit {args:?}"), &out);
        commands += 1;
        out
    };

    // Reading the plugin.
    let inspect = godwit(&["plugin", "inspect", file], 0);
    assert_shows("inspect", &inspect.stdout, &[NAME, PASS, DESCRIPTION]);
    let inspected = json("inspect --json", &godwit(&["plugin", "inspect", file, "--json"], 0));
    assert_eq!(inspected["name"], NAME);
    assert_eq!(inspected["description"], DESCRIPTION);
    assert_eq!(inspected["passes"][0]["name"], PASS);
    let plan = godwit(&["plan", dir], 0);
    assert_shows("plan", &plan.stdout, &[NAME]);
    assert_eq!(
        json("plan --json", &godwit(&["plan", dir, "--json"], 0))["chain"][0]["name"],
        NAME
    );

    // A dry run: reports in the summary, the plugin's log and output lines.
    let dry = godwit(&["run", file], 0);
    assert_shows("dry run", &dry.stdout, &[NAME, PASS, KIND, KEY, MESSAGE]);
    assert_shows("dry run log", &dry.stderr, &[LOG, STDOUT, STDERR]);
    let dry_json = json("dry run --json", &godwit(&["run", file, "--json"], 0));
    assert_eq!(dry_json["plugin"], NAME);
    let pass = &dry_json["summary"]["passes"][0];
    assert_eq!(pass["name"], PASS);
    assert_eq!(pass["reports"][KIND]["samples"][0]["key"], KEY);
    assert_eq!(pass["reports"][KIND]["samples"][0]["message"], MESSAGE);

    // The plugin's error and panic: one escaped `error:` line each.
    for (behaviour, text) in [("error", ERROR), ("panic", PANIC)] {
        let param = format!("behaviour={behaviour}");
        let failed = godwit(&["run", file, "--param", &param, "--new-run"], 4);
        let errors: Vec<&str> = failed.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{behaviour}: one error line:\n{}", failed.stderr);
        assert_shows(behaviour, errors[0], &[NAME, PASS, text]);
    }

    // Execute: the name goes into the database's history and the journal.
    let executed = godwit(&["run", file, "--execute", "--new-run"], 0);
    assert_shows("execute", &executed.stdout, &[NAME, PASS, MESSAGE]);
    assert!(
        executed.stdout.contains("stamped at version 1.0.0"),
        "{}",
        executed.stdout
    );
    let runs = json("journal list --json", &godwit(&["journal", "list", "--json"], 0));
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["mode"] == "Execute")
        .unwrap_or_else(|| panic!("no execute run in {runs}"));
    assert_eq!(run["plugin_name"], NAME);
    let run_id = run["run_id"].as_str().unwrap().to_string();

    // Whoever looks later: status, the journal, revert.
    let status = godwit(&["status", "--plugins", dir], 0);
    assert_shows("status", &status.stdout, &[NAME]);
    let status_json = json("status --json", &godwit(&["status", "--json"], 0));
    let history = status_json["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["plugin"], NAME, "{status_json}");
    let list = godwit(&["journal", "list"], 0);
    assert_shows("journal list", &list.stdout, &[NAME]);
    let show = godwit(&["journal", "show", &run_id], 0);
    assert_shows("journal show", &show.stdout, &[NAME]);
    let shown = json(
        "journal show --json",
        &godwit(&["journal", "show", &run_id, "--json"], 0),
    );
    assert_eq!(shown["header"]["plugin_name"], NAME);
    let export = godwit(&["journal", "export", &run_id], 0);
    let actions: Vec<serde_json::Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .flat_map(|e| e["actions"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a.to_string().contains(&serde_json::to_string(MESSAGE).unwrap())),
        "the exported actions hold the exact report message"
    );
    let revert = godwit(&["revert", &run_id], 0);
    assert_shows("revert", &revert.stdout, &[NAME]);
    assert_eq!(
        json("revert --json", &godwit(&["revert", &run_id, "--json"], 0))["plugin"],
        NAME
    );

    eprintln!(
        "escape: {commands} commands (inspect, plan, run dry/execute/error/panic, status, journal list/show/export, \
         revert; text and --json) printed no raw control character; JSON kept the exact strings"
    );
}
