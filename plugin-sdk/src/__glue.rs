//! Export glue between the generated bindings and a [`Migration`] type: BSON
//! decoding and encoding, error mapping and the plugin's per-instance state.
//! Only the `export!` macro calls into this module.

use crate::__bindings::godwit::migration::{host as wit_host, types as wit};
use crate::{Action, Context, Error, Host, Level, Manifest, Migration, Mode, Params, RunContext};
use bson::{Document, doc};
use std::any::Any;
use std::cell::RefCell;

pub use crate::__bindings::exports::godwit::migration::migration::Guest;
pub use crate::__bindings::exports::godwit::migration::traits::Guest as TraitsGuest;
pub use wit::{Action as WitAction, Error as WitError, Manifest as WitManifest, RunContext as WitRunContext};

struct State {
    run: RunContext,
    plugin: Box<dyn Any>,
}

thread_local! {
    // A component instance is single-threaded; the state lives from `begin` to the
    // instance's end.
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

pub fn manifest<M: Migration>() -> WitManifest {
    let Manifest {
        name,
        version,
        requires,
        description,
        passes,
        schema,
        idempotent,
        reads,
    } = M::manifest();
    WitManifest {
        name,
        version,
        requires,
        description,
        passes: passes
            .into_iter()
            .map(|p| wit::Pass {
                name: p.name,
                collection: p.collection,
                filter: encode(&p.filter),
                projection: p.projection.as_ref().map(encode),
                batch_size: p.batch_size,
                writes: p.writes,
            })
            .collect(),
        schema: schema
            .into_iter()
            .map(|g| wit::SchemaGrant {
                kind: wit_kind(g.kind),
                collection: g.collection,
            })
            .collect(),
        idempotent,
        reads,
    }
}

fn wit_kind(kind: crate::SchemaKind) -> wit::SchemaKind {
    use crate::SchemaKind as K;
    match kind {
        K::CreateIndex => wit::SchemaKind::CreateIndex,
        K::DropIndex => wit::SchemaKind::DropIndex,
        K::CreateCollection => wit::SchemaKind::CreateCollection,
        K::ModifyValidator => wit::SchemaKind::ModifyValidator,
        K::RenameCollection => wit::SchemaKind::RenameCollection,
        K::DropCollection => wit::SchemaKind::DropCollection,
    }
}

pub fn begin<M: Migration>(params: Vec<u8>, context: WitRunContext) -> Result<Vec<WitAction>, WitError> {
    let params =
        decode(&params).map_err(|e| wit_error(Error::new(format!("parameters are not a BSON document: {e}"))))?;
    let run = RunContext {
        run_id: context.run_id,
        mode: match context.mode {
            wit::Mode::DryRun => Mode::DryRun,
            wit::Mode::Execute => Mode::Execute,
        },
        started_at_ms: context.started_at_ms,
        database: context.database,
    };
    let mut plugin = M::begin(&Params::new(params), &mut Context::new(&run, &mut WasmHost)).map_err(wit_error)?;
    let setup = plugin
        .setup(&mut Context::new(&run, &mut WasmHost))
        .map_err(wit_error)?;
    STATE.with_borrow_mut(|state| {
        *state = Some(State {
            run,
            plugin: Box::new(plugin),
        })
    });
    Ok(setup.into_iter().map(wit_action).collect())
}

pub fn process<M: Migration>(pass: u32, batch: Vec<Vec<u8>>) -> Result<Vec<WitAction>, WitError> {
    let mut docs = Vec::with_capacity(batch.len());
    for (index, bytes) in batch.iter().enumerate() {
        // Decoded straight from the lifted bytes (`from_reader` would copy
        // every document into a growing buffer first).
        let doc = decode(bytes).map_err(|e| {
            wit_error(Error::new(format!(
                "document {index} of the batch is not valid BSON: {e}"
            )))
        })?;
        docs.push(doc);
    }
    with_plugin::<M, _>(|plugin, cx| plugin.process(cx, pass as usize, docs))
}

pub fn finish<M: Migration>() -> Result<Vec<WitAction>, WitError> {
    with_plugin::<M, _>(|plugin, cx| plugin.finish(cx))
}

fn with_plugin<M: Migration, F>(f: F) -> Result<Vec<WitAction>, WitError>
where
    F: FnOnce(&mut M, &mut Context) -> Result<Vec<Action>, Error>,
{
    STATE.with_borrow_mut(|state| {
        let state = state
            .as_mut()
            .ok_or_else(|| wit_error(Error::new("`begin` was not called")))?;
        let plugin = state.plugin.downcast_mut::<M>().expect("state holds the exported type");
        let actions = f(plugin, &mut Context::new(&state.run, &mut WasmHost)).map_err(wit_error)?;
        Ok(actions.into_iter().map(wit_action).collect())
    })
}

fn wit_action(action: Action) -> WitAction {
    match action {
        Action::Update {
            collection,
            filter,
            update,
            upsert,
            multi,
        } => WitAction::Update(wit::Update {
            collection,
            filter: encode(&filter),
            update: encode(&update),
            upsert,
            multi,
        }),
        Action::Insert { collection, document } => WitAction::Insert(wit::Insert {
            collection,
            document: encode(&document),
        }),
        Action::Delete {
            collection,
            filter,
            multi,
        } => WitAction::Delete(wit::Delete {
            collection,
            filter: encode(&filter),
            multi,
        }),
        Action::Report(r) => WitAction::Report(wit::Report {
            kind: r.kind,
            key: r.key,
            message: r.message,
        }),
        Action::Schema(op) => WitAction::Schema(wit_schema(op)),
    }
}

fn wit_schema(op: crate::SchemaOp) -> wit::SchemaOp {
    use crate::SchemaOp as S;
    match op {
        S::CreateIndex { collection, index } => wit::SchemaOp::CreateIndex(wit::CreateIndex {
            collection,
            index: wit::IndexSpec {
                keys: encode(&index.keys),
                name: index.name,
                unique: index.unique,
                partial_filter: index.partial_filter.as_ref().map(encode),
                collation: index.collation.as_ref().map(encode),
                expire_after_seconds: index.expire_after_seconds,
            },
        }),
        S::DropIndex { collection, name } => wit::SchemaOp::DropIndex(wit::DropIndex { collection, name }),
        S::CreateCollection {
            collection,
            validation,
            collation,
        } => wit::SchemaOp::CreateCollection(wit::CreateCollection {
            collection,
            validator: validation.validator.as_ref().map(encode),
            validation_level: validation.level,
            validation_action: validation.action,
            collation: collation.as_ref().map(encode),
        }),
        S::ModifyValidator { collection, validation } => wit::SchemaOp::ModifyValidator(wit::ModifyValidator {
            collection,
            validator: encode(&validation.validator.unwrap_or_default()),
            validation_level: validation.level,
            validation_action: validation.action,
        }),
        S::RenameCollection { collection, to } => {
            wit::SchemaOp::RenameCollection(wit::RenameCollection { collection, to })
        }
        S::DropCollection { collection } => wit::SchemaOp::DropCollection(wit::DropCollection { collection }),
    }
}

fn wit_error(error: Error) -> WitError {
    WitError {
        message: error.message,
        document_id: error.document_id.map(|id| encode(&doc! {"_id": id})),
    }
}

fn decode(bytes: &[u8]) -> Result<Document, bson::error::Error> {
    Document::try_from(bson::RawDocument::from_bytes(bytes)?)
}

/// Encodes a document. A document the SDK built can only fail to encode when a
/// key holds a NUL byte; the empty vector that results is refused by the host
/// as malformed BSON, naming the plugin and pass.
fn encode(doc: &Document) -> Vec<u8> {
    doc.to_vec().unwrap_or_default()
}

/// The host's imports, as seen from inside a component.
struct WasmHost;

impl Host for WasmHost {
    fn find(
        &mut self,
        collection: &str,
        filter: &Document,
        projection: Option<&Document>,
        limit: u32,
    ) -> Result<Vec<Document>, String> {
        let projection = projection.map(encode);
        let found = wit_host::find(collection, &encode(filter), projection.as_deref(), limit)?;
        found
            .iter()
            .map(|bytes| decode(bytes).map_err(|e| format!("host returned invalid BSON: {e}")))
            .collect()
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit_host::log(level, message);
    }
}
