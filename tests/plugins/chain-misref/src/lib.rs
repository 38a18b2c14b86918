//! Chain test plugin `chain-misref`: Alembic's broken `down_revision` (seed
//! 004) - it requires a revision named like a file, which no plugin provides.

const NAME: &str = "chain-misref";
const VERSION: &str = "1.3.0";
const REQUIRES: Option<&str> = Some("=1.2.0-cleanup-mail-status-exclusivity-py");
const FIELD: &str = "misref";

include!("../../chain-a/src/step.rs");
