//! `godwit new NAME`: a plugin project, in Rust, Python or JavaScript, that builds and
//! tests wherever it is written, offline. The SDK is not published on a
//! registry, so this binary carries its sources (embedded by `build.rs`) and
//! writes them into the project: Rust projects get `vendor/plugin-sdk` and
//! `vendor/policy` as path dependencies, Python projects the `godwit_sdk`
//! package and the contract (`wit/`) componentize-py builds from, JavaScript
//! projects the `godwit-sdk` package as a `file:` dependency.

use super::{GlobalArgs, UsageError};
use crate::sdk as embedded;
use crate::text::outln;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Templates as `(path in the project, contents)`; `{{name}}`, `{{type}}`,
/// `{{sdk_version}}` and `{{godwit_version}}` are filled in.
const RUST_TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml.tmpl")),
    ("README.md", include_str!("../../templates/rust/README.md.tmpl")),
    (".gitignore", include_str!("../../templates/rust/gitignore.tmpl")),
    ("src/lib.rs", include_str!("../../templates/rust/src/lib.rs.tmpl")),
];

const PYTHON_TEMPLATE: &[(&str, &str)] = &[
    ("plugin.py", include_str!("../../templates/python/plugin.py.tmpl")),
    (
        "test_plugin.py",
        include_str!("../../templates/python/test_plugin.py.tmpl"),
    ),
    ("README.md", include_str!("../../templates/python/README.md.tmpl")),
    (".gitignore", include_str!("../../templates/python/gitignore.tmpl")),
];

const JS_TEMPLATE: &[(&str, &str)] = &[
    ("migration.js", include_str!("../../templates/js/migration.js.tmpl")),
    (
        "test/migration.test.js",
        include_str!("../../templates/js/test/migration.test.js.tmpl"),
    ),
    ("package.json", include_str!("../../templates/js/package.json.tmpl")),
    ("README.md", include_str!("../../templates/js/README.md.tmpl")),
    (".gitignore", include_str!("../../templates/js/gitignore.tmpl")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    /// JavaScript (built with esbuild and componentize-js).
    #[value(alias = "javascript")]
    Js,
}

#[derive(Args)]
pub struct NewCommand {
    /// The plugin's name: its manifest's name, crate or component file name
    /// (lowercase letters, digits, `-` and `_`, starting with a letter).
    name: String,
    /// Language of the plugin.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Directory to create [default: ./NAME]; one that exists must be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl NewCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        check_name(&self.name)?;
        let dir = self.dir.clone().unwrap_or_else(|| PathBuf::from(&self.name));
        check_empty(&dir)?;
        let files = project_files(&self.name, self.lang);
        for (path, contents) in &files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        }
        let lang = match self.lang {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        };
        if global.json {
            super::print_json_line(&serde_json::json!({
                "name": self.name, "lang": lang, "dir": dir, "files": files.len(),
                "sdk_version": sdk_version(self.lang),
            }))?;
            return Ok(ExitCode::SUCCESS);
        }
        outln!("created {lang} plugin {} in {}", self.name, dir.display());
        outln!("next: cd {} and read README.md; in short:", dir.display());
        match self.lang {
            Lang::Rust => {
                outln!("  godwit plugin test .            # native tests (cargo test)");
                outln!(
                    "  godwit plugin build .           # -> target/plugins/{}.wasm",
                    self.name
                );
            }
            Lang::Js => {
                outln!("  npm install                     # godwit-sdk (vendored) and bson");
                outln!("  godwit plugin test .            # native tests (node --test)");
                outln!(
                    "  godwit plugin build .           # -> target/plugins/{}.wasm",
                    self.name
                );
            }
            Lang::Python => {
                outln!("  godwit plugin test .            # native tests (pytest)");
                outln!(
                    "  godwit plugin build .           # -> target/plugins/{}.wasm",
                    self.name
                );
            }
        }
        outln!(
            "  godwit run target/plugins/{}.wasm --db DB   # dry run, then --execute",
            self.name
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// A name that is at once a manifest name, a Cargo package name, a file name
/// and (CamelCased) a type name.
fn check_name(name: &str) -> Result<(), UsageError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "plugin name {name:?} is not usable: use lowercase letters, digits, `-` and `_`, starting with a letter, at most 64 characters"
        )))
    }
}

/// Refuses to write into a directory that holds anything: a project's files
/// are never overwritten.
fn check_empty(dir: &Path) -> Result<(), UsageError> {
    let refuse = |why: &str| Err(UsageError(format!("{} {why}: choose another --dir", dir.display())));
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => refuse("already exists and is not empty"),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() => refuse("already exists and is not a directory"),
        Err(e) => refuse(&format!("cannot be read ({e})")),
    }
}

/// Every file of the new project, as `(path in the project, contents)`.
fn project_files(name: &str, lang: Lang) -> Vec<(String, String)> {
    let (template, vendored): (_, Vec<(String, &str)>) = match lang {
        Lang::Rust => (
            RUST_TEMPLATE,
            embedded::RUST_SDK
                .iter()
                .map(|(path, text)| (format!("vendor/{path}"), *text))
                .collect(),
        ),
        Lang::Python => (
            PYTHON_TEMPLATE,
            embedded::PYTHON_SDK
                .iter()
                .chain(embedded::WIT)
                .map(|(path, text)| (path.to_string(), *text))
                .collect(),
        ),
        Lang::Js => (
            JS_TEMPLATE,
            embedded::JS_SDK
                .iter()
                .map(|(path, text)| (path.to_string(), *text))
                .collect(),
        ),
    };
    let type_name = type_name(name);
    let sdk_version = sdk_version(lang);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{type}}", &type_name)
            .replace("{{sdk_version}}", &sdk_version)
            .replace("{{godwit_version}}", env!("CARGO_PKG_VERSION"))
    };
    template
        .iter()
        .map(|(path, text)| (path.to_string(), fill(text)))
        .chain(vendored.into_iter().map(|(path, text)| (path, text.to_string())))
        .collect()
}

/// `my-plugin_2` -> `MyPlugin2`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect()
}

/// The vendored SDK's version: the Rust SDK's `Cargo.toml` version; the
/// Python and JavaScript SDKs are versioned with godwit.
fn sdk_version(lang: Lang) -> String {
    let manifest = embedded::RUST_SDK
        .iter()
        .find(|(path, _)| *path == "plugin-sdk/Cargo.toml")
        .map(|(_, text)| *text)
        .unwrap_or_default();
    match lang {
        Lang::Rust => manifest
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("package")?.get("version")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into()),
        Lang::Python | Lang::Js => env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "my-plugin", "backfill_user_id2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My-plugin", "2fast", "-x", "a b", "a/b", "a.b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("my-plugin_2"), "MyPlugin2");
        assert_eq!(type_name("a--b"), "AB");
    }

    /// The vendored Rust SDK is complete enough to build: the SDK, its
    /// contract and the policy crate it depends on, side by side.
    #[test]
    fn rust_project_vendors_the_sdk() {
        let files = project_files("x", Lang::Rust);
        let has = |p: &str| files.iter().any(|(path, _)| path == p);
        for p in [
            "Cargo.toml",
            "src/lib.rs",
            "vendor/plugin-sdk/Cargo.toml",
            "vendor/plugin-sdk/src/lib.rs",
            "vendor/plugin-sdk/wit/migration.wit",
            "vendor/policy/Cargo.toml",
            "vendor/policy/src/lib.rs",
        ] {
            assert!(has(p), "{p} missing");
        }
        assert!(!files.iter().any(|(path, _)| path.contains("python")));
        assert!(
            !files
                .iter()
                .any(|(path, text)| !path.starts_with("vendor/") && text.contains("{{")),
            "a placeholder left unfilled"
        );
        assert_eq!(sdk_version(Lang::Rust), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn js_project_vendors_the_sdk() {
        let files = project_files("x", Lang::Js);
        let has = |p: &str| files.iter().any(|(path, _)| path == p);
        for p in [
            "migration.js",
            "test/migration.test.js",
            "package.json",
            "godwit-sdk/package.json",
            "godwit-sdk/index.js",
            "godwit-sdk/index.d.ts",
            "godwit-sdk/component.js",
            "godwit-sdk/testing.js",
        ] {
            assert!(has(p), "{p} missing");
        }
        assert!(
            !files
                .iter()
                .any(|(path, text)| !path.starts_with("godwit-sdk/") && text.contains("{{"))
        );
    }

    #[test]
    fn python_project_vendors_the_sdk_and_the_contract() {
        let files = project_files("x", Lang::Python);
        let has = |p: &str| files.iter().any(|(path, _)| path == p);
        for p in [
            "plugin.py",
            "test_plugin.py",
            "godwit_sdk/__init__.py",
            "wit/migration.wit",
        ] {
            assert!(has(p), "{p} missing");
        }
    }
}
