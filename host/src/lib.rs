//! godwit: runs database migrations shipped as sandboxed WebAssembly
//! components. The binary (`src/main.rs`) is CLI definition plus glue; this
//! library holds everything the end-to-end tests and other tools can reuse.

pub mod chain;
pub mod cli;
pub mod db;
pub mod hash;
pub mod journal;
pub mod plugin;
pub mod run;

/// The wasmtime release embedded in this build (recorded in run headers).
pub const WASMTIME_VERSION: &str = env!("GODWIT_WASMTIME_VERSION");
