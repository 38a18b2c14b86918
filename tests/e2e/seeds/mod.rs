//! Scenario tests from the seed documents (`/work/shared/seeds/`): real
//! migrations other projects ran with hand-written scripts, rebuilt as godwit
//! plugins (`plugins/qdash-*`, `datalab-*`, `caipe-*`, `uniqc-*`) and run the
//! way their runbooks describe - dry run, review the figures, execute (killed
//! midway and resumed), verify that a second dry run is clean - through the
//! real binary on the test server. Each module is one seed; this file holds
//! what they share.

mod alembic;
mod caipe;
mod datalab;
mod qdash;
mod qdash_chain;
mod uniqc;

use crate::db::TestDb;
use crate::support::{command, stderr, stdout};
use bson::{Document, doc};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A deterministic ObjectId for generated document `i` (time-ordered like real ones).
pub fn oid(i: u32) -> bson::oid::ObjectId {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&0x6500_0000_u32.to_be_bytes());
    bytes[8..].copy_from_slice(&i.to_be_bytes());
    bson::oid::ObjectId::from_bytes(bytes)
}

/// Every JSON document `godwit ... --json` printed (`upgrade` prints one per step).
pub fn json_documents(out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs godwit with `--json`, expects success, returns its JSON documents.
pub fn run_steps(db: &TestDb, journal: &Path, args: &[&str]) -> Vec<Value> {
    let out = command(db, journal, args).arg("--json").output().expect("run godwit");
    assert!(
        out.status.success(),
        "godwit {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    json_documents(&stdout(&out))
}

/// The figures a plugin reported as one `summary` report (a JSON object, see
/// `godwit_sdk::Tally`) in its `finish`.
pub fn figures(report: &Value) -> Value {
    let message = report["summary"]["finish"]["reports"]["summary"]["samples"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no summary report in {report:#}"));
    serde_json::from_str(message).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {message}"))
}

/// Count of report `kind` over every pass and `finish`.
pub fn report_count(report: &Value, kind: &str) -> u64 {
    let summary = &report["summary"];
    summary["passes"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&summary["finish"]])
        .map(|p| p["reports"][kind]["count"].as_u64().unwrap_or(0))
        .sum()
}

/// Sum of one counter (`updates`, `inserts`, `deletes`) over every pass and `finish`.
pub fn total(report: &Value, counter: &str) -> u64 {
    let summary = &report["summary"];
    summary["passes"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&summary["finish"]])
        .map(|p| p[counter].as_u64().unwrap())
        .sum()
}

/// The pass summary of pass `name`.
pub fn pass<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["summary"]["passes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pass {name} in {report:#}"))
}

pub fn init(db: &TestDb, journal: &Path, version: &str) {
    let out = command(db, journal, &["init", "--version", version]).output().unwrap();
    assert!(out.status.success(), "init {version}: {}", stderr(&out));
}

/// Starts `godwit args` (an execute run, throttled so that it is still busy),
/// waits until its progress marker satisfies `midway` - a batch of the wanted
/// pass is committed - and SIGKILLs it there: the operator's worst case.
/// Returns the progress marker it was killed at.
pub fn kill_midway(db: &TestDb, journal: &Path, args: &[&str], midway: impl Fn(&Document) -> bool) -> Document {
    let mut child = command(db, journal, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let marker = loop {
        if let Some(marker) = db
            .find_one("godwit_metadata", doc! {"_id": {"$regex": "^progress:"}})
            .filter(|m| midway(m))
        {
            break marker;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "godwit {args:?} ended ({status}) before it could be interrupted midway; throttle it more:\n{}",
                stderr(&out)
            );
        }
        assert!(Instant::now() < deadline, "godwit {args:?} never got midway");
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed, not finished: {status}");
    marker
}

/// The marker's pass index (`None` for `finish`).
pub fn marker_pass(marker: &Document) -> Option<i64> {
    marker.get_i64("pass").ok()
}

/// Creates an index on `collection`, as the application's schema would have it.
pub fn create_index(db: &TestDb, collection: &str, keys: Document, unique: bool) {
    crate::db::block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        let options = mongodb::options::IndexOptions::builder().unique(unique).build();
        let model = mongodb::IndexModel::builder().keys(keys).options(options).build();
        client
            .database(&db.name)
            .collection::<Document>(collection)
            .create_index(model)
            .await
            .unwrap_or_else(|e| panic!("creating an index on {collection}: {e}"));
    });
}
