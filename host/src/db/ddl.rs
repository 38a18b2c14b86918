//! Schema operations on the server (contract 0.2): what an operation would
//! affect (`effect`, for the dry run and the check before execute), how to
//! undo it (`undoing`, read just before it is sent), and `ensure`, which
//! sends it only if the server is not already in the state it asks for -
//! so an operation interrupted by a kill is finished (or restarted) by
//! asking again, never applied blindly twice.
//!
//! **Invariant:** every decision compares the operation with what
//! `listIndexes` / `listCollections` say now; nothing here trusts the
//! caller's idea of the server's state.

use super::{Db, DbError, Result, mongo};
use bson::{Bson, Document, doc};
use futures_util::TryStreamExt;
use godwit_policy::{IndexSpec, SchemaOp, Validation};

/// What an operation would do to the database as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// One line for people (plugin-controlled names inside: escape it).
    pub line: String,
    /// Why execute would refuse it, if it would (duplicates for a unique
    /// index, a target collection that exists...).
    pub blocker: Option<String>,
}

/// How to put back what an operation changes, read before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Undoing {
    Nothing(String),
    Ops(Vec<SchemaOp>),
    /// A collection about to be dropped: what re-creates it, and its documents.
    Collection {
        ops: Vec<SchemaOp>,
        documents: Vec<Vec<u8>>,
    },
    Impossible(String),
}

/// What `ensure` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The server already was in the wanted state: nothing was sent.
    AlreadyThere,
    Sent,
}

/// Samples shown for duplicates and validator failures.
const SAMPLES: usize = 3;
/// Documents of a dropped collection kept as before-images, at most.
pub const MAX_DROP_IMAGE_BYTES: usize = 64 << 20;

impl Db {
    /// The indexes of `collection` as `listIndexes` lists them; none if it
    /// does not exist.
    pub async fn list_indexes(&self, collection: &str) -> Result<Vec<Document>> {
        if !self.collection_exists(collection).await? {
            return Ok(Vec::new());
        }
        let reply = self
            .db
            .run_command(doc! {"listIndexes": collection})
            .await
            .map_err(mongo(format!("listing the indexes of {collection}")))?;
        let batch = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .map(|a| a.iter().filter_map(|b| b.as_document().cloned()).collect())
            .unwrap_or_default();
        Ok(batch)
    }

    /// The `options` `listCollections` shows for `collection` (validator,
    /// validationLevel, ...); `None` if it does not exist.
    pub async fn collection_options(&self, collection: &str) -> Result<Option<Document>> {
        let mut cursor = self
            .db
            .list_collections()
            .filter(doc! {"name": collection})
            .await
            .map_err(mongo(format!("reading the options of collection {collection}")))?;
        let spec = cursor
            .try_next()
            .await
            .map_err(mongo(format!("reading the options of collection {collection}")))?;
        Ok(spec.map(|s| {
            let options = bson::serialize_to_document(&s.options).unwrap_or_default();
            // Only what an operation can set is compared or journaled.
            let mut kept = Document::new();
            for key in ["validator", "validationLevel", "validationAction", "collation"] {
                if let Some(v) = options.get(key)
                    && v != &Bson::Null
                {
                    kept.insert(key, v.clone());
                }
            }
            kept
        }))
    }

    async fn count_all(&self, collection: &str, filter: Document) -> Result<u64> {
        self.db
            .collection::<Document>(collection)
            .count_documents(filter)
            .await
            .map_err(mongo(format!("counting the documents of {collection}")))
    }

    /// What `op` would affect, as the database is now.
    pub async fn effect(&self, op: &SchemaOp) -> Result<Effect> {
        let line = |line: String| Effect { line, blocker: None };
        let blocked = |line: String, why: String| Effect {
            line,
            blocker: Some(why),
        };
        Ok(match op {
            SchemaOp::CreateIndex { collection, index } => {
                let existing = self.list_indexes(collection).await?;
                if let Some(found) = existing
                    .iter()
                    .find(|i| i.get_str("name").ok() == Some(index.name.as_str()))
                {
                    return Ok(match same_index(found, index) {
                        true => line(format!("index `{}` exists already: nothing to do", index.name)),
                        false => blocked(
                            format!("index `{}` exists with another definition", index.name),
                            format!(
                                "an index named `{}` exists on `{collection}` with {}; drop it first (drop-index) or choose another name",
                                index.name,
                                Bson::Document(found.clone())
                            ),
                        ),
                    });
                }
                let scope = index.partial_filter.clone().unwrap_or_default();
                let n = self.count_all(collection, scope).await?;
                let mut text = format!(
                    "builds index `{}` {} on {n} documents",
                    index.name,
                    Bson::Document(index.keys.clone())
                );
                if index.unique {
                    let dups = self.duplicates(collection, index).await?;
                    if dups.groups > 0 {
                        let why = format!(
                            "the current data has {} duplicate keys over {} documents, e.g. {}; remove the duplicates (or make the index non-unique) before running",
                            dups.groups,
                            dups.documents,
                            dups.samples.join("; ")
                        );
                        text.push_str(&format!(" (unique: {} duplicate keys)", dups.groups));
                        return Ok(blocked(text, why));
                    }
                    text.push_str(" (unique: no duplicates)");
                }
                line(text)
            }
            SchemaOp::DropIndex { collection, name } => {
                let existing = self.list_indexes(collection).await?;
                match existing.iter().find(|i| i.get_str("name").ok() == Some(name.as_str())) {
                    Some(found) => line(format!(
                        "drops index `{name}` {} (revert re-creates it from the journaled definition)",
                        found.get("key").cloned().unwrap_or(Bson::Null)
                    )),
                    None => line(format!("index `{name}` does not exist: nothing to do")),
                }
            }
            SchemaOp::CreateCollection {
                collection, validation, ..
            } => {
                if let Some(options) = self.collection_options(collection).await? {
                    // As `CREATE TABLE IF NOT EXISTS`: the same collection is
                    // there (a dry run after the execute, a step run again).
                    if validation_matches(&options, validation) {
                        line(format!(
                            "collection `{collection}` exists already as asked: nothing to do"
                        ))
                    } else {
                        blocked(
                            format!("collection `{collection}` exists already with another validator"),
                            format!(
                                "collection `{collection}` exists already with another validator; use modify-validator \
                                 to change it, or drop the collection first"
                            ),
                        )
                    }
                } else {
                    line(format!(
                        "creates collection `{collection}`{}",
                        validation
                            .validator
                            .as_ref()
                            .map(|v| format!(" with validator {}", Bson::Document(v.clone())))
                            .unwrap_or_default()
                    ))
                }
            }
            SchemaOp::ModifyValidator { collection, validation } => {
                if !self.collection_exists(collection).await? {
                    return Ok(blocked(
                        format!("collection `{collection}` does not exist"),
                        format!("collection `{collection}` does not exist; create it first (create-collection)"),
                    ));
                }
                if let Some(options) = self.collection_options(collection).await?
                    && validation_matches(&options, validation)
                {
                    return Ok(line(format!(
                        "the validator of `{collection}` is already as asked: nothing to do"
                    )));
                }
                let validator = validation.validator.clone().unwrap_or_default();
                let total = self.count_all(collection, Document::new()).await?;
                match self.failing(collection, &validator).await {
                    Ok((0, _)) => line(format!("changes the validator; all {total} documents pass it")),
                    Ok((n, samples)) => line(format!(
                        "changes the validator; {n} of {total} documents fail it (e.g. _id {}): they stay, but \
                         updates to them will be refused unless validationLevel is moderate or off",
                        samples.join(", ")
                    )),
                    Err(e) => line(format!(
                        "changes the validator; the documents could not be checked against it ({e})"
                    )),
                }
            }
            SchemaOp::RenameCollection { collection, to } => {
                let from = self.collection_exists(collection).await?;
                let target = self.collection_exists(to).await?;
                match (from, target) {
                    (true, false) => {
                        let n = self.count_all(collection, Document::new()).await?;
                        let i = self.list_indexes(collection).await?.len();
                        line(format!("renames `{collection}` ({n} documents, {i} indexes) to `{to}`"))
                    }
                    (false, true) => line(format!("`{collection}` is already renamed to `{to}`: nothing to do")),
                    (true, true) => blocked(
                        format!("`{to}` exists already"),
                        format!("the target `{to}` exists already; drop it first (a rename never overwrites)"),
                    ),
                    (false, false) => blocked(
                        format!("`{collection}` does not exist"),
                        format!("collection `{collection}` does not exist: nothing to rename"),
                    ),
                }
            }
            SchemaOp::DropCollection { collection } => {
                if !self.collection_exists(collection).await? {
                    line(format!("collection `{collection}` does not exist: nothing to do"))
                } else {
                    let n = self.count_all(collection, Document::new()).await?;
                    let i = self.list_indexes(collection).await?.len();
                    line(format!("drops `{collection}`: {n} documents, {i} indexes"))
                }
            }
        })
    }

    /// Keys the current data holds more than once, for a unique index: the
    /// documents grouped by the index's fields (missing fields as null, as
    /// a unique index sees them), within its partial filter and collation.
    async fn duplicates(&self, collection: &str, index: &IndexSpec) -> Result<Duplicates> {
        let mut group = Document::new();
        let fields: Vec<&String> = index.keys.keys().collect();
        for (i, field) in fields.iter().enumerate() {
            group.insert(format!("k{i}"), format!("${field}"));
        }
        let mut pipeline = Vec::new();
        if let Some(f) = &index.partial_filter {
            pipeline.push(doc! {"$match": f.clone()});
        }
        pipeline.push(doc! {"$group": {"_id": group, "n": {"$sum": 1}, "ids": {"$push": "$_id"}}});
        pipeline.push(doc! {"$match": {"n": {"$gt": 1}}});
        let coll = self.db.collection::<Document>(collection);
        let mut aggregate = coll.aggregate(pipeline);
        // A unique index compares keys under its collation (case-insensitive
        // at strength 2): so must the search for duplicates.
        if let Some(c) = &index.collation
            && let Ok(collation) = bson::deserialize_from_document::<mongodb::options::Collation>(c.clone())
        {
            aggregate = aggregate.collation(collation);
        }
        let context = format!("looking for duplicate keys of index `{}` in {collection}", index.name);
        let mut cursor = aggregate.await.map_err(mongo(context.clone()))?;
        let mut found = Duplicates::default();
        while let Some(g) = cursor.try_next().await.map_err(mongo(context.clone()))? {
            let n = g.get("n").and_then(Bson::as_i32).map_or(2, i64::from) as u64;
            found.groups += 1;
            found.documents += n;
            if found.samples.len() < SAMPLES {
                let key = g.get_document("_id").cloned().unwrap_or_default();
                let mut shown = Document::new();
                for (i, field) in fields.iter().enumerate() {
                    shown.insert(field.as_str(), key.get(format!("k{i}")).cloned().unwrap_or(Bson::Null));
                }
                let mut ids: Vec<String> = g
                    .get_array("ids")
                    .map(|a| a.iter().take(SAMPLES).map(|id| id.to_string()).collect())
                    .unwrap_or_default();
                if n > ids.len() as u64 {
                    ids.push("...".into());
                }
                found
                    .samples
                    .push(format!("{} x{n} (_id {})", Bson::Document(shown), ids.join(", ")));
            }
        }
        Ok(found)
    }

    /// Documents that fail `validator`: how many, and a few `_id`s.
    async fn failing(&self, collection: &str, validator: &Document) -> Result<(u64, Vec<String>)> {
        let filter = doc! {"$nor": [validator.clone()]};
        let n = self.count_all(collection, filter.clone()).await?;
        let mut samples = Vec::new();
        if n > 0 {
            let mut cursor = self
                .db
                .collection::<Document>(collection)
                .find(filter)
                .projection(doc! {"_id": 1})
                .limit(SAMPLES as i64)
                .await
                .map_err(mongo(format!(
                    "sampling the documents of {collection} that fail the validator"
                )))?;
            while let Some(d) = cursor.try_next().await.map_err(mongo(format!(
                "sampling the documents of {collection} that fail the validator"
            )))? {
                samples.push(d.get("_id").map(ToString::to_string).unwrap_or_default());
            }
        }
        Ok((n, samples))
    }

    /// How to undo `op`, read from the server just before it is sent.
    /// `keep_documents`: before-images are on (a dropped collection's
    /// documents are kept).
    pub async fn undoing(&self, op: &SchemaOp, keep_documents: bool) -> Result<Undoing> {
        Ok(match op {
            SchemaOp::CreateIndex { collection, index } => {
                let existing = self.list_indexes(collection).await?;
                if existing
                    .iter()
                    .any(|i| i.get_str("name").ok() == Some(index.name.as_str()))
                {
                    Undoing::Nothing(format!("index `{}` existed before the run", index.name))
                } else {
                    Undoing::Ops(vec![SchemaOp::DropIndex {
                        collection: collection.clone(),
                        name: index.name.clone(),
                    }])
                }
            }
            SchemaOp::DropIndex { collection, name } => {
                let existing = self.list_indexes(collection).await?;
                match existing
                    .iter()
                    .find(|i| i.get_str("name").ok() == Some(name.as_str()))
                    .and_then(IndexSpec::from_listed)
                {
                    Some(index) => Undoing::Ops(vec![SchemaOp::CreateIndex {
                        collection: collection.clone(),
                        index,
                    }]),
                    None => Undoing::Nothing(format!("index `{name}` did not exist")),
                }
            }
            SchemaOp::CreateCollection { collection, .. } => {
                if self.collection_exists(collection).await? {
                    Undoing::Nothing(format!("collection `{collection}` existed before the run"))
                } else {
                    Undoing::Ops(vec![SchemaOp::DropCollection {
                        collection: collection.clone(),
                    }])
                }
            }
            SchemaOp::ModifyValidator { collection, .. } => {
                let options = self.collection_options(collection).await?.unwrap_or_default();
                Undoing::Ops(vec![SchemaOp::ModifyValidator {
                    collection: collection.clone(),
                    validation: validation_of(&options, true),
                }])
            }
            SchemaOp::RenameCollection { collection, to } => Undoing::Ops(vec![SchemaOp::RenameCollection {
                collection: to.clone(),
                to: collection.clone(),
            }]),
            SchemaOp::DropCollection { collection } => {
                let Some(options) = self.collection_options(collection).await? else {
                    return Ok(Undoing::Nothing(format!("collection `{collection}` did not exist")));
                };
                if !keep_documents {
                    return Ok(Undoing::Impossible(format!(
                        "collection `{collection}` was dropped without before-images (--no-before-images)"
                    )));
                }
                let mut ops = vec![SchemaOp::CreateCollection {
                    collection: collection.clone(),
                    validation: validation_of(&options, false),
                    collation: options.get_document("collation").ok().cloned(),
                }];
                for index in self.list_indexes(collection).await? {
                    if index.get_str("name").ok() == Some("_id_") {
                        continue;
                    }
                    if let Some(index) = IndexSpec::from_listed(&index) {
                        ops.push(SchemaOp::CreateIndex {
                            collection: collection.clone(),
                            index,
                        });
                    }
                }
                let mut documents = Vec::new();
                let mut bytes = 0usize;
                let mut cursor = self
                    .db
                    .collection::<bson::RawDocumentBuf>(collection)
                    .find(doc! {})
                    .sort(doc! {"_id": 1})
                    .await
                    .map_err(mongo(format!(
                        "reading the documents of {collection} before dropping it"
                    )))?;
                while let Some(d) = cursor.try_next().await.map_err(mongo(format!(
                    "reading the documents of {collection} before dropping it"
                )))? {
                    bytes += d.as_bytes().len();
                    if bytes > MAX_DROP_IMAGE_BYTES {
                        return Ok(Undoing::Impossible(format!(
                            "collection `{collection}` held more than {} MiB, more than godwit keeps as before-images of a drop",
                            MAX_DROP_IMAGE_BYTES >> 20
                        )));
                    }
                    documents.push(d.into_bytes());
                }
                Undoing::Collection { ops, documents }
            }
        })
    }

    /// Sends `op` unless the server is already in the state it asks for.
    pub async fn ensure(&self, op: &SchemaOp) -> Result<Ensured> {
        let what = op.describe();
        let refuse = |why: String| DbError::Schema { op: what.clone(), why };
        match op {
            SchemaOp::CreateIndex { collection, index } => {
                let existing = self.list_indexes(collection).await?;
                if let Some(found) = existing
                    .iter()
                    .find(|i| i.get_str("name").ok() == Some(index.name.as_str()))
                {
                    return match same_index(found, index) {
                        true => Ok(Ensured::AlreadyThere),
                        false => Err(refuse(format!(
                            "an index of that name exists with another definition: {}; drop it (drop-index) or name \
                             this one differently",
                            Bson::Document(found.clone())
                        ))),
                    };
                }
                // Asked again after a kill, the server finishes (or restarts)
                // a build it had not completed.
                self.command(
                    doc! {"createIndexes": collection, "indexes": [index.to_command()]},
                    &what,
                )
                .await?;
            }
            SchemaOp::DropIndex { collection, name } => {
                let existing = self.list_indexes(collection).await?;
                if !existing.iter().any(|i| i.get_str("name").ok() == Some(name.as_str())) {
                    return Ok(Ensured::AlreadyThere);
                }
                self.command(doc! {"dropIndexes": collection, "index": name}, &what)
                    .await?;
            }
            SchemaOp::CreateCollection {
                collection,
                validation,
                collation,
            } => {
                if let Some(options) = self.collection_options(collection).await? {
                    return match validation_matches(&options, validation) {
                        true => Ok(Ensured::AlreadyThere),
                        false => Err(refuse(format!(
                            "collection `{collection}` exists with another validator; change it with modify-validator"
                        ))),
                    };
                }
                let mut command = doc! {"create": collection};
                add_validation(&mut command, validation);
                if let Some(c) = collation {
                    command.insert("collation", c.clone());
                }
                self.command(command, &what).await?;
            }
            SchemaOp::ModifyValidator { collection, validation } => {
                let Some(options) = self.collection_options(collection).await? else {
                    return Err(refuse(format!(
                        "collection `{collection}` does not exist; create it first (create-collection)"
                    )));
                };
                if validation_matches(&options, validation) {
                    return Ok(Ensured::AlreadyThere);
                }
                let mut command = doc! {"collMod": collection};
                add_validation(&mut command, validation);
                if !command.contains_key("validator") {
                    command.insert("validator", Document::new());
                }
                self.command(command, &what).await?;
            }
            SchemaOp::RenameCollection { collection, to } => {
                let from = self.collection_exists(collection).await?;
                let target = self.collection_exists(to).await?;
                match (from, target) {
                    (false, true) => return Ok(Ensured::AlreadyThere),
                    (true, true) => {
                        return Err(refuse(format!(
                            "the target `{to}` exists already; drop it first (a rename never overwrites)"
                        )));
                    }
                    (false, false) => {
                        return Err(refuse(format!(
                            "neither `{collection}` nor `{to}` exists: nothing to rename"
                        )));
                    }
                    (true, false) => {}
                }
                let command = doc! {
                    "renameCollection": format!("{}.{collection}", self.name),
                    "to": format!("{}.{to}", self.name),
                    "dropTarget": false,
                };
                self.client
                    .database("admin")
                    .run_command(command)
                    .await
                    .map_err(mongo(format!("{what} in database {}", self.name)))?;
            }
            SchemaOp::DropCollection { collection } => {
                if !self.collection_exists(collection).await? {
                    return Ok(Ensured::AlreadyThere);
                }
                self.command(doc! {"drop": collection}, &what).await?;
            }
        }
        Ok(Ensured::Sent)
    }

    async fn command(&self, command: Document, what: &str) -> Result<Document> {
        self.db
            .run_command(command)
            .await
            .map_err(mongo(format!("{what} in database {}", self.name)))
    }

    /// How many documents `collection` holds (0 if it does not exist).
    pub async fn count_documents(&self, collection: &str) -> Result<u64> {
        self.count_all(collection, Document::new()).await
    }

    /// Inserts documents a revert puts back into a re-created collection,
    /// skipping those already there (a revert run again after a kill).
    pub async fn restore_documents(&self, collection: &str, documents: &[Vec<u8>]) -> Result<u64> {
        let coll = self.db.collection::<bson::RawDocumentBuf>(collection);
        let mut restored = 0;
        for chunk in documents.chunks(1000) {
            let mut missing = Vec::new();
            for bytes in chunk {
                let d = bson::RawDocumentBuf::from_bytes(bytes.clone()).map_err(|e| DbError::Schema {
                    op: format!("restore of `{collection}`"),
                    why: format!("a journaled document is not BSON: {e}"),
                })?;
                let id = d.get("_id").ok().flatten().and_then(|id| Bson::try_from(id).ok());
                let exists = match &id {
                    Some(id) => coll
                        .find_one(doc! {"_id": id.clone()})
                        .await
                        .map_err(mongo(format!("restoring the documents of {collection}")))?
                        .is_some(),
                    None => false,
                };
                if !exists {
                    missing.push(d);
                }
            }
            if !missing.is_empty() {
                restored += missing.len() as u64;
                coll.insert_many(missing)
                    .await
                    .map_err(mongo(format!("restoring the documents of {collection}")))?;
            }
        }
        Ok(restored)
    }
}

#[derive(Debug, Default)]
struct Duplicates {
    groups: u64,
    documents: u64,
    samples: Vec<String>,
}

/// The same index: same keys and uniqueness (what `createIndexes` would
/// otherwise refuse as a conflict).
fn same_index(listed: &Document, wanted: &IndexSpec) -> bool {
    let Some(found) = IndexSpec::from_listed(listed) else {
        return false;
    };
    let numeric = |d: &Document| -> Vec<(String, String)> {
        d.iter()
            .map(|(k, v)| {
                let v = match v {
                    Bson::Int32(n) => n.to_string(),
                    Bson::Int64(n) => n.to_string(),
                    Bson::Double(f) => (*f as i64).to_string(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    };
    numeric(&found.keys) == numeric(&wanted.keys)
        && found.unique == wanted.unique
        && found.expire_after_seconds == wanted.expire_after_seconds
        && found.partial_filter == wanted.partial_filter
}

fn validation_of(options: &Document, empty_if_none: bool) -> Validation {
    Validation {
        validator: options
            .get_document("validator")
            .ok()
            .cloned()
            .or_else(|| empty_if_none.then(Document::new)),
        level: options.get_str("validationLevel").ok().map(str::to_string),
        action: options.get_str("validationAction").ok().map(str::to_string),
    }
}

fn validation_matches(options: &Document, wanted: &Validation) -> bool {
    let current = options.get_document("validator").ok().cloned().unwrap_or_default();
    current == wanted.validator.clone().unwrap_or_default()
        && wanted
            .level
            .as_deref()
            .is_none_or(|l| options.get_str("validationLevel").unwrap_or("strict") == l)
        && wanted
            .action
            .as_deref()
            .is_none_or(|a| options.get_str("validationAction").unwrap_or("error") == a)
}

fn add_validation(command: &mut Document, v: &Validation) {
    if let Some(validator) = &v.validator {
        command.insert("validator", validator.clone());
    }
    if let Some(level) = &v.level {
        command.insert("validationLevel", level);
    }
    if let Some(action) = &v.action {
        command.insert("validationAction", action);
    }
}
