//! JavaScript plugins built by `godwit plugin build` (esbuild and
//! componentize-js) on contract 0.2, against a real server: they report
//! `godwit:migration@0.2.0`, the worked migrate-mongo port
//! (`plugins-js/backfill-team-name-js`) runs with its declared `reads` and
//! no operator flag, and the same code without the declaration
//! (`tests/plugins-js/backfill-undeclared-js`) is refused before any write;
//! a plugin declaring `idempotent: false` (`tests/plugins-js/increment-js`)
//! is refused on a server without transactions.
//! (The JavaScript schema operations are in `schema`, next to the Python ones.)

use crate::db::{TestDb, server, standalone};
use crate::support::{command, godwit, plugin, run_ok, stamp, stderr, stdout};
use bson::{Document, doc, oid::ObjectId};

const PLUGIN: &str = "backfill-team-name-js";

fn inspect(name: &str) -> serde_json::Value {
    let out = godwit(&["plugin", "inspect", plugin(name).to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn javascript_plugins_are_built_for_contract_0_2() {
    for name in [
        PLUGIN,
        "normalize-emails-js",
        "qdash-backfill-user-id-js",
        "hostile-js",
        "schema-ops-js",
    ] {
        let info = inspect(name);
        assert_eq!(info["contract"], "godwit:migration@0.2.0", "{name}: {info:#}");
        // World `plugin-declaring`: `keeps-state` besides the migration.
        assert_eq!(
            info["exports"],
            serde_json::json!(["godwit:migration/traits@0.2.0", "godwit:migration/migration@0.2.0"]),
            "{name}"
        );
        assert_eq!(
            info["keeps_state"], true,
            "{name}: none of them says keepsState = false"
        );
    }
    assert_eq!(inspect(PLUGIN)["reads"], serde_json::json!(["teams"]));
    assert_eq!(inspect("backfill-undeclared-js")["reads"], serde_json::json!([]));
}

fn team(i: u8) -> ObjectId {
    ObjectId::from_bytes([0x65, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i])
}

/// 3 teams; 20 members, every fifth of a team that does not exist, and one
/// that already has its name (outside the pass's filter).
fn members_and_teams(name: &str) -> TestDb {
    let db = TestDb::new(server(), name);
    db.insert(
        "teams",
        (1..=3)
            .map(|i| doc! {"_id": team(i), "name": format!("team {i}")})
            .collect(),
    );
    let mut members: Vec<Document> = (0..20)
        .map(|i| match i % 5 {
            4 => doc! {"_id": i, "team_id": team(99)},
            _ => doc! {"_id": i, "team_id": team(1 + (i % 3) as u8)},
        })
        .collect();
    members.push(doc! {"_id": 100, "team_id": team(1), "team_name": "kept"});
    db.insert("members", members);
    db
}

#[test]
fn javascript_backfill_team_name_runs_with_declared_reads_and_no_operator_flag() {
    let db = members_and_teams("js_backfill");
    let journal = tempfile::tempdir().unwrap();
    stamp(&db, journal.path(), "1.3.0");
    let file = plugin(PLUGIN);
    let before = db.find_all("members");
    let dry = run_ok(&db, journal.path(), &["run", file.to_str().unwrap()]);
    let pass = &dry["summary"]["passes"][0];
    assert_eq!(pass["documents"], 20, "{dry:#}");
    assert_eq!(pass["updates"], 16, "{dry:#}");
    assert_eq!(pass["reports"]["unresolved"]["count"], 4, "{dry:#}");
    assert_eq!(db.find_all("members"), before, "a dry run writes nothing");

    let exec = run_ok(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"]);
    assert_eq!(exec["summary"]["passes"][0]["updates"], 16, "{exec:#}");
    for m in db.find_all("members") {
        let id = m.get_i32("_id").unwrap();
        let expected = match (id, id % 5) {
            (100, _) => Some("kept".to_string()),
            (_, 4) => None,
            _ => Some(format!("team {}", 1 + id % 3)),
        };
        assert_eq!(m.get_str("team_name").ok().map(String::from), expected, "{m}");
    }
}

#[test]
fn javascript_lookup_of_a_collection_not_in_reads_is_refused_before_any_write() {
    let db = members_and_teams("js_undeclared");
    let journal = tempfile::tempdir().unwrap();
    stamp(&db, journal.path(), "1.3.0");
    let before = db.dump();
    let file = plugin("backfill-undeclared-js");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{err}"));
    for want in [
        "backfill-team-name",
        "begin",
        "lookup on `teams` refused",
        "rule undeclared-read",
    ] {
        assert!(line.contains(want), "{want:?} not in {line}");
    }
    assert!(
        !err.contains("built for contract 0.1"),
        "a contract 0.2 plugin is told to declare its reads: {err}"
    );
    let after: Vec<_> = db.dump().into_iter().filter(|(n, _)| n != "godwit_metadata").collect();
    let before: Vec<_> = before.into_iter().filter(|(n, _)| n != "godwit_metadata").collect();
    assert_eq!(after, before, "nothing written");
}

#[test]
fn javascript_plugin_declaring_idempotent_false_is_refused_without_transactions() {
    let info = godwit(&["plugin", "inspect", plugin("increment-js").to_str().unwrap()]);
    assert!(stdout(&info).contains("idempotent   no"), "{}", stdout(&info));
    // Built for world `plugin-declaring`, without `keepsState`: the default.
    assert!(
        stdout(&info).contains("state        may depend on earlier batches"),
        "{}",
        stdout(&info)
    );
    let server = standalone();
    let db = TestDb::new(&server, "js_standalone");
    db.insert("counters", (0..12).map(|i| doc! {"_id": i, "n": 0_i64}).collect());
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("increment-js");
    let run = ["run", file.to_str().unwrap(), "--execute"];
    let out = command(&db, journal.path(), &run).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("plugin \"increment-js\" declares idempotent: false") && err.contains("--allow-at-least-once"),
        "{err}"
    );
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 0));
    // With the override it runs, once per document.
    let out = command(&db, journal.path(), &[&run[..], &["--allow-at-least-once"]].concat())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(db.find_all("counters").iter().all(|d| d.get_i64("n").unwrap() == 1));
}
