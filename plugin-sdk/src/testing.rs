//! Native test harness: runs a [`Migration`] without wasm, feeds it documents,
//! serves its lookups from in-memory collections and checks its manifest and
//! actions with the host's own rules (the `godwit-policy` crate, which the
//! host calls too), against godwit's default metadata collection name.
//!
//! Documents reach the plugin as a run would hand them over: only those the
//! pass's filter matches, shaped by its projection (`run_pass` also sorts
//! them by `_id` and cuts them into the pass's batches). Filters and
//! projections are evaluated in memory by `godwit_policy::matcher`, with
//! MongoDB's semantics; one it cannot evaluate (a regular expression,
//! Decimal128) fails the call with a message naming it, never passes
//! documents it is not sure of. Lookups are served the same way.
//!
//! ```ignore
//! let mut h = Harness::<MyPlugin>::new().param("field", "status").collection("users", users);
//! let actions = h.process(0, vec![doc! {"_id": 1}])?;
//! ```

use crate::{Action, Context, Error, Host, Level, Migration, Mode, Params, RunContext};
use bson::{Bson, Document};
use godwit_policy::{Source, matcher};
use std::collections::BTreeMap;

/// Runs a plugin type natively.
pub struct Harness<M: Migration> {
    plugin: Option<M>,
    setup: Vec<Action>,
    params: Document,
    run: RunContext,
    host: MemoryHost,
}

impl<M: Migration> Default for Harness<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Migration> Harness<M> {
    /// A run with run id `test-run` started at 2026-01-01T00:00:00Z, told
    /// `execute` as godwit tells every plugin (dry runs included).
    pub fn new() -> Self {
        Harness {
            plugin: None,
            setup: Vec::new(),
            params: Document::new(),
            run: RunContext {
                run_id: "test-run".into(),
                mode: Mode::Execute,
                started_at_ms: 1_767_225_600_000,
                database: "test".into(),
            },
            host: MemoryHost::default(),
        }
    }

    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.params.insert(key, value);
        self
    }

    /// The mode `begin` is told. godwit always says `execute`; a plugin's
    /// test can check that it acts the same when told `dry-run`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.run.mode = mode;
        self
    }

    /// Documents served to the plugin's `find` lookups on `name`.
    pub fn collection(mut self, name: &str, documents: Vec<Document>) -> Self {
        self.host.collections.insert(name.to_string(), documents);
        self
    }

    /// Calls `begin` (done implicitly by the first `process`), after checking
    /// the manifest's passes as the host does when a run starts.
    pub fn begin(&mut self) -> Result<(), Error> {
        if self.plugin.is_none() {
            let manifest = M::manifest();
            check_manifest(&manifest)?;
            self.host.reads = Some(godwit_policy::Reads {
                scope: godwit_policy::ReadScope::Declared,
                passes: manifest.passes.iter().map(|p| p.collection.clone()).collect(),
                declared: manifest.reads.clone(),
            });
            let begun = M::begin(
                &Params::new(self.params.clone()),
                &mut Context::new(&self.run, &mut self.host),
            );
            let mut plugin = self.host.call_result("begin", begun)?;
            let setup = plugin.setup(&mut Context::new(&self.run, &mut self.host));
            let setup = self.host.call_result("begin", setup)?;
            check_schema(&manifest, godwit_policy::SchemaSource::Begin, &setup)
                .map_err(|e| Error::new(format!("setup: {e}")))?;
            self.setup = setup;
            self.plugin = Some(plugin);
        }
        Ok(())
    }

    /// The schema operations `setup` returned (calls `begin` first), checked
    /// as the host checks them: declared in the manifest's `schema`, names
    /// and specs by the plugin policy, schema operations only.
    pub fn setup(&mut self) -> Result<Vec<Action>, Error> {
        self.begin()?;
        Ok(self.setup.clone())
    }

    /// One `process` call with the documents of `batch` the pass's filter
    /// matches, projected by its projection; the actions are checked against
    /// pass `pass`'s rules. If no document matches, the plugin is not called
    /// (a run never hands it an empty batch) and there are no actions.
    pub fn process(&mut self, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let manifest = M::manifest();
        let spec = manifest
            .passes
            .get(pass)
            .ok_or_else(|| Error::new(format!("manifest has no pass {pass}")))?;
        let batch = read(pass, spec, batch)?;
        if batch.is_empty() {
            self.begin()?;
            return Ok(Vec::new());
        }
        self.process_as_given(pass, batch)
    }

    /// One `process` call with `batch` exactly as given, neither filtered
    /// nor projected: for testing how the plugin treats documents a run
    /// would not hand it (a defensive error naming the document). The
    /// actions are checked as in [`Harness::process`].
    pub fn process_as_given(&mut self, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let manifest = M::manifest();
        let spec = manifest
            .passes
            .get(pass)
            .ok_or_else(|| Error::new(format!("manifest has no pass {pass}")))?;
        let allowed = spec.writes.clone();
        self.begin()?;
        let plugin = self.plugin.as_mut().expect("begun");
        let documents = batch.len();
        let actions = plugin.process(&mut Context::new(&self.run, &mut self.host), pass, batch);
        let actions = self
            .host
            .call_result(&format!("pass {pass} ({})", spec.name), actions)?;
        let limit = documents.max(1) * godwit_policy::MAX_ACTIONS_PER_DOCUMENT as usize;
        if actions.len() > limit {
            return Err(Error::new(format!(
                "pass {pass} ({}): {} actions for a batch of {documents} documents, more than the host's default \
                 limit of {} per document",
                spec.name,
                actions.len(),
                godwit_policy::MAX_ACTIONS_PER_DOCUMENT
            )));
        }
        check(Source::Process, &allowed, &actions)
            .map_err(|e| Error::new(format!("pass {pass} ({}): {e}", spec.name)))?;
        Ok(actions)
    }

    /// Feeds `documents` to pass `pass` as a run reads a collection: in
    /// `_id` order, only those the pass's filter matches, projected, in
    /// batches of the pass's batch size; collects every action.
    pub fn run_pass(&mut self, pass: usize, documents: Vec<Document>) -> Result<Vec<Action>, Error> {
        let manifest = M::manifest();
        let spec = manifest
            .passes
            .get(pass)
            .ok_or_else(|| Error::new(format!("manifest has no pass {pass}")))?;
        let mut documents = documents;
        sort_by_id(&mut documents).map_err(|e| Error::new(format!("pass {pass} ({}): {e}", spec.name)))?;
        // Batches are cut from the matching documents (`process` projects them).
        let mut matching = Vec::with_capacity(documents.len());
        for doc in documents {
            if matcher::matches(&doc, &spec.filter).map_err(|e| cannot(pass, spec, "filter", e))? {
                matching.push(doc);
            }
        }
        // As the host chooses: 0 is its default of 1,000, and no batch is
        // larger than the policy's maximum.
        let batch_size = match spec.batch_size {
            0 => 1000,
            n => godwit_policy::clamp_batch_size(n).0 as usize,
        };
        let mut actions = Vec::new();
        let mut documents = matching.into_iter().peekable();
        while documents.peek().is_some() {
            let batch: Vec<Document> = documents.by_ref().take(batch_size).collect();
            actions.extend(self.process(pass, batch)?);
        }
        Ok(actions)
    }

    /// Calls `finish`; its actions may write any collection some pass may write.
    pub fn finish(&mut self) -> Result<Vec<Action>, Error> {
        self.begin()?;
        let allowed: Vec<String> = M::manifest().passes.into_iter().flat_map(|p| p.writes).collect();
        let plugin = self.plugin.as_mut().expect("begun");
        let actions = plugin.finish(&mut Context::new(&self.run, &mut self.host));
        let actions = self.host.call_result("finish", actions)?;
        let limit = godwit_policy::finish_action_limit(godwit_policy::MAX_ACTIONS_PER_DOCUMENT);
        if actions.len() > limit {
            return Err(Error::new(format!(
                "finish: {} actions, more than the host's default limit of {limit}",
                actions.len()
            )));
        }
        check_schema(&M::manifest(), godwit_policy::SchemaSource::Finish, &actions)
            .map_err(|e| Error::new(format!("finish: {e}")))?;
        check(Source::Finish, &allowed, &actions).map_err(|e| Error::new(format!("finish: {e}")))?;
        Ok(actions)
    }

    /// Messages the plugin logged, in order.
    pub fn logs(&self) -> &[(Level, String)] {
        &self.host.logs
    }

    /// Lookups the plugin made: collection and filter.
    pub fn lookups(&self) -> &[(String, Document)] {
        &self.host.lookups
    }
}

/// The host's policy context under test: godwit's default metadata
/// collection is out of reach (a run with `--metadata-collection` refuses
/// that name instead).
const POLICY: godwit_policy::Context<'static> = godwit_policy::Context {
    metadata_collection: Some(godwit_policy::DEFAULT_METADATA_COLLECTION),
    database: None,
    version_record: None,
};

/// What a run reads of `documents` for pass `pass`: those its filter
/// matches, projected, in the order given.
fn read(pass: usize, spec: &crate::Pass, documents: Vec<Document>) -> Result<Vec<Document>, Error> {
    let cannot = |what: &str, e| cannot(pass, spec, what, e);
    let mut read = Vec::with_capacity(documents.len());
    for doc in documents {
        if !matcher::matches(&doc, &spec.filter).map_err(|e| cannot("filter", e))? {
            continue;
        }
        read.push(match &spec.projection {
            Some(p) => matcher::project(&doc, p).map_err(|e| cannot("projection", e))?,
            None => doc,
        });
    }
    Ok(read)
}

fn cannot(pass: usize, spec: &crate::Pass, what: &str, e: matcher::Unsupported) -> Error {
    Error::new(format!(
        "pass {pass} ({}): the test harness cannot evaluate the pass's {what} as MongoDB would: {e}; \
         test this pass against a server (an end-to-end test) or use what the harness evaluates",
        spec.name
    ))
}

/// Sorts documents by `_id` in MongoDB's order (across BSON types).
fn sort_by_id(documents: &mut [Document]) -> Result<(), matcher::Unsupported> {
    let mut failed = None;
    let null = Bson::Null;
    documents.sort_by(|a, b| {
        let (a, b) = (a.get("_id").unwrap_or(&null), b.get("_id").unwrap_or(&null));
        matcher::compare(a, b).unwrap_or_else(|e| {
            failed.get_or_insert(e);
            std::cmp::Ordering::Equal
        })
    });
    failed.map_or(Ok(()), Err)
}

/// The host's checks of a manifest's passes: collection names (godwit's
/// metadata collection included), filters and projections.
pub fn check_manifest(manifest: &crate::Manifest) -> Result<(), Error> {
    godwit_policy::check_reads(&POLICY, &manifest.reads).map_err(|v| Error::new(v.to_string()))?;
    for (index, pass) in manifest.passes.iter().enumerate() {
        let encode = |d: &Document| d.to_vec().map_err(|e| Error::new(format!("does not encode: {e}")));
        let projection = pass.projection.as_ref().map(encode).transpose()?;
        godwit_policy::check_pass(
            &POLICY,
            &pass.collection,
            &encode(&pass.filter)?,
            projection.as_deref(),
            &pass.writes,
        )
        .map_err(|v| Error::new(format!("pass {index} ({:?}): {v}", pass.name)))?;
    }
    Ok(())
}

/// The host's rules for the schema operations of `begin` (`setup`) or
/// `finish`: each declared in the manifest's `schema`, names and specs by
/// the plugin policy; from `begin`, nothing else.
pub fn check_schema(
    manifest: &crate::Manifest,
    source: godwit_policy::SchemaSource,
    actions: &[Action],
) -> Result<(), String> {
    for (index, action) in actions.iter().enumerate() {
        match action {
            Action::Schema(op) => godwit_policy::check_schema_op(&POLICY, &manifest.schema, source, op)
                .map_err(|v| format!("action {index} ({} on `{}`): {v}", op.kind().name(), op.collection()))?,
            _ if source == godwit_policy::SchemaSource::Begin => {
                return Err(format!(
                    "action {index}: begin may return schema operations only (return document actions from process or finish)"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The host's pre-write rules for actions returned by `process`: the
/// plugin policy (collection in the pass's `writes`, the query and update
/// allow-lists, storable keys, size and nesting, multi-document actions
/// pinned by `_id`).
pub fn check_actions(allowed: &[String], actions: &[Action]) -> Result<(), String> {
    check(Source::Process, allowed, actions)
}

fn check(source: Source, allowed: &[String], actions: &[Action]) -> Result<(), String> {
    let writes: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let encode = |d: &Document| d.to_vec().map_err(|e| format!("does not encode as BSON: {e}"));
    for (index, action) in actions.iter().enumerate() {
        let (kind, collection, bytes) = match action {
            Action::Update {
                collection,
                filter,
                update,
                ..
            } => ("update", collection, vec![encode(filter)?, encode(update)?]),
            Action::Insert { collection, document } => ("insert", collection, vec![encode(document)?]),
            Action::Delete { collection, filter, .. } => ("delete", collection, vec![encode(filter)?]),
            Action::Report(_) => continue,
            // From finish: checked by `check_schema`.
            Action::Schema(_) if source == Source::Finish => continue,
            Action::Schema(op) => {
                // From process: refused (begin and finish take them out first).
                godwit_policy::check_schema_op(&POLICY, &[], godwit_policy::SchemaSource::Process, op)
                    .map_err(|v| format!("action {index} ({} on `{}`): {v}", op.kind().name(), op.collection()))?;
                continue;
            }
        };
        let raw = match action {
            Action::Update { multi, .. } => godwit_policy::RawAction::Update {
                collection,
                filter: &bytes[0],
                update: &bytes[1],
                multi: *multi,
            },
            Action::Insert { .. } => godwit_policy::RawAction::Insert {
                collection,
                document: &bytes[0],
            },
            Action::Delete { multi, .. } => godwit_policy::RawAction::Delete {
                collection,
                filter: &bytes[0],
                multi: *multi,
            },
            Action::Report(_) | Action::Schema(_) => godwit_policy::RawAction::Report,
        };
        godwit_policy::check_action(&POLICY, &writes, source, raw).map_err(|v| {
            let id = godwit_policy::document_id(&bytes[0])
                .map(|id| format!(", document _id {id}"))
                .unwrap_or_default();
            format!("action {index} ({kind} on `{collection}`{id}): {v}")
        })?;
    }
    Ok(())
}

/// In-memory collections for `find`, filtered and projected by
/// `godwit_policy::matcher` (MongoDB's semantics; an operator it cannot
/// evaluate fails the lookup) and served in `_id` order, as the host serves
/// them.
#[derive(Default)]
struct MemoryHost {
    collections: BTreeMap<String, Vec<Document>>,
    logs: Vec<(Level, String)>,
    lookups: Vec<(String, Document)>,
    /// What the manifest lets lookups read (set by `begin`).
    reads: Option<godwit_policy::Reads>,
    /// A lookup the host would have failed the call for (an undeclared
    /// collection): the call fails whatever the plugin did with the error.
    refused: Option<String>,
}

impl MemoryHost {
    /// The outcome of a plugin call as the host sees it: failed if a lookup
    /// during the call was refused, even when the plugin carried on.
    fn call_result<T>(&mut self, call: &str, result: Result<T, Error>) -> Result<T, Error> {
        match self.refused.take() {
            Some(refused) => Err(Error::new(format!("{call}: {refused}"))),
            None => result,
        }
    }
}

impl Host for MemoryHost {
    fn find(
        &mut self,
        collection: &str,
        filter: &Document,
        projection: Option<&Document>,
        limit: u32,
    ) -> Result<Vec<Document>, String> {
        self.lookups.push((collection.to_string(), filter.clone()));
        // The host's rules for what a lookup may read and ask.
        // The same calls as the host's `check_lookup_input`, on the bytes
        // the host would receive (structure and depth included).
        let refused = |v: godwit_policy::Violation| format!("lookup on `{collection}` refused: {v}");
        let encode = |d: &Document| {
            d.to_vec()
                .map_err(|e| format!("lookup on `{collection}`: does not encode: {e}"))
        };
        godwit_policy::check_collection(&POLICY, collection).map_err(refused)?;
        // An undeclared collection fails the call in the host, as here.
        if let Some(reads) = &self.reads
            && let Err(v) = reads.check_declared(collection)
        {
            let message = refused(v);
            self.refused.get_or_insert(message.clone());
            return Err(message);
        }
        godwit_policy::check_query(&encode(filter)?).map_err(refused)?;
        if let Some(p) = projection {
            let p = godwit_policy::decode("projection", &encode(p)?).map_err(refused)?;
            godwit_policy::check_projection(&p).map_err(refused)?;
        }
        let cannot =
            |e: matcher::Unsupported| format!("the test harness cannot evaluate this lookup as MongoDB would: {e}");
        let mut docs: Vec<Document> = Vec::new();
        for doc in self.collections.get(collection).into_iter().flatten() {
            if matcher::matches(doc, filter).map_err(cannot)? {
                docs.push(doc.clone());
            }
        }
        sort_by_id(&mut docs).map_err(cannot)?;
        docs.truncate(if limit == 0 { usize::MAX } else { limit as usize });
        docs.into_iter()
            .map(|doc| match projection {
                Some(p) => matcher::project(&doc, p).map_err(cannot),
                None => Ok(doc),
            })
            .collect()
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }
}

#[cfg(test)]
mod tests;
