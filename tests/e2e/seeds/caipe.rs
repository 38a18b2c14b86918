//! Seed 003, CAIPE's canonical team membership: legacy `teams.members[]`
//! become rows of `team_membership_sources` keyed by (team_slug,
//! lower(user_email), "manual"), then `members` is unset; dry run figures as
//! the runbook prints them, an interrupted apply, and a second apply that is
//! a no-op.

use super::{figures, kill_midway, oid, report_count, run_steps};
use crate::db::{TestDb, server};
use crate::support::{plugin, verify_journal};
use bson::{Bson, Document, doc};
use std::collections::{BTreeMap, BTreeSet};

const TEAMS: u32 = 900;

struct Expected {
    figures: serde_json::Value,
    /// Canonical keys that must exist after the apply.
    keys: BTreeSet<(String, String)>,
    /// Teams that keep `members` (no slug, or a skipped row).
    kept: BTreeSet<bson::oid::ObjectId>,
}

fn generate(db: &TestDb) -> Expected {
    let mut teams = Vec::new();
    let mut existing = Vec::new();
    let (mut with_members, mut rows, mut unset, mut skipped, mut warnings) = (0, 0, 0, 0, 0);
    let mut keys = BTreeSet::new();
    let mut kept = BTreeSet::new();
    let mut m = 0u32;
    for t in 0..TEAMS {
        let id = Bson::ObjectId(oid(t));
        let slug = format!("team-{t:04}");
        let mut team = doc! {"_id": id.clone(), "name": format!("Team {t}"), "created_by": "admin@caipe.io"};
        let has_slug = t % 30 != 11;
        if has_slug {
            team.insert("slug", &slug);
        }
        match t % 10 {
            // Fresh teams (created after commit 6/8): nothing to migrate.
            0 => {}
            // An empty legacy array: unset, nothing to backfill.
            1 => {
                team.insert("members", Vec::<Bson>::new());
                if has_slug {
                    unset += 1;
                } else {
                    skipped += 1;
                    kept.insert(oid(t));
                }
            }
            _ => {
                with_members += 1;
                let mut members = Vec::new();
                let mut clean = true;
                let mut seen = BTreeSet::new();
                for k in 0..(1 + t % 5) {
                    m += 1;
                    let email = format!("User{}@Example.com", (t * 13 + k * 7) % 400);
                    let role = ["member", "Admin", " OWNER ", "member"][(m % 4) as usize];
                    let mut member = doc! {"user_email": &email, "role": role};
                    let bad = match m % 53 {
                        7 => {
                            member.insert("role", "wizard");
                            true
                        }
                        19 => {
                            member.insert("user_id", 1234_i64);
                            true
                        }
                        _ => {
                            member.insert("user_id", format!("sub-{m}"));
                            false
                        }
                    };
                    members.push(member);
                    let mut entries = vec![bad];
                    // The same person again with the e-mail in another case (a
                    // valid entry of its own): one row for both.
                    if m % 17 == 3 {
                        members.push(doc! {"user_email": email.to_uppercase(), "role": "member"});
                        entries.push(false);
                    }
                    for bad in entries {
                        if !has_slug {
                            continue;
                        }
                        if bad {
                            clean = false;
                            warnings += 1;
                            continue;
                        }
                        let key = (slug.clone(), email.to_lowercase());
                        if seen.insert(key.clone()) {
                            // A third of the rows were already dual-written by the runtime.
                            if m.is_multiple_of(3) {
                                existing.push(doc! {"team_slug": &slug, "user_email": email.to_lowercase(), "source_type": "manual", "status": "active", "role": "member", "created_by": "runtime"});
                            } else {
                                rows += 1;
                            }
                            keys.insert(key);
                        }
                    }
                }
                team.insert("members", members);
                match (has_slug, clean) {
                    (false, _) => {
                        skipped += 1;
                        kept.insert(oid(t));
                    }
                    (true, false) => {
                        kept.insert(oid(t));
                    }
                    (true, true) => unset += 1,
                }
            }
        }
        teams.push(team);
    }
    db.insert("teams", teams);
    // Rows of other source types and of other teams are never touched.
    existing.push(
        doc! {"team_slug": "team-0002", "user_email": "sso@example.com", "source_type": "idp", "status": "active"},
    );
    db.insert("team_membership_sources", existing);
    Expected {
        figures: serde_json::json!({
            "teamsScanned": TEAMS, "teamsWithLegacyMembers": with_members, "rowsToBackfill": rows,
            "teamsToUnset": unset, "skipped": skipped, "warnings": warnings,
        }),
        keys,
        kept,
    }
}

#[test]
fn caipe_team_membership_dry_run_interrupted_apply_then_second_apply_is_a_no_op() {
    let db = TestDb::new(server(), "seed_caipe");
    // CAIPE's canonical store has its natural key as a unique index: the
    // upserts find their row through it, and a duplicate row is impossible.
    super::create_index(
        &db,
        "team_membership_sources",
        doc! {"team_slug": 1, "user_email": 1, "source_type": 1},
        true,
    );
    let expected = generate(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("caipe-team-membership");
    let file = file.to_str().unwrap();
    let snapshot = db.dump();
    let existing_rows = db.find_all("team_membership_sources");

    let dry = run_steps(&db, journal.path(), &["run", file]).remove(0);
    eprintln!("caipe dry run: {}", figures(&dry));
    assert_eq!(figures(&dry), expected.figures);
    let f = &expected.figures;
    assert_eq!(report_count(&dry, "skipped"), f["skipped"].as_u64().unwrap());
    assert_eq!(report_count(&dry, "warning"), f["warnings"].as_u64().unwrap());
    assert!(f["rowsToBackfill"].as_u64().unwrap() > 500 && f["warnings"].as_u64().unwrap() > 10);
    assert_eq!(db.dump(), snapshot, "a dry run writes nothing");

    let marker = kill_midway(
        &db,
        journal.path(),
        &[
            "run",
            file,
            "--execute",
            "--batch-size",
            "20",
            "--max-docs-per-sec",
            "300",
            "--lease",
            "3",
        ],
        |m| m.get_i64("seq").unwrap_or(0) >= 12,
    );
    eprintln!("caipe apply killed at {marker}");
    let exec = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(exec["resumed"], true);
    assert_eq!(exec["status"], "finished");
    assert_eq!(
        figures(&exec),
        expected.figures,
        "applied what the dry run announced, once"
    );

    // Post-conditions of the runbook.
    let teams = db.find_all("teams");
    let still: BTreeSet<bson::oid::ObjectId> = teams
        .iter()
        .filter(|t| t.contains_key("members"))
        .map(|t| t.get_object_id("_id").unwrap())
        .collect();
    assert_eq!(
        still, expected.kept,
        "only skipped teams and teams with skipped rows keep members"
    );
    let rows = db.find_all("team_membership_sources");
    let mut manual: BTreeMap<(String, String), Document> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.get_str("source_type").unwrap() == "manual") {
        let key = (
            row.get_str("team_slug").unwrap().to_string(),
            row.get_str("user_email").unwrap().to_string(),
        );
        assert_eq!(key.1, key.1.to_lowercase(), "keyed by lower(user_email)");
        assert!(
            manual.insert(key.clone(), row.clone()).is_none(),
            "duplicate canonical row {key:?}"
        );
    }
    assert_eq!(manual.keys().cloned().collect::<BTreeSet<_>>(), expected.keys);
    for row in &existing_rows {
        assert!(rows.contains(row), "a row the runtime wrote was changed: {row}");
    }
    for row in manual
        .values()
        .filter(|r| r.get_str("created_by").unwrap() != "runtime")
    {
        assert_eq!(row.get_str("status").unwrap(), "active");
        assert!(
            ["owner", "admin", "member"].contains(&row.get_str("role").unwrap()),
            "{row}"
        );
    }
    assert_eq!(
        rows.len(),
        existing_rows.len() + f["rowsToBackfill"].as_u64().unwrap() as usize
    );

    // A second apply is a no-op.
    let after = db.dump();
    let again = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    let second = figures(&again);
    assert_eq!(
        (second["rowsToBackfill"].as_u64(), second["teamsToUnset"].as_u64()),
        (Some(0), Some(0)),
        "{second}"
    );
    assert_eq!(
        (&second["skipped"], &second["warnings"]),
        (&f["skipped"], &f["warnings"])
    );
    assert_eq!(super::total(&again, "updates"), 0);
    let mut after_again = db.dump();
    let mut after = after;
    // Only the metadata collection (history of the second run) differs.
    after.retain(|(c, _)| c != "godwit_metadata");
    after_again.retain(|(c, _)| c != "godwit_metadata");
    assert_eq!(after_again, after);
    verify_journal(journal.path());
}
