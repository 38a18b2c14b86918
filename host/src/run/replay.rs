//! `journal replay`: re-executes a plugin on a run's journaled inputs and
//! lookups, without a database, and compares its actions with the journaled
//! ones batch by batch.

use super::lookup::Replay;
use super::{Engine, params_document, run_seed};
use crate::journal::{Batch, Entry, Journal, Record};
use crate::plugin::actions::{self, ValidAction};
use crate::plugin::{InstanceOptions, LoadedPlugin, PluginInstance};
use bson::{Bson, Document};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub run_id: String,
    pub journaled_sha256: String,
    pub plugin_sha256: String,
    /// The replayed plugin is byte for byte the one the run used.
    pub same_plugin: bool,
    pub batches: u64,
    pub identical: u64,
    /// Batches the write guard refused (nothing of them was written): not
    /// replayed, as the run went on from a plugin that had not seen them.
    pub refused: u64,
    /// Every batch (and `finish`) went to a fresh instance, begun as the
    /// run's was: the plugin declares that it keeps no state across batches
    /// (`godwit:migration/traits`), and this checks the declaration - the run
    /// kept its instance after refusals and resumed without a replay.
    pub each_alone: bool,
    pub divergence: Option<Divergence>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// Journal entry of the batch.
    pub seq: u64,
    pub pass: Option<u32>,
    /// Index of the first action that differs.
    pub action: usize,
    /// `_id` of the document the journaled (or replayed) action is about, if it names one.
    pub document: Option<String>,
    pub journaled: Option<String>,
    pub replayed: Option<String>,
    /// The plugin failed instead of returning actions.
    pub error: Option<String>,
}

pub fn replay(journal: &Journal, run: &str, plugin: &LoadedPlugin) -> anyhow::Result<ReplayReport> {
    let header = journal.header(run)?;
    if let Some(reverted) = &header.reverts {
        anyhow::bail!("run {run} is a revert of run {reverted}: no plugin ran, there is nothing to replay");
    }
    let replay = Replay::default();
    let mut report = ReplayReport {
        run_id: run.to_string(),
        journaled_sha256: header.plugin_sha256.clone(),
        plugin_sha256: plugin.sha256_hex(),
        same_plugin: header.plugin_sha256 == plugin.sha256_hex(),
        batches: 0,
        identical: 0,
        refused: 0,
        each_alone: !plugin.keeps_state,
        divergence: None,
    };
    // After a batch the write guard refused, the run restarted its plugin
    // from the batches it had written: replay feeds it those only.
    let mut refused = std::collections::BTreeSet::new();
    for item in journal.iter_entries(run)? {
        if let (
            Entry {
                record: Record::Conflict { batch_seq, .. },
                ..
            },
            _,
        ) = item?
        {
            refused.insert(batch_seq);
        }
    }
    report.refused = refused.len() as u64;
    // A run bound to a reviewed dry run (`--plan`) ran its plugin as that run.
    let identity = super::Identity::journaled(journal, &header)?;
    let instantiate = || {
        plugin.instantiate(InstanceOptions {
            lookup: Box::new(replay.clone()),
            started_at_ms: identity.started_at_ms,
            random_seed: run_seed(&identity.run_id),
            metadata_collection: Some(header.metadata_collection.clone()),
        })
    };
    let context = Engine::context(&header, &identity);
    let params = params_document(&header.params);
    let mut instance = instantiate()?;
    // The schema operations the run journaled for `begin` and `finish`:
    // the replayed calls must return the same ones.
    let journaled_schema = |phase| -> anyhow::Result<Vec<godwit_policy::SchemaOp>> {
        super::schema::Journaled::read(journal, run, phase)?
            .plan
            .map_or(Ok(Vec::new()), |p| {
                p.ops.iter().map(|o| super::schema::decode_op(o)).collect()
            })
    };
    let begin_schema = journaled_schema(crate::journal::SchemaPhase::Begin)?;
    let finish_schema = journaled_schema(crate::journal::SchemaPhase::Finish)?;
    // `begin`'s journaled lookups, once it ran; whether the instance has
    // processed a batch since.
    let mut begun: Option<Vec<crate::journal::LookupRecord>> = None;
    let mut used = false;
    for item in journal.iter_entries(run)? {
        let (entry, _) = item?;
        match &entry.record {
            Record::Begin(call) if begun.is_none() => {
                replay.load(call.lookups.clone());
                let returned = instance.begin(&params, &context)?;
                replay.stop();
                begun = Some(call.lookups.clone());
                let schema = actions::split_schema(
                    &plugin.manifest.schema,
                    godwit_policy::SchemaSource::Begin,
                    &godwit_policy::Context::LOAD,
                    returned,
                )
                .map(|(_, schema)| schema);
                if schema.as_ref().ok() != Some(&begin_schema) {
                    report.divergence = Some(Divergence {
                        seq: entry.seq,
                        pass: None,
                        action: 0,
                        document: None,
                        journaled: None,
                        replayed: None,
                        error: Some(match schema {
                            Err(e) => format!("begin: {e}"),
                            Ok(s) => format!(
                                "begin returned {} schema operations, not the {} the run journaled",
                                s.len(),
                                begin_schema.len()
                            ),
                        }),
                    });
                    return Ok(report);
                }
            }
            Record::Prepared(_) if refused.contains(&entry.seq) => {}
            Record::Planned(batch) | Record::Prepared(batch) | Record::Finish(batch) => {
                report.batches += 1;
                if report.each_alone && used {
                    instance = instantiate()?;
                    replay.load(begun.clone().unwrap_or_default());
                    let begin = instance.begin(&params, &context);
                    replay.stop();
                    begin?;
                }
                used = true;
                match compare(
                    &mut instance,
                    plugin,
                    &replay,
                    &identity.run_id,
                    entry.seq,
                    batch,
                    &finish_schema,
                ) {
                    None => report.identical += 1,
                    Some(divergence) => {
                        report.divergence = Some(divergence);
                        return Ok(report);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(report)
}

/// Feeds one journaled batch (or `finish`) to `instance` with its journaled
/// lookups; `None` when the actions are the journaled ones.
pub(super) fn compare(
    instance: &mut PluginInstance,
    plugin: &LoadedPlugin,
    replay: &Replay,
    // The run id the plugin ran as: the seed of the `_id`s given to its inserts.
    run: &str,
    seq: u64,
    entry: &Batch,
    // `finish`'s schema operations as the run journaled them.
    finish_schema: &[godwit_policy::SchemaOp],
) -> Option<Divergence> {
    replay.load(entry.lookups.clone());
    let (raw, allowed) = match entry.pass {
        Some(pass) => (
            instance.process(pass, &entry.inputs),
            actions::allowed(&plugin.manifest.passes[pass as usize]),
        ),
        None => (instance.finish(), actions::finish_scope(&plugin.manifest)),
    };
    replay.stop();
    let diverged = |action: usize, error: Option<String>, journaled: Option<Document>, replayed: Option<Document>| {
        let document = [&journaled, &replayed]
            .into_iter()
            .flatten()
            .find_map(|a| {
                a.get_document("filter")
                    .ok()
                    .or(a.get_document("document").ok())
                    .and_then(|d| d.get("_id"))
            })
            .map(|id| json(id.clone()));
        Some(Divergence {
            seq,
            pass: entry.pass,
            action,
            document,
            journaled: journaled.map(|d| json(Bson::Document(d))),
            replayed: replayed.map(|d| json(Bson::Document(d))),
            error,
        })
    };
    let valid = match raw.map_err(anyhow::Error::from).and_then(|raw| {
        // `finish`'s schema operations: checked, compared, and not part of
        // its batch.
        let raw = match entry.pass {
            Some(_) => raw,
            None => {
                let (rest, schema) = actions::split_schema(
                    &plugin.manifest.schema,
                    godwit_policy::SchemaSource::Finish,
                    &godwit_policy::Context::LOAD,
                    raw,
                )?;
                if schema != finish_schema {
                    anyhow::bail!(
                        "finish returned {} schema operations, not the {} the run journaled",
                        schema.len(),
                        finish_schema.len()
                    );
                }
                rest
            }
        };
        Ok(actions::validate(&allowed, raw)?)
    }) {
        Ok(mut valid) => {
            actions::assign_insert_ids(&mut valid, || super::insert_id_seed(run, entry.pass, &entry.inputs));
            valid
        }
        Err(e) => return diverged(0, Some(format!("{e:#}")), None, None),
    };
    let replayed: Vec<Document> = valid.iter().map(ValidAction::to_document).collect();
    let journaled: Vec<Document> = entry
        .actions
        .iter()
        .filter_map(|b| Document::from_reader(b.as_slice()).ok())
        .collect();
    let len = replayed.len().max(journaled.len());
    (0..len)
        .find(|&i| replayed.get(i) != journaled.get(i))
        .and_then(|i| diverged(i, None, journaled.get(i).cloned(), replayed.get(i).cloned()))
}

/// A value as relaxed Extended JSON (keys sorted): quotes and control
/// characters inside strings come out escaped, so a divergence line cannot
/// be misread (BSON's own `Display` prints strings between quotes without
/// escaping them).
fn json(value: Bson) -> String {
    value.into_relaxed_extjson().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_values_escape_quotes_and_controls() {
        let action = bson::doc! {"op": "update", "filter": {"_id": "a\"b"}, "update": {"$set": {"x": "1\n2"}}};
        assert_eq!(
            json(Bson::Document(action)),
            // serde_json's map: keys sorted.
            r#"{"filter":{"_id":"a\"b"},"op":"update","update":{"$set":{"x":"1\n2"}}}"#
        );
        assert_eq!(json(Bson::Int32(0)), "0");
    }
}
