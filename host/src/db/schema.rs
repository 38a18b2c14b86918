//! The schema document (`{_id: "schema", version, history}`) in the
//! metadata collection: reading the version only once it is known to be
//! godwit's, and setting it with a history entry by compare-and-set. With an
//! adopted version record (`--version-record`, [`VersionRecord`]) the
//! application's own version document is read as the current version and
//! set, in the application's history shape, in the same transaction as the
//! schema document - which stays the trust anchor.

use super::{Db, DbError, Result, is_duplicate_key, mongo};
use bson::{Bson, DateTime, Document, doc};

/// Plugin name in the history entries `godwit init` writes.
pub const INIT_PLUGIN: &str = "godwit init";

impl Db {
    /// The current schema document (`{_id: "schema", version, history}`), if any.
    pub async fn schema(&self) -> Result<Option<Document>> {
        self.meta()
            .find_one(doc! {"_id": "schema"})
            .await
            .map_err(mongo(format!(
                "reading the schema version from {}.{}",
                self.name, self.metadata
            )))
    }

    /// The schema version, once the schema document is known to be godwit's:
    /// see [`check_schema`]. With an adopted version record, the version its
    /// document holds (what the application reads), once both documents
    /// pass their checks ([`check_record`]).
    pub async fn current_version(&self) -> Result<Option<String>> {
        let schema = self.schema().await?;
        if let Some(schema) = &schema {
            self.check_schema(schema)?;
        }
        let Some(record) = &self.record else {
            return Ok(schema.and_then(|s| s.get_str("version").ok().map(str::to_string)));
        };
        let adopted = self.adopted().await?;
        if let Some(adopted) = &adopted {
            self.check_record(record, adopted, schema.as_ref())?;
        }
        Ok(adopted.and_then(|d| record.version_of(&d)))
    }

    /// The adopted version record's document, if it exists.
    pub async fn adopted(&self) -> Result<Option<Document>> {
        let Some(record) = &self.record else { return Ok(None) };
        self.db
            .collection::<Document>(&record.collection)
            .find_one(doc! {"_id": &record.id})
            .await
            .map_err(mongo(format!(
                "reading the version record {}",
                record.describe(&self.name)
            )))
    }

    /// The adopted document is the application's: its own entries (no
    /// `godwit_run_id`: `initialise`, `auto_stamp`, ...) are legitimate
    /// whatever they say. Two things are not trusted: a version that is not
    /// what the last history entry set (the application writes both
    /// together, and so does godwit), and an entry claiming to be godwit's
    /// whose run is not in godwit's own history with that version.
    pub fn check_record(&self, record: &VersionRecord, adopted: &Document, schema: Option<&Document>) -> Result<()> {
        match record.problem(adopted, schema, &self.metadata) {
            None => Ok(()),
            Some(problem) => Err(DbError::RecordUntrusted {
                db: self.name.clone(),
                record: record.describe(&self.name),
                problem,
            }),
        }
    }

    /// With an adopted version record: refuses to revert `run` when the
    /// record's history has an entry after the run's (the application, or
    /// another tool, set the version since), before anything is put back.
    /// The revert's stamp checks the same again in its transaction.
    pub async fn check_record_revert(&self, run: &str) -> Result<()> {
        let Some(record) = &self.record else { return Ok(()) };
        let Some(adopted) = self.adopted().await? else {
            return Ok(());
        };
        let history: Vec<&Document> = adopted
            .get_array(&record.history_field)
            .map(|h| h.iter().filter_map(Bson::as_document).collect())
            .unwrap_or_default();
        let Some(at) = history.iter().rposition(|h| h.get_str(GODWIT_RUN_ID).ok() == Some(run)) else {
            return Ok(());
        };
        match history.get(at + 1..).and_then(|later| later.last()) {
            None => Ok(()),
            Some(later) => Err(DbError::RecordMoved {
                db: self.name.clone(),
                record: record.describe(&self.name),
                run_id: run.to_string(),
                was: format!(
                    "{} (set by run {run})",
                    history[at].get_str(&record.version_field).unwrap_or("none")
                ),
                now: format!(
                    "{}, {} {}",
                    record.version_of(&adopted).unwrap_or_else(|| "none".into()),
                    record.action_field,
                    later.get_str(&record.action_field).unwrap_or("?")
                ),
            }),
        }
    }

    /// Every version godwit sets goes with a history entry naming it (runs,
    /// reverts and `init` alike), so a version that is not its last history
    /// entry's was set by something else, and is not trusted: a chain must
    /// not skip a pending migration, or run one twice, on a forged version.
    /// An empty history is accepted (a version set before godwit kept one).
    pub fn check_schema(&self, schema: &Document) -> Result<()> {
        let version = schema.get("version").cloned().unwrap_or(Bson::Null);
        let history = schema.get_array("history").map(Vec::as_slice).unwrap_or_default();
        let Some(last) = history.last() else {
            return Ok(());
        };
        let tampered = |problem: String| DbError::SchemaTampered {
            db: self.name.clone(),
            metadata: self.metadata.clone(),
            problem,
        };
        let Some(last) = last.as_document() else {
            return Err(tampered(
                "ends its history with something that is not a history entry".into(),
            ));
        };
        let recorded = last.get("version").cloned().unwrap_or(Bson::Null);
        if recorded != version {
            return Err(tampered(format!(
                "says version {version}, but its last history entry (run {}) set {recorded}",
                last.get("run_id").map_or("?".into(), Bson::to_string)
            )));
        }
        Ok(())
    }

    /// The schema document's history, oldest first, each entry as read.
    pub async fn history(&self) -> Result<Vec<Recorded>> {
        Ok(self.schema().await?.map(|s| Recorded::all(&s)).unwrap_or_default())
    }

    /// The history entry of `run_id`, if the schema document holds one.
    pub async fn history_entry(&self, run_id: &str) -> Result<Option<Recorded>> {
        Ok(self
            .history()
            .await?
            .into_iter()
            .find(|h| h.run_id.as_deref() == Some(run_id)))
    }

    /// Sets the version `entry` names (a revert may remove it: `None`) and
    /// appends `entry` to the history, once per run id, if the version is
    /// still `previous` (what the caller checked the run's requirement
    /// against): a version changed under a run is never overwritten.
    /// Returns false when the history already holds this run (stamped
    /// before a crash). With an adopted version record, `previous` is the
    /// record's version, and both documents are set in one transaction
    /// ([`Db::set_both`]).
    pub async fn stamp(&self, entry: &HistoryEntry, previous: Option<&str>) -> Result<bool> {
        self.set_version(entry.version(), previous, entry.run_id(), entry.to_document())
            .await
    }

    async fn set_version(
        &self,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        if self.record.is_some() {
            return self.set_both(version, previous, run_id, history_entry).await;
        }
        let schema = self.schema().await?;
        if holds_run(schema.as_ref(), run_id) {
            return Ok(false);
        }
        let now = schema.as_ref().and_then(|s| s.get_str("version").ok());
        let moved = || DbError::VersionMoved {
            db: self.name.clone(),
            run_id: run_id.to_string(),
            was: previous.unwrap_or("none").to_string(),
            now: now.unwrap_or("none").to_string(),
        };
        if now != previous {
            return Err(moved());
        }
        let matched = self.set_schema(version, previous, history_entry, None).await?;
        if matched == 0 {
            return Err(moved());
        }
        Ok(true)
    }

    /// Compare-and-set of the schema document's version: `previous` must
    /// still be there when the update lands. With no previous version the
    /// update upserts; a schema document that gained a version meanwhile
    /// makes that upsert a duplicate `_id`, which is the same refusal.
    /// Returns the number of documents matched (0: refused).
    async fn set_schema(
        &self,
        version: Option<&str>,
        previous: Option<&str>,
        history_entry: Document,
        session: Option<&mut mongodb::ClientSession>,
    ) -> Result<u64> {
        let version = version.map_or(Bson::Null, |v| Bson::String(v.to_string()));
        let set = doc! {"$set": {"version": version.clone(), "updated_at": DateTime::now()}, "$push": {"history": history_entry}};
        let context = || format!("setting version {version} in {}.{}", self.name, self.metadata);
        let filter = match previous {
            Some(previous) => doc! {"_id": "schema", "version": previous},
            None => doc! {"_id": "schema", "version": {"$in": [Bson::Null]}},
        };
        let meta = self.meta();
        let update = meta.update_one(filter, set).upsert(previous.is_none());
        let result = match session {
            Some(session) => update.session(session).await,
            None => update.await,
        };
        match result {
            Ok(r) => Ok(r.matched_count + u64::from(r.upserted_id.is_some())),
            Err(e) if is_duplicate_key(&e) => Ok(0),
            Err(e) => Err(mongo(context())(e)),
        }
    }

    /// With an adopted version record: the adopted document's version (the
    /// one the run's requirement was checked against, `previous`) and the
    /// schema document's (as read here) are both compared and set, each with
    /// its history entry, in one transaction - both or neither. A version the
    /// application moved meanwhile is never overwritten.
    async fn set_both(
        &self,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        let record = self.record.as_ref().expect("set_both needs a version record");
        let adopted_entry = record.entry(&history_entry);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = self
                .set_both_once(record, version, previous, run_id, &history_entry, &adopted_entry)
                .await;
            // A write conflict (the application wrote its document while
            // this transaction ran) is tried again: the next read sees the
            // application's version, and refuses. So is a commit that may or
            // may not have gone through: the next read finds the run's entry
            // if it did.
            // With a short backoff (100 ms doubling): a server that faulted
            // under load gets a moment.
            match outcome {
                Err(DbError::Mongo { error, .. })
                    if attempts < 5
                        && (error.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
                            || super::commit_outcome_unknown(&error)) =>
                {
                    tracing::info!("setting the version: {}, trying again", super::describe(&error));
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempts)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// One transaction of [`Db::set_both`]: committed when both documents
    /// were set, aborted otherwise.
    async fn set_both_once(
        &self,
        record: &VersionRecord,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: &Document,
        adopted_entry: &Document,
    ) -> Result<bool> {
        let mut session = self
            .client
            .start_session()
            .await
            .map_err(mongo("starting a session to set the version"))?;
        session
            .start_transaction()
            .await
            .map_err(mongo("starting the transaction that sets the version"))?;
        let outcome = self
            .set_both_in(
                &mut session,
                record,
                version,
                previous,
                run_id,
                history_entry,
                adopted_entry,
            )
            .await;
        match outcome {
            Ok(Some(done)) => session.commit_transaction().await.map(|()| done).map_err(mongo(format!(
                "committing the version in {} and {}",
                record.describe(&self.name),
                self.metadata
            ))),
            Ok(None) => {
                let _ = session.abort_transaction().await;
                Ok(false)
            }
            Err(e) => {
                let _ = session.abort_transaction().await;
                Err(e)
            }
        }
    }

    /// One attempt of [`Db::set_both`] inside `session`'s transaction: `None`
    /// when the schema document already holds `run_id` (stamped before a crash).
    #[allow(clippy::too_many_arguments)]
    async fn set_both_in(
        &self,
        session: &mut mongodb::ClientSession,
        record: &VersionRecord,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: &Document,
        adopted_entry: &Document,
    ) -> Result<Option<bool>> {
        let described = record.describe(&self.name);
        let schema = self
            .meta()
            .find_one(doc! {"_id": "schema"})
            .session(&mut *session)
            .await
            .map_err(mongo(format!(
                "reading the schema version from {}.{}",
                self.name, self.metadata
            )))?;
        if holds_run(schema.as_ref(), run_id) {
            return Ok(None);
        }
        let collection = self.db.collection::<Document>(&record.collection);
        let adopted = collection
            .find_one(doc! {"_id": &record.id})
            .session(&mut *session)
            .await
            .map_err(mongo(format!("reading the version record {described}")))?;
        let now = adopted.as_ref().and_then(|d| record.version_of(d));
        let moved = |now: Option<String>| DbError::RecordMoved {
            db: self.name.clone(),
            record: described.clone(),
            run_id: run_id.to_string(),
            was: previous.unwrap_or("none").to_string(),
            now: now.unwrap_or_else(|| "none".into()),
        };
        if now.as_deref() != previous {
            return Err(moved(now));
        }
        let ours = schema
            .as_ref()
            .and_then(|s| s.get_str("version").ok())
            .map(str::to_string);
        // A revert puts back the record's version from before the reverted
        // run's entry there - it may not be godwit's (the application had
        // auto-stamped, say). An application entry after the run's means the
        // application moved on since: setting the record back would
        // overwrite the application's version.
        let mut record_version = version.map(str::to_string);
        if let Ok(reverts) = history_entry.get_str("reverts") {
            let history: Vec<&Document> = adopted
                .as_ref()
                .and_then(|d| d.get_array(&record.history_field).ok())
                .map(|h| h.iter().filter_map(Bson::as_document).collect())
                .unwrap_or_default();
            let at = history
                .iter()
                .rposition(|h| h.get_str(GODWIT_RUN_ID).ok() == Some(reverts));
            match at {
                Some(i) if i + 1 == history.len() => {
                    record_version = i
                        .checked_sub(1)
                        .and_then(|j| history[j].get_str(&record.version_field).ok())
                        .filter(|v| !v.is_empty())
                        .map(str::to_string);
                }
                _ if at.is_some() || ours.as_deref() != previous => {
                    return Err(DbError::RecordMoved {
                        db: self.name.clone(),
                        record: described.clone(),
                        run_id: run_id.to_string(),
                        was: format!("{} (set by run {reverts})", ours.as_deref().unwrap_or("none")),
                        now: previous.unwrap_or("none").to_string(),
                    });
                }
                _ => {}
            }
        }
        let matched = self
            .set_schema(version, ours.as_deref(), history_entry.clone(), Some(&mut *session))
            .await?;
        if matched == 0 {
            return Err(DbError::VersionMoved {
                db: self.name.clone(),
                run_id: run_id.to_string(),
                was: ours.unwrap_or_else(|| "none".into()),
                now: "another value".into(),
            });
        }
        let field = &record.version_field;
        let filter = match previous {
            Some(previous) => doc! {"_id": &record.id, field: previous},
            // Datalab's own reader treats a missing, null or empty version as none.
            None => doc! {"_id": &record.id, field: {"$in": [Bson::Null, ""]}},
        };
        let value = record_version.map_or(Bson::Null, Bson::String);
        let mut adopted_entry = adopted_entry.clone();
        adopted_entry.insert(field, value.clone());
        let update = doc! {"$set": {field: value.clone()}, "$push": {&record.history_field: adopted_entry}};
        let result = collection
            .update_one(filter, update)
            .upsert(previous.is_none())
            .session(&mut *session)
            .await;
        let matched = match result {
            Ok(r) => r.matched_count + u64::from(r.upserted_id.is_some()),
            Err(e) if is_duplicate_key(&e) => 0,
            Err(e) => return Err(mongo(format!("setting {field} {value} in {described}"))(e)),
        };
        if matched == 0 {
            return Err(moved(Some("another value".into())));
        }
        Ok(Some(true))
    }
}

/// Whether a schema document's history holds an entry of `run_id`.
fn holds_run(schema: Option<&Document>, run_id: &str) -> bool {
    schema.and_then(|s| s.get_array("history").ok()).is_some_and(|history| {
        history
            .iter()
            .any(|h| h.as_document().and_then(|d| d.get_str("run_id").ok()) == Some(run_id))
    })
}

/// The key of godwit's run id in the entries it appends to an adopted
/// history; an entry without it is the application's.
pub const GODWIT_RUN_ID: &str = "godwit_run_id";

/// An application's own version document that godwit adopts, so that the
/// application and godwit read the same version (`--version-record
/// COLLECTION:ID`). History entries godwit appends there take the
/// application's keys (version, action, timestamp and the operator's
/// constant keys) and add godwit's own under `godwit_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub collection: String,
    pub id: String,
    /// The field holding the version (a string), in the document and in each history entry.
    pub version_field: String,
    /// The array of history entries.
    pub history_field: String,
    /// The entry key saying what set the version (`upgrade`, `initialise`, `revert`).
    pub action_field: String,
    /// The entry key of the time it was set (a UTC datetime).
    pub time_field: String,
    /// Constant keys the application's entries carry (`datalab_version=0.8.0`).
    pub extra: Vec<(String, String)>,
}

impl VersionRecord {
    /// Parses `COLLECTION:ID` (the `_id` a string) and checks the field names.
    pub fn parse(spec: &str, fields: [&str; 4], extra: &[String]) -> std::result::Result<VersionRecord, String> {
        let (collection, id) = spec
            .split_once(':')
            .filter(|(c, i)| !c.is_empty() && !i.is_empty())
            .ok_or_else(|| format!("--version-record {spec:?} is not COLLECTION:ID"))?;
        if collection.starts_with("system.") || collection.contains('$') {
            return Err(format!(
                "--version-record {spec:?}: {collection} cannot hold a version record"
            ));
        }
        let plain = |what: &str, name: &str| {
            if name.is_empty() || name.starts_with('$') || name.contains('.') {
                Err(format!(
                    "{what} {name:?} must be a top-level field name (not empty, no '.', no leading '$')"
                ))
            } else {
                Ok(name.to_string())
            }
        };
        let [version, history, action, time] = fields;
        let mut pairs = Vec::new();
        for kv in extra {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--history-set {kv:?} is not KEY=VALUE"))?;
            let k = plain("--history-set key", k)?;
            if k.starts_with("godwit_") || [version, action, time].contains(&k.as_str()) {
                return Err(format!("--history-set {kv:?}: {k} is a key godwit sets itself"));
            }
            pairs.push((k, v.to_string()));
        }
        Ok(VersionRecord {
            collection: collection.to_string(),
            id: id.to_string(),
            version_field: plain("--version-field", version)?,
            history_field: plain("--history-field", history)?,
            action_field: plain("--history-action-field", action)?,
            time_field: plain("--history-time-field", time)?,
            extra: pairs,
        })
    }

    /// What makes the adopted document untrusted, if anything (see
    /// [`Db::check_record`]); `schema` is godwit's schema document.
    pub fn problem(&self, adopted: &Document, schema: Option<&Document>, metadata: &str) -> Option<String> {
        let history = adopted
            .get_array(&self.history_field)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ours = schema.map(Recorded::all).unwrap_or_default();
        for entry in history {
            let Some(entry) = entry.as_document() else {
                return Some(format!(
                    "has something in {} that is not a history entry",
                    self.history_field
                ));
            };
            let Ok(run) = entry.get_str(GODWIT_RUN_ID) else {
                continue;
            };
            let version = entry.get_str(&self.version_field).ok();
            // A revert's entry sets the record back to the record's own
            // earlier version, which godwit's schema document may not share.
            let revert = entry.contains_key("godwit_reverts");
            let recorded = ours
                .iter()
                .any(|h| h.run_id.as_deref() == Some(run) && (revert || h.version.as_deref() == version));
            if !recorded {
                return Some(format!(
                    "holds an entry of godwit run {run} (version {}) that godwit's schema document in {metadata} \
                     does not record",
                    version.unwrap_or("none")
                ));
            }
        }
        let last = history.last().and_then(Bson::as_document)?;
        let recorded = last.get_str(&self.version_field).ok().filter(|v| !v.is_empty());
        let version = self.version_of(adopted);
        (recorded != version.as_deref()).then(|| {
            format!(
                "says {} {}, but its last {} entry set {}",
                self.version_field,
                version.as_deref().unwrap_or("none"),
                self.history_field,
                recorded.unwrap_or("none")
            )
        })
    }

    /// `db.collection {_id: "id"}`, for messages.
    pub fn describe(&self, db: &str) -> String {
        format!("{db}.{} {{_id: {:?}}}", self.collection, self.id)
    }

    /// The version the document holds, as the application reads it: a
    /// missing, null or empty version field is none.
    pub fn version_of(&self, document: &Document) -> Option<String> {
        document
            .get_str(&self.version_field)
            .ok()
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// The entry appended to the adopted history for godwit's own
    /// `history_entry` (as written to the schema document): the
    /// application's keys first, then godwit's.
    pub fn entry(&self, ours: &Document) -> Document {
        let plugin = ours.get_str("plugin").unwrap_or_default();
        let action = if plugin == INIT_PLUGIN {
            "initialise"
        } else if ours.contains_key("reverts") {
            "revert"
        } else {
            "upgrade"
        };
        let mut entry = Document::new();
        entry.insert(&self.version_field, ours.get("version").cloned().unwrap_or(Bson::Null));
        entry.insert(&self.action_field, action);
        entry.insert(&self.time_field, DateTime::now());
        for (k, v) in &self.extra {
            entry.insert(k, v);
        }
        entry.insert(GODWIT_RUN_ID, ours.get("run_id").cloned().unwrap_or(Bson::Null));
        entry.insert("godwit_plugin", plugin);
        for (key, theirs) in [("sha256", "godwit_sha256"), ("reverts", "godwit_reverts")] {
            if let Some(value) = ours.get(key) {
                entry.insert(theirs, value.clone());
            }
        }
        entry.insert(
            "godwit_version",
            ours.get("host_version").cloned().unwrap_or(Bson::Null),
        );
        entry
    }
}

/// A history entry as godwit writes it: one shape per writer. The field
/// names and order are the metadata format operators and auditors read.
#[derive(Debug, Clone)]
pub enum HistoryEntry {
    /// An execute run finished (`verified`: clean, skipped, or the residue allowed).
    Run {
        run_id: String,
        plugin: String,
        version: String,
        sha256: String,
        params: Document,
        journal_head: String,
        journal_entries: u64,
        counts: RunCounts,
        started_at_ms: i64,
        host_version: String,
        verified: String,
    },
    /// A revert set the version back (`None`: removed it).
    Revert {
        run_id: String,
        plugin: String,
        version: Option<String>,
        reverts: String,
        note: Option<String>,
        journal_head: String,
        journal_entries: u64,
        counts: RevertCounts,
        forced: bool,
        started_at_ms: i64,
        host_version: String,
    },
    /// `godwit init` stamped an existing schema.
    Init {
        run_id: String,
        version: String,
        host_version: String,
        forced: bool,
    },
}

/// A run's figures in its history entry: actions, and documents as the
/// server reported them (one action may touch many).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunCounts {
    pub documents: u64,
    pub updates: u64,
    pub inserts: u64,
    pub deletes: u64,
    pub documents_updated: u64,
    pub documents_inserted: u64,
    pub documents_deleted: u64,
}

/// A revert's figures in its history entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct RevertCounts {
    pub documents: u64,
    pub updates: u64,
    pub deletes: u64,
    pub conflicts: u64,
}

impl HistoryEntry {
    pub fn run_id(&self) -> &str {
        match self {
            HistoryEntry::Run { run_id, .. }
            | HistoryEntry::Revert { run_id, .. }
            | HistoryEntry::Init { run_id, .. } => run_id,
        }
    }

    /// The version it sets.
    pub fn version(&self) -> Option<&str> {
        match self {
            HistoryEntry::Run { version, .. } | HistoryEntry::Init { version, .. } => Some(version),
            HistoryEntry::Revert { version, .. } => version.as_deref(),
        }
    }

    pub fn to_document(&self) -> Document {
        let at = DateTime::from_millis;
        match self {
            HistoryEntry::Run {
                run_id,
                plugin,
                version,
                sha256,
                params,
                journal_head,
                journal_entries,
                counts: c,
                started_at_ms,
                host_version,
                verified,
            } => doc! {
                "run_id": run_id,
                "plugin": plugin,
                "version": version,
                "sha256": sha256,
                "params": params.clone(),
                "journal_head": journal_head,
                "journal_entries": *journal_entries as i64,
                "counts": {
                    "documents": c.documents as i64,
                    "updates": c.updates as i64,
                    "inserts": c.inserts as i64,
                    "deletes": c.deletes as i64,
                    "documents_updated": c.documents_updated as i64,
                    "documents_inserted": c.documents_inserted as i64,
                    "documents_deleted": c.documents_deleted as i64,
                },
                "started_at": at(*started_at_ms),
                "finished_at": DateTime::now(),
                "host_version": host_version,
                "verified": verified,
            },
            HistoryEntry::Revert {
                run_id,
                plugin,
                version,
                reverts,
                note,
                journal_head,
                journal_entries,
                counts: c,
                forced,
                started_at_ms,
                host_version,
            } => doc! {
                "run_id": run_id,
                "plugin": plugin,
                "version": version.clone(),
                "reverts": reverts,
                "note": note.clone(),
                "journal_head": journal_head,
                "journal_entries": *journal_entries as i64,
                "counts": {
                    "documents": c.documents as i64,
                    "updates": c.updates as i64,
                    "deletes": c.deletes as i64,
                    "conflicts": c.conflicts as i64,
                },
                "forced": forced,
                "started_at": at(*started_at_ms),
                "finished_at": DateTime::now(),
                "host_version": host_version,
            },
            HistoryEntry::Init {
                run_id,
                version,
                host_version,
                forced,
            } => doc! {
                "run_id": run_id,
                "plugin": INIT_PLUGIN,
                "version": version,
                "finished_at": DateTime::now(),
                "host_version": host_version,
                "forced": forced,
            },
        }
    }
}

/// A history entry as read back: what godwit decides on, typed, and the
/// whole document for display (it may hold fields of other versions).
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub run_id: Option<String>,
    pub plugin: Option<String>,
    pub version: Option<String>,
    /// For a run: the sha256 (hex) of the plugin file that ran.
    pub sha256: Option<String>,
    pub journal_head: Option<String>,
    /// For a revert: the run it reverts.
    pub reverts: Option<String>,
    pub verified: Option<String>,
    pub finished_at: Option<DateTime>,
    pub raw: Document,
}

impl Recorded {
    /// Every history entry of a schema document (entries that are not
    /// documents are skipped; `check_schema` refuses a history ending in one).
    pub fn all(schema: &Document) -> Vec<Recorded> {
        schema
            .get_array("history")
            .map(|h| h.iter().filter_map(Bson::as_document).map(Recorded::read).collect())
            .unwrap_or_default()
    }

    pub fn read(raw: &Document) -> Recorded {
        let text = |k: &str| raw.get_str(k).ok().map(str::to_string);
        Recorded {
            run_id: text("run_id"),
            plugin: text("plugin"),
            version: text("version"),
            sha256: text("sha256"),
            journal_head: text("journal_head"),
            reverts: text("reverts"),
            verified: text("verified"),
            finished_at: raw.get_datetime("finished_at").ok().copied(),
            raw: raw.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_entries_read_back_as_written() {
        let run = HistoryEntry::Run {
            run_id: "r1".into(),
            plugin: "p".into(),
            version: "1.2.0".into(),
            sha256: "ab".into(),
            params: doc! {"k": "v"},
            journal_head: "cd".into(),
            journal_entries: 7,
            counts: RunCounts {
                documents: 3,
                ..RunCounts::default()
            },
            started_at_ms: 0,
            host_version: "0.1.0".into(),
            verified: "clean".into(),
        };
        let written = run.to_document();
        let keys: Vec<&str> = written.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "run_id",
                "plugin",
                "version",
                "sha256",
                "params",
                "journal_head",
                "journal_entries",
                "counts",
                "started_at",
                "finished_at",
                "host_version",
                "verified"
            ]
        );
        let read = Recorded::read(&written);
        assert_eq!(read.run_id.as_deref(), Some("r1"));
        assert_eq!(read.version.as_deref(), Some("1.2.0"));
        assert_eq!(read.journal_head.as_deref(), Some("cd"));
        assert_eq!(read.sha256.as_deref(), Some("ab"));
        assert_eq!(read.verified.as_deref(), Some("clean"));

        // A revert to no version writes `version: null`, which reads as none.
        let revert = HistoryEntry::Revert {
            run_id: "r2".into(),
            plugin: "godwit-revert".into(),
            version: None,
            reverts: "r1".into(),
            note: Some("reverts run r1".into()),
            journal_head: "ef".into(),
            journal_entries: 3,
            counts: RevertCounts::default(),
            forced: false,
            started_at_ms: 0,
            host_version: "0.1.0".into(),
        };
        let written = revert.to_document();
        assert_eq!(written.get("version"), Some(&Bson::Null));
        assert_eq!(revert.version(), None);
        let read = Recorded::read(&written);
        assert_eq!((read.version, read.reverts.as_deref()), (None, Some("r1")));
        let init = HistoryEntry::Init {
            run_id: "init-1".into(),
            version: "1.0.0".into(),
            host_version: "0.1.0".into(),
            forced: true,
        };
        assert_eq!(init.to_document().get_str("plugin").unwrap(), INIT_PLUGIN);
    }

    fn datalab() -> VersionRecord {
        VersionRecord::parse(
            "database_metadata:datalab_schema_version",
            ["version", "history", "action", "timestamp"],
            &["datalab_version=0.8.0".to_string()],
        )
        .unwrap()
    }

    #[test]
    fn version_record_flags_are_validated() {
        let check = |spec: &str, fields: [&str; 4], extra: &[&str], expect: std::result::Result<(), &str>| {
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            let got = VersionRecord::parse(spec, fields, &extra).map(|_| ());
            match (got, expect) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(want)) => assert!(e.contains(want), "{spec}: {e}"),
                (got, expect) => panic!("{spec} {fields:?} {extra:?}: got {got:?}, expected {expect:?}"),
            }
        };
        let std = ["version", "history", "action", "timestamp"];
        check("database_metadata:datalab_schema_version", std, &[], Ok(()));
        check("meta:a:b", std, &[], Ok(()));
        check("database_metadata", std, &[], Err("is not COLLECTION:ID"));
        check(":id", std, &[], Err("is not COLLECTION:ID"));
        check("system.users:x", std, &[], Err("cannot hold a version record"));
        check(
            "m:x",
            ["schema.version", "history", "action", "timestamp"],
            &[],
            Err("--version-field"),
        );
        check(
            "m:x",
            ["version", "$history", "action", "timestamp"],
            &[],
            Err("--history-field"),
        );
        check("m:x", std, &["datalab_version"], Err("is not KEY=VALUE"));
        check("m:x", std, &["godwit_run_id=x"], Err("a key godwit sets itself"));
        check("m:x", std, &["action=upgrade"], Err("a key godwit sets itself"));
        assert_eq!(datalab().extra, [("datalab_version".to_string(), "0.8.0".to_string())]);
    }

    #[test]
    fn godwit_entries_in_an_adopted_history_take_the_application_shape() {
        let record = datalab();
        let run = HistoryEntry::Run {
            run_id: "r1".into(),
            plugin: "datalab-pin-refcodes".into(),
            version: "0.8.0".into(),
            sha256: "ab".into(),
            params: doc! {},
            journal_head: "cd".into(),
            journal_entries: 7,
            counts: RunCounts::default(),
            started_at_ms: 0,
            host_version: "0.1.0".into(),
            verified: "clean".into(),
        };
        let entry = record.entry(&run.to_document());
        let keys: Vec<&str> = entry.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "version",
                "action",
                "timestamp",
                "datalab_version",
                GODWIT_RUN_ID,
                "godwit_plugin",
                "godwit_sha256",
                "godwit_version"
            ]
        );
        assert_eq!(entry.get_str("version").unwrap(), "0.8.0");
        assert_eq!(entry.get_str("action").unwrap(), "upgrade");
        assert!(entry.get_datetime("timestamp").is_ok());
        let init = HistoryEntry::Init {
            run_id: "init-1".into(),
            version: "0.7.0".into(),
            host_version: "0.1.0".into(),
            forced: false,
        };
        assert_eq!(
            record.entry(&init.to_document()).get_str("action").unwrap(),
            "initialise"
        );
        let revert = HistoryEntry::Revert {
            run_id: "r2".into(),
            plugin: "godwit-revert".into(),
            version: None,
            reverts: "r1".into(),
            note: None,
            journal_head: "ef".into(),
            journal_entries: 3,
            counts: RevertCounts::default(),
            forced: false,
            started_at_ms: 0,
            host_version: "0.1.0".into(),
        };
        let entry = record.entry(&revert.to_document());
        assert_eq!(entry.get_str("action").unwrap(), "revert");
        assert_eq!(entry.get("version"), Some(&Bson::Null));
        assert_eq!(entry.get_str("godwit_reverts").unwrap(), "r1");
    }

    #[test]
    fn an_adopted_record_trusts_application_entries_and_only_godwit_entries_godwit_wrote() {
        let record = datalab();
        let schema = doc! {"_id": "schema", "version": "0.8.0", "history": [
            {"run_id": "init-1", "plugin": INIT_PLUGIN, "version": "0.7.0"},
            {"run_id": "r1", "plugin": "datalab-pin-refcodes", "version": "0.8.0"},
        ]};
        let app = |v: &str, action: &str| doc! {"version": v, "action": action, "datalab_version": v};
        let godwit = |run: &str, v: &str| doc! {"version": v, "action": "upgrade", GODWIT_RUN_ID: run};
        let check = |version: Option<&str>, history: Vec<Document>, expect: Option<&str>| {
            let mut adopted = doc! {"_id": "datalab_schema_version", "history": history};
            if let Some(v) = version {
                adopted.insert("version", v);
            }
            let got = record.problem(&adopted, Some(&schema), "godwit_metadata");
            match (&got, expect) {
                (None, None) => {}
                (Some(p), Some(want)) => assert!(p.contains(want), "{p}"),
                _ => panic!("{version:?}: got {got:?}, expected {expect:?}"),
            }
        };
        // The application's own entries, whatever they say, are legitimate.
        check(Some("0.7.0"), vec![app("0.7.0", "initialise")], None);
        check(
            Some("0.9.0"),
            vec![
                app("0.7.0", "initialise"),
                godwit("r1", "0.8.0"),
                app("0.9.0", "auto_stamp"),
            ],
            None,
        );
        check(
            Some("0.8.0"),
            vec![app("0.7.0", "initialise"), godwit("r1", "0.8.0")],
            None,
        );
        check(Some("0.7.0"), vec![], None);
        // A version moved without its entry.
        check(
            Some("0.9.0"),
            vec![app("0.7.0", "initialise")],
            Some("says version 0.9.0, but its last history entry set 0.7.0"),
        );
        check(None, vec![app("0.7.0", "initialise")], Some("says version none"));
        // An entry claiming to be godwit's that godwit did not write.
        check(
            Some("0.9.0"),
            vec![godwit("forged", "0.9.0")],
            Some("godwit run forged (version 0.9.0)"),
        );
        check(
            Some("0.9.0"),
            vec![godwit("r1", "0.9.0")],
            Some("godwit run r1 (version 0.9.0)"),
        );
        let odd = doc! {"version": "0.7.0", "history": [app("0.7.0", "initialise"), 1]};
        let problem = record.problem(&odd, Some(&schema), "godwit_metadata").unwrap();
        assert!(problem.contains("that is not a history entry"), "{problem}");
    }
}
