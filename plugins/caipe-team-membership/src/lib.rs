//! Seed 003, CAIPE `canonical_team_membership_v1`: for every team's legacy
//! `members[]` entry, ensure an active row in `team_membership_sources` keyed
//! by `(team_slug, lower(user_email), source_type = "manual")`, then `$unset`
//! the legacy `members` field.
//!
//! Rows are written as upserts that only set fields on insert, and only for
//! keys the canonical store does not hold yet (looked up per batch), so a row
//! the runtime already dual-wrote is left alone and a second apply is a no-op.
//!
//! The runbook's summary (`teamsScanned`, `teamsWithLegacyMembers`,
//! `rowsToBackfill`, `teamsToUnset`, `skipped`, `warnings`) is the `summary`
//! report; every skipped team and every warning is a report of its own.
//!
//! One choice the runbook leaves open: a team with a member row that had to be
//! skipped (non-string `user_id`, unrecognized role, no e-mail) keeps its
//! `members` array. Unsetting it would destroy the only copy of that row, and
//! the runbook's recovery is "fix the input data and re-run".

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, bson, doc};
use std::collections::HashSet;

pub const SOURCES: &str = "team_membership_sources";
pub const MIGRATION: &str = "canonical_team_membership_v1";
/// Roles the canonical store knows; legacy values are compared trimmed and
/// in lower case, a missing role means `member`.
pub const ROLES: [&str; 3] = ["owner", "admin", "member"];

pub struct TeamMembership {
    created_at: bson::DateTime,
    /// Keys upserted by this run, so that two legacy entries differing only
    /// in e-mail case become one row.
    planned: HashSet<(String, String)>,
    tally: Tally,
}

/// The canonical role of a legacy member entry, or why there is none.
pub fn normalize_role(role: Option<&Bson>) -> Result<&'static str, String> {
    match role {
        None | Some(Bson::Null) => Ok("member"),
        Some(Bson::String(s)) => {
            let lower = s.trim().to_lowercase();
            ROLES
                .iter()
                .find(|r| **r == lower)
                .copied()
                .ok_or_else(|| format!("unrecognized role {s:?} (expected one of {ROLES:?})"))
        }
        Some(other) => Err(format!("role is not a string: {other}")),
    }
}

impl Migration for TeamMembership {
    fn manifest() -> Manifest {
        Manifest::new("caipe-team-membership", "1.0.0")
            .description(
                "canonical_team_membership_v1: teams.members[] -> team_membership_sources, then $unset members",
            )
            .pass(
                Pass::new("teams", "teams")
                    .projection(doc! {"slug": 1, "members": 1})
                    // Each canonical row is an upsert keyed by (slug, e-mail, type): small
                    // batches keep each batch transaction short on slow servers.
                    .batch_size(50)
                    .writes(["teams", SOURCES]),
            )
    }

    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let mut tally = Tally::new();
        for name in [
            "teamsScanned",
            "teamsWithLegacyMembers",
            "rowsToBackfill",
            "teamsToUnset",
            "skipped",
            "warnings",
        ] {
            tally.touch(name);
        }
        Ok(TeamMembership {
            created_at: cx.run().started_at(),
            planned: HashSet::new(),
            tally,
        })
    }

    fn process(&mut self, cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        // One lookup per batch: the canonical rows of the batch's teams.
        let slugs: Vec<&str> = batch
            .iter()
            .filter(|t| t.contains_key("members"))
            .filter_map(|t| t.get_str("slug").ok())
            .collect();
        let mut existing = HashSet::new();
        if !slugs.is_empty() {
            let rows = cx.find_all(
                SOURCES,
                doc! {"team_slug": {"$in": slugs}, "source_type": "manual"},
                Some(doc! {"team_slug": 1, "user_email": 1}),
                5_000,
            )?;
            for row in rows {
                if let (Ok(slug), Ok(email)) = (row.get_str("team_slug"), row.get_str("user_email")) {
                    existing.insert((slug.to_string(), email.to_lowercase()));
                }
            }
        }

        let mut actions = Vec::new();
        for team in &batch {
            let id = team.get("_id").cloned().ok_or_else(|| Error::new("team without _id"))?;
            self.tally.incr("teamsScanned");
            let members = match team.get("members") {
                None => continue,
                Some(Bson::Array(members)) => members,
                Some(other) => {
                    return Err(Error::new(format!("members is not an array: {other}")).for_document(id));
                }
            };
            if !members.is_empty() {
                self.tally.incr("teamsWithLegacyMembers");
            }
            let Some(slug) = team.get_str("slug").ok().filter(|s| !s.trim().is_empty()) else {
                self.tally.incr("skipped");
                actions.push(Action::report(
                    "skipped",
                    id.to_string(),
                    format!(
                        "team {id} has no slug: its {} legacy members cannot be keyed; set a slug and re-run",
                        members.len()
                    ),
                ));
                continue;
            };
            let mut clean = true;
            for (i, member) in members.iter().enumerate() {
                match self.row(slug, member, &existing) {
                    Ok(Some(row)) => {
                        self.tally.incr("rowsToBackfill");
                        actions.push(row);
                    }
                    Ok(None) => {}
                    Err(why) => {
                        clean = false;
                        self.tally.incr("warnings");
                        actions.push(Action::report(
                            "warning",
                            format!("{slug}/members[{i}]"),
                            format!("team {slug} ({id}) members[{i}]: {why}; row skipped, members kept"),
                        ));
                    }
                }
            }
            if clean {
                self.tally.incr("teamsToUnset");
                actions.push(Action::unset("teams", id, ["members"]));
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![self.tally.report("summary", MIGRATION)])
    }
}

impl TeamMembership {
    /// The upsert for one legacy entry (`None`: the row exists or is planned),
    /// or why the entry is skipped.
    fn row(
        &mut self,
        slug: &str,
        member: &Bson,
        existing: &HashSet<(String, String)>,
    ) -> Result<Option<Action>, String> {
        let Bson::Document(member) = member else {
            return Err(format!("entry is not a document: {member}"));
        };
        let email = match member.get("user_email").or_else(|| member.get("email")) {
            Some(Bson::String(e)) if !e.trim().is_empty() => e.trim().to_lowercase(),
            _ => return Err("no user_email".to_string()),
        };
        let subject = match member.get("user_id") {
            None | Some(Bson::Null) => None,
            Some(Bson::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("user_id is not a string: {other}")),
        };
        let role = normalize_role(member.get("role"))?;
        let key = (slug.to_string(), email.clone());
        if existing.contains(&key) || !self.planned.insert(key) {
            return Ok(None);
        }
        let mut fields = doc! {"role": role, "status": "active", "created_at": self.created_at, "created_by": format!("migration:{MIGRATION}")};
        if let Some(subject) = subject {
            fields.insert("user_subject", subject);
        }
        Ok(Some(Action::upsert(
            SOURCES,
            doc! {"team_slug": slug, "user_email": email, "source_type": "manual"},
            doc! {"$setOnInsert": fields},
        )))
    }
}

godwit_sdk::export!(TeamMembership);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Report(r) => format!("{}:{}", r.kind, r.key),
                Action::Update {
                    collection,
                    upsert: true,
                    filter,
                    ..
                } => {
                    format!("upsert:{collection}:{}", filter.get_str("user_email").unwrap())
                }
                Action::Update { collection, .. } => format!("update:{collection}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn summary(h: &mut Harness<TeamMembership>) -> String {
        match &h.finish().unwrap()[0] {
            Action::Report(r) => r.message.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn roles_are_normalized_and_unknown_ones_refused() {
        assert_eq!(normalize_role(Some(&" Admin ".into())), Ok("admin"));
        assert_eq!(normalize_role(None), Ok("member"));
        assert!(
            normalize_role(Some(&"superuser".into()))
                .unwrap_err()
                .contains("unrecognized role")
        );
        assert!(normalize_role(Some(&Bson::Int32(1))).is_err());
    }

    #[test]
    fn backfills_missing_rows_dedupes_case_and_unsets_members() {
        let mut h = Harness::<TeamMembership>::new().collection(
            SOURCES,
            vec![doc! {"_id": 1, "team_slug": "infra", "user_email": "ada@x.io", "source_type": "manual"}],
        );
        let team = doc! {"_id": 7, "slug": "infra", "members": [
            {"user_email": "Ada@X.io", "role": "admin"},
            {"user_email": "bob@x.io", "user_id": "sub-1", "role": "member"},
            {"user_email": "BOB@x.io"},
        ]};
        let actions = h.process(0, vec![team]).unwrap();
        assert_eq!(
            kinds(&actions),
            ["upsert:team_membership_sources:bob@x.io", "update:teams"]
        );
        assert_eq!(
            actions[0],
            Action::upsert(
                SOURCES,
                doc! {"team_slug": "infra", "user_email": "bob@x.io", "source_type": "manual"},
                doc! {"$setOnInsert": {"role": "member", "status": "active", "created_at": bson::DateTime::from_millis(1_767_225_600_000), "created_by": "migration:canonical_team_membership_v1", "user_subject": "sub-1"}}
            )
        );
        assert_eq!(actions[1], Action::unset("teams", 7, ["members"]));
        assert_eq!(
            summary(&mut h),
            r#"{"teamsScanned": 1, "teamsWithLegacyMembers": 1, "rowsToBackfill": 1, "teamsToUnset": 1, "skipped": 0, "warnings": 0}"#
        );
    }

    #[test]
    fn teams_without_slug_are_skipped_and_bad_rows_keep_members() {
        let mut h = Harness::<TeamMembership>::new();
        let no_slug = doc! {"_id": 1, "name": "legacy", "members": [{"user_email": "a@x.io"}]};
        let bad = doc! {"_id": 2, "slug": "ml", "members": [{"user_email": "a@x.io", "user_id": 42}, {"user_email": "b@x.io", "role": "wizard"}, {"user_email": "c@x.io"}]};
        let empty = doc! {"_id": 3, "slug": "ops", "members": []};
        let none = doc! {"_id": 4, "slug": "web"};
        let actions = h.process(0, vec![no_slug, bad, empty, none]).unwrap();
        assert_eq!(
            kinds(&actions),
            [
                "skipped:1",
                "warning:ml/members[0]",
                "warning:ml/members[1]",
                "upsert:team_membership_sources:c@x.io",
                "update:teams"
            ]
        );
        assert_eq!(
            actions[4],
            Action::unset("teams", 3, ["members"]),
            "an empty array is unset too"
        );
        assert_eq!(
            summary(&mut h),
            r#"{"teamsScanned": 4, "teamsWithLegacyMembers": 2, "rowsToBackfill": 1, "teamsToUnset": 1, "skipped": 1, "warnings": 2}"#
        );
    }

    #[test]
    fn no_teams_no_actions() {
        let mut h = Harness::<TeamMembership>::new();
        assert!(h.process(0, vec![]).unwrap().is_empty());
        assert!(h.lookups().is_empty(), "no lookup without legacy members");
    }
}
