//! `hostile-policy` with a manifest that has a pass filter nested ~48 KB deep.

const VARIANT: Variant = Variant::DeepFilter;

include!("../../hostile-policy/src/policy.rs");
