//! Upstream has no test of `migrate_backfill_user_id` (its
//! `tests/qdash/dbmodel/test_migration.py` covers the forum migrations only),
//! so these cases are written from its code: each input is what that function
//! would read and each expected output is what it would compute or write.

use super::*;
use godwit_sdk::Mode;
use godwit_sdk::testing::Harness;

fn pass_of(collection: &str) -> usize {
    1 + FIELD_PAIRS.iter().position(|(c, _)| *c == collection).unwrap()
}

fn oid(n: u8) -> Bson {
    Bson::ObjectId(godwit_sdk::bson::oid::ObjectId::from_bytes([n; 12]))
}

fn id_of(n: u8) -> String {
    user_id_for(&oid(n), "")
}

/// alice lacks an id, bob has one, carol's is `""`, dave's `null`, erin's is
/// a number, a blank-named user lacks one, `Alice` (a case variant of alice)
/// has one.
fn users() -> Vec<Document> {
    vec![
        doc! {"_id": oid(1), "username": "alice"},
        doc! {"_id": oid(2), "username": "bob", "user_id": "usr_bob"},
        doc! {"_id": oid(3), "username": "carol", "user_id": ""},
        doc! {"_id": oid(4), "username": "dave", "user_id": Bson::Null},
        doc! {"_id": oid(5), "username": "erin", "user_id": 42},
        doc! {"_id": oid(6), "username": ""},
        doc! {"_id": oid(7), "username": "Alice", "user_id": "usr_capital"},
    ]
}

fn harness() -> Harness<BackfillUserId> {
    Harness::new().collection(USER, users())
}

fn reports(actions: &[Action], kind: &str) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Report(r) if r.kind == kind => Some((r.key.clone(), r.message.clone())),
            _ => None,
        })
        .collect()
}

fn writes(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Report(_)))
        .cloned()
        .collect()
}

fn summary(h: &mut Harness<BackfillUserId>) -> serde_json_lite::Value {
    let finish = h.finish().unwrap();
    let [Action::Report(r)] = finish.as_slice() else {
        panic!("{finish:?}")
    };
    assert_eq!((r.kind.as_str(), r.key.as_str()), ("summary", "backfill-user-id"));
    serde_json_lite::parse(&r.message)
}

/// A tiny JSON reader for the summary (the plugin crate has no serde).
mod serde_json_lite {
    #[derive(Debug, PartialEq)]
    pub enum Value {
        Number(u64),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> &Value {
            match self {
                Value::Object(fields) => {
                    &fields
                        .iter()
                        .find(|(k, _)| k == key)
                        .unwrap_or_else(|| panic!("{key}"))
                        .1
                }
                Value::Number(_) => panic!("not an object"),
            }
        }
        pub fn n(&self, key: &str) -> u64 {
            match self.get(key) {
                Value::Number(n) => *n,
                Value::Object(_) => panic!("{key} is not a number"),
            }
        }
        pub fn keys(&self) -> Vec<&str> {
            match self {
                Value::Object(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
                Value::Number(_) => panic!("not an object"),
            }
        }
    }

    pub fn parse(text: &str) -> Value {
        let mut chars = text.chars().peekable();
        let value = parse_value(&mut chars);
        assert!(chars.next().is_none(), "trailing text in {text}");
        value
    }

    fn parse_value(chars: &mut std::iter::Peekable<std::str::Chars>) -> Value {
        match chars.peek() {
            Some('{') => {
                chars.next();
                let mut fields = Vec::new();
                if chars.peek() == Some(&'}') {
                    chars.next();
                    return Value::Object(fields);
                }
                loop {
                    assert_eq!(chars.next(), Some('"'));
                    let mut key = String::new();
                    loop {
                        match chars.next().unwrap() {
                            '"' => break,
                            '\\' => key.push(chars.next().unwrap()),
                            c => key.push(c),
                        }
                    }
                    assert_eq!((chars.next(), chars.next()), (Some(':'), Some(' ')));
                    fields.push((key, parse_value(chars)));
                    match chars.next() {
                        Some(',') => assert_eq!(chars.next(), Some(' ')),
                        Some('}') => return Value::Object(fields),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            _ => {
                let mut digits = String::new();
                while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                    digits.push(*c);
                    chars.next();
                }
                Value::Number(digits.parse().unwrap())
            }
        }
    }
}

#[test]
fn ids_have_qdash_shape_and_are_reproducible_per_user_and_namespace() {
    let a = id_of(1);
    assert_eq!(a, id_of(1), "same _id, same id: resume and replay agree");
    assert_ne!(a, id_of(2));
    assert_ne!(a, user_id_for(&oid(1), "staging"), "the namespace changes it");
    assert_ne!(
        user_id_for(&Bson::Int32(1), ""),
        user_id_for(&Bson::String("1".into()), "")
    );
    let hex = a.strip_prefix("usr_").unwrap();
    assert_eq!(hex.len(), 32, "{a}");
    assert!(
        hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{a}"
    );
    assert_eq!(&hex[12..13], "8", "UUID version 8 (derived), where uuid4 has 4: {a}");
    assert!("89ab".contains(&hex[16..17]), "RFC 9562 variant: {a}");
    // Pinned, the same values as the Python twin's test: both derive the same ids.
    assert_eq!(a, "usr_7083790289668924a57af505af63ca5f");
    assert_eq!(user_id_for(&Bson::Int32(1), ""), "usr_4a534a890e698847b2db2e707056f08a");
    assert_eq!(user_id_for(&oid(1), "staging"), "usr_9be9869fea878fccaa8371f3c655826f");
}

#[test]
fn users_missing_an_id_in_any_spelling_get_one_and_others_are_kept() {
    let mut h = harness();
    let actions = h.run_pass(USER_PASS, users()).unwrap();
    assert_eq!(
        writes(&actions),
        vec![
            Action::set(USER, oid(1), doc! {"user_id": id_of(1)}),
            Action::set(USER, oid(3), doc! {"user_id": id_of(3)}),
            Action::set(USER, oid(4), doc! {"user_id": id_of(4)}),
        ],
        "absent, \"\" and null alike; bob's, erin's and Alice's ids untouched"
    );
    let skipped: Vec<String> = reports(&actions, "skipped").into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        skipped,
        [
            format!(
                "user of _id {}: user_id is an integer, kept as it is; references to this user stay unresolved",
                "050505050505050505050505"
            ),
            format!(
                "user of _id {}: no username, so no user_id is generated (as upstream)",
                "060606060606060606060606"
            ),
        ]
    );
    let stats = summary(&mut h);
    assert_eq!(
        stats.n("users_without_user_id"),
        4,
        "alice, carol, dave and the blank one"
    );
    assert_eq!(stats.n("users_updated"), 3, "the blank-named user gets none");
}

#[test]
fn the_figures_do_not_depend_on_the_run_mode() {
    // godwit tells every plugin `execute`; were a host to say `dry-run`, the
    // plugin must still ask for (and count) the same writes.
    let mut dry = Harness::<BackfillUserId>::new()
        .mode(Mode::DryRun)
        .collection(USER, users());
    let mut exec = harness();
    assert_eq!(
        dry.run_pass(USER_PASS, users()).unwrap(),
        exec.run_pass(USER_PASS, users()).unwrap()
    );
    let (dry, exec) = (summary(&mut dry), summary(&mut exec));
    assert_eq!((dry.n("users_without_user_id"), dry.n("users_updated")), (4, 3));
    assert_eq!((exec.n("users_without_user_id"), exec.n("users_updated")), (4, 3));
}

#[test]
fn references_resolve_exactly_and_blank_or_filled_ones_are_left_alone() {
    let mut h = harness();
    let projects = vec![
        doc! {"_id": 1, "owner_username": "alice"},
        doc! {"_id": 2, "owner_username": "bob", "owner_user_id": ""},
        doc! {"_id": 3, "owner_username": "carol", "owner_user_id": Bson::Null},
        doc! {"_id": 4, "owner_username": "bob", "owner_user_id": "usr_already"},
        doc! {"_id": 5, "owner_username": ""},
        doc! {"_id": 6, "owner_username": "ALICE"},
        doc! {"_id": 7, "owner_username": "Alice"},
        doc! {"_id": 8, "owner_username": "erin"},
        doc! {"_id": 9, "owner_username": "former_member"},
        doc! {"_id": 10, "owner_username": 7},
        doc! {"_id": 11, "owner_username": "alice", "owner_user_id": 99},
    ];
    let actions = h.run_pass(pass_of("project"), projects).unwrap();
    assert_eq!(
        writes(&actions),
        vec![
            Action::set("project", 1, doc! {"owner_user_id": id_of(1)}),
            Action::set("project", 2, doc! {"owner_user_id": "usr_bob"}),
            Action::set("project", 3, doc! {"owner_user_id": id_of(3)}),
            Action::set("project", 7, doc! {"owner_user_id": "usr_capital"}),
        ]
    );
    assert_eq!(
        reports(&actions, "unresolved"),
        [
            (
                "ALICE".to_string(),
                "project.owner_username of _id 6: no user is named \"ALICE\"".to_string()
            ),
            (
                "erin".to_string(),
                "project.owner_username of _id 8: user \"erin\"'s user_id is an integer".to_string()
            ),
            (
                "former_member".to_string(),
                "project.owner_username of _id 9: no user is named \"former_member\"".to_string()
            ),
        ]
    );
    let stats = summary(&mut h);
    let project = stats.get("collections").get("project");
    assert_eq!(
        (project.n("matched"), project.n("updated")),
        (7, 4),
        "matched counts the unresolved ones too"
    );
    assert_eq!(stats.get("unresolved").keys(), ["project"]);
    let unresolved = stats.get("unresolved").get("project");
    assert_eq!(unresolved.keys(), ["ALICE", "erin", "former_member"]);
}

#[test]
fn two_pairs_make_one_write_and_count_per_pair_with_upstreams_order() {
    let mut h = harness();
    let memberships = vec![
        doc! {"_id": 1, "username": "ghost", "invited_by": "alice"},
        doc! {"_id": 2, "username": "bob", "invited_by": "system"},
        doc! {"_id": 3, "username": "alice", "user_id": "usr_keep", "invited_by": "ghost"},
    ];
    let actions = h.run_pass(pass_of("project_membership"), memberships).unwrap();
    assert_eq!(
        writes(&actions),
        vec![
            Action::set("project_membership", 1, doc! {"invited_by_user_id": id_of(1)}),
            Action::set("project_membership", 2, doc! {"user_id": "usr_bob"}),
        ]
    );
    let stats = summary(&mut h);
    let pm = stats.get("collections").get("project_membership");
    assert_eq!((pm.n("matched"), pm.n("updated")), (5, 2));
    // Upstream walks pair after pair: `username` (ghost) first, then `invited_by` (system, ghost).
    let unresolved = stats.get("unresolved").get("project_membership");
    assert_eq!(unresolved.keys(), ["ghost", "system"]);
    assert_eq!((unresolved.n("ghost"), unresolved.n("system")), (2, 1));
}

#[test]
fn arrays_are_never_rewritten_only_reported() {
    let mut h = harness();
    let notifications = vec![
        doc! {"_id": 1, "recipient_username": ["alice", "bob"], "actor_username": "bob"},
        doc! {"_id": 2, "recipient_username": "alice", "recipient_user_id": ["usr_old", Bson::Null], "actor_username": "bob", "actor_user_id": "usr_bob"},
    ];
    let actions = h.run_pass(pass_of("notification"), notifications).unwrap();
    assert_eq!(
        writes(&actions),
        vec![Action::set("notification", 1, doc! {"actor_user_id": "usr_bob"})]
    );
    assert_eq!(
        reports(&actions, "skipped"),
        [
            (
                "notification".to_string(),
                "notification.recipient_username of _id 1 holds an array, not one username: left as it is".to_string()
            ),
            (
                "notification".to_string(),
                "notification.recipient_user_id of _id 2 holds an array, not a missing id: left as it is".to_string()
            ),
        ]
    );
    let n = summary(&mut h);
    let n = n.get("collections").get("notification");
    assert_eq!((n.n("matched"), n.n("updated")), (1, 1));
}

#[test]
fn a_username_held_twice_is_refused_before_anything() {
    let mut h = Harness::<BackfillUserId>::new().collection(
        USER,
        vec![
            doc! {"_id": 1, "username": "twin"},
            doc! {"_id": 2, "username": "twin", "user_id": "usr_t"},
        ],
    );
    let error = h.begin().unwrap_err();
    assert!(
        error
            .message
            .starts_with("user: username \"twin\" is held by 2 users (_id 1, 2); QDash's unique index"),
        "{error}"
    );
}

#[test]
fn the_summary_is_upstreams_statistics_dict_as_json() {
    let mut h = harness();
    h.run_pass(USER_PASS, users()).unwrap();
    h.run_pass(pass_of("issue"), vec![doc! {"_id": 1, "username": "gh\u{0301}ost\n"}])
        .unwrap();
    let finish = h.finish().unwrap();
    let Action::Report(r) = &finish[0] else { panic!() };
    let mut expected = String::from(r#"{"users_without_user_id": 4, "users_updated": 3, "collections": {"#);
    for (i, (c, _)) in FIELD_PAIRS.iter().enumerate() {
        let m = u8::from(*c == "issue");
        expected.push_str(&format!(
            "{}\"{c}\": {{\"matched\": {m}, \"updated\": 0}}",
            if i > 0 { ", " } else { "" }
        ));
    }
    // Combining marks stay as they are, a newline is `\n`: Python's json.dumps(ensure_ascii=False).
    expected.push_str("}, \"unresolved\": {\"issue\": {\"gh\u{0301}ost\\n\": 1}}}");
    assert_eq!(r.message, expected);
}

#[test]
fn json_strings_escape_as_pythons_json_dumps() {
    assert_eq!(json_str("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(json_str("\n\r\t\u{8}\u{c}\u{1}\u{1f}"), r#""\n\r\t\b\f\u0001\u001f""#);
    assert_eq!(
        json_str("e\u{301} \u{7f} \u{2028} 😀"),
        "\"e\u{301} \u{7f} \u{2028} 😀\""
    );
}

#[test]
fn passes_cover_upstreams_22_collections_and_write_only_their_own() {
    let manifest = BackfillUserId::manifest();
    assert_eq!(manifest.passes.len(), 23);
    assert_eq!(FIELD_PAIRS.iter().map(|(_, p)| p.len()).sum::<usize>(), 25);
    assert_eq!(FIELD_PAIRS.len(), 22);
    for (pass, (collection, pairs)) in manifest.passes[1..].iter().zip(FIELD_PAIRS) {
        assert_eq!(
            (pass.name.as_str(), pass.collection.as_str()),
            (*collection, *collection)
        );
        assert_eq!(pass.writes, [*collection]);
        assert_eq!(pass.filter.get_array("$or").unwrap().len(), pairs.len());
    }
    assert_eq!(manifest.passes[0].writes, [USER]);
}
