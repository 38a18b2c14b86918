"""Native tests of the QDash port (`pytest plugins-py/qdash-backfill-user-id-py`):
the Rust plugin's unit tests (plugins/qdash-backfill-user-id/src/tests.rs)
rewritten for godwit_sdk.testing.Harness, same inputs, same outputs."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugin-sdk", "python"))
sys.path.insert(0, os.path.dirname(__file__))

import godwit_sdk as g  # noqa: E402
import pytest  # noqa: E402
from bson import ObjectId  # noqa: E402
from godwit_sdk.testing import Harness  # noqa: E402
from plugin import FIELD_PAIRS, USER, USER_PASS, BackfillUserId, json_str, user_id_for  # noqa: E402


def pass_of(collection):
    return 1 + [c for c, _ in FIELD_PAIRS].index(collection)


def oid(n):
    return ObjectId(bytes([n]) * 12)


def id_of(n):
    return user_id_for(oid(n))


def users():
    return [
        {"_id": oid(1), "username": "alice"},
        {"_id": oid(2), "username": "bob", "user_id": "usr_bob"},
        {"_id": oid(3), "username": "carol", "user_id": ""},
        {"_id": oid(4), "username": "dave", "user_id": None},
        {"_id": oid(5), "username": "erin", "user_id": 42},
        {"_id": oid(6), "username": ""},
        {"_id": oid(7), "username": "Alice", "user_id": "usr_capital"},
    ]


def harness():
    h = Harness(BackfillUserId).collection(USER, users())
    h.begin()
    return h


def reports(actions, kind):
    return [(a.key, a.message) for a in actions if isinstance(a, g.Report) and a.kind == kind]


def writes(actions):
    return [(a.collection, a.filter["_id"], a.update["$set"]) for a in actions if isinstance(a, g.Update)]


def summary(h):
    (r,) = h.finish()
    assert (r.kind, r.key) == ("summary", "backfill-user-id")
    return json.loads(r.message)


def test_ids_have_qdash_shape_and_are_reproducible():
    a = id_of(1)
    assert a == id_of(1)
    assert a != id_of(2)
    assert a != user_id_for(oid(1), "staging")
    assert user_id_for(1) != user_id_for("1")
    hexpart = a[len("usr_"):]
    assert a.startswith("usr_") and len(hexpart) == 32 and all(c in "0123456789abcdef" for c in hexpart)
    assert hexpart[12] == "8" and hexpart[16] in "89ab"
    # Pinned, the same values as the Rust plugin's test.
    assert a == "usr_7083790289668924a57af505af63ca5f"
    assert user_id_for(1) == "usr_4a534a890e698847b2db2e707056f08a"
    assert user_id_for(oid(1), "staging") == "usr_9be9869fea878fccaa8371f3c655826f"


def test_users_missing_an_id_in_any_spelling_get_one_and_others_are_kept():
    h = harness()
    actions = h.process(USER_PASS, users())
    assert writes(actions) == [
        (USER, oid(1), {"user_id": id_of(1)}),
        (USER, oid(3), {"user_id": id_of(3)}),
        (USER, oid(4), {"user_id": id_of(4)}),
    ]
    assert [m for _, m in reports(actions, "skipped")] == [
        "user of _id 050505050505050505050505: user_id is an integer, kept as it is; "
        "references to this user stay unresolved",
        "user of _id 060606060606060606060606: no username, so no user_id is generated (as upstream)",
    ]
    stats = summary(h)
    assert (stats["users_without_user_id"], stats["users_updated"]) == (4, 3)


def test_the_figures_count_the_writes_asked_for_whatever_the_mode():
    # godwit never tells a plugin whether it runs dry: the Harness runs dry
    # and the figures are those of the execute.
    h = harness()
    h.process(USER_PASS, users())
    stats = summary(h)
    assert (stats["users_without_user_id"], stats["users_updated"]) == (4, 3)


def test_references_resolve_exactly_and_blank_or_filled_ones_are_left_alone():
    h = harness()
    projects = [
        {"_id": 1, "owner_username": "alice"},
        {"_id": 2, "owner_username": "bob", "owner_user_id": ""},
        {"_id": 3, "owner_username": "carol", "owner_user_id": None},
        {"_id": 4, "owner_username": "bob", "owner_user_id": "usr_already"},
        {"_id": 5, "owner_username": ""},
        {"_id": 6, "owner_username": "ALICE"},
        {"_id": 7, "owner_username": "Alice"},
        {"_id": 8, "owner_username": "erin"},
        {"_id": 9, "owner_username": "former_member"},
        {"_id": 10, "owner_username": 7},
        {"_id": 11, "owner_username": "alice", "owner_user_id": 99},
    ]
    actions = h.process(pass_of("project"), projects)
    assert writes(actions) == [
        ("project", 1, {"owner_user_id": id_of(1)}),
        ("project", 2, {"owner_user_id": "usr_bob"}),
        ("project", 3, {"owner_user_id": id_of(3)}),
        ("project", 7, {"owner_user_id": "usr_capital"}),
    ]
    assert reports(actions, "unresolved") == [
        ("ALICE", 'project.owner_username of _id 6: no user is named "ALICE"'),
        ("erin", "project.owner_username of _id 8: user \"erin\"'s user_id is an integer"),
        ("former_member", 'project.owner_username of _id 9: no user is named "former_member"'),
    ]
    stats = summary(h)
    assert stats["collections"]["project"] == {"matched": 7, "updated": 4}
    assert list(stats["unresolved"]) == ["project"]
    assert list(stats["unresolved"]["project"]) == ["ALICE", "erin", "former_member"]


def test_two_pairs_make_one_write_and_count_per_pair_with_upstreams_order():
    h = harness()
    actions = h.process(pass_of("project_membership"), [
        {"_id": 1, "username": "ghost", "invited_by": "alice"},
        {"_id": 2, "username": "bob", "invited_by": "system"},
        {"_id": 3, "username": "alice", "user_id": "usr_keep", "invited_by": "ghost"},
    ])
    assert writes(actions) == [
        ("project_membership", 1, {"invited_by_user_id": id_of(1)}),
        ("project_membership", 2, {"user_id": "usr_bob"}),
    ]
    stats = summary(h)
    assert stats["collections"]["project_membership"] == {"matched": 5, "updated": 2}
    assert list(stats["unresolved"]["project_membership"].items()) == [("ghost", 2), ("system", 1)]


def test_arrays_are_never_rewritten_only_reported():
    h = harness()
    actions = h.process(pass_of("notification"), [
        {"_id": 1, "recipient_username": ["alice", "bob"], "actor_username": "bob"},
        {"_id": 2, "recipient_username": "alice", "recipient_user_id": ["usr_old", None],
         "actor_username": "bob", "actor_user_id": "usr_bob"},
    ])
    assert writes(actions) == [("notification", 1, {"actor_user_id": "usr_bob"})]
    assert reports(actions, "skipped") == [
        ("notification",
         "notification.recipient_username of _id 1 holds an array, not one username: left as it is"),
        ("notification",
         "notification.recipient_user_id of _id 2 holds an array, not a missing id: left as it is"),
    ]
    assert summary(h)["collections"]["notification"] == {"matched": 1, "updated": 1}


def test_a_username_held_twice_is_refused_before_anything():
    h = Harness(BackfillUserId).collection(USER, [
        {"_id": 1, "username": "twin"},
        {"_id": 2, "username": "twin", "user_id": "usr_t"},
    ])
    with pytest.raises(g.PluginError) as error:
        h.begin()
    assert error.value.message.startswith(
        'user: username "twin" is held by 2 users (_id 1, 2); QDash\'s unique index')


def test_the_summary_is_upstreams_statistics_dict_as_json():
    h = harness()
    h.process(USER_PASS, users())
    h.process(pass_of("issue"), [{"_id": 1, "username": "gh\u0301ost\n"}])
    (r,) = h.finish()
    expected = '{"users_without_user_id": 4, "users_updated": 3, "collections": {'
    expected += ", ".join(
        f'"{c}": {{"matched": {1 if c == "issue" else 0}, "updated": 0}}' for c, _ in FIELD_PAIRS)
    expected += '}, "unresolved": {"issue": {"gh\u0301ost\\n": 1}}}'
    assert r.message == expected


def test_json_strings_escape_as_the_rust_plugin():
    assert json_str('a"b\\c') == '"a\\"b\\\\c"'
    assert json_str("\n\r\t\b\f\x01\x1f") == '"\\n\\r\\t\\b\\f\\u0001\\u001f"'
    assert json_str("e\u0301 \x7f \u2028 \U0001F600") == '"e\u0301 \x7f \u2028 \U0001F600"'


def test_passes_cover_upstreams_22_collections_and_write_only_their_own():
    m = BackfillUserId().manifest()
    assert len(m.passes) == 23 and len(FIELD_PAIRS) == 22
    assert sum(len(p) for _, p in FIELD_PAIRS) == 25
    for p, (collection, pairs) in zip(m.passes[1:], FIELD_PAIRS):
        assert (p.name, p.collection, p.writes) == (collection, collection, [collection])
        assert len(p.filter["$or"]) == len(pairs)
    assert m.passes[0].writes == [USER]
