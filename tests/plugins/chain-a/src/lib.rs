//! Chain test plugin `chain-a`: the baseline step.

const NAME: &str = "chain-a";
const VERSION: &str = "1.0.0";
const REQUIRES: Option<&str> = None;
const FIELD: &str = "v1";

include!("step.rs");
