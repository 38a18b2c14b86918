//! `just bench` / `just bench-scale`: the QDash-like `owner_user_id` backfill
//! (see `data.rs`) done by every contestant, one after the other on the same
//! server, each on freshly generated data in a database of its own:
//!
//! - (a) a hand-written Rust loop over the `mongodb` driver (`driver.rs`): the practical limit;
//! - (b) `godwit run --execute --no-before-images` with the `bench-backfill` plugin, journal on
//!   (inputs, actions, lookups);
//! - (c) (b) with before-images too: godwit's default for execute runs (what `godwit revert` needs);
//! - (p) (b) with the same backfill as a Python plugin (`bench/plugin-py/bench-backfill-py`);
//! - (j) (b) with the same backfill as a JavaScript plugin (`bench/plugin-js/bench-backfill-js`);
//! - (d) a pymongo script the way the seeds' projects write it: one `update_one` per document;
//! - (d') the same script with `bulk_write` batches, as a careful script author would;
//! - (m) a migrate-mongo 14 migration (`bench/migrate-mongo/`, Node; `npm ci` by
//!   `scripts/bench-setup.sh`) written the careful way: the users map from one query, a sorted
//!   cursor with a projection, ordered `bulkWrite` calls of `--batch` `updateOne`; run as
//!   `node node_modules/migrate-mongo/bin/migrate-mongo.js up`;
//! - (e) `godwit run` dry run;
//! - (u) (b) and (v) (c) with `--no-write-guard`: what the write guard costs;
//! - (w) (c) with `--follow --follow-until-idle 1` while four writers of the old application
//!   replace executions for the first `--writers-for` seconds: a live database.
//!
//! Longer than our ~600-line rule on purpose: the contestants' runners and the report
//! writer share the measuring code (rounds, medians, spreads, peak RSS), and one file lets
//! a reader follow each reported figure from where it is measured to where it is printed.
//!
//! Each contestant runs as a child process, timed from spawn to exit, with its
//! peak RSS from `wait4`. After each run the harness reads every document back
//! and fails the bench if the backfill is missing or wrong.
//!
//! `run` goes through the contestant list `--rounds` times (3 by default), interleaved.
//! The table shows each contestant's median docs/s with min-max, and every ratio
//! ("vs (a)", the targets, the language lines) is the median (min-max) of per-round
//! ratios: the two contestants measured in the same round, so a slow round of the
//! machine moves both sides of a ratio together.

mod child;
mod data;
mod driver;
mod server;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "godwit vs a driver loop vs pymongo, side by side on one server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Statements per update command / documents per plugin call, for every contestant.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Use this server instead of starting `secantusd-rs` (every contestant gets a fresh database on it).
    #[arg(long)]
    uri: Option<String>,
    /// The godwit binary (a release build).
    #[arg(long, default_value = "target/release/godwit")]
    godwit: PathBuf,
    /// The benchmark plugin component.
    #[arg(long, default_value = "target/plugins/bench-backfill.wasm")]
    plugin: PathBuf,
    /// The same plugin in Python (contestant (p)).
    #[arg(long, default_value = "target/plugins/bench-backfill-py.wasm")]
    python_plugin: PathBuf,
    /// The same plugin in JavaScript (contestant (j)).
    #[arg(long, default_value = "target/plugins/bench-backfill-js.wasm")]
    js_plugin: PathBuf,
    /// The pymongo script of contestants (d) and (d').
    #[arg(long, default_value = "bench/backfill.py")]
    script: PathBuf,
    #[arg(long, default_value = "python3")]
    python: String,
    /// The npm project of contestant (m), migrate-mongo (`npm ci` there installs it).
    #[arg(long, default_value = "bench/migrate-mongo")]
    migrate_mongo: PathBuf,
    /// The Node.js binary that runs migrate-mongo.
    #[arg(long, default_value = "node")]
    node: String,
    /// Contestant (w): how long the old application's writers write, from the run's start.
    #[arg(long, default_value_t = 8)]
    writers_for: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every contestant on `--docs` documents; prints the table and writes `--out`.
    Run {
        #[arg(long, default_value_t = 200_000)]
        docs: u64,
        /// Contestants to run, by letter: a, b, c, p, j, m, d, D (d'), e, u, v, w.
        #[arg(long, default_value = "a,b,u,c,v,p,j,m,e,D,d")]
        only: String,
        /// Run the contestant list this many times (interleaved); the table shows medians
        /// with min-max, every ratio the median (min-max) of the per-round ratios.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value = "bench/RESULTS.md")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// (a) and (b) at each size: docs/s and peak RSS must not depend on the collection's size.
    Scale {
        #[arg(long, value_delimiter = ',', default_value = "200000,1000000")]
        sizes: Vec<u64>,
        #[arg(long, default_value = "bench/SCALING.md")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// godwit (b) at several batch sizes (read-ahead 2) and read-ahead depths
    /// (batch 1,000), beside the driver loop: how the defaults were chosen.
    Tune {
        #[arg(long, default_value_t = 200_000)]
        docs: u64,
        #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000,5000")]
        batches: Vec<u32>,
        #[arg(long, value_delimiter = ',', default_value = "0,1,2,4,8")]
        read_aheads: Vec<u32>,
        #[arg(long, default_value = "bench/TUNING.md")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// godwit (c), the default mode, as one plain run and as a fleet run
    /// with 1, 2 and 4 workers (`--workers`) on the same server, rounds
    /// interleaved: throughput, the server's CPU and the client's CPU per
    /// document (what decides how many workers one machine feeds).
    Fleet {
        #[arg(long, default_value_t = 100_000)]
        docs: u64,
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        workers: Vec<u32>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value = "bench/FLEET.md")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Generates the dataset into a database (for profiling a contestant by hand).
    Generate {
        #[arg(long)]
        uri: String,
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 200_000)]
        docs: u64,
    },
    /// Checks the backfill in a database (after a contestant run by hand).
    Check {
        #[arg(long)]
        uri: String,
        #[arg(long)]
        db: String,
    },
    /// Contestant (a) itself; run by the harness as a child.
    DriverLoop {
        #[arg(long)]
        uri: String,
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contestant {
    DriverLoop,
    Godwit,
    /// (b) with before-images (godwit's default).
    GodwitImages,
    /// (b) with the same backfill written in Python.
    GodwitPython,
    /// (b) with the same backfill written in JavaScript.
    GodwitJs,
    PymongoPerDocument,
    PymongoBulk,
    /// A migrate-mongo migration (Node), bulkWrite per batch.
    MigrateMongo,
    DryRun,
    /// (b) without the write guard.
    GodwitUnguarded,
    /// (c) without the write guard.
    GodwitImagesUnguarded,
    /// (c) with --follow, on a database the old application keeps writing.
    GodwitLive,
}

impl Contestant {
    fn parse(letter: &str) -> anyhow::Result<Self> {
        Ok(match letter.trim() {
            "a" => Contestant::DriverLoop,
            "b" => Contestant::Godwit,
            "c" => Contestant::GodwitImages,
            "p" => Contestant::GodwitPython,
            "j" => Contestant::GodwitJs,
            "d" => Contestant::PymongoPerDocument,
            "D" | "d'" => Contestant::PymongoBulk,
            "m" => Contestant::MigrateMongo,
            "e" => Contestant::DryRun,
            "u" => Contestant::GodwitUnguarded,
            "v" => Contestant::GodwitImagesUnguarded,
            "w" => Contestant::GodwitLive,
            other => bail!("unknown contestant {other:?} (a, b, c, p, j, m, d, D, e, u, v, w)"),
        })
    }

    fn label(self) -> &'static str {
        match self {
            Contestant::DriverLoop => "(a) Rust driver loop: find by _id, update commands of <=batch statements",
            Contestant::Godwit => "(b) godwit run --execute --no-before-images, journal on",
            Contestant::GodwitImages => "(c) godwit run --execute, journal + before-images (the default)",
            Contestant::GodwitPython => "(p) = (b), the plugin written in Python (componentize-py)",
            Contestant::GodwitJs => "(j) = (b), the plugin written in JavaScript (componentize-js)",
            Contestant::PymongoPerDocument => "(d) pymongo, one update_one per document (the seeds' way)",
            Contestant::PymongoBulk => "(d') pymongo, bulk_write of UpdateOne per batch",
            Contestant::MigrateMongo => "(m) migrate-mongo 14 (Node), bulkWrite of updateOne per batch",
            Contestant::DryRun => "(e) godwit run (dry run)",
            Contestant::GodwitUnguarded => "(u) = (b) with --no-write-guard",
            Contestant::GodwitImagesUnguarded => "(v) = (c) with --no-write-guard",
            Contestant::GodwitLive => {
                "(w) = (c) with --follow --follow-until-idle 1, 4 writers replacing executions meanwhile"
            }
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Contestant::DriverLoop => "a",
            Contestant::Godwit => "b",
            Contestant::GodwitImages => "c",
            Contestant::GodwitPython => "p",
            Contestant::GodwitJs => "j",
            Contestant::PymongoPerDocument => "d",
            Contestant::PymongoBulk => "d2",
            Contestant::MigrateMongo => "m",
            Contestant::DryRun => "e",
            Contestant::GodwitUnguarded => "u",
            Contestant::GodwitImagesUnguarded => "v",
            Contestant::GodwitLive => "w",
        }
    }

    fn writes(self) -> bool {
        self != Contestant::DryRun
    }

    /// The plugin component a godwit contestant runs; `None` for the others.
    fn plugin(self, common: &Common) -> Option<&Path> {
        match self {
            Contestant::DriverLoop
            | Contestant::PymongoPerDocument
            | Contestant::PymongoBulk
            | Contestant::MigrateMongo => None,
            Contestant::GodwitPython => Some(&common.python_plugin),
            Contestant::GodwitJs => Some(&common.js_plugin),
            Contestant::Godwit
            | Contestant::GodwitImages
            | Contestant::DryRun
            | Contestant::GodwitUnguarded
            | Contestant::GodwitImagesUnguarded
            | Contestant::GodwitLive => Some(&common.plugin),
        }
    }
}

/// One measured run of one contestant.
#[derive(Debug, Clone)]
struct Row {
    contestant: Contestant,
    docs: u64,
    elapsed: Duration,
    peak_rss: u64,
    /// User + system CPU time of the contestant's process.
    cpu: Duration,
    /// CPU time the server spent during the run (when the harness started it).
    server_cpu: Option<Duration>,
    /// What the contestant achieved, checked ("198,000 backfilled").
    result: String,
    /// Size of godwit's journal directory after the run.
    journal_bytes: Option<u64>,
    /// Documents the run wrote: those found backfilled afterwards (0 for the dry run).
    written: u64,
    /// Which of `run`'s interleaved rounds measured it (0 elsewhere).
    round: usize,
    /// A godwit run's own profile: each step's total wall time
    /// (`godwit::timing`), in its order; empty for the other contestants.
    timing: Vec<(String, Duration)>,
}

impl Row {
    fn cpu_text(&self) -> String {
        match self.server_cpu {
            Some(server) => format!("{:.1} s / {:.1} s", self.cpu.as_secs_f64(), server.as_secs_f64()),
            None => format!("{:.1} s / ?", self.cpu.as_secs_f64()),
        }
    }

    fn docs_per_sec(&self) -> f64 {
        self.docs as f64 / self.elapsed.as_secs_f64()
    }

    /// Journal bytes per document written ("-" without a journal or writes).
    fn journal_per_doc_text(&self) -> String {
        match self.journal_bytes {
            Some(bytes) if self.written > 0 => format!("{:.0} B", bytes as f64 / self.written as f64),
            _ => "-".into(),
        }
    }
}

/// Everything the contestants share: the server, the binaries, a scratch directory.
struct Bench {
    common: Common,
    server: server::Server,
    client: mongodb::Client,
    work: tempfile::TempDir,
    runs: usize,
    /// godwit's `--read-ahead` (its default when `None`).
    read_ahead: Option<u32>,
    /// godwit's `--workers` (a plain run when `None`).
    workers: Option<u32>,
}

impl Bench {
    /// Checks what `contestants` need and compiles the plugins they run.
    async fn new(common: Common, contestants: &[Contestant]) -> anyhow::Result<Self> {
        for (file, how) in [
            (&common.godwit, "cargo build --release -p godwit"),
            (&common.plugin, "just plugins"),
            (&common.script, "the repository's bench/ folder"),
        ] {
            if !file.exists() {
                bail!("{} is missing ({how})", file.display());
            }
        }
        // Only the plugins of the contestants chosen: `--only a,b` needs
        // neither the Python nor the JavaScript plugin built.
        let mut plugins: Vec<&Path> = contestants.iter().filter_map(|c| c.plugin(&common)).collect();
        plugins.sort();
        plugins.dedup();
        for (plugin, how) in [
            (
                &common.python_plugin,
                "scripts/build-python-plugin.sh bench/plugin-py/bench-backfill-py",
            ),
            (
                &common.js_plugin,
                "godwit plugin build bench/plugin-js/bench-backfill-js",
            ),
        ] {
            if plugins.contains(&plugin.as_path()) && !plugin.exists() {
                bail!("{} is missing ({how})", plugin.display());
            }
        }
        if contestants.contains(&Contestant::MigrateMongo) {
            let bin = common.migrate_mongo.join(MIGRATE_MONGO_BIN);
            if !bin.exists() {
                bail!(
                    "{} is missing: run scripts/bench-setup.sh (npm ci in {}), or leave out contestant m (--only)",
                    bin.display(),
                    common.migrate_mongo.display()
                );
            }
            let node = Command::new(&common.node)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !node {
                bail!(
                    "{} --version failed: contestant m needs Node.js 20 (scripts/setup.sh installs it; --node names another)",
                    common.node
                );
            }
        }
        let ok = Command::new(&common.python)
            .args(["-c", "import pymongo"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("{} cannot import pymongo (scripts/setup.sh installs it)", common.python);
        }
        // GODWIT_BENCH_KEEP=1 keeps the scratch directory: every contestant's
        // log (godwit's at info level), for looking into a figure afterwards.
        let keep = std::env::var_os("GODWIT_BENCH_KEEP").is_some();
        let work = tempfile::Builder::new()
            .prefix("godwit-bench-")
            .disable_cleanup(keep)
            .tempdir()?;
        if keep {
            eprintln!("keeping {}", work.path().display());
        }
        let server = match &common.uri {
            Some(uri) => server::existing(uri).await?,
            None => server::start(work.path()).await?,
        };
        let client = mongodb::Client::with_uri_str(&server.uri).await?;
        // Compile the plugins into a cache of our own once, outside any timing
        // (the JavaScript component's first compile took 22.9 s on the 2-core VM).
        for plugin in plugins {
            let status = Command::new(&common.godwit)
                .args(["plugin", "inspect"])
                .arg(plugin)
                .env("GODWIT_CACHE_DIR", work.path().join("cache"))
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                bail!("godwit plugin inspect {} failed", plugin.display());
            }
        }
        Ok(Bench {
            common,
            server,
            client,
            work,
            runs: 0,
            read_ahead: None,
            workers: None,
        })
    }

    /// Fresh data, one timed run, the check, and the data dropped again.
    async fn run(&mut self, contestant: Contestant, docs: u64) -> anyhow::Result<Row> {
        self.runs += 1;
        let name = format!("bench_{}_{}_{}", contestant.tag(), self.runs, std::process::id());
        let db = self.client.database(&name);
        db.drop().await?;
        eprint!("  {:<70} generating {docs} documents... ", contestant.label());
        data::generate(&db, docs).await?;
        eprint!("running... ");
        let journal = self.work.path().join(format!("journal-{name}"));
        let log = self.work.path().join(format!("{name}.log"));
        let command = self.command(contestant, &name, &journal)?;
        let server_before = self.server.cpu();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = match contestant {
            Contestant::GodwitLive => (0..4)
                .map(|w| tokio::spawn(data::old_application(db.clone(), docs, w, stop.clone())))
                .collect(),
            _ => Vec::new(),
        };
        if !writers.is_empty() {
            let (stop, seconds) = (stop.clone(), self.common.writers_for);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let log_path = log.clone();
        let measured = tokio::task::spawn_blocking(move || child::measure(command, &log)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut app_writes = 0;
        for writer in writers {
            app_writes += writer.await??;
        }
        let measured = measured??;
        let timing = timing_of(&std::fs::read_to_string(&log_path).unwrap_or_default());
        let server_cpu = self
            .server
            .cpu()
            .zip(server_before)
            .map(|(after, before)| after.saturating_sub(before));
        let outcome = data::check(&db).await?;
        let expected = match contestant {
            // The old application moved executions between users.
            Contestant::GodwitLive => outcome.resolvable,
            _ => data::expected_updates(docs),
        };
        let result = if contestant.writes() {
            if outcome.backfilled != expected || outcome.wrong != 0 {
                bail!(
                    "{} did not do the backfill: {} of {expected} executions backfilled, {} wrong",
                    contestant.label(),
                    outcome.backfilled,
                    outcome.wrong
                );
            }
            if matches!(
                contestant,
                Contestant::Godwit
                    | Contestant::GodwitImages
                    | Contestant::GodwitPython
                    | Contestant::GodwitJs
                    | Contestant::GodwitUnguarded
                    | Contestant::GodwitImagesUnguarded
                    | Contestant::GodwitLive
            ) {
                let report = godwit_report(&measured.stdout)?;
                if report.status != "finished" || report.stamped.is_none() {
                    bail!("godwit did not finish and stamp: {}", measured.stdout);
                }
                if contestant == Contestant::GodwitLive {
                    let row = self
                        .finish_row(
                            contestant,
                            docs,
                            measured,
                            server_cpu,
                            format!(
                                "{} backfilled; {} application writes in {} s, {} refused by the guard, {} followed",
                                thousands(outcome.backfilled),
                                thousands(app_writes),
                                self.common.writers_for,
                                thousands(report.conflicts),
                                thousands(report.followed)
                            ),
                            outcome.backfilled,
                            &journal,
                            &db,
                        )
                        .await?;
                    return Ok(Row { timing, ..row });
                }
            }
            if contestant == Contestant::MigrateMongo && !measured.stdout.contains(MIGRATE_MONGO_MIGRATED) {
                bail!(
                    "migrate-mongo exited 0 on database {name} but did not report `{MIGRATE_MONGO_MIGRATED}` \
                     (stdout: {}); rerun with GODWIT_BENCH_KEEP=1 to keep its log",
                    measured.stdout.trim()
                );
            }
            format!("{} backfilled", thousands(outcome.backfilled))
        } else {
            let report = godwit_report(&measured.stdout)?;
            if outcome.backfilled != 0 || outcome.wrong != 0 || report.updates != expected {
                bail!(
                    "the dry run wrote ({} backfilled) or planned {} updates instead of {expected}",
                    outcome.backfilled,
                    report.updates
                );
            }
            format!("{} updates planned, none written", thousands(report.updates))
        };
        let written = if contestant.writes() { outcome.backfilled } else { 0 };
        let row = self
            .finish_row(contestant, docs, measured, server_cpu, result, written, &journal, &db)
            .await?;
        Ok(Row { timing, ..row })
    }

    /// The row of a checked run; its journal and database removed.
    #[allow(clippy::too_many_arguments)]
    async fn finish_row(
        &self,
        contestant: Contestant,
        docs: u64,
        measured: child::Measured,
        server_cpu: Option<Duration>,
        result: String,
        written: u64,
        journal: &Path,
        db: &mongodb::Database,
    ) -> anyhow::Result<Row> {
        let journal_bytes = journal.exists().then(|| dir_size(journal));
        let _ = std::fs::remove_dir_all(journal);
        db.drop().await?;
        let row = Row {
            contestant,
            docs,
            elapsed: measured.elapsed,
            peak_rss: measured.peak_rss,
            cpu: measured.cpu,
            server_cpu,
            result,
            journal_bytes,
            written,
            round: 0,
            timing: Vec::new(),
        };
        eprintln!(
            "{:.1} s, {:.0} docs/s, peak RSS {}, CPU {:.1} s",
            row.elapsed.as_secs_f64(),
            row.docs_per_sec(),
            mib(row.peak_rss),
            row.cpu.as_secs_f64()
        );
        Ok(row)
    }

    fn command(&self, contestant: Contestant, db: &str, journal: &Path) -> anyhow::Result<Command> {
        let c = &self.common;
        let uri = &self.server.uri;
        let batch = c.batch.to_string();
        Ok(match contestant {
            Contestant::DriverLoop => {
                let mut cmd = Command::new(std::env::current_exe()?);
                cmd.args(["driver-loop", "--uri", uri, "--db", db, "--batch", &batch]);
                cmd
            }
            Contestant::Godwit
            | Contestant::GodwitImages
            | Contestant::GodwitPython
            | Contestant::GodwitJs
            | Contestant::DryRun
            | Contestant::GodwitUnguarded
            | Contestant::GodwitImagesUnguarded
            | Contestant::GodwitLive => {
                let plugin = contestant.plugin(c).context("a godwit contestant runs a plugin")?;
                let mut cmd = Command::new(&c.godwit);
                cmd.arg("--json")
                    .arg("run")
                    .arg(plugin)
                    .args(["--uri", uri, "--db", db, "--batch-size", &batch])
                    .arg("--journal")
                    .arg(journal)
                    .arg("--pause-file")
                    .arg(self.work.path().join("no-pause"))
                    .env("GODWIT_CACHE_DIR", self.work.path().join("cache"))
                    // Warnings, and the run's profile at its end.
                    .env("RUST_LOG", "warn,godwit::timing=debug");
                if contestant != Contestant::DryRun {
                    cmd.arg("--execute");
                }
                if let Some(n) = self.read_ahead {
                    cmd.args(["--read-ahead", &n.to_string()]);
                }
                if let Some(n) = self.workers {
                    cmd.args(["--workers", &n.to_string()]);
                }
                if matches!(
                    contestant,
                    Contestant::Godwit | Contestant::GodwitPython | Contestant::GodwitJs | Contestant::GodwitUnguarded
                ) {
                    cmd.arg("--no-before-images");
                }
                if matches!(
                    contestant,
                    Contestant::GodwitUnguarded | Contestant::GodwitImagesUnguarded
                ) {
                    cmd.arg("--no-write-guard");
                }
                if contestant == Contestant::GodwitLive {
                    cmd.args(["--follow", "--follow-until-idle", "1"]);
                }
                cmd
            }
            Contestant::MigrateMongo => {
                let mut cmd = Command::new(&c.node);
                cmd.arg(MIGRATE_MONGO_BIN)
                    .arg("up")
                    .current_dir(&c.migrate_mongo)
                    .env("MIGRATE_MONGO_URI", uri)
                    .env("MIGRATE_MONGO_DB", db)
                    .env("BENCH_BATCH", &batch);
                cmd
            }
            Contestant::PymongoPerDocument | Contestant::PymongoBulk => {
                let mut cmd = Command::new(&c.python);
                cmd.arg(&c.script).args(["--uri", uri, "--db", db, "--batch", &batch]);
                if contestant == Contestant::PymongoBulk {
                    cmd.arg("--bulk");
                }
                cmd
            }
        })
    }
}

struct GodwitReport {
    status: String,
    stamped: Option<String>,
    updates: u64,
    /// Documents the write guard refused (processed again).
    conflicts: u64,
    /// Documents the follow phase's windows named.
    followed: u64,
}

fn godwit_report(stdout: &str) -> anyhow::Result<GodwitReport> {
    let json: serde_json::Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("godwit's --json output: {stdout}"))?;
    let updates = json["summary"]["passes"]
        .as_array()
        .map(|passes| passes.iter().filter_map(|p| p["updates"].as_u64()).sum())
        .unwrap_or(0);
    let conflicts = json["summary"]["passes"]
        .as_array()
        .map(|passes| passes.iter().filter_map(|p| p["conflicts"].as_u64()).sum())
        .unwrap_or(0);
    Ok(GodwitReport {
        status: json["status"].as_str().unwrap_or("?").to_string(),
        stamped: json["stamped_version"].as_str().map(str::to_string),
        updates,
        conflicts,
        followed: json["summary"]["follow"]["documents"].as_u64().unwrap_or(0),
    })
}

/// migrate-mongo's command line, inside `--migrate-mongo` (installed by `npm ci`).
const MIGRATE_MONGO_BIN: &str = "node_modules/migrate-mongo/bin/migrate-mongo.js";

/// What `migrate-mongo up` prints when it applied the bench's migration.
const MIGRATE_MONGO_MIGRATED: &str = "MIGRATED UP: 20261202000000-backfill-owner-user-id.js";

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Date, machine and load: the context the figures belong to.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let ram = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(str::trim).map(str::to_string))
        .and_then(|kb| kb.trim_end_matches(" kB").parse::<u64>().ok())
        .map_or_else(
            || "? RAM".into(),
            |kb| format!("{:.1} GiB RAM", kb as f64 / 1024.0 / 1024.0),
        );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores ({cpu}), {ram}, Linux {}",
        read("/proc/sys/kernel/osrelease").trim()
    )
}

fn now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The median and the range of per-round figures.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    rounds: usize,
}

impl Spread {
    /// `None` for no values; the median of an even count is the mean of the middle two.
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: values[0],
            max: values[n - 1],
            rounds: n,
        })
    }

    /// "1.13x (1.05-1.20)"; just "1.13x" from one round.
    fn ratio_text(self) -> String {
        if self.rounds > 1 {
            format!("{:.2}x ({:.2}-{:.2})", self.median, self.min, self.max)
        } else {
            format!("{:.2}x", self.median)
        }
    }
}

/// `x`'s docs/s over `y`'s, one ratio per round that measured both.
fn ratio_spread(rows: &[Row], x: Contestant, y: Contestant) -> Option<Spread> {
    let ratios = rows
        .iter()
        .filter(|rx| rx.contestant == x)
        .filter_map(|rx| {
            rows.iter()
                .find(|ry| ry.contestant == y && ry.round == rx.round)
                .map(|ry| rx.docs_per_sec() / ry.docs_per_sec())
        })
        .collect();
    Spread::of(ratios)
}

/// A contestant's median docs/s, with min-max when several rounds measured it.
fn docs_per_sec_text(rows: &[Row], contestant: Contestant) -> String {
    let rates = rows
        .iter()
        .filter(|r| r.contestant == contestant)
        .map(Row::docs_per_sec)
        .collect();
    match Spread::of(rates) {
        Some(s) if s.rounds > 1 => format!(
            "{} [{}-{}]",
            thousands(s.median as u64),
            thousands(s.min as u64),
            thousands(s.max as u64)
        ),
        Some(s) => thousands(s.median as u64),
        None => "-".into(),
    }
}

/// One target line: "- (c) >= 0.95x (a): **0.97x** (0.93-1.01) - met", or why it is not measured.
fn target_line(text: &mut String, ratio: Option<Spread>, name: &str, at_least: f64, chosen: bool) {
    let _ = match ratio {
        Some(r) => {
            let range = if r.rounds > 1 {
                format!(" ({:.2}-{:.2})", r.min, r.max)
            } else {
                String::new()
            };
            writeln!(
                text,
                "- {name}: **{:.2}x**{range} - {}",
                r.median,
                verdict(r.median >= at_least)
            )
        }
        None if chosen => writeln!(text, "- {name}: not measured (no round ran both)"),
        None => writeln!(text, "- {name}: not measured (a contestant left out by --only)"),
    };
}

/// The steps of a godwit run's `godwit::timing` lines in `log`
/// ("... timing: db-reads   201 times,  1744.1 ms,  8.677 ms each").
fn timing_of(log: &str) -> Vec<(String, Duration)> {
    log.lines()
        .filter_map(|line| {
            let mut words = line.split_once("timing: ")?.1.split_whitespace();
            let step = words.next()?.to_string();
            let ms: f64 = words.nth(2)?.parse().ok()?;
            Some((step, Duration::from_secs_f64(ms / 1e3)))
        })
        .collect()
}

/// Where the godwit contestants' time went: each step's median total over
/// the rounds, one column per contestant, beside (a)'s whole run.
fn timing_table(text: &mut String, rows: &[Row], contestants: &[Contestant]) {
    let profiled: Vec<Contestant> = contestants
        .iter()
        .copied()
        .filter(|&c| rows.iter().any(|r| r.contestant == c && !r.timing.is_empty()))
        .collect();
    let Some(&first) = profiled.first() else {
        return;
    };
    let median = |c: Contestant, step: &str| {
        let totals = rows
            .iter()
            .filter(|r| r.contestant == c)
            .filter_map(|r| r.timing.iter().find(|(s, _)| s == step).map(|(_, d)| d.as_secs_f64()))
            .collect();
        Spread::of(totals).map(|s| s.median)
    };
    let _ = writeln!(
        text,
        "\nWhere the time goes: each godwit run's own profile (`RUST_LOG=godwit::timing=debug`), seconds per \
         run, medians of the rounds. `batch` holds the `db-*` steps (journal entry and reads, writes, marker, \
         commit) and, beside them, the next batch's plugin call (`plugin-ahead`); `open` is the pass query's first \
         reply. {}\n",
        match median_row(rows, Contestant::DriverLoop) {
            Some(a) => format!(
                "(a) runs the same query and update commands, {:.2} s in all.",
                a.elapsed.as_secs_f64()
            ),
            None => String::new(),
        }
    );
    let _ = writeln!(
        text,
        "| step | {} |\n| --- |{}",
        profiled
            .iter()
            .map(|c| format!("({})", c.tag()))
            .collect::<Vec<_>>()
            .join(" | "),
        " ---: |".repeat(profiled.len())
    );
    let steps: Vec<&str> = rows
        .iter()
        .filter(|r| r.contestant == first)
        .flat_map(|r| r.timing.iter().map(|(s, _)| s.as_str()))
        .fold(Vec::new(), |mut steps, s| {
            if !steps.contains(&s) {
                steps.push(s);
            }
            steps
        });
    for step in steps {
        let cells: Vec<String> = profiled
            .iter()
            .map(|&c| median(c, step).map_or("-".into(), |s| format!("{s:.2}")))
            .collect();
        let _ = writeln!(text, "| {step} | {} |", cells.join(" | "));
    }
}

fn median_row(rows: &[Row], contestant: Contestant) -> Option<Row> {
    let mut mine: Vec<&Row> = rows.iter().filter(|r| r.contestant == contestant).collect();
    mine.sort_by(|a, b| a.docs_per_sec().total_cmp(&b.docs_per_sec()));
    let mut row = (*mine.get(mine.len() / 2)?).clone();
    row.peak_rss = mine.iter().map(|r| r.peak_rss).max().unwrap_or(0);
    Some(row)
}

fn header(title: &str, bench: &Bench, docs: &str, start_load: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(
        out,
        "Written by `godwit-bench` (`bench/src/main.rs`); do not edit by hand.\n"
    );
    let _ = writeln!(out, "- date: {}", now());
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(out, "- load average before / after: {start_load} / {}", load());
    let _ = writeln!(out, "- server: {}, on the same machine", bench.server.label);
    let _ = writeln!(
        out,
        "- data: {docs} QDash-like `executions` (~{} bytes of BSON each) + 500 `users`; 1% name a deleted user",
        data::average_document_bytes()
    );
    let _ = writeln!(
        out,
        "- batch: {} documents per read batch / plugin call / update command; release builds; every contestant \
         on freshly generated data, checked afterwards by reading every document back\n",
        bench.common.batch
    );
    out
}

async fn run_all(docs: u64, only: &str, rounds: usize, out: &Path, common: Common) -> anyhow::Result<()> {
    let contestants: Vec<Contestant> = only
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Contestant::parse)
        .collect::<anyhow::Result<_>>()?;
    let start_load = load();
    let mut bench = Bench::new(common, &contestants).await?;
    eprintln!("godwit-bench: {docs} documents, server {}", bench.server.label);
    let mut rows = Vec::new();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for &c in &contestants {
            let mut row = bench.run(c, docs).await?;
            row.round = round;
            rows.push(row);
        }
    }
    let table: Vec<Row> = contestants.iter().filter_map(|&c| median_row(&rows, c)).collect();
    let has = |c| contestants.contains(&c);
    let ratio = |x, y| ratio_spread(&rows, x, y);
    let mut text = header(
        "Benchmark: QDash-like owner_user_id backfill",
        &bench,
        &thousands(docs),
        &start_load,
    );
    if rounds > 1 {
        let _ = writeln!(
            text,
            "Medians of {rounds} interleaved rounds, min-max in brackets; every ratio is the median (min-max) of the \
             per-round ratios (both contestants measured in the same round). Peak RSS: the highest of the rounds.\n"
        );
    }
    let _ = writeln!(
        text,
        "| contestant | docs/s | vs (a) | time | peak RSS | CPU client / server | journal / doc written | checked result |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for row in &table {
        let versus = ratio(row.contestant, Contestant::DriverLoop).map_or("-".into(), Spread::ratio_text);
        let _ = writeln!(
            text,
            "| {} | {} | {versus} | {:.1} s | {} | {} | {} | {}{} |",
            row.contestant.label(),
            docs_per_sec_text(&rows, row.contestant),
            row.elapsed.as_secs_f64(),
            mib(row.peak_rss),
            row.cpu_text(),
            row.journal_per_doc_text(),
            row.result,
            row.journal_bytes
                .map(|b| format!("; journal {}", mib(b)))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(text, "\nTargets (issue 16; verdicts on the median):\n");
    for (x, y, name, at_least) in [
        (
            Contestant::GodwitImages,
            Contestant::DriverLoop,
            "(c) >= 0.95x (a)",
            0.95,
        ),
        (
            Contestant::GodwitImages,
            Contestant::MigrateMongo,
            "(c) >= 1.15x (m)",
            1.15,
        ),
        (Contestant::Godwit, Contestant::DriverLoop, "(b) >= 1.0x (a)", 1.0),
        (Contestant::GodwitPython, Contestant::DriverLoop, "(p) >= 0.9x (a)", 0.9),
    ] {
        target_line(&mut text, ratio(x, y), name, at_least, has(x) && has(y));
    }
    let _ = writeln!(text, "\nTargets (issue 7):\n");
    target_line(
        &mut text,
        ratio(Contestant::Godwit, Contestant::PymongoPerDocument),
        "(b) >= 2x (d)",
        2.0,
        has(Contestant::Godwit) && has(Contestant::PymongoPerDocument),
    );
    // The write guard (issue 23): at most 5% of (b) and of (c).
    for (guarded, unguarded, name) in [
        (
            Contestant::Godwit,
            Contestant::GodwitUnguarded,
            "write guard, (b) vs (u) >= 0.95x",
        ),
        (
            Contestant::GodwitImages,
            Contestant::GodwitImagesUnguarded,
            "write guard, (c) vs (v) >= 0.95x",
        ),
    ] {
        if has(guarded) && has(unguarded) {
            target_line(&mut text, ratio(guarded, unguarded), name, 0.95, true);
        }
    }
    // For reference: the careful scripts against each other, and what the
    // plugin's language costs (the same backfill, the same run options as (b)).
    let mut references = Vec::new();
    for (x, y, name) in [
        (Contestant::Godwit, Contestant::PymongoBulk, "(b) vs (d')"),
        (Contestant::Godwit, Contestant::MigrateMongo, "(b) vs (m)"),
        (
            Contestant::PymongoBulk,
            Contestant::MigrateMongo,
            "(d') pymongo vs (m) migrate-mongo",
        ),
        (Contestant::GodwitPython, Contestant::Godwit, "(p) Python vs (b) Rust"),
        (Contestant::GodwitJs, Contestant::Godwit, "(j) JavaScript vs (b) Rust"),
        (
            Contestant::GodwitJs,
            Contestant::GodwitPython,
            "(j) JavaScript vs (p) Python",
        ),
    ] {
        if let Some(r) = ratio(x, y) {
            references.push(format!("- {name}: {}", r.ratio_text()));
        }
    }
    if !references.is_empty() {
        let _ = writeln!(text, "\nFor reference:\n\n{}", references.join("\n"));
    }
    timing_table(&mut text, &rows, &contestants);
    if rounds > 1 {
        let _ = writeln!(text, "\nAll runs:\n");
        for row in &rows {
            let _ = writeln!(
                text,
                "- round {}, {}: {} docs/s, {}",
                row.round + 1,
                row.contestant.tag(),
                thousands(row.docs_per_sec() as u64),
                mib(row.peak_rss)
            );
        }
    }
    report(out, &text)
}

/// Prints a result table and writes it to `out`.
fn report(out: &Path, text: &str) -> anyhow::Result<()> {
    println!("{text}");
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

async fn scale(sizes: &[u64], out: &Path, common: Common) -> anyhow::Result<()> {
    if sizes.len() < 2 {
        bail!("--sizes needs at least two sizes");
    }
    let start_load = load();
    let mut bench = Bench::new(common, &[Contestant::DriverLoop, Contestant::Godwit]).await?;
    let mut rows = Vec::new();
    for &docs in sizes {
        eprintln!("godwit-bench scale: {docs} documents");
        for c in [Contestant::DriverLoop, Contestant::Godwit] {
            rows.push(bench.run(c, docs).await?);
        }
    }
    let sizes_text = sizes.iter().map(|&s| thousands(s)).collect::<Vec<_>>().join(" vs ");
    let mut text = header(
        "Benchmark: scaling with the collection's size",
        &bench,
        &sizes_text,
        &start_load,
    );
    let _ = writeln!(
        text,
        "| documents | contestant | docs/s | vs (a) | time | peak RSS | CPU client / server | checked result |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for pair in rows.chunks(2) {
        let a = pair[0].docs_per_sec();
        for row in pair {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {:.2}x | {:.1} s | {} | {} | {}{} |",
                thousands(row.docs),
                row.contestant.label(),
                thousands(row.docs_per_sec() as u64),
                row.docs_per_sec() / a,
                row.elapsed.as_secs_f64(),
                mib(row.peak_rss),
                row.cpu_text(),
                row.result,
                row.journal_bytes
                    .map(|b| format!("; journal {}", mib(b)))
                    .unwrap_or_default()
            );
        }
    }
    let godwit: Vec<&Row> = rows.iter().filter(|r| r.contestant == Contestant::Godwit).collect();
    let (small, large) = (godwit[0], godwit[godwit.len() - 1]);
    let speed = large.docs_per_sec() / small.docs_per_sec();
    let rss = large.peak_rss as f64 / small.peak_rss as f64;
    let _ = writeln!(text, "\nTargets (issue 7), godwit (b):\n");
    let _ = writeln!(
        text,
        "- docs/s at {} vs {}: **{speed:.2}x** (within 15%: {})",
        thousands(large.docs),
        thousands(small.docs),
        verdict((speed - 1.0).abs() <= 0.15)
    );
    let _ = writeln!(
        text,
        "- peak RSS at {} vs {}: **{rss:.2}x** (within 20%: {})",
        thousands(large.docs),
        thousands(small.docs),
        verdict((rss - 1.0).abs() <= 0.20)
    );
    let _ = writeln!(
        text,
        "- peak RSS at {}: **{}** (under 150 MB: {})",
        thousands(large.docs),
        mib(large.peak_rss),
        verdict(large.peak_rss < 150_000_000)
    );
    report(out, &text)
}

async fn tune(docs: u64, batches: &[u32], read_aheads: &[u32], out: &Path, common: Common) -> anyhow::Result<()> {
    let start_load = load();
    let default_batch = common.batch;
    let mut bench = Bench::new(common, &[Contestant::DriverLoop, Contestant::Godwit]).await?;
    eprintln!("godwit-bench tune: {docs} documents");
    let base = bench.run(Contestant::DriverLoop, docs).await?;
    // (batch, read-ahead, row)
    let mut rows: Vec<(u32, Option<u32>, Row)> = Vec::new();
    for &batch in batches {
        bench.common.batch = batch;
        bench.read_ahead = None;
        rows.push((batch, None, bench.run(Contestant::Godwit, docs).await?));
    }
    bench.common.batch = default_batch;
    for &depth in read_aheads {
        bench.read_ahead = Some(depth);
        rows.push((default_batch, Some(depth), bench.run(Contestant::Godwit, docs).await?));
    }
    bench.common.batch = default_batch;
    let mut text = header(
        "Benchmark: batch size and read-ahead of godwit (b)",
        &bench,
        &thousands(docs),
        &start_load,
    );
    let _ = writeln!(
        text,
        "(a) at batch {default_batch}: {} docs/s, peak RSS {}. Rows: godwit (b) with `--batch-size` and \
         `--read-ahead` (default 2).\n",
        thousands(base.docs_per_sec() as u64),
        mib(base.peak_rss)
    );
    let _ = writeln!(
        text,
        "| --batch-size | --read-ahead | docs/s | vs (a) | time | peak RSS | CPU client / server |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (batch, depth, row) in &rows {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.2}x | {:.1} s | {} | {} |",
            thousands(u64::from(*batch)),
            depth.map_or("2 (default)".into(), |d| d.to_string()),
            thousands(row.docs_per_sec() as u64),
            row.docs_per_sec() / base.docs_per_sec(),
            row.elapsed.as_secs_f64(),
            mib(row.peak_rss),
            row.cpu_text()
        );
    }
    report(out, &text)
}

async fn fleet(docs: u64, workers: &[u32], rounds: usize, out: &Path, common: Common) -> anyhow::Result<()> {
    let start_load = load();
    let mut bench = Bench::new(common, &[Contestant::GodwitImages]).await?;
    eprintln!("godwit-bench fleet: {docs} documents, workers {workers:?}, {rounds} rounds");
    let configs: Vec<Option<u32>> = std::iter::once(None).chain(workers.iter().copied().map(Some)).collect();
    // (config, rows of every round)
    let mut rows: Vec<(Option<u32>, Vec<Row>)> = configs.iter().map(|c| (*c, Vec::new())).collect();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for (config, runs) in rows.iter_mut() {
            bench.workers = *config;
            runs.push(bench.run(Contestant::GodwitImages, docs).await?);
        }
    }
    bench.workers = None;
    let mut text = header(
        "Benchmark: fleet mode (`--workers`) of godwit (c)",
        &bench,
        &thousands(docs),
        &start_load,
    );
    let base = {
        let mut plain: Vec<f64> = rows[0].1.iter().map(Row::docs_per_sec).collect();
        plain.sort_by(f64::total_cmp);
        plain[plain.len() / 2]
    };
    let _ = writeln!(
        text,
        "godwit (c), before-images and the write guard on, as one plain run and with `--workers N` (each pass split \
         into 4 partitions per worker, all in one process). Medians of {rounds} interleaved rounds, min-max in \
         brackets; CPU per document in microseconds.\n"
    );
    let _ = writeln!(
        text,
        "| run | docs/s | vs plain | client CPU/doc | server CPU/doc | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for (config, runs) in &rows {
        let mut rates: Vec<f64> = runs.iter().map(Row::docs_per_sec).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let per_doc = |cpu: Duration| cpu.as_secs_f64() * 1e6 / docs as f64;
        let mut client: Vec<f64> = runs.iter().map(|r| per_doc(r.cpu)).collect();
        client.sort_by(f64::total_cmp);
        let mut server: Vec<f64> = runs.iter().filter_map(|r| r.server_cpu.map(per_doc)).collect();
        server.sort_by(f64::total_cmp);
        let _ = writeln!(
            text,
            "| {} | {} [{}-{}] | {:.2}x | {:.0} µs | {} | {} |",
            config.map_or("plain".to_string(), |n| format!("--workers {n}")),
            thousands(median as u64),
            thousands(rates[0] as u64),
            thousands(rates[rates.len() - 1] as u64),
            median / base,
            client[client.len() / 2],
            server
                .get(server.len() / 2)
                .map_or("?".into(), |s| format!("{s:.0} µs")),
            mib(runs.iter().map(|r| r.peak_rss).max().unwrap_or(0)),
        );
    }
    let _ = writeln!(
        text,
        "\nOne machine feeds about (server CPU/doc) / (client CPU/doc) of one server core's worth of work per client \
         core: past that the server, not godwit, is the bound."
    );
    report(out, &text)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Cmd::Run {
                docs,
                only,
                rounds,
                out,
                common,
            } => run_all(docs, &only, rounds.max(1), &out, common).await,
            Cmd::Scale { sizes, out, common } => scale(&sizes, &out, common).await,
            Cmd::Tune {
                docs,
                batches,
                read_aheads,
                out,
                common,
            } => tune(docs, &batches, &read_aheads, &out, common).await,
            Cmd::Fleet {
                docs,
                workers,
                rounds,
                out,
                common,
            } => fleet(docs, &workers, rounds.max(1), &out, common).await,
            Cmd::Generate { uri, db, docs } => {
                let client = mongodb::Client::with_uri_str(&uri).await?;
                let db = client.database(&db);
                db.drop().await?;
                data::generate(&db, docs).await?;
                client.shutdown().immediate(true).await;
                Ok(())
            }
            Cmd::Check { uri, db } => {
                let client = mongodb::Client::with_uri_str(&uri).await?;
                println!("{:?}", data::check(&client.database(&db)).await?);
                client.shutdown().immediate(true).await;
                Ok(())
            }
            Cmd::DriverLoop { uri, db, batch } => driver::run(&uri, &db, batch).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `contestant` in `round` that did 1,000 documents at `rate` docs/s.
    fn row(contestant: Contestant, round: usize, rate: f64) -> Row {
        Row {
            contestant,
            docs: 1000,
            elapsed: Duration::from_secs_f64(1000.0 / rate),
            peak_rss: 0,
            cpu: Duration::ZERO,
            server_cpu: None,
            result: String::new(),
            journal_bytes: None,
            written: 0,
            round,
            timing: Vec::new(),
        }
    }

    #[test]
    fn a_runs_profile_is_read_from_its_log_and_tabled_by_median() {
        let log = |reads: &str| {
            format!(
                "2026-12-03T10:45:51Z  WARN something else\n\
                 2026-12-03T10:45:51Z DEBUG timing: open                1 times,      994.1 ms,  994.127 ms each\n\
                 2026-12-03T10:45:51Z DEBUG timing: db-reads          201 times,     {reads} ms,    8.677 ms each\n"
            )
        };
        let timing = timing_of(&log("1744.1"));
        assert_eq!(
            timing,
            [
                ("open".to_string(), Duration::from_secs_f64(0.9941)),
                ("db-reads".to_string(), Duration::from_secs_f64(1.7441)),
            ]
        );
        let c = Contestant::GodwitImages;
        let rows: Vec<Row> = ["1744.1", "2500.0", "1000.0"]
            .iter()
            .enumerate()
            .map(|(round, reads)| Row {
                timing: timing_of(&log(reads)),
                ..row(c, round, 1000.0)
            })
            .chain([row(Contestant::DriverLoop, 0, 1000.0)])
            .collect();
        let mut text = String::new();
        timing_table(&mut text, &rows, &[Contestant::DriverLoop, c]);
        assert!(text.contains("| step | (c) |"), "{text}");
        assert!(text.contains("| open | 0.99 |"), "{text}");
        assert!(
            text.contains("| db-reads | 1.74 |"),
            "the median of 1.74, 2.50, 1.00: {text}"
        );
        assert!(text.contains("(a) runs the same query"), "{text}");
    }

    #[test]
    fn ratios_pair_the_runs_of_one_round() {
        let (a, c) = (Contestant::DriverLoop, Contestant::GodwitImages);
        // Per-round ratios 0.9, 0.5 and 1.2; the ratio of the medians would be 10 / 10 = 1.0.
        let rows = vec![
            row(a, 0, 10.0),
            row(c, 0, 9.0),
            row(a, 1, 20.0),
            row(c, 1, 10.0),
            row(a, 2, 10.0),
            row(c, 2, 12.0),
        ];
        let r = ratio_spread(&rows, c, a).expect("three rounds ran both");
        assert!((r.median - 0.9).abs() < 1e-9, "{r:?}");
        assert!((r.min - 0.5).abs() < 1e-9, "{r:?}");
        assert!((r.max - 1.2).abs() < 1e-9, "{r:?}");
        assert_eq!(r.rounds, 3);
        assert_eq!(r.ratio_text(), "0.90x (0.50-1.20)");
        assert_eq!(docs_per_sec_text(&rows, a), "10 [10-20]");
        assert!(ratio_spread(&rows, c, Contestant::MigrateMongo).is_none());
    }

    #[test]
    fn targets_are_judged_on_the_median_and_show_the_range() {
        let spread = Spread::of(vec![1.3, 1.2, 1.0, 1.2]).expect("values");
        assert!((spread.median - 1.2).abs() < 1e-9, "{spread:?}");
        let mut text = String::new();
        target_line(&mut text, Some(spread), "(c) >= 1.15x (m)", 1.15, true);
        target_line(&mut text, Spread::of(vec![0.94]), "(c) >= 0.95x (a)", 0.95, true);
        target_line(&mut text, None, "(p) >= 0.9x (a)", 0.9, false);
        assert_eq!(
            text,
            "- (c) >= 1.15x (m): **1.20x** (1.00-1.30) - met\n\
             - (c) >= 0.95x (a): **0.94x** - **missed**\n\
             - (p) >= 0.9x (a): not measured (a contestant left out by --only)\n"
        );
    }
}
