//! Seed 003, CAIPE `canonical_team_membership_v1` on CAIPE's own data
//! contract (upstream `scripts/migrate-canonical-team-membership.ts`, types in
//! `ui/src/types/teams.ts` and `ui/src/types/identity-group-sync.ts`): every
//! legacy `teams.members[]` entry (`{user_id: <e-mail>, role, added_at,
//! added_by}`) gets an active `team_membership_sources` row unless one
//! exists, then the team's `members` field is `$unset`.
//!
//! Upstream's rules, kept as they are:
//! - the e-mail is `user_id`, trimmed and lower-cased; a `user_id` that is not
//!   a non-blank string is a warning and the entry is skipped;
//! - `role` is trimmed and lower-cased; `owner` and `admin` become the
//!   `relationship` `admin`, `member` stays `member`, anything else (a missing
//!   role included) is a warning and the entry is skipped;
//! - an entry is already migrated when an *active* row of *any* source type
//!   has the team's slug and the e-mail (compared lower-cased): a `removed`
//!   manual row does not count, and the upsert then revives it;
//! - a row is upstream's `MembershipSourceRow` (`team_id`, `team_slug`,
//!   `user_email`, `relationship`, `source_type: "manual"`, `managed: false`,
//!   `status: "active"`, `created_by: "migration:canonical_team_membership_v1"`,
//!   and `created_at`, `first_seen_at`, `last_seen_at`, `last_applied_at` as
//!   one ISO-8601 string), written as `$set` of the whole row, upserted on
//!   `(team_slug, user_email, source_type)`; `user_subject` is never written;
//! - a team without a slug is skipped with a warning; `members: []` (or
//!   `null`) is unset without counting as legacy members.
//!
//! Where this plugin is deliberately safer than upstream:
//! - a team whose entries could not all be migrated (no slug, or a skipped
//!   entry) keeps its `members` array, so that the only copy of those entries
//!   survives; the operator fixes the data and runs again. `--param
//!   unset_skipped=true` unsets them anyway, as upstream does;
//! - data that is not CAIPE's shape at all stops the run with an error naming
//!   the team, before that team's batch writes anything: `members` neither an
//!   array nor null (upstream unsets it), an entry that is not a document or
//!   has no `user_id` field (upstream warns per entry, which would let a
//!   migration on the wrong data skip every entry and still finish), a team
//!   `_id` that is not an ObjectId, string or integer.
//!
//! The runbook's figures, with upstream's keys, are the `summary` report:
//! `teamsScanned`, `teamsWithLegacyMembers`, `rowsToBackfill`,
//! `teamsToUnset`, `skipped`, `warnings` and the `applied` block
//! (`backfilled`, `unsetTeams`). As everywhere in godwit, `applied` counts
//! the writes the plugin asks for, in a dry run too (the plugin is never told
//! whether it runs dry). Every warning and skipped team is a report of its
//! own with upstream's message; every team that keeps `members` is a `kept`
//! report.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc, json_string};
use std::collections::HashSet;

pub const SOURCES: &str = "team_membership_sources";
pub const MIGRATION: &str = "canonical_team_membership_v1";
/// Upstream's `MIGRATION_ACTOR`, the rows' `created_by`.
pub const ACTOR: &str = "migration:canonical_team_membership_v1";
/// The summary's keys, in upstream's order.
pub const FIGURES: [&str; 6] = [
    "teamsScanned",
    "teamsWithLegacyMembers",
    "rowsToBackfill",
    "teamsToUnset",
    "skipped",
    "warnings",
];

pub struct TeamMembership {
    /// The run's start as JavaScript's `Date.toISOString()` writes it.
    now: String,
    /// `--param unset_skipped=true`: upstream's rule, `members` is unset on
    /// every team that has it, whatever could be migrated.
    unset_skipped: bool,
    /// `(slug, e-mail)` keys upserted by earlier batches. Upstream plans from
    /// one snapshot, so a key two teams share (slugs are unique in CAIPE, so
    /// only on damaged data) is planned once per team; a later batch's lookup
    /// would see the earlier batch's row in an execute but not in a dry run,
    /// and this set keeps the two alike.
    planned: HashSet<(String, String)>,
    tally: Tally,
    applied: Tally,
}

/// Upstream's `asString`: a string, trimmed, if it is not blank.
fn as_string(value: Option<&Bson>) -> Option<&str> {
    match value {
        Some(Bson::String(s)) if !s.trim().is_empty() => Some(s.trim()),
        _ => None,
    }
}

/// Upstream's `normalizeRelationship`: `owner` and `admin` are `admin`,
/// `member` is `member` (trimmed, any case); anything else is `None`.
pub fn normalize_relationship(role: Option<&Bson>) -> Option<&'static str> {
    match as_string(role)?.to_lowercase().as_str() {
        "admin" | "owner" => Some("admin"),
        "member" => Some("member"),
        _ => None,
    }
}

/// JavaScript's `String(value)` for the values a role can hold, for
/// upstream's warning text (`unknown role "undefined"`).
fn js_string(value: Option<&Bson>) -> String {
    match value {
        None => "undefined".into(),
        Some(Bson::Null) => "null".into(),
        Some(Bson::String(s)) => s.clone(),
        Some(Bson::Boolean(b)) => b.to_string(),
        Some(Bson::Int32(n)) => n.to_string(),
        Some(Bson::Int64(n)) => n.to_string(),
        Some(Bson::Double(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Some(Bson::Double(f)) => f.to_string(),
        Some(Bson::Document(_)) => "[object Object]".into(),
        Some(other) => other.to_string(),
    }
}

/// Upstream's `String(team._id)`: the hex of an ObjectId, a string as it
/// is, an integer in decimal. Other types are not CAIPE's.
fn team_id(id: &Bson) -> Option<String> {
    match id {
        Bson::ObjectId(oid) => Some(oid.to_hex()),
        Bson::String(s) => Some(s.clone()),
        Bson::Int32(n) => Some(n.to_string()),
        Bson::Int64(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Date.prototype.toISOString()`: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_string(at: godwit_sdk::bson::DateTime) -> Result<String, Error> {
    let text = at
        .try_to_rfc3339_string()
        .map_err(|e| Error::new(format!("run start {at} has no ISO-8601 form: {e}")))?;
    let seconds = text
        .get(..19)
        .ok_or_else(|| Error::new(format!("run start {text} is not YYYY-MM-DDTHH:MM:SS")))?;
    Ok(format!("{seconds}.{:03}Z", at.timestamp_millis().rem_euclid(1000)))
}

/// What became of one legacy entry.
enum Entry {
    /// A new row to upsert, and its key.
    Row(Box<Action>, (String, String)),
    /// An active row already holds it (or an earlier batch upserted it).
    Present,
    /// Skipped, with upstream's warning.
    Warning(String),
}

impl Migration for TeamMembership {
    fn manifest() -> Manifest {
        Manifest::new("caipe-team-membership", "1.1.0")
            .description(
                "canonical_team_membership_v1: teams.members[] -> team_membership_sources (CAIPE's rows), then $unset members",
            )
            .pass(
                Pass::new("teams", "teams")
                    .projection(doc! {"slug": 1, "members": 1})
                    // Each canonical row is an upsert keyed by (slug, e-mail, type): small
                    // batches keep each batch transaction short on slow servers.
                    .batch_size(50)
                    .writes(["teams", SOURCES]),
            )
            // The active rows already there, looked up per batch.
            .reads([SOURCES])
    }

    fn begin(params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let unset_skipped = params.parse_or("unset_skipped", false)?;
        let mut tally = Tally::new();
        for name in FIGURES {
            tally.touch(name);
        }
        let mut applied = Tally::new();
        applied.touch("backfilled");
        applied.touch("unsetTeams");
        Ok(TeamMembership {
            now: iso_string(cx.run().started_at())?,
            unset_skipped,
            planned: HashSet::new(),
            tally,
            applied,
        })
    }

    fn process(&mut self, cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let existing = existing_keys(cx, &batch)?;
        let mut actions = Vec::new();
        let mut upserted = Vec::new();
        for team in &batch {
            let id = team.get("_id").cloned().ok_or_else(|| Error::new("team without _id"))?;
            let tid = team_id(&id).ok_or_else(|| {
                Error::new(format!(
                    "team _id {id} is neither an ObjectId, a string nor an integer: not CAIPE's teams"
                ))
                .for_document(id.clone())
            })?;
            self.tally.incr("teamsScanned");
            let members = match team.get("members") {
                None => continue,
                Some(Bson::Array(members)) => members,
                // A defunct field with nothing in it: unset, as upstream does.
                Some(Bson::Null) => {
                    self.unset(&mut actions, id);
                    continue;
                }
                Some(other) => {
                    return Err(Error::new(format!(
                        "team {tid}: members is neither an array nor null ({other}): not CAIPE's legacy members, \
                         nothing of this batch written"
                    ))
                    .for_document(id));
                }
            };
            if members.is_empty() {
                self.unset(&mut actions, id);
                continue;
            }
            self.tally.incr("teamsWithLegacyMembers");
            let Some(slug) = as_string(team.get("slug")) else {
                self.tally.incr("skipped");
                actions.push(Action::report("skipped", &tid, "team has no slug"));
                self.warn(
                    &mut actions,
                    tid.clone(),
                    format!("team {tid}: no slug; skipping {} legacy member(s)", members.len()),
                );
                self.unset_or_keep(&mut actions, id, &tid, "no slug");
                continue;
            };
            let mut clean = true;
            for (i, member) in members.iter().enumerate() {
                match self.entry(slug, &tid, member, &existing)? {
                    Entry::Row(row, key) => {
                        self.tally.incr("rowsToBackfill");
                        self.applied.incr("backfilled");
                        actions.push(*row);
                        upserted.push(key);
                    }
                    Entry::Present => {}
                    Entry::Warning(message) => {
                        clean = false;
                        self.warn(&mut actions, format!("{slug}/members[{i}]"), message);
                    }
                }
            }
            if clean {
                self.unset(&mut actions, id);
            } else {
                self.unset_or_keep(&mut actions, id, &tid, "skipped member(s)");
            }
        }
        self.planned.extend(upserted);
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        // Upstream prints the plan's summary and then `{"applied": {...}}`;
        // one JSON object here: the Tally's figures, then the nested block.
        let figures = self.tally.to_json();
        let message = format!(
            "{}, {}: {}}}",
            &figures[..figures.len() - 1],
            json_string("applied"),
            self.applied.to_json()
        );
        Ok(vec![Action::report("summary", MIGRATION, message)])
    }
}

/// Upstream's `fetchExistingSources`, for the slugs of one batch's teams
/// with legacy members: `(trim(team_slug), lower(trim(user_email)))` of every
/// active row, whatever its source type.
fn existing_keys(cx: &mut Context, batch: &[Document]) -> Result<HashSet<(String, String)>, Error> {
    let slugs: Vec<&str> = batch
        .iter()
        .filter(|t| matches!(t.get("members"), Some(Bson::Array(m)) if !m.is_empty()))
        .filter_map(|t| as_string(t.get("slug")))
        .collect();
    let mut existing = HashSet::new();
    if slugs.is_empty() {
        return Ok(existing);
    }
    let rows = cx.find_all(
        SOURCES,
        doc! {"team_slug": {"$in": slugs}, "status": "active"},
        Some(doc! {"team_slug": 1, "user_email": 1}),
        5_000,
    )?;
    for row in rows {
        if let (Some(slug), Some(email)) = (as_string(row.get("team_slug")), as_string(row.get("user_email"))) {
            existing.insert((slug.to_string(), email.to_lowercase()));
        }
    }
    Ok(existing)
}

impl TeamMembership {
    fn warn(&mut self, actions: &mut Vec<Action>, key: String, message: String) {
        self.tally.incr("warnings");
        actions.push(Action::report("warning", key, message));
    }

    fn unset(&mut self, actions: &mut Vec<Action>, id: Bson) {
        self.tally.incr("teamsToUnset");
        self.applied.incr("unsetTeams");
        actions.push(Action::unset("teams", id, ["members"]));
    }

    /// A team some of whose entries were not migrated: upstream unsets it
    /// anyway; by default it keeps `members`.
    fn unset_or_keep(&mut self, actions: &mut Vec<Action>, id: Bson, tid: &str, why: &str) {
        if self.unset_skipped {
            self.unset(actions, id);
        } else {
            actions.push(Action::report(
                "kept",
                tid,
                format!(
                    "team {tid}: members kept ({why}): unsetting it would lose the entries not migrated; fix them and \
                     run again, or pass --param unset_skipped=true to unset it as upstream does"
                ),
            ));
        }
    }

    /// Upstream's planning of one legacy entry.
    fn entry(
        &self,
        slug: &str,
        tid: &str,
        member: &Bson,
        existing: &HashSet<(String, String)>,
    ) -> Result<Entry, Error> {
        let Some(member) = member.as_document().filter(|m| m.contains_key("user_id")) else {
            return Err(Error::new(format!(
                "team {slug} ({tid}): members[] entry {member} is not CAIPE's {{user_id, role, added_at, added_by}}: \
                 nothing of this batch written"
            )));
        };
        let Some(email) = as_string(member.get("user_id")).map(str::to_lowercase) else {
            return Ok(Entry::Warning(format!(
                "team {slug} ({tid}): skipping member with non-string user_id"
            )));
        };
        let Some(relationship) = normalize_relationship(member.get("role")) else {
            return Ok(Entry::Warning(format!(
                "team {slug} ({tid}): skipping {email} with unknown role \"{}\"",
                js_string(member.get("role"))
            )));
        };
        let key = (slug.to_string(), email);
        if existing.contains(&key) || self.planned.contains(&key) {
            return Ok(Entry::Present);
        }
        let (slug, email) = key.clone();
        let now = self.now.as_str();
        let row = Action::upsert(
            SOURCES,
            doc! {"team_slug": &slug, "user_email": &email, "source_type": "manual"},
            doc! {"$set": {
                "team_id": tid,
                "team_slug": slug,
                "user_email": email,
                "relationship": relationship,
                "source_type": "manual",
                "managed": false,
                "status": "active",
                "created_by": ACTOR,
                "created_at": now,
                "first_seen_at": now,
                "last_seen_at": now,
                "last_applied_at": now,
            }},
        );
        Ok(Entry::Row(Box::new(row), key))
    }
}

godwit_sdk::export!(TeamMembership);

#[cfg(test)]
mod tests;
