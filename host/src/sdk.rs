//! The plugin SDKs' sources this binary carries (embedded by `build.rs`):
//! what `godwit new` vendors into a project, and what `godwit plugin build`
//! stages for a Python plugin that has no copy of its own.
//!
//! Each table holds `(path, contents)` pairs: `RUST_SDK` (`plugin-sdk/...`
//! and `policy/...`, without the Python SDK), `PYTHON_SDK`
//! (`godwit_sdk/...`), `JS_SDK` (`godwit-sdk/...`, the JavaScript SDK's
//! package), `JS_TOOLCHAIN` (`toolchain/...`: what a JavaScript plugin build
//! installs from npm, and its Node.js script) and `WIT` (`wit/...`, the
//! contract).

include!(concat!(env!("OUT_DIR"), "/embedded_sdk.rs"));
