//! `hostile-policy` with a manifest that declares `system.users` in its `reads`.

const VARIANT: Variant = Variant::SystemDeclaredReads;

include!("../../hostile-policy/src/policy.rs");
