//! Test plugin `datalab-marker-98-5`: the marker upgrade datalab's own tests register
//! for 98.5.0 (`_make_marker_upgrade("98.5.0")` in `test_upgrade.py`); its
//! marker is `items.m98_5`. No `requires`: datalab registers upgrades by
//! version alone.

const NAME: &str = "datalab-marker-98-5";
const VERSION: &str = "98.5.0";
const REQUIRES: Option<&str> = None;
const FIELD: &str = "m98_5";

include!("../../chain-a/src/step.rs");
