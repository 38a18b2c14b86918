//! The lease lock (`{_id: "lock", run_id, plugin, host, pid, expires_at,
//! token}`) in the metadata collection: one runner per database. Each
//! batch's transaction writes the lock document too (a fence): a runner
//! whose lease was taken over cannot commit.

use super::{Db, DbError, Result, is_duplicate_key, mongo};
use bson::{DateTime, doc};
use mongodb::options::ReturnDocument;
use std::time::Duration;

impl Db {
    /// Takes the lease lock, or fails naming its holder. A lock held by the
    /// same run on the same host is taken over at once: the journal's file
    /// lock already proves that the previous process of this run is gone.
    pub async fn acquire_lock(&self, holder: &LockHolder, lease: Duration) -> Result<Lock> {
        self.acquire_lock_over(holder, lease, &[]).await
    }

    /// Like [`Db::acquire_lock`], and also takes over a lock held by one of
    /// `finished` - runs the journal shows finished, which write no more (a
    /// process killed after finishing never released its lock).
    pub async fn acquire_lock_over(&self, holder: &LockHolder, lease: Duration, finished: &[String]) -> Result<Lock> {
        let now = DateTime::now();
        let expires = DateTime::from_millis(now.timestamp_millis() + lease.as_millis() as i64);
        let filter = doc! {
            "_id": "lock",
            "$or": [
                {"expires_at": {"$lte": now}},
                {"run_id": &holder.run_id, "host": &holder.host},
                {"run_id": {"$in": finished}},
            ],
        };
        let update = doc! {
            "$set": {
                "run_id": &holder.run_id, "plugin": &holder.plugin, "host": &holder.host,
                "pid": holder.pid, "acquired_at": now, "expires_at": expires,
            },
            "$inc": {"token": 1_i64},
        };
        let result = self
            .meta()
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        match result {
            Ok(Some(lock)) => Ok(Lock {
                token: lock.get_i64("token").unwrap_or(0),
                run_id: holder.run_id.clone(),
                doc_id: LOCK_ID.to_string(),
                busy: Default::default(),
            }),
            Ok(None) => unreachable!("upsert returns the document"),
            Err(e) if is_duplicate_key(&e) => {
                let held = self
                    .meta()
                    .find_one(doc! {"_id": "lock"})
                    .await
                    .map_err(mongo("reading the lock holder"))?
                    .unwrap_or_default();
                Err(DbError::LockHeld {
                    db: self.name.clone(),
                    run_id: held.get_str("run_id").unwrap_or("?").to_string(),
                    plugin: held.get_str("plugin").unwrap_or("?").to_string(),
                    host: held.get_str("host").unwrap_or("?").to_string(),
                    pid: held
                        .get_i64("pid")
                        .or_else(|_| held.get_i32("pid").map(i64::from))
                        .unwrap_or(0),
                    expires_at: held
                        .get_datetime("expires_at")
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                })
            }
            Err(e) => Err(mongo(format!("taking the lock on {}", self.name))(e)),
        }
    }

    /// The lock document as it is, for display (`status`).
    pub async fn lock_document(&self) -> Result<Option<bson::Document>> {
        self.meta()
            .find_one(doc! {"_id": "lock"})
            .await
            .map_err(mongo("reading the lock holder"))
    }

    /// Extends the lease; fails with `LeaseLost` if another runner took it.
    pub async fn renew_lock(&self, lock: &Lock, lease: Duration) -> Result<()> {
        let _busy = lock.busy.lock().await;
        let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + lease.as_millis() as i64);
        let result = self
            .meta()
            .update_one(
                doc! {"_id": &lock.doc_id, "token": lock.token},
                doc! {"$set": {"expires_at": expires}},
            )
            .await
            .map_err(mongo("renewing the lock"))?;
        if result.matched_count == 0 {
            return Err(DbError::LeaseLost {
                db: self.name.clone(),
                run_id: lock.run_id.clone(),
            });
        }
        Ok(())
    }

    /// Frees the lock at once: the database's lock is removed; a fleet
    /// partition's claim expires now (the partition stays in the work table).
    pub async fn release_lock(&self, lock: &Lock) -> Result<()> {
        let filter = doc! {"_id": &lock.doc_id, "token": lock.token};
        let released = match lock.doc_id == LOCK_ID {
            true => self.meta().delete_one(filter).await.map(drop),
            false => self
                .meta()
                .update_one(filter, doc! {"$set": {"expires_at": DateTime::from_millis(0)}})
                .await
                .map(drop),
        };
        released.map_err(mongo("releasing the lock"))
    }
}

pub struct LockHolder {
    pub run_id: String,
    pub plugin: String,
    pub host: String,
    pub pid: i64,
}

/// The `_id` of the database's lock document.
pub const LOCK_ID: &str = "lock";

/// A lease held on a metadata document: the database's lock (`"lock"`), or
/// a fleet run's claim on one partition (`"partition:<run>:<pass>:<k>"`).
/// Every batch written under it fences on `{_id: doc_id, token}`.
#[derive(Debug, Clone)]
pub struct Lock {
    pub token: i64,
    pub run_id: String,
    pub doc_id: String,
    /// Held by a batch transaction (which writes the lock document to fence
    /// itself) and by a renewal, so that this process's own renewal never
    /// write-conflicts with its own transaction; a takeover by another runner
    /// still does, which is the point of the fence.
    pub busy: std::sync::Arc<tokio::sync::Mutex<()>>,
}
