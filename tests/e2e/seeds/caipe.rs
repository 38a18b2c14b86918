//! Seed 003, CAIPE's canonical team membership (upstream
//! `cnoe-io/ai-platform-engineering`, `scripts/migrate-canonical-team-membership.ts`)
//! on data in CAIPE's own shape (`ui/src/types/teams.ts`,
//! `ui/src/types/identity-group-sync.ts`): legacy `teams.members[]` entries
//! `{user_id: <e-mail>, role, added_at, added_by}` become
//! `team_membership_sources` rows, then `members` is unset. The scenario runs
//! the runbook - dry run, apply killed midway and resumed, second dry run -
//! against a reference model of upstream's planner written here; the second
//! test runs upstream's own test cases (`scripts/__tests__/`) through the
//! binary with their inputs and expected outputs.

use super::{figures, kill_midway, oid, report_count, run_steps, total};
use crate::db::{TestDb, server};
use crate::support::{command, plugin, stderr, verify_journal};
use bson::{Bson, Document, doc};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const TEAMS: u32 = 900;
const ACTOR: &str = "migration:canonical_team_membership_v1";

/// The reference model: upstream's planner (`planCanonicalTeamMembershipMigration`)
/// and apply (`applyMigration`), with this plugin's default that a team whose
/// entries were not all migrated keeps `members` (`unset_skipped` false).
#[derive(Debug, Default)]
struct Model {
    teams_scanned: u64,
    with_legacy: u64,
    /// Filter key and `$set` of every upsert, in order.
    upserts: Vec<((String, String), Document)>,
    unset: Vec<Bson>,
    kept: Vec<Bson>,
    skipped: Vec<String>,
    warnings: Vec<String>,
}

fn trimmed(value: Option<&Bson>) -> Option<String> {
    match value {
        Some(Bson::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn relationship(role: Option<&Bson>) -> Option<&'static str> {
    match trimmed(role)?.to_lowercase().as_str() {
        "owner" | "admin" => Some("admin"),
        "member" => Some("member"),
        _ => None,
    }
}

fn team_id(id: &Bson) -> String {
    match id {
        Bson::ObjectId(o) => o.to_hex(),
        Bson::String(s) => s.clone(),
        other => panic!("no team _id of this type in the fixtures: {other}"),
    }
}

impl Model {
    /// `teams` in `_id` order, `sources` the canonical store before the run.
    fn plan(teams: &[Document], sources: &[Document], now: &str, unset_skipped: bool) -> Model {
        let existing: BTreeSet<(String, String)> = sources
            .iter()
            .filter(|r| r.get_str("status").ok() == Some("active"))
            .filter_map(|r| {
                Some((
                    trimmed(r.get("team_slug"))?,
                    trimmed(r.get("user_email"))?.to_lowercase(),
                ))
            })
            .collect();
        let mut m = Model::default();
        for team in teams {
            m.teams_scanned += 1;
            let id = team.get("_id").unwrap().clone();
            let tid = team_id(&id);
            let members = match team.get("members") {
                None => continue,
                Some(Bson::Array(members)) => members.clone(),
                Some(Bson::Null) => Vec::new(),
                Some(other) => panic!("no such members in the fixtures: {other}"),
            };
            if members.is_empty() {
                m.unset.push(id);
                continue;
            }
            m.with_legacy += 1;
            let Some(slug) = trimmed(team.get("slug")) else {
                m.skipped.push(tid.clone());
                m.warnings.push(format!(
                    "team {tid}: no slug; skipping {} legacy member(s)",
                    members.len()
                ));
                if unset_skipped {
                    m.unset.push(id)
                } else {
                    m.kept.push(id)
                }
                continue;
            };
            let mut clean = true;
            for member in &members {
                let member = member.as_document().unwrap();
                let Some(email) = trimmed(member.get("user_id")).map(|e| e.to_lowercase()) else {
                    clean = false;
                    m.warnings
                        .push(format!("team {slug} ({tid}): skipping member with non-string user_id"));
                    continue;
                };
                let Some(rel) = relationship(member.get("role")) else {
                    clean = false;
                    let role = match member.get("role") {
                        None => "undefined".to_string(),
                        Some(Bson::Null) => "null".to_string(),
                        Some(Bson::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    };
                    m.warnings.push(format!(
                        "team {slug} ({tid}): skipping {email} with unknown role \"{role}\""
                    ));
                    continue;
                };
                if existing.contains(&(slug.clone(), email.clone())) {
                    continue;
                }
                let set = doc! {
                    "team_id": &tid, "team_slug": &slug, "user_email": &email, "relationship": rel,
                    "source_type": "manual", "managed": false, "status": "active", "created_by": ACTOR,
                    "created_at": now, "first_seen_at": now, "last_seen_at": now, "last_applied_at": now,
                };
                m.upserts.push(((slug.clone(), email), set));
            }
            if clean || unset_skipped {
                m.unset.push(id);
            } else {
                m.kept.push(id);
            }
        }
        m
    }

    fn figures(&self) -> Value {
        json!({
            "teamsScanned": self.teams_scanned,
            "teamsWithLegacyMembers": self.with_legacy,
            "rowsToBackfill": self.upserts.len(),
            "teamsToUnset": self.unset.len(),
            "skipped": self.skipped.len(),
            "warnings": self.warnings.len(),
            "applied": {"backfilled": self.upserts.len(), "unsetTeams": self.unset.len()},
        })
    }

    /// The canonical store after upstream's `updateOne(filter, {$set: row},
    /// {upsert: true})` calls: the first row matching `(team_slug,
    /// user_email, "manual")` gets the fields, else a new row is inserted.
    fn apply_sources(&self, sources: &[Document]) -> Vec<Document> {
        let mut rows = sources.to_vec();
        for ((slug, email), set) in &self.upserts {
            let found = rows.iter_mut().find(|r| {
                r.get_str("team_slug").ok() == Some(slug.as_str())
                    && r.get_str("user_email").ok() == Some(email.as_str())
                    && r.get_str("source_type").ok() == Some("manual")
            });
            match found {
                Some(row) => row.extend(set.clone()),
                None => {
                    let mut row = doc! {"team_slug": slug, "user_email": email, "source_type": "manual"};
                    row.extend(set.clone());
                    rows.push(row);
                }
            }
        }
        rows
    }
}

/// A document without `_id`, its keys sorted (recursively), as text: rows
/// compared as multisets whatever `_id` and field order the server gave.
fn canonical(doc: &Document) -> String {
    fn sorted(value: &Bson) -> Bson {
        match value {
            Bson::Document(d) => {
                let mut keys: Vec<&String> = d.keys().collect();
                keys.sort();
                Bson::Document(keys.into_iter().map(|k| (k.clone(), sorted(&d[k]))).collect())
            }
            Bson::Array(a) => Bson::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut doc = doc.clone();
    doc.remove("_id");
    sorted(&Bson::Document(doc)).to_string()
}

fn canonical_set(rows: &[Document]) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(canonical).collect();
    rows.sort();
    rows
}

fn email(n: u32) -> String {
    // Runtime writers store the address as the user typed it or the IdP
    // returned it: a third with capitals.
    if n.is_multiple_of(3) {
        format!("User{n}@Example.com")
    } else {
        format!("user{n}@example.com")
    }
}

fn at(day: u32) -> bson::DateTime {
    bson::DateTime::from_millis(1_767_225_600_000 + i64::from(day) * 86_400_000)
}

/// CAIPE's `teams` and `team_membership_sources` as a long-lived environment
/// has them: teams created before commit 6/8 with `members[]`
/// (`TeamMember`), fresh ones without, defunct `members: []`, a few
/// slugless teams and damaged entries (null `user_id`, missing or unknown
/// role), and canonical rows (`TeamMembershipSource`) the runtime already
/// dual-wrote - manual and IdP-managed, active, removed and stale.
fn generate(db: &TestDb) -> (Vec<Document>, Vec<Document>) {
    let mut teams = Vec::new();
    let mut sources = Vec::new();
    let mut m = 0u32;
    for t in 0..TEAMS {
        let id = Bson::ObjectId(oid(t));
        let slug = format!("team-{t:04}");
        let owner = email(t % 400);
        let mut team = doc! {
            "_id": id.clone(), "name": format!("Team {t}"), "description": "", "source": "manual",
            "status": "active", "owner_id": &owner, "created_by": &owner,
            "created_at": at(t % 300), "updated_at": at(t % 300 + 10),
        };
        // Slugless teams: some with a defunct empty array, some with members.
        if t % 30 != 11 && t % 40 != 17 {
            team.insert("slug", &slug);
        }
        match t % 10 {
            // Created after commit 6/8: no legacy array.
            0 => {}
            // A defunct `members: []` from a previous code path.
            1 => {
                team.insert("members", Vec::<Bson>::new());
            }
            _ => {
                let mut members = Vec::new();
                for k in 0..(1 + t % 5) {
                    m += 1;
                    let user = email((t * 13 + k * 7) % 400);
                    let role = ["member", "admin", "owner", "member"][(m % 4) as usize];
                    let mut member =
                        doc! {"user_id": &user, "role": role, "added_at": at(t % 300 + k), "added_by": &owner};
                    match m % 53 {
                        7 => {
                            member.insert("role", "guest");
                        }
                        19 => {
                            member.insert("user_id", Bson::Null);
                        }
                        31 => {
                            member.remove("role");
                        }
                        _ => {}
                    }
                    members.push(member);
                    // The same person entered again with the address in
                    // capitals: upstream upserts twice, the later entry's
                    // relationship wins.
                    if m % 17 == 3 {
                        members.push(doc! {"user_id": user.to_uppercase(), "role": "member", "added_at": at(t % 300 + 20), "added_by": &owner});
                    }
                    let lower = user.to_lowercase();
                    let row = |source_type: &str, status: &str, rel: &str| {
                        doc! {
                            "team_id": oid(t).to_hex(), "team_slug": &slug, "user_email": &user,
                            "user_subject": format!("kc-{}", (t * 13 + k * 7) % 400),
                            "relationship": rel, "source_type": source_type, "managed": source_type != "manual",
                            "status": status, "created_by": "admin@caipe.io", "created_at": "2026-03-01T09:30:00.000Z",
                            "first_seen_at": "2026-03-01T09:30:00.000Z", "last_seen_at": "2026-04-01T09:30:00.000Z",
                        }
                    };
                    if m.is_multiple_of(3) {
                        // Dual-written by the runtime (manual), or synced from
                        // Okta: active rows of any source type count.
                        let source_type = if m.is_multiple_of(6) { "manual" } else { "okta" };
                        let mut r = row(source_type, "active", "member");
                        if source_type == "okta" {
                            r.insert("provider_id", "okta-main");
                            r.insert("external_group_id", format!("grp-{t}"));
                        }
                        sources.push(r);
                    } else if m % 7 == 5 {
                        // Removed through the runtime while the legacy array
                        // kept the entry: not active, so upstream's upsert
                        // revives this very row (same natural key).
                        let mut r = row("manual", "removed", "admin");
                        r.insert("user_email", &lower);
                        r.insert("removed_by", "admin@caipe.io");
                        r.insert("removed_at", "2026-04-02T10:00:00.000Z");
                        sources.push(r);
                    } else if m % 11 == 4 {
                        // A stale IdP row: not active, left alone; a manual
                        // row is added beside it.
                        sources.push(row("okta", "stale", "member"));
                    }
                }
                team.insert("members", members);
            }
        }
        teams.push(team);
    }
    // Rows of teams without legacy members are never touched.
    sources.push(doc! {
        "team_id": oid(0).to_hex(), "team_slug": "team-0000", "user_email": "sso@example.com",
        "relationship": "member", "source_type": "oidc_claim", "managed": true, "status": "active",
        "created_at": "2026-03-01T09:30:00.000Z",
    });
    db.insert("teams", teams.clone());
    db.insert("team_membership_sources", sources.clone());
    let sources = db.find_all("team_membership_sources");
    (teams, sources)
}

/// `Date.toISOString()` of a run's start: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_iso_string(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && s.ends_with('Z')
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.'
}

#[test]
fn caipe_team_membership_dry_run_interrupted_apply_then_second_dry_run_is_clean() {
    let db = TestDb::new(server(), "seed_caipe");
    // CAIPE's own index on the canonical store (`RBAC_INDEX_SPECS` in
    // `ui/src/lib/rbac/migrations/registry.ts`): not unique.
    super::create_index(
        &db,
        "team_membership_sources",
        doc! {"team_slug": 1, "user_subject": 1, "relationship": 1},
        false,
    );
    let (teams, sources) = generate(&db);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("caipe-team-membership");
    let file = file.to_str().unwrap();
    let snapshot = db.dump();

    // The dry run. Its `now` is this run's start; the figures do not depend on it.
    let model = Model::plan(&teams, &sources, "", false);
    let expected = model.figures();
    let dry = run_steps(&db, journal.path(), &["run", file]).remove(0);
    eprintln!("caipe dry run: {}", figures(&dry));
    assert_eq!(figures(&dry), expected);
    assert_eq!(report_count(&dry, "skipped"), model.skipped.len() as u64);
    assert_eq!(report_count(&dry, "warning"), model.warnings.len() as u64);
    assert_eq!(report_count(&dry, "kept"), model.kept.len() as u64);
    let samples: Vec<&str> = dry["summary"]["passes"][0]["reports"]["warning"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["message"].as_str().unwrap())
        .collect();
    assert_eq!(samples, model.warnings[..5], "upstream's warning texts, in order");
    let e = &expected;
    assert!(
        e["rowsToBackfill"].as_u64().unwrap() > 500
            && e["warnings"].as_u64().unwrap() > 10
            && e["skipped"].as_u64().unwrap() > 10,
        "{e}"
    );
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
    eprintln!("caipe apply killed at batch {:?}", marker.get_i64("seq"));
    let exec = run_steps(&db, journal.path(), &["run", file, "--execute"]).remove(0);
    assert_eq!(exec["resumed"], true);
    assert_eq!(exec["status"], "finished");
    assert_eq!(figures(&exec), expected, "applied what the dry run announced, once");

    // The rows are upstream's, with the run's start as one ISO-8601 string.
    let rows = db.find_all("team_membership_sources");
    let now = rows
        .iter()
        .find(|r| r.get_str("created_by").ok() == Some(ACTOR))
        .and_then(|r| r.get_str("created_at").ok())
        .expect("a migrated row")
        .to_string();
    assert!(is_iso_string(&now), "created_at {now:?} is not toISOString()'s");
    let model = Model::plan(&teams, &sources, &now, false);
    assert_eq!(
        canonical_set(&rows),
        canonical_set(&model.apply_sources(&sources)),
        "the canonical store is what upstream's upserts leave"
    );
    let before: BTreeSet<String> = sources.iter().map(|r| r.get("_id").unwrap().to_string()).collect();
    assert!(
        rows.iter()
            .filter(|r| !before.contains(&r.get("_id").unwrap().to_string()))
            .all(|r| !r.contains_key("user_subject")),
        "the migration never writes user_subject"
    );
    let revived = rows
        .iter()
        .filter(|r| r.contains_key("removed_at") && r.get_str("status").ok() == Some("active"))
        .count();
    assert!(revived > 5, "removed manual rows revived by the upsert: {revived}");

    // Teams: `members` unset except on the teams the plugin keeps.
    let after_teams = db.find_all("teams");
    let still: Vec<Bson> = after_teams
        .iter()
        .filter(|t| t.contains_key("members"))
        .map(|t| t.get("_id").unwrap().clone())
        .collect();
    assert_eq!(
        still, model.kept,
        "only slugless teams and teams with skipped entries keep members"
    );
    for (before, after) in teams.iter().zip(&after_teams) {
        let mut before = before.clone();
        before.remove("members");
        let mut after = after.clone();
        after.remove("members");
        assert_eq!(before, after, "nothing but members changes on a team");
    }

    // The second dry run: nothing left to write; the kept teams' findings again.
    let after = db.dump();
    let again = run_steps(&db, journal.path(), &["run", file]).remove(0);
    assert_eq!(figures(&again), Model::plan(&after_teams, &rows, &now, false).figures());
    let second = figures(&again);
    assert_eq!(
        (&second["rowsToBackfill"], &second["teamsToUnset"]),
        (&json!(0), &json!(0)),
        "{second}"
    );
    assert_eq!(
        (&second["skipped"], &second["warnings"]),
        (&e["skipped"], &e["warnings"])
    );
    assert_eq!(total(&again, "updates"), 0);
    assert_eq!(db.dump(), after);
    verify_journal(journal.path());
}

/// One of upstream's test cases (`scripts/__tests__/migrate-canonical-team-membership.test.ts`)
/// through the binary: `teams` as given, `existingSources` as active manual
/// rows; the dry run's figures and reports, then the execute's writes.
struct Case {
    name: &'static str,
    teams: Vec<Document>,
    /// `"slug:email"` keys of upstream's `existingSources`.
    existing: &'static [&'static str],
    params: &'static [&'static str],
    figures: Value,
    /// `(user_email, relationship)` of the rows the execute writes.
    rows: &'static [(&'static str, &'static str)],
    /// Teams whose `members` the execute unsets.
    unset: &'static [&'static str],
    /// Patterns each warning must contain, in order.
    warnings: &'static [&'static str],
    skipped: &'static [(&'static str, &'static str)],
}

fn figures_of(scanned: u64, legacy: u64, rows: u64, unset: u64, skipped: u64, warnings: u64) -> Value {
    json!({
        "teamsScanned": scanned, "teamsWithLegacyMembers": legacy, "rowsToBackfill": rows,
        "teamsToUnset": unset, "skipped": skipped, "warnings": warnings,
        "applied": {"backfilled": rows, "unsetTeams": unset},
    })
}

fn platform_alice_bob() -> Vec<Document> {
    vec![doc! {"_id": "team-1", "slug": "platform", "members": [
        {"user_id": "alice@example.com", "role": "owner"},
        {"user_id": "bob@example.com", "role": "member"},
    ]}]
}

fn check(case: Case) {
    let name = case.name;
    let db = TestDb::new(server(), "caipe_case");
    // The `teams` collection exists, empty or not.
    super::create_index(&db, "teams", doc! {"slug": 1}, false);
    if !case.teams.is_empty() {
        db.insert("teams", case.teams.clone());
    }
    let existing: Vec<Document> = case
        .existing
        .iter()
        .map(|key| {
            let (slug, email) = key.split_once(':').unwrap();
            doc! {"team_id": "t", "team_slug": slug, "user_email": email, "relationship": "member",
            "source_type": "manual", "managed": false, "status": "active", "created_at": "2026-05-01T00:00:00.000Z"}
        })
        .collect();
    if !existing.is_empty() {
        db.insert("team_membership_sources", existing.clone());
    }
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("caipe-team-membership");
    let mut args = vec!["run", file.to_str().unwrap()];
    for p in case.params {
        args.extend(["--param", p]);
    }
    let dry = run_steps(&db, journal.path(), &args).remove(0);
    assert_eq!(figures(&dry), case.figures, "{name}: figures");
    let messages = |kind: &str| -> Vec<(String, String)> {
        dry["summary"]["passes"][0]["reports"][kind]["samples"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| (s["key"].as_str().unwrap().into(), s["message"].as_str().unwrap().into()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let warnings = messages("warning");
    assert_eq!(warnings.len(), case.warnings.len(), "{name}: {warnings:?}");
    for ((_, message), pattern) in warnings.iter().zip(case.warnings) {
        assert!(message.contains(pattern), "{name}: {message:?} lacks {pattern:?}");
    }
    let skipped: Vec<(String, String)> = case
        .skipped
        .iter()
        .map(|(k, m)| (k.to_string(), m.to_string()))
        .collect();
    assert_eq!(messages("skipped"), skipped, "{name}: skipped");

    args.push("--execute");
    run_steps(&db, journal.path(), &args);
    let rows = db.find_all("team_membership_sources");
    let written: BTreeSet<(String, String)> = rows
        .iter()
        .filter(|r| r.get_str("created_by").ok() == Some(ACTOR))
        .map(|r| {
            assert_eq!(
                (
                    r.get_str("source_type").ok(),
                    r.get_str("status").ok(),
                    r.get_bool("managed").ok()
                ),
                (Some("manual"), Some("active"), Some(false)),
                "{name}: {r}"
            );
            (
                r.get_str("user_email").unwrap().into(),
                r.get_str("relationship").unwrap().into(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = case.rows.iter().map(|(e, r)| (e.to_string(), r.to_string())).collect();
    assert_eq!(written, expected, "{name}: rows");
    assert_eq!(
        rows.len(),
        existing.len() + case.rows.len(),
        "{name}: nothing else written"
    );
    let after = db.find_all("teams");
    let unset: BTreeSet<String> = case
        .teams
        .iter()
        .filter(|before| before.contains_key("members"))
        .map(|before| before.get_str("_id").unwrap())
        .filter(|id| {
            let team = after.iter().find(|t| t.get_str("_id").ok() == Some(*id)).unwrap();
            !team.contains_key("members")
        })
        .map(str::to_string)
        .collect();
    let expected: BTreeSet<String> = case.unset.iter().map(|s| s.to_string()).collect();
    assert_eq!(unset, expected, "{name}: teams unset");
}

#[test]
fn caipe_upstream_test_cases_same_inputs_same_outputs() {
    let no_slug = || vec![doc! {"_id": "team-bad", "members": [{"user_id": "alice@example.com", "role": "member"}]}];
    let mixed = || {
        vec![doc! {"_id": "team-1", "slug": "platform", "members": [
            {"user_id": "alice@example.com", "role": "owner"},
            {"user_id": Bson::Null, "role": "member"},
            {"user_id": "bob@example.com", "role": "guest"},
        ]}]
    };
    let cases = vec![
        Case {
            name: "plan backfills every legacy member missing from canonical store",
            teams: platform_alice_bob(),
            existing: &[],
            params: &[],
            figures: figures_of(1, 1, 2, 1, 0, 0),
            rows: &[("alice@example.com", "admin"), ("bob@example.com", "member")],
            unset: &["team-1"],
            warnings: &[],
            skipped: &[],
        },
        Case {
            name: "plan skips members already present in canonical store (idempotency)",
            teams: platform_alice_bob(),
            existing: &["platform:alice@example.com"],
            params: &[],
            figures: figures_of(1, 1, 1, 1, 0, 0),
            rows: &[("bob@example.com", "member")],
            unset: &["team-1"],
            warnings: &[],
            skipped: &[],
        },
        Case {
            name: "plan deduplicates emails case-insensitively against existing sources",
            teams: vec![
                doc! {"_id": "team-1", "slug": "platform", "members": [{"user_id": "Alice@Example.com", "role": "owner"}]},
            ],
            existing: &["platform:alice@example.com"],
            params: &[],
            figures: figures_of(1, 1, 0, 1, 0, 0),
            rows: &[],
            unset: &["team-1"],
            warnings: &[],
            skipped: &[],
        },
        Case {
            name: "plan unsets defunct members: [] but doesn't count them as legacy",
            teams: vec![
                doc! {"_id": "team-empty", "slug": "empty"},
                doc! {"_id": "team-stub", "slug": "stub", "members": []},
                doc! {"_id": "team-real", "slug": "real", "members": [{"user_id": "alice@example.com", "role": "member"}]},
            ],
            existing: &[],
            params: &[],
            figures: figures_of(3, 1, 1, 2, 0, 0),
            rows: &[("alice@example.com", "member")],
            unset: &["team-real", "team-stub"],
            warnings: &[],
            skipped: &[],
        },
        Case {
            name: "plan skips teams without slug (warns, does not crash), upstream's unset rule",
            teams: no_slug(),
            existing: &[],
            params: &["unset_skipped=true"],
            figures: figures_of(1, 1, 0, 1, 1, 1),
            rows: &[],
            unset: &["team-bad"],
            warnings: &["no slug"],
            skipped: &[("team-bad", "team has no slug")],
        },
        Case {
            name: "plan skips teams without slug, godwit's default keeps members",
            teams: no_slug(),
            existing: &[],
            params: &[],
            figures: figures_of(1, 1, 0, 0, 1, 1),
            rows: &[],
            unset: &[],
            warnings: &["no slug"],
            skipped: &[("team-bad", "team has no slug")],
        },
        Case {
            name: "plan skips members with non-string user_id or unknown role, upstream's unset rule",
            teams: mixed(),
            existing: &[],
            params: &["unset_skipped=true"],
            figures: figures_of(1, 1, 1, 1, 0, 2),
            rows: &[("alice@example.com", "admin")],
            unset: &["team-1"],
            warnings: &["non-string user_id", "unknown role \"guest\""],
            skipped: &[],
        },
        Case {
            name: "plan skips members with non-string user_id or unknown role, godwit's default keeps members",
            teams: mixed(),
            existing: &[],
            params: &[],
            figures: figures_of(1, 1, 1, 0, 0, 2),
            rows: &[("alice@example.com", "admin")],
            unset: &[],
            warnings: &["non-string user_id", "unknown role \"guest\""],
            skipped: &[],
        },
        Case {
            name: "plan is empty for a zero-team database",
            teams: vec![],
            existing: &[],
            params: &[],
            figures: figures_of(0, 0, 0, 0, 0, 0),
            rows: &[],
            unset: &[],
            warnings: &[],
            skipped: &[],
        },
    ];
    for case in cases {
        check(case);
    }

    // Zero teams because there is no `teams` collection at all (a wrong
    // `--db`): the dry run names it, and an execute is not success - not
    // stamped, exit 16 - where upstream would report an empty plan.
    let db = TestDb::new(server(), "caipe_no_teams");
    db.insert("users", vec![doc! {"_id": 1, "email": "alice@example.com"}]);
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("caipe-team-membership");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": "schema"}).is_none(),
        "not stamped"
    );
}

/// Issue 18's finding: on entries the plugin does not understand (the old
/// plugin read `user_email`), every entry became a warning, nothing was
/// migrated, and the run was stamped. Data not in CAIPE's shape now stops
/// the run before anything is written.
#[test]
fn regression_caipe_entries_without_user_id_stop_the_run_instead_of_stamping_success() {
    let db = TestDb::new(server(), "caipe_shape");
    db.insert(
        "teams",
        vec![
            doc! {"_id": "team-1", "slug": "platform", "members": []},
            doc! {"_id": "team-2", "slug": "infra", "members": [{"user_email": "alice@example.com", "role": "owner"}]},
        ],
    );
    let data = || {
        let mut dump = db.dump();
        dump.retain(|(c, _)| c != "godwit_metadata");
        dump
    };
    let snapshot = data();
    let journal = tempfile::tempdir().unwrap();
    let file = plugin("caipe-team-membership");
    let out = command(&db, journal.path(), &["run", file.to_str().unwrap(), "--execute"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not CAIPE's {user_id, role, added_at, added_by}"),
        "{}",
        stderr(&out)
    );
    assert_eq!(data(), snapshot, "nothing written");
    assert!(
        db.find_one("godwit_metadata", doc! {"_id": "schema"}).is_none(),
        "not stamped"
    );
}
