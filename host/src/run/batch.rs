//! The batch builder: what one plugin call produced, turned into the journal
//! entry that records it. Pure (no I/O): the hashes, counts and checkpoint
//! an auditor checks are computed here and nowhere else.

use super::report::Touched;
use crate::db::WriteCounts;
use crate::journal::{Batch, Commit, Counts, Entry, Image, LookupRecord, Record, hash_documents};
use crate::plugin::actions::ValidAction;
use bson::{Bson, Document, RawDocumentBuf, doc};

/// Which call a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `process` on a batch of pass `n`.
    Pass(u32),
    /// `finish`.
    Finish,
    /// A revert's restores: no plugin, no inputs.
    Revert,
}

impl Origin {
    pub fn pass(self) -> Option<u32> {
        match self {
            Origin::Pass(n) => Some(n),
            Origin::Finish | Origin::Revert => None,
        }
    }
}

/// One batch as the journal records it.
#[derive(Debug)]
pub struct BatchRecord {
    pub origin: Origin,
    /// `_id` of the batch's last input: where its pass resumes once applied.
    pub checkpoint: Option<Bson>,
    pub inputs: Vec<Vec<u8>>,
    pub actions: Vec<ValidAction>,
    /// `actions`, each as the BSON document the journal stores.
    pub encoded: Vec<Vec<u8>>,
    pub counts: Counts,
    pub inputs_hash: crate::hash::Sha256Hash,
    pub actions_hash: crate::hash::Sha256Hash,
    pub fuel: u64,
    pub lookups: Vec<LookupRecord>,
}

impl BatchRecord {
    /// A batch of `inputs` (raw BSON, `_id` order) and the validated
    /// `actions` the plugin returned for them.
    pub fn build(
        origin: Origin,
        inputs: Vec<Vec<u8>>,
        actions: Vec<ValidAction>,
        fuel: u64,
        lookups: Vec<LookupRecord>,
    ) -> Self {
        let encoded: Vec<Vec<u8>> = actions
            .iter()
            .map(|a| a.to_document().to_vec().expect("validated actions encode"))
            .collect();
        let mut counts = Counts {
            documents: match origin {
                Origin::Revert => actions.len() as u64,
                Origin::Pass(_) | Origin::Finish => inputs.len() as u64,
            },
            ..Counts::default()
        };
        for action in &actions {
            match action {
                ValidAction::Update { .. } => counts.updates += 1,
                ValidAction::Insert { .. } => counts.inserts += 1,
                ValidAction::Delete { .. } => counts.deletes += 1,
                ValidAction::Report { .. } => counts.reports += 1,
            }
        }
        let checkpoint = match origin {
            Origin::Pass(_) => inputs.last().and_then(|d| id_of(d)),
            Origin::Finish | Origin::Revert => None,
        };
        BatchRecord {
            origin,
            checkpoint,
            inputs_hash: hash_documents(&inputs),
            actions_hash: hash_documents(&encoded),
            inputs,
            actions,
            encoded,
            counts,
            fuel,
            lookups,
        }
    }

    /// The journal entry recording this batch - `Planned` in a dry run,
    /// `Prepared` before an execute writes it, `Finish` for `finish` - and
    /// what the writer needs of it: the checkpoint and the actions. Moves
    /// the inputs and actions into the entry rather than copying them.
    pub fn into_entry(self, execute: bool, at_ms: i64) -> (Entry, Option<Bson>, Vec<ValidAction>) {
        let batch = Batch {
            pass: self.origin.pass(),
            checkpoint: self
                .checkpoint
                .as_ref()
                .map(|id| doc! {"_id": id.clone()}.to_vec().expect("an _id encodes")),
            inputs_hash: self.inputs_hash,
            actions_hash: self.actions_hash,
            counts: self.counts,
            fuel: self.fuel,
            inputs: self.inputs,
            actions: self.encoded,
            lookups: self.lookups,
        };
        let record = match (self.origin, execute) {
            (Origin::Finish, _) => Record::Finish(batch),
            (_, true) => Record::Prepared(batch),
            (_, false) => Record::Planned(batch),
        };
        (Entry::new(record, at_ms), self.checkpoint, self.actions)
    }
}

/// The `_id` of a raw document.
pub fn id_of(raw: &[u8]) -> Option<Bson> {
    RawDocumentBuf::from_bytes(raw.to_vec())
        .ok()
        .and_then(|d| d.get("_id").ok().flatten().and_then(|v| Bson::try_from(v).ok()))
}

/// The `_id` of a raw document, for messages.
pub fn id_text(raw: &[u8]) -> String {
    id_of(raw).map_or_else(|| "?".into(), |id| id.to_string())
}

/// Where a journaled batch's pass resumes once it is applied.
pub fn checkpoint_of(batch: &Batch) -> Option<Bson> {
    batch
        .checkpoint
        .as_ref()
        .and_then(|b| Document::from_reader(b.as_slice()).ok())
        .and_then(|d| d.get("_id").cloned())
}

/// The validated actions of a journaled batch (entry `seq`).
pub fn decode_actions(batch: &Batch, seq: u64) -> anyhow::Result<Vec<ValidAction>> {
    use anyhow::Context;
    batch
        .actions
        .iter()
        .map(|bytes| {
            let doc = Document::from_reader(bytes.as_slice())?;
            Ok(ValidAction::from_document(&doc)?)
        })
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("journal entry {seq}: actions do not decode"))
}

/// Documents touched, from the server's counts: an update reply's `n`
/// includes the documents its upserts created.
pub fn touched_of(counts: WriteCounts) -> Touched {
    Touched {
        updated: counts.matched.saturating_sub(counts.upserted),
        inserted: counts.inserted + counts.upserted,
        deleted: counts.deleted,
    }
}

/// The entry recording that batch `batch_seq` was committed, touching
/// `touched` documents, with its before-images (or the `Images` entry
/// holding them).
pub fn committed_entry(
    batch_seq: u64,
    pass: Option<u32>,
    touched: Touched,
    images: Vec<Image>,
    images_at: Option<u64>,
    note: &str,
) -> Entry {
    Entry::new(
        Record::Committed(Commit {
            batch_seq,
            pass,
            updated: touched.updated,
            inserted: touched.inserted,
            deleted: touched.deleted,
            images,
            images_at,
            note: note.to_string(),
        }),
        super::now_ms(),
    )
}

/// What a commit says its batch touched.
pub fn committed_touched(commit: &Commit) -> Touched {
    Touched {
        updated: commit.updated,
        inserted: commit.inserted,
        deleted: commit.deleted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::EntryKind;

    fn raw(d: Document) -> Vec<u8> {
        d.to_vec().unwrap()
    }

    fn update(id: i32) -> ValidAction {
        ValidAction::Update {
            collection: "c".into(),
            filter: doc! {"_id": id},
            update: doc! {"$set": {"x": 1}},
            upsert: false,
            multi: false,
        }
    }

    #[test]
    fn a_pass_batch_counts_its_inputs_and_actions_and_checkpoints_at_its_last_id() {
        let inputs = vec![raw(doc! {"_id": 1}), raw(doc! {"_id": "b", "x": 2})];
        let actions = vec![
            update(1),
            ValidAction::Delete {
                collection: "c".into(),
                filter: doc! {"_id": 1},
                multi: false,
            },
            ValidAction::Report {
                kind: "k".into(),
                key: String::new(),
                message: "m".into(),
            },
        ];
        let record = BatchRecord::build(Origin::Pass(2), inputs.clone(), actions, 7, Vec::new());
        assert_eq!(record.checkpoint, Some(Bson::String("b".into())));
        assert_eq!(
            (
                record.counts.documents,
                record.counts.updates,
                record.counts.deletes,
                record.counts.reports
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(record.inputs_hash, hash_documents(&inputs));
        assert_eq!(record.actions_hash, hash_documents(&record.encoded));

        let (expected, hashes) = (record.actions.clone(), (record.inputs_hash, record.actions_hash));
        let planned = BatchRecord::build(Origin::Pass(2), inputs.clone(), expected.clone(), 7, Vec::new());
        let (prepared, checkpoint, actions) = record.into_entry(true, 5);
        assert_eq!(
            (checkpoint, actions),
            (Some(Bson::String("b".into())), expected.clone())
        );
        assert_eq!(prepared.kind(), EntryKind::Prepared);
        let batch = prepared.batch().unwrap();
        assert_eq!(batch.pass, Some(2));
        assert_eq!(checkpoint_of(batch), Some(Bson::String("b".into())));
        assert_eq!(batch.fuel, 7);
        assert_eq!((batch.inputs_hash, batch.actions_hash), hashes);
        assert_eq!(decode_actions(batch, 0).unwrap(), expected);
        assert_eq!(planned.into_entry(false, 5).0.kind(), EntryKind::Planned);
    }

    #[test]
    fn finish_and_revert_batches_have_no_pass_and_no_checkpoint() {
        let finish = || BatchRecord::build(Origin::Finish, Vec::new(), vec![update(1)], 0, Vec::new());
        let entry = finish().into_entry(true, 0).0;
        let batch = entry.batch().unwrap();
        assert_eq!(
            (entry.kind(), batch.pass, batch.checkpoint.clone()),
            (EntryKind::Finish, None, None)
        );
        assert_eq!(finish().into_entry(false, 0).0.kind(), EntryKind::Finish);
        assert_eq!(batch.counts.documents, 0);

        // A revert counts the documents it restores: one per action.
        let revert = BatchRecord::build(Origin::Revert, Vec::new(), vec![update(1), update(2)], 0, Vec::new());
        let entry = revert.into_entry(true, 0).0;
        let batch = entry.batch().unwrap();
        assert_eq!(
            (entry.kind(), batch.pass, batch.counts.documents),
            (EntryKind::Prepared, None, 2)
        );
        assert_eq!(batch.inputs_hash, hash_documents(&[]));
    }

    #[test]
    fn committed_entries_carry_documents_touched_and_upserts_count_as_inserted() {
        let touched = touched_of(WriteCounts {
            matched: 5,
            modified: 3,
            upserted: 2,
            inserted: 1,
            deleted: 4,
        });
        assert_eq!(
            touched,
            Touched {
                updated: 3,
                inserted: 3,
                deleted: 4
            }
        );
        let entry = committed_entry(9, Some(1), touched, Vec::new(), None, "settled");
        assert_eq!(
            (entry.kind(), entry.pass(), entry.note()),
            (EntryKind::Committed, Some(1), "settled")
        );
        let Record::Committed(commit) = &entry.record else {
            panic!("a commit")
        };
        assert_eq!(commit.batch_seq, 9);
        assert_eq!(committed_touched(commit), touched);
    }
}
