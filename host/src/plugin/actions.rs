//! Checks a plugin's actions before anything is written, with the plugin
//! policy's rules (`godwit_policy`: BSON structure and depth before decoding,
//! size, collection names and the pass's `writes`, the query and update
//! allow-lists, storable keys, filters that pin documents). The result,
//! [`ValidAction`], is the only form the writer accepts.

use super::contract::{Action, SchemaOp, ValidManifest, ValidPass};
use crate::hash::{Sha256Hash, sha256_parts};
use bson::{Document, doc};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ValidAction {
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
    Report {
        kind: String,
        key: String,
        message: String,
    },
}

impl ValidAction {
    pub fn collection(&self) -> Option<&str> {
        match self {
            ValidAction::Update { collection, .. }
            | ValidAction::Insert { collection, .. }
            | ValidAction::Delete { collection, .. } => Some(collection),
            ValidAction::Report { .. } => None,
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, ValidAction::Report { .. })
    }

    /// The action as one BSON document, the form the journal stores.
    pub fn to_document(&self) -> Document {
        match self {
            ValidAction::Update {
                collection,
                filter,
                update,
                upsert,
                multi,
            } => doc! {
                "op": "update", "collection": collection, "filter": filter.clone(), "update": update.clone(),
                "upsert": upsert, "multi": multi,
            },
            ValidAction::Insert { collection, document } => {
                doc! {"op": "insert", "collection": collection, "document": document.clone()}
            }
            ValidAction::Delete {
                collection,
                filter,
                multi,
            } => {
                doc! {"op": "delete", "collection": collection, "filter": filter.clone(), "multi": multi}
            }
            ValidAction::Report { kind, key, message } => {
                doc! {"op": "report", "kind": kind, "key": key, "message": message}
            }
        }
    }

    pub fn from_document(doc: &Document) -> Result<Self, bson::error::Error> {
        let s = |k: &str| doc.get_str(k).map(str::to_string);
        Ok(match doc.get_str("op")? {
            "update" => ValidAction::Update {
                collection: s("collection")?,
                filter: doc.get_document("filter")?.clone(),
                update: doc.get_document("update")?.clone(),
                upsert: doc.get_bool("upsert")?,
                multi: doc.get_bool("multi")?,
            },
            "insert" => ValidAction::Insert {
                collection: s("collection")?,
                document: doc.get_document("document")?.clone(),
            },
            "delete" => ValidAction::Delete {
                collection: s("collection")?,
                filter: doc.get_document("filter")?.clone(),
                multi: doc.get_bool("multi")?,
            },
            _ => ValidAction::Report {
                kind: s("kind")?,
                key: s("key")?,
                message: s("message")?,
            },
        })
    }
}

pub use godwit_policy::MAX_BSON_BYTES;
use godwit_policy::{Checked, RawAction, Source};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "action {index} ({kind}{}{}): {problem}",
    collection.as_ref().map(|c| format!(" on `{c}`")).unwrap_or_default(),
    document.as_ref().map(|d| format!(", document _id {d}")).unwrap_or_default()
)]
pub struct ActionError {
    pub index: usize,
    pub kind: &'static str,
    pub collection: Option<String>,
    /// The `_id` the action is about (its filter's or its document's), when it names one.
    pub document: Option<String>,
    /// The rule broken and what to do next (see `godwit_policy::Violation`).
    pub problem: String,
}

/// The `_id` a raw filter or document names, for error messages; `None` when
/// the bytes are not BSON (or too deep to decode) or carry no `_id`. Long
/// ids are cut: the message stays one line of reasonable length.
fn document_id(bytes: &[u8]) -> Option<String> {
    let id = godwit_policy::document_id(bytes)?.to_string();
    Some(match id.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &id[..cut]),
        None => id,
    })
}

/// What a batch's actions are checked against: the collections they may
/// write, where they come from, and the run's policy context.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub writes: Vec<&'a str>,
    pub source: Source,
    pub policy: godwit_policy::Context<'a>,
}

impl<'a> Scope<'a> {
    /// The run's context: its metadata collection becomes unreachable.
    pub fn with_policy(mut self, policy: godwit_policy::Context<'a>) -> Self {
        self.policy = policy;
        self
    }
}

/// The actions of pass `pass`'s `process` calls: its `writes` apply.
pub fn allowed(pass: &ValidPass) -> Scope<'_> {
    Scope {
        writes: pass.writes.iter().map(String::as_str).collect(),
        source: Source::Process,
        policy: godwit_policy::Context::LOAD,
    }
}

/// The actions of `finish`: the union of every pass's `writes` applies.
pub fn finish_scope(manifest: &ValidManifest) -> Scope<'_> {
    Scope {
        writes: manifest
            .passes
            .iter()
            .flat_map(|p| p.writes.iter().map(String::as_str))
            .collect(),
        source: Source::Finish,
        policy: godwit_policy::Context::LOAD,
    }
}

/// Checks every action against the plugin policy (`godwit_policy`) and
/// decodes its BSON; the first broken rule refuses the whole batch.
pub fn validate(scope: &Scope, actions: Vec<Action>) -> Result<Vec<ValidAction>, ActionError> {
    let mut valid = Vec::with_capacity(actions.len());
    for (index, action) in actions.into_iter().enumerate() {
        let (kind, raw) = match &action {
            Action::Update(u) => (
                "update",
                RawAction::Update {
                    collection: &u.collection,
                    filter: &u.filter,
                    update: &u.update,
                    multi: u.multi,
                },
            ),
            Action::Insert(i) => (
                "insert",
                RawAction::Insert {
                    collection: &i.collection,
                    document: &i.document,
                },
            ),
            Action::Delete(d) => (
                "delete",
                RawAction::Delete {
                    collection: &d.collection,
                    filter: &d.filter,
                    multi: d.multi,
                },
            ),
            Action::Report(_) => ("report", RawAction::Report),
            // Schema operations are taken out by `split_schema` where they
            // may come from (begin, finish); anywhere else they are refused.
            Action::Schema(op) => {
                return Err(schema_error(
                    index,
                    op,
                    godwit_policy::Violation::new(
                        godwit_policy::Rule::Schema,
                        format!(
                            "{} returned from process (a schema operation is applied once, before or after the passes)",
                            policy_kind_of(op).name()
                        ),
                    ),
                ));
            }
        };
        let checked = godwit_policy::check_action(&scope.policy, &scope.writes, scope.source, raw).map_err(|v| {
            let (collection, id) = match &action {
                Action::Update(u) => (Some(u.collection.clone()), document_id(&u.filter)),
                Action::Insert(i) => (Some(i.collection.clone()), document_id(&i.document)),
                Action::Delete(d) => (Some(d.collection.clone()), document_id(&d.filter)),
                Action::Report(_) | Action::Schema(_) => (None, None),
            };
            ActionError {
                index,
                kind,
                collection,
                document: id,
                problem: v.to_string(),
            }
        })?;
        valid.push(match (action, checked) {
            (Action::Update(u), Checked::Update { filter, update }) => ValidAction::Update {
                collection: u.collection,
                filter,
                update,
                upsert: u.upsert,
                multi: u.multi,
            },
            (Action::Insert(i), Checked::Insert { document }) => ValidAction::Insert {
                collection: i.collection,
                document,
            },
            (Action::Delete(d), Checked::Delete { filter }) => ValidAction::Delete {
                collection: d.collection,
                filter,
                multi: d.multi,
            },
            (Action::Report(r), _) => ValidAction::Report {
                kind: r.kind,
                key: r.key,
                message: r.message,
            },
            _ => unreachable!("check_action returns the kind it was given"),
        });
    }
    Ok(valid)
}

fn policy_kind_of(op: &SchemaOp) -> godwit_policy::SchemaKind {
    use super::contract::SchemaKind as K;
    super::contract::policy_kind(match op {
        SchemaOp::CreateIndex(_) => K::CreateIndex,
        SchemaOp::DropIndex(_) => K::DropIndex,
        SchemaOp::CreateCollection(_) => K::CreateCollection,
        SchemaOp::ModifyValidator(_) => K::ModifyValidator,
        SchemaOp::RenameCollection(_) => K::RenameCollection,
        SchemaOp::DropCollection(_) => K::DropCollection,
    })
}

fn schema_collection(op: &SchemaOp) -> &str {
    match op {
        SchemaOp::CreateIndex(o) => &o.collection,
        SchemaOp::DropIndex(o) => &o.collection,
        SchemaOp::CreateCollection(o) => &o.collection,
        SchemaOp::ModifyValidator(o) => &o.collection,
        SchemaOp::RenameCollection(o) => &o.collection,
        SchemaOp::DropCollection(o) => &o.collection,
    }
}

fn schema_error(index: usize, op: &SchemaOp, v: godwit_policy::Violation) -> ActionError {
    ActionError {
        index,
        kind: policy_kind_of(op).name(),
        collection: Some(schema_collection(op).to_string()),
        document: None,
        problem: v.to_string(),
    }
}

/// Decodes a schema operation's BSON (structure and depth checked first).
pub fn decode_schema(op: &SchemaOp) -> Result<godwit_policy::SchemaOp, godwit_policy::Violation> {
    use godwit_policy::{IndexSpec, SchemaOp as P, Validation, decode};
    let opt = |what: &str, b: &Option<Vec<u8>>| b.as_deref().map(|b| decode(what, b)).transpose();
    Ok(match op {
        SchemaOp::CreateIndex(o) => P::CreateIndex {
            collection: o.collection.clone(),
            index: IndexSpec {
                keys: decode("index keys", &o.index.keys)?,
                name: o.index.name.clone(),
                unique: o.index.unique,
                partial_filter: opt("partial filter", &o.index.partial_filter)?,
                collation: opt("collation", &o.index.collation)?,
                expire_after_seconds: o.index.expire_after_seconds,
            },
        },
        SchemaOp::DropIndex(o) => P::DropIndex {
            collection: o.collection.clone(),
            name: o.name.clone(),
        },
        SchemaOp::CreateCollection(o) => P::CreateCollection {
            collection: o.collection.clone(),
            validation: Validation {
                validator: opt("validator", &o.validator)?,
                level: o.validation_level.clone(),
                action: o.validation_action.clone(),
            },
            collation: opt("collation", &o.collation)?,
        },
        SchemaOp::ModifyValidator(o) => P::ModifyValidator {
            collection: o.collection.clone(),
            validation: Validation {
                validator: Some(decode("validator", &o.validator)?),
                level: o.validation_level.clone(),
                action: o.validation_action.clone(),
            },
        },
        SchemaOp::RenameCollection(o) => P::RenameCollection {
            collection: o.collection.clone(),
            to: o.to.clone(),
        },
        SchemaOp::DropCollection(o) => P::DropCollection {
            collection: o.collection.clone(),
        },
    })
}

/// Takes the schema operations out of a `begin` or `finish` answer, each
/// decoded and checked against the manifest's grants and the plugin policy
/// (`godwit_policy::check_schema_op`). The first broken rule refuses the
/// whole answer, before anything is journaled or sent. From `begin`, only
/// schema operations are accepted.
pub fn split_schema(
    grants: &[godwit_policy::Grant],
    source: godwit_policy::SchemaSource,
    policy: &godwit_policy::Context,
    actions: Vec<Action>,
) -> Result<(Vec<Action>, Vec<godwit_policy::SchemaOp>), ActionError> {
    let mut rest = Vec::with_capacity(actions.len());
    let mut schema = Vec::new();
    for (index, action) in actions.into_iter().enumerate() {
        match action {
            Action::Schema(op) => {
                let decoded = decode_schema(&op).map_err(|v| schema_error(index, &op, v))?;
                godwit_policy::check_schema_op(policy, grants, source, &decoded)
                    .map_err(|v| schema_error(index, &op, v))?;
                schema.push(decoded);
            }
            other if source == godwit_policy::SchemaSource::Begin => {
                let kind = match other {
                    Action::Update(_) => "update",
                    Action::Insert(_) => "insert",
                    Action::Delete(_) => "delete",
                    _ => "report",
                };
                return Err(ActionError {
                    index,
                    kind,
                    collection: None,
                    document: None,
                    problem: "begin may return schema operations only (return document actions from process or finish)"
                        .into(),
                });
            }
            other => rest.push(other),
        }
    }
    Ok((rest, schema))
}

/// Gives every insert without an `_id` one, as a driver would, but derived
/// from `seed` and the action's index rather than from the clock: a resume
/// (restoring the plugin's state) and a journal replay derive the same ids,
/// and the journal - and so `godwit revert` - knows every document a run
/// inserted.
/// The seed is computed only if some insert lacks an `_id` (it hashes the
/// batch's inputs, which most batches need not pay for).
pub fn assign_insert_ids(actions: &mut [ValidAction], seed: impl FnOnce() -> Sha256Hash) {
    let mut seed = Some(seed);
    let mut hash = None;
    for (index, action) in actions.iter_mut().enumerate() {
        if let ValidAction::Insert { document, .. } = action
            && !document.contains_key("_id")
        {
            let seed: &Sha256Hash = hash.get_or_insert_with(|| (seed.take().expect("computed once"))());
            let id_hash = sha256_parts([seed.as_slice(), &(index as u64).to_le_bytes()]);
            let id: [u8; 12] = id_hash[..12].try_into().expect("12 bytes");
            let mut with_id = doc! {"_id": bson::oid::ObjectId::from_bytes(id)};
            with_id.extend(std::mem::take(document));
            *document = with_id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::contract::{Delete, Report, Update};

    fn update(collection: &str, filter: Vec<u8>) -> Action {
        Action::Update(Update {
            collection: collection.into(),
            filter,
            update: doc! {"$set": {"a": 1}}.to_vec().unwrap(),
            upsert: false,
            multi: false,
        })
    }

    fn check(actions: Vec<Action>, expect: Result<usize, &str>) {
        let scope = Scope {
            writes: vec!["users"],
            source: Source::Process,
            policy: godwit_policy::Context {
                metadata_collection: Some("godwit_metadata"),
                database: Some("app"),
                version_record: None,
            },
        };
        match (validate(&scope, actions), expect) {
            (Ok(v), Ok(n)) => assert_eq!(v.len(), n),
            (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn inserts_without_id_get_a_reproducible_one_first() {
        let insert = |document: Document| ValidAction::Insert {
            collection: "users".into(),
            document,
        };
        let mut a = vec![
            insert(doc! {"n": 1}),
            insert(doc! {"_id": 7, "n": 2}),
            insert(doc! {"n": 1}),
        ];
        let mut b = a.clone();
        assign_insert_ids(&mut a, || [1; 32]);
        assign_insert_ids(&mut b, || [1; 32]);
        assert_eq!(a, b, "same seed, same ids");
        let ids: Vec<_> = a
            .iter()
            .map(|x| match x {
                ValidAction::Insert { document, .. } => (document.keys().next().cloned(), document.get("_id").cloned()),
                _ => unreachable!(),
            })
            .collect();
        assert!(ids.iter().all(|(first, _)| first.as_deref() == Some("_id")));
        assert_eq!(
            ids[1].1,
            Some(bson::Bson::Int32(7)),
            "an _id of the plugin's own is kept"
        );
        assert_ne!(ids[0].1, ids[2].1, "equal documents get distinct ids");
        let mut c = vec![insert(doc! {"n": 1})];
        assign_insert_ids(&mut c, || [2; 32]);
        assert_ne!(c[0], a[0], "another seed, another id");
    }

    #[test]
    fn rules() {
        let id = doc! {"_id": 1}.to_vec().unwrap();
        check(vec![update("users", id.clone())], Ok(1));
        check(
            vec![Action::Report(Report {
                kind: "k".into(),
                key: "x".into(),
                message: "m".into(),
            })],
            Ok(1),
        );
        check(
            vec![update("users", id.clone()), update("orders", id.clone())],
            Err("action 1 (update on `orders`, document _id 1): collection is not in the pass's writes [users]"),
        );
        let mut big = doc! {"_id": 7, "blob": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0; MAX_BSON_BYTES] }}
            .to_vec()
            .unwrap();
        check(
            vec![Action::Insert(crate::plugin::contract::Insert {
                collection: "users".into(),
                document: std::mem::take(&mut big),
            })],
            Err("action 0 (insert on `users`, document _id 7): document is 16777241 bytes, over MongoDB's limit"),
        );
        check(vec![update("users", doc! {}.to_vec().unwrap())], Err("filter is empty"));
        check(
            vec![update("users", vec![5, 0, 0])],
            Err("filter is not well-formed BSON"),
        );
        check(
            vec![Action::Delete(Delete {
                collection: "users".into(),
                filter: doc! {}.to_vec().unwrap(),
                multi: true,
            })],
            Err("action 0 (delete on `users`): filter is empty"),
        );
        // The policy's rules, with the action's index, collection and _id around them.
        check(
            vec![Action::Delete(Delete {
                collection: "users".into(),
                filter: doc! {"_id": {"$exists": true}}.to_vec().unwrap(),
                multi: true,
            })],
            Err("action 0 (delete on `users`, document _id { \"$exists\": true }): filter of a multi-document action"),
        );
        check(
            vec![
                update("users", id.clone()),
                update("users", doc! {"_id": 2, "$where": "1"}.to_vec().unwrap()),
            ],
            Err(
                "action 1 (update on `users`, document _id 2): filter: `$where` runs JavaScript on the server (rule query-operators",
            ),
        );
        check(
            vec![update("godwit_metadata", id.clone())],
            Err("collection `godwit_metadata` is godwit's metadata collection"),
        );
        let long = "x".repeat(200);
        let err = validate(
            &Scope {
                writes: vec!["users"],
                source: Source::Process,
                policy: godwit_policy::Context::LOAD,
            },
            vec![update("orders", doc! {"_id": &long}.to_vec().unwrap())],
        )
        .unwrap_err();
        assert_eq!(err.document.unwrap().len(), 83, "long ids are cut");
    }

    /// The same action as the SDK's test harness sees it (`bson::Document`s)
    /// and as the host receives it (raw BSON bytes).
    fn to_host(action: &godwit_sdk::Action) -> Action {
        let b = |d: &Document| d.to_vec().unwrap();
        match action {
            godwit_sdk::Action::Update {
                collection,
                filter,
                update,
                upsert,
                multi,
            } => Action::Update(Update {
                collection: collection.clone(),
                filter: b(filter),
                update: b(update),
                upsert: *upsert,
                multi: *multi,
            }),
            godwit_sdk::Action::Insert { collection, document } => Action::Insert(crate::plugin::contract::Insert {
                collection: collection.clone(),
                document: b(document),
            }),
            godwit_sdk::Action::Delete {
                collection,
                filter,
                multi,
            } => Action::Delete(Delete {
                collection: collection.clone(),
                filter: b(filter),
                multi: *multi,
            }),
            godwit_sdk::Action::Report(_) => unreachable!("reports break no rule"),
            godwit_sdk::Action::Schema(godwit_policy::SchemaOp::CreateIndex { collection, index }) => Action::Schema(
                crate::plugin::contract::SchemaOp::CreateIndex(crate::plugin::contract::CreateIndex {
                    collection: collection.clone(),
                    index: crate::plugin::contract::IndexSpec {
                        keys: b(&index.keys),
                        name: index.name.clone(),
                        unique: index.unique,
                        partial_filter: index.partial_filter.as_ref().map(b),
                        collation: index.collation.as_ref().map(b),
                        expire_after_seconds: index.expire_after_seconds,
                    },
                }),
            ),
            godwit_sdk::Action::Schema(_) => unreachable!("the cases use create-index"),
        }
    }

    /// The rule a message names (`... (rule NAME: what to do)`).
    fn rule_named(message: &str) -> &str {
        let start = message.rfind("(rule ").map(|i| i + "(rule ".len()).unwrap_or(0);
        message[start..].split(':').next().unwrap_or("")
    }

    /// Every rule an action can break, one bad action each, fed to the host
    /// (`validate`) and to the SDK's test harness (`check_actions`): both
    /// refuse it under the same rule, with the same index, collection and
    /// `_id` in front. `well-formed-bson` cannot be broken from the SDK (its
    /// actions hold decoded documents) and `projection` is a manifest rule
    /// (`contract.rs` and the harness's `check_manifest` both call
    /// `godwit_policy::check_pass`).
    #[test]
    fn the_sdk_harness_refuses_what_the_host_refuses_under_the_same_rule() {
        use godwit_policy::Rule;
        use godwit_sdk::Action as Sdk;
        let blob = bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![0; MAX_BSON_BYTES],
        };
        let mut deep = doc! {"x": 1};
        for _ in 0..godwit_policy::MAX_DEPTH {
            deep = doc! {"a": deep};
        }
        let cases: Vec<(Rule, Sdk)> = vec![
            (Rule::Size, Sdk::insert("users", doc! {"_id": 1, "b": blob})),
            (Rule::Nesting, Sdk::insert("users", doc! {"_id": 1, "d": deep})),
            (Rule::Collection, Sdk::set("godwit_metadata", 1, doc! {"a": 1})),
            (Rule::Collection, Sdk::set("system.users", 1, doc! {"a": 1})),
            (Rule::Writes, Sdk::set("orders", 1, doc! {"a": 1})),
            (
                Rule::Query,
                Sdk::update_one("users", doc! {"_id": 1, "$where": "1"}, doc! {"$set": {"a": 1}}),
            ),
            (Rule::Query, Sdk::delete_one("users", doc! {"_id": {"$near": [0, 0]}})),
            (
                Rule::Update,
                Sdk::update_one("users", doc! {"_id": 1}, doc! {"$frobnicate": {"a": 1}}),
            ),
            (Rule::StorageKey, Sdk::insert("users", doc! {"_id": 1, "a.b": 1})),
            (
                Rule::StorageKey,
                Sdk::update_one("users", doc! {"_id": 1}, doc! {"$set": {"a": {"$b": 1}}}),
            ),
            (
                Rule::Nondeterministic,
                Sdk::update_one("users", doc! {"_id": 1}, doc! {"$currentDate": {"t": true}}),
            ),
            (
                Rule::Nondeterministic,
                Sdk::delete_one("users", doc! {"_id": 1, "t": {"$lt": "$$NOW"}}),
            ),
            (Rule::Unpinned, Sdk::delete_many("users", doc! {"status": "old"})),
            (Rule::Empty, Sdk::update_one("users", doc! {"_id": 1}, doc! {})),
            (Rule::Empty, Sdk::delete_one("users", doc! {})),
            (
                Rule::Schema,
                Sdk::create_index("users", godwit_sdk::Index::new("email_1", doc! {"email": 1})),
            ),
        ];
        let scope = Scope {
            writes: vec!["users"],
            source: Source::Process,
            policy: godwit_policy::Context {
                metadata_collection: Some(godwit_policy::DEFAULT_METADATA_COLLECTION),
                database: None,
                version_record: None,
            },
        };
        for (rule, action) in cases {
            let host = validate(&scope, vec![to_host(&action)]).unwrap_err().to_string();
            let sdk =
                godwit_sdk::testing::check_actions(&["users".to_string()], std::slice::from_ref(&action)).unwrap_err();
            assert_eq!(rule_named(&host), rule.name(), "host: {host}");
            assert_eq!(rule_named(&sdk), rule.name(), "harness: {sdk}");
            // The same words around the rule, up to the harness's own prefix.
            let (host_head, sdk_head) = (host.split(':').next().unwrap(), sdk.split(':').next().unwrap());
            assert_eq!(host_head, sdk_head, "host: {host}\nharness: {sdk}");
        }
    }
}
