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
    assert!(path.is_file(), "{} is missing: run `just plugins` first (or `just test`, which does)", path.display());
    path
}

pub fn godwit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_godwit")).args(args).output().expect("run godwit")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
