//! The SDK's plain-Rust view of the contract's types (`wit/migration.wit`).

use bson::{Bson, Document, doc};
pub use godwit_policy::{Grant, IndexSpec, SchemaKind, SchemaOp, Validation};
use std::fmt;

/// Static description of a migration (the contract's `manifest`).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    /// Semantic version the database reaches once this migration ran.
    pub version: String,
    /// Semantic version requirement on the database's current version.
    pub requires: Option<String>,
    pub description: String,
    pub passes: Vec<Pass>,
    /// Schema operations the plugin may return (see [`Manifest::schema`]).
    pub schema: Vec<Grant>,
    /// False: see [`Manifest::not_idempotent`].
    pub idempotent: bool,
    /// Collections `find` may look up besides the passes' own (see
    /// [`Manifest::reads`]).
    pub reads: Vec<String>,
}

impl Manifest {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Manifest {
            name: name.into(),
            version: version.into(),
            requires: None,
            description: String::new(),
            passes: Vec::new(),
            schema: Vec::new(),
            idempotent: true,
            reads: Vec::new(),
        }
    }

    /// Declares the collections the plugin's lookups ([`crate::Context::find`])
    /// read besides its passes' collections, which are readable without
    /// being listed. godwit refuses a lookup on any other collection (the
    /// call fails, rule `undeclared-read`), and refuses its own metadata
    /// collection and `system.*` here as in a pass's `writes`.
    pub fn reads<S: Into<String>>(mut self, collections: impl IntoIterator<Item = S>) -> Self {
        self.reads.extend(collections.into_iter().map(Into::into));
        self
    }

    /// Declares that applying the plugin's actions to the same documents
    /// twice is wrong (an `$inc`, a `$push`): godwit then refuses to run it
    /// where a batch may be applied again - a server without transactions -
    /// unless the operator passes `--allow-at-least-once`, stamps it without
    /// the verification (recorded in the history), and refuses a second
    /// execute of the same version on a database unless `--allow-repeat`.
    pub fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }

    /// Allows schema operations of `kind` on `collection`, the way a pass's
    /// `writes` allows document writes. A rename needs a grant for its source
    /// and for its target.
    pub fn schema(mut self, kind: SchemaKind, collection: impl Into<String>) -> Self {
        self.schema.push(Grant {
            kind,
            collection: collection.into(),
        });
        self
    }

    pub fn requires(mut self, requirement: impl Into<String>) -> Self {
        self.requires = Some(requirement.into());
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn pass(mut self, pass: Pass) -> Self {
        self.passes.push(pass);
        self
    }
}

/// One scan over a collection (the contract's `pass`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub name: String,
    pub collection: String,
    pub filter: Document,
    pub projection: Option<Document>,
    /// Documents per `process` call; 0 lets the host choose.
    pub batch_size: u32,
    /// Collections this pass may write.
    pub writes: Vec<String>,
}

impl Pass {
    /// A pass named `name` over every document of `collection`, writing nothing.
    pub fn new(name: impl Into<String>, collection: impl Into<String>) -> Self {
        Pass {
            name: name.into(),
            collection: collection.into(),
            filter: Document::new(),
            projection: None,
            batch_size: 0,
            writes: Vec::new(),
        }
    }

    pub fn filter(mut self, filter: Document) -> Self {
        self.filter = filter;
        self
    }

    pub fn projection(mut self, projection: Document) -> Self {
        self.projection = Some(projection);
        self
    }

    pub fn batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn writes<S: Into<String>>(mut self, collections: impl IntoIterator<Item = S>) -> Self {
        self.writes = collections.into_iter().map(Into::into).collect();
        self
    }
}

/// What a plugin asks the host to do (the contract's `action`).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Update {
        collection: String,
        filter: Document,
        update: Document,
        upsert: bool,
        multi: bool,
    },
    Insert {
        collection: String,
        document: Document,
    },
    Delete {
        collection: String,
        filter: Document,
        multi: bool,
    },
    Report(Report),
    /// A schema operation (contract 0.2): return it from
    /// [`Migration::setup`] (applied before the first pass) or
    /// [`Migration::finish`] (after finish's document actions).
    Schema(SchemaOp),
}

/// An index for [`Action::create_index`]: keys and a name, then options.
#[derive(Debug, Clone, PartialEq)]
pub struct Index(pub IndexSpec);

impl Index {
    /// An index named `name` over `keys` (`doc! {"email": 1}`).
    pub fn new(name: impl Into<String>, keys: Document) -> Self {
        Index(IndexSpec {
            keys,
            name: name.into(),
            unique: false,
            partial_filter: None,
            collation: None,
            expire_after_seconds: None,
        })
    }

    pub fn unique(mut self) -> Self {
        self.0.unique = true;
        self
    }

    /// Only documents matching `filter` are indexed (`partialFilterExpression`).
    pub fn partial(mut self, filter: Document) -> Self {
        self.0.partial_filter = Some(filter);
        self
    }

    /// `collation`, e.g. `doc! {"locale": "en", "strength": 2}`.
    pub fn collation(mut self, collation: Document) -> Self {
        self.0.collation = Some(collation);
        self
    }

    /// A TTL index: documents expire `seconds` after the date in its one key.
    pub fn expire_after(mut self, seconds: u32) -> Self {
        self.0.expire_after_seconds = Some(seconds);
        self
    }
}

impl Action {
    /// Builds `index` on `collection`.
    pub fn create_index(collection: impl Into<String>, index: Index) -> Self {
        Action::Schema(SchemaOp::CreateIndex {
            collection: collection.into(),
            index: index.0,
        })
    }

    pub fn drop_index(collection: impl Into<String>, name: impl Into<String>) -> Self {
        Action::Schema(SchemaOp::DropIndex {
            collection: collection.into(),
            name: name.into(),
        })
    }

    /// Creates `collection`, with `validator` if given (`{"$jsonSchema": ...}`
    /// or query clauses). For a validation level or action, or a collation,
    /// build `SchemaOp::CreateCollection` yourself.
    pub fn create_collection(collection: impl Into<String>, validator: Option<Document>) -> Self {
        Action::Schema(SchemaOp::CreateCollection {
            collection: collection.into(),
            validation: Validation {
                validator,
                ..Validation::default()
            },
            collation: None,
        })
    }

    /// Replaces the validator of `collection` (`collMod`); `level`: "strict",
    /// "moderate" or "off" (none: as it is).
    pub fn modify_validator(collection: impl Into<String>, validator: Document, level: Option<&str>) -> Self {
        Action::Schema(SchemaOp::ModifyValidator {
            collection: collection.into(),
            validation: Validation {
                validator: Some(validator),
                level: level.map(str::to_string),
                action: None,
            },
        })
    }

    /// Renames `collection` to `to` (refused if `to` exists).
    pub fn rename_collection(collection: impl Into<String>, to: impl Into<String>) -> Self {
        Action::Schema(SchemaOp::RenameCollection {
            collection: collection.into(),
            to: to.into(),
        })
    }

    /// Drops `collection`; a revert can re-create it only from the
    /// before-images godwit journals of its documents.
    pub fn drop_collection(collection: impl Into<String>) -> Self {
        Action::Schema(SchemaOp::DropCollection {
            collection: collection.into(),
        })
    }

    /// `$set` of `fields` on the document whose `_id` is `id`.
    pub fn set(collection: impl Into<String>, id: impl Into<Bson>, fields: Document) -> Self {
        Self::update_one(collection, doc! {"_id": id.into()}, doc! {"$set": fields})
    }

    /// `$unset` of `fields` on the document whose `_id` is `id`.
    pub fn unset<S: Into<String>>(
        collection: impl Into<String>,
        id: impl Into<Bson>,
        fields: impl IntoIterator<Item = S>,
    ) -> Self {
        let fields: Document = fields
            .into_iter()
            .map(|f| (f.into(), Bson::String(String::new())))
            .collect();
        Self::update_one(collection, doc! {"_id": id.into()}, doc! {"$unset": fields})
    }

    /// `$inc` of `fields` (field -> amount) on the document whose `_id` is `id`.
    pub fn inc(collection: impl Into<String>, id: impl Into<Bson>, fields: Document) -> Self {
        Self::update_one(collection, doc! {"_id": id.into()}, doc! {"$inc": fields})
    }

    pub fn update_one(collection: impl Into<String>, filter: Document, update: Document) -> Self {
        Action::Update {
            collection: collection.into(),
            filter,
            update,
            upsert: false,
            multi: false,
        }
    }

    pub fn update_many(collection: impl Into<String>, filter: Document, update: Document) -> Self {
        Action::Update {
            collection: collection.into(),
            filter,
            update,
            upsert: false,
            multi: true,
        }
    }

    /// Update the first document matching `filter`, inserting one if none does.
    pub fn upsert(collection: impl Into<String>, filter: Document, update: Document) -> Self {
        Action::Update {
            collection: collection.into(),
            filter,
            update,
            upsert: true,
            multi: false,
        }
    }

    pub fn insert(collection: impl Into<String>, document: Document) -> Self {
        Action::Insert {
            collection: collection.into(),
            document,
        }
    }

    pub fn delete_one(collection: impl Into<String>, filter: Document) -> Self {
        Action::Delete {
            collection: collection.into(),
            filter,
            multi: false,
        }
    }

    pub fn delete_many(collection: impl Into<String>, filter: Document) -> Self {
        Action::Delete {
            collection: collection.into(),
            filter,
            multi: true,
        }
    }

    /// A finding for the report ("unresolved", "warning", "skipped", ...).
    pub fn report(kind: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Action::Report(Report {
            kind: kind.into(),
            key: key.into(),
            message: message.into(),
        })
    }

    /// The collection written, or `None` for a report.
    pub fn collection(&self) -> Option<&str> {
        match self {
            Action::Update { collection, .. }
            | Action::Insert { collection, .. }
            | Action::Delete { collection, .. } => Some(collection),
            Action::Schema(op) => Some(op.collection()),
            Action::Report(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: String,
    pub key: String,
    pub message: String,
}

/// A plugin's refusal to go on (the contract's `error`).
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub message: String,
    /// `_id` of the document the error is about.
    pub document_id: Option<Bson>,
}

impl Error {
    pub fn new(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            document_id: None,
        }
    }

    /// Names the document the error is about.
    pub fn for_document(mut self, id: impl Into<Bson>) -> Self {
        self.document_id = Some(id.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.document_id {
            Some(id) => write!(f, "{} (document _id {id})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<bson::error::Error> for Error {
    fn from(error: bson::error::Error) -> Self {
        Error::new(error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    Execute,
}

/// Facts about the run, so that a plugin needs neither clock nor randomness.
#[derive(Debug, Clone, PartialEq)]
pub struct RunContext {
    pub run_id: String,
    /// Always `Execute` from godwit 0.x hosts, dry runs included: a plugin
    /// must do the same thing whether or not its actions are applied, so that
    /// the dry run an operator reviews is what the execute does.
    pub mode: Mode,
    /// Start of the run, milliseconds since the Unix epoch (UTC).
    pub started_at_ms: i64,
    pub database: String,
}

impl RunContext {
    pub fn started_at(&self) -> bson::DateTime {
        bson::DateTime::from_millis(self.started_at_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The operator's `--param k=v` pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(Document);

impl Params {
    pub fn new(params: Document) -> Self {
        Params(params)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get_str(key).ok()
    }

    /// The parameter's value, or an error naming the missing parameter.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::new(format!("missing parameter `{key}` (pass --param {key}=VALUE)")))
    }

    /// The parameter parsed as `T`, `default` when absent, an error naming it when malformed.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| Error::new(format!("parameter `{key}`: cannot parse {raw:?}: {e}"))),
        }
    }

    pub fn as_document(&self) -> &Document {
        &self.0
    }
}
