//! `godwit new`: the project it writes builds, loads and passes its own tests
//! where a third-party author would have it - in a temporary directory
//! outside this repository, offline, with nothing of the repository but the
//! `godwit` binary.

use crate::support::{godwit, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's `target/`: the wasm builds share `target/wasm` (what
/// `just plugins` warms), native builds of the generated projects
/// `target/new-projects`, so that a test run does not recompile `bson` and
/// `wit-bindgen` from scratch.
fn target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

fn new(args: &[&str]) -> std::process::Output {
    let out = godwit(&[&["new"], args].concat());
    assert!(out.status.success(), "godwit new {args:?}: {}", stderr(&out));
    out
}

/// `godwit plugin inspect --json` of `component`: its manifest's name.
fn manifest_name(component: &Path) -> String {
    inspect(component)["name"].as_str().unwrap().to_string()
}

/// `godwit plugin build DIR --out OUT --target-dir TARGET` with the shared
/// compile cache; panics with its error output when it fails.
fn build_project(dir: &Path, out: &Path, target_dir: &Path) {
    let build = Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(["plugin", "build"])
        .arg(dir)
        .arg("--out")
        .arg(out)
        .arg("--target-dir")
        .arg(target_dir)
        .env("GODWIT_CACHE_DIR", target().join("test-compile-cache"))
        .output()
        .unwrap();
    assert!(build.status.success(), "plugin build: {}", stderr(&build));
}

/// `godwit plugin inspect --json` of `component`.
fn inspect(component: &Path) -> serde_json::Value {
    let out = godwit(&[
        "plugin",
        "inspect",
        "--json",
        component.to_str().unwrap(),
        "--cache-dir",
        target().join("test-compile-cache").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "inspect: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn new_rust_project_builds_loads_and_passes_its_tests_outside_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-plugin");
    new(&["my-plugin", "--dir", dir.to_str().unwrap()]);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"godwit-sdk = { path = "vendor/plugin-sdk" }"#),
        "{manifest}"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("godwit plugin build ."), "{readme}");
    assert!(dir.join("vendor/plugin-sdk/wit/migration.wit").is_file());

    // Offline, as on a machine without a registry: the SDK is vendored and
    // its dependencies come from cargo's local cache.
    let out_dir = tmp.path().join("out");
    let build = Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(["plugin", "build"])
        .arg(&dir)
        .arg("--out")
        .arg(&out_dir)
        .arg("--target-dir")
        .arg(target().join("wasm"))
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .unwrap();
    assert!(build.status.success(), "plugin build: {}", stderr(&build));
    assert_eq!(manifest_name(&out_dir.join("my-plugin.wasm")), "my-plugin");

    let test = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--offline"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", target().join("new-projects"))
        .output()
        .unwrap();
    let report = stdout(&test);
    assert!(test.status.success(), "cargo test: {report}{}", stderr(&test));
    assert!(report.contains("test result: ok. 4 passed"), "{report}");

    // The README's "Writing a plugin" example compiles in such a project.
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Writing a plugin")
        .expect("README has `## Writing a plugin`")..];
    let example = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a rust block in `## Writing a plugin`");
    std::fs::write(dir.join("src/lib.rs"), example).unwrap();
    let check = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--offline", "--lib"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", target().join("new-projects"))
        .output()
        .unwrap();
    assert!(check.status.success(), "README example: {}", stderr(&check));
}

#[test]
fn new_python_project_passes_its_tests_and_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-py-plugin");
    new(&["my-py-plugin", "--lang", "python", "--dir", dir.to_str().unwrap()]);
    for file in [
        "plugin.py",
        "test_plugin.py",
        "README.md",
        "godwit_sdk/__init__.py",
        "wit/migration.wit",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let pytest = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        pytest.status.success(),
        "pytest (scripts/setup.sh installs it): {}{}",
        stdout(&pytest),
        stderr(&pytest)
    );
    assert!(stdout(&pytest).contains("4 passed"), "{}", stdout(&pytest));

    // The build's staging and output are shared between test runs: the
    // component is rebuilt (~15 s, plus a first compile) only when the
    // template or the SDK changed, and its compiled form is then cached.
    let shared = target().join("new-projects");
    build_project(&dir, &shared.join("plugins"), &shared.join("wasm"));
    let component = shared.join("plugins/my-py-plugin.wasm");
    assert_eq!(manifest_name(&component), "my-py-plugin");
    // Built for world `plugin-declaring`: the template's class remembers the
    // addresses it saw (to report collisions), so it keeps the default.
    let built = inspect(&component);
    assert_eq!(built["keeps_state"], true, "{built:#}");
    assert!(
        built["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "godwit:migration/traits@0.2.0"),
        "{built:#}"
    );
    // A class that says `keeps_state = False` declares it.
    let source = std::fs::read_to_string(dir.join("plugin.py")).unwrap();
    let declared = source.replacen(
        "@g.export\nclass MyPyPlugin:\n",
        "@g.export\nclass MyPyPlugin:\n    keeps_state = False\n\n",
        1,
    );
    assert_ne!(declared, source, "the template's class line moved:\n{source}");
    std::fs::write(dir.join("plugin.py"), declared).unwrap();
    let rebuild = || {
        build_project(&dir, &shared.join("plugins-declared"), &shared.join("wasm"));
        inspect(&shared.join("plugins-declared/my-py-plugin.wasm"))
    };
    assert_eq!(rebuild()["keeps_state"], false);
    // A project made by an earlier godwit has a contract without the world
    // `plugin-declaring`: it is built for world `plugin` and keeps the default.
    let wit = dir.join("wit/migration.wit");
    let contract = std::fs::read_to_string(&wit).unwrap();
    let old = &contract[..contract
        .find("/// A plugin that also declares its traits")
        .expect("the world's comment")];
    std::fs::write(&wit, old).unwrap();
    let built = rebuild();
    assert_eq!(built["keeps_state"], true, "{built:#}");
    assert!(
        !built["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "godwit:migration/traits@0.2.0"),
        "{built:#}"
    );
}

#[test]
fn new_js_project_passes_its_tests_and_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-js-plugin");
    new(&["my-js-plugin", "--lang", "js", "--dir", dir.to_str().unwrap()]);
    for file in [
        "migration.js",
        "test/migration.test.js",
        "package.json",
        "README.md",
        "godwit-sdk/index.js",
        "godwit-sdk/index.d.ts",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // `plugin test DIR` installs the project's npm dependencies (godwit-sdk
    // from its vendored copy, bson from the registry), then runs node --test.
    let test = godwit(&["plugin", "test", dir.to_str().unwrap()]);
    assert!(test.status.success(), "plugin test: {}{}", stdout(&test), stderr(&test));
    assert!(stdout(&test).contains("2 passed"), "{}", stdout(&test));
    // A failing test fails the command, with node's count.
    let tests = dir.join("test/migration.test.js");
    let text = std::fs::read_to_string(&tests).unwrap();
    std::fs::write(&tests, text.replace("'{\"normalized\": 0, \"conflicts\": 1}'", "'{}'")).unwrap();
    let failing = godwit(&["plugin", "test", dir.to_str().unwrap()]);
    assert_eq!(
        failing.status.code(),
        Some(1),
        "{}{}",
        stdout(&failing),
        stderr(&failing)
    );
    assert!(
        stderr(&failing).contains("1 failed, 1 passed"),
        "{}{}",
        stdout(&failing),
        stderr(&failing)
    );
    std::fs::write(&tests, text).unwrap();

    // The toolchain (esbuild, componentize-js) is the one `just plugins`
    // installed into target/wasm; the bundle does not depend on where the
    // project is, so an unchanged template is not made into a component again.
    let shared = target().join("new-projects");
    build_project(&dir, &shared.join("plugins"), &target().join("wasm"));
    let info = inspect(&shared.join("plugins/my-js-plugin.wasm"));
    assert_eq!(info["name"], "my-js-plugin");
    // Built against the current contract, whose manifest declares reads.
    assert_eq!(info["contract"], "godwit:migration@0.2.0", "{info:#}");
    assert_eq!(info["reads"], serde_json::json!([]), "{info:#}");
    // World `plugin-declaring`: the template remembers the addresses it saw,
    // so it keeps the default; a module exporting `keepsState = false`
    // declares that it keeps no state.
    assert_eq!(info["keeps_state"], true, "{info:#}");
    let module = dir.join("migration.js");
    let source = std::fs::read_to_string(&module).unwrap();
    std::fs::write(&module, format!("{source}\nexport const keepsState = false;\n")).unwrap();
    build_project(&dir, &shared.join("plugins-declared"), &target().join("wasm"));
    let info = inspect(&shared.join("plugins-declared/my-js-plugin.wasm"));
    assert_eq!(info["keeps_state"], false, "{info:#}");
}

#[test]
fn new_refuses_a_non_empty_directory_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = godwit(&["new", "my-plugin", "--dir", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    // An empty directory is fine; a name that cannot be a crate's is not.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bad = godwit(&["new", "My Plugin", "--dir", empty.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("\"My Plugin\""), "{}", stderr(&bad));
    new(&["x_2", "--dir", empty.to_str().unwrap()]);
    assert!(empty.join("src/lib.rs").is_file());
}
