//! Test plugin `datalab-marker-99`: the marker upgrade datalab's own tests register
//! for 99.0.0 (`_make_marker_upgrade("99.0.0")` in `test_upgrade.py`); its
//! marker is `items.m99`. No `requires`: datalab registers upgrades by
//! version alone.

const NAME: &str = "datalab-marker-99";
const VERSION: &str = "99.0.0";
const REQUIRES: Option<&str> = None;
const FIELD: &str = "m99";

include!("../../chain-a/src/step.rs");
