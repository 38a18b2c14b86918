//! `godwit upgrade DIR --databases PATTERN`: the chain over many databases
//! (one per tenant), one after the other in name order, each database's
//! upgrade exactly what `upgrade --db NAME` does (its own lock, schema
//! version, history and journaled runs), then one summary of them all.

use super::chain::{Step, Upgrade, Upgraded};
use super::{UsageError, exit};
use crate::text::{errln, outln};
use std::process::ExitCode;

/// Databases a pattern never selects: the server's own.
const RESERVED: [&str; 3] = ["admin", "local", "config"];

/// `--databases`: a comma-separated list of names or globs (`*` any run of
/// characters, `?` one character), matched against whole names,
/// case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabasePattern {
    raw: String,
    items: Vec<String>,
}

impl DatabasePattern {
    pub fn parse(raw: &str) -> Result<Self, UsageError> {
        let items: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).collect();
        if items.iter().any(String::is_empty) {
            return Err(UsageError(format!(
                "--databases {raw:?} has an empty name; give names or globs separated by commas, e.g. 'tenant_*' or 'acme,globex'"
            )));
        }
        Ok(DatabasePattern {
            raw: raw.to_string(),
            items,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        !RESERVED.contains(&name) && self.items.iter().any(|p| glob(p, name))
    }

    /// The matching names, sorted, each once.
    pub fn select(&self, names: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut selected: Vec<String> = names.into_iter().filter(|n| self.matches(n)).collect();
        selected.sort();
        selected.dedup();
        selected
    }
}

impl std::fmt::Display for DatabasePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Whether `name` is matched by `pattern` as a whole: `*` matches any run of
/// characters (none too), `?` exactly one, anything else itself.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it matched up to: on a
    // mismatch it takes one more character (classic linear backtracking).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `--databases` matched no database on the server.
#[derive(Debug, thiserror::Error)]
#[error(
    "no database on {uri} matches --databases {pattern:?} (it lists {others} databases; admin, local and config never match); check the pattern"
)]
pub struct NoDatabaseMatches {
    pub pattern: String,
    pub uri: String,
    pub others: usize,
}

/// How one database's upgrade ended, as the summary says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseOutcome {
    /// Already at the chain's head: nothing ran, nothing was written.
    UpToDate,
    /// Execute: every pending step finished and was stamped.
    Upgraded,
    /// Dry run: every pending step was previewed.
    Previewed,
    /// A step failed (or was refused, or left residue): the database stays
    /// at the last version stamped; its exit code says why.
    Failed,
    /// Ctrl-C / SIGTERM: the step in progress is resumable.
    Interrupted,
    /// Not started: `--fail-fast` after a failure, or after an interruption.
    Skipped,
}

impl DatabaseOutcome {
    fn label(self) -> &'static str {
        match self {
            DatabaseOutcome::UpToDate => "up to date",
            DatabaseOutcome::Upgraded => "upgraded",
            DatabaseOutcome::Previewed => "previewed",
            DatabaseOutcome::Failed => "failed",
            DatabaseOutcome::Interrupted => "interrupted",
            DatabaseOutcome::Skipped => "skipped",
        }
    }
}

/// One row of the summary (`--json`: one element of `databases`).
#[derive(serde::Serialize)]
struct DatabaseResult {
    database: String,
    from_version: Option<String>,
    to_version: Option<String>,
    /// The versions that were pending when the database's upgrade started.
    pending: Vec<String>,
    plugins_run: Vec<Step>,
    outcome: DatabaseOutcome,
    exit_code: u8,
    /// The error that stopped it, and the step (`plugin version`) it stopped in.
    error: Option<String>,
    failed_step: Option<String>,
}

impl Upgrade<'_> {
    /// Runs the chain on every database `pattern` selects. The exit code is
    /// 0 when every database is at the head (or previewed), 130 when
    /// interrupted, else [`exit::SOME_DATABASES_FAILED`].
    pub async fn databases(&self, pattern: &DatabasePattern, fail_fast: bool) -> anyhow::Result<ExitCode> {
        let connection = &self.options.connection;
        // The server is reached through the admin database to list the
        // others; each selected database gets a connection of its own
        // below, exactly as `--db NAME` would.
        let mut admin = connection.clone();
        admin.db = Some("admin".to_string());
        admin.version_record = None;
        let server = admin.connect().await?;
        let names = server
            .client
            .list_database_names()
            .authorized_databases(true)
            .await
            .map_err(|e| anyhow::anyhow!("listing the databases on {}: {}", server.uri, crate::db::describe(&e)))?;
        let total = names.len();
        let selected = pattern.select(names);
        if selected.is_empty() {
            return Err(NoDatabaseMatches {
                pattern: pattern.to_string(),
                uri: server.uri.clone(),
                others: total,
            }
            .into());
        }
        let (json, execute) = (self.global.json, self.options.execute);
        if !json {
            outln!(
                "{} databases match --databases {}: {}",
                selected.len(),
                pattern,
                selected.join(", ")
            );
        }
        let mut results: Vec<DatabaseResult> = Vec::new();
        for (i, name) in selected.iter().enumerate() {
            let stop_here =
                self.stop.requested() || (fail_fast && results.iter().any(|r| r.outcome == DatabaseOutcome::Failed));
            if stop_here {
                results.push(DatabaseResult {
                    database: name.clone(),
                    from_version: None,
                    to_version: None,
                    pending: Vec::new(),
                    plugins_run: Vec::new(),
                    outcome: DatabaseOutcome::Skipped,
                    exit_code: exit::OK,
                    error: None,
                    failed_step: None,
                });
                continue;
            }
            if !json {
                outln!("== database {name} ({}/{}) ==", i + 1, selected.len());
            }
            let mut upgraded = Upgraded::default();
            let mut one = connection.clone();
            one.db = Some(name.clone());
            let (db, result) = match one.connect().await {
                Ok(db) => {
                    let result = self.database(&db, &mut upgraded).await;
                    (Some(db), result)
                }
                Err(e) => (None, Err(e)),
            };
            let error = result.err().map(|e| {
                errln!("error: database {name}: {e:#}");
                (exit::code_for(&e), format!("{e:#}"))
            });
            let code = error.as_ref().map_or(upgraded.code, |(code, _)| *code);
            let outcome = match code {
                exit::OK if upgraded.pending.is_empty() => DatabaseOutcome::UpToDate,
                exit::OK if execute => DatabaseOutcome::Upgraded,
                exit::OK => DatabaseOutcome::Previewed,
                exit::INTERRUPTED => DatabaseOutcome::Interrupted,
                _ => DatabaseOutcome::Failed,
            };
            // Where the database is now, as its schema document says (a dry
            // run or a failed first step leaves it where it was).
            let to_version = match &db {
                Some(db) => db.current_version().await.ok().flatten(),
                None => None,
            };
            results.push(DatabaseResult {
                database: name.clone(),
                from_version: upgraded.from.as_ref().map(ToString::to_string),
                to_version,
                pending: upgraded.pending,
                plugins_run: upgraded.runs,
                outcome,
                exit_code: code,
                failed_step: error.as_ref().and(upgraded.failed_step),
                error: error.map(|(_, message)| message),
            });
        }
        let count = |o: DatabaseOutcome| results.iter().filter(|r| r.outcome == o).count();
        let unfinished: Vec<&str> = results
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    DatabaseOutcome::Failed | DatabaseOutcome::Interrupted | DatabaseOutcome::Skipped
                )
            })
            .map(|r| r.database.as_str())
            .collect();
        let rerun = (!unfinished.is_empty()).then(|| self.rerun_hint(Some(&unfinished.join(","))));
        let code = if count(DatabaseOutcome::Interrupted) > 0 || self.stop.requested() {
            exit::INTERRUPTED
        } else if count(DatabaseOutcome::Failed) > 0 {
            exit::SOME_DATABASES_FAILED
        } else {
            exit::OK
        };
        let outcomes = [
            DatabaseOutcome::Upgraded,
            DatabaseOutcome::Previewed,
            DatabaseOutcome::UpToDate,
            DatabaseOutcome::Failed,
            DatabaseOutcome::Interrupted,
            DatabaseOutcome::Skipped,
        ];
        if json {
            let counts: serde_json::Map<String, serde_json::Value> = outcomes
                .iter()
                .map(|o| (o.label().replace(' ', "_"), count(*o).into()))
                .collect();
            super::print_json(&serde_json::json!({
                "databases_pattern": pattern.to_string(),
                "mode": if execute { "execute" } else { "dry_run" },
                "databases": results,
                "counts": counts,
                "exit_code": code,
                "rerun": rerun,
            }))?;
            return Ok(ExitCode::from(code));
        }
        // Names are padded as they will be shown: escaped (`outln!` escapes
        // the line again, which leaves escaped text as it is).
        let shown = |name: &str| crate::text::escape(name).into_owned();
        let width = results
            .iter()
            .map(|r| shown(&r.database).chars().count())
            .max()
            .unwrap_or(0);
        let version = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_string());
        outln!(
            "summary ({}) of {} databases matching --databases {}:",
            if execute { "execute" } else { "dry run" },
            results.len(),
            pattern
        );
        for r in &results {
            let ran: Vec<String> = r
                .plugins_run
                .iter()
                .map(|s| match s.status {
                    "finished" => format!("{} {}", s.plugin, s.version),
                    status => format!("{} {} ({status})", s.plugin, s.version),
                })
                .collect();
            let ran = if ran.is_empty() {
                String::new()
            } else {
                format!("; ran {}", ran.join(", "))
            };
            let versions = match r.outcome {
                DatabaseOutcome::Skipped => String::new(),
                DatabaseOutcome::UpToDate => format!(" at {}", version(&r.to_version)),
                DatabaseOutcome::Previewed => format!(
                    " at {}, would reach {}",
                    version(&r.to_version),
                    r.pending.last().map_or("", String::as_str)
                ),
                _ => format!(" {} -> {}", version(&r.from_version), version(&r.to_version)),
            };
            let failed_in = match &r.failed_step {
                Some(step) => format!("; failed in {step}"),
                None => String::new(),
            };
            let code = match r.exit_code {
                exit::OK => String::new(),
                code => format!(" (exit {code})"),
            };
            outln!(
                "  {:<width$}  {}{code}{versions}{ran}{failed_in}",
                shown(&r.database),
                r.outcome.label()
            );
        }
        let counts: Vec<String> = outcomes
            .iter()
            .filter(|o| count(**o) > 0)
            .map(|o| format!("{} {}", count(*o), o.label()))
            .collect();
        outln!("{}", counts.join(", "));
        let failed: Vec<String> = results
            .iter()
            .filter(|r| r.outcome == DatabaseOutcome::Failed)
            .map(|r| format!("{} (exit {})", r.database, r.exit_code))
            .collect();
        if !failed.is_empty() {
            errln!("failed: {}", failed.join(", "));
        }
        if let Some(rerun) = &rerun {
            errln!("continue with: {rerun}  (or the same command again: databases at the head are left as they are)");
        } else if !execute {
            outln!("dry run of the chain: nothing was written; each step was previewed against each database's data");
        }
        Ok(ExitCode::from(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, names: &[&str], expect: &[&str]) {
        let pattern = DatabasePattern::parse(pattern).unwrap();
        let got = pattern.select(names.iter().map(|n| n.to_string()));
        assert_eq!(got, expect);
    }

    #[test]
    fn patterns_select_whole_names_in_order() {
        let names = [
            "tenant_2",
            "tenant_10",
            "tenant_1",
            "tenants",
            "xtenant_1",
            "admin",
            "local",
            "config",
            "app",
        ];
        check("tenant_*", &names, &["tenant_1", "tenant_10", "tenant_2"]);
        check("tenant_?", &names, &["tenant_1", "tenant_2"]);
        check("tenant*", &names, &["tenant_1", "tenant_10", "tenant_2", "tenants"]);
        check("*tenant_1", &names, &["tenant_1", "xtenant_1"]);
        check("app, tenant_10", &names, &["app", "tenant_10"]);
        check("tenant_1,tenant_1", &names, &["tenant_1"]);
        check("tenant", &names, &[]);
        check("Tenant_*", &names, &[]);
        // The server's own databases never match, not even by name.
        check(
            "*",
            &names,
            &["app", "tenant_1", "tenant_10", "tenant_2", "tenants", "xtenant_1"],
        );
        check("admin,local,config", &names, &[]);
        check("*_1*", &["a_1", "a_11", "a_2_1", "b"], &["a_1", "a_11", "a_2_1"]);
        check("a*b*c", &["abc", "aXbYc", "aXbYcZ", "ab"], &["aXbYc", "abc"]);
    }

    #[test]
    fn empty_items_are_refused() {
        for raw in ["", ",", "a,,b", "a, "] {
            let error = DatabasePattern::parse(raw).unwrap_err().to_string();
            assert!(error.contains("has an empty name"), "{raw:?}: {error}");
        }
    }
}
