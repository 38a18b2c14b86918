//! Seed 000, QDash v1.8.0 `backfill-user-id`, on QDash's own schema: every
//! user in `user` whose `user_id` is missing gets an immutable `usr_<hex>`
//! id, then each of the 22 collections of upstream's `USER_ID_FIELD_MIGRATIONS`
//! (`src/qdash/dbmodel/migration.py` of `oqtopus-team/qdash`) gets its
//! `*_user_id` fields filled from the username -> user_id map. Usernames stay
//! (they remain login names and display snapshots). The rules are upstream's,
//! the code is ours:
//!
//! - **Missing** means absent, `null` or `""`, for `user.user_id` and for every
//!   `*_user_id` field alike. Any other value is kept as it is.
//! - A reference is **matched** when its username field holds a non-empty
//!   string and its id field is missing; blank usernames are skipped.
//!   Matching is exact: no case folding, trimming or Unicode normalization
//!   (`Alice` is not `alice`).
//! - The map holds every user whose `username` and `user_id` are strings, and
//!   the id generated for every user missing one (whose username is a
//!   non-empty string). A username mapping to no user, or to `""`, is
//!   **unresolved**: counted and reported, never invented (deleted users,
//!   system authors, case variants, users whose `user_id` is not a string).
//! - Field pairs are top-level scalar fields, as upstream has them; nothing
//!   nested is touched. A value QDash's schema never holds there - an array
//!   of usernames, or an array in the id field - is **left as it is** and
//!   reported `skipped`: upstream would crash on the first (an unhashable list
//!   as a dict key) and overwrite the second whole with one id (its query's
//!   `{field: null}` matches an array holding a null); we never rewrite a value
//!   we did not compute.
//! - QDash indexes `username` as unique; a database where two users share one
//!   is refused in `begin` (upstream would give both the same id, which its
//!   unique `user_id` index then rejects mid-run).
//!
//! **Ids.** Upstream's `generate_user_id` is `usr_` + `uuid4().hex`: 32
//! lowercase hex digits from a random UUID. A plugin has no randomness (and a
//! resumed or replayed run must derive the same actions), so [`user_id_for`]
//! derives the 128 bits from sha256 over the user's `_id` (its BSON encoding)
//! and the optional `id_namespace` parameter, with the UUID version nibble set
//! to 8 (RFC 9562's custom, non-random version) instead of 4. For QDash this
//! is the same thing: the id is an opaque string (`user_id: str`, unique
//! index on strings, never parsed), in the same `usr_` + 32 lowercase hex
//! shape, unique because `_id`s are, and immutable because derived from `_id`
//! rather than from the username. What differs: the id is reproducible - a
//! dry run, the execute, a resume after a kill, a journal replay and even a
//! rerun on a restored backup give every user the same id - and anyone who
//! knows a user's `_id` can compute it (a `user_id` is an identifier, not a
//! secret; set `id_namespace` to a value of your own when copies of one
//! database must get distinct ids, as random ones would be).
//!
//! **Figures.** The `summary` report (from `finish`) is upstream's statistics
//! as JSON, same keys, same meanings, same order: `users_without_user_id`,
//! `users_updated`, per collection `matched` (unresolved included) and
//! `updated`, and `unresolved` per
//! collection and username (only collections that have some). Each
//! unresolved reference is also an `unresolved` report naming its document.
//! Strings in messages are JSON-escaped like Python's
//! `json.dumps(..., ensure_ascii=False)`, so the Python twin's report is the
//! same bytes.
//! One difference from upstream, on purpose: upstream's dry run reports
//! `users_updated` and `updated` as 0 because it writes nothing. godwit never
//! tells a plugin whether its actions will be applied (so that the dry run an
//! operator reviews is what the execute does), so here they count the writes
//! the plugin asks for: in a dry run, what the execute will update.
//!
//! Parameters (`--param k=v`): `id_namespace` (default empty), mixed into the
//! id derivation. Collection and field names are not parameters: QDash fixes
//! them in its code (Bunnet's `Settings.name`, no prefix), the contract's
//! manifest is static, and the database is chosen with godwit's `--db` (QDash's
//! `MONGO_DB_NAME`).

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, doc};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write;

/// QDash's user collection.
pub const USER: &str = "user";

/// Upstream's `USER_ID_FIELD_MIGRATIONS`: per collection, (username field,
/// user id field) pairs, in upstream's order (which is the summary's order).
pub const FIELD_PAIRS: &[(&str, &[(&str, &str)])] = &[
    ("project", &[("owner_username", "owner_user_id")]),
    (
        "project_membership",
        &[("username", "user_id"), ("invited_by", "invited_by_user_id")],
    ),
    (
        "notification",
        &[
            ("recipient_username", "recipient_user_id"),
            ("actor_username", "actor_user_id"),
        ],
    ),
    ("note_event", &[("actor", "actor_user_id")]),
    ("cooldown_wiring_event", &[("actor", "actor_user_id")]),
    ("forum_post", &[("username", "user_id")]),
    ("issue", &[("username", "user_id")]),
    ("issue_knowledge", &[("reviewed_by", "reviewed_by_user_id")]),
    ("backend", &[("username", "user_id")]),
    ("task", &[("username", "user_id")]),
    ("tag", &[("username", "user_id")]),
    ("flows", &[("username", "user_id")]),
    ("execution_history", &[("username", "user_id")]),
    ("execution_counter", &[("username", "user_id")]),
    ("chip", &[("username", "user_id")]),
    ("chip_history", &[("username", "user_id")]),
    ("qubit", &[("username", "user_id")]),
    ("qubit_history", &[("username", "user_id")]),
    ("coupling", &[("username", "user_id")]),
    ("coupling_history", &[("username", "user_id")]),
    ("calibration_note", &[("username", "user_id")]),
    (
        "task_result_history",
        &[("username", "user_id"), ("excluded_by", "excluded_by_user_id")],
    ),
];

const USER_PASS: usize = 0;

/// `usr_` + 32 lowercase hex digits: the first 16 bytes of
/// sha256("godwit/qdash-backfill-user-id\0" + `namespace` + "\0" + the BSON
/// bytes of `{"_id": id}`), shaped as a version-8 UUID (see the module doc).
pub fn user_id_for(id: &Bson, namespace: &str) -> String {
    let key = doc! {"_id": id.clone()}.to_vec().expect("an _id encodes as BSON");
    let mut hasher = Sha256::new();
    hasher.update(b"godwit/qdash-backfill-user-id\0");
    hasher.update(namespace.as_bytes());
    hasher.update(b"\0");
    hasher.update(&key);
    let digest = hasher.finalize();
    let mut bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::from("usr_");
    for b in bytes {
        write!(out, "{b:02x}").expect("string write");
    }
    out
}

/// A string as a JSON string literal, as Python's `json.dumps(s, ensure_ascii=False)` writes it.
pub use godwit_sdk::json_string as json_str;

/// An `_id` in a message: ObjectId as hex, a string JSON-quoted, an integer
/// in decimal (the forms the Python twin prints the same way).
pub fn id_text(id: &Bson) -> String {
    match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        Bson::String(s) => json_str(s),
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        _ => "(an _id of another type)".to_string(),
    }
}

/// Absent, `null` or `""`: QDash's three spellings of "no id yet".
pub fn is_missing(value: Option<&Bson>) -> bool {
    match value {
        None | Some(Bson::Null) => true,
        Some(Bson::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// First-seen-ordered counts (Python's dict order, which upstream's figures have).
#[derive(Debug, Default, Clone)]
struct Counts {
    order: Vec<(String, u64)>,
    index: HashMap<String, usize>,
}

impl Counts {
    fn add(&mut self, key: &str, n: u64) {
        match self.index.get(key) {
            Some(&i) => self.order[i].1 += n,
            None => {
                self.index.insert(key.to_string(), self.order.len());
                self.order.push((key.to_string(), n));
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct CollectionStats {
    matched: u64,
    updated: u64,
    /// Unresolved usernames per field pair, merged pair by pair at the end
    /// (upstream counts pair after pair into one dict).
    unresolved: Vec<Counts>,
}

pub struct BackfillUserId {
    namespace: String,
    /// username -> user_id: existing string ids, overridden by generated ones.
    ids: HashMap<String, String>,
    /// Usernames whose user's `user_id` is neither missing nor a string.
    unusable: HashMap<String, &'static str>,
    users_without_user_id: u64,
    users_updated: u64,
    collections: Vec<CollectionStats>,
}

/// The pass filter of a collection: documents where some pair may need its
/// id (upstream's query, one `$or` branch per pair). The plugin checks each
/// pair again itself; the filter only spares reading finished documents.
fn pass_filter(pairs: &[(&str, &str)]) -> Document {
    let branches: Vec<Document> = pairs
        .iter()
        .map(|(from, to)| doc! {*from: {"$type": "string", "$ne": ""}, *to: {"$in": [Bson::Null, ""]}})
        .collect();
    doc! {"$or": branches}
}

impl Migration for BackfillUserId {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("qdash-backfill-user-id", "1.8.0")
            // QDash's docs say "upgraded from v1.7.3"; 1.7.3 shipped no data
            // migration, so a database at 1.7.2 (the chain's step before this
            // one, `qdash-remove-coupling-from-qubit`) has the same schema.
            .requires(">=1.7.2, <1.8.0")
            .description(
                "QDash v1.8.0 backfill-user-id: usr_<hex> ids for users missing user_id, then the *_user_id \
                 fields of QDash's 22 collections from the username map (upstream's USER_ID_FIELD_MIGRATIONS); \
                 usernames are kept",
            )
            .pass(
                Pass::new(USER, USER)
                    .projection(doc! {"username": 1, "user_id": 1})
                    .writes([USER]),
            );
        for (collection, pairs) in FIELD_PAIRS {
            let mut projection = Document::new();
            for (from, to) in *pairs {
                projection.insert(*from, 1);
                projection.insert(*to, 1);
            }
            manifest = manifest.pass(
                Pass::new(*collection, *collection)
                    .filter(pass_filter(pairs))
                    .projection(projection)
                    .writes([*collection]),
            );
        }
        manifest
    }

    fn begin(params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let namespace = params.get("id_namespace").unwrap_or("").to_string();
        // Every user, paged: a map cut at one lookup's cap would report
        // the users past it unresolved.
        let users = cx.find_all(USER, doc! {}, Some(doc! {"username": 1, "user_id": 1}), 5_000)?;
        let mut holders: HashMap<&str, Vec<&Bson>> = HashMap::new();
        let mut ids = HashMap::new();
        let mut generated = HashMap::new();
        let mut unusable = HashMap::new();
        for user in &users {
            let id = user.get("_id").expect("find_all checks _id");
            let Some(Bson::String(username)) = user.get("username") else {
                continue;
            };
            holders.entry(username).or_default().push(id);
            match user.get("user_id") {
                value if is_missing(value) => {
                    if !username.is_empty() {
                        generated.insert(username.clone(), user_id_for(id, &namespace));
                    }
                }
                Some(Bson::String(existing)) => {
                    ids.insert(username.clone(), existing.clone());
                }
                Some(other) => {
                    unusable.insert(username.clone(), type_name(other));
                }
                None => unreachable!("absent is missing"),
            }
        }
        // The first shared username in `_id` order, so the message is stable.
        let shared = users
            .iter()
            .filter_map(|u| u.get_str("username").ok())
            .find_map(|u| holders.get_key_value(u).filter(|(_, held)| held.len() > 1));
        if let Some((username, held)) = shared {
            let held: Vec<String> = held.iter().map(|id| id_text(id)).collect();
            return Err(Error::new(format!(
                "user: username {} is held by {} users (_id {}); QDash's unique index on username forbids this, \
                 so this is not a QDash database as it should be - make the usernames unique, then run again",
                json_str(username),
                held.len(),
                held.join(", ")
            )));
        }
        let taken: HashMap<&str, &str> = ids.iter().map(|(u, i)| (i.as_str(), u.as_str())).collect();
        for (username, id) in &generated {
            if let Some(holder) = taken.get(id.as_str()) {
                return Err(Error::new(format!(
                    "user: the id derived for {} is {id}, which user {} already holds; run again with another \
                     --param id_namespace=...",
                    json_str(username),
                    json_str(holder)
                )));
            }
        }
        ids.extend(generated);
        cx.info(format!(
            "{} users, {} usernames mapped to an id",
            users.len(),
            ids.len()
        ));
        Ok(BackfillUserId {
            namespace,
            ids,
            unusable,
            users_without_user_id: 0,
            users_updated: 0,
            collections: FIELD_PAIRS
                .iter()
                .map(|(_, pairs)| CollectionStats {
                    unresolved: vec![Counts::default(); pairs.len()],
                    ..Default::default()
                })
                .collect(),
        })
    }

    fn process(&mut self, _cx: &mut Context, pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for document in batch {
            let id = document
                .get("_id")
                .cloned()
                .ok_or_else(|| Error::new("a document came without _id"))?;
            if pass == USER_PASS {
                self.user(&document, id, &mut actions);
            } else {
                self.references(pass - 1, &document, id, &mut actions);
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![Action::report("summary", "backfill-user-id", self.statistics())])
    }
}

fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Array(_) => "an array",
        Bson::Document(_) => "a document",
        Bson::Int32(_) | Bson::Int64(_) => "an integer",
        Bson::Double(_) => "a double",
        Bson::Boolean(_) => "a boolean",
        Bson::ObjectId(_) => "an ObjectId",
        _ => "not a string",
    }
}

impl BackfillUserId {
    /// The users pass: an id for each user missing one (upstream generates
    /// none for a blank or non-string username).
    fn user(&mut self, user: &Document, id: Bson, actions: &mut Vec<Action>) {
        let user_id = user.get("user_id");
        if !is_missing(user_id) {
            if let Some(other) = user_id.filter(|v| !matches!(v, Bson::String(_))) {
                actions.push(Action::report(
                    "skipped",
                    USER,
                    format!(
                        "user of _id {}: user_id is {}, kept as it is; references to this user stay unresolved",
                        id_text(&id),
                        type_name(other)
                    ),
                ));
            }
            return;
        }
        self.users_without_user_id += 1;
        match user.get("username") {
            Some(Bson::String(username)) if !username.is_empty() => {
                self.users_updated += 1;
                actions.push(Action::set(
                    USER,
                    id.clone(),
                    doc! {"user_id": user_id_for(&id, &self.namespace)},
                ));
            }
            _ => actions.push(Action::report(
                "skipped",
                USER,
                format!(
                    "user of _id {}: no username, so no user_id is generated (as upstream)",
                    id_text(&id)
                ),
            )),
        }
    }

    /// One document of collection `index` of [`FIELD_PAIRS`]: one `$set` of
    /// every id this run resolved for it, by `_id`.
    fn references(&mut self, index: usize, document: &Document, id: Bson, actions: &mut Vec<Action>) {
        let (collection, pairs) = FIELD_PAIRS[index];
        let mut set = Document::new();
        for (pair, (from, to)) in pairs.iter().enumerate() {
            let target = document.get(*to);
            match document.get(*from) {
                Some(Bson::String(username)) if !username.is_empty() => {
                    if let Some(Bson::Array(_)) = target {
                        actions.push(Action::report(
                            "skipped",
                            collection,
                            format!(
                                "{collection}.{to} of _id {} holds an array, not a missing id: left as it is",
                                id_text(&id)
                            ),
                        ));
                        continue;
                    }
                    if !is_missing(target) {
                        continue;
                    }
                    let stats = &mut self.collections[index];
                    stats.matched += 1;
                    match self.ids.get(username).filter(|u| !u.is_empty()) {
                        Some(user_id) => {
                            stats.updated += 1;
                            set.insert(*to, user_id.clone());
                        }
                        None => {
                            stats.unresolved[pair].add(username, 1);
                            let why = match self.unusable.get(username) {
                                Some(kind) => format!("user {}'s user_id is {kind}", json_str(username)),
                                None => format!("no user is named {}", json_str(username)),
                            };
                            actions.push(Action::report(
                                "unresolved",
                                username.clone(),
                                format!("{collection}.{from} of _id {}: {why}", id_text(&id)),
                            ));
                        }
                    }
                }
                Some(Bson::Array(_)) if is_missing(target) => actions.push(Action::report(
                    "skipped",
                    collection,
                    format!(
                        "{collection}.{from} of _id {} holds an array, not one username: left as it is",
                        id_text(&id)
                    ),
                )),
                _ => {}
            }
        }
        if !set.is_empty() {
            actions.push(Action::set(collection, id, set));
        }
    }

    /// Upstream's statistics dict as JSON (Python's `json.dumps` layout).
    fn statistics(&self) -> String {
        let mut out = format!(
            "{{\"users_without_user_id\": {}, \"users_updated\": {}, \"collections\": {{",
            self.users_without_user_id, self.users_updated
        );
        for (i, ((collection, _), stats)) in FIELD_PAIRS.iter().zip(&self.collections).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write!(
                out,
                "{}: {{\"matched\": {}, \"updated\": {}}}",
                json_str(collection),
                stats.matched,
                stats.updated
            )
            .expect("string write");
        }
        out.push_str("}, \"unresolved\": {");
        let mut first = true;
        for ((collection, _), stats) in FIELD_PAIRS.iter().zip(&self.collections) {
            let mut merged = Counts::default();
            for counts in &stats.unresolved {
                for (username, n) in &counts.order {
                    merged.add(username, *n);
                }
            }
            if merged.order.is_empty() {
                continue;
            }
            if !first {
                out.push_str(", ");
            }
            first = false;
            write!(out, "{}: {{", json_str(collection)).expect("string write");
            for (j, (username, n)) in merged.order.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                write!(out, "{}: {n}", json_str(username)).expect("string write");
            }
            out.push('}');
        }
        out.push_str("}}");
        out
    }
}

godwit_sdk::export!(BackfillUserId);

#[cfg(test)]
mod tests;
