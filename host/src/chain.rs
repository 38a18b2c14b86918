//! A plugin directory as a version chain: plugins ordered by their manifest's
//! semantic `version`, each `requires` satisfied by the version before it;
//! and its drift from what a database applied (Flyway's `validate`): the
//! plugin file of an applied version is not the one whose sha256 the
//! database's history recorded.

use crate::db::Recorded;
use crate::plugin::{LoadedPlugin, PluginHost};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The file cannot be loaded: not a component, wrong contract, invalid
    /// manifest (an unparseable version among them).
    Unreadable {
        file: PathBuf,
        reason: String,
    },
    Duplicate {
        version: String,
        files: Vec<PathBuf>,
    },
    /// `requires` is not satisfied by the version before it.
    Gap {
        file: PathBuf,
        version: String,
        requires: String,
        previous: Option<String>,
    },
    /// More than one plugin that no later plugin builds on.
    MultipleHeads {
        files: Vec<PathBuf>,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = |files: &[PathBuf]| {
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            // The reason names the file already.
            Problem::Unreadable { reason, .. } => write!(f, "unusable plugin: {reason}"),
            Problem::Duplicate { version, files: fs } => write!(f, "duplicate version {version}: {}", files(fs)),
            Problem::Gap {
                file,
                version,
                requires,
                previous,
            } => match previous {
                Some(previous) => write!(
                    f,
                    "gap: {} ({version}) requires {requires}, but the version before it is {previous}",
                    file.display()
                ),
                None => write!(f, "gap: {} ({version}) requires {requires}", file.display()),
            },
            Problem::MultipleHeads { files: fs } => write!(f, "more than one head: {}", files(fs)),
        }
    }
}

pub struct Chain {
    /// Loadable plugins in version order.
    pub plugins: Vec<LoadedPlugin>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
#[error("plugin chain {}: {}", dir.display(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ChainError {
    pub dir: PathBuf,
    pub problems: Vec<Problem>,
}

impl Chain {
    /// Loads every `*.wasm` in `dir` and checks the chain.
    pub fn load(host: &PluginHost, dir: &Path) -> anyhow::Result<Chain> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read plugin directory {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        let mut plugins = Vec::new();
        let mut problems = Vec::new();
        for file in files {
            match host.load(&file) {
                Ok(plugin) => plugins.push(plugin),
                Err(e) => problems.push(Problem::Unreadable {
                    reason: e.to_string(),
                    file,
                }),
            }
        }
        plugins.sort_by(|a, b| a.manifest.version.cmp(&b.manifest.version));
        problems.extend(check(&plugins));
        Ok(Chain { plugins, problems })
    }

    /// The chain, or every problem found in it.
    pub fn valid(self, dir: &Path) -> Result<Vec<LoadedPlugin>, ChainError> {
        if self.problems.is_empty() {
            Ok(self.plugins)
        } else {
            Err(ChainError {
                dir: dir.to_path_buf(),
                problems: self.problems,
            })
        }
    }
}

fn check(plugins: &[LoadedPlugin]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for pair in plugins.windows(2) {
        if pair[0].manifest.version == pair[1].manifest.version {
            problems.push(Problem::Duplicate {
                version: pair[0].manifest.version.to_string(),
                files: vec![pair[0].file.clone(), pair[1].file.clone()],
            });
        }
    }
    for (i, plugin) in plugins.iter().enumerate().skip(1) {
        let previous = &plugins[i - 1].manifest.version;
        if let Some(requires) = &plugin.manifest.requires
            && !requires.matches(previous)
        {
            problems.push(Problem::Gap {
                file: plugin.file.clone(),
                version: plugin.manifest.version.to_string(),
                requires: requires.to_string(),
                previous: Some(previous.to_string()),
            });
        }
    }
    // A plugin is built on by a later one whose `requires` accepts its version
    // (no `requires`: accepts any). Plugins nothing builds on are heads.
    let heads: Vec<PathBuf> = plugins
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            !plugins[i + 1..].iter().any(|later| {
                later
                    .manifest
                    .requires
                    .as_ref()
                    .is_none_or(|r| r.matches(&p.manifest.version))
            })
        })
        .map(|(_, p)| p.file.clone())
        .collect();
    if heads.len() > 1 {
        problems.push(Problem::MultipleHeads { files: heads });
    }
    problems
}

/// A version the database's history says a run applied (and no revert took
/// back): the plugin and the sha256 of the file that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: String,
    pub plugin: String,
    pub run_id: String,
    pub sha256: String,
}

/// The applied versions of a history, oldest first: each run's entry (the
/// ones that record a plugin sha256; `init` records none), minus the runs a
/// later revert reverted; a version applied again keeps its latest run.
pub fn applied(history: &[Recorded]) -> Vec<Applied> {
    let mut by_version: BTreeMap<String, (usize, Applied)> = BTreeMap::new();
    for (i, entry) in history.iter().enumerate() {
        if let Some(reverted) = &entry.reverts {
            by_version.retain(|_, (_, a)| a.run_id != *reverted);
            continue;
        }
        let (Some(version), Some(sha256)) = (&entry.version, &entry.sha256) else {
            continue;
        };
        by_version.insert(
            version.clone(),
            (
                i,
                Applied {
                    version: version.clone(),
                    plugin: entry.plugin.clone().unwrap_or_default(),
                    run_id: entry.run_id.clone().unwrap_or_default(),
                    sha256: sha256.clone(),
                },
            ),
        );
    }
    let mut applied: Vec<(usize, Applied)> = by_version.into_values().collect();
    applied.sort_by_key(|(i, _)| *i);
    applied.into_iter().map(|(_, a)| a).collect()
}

/// How a chain directory differs from what the database applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum Drift {
    /// The directory's plugin for an applied version is another file than
    /// the one that ran (edited, rebuilt, replaced): `upgrade` refuses.
    Changed {
        version: String,
        file: PathBuf,
        run_id: String,
        recorded: String,
        found: String,
    },
    /// No plugin in the directory has an applied version (shown, not refused:
    /// an applied step need not be shipped again).
    Missing {
        version: String,
        plugin: String,
        run_id: String,
        recorded: String,
    },
}

/// Enough of a sha256 to tell two files apart on a terminal.
fn prefix(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Changed {
                version,
                file,
                run_id,
                recorded,
                found,
            } => write!(
                f,
                "version {version}: {} has sha256 {}..., but run {run_id} applied sha256 {}...",
                file.display(),
                prefix(found),
                prefix(recorded)
            ),
            Drift::Missing {
                version,
                plugin,
                run_id,
                recorded,
            } => write!(
                f,
                "version {version}: no plugin in the directory (run {run_id} applied {plugin}, sha256 {}...)",
                prefix(recorded)
            ),
        }
    }
}

impl Drift {
    /// Whether `upgrade` refuses the chain for it.
    pub fn refuses(&self) -> bool {
        matches!(self, Drift::Changed { .. })
    }
}

/// A plugin file as drift compares it: version, file, sha256 (hex).
pub type Found<'a> = (&'a semver::Version, &'a Path, String);

/// Each applied version against the directory's plugins for it.
pub fn drift<'a>(plugins: impl IntoIterator<Item = Found<'a>> + Clone, applied: &[Applied]) -> Vec<Drift> {
    let mut drift = Vec::new();
    for a in applied {
        // Versions are stored as the run wrote them (the manifest's version,
        // printed); compared as versions when they parse.
        let same = |v: &semver::Version| match semver::Version::parse(&a.version) {
            Ok(recorded) => *v == recorded,
            Err(_) => v.to_string() == a.version,
        };
        let mut found_any = false;
        for (version, file, sha256) in plugins.clone() {
            if !same(version) {
                continue;
            }
            found_any = true;
            if !sha256.eq_ignore_ascii_case(&a.sha256) {
                drift.push(Drift::Changed {
                    version: a.version.clone(),
                    file: file.to_path_buf(),
                    run_id: a.run_id.clone(),
                    recorded: a.sha256.clone(),
                    found: sha256,
                });
            }
        }
        if !found_any {
            drift.push(Drift::Missing {
                version: a.version.clone(),
                plugin: a.plugin.clone(),
                run_id: a.run_id.clone(),
                recorded: a.sha256.clone(),
            });
        }
    }
    drift
}

/// [`drift`] of loaded plugins (a chain's) from a database's `history`.
pub fn drift_of(plugins: &[LoadedPlugin], history: &[Recorded]) -> Vec<Drift> {
    let found = plugins
        .iter()
        .map(|p| (&p.manifest.version, p.file.as_path(), p.sha256_hex()));
    drift(found, &applied(history))
}

/// `upgrade` on a chain whose plugins differ from the ones the database ran.
#[derive(Debug, thiserror::Error)]
#[error(
    "plugin chain {} is not what database {db} applied: {}; put back the plugin files that ran, or pass --allow-drift to upgrade anyway",
    dir.display(),
    drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct DriftError {
    pub dir: PathBuf,
    pub db: String,
    pub drift: Vec<Drift>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn run(run_id: &str, version: &str, sha256: &str) -> Recorded {
        Recorded::read(&doc! {"run_id": run_id, "plugin": "p", "version": version, "sha256": sha256})
    }

    #[track_caller]
    fn check(history: Vec<Recorded>, plugins: &[(&str, &str, &str)], expect: &[&str]) {
        let versions: Vec<semver::Version> = plugins.iter().map(|p| semver::Version::parse(p.0).unwrap()).collect();
        let found = plugins
            .iter()
            .zip(&versions)
            .map(|((_, file, sha), v)| (v, Path::new(*file), sha.to_string()));
        let got: Vec<String> = drift(found, &applied(&history))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn drift_names_changed_and_missing_applied_versions() {
        let a = "aaaaaaaaaaaaaaaa";
        let b = "bbbbbbbbbbbbbbbb";
        // Same files: no drift; a pending plugin is not compared.
        check(
            vec![run("r1", "1.0.0", a)],
            &[("1.0.0", "a.wasm", a), ("1.1.0", "b.wasm", b)],
            &[],
        );
        check(
            vec![run("r1", "1.0.0", a)],
            &[("1.0.0", "a.wasm", b)],
            &["version 1.0.0: a.wasm has sha256 bbbbbbbbbbbb..., but run r1 applied sha256 aaaaaaaaaaaa..."],
        );
        check(
            vec![run("r1", "1.0.0", a)],
            &[("1.1.0", "b.wasm", b)],
            &["version 1.0.0: no plugin in the directory (run r1 applied p, sha256 aaaaaaaaaaaa...)"],
        );
        // `init` records no plugin; a reverted run no longer counts as applied.
        let init = Recorded::read(&doc! {"run_id": "init-1", "plugin": "godwit init", "version": "0.9.0"});
        let revert = Recorded::read(&doc! {"run_id": "r3", "version": "1.0.0", "reverts": "r2"});
        check(
            vec![init, run("r1", "1.0.0", a), run("r2", "1.1.0", a), revert],
            &[("1.0.0", "a.wasm", a), ("1.1.0", "b.wasm", b)],
            &[],
        );
        // Applied again after a revert: the latest run's file counts.
        let revert = Recorded::read(&doc! {"run_id": "r2", "version": null, "reverts": "r1"});
        check(
            vec![run("r1", "1.0.0", b), revert, run("r3", "1.0.0", a)],
            &[("1.0.0", "a.wasm", a)],
            &[],
        );
    }
}
