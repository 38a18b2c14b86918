//! `hostile-policy` with a manifest that asks for batches of 2^31-1 documents.

const VARIANT: Variant = Variant::HugeBatch;

include!("../../hostile-policy/src/policy.rs");
