//! `hostile-policy` with a manifest that declares godwit's metadata collection in its `reads`.

const VARIANT: Variant = Variant::MetadataDeclaredReads;

include!("../../hostile-policy/src/policy.rs");
