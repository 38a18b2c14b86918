"""Unit tests of the Python SDK's helpers (`python3 -m pytest -q plugin-sdk/python`)."""

import os
import sys

import pytest
from bson.int64 import Int64
from bson.objectid import ObjectId

sys.path.insert(0, os.path.dirname(__file__))

import godwit_sdk as g  # noqa: E402


def test_update_builder_groups_fields_by_operator():
    u = g.UpdateBuilder().set("a", 1).unset("old").inc("n", -2).set("b.c", "x").set("a", 2)
    assert u.update == {"$set": {"a": 2, "b.c": "x"}, "$unset": {"old": ""}, "$inc": {"n": -2}}
    assert g.UpdateBuilder().is_empty() and not u.is_empty()
    assert g.UpdateBuilder().rename("x", "y").push("l", 1).op("$max", "hi", 9).update == {
        "$rename": {"x": "y"}, "$push": {"l": 1}, "$max": {"hi": 9}}


def test_update_builder_actions():
    u = lambda: g.UpdateBuilder().inc("n", 1)  # noqa: E731
    assert u().by_id("c", 7) == g.update("c", {"_id": 7}, {"$inc": {"n": 1}})
    assert u().by_id("c", 7) == g.inc_fields("c", 7, {"n": 1})
    assert u().one("c", {"a": 1}) == g.update("c", {"a": 1}, {"$inc": {"n": 1}})
    assert u().many("c", {"a": 1}) == g.update("c", {"a": 1}, {"$inc": {"n": 1}}, multi=True)
    assert u().upsert("c", {"a": 1}) == g.update("c", {"a": 1}, {"$inc": {"n": 1}}, upsert=True)


@pytest.mark.parametrize("path,expect", [
    ("a.b.c", 1), ("a.b", {"c": 1}), ("a.x.c", None), ("n", None), ("list.0.k", "x"), ("list.1", 2),
    ("list.2", None), ("list.k", None), ("list.-1", None), ("s.0", None), ("dotted.key", None), ("", None),
])
def test_get_path(path, expect):
    d = {"a": {"b": {"c": 1}}, "n": None, "list": [{"k": "x"}, 2], "dotted.key": 3, "s": "t"}
    assert g.get_path(d, path) == expect


def test_get_path_default_tells_missing_from_null():
    assert g.get_path({"n": None}, "n", "missing") is None
    assert g.get_path({}, "n", "missing") == "missing"


def test_id_helpers():
    assert g.id_of({"_id": "k"}) == "k"
    assert g.id_filter({"_id": "k", "v": 1}) == {"_id": "k"}
    with pytest.raises(g.PluginError, match="without _id"):
        g.id_of({"v": 1})


def test_schema_operations_from_setup_are_declared_or_refused():
    from godwit_sdk.testing import Harness

    class Indexes:
        def manifest(self):
            return (g.Manifest("indexes", "1.0.0")
                    .pass_(g.Pass("users", "users"))
                    .allow("create-collection", "audit")
                    .allow("create-index", "audit"))

        def begin(self, params):
            self.sneaky = params.get("sneaky") == "yes"

        def setup(self):
            ops = [g.create_collection("audit", {"$jsonSchema": {"required": ["who"]}}),
                   g.create_index("audit", "who_1", {"who": 1}, unique=True)]
            if self.sneaky:
                ops.append(g.drop_collection("users"))
            return ops

        def process(self, pass_index, docs):
            return []

    ops = Harness(Indexes).setup()
    assert [o.kind for o in ops] == ["create-collection", "create-index"]
    assert ops[1].args["unique"] is True
    with pytest.raises(AssertionError, match="drop-collection on users is not declared"):
        Harness(Indexes, {"sneaky": "yes"}).setup()
    with pytest.raises(ValueError, match="unknown schema kind"):
        g.Manifest("x", "1.0.0").allow("truncate", "users")


def test_lookups_outside_passes_and_reads_fail_the_call():
    from godwit_sdk.testing import Harness

    def snoop(reads):
        class Snoop:
            def manifest(self):
                return g.Manifest("snoop", "1.0.0", reads=reads).pass_(g.Pass("things", "things", writes=["things"]))

            def begin(self, params):
                pass

            def process(self, pass_index, docs):
                g.find("things", {}, None, 1)
                try:
                    seen = len(g.find("secrets", {}))
                except g.PluginError:
                    seen = -1  # a hostile plugin carries on
                return [g.set_fields("things", d["_id"], {"seen": seen}) for d in docs]
        return Snoop

    secrets = [{"_id": 1, "password": "hunter2"}]
    with pytest.raises(AssertionError, match=r"pass 0 \(things\): lookup on `secrets` refused: .*"
                                             r"rule undeclared-read"):
        Harness(snoop([])).collection("secrets", secrets).process(0, [{"_id": 1}])
    actions = Harness(snoop(["secrets"])).collection("secrets", secrets).process(0, [{"_id": 1}])
    assert actions[0].update == {"$set": {"seen": 1}}
    for bad in ["godwit_metadata", "system.users", ""]:
        with pytest.raises(AssertionError, match="reads: collection"):
            Harness(snoop([bad])).process(0, [{"_id": 1}])


@pytest.mark.parametrize("doc, query, expect", [
    ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, {"a": 1.0}, True),
    ({"a": "1"}, {"a": 1}, False),
    ({"a": 5}, {"a": {"$gt": 3, "$lte": 5}}, True),
    ({"a": "x"}, {"a": {"$gt": 3}}, False),  # comparisons stay within a type
    ({}, {"a": None}, True),  # null matches a missing field
    ({"a": None}, {"a": {"$exists": True}}, True),
    ({}, {"a": {"$ne": None}}, False),
    ({"a": [1, 7]}, {"a": 7}, True),  # an array holding the value
    ({"a": [1, 7]}, {"a": [1, 7]}, True),
    ({"a": [1, 7]}, {"a": {"$gt": 5, "$lt": 2}}, True),  # different elements may satisfy each
    ({"a": [{"b": 2}, {"b": 9}]}, {"a.b": 9}, True),
    ({"a": [{"b": 2}, {"b": 9}]}, {"a": {"$elemMatch": {"b": {"$gt": 5}}}}, True),
    ({"a": {"b": {"c": "x"}}}, {"a.b.c": {"$in": ["y", "x"]}}, True),
    ({"a": "x"}, {"a": {"$nin": ["x"]}}, False),
    ({"a": "Ann"}, {"a": {"$regex": "^an", "$options": "i"}}, True),
    ({"a": "Ann"}, {"a": {"$not": {"$type": "string"}}}, False),
    ({"a": 1}, {"$or": [{"a": 2}, {"a": 1}]}, True),
    ({"a": 1}, {"$nor": [{"a": 1}]}, False),
    ({"a": [1, 2, 3]}, {"a": {"$size": 3, "$all": [3, 1]}}, True),
    ({"a": Int64(3)}, {"a": {"$type": "number"}}, True),
    ({"a": Int64(3)}, {"a": {"$type": "int"}}, False),
])
def test_harness_filters_match_as_the_server_does(doc, query, expect):
    from godwit_sdk.testing import _matches
    assert _matches(doc, query) is expect


def test_harness_filters_name_what_they_do_not_know():
    from godwit_sdk.testing import _matches
    with pytest.raises(NotImplementedError, match=r"\$where.*godwit plugin test --data"):
        _matches({"a": 1}, {"$where": "true"})


def test_run_pass_reads_as_a_run_does():
    """Filter, projection, `_id` order across types and the pass's batch
    size: a plugin whose projection leaves out the field it compares sees
    the documents without it here too, as in a real run."""
    from godwit_sdk.testing import Harness
    calls = []

    class Lower:
        def manifest(self):
            return g.Manifest("lower", "1.0.0").pass_(g.Pass(
                "users", "users", filter={"active": True}, projection={"name": 1}, batch_size=2, writes=["users"]))

        def begin(self, params):
            pass

        def process(self, pass_index, docs):
            calls.append([d["_id"] for d in docs])
            # The bug the harness must show: `email` is not projected.
            return [g.set_fields("users", d["_id"], {"email": (d.get("email") or "").lower()})
                    for d in docs if d.get("email") != (d.get("email") or "").lower() or "email" not in d]

    users = [
        {"_id": "b", "active": True, "name": "B", "email": "b@x.org"},
        {"_id": 2, "active": True, "name": "Two", "email": "two@x.org"},
        {"_id": 1, "active": False, "name": "One", "email": "ONE@x.org"},
        {"_id": ObjectId("65a000000000000000000001"), "active": True, "name": "O", "email": "o@x.org"},
        {"_id": "a", "active": True, "name": "A", "email": "a@x.org"},
    ]
    actions = Harness(Lower).run_pass(0, users)
    assert calls[0] == [2, "a"] and calls[1][0] == "b" and len(calls) == 2
    # Every address is lower case already, yet every document gets a write:
    # the field is missing from what the plugin was given.
    assert len(actions) == 4
    assert all(a.update == {"$set": {"email": ""}} for a in actions)
