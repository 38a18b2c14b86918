//! A plugin that looks up `secrets`, a collection it neither reads in a pass
//! nor declares in its manifest's `reads`, and copies whatever it gets into
//! `things` (and the log): the host must fail its call before the lookup
//! reaches the server (`tests/e2e/lookups.rs`). `snoop-declared` is the same
//! code declaring `secrets`.

const NAME: &str = "snoop";
const READS: &[&str] = &[];

include!("plugin.rs");
