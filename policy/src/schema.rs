//! Schema operations (contract 0.2): what a plugin may ask of the
//! database's schema - indexes, collections, validators - as plain data, and
//! the rules they are checked by. The host (on every `begin`/`finish`) and
//! the SDK's harness call [`check_schema_op`], so the two cannot drift.
//!
//! An operation is allowed only if the manifest grants its kind on its
//! collection (a rename: on both names), the names pass
//! [`check_collection`](crate::check_collection) (godwit's metadata
//! collection and `system.*` out of reach), and its documents pass the same
//! allow-lists as filters (a partial filter, a validator's query part).

use crate::{Context, Rule, Violation, check_collection, check_filter};
use bson::{Bson, Document, doc};

/// The kinds of schema operation, as the manifest grants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaKind {
    CreateIndex,
    DropIndex,
    CreateCollection,
    ModifyValidator,
    RenameCollection,
    DropCollection,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 6] = [
        SchemaKind::CreateIndex,
        SchemaKind::DropIndex,
        SchemaKind::CreateCollection,
        SchemaKind::ModifyValidator,
        SchemaKind::RenameCollection,
        SchemaKind::DropCollection,
    ];

    /// The name the contract, the journal and messages use.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::CreateIndex => "create-index",
            SchemaKind::DropIndex => "drop-index",
            SchemaKind::CreateCollection => "create-collection",
            SchemaKind::ModifyValidator => "modify-validator",
            SchemaKind::RenameCollection => "rename-collection",
            SchemaKind::DropCollection => "drop-collection",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A manifest's permission for operations of `kind` on `collection`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    pub kind: SchemaKind,
    pub collection: String,
}

/// An index as `createIndexes` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub keys: Document,
    pub name: String,
    pub unique: bool,
    pub partial_filter: Option<Document>,
    pub collation: Option<Document>,
    pub expire_after_seconds: Option<u32>,
}

impl IndexSpec {
    /// The index document of a `createIndexes` command.
    pub fn to_command(&self) -> Document {
        let mut d = doc! {"key": self.keys.clone(), "name": &self.name};
        if self.unique {
            d.insert("unique", true);
        }
        if let Some(f) = &self.partial_filter {
            d.insert("partialFilterExpression", f.clone());
        }
        if let Some(c) = &self.collation {
            d.insert("collation", c.clone());
        }
        if let Some(s) = self.expire_after_seconds {
            d.insert("expireAfterSeconds", i64::from(s));
        }
        d
    }

    /// Reads an index back from `listIndexes` (or a journal): the fields
    /// above, anything else ignored. `None` if it has no key or name.
    pub fn from_listed(d: &Document) -> Option<IndexSpec> {
        Some(IndexSpec {
            keys: d.get_document("key").ok()?.clone(),
            name: d.get_str("name").ok()?.to_string(),
            unique: d.get_bool("unique").unwrap_or(false),
            partial_filter: d.get_document("partialFilterExpression").ok().cloned(),
            collation: d.get_document("collation").ok().cloned(),
            expire_after_seconds: d.get("expireAfterSeconds").and_then(number).map(|n| n as u32),
        })
    }
}

fn number(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

/// A collection's validation settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validation {
    pub validator: Option<Document>,
    pub level: Option<String>,
    pub action: Option<String>,
}

/// One schema operation, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaOp {
    CreateIndex {
        collection: String,
        index: IndexSpec,
    },
    DropIndex {
        collection: String,
        name: String,
    },
    CreateCollection {
        collection: String,
        validation: Validation,
        collation: Option<Document>,
    },
    ModifyValidator {
        collection: String,
        validation: Validation,
    },
    RenameCollection {
        collection: String,
        to: String,
    },
    DropCollection {
        collection: String,
    },
}

impl SchemaOp {
    pub fn kind(&self) -> SchemaKind {
        match self {
            SchemaOp::CreateIndex { .. } => SchemaKind::CreateIndex,
            SchemaOp::DropIndex { .. } => SchemaKind::DropIndex,
            SchemaOp::CreateCollection { .. } => SchemaKind::CreateCollection,
            SchemaOp::ModifyValidator { .. } => SchemaKind::ModifyValidator,
            SchemaOp::RenameCollection { .. } => SchemaKind::RenameCollection,
            SchemaOp::DropCollection { .. } => SchemaKind::DropCollection,
        }
    }

    /// The collection the operation is on (a rename's source).
    pub fn collection(&self) -> &str {
        match self {
            SchemaOp::CreateIndex { collection, .. }
            | SchemaOp::DropIndex { collection, .. }
            | SchemaOp::CreateCollection { collection, .. }
            | SchemaOp::ModifyValidator { collection, .. }
            | SchemaOp::RenameCollection { collection, .. }
            | SchemaOp::DropCollection { collection } => collection,
        }
    }

    /// One short line for people, e.g. "create-index `email_1` on `users`".
    /// Plugin-controlled text: escape it before it reaches a terminal.
    pub fn describe(&self) -> String {
        match self {
            SchemaOp::CreateIndex { collection, index } => format!(
                "create-index `{}` on `{collection}` {}{}",
                index.name,
                Bson::Document(index.keys.clone()),
                if index.unique { " (unique)" } else { "" }
            ),
            SchemaOp::DropIndex { collection, name } => format!("drop-index `{name}` on `{collection}`"),
            SchemaOp::CreateCollection {
                collection, validation, ..
            } => format!(
                "create-collection `{collection}`{}",
                if validation.validator.is_some() {
                    " with a validator"
                } else {
                    ""
                }
            ),
            SchemaOp::ModifyValidator { collection, validation } => format!(
                "modify-validator of `{collection}` to {}",
                match &validation.validator {
                    Some(v) if !v.is_empty() => Bson::Document(v.clone()).to_string(),
                    _ => "none".to_string(),
                }
            ),
            SchemaOp::RenameCollection { collection, to } => format!("rename-collection `{collection}` to `{to}`"),
            SchemaOp::DropCollection { collection } => format!("drop-collection `{collection}`"),
        }
    }

    /// The operation as one BSON document (`{op: "create-index", ...}`):
    /// how the journal stores it.
    pub fn to_document(&self) -> Document {
        let mut d = doc! {"op": self.kind().name(), "collection": self.collection()};
        let opt = |d: &mut Document, key: &str, v: &Option<Document>| {
            if let Some(v) = v {
                d.insert(key, v.clone());
            }
        };
        let validation = |d: &mut Document, v: &Validation| {
            opt(d, "validator", &v.validator);
            if let Some(l) = &v.level {
                d.insert("validationLevel", l);
            }
            if let Some(a) = &v.action {
                d.insert("validationAction", a);
            }
        };
        match self {
            SchemaOp::CreateIndex { index, .. } => {
                d.insert("index", index.to_command());
            }
            SchemaOp::DropIndex { name, .. } => {
                d.insert("name", name);
            }
            SchemaOp::CreateCollection {
                validation: v,
                collation,
                ..
            } => {
                validation(&mut d, v);
                opt(&mut d, "collation", collation);
            }
            SchemaOp::ModifyValidator { validation: v, .. } => validation(&mut d, v),
            SchemaOp::RenameCollection { to, .. } => {
                d.insert("to", to);
            }
            SchemaOp::DropCollection { .. } => {}
        }
        d
    }

    pub fn from_document(d: &Document) -> Result<SchemaOp, String> {
        let s = |k: &str| d.get_str(k).map(str::to_string).map_err(|e| format!("{k}: {e}"));
        let collection = s("collection")?;
        let validation = || Validation {
            validator: d.get_document("validator").ok().cloned(),
            level: d.get_str("validationLevel").ok().map(str::to_string),
            action: d.get_str("validationAction").ok().map(str::to_string),
        };
        let kind = SchemaKind::from_name(&s("op")?).ok_or("unknown op")?;
        Ok(match kind {
            SchemaKind::CreateIndex => SchemaOp::CreateIndex {
                collection,
                index: d
                    .get_document("index")
                    .ok()
                    .and_then(IndexSpec::from_listed)
                    .ok_or("index: missing key or name")?,
            },
            SchemaKind::DropIndex => SchemaOp::DropIndex {
                collection,
                name: s("name")?,
            },
            SchemaKind::CreateCollection => SchemaOp::CreateCollection {
                collection,
                validation: validation(),
                collation: d.get_document("collation").ok().cloned(),
            },
            SchemaKind::ModifyValidator => SchemaOp::ModifyValidator {
                collection,
                validation: validation(),
            },
            SchemaKind::RenameCollection => SchemaOp::RenameCollection {
                collection,
                to: s("to")?,
            },
            SchemaKind::DropCollection => SchemaOp::DropCollection { collection },
        })
    }
}

/// Where a schema operation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaSource {
    Begin,
    Process,
    Finish,
}

const INDEX_TYPES: [&str; 4] = ["text", "2dsphere", "2d", "hashed"];
const COLLATION_KEYS: [&str; 9] = [
    "locale",
    "caseLevel",
    "caseFirst",
    "strength",
    "numericOrdering",
    "alternate",
    "maxVariable",
    "backwards",
    "normalization",
];
const LEVELS: [&str; 3] = ["strict", "moderate", "off"];
const VALIDATION_ACTIONS: [&str; 2] = ["error", "warn"];
/// MongoDB's limit on an index name is the namespace's; a shorter one keeps
/// messages readable.
const MAX_INDEX_NAME: usize = 127;

/// Checks one schema operation against the manifest's grants, the names
/// rules and the document allow-lists.
pub fn check_schema_op(cx: &Context, grants: &[Grant], source: SchemaSource, op: &SchemaOp) -> Result<(), Violation> {
    if source == SchemaSource::Process {
        return Err(Violation::new(
            Rule::Schema,
            format!(
                "{} returned from process (a schema operation is applied once, before or after the passes)",
                op.kind().name()
            ),
        ));
    }
    let mut names = vec![op.collection()];
    if let SchemaOp::RenameCollection { to, .. } = op {
        names.push(to);
    }
    for name in &names {
        check_collection(cx, name)?;
        let granted = grants.iter().any(|g| g.kind == op.kind() && g.collection == *name);
        if !granted {
            return Err(Violation::new(
                Rule::Schema,
                format!(
                    "{} on `{name}` is not declared in the manifest's schema [{}]",
                    op.kind().name(),
                    grants
                        .iter()
                        .map(|g| format!("{} {}", g.kind.name(), g.collection))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let spec = |detail: String| Err(Violation::new(Rule::SchemaSpec, detail));
    match op {
        SchemaOp::CreateIndex { index, .. } => {
            check_index_name(&index.name)?;
            if index.keys.is_empty() {
                return spec("index keys are empty".into());
            }
            for (field, direction) in &index.keys {
                if field.is_empty() || field.starts_with('$') || field.contains('\0') {
                    return spec(format!("index key {field:?} is not a field path"));
                }
                let ok = match direction {
                    Bson::String(t) => INDEX_TYPES.contains(&t.as_str()),
                    b => matches!(number(b), Some(1 | -1)),
                };
                if !ok {
                    return spec(format!(
                        "index key {field:?}: {direction} is not 1, -1 or one of {}",
                        INDEX_TYPES.join(", ")
                    ));
                }
            }
            if let Some(filter) = &index.partial_filter {
                check_filter(filter).map_err(|v| v.within_schema("partial filter"))?;
            }
            if let Some(collation) = &index.collation {
                check_collation(collation)?;
            }
            if index.expire_after_seconds.is_some() && index.keys.len() != 1 {
                return spec("a TTL index (expire-after-seconds) has exactly one key".into());
            }
        }
        SchemaOp::DropIndex { name, .. } => {
            check_index_name(name)?;
            if name == "_id_" {
                return spec("the `_id_` index cannot be dropped".into());
            }
        }
        SchemaOp::CreateCollection {
            validation, collation, ..
        } => {
            check_validation(validation)?;
            if let Some(c) = collation {
                check_collation(c)?;
            }
        }
        SchemaOp::ModifyValidator { validation, .. } => {
            if validation.validator.is_none() {
                return spec("modify-validator has no validator".into());
            }
            check_validation(validation)?;
        }
        SchemaOp::RenameCollection { collection, to } => {
            if collection == to {
                return spec(format!("rename-collection of `{collection}` to itself"));
            }
        }
        SchemaOp::DropCollection { .. } => {}
    }
    Ok(())
}

fn check_index_name(name: &str) -> Result<(), Violation> {
    let bad = |why: &str| Err(Violation::new(Rule::SchemaSpec, format!("index name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty (name every index: resume and revert find it by name)");
    }
    if name == "*" {
        return bad("drops every index (name one index)");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.len() > MAX_INDEX_NAME {
        return bad("is longer than 127 bytes");
    }
    Ok(())
}

fn check_collation(collation: &Document) -> Result<(), Violation> {
    if collation.get_str("locale").is_err() {
        return Err(Violation::new(Rule::SchemaSpec, "collation has no `locale` string"));
    }
    if let Some(key) = collation.keys().find(|k| !COLLATION_KEYS.contains(&k.as_str())) {
        return Err(Violation::new(
            Rule::SchemaSpec,
            format!("collation key {key:?} is not one of {}", COLLATION_KEYS.join(", ")),
        ));
    }
    Ok(())
}

/// A validator is `{$jsonSchema: {...}}` (whose keywords never start with
/// `$`), query clauses (the filter allow-list), or both.
fn check_validation(v: &Validation) -> Result<(), Violation> {
    if let Some(level) = &v.level
        && !LEVELS.contains(&level.as_str())
    {
        return Err(Violation::new(
            Rule::SchemaSpec,
            format!("validation level {level:?} is not one of {}", LEVELS.join(", ")),
        ));
    }
    if let Some(action) = &v.action
        && !VALIDATION_ACTIONS.contains(&action.as_str())
    {
        return Err(Violation::new(
            Rule::SchemaSpec,
            format!(
                "validation action {action:?} is not one of {}",
                VALIDATION_ACTIONS.join(", ")
            ),
        ));
    }
    let Some(validator) = &v.validator else {
        return Ok(());
    };
    let mut query = validator.clone();
    if let Some(schema) = query.remove("$jsonSchema") {
        let Bson::Document(schema) = schema else {
            return Err(Violation::new(
                Rule::SchemaSpec,
                "validator: $jsonSchema is not a document",
            ));
        };
        no_operator_keys(&schema)?;
    }
    check_filter(&query).map_err(|v| v.within_schema("validator"))
}

fn no_operator_keys(d: &Document) -> Result<(), Violation> {
    for (k, v) in d {
        if k.starts_with('$') {
            return Err(Violation::new(
                Rule::SchemaSpec,
                format!("validator: $jsonSchema keyword {k:?} is not supported (no keyword starts with `$`)"),
            ));
        }
        match v {
            Bson::Document(d) => no_operator_keys(d)?,
            Bson::Array(a) => {
                for item in a {
                    if let Bson::Document(d) = item {
                        no_operator_keys(d)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Violation {
    fn within_schema(mut self, what: &str) -> Self {
        self.detail = format!("{what}: {}", self.detail);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CX: Context<'static> = Context {
        metadata_collection: Some("godwit_metadata"),
        database: Some("app"),
        version_record: None,
    };

    fn grants() -> Vec<Grant> {
        [
            (SchemaKind::CreateIndex, "users"),
            (SchemaKind::DropIndex, "users"),
            (SchemaKind::CreateCollection, "archive"),
            (SchemaKind::ModifyValidator, "users"),
            (SchemaKind::RenameCollection, "old"),
            (SchemaKind::RenameCollection, "new"),
            (SchemaKind::DropCollection, "old"),
            (SchemaKind::CreateIndex, "godwit_metadata"),
        ]
        .into_iter()
        .map(|(kind, c)| Grant {
            kind,
            collection: c.into(),
        })
        .collect()
    }

    fn index(keys: Document) -> IndexSpec {
        IndexSpec {
            keys,
            name: "i".into(),
            unique: false,
            partial_filter: None,
            collation: None,
            expire_after_seconds: None,
        }
    }

    #[track_caller]
    fn check(source: SchemaSource, op: SchemaOp, expect: Result<(), &str>) {
        match (check_schema_op(&CX, &grants(), source, &op), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
            (got, want) => panic!("{op:?}: got {got:?}, want {want:?}"),
        }
        // Every operation survives the journal's encoding.
        assert_eq!(SchemaOp::from_document(&op.to_document()).unwrap(), op);
    }

    fn ci(collection: &str, index: IndexSpec) -> SchemaOp {
        SchemaOp::CreateIndex {
            collection: collection.into(),
            index,
        }
    }

    #[test]
    fn schema_operations_need_a_grant_and_valid_specs() {
        use SchemaSource::{Begin, Finish, Process};
        check(Begin, ci("users", index(doc! {"email": 1})), Ok(()));
        check(
            Process,
            ci("users", index(doc! {"email": 1})),
            Err(
                "returned from process (a schema operation is applied once, before or after the passes) (rule schema-operations",
            ),
        );
        check(
            Finish,
            ci("tasks", index(doc! {"email": 1})),
            Err("create-index on `tasks` is not declared in the manifest's schema"),
        );
        check(
            Finish,
            ci("godwit_metadata", index(doc! {"x": 1})),
            Err("godwit's metadata collection"),
        );
        let mut named = index(doc! {"email": 1});
        named.name = String::new();
        check(Begin, ci("users", named), Err("index name \"\" is empty"));
        check(Begin, ci("users", index(doc! {})), Err("index keys are empty"));
        let mut escape = index(doc! {"email": 1});
        escape.name = "\u{1b}[31mred".into();
        check(Begin, ci("users", escape), Err("contains a control character"));
        check(Begin, ci("users", index(doc! {"$x": 1})), Err("is not a field path"));
        check(Begin, ci("users", index(doc! {"a": 2})), Err("is not 1, -1"));
        check(Begin, ci("users", index(doc! {"a": "hashed", "b": -1})), Ok(()));
        let mut partial = index(doc! {"a": 1});
        partial.partial_filter = Some(doc! {"$where": "1"});
        check(
            Begin,
            ci("users", partial),
            Err("partial filter: `$where` runs JavaScript"),
        );
        let mut ttl = index(doc! {"a": 1, "b": 1});
        ttl.expire_after_seconds = Some(60);
        check(Begin, ci("users", ttl), Err("exactly one key"));
        let mut coll = index(doc! {"a": 1});
        coll.collation = Some(doc! {"locale": "en", "strength": 2, "evil": 1});
        check(Begin, ci("users", coll), Err("collation key \"evil\""));
        check(
            Finish,
            SchemaOp::DropIndex {
                collection: "users".into(),
                name: "*".into(),
            },
            Err("drops every index"),
        );
        check(
            Finish,
            SchemaOp::CreateCollection {
                collection: "archive".into(),
                validation: Validation {
                    validator: Some(
                        doc! {"$jsonSchema": {"required": ["a"], "properties": {"a": {"bsonType": "string"}}}},
                    ),
                    level: Some("moderate".into()),
                    action: None,
                },
                collation: None,
            },
            Ok(()),
        );
        check(
            Finish,
            SchemaOp::ModifyValidator {
                collection: "users".into(),
                validation: Validation {
                    validator: Some(doc! {"$where": "sleep(1)"}),
                    ..Validation::default()
                },
            },
            Err("validator: `$where` runs JavaScript"),
        );
        check(
            Finish,
            SchemaOp::ModifyValidator {
                collection: "users".into(),
                validation: Validation {
                    validator: Some(doc! {"a": {"$exists": true}}),
                    level: Some("sometimes".into()),
                    action: None,
                },
            },
            Err("validation level \"sometimes\""),
        );
        check(
            Finish,
            SchemaOp::RenameCollection {
                collection: "old".into(),
                to: "new".into(),
            },
            Ok(()),
        );
        check(
            Finish,
            SchemaOp::RenameCollection {
                collection: "old".into(),
                to: "system.views".into(),
            },
            Err("system collection"),
        );
        check(
            Finish,
            SchemaOp::RenameCollection {
                collection: "old".into(),
                to: "other".into(),
            },
            Err("rename-collection on `other` is not declared"),
        );
        check(
            Finish,
            SchemaOp::DropCollection {
                collection: "old".into(),
            },
            Ok(()),
        );
    }
}
