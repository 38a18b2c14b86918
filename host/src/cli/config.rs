//! `godwit.toml`: defaults for the connection and run settings. Precedence:
//! command-line flags, then environment variables, then the config file. The
//! file's values are handed to clap as the environment variables its
//! arguments read, when those are not already set.

use anyhow::Context;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// MongoDB connection string (`MONGODB_URI`).
    pub uri: Option<String>,
    /// Database (`GODWIT_DB`).
    pub db: Option<String>,
    /// Journal directory (`GODWIT_JOURNAL`).
    pub journal: Option<PathBuf>,
    /// Metadata collection (`GODWIT_METADATA_COLLECTION`).
    pub metadata_collection: Option<String>,
    /// Plugin directory for `plan`, `upgrade`, `status` (`GODWIT_PLUGINS`).
    pub plugins: Option<PathBuf>,
    /// Batch size (`GODWIT_BATCH_SIZE`).
    pub batch_size: Option<u32>,
    /// Adopted version record, `COLLECTION:ID` (`GODWIT_VERSION_RECORD`).
    pub version_record: Option<String>,
    /// Its version field (`GODWIT_VERSION_FIELD`).
    pub version_field: Option<String>,
    /// Its history array (`GODWIT_HISTORY_FIELD`).
    pub history_field: Option<String>,
    /// Its history entries' action key (`GODWIT_HISTORY_ACTION_FIELD`).
    pub history_action_field: Option<String>,
    /// Its history entries' time key (`GODWIT_HISTORY_TIME_FIELD`).
    pub history_time_field: Option<String>,
    /// Constant `KEY=VALUE` keys of its history entries (`GODWIT_HISTORY_SET`).
    pub history_set: Option<Vec<String>>,
}

/// The config file: `$GODWIT_CONFIG`, else `./godwit.toml` if it exists.
fn path() -> Option<PathBuf> {
    match std::env::var_os("GODWIT_CONFIG") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(PathBuf::from("godwit.toml")).filter(|p| p.is_file()),
    }
}

pub fn load() -> anyhow::Result<Option<(PathBuf, Config)>> {
    let Some(path) = path() else { return Ok(None) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read config file {}", path.display()))?;
    // toml's own message quotes the offending line, which may hold the URI's
    // password and spans several lines: report the position and the reason only.
    let config = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(" at line {line}, column {column}")
            })
            .unwrap_or_default();
        anyhow::anyhow!(
            "invalid config file {}{at}: {}",
            path.display(),
            e.message().trim().replace('\n', "; ")
        )
    })?;
    Ok(Some((path, config)))
}

/// Exports the config file's values as environment defaults for clap.
pub fn apply() -> anyhow::Result<()> {
    let Some((_, config)) = load()? else { return Ok(()) };
    let pairs = [
        ("MONGODB_URI", config.uri),
        ("GODWIT_DB", config.db),
        ("GODWIT_JOURNAL", config.journal.map(|p| p.display().to_string())),
        ("GODWIT_METADATA_COLLECTION", config.metadata_collection),
        ("GODWIT_PLUGINS", config.plugins.map(|p| p.display().to_string())),
        ("GODWIT_BATCH_SIZE", config.batch_size.map(|n| n.to_string())),
        ("GODWIT_VERSION_RECORD", config.version_record),
        ("GODWIT_VERSION_FIELD", config.version_field),
        ("GODWIT_HISTORY_FIELD", config.history_field),
        ("GODWIT_HISTORY_ACTION_FIELD", config.history_action_field),
        ("GODWIT_HISTORY_TIME_FIELD", config.history_time_field),
        ("GODWIT_HISTORY_SET", config.history_set.map(|v| v.join(","))),
    ];
    for (name, value) in pairs {
        if let Some(value) = value
            && std::env::var_os(name).is_none()
        {
            // SAFETY: called first thing in `main`, before any other thread exists.
            unsafe { std::env::set_var(name, value) };
        }
    }
    Ok(())
}
