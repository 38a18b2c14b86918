//! `hostile-policy` with a pass filter the policy accepts and the server
//! refuses (`$type: 99`, no such type): the error must carry the server's
//! message, never its raw reply.

const VARIANT: Variant = Variant::ServerRefused;

include!("../../hostile-policy/src/policy.rs");
