"""Native test harness: runs a plugin class under pytest without wasm, feeds it
documents (round-tripped through BSON, as in a component), serves its lookups
from in-memory collections and checks its actions with the host's rules
(writes only to the pass's ``writes``, non-empty filters, BSON that encodes)
and its lookups (a pass's collection or one in the manifest's ``reads``: any
other fails the call, as in godwit, whatever the plugin does with the error).

    h = Harness(MyPlugin).collection("users", [{"_id": 1, "username": "a"}])
    actions = h.process(0, [{"_id": 1}])
"""

import godwit_sdk as g


def _matches(doc, filter):
    for key, cond in filter.items():
        if key == "$and":
            if not all(_matches(doc, f) for f in cond):
                return False
            continue
        value = doc.get(key)
        if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            for op, arg in cond.items():
                if op == "$gt" and not (value is not None and value > arg):
                    return False
                if op == "$gte" and not (value is not None and value >= arg):
                    return False
                if op == "$lt" and not (value is not None and value < arg):
                    return False
                if op == "$in" and value not in arg:
                    return False
                if op not in ("$gt", "$gte", "$lt", "$in"):
                    raise NotImplementedError(f"Harness filters support $gt/$gte/$lt/$in/$and, not {op}")
        elif value != cond:
            return False
    return True


def _check_collection(name, what):
    """The host's name rules (``godwit_policy::check_collection``), in short."""
    if not name:
        raise AssertionError(f"{what}: collection {name!r} is empty (rule collection-name)")
    if "\0" in name or "$" in name or name.startswith("."):
        raise AssertionError(f"{what}: collection {name!r} is not a valid name (rule collection-name)")
    if name.startswith("system.") or name == "godwit_metadata":
        raise AssertionError(f"{what}: collection {name!r} is out of reach: godwit's metadata collection and "
                             f"system.* (rule collection-name)")


class _MemoryHost:
    def __init__(self):
        self.collections = {}
        self.logs = []
        #: ``(pass collections, declared reads)``, set by ``begin``.
        self.reads = None
        #: A lookup the host would fail the call for.
        self.refused = None

    def find(self, collection, filter, projection, limit):
        if collection.startswith("system.") or collection == "godwit_metadata":
            raise g.PluginError(f"find on {collection} failed: lookups on `{collection}` are refused")
        if self.reads is not None:
            passes, declared = self.reads
            if collection not in passes and collection not in declared:
                message = (f"lookup on `{collection}` refused: collection `{collection}` is neither read by a pass "
                           f"[{', '.join(passes)}] nor in the manifest's reads [{', '.join(declared)}] "
                           f"(rule undeclared-read: declare the collection in the manifest's `reads`)")
                if self.refused is None:
                    self.refused = message
                raise g.PluginError(f"find on {collection} failed: {message}")
        docs = sorted(self.collections.get(collection, []), key=lambda d: d["_id"])
        out = []
        for d in docs:
            if _matches(d, filter):
                if projection:
                    d = {k: v for k, v in d.items() if k == "_id" or projection.get(k)}
                out.append(g.decode(g.encode(d)))
                if limit and len(out) >= limit:
                    break
        return out

    def log(self, level, message):
        self.logs.append((level, message))


class Harness:
    """Runs a plugin class natively: run id ``test-run`` started at
    2026-01-01T00:00:00Z, told ``execute`` as godwit tells every plugin."""

    def __init__(self, cls, params=None):
        self.cls = cls
        self.params = dict(params or {})
        self.host = _MemoryHost()
        self.plugin = None

    def collection(self, name, documents):
        """Documents served to the plugin's ``find`` lookups on ``name``."""
        self.host.collections[name] = list(documents)
        return self

    def manifest(self):
        return self.cls().manifest()

    def _call(self, what, call):
        """Runs one plugin call; a refused lookup fails it as in godwit."""
        try:
            result = call()
        except Exception:
            if self.host.refused is None:
                raise
            result = None
        refused, self.host.refused = self.host.refused, None
        if refused is not None:
            raise AssertionError(f"{what}: {refused}")
        return result

    def begin(self):
        if self.plugin is None:
            manifest = self.manifest()
            for name in manifest.reads:
                _check_collection(name, "reads")
            self.host.reads = ([p.collection for p in manifest.passes], list(manifest.reads))
            g._host = self.host
            g._run = g.RunContext("test-run", "execute", 1_767_225_600_000, "test")
            plugin = self.cls()
            self._call("begin", lambda: plugin.begin(g.Params(self.params)))
            self.plugin = plugin
            setup = getattr(self.plugin, "setup", None)
            self.setup_actions = self._call("begin", lambda: (setup() if setup else []) or [])
            for a in self.setup_actions:
                if not isinstance(a, g.Schema):
                    raise AssertionError(f"setup may return schema operations only, not {a!r}")
            self._check_schema(self.setup_actions)
        return self.plugin

    def setup(self):
        """The schema operations ``setup()`` returned (calls ``begin``),
        checked against the manifest's ``schema``."""
        self.begin()
        return list(self.setup_actions)

    def _check_schema(self, actions):
        allowed = set(self.manifest().schema)
        for a in actions:
            if not isinstance(a, g.Schema):
                continue
            names = [a.collection] + ([a.args["to"]] if a.kind == "rename-collection" else [])
            for name in names:
                if (a.kind, name) not in allowed:
                    raise AssertionError(f"{a.kind} on {name} is not declared in the manifest's schema")
                if name.startswith("system.") or name == "godwit_metadata":
                    raise AssertionError(f"{a.kind} on {name}: out of reach")
            if a.kind in ("create-index", "drop-index") and not a.args.get("name"):
                raise AssertionError(f"{a!r}: name every index")

    def process(self, pass_index, docs):
        """One ``process`` call; the actions are checked against the pass's rules."""
        passes = self.manifest().passes
        if pass_index >= len(passes):
            raise g.PluginError(f"manifest has no pass {pass_index}")
        self.begin()
        g._host = self.host
        batch = [g.decode(g.encode(d)) for d in docs]
        actions = self._call(f"pass {pass_index} ({passes[pass_index].name})",
                             lambda: self.plugin.process(pass_index, batch) or [])
        for a in actions:
            if isinstance(a, g.Schema):
                raise AssertionError(f"{a!r} returned from process: schema operations come from setup or finish")
        self._check(actions, passes[pass_index].writes)
        return actions

    def finish(self):
        self.begin()
        g._host = self.host
        fin = getattr(self.plugin, "finish", None)
        actions = self._call("finish", lambda: (fin() if fin else []) or [])
        self._check_schema(actions)
        self._check([a for a in actions if not isinstance(a, g.Schema)],
                    [p for ps in self.manifest().passes for p in ps.writes])
        return actions

    @staticmethod
    def _check(actions, writes):
        for a in actions:
            if isinstance(a, g.Report):
                continue
            if not isinstance(a, (g.Update, g.Insert, g.Delete)):
                raise AssertionError(f"not an action: {a!r}")
            if a.collection not in writes:
                raise AssertionError(f"{a!r} writes {a.collection}, not in the pass's writes {writes}")
            if isinstance(a, (g.Update, g.Delete)) and not a.filter:
                raise AssertionError(f"{a!r} has an empty filter")
            for d in ([a.filter, a.update] if isinstance(a, g.Update)
                      else [a.document] if isinstance(a, g.Insert) else [a.filter]):
                g.encode(d)
