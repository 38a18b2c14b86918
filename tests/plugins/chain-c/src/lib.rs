//! Chain test plugin `chain-c`: third step, requires ^1.1.

const NAME: &str = "chain-c";
const VERSION: &str = "1.2.0";
const REQUIRES: Option<&str> = Some("^1.1");
const FIELD: &str = "v3";

include!("../../chain-a/src/step.rs");
