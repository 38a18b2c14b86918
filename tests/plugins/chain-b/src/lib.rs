//! Chain test plugin `chain-b`: second step, requires exactly 1.0.0.

const NAME: &str = "chain-b";
const VERSION: &str = "1.1.0";
const REQUIRES: Option<&str> = Some("=1.0.0");
const FIELD: &str = "v2";

include!("../../chain-a/src/step.rs");
