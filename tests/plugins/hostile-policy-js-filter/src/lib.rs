//! `hostile-policy` with a manifest that has a pass filter with `$where`.

const VARIANT: Variant = Variant::JsFilter;

include!("../../hostile-policy/src/policy.rs");
