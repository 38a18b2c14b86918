//! The run summary: per pass, documents scanned and actions by kind, with
//! reports grouped by kind and the first few samples of each.

use crate::plugin::actions::ValidAction;
use serde::Serialize;
use std::collections::BTreeMap;

/// Samples kept per report kind.
pub const SAMPLES: usize = 5;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub passes: Vec<PassSummary>,
    pub finish: PassSummary,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PassSummary {
    pub name: String,
    pub collection: String,
    pub documents: u64,
    pub batches: u64,
    pub updates: u64,
    pub inserts: u64,
    pub deletes: u64,
    /// Write actions per target collection.
    pub writes_by_collection: BTreeMap<String, u64>,
    pub reports: BTreeMap<String, ReportKind>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReportKind {
    pub count: u64,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub key: String,
    pub message: String,
}

impl Summary {
    pub fn new<'a>(passes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Summary {
            passes: passes
                .into_iter()
                .map(|(name, collection)| PassSummary {
                    name: name.into(),
                    collection: collection.into(),
                    ..Default::default()
                })
                .collect(),
            finish: PassSummary {
                name: "finish".into(),
                ..Default::default()
            },
        }
    }

    /// Adds one batch: `pass` None is `finish`.
    pub fn add(&mut self, pass: Option<u32>, documents: u64, actions: &[ValidAction]) {
        let target = match pass {
            Some(p) => &mut self.passes[p as usize],
            None => &mut self.finish,
        };
        target.documents += documents;
        target.batches += 1;
        for action in actions {
            match action {
                ValidAction::Update { .. } => target.updates += 1,
                ValidAction::Insert { .. } => target.inserts += 1,
                ValidAction::Delete { .. } => target.deletes += 1,
                ValidAction::Report { kind, key, message } => {
                    let entry = target.reports.entry(kind.clone()).or_default();
                    entry.count += 1;
                    if entry.samples.len() < SAMPLES {
                        entry.samples.push(Sample {
                            key: key.clone(),
                            message: message.clone(),
                        });
                    }
                }
            }
            if let Some(c) = action.collection() {
                *target.writes_by_collection.entry(c.to_string()).or_default() += 1;
            }
        }
    }

    pub fn write_actions(&self) -> u64 {
        self.passes
            .iter()
            .chain([&self.finish])
            .map(|p| p.updates + p.inserts + p.deletes)
            .sum()
    }

    pub fn documents(&self) -> u64 {
        self.passes.iter().map(|p| p.documents).sum()
    }
}
