//! Chain test plugin `chain-badver`: a version that is not semver.

const NAME: &str = "chain-badver";
const VERSION: &str = "v2";
const REQUIRES: Option<&str> = None;
const FIELD: &str = "badver";

include!("../../chain-a/src/step.rs");
