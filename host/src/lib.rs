//! godwit: runs database migrations shipped as sandboxed WebAssembly
//! components. The binary (`src/main.rs`) is CLI definition plus glue; this
//! library holds everything the end-to-end tests and other tools can reuse.

/// A failpoint in the commit protocol. Built with the `failpoints` feature
/// and armed by `FAILPOINTS=<name>=return` (or `<name>=2*off->return` for its
/// third hit, see the `fail` crate), the process SIGKILLs itself there - what
/// the crash tests need: nothing flushed, no destructor run. Without the
/// feature it is nothing.
macro_rules! failpoint {
    ($name:literal) => {{
        #[cfg(feature = "failpoints")]
        if fail::eval($name, |_| ()).is_some() {
            eprintln!("failpoint {} reached: killing the process", $name);
            // SAFETY: kill(2) on our own pid with a valid signal number.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }};
}

/// A failpoint that changes behaviour instead of killing: true when armed
/// (`FAILPOINTS=<name>=return`) and the feature is built in.
macro_rules! failpoint_hit {
    ($name:literal) => {{
        #[cfg(feature = "failpoints")]
        let hit = fail::eval($name, |_| ()).is_some();
        #[cfg(not(feature = "failpoints"))]
        let hit = false;
        hit
    }};
}

pub mod chain;
pub mod cli;
pub mod db;
pub mod hash;
pub mod journal;
pub mod overlap;
pub mod plugin;
pub mod run;
pub mod sdk;
pub mod text;
pub mod timing;

/// The wasmtime release embedded in this build (recorded in run headers).
pub const WASMTIME_VERSION: &str = env!("GODWIT_WASMTIME_VERSION");
