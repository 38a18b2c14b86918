//! Every rule about what a godwit plugin may ask the database to do, as pure
//! functions over the plugin's raw BSON: nesting and structure before any
//! decoding, collection names, the collections lookups may read (`reads`),
//! the query and update allow-lists, keys that
//! MongoDB would read as operators or paths, nondeterministic operators,
//! filters that must pin documents, and the bounds on batch sizes and action
//! counts. `matcher` evaluates the filters and projections it accepts in
//! memory, as MongoDB would, for the SDK's harness; `apply` computes the
//! document an accepted update leaves, for the host's after-images.
//!
//! **Invariant:** no I/O and nothing but `bson` and `thiserror`: the host
//! (`host/src/plugin/actions.rs`, `contract.rs`, lookups) and the SDK's native
//! test harness (`plugin-sdk/src/testing.rs`) call the same functions, so a
//! plugin's unit tests refuse exactly what the host refuses.

pub mod apply;
pub mod matcher;
pub mod names;
pub mod paging;
pub mod query;
pub mod raw;
pub mod reads;
pub mod schema;
pub mod update;

use bson::Document;

pub use apply::{ApplyError, Target, apply_update, apply_update_encoded, apply_update_raw};
pub use names::check_collection;
pub use paging::{after_id, up_to_id};
pub use query::{check_filter, check_projection, check_query, is_pinned};
pub use raw::{check_structure, decode, document_id};
pub use reads::{ReadScope, Reads, check_reads};
pub use schema::{Grant, IndexSpec, SchemaKind, SchemaOp, SchemaSource, Validation, check_schema_op};
pub use update::{check_document, check_update};

/// MongoDB's limit on one BSON document (`maxBsonObjectSize`). A larger
/// filter, update or document would only fail inside the write's transaction,
/// after the batch was journaled as prepared; it is refused before.
pub const MAX_BSON_BYTES: usize = 16 * 1024 * 1024;

/// Most levels of documents and arrays in one BSON document (the document
/// itself is level 1): MongoDB's own limit for stored documents, so nothing a
/// server would keep is refused, and the `bson` crate's recursive decoder
/// stays far from the stack's end.
pub const MAX_DEPTH: usize = 100;

/// Longest namespace (`database.collection`) MongoDB accepts, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 255;

/// Largest pass batch the host reads at once. A batch is held in memory
/// (documents of up to 16 MiB each) and handed to the plugin in one call; a
/// manifest asking for 2^31-1 made the host reserve 48 GiB and abort. 10,000
/// is ten times the default and above every batch size the benchmarks use.
pub const MAX_BATCH_SIZE: u32 = 10_000;

/// Default limit on the actions (reports included) one `process` call may
/// return per document of its batch (the host's `--max-actions-per-document`).
pub const MAX_ACTIONS_PER_DOCUMENT: u32 = 10;

/// `finish()` is capped as if it were one batch of this many documents (times
/// the per-document action limit).
pub const FINISH_AS_DOCUMENTS: usize = 1_000;

/// The name of godwit's metadata collection unless the operator picks another
/// (`--metadata-collection`).
pub const DEFAULT_METADATA_COLLECTION: &str = "godwit_metadata";

/// What the rules need to know about the run. Manifests are first checked
/// when a plugin is loaded, before any run (and so any metadata collection
/// name) is known: [`Context::LOAD`]; a run checks them again with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context<'a> {
    /// godwit's metadata collection (schema version, history, lock); out of
    /// reach for every pass, write and lookup.
    pub metadata_collection: Option<&'a str>,
    /// The database the run works on, for the namespace length limit.
    pub database: Option<&'a str>,
    /// The collection of the application's version record the run stamps
    /// (`--version-record`); out of reach like the metadata collection, so
    /// that no plugin can forge the version the application reads.
    pub version_record: Option<&'a str>,
}

impl Context<'static> {
    /// Loading a plugin (`plugin inspect`, `plan`, a run before it knows its
    /// metadata collection): the default metadata collection name is
    /// already out of reach, so a manifest naming it is refused on sight;
    /// a run checks again with the name it actually uses.
    pub const LOAD: Context<'static> = Context {
        metadata_collection: Some(DEFAULT_METADATA_COLLECTION),
        database: None,
        version_record: None,
    };
}

/// Where actions come from. `finish()` may return updates and deletes that
/// do not pin documents by `_id` (a final `update_many` over what the passes
/// left), `process` may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Process,
    Finish,
}

/// The class of rule a request broke; each says what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Malformed,
    Size,
    Nesting,
    Collection,
    Writes,
    Query,
    Projection,
    Update,
    StorageKey,
    Nondeterministic,
    Unpinned,
    Empty,
    Schema,
    SchemaSpec,
    UndeclaredRead,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Malformed => "well-formed-bson",
            Rule::Size => "document-size",
            Rule::Nesting => "nesting-depth",
            Rule::Collection => "collection-name",
            Rule::Writes => "declared-writes",
            Rule::Query => "query-operators",
            Rule::Projection => "projection",
            Rule::Update => "update-operators",
            Rule::StorageKey => "storage-keys",
            Rule::Nondeterministic => "deterministic",
            Rule::Unpinned => "pinned-filter",
            Rule::Empty => "non-empty",
            Rule::Schema => "schema-operations",
            Rule::SchemaSpec => "schema-spec",
            Rule::UndeclaredRead => "undeclared-read",
        }
    }

    /// What the plugin's author does about it.
    pub fn next_step(self) -> &'static str {
        match self {
            Rule::Malformed => "return well-formed BSON documents",
            Rule::Size => "split the data into documents under 16 MiB",
            Rule::Nesting => "flatten the document to at most 100 levels",
            Rule::Collection => {
                "use another collection: godwit's metadata collection, system.* and invalid names are out of reach"
            }
            Rule::Writes => "declare the collection in the pass's `writes`",
            Rule::Query => "use field paths and the query operators listed in the README's plugin policy",
            Rule::Projection => "project field paths with 0/1/true/false, $slice or $elemMatch only",
            Rule::Update => "use the update operators listed in the README's plugin policy",
            Rule::StorageKey => "rename fields that start with `$` or contain `.`",
            Rule::Nondeterministic => {
                "compute the value in the plugin (the run context's started-at time replays identically)"
            }
            Rule::Unpinned => {
                "pin the filter by _id ({_id: v}, {_id: {$eq: v}} or {_id: {$in: [...]}}), set multi to false, \
                 or return the action from finish()"
            }
            Rule::Empty => "name the documents the action is about, e.g. by _id",
            Rule::Schema => {
                "declare the operation in the manifest's `schema` ({kind, collection}) and return it from begin or finish"
            }
            Rule::SchemaSpec => "fix the operation as the README's \"Schema operations\" section describes",
            Rule::UndeclaredRead => "declare the collection in the manifest's `reads`",
        }
    }
}

/// One broken rule: what was wrong, and (through [`Rule`]) what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} (rule {}: {})", rule.name(), rule.next_step())]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
}

impl Violation {
    pub fn new(rule: Rule, detail: impl Into<String>) -> Self {
        Violation {
            rule,
            detail: detail.into(),
        }
    }
}

/// One action as the plugin returned it, BSON still raw.
#[derive(Debug, Clone, Copy)]
pub enum RawAction<'a> {
    Update {
        collection: &'a str,
        filter: &'a [u8],
        update: &'a [u8],
        multi: bool,
    },
    Insert {
        collection: &'a str,
        document: &'a [u8],
    },
    Delete {
        collection: &'a str,
        filter: &'a [u8],
        multi: bool,
    },
    Report,
}

/// The documents of an action that passed every rule, decoded once.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Update { filter: Document, update: Document },
    Insert { document: Document },
    Delete { filter: Document },
    Report,
}

/// Checks one action: its collection (a valid name, in `writes`), its BSON
/// (structure and depth before decoding, size), its filter (allow-listed,
/// non-empty, pinning documents by `_id` when `multi` comes from
/// `process`), its update (allow-listed operators, or a replacement with
/// storable keys) or inserted document (storable keys), and no
/// nondeterministic operator anywhere.
pub fn check_action(cx: &Context, writes: &[&str], source: Source, action: RawAction) -> Result<Checked, Violation> {
    let collection = match action {
        RawAction::Update { collection, .. }
        | RawAction::Insert { collection, .. }
        | RawAction::Delete { collection, .. } => collection,
        RawAction::Report => return Ok(Checked::Report),
    };
    check_collection(cx, collection)?;
    if !writes.contains(&collection) {
        return Err(Violation::new(
            Rule::Writes,
            format!("collection is not in the pass's writes [{}]", writes.join(", ")),
        ));
    }
    let filter = |bytes: &[u8], multi: bool| -> Result<Document, Violation> {
        let filter = decode("filter", bytes)?;
        if filter.is_empty() {
            return Err(Violation::new(
                Rule::Empty,
                "filter is empty (it would hit every document)",
            ));
        }
        check_filter(&filter).map_err(|v| v.within("filter"))?;
        if multi && source == Source::Process && !is_pinned(&filter) {
            return Err(Violation::new(
                Rule::Unpinned,
                "filter of a multi-document action from process does not pin documents by _id \
                 (it could touch every document, unlike what the dry run showed)",
            ));
        }
        Ok(filter)
    };
    Ok(match action {
        RawAction::Update {
            filter: f,
            update,
            multi,
            ..
        } => {
            let filter = filter(f, multi)?;
            let update = decode("update", update)?;
            check_update(&update)?;
            Checked::Update { filter, update }
        }
        RawAction::Insert { document, .. } => {
            let document = decode("document", document)?;
            check_document(&document).map_err(|v| v.within("document"))?;
            Checked::Insert { document }
        }
        RawAction::Delete { filter: f, multi, .. } => Checked::Delete {
            filter: filter(f, multi)?,
        },
        RawAction::Report => Checked::Report,
    })
}

impl Violation {
    /// Prefixes the detail with what it is about ("filter: ...").
    fn within(mut self, what: &str) -> Self {
        self.detail = format!("{what}: {}", self.detail);
        self
    }
}

/// Checks the collections a pass names against `cx`: the one it reads and
/// every one it writes. Runs at load (without a metadata collection name)
/// and again when a run starts.
pub fn check_pass_collections(cx: &Context, collection: &str, writes: &[String]) -> Result<(), Violation> {
    check_collection(cx, collection).map_err(|v| v.within("collection"))?;
    for w in writes {
        check_collection(cx, w).map_err(|v| v.within("writes"))?;
    }
    Ok(())
}

/// Checks a pass of a manifest and decodes its filter and projection.
pub fn check_pass(
    cx: &Context,
    collection: &str,
    filter: &[u8],
    projection: Option<&[u8]>,
    writes: &[String],
) -> Result<(Document, Option<Document>), Violation> {
    check_pass_collections(cx, collection, writes)?;
    let filter = decode("filter", filter)?;
    check_filter(&filter).map_err(|v| v.within("filter"))?;
    let projection = projection
        .map(|p| {
            let p = decode("projection", p)?;
            check_projection(&p).map_err(|v| v.within("projection"))?;
            Ok(p)
        })
        .transpose()?;
    Ok((filter, projection))
}

/// The batch size the host uses for a requested one (0: the caller's
/// default), and whether it had to be lowered to [`MAX_BATCH_SIZE`].
pub fn clamp_batch_size(requested: u32) -> (u32, bool) {
    (requested.min(MAX_BATCH_SIZE), requested > MAX_BATCH_SIZE)
}

/// Most actions `finish()` may return, given the per-document limit of
/// `process`.
pub fn finish_action_limit(per_document: u32) -> usize {
    FINISH_AS_DOCUMENTS.saturating_mul(per_document as usize)
}

/// A regular expression value for the tests.
#[cfg(test)]
fn tests_regex(pattern: &str, options: &str) -> bson::Bson {
    bson::Bson::RegularExpression(bson::Regex {
        pattern: pattern.try_into().unwrap(),
        options: options.try_into().unwrap(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    const CX: Context<'static> = Context {
        metadata_collection: Some("godwit_metadata"),
        database: Some("app"),
        version_record: None,
    };

    fn b(d: Document) -> Vec<u8> {
        d.to_vec().unwrap()
    }

    #[track_caller]
    fn check(source: Source, action: RawAction, expect: Result<(), &str>) {
        match (check_action(&CX, &["users", "totals"], source, action), expect) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    fn update(filter: Document, update: Document, multi: bool, source: Source, expect: Result<(), &str>) {
        let (f, u) = (b(filter), b(update));
        check(
            source,
            RawAction::Update {
                collection: "users",
                filter: &f,
                update: &u,
                multi,
            },
            expect,
        );
    }

    fn delete(filter: Document, multi: bool, source: Source, expect: Result<(), &str>) {
        let f = b(filter);
        check(
            source,
            RawAction::Delete {
                collection: "users",
                filter: &f,
                multi,
            },
            expect,
        );
    }

    #[test]
    fn multi_actions_from_process_pin_documents_by_id() {
        use Source::{Finish, Process};
        delete(
            doc! {"_id": {"$exists": true}},
            true,
            Process,
            Err("does not pin documents by _id"),
        );
        delete(
            doc! {"$comment": "all"},
            true,
            Process,
            Err("rule pinned-filter: pin the filter by _id"),
        );
        delete(doc! {"_id": {"$gt": 0}}, true, Process, Err("does not pin"));
        delete(
            doc! {"_id": {"$in": [{"$gt": 0}]}},
            true,
            Process,
            Err("`$gt` key inside a value"),
        );
        delete(
            doc! {"_id": crate::tests_regex(".*", "")},
            true,
            Process,
            Err("does not pin"),
        );
        delete(doc! {"_id": 5}, true, Process, Ok(()));
        delete(doc! {"_id": {"$eq": 5}, "x": 1}, true, Process, Ok(()));
        delete(doc! {"_id": {"$in": [1, 2, "three"]}}, true, Process, Ok(()));
        delete(doc! {"_id": {"k": 1}}, true, Process, Ok(()));
        // One document at most: a natural key is fine, as is any filter in finish.
        delete(doc! {"_id": {"$exists": true}}, false, Process, Ok(()));
        update(
            doc! {"status": "open"},
            doc! {"$set": {"tag": "x"}},
            true,
            Finish,
            Ok(()),
        );
        update(
            doc! {"status": "open"},
            doc! {"$set": {"tag": "x"}},
            true,
            Process,
            Err("pinned-filter"),
        );
        delete(
            doc! {},
            false,
            Process,
            Err("filter is empty (it would hit every document)"),
        );
        delete(doc! {}, true, Finish, Err("filter is empty"));
    }

    #[test]
    fn collections_writes_and_bytes() {
        let id = b(doc! {"_id": 1});
        let set = b(doc! {"$set": {"a": 1}});
        let on = |collection| RawAction::Update {
            collection,
            filter: &id,
            update: &set,
            multi: false,
        };
        check(Source::Process, on("users"), Ok(()));
        check(
            Source::Process,
            on("orders"),
            Err("not in the pass's writes [users, totals] (rule declared-writes"),
        );
        check(
            Source::Process,
            on("godwit_metadata"),
            Err("godwit's metadata collection"),
        );
        check(Source::Process, on("system.users"), Err("system."));
        check(Source::Finish, RawAction::Report, Ok(()));
        let deep = {
            let mut d = doc! {"_id": 1};
            for _ in 0..MAX_DEPTH {
                d = doc! {"a": d};
            }
            b(d)
        };
        check(
            Source::Process,
            RawAction::Insert {
                collection: "users",
                document: &deep,
            },
            Err("document nests deeper than 100 levels of documents and arrays (rule nesting-depth"),
        );
        check(
            Source::Process,
            RawAction::Insert {
                collection: "users",
                document: &b(doc! {"_id": 1, "a": {"$b": 1}}),
            },
            Err("document: key `$b`"),
        );
        check(
            Source::Process,
            RawAction::Update {
                collection: "users",
                filter: &id,
                update: &b(doc! {}),
                multi: false,
            },
            Err("update is empty"),
        );
    }

    #[test]
    fn passes() {
        let writes = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = b(doc! {});
        let ok = check_pass(&CX, "users", &all, Some(&b(doc! {"a": 1})), &writes(&["users"]));
        assert!(ok.is_ok(), "{ok:?}");
        let e = check_pass(&CX, "users", &all, None, &writes(&["godwit_metadata"])).unwrap_err();
        assert_eq!(e.rule, Rule::Collection);
        assert!(e.detail.starts_with("writes: collection `godwit_metadata`"), "{e}");
        // At load the default metadata collection is refused already (a run
        // checks again with the name it uses); another name passes until then.
        let e = check_pass(&Context::LOAD, "users", &all, None, &writes(&["godwit_metadata"])).unwrap_err();
        assert_eq!(e.rule, Rule::Collection);
        assert!(check_pass(&Context::LOAD, "users", &all, None, &writes(&["gw_meta"])).is_ok());
        let e = check_pass(&CX, "godwit_metadata", &all, None, &[]).unwrap_err();
        assert!(e.detail.starts_with("collection: "), "{e}");
        let e = check_pass(&CX, "users", &b(doc! {"$where": "1"}), None, &[]).unwrap_err();
        assert!(e.to_string().contains("filter: `$where`"), "{e}");
        let e = check_pass(&CX, "users", &all, Some(&b(doc! {"a": "$x"})), &[]).unwrap_err();
        assert_eq!(e.rule, Rule::Projection);
    }

    #[test]
    fn bounds() {
        assert_eq!(clamp_batch_size(0), (0, false));
        assert_eq!(clamp_batch_size(500), (500, false));
        assert_eq!(clamp_batch_size(i32::MAX as u32), (MAX_BATCH_SIZE, true));
        assert_eq!(finish_action_limit(10), 10_000);
        assert_eq!(finish_action_limit(u32::MAX), 1_000 * u32::MAX as usize);
    }
}
