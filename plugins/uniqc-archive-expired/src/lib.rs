//! Seed 002, optional step: uniqc's `POST /api/tasks/archive-expired`
//! (upstream `uniqc/gateway/api/tasks.py`, `archive_expired_tasks`) with the
//! move of upstream's `ArchiveStore.archive_task`
//! (`uniqc/gateway/db/archive_store.py`), on the v5 schema. Not a schema
//! version of uniqc's: upstream archives through its API whenever asked,
//! and no migration of its moves a task. It is versioned 5.1.0 (requires
//! ^5.0: a minor step, the schema unchanged), so it may sit at the end of
//! the chain or be run on its own, again and again (`godwit run`).
//!
//! Upstream's rules:
//! - `hours` (default 72) and `terminal_only` (default true) are the
//!   endpoint's parameters (`--param hours=N`, `--param terminal_only=false`);
//! - with `terminal_only`, a task whose status is not terminal (`success`,
//!   `failed`, `cancelled`: upstream's `TERMINAL_STATUSES`) stays and counts
//!   as `skipped_running`;
//! - a task's time is `update_time`, or `submit_time` when that is empty,
//!   read as `datetime.fromisoformat` does (`Z` accepted, no offset = UTC);
//!   unreadable: the task stays; later than the cutoff: it stays; at or
//!   before it, it is archived;
//! - archiving moves the task's shards (`task_shards` ->
//!   `archived_task_shards`) and then the task (`tasks` -> `archived_tasks`),
//!   each with every field plus `archived_at`, as ISO-8601 the way Python's
//!   `datetime.isoformat()` writes a UTC time (`...T04:00:00.123000+00:00`).
//!
//! The cutoff is `hours` before the run's start, and `archived_at` is the
//! run's start, where upstream reads the clock: the plugin has no clock, so a
//! resumed run and `journal replay` archive the same tasks with the same
//! stamp. A task's inserts and deletes are in one batch, applied in one
//! transaction with the progress marker: a kill anywhere leaves each task and
//! its shards in exactly one place.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, bson, doc};

pub const TERMINAL_STATUSES: [&str; 3] = ["success", "failed", "cancelled"];
const HOUR_MS: i64 = 3_600_000;

pub struct ArchiveExpired {
    cutoff_ms: i64,
    terminal_only: bool,
    archived_at: String,
    tally: Tally,
}

impl Migration for ArchiveExpired {
    fn manifest() -> Manifest {
        Manifest::new("uniqc-archive-expired", "5.1.0")
            .requires("^5.0")
            .description(
                "uniqc archive-expired: terminal tasks older than 72 hours move to the archive with their shards",
            )
            // A task's shards are looked up to move with it.
            .reads(["task_shards"])
            .pass(Pass::new("tasks", "tasks").writes([
                "tasks",
                "archived_tasks",
                "task_shards",
                "archived_task_shards",
            ]))
    }

    fn begin(params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let hours: u32 = params.parse_or("hours", 72)?;
        let terminal_only: bool = params.parse_or("terminal_only", true)?;
        let started = cx.run().started_at_ms;
        let mut tally = Tally::new();
        for name in ["count", "shards", "skipped_running", "too_recent", "unreadable_time"] {
            tally.touch(name);
        }
        Ok(ArchiveExpired {
            cutoff_ms: started - i64::from(hours) * HOUR_MS,
            terminal_only,
            archived_at: python_isoformat(started)?,
            tally,
        })
    }

    fn process(&mut self, cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut expired = Vec::new();
        for task in batch {
            let id = task.get("_id").cloned().ok_or_else(|| Error::new("task without _id"))?;
            let status = task.get_str("status").unwrap_or_default();
            if self.terminal_only && !TERMINAL_STATUSES.contains(&status) {
                self.tally.incr("skipped_running");
                continue;
            }
            let time = match task.get_str("update_time") {
                Ok(t) if !t.is_empty() => Some(t),
                _ => task.get_str("submit_time").ok(),
            };
            match time.and_then(parse_time_ms) {
                None => self.tally.incr("unreadable_time"),
                Some(at) if at > self.cutoff_ms => self.tally.incr("too_recent"),
                Some(_) => expired.push((id, task)),
            }
        }
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Bson> = expired.iter().map(|(id, _)| id.clone()).collect();
        let shards = cx.find_all("task_shards", doc! {"_id.uniqc_task_id": {"$in": ids}}, None, 0)?;
        let mut actions = Vec::new();
        for (id, mut task) in expired {
            for mut shard in shards
                .iter()
                .filter(|s| s.get_document("_id").ok().and_then(|k| k.get("uniqc_task_id")) == Some(&id))
                .cloned()
            {
                let key = shard.get("_id").cloned().expect("found by _id");
                shard.insert("archived_at", self.archived_at.clone());
                actions.push(Action::insert("archived_task_shards", shard));
                actions.push(Action::delete_one("task_shards", doc! {"_id": key}));
                self.tally.incr("shards");
            }
            actions.push(Action::delete_one("tasks", doc! {"_id": id}));
            task.insert("archived_at", self.archived_at.clone());
            actions.push(Action::insert("archived_tasks", task));
            self.tally.incr("count");
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(vec![self.tally.report("summary", "archive_expired")])
    }
}

godwit_sdk::export!(ArchiveExpired);

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch of an ISO-8601 time as upstream's
/// `_parse_time` reads it (`datetime.fromisoformat`, `Z` for UTC, a time
/// without offset taken as UTC): `YYYY-MM-DD`, then optionally `T` or a
/// space and `HH:MM[:SS[.fraction]]`, then optionally `Z` or `±HH[:MM]`.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = b.get(from..from + len)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(s).ok()?.parse().ok())?
    };
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if d > month_days[(m - 1) as usize] {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    let mut at = 10;
    if at < b.len() {
        if !matches!(b[at], b'T' | b' ') {
            return None;
        }
        let (h, mi) = (num(at + 1, 2)?, num(at + 4, 2)?);
        if b.get(at + 3) != Some(&b':') || h > 23 || mi > 59 {
            return None;
        }
        ms += h * HOUR_MS + mi * 60_000;
        at += 6;
        if b.get(at) == Some(&b':') {
            let s = num(at + 1, 2)?;
            if s > 59 {
                return None;
            }
            ms += s * 1000;
            at += 3;
            if b.get(at) == Some(&b'.') {
                let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                let frac = std::str::from_utf8(&b[at + 1..at + 1 + digits.min(3)]).ok()?;
                ms += format!("{frac:0<3}").parse::<i64>().ok()?;
                at += 1 + digits;
            }
        }
        match b.get(at) {
            None => {}
            Some(b'Z') if at + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) => {
                let oh = num(at + 1, 2)?;
                let om = match b.len() - at {
                    3 => 0,
                    6 if b[at + 3] == b':' => num(at + 4, 2)?,
                    5 => num(at + 3, 2)?,
                    _ => return None,
                };
                let offset = oh * HOUR_MS + om * 60_000;
                ms -= if *sign == b'+' { offset } else { -offset };
            }
            _ => return None,
        }
    }
    Some(ms)
}

/// A UTC instant as Python's `datetime.isoformat()` writes an aware one:
/// microseconds only when not zero, offset `+00:00`.
pub fn python_isoformat(ms: i64) -> Result<String, Error> {
    let rfc = bson::DateTime::from_millis(ms.div_euclid(1000) * 1000)
        .try_to_rfc3339_string()
        .map_err(|e| Error::new(format!("run start is not a representable date: {e}")))?;
    let seconds = rfc
        .get(..19)
        .ok_or_else(|| Error::new(format!("unexpected time {rfc}")))?;
    let micros = ms.rem_euclid(1000) * 1000;
    Ok(if micros == 0 {
        format!("{seconds}+00:00")
    } else {
        format!("{seconds}.{micros:06}+00:00")
    })
}

#[cfg(test)]
mod tests;
