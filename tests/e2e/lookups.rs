//! Plugins abusing the `find` import (`tests/plugins/hostile-lookups`) in an
//! execute run against a real server: lookups bounded in number and bytes
//! per call (one call per batch), cut at the call's deadline with
//! `maxTimeMS` sent to the server, refused on godwit's own state, and
//! refused on collections the manifest does not declare in its `reads`
//! (`tests/plugins/snoop`; contract 0.1: `contract-0-1`). Each is stopped
//! before any write, exit 4, with one `error:` line naming the plugin, run,
//! pass, batch and the bound, and the database unchanged.

use crate::db::{Server, TestDb, block_on, server, standalone};
use crate::support::{command, plugin, stderr, stdout};
use bson::{Document, doc};
use futures_util::TryStreamExt;
use std::path::Path;

const PLUGIN: &str = "hostile-lookups";
const FIRST_BATCH: &[&str] = &["pass 0 (things)", "batch 0 (documents up to _id 9)"];

/// Every collection a plugin could touch, and godwit's metadata (`meta`)
/// without its lease lock (taken before the first batch, expiring on its
/// own); the server's `system.*` collections (the profiler's) left out.
fn state(db: &TestDb, meta: &str) -> Vec<(String, Vec<Vec<u8>>)> {
    db.dump()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("system."))
        .map(|(name, docs)| {
            let docs = docs
                .into_iter()
                .filter(|raw| {
                    name != meta || bson::RawDocument::from_bytes(raw).unwrap().get_str("_id").ok() != Some("lock")
                })
                .collect();
            (name, docs)
        })
        .filter(|(_, docs): &(String, Vec<Vec<u8>>)| !docs.is_empty())
        .collect()
}

fn disk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                disk_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

/// A database with 25 things (batches of 10), prepared by `setup`.
fn things(server: &Server, setup: impl FnOnce(&TestDb)) -> TestDb {
    let db = TestDb::new(server, "lookups");
    db.insert("things", (0..25).map(|i| doc! {"_id": i, "n": i}).collect());
    setup(&db);
    db
}

/// Waits until the server answers again: SecantusDB finishes a query godwit
/// stopped waiting for (it ignores `maxTimeMS`) and answers nobody meanwhile.
fn wait_for_server(db: &TestDb) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    block_on(async {
        let mut options = mongodb::options::ClientOptions::parse(&db.uri).await.unwrap();
        options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
        let client = mongodb::Client::with_options(options).unwrap();
        while let Err(e) = client.database("admin").run_command(doc! {"ping": 1}).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not come back: {e}"
            );
        }
    });
}

struct Contained {
    line: String,
    stderr: String,
    journal_bytes: u64,
}

/// Runs the plugin with `params` (and `args`) in execute mode and checks
/// containment: exit 4, one error line naming the plugin and `expect`, the
/// database unchanged and no batch committed.
fn contained(db: &TestDb, meta: &str, params: &[&str], args: &[&str], expect: &[&str]) -> Contained {
    contained_by(PLUGIN, db, meta, params, args, expect)
}

/// [`contained`] for plugin `name`.
fn contained_by(name: &str, db: &TestDb, meta: &str, params: &[&str], args: &[&str], expect: &[&str]) -> Contained {
    let before = state(db, meta);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin(name);
    let mut argv = vec!["run", file.to_str().unwrap(), "--execute"];
    for p in params {
        argv.extend(["--param", p]);
    }
    argv.extend(args);
    let out = command(db, journal.path(), &argv).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{params:?}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{params:?}: one error line: {err}");
    let line = errors[0];
    let plugin_named = format!("plugin {name}");
    for part in [plugin_named.as_str(), "run "].iter().chain(expect) {
        assert!(line.contains(part), "{params:?}: {part:?} missing from: {line}");
    }
    wait_for_server(db);
    assert_eq!(state(db, meta), before, "{params:?}: the database changed");
    assert!(
        db.find_one(meta, doc! {"_id": {"$regex": "^progress:"}}).is_none(),
        "{params:?}: no batch committed"
    );
    eprintln!("lookups {params:?}: contained, exit 4: {line}");
    Contained {
        line: line.to_string(),
        stderr: err,
        journal_bytes: disk_size(journal.path()),
    }
}

#[test]
fn lookup_flood_is_stopped_at_the_per_call_bound() {
    let db = things(server(), |_| {});
    let c = contained(
        &db,
        "godwit_metadata",
        &["behaviour=flood"],
        // Generous, so that the count bound and not the deadline stops it.
        &["--call-timeout", "600"],
        FIRST_BATCH,
    );
    assert!(
        c.line.contains(
            "made more than 10000 lookups in one call (the last on `things`), the most one call - one batch - may make"
        ),
        "{}",
        c.line
    );
    assert!(
        c.journal_bytes < 4 << 20,
        "the journal holds none of the refused call's lookups: {} bytes",
        c.journal_bytes
    );
    eprintln!("lookup flood: journal {} bytes on disk", c.journal_bytes);
}

#[test]
fn lookups_past_the_byte_bound_per_call_are_stopped() {
    // 40 documents of 1 MiB: each lookup of the whole collection moves 40 MiB,
    // the fourth would pass the call's 128 MiB.
    let db = things(server(), |db| {
        for chunk in 0..4 {
            db.insert(
                "blobs",
                (0..10)
                    .map(|i| {
                        let blob = bson::Binary {
                            subtype: bson::spec::BinarySubtype::Generic,
                            bytes: vec![7u8; 1 << 20],
                        };
                        doc! {"_id": chunk * 10 + i, "blob": blob}
                    })
                    .collect(),
            );
        }
    });
    let c = contained(
        &db,
        "godwit_metadata",
        &["behaviour=fat"],
        &["--call-timeout", "600"],
        FIRST_BATCH,
    );
    assert!(
        c.line.contains("find on `blobs` returned more than the ")
            && c.line
                .contains("bytes left of the 134217728 the lookups of one call - one batch - may move"),
        "{}",
        c.line
    );
    assert!(
        c.journal_bytes < 4 << 20,
        "the journal holds none of the refused call's lookups: {} bytes",
        c.journal_bytes
    );
    eprintln!("fat lookups: journal {} bytes on disk", c.journal_bytes);
}

/// The profiler's record of the `find`s on `collection` that match `which`
/// (SecantusDB keeps one per command in `system.profile`, with the command as
/// sent; the test's own dumps are there too).
fn profiled_finds(db: &TestDb, collection: &str, which: Document) -> Vec<Document> {
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .collection::<Document>("system.profile")
            .find(doc! {"$and": [{"ns": format!("{}.{collection}", db.name), "command.find": collection}, which]})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    })
}

fn max_time_ms(find: &Document) -> Option<i64> {
    let command = find.get_document("command").ok()?;
    match command.get("maxTimeMS")? {
        bson::Bson::Int32(n) => Some(i64::from(*n)),
        bson::Bson::Int64(n) => Some(*n),
        bson::Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

#[test]
fn slow_lookup_is_cut_at_the_call_deadline_with_max_time_sent() {
    // A server of its own: SecantusDB runs the backtracking regex to its end
    // whatever `maxTimeMS` says (a real mongod stops it there), and no other
    // test should wait for it meanwhile.
    let server = standalone();
    let db = things(&server, |db| {
        db.insert(
            "slow",
            (0..6)
                .map(|i| doc! {"_id": i, "s": format!("{}!", "a".repeat(26))})
                .collect(),
        );
    });
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .run_command(doc! {"profile": 2})
            .await
            .unwrap();
    });
    let c = contained(
        &db,
        "godwit_metadata",
        &["behaviour=slow"],
        &["--call-timeout", "2", "--query-timeout", "7"],
        FIRST_BATCH,
    );
    assert!(
        c.line.contains("call exceeded --call-timeout 2s (")
            && c.line.contains(" s of it in lookups; the find on `slow` was cut off)"),
        "{}",
        c.line
    );
    // The server profiles the find when its regex has run to the end, which
    // on a loaded machine can come well after godwit cut the call off.
    let waited = std::time::Instant::now();
    let lookups = loop {
        let lookups = profiled_finds(&db, "slow", doc! {"command.filter.s": {"$exists": true}});
        if !lookups.is_empty() || waited.elapsed() > std::time::Duration::from_secs(120) {
            break lookups;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(!lookups.is_empty(), "the lookup reached the server");
    for find in &lookups {
        let ms = max_time_ms(find).unwrap_or_else(|| panic!("a lookup without maxTimeMS: {find}"));
        assert!((1..=2_000).contains(&ms), "maxTimeMS {ms} is not within the call's 2 s");
    }
    // The pass reader asks for batches of the pass's size; the dumps do not.
    let passes = profiled_finds(&db, "things", doc! {"command.batchSize": {"$exists": true}});
    assert!(!passes.is_empty(), "the pass read `things`");
    for find in &passes {
        assert_eq!(
            max_time_ms(find),
            Some(7_000),
            "the pass's query carries --query-timeout: {find}"
        );
    }
    eprintln!(
        "slow lookup: cut at the call deadline; maxTimeMS sent: lookup {:?}, pass {:?}",
        lookups.iter().map(max_time_ms).collect::<Vec<_>>(),
        passes.iter().map(max_time_ms).collect::<Vec<_>>()
    );
}

#[test]
fn lookups_on_godwits_own_state_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("godwit_metadata", "godwit_metadata"),
        ("system.users", "godwit_metadata"),
        ("system.version", "godwit_metadata"),
        // The metadata collection is whatever --metadata-collection names.
        ("gw_meta", "gw_meta"),
    ];
    for (collection, meta) in cases {
        let db = things(server(), |_| {});
        let journal = tempfile::tempdir().unwrap();
        // A stamped schema version, history and all: what the plugin is after.
        let out = command(
            &db,
            journal.path(),
            &["init", "--version", "1.0.0", "--metadata-collection", meta],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "init: {}", stderr(&out));
        let param = format!("collection={collection}");
        let refused = format!("lookups on `{collection}` are refused");
        let mut expect = FIRST_BATCH.to_vec();
        expect.push(&refused);
        let c = contained(
            &db,
            meta,
            &["behaviour=read", &param],
            &["--metadata-collection", meta],
            &expect,
        );
        assert!(
            c.stderr
                .lines()
                .any(|l| l.contains("WARN") && l.contains("lookup refused")),
            "the refusal is reported in the log: {}",
            c.stderr
        );
    }
}

#[test]
fn lookup_filters_pass_the_plugin_policy_before_anything_is_decoded_or_sent() {
    for (query, rule) in [("where", "rule query-operators"), ("deep", "rule nesting-depth")] {
        let db = things(server(), |_| {});
        let param = format!("query={query}");
        let mut expect = FIRST_BATCH.to_vec();
        expect.extend(["lookup on `things` refused", rule]);
        contained(&db, "godwit_metadata", &["behaviour=query", &param], &[], &expect);
    }
}

/// What `secrets` holds: text that must appear nowhere a refused lookup
/// could have put it.
const SECRET: &str = "hunter2-declared-reads";

/// 25 things and a `secrets` collection, with the profiler on (SecantusDB
/// records every command it receives in `system.profile`).
fn things_and_secrets(server: &Server) -> TestDb {
    let db = things(server, |db| {
        db.insert("secrets", vec![doc! {"_id": 1, "password": SECRET}]);
    });
    block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        client
            .database(&db.name)
            .run_command(doc! {"profile": 2})
            .await
            .unwrap();
    });
    db
}

fn holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            holds(&e.path(), needle)
        } else {
            std::fs::read(e.path())
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        }
    })
}

#[test]
fn an_undeclared_lookup_is_refused_before_it_reaches_the_server_or_the_journal() {
    let db = things_and_secrets(server());
    let before = state(&db, "godwit_metadata");
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("snoop");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    let line = errors[0];
    for part in [
        "plugin snoop",
        "run ",
        "pass 0 (things)",
        "batch 0 (documents up to _id 9)",
        "lookup on `secrets` refused: collection `secrets` is neither read by a pass [things] nor in the \
         manifest's reads []",
        "(rule undeclared-read: declare the collection in the manifest's `reads`)",
    ] {
        assert!(line.contains(part), "{part:?} missing from: {line}");
    }
    // Nothing of `secrets` anywhere: not in the output, not in the journal,
    // not in the database (a full dump, godwit's metadata included, is
    // unchanged and no batch committed), and no find on it at the server.
    assert!(!stdout(&out).contains(SECRET) && !err.contains(SECRET), "{err}");
    assert!(
        !holds(journal.path(), SECRET.as_bytes()),
        "the journal holds the secret"
    );
    assert_eq!(state(&db, "godwit_metadata"), before, "the database changed");
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": {"$regex": "^progress:"}})
            .is_none()
    );
    // godwit's finds carry `maxTimeMS` (the test's own dumps do not).
    let godwits = || doc! {"command.maxTimeMS": {"$exists": true}};
    assert!(
        profiled_finds(&db, "secrets", godwits()).is_empty(),
        "a find on secrets reached the server"
    );
    assert!(
        !profiled_finds(
            &db,
            "things",
            doc! {"command.limit": 1, "command.maxTimeMS": {"$exists": true}}
        )
        .is_empty(),
        "the lookup on the pass's own collection was served"
    );
    eprintln!("undeclared read: refused, exit 4: {line}");

    // The same code declaring `secrets` in its reads runs (and, being what it
    // is, copies the secret: declared reads are the operator's to review).
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("snoop-declared");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let things = db.find_all("things");
    assert_eq!(things.len(), 25);
    for thing in &things {
        let leak = thing.get_array("leak").unwrap_or_else(|_| panic!("{thing}"));
        assert_eq!(
            leak[0].as_document().unwrap().get_str("password").ok(),
            Some(SECRET),
            "{thing}"
        );
        assert_eq!(thing.get_i64("things").ok(), Some(1), "{thing}");
    }
    assert!(!profiled_finds(&db, "secrets", godwits()).is_empty());
}

#[test]
fn a_contract_0_1_plugin_reads_its_passes_unless_the_operator_allows_undeclared_reads() {
    let db = TestDb::new(server(), "lookups_v01");
    db.insert("items", (0..12).map(|i| doc! {"_id": i}).collect());
    db.insert("owners", (0..3).map(|i| doc! {"_id": i, "name": SECRET}).collect());
    let c = contained_by(
        "contract-0-1",
        &db,
        "godwit_metadata",
        &["lookup=owners"],
        &[],
        &[
            "pass 0 (items)",
            "batch 0 (documents up to _id 11)",
            "lookup on `owners` refused: collection `owners` is not read by a pass [items], and the plugin was \
             built for contract 0.1, which does not declare reads",
            "or run it with --allow-undeclared-reads",
            "(rule undeclared-read",
        ],
    );
    assert!(!c.stderr.contains(SECRET), "{}", c.stderr);

    // Its lookups on its pass's collection never needed the flag; with it,
    // the old rule: any collection but godwit's own state.
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("contract-0-1");
    let run = |args: &[&str]| {
        let mut argv = vec!["run", file.to_str().unwrap(), "--execute"];
        argv.extend(args);
        command(&db, journal.path(), &argv).output().unwrap()
    };
    let out = run(&["--param", "lookup=owners", "--allow-undeclared-reads"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let items = db.find_all("items");
    assert!(
        items
            .iter()
            .all(|d| d.get_bool("v1").ok() == Some(true) && d.get_i64("seen").ok() == Some(3)),
        "{items:?}"
    );

    // The flag does not reach godwit's own state.
    let db = TestDb::new(server(), "lookups_v01_meta");
    db.insert("items", (0..12).map(|i| doc! {"_id": i}).collect());
    contained_by(
        "contract-0-1",
        &db,
        "godwit_metadata",
        &["lookup=godwit_metadata"],
        &["--allow-undeclared-reads"],
        &["pass 0 (items)", "lookups on `godwit_metadata` are refused"],
    );
}

/// `running-total` looks up, in every batch, the total the batch before it
/// wrote. godwit runs batch N+1 through the plugin while batch N commits;
/// here N+1's lookup ran before N's write, so the batch is processed again
/// after N committed, from a plugin restarted on the committed batches, and
/// the pass goes on one batch after the other: every running total is the
/// one a strictly sequential run computes.
#[test]
fn a_batch_that_looks_up_what_the_batch_before_it_wrote_sees_that_write() {
    let db = TestDb::new(server(), "lookups_running_total");
    let n = |i: i64| (i * 7) % 13 + 1;
    db.insert("items", (0..95).map(|i| doc! {"_id": i, "n": n(i)}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("running-total");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .env("RUST_LOG", "godwit=info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut total = 0;
    for item in db.find_all("items") {
        let id = item.get_i64("_id").unwrap();
        total += n(id);
        assert_eq!(item.get_i64("running").ok(), Some(total), "{item}");
    }
    let totals = db.find_all("totals");
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(totals[0].get_i64("value").ok(), Some(total), "{totals:?}");
    // The overlap happened, and was undone once.
    let err = stderr(&out);
    let again: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("processed again: its lookups ran while batch 0 committed"))
        .collect();
    assert_eq!(again.len(), 1, "{err}");
    assert!(
        again[0].contains("pass 0 (items), batch 1 (documents up to _id 19)"),
        "{}",
        again[0]
    );
}

/// A plugin call that fails on a batch processed ahead (while the batch
/// before it committed) fails the run as a run without overlap does: the
/// batch before is committed, the error names the failing batch (exit 4),
/// and once the document is mended the same command resumes and finishes
/// with every running total right.
#[test]
fn a_failure_of_the_batch_processed_ahead_is_the_one_a_sequential_run_reports() {
    let db = TestDb::new(server(), "lookups_running_total_fails");
    db.insert(
        "items",
        (0..35_i64)
            .map(|i| match i {
                15 => doc! {"_id": i},
                _ => doc! {"_id": i, "n": i},
            })
            .collect(),
    );
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("running-total");
    let run = || {
        command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
            .output()
            .unwrap()
    };
    let failed = run();
    let err = stderr(&failed);
    assert_eq!(failed.status.code(), Some(4), "{err}");
    assert!(
        err.contains("pass 0 (items), batch 1 (documents up to _id 19)") && err.contains("item 15 has no n"),
        "{err}"
    );
    let migrated: Vec<i64> = db
        .find_all("items")
        .iter()
        .filter(|d| d.contains_key("running"))
        .map(|d| d.get_i64("_id").unwrap())
        .collect();
    assert_eq!(
        migrated,
        (0..10).collect::<Vec<i64>>(),
        "batch 0 committed, nothing after it"
    );

    db.command(doc! {"update": "items", "updates": [{"q": {"_id": 15_i64}, "u": {"$set": {"n": 15_i64}}}]});
    let resumed = run();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let mut total = 0;
    for item in db.find_all("items") {
        total += item.get_i64("n").unwrap();
        assert_eq!(item.get_i64("running").ok(), Some(total), "{item}");
    }
}
