//! `godwit plugin test`: a project's own tests in one line, and a component
//! on fixtures through the run engine in a throwaway database - the checks
//! it promises (a second dry run that must be clean, the replay of the
//! execute) catch the plugins they are for, and the database goes at the end.

use crate::db::{TestDb, server};
use crate::support::{plugin, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// `godwit plugin test ARGS` against the shared test server (unless the
/// caller removes MONGODB_URI), with the shared compile cache.
fn plugin_test(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_godwit"));
    cmd.args(["plugin", "test"])
        .args(args)
        .env("MONGODB_URI", &server().uri)
        .env("GODWIT_CACHE_DIR", target().join("test-compile-cache"))
        .env("RUST_LOG", "warn");
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run godwit")
}

/// A fixture directory: `(file name, lines)`.
fn fixtures(files: &[(&str, &[&str])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, lines) in files {
        std::fs::write(dir.path().join(name), lines.join("\n") + "\n").unwrap();
    }
    dir
}

const USERS: &[&str] = &[
    r#"{"_id": 1, "email": "  Alice@Example.COM "}"#,
    r#"{"_id": 2, "email": "bob@example.com"}"#,
    r#"{"_id": 3, "email": "ALICE@example.com"}"#,
    r#"{"_id": {"$oid": "65a000000000000000000001"}, "email": "Carol@X.org", "age": {"$numberLong": "41"}}"#,
    r#"{"_id": 5, "email": 42}"#,
];

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(out), stderr(out)))
}

/// The database a `--json` report names, as the test server has it now.
fn collections_of(report: &serde_json::Value) -> Vec<String> {
    let db = TestDb::named(&server().uri, report["database"].as_str().unwrap());
    db.dump().into_iter().map(|(name, _)| name).collect()
}

#[test]
fn plugin_test_data_passes_a_converging_plugin_and_drops_its_database() {
    let data = fixtures(&[("users.jsonl", USERS), ("orders.jsonl", &[r#"{"_id": 1}"#])]);
    let component = plugin("normalize-emails");
    let component = component.to_str().unwrap();
    let data_dir = data.path().to_str().unwrap();

    let out = output(
        plugin_test(&[component, "--data", data_dir, "--uri", &server().uri, "--json"]).env_remove("MONGODB_URI"),
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["failed_step"], serde_json::Value::Null);
    // The lowest version `requires >=1.0.0` accepts.
    assert_eq!(report["from_version"], "1.0.0");
    let steps = report["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["dry run", "execute", "second dry run", "journal replay"]);
    let writes: Vec<u64> = steps[..3]
        .iter()
        .map(|s| s["write_actions"].as_u64().unwrap())
        .collect();
    // Alice and Carol change; the second dry run finds nothing left.
    assert_eq!(writes, [2, 2, 0], "{report:#}");
    assert_eq!(steps[3]["report"]["divergence"], serde_json::Value::Null);
    assert_eq!(steps[3]["report"]["same_plugin"], true);
    assert_eq!(report["fixtures"].as_array().unwrap().len(), 2);
    assert!(collections_of(&report).is_empty(), "the test database was not dropped");

    // --keep: the database stays, holding what the execute wrote.
    let out = output(&mut plugin_test(&[component, "--data", data_dir, "--keep", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["kept"], true);
    let kept = TestDb::named(&server().uri, report["database"].as_str().unwrap());
    let emails: Vec<String> = kept
        .find_all("users")
        .iter()
        .map(|u| u.get("email").unwrap().to_string())
        .collect();
    assert!(emails.contains(&"\"alice@example.com\"".to_string()), "{emails:?}");
    assert!(emails.contains(&"\"carol@x.org\"".to_string()), "{emails:?}");
    assert!(
        emails.contains(&"\"ALICE@example.com\"".to_string()),
        "a collision is reported, not merged: {emails:?}"
    );

    // Without --uri, a throwaway server of its own (secantusd-py is on PATH
    // for the tests); the text report shows each step and one verdict.
    let out = output(plugin_test(&[component, "--data", &format!("{data_dir}/users.jsonl")]).env_remove("MONGODB_URI"));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("(a throwaway secantusd-"), "{text}");
    for line in [
        "init: database stamped at version 1.0.0",
        "step 1 dry run: run ",
        "step 2 execute: run ",
        "step 3 second dry run: run ",
        "step 4 journal replay of run ",
        "plugin test passed: normalize-emails 1.1.0: dry run, execute, second dry run clean, replay identical",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(text.contains("would update 0"), "the second dry run is clean: {text}");
}

/// A Python component goes through the same steps as a Rust one: the real
/// engine, its projection applied, the second dry run clean, the replay
/// identical (componentize-py's interpreter is deterministic too).
#[test]
fn plugin_test_data_runs_a_python_component_through_the_same_steps() {
    let data = fixtures(&[(
        "items.jsonl",
        &[
            r#"{"_id": 1, "name": "a"}"#,
            r#"{"_id": 2, "name": "b", "hello": "py"}"#,
            r#"{"_id": {"$oid": "65a000000000000000000009"}, "hello": "js"}"#,
        ],
    )]);
    let component = plugin("hello-py");
    let out = output(&mut plugin_test(&[
        component.to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--json",
    ]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = json(&out);
    let steps = report["steps"].as_array().unwrap();
    let writes: Vec<u64> = steps[..3]
        .iter()
        .map(|s| s["write_actions"].as_u64().unwrap())
        .collect();
    // Documents 1 and the ObjectId one are tagged; the second dry run is clean.
    assert_eq!(writes, [2, 2, 0], "{report:#}");
    assert_eq!(steps[3]["report"]["divergence"], serde_json::Value::Null, "{report:#}");
    assert!(collections_of(&report).is_empty(), "the test database was not dropped");
}

/// A plugin declaring `idempotent: false` wants every write again by
/// design: its second dry run is skipped (and said so), not failed.
#[test]
fn plugin_test_data_skips_the_second_dry_run_of_a_plugin_that_does_not_converge() {
    let data = fixtures(&[(
        "pages.jsonl",
        &[r#"{"_id": 1, "visits": 0}"#, r#"{"_id": 2, "visits": 5}"#],
    )]);
    let component = plugin("count-visits");
    let component = component.to_str().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let out = output(&mut plugin_test(&[component, "--data", data_dir, "--json"]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = json(&out);
    let names: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dry run", "execute", "journal replay"], "{report:#}");
    let out = output(&mut plugin_test(&[component, "--data", data_dir]));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for line in [
        "step 3 second dry run: skipped: the plugin declares idempotent: false",
        "plugin test passed: count-visits 1.0.0: dry run, execute, second dry run skipped (idempotent: false), replay identical",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
}

#[test]
fn plugin_test_data_catches_a_projection_that_misses_the_field_the_plugin_writes() {
    let data = fixtures(&[(
        "tasks.jsonl",
        &[
            r#"{"_id": 1, "name": "a"}"#,
            r#"{"_id": 2, "name": "b", "status": "open"}"#,
            r#"{"_id": 3, "name": "c"}"#,
        ],
    )]);
    let component = plugin("blind-status");
    let data_file = data.path().join("tasks.jsonl");
    let out = output(&mut plugin_test(&[
        component.to_str().unwrap(),
        "--data",
        data_file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(10), "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(
            "second dry run: 3 write actions remain - the plugin does not converge, or its pass's projection misses \
             a field it writes"
        ),
        "{err}"
    );
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["failed_step"], "second dry run");
    // The plugin requires no version: nothing is stamped before the runs.
    assert_eq!(report["from_version"], serde_json::Value::Null);
    // It sees `status` of none of them, so it "completes" all three, run after run.
    let writes: Vec<u64> = report["steps"].as_array().unwrap()[..3]
        .iter()
        .map(|s| s["write_actions"].as_u64().unwrap())
        .collect();
    assert_eq!(writes, [3, 3, 3]);
    assert!(
        collections_of(&report).is_empty(),
        "a failed test drops its database too"
    );

    // The same verdict from its crate directory (built first), in text.
    let out = output(&mut plugin_test(&[
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/plugins/blind-status")
            .to_str()
            .unwrap(),
        "--data",
        data_file.to_str().unwrap(),
        "--out",
        data.path().join("out").to_str().unwrap(),
        "--target-dir",
        target().join("wasm").to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let last = stderr(&out).trim_end().lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("plugin test failed: second dry run: 3 write actions remain"),
        "{last}"
    );
    assert!(stdout(&out).contains("step 3 second dry run"), "{}", stdout(&out));
}

#[test]
fn plugin_test_data_refuses_in_one_line_before_any_database() {
    let component = plugin("normalize-emails");
    let component = component.to_str().unwrap();
    let good = fixtures(&[("users.jsonl", USERS)]);
    // No --uri and no server on PATH.
    let empty_path = tempfile::tempdir().unwrap();
    let out = output(
        plugin_test(&[component, "--data", good.path().to_str().unwrap()])
            .env_remove("MONGODB_URI")
            .env("PATH", empty_path.path()),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("pass --uri"), "{err}");

    // A malformed fixture line: named by file and line.
    let bad = fixtures(&[("users.jsonl", &[r#"{"_id": 1}"#, "{not json"])]);
    let out = output(&mut plugin_test(&[component, "--data", bad.path().to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("users.jsonl:2:"), "{}", stderr(&out));

    // --keep with a server godwit would start and stop itself.
    let out =
        output(plugin_test(&[component, "--data", good.path().to_str().unwrap(), "--keep"]).env_remove("MONGODB_URI"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--keep needs --uri"), "{}", stderr(&out));

    // A --from-version the plugin's `requires` does not accept.
    let out = output(&mut plugin_test(&[
        component,
        "--data",
        good.path().to_str().unwrap(),
        "--from-version",
        "0.9.0",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not satisfy"), "{}", stderr(&out));
}

/// `godwit plugin test DIR` in a project `godwit new` wrote outside the
/// repository: its own tests, one line; a broken assertion fails it.
#[test]
fn plugin_test_runs_a_new_rust_projects_tests_and_fails_when_one_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-plugin");
    let new = crate::support::godwit(&["new", "my-plugin", "--dir", dir.to_str().unwrap()]);
    assert!(new.status.success(), "{}", stderr(&new));
    // Offline, sharing the native build of the new-project tests (new.rs).
    let run = || {
        output(
            plugin_test(&[dir.to_str().unwrap()])
                .env("CARGO_TARGET_DIR", target().join("new-projects"))
                .env("CARGO_NET_OFFLINE", "true"),
        )
    };
    let out = run();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out).trim_end(),
        format!("native tests passed: `cargo test` in {}: 4 passed", dir.display())
    );

    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let expected = r#"vec![Action::set("users", 1, doc! {"email": "ada@example.com"})]"#;
    assert_eq!(source.matches(expected).count(), 1, "the template changed: {source}");
    std::fs::write(&lib, source.replace(expected, &expected.replace("ada@", "ADA@"))).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let last = stderr(&out).trim_end().lines().last().unwrap_or_default().to_string();
    assert_eq!(
        last,
        format!(
            "error: native tests failed: `cargo test` in {}: 1 failed, 3 passed (exit status 101)",
            dir.display()
        )
    );
    // The failing test's own report is shown.
    assert!(stdout(&out).contains("lowercases_and_trims"), "{}", stdout(&out));
}

#[test]
fn plugin_test_runs_a_new_python_projects_tests_and_fails_when_one_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-py-plugin");
    let new = crate::support::godwit(&[
        "new",
        "my-py-plugin",
        "--lang",
        "python",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(new.status.success(), "{}", stderr(&new));
    let out = output(&mut plugin_test(&[dir.to_str().unwrap()]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(": 4 passed"), "{}", stdout(&out));
    assert!(
        !dir.join(".pytest_cache").exists(),
        "pytest left its cache in the project"
    );

    let test = dir.join("test_plugin.py");
    let source = std::fs::read_to_string(&test).unwrap();
    let expected = r#"'{"normalized": 1, "conflicts": 0}'"#;
    assert_eq!(source.matches(expected).count(), 1, "the template changed: {source}");
    std::fs::write(&test, source.replace(expected, &expected.replace("1,", "2,"))).unwrap();
    let out = output(&mut plugin_test(&[dir.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("native tests failed: `python3 -m pytest -q -p no:cacheprovider`")
            && err.contains("1 failed, 3 passed"),
        "{err}"
    );
}

/// A plugin that declares it keeps no state across batches gets each batch
/// of the replay step in a fresh instance: `lowercase-emails` passes, and
/// with `--param lie=yes` (it writes how many batches its instance saw) it
/// fails there in one line naming the declaration (exit 12) - before an
/// operator's run could resume it without the replay it needs.
#[test]
fn plugin_test_catches_a_plugin_that_keeps_the_state_it_declares_it_does_not_keep() {
    let users: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"_id": {i}, "email": "User{i}@Example.COM"}}"#))
        .collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let data = fixtures(&[("users.jsonl", &users)]);
    let component = plugin("lowercase-emails");
    let args = [
        component.to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--batch-size",
        "2",
    ];
    let out = output(&mut plugin_test(&args));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("replay identical (4 batches, each in a fresh instance: it keeps no state)"),
        "{text}"
    );

    let out = output(plugin_test(&args).args(["--param", "lie=yes"]));
    assert_eq!(out.status.code(), Some(12), "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("plugin test failed"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("journal replay: a fresh instance did not reproduce the execute run's batch")
            && line.contains("document _id 2")
            && line.contains("declares that it keeps no state across batches (keeps-state false)"),
        "{line}"
    );
}
