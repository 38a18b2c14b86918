//! `--plan RUN`: an execute run bound to the dry run an operator reviewed.
//!
//! The reviewed dry run's journal says, per batch, which inputs the plugin saw
//! and which actions it returned. An execute bound to it gives the plugin the
//! dry run's identity (run id, start time: the clock, the random seed and the
//! ids godwit gives inserts all derive from them), so a deterministic plugin
//! returns the same actions for the same inputs. Each batch is then checked
//! before it is journaled or written:
//! - inputs the dry run saw, actions it recorded: as reviewed;
//! - inputs the dry run saw, other actions: refused ([`PlanError::Diverged`]),
//!   nothing of the batch is written;
//! - inputs the dry run did not see (the data changed since, or another
//!   batch size): applied, and named in the summary as not reviewed.
//!
//! `finish` is held to the plan only when every batch was as reviewed (its
//! actions follow from everything before it).
//!
//! **Invariant:** the plan is read from a journal whose hash chain verified,
//! of a finished dry run of the same plugin file, parameters and database.

use crate::hash::{Sha256Hash, to_hex};
use crate::journal::{Journal, Record, RunMode, RunStatus};
use serde::Serialize;
use std::collections::HashMap;

/// Prefix of the `Begin` entry's note of a run bound to a plan.
const NOTE: &str = "plan ";

/// Unreviewed batches named in the summary (all are counted).
const NAMED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--plan {plan}: {problem}; review a dry run of this plugin first (`godwit run FILE`) and pass its run id")]
    Unusable { plan: String, problem: String },
    #[error(
        "run {run} is bound to the reviewed dry run {recorded}, not {asked}; resume it with --plan {recorded} (or start \
         over with --new-run)"
    )]
    OtherPlan {
        run: String,
        recorded: String,
        asked: String,
    },
    #[error(
        "{at}: the plugin returned other actions than the reviewed dry run {plan} did for the same inputs (its batch \
         {planned_seq}: {detail}); nothing of this batch was written. The plugin is not deterministic, or the data it \
         looks up changed since the review: review a new dry run and execute with --plan NEW_RUN"
    )]
    Diverged {
        at: String,
        plan: String,
        planned_seq: u64,
        detail: String,
    },
}

/// The reviewed dry run, as hashes.
pub struct Plan {
    pub run_id: String,
    pub started_at_ms: i64,
    /// (pass, inputs hash) -> (actions hash, the dry run's entry seq).
    batches: HashMap<(u32, Sha256Hash), (Sha256Hash, u64)>,
    finish: Option<(Sha256Hash, u64)>,
    check: PlanCheck,
}

/// How the execute run compared with the plan: the summary's `plan` field.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PlanCheck {
    /// The reviewed dry run.
    pub run: String,
    /// Batches whose inputs and actions were those the dry run recorded.
    pub reviewed: u64,
    /// Batches whose inputs the dry run did not see: applied, not reviewed.
    pub unreviewed: u64,
    /// The first of them: pass, batch and `_id` range.
    pub unreviewed_batches: Vec<String>,
    /// `finish` as reviewed, or why it was not held to the plan.
    pub finish: String,
}

impl Plan {
    /// Loads dry run `plan` for an execute run of the plugin with
    /// `plugin_sha256`, `params` and `database`.
    pub fn load(
        journal: &Journal,
        plan: &str,
        plugin_sha256: &str,
        params: &[(String, String)],
        database: &str,
    ) -> anyhow::Result<Plan> {
        let unusable = |problem: String| PlanError::Unusable {
            plan: plan.to_string(),
            problem,
        };
        let reviewed = journal
            .header(plan)
            .map_err(|e| unusable(format!("no such run in the journal ({e})")))?;
        if reviewed.mode != RunMode::DryRun {
            return Err(unusable("it is an execute run, not a dry run".into()).into());
        }
        if reviewed.status != RunStatus::Finished {
            return Err(unusable(format!("the dry run is {:?}, not finished", reviewed.status)).into());
        }
        if reviewed.plugin_sha256 != plugin_sha256 {
            return Err(unusable(format!(
                "it ran plugin sha256 {}, this is {plugin_sha256}",
                reviewed.plugin_sha256
            ))
            .into());
        }
        if reviewed.params != params {
            return Err(unusable(format!(
                "it ran with parameters {:?}, these are {params:?}",
                reviewed.params
            ))
            .into());
        }
        if reviewed.database != database {
            return Err(unusable(format!("it ran on database {}, this is {database}", reviewed.database)).into());
        }
        // A plan is only as good as its journal: the chain must verify.
        journal.verify(plan)?;
        let mut batches = HashMap::new();
        let mut finish = None;
        for item in journal.iter_entries(plan)? {
            let (entry, _) = item?;
            match &entry.record {
                Record::Planned(batch) => {
                    if let Some(pass) = batch.pass {
                        batches.insert((pass, batch.inputs_hash), (batch.actions_hash, entry.seq));
                    }
                }
                Record::Finish(batch) => finish = Some((batch.actions_hash, entry.seq)),
                _ => {}
            }
        }
        Ok(Plan {
            run_id: plan.to_string(),
            started_at_ms: reviewed.started_at_ms,
            batches,
            finish,
            check: PlanCheck {
                run: plan.to_string(),
                ..Default::default()
            },
        })
    }

    /// The note of the `Begin` entry of a run bound to this plan.
    pub fn note(&self) -> String {
        format!("{NOTE}{}", self.run_id)
    }

    /// The plan a run's `Begin` note names, if any.
    pub fn recorded(note: &str) -> Option<&str> {
        note.strip_prefix(NOTE)
    }

    /// Checks one batch of pass `pass` against the plan. `at` names the
    /// batch for messages; `ids` is its first and last `_id`.
    pub fn check_batch(
        &mut self,
        journal: &Journal,
        pass: u32,
        inputs: &Sha256Hash,
        actions: &Sha256Hash,
        encoded: &[Vec<u8>],
        at: &str,
    ) -> Result<(), PlanError> {
        match self.batches.get(&(pass, *inputs)) {
            Some((planned, _)) if planned == actions => {
                self.check.reviewed += 1;
                Ok(())
            }
            Some(&(_, seq)) => Err(self.diverged(journal, seq, encoded, at)),
            None => {
                self.check.unreviewed += 1;
                if self.check.unreviewed_batches.len() < NAMED {
                    self.check.unreviewed_batches.push(at.to_string());
                }
                Ok(())
            }
        }
    }

    /// Holds `finish` to the plan when every batch was as reviewed.
    pub fn check_finish(
        &mut self,
        journal: &Journal,
        actions: &Sha256Hash,
        encoded: &[Vec<u8>],
        at: &str,
    ) -> Result<(), PlanError> {
        if self.check.unreviewed > 0 {
            self.check.finish = "not held to the plan: some batches were not reviewed".into();
            return Ok(());
        }
        match self.finish {
            Some((planned, _)) if planned == *actions => {
                self.check.finish = "as reviewed".into();
                Ok(())
            }
            Some((_, seq)) => Err(self.diverged(journal, seq, encoded, at)),
            None => {
                self.check.finish = "the dry run recorded no finish".into();
                Ok(())
            }
        }
    }

    /// Counts a batch of an earlier process of this run (on resume).
    pub fn count_earlier(&mut self, pass: u32, inputs: &Sha256Hash) {
        if self.batches.contains_key(&(pass, *inputs)) {
            self.check.reviewed += 1;
        } else {
            self.check.unreviewed += 1;
        }
    }

    pub fn check(&self) -> &PlanCheck {
        &self.check
    }

    fn diverged(&self, journal: &Journal, seq: u64, encoded: &[Vec<u8>], at: &str) -> PlanError {
        let planned = journal
            .iter_entries(&self.run_id)
            .ok()
            .and_then(|mut entries| entries.find_map(|e| e.ok().filter(|(e, _)| e.seq == seq)))
            .and_then(|(e, _)| e.batch().map(|b| b.actions.clone()))
            .unwrap_or_default();
        PlanError::Diverged {
            at: at.to_string(),
            plan: self.run_id.clone(),
            planned_seq: seq,
            detail: first_difference(&planned, encoded),
        }
    }
}

/// Where two lists of encoded actions first differ, for the operator.
fn first_difference(planned: &[Vec<u8>], got: &[Vec<u8>]) -> String {
    let show = |bytes: &[u8]| {
        bson::Document::from_reader(bytes).map_or_else(
            |_| format!("sha256 {}", to_hex(&crate::hash::sha256(bytes))),
            |d| d.to_string(),
        )
    };
    for (i, (a, b)) in planned.iter().zip(got).enumerate() {
        if a != b {
            return format!("action {i} was {}, is now {}", show(a), show(b));
        }
    }
    format!("{} actions reviewed, {} now", planned.len(), got.len())
}

#[cfg(test)]
mod tests {
    use super::first_difference;
    use bson::doc;

    #[test]
    fn the_first_difference_is_named() {
        let a = doc! {"op": "delete", "filter": {"_id": 1}}.to_vec().unwrap();
        let b = doc! {"op": "delete", "filter": {"_id": {"$exists": true}}}
            .to_vec()
            .unwrap();
        assert_eq!(
            first_difference(&[a.clone(), a.clone()], &[a.clone(), b]),
            r#"action 1 was { "op": "delete", "filter": { "_id": 1 } }, is now { "op": "delete", "filter": { "_id": { "$exists": true } } }"#
        );
        assert_eq!(
            first_difference(std::slice::from_ref(&a), &[a.clone(), a.clone()]),
            "1 actions reviewed, 2 now"
        );
    }
}
