"""Native tests of schema-ops-py (pytest, no wasm)."""

import importlib.util
import os
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "..", "plugin-sdk", "python"))

from godwit_sdk.testing import Harness  # noqa: E402

# Loaded under its own name: every plugin directory has a `plugin.py`.
_spec = importlib.util.spec_from_file_location("schema_ops_py_plugin", os.path.join(HERE, "plugin.py"))
_plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_plugin)


def test_setup_and_finish_return_declared_schema_operations():
    h = Harness(_plugin.SchemaOpsPy)
    assert [o.kind for o in h.setup()] == ["create-collection", "create-index", "create-index"]
    assert [o.kind for o in h.finish()] == ["drop-index", "modify-validator", "rename-collection",
                                             "drop-collection"]
