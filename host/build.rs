//! Records the wasmtime version from Cargo.lock, for run headers, and embeds
//! the SDKs' sources for `godwit new` (see `cli/new.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let version = text
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GODWIT_WASMTIME_VERSION={version}");
    embed_sdks(&root);
}

/// Writes `$OUT_DIR/embedded_sdk.rs`: the files `godwit new` vendors into a
/// project, as `(path in the project, contents)` pairs of `include_str!`s.
/// The Rust SDK is `plugin-sdk/` (without its Python part) and `policy/`,
/// copied side by side so that the SDK's `path = "../policy"` holds; the
/// Python SDK is the `godwit_sdk` package; `wit/` is the contract a Python
/// project hands componentize-py. Every file is listed by walking the
/// directories, so a new SDK source file needs no change here.
fn embed_sdks(root: &Path) {
    let mut out = String::new();
    let mut table = |name: &str, sources: &[(&str, &str)]| {
        writeln!(out, "pub static {name}: &[(&str, &str)] = &[").unwrap();
        for (dir, prefix) in sources {
            let dir = root.join(dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            let mut files = Vec::new();
            walk(&dir, &mut files);
            files.sort();
            for file in files {
                let relative = file.strip_prefix(&dir).unwrap();
                let relative: Vec<_> = relative.iter().map(|c| c.to_str().unwrap()).collect();
                let path = format!("{prefix}{}", relative.join("/"));
                let absolute = file.canonicalize().unwrap();
                writeln!(out, "    ({path:?}, include_str!({:?})),", absolute.to_str().unwrap()).unwrap();
            }
        }
        writeln!(out, "];").unwrap();
    };
    table(
        "RUST_SDK",
        &[
            ("plugin-sdk/Cargo.toml", "plugin-sdk/Cargo.toml"),
            ("plugin-sdk/README.md", "plugin-sdk/README.md"),
            ("plugin-sdk/src", "plugin-sdk/src/"),
            ("plugin-sdk/wit", "plugin-sdk/wit/"),
            ("policy/Cargo.toml", "policy/Cargo.toml"),
            ("policy/src", "policy/src/"),
        ],
    );
    table("PYTHON_SDK", &[("plugin-sdk/python/godwit_sdk", "godwit_sdk/")]);
    // The JavaScript SDK file by file: its directory also holds the author's
    // node_modules, its tests and the build toolchain, none of which a
    // plugin build stages.
    let js: Vec<(String, String)> = [
        "package.json",
        "index.js",
        "index.d.ts",
        "component.js",
        "prelude.js",
        "testing.js",
        "testing.d.ts",
        "README.md",
    ]
    .iter()
    .map(|f| (format!("plugin-sdk/js/{f}"), format!("godwit-sdk/{f}")))
    .collect();
    let js: Vec<(&str, &str)> = js.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    table("JS_SDK", &js);
    table(
        "JS_TOOLCHAIN",
        &[
            ("plugin-sdk/js/toolchain/package.json", "toolchain/package.json"),
            ("plugin-sdk/js/toolchain/build.mjs", "toolchain/build.mjs"),
        ],
    );
    // The current contract: what a Python project hands componentize-py and
    // what a JavaScript plugin build hands componentize-js.
    table("WIT", &[("wit", "wit/")]);
    let path = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded_sdk.rs");
    std::fs::write(path, out).unwrap();
}

/// The files under `path` (or `path` itself), without Python's caches.
fn walk(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        if name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        walk(&path, files);
    }
}
