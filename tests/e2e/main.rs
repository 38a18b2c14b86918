//! End-to-end tests: the real `godwit` binary, real wasm components built by
//! `just plugins` (into `target/plugins/`), and a real MongoDB-compatible
//! server (see `db.rs`). One test binary, split into modules by what they
//! exercise.

mod auditor;
mod authors;
mod badinput;
mod build;
mod chain;
mod crash;
mod db;
mod escape;
mod failpoints;
mod fleet;
mod follow;
mod id_types;
mod inspect;
mod javascript;
mod journal_faults;
mod kubernetes;
mod live;
mod lock;
mod lookups;
mod matcher;
mod memory_cap;
mod new;
mod operator;
mod outage;
mod plugin_test;
mod policy;
mod revert;
mod run;
mod sandbox;
mod sandbox_js;
mod schema;
mod secrets;
mod seeds;
mod support;
mod tenants;
mod trust;
mod update_eval;
mod writers;
