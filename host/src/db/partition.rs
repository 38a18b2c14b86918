//! A fleet run's work table (`--workers`): each pass's `_id` space split
//! into partitions, one metadata document each -
//! `{_id: "partition:<run>:<pass>:<k>", kind: "partition", run, pass, index,
//! after, upto, state, host, process, expires_at, token, documents, runs,
//! holders, last_commits}` - claimed
//! by workers with the lock's lease and fencing protocol (a claim is a
//! [`Lock`] on its document: every batch written under it fences on its
//! token).

use super::lock::Lock;
use super::{Db, Result, mongo};
use crate::journal::{LastCommit, PartitionHolder};
use crate::plugin::contract::ValidPass;
use bson::{Bson, DateTime, Document, doc};
use futures_util::TryStreamExt;
use mongodb::options::ReturnDocument;
use std::time::Duration;

/// One partition as the work table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub pass: u32,
    pub index: u32,
    /// The `_id`s after this one (`None`: from the first)...
    pub after: Option<Bson>,
    /// ... up to and including this one (`None`: to the last).
    pub upto: Option<Bson>,
    /// The last `_id` a committed batch of the partition read, and the run
    /// that committed it (written in that batch's transaction).
    pub checkpoint: Option<Bson>,
    pub last_run: Option<String>,
    /// The server session (`lsid`) its previous holder wrote in: a holder
    /// killed inside a transaction left it open, and its journal (where the
    /// session is also recorded) may be on another machine, or lost.
    pub session: Option<Document>,
    /// Every run that wrote a batch of it (whose progress markers go when
    /// it is done).
    pub runs: Vec<String>,
    /// Every process that claimed it: where its journal is.
    pub holders: Vec<PartitionHolder>,
    /// The last commit of each run that wrote it, kept from its progress
    /// marker when the partition was done ([`Db::keep_last_commits`]).
    pub last_commits: Vec<LastCommit>,
}

/// Where a partition stands, for `status` and the run's summary.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub partition: Partition,
    pub done: bool,
    /// Who holds it, while its claim's lease runs.
    pub holder: Option<String>,
    pub documents: u64,
}

/// Who claims: this process of this host, with its journal. A claim made
/// by another process with the same journal is taken over at once (that
/// process is gone: the journal is locked by one process at a time), as the
/// lock's by the same run is; any other only once its lease expired.
pub struct Claimant {
    pub host: String,
    pub process: String,
    pub pid: i64,
    pub journal: String,
    /// The journal's directory (for auditors: [`PartitionHolder::path`]).
    pub path: String,
}

/// What a worker in another process needs to join a fleet run:
/// `{_id: "fleet:<run>", kind: "fleet", ...}` in the metadata collection,
/// written by the run when it splits a pass (`pass`: the one its workers
/// are on), removed with the work table when it is stamped.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetDoc {
    pub run: String,
    pub plugin: String,
    pub version: String,
    pub sha256: String,
    pub params: Vec<(String, String)>,
    pub pass: u32,
    pub before_images: bool,
    pub write_guard: bool,
    pub batch_size: Option<u32>,
    pub lease_secs: u64,
}

/// How a pass's `_id` space is split into partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    /// Scanned up to [`SCAN_MAX_DOCUMENTS`], sampled above.
    Auto,
    /// Every `_id`, read in order: exact sizes.
    Scan,
    /// A random sample, sorted by the server.
    Sample,
}

/// Passes of up to this many documents are split by reading every `_id`.
pub const SCAN_MAX_DOCUMENTS: u64 = 1_000_000;
/// `_id`s sampled per partition: the partitions' sizes vary by about
/// 1/sqrt(100) = 10% (measured on 1M documents in 16 partitions: standard
/// deviation 7-14% of the mean over six splits, extremes 0.77x and 1.33x).
pub const SAMPLES_PER_PARTITION: u64 = 100;

fn doc_id(run: &str, pass: u32, index: u32) -> String {
    format!("partition:{run}:{pass}:{index}")
}

impl Db {
    /// The upper bounds splitting `pass`'s documents into at most
    /// `partitions` ranges of about equal size, in `_id` order across BSON
    /// types. The ranges are `(.., b0]`, `(b0, b1]`, ..., `(bn, ..)`.
    /// Scanned: every `ceil(n / partitions)`-th `_id` the pass's filter
    /// matches, read in `_id` order (only the `_id`s travel). Sampled: the
    /// same over a random sample of [`SAMPLES_PER_PARTITION`] `_id`s per
    /// partition, which the server sorts in BSON order (`$sample`).
    pub async fn split_points(
        &self,
        pass: &ValidPass,
        partitions: u32,
        split: SplitBy,
        query_timeout: Duration,
    ) -> Result<Vec<Bson>> {
        let coll = self.db.collection::<Document>(&pass.collection);
        let context = || format!("splitting pass {:?} ({}) into partitions", pass.name, pass.collection);
        let count = coll
            .count_documents(pass.filter.clone())
            .max_time(query_timeout)
            .await
            .map_err(mongo(context()))?;
        let partitions = u64::from(partitions.max(1));
        if count < 2 || partitions == 1 {
            return Ok(Vec::new());
        }
        let sample = partitions * SAMPLES_PER_PARTITION;
        let sampled = match split {
            SplitBy::Scan => false,
            SplitBy::Sample => sample < count,
            SplitBy::Auto => count > SCAN_MAX_DOCUMENTS && sample < count,
        };
        let (mut cursor, of) = match sampled {
            false => {
                let cursor = coll
                    .find(pass.filter.clone())
                    .projection(doc! {"_id": 1})
                    .sort(doc! {"_id": 1})
                    .batch_size(10_000)
                    .await
                    .map_err(mongo(context()))?;
                (cursor, count)
            }
            true => {
                let pipeline = [
                    doc! {"$match": pass.filter.clone()},
                    doc! {"$sample": {"size": sample as i64}},
                    doc! {"$project": {"_id": 1}},
                    doc! {"$sort": {"_id": 1}},
                ];
                let cursor = coll
                    .aggregate(pipeline)
                    .max_time(query_timeout)
                    .batch_size(10_000)
                    .await
                    .map_err(mongo(context()))?;
                (cursor, sample)
            }
        };
        let size = of.div_ceil(partitions).max(1);
        let mut bounds: Vec<Bson> = Vec::new();
        let mut seen = 0u64;
        while let Some(document) = cursor.try_next().await.map_err(mongo(context()))? {
            seen += 1;
            // The last document closes no range: the last partition is open.
            // A sample may hold a document twice: a bound is never repeated.
            if seen.is_multiple_of(size)
                && seen < of
                && let Some(id) = document.get("_id")
                && bounds
                    .last()
                    .is_none_or(|last| super::id_key(last) != super::id_key(id))
            {
                bounds.push(id.clone());
            }
        }
        if sampled {
            tracing::info!(
                "pass {:?}: {} split points from a sample of {seen} of {count} documents",
                pass.name,
                bounds.len()
            );
        }
        Ok(bounds)
    }

    /// Writes pass `pass`'s partitions of run `run` into the work table;
    /// those already there (a resumed run) are left as they are.
    pub async fn write_partitions(&self, run: &str, pass: u32, bounds: &[Bson]) -> Result<()> {
        let count = bounds.len() as u32 + 1;
        for index in 0..count {
            // Wrapped: an `_id` may itself be null.
            let after = index.checked_sub(1).map(|k| doc! {"_id": bounds[k as usize].clone()});
            let upto = bounds.get(index as usize).map(|b| doc! {"_id": b.clone()});
            self.meta()
                .update_one(
                    doc! {"_id": doc_id(run, pass, index)},
                    doc! {"$setOnInsert": {
                        "kind": "partition", "run": run, "pass": i64::from(pass), "index": i64::from(index),
                        "after": after, "upto": upto, "state": "pending",
                        "expires_at": DateTime::from_millis(0), "token": 0_i64, "documents": 0_i64,
                    }},
                )
                .upsert(true)
                .await
                .map_err(mongo(format!("writing the partitions of run {run}, pass {pass}")))?;
        }
        Ok(())
    }

    /// Claims the first pending partition of `run`'s pass `pass` whose
    /// claim is free: never claimed, its lease expired, or held by another
    /// process that used this journal (gone).
    pub async fn claim_partition(
        &self,
        run: &str,
        pass: u32,
        claimant: &Claimant,
        lease: Duration,
    ) -> Result<Option<(Partition, Lock)>> {
        let now = DateTime::now();
        let expires = DateTime::from_millis(now.timestamp_millis() + lease.as_millis() as i64);
        let filter = doc! {
            "kind": "partition", "run": run, "pass": i64::from(pass), "state": "pending",
            "$or": [
                {"expires_at": {"$lte": now}},
                {"journal": &claimant.journal, "process": {"$ne": &claimant.process}},
            ],
        };
        let claimed = self
            .meta()
            .find_one_and_update(
                filter,
                doc! {
                    "$set": {"host": &claimant.host, "process": &claimant.process, "pid": claimant.pid,
                             "journal": &claimant.journal,
                             "acquired_at": now, "expires_at": expires},
                    "$inc": {"token": 1_i64},
                    "$addToSet": {"holders": {"host": &claimant.host, "journal": &claimant.journal,
                                              "path": &claimant.path}},
                },
            )
            .sort(doc! {"index": 1})
            .return_document(ReturnDocument::After)
            .await
            .map_err(mongo(format!("claiming a partition of run {run}, pass {pass}")))?;
        Ok(claimed.map(|d| {
            let partition = partition_of(&d);
            let lock = Lock {
                token: d.get_i64("token").unwrap_or(0),
                run_id: run.to_string(),
                doc_id: doc_id(run, pass, partition.index),
                busy: Default::default(),
            };
            (partition, lock)
        }))
    }

    /// The sessions of pass `pass`'s pending partitions whose claim expired
    /// (their holders are gone): a holder killed inside a transaction left
    /// it open on the partition's document, where a claim would wait for it.
    pub async fn expired_sessions(&self, run: &str, pass: u32) -> Result<Vec<Document>> {
        let now = DateTime::now();
        let documents: Vec<Document> = self
            .meta()
            .find(doc! {
                "kind": "partition", "run": run, "pass": i64::from(pass), "state": "pending",
                "expires_at": {"$lte": now}, "session": {"$exists": true},
            })
            .projection(doc! {"session": 1})
            .await
            .map_err(mongo(format!("reading the partitions of run {run}")))?
            .try_collect()
            .await
            .map_err(mongo(format!("reading the partitions of run {run}")))?;
        Ok(documents
            .into_iter()
            .filter_map(|d| d.get_document("session").ok().cloned())
            .collect())
    }

    /// Records the server session the claim's holder writes in (see
    /// [`Partition::session`]); only while `lock` holds the partition.
    pub async fn claim_session(&self, lock: &Lock, lsid: Document) -> Result<()> {
        self.meta()
            .update_one(
                doc! {"_id": &lock.doc_id, "token": lock.token},
                doc! {"$set": {"session": lsid}},
            )
            .await
            .map_err(mongo(format!("recording the session of {}", lock.doc_id)))?;
        Ok(())
    }

    /// Keeps in the partition's document, while `lock` holds it, the last
    /// commit of each run of `runs` whose progress marker is still there -
    /// before the markers go. Added to those kept before (a process killed
    /// after removing some markers keeps what it kept).
    pub async fn keep_last_commits(&self, lock: &Lock, runs: &[String]) -> Result<bool> {
        let mut kept = Vec::new();
        for run in runs {
            let Some(marker) = self.marker(run).await? else {
                continue;
            };
            let mut last = doc! {"run": run, "seq": marker.get_i64("seq").unwrap_or(0)};
            if let (Ok(at), Ok(hash)) = (marker.get_i64("images_at"), marker.get("images_sha256").ok_or(())) {
                last.insert("images_at", at);
                last.insert("images_sha256", hash.clone());
            }
            kept.push(last);
        }
        let result = self
            .meta()
            .update_one(
                doc! {"_id": &lock.doc_id, "token": lock.token},
                doc! {"$addToSet": {"last_commits": {"$each": kept}}},
            )
            .await
            .map_err(mongo(format!("keeping the last commits of {}", lock.doc_id)))?;
        Ok(result.matched_count == 1)
    }

    /// Marks a claimed partition done - only while `lock` still holds it.
    /// (Its `documents` were counted by each batch's transaction.)
    pub async fn partition_done(&self, lock: &Lock) -> Result<bool> {
        let result = self
            .meta()
            .update_one(
                doc! {"_id": &lock.doc_id, "token": lock.token},
                doc! {"$set": {"state": "done", "expires_at": DateTime::from_millis(0)}},
            )
            .await
            .map_err(mongo(format!("marking {} done", lock.doc_id)))?;
        Ok(result.matched_count == 1)
    }

    /// Every partition of `run`, in pass and index order.
    pub async fn partitions(&self, run: &str) -> Result<Vec<PartitionState>> {
        Ok(self
            .work_table(doc! {"run": run})
            .await?
            .into_iter()
            .map(|(_, state)| state)
            .collect())
    }

    /// The partitions of every fleet run the work table holds (unfinished
    /// ones: a stamped run's are removed), with their runs, for `status`.
    pub async fn work_table(&self, filter: Document) -> Result<Vec<(String, PartitionState)>> {
        let now = DateTime::now();
        let mut query = doc! {"kind": "partition"};
        query.extend(filter);
        let documents: Vec<Document> = self
            .meta()
            .find(query)
            .sort(doc! {"run": 1, "pass": 1, "index": 1})
            .await
            .map_err(mongo("reading the work table of fleet runs"))?
            .try_collect()
            .await
            .map_err(mongo("reading the work table of fleet runs"))?;
        Ok(documents
            .iter()
            .map(|d| {
                let done = d.get_str("state").is_ok_and(|s| s == "done");
                let live = d.get_datetime("expires_at").is_ok_and(|e| *e > now);
                let state = PartitionState {
                    partition: partition_of(d),
                    done,
                    holder: (!done && live).then(|| {
                        format!(
                            "{} pid {}",
                            d.get_str("host").unwrap_or("?"),
                            d.get_i64("pid").unwrap_or_default()
                        )
                    }),
                    documents: d.get_i64("documents").unwrap_or_default() as u64,
                };
                (d.get_str("run").unwrap_or("?").to_string(), state)
            })
            .collect())
    }

    /// Says which pass fleet run `fleet.run` is on, and how to join it.
    pub async fn announce_fleet(&self, fleet: &FleetDoc) -> Result<()> {
        let params: Document = fleet
            .params
            .iter()
            .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
            .collect();
        self.meta()
            .update_one(
                doc! {"_id": format!("fleet:{}", fleet.run)},
                doc! {"$set": {
                    "kind": "fleet", "run": &fleet.run, "plugin": &fleet.plugin, "version": &fleet.version,
                    "sha256": &fleet.sha256, "params": params, "pass": i64::from(fleet.pass),
                    "before_images": fleet.before_images, "write_guard": fleet.write_guard,
                    "batch_size": fleet.batch_size.map(i64::from), "lease_secs": fleet.lease_secs as i64,
                }},
            )
            .upsert(true)
            .await
            .map_err(mongo(format!("announcing fleet run {}", fleet.run)))?;
        Ok(())
    }

    /// The unfinished fleet runs of the plugin whose sha256 is `sha256`.
    pub async fn fleets(&self, sha256: &str) -> Result<Vec<FleetDoc>> {
        let documents: Vec<Document> = self
            .meta()
            .find(doc! {"kind": "fleet", "sha256": sha256})
            .await
            .map_err(mongo("reading the fleet runs"))?
            .try_collect()
            .await
            .map_err(mongo("reading the fleet runs"))?;
        Ok(documents
            .iter()
            .map(|d| FleetDoc {
                run: d.get_str("run").unwrap_or_default().to_string(),
                plugin: d.get_str("plugin").unwrap_or_default().to_string(),
                version: d.get_str("version").unwrap_or_default().to_string(),
                sha256: d.get_str("sha256").unwrap_or_default().to_string(),
                params: d
                    .get_document("params")
                    .map(|p| {
                        p.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                pass: d.get_i64("pass").unwrap_or_default() as u32,
                before_images: d.get_bool("before_images").unwrap_or(true),
                write_guard: d.get_bool("write_guard").unwrap_or(true),
                batch_size: d.get_i64("batch_size").ok().map(|b| b as u32),
                lease_secs: d.get_i64("lease_secs").unwrap_or(30) as u64,
            })
            .collect())
    }

    /// Removes `run`'s work table (once it is stamped).
    pub async fn delete_partitions(&self, run: &str) -> Result<()> {
        self.meta()
            .delete_many(doc! {"kind": {"$in": ["partition", "fleet"]}, "run": run})
            .await
            .map_err(mongo(format!("removing the partitions of run {run}")))?;
        Ok(())
    }
}

fn partition_of(d: &Document) -> Partition {
    let bound = |key: &str| d.get_document(key).ok().and_then(|b| b.get("_id")).cloned();
    Partition {
        pass: d.get_i64("pass").unwrap_or_default() as u32,
        index: d.get_i64("index").unwrap_or_default() as u32,
        after: bound("after"),
        upto: bound("upto"),
        checkpoint: bound("checkpoint"),
        last_run: d.get_str("last_run").ok().map(str::to_string),
        session: d.get_document("session").ok().cloned(),
        runs: d
            .get_array("runs")
            .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        holders: d
            .get_array("holders")
            .map(|h| {
                h.iter()
                    .filter_map(Bson::as_document)
                    .map(|h| {
                        let text = |key: &str| h.get_str(key).unwrap_or_default().to_string();
                        PartitionHolder {
                            host: text("host"),
                            journal: text("journal"),
                            path: text("path"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
        last_commits: d
            .get_array("last_commits")
            .map(|l| {
                l.iter()
                    .filter_map(Bson::as_document)
                    .filter_map(last_commit_of)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn last_commit_of(d: &Document) -> Option<LastCommit> {
    let hash = d
        .get_binary_generic("images_sha256")
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok());
    let at = d.get_i64("images_at").ok().map(|at| at as u64);
    Some(LastCommit {
        run: d.get_str("run").ok()?.to_string(),
        batch_seq: d.get_i64("seq").ok()? as u64,
        images: at.zip(hash),
    })
}
