//! The Rust SDK for godwit migration plugins: implement [`Migration`] over
//! `bson::Document`s, call [`export!`], and build with `godwit plugin build`.
//!
//! ```ignore
//! use godwit_sdk::{doc, Action, Context, Document, Error, Manifest, Migration, Params, Pass};
//!
//! struct Lowercase;
//!
//! impl Migration for Lowercase {
//!     fn manifest() -> Manifest {
//!         Manifest::new("lowercase-emails", "1.1.0")
//!             .pass(Pass::new("users", "users").filter(doc! {"email": {"$type": "string"}}).writes(["users"]))
//!     }
//!     fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
//!         Ok(Lowercase)
//!     }
//!     fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
//!         Ok(batch.iter().filter_map(|user| {
//!             let email = user.get_str("email").ok()?;
//!             (email != email.to_lowercase())
//!                 .then(|| Action::set("users", user.get("_id")?.clone(), doc! {"email": email.to_lowercase()}))
//!         }).collect())
//!     }
//! }
//!
//! godwit_sdk::export!(Lowercase);
//! ```
//!
//! The plugin's logic is plain Rust: [`testing::Harness`] runs it natively under
//! `cargo test`, with the same validation rules the host applies.
//!
//! In wasm builds the SDK installs its own global allocator (small-block free
//! lists over talc, see [`allocator`]): allocation was the largest single cost
//! of a plugin call in the sandbox. A plugin that wants its own
//! `#[global_allocator]` depends on `godwit-sdk` with `default-features = false`.

pub mod allocator;
mod fields;
mod glue_types;
mod tally;
pub mod testing;
mod update;

pub use bson::{self, Bson, Document, doc};
pub use fields::DocumentExt;
pub use glue_types::*;
pub use tally::{Tally, json_string, json_string_ascii};
pub use update::Update;

/// The SDK's README (`plugin-sdk/README.md`): the API at a glance and
/// recipes, each compiled and run as a doc-test.
#[doc = include_str!("../README.md")]
pub mod guide {}

/// What a migration plugin implements. One value of the type lives for the
/// whole run: `begin` creates it, `process` is called once per batch, and
/// `finish` once after the last pass.
pub trait Migration: Sized + 'static {
    /// Static description: name, target version, requirement, passes.
    fn manifest() -> Manifest;

    /// Creates the plugin's state for one run from the operator's parameters.
    fn begin(params: &Params, cx: &mut Context) -> Result<Self, Error>;

    /// Turns one batch of documents of pass `pass` (an index into the
    /// manifest's passes) into actions.
    fn process(&mut self, cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error>;

    /// Called once right after `begin`; may return schema operations
    /// (and only those: [`Action::create_index`], ...), which the host
    /// applies before the first pass - e.g. the collection and indexes the
    /// passes will fill.
    fn setup(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }

    /// Called once after the last pass; may return final actions, schema
    /// operations included (applied after its document actions).
    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }

    /// Whether the actions of `process` (or `finish`) may depend on the
    /// batches processed before: state carried in `self` from batch to
    /// batch (values seen so far, a running total, a `Tally` that `finish`
    /// reports). Return `false` only when they never do - each call's
    /// actions come from its batch, what `begin` set up and the call's own
    /// lookups. The host then keeps the plugin's instance when the write
    /// guard refuses a batch, and resumes a run without feeding a fresh
    /// instance every batch written so far (which, under a steady refusal
    /// rate, makes a long run quadratic). `godwit journal replay` (and so
    /// `godwit plugin test`) gives such a plugin's every batch to a fresh
    /// instance: a plugin that declares `false` and keeps state anyway is
    /// caught there. Default: `true`.
    fn keeps_state() -> bool {
        true
    }
}

/// Services the host offers a running plugin: reference lookups and logging.
/// In a component these are the `godwit:migration/host` imports; under
/// [`testing::Harness`] they are served from memory.
pub trait Host {
    fn find(
        &mut self,
        collection: &str,
        filter: &Document,
        projection: Option<&Document>,
        limit: u32,
    ) -> Result<Vec<Document>, String>;
    fn log(&mut self, level: Level, message: &str);
}

/// Handed to every [`Migration`] call: the run's facts and the host's services.
pub struct Context<'a> {
    run: &'a RunContext,
    host: &'a mut dyn Host,
}

impl<'a> Context<'a> {
    pub fn new(run: &'a RunContext, host: &'a mut dyn Host) -> Self {
        Context { run, host }
    }

    /// Run id, mode, start time and database of the current run.
    pub fn run(&self) -> &RunContext {
        self.run
    }

    /// Read-only lookup of reference data (`limit` 0: the host's cap) in a
    /// pass's collection or one the manifest declares in
    /// [`Manifest::reads`]; a lookup on any other collection fails the call
    /// (rule `undeclared-read`). Results are journaled by the host so that a replay sees the same data.
    pub fn find(
        &mut self,
        collection: &str,
        filter: Document,
        projection: Option<Document>,
        limit: u32,
    ) -> Result<Vec<Document>, Error> {
        self.host
            .find(collection, &filter, projection.as_ref(), limit)
            .map_err(|message| Error::new(format!("find on {collection} failed: {message}")))
    }

    /// Every document of `collection` matching `filter`, however many there
    /// are: pages of `page` documents (0: 1,000) in `_id` order, each page one
    /// journaled [`find`](Self::find) with `_id` greater than the last one
    /// seen. A single `find` stops at the host's cap (10,000 documents), which
    /// silently truncates a reference map built from it; this does not.
    ///
    /// The host serves lookups sorted by `_id`, which is what makes the
    /// paging exact. `filter` may constrain `_id` itself: the page bound is
    /// then combined with it through `$and`.
    pub fn find_all(
        &mut self,
        collection: &str,
        filter: Document,
        projection: Option<Document>,
        page: u32,
    ) -> Result<Vec<Document>, Error> {
        let page = if page == 0 { 1_000 } else { page };
        let mut all: Vec<Document> = Vec::new();
        loop {
            // After the last `_id` in `_id` order, across BSON types: `$gt`
            // alone would skip every `_id` of a later type.
            let paged = match all.last().and_then(|d| d.get("_id")) {
                None => filter.clone(),
                Some(last) => doc! {"$and": [filter.clone(), godwit_policy::after_id(last)]},
            };
            let found = self.find(collection, paged, projection.clone(), page)?;
            let done = found.len() < page as usize;
            if found.iter().any(|d| !d.contains_key("_id")) {
                return Err(Error::new(format!(
                    "find_all on {collection}: a document came back without _id (a projection must keep _id)"
                )));
            }
            all.extend(found);
            if done {
                return Ok(all);
            }
        }
    }

    pub fn log(&mut self, level: Level, message: impl AsRef<str>) {
        self.host.log(level, message.as_ref());
    }

    pub fn info(&mut self, message: impl AsRef<str>) {
        self.log(Level::Info, message);
    }

    pub fn warn(&mut self, message: impl AsRef<str>) {
        self.log(Level::Warn, message);
    }
}

/// Exports a [`Migration`] type as the plugin's `godwit:migration/migration`
/// implementation, and its [`Migration::keeps_state`] as
/// `godwit:migration/traits`. Use it once per plugin crate.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        const _: () = {
            struct GodwitExport;
            impl $crate::__glue::TraitsGuest for GodwitExport {
                fn keeps_state() -> bool {
                    <$ty as $crate::Migration>::keeps_state()
                }
            }
            impl $crate::__glue::Guest for GodwitExport {
                fn get_manifest() -> $crate::__glue::WitManifest {
                    $crate::__glue::manifest::<$ty>()
                }
                fn begin(
                    params: ::std::vec::Vec<u8>,
                    context: $crate::__glue::WitRunContext,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::__glue::WitAction>, $crate::__glue::WitError>
                {
                    $crate::__glue::begin::<$ty>(params, context)
                }
                fn process(
                    pass: u32,
                    batch: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::__glue::WitAction>, $crate::__glue::WitError>
                {
                    $crate::__glue::process::<$ty>(pass, batch)
                }
                fn finish()
                -> ::std::result::Result<::std::vec::Vec<$crate::__glue::WitAction>, $crate::__glue::WitError> {
                    $crate::__glue::finish::<$ty>()
                }
            }
            // Native builds (unit tests) skip the wasm export symbols, whose names
            // (`godwit:migration/migration@0.2.0#process`) native linkers reject.
            #[cfg(target_arch = "wasm32")]
    $crate::__bindings::__export_godwit_plugin!(GodwitExport with_types_in $crate::__bindings);
        };
    };
}

/// Bindings generated from the contract. Not part of the SDK's API.
///
/// The SDK reads its own copy, `plugin-sdk/wit/`, not the repository's
/// `wit/`: `godwit new` vendors the SDK into projects outside this
/// repository, where no `../wit` exists. The test below keeps the copy equal
/// to the original.
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "godwit:migration/plugin-declaring",
        pub_export_macro: true,
        export_macro_name: "__export_godwit_plugin",
        default_bindings_module: "godwit_sdk::__bindings",
    });
}

#[doc(hidden)]
pub mod __glue;

/// The SDK's global allocator in wasm builds (see [`allocator`]): free lists for
/// small blocks in front of talc, instead of wasi-libc's dlmalloc. Plugins
/// that install their own `#[global_allocator]` turn off the SDK's default
/// features.
#[cfg(all(feature = "allocator", target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: allocator::Allocator<talc::wasm::WasmDynamicTalc> =
    allocator::Allocator::new(talc::wasm::new_wasm_dynamic_allocator());

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The SDK's copy of the contract is the repository's `wit/`, file for
    /// file. In a copy of the SDK outside the repository (a `godwit new`
    /// project's `vendor/`) there is no original to compare with.
    #[test]
    fn wit_copy_matches_the_repositorys_contract() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR"));
        let original = sdk.join("../wit");
        if !original.join("migration.wit").is_file() {
            return;
        }
        let names = |dir: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        let copy = sdk.join("wit");
        assert_eq!(
            names(&copy),
            names(&original),
            "plugin-sdk/wit/ and wit/ hold different files"
        );
        for name in names(&original) {
            assert!(
                std::fs::read(copy.join(&name)).unwrap() == std::fs::read(original.join(&name)).unwrap(),
                "plugin-sdk/wit/{} differs from wit/{}: copy the contract (cp wit/* plugin-sdk/wit/)",
                name.to_string_lossy(),
                name.to_string_lossy()
            );
        }
    }
}
