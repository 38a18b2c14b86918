//! Chain test plugin `chain-branch`: a branch off 1.0.0.

const NAME: &str = "chain-branch";
const VERSION: &str = "1.0.5";
const REQUIRES: Option<&str> = Some("=1.0.0");
const FIELD: &str = "branch";

include!("../../chain-a/src/step.rs");
