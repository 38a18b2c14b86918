//! `godwit plugin build` of a Python plugin (a directory with a `plugin.py`):
//! stages its modules, the `godwit_sdk` package and pymongo's `bson` (pure
//! Python) and runs componentize-py. The same steps as
//! `scripts/build-python-plugin.sh`, which builds this repository's
//! `plugins-py/`, but needing nothing of the repository: a project made by
//! `godwit new --lang python` builds anywhere.

use super::builder::Built;
use crate::hash::{sha256_parts, to_hex};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `dir` itself if it is a Python plugin (a `plugin.py`, no `Cargo.toml`),
/// else its subdirectories that are.
pub fn plugin_dirs(dir: &Path) -> Vec<PathBuf> {
    let is_plugin = |d: &Path| d.join("plugin.py").is_file() && !d.join("Cargo.toml").is_file();
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

/// Builds each Python plugin directory into `<out_dir>/<directory name>.wasm`,
/// staging under `<target_dir>/python/<name>/`. componentize-py's output
/// differs from build to build (the interpreter snapshot holds state seeded
/// at build time), and a new sha256 means a new compile and a run that
/// cannot be resumed with it: a component is rebuilt only when its staged
/// inputs, the contract or componentize-py's version change.
pub fn build(dirs: &[PathBuf], out_dir: &Path, target_dir: &Path) -> anyhow::Result<Vec<Built>> {
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let version = tool_output(Command::new("componentize-py").arg("--version"))
        .context("componentize-py is missing: `pip install componentize-py pymongo` (0.25.x) builds Python plugins")?;
    let bson = tool_output(Command::new("python3").args([
        "-c",
        "import bson.codec_options, os; print(os.path.dirname(bson.__file__))",
    ]))
    .context("pymongo's bson package is missing for python3: `pip install pymongo`")?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating output directory {}", out_dir.display()))?;
    let mut built = Vec::new();
    for dir in dirs {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("reading Python plugin {}", dir.display()))?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable directory name", dir.display()))?
            .to_string();
        let stage = target_dir.join("python").join(&name);
        stage_plugin(&dir, Path::new(&bson), &stage)?;
        let inputs = inputs_hash(&stage, &version)?;
        let out = out_dir.join(format!("{name}.wasm"));
        let stamp = target_dir.join("python").join(format!("{name}.inputs"));
        let up_to_date = out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == inputs);
        if up_to_date {
            tracing::info!("{name} is up to date");
        } else {
            tracing::info!("building {name} with {version}");
            let _ = std::fs::remove_file(&stamp);
            let status = Command::new("componentize-py")
                .arg("-d")
                .arg(stage.join("wit"))
                .args(["-w", world(&stage), "componentize", "-p"])
                .arg(&stage)
                .arg("godwit_app")
                .arg("-o")
                .arg(&out)
                // Python's hash randomization would make set iteration differ
                // between builds; the snapshot fixes the seed of a component.
                .env("PYTHONHASHSEED", "0")
                .stdout(Stdio::null())
                .status()
                .with_context(|| format!("running componentize-py for {}", dir.display()))?;
            if !status.success() {
                bail!("componentize-py failed for {} ({status})", dir.display());
            }
            std::fs::write(&stamp, &inputs).with_context(|| format!("writing {}", stamp.display()))?;
        }
        let size = std::fs::metadata(&out)
            .with_context(|| format!("reading {}", out.display()))?
            .len();
        built.push(Built {
            name,
            lib_source: dir.join("plugin.py"),
            component: out,
            size,
        });
    }
    Ok(built)
}

/// Fills `stage` afresh: the plugin's modules (not its `test_*.py` and
/// `conftest.py`), the SDK and contract (the project's own copies, else
/// this godwit's), pure-Python `bson`, and the entry module.
fn stage_plugin(dir: &Path, bson: &Path, stage: &Path) -> anyhow::Result<()> {
    if stage.exists() {
        std::fs::remove_dir_all(stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    std::fs::create_dir_all(stage).with_context(|| format!("creating {}", stage.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let helper = file.ends_with(".py") && !file.starts_with("test_") && file != "conftest.py";
        if path.is_file() && helper {
            copy(&path, &stage.join(file))?;
        }
    }
    // The C extension is left out: the component has no use for a native
    // library, and bson falls back to Python by itself.
    copy_tree(bson, &stage.join("bson"), &|name| {
        !(name.ends_with(".so") || name.ends_with(".c") || name.ends_with(".h"))
    })?;
    for (own, embedded) in [("godwit_sdk", crate::sdk::PYTHON_SDK), ("wit", crate::sdk::WIT)] {
        if dir.join(own).is_dir() {
            copy_tree(&dir.join(own), &stage.join(own), &|name| {
                name.ends_with(".py") || name.ends_with(".wit")
            })?;
        } else {
            for (path, text) in embedded {
                let to = stage.join(path);
                std::fs::create_dir_all(to.parent().expect("a staged file has a parent"))?;
                std::fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?;
            }
        }
    }
    // componentize-py looks for the exported interfaces' classes
    // (`Migration`, and `Traits` of world `plugin-declaring`) in the entry
    // module.
    let imports = match world(stage) {
        "plugin-declaring" => "Migration, Traits",
        _ => "Migration",
    };
    std::fs::write(
        stage.join("godwit_app.py"),
        format!(
            "import plugin  # registers the plugin class with @godwit_sdk.export\n\
             from godwit_sdk._component import {imports}  # noqa: F401\n"
        ),
    )?;
    Ok(())
}

/// The world a staged plugin is built for: `plugin-declaring` (it declares
/// `keeps-state`) when its contract and its SDK both know it, else `plugin`
/// - a project created by an earlier godwit, with its own copies of both.
fn world(stage: &Path) -> &'static str {
    let has = |path: &str, text: &str| std::fs::read_to_string(stage.join(path)).is_ok_and(|s| s.contains(text));
    match has("wit/migration.wit", "world plugin-declaring") && has("godwit_sdk/_component.py", "class Traits(") {
        true => "plugin-declaring",
        false => "plugin",
    }
}

/// sha256 over every staged file (path and contents, in path order) and
/// componentize-py's version.
fn inputs_hash(stage: &Path, version: &str) -> anyhow::Result<String> {
    let mut files = Vec::new();
    list_files(stage, &mut files)?;
    files.sort();
    let mut parts: Vec<Vec<u8>> = vec![version.as_bytes().to_vec()];
    for file in files {
        parts.push(file.strip_prefix(stage)?.to_string_lossy().as_bytes().to_vec());
        parts.push(std::fs::read(&file)?);
    }
    Ok(to_hex(&sha256_parts(parts.iter().map(Vec::as_slice))))
}

fn list_files(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            list_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Copies the files under `from` that `keep` accepts (by name), without
/// Python's caches.
fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&str) -> bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(name), keep)?;
        } else if keep(name) {
            copy(&path, &to.join(name))?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// A tool's trimmed stdout, or an error if it cannot run or fails.
fn tool_output(command: &mut Command) -> anyhow::Result<String> {
    let out = command.stderr(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("{:?} failed ({})", command, out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
