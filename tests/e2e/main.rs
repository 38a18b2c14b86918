//! End-to-end tests: the real `godwit` binary and real wasm components built
//! by `just plugins` (into `target/plugins/`). One test binary, split into
//! modules by what they exercise.

mod inspect;
mod sandbox;
mod support;
