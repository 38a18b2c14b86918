//! `godwit plugin build` of a JavaScript plugin (a directory with a
//! `migration.js`): bundles the module, its imports, the JavaScript SDK and
//! the `bson` package into one ES module with esbuild and makes a component
//! of it with componentize-js (SpiderMonkey; no AOT, whose weval step
//! downloads a binary at run time).
//!
//! Both tools come from npm into a toolchain directory under the build's
//! target directory (`<target>/js/toolchain`, pinned versions from
//! `plugin-sdk/js/toolchain/package.json`, installed once); the Node.js side
//! of the build is `plugin-sdk/js/toolchain/build.mjs`. Everything it needs
//! of this repository is embedded in the binary, so a project made by
//! `godwit new --lang js` builds anywhere Node.js and npm are.
//!
//! The author's code is inside the component (the bundle is the engine's
//! snapshot input), so the component's sha256 - the plugin's identity in the
//! journal, in replay and in resume's refusal of a changed plugin - covers it.

use super::builder::Built;
use crate::hash::{sha256_parts, to_hex};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The module a JavaScript plugin directory must have.
pub const ENTRY: &str = "migration.js";

/// `dir` itself if it is a JavaScript plugin (a `migration.js`, no
/// `Cargo.toml` or `plugin.py`), else its subdirectories that are.
pub fn plugin_dirs(dir: &Path) -> Vec<PathBuf> {
    let is_plugin =
        |d: &Path| d.join(ENTRY).is_file() && !d.join("Cargo.toml").is_file() && !d.join("plugin.py").is_file();
    if is_plugin(dir) {
        return vec![dir.to_path_buf()];
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|d| is_plugin(d))
        .collect();
    dirs.sort();
    dirs
}

/// Builds each JavaScript plugin directory into `<out_dir>/<directory name>.wasm`,
/// staging under `<target_dir>/js/<name>/`. The component is made again only
/// when the bundle, the contract or the toolchain changed (build.mjs compares
/// a stamp): a new sha256 means a new compile and a run that cannot be
/// resumed with it.
pub fn build(dirs: &[PathBuf], out_dir: &Path, target_dir: &Path) -> anyhow::Result<Vec<Built>> {
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let first = dirs[0].join(ENTRY);
    let node = tool_output(Command::new("node").arg("--version")).with_context(|| {
        format!(
            "node is missing, and {} is a JavaScript plugin: install Node.js 20.19 or newer with npm \
             (Debian: `apt-get install nodejs npm`; `scripts/setup.sh` does)",
            first.display()
        )
    })?;
    let js = absolute(&target_dir.join("js"))?;
    let toolchain = install_toolchain(&js, &first)?;
    // The contract and the SDK: this godwit's own copies. A file is written
    // only when it differs, never removed first: another build sharing the
    // target directory may be bundling from it at this moment.
    let wit = js.join("wit");
    let sdk = js.join("sdk").join("godwit-sdk");
    // The current contract (`wit/`), the one the SDK's glue implements; the
    // host still runs components built for 0.1 before the SDK moved on.
    for (dir, files) in [(&wit, crate::sdk::WIT), (&sdk, crate::sdk::JS_SDK)] {
        for (path, text) in files {
            // The tables' paths start with `wit/` and `godwit-sdk/`.
            let relative = path.split_once('/').map_or(*path, |(_, rest)| rest);
            let to = dir.join(relative);
            if std::fs::read_to_string(&to).ok().as_deref() != Some(*text) {
                std::fs::create_dir_all(to.parent().expect("a staged file has a parent"))?;
                std::fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?;
            }
        }
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating output directory {}", out_dir.display()))?;
    let out_dir = absolute(out_dir)?;
    let mut built = Vec::new();
    for dir in dirs {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("reading JavaScript plugin {}", dir.display()))?;
        let entry = dir.join(ENTRY);
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable directory name", dir.display()))?
            .to_string();
        install_dependencies(&dir)?;
        // One SDK and one bson for the plugin and the glue: the plugin's own
        // (its package.json's) if it has them, else this godwit's.
        let own = |package: &str| Some(dir.join("node_modules").join(package)).filter(|p| p.is_dir());
        let plugin_sdk = own("godwit-sdk").unwrap_or_else(|| sdk.clone());
        let bson = own("bson")
            .or_else(|| Some(plugin_sdk.join("node_modules").join("bson")).filter(|p| p.is_dir()))
            .unwrap_or_else(|| toolchain.join("node_modules").join("bson"));
        let stage = js.join(&name);
        std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
        let entry_module = stage.join("entry.js");
        // World `plugin-declaring` (the plugin's `keepsState` answers
        // `keeps-state`) when its SDK has the glue for it; an SDK vendored
        // by an earlier godwit builds for world `plugin`, as it did.
        let declaring = std::fs::read_to_string(plugin_sdk.join("component.js"))
            .is_ok_and(|s| s.contains("export function traitsFor"));
        let (world, traits) = match declaring {
            true => (
                "plugin-declaring",
                "import { traitsFor } from 'godwit-sdk/component.js';\nexport const traits = traitsFor(plugin);\n",
            ),
            false => ("plugin", ""),
        };
        // Resolved from the plugin's directory (build.mjs gives it to esbuild as stdin there).
        std::fs::write(
            &entry_module,
            format!(
                "import * as plugin from './{ENTRY}';\n\
                 import {{ exportsFor }} from 'godwit-sdk/component.js';\n\
                 export const migration = exportsFor(plugin);\n{traits}"
            ),
        )
        .with_context(|| format!("writing {}", entry_module.display()))?;
        let out = out_dir.join(format!("{name}.wasm"));
        tracing::info!("building {name} with node {node}");
        let output = Command::new("node")
            .arg(toolchain.join("build.mjs"))
            .arg(&entry_module)
            .arg(stage.join("bundle.js"))
            .arg(&out)
            .arg(&wit)
            .arg(&plugin_sdk)
            .arg(&bson)
            .arg(plugin_sdk.join("prelude.js"))
            .arg(stage.join("inputs"))
            .arg(&dir)
            .arg(dir.join("node_modules"))
            .arg(toolchain.join("node_modules"))
            .current_dir(&toolchain)
            .env("GODWIT_WORLD", world)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running node for {}", entry.display()))?;
        if output.status.code() == Some(2) {
            // build.mjs refused the module itself, in one line saying what to add.
            bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
        }
        if !output.status.success() {
            bail!(
                "building {} failed ({}):\n{}\nfix the module (`node --check {}` shows syntax errors), then run \
                 `godwit plugin build` again",
                entry.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                entry.display()
            );
        }
        let size = std::fs::metadata(&out)
            .with_context(|| format!("reading {}", out.display()))?
            .len();
        built.push(Built {
            name,
            lib_source: entry,
            component: out,
            size,
        });
    }
    Ok(built)
}

/// Installs a JavaScript plugin's npm dependencies when they are missing or
/// older than its package.json (for a build, and for its native tests).
pub fn install_dependencies(dir: &Path) -> anyhow::Result<()> {
    install_plugin_dependencies(dir)?;
    // A `file:` dependency on the SDK (as in this repository) is a symlink
    // whose own dependencies (bson) npm does not install.
    if let Ok(linked) = dir.join("node_modules").join("godwit-sdk").canonicalize()
        && let Ok(dir) = dir.canonicalize()
        && !linked.starts_with(&dir)
    {
        install_plugin_dependencies(&linked)?;
    }
    Ok(())
}

/// The toolchain directory with esbuild, componentize-js and bson
/// installed from npm (once: again only when the pinned versions change).
fn install_toolchain(js: &Path, first: &Path) -> anyhow::Result<PathBuf> {
    let toolchain = js.join("toolchain");
    std::fs::create_dir_all(&toolchain).with_context(|| format!("creating {}", toolchain.display()))?;
    let mut wanted = None;
    for (path, text) in crate::sdk::JS_TOOLCHAIN {
        let file = path.rsplit('/').next().unwrap_or(path);
        let to = toolchain.join(file);
        if std::fs::read_to_string(&to).ok().as_deref() != Some(*text) {
            std::fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?;
        }
        if file == "package.json" {
            wanted = Some(to_hex(&sha256_parts([text.as_bytes()])));
        }
    }
    let wanted = wanted.expect("the toolchain has a package.json");
    let stamp = toolchain.join("node_modules").join(".godwit-toolchain");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        return Ok(toolchain);
    }
    tracing::info!(
        "installing the JavaScript build toolchain into {} (npm)",
        toolchain.display()
    );
    npm_install(&toolchain).with_context(|| {
        format!(
            "installing esbuild and componentize-js for {} into {}: npm's registry must be reachable the first time \
             (check `npm config get registry`), then run `godwit plugin build` again",
            first.display(),
            toolchain.display()
        )
    })?;
    std::fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(toolchain)
}

/// `npm install` in a plugin directory whose package.json lists
/// dependencies, when its node_modules is missing or older than package.json.
fn install_plugin_dependencies(dir: &Path) -> anyhow::Result<()> {
    let manifest = dir.join("package.json");
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return Ok(());
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON: fix it", manifest.display()))?;
    let has_dependencies = json
        .get("dependencies")
        .and_then(|d| d.as_object())
        .is_some_and(|d| !d.is_empty());
    if !has_dependencies {
        return Ok(());
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    if installed.is_some_and(|i| modified(&manifest).is_some_and(|m| m <= i)) {
        return Ok(());
    }
    tracing::info!("npm install in {}", dir.display());
    npm_install(dir).with_context(|| {
        format!(
            "installing the dependencies of {} (npm install in {}): fix package.json or the registry, then run \
             `godwit plugin build` again",
            manifest.display(),
            dir.display()
        )
    })
}

fn npm_install(dir: &Path) -> anyhow::Result<()> {
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running npm (is it installed? Debian: `apt-get install npm`)")?;
    if !output.status.success() {
        bail!(
            "npm install failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    path.canonicalize()
        .with_context(|| format!("resolving {}", path.display()))
}

/// A tool's trimmed stdout, or an error if it cannot run or fails.
fn tool_output(command: &mut Command) -> anyhow::Result<String> {
    let out = command.stderr(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("{:?} failed ({})", command, out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
