//! `hostile-policy` with a manifest that writes godwit's metadata collection (to forge the schema version or the lock).

const VARIANT: Variant = Variant::MetadataWrites;

include!("../../hostile-policy/src/policy.rs");
