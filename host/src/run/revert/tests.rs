use super::*;

fn key(id: i32) -> Vec<u8> {
    id_key(&Bson::Int32(id))
}

fn raw(d: Document) -> Vec<u8> {
    d.to_vec().unwrap()
}

/// Document `id` of collection `c`: before the run `before` (None: the run
/// inserted it), after the run `after` (None: the run deleted it).
fn touched(id: i32, before: Option<Document>, after: Option<Document>) -> Touched {
    Touched {
        collection: "c".into(),
        key: key(id),
        before: before.map(raw),
        after: after.map(|d| sha256(&raw(d))),
    }
}

#[test]
fn each_document_is_restored_removed_left_or_reported_by_how_it_is_now() {
    let (v0, v1, other) = (
        doc! {"_id": 1, "v": 0},
        doc! {"_id": 1, "v": 1},
        doc! {"_id": 1, "v": 9},
    );
    let docs = vec![
        // 1: as the run left it -> restore the before-image.
        touched(1, Some(v0.clone()), Some(v1.clone())),
        // 2: inserted by the run, still as inserted -> delete.
        touched(2, None, Some(doc! {"_id": 2})),
        // 3: already as before the run -> nothing.
        touched(3, Some(doc! {"_id": 3}), Some(doc! {"_id": 3, "v": 1})),
        // 4: changed since the run -> conflict, left alone.
        touched(4, Some(doc! {"_id": 4}), Some(doc! {"_id": 4, "v": 1})),
        // 5: deleted by the run, still gone -> put back.
        touched(5, Some(doc! {"_id": 5}), None),
    ];
    let current: HashMap<_, _> = [
        (("c".to_string(), key(1)), sha256(&raw(v1))),
        (("c".to_string(), key(2)), sha256(&raw(doc! {"_id": 2}))),
        (("c".to_string(), key(3)), sha256(&raw(doc! {"_id": 3}))),
        (("c".to_string(), key(4)), sha256(&raw(other))),
    ]
    .into();
    let mut report = RevertReport::default();
    let (actions, expect) = classify(docs, &current, false, &mut report).unwrap();
    assert_eq!(
        (report.restore, report.remove, report.unchanged, report.conflicts),
        (2, 1, 1, 1)
    );
    assert_eq!(report.conflicts_listed.len(), 1);
    assert_eq!(report.conflicts_listed[0].id, "4");
    assert_eq!(actions.len(), 3);
    assert!(matches!(&actions[0], ValidAction::Update { update, upsert: true, .. } if *update == v0));
    assert!(matches!(&actions[1], ValidAction::Delete { multi: false, .. }));
    // Each write expects the document as the plan saw it; a deleted one absent.
    assert_eq!(expect.get(&("c".to_string(), key(5))), Some(&None));
    assert_eq!(expect.len(), 3);
    assert!(!report.complete());
}

#[test]
fn force_overwrites_a_document_changed_since_the_run() {
    let docs = vec![touched(4, Some(doc! {"_id": 4}), Some(doc! {"_id": 4, "v": 1}))];
    let now = sha256(&raw(doc! {"_id": 4, "v": 9}));
    let current: HashMap<_, _> = [(("c".to_string(), key(4)), now)].into();
    let mut report = RevertReport {
        forced: true,
        ..RevertReport::default()
    };
    let (actions, expect) = classify(docs, &current, true, &mut report).unwrap();
    assert_eq!((report.conflicts, report.restore, actions.len()), (1, 1, 1));
    assert_eq!(expect.get(&("c".to_string(), key(4))), Some(&Some(now)));
    assert!(report.complete());
}
