//! `godwit plugin test`: a plugin project's own tests (`cargo test`,
//! `python3 -m pytest`), or, with `--data`, the component through the real
//! run engine on fixtures in a throwaway database - dry run, execute, a
//! second dry run that must be clean, and `journal replay` of the execute.
//!
//! Nothing here reimplements a run: each step is an [`Engine`] run as
//! `godwit run` drives it, journaled into a temporary journal, and printed by
//! `run`'s own summary printer. What this module adds is the sequence, the
//! throwaway database (and, without `--uri`, the throwaway server) and the
//! verdict.

use super::{GlobalArgs, SandboxArgs, UsageError, exit};
use crate::db::{Db, HistoryEntry};
use crate::journal::{Journal, RunMode};
use crate::plugin::LoadedPlugin;
use crate::plugin::builder::Toolchain;
use crate::run::replay::ReplayReport;
use crate::run::report::Summary;
use crate::run::{Engine, Outcome, ResumeChoice, RunRequest, StopSignal, VerifyPolicy};
use crate::text::{errln, outln};
use anyhow::Context;
use bson::Document;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Servers `plugin test --data` starts for itself when no `--uri` is given,
/// in order of preference: SecantusDB's Rust server (fast), then the Python
/// one the e2e tests use. Both speak the MongoDB wire protocol and advertise
/// a one-member replica set, so runs use transactions as on a real cluster.
const LOCAL_SERVERS: &[&str] = &["secantusd-rs", "secantusd-py"];

#[derive(Args)]
pub struct TestCommand {
    /// A plugin crate or Python plugin directory; with --data, also a built
    /// component (.wasm).
    target: PathBuf,
    /// Fixtures: a `<collection>.jsonl` file, or a directory of them (`.jsonl`
    /// or `.json`), one Extended JSON document per line; the file name
    /// without its extension is the collection (repeatable). Without it,
    /// only the project's own tests run.
    #[arg(long, value_name = "FIXTURES")]
    data: Vec<PathBuf>,
    /// MongoDB server to test on, in a fresh database dropped at the end
    /// [default: a SecantusDB server started for the test, if `secantusd-rs`
    /// or `secantusd-py` is on PATH].
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    uri: Option<String>,
    /// Schema version stamped before the runs [default: the lowest version
    /// the plugin's `requires` accepts; none if it requires none].
    #[arg(long, value_name = "VERSION")]
    from_version: Option<String>,
    /// A parameter for the plugin's `begin` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Keep the database (needs --uri) and print its name, for inspection.
    #[arg(long)]
    keep: bool,
    /// Documents per plugin call, overriding the passes' own batch sizes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: Option<u32>,
    /// godwit's metadata collection in the test database.
    #[arg(long, default_value = godwit_policy::DEFAULT_METADATA_COLLECTION)]
    metadata_collection: String,
    /// Seconds to wait for the server before giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    connect_timeout: f64,
    /// Building a DIR: output directory of the component.
    #[arg(long, default_value = "target/plugins")]
    out: PathBuf,
    /// Building a DIR: Cargo target directory for the wasm build.
    #[arg(long, default_value = "target/wasm")]
    target_dir: PathBuf,
    /// Building a DIR: the wasm toolchain.
    #[arg(long, value_enum, default_value_t = Toolchain::Auto)]
    toolchain: Toolchain,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

impl TestCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        if self.data.is_empty() {
            native_tests(&self.target, global)
        } else {
            self.with_data(global)
        }
    }

    fn with_data(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        // Everything local is checked before anything is built or started.
        let params = super::run::parse_params(&self.params)?;
        if !(self.connect_timeout > 0.0 && self.connect_timeout.is_finite()) {
            return Err(UsageError(format!(
                "--connect-timeout must be a positive number of seconds, got {}",
                self.connect_timeout
            ))
            .into());
        }
        let fixtures = read_fixtures(&self.data, &self.metadata_collection)?;
        let uri = self.uri.clone().filter(|u| !u.is_empty());
        let server = match &uri {
            Some(_) => None,
            None => Some(find_server().ok_or_else(|| {
                UsageError(format!(
                    "no database to test on: pass --uri (or set MONGODB_URI), or put {} on PATH (pip install \
                     SecantusDB) for godwit to start a throwaway one",
                    LOCAL_SERVERS.join(" or ")
                ))
            })?),
        };
        if self.keep && uri.is_none() {
            return Err(UsageError(
                "--keep needs --uri (or MONGODB_URI): the server godwit starts for the test stops with it".into(),
            )
            .into());
        }
        let component = if self.target.is_dir() {
            let built = super::plugin::build(
                std::slice::from_ref(&self.target),
                &self.out,
                &self.target_dir,
                self.toolchain,
            )?;
            match built.as_slice() {
                [one] => one.component.clone(),
                _ => {
                    return Err(UsageError(format!(
                        "{} holds {} plugins; test one at a time (give its directory or its .wasm)",
                        self.target.display(),
                        built.len()
                    ))
                    .into());
                }
            }
        } else {
            self.target.clone()
        };
        let plugin = self.sandbox.plugin_host()?.load(&component)?;
        let from_version = from_version(&plugin, self.from_version.as_deref())?;

        // Started on this thread, which lives as long as the process: the
        // server is told to die with it (PR_SET_PDEATHSIG fires when the
        // thread that spawned the child ends).
        let server = match server {
            Some(program) => Some(LocalServer::start(program)?),
            None => None,
        };
        let uri = uri
            .or_else(|| server.as_ref().map(|s| s.uri.clone()))
            .expect("a uri or a server");
        let database = database_name(&plugin.manifest.name);
        let plan = Plan {
            plugin: &plugin,
            params,
            fixtures,
            from_version,
            batch_size: self.batch_size,
            server: server.as_ref().map(|s| s.program),
        };
        let report = super::runtime()?.block_on(async {
            let db = Db::connect(crate::db::ConnectOptions {
                uri: &uri,
                db: &database,
                metadata_collection: &self.metadata_collection,
                timeout: Duration::from_secs_f64(self.connect_timeout),
                retry_for: crate::db::DEFAULT_RETRY_FOR,
                record: None,
            })
            .await?;
            // The name is fresh; a database that has it anyway is someone
            // else's and is neither written nor dropped.
            let existing = db
                .db
                .list_collection_names()
                .await
                .context("listing the test database")?;
            if !existing.is_empty() {
                anyhow::bail!("database {database} already exists on {}: not touching it", db.uri);
            }
            let stop = StopSignal::default();
            super::stop_on_signals(stop.clone());
            let steps = plan.run(&db, global, stop).await;
            // The database goes, whatever happened, unless it is to be kept.
            if self.keep {
                if !global.json {
                    outln!("kept database {database} on {}", db.uri);
                }
            } else if let Err(e) = db.db.drop().await {
                errln!(
                    "warning: could not drop the test database {database} on {}: {e}",
                    db.uri
                );
            }
            steps.map(|steps| (steps, db.uri.clone()))
        });
        drop(server);
        let (report, uri) = report?;
        Ok(verdict(&report, &plugin, &database, &uri, self.keep, global))
    }
}

// --- native tests ----------------------------------------------------------

/// How a project runs its own tests.
struct NativeRunner {
    program: &'static str,
    args: &'static [&'static str],
}

impl NativeRunner {
    fn for_dir(dir: &Path) -> Result<Self, UsageError> {
        if dir.join("Cargo.toml").is_file() {
            Ok(NativeRunner {
                program: "cargo",
                args: &["test"],
            })
        } else if dir.join("plugin.py").is_file() {
            // No `.pytest_cache` left in the author's project.
            Ok(NativeRunner {
                program: "python3",
                args: &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
            })
        } else if dir.join(crate::plugin::js_builder::ENTRY).is_file() {
            // The TAP reporter's `# pass N` / `# fail N` lines are what the
            // tally reads, whatever Node's default reporter is.
            Ok(NativeRunner {
                program: "node",
                args: &["--test", "--test-reporter=tap"],
            })
        } else if dir.is_file() {
            Err(UsageError(format!(
                "{} is a file: without --data, `plugin test` runs a project's own tests; give the project's \
                 directory, or --data FIXTURES to test the component on a database",
                dir.display()
            )))
        } else {
            Err(UsageError(format!(
                "{} is neither a plugin crate (Cargo.toml), a Python plugin directory (plugin.py) nor a JavaScript \
                 plugin directory (migration.js): give `plugin test` the project's directory",
                dir.display()
            )))
        }
    }

    fn command_line(&self) -> String {
        [self.program]
            .iter()
            .chain(self.args)
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Passed and failed tests as the runner's summary lines count them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Sums the counts of `cargo test`'s `test result:` lines, reads
    /// pytest's last summary line (`1 failed, 3 passed in 0.1s`), or
    /// node's TAP summary (`# pass 3`, `# fail 1`).
    fn of(output: &str, program: &str) -> Tally {
        if program == "node" {
            let count = |prefix: &str| {
                output
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix(prefix)?.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            return Tally {
                passed: count("# pass "),
                failed: count("# fail "),
            };
        }
        let lines: Vec<&str> = if program == "cargo" {
            output.lines().filter(|l| l.starts_with("test result:")).collect()
        } else {
            output
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .into_iter()
                .collect()
        };
        let mut tally = Tally::default();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                let Ok(n) = pair[0].parse::<u64>() else { continue };
                match pair[1].trim_end_matches([',', ';']) {
                    "passed" => tally.passed += n,
                    "failed" | "error" | "errors" => tally.failed += n,
                    _ => {}
                }
            }
        }
        tally
    }

    fn text(self) -> String {
        match self.failed {
            0 => format!("{} passed", self.passed),
            failed => format!("{failed} failed, {} passed", self.passed),
        }
    }
}

/// `plugin test DIR`: the project's own tests. Their compile progress and
/// errors (stderr) go through as they come; their results (stdout) are
/// shown only when they fail, and summed up in one line.
fn native_tests(dir: &Path, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let runner = NativeRunner::for_dir(dir)?;
    if runner.program == "node" {
        // The tests import the project's dependencies (godwit-sdk, bson).
        crate::plugin::js_builder::install_dependencies(dir)?;
    }
    let command = runner.command_line();
    let output = Command::new(runner.program)
        .args(runner.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(if global.json || global.quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .output()
        .with_context(|| format!("native tests: cannot start `{command}` in {}", dir.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tally = Tally::of(&stdout, runner.program);
    // A project without tests passes nothing: pytest says so itself (exit
    // 5), `cargo test` would call zero tests a success.
    let none = tally.passed + tally.failed == 0;
    let passed = output.status.success() && !none;
    if global.json {
        let tail: Vec<&str> = stdout
            .lines()
            .rev()
            .take(50)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        super::print_json(&serde_json::json!({
            "step": "native tests",
            "dir": dir,
            "command": command,
            "ok": passed,
            "exit_status": output.status.code(),
            "tests": tally,
            "output": if passed { Vec::new() } else { tail },
        }))?;
    } else if !passed {
        // The project's own output, as its runner wrote it: what failed and why.
        let mut out = std::io::stdout().lock();
        out.write_all(&output.stdout)?;
        out.flush()?;
    }
    if !passed {
        let why = match (output.status.code(), runner.program) {
            // pytest's "no tests were collected".
            (Some(5), "python3") => "no tests were found".to_string(),
            (Some(0), _) => "no tests were found".to_string(),
            (code, _) if tally.failed > 0 => format!(
                "{} (exit status {})",
                tally.text(),
                code.map_or("none".into(), |c| c.to_string())
            ),
            (Some(code), _) => format!("exit status {code}; see its output above"),
            (None, _) => "killed by a signal".to_string(),
        };
        anyhow::bail!("native tests failed: `{command}` in {}: {why}", dir.display());
    }
    if !global.json && !global.quiet {
        outln!(
            "native tests passed: `{command}` in {}: {}",
            dir.display(),
            tally.text()
        );
    }
    Ok(ExitCode::SUCCESS)
}

// --- fixtures ----------------------------------------------------------------

/// The documents of one collection, from one fixture file.
struct Fixture {
    collection: String,
    file: PathBuf,
    documents: Vec<Document>,
}

/// Reads every fixture file before anything touches a database: a
/// malformed line is one error naming the file and line (exit 2).
fn read_fixtures(paths: &[PathBuf], metadata_collection: &str) -> anyhow::Result<Vec<Fixture>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading fixture directory {}", path.display()))?
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl" | "json")))
                .collect();
            if found.is_empty() {
                return Err(UsageError(format!(
                    "fixture directory {} holds no <collection>.jsonl file",
                    path.display()
                ))
                .into());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut fixtures: Vec<Fixture> = Vec::new();
    for file in files {
        let collection = fixture_collection(&file, metadata_collection)?;
        if let Some(other) = fixtures.iter().find(|f| f.collection == collection) {
            return Err(UsageError(format!(
                "fixtures {} and {} are both collection {collection}: one file per collection",
                other.file.display(),
                file.display()
            ))
            .into());
        }
        let documents = crate::run::trial::read_input(&file)?
            .into_iter()
            .map(|d| d.document)
            .collect();
        fixtures.push(Fixture {
            collection,
            file,
            documents,
        });
    }
    Ok(fixtures)
}

/// `users.jsonl` -> `users`: the file name without its last extension.
fn fixture_collection(file: &Path, metadata_collection: &str) -> Result<String, UsageError> {
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let bad = |why: &str| {
        Err(UsageError(format!(
            "fixture {}: {why} (the file name without its extension names the collection)",
            file.display()
        )))
    };
    if name.is_empty() || name.contains('$') || name.contains('\0') {
        return bad(&format!("{name:?} is not a collection name"));
    }
    if name.starts_with("system.") {
        return bad(&format!("{name} is a system collection"));
    }
    if name == metadata_collection {
        return bad(&format!("{name} is godwit's metadata collection"));
    }
    Ok(name.to_string())
}

// --- versions, names, the server --------------------------------------------

/// The version stamped before the runs: `--from-version` (which must satisfy
/// the plugin's `requires`), else the lowest version `requires` accepts.
fn from_version(plugin: &LoadedPlugin, given: Option<&str>) -> anyhow::Result<Option<semver::Version>> {
    let manifest = &plugin.manifest;
    let requires = manifest.requires.as_ref();
    let Some(given) = given else {
        return match requires {
            None => Ok(None),
            Some(req) => lowest_satisfying(req).map(Some).ok_or_else(|| {
                UsageError(format!(
                    "no version to start from: {} {} requires {req}, whose lowest version godwit cannot tell; pass \
                     --from-version",
                    manifest.name, manifest.version
                ))
                .into()
            }),
        };
    };
    let version = semver::Version::parse(given)
        .map_err(|e| UsageError(format!("--from-version {given:?} is not a semantic version: {e}")))?;
    if let Some(req) = requires
        && !req.matches(&version)
    {
        return Err(UsageError(format!(
            "--from-version {version} does not satisfy {} {}'s requires {req}: its execute run would be refused",
            manifest.name, manifest.version
        ))
        .into());
    }
    Ok(Some(version))
}

/// The lowest version `req` matches, among the versions its comparators
/// name and their next patch, minor and major (the lowest one is always
/// among them), and `0.0.0`; `None` if none matches (`<0.0.0`, or a
/// pre-release a comparator does not name).
fn lowest_satisfying(req: &semver::VersionReq) -> Option<semver::Version> {
    use semver::Version;
    let mut candidates = vec![Version::new(0, 0, 0)];
    for c in &req.comparators {
        let (major, minor, patch) = (c.major, c.minor.unwrap_or(0), c.patch.unwrap_or(0));
        let mut named = Version::new(major, minor, patch);
        named.pre = c.pre.clone();
        candidates.extend([
            named,
            Version::new(major, minor, patch),
            Version::new(major, minor, patch + 1),
            Version::new(major, minor + 1, 0),
            Version::new(major + 1, 0, 0),
        ]);
    }
    candidates.into_iter().filter(|v| req.matches(v)).min()
}

/// `godwit_test_<plugin>_<unique>`: the plugin's name (what a kept database
/// is found by) and an ObjectId, within MongoDB's 63 bytes.
fn database_name(plugin: &str) -> String {
    let plugin: String = plugin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(20)
        .collect();
    format!("godwit_test_{plugin}_{}", bson::oid::ObjectId::new().to_hex())
}

/// The first of [`LOCAL_SERVERS`] on PATH.
fn find_server() -> Option<&'static str> {
    let path = std::env::var_os("PATH")?;
    LOCAL_SERVERS
        .iter()
        .copied()
        .find(|program| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A SecantusDB server on a free loopback port, storing into a temporary
/// directory; killed when dropped (and when godwit dies).
struct LocalServer {
    program: &'static str,
    uri: String,
    child: Child,
    _storage: tempfile::TempDir,
}

impl LocalServer {
    fn start(program: &'static str) -> anyhow::Result<Self> {
        let storage = tempfile::Builder::new()
            .prefix("godwit-test-server-")
            .tempdir()
            .context("creating the test server's storage directory")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port for the test server")?
            .port();
        let mut command = Command::new(program);
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-level",
                "WARNING",
            ])
            .arg("--storage-path")
            .arg(storage.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the server dies with godwit
        // (killed, or stopped by a second Ctrl-C) instead of outliving it.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("starting {program}"))?;
        let mut server = LocalServer {
            program,
            uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            child,
            _storage: storage,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("{program} exited before it listened on port {port} ({status})");
            }
            if Instant::now() > deadline {
                anyhow::bail!("{program} did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // Best effort: the storage is a temporary directory either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the steps ----------------------------------------------------------------

/// What runs on the test database, validated.
struct Plan<'a> {
    plugin: &'a LoadedPlugin,
    params: Vec<(String, String)>,
    fixtures: Vec<Fixture>,
    from_version: Option<semver::Version>,
    batch_size: Option<u32>,
    /// The server godwit started for the test, if it did.
    server: Option<&'static str>,
}

/// One engine run of the test.
struct RunStep {
    name: &'static str,
    run_id: String,
    summary: Summary,
}

/// What the test did, for the verdict.
struct Report {
    fixtures: Vec<(String, PathBuf, usize)>,
    from_version: Option<String>,
    runs: Vec<RunStep>,
    replay: ReplayReport,
}

impl Report {
    /// The first check that failed, in one line: the step and why.
    fn failure(&self) -> Option<(&'static str, String, u8)> {
        if let Some(second) = self.runs.iter().find(|r| r.name == SECOND_DRY_RUN) {
            let n = second.summary.write_actions();
            if n > 0 {
                return Some((
                    SECOND_DRY_RUN,
                    format!(
                        "{n} write actions remain - the plugin does not converge, or its pass's projection misses a \
                         field it writes"
                    ),
                    exit::RESIDUE,
                ));
            }
        }
        if let Some(d) = &self.replay.divergence {
            let document = d
                .document
                .as_ref()
                .map(|id| format!(", document _id {id}"))
                .unwrap_or_default();
            let why = match self.replay.each_alone {
                // Each batch went to a fresh instance.
                true => format!(
                    "a fresh instance did not reproduce the execute run's batch at journal entry {}{document} - the \
                     plugin declares that it keeps no state across batches (keeps-state false), but its actions \
                     depend on the batches before, or it is not deterministic",
                    d.seq
                ),
                false => format!(
                    "the plugin did not reproduce the execute run's batch at journal entry {}{document} - it is not \
                     deterministic (same inputs and lookups, other actions)",
                    d.seq
                ),
            };
            return Some(("journal replay", why, exit::REPLAY_DIVERGED));
        }
        None
    }
}

const DRY_RUN: &str = "dry run";
const EXECUTE: &str = "execute";
const SECOND_DRY_RUN: &str = "second dry run";

impl Plan<'_> {
    /// `godwit run`'s request with its defaults, for one step. The execute
    /// does not verify itself: the second dry run is the verification,
    /// reported as a step of its own.
    fn request(&self, mode: RunMode) -> RunRequest {
        RunRequest {
            mode,
            params: self.params.clone(),
            batch_size: self.batch_size,
            resume: ResumeChoice::New,
            lease: Duration::from_secs(30),
            max_docs_per_sec: None,
            verify: VerifyPolicy::Skip,
            pause_file: None,
            before_images: true,
            write_guard: true,
            max_commit: None,
            max_lag: None,
            read_ahead: 2,
            plan: None,
            allow_missing_collections: false,
            allow_at_least_once: false,
            allow_repeat: false,
            query_timeout: crate::run::DEFAULT_QUERY_TIMEOUT,
            follow: None,
            workers: None,
        }
    }

    async fn run(&self, db: &Db, global: &GlobalArgs, stop: StopSignal) -> anyhow::Result<Report> {
        let text = !global.json && !global.quiet;
        if text {
            outln!(
                "plugin test of {} {} ({}) on database {} at {}{}",
                self.plugin.manifest.name,
                self.plugin.manifest.version,
                self.plugin.file.display(),
                db.name,
                db.uri,
                self.server.map(|s| format!(" (a throwaway {s})")).unwrap_or_default()
            );
        }
        let mut fixtures = Vec::new();
        for f in &self.fixtures {
            if !f.documents.is_empty() {
                db.db
                    .collection::<Document>(&f.collection)
                    .insert_many(&f.documents)
                    .await
                    .with_context(|| format!("fixtures: loading {} into {}", f.file.display(), f.collection))?;
            }
            if text {
                outln!(
                    "fixtures: {} documents into {} (from {})",
                    f.documents.len(),
                    f.collection,
                    f.file.display()
                );
            }
            fixtures.push((f.collection.clone(), f.file.clone(), f.documents.len()));
        }
        let from_version = self.from_version.as_ref().map(ToString::to_string);
        if let Some(version) = &from_version {
            stamp(db, version, None).await.context("init")?;
            if text {
                outln!("init: database stamped at version {version}");
            }
        }
        let journal_dir = tempfile::Builder::new()
            .prefix("godwit-test-journal-")
            .tempdir()
            .context("creating the test's journal directory")?;
        let journal = Journal::open(journal_dir.path())?;
        let observer = super::progress::Bars::for_terminal(global);
        let engine = Engine {
            observer: &observer,
            plugin: self.plugin,
            db,
            journal: &journal,
            stop,
        };
        let mut runs = Vec::new();
        for (i, (name, mode)) in [
            (DRY_RUN, RunMode::DryRun),
            (EXECUTE, RunMode::Execute),
            (SECOND_DRY_RUN, RunMode::DryRun),
        ]
        .into_iter()
        .enumerate()
        {
            if name == SECOND_DRY_RUN && !self.plugin.manifest.idempotent {
                // It does not converge by design: its second dry run would
                // want every action again.
                if text {
                    outln!("step {} {name}: skipped: the plugin declares idempotent: false", i + 1);
                }
                continue;
            }
            if name == SECOND_DRY_RUN
                && let Some(version) = &from_version
            {
                // Back to the version the plugin requires, so that the
                // second dry run reads the data under the same conditions
                // as the first (it would only warn otherwise).
                let now = db.current_version().await?;
                stamp(db, version, now.as_deref())
                    .await
                    .context("init before the second dry run")?;
            }
            let outcome = engine.run(&self.request(mode)).await.context(name)?;
            let (header, summary) = match outcome {
                Outcome::Finished { header, summary, .. } => (header, summary),
                Outcome::Interrupted { header, .. } => {
                    anyhow::bail!("{name}: run {} was interrupted", header.run_id)
                }
                Outcome::Unclean { header, .. } => {
                    anyhow::bail!("{name}: run {} did not finish clean", header.run_id)
                }
            };
            if text {
                outln!("step {} {name}: run {} finished", i + 1, header.run_id);
                // `None`: the journal is temporary, no command can list its reports later.
                super::run::print_summary(&summary, mode == RunMode::Execute, None);
            }
            runs.push(RunStep {
                name,
                run_id: header.run_id,
                summary,
            });
        }
        let execute = &runs.iter().find(|r| r.name == EXECUTE).expect("an execute step").run_id;
        let replay = crate::run::replay::replay(&journal, execute, self.plugin).context("journal replay")?;
        if text {
            outln!("step 4 journal replay of run {execute}:");
            super::journal::print_replay(&replay, self.plugin);
        }
        Ok(Report {
            fixtures,
            from_version,
            runs,
            replay,
        })
    }
}

/// Stamps `version` as `godwit init` does (`previous`: the version it replaces).
async fn stamp(db: &Db, version: &str, previous: Option<&str>) -> anyhow::Result<()> {
    let entry = HistoryEntry::Init {
        run_id: format!("init-{}", bson::oid::ObjectId::new().to_hex()),
        version: version.to_string(),
        host_version: env!("CARGO_PKG_VERSION").into(),
        forced: previous.is_some(),
    };
    db.stamp(&entry, previous).await?;
    Ok(())
}

/// Prints the verdict (one line, or the JSON report) and returns the exit code.
fn verdict(
    report: &Report,
    plugin: &LoadedPlugin,
    database: &str,
    uri: &str,
    kept: bool,
    global: &GlobalArgs,
) -> ExitCode {
    let failure = report.failure();
    let m = &plugin.manifest;
    if global.json {
        let mut steps: Vec<serde_json::Value> = report
            .runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "step": r.name, "run_id": r.run_id, "write_actions": r.summary.write_actions(),
                    "summary": r.summary,
                })
            })
            .collect();
        steps.push(serde_json::json!({"step": "journal replay", "report": report.replay}));
        let json = serde_json::json!({
            "plugin": m.name,
            "version": m.version.to_string(),
            "sha256": plugin.sha256_hex(),
            "component": plugin.file,
            "database": database,
            "uri": uri,
            "kept": kept,
            "from_version": report.from_version,
            "fixtures": report.fixtures.iter().map(|(c, f, n)| serde_json::json!({"collection": c, "file": f, "documents": n})).collect::<Vec<_>>(),
            "steps": steps,
            "ok": failure.is_none(),
            "failed_step": failure.as_ref().map(|f| f.0),
            "message": failure.as_ref().map(|f| f.1.clone()),
        });
        super::print_json(&json).expect("the report serializes");
    }
    match failure {
        Some((step, why, code)) => {
            errln!("plugin test failed: {step}: {why}");
            ExitCode::from(code)
        }
        None => {
            if !global.json && !global.quiet {
                outln!(
                    "plugin test passed: {} {}: dry run, execute, second dry run {}, replay identical ({} batches{})",
                    m.name,
                    m.version,
                    if m.idempotent {
                        "clean"
                    } else {
                        "skipped (idempotent: false)"
                    },
                    report.replay.identical,
                    match report.replay.each_alone {
                        true => ", each in a fresh instance: it keeps no state",
                        false => "",
                    }
                );
            }
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_lowest(req: &str, expect: Option<&str>) {
        let req = semver::VersionReq::parse(req).unwrap();
        assert_eq!(
            lowest_satisfying(&req).map(|v| v.to_string()).as_deref(),
            expect,
            "{req}"
        );
    }

    #[test]
    fn lowest_satisfying_versions() {
        check_lowest(">=1.0.0", Some("1.0.0"));
        check_lowest("^1.2", Some("1.2.0"));
        check_lowest("~0.3.1", Some("0.3.1"));
        check_lowest(">1.0.0", Some("1.0.1"));
        check_lowest(">1.0", Some("1.1.0"));
        check_lowest(">1", Some("2.0.0"));
        check_lowest("<2.0.0", Some("0.0.0"));
        check_lowest(">=1.2.0, <1.5.0", Some("1.2.0"));
        check_lowest("=2.1.3", Some("2.1.3"));
        check_lowest("*", Some("0.0.0"));
        check_lowest(">=1.0.0-beta.1", Some("1.0.0-beta.1"));
        check_lowest("<0.0.0", None);
    }

    #[track_caller]
    fn check_tally(output: &str, program: &str, passed: u64, failed: u64) {
        assert_eq!(Tally::of(output, program), Tally { passed, failed }, "{output}");
    }

    #[test]
    fn tallies() {
        check_tally(
            "running 4 tests\ntest a ... ok\n\ntest result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\
             \ntest result: ok. 0 passed; 0 failed; 0 ignored\n",
            "cargo",
            4,
            0,
        );
        check_tally(
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n",
            "cargo",
            3,
            1,
        );
        check_tally("....\n4 passed in 0.05s\n", "python3", 4, 0);
        check_tally("F...\n1 failed, 3 passed in 0.12s\n\n", "python3", 3, 1);
        check_tally("E\n1 error in 0.12s\n", "python3", 0, 1);
        check_tally(
            "ok 1 - a\nnot ok 2 - b\n1..2\n# tests 2\n# pass 1\n# fail 1\n",
            "node",
            1,
            1,
        );
        check_tally("1..0\n# tests 0\n# pass 0\n# fail 0\n", "node", 0, 0);
    }

    #[test]
    fn fixture_collections() {
        let check = |file: &str| fixture_collection(Path::new(file), "godwit_metadata").map_err(|e| e.0);
        assert_eq!(check("fixtures/users.jsonl").unwrap(), "users");
        assert_eq!(check("orders.v2.json").unwrap(), "orders.v2");
        assert!(check("system.views.jsonl").unwrap_err().contains("system collection"));
        assert!(check("godwit_metadata.jsonl").unwrap_err().contains("metadata"));
        assert!(check("a$b.jsonl").unwrap_err().contains("not a collection name"));
    }

    #[test]
    fn database_names_are_unique_and_short() {
        let a = database_name(&"x".repeat(64));
        assert!(a.len() <= 63, "{a}");
        assert!(a.starts_with("godwit_test_xxxx"), "{a}");
        assert_ne!(database_name("p"), database_name("p"));
        assert!(database_name("a.b c").starts_with("godwit_test_a_b_c_"));
    }
}
