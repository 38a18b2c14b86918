//! `snoop` (`../snoop/src/plugin.rs`, the same code) with `secrets` declared
//! in its manifest's `reads`: the host serves the lookup.

const NAME: &str = "snoop-declared";
const READS: &[&str] = &["secrets"];

include!("../../snoop/src/plugin.rs");
