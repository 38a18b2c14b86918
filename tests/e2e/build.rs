//! `godwit plugin build`: input checks that refuse a crate that is not a
//! plugin, in one line saying what to add. Test crates live in a temporary
//! directory outside the repository, as a third-party author's would.

use crate::support::{godwit, stderr};
use std::path::Path;
use std::time::{Duration, Instant};

/// A crate with no dependencies (so no registry is needed), with `lib` as its
/// `[lib]` table and `src/lib.rs` as its source.
fn write_crate(dir: &Path, lib: &str, source: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"my-plugin\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n\n{lib}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
}

fn build(dir: &Path, out: &Path, target: &Path) -> std::process::Output {
    godwit(&[
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ])
}

#[test]
fn build_without_cdylib_fails_before_compiling() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-plugin");
    write_crate(&dir, "", "pub fn nothing() {}\n");
    let started = Instant::now();
    let out = build(&dir, &tmp.path().join("out"), &tmp.path().join("target"));
    let elapsed = started.elapsed();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("Cargo.toml"), "{err}");
    assert!(err.contains(r#"crate-type = ["cdylib", "rlib"]"#), "{err}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // Nothing was compiled: cargo never created the target directory.
    assert!(!tmp.path().join("target").exists());
}

#[test]
fn build_without_export_is_refused_naming_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-plugin");
    write_crate(&dir, "[lib]\ncrate-type = [\"cdylib\"]", "pub fn nothing() {}\n");
    let out_dir = tmp.path().join("out");
    // A small, quick build: the speed profile is for real plugins.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args([
            "plugin",
            "build",
            dir.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .arg("--target-dir")
        .arg(tmp.path().join("target"))
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a crate without export! built");
    // Cargo's progress goes to stderr too; godwit's refusal is its last line.
    let all = stderr(&out);
    let err = all.trim_end().lines().last().unwrap_or_default();
    assert!(err.starts_with("error: "), "{all}");
    assert!(err.contains(&format!("{}", dir.join("src/lib.rs").display())), "{err}");
    assert!(err.contains("add `godwit_sdk::export!(YourType);`"), "{err}");
    // No non-plugin is left where plugins are looked for.
    assert!(!out_dir.join("my-plugin.wasm").exists());
}

/// A JavaScript plugin without `process` is refused before anything is made
/// of it, naming the file and what to add; one with a syntax error is
/// refused with esbuild's line and column. Both build no component. (The
/// toolchain is the one `just plugins` installed into target/wasm.)
#[test]
fn js_build_refuses_a_module_without_process_and_one_that_does_not_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm");
    let out = tmp.path().join("out");
    let dir = tmp.path().join("no-process");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("migration.js"),
        "export const manifest = { name: 'x', version: '1.0.0', passes: [] };\nexport function begin() {}\n",
    )
    .unwrap();
    let started = Instant::now();
    let output = build(&dir, &out, &target);
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{} exports no `process`: add `export function process(passIndex, docs)",
            dir.join("migration.js").display()
        )),
        "{err}"
    );
    assert!(err.contains("then run `godwit plugin build` again"), "{err}");
    assert!(!out.join("no-process.wasm").exists());

    let dir = tmp.path().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("migration.js"),
        "export function process(passIndex, docs) {\n  return [;\n}\n",
    )
    .unwrap();
    let output = build(&dir, &out, &target);
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:10: Unexpected \";\"; fix the module, then run `godwit plugin build` again",
            dir.join("migration.js").display()
        )),
        "esbuild's line and column: {err}"
    );
    assert!(!out.join("broken.wasm").exists());
    assert!(started.elapsed() < Duration::from_secs(120), "{:?}", started.elapsed());
}
