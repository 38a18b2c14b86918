//! Chain test plugin `chain-gap`: requires a 2.0 nobody provides.

const NAME: &str = "chain-gap";
const VERSION: &str = "2.1.0";
const REQUIRES: Option<&str> = Some("^2.0");
const FIELD: &str = "gap";

include!("../../chain-a/src/step.rs");
