//! godwit: runs database migrations shipped as sandboxed WebAssembly
//! components. The binary (`src/main.rs`) is CLI definition plus glue; this
//! library holds everything the end-to-end tests and other tools can reuse.

pub mod cli;
pub mod hash;
pub mod plugin;
