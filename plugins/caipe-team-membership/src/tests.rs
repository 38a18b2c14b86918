//! Upstream's own test cases (`scripts/__tests__/migrate-canonical-team-membership.test.ts`)
//! with their inputs and expected outputs, then this plugin's own rules
//! (members kept, shapes refused, the applied block).

use super::*;
use godwit_sdk::testing::Harness;

/// The Harness's run start (2026-01-01T00:00:00Z) as `toISOString()` writes it.
const NOW: &str = "2026-01-01T00:00:00.000Z";

/// What one run planned, in upstream's terms.
#[derive(Debug, Default)]
struct Plan {
    /// `(user_email, relationship)` of each row to backfill, in order.
    rows: Vec<(String, String)>,
    /// The `$set` of each row.
    sets: Vec<Document>,
    teams_to_unset: Vec<Bson>,
    skipped: Vec<(String, String)>,
    warnings: Vec<String>,
    kept: Vec<String>,
    summary: String,
}

fn plan(teams: Vec<Document>, existing: Vec<Document>, unset_skipped: bool) -> Plan {
    let mut h = Harness::<TeamMembership>::new().collection(SOURCES, existing);
    if unset_skipped {
        h = h.param("unset_skipped", "true");
    }
    let mut plan = Plan::default();
    for action in h.run_pass(0, teams).unwrap().into_iter().chain(h.finish().unwrap()) {
        match action {
            Action::Update {
                collection,
                filter,
                update,
                upsert: true,
                multi: false,
            } if collection == SOURCES => {
                let set = update.get_document("$set").unwrap().clone();
                assert_eq!(
                    filter,
                    doc! {"team_slug": set.get_str("team_slug").unwrap(), "user_email": set.get_str("user_email").unwrap(), "source_type": "manual"},
                    "upstream's natural-key filter"
                );
                assert_eq!(update.len(), 1, "only $set, as upstream: {update}");
                plan.rows.push((
                    set.get_str("user_email").unwrap().into(),
                    set.get_str("relationship").unwrap().into(),
                ));
                plan.sets.push(set);
            }
            Action::Update {
                collection,
                filter,
                update,
                upsert: false,
                multi: false,
            } if collection == "teams" => {
                assert_eq!(update, doc! {"$unset": {"members": ""}});
                plan.teams_to_unset.push(filter.get("_id").unwrap().clone());
            }
            Action::Report(r) => match r.kind.as_str() {
                "skipped" => plan.skipped.push((r.key, r.message)),
                "warning" => plan.warnings.push(r.message),
                "kept" => plan.kept.push(r.key),
                "summary" => plan.summary = r.message,
                other => panic!("unexpected report kind {other}"),
            },
            other => panic!("unexpected action {other:?}"),
        }
    }
    plan
}

fn email(rows: &[(String, String)], email: &str) -> String {
    rows.iter().find(|(e, _)| e == email).unwrap().1.clone()
}

fn ids(ids: &[&str]) -> Vec<Bson> {
    ids.iter().map(|i| Bson::String(i.to_string())).collect()
}

fn platform_alice_bob() -> Vec<Document> {
    vec![doc! {"_id": "team-1", "slug": "platform", "members": [
        {"user_id": "alice@example.com", "role": "owner"},
        {"user_id": "bob@example.com", "role": "member"},
    ]}]
}

// ---- upstream's test cases ----

#[test]
fn upstream_normalize_relationship_owner_collapses_to_admin() {
    let n = |v: Option<Bson>| normalize_relationship(v.as_ref());
    assert_eq!(n(Some("owner".into())), Some("admin"));
    assert_eq!(n(Some("admin".into())), Some("admin"));
    assert_eq!(n(Some("OWNER".into())), Some("admin"));
    assert_eq!(n(Some("member".into())), Some("member"));
    assert_eq!(n(Some("MEMBER".into())), Some("member"));
    assert_eq!(n(Some("guest".into())), None);
    assert_eq!(n(None), None);
    assert_eq!(n(Some(Bson::Int32(42))), None);
}

#[test]
fn upstream_plan_backfills_every_legacy_member_missing_from_canonical_store() {
    let p = plan(platform_alice_bob(), vec![], false);
    assert_eq!(
        p.summary,
        r#"{"teamsScanned": 1, "teamsWithLegacyMembers": 1, "rowsToBackfill": 2, "teamsToUnset": 1, "skipped": 0, "warnings": 0, "applied": {"backfilled": 2, "unsetTeams": 1}}"#
    );
    assert_eq!(p.teams_to_unset, ids(&["team-1"]));
    assert!(p.skipped.is_empty() && p.warnings.is_empty());
    assert_eq!(email(&p.rows, "alice@example.com"), "admin");
    assert_eq!(email(&p.rows, "bob@example.com"), "member");
    assert_eq!(
        p.sets[0],
        doc! {
            "team_id": "team-1", "team_slug": "platform", "user_email": "alice@example.com",
            "relationship": "admin", "source_type": "manual", "managed": false, "status": "active",
            "created_by": ACTOR, "created_at": NOW, "first_seen_at": NOW, "last_seen_at": NOW,
            "last_applied_at": NOW,
        },
        "upstream's MembershipSourceRow, without user_subject"
    );
}

#[test]
fn upstream_plan_skips_members_already_present_in_canonical_store() {
    let existing =
        vec![doc! {"_id": 1, "team_slug": "platform", "user_email": "alice@example.com", "status": "active"}];
    let p = plan(platform_alice_bob(), existing, false);
    assert_eq!(p.rows, [("bob@example.com".to_string(), "member".to_string())]);
    assert_eq!(p.teams_to_unset, ids(&["team-1"]));
}

#[test]
fn upstream_plan_deduplicates_emails_case_insensitively_against_existing_sources() {
    let teams = vec![
        doc! {"_id": "team-1", "slug": "platform", "members": [{"user_id": "Alice@Example.com", "role": "owner"}]},
    ];
    let existing =
        vec![doc! {"_id": 1, "team_slug": "platform", "user_email": "alice@example.com", "status": "active"}];
    let p = plan(teams, existing, false);
    assert!(p.rows.is_empty());
    assert_eq!(p.teams_to_unset, ids(&["team-1"]));
}

#[test]
fn upstream_plan_unsets_defunct_empty_members_but_does_not_count_them_as_legacy() {
    let teams = vec![
        doc! {"_id": "team-empty", "slug": "empty"},
        doc! {"_id": "team-stub", "slug": "stub", "members": []},
        doc! {"_id": "team-real", "slug": "real", "members": [{"user_id": "alice@example.com", "role": "member"}]},
    ];
    let p = plan(teams, vec![], false);
    assert!(
        p.summary
            .starts_with(r#"{"teamsScanned": 3, "teamsWithLegacyMembers": 1, "#)
    );
    let mut unset = p.teams_to_unset.clone();
    unset.sort_by_key(|b| b.to_string());
    assert_eq!(unset, ids(&["team-real", "team-stub"]));
}

#[test]
fn upstream_plan_skips_teams_without_slug_warns_and_does_not_crash() {
    let teams = || vec![doc! {"_id": "team-bad", "members": [{"user_id": "alice@example.com", "role": "member"}]}];
    // Upstream's rule (`unset_skipped=true`): every expected output of upstream's test.
    let p = plan(teams(), vec![], true);
    assert!(p.rows.is_empty());
    assert_eq!(p.skipped, [("team-bad".to_string(), "team has no slug".to_string())]);
    assert!(p.warnings[0].contains("no slug"), "{:?}", p.warnings);
    assert_eq!(p.warnings, ["team team-bad: no slug; skipping 1 legacy member(s)"]);
    assert_eq!(p.teams_to_unset, ids(&["team-bad"]));
    // The default keeps the only copy of the member.
    let p = plan(teams(), vec![], false);
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.warnings.len(), 1);
    assert!(p.teams_to_unset.is_empty());
    assert_eq!(p.kept, ["team-bad"]);
    assert_eq!(
        p.summary,
        r#"{"teamsScanned": 1, "teamsWithLegacyMembers": 1, "rowsToBackfill": 0, "teamsToUnset": 0, "skipped": 1, "warnings": 1, "applied": {"backfilled": 0, "unsetTeams": 0}}"#
    );
}

#[test]
fn upstream_plan_skips_members_with_non_string_user_id_or_unknown_role() {
    let teams = || {
        vec![doc! {"_id": "team-1", "slug": "platform", "members": [
            {"user_id": "alice@example.com", "role": "owner"},
            {"user_id": Bson::Null, "role": "member"},
            {"user_id": "bob@example.com", "role": "guest"},
        ]}]
    };
    for unset_skipped in [true, false] {
        let p = plan(teams(), vec![], unset_skipped);
        assert_eq!(p.rows, [("alice@example.com".to_string(), "admin".to_string())]);
        assert_eq!(p.warnings.len(), 2);
        let all = p.warnings.join("\n");
        assert!(all.contains("non-string user_id"), "{all}");
        assert!(all.contains("unknown role \"guest\""), "{all}");
        assert_eq!(p.teams_to_unset.len(), usize::from(unset_skipped));
    }
}

#[test]
fn upstream_plan_is_empty_for_a_zero_team_database() {
    let mut h = Harness::<TeamMembership>::new();
    assert!(h.run_pass(0, vec![]).unwrap().is_empty());
    assert!(h.lookups().is_empty(), "no lookup without legacy members");
    let p = plan(vec![], vec![], false);
    assert_eq!(
        p.summary,
        r#"{"teamsScanned": 0, "teamsWithLegacyMembers": 0, "rowsToBackfill": 0, "teamsToUnset": 0, "skipped": 0, "warnings": 0, "applied": {"backfilled": 0, "unsetTeams": 0}}"#
    );
}

// ---- this plugin's own rules ----

#[test]
fn a_missing_role_is_a_warning_and_the_entry_skipped() {
    let teams = vec![
        doc! {"_id": "t", "slug": "s", "members": [{"user_id": "a@x.io"}, {"user_id": "b@x.io", "role": Bson::Null}]},
    ];
    let p = plan(teams, vec![], false);
    assert!(p.rows.is_empty());
    assert_eq!(
        p.warnings,
        [
            "team s (t): skipping a@x.io with unknown role \"undefined\"",
            "team s (t): skipping b@x.io with unknown role \"null\""
        ]
    );
    assert_eq!(p.kept, ["t"]);
}

#[test]
fn existing_rows_count_only_when_active_whatever_their_source_type() {
    let teams = vec![doc! {"_id": "t", "slug": "s", "members": [
        {"user_id": "okta@x.io", "role": "member"},
        {"user_id": "gone@x.io", "role": "admin"},
        {"user_id": " Stale@X.io ", "role": "member"},
    ]}];
    let existing = vec![
        doc! {"_id": 1, "team_slug": "s", "user_email": "OKTA@x.io", "source_type": "okta", "managed": true, "status": "active"},
        doc! {"_id": 2, "team_slug": "s", "user_email": "gone@x.io", "source_type": "manual", "status": "removed"},
        doc! {"_id": 3, "team_slug": "s", "user_email": "stale@x.io", "source_type": "okta", "status": "stale"},
        doc! {"_id": 4, "team_slug": "other", "user_email": "gone@x.io", "source_type": "manual", "status": "active"},
    ];
    let p = plan(teams, existing, false);
    assert_eq!(
        p.rows,
        [
            ("gone@x.io".to_string(), "admin".to_string()),
            ("stale@x.io".to_string(), "member".to_string())
        ]
    );
    assert_eq!(p.teams_to_unset, ids(&["t"]));
}

#[test]
fn team_id_is_the_object_id_hex_and_dates_are_iso_strings() {
    let oid = godwit_sdk::bson::oid::ObjectId::parse_str("650000000000000000000007").unwrap();
    let teams = vec![
        doc! {"_id": oid, "slug": "s", "members": [{"user_id": "a@x.io", "role": "Admin", "added_at": godwit_sdk::bson::DateTime::from_millis(0), "added_by": "root@x.io"}]},
    ];
    let p = plan(teams, vec![], false);
    assert_eq!(p.sets[0].get_str("team_id").unwrap(), "650000000000000000000007");
    assert_eq!(p.teams_to_unset, [Bson::ObjectId(oid)]);
    assert_eq!(
        iso_string(godwit_sdk::bson::DateTime::from_millis(1_779_796_800_123)).unwrap(),
        "2026-05-26T12:00:00.123Z"
    );
}

#[test]
fn null_members_are_unset_like_an_empty_array() {
    let p = plan(vec![doc! {"_id": "t", "members": Bson::Null}], vec![], false);
    assert_eq!(p.teams_to_unset, ids(&["t"]));
    assert!(p.summary.contains(r#""teamsWithLegacyMembers": 0"#));
}

#[test]
fn data_not_in_caipes_shape_stops_the_batch() {
    let refused = |team: Document| {
        Harness::<TeamMembership>::new()
            .process(0, vec![team])
            .unwrap_err()
            .to_string()
    };
    // The shape the old plugin read: no `user_id`, the e-mail elsewhere.
    let e = refused(doc! {"_id": "t", "slug": "s", "members": [{"user_email": "a@x.io", "role": "member"}]});
    assert!(e.contains("not CAIPE's {user_id, role, added_at, added_by}"), "{e}");
    let e = refused(doc! {"_id": "t", "slug": "s", "members": ["a@x.io"]});
    assert!(e.contains("not CAIPE's"), "{e}");
    let e = refused(doc! {"_id": "t", "slug": "s", "members": "a@x.io"});
    assert!(e.contains("neither an array nor null"), "{e}");
    let e = refused(doc! {"_id": 1.5, "slug": "s", "members": []});
    assert!(e.contains("not CAIPE's teams"), "{e}");
}

#[test]
fn same_email_twice_in_a_team_is_two_upserts_as_upstream_but_once_across_batches() {
    // Upstream plans both entries (the second upsert overwrites the first's
    // relationship); a key an earlier batch upserted is not planned again,
    // so that a dry run and an execute agree.
    let teams = vec![
        doc! {"_id": 1, "slug": "s", "members": [{"user_id": "a@x.io", "role": "owner"}, {"user_id": "A@X.io", "role": "member"}]},
    ];
    let p = plan(teams, vec![], false);
    assert_eq!(p.rows.len(), 2);
    let mut h = Harness::<TeamMembership>::new();
    let one = |id: i32| doc! {"_id": id, "slug": "s", "members": [{"user_id": "a@x.io", "role": "member"}]};
    assert_eq!(h.process(0, vec![one(1)]).unwrap().len(), 2);
    let second = h.process(0, vec![one(2)]).unwrap();
    assert_eq!(second, [Action::unset("teams", 2, ["members"])]);
}
