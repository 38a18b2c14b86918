//! Bad input from the operator: each is refused with exactly one line on
//! stderr that names the thing at fault (with any password redacted), the
//! exit code of its class (README, "Exit codes"), within a bounded time, and
//! without leaving a journal behind.

use crate::db::{TestDb, server};
use crate::support::{plugin, stderr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// One bad input: extra arguments and environment for `godwit run`, and what
/// must come back.
struct Case<'a> {
    name: &'a str,
    args: Vec<String>,
    env: Vec<(&'a str, String)>,
    code: u8,
    /// Substrings of the one error line.
    names: Vec<String>,
    /// Most seconds the refusal may take.
    within: u64,
}

const PASSWORD: &str = "Hunter2BadInputSecret";

/// Runs `godwit run` with `case`, checks it, and returns the error line.
fn check(db: &TestDb, dir: &Path, case: &Case) -> String {
    let journal = dir.join(format!("journal-{}", case.name.replace(' ', "-")));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_godwit"));
    cmd.current_dir(dir)
        .env_remove("GODWIT_CONFIG")
        .env("MONGODB_URI", &db.uri)
        .env("GODWIT_DB", &db.name)
        .env("GODWIT_JOURNAL", &journal)
        .env(
            "GODWIT_CACHE_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"),
        )
        .env("RUST_LOG", "warn")
        .arg("run")
        .args(&case.args);
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(i32::from(case.code)), "{}: {err}", case.name);
    assert!(
        took < Duration::from_secs(case.within),
        "{}: took {took:?}, more than {}s",
        case.name,
        case.within
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{}: exactly one line on stderr, got:\n{err}", case.name);
    assert!(lines[0].starts_with("error: "), "{}: {}", case.name, lines[0]);
    for name in &case.names {
        assert!(
            lines[0].contains(name.as_str()),
            "{}: {name:?} missing from: {}",
            case.name,
            lines[0]
        );
    }
    assert!(!err.contains(PASSWORD), "{}: the password leaked: {err}", case.name);
    assert!(out.stdout.is_empty(), "{}: nothing on stdout", case.name);
    assert!(
        !journal.exists(),
        "{}: a journal was left behind in {}",
        case.name,
        journal.display()
    );
    lines[0].to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn each_bad_input_is_one_line_with_its_exit_code_and_leaves_no_journal() {
    let db = TestDb::new(server(), "badinput");
    db.insert("things", vec![bson::doc! {"_id": 1}]);
    let dir = tempfile::tempdir().unwrap();
    let hostile = plugin("hostile").to_str().unwrap().to_string();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let text_file = write("notes.wasm", b"this is not WebAssembly\n");
    // The smallest valid core module and component: wasm, but no godwit plugin.
    let core_module = write("empty-module.wasm", b"\0asm\x01\0\0\0");
    let component = write("empty-component.wasm", b"\0asm\x0d\0\x01\0");
    let bad_toml = write(
        "bad.toml",
        format!("db = \"app\"\nuri = \"mongodb://alice:{PASSWORD}@h\" trailing\n").as_bytes(),
    );
    let config_dir = dir.path().join("config-dir");
    std::fs::create_dir(&config_dir).unwrap();
    let config_dir = config_dir.to_str().unwrap().to_string();
    let port = free_port();
    let unknown_db = crate::db::fresh_db("nosuchdb");

    let s = |v: &str| v.to_string();
    let plugin_args = |extra: &[&str]| {
        let mut args = vec![hostile.clone()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let cases = vec![
        Case {
            name: "invalid URI",
            args: plugin_args(&["--uri", &format!("mongodb://alice:{PASSWORD}@127.0.0.1:notaport/")]),
            env: vec![],
            code: 8,
            names: vec![s("invalid MongoDB URI mongodb://alice:****@127.0.0.1:notaport/")],
            within: 10,
        },
        Case {
            name: "URI without a scheme",
            args: plugin_args(&["--uri", "localhost:27017"]),
            env: vec![],
            code: 8,
            names: vec![s("invalid MongoDB URI localhost:27017")],
            within: 10,
        },
        Case {
            name: "unreachable server",
            args: plugin_args(&[
                "--uri",
                &format!("mongodb://alice:{PASSWORD}@127.0.0.1:{port}/?directConnection=true"),
                "--connect-timeout",
                "2",
            ]),
            env: vec![],
            code: 8,
            names: vec![
                format!("cannot reach MongoDB at mongodb://alice:****@127.0.0.1:{port}/"),
                s("within 2s"),
            ],
            within: 15,
        },
        Case {
            name: "unknown database",
            args: plugin_args(&["--db", &unknown_db]),
            env: vec![],
            code: 13,
            names: vec![format!("database {unknown_db} does not exist on mongodb://127.0.0.1:")],
            within: 20,
        },
        Case {
            name: "not a wasm file",
            args: vec![text_file.clone()],
            env: vec![],
            code: 3,
            names: vec![format!("{text_file} is not a WebAssembly file")],
            within: 10,
        },
        Case {
            name: "missing plugin file",
            args: vec![format!("{text_file}.missing")],
            env: vec![],
            code: 3,
            names: vec![format!(
                "cannot read plugin {text_file}.missing: No such file or directory (os error 2)"
            )],
            within: 10,
        },
        Case {
            name: "core module that is no plugin",
            args: vec![core_module.clone()],
            env: vec![],
            code: 3,
            names: vec![format!("{core_module} is not a godwit plugin"), s("its exports: none")],
            within: 10,
        },
        Case {
            name: "component that is no plugin",
            args: vec![component.clone()],
            env: vec![],
            code: 3,
            names: vec![format!("{component} is not a godwit plugin"), s("its exports: none")],
            within: 10,
        },
        Case {
            name: "param without =",
            args: plugin_args(&["--param", "behaviour"]),
            env: vec![],
            code: 2,
            names: vec![s("--param \"behaviour\" is not KEY=VALUE")],
            within: 10,
        },
        Case {
            name: "param with an empty key",
            args: plugin_args(&["--param", "=ok"]),
            env: vec![],
            code: 2,
            names: vec![s("--param \"=ok\" has an empty key")],
            within: 10,
        },
        Case {
            name: "param given twice",
            args: plugin_args(&["--param", "a=1", "--param", "a=2"]),
            env: vec![],
            code: 2,
            names: vec![s("--param a is given twice")],
            within: 10,
        },
        Case {
            name: "missing config file",
            args: plugin_args(&[]),
            env: vec![("GODWIT_CONFIG", format!("{bad_toml}.missing"))],
            code: 2,
            names: vec![format!("cannot read config file {bad_toml}.missing")],
            within: 10,
        },
        Case {
            name: "config file that is a directory",
            args: plugin_args(&[]),
            env: vec![("GODWIT_CONFIG", config_dir.clone())],
            code: 2,
            names: vec![format!("cannot read config file {config_dir}")],
            within: 10,
        },
        Case {
            name: "config file that is not TOML",
            args: plugin_args(&[]),
            env: vec![("GODWIT_CONFIG", bad_toml.clone())],
            code: 2,
            names: vec![format!("invalid config file {bad_toml} at line 2, column")],
            within: 10,
        },
        Case {
            name: "no URI",
            args: plugin_args(&[]),
            env: vec![("MONGODB_URI", s(""))],
            code: 2,
            names: vec![s("no MongoDB URI: pass --uri, set MONGODB_URI")],
            within: 10,
        },
        Case {
            name: "no database",
            args: plugin_args(&[]),
            env: vec![("GODWIT_DB", s(""))],
            code: 2,
            names: vec![s("no database: pass --db NAME")],
            within: 10,
        },
    ];
    let mut codes = std::collections::BTreeMap::<u8, Vec<&str>>::new();
    for case in &cases {
        let line = check(&db, dir.path(), case);
        eprintln!("bad input {:<32} exit {:>2}: {line}", case.name, case.code);
        codes.entry(case.code).or_default().push(case.name);
    }
    eprintln!(
        "bad input: {} inputs tried, each refused with one line and its exit code ({}), no journal left behind",
        cases.len(),
        codes
            .iter()
            .map(|(code, names)| format!("{code}: {}", names.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// A reader that closes the pipe before godwit prints (`godwit plugin
/// inspect FILE | head -0`, `godwit run ... --json | true`) is no error:
/// the output is dropped, the command ends as it would have (exit 0), and
/// no panic or backtrace reaches stderr. `println!` used to panic there.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let file = plugin("normalize-emails");
    let db = TestDb::new(server(), "closed_pipe");
    db.insert("users", vec![bson::doc! {"_id": 1, "email": "A@B.C"}]);
    let journal = tempfile::tempdir().unwrap();
    let commands: [Vec<&str>; 3] = [
        vec!["plugin", "inspect", file.to_str().unwrap()],
        vec!["run", file.to_str().unwrap()],
        vec!["--json", "run", file.to_str().unwrap()],
    ];
    for args in commands {
        let mut command = match args[0] {
            "plugin" => {
                let mut plain = Command::new(env!("CARGO_BIN_EXE_godwit"));
                plain.args(&args);
                plain
            }
            _ => crate::support::command(&db, journal.path(), &args),
        };
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before godwit has loaded the plugin, let alone printed.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
    }
}
