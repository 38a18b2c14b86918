//! The schema document (`{_id: "schema", version, history}`) in the
//! metadata collection: reading the version only once it is known to be
//! godwit's, and setting it with a history entry by compare-and-set.

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
    /// before a crash).
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
}
