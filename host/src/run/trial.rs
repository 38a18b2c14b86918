//! `godwit plugin run`: one call of a plugin without a database, for its
//! author. Documents from a file (Extended JSON, one per line) are the input
//! batch of one pass - filtered and projected by the pass's own filter and
//! projection with `godwit_policy::matcher`, in `_id` order, as a run would
//! read them - and go to `process` once, then `finish` is called. The
//! instance is set up as a run's (`Engine::context`'s `RunContext`, frozen
//! clock, seeded randomness, limits), the manifest is checked with the run's
//! policy context, and the actions are validated and given insert `_id`s
//! exactly as `stage.rs` does. Nothing is journaled or written.
//!
//! A lookup has no database to go to: it fails the call, naming the
//! collection, rather than hand the plugin an answer a run would not give.

use super::{Identity, insert_id_seed, params_document, run_seed};
use crate::plugin::actions::{self, ValidAction};
use crate::plugin::contract::{Mode, RunContext, ValidPass};
use crate::plugin::sandbox::{Lookup, LookupError, LookupQuery};
use crate::plugin::{InstanceOptions, LoadedPlugin};
use anyhow::Context;
use bson::{Bson, Document};
use godwit_policy::matcher;
use std::cmp::Ordering;
use std::io::BufRead;
use std::path::Path;

/// The input file (or a document in it) cannot be used: exit 2, one line
/// naming the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// A document of the input, with the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDocument {
    pub line: usize,
    pub document: Document,
}

/// Reads Extended JSON documents (relaxed or canonical), one per line, from
/// `path` (`-`: standard input); empty lines are skipped. Field order is kept.
pub fn read_input(path: &Path) -> Result<Vec<InputDocument>, InputError> {
    let name = if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).map_err(|e| InputError(format!("cannot read input {name}: {e}")))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut documents = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let text = line.map_err(|e| InputError(format!("{name}:{line_no}: cannot read the line: {e}")))?;
        if text.trim().is_empty() {
            continue;
        }
        let document = parse_document(&text)
            .map_err(|e| InputError(format!("{name}:{line_no}: not an Extended JSON document: {e}")))?;
        documents.push(InputDocument {
            line: line_no,
            document,
        });
    }
    Ok(documents)
}

/// One line of Extended JSON as a document, its fields in the order written.
fn parse_document(text: &str) -> Result<Document, String> {
    let value: Ordered = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match value {
        Ordered::Object(fields) if !is_wrapper(&fields) => document(fields),
        _ => Err("a line must hold one JSON object".into()),
    }
}

/// JSON as written: objects keep their field order. (serde_json's own
/// `Value` sorts keys unless its `preserve_order` feature is on, which
/// would reorder every JSON object godwit prints.)
enum Ordered {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Ordered, E> {
                serde_json::Number::from_f64(v)
                    .map(Ordered::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Ordered, E> {
                Ok(Ordered::String(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) = map.next_entry()? {
                    fields.push((key, value));
                }
                Ok(Ordered::Object(fields))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Ordered {
    fn into_json(self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Ordered::Null => Value::Null,
            Ordered::Bool(b) => Value::Bool(b),
            Ordered::Number(n) => Value::Number(n),
            Ordered::String(s) => Value::String(s),
            Ordered::Array(items) => Value::Array(items.into_iter().map(Ordered::into_json).collect()),
            Ordered::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, v.into_json())).collect()),
        }
    }
}

/// An Extended JSON type wrapper (`{"$oid": ...}`, `{"$date": ...}`): its
/// keys are fixed, so their order does not matter.
fn is_wrapper(fields: &[(String, Ordered)]) -> bool {
    fields.first().is_some_and(|(k, _)| k.starts_with('$'))
}

fn bson(value: Ordered) -> Result<Bson, String> {
    Ok(match value {
        Ordered::Object(fields) if !is_wrapper(&fields) => Bson::Document(document(fields)?),
        Ordered::Array(items) => Bson::Array(items.into_iter().map(bson).collect::<Result<_, _>>()?),
        // Numbers (int32 when they fit, as relaxed Extended JSON says),
        // scalars and type wrappers: bson's own Extended JSON reader.
        other => Bson::try_from(other.into_json()).map_err(|e| e.to_string())?,
    })
}

fn document(fields: Vec<(String, Ordered)>) -> Result<Document, String> {
    let mut document = Document::new();
    for (key, value) in fields {
        let value = bson(value).map_err(|e| format!("field {key:?}: {e}"))?;
        document.insert(key, value);
    }
    Ok(document)
}

/// The documents pass `pass` would read from `input`: those its filter
/// matches, in `_id` order, projected - or, with `as_given`, all of them
/// as they are, in the file's order. A document without `_id`, or two with
/// the same `_id`, cannot come from a collection and is refused.
pub fn select(
    pass: &ValidPass,
    input: Vec<InputDocument>,
    as_given: bool,
    name: &str,
) -> Result<Vec<Document>, InputError> {
    let at = |d: &InputDocument| format!("{name}:{}", d.line);
    for d in &input {
        if !d.document.contains_key("_id") {
            return Err(InputError(format!(
                "{}: the document has no _id (every document a pass reads has one)",
                at(d)
            )));
        }
    }
    let cannot = |what: &str, e: matcher::Unsupported| {
        InputError(format!(
            "pass {:?}: its {what} cannot be evaluated in memory ({e}); pass --as-given to give the documents to the \
             plugin as they are",
            pass.name
        ))
    };
    let mut selected = Vec::new();
    for d in input {
        if as_given || matcher::matches(&d.document, &pass.filter).map_err(|e| cannot("filter", e))? {
            selected.push(d);
        }
    }
    if !as_given {
        let mut unsupported = None;
        let id = |d: &InputDocument| d.document.get("_id").cloned().unwrap_or(Bson::Null);
        selected.sort_by(|a, b| {
            matcher::compare(&id(a), &id(b)).unwrap_or_else(|e| {
                unsupported.get_or_insert(e);
                Ordering::Equal
            })
        });
        if let Some(e) = unsupported {
            return Err(InputError(format!(
                "the documents' _ids cannot be put in MongoDB's order ({e}); pass --as-given to give the documents to \
                 the plugin as they are"
            )));
        }
        // Sorted, equal `_id`s (1 and 1.0 included, as a unique index sees them) are neighbours.
        for pair in selected.windows(2) {
            if matcher::compare(&id(&pair[0]), &id(&pair[1])) == Ok(Ordering::Equal) {
                return Err(InputError(format!(
                    "{}: _id {} is also the _id of line {} (a collection holds one document per _id)",
                    at(&pair[1]),
                    id(&pair[1]),
                    pair[0].line
                )));
            }
        }
    }
    selected
        .into_iter()
        .map(|d| match (&pass.projection, as_given) {
            (Some(projection), false) => matcher::project(&d.document, projection).map_err(|e| cannot("projection", e)),
            _ => Ok(d.document),
        })
        .collect()
}

/// What `godwit plugin run` asks for.
pub struct Trial<'a> {
    pub plugin: &'a LoadedPlugin,
    pub params: &'a [(String, String)],
    /// Index into the manifest's passes.
    pub pass: u32,
    pub documents: Vec<Document>,
    /// The database name the plugin is told (nothing connects to it).
    pub database: &'a str,
    pub metadata_collection: &'a str,
    /// Call `finish` after the batch, as a run does after its passes.
    pub finish: bool,
}

/// One call's validated actions.
#[derive(Debug)]
pub struct CallResult {
    pub actions: Vec<ValidAction>,
    pub fuel: u64,
}

#[derive(Debug)]
pub struct TrialOutcome {
    pub identity: Identity,
    pub process: CallResult,
    pub finish: Option<CallResult>,
    /// Schema operations `begin` and `finish` returned, checked as a run
    /// checks them (no database: nothing says what they would affect).
    pub schema_begin: Vec<godwit_policy::SchemaOp>,
    pub schema_finish: Vec<godwit_policy::SchemaOp>,
}

/// Lookups in `godwit plugin run`: there is no database.
struct NoDatabase;

impl Lookup for NoDatabase {
    fn find(&mut self, query: &LookupQuery<'_>) -> Result<Vec<Vec<u8>>, LookupError> {
        Err(LookupError::Unavailable(format!(
            "looked up `{}`, but `godwit plugin run` has no database to serve lookups; try the plugin with \
             `godwit run` on a test database",
            query.collection
        )))
    }
}

impl Trial<'_> {
    pub fn run(self) -> anyhow::Result<TrialOutcome> {
        let plugin = self.plugin;
        let manifest = &plugin.manifest;
        let policy = godwit_policy::Context {
            metadata_collection: Some(self.metadata_collection),
            database: Some(self.database),
            version_record: None,
        };
        crate::plugin::contract::check_for_run(manifest, &policy).map_err(|e| crate::plugin::LoadError::Manifest {
            file: plugin.file.clone(),
            reason: format!("plugin {:?}, {}", manifest.name, e.0),
        })?;
        let pass = &manifest.passes[self.pass as usize];
        // The pass's batch size as a run without --batch-size reads it.
        let requested = if pass.batch_size > 0 {
            pass.batch_size
        } else {
            super::DEFAULT_BATCH_SIZE
        };
        let batch_size = godwit_policy::clamp_batch_size(requested).0.max(1);
        if self.documents.len() > batch_size as usize {
            return Err(InputError(format!(
                "{} documents for pass {:?}, more than its batch size of {batch_size}: a run never gives one call more; \
                 give fewer documents",
                self.documents.len(),
                pass.name
            ))
            .into());
        }
        // Who the plugin runs as: a run id and start time of its own, as a new run's.
        let identity = Identity {
            run_id: bson::oid::ObjectId::new().to_hex(),
            started_at_ms: super::now_ms(),
        };
        let mut instance = plugin.instantiate(InstanceOptions {
            lookup: Box::new(NoDatabase),
            started_at_ms: identity.started_at_ms,
            random_seed: run_seed(&identity.run_id),
            metadata_collection: Some(self.metadata_collection.to_string()),
        })?;
        let context = RunContext {
            run_id: identity.run_id.clone(),
            mode: Mode::Execute,
            started_at_ms: identity.started_at_ms,
            database: self.database.to_string(),
        };
        let returned = instance.begin(&params_document(self.params), &context)?;
        // Schema operations are checked as a run checks them; `plugin run`
        // has no database to show their effect on.
        let (_, schema_begin) =
            actions::split_schema(&manifest.schema, godwit_policy::SchemaSource::Begin, &policy, returned)
                .with_context(|| format!("begin: plugin {} returned an invalid action", manifest.name))?;
        let mut schema_finish = Vec::new();
        let batch: Vec<Vec<u8>> = self
            .documents
            .iter()
            .map(|d| d.to_vec().context("encoding an input document"))
            .collect::<anyhow::Result<_>>()?;
        let at = format!("pass {} {:?}", self.pass, pass.name);
        let raw = instance.process(self.pass, &batch)?;
        let scope = actions::allowed(pass).with_policy(policy);
        let mut valid = actions::validate(&scope, raw)
            .with_context(|| format!("{at}: plugin {} returned an invalid action", manifest.name))?;
        actions::assign_insert_ids(&mut valid, || insert_id_seed(&identity.run_id, Some(self.pass), &batch));
        let process = CallResult {
            actions: valid,
            fuel: instance.fuel_used(),
        };
        let finish = if self.finish {
            let raw = instance.finish()?;
            let (raw, schema) =
                actions::split_schema(&manifest.schema, godwit_policy::SchemaSource::Finish, &policy, raw)
                    .with_context(|| format!("finish: plugin {} returned an invalid action", manifest.name))?;
            schema_finish = schema;
            let scope = actions::finish_scope(manifest).with_policy(policy);
            let mut valid = actions::validate(&scope, raw)
                .with_context(|| format!("finish: plugin {} returned an invalid action", manifest.name))?;
            actions::assign_insert_ids(&mut valid, || insert_id_seed(&identity.run_id, None, &[]));
            Some(CallResult {
                actions: valid,
                fuel: instance.fuel_used(),
            })
        } else {
            None
        };
        Ok(TrialOutcome {
            identity,
            process,
            finish,
            schema_begin,
            schema_finish,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[track_caller]
    fn check(line: &str, expect: Result<Document, &str>) {
        let got = parse_document(line);
        match expect {
            Ok(doc) => {
                let got = got.unwrap();
                assert_eq!(got, doc);
                let keys: Vec<&String> = got.keys().collect();
                assert_eq!(keys, doc.keys().collect::<Vec<_>>(), "field order kept");
            }
            Err(e) => assert!(got.unwrap_err().contains(e), "{line}"),
        }
    }

    #[test]
    fn input_lines_are_extended_json_documents_in_field_order() {
        let oid = bson::oid::ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        check(
            r#"{"z": 1, "_id": {"$oid": "65a1b2c3d4e5f60718293a4b"}, "a": -2}"#,
            Ok(doc! {"z": 1i32, "_id": oid, "a": -2i32}),
        );
        check(
            r#"{"_id": 1, "n": {"$numberLong": "5"}, "big": 3000000000, "x": 1.5, "at": {"$date": "2026-01-01T00:00:00Z"}}"#,
            Ok(doc! {"_id": 1, "n": 5i64, "big": 3_000_000_000i64, "x": 1.5,
            "at": bson::DateTime::parse_rfc3339_str("2026-01-01T00:00:00Z").unwrap()}),
        );
        check(
            r#"{"_id": 2, "sub": {"b": 1, "a": [{"y": null, "x": true}]}}"#,
            Ok(doc! {"_id": 2, "sub": {"b": 1, "a": [{"y": null, "x": true}]}}),
        );
        check(r#"{"_id": 1,}"#, Err("trailing comma"));
        check("[1, 2]", Err("one JSON object"));
        check(r#"{"$oid": "65a1b2c3d4e5f60718293a4b"}"#, Err("one JSON object"));
        check(r#"{"_id": {"$date": "yesterday"}}"#, Err("field \"_id\""));
    }
}
