//! `hostile-policy` with a manifest that reads godwit's metadata collection in a pass.

const VARIANT: Variant = Variant::MetadataReads;

include!("../../hostile-policy/src/policy.rs");
