"""Unit tests of the Python SDK's helpers (`python3 -m pytest -q plugin-sdk/python`)."""

import os
import sys

import pytest

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
