//! Chain test plugin `chain-dup`: a second plugin claiming 1.1.0.

const NAME: &str = "chain-dup";
const VERSION: &str = "1.1.0";
const REQUIRES: Option<&str> = Some("=1.0.0");
const FIELD: &str = "dup";

include!("../../chain-a/src/step.rs");
