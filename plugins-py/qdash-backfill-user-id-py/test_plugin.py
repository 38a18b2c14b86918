"""Native tests of the QDash port (`pytest plugins-py/qdash-backfill-user-id-py`),
the Rust plugin's unit tests rewritten for godwit_sdk.testing.Harness."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugin-sdk", "python"))
sys.path.insert(0, os.path.dirname(__file__))

import godwit_sdk as g  # noqa: E402
from godwit_sdk.testing import Harness  # noqa: E402
from plugin import COLLECTIONS, BackfillUserId, user_id_for  # noqa: E402


def pass_of(collection):
    return 1 + [c for c, _ in COLLECTIONS].index(collection)


def harness():
    return Harness(BackfillUserId).collection("users", [
        {"_id": 1, "username": "alice"},
        {"_id": 2, "username": "bob", "user_id": "usr_bob"},
        {"_id": 3, "username": "twin"},
        {"_id": 4, "username": "twin"},
    ])


def reports(actions, kind):
    return [a.key for a in actions if isinstance(a, g.Report) and a.kind == kind]


def test_ids_are_deterministic_per_user_and_distinct():
    a = user_id_for(1)
    assert a == user_id_for(1)
    assert a != user_id_for(2)
    assert a.startswith("usr_") and len(a) == 4 + 32


def test_ids_match_the_rust_plugin():
    # sha256("qdash-user:" + ObjectId hex), as tests/e2e/seeds/qdash.rs writes it down.
    from bson import ObjectId
    import hashlib
    oid = ObjectId("650000000000000000000007")
    want = "usr_" + hashlib.sha256(b"qdash-user:650000000000000000000007").hexdigest()[:32]
    assert user_id_for(oid) == want


def test_users_without_user_id_get_one_and_filled_ones_are_kept():
    h = harness()
    actions = h.process(0, [{"_id": 1, "username": "alice"},
                            {"_id": 2, "username": "bob", "user_id": "usr_bob"}])
    assert actions == [g.set_fields("users", 1, {"user_id": user_id_for(1)})]


def test_fields_arrays_and_nested_documents_are_filled_from_the_map():
    h = harness()
    alice = user_id_for(1)
    post = {"_id": 10, "username": "bob",
            "replies": [{"username": "alice"}, {"username": "bob", "user_id": "usr_bob"}]}
    assert h.process(pass_of("forum_posts"), [post]) == [g.set_fields("forum_posts", 10, {
        "user_id": "usr_bob",
        "replies": [{"username": "alice", "user_id": alice}, {"username": "bob", "user_id": "usr_bob"}],
    })]
    note = {"_id": 11, "username": "alice", "review": {"reviewer": "bob"}}
    assert h.process(pass_of("calibration_notes"), [note]) == [g.set_fields(
        "calibration_notes", 11, {"user_id": alice, "review.reviewer_user_id": "usr_bob"})]


def test_unresolved_names_are_reported_not_invented():
    h = harness()
    # A deleted user, a system author, a case mismatch, an ambiguous name.
    issue = {"_id": 20, "username": "Alice", "assignees": ["bob", "ghost", "twin"]}
    actions = h.process(pass_of("issues"), [issue])
    assert reports(actions, "unresolved") == ["Alice", "ghost", "twin"]
    assert actions[-1] == g.set_fields("issues", 20, {"assignee_user_ids": ["usr_bob", None, None]})
    assert actions[0].message == 'issues.username of _id 20: no user named "Alice"'
    assert actions[2].message == 'issues.assignees[2] of _id 20: 2 users are named "twin"'
    actions = h.process(pass_of("notifications"), [{"_id": 21, "recipient": "system"}])
    assert reports(actions, "unresolved") == ["system"]
    assert len(actions) == 1, "no write for an unresolved field"
    finish = h.finish()
    assert reports(finish, "unresolved_username") == ["Alice", "ghost", "system", "twin"]
    assert reports(finish, "summary") == ["backfill-user-id"]


def test_a_filled_document_needs_nothing_but_still_reports_its_unresolved_rows():
    h = harness()
    done = {"_id": 30, "username": "bob", "user_id": "usr_bob", "assignees": ["ghost", "bob"],
            "assignee_user_ids": [None, "usr_bob"]}
    actions = h.process(pass_of("issues"), [done])
    assert reports(actions, "unresolved") == ["ghost"]
    assert len(actions) == 1


def test_summary_counts_what_the_runbook_shows():
    h = harness()
    h.process(0, [{"_id": 1, "username": "alice"}])
    h.process(pass_of("projects"), [{"_id": 1, "owner_username": "alice"},
                                    {"_id": 2, "owner_username": "nobody"}])
    summary = h.finish()[0]
    assert summary.message.startswith(
        '{"users_without_user_id": 1, "collections.projects.matched": 1, ')
    assert summary.message.endswith('"unresolved": 1}')


def test_manifest_matches_the_rust_plugin():
    m = BackfillUserId().manifest()
    assert [p.name for p in m.passes] == ["users"] + [c for c, _ in COLLECTIONS]
    assert m.passes[3].projection == {"username": 1, "user_id": 1, "replies": 1}
    assert m.passes[7].projection == {"username": 1, "user_id": 1, "review": 1}
