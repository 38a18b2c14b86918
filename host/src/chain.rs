//! A plugin directory as a version chain: plugins ordered by their manifest's
//! semantic `version`, each `requires` satisfied by the version before it.

use crate::plugin::{LoadedPlugin, PluginHost};
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
