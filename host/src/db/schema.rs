//! The schema document (`{_id: "schema", version, history}`) in the
//! metadata collection: reading the version only once it is known to be
//! godwit's, and setting it with a history entry by compare-and-set.

use super::{Db, DbError, Result, is_duplicate_key, mongo};
use bson::{Bson, DateTime, Document, doc};

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
    /// see [`check_schema`].
    pub async fn current_version(&self) -> Result<Option<String>> {
        let Some(schema) = self.schema().await? else {
            return Ok(None);
        };
        self.check_schema(&schema)?;
        Ok(schema.get_str("version").ok().map(str::to_string))
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

    /// The history entry of `run_id`, if the schema document holds one.
    pub async fn history_entry(&self, run_id: &str) -> Result<Option<Document>> {
        Ok(self
            .schema()
            .await?
            .and_then(|s| s.get_array("history").ok().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|h| h.as_document().cloned())
            .find(|h| h.get_str("run_id").ok() == Some(run_id)))
    }

    /// Records `version` and appends `history_entry`, once per run id, if the
    /// version is still `previous` (what the caller checked the run's
    /// requirement against): a version changed under a run is never
    /// overwritten. Returns false when the history already holds this run
    /// (stamped before a crash).
    pub async fn stamp(
        &self,
        version: &str,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        self.set_version(Some(version), previous, run_id, history_entry).await
    }

    /// Sets the version back (or removes it: `None`) after a revert and
    /// appends `history_entry`, once per run id, if the version is still
    /// `previous`.
    pub async fn restamp(
        &self,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        self.set_version(version, previous, run_id, history_entry).await
    }

    async fn set_version(
        &self,
        version: Option<&str>,
        previous: Option<&str>,
        run_id: &str,
        history_entry: Document,
    ) -> Result<bool> {
        let schema = self.schema().await?;
        if let Some(schema) = &schema
            && let Ok(history) = schema.get_array("history")
            && history
                .iter()
                .any(|h| h.as_document().and_then(|d| d.get_str("run_id").ok()) == Some(run_id))
        {
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
        let version = version.map_or(Bson::Null, |v| Bson::String(v.to_string()));
        let set = doc! {"$set": {"version": version.clone(), "updated_at": DateTime::now()}, "$push": {"history": history_entry}};
        let context = || format!("setting version {version} in {}.{}", self.name, self.metadata);
        // Compare and set: the version read above must still be there when
        // the update lands. With no previous version the update upserts; a
        // schema document that gained a version meanwhile makes that upsert
        // a duplicate `_id`, which is the same refusal.
        let filter = match previous {
            Some(previous) => doc! {"_id": "schema", "version": previous},
            None => doc! {"_id": "schema", "version": {"$in": [Bson::Null]}},
        };
        let matched = match self.meta().update_one(filter, set).upsert(previous.is_none()).await {
            Ok(r) => r.matched_count + u64::from(r.upserted_id.is_some()),
            Err(e) if is_duplicate_key(&e) => 0,
            Err(e) => return Err(mongo(context())(e)),
        };
        if matched == 0 {
            return Err(moved());
        }
        Ok(true)
    }
}
