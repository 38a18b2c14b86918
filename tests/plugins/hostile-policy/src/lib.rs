//! A plugin that asks the database for what the plugin policy forbids, for
//! `tests/e2e/policy.rs`. Its manifest is well behaved; the `behaviour`
//! parameter picks the action `process` (or `finish`) returns. The
//! `hostile-policy-*` crates include the same code with a hostile manifest.

const VARIANT: Variant = Variant::Actions;

include!("policy.rs");
