//! Seed 001, datalab's 0.8.0 upgrade (`pin_item_id_references_to_refcodes`,
//! registered with `DatabaseUpgrader.register_upgrade("0.8.0")`): every
//! `items.relationships[]` entry that points at another item by `item_id`
//! gets that item's `refcode`; entries whose `item_id` matches no item (or an
//! item without a refcode) are marked `deprecated: true`.
//!
//! The database reaches 0.8.0 from the 0.7.0 baseline stamp (`godwit init
//! --version 0.7.0`, datalab's `admin.initialise-schema-version`) through
//! `godwit upgrade`. The upgrader's `UpgradeAction`s come out as two
//! `upgrade_action` reports carrying the same descriptions and counts, plus a
//! `summary` of the figures.
//!
//! One deliberate difference from the draft: an entry already marked
//! `deprecated` is left alone. The draft re-deprecates it on every run, so
//! it never converges - godwit's verification (the pass re-run dry after
//! execute) would rightly refuse to stamp.

use godwit_sdk::{Action, Bson, Context, Document, Error, Manifest, Migration, Params, Pass, Tally, doc};
use std::collections::HashMap;

pub struct PinRefcodes {
    /// item_id -> refcode of every item that has both.
    refcodes: HashMap<String, String>,
    tally: Tally,
}

/// A string field that is present and not empty (the draft's truthiness test).
fn text<'a>(d: &'a Document, key: &str) -> Option<&'a str> {
    d.get_str(key).ok().filter(|s| !s.is_empty())
}

impl Migration for PinRefcodes {
    fn manifest() -> Manifest {
        Manifest::new("datalab-pin-refcodes", "0.8.0")
            .requires("^0.7")
            .description("Pin relationships[].item_id references to refcode; deprecate unresolvable ones")
            .pass(
                Pass::new("items", "items")
                    .filter(doc! {"relationships.0": {"$exists": true}})
                    .projection(doc! {"refcode": 1, "relationships": 1})
                    .writes(["items"]),
            )
    }

    fn begin(_params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let items = cx.find_all("items", doc! {}, Some(doc! {"item_id": 1, "refcode": 1}), 5_000)?;
        let refcodes = items
            .iter()
            .filter_map(|i| Some((text(i, "item_id")?.to_string(), text(i, "refcode")?.to_string())))
            .collect();
        let mut tally = Tally::new();
        for name in ["items_updated", "pinned", "deprecated"] {
            tally.touch(name);
        }
        Ok(PinRefcodes { refcodes, tally })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for item in batch {
            let id = item.get("_id").cloned().ok_or_else(|| Error::new("item without _id"))?;
            let Ok(relationships) = item.get_array("relationships") else {
                continue;
            };
            let mut relationships = relationships.clone();
            let mut changed = false;
            for (i, rel) in relationships.iter_mut().enumerate() {
                let Bson::Document(rel) = rel else {
                    return Err(Error::new(format!("relationships[{i}] is not a document")).for_document(id));
                };
                // Already pinned, not an item reference, or already deprecated.
                if text(rel, "refcode").is_some() || rel.get_bool("deprecated").unwrap_or(false) {
                    continue;
                }
                let Some(item_id) = text(rel, "item_id") else { continue };
                match self.refcodes.get(item_id) {
                    Some(refcode) => {
                        rel.insert("refcode", refcode.clone());
                        self.tally.incr("pinned");
                    }
                    None => {
                        actions.push(Action::report(
                            "deprecated",
                            item_id,
                            format!("item {id}: relationships[{i}] points at item_id {item_id:?}, which no item with a refcode has"),
                        ));
                        rel.insert("deprecated", true);
                        self.tally.incr("deprecated");
                    }
                }
                changed = true;
            }
            if changed {
                self.tally.incr("items_updated");
                actions.push(Action::set("items", id, doc! {"relationships": relationships}));
            }
        }
        Ok(actions)
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        let (pinned, deprecated) = (self.tally.get("pinned"), self.tally.get("deprecated"));
        Ok(vec![
            Action::report(
                "upgrade_action",
                "pin",
                format!("Pin {pinned} item_id reference(s) to their refcode (collection items, update)"),
            ),
            Action::report(
                "upgrade_action",
                "deprecate",
                format!("Deprecate {deprecated} unresolvable item_id reference(s) (collection items, update)"),
            ),
            self.tally.report("summary", "0.8.0"),
        ])
    }
}

godwit_sdk::export!(PinRefcodes);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    fn harness() -> Harness<PinRefcodes> {
        Harness::new().collection(
            "items",
            vec![
                doc! {"_id": 1, "item_id": "s1", "refcode": "grey:AAA"},
                doc! {"_id": 2, "item_id": "s2", "refcode": "grey:BBB"},
                doc! {"_id": 3, "item_id": "no-refcode"},
            ],
        )
    }

    #[test]
    fn pins_resolvable_and_deprecates_the_rest_in_one_update() {
        let mut h = harness();
        let item = doc! {"_id": 9, "relationships": [
            {"item_id": "s1", "relation": "parent"},
            {"item_id": "gone"},
            {"item_id": "no-refcode"},
            {"item_id": "s2", "refcode": "grey:BBB"},
            {"collection_id": "c1"},
        ]};
        let actions = h.process(0, vec![item]).unwrap();
        assert_eq!(
            actions.last().unwrap(),
            &Action::set(
                "items",
                9,
                doc! {"relationships": [
                    {"item_id": "s1", "relation": "parent", "refcode": "grey:AAA"},
                    {"item_id": "gone", "deprecated": true},
                    {"item_id": "no-refcode", "deprecated": true},
                    {"item_id": "s2", "refcode": "grey:BBB"},
                    {"collection_id": "c1"},
                ]}
            )
        );
        assert_eq!(actions.len(), 3, "two deprecation reports and the update");
        let finish = h.finish().unwrap();
        assert_eq!(
            finish[0],
            Action::report(
                "upgrade_action",
                "pin",
                "Pin 1 item_id reference(s) to their refcode (collection items, update)"
            )
        );
        assert_eq!(
            finish[2],
            Action::report(
                "summary",
                "0.8.0",
                r#"{"items_updated": 1, "pinned": 1, "deprecated": 2}"#
            )
        );
    }

    #[test]
    fn converges_pinned_and_deprecated_entries_need_nothing() {
        let mut h = harness();
        let item = doc! {"_id": 9, "relationships": [{"item_id": "s1", "refcode": "grey:AAA"}, {"item_id": "gone", "deprecated": true}]};
        assert!(h.process(0, vec![item]).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_relationship_names_the_item() {
        let err = harness()
            .process(0, vec![doc! {"_id": 4, "relationships": ["s1"]}])
            .unwrap_err();
        assert_eq!(err.document_id, Some(Bson::Int32(4)));
        assert!(err.message.contains("relationships[0]"), "{}", err.message);
    }
}
