//! Shared helpers: where the built components and the `godwit` binary are.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of a component built by `just plugins`. Set `GODWIT_TEST_PLUGINS`
/// to use components from elsewhere.
pub fn plugin(name: &str) -> PathBuf {
    let dir = std::env::var_os("GODWIT_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `just plugins` first (or `just test`, which does)",
        path.display()
    );
    path
}

pub fn godwit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(args)
        .output()
        .expect("run godwit")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `godwit` command against `db`, with its own journal directory and the
/// shared test compile cache.
pub fn command(db: &crate::db::TestDb, journal: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_godwit"));
    cmd.args(args)
        .arg("--db")
        .arg(&db.name)
        .env("MONGODB_URI", &db.uri)
        .env("GODWIT_JOURNAL", journal)
        .env(
            "GODWIT_CACHE_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"),
        )
        .env("RUST_LOG", "warn");
    cmd
}

pub fn run_ok(db: &crate::db::TestDb, journal: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = command(db, journal, args).arg("--json").output().expect("run godwit");
    assert!(
        out.status.success(),
        "godwit {args:?} failed ({:?}):\n{}",
        out.status,
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)))
}

pub fn verify_journal(journal: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(["journal", "verify", "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    assert!(out.status.success(), "journal verify failed: {}", stderr(&out));
    stdout(&out)
}

/// `journal list --json` of the journal directory `journal`: every run's header.
pub fn journal_runs(journal: &std::path::Path) -> serde_json::Value {
    let out = godwit(&["journal", "list", "--json", "--journal", journal.to_str().unwrap()]);
    assert!(out.status.success(), "journal list: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Stamps `db` at `version` (`godwit init`) with the journal directory `journal`.
pub fn stamp(db: &crate::db::TestDb, journal: &std::path::Path, version: &str) {
    let init = command(db, journal, &["init", "--version", version]).output().unwrap();
    assert!(init.status.success(), "godwit init failed: {}", stderr(&init));
}

/// `godwit journal replay RUN --plugin PLUGIN --journal JOURNAL`, then `extra`.
pub fn journal_replay(journal: &std::path::Path, run: &str, plugin: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(["journal", "replay", run, "--plugin"])
        .arg(plugin)
        .arg("--journal")
        .arg(journal)
        .args(extra)
        .output()
        .expect("run godwit journal replay")
}

/// A run's journal entries as `journal export` gives them (JSON lines).
pub fn journal_export(journal: &std::path::Path, run: &str) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_godwit"))
        .args(["journal", "export", run, "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    assert!(out.status.success(), "journal export failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// A recursive copy of a directory (a journal, before it is tampered with).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
