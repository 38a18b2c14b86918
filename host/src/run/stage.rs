//! The plugin stage: one guarded call into the plugin (`process` for a
//! batch, or `finish`) and what the host makes of its answer before anything
//! is journaled - the actions validated against the call's scope (the plugin
//! policy), `_id`s given to inserts that have none, and the call's fuel and
//! journaled lookups - as a [`BatchRecord`].

use super::batch::{BatchRecord, Origin};
use super::insert_id_seed;
use super::lookup::Recorded;
use crate::plugin::PluginInstance;
use crate::plugin::actions::{self, Scope};
use anyhow::Context;

/// A live plugin instance with the lookups its calls make.
pub struct PluginStage {
    instance: PluginInstance,
    recorded: Recorded,
    /// The run id the plugin runs as (its own, or the reviewed dry run's):
    /// the seed of the `_id`s given to its inserts.
    identity_run: String,
    plugin: String,
}

/// A `process` call that failed, with the batch it was given.
pub struct Failed {
    pub error: anyhow::Error,
    pub batch: Vec<Vec<u8>>,
}

impl PluginStage {
    pub fn new(instance: PluginInstance, recorded: Recorded, identity_run: &str, plugin: &str) -> Self {
        PluginStage {
            instance,
            recorded,
            identity_run: identity_run.to_string(),
            plugin: plugin.to_string(),
        }
    }

    /// `process` on a batch of pass `pass`; `at` names the batch in errors.
    pub fn process(
        &mut self,
        pass: u32,
        scope: &Scope,
        batch: Vec<Vec<u8>>,
        at: impl Fn() -> String,
    ) -> anyhow::Result<BatchRecord> {
        self.try_process(pass, scope, batch, at).map_err(|failed| failed.error)
    }

    /// `process`, giving the batch back when the call or its actions fail:
    /// a batch processed ahead of its turn is processed again in its turn.
    pub fn try_process(
        &mut self,
        pass: u32,
        scope: &Scope,
        batch: Vec<Vec<u8>>,
        at: impl Fn() -> String,
    ) -> Result<BatchRecord, Failed> {
        let raw = match tokio::task::block_in_place(|| self.instance.process(pass, &batch)).with_context(&at) {
            Ok(raw) => raw,
            Err(error) => return Err(Failed { error, batch }),
        };
        failpoint!("plugin-called");
        let mut valid = match actions::validate(scope, raw)
            .with_context(|| format!("{}: plugin {} returned an invalid action", at(), self.plugin))
        {
            Ok(valid) => valid,
            Err(error) => return Err(Failed { error, batch }),
        };
        actions::assign_insert_ids(&mut valid, || insert_id_seed(&self.identity_run, Some(pass), &batch));
        Ok(BatchRecord::build(
            Origin::Pass(pass),
            batch,
            valid,
            self.instance.fuel_used(),
            self.recorded.drain(),
        ))
    }

    /// `finish`; `at` names the run in errors. Its schema operations
    /// (checked against the manifest's `grants`) come back apart.
    pub fn finish(
        &mut self,
        scope: &Scope,
        grants: &[godwit_policy::Grant],
        at: &str,
    ) -> anyhow::Result<(BatchRecord, Vec<godwit_policy::SchemaOp>)> {
        let raw = tokio::task::block_in_place(|| self.instance.finish()).with_context(|| format!("{at}: finish"))?;
        let (raw, schema) = actions::split_schema(grants, godwit_policy::SchemaSource::Finish, &scope.policy, raw)
            .with_context(|| format!("{at}, finish: plugin {} returned an invalid action", self.plugin))?;
        let mut valid = actions::validate(scope, raw)
            .with_context(|| format!("{at}, finish: plugin {} returned an invalid action", self.plugin))?;
        actions::assign_insert_ids(&mut valid, || insert_id_seed(&self.identity_run, None, &[]));
        let record = BatchRecord::build(
            Origin::Finish,
            Vec::new(),
            valid,
            self.instance.fuel_used(),
            self.recorded.drain(),
        );
        Ok((record, schema))
    }
}
