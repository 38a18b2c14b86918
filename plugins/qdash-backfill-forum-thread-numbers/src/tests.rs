use super::*;
use godwit_sdk::bson::oid::ObjectId;
use godwit_sdk::testing::Harness;

fn post(id: ObjectId, number: Option<i32>, parent: Option<&str>, at: i64) -> Document {
    let mut d = doc! {
        "_id": id, "project_id": "project-a", "category": "qubit", "username": "owner",
        "parent_id": parent.map_or(Bson::Null, |p| Bson::String(p.into())),
        "is_deleted": false,
        "system_info": {"created_at": bson::DateTime::from_millis(at)},
    };
    d.insert("number", number.map_or(Bson::Null, Bson::Int32));
    d
}

use godwit_sdk::bson;

#[test]
fn upstream_roots_replies_and_counter() {
    let (existing, missing, reply, orphan) = (ObjectId::new(), ObjectId::new(), ObjectId::new(), ObjectId::new());
    let roots = vec![post(existing, Some(3), None, 1), post(missing, None, None, 2)];
    let replies = vec![
        post(reply, None, Some(&missing.to_hex()), 3),
        post(orphan, None, Some("missing-root"), 4),
    ];
    let mut h = Harness::<BackfillForumThreadNumbers>::new().collection(
        FORUM_COUNTER,
        vec![doc! {"_id": 1, "project_id": "project-a", "value": 10}],
    );
    assert!(h.run_pass(ROOTS, roots.clone()).unwrap().is_empty());
    let set = h.run_pass(NUMBER_ROOTS, roots).unwrap();
    assert_eq!(set, vec![Action::set(FORUM_POST, missing, doc! {"number": 1})]);
    let set = h.run_pass(REPLIES, replies).unwrap();
    assert_eq!(set, vec![Action::set(FORUM_POST, reply, doc! {"number": 1})]);
    let finish = h.finish().unwrap();
    assert_eq!(
        finish.len(),
        1,
        "the counter (10) is above the highest number (3): {finish:?}"
    );
    let Action::Report(summary) = &finish[0] else { panic!() };
    assert_eq!(
        summary.message,
        "{\"projects_found\": 1, \"root_threads_missing_number\": 1, \"root_threads_updated\": 1, \
         \"replies_updated\": 1, \"orphan_replies_found\": 1, \"counters_updated\": 0, \
         \"duplicate_root_numbers\": {}, \"projects\": [{\"project_id\": \"project-a\", \"root_threads\": 2, \
         \"root_threads_missing_number\": 1, \"replies_to_update\": 1, \"orphan_replies\": 1, \
         \"duplicate_root_numbers\": {}, \"max_number\": 3, \"counter_value\": 10, \"action\": \"updated\"}]}"
    );
}

#[test]
fn upstream_duplicate_root_numbers_stop_the_run() {
    let (first, second) = (ObjectId::new(), ObjectId::new());
    let roots = vec![post(first, Some(1), None, 1), post(second, Some(1), None, 2)];
    let mut h = Harness::<BackfillForumThreadNumbers>::new();
    h.run_pass(ROOTS, roots.clone()).unwrap();
    let err = h.run_pass(NUMBER_ROOTS, roots).unwrap_err();
    assert!(
        err.message.contains(&format!(
            "{{\"project-a\": {{\"1\": [\"{}\", \"{}\"]}}}}",
            first.to_hex(),
            second.to_hex()
        )),
        "{err}"
    );
}

#[test]
fn numbers_skip_taken_ones_in_creation_order_and_a_missing_counter_is_created() {
    let ids: Vec<ObjectId> = (0..4).map(|_| ObjectId::new()).collect();
    // Created in reverse _id order; number 2 is taken.
    let roots = vec![
        post(ids[0], None, None, 40),
        post(ids[1], None, None, 30),
        post(ids[2], Some(2), None, 20),
        post(ids[3], None, None, 10),
    ];
    let mut h = Harness::<BackfillForumThreadNumbers>::new();
    h.run_pass(ROOTS, roots.clone()).unwrap();
    let set = h.run_pass(NUMBER_ROOTS, roots).unwrap();
    assert_eq!(
        set,
        vec![
            Action::set(FORUM_POST, ids[0], doc! {"number": 4}),
            Action::set(FORUM_POST, ids[1], doc! {"number": 3}),
            Action::set(FORUM_POST, ids[3], doc! {"number": 1}),
        ]
    );
    let finish = h.finish().unwrap();
    assert_eq!(
        finish[0],
        Action::upsert(
            FORUM_COUNTER,
            doc! {"project_id": "project-a"},
            doc! {"$max": {"value": 4}}
        )
    );
}
