//! `godwit plugin inspect`, `godwit plugin build` and `godwit plugin run`;
//! `godwit plugin test` lives in `plugin_test.rs`.

use super::{GlobalArgs, LoadArgs, SandboxArgs};
use crate::hash::to_hex;
use crate::plugin::actions::ValidAction;
use crate::plugin::builder::{self, BuildRequest, Toolchain};
use crate::plugin::cache::CompileCache;
use crate::plugin::{Limits, LoadError, LoadedPlugin, PluginHost, contract, js_builder, python_builder};
use crate::run::trial;
use crate::text::outln;
use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's manifest, hash, size, contract version and imports.
    Inspect {
        /// Plugin component (.wasm); a core wasip1 module is componentized on load.
        file: PathBuf,
        #[command(flatten)]
        sandbox: LoadArgs,
    },
    /// Call a plugin once without a database: documents from a file as one
    /// batch of a pass, then `finish`; prints the actions and reports as JSON.
    ///
    /// The documents (Extended JSON, one per line) are filtered, put in `_id`
    /// order and projected as the pass would read them from a collection
    /// (unless --as-given). The plugin is set up, limited and checked as in
    /// `godwit run`; nothing is written or journaled. A lookup fails the call:
    /// there is no database to serve it.
    Run {
        /// Plugin component (.wasm).
        file: PathBuf,
        /// Documents, one Extended JSON object per line (`-`: standard input).
        #[arg(long, value_name = "DOCS")]
        input: PathBuf,
        /// A parameter for the plugin's `begin` (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// The pass whose batch the documents are, by name or index [default: the first].
        #[arg(long, value_name = "NAME")]
        pass: Option<String>,
        /// Give the plugin the documents as they are, in the file's order,
        /// without the pass's filter and projection.
        #[arg(long)]
        as_given: bool,
        /// Do not call `finish` after the batch.
        #[arg(long)]
        no_finish: bool,
        /// The database name the plugin is told (nothing connects to it).
        #[arg(long, value_name = "NAME", default_value = "test")]
        db: String,
        /// godwit's metadata collection, out of reach of the plugin's actions as in a run.
        #[arg(long, default_value = godwit_policy::DEFAULT_METADATA_COLLECTION)]
        metadata_collection: String,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Test a plugin: its project's own tests, or with --data the component on
    /// fixtures in a throwaway database.
    ///
    /// Without --data: `cargo test` in a crate, `python3 -m pytest` in a Python
    /// plugin directory; one line, exit 1 when a test fails (or there are none).
    ///
    /// With --data FIXTURES (a DIR is built first): loads the fixtures into a
    /// fresh database, stamps the version the plugin `requires`, then runs it
    /// with `godwit run`'s engine and a temporary journal - a dry run, an
    /// execute, a second dry run that must find nothing to write (else exit
    /// 10) - and replays the execute as `journal replay` does (else exit 12).
    /// One verdict line names the step that failed; the database is dropped.
    Test(Box<super::plugin_test::TestCommand>),
    /// Build plugin crates (and Python plugins: a directory with a plugin.py; JavaScript plugins: a directory with a migration.js) into components (`<out>/<name>.wasm`).
    Build {
        /// A plugin crate or Python plugin, or a directory whose subdirectories are.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory of the components.
        #[arg(long, default_value = "target/plugins")]
        out: PathBuf,
        /// Cargo target directory for the wasm builds.
        #[arg(long, default_value = "target/wasm")]
        target_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Toolchain::Auto)]
        toolchain: Toolchain,
    },
}

impl PluginCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        match self {
            PluginCommand::Inspect { file, sandbox } => {
                let host = sandbox.plugin_host()?;
                let plugin = host.load(&file)?;
                if global.json {
                    super::print_json(&inspect_json(&plugin))?;
                } else {
                    print_inspect(&plugin);
                }
                Ok(ExitCode::SUCCESS)
            }
            PluginCommand::Run {
                file,
                input,
                params,
                pass,
                as_given,
                no_finish,
                db,
                metadata_collection,
                sandbox,
            } => {
                // Everything local is checked before the plugin runs.
                let params = super::run::parse_params(&params)?;
                let plugin = sandbox.plugin_host()?.load(&file)?;
                let passes = &plugin.manifest.passes;
                let index = match &pass {
                    None => 0,
                    Some(name) => passes
                        .iter()
                        .position(|p| p.name == *name)
                        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < passes.len()))
                        .ok_or_else(|| {
                            super::UsageError(format!(
                                "plugin {} has no pass {name:?} (its passes: {})",
                                plugin.manifest.name,
                                passes
                                    .iter()
                                    .map(|p| format!("{:?}", p.name))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })?,
                };
                let Some(spec) = passes.get(index) else {
                    anyhow::bail!(super::UsageError(format!(
                        "plugin {} has no passes: there is no batch to give it",
                        plugin.manifest.name
                    )));
                };
                let name = if input == Path::new("-") {
                    "standard input".to_string()
                } else {
                    input.display().to_string()
                };
                let read = trial::read_input(&input)?;
                let read_count = read.len();
                let documents = trial::select(spec, read, as_given, &name)?;
                let matched = documents.len();
                let outcome = trial::Trial {
                    plugin: &plugin,
                    params: &params,
                    pass: index as u32,
                    documents,
                    database: &db,
                    metadata_collection: &metadata_collection,
                    finish: !no_finish,
                }
                .run()?;
                let mut report = serde_json::json!({
                    "plugin": plugin.manifest.name,
                    "version": plugin.manifest.version.to_string(),
                    "sha256": plugin.sha256_hex(),
                    "run_id": outcome.identity.run_id,
                    "started_at": crate::text::time(bson::DateTime::from_millis(outcome.identity.started_at_ms)),
                    "params": params.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "pass": {"index": index, "name": spec.name, "collection": spec.collection},
                    "input": {"file": name, "documents": read_count, "given": matched, "as_given": as_given},
                    "process": call_json(&outcome.process),
                    "finish": outcome.finish.as_ref().map(call_json),
                });
                // Schema operations (contract 0.2), as the journal stores them.
                let ops = |ops: &[godwit_policy::SchemaOp]| -> Vec<serde_json::Value> {
                    ops.iter()
                        .map(|op| bson::Bson::Document(op.to_document()).into_relaxed_extjson())
                        .collect()
                };
                if !outcome.schema_begin.is_empty() || !outcome.schema_finish.is_empty() {
                    report["schema"] = serde_json::json!({
                        "begin": ops(&outcome.schema_begin),
                        "finish": ops(&outcome.schema_finish),
                    });
                }
                super::print_json(&report)?;
                Ok(ExitCode::SUCCESS)
            }
            PluginCommand::Test(command) => command.run(global),
            PluginCommand::Build {
                dirs,
                out,
                target_dir,
                toolchain,
            } => {
                let built = build(&dirs, &out, &target_dir, toolchain)?;
                for b in &built {
                    if global.json {
                        super::print_json_line(
                            &serde_json::json!({"name": b.name, "component": b.component, "size": b.size}),
                        )?;
                    } else {
                        outln!("built {} ({} KiB)", b.component.display(), b.size / 1024);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// One call's answer as `plugin run` prints it: the write actions as
/// relaxed Extended JSON documents (as `journal export` shows actions), the
/// reports apart, and counts.
fn call_json(call: &trial::CallResult) -> serde_json::Value {
    let (reports, writes): (Vec<&ValidAction>, Vec<&ValidAction>) = call
        .actions
        .iter()
        .partition(|a| matches!(a, ValidAction::Report { .. }));
    let count = |op: &str| {
        writes
            .iter()
            .filter(|a| a.to_document().get_str("op").is_ok_and(|o| o == op))
            .count()
    };
    serde_json::json!({
        "counts": {"updates": count("update"), "inserts": count("insert"), "deletes": count("delete"), "reports": reports.len()},
        "actions": writes.iter().map(|a| bson::Bson::Document(a.to_document()).into_relaxed_extjson()).collect::<Vec<_>>(),
        "reports": reports.iter().filter_map(|a| match a {
            ValidAction::Report { kind, key, message } => Some(serde_json::json!({"kind": kind, "key": key, "message": message})),
            _ => None,
        }).collect::<Vec<_>>(),
        "fuel": call.fuel,
    })
}

/// Builds the plugin crates and Python plugins in `dirs` (each one, or a
/// directory of them) into `out`, and loads each component as `run` would
/// (see [`check_built`]). `plugin build` and `plugin test DIR --data` share it.
pub(super) fn build(
    dirs: &[PathBuf],
    out: &Path,
    target_dir: &Path,
    toolchain: Toolchain,
) -> anyhow::Result<Vec<builder::Built>> {
    let (mut crates, mut python, mut javascript) = (Vec::new(), Vec::new(), Vec::new());
    for dir in dirs {
        // Python plugins (a `plugin.py`) build with componentize-py,
        // JavaScript plugins (a `migration.js`) with esbuild and componentize-js.
        let py = python_builder::plugin_dirs(dir);
        let js = js_builder::plugin_dirs(dir);
        match plugin_crates(dir) {
            Err(_) if !py.is_empty() || !js.is_empty() => {}
            found => crates.extend(found?),
        }
        python.extend(py);
        javascript.extend(js);
    }
    let mut built = Vec::new();
    if !crates.is_empty() || (python.is_empty() && javascript.is_empty()) {
        built = builder::build(&BuildRequest {
            crates,
            out_dir: out.to_path_buf(),
            target_dir: target_dir.to_path_buf(),
            toolchain,
        })?;
    }
    built.extend(python_builder::build(&python, out, target_dir)?);
    built.extend(js_builder::build(&javascript, out, target_dir)?);
    // A crate that never calls `export!` still builds - into a component
    // that exports nothing. The loader every command uses tells, so a build
    // that would not load is not a build. Through the compile cache, so that
    // an unchanged component (a Python one takes ~20 s to compile) loads at
    // once, and the first run of a new one does not compile it again.
    let cache = CompileCache::default_dir().map(CompileCache::new);
    let host = PluginHost::new(Limits::default(), cache)?;
    for b in &built {
        check_built(&host, b)?;
    }
    Ok(built)
}

/// Loads a freshly built component as `run` would. One that exports no
/// migration (the crate never calls `export!`) is not a plugin: it is
/// removed and refused with the line that fixes it. Any other problem (an
/// invalid manifest, another contract version, a manifest the plugin policy
/// refuses) belongs to the plugin, not to the build - test plugins are built
/// broken on purpose: it is built, and the refusal a run would give is
/// shown as a warning.
fn check_built(host: &PluginHost, built: &builder::Built) -> anyhow::Result<()> {
    match host.load(&built.component) {
        Ok(_) => Ok(()),
        Err(LoadError::NotAPlugin { .. }) => {
            // Best effort: the refusal below matters more than a leftover file.
            let _ = std::fs::remove_file(&built.component);
            anyhow::bail!(
                "{}: the crate {} exports no migration: add `godwit_sdk::export!(YourType);` \
                 (YourType implements godwit_sdk::Migration)",
                built.lib_source.display(),
                built.name
            )
        }
        Err(other) => {
            tracing::warn!("built {}, but godwit refuses to run it: {other}", built.name);
            Ok(())
        }
    }
}

/// `dir` itself if it is a crate, else its subdirectories that are crates.
fn plugin_crates(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading plugin directory {}", dir.display()))? {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file() {
            crates.push(path);
        }
    }
    crates.sort();
    if crates.is_empty() {
        anyhow::bail!(
            "{} is not a plugin (a crate, a Python plugin with plugin.py, a JavaScript plugin with migration.js) \
             nor a directory of them: give `godwit plugin build` such a directory",
            dir.display()
        );
    }
    Ok(crates)
}

fn inspect_json(plugin: &LoadedPlugin) -> serde_json::Value {
    let m = &plugin.manifest;
    serde_json::json!({
        "file": plugin.file,
        "name": m.name,
        "version": m.version.to_string(),
        "requires": m.requires.as_ref().map(ToString::to_string),
        "description": m.description,
        "passes": m.passes.iter().map(|p| serde_json::json!({
            "name": p.name,
            "collection": p.collection,
            "filter": bson::Bson::Document(p.filter.clone()).into_relaxed_extjson(),
            "projection": p.projection.clone().map(|d| bson::Bson::Document(d).into_relaxed_extjson()),
            "batch_size": p.batch_size,
            "writes": p.writes,
        })).collect::<Vec<_>>(),
        // Collections lookups may read besides the passes'; null: the
        // plugin's contract (0.1) declares none.
        "reads": (!contract::is_previous(&plugin.contract)).then_some(&m.reads),
        // Schema operations it may return, and whether its actions may be
        // applied twice (contract 0.1: none, and idempotent).
        "schema": m.schema.iter().map(|g| serde_json::json!({"kind": g.kind.name(), "collection": g.collection})).collect::<Vec<_>>(),
        "idempotent": m.idempotent,
        // `godwit:migration/traits`: true unless the plugin declares false.
        "keeps_state": plugin.keeps_state,
        "sha256": to_hex(&plugin.sha256),
        "size": plugin.size,
        "kind": plugin.kind,
        "contract": format!("{}@{}", contract::PACKAGE, plugin.contract),
        "imports": plugin.imports,
        "exports": plugin.exports,
        "compile_cache": plugin.cache,
    })
}

fn print_inspect(plugin: &LoadedPlugin) {
    let m = &plugin.manifest;
    outln!("plugin       {} {}", m.name, m.version);
    outln!(
        "requires     {}",
        m.requires
            .as_ref()
            .map_or("any version".to_string(), ToString::to_string)
    );
    if !m.description.is_empty() {
        outln!("description  {}", m.description);
    }
    outln!("file         {} ({} bytes)", plugin.file.display(), plugin.size);
    outln!("sha256       {}", to_hex(&plugin.sha256));
    outln!("contract     {}@{}", contract::PACKAGE, plugin.contract);
    outln!("imports      {}", plugin.imports.join(", "));
    outln!("passes");
    for (i, p) in m.passes.iter().enumerate() {
        outln!("  {i}  {} on {}  filter {}", p.name, p.collection, p.filter);
        if let Some(projection) = &p.projection {
            outln!("     projection {projection}");
        }
        let batch = if p.batch_size == 0 {
            "host default".to_string()
        } else {
            p.batch_size.to_string()
        };
        outln!("     batch size {batch}, writes [{}]", p.writes.join(", "));
    }
    if contract::is_previous(&plugin.contract) {
        outln!(
            "reads        not declared (contract 0.1): lookups on its passes' collections only \
             (any collection with --allow-undeclared-reads)"
        );
    } else if m.reads.is_empty() {
        outln!("reads        none: lookups on its passes' collections only");
    } else {
        outln!("reads        [{}], besides its passes' collections", m.reads.join(", "));
    }
    if !m.idempotent {
        outln!("idempotent   no: its actions must not be applied twice (refused without transactions)");
    }
    if plugin.keeps_state {
        outln!(
            "state        may depend on earlier batches: restarted and fed the written batches again after a \
             refused batch and on resume"
        );
    } else {
        outln!("state        none across batches (declared): kept running after a refused batch and on resume");
    }
    if !m.schema.is_empty() {
        outln!("schema operations it may return");
        for g in &m.schema {
            outln!("  {} on {}", g.kind.name(), g.collection);
        }
    }
}
