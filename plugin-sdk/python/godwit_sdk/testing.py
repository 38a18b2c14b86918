"""Native test harness: runs a plugin class under pytest without wasm, feeds it
documents (round-tripped through BSON, as in a component), serves its lookups
from in-memory collections and checks its actions with the host's rules
(writes only to the pass's ``writes``, non-empty filters, BSON that encodes)
and its lookups (a pass's collection or one in the manifest's ``reads``: any
other fails the call, as in godwit, whatever the plugin does with the error).

    h = Harness(MyPlugin).collection("users", [{"_id": 1, "username": "a"}])
    actions = h.process(0, [{"_id": 1}])        # one call, these documents
    actions = h.run_pass(0, [{"_id": 1}, ...])  # as a run reads them: the
                                                # pass's filter, projection,
                                                # _id order and batch size
"""

import bson

import godwit_sdk as g


_MISSING = object()


def _values(doc, path):
    """The values ``path`` (dotted) names in ``doc``, as MongoDB's query
    language sees them: an array on the way is searched element by element,
    and an array at the end is both itself and its elements."""
    head, _, rest = path.partition(".")
    if isinstance(doc, dict):
        value = doc.get(head, _MISSING)
    elif isinstance(doc, list) and head.isdigit() and int(head) < len(doc):
        value = doc[int(head)]
    elif isinstance(doc, list):
        return [v for item in doc if isinstance(item, dict) for v in _values(item, path)]
    else:
        value = _MISSING
    if not rest:
        if isinstance(value, list):
            return [value] + list(value)
        return [value]
    if value is _MISSING:
        return [_MISSING]
    return _values(value, rest)


def _kind(value):
    """MongoDB compares only values of one kind (numbers among themselves)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, bson.int64.Int64, bson.decimal128.Decimal128)):
        return "number"
    return type(value).__name__


def _number(value):
    return value.to_decimal() if isinstance(value, bson.decimal128.Decimal128) else value


def _compare(op, value, arg):
    if value is _MISSING or _kind(value) != _kind(arg):
        return False
    a, b = _number(value), _number(arg)
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


def _equal(value, arg):
    if value is _MISSING:
        return arg is None
    if _kind(value) != _kind(arg):
        return False
    return _number(value) == _number(arg)


_TYPES = {"double": float, "string": str, "object": dict, "array": list, "bool": bool, "null": type(None),
          "int": int, "long": bson.int64.Int64, "date": __import__("datetime").datetime,
          "objectId": bson.objectid.ObjectId, "binData": bson.binary.Binary,
          "decimal": bson.decimal128.Decimal128}


def _has_type(value, names):
    for name in names if isinstance(names, list) else [names]:
        if name == "number":
            if _kind(value) == "number":
                return True
        elif name == "int":
            if isinstance(value, int) and not isinstance(value, (bool, bson.int64.Int64)):
                return True
        elif name in _TYPES:
            if isinstance(value, _TYPES[name]) and not (name == "double" and isinstance(value, bool)):
                return True
        else:
            raise NotImplementedError(f"the harness's $type knows {sorted(_TYPES)} and 'number', not {name!r}; "
                                      f"`godwit plugin test --data` runs the real query")
    return False


def _condition(values, op, arg, path):
    """One operator over the values a path names (any value may satisfy it)."""
    present = [v for v in values if v is not _MISSING]
    if op == "$eq":
        return any(_equal(v, arg) for v in values)
    if op == "$ne":
        return not any(_equal(v, arg) for v in values)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return any(_compare(op, v, arg) for v in values)
    if op == "$in":
        return any(_equal(v, a) for v in values for a in arg)
    if op == "$nin":
        return not any(_equal(v, a) for v in values for a in arg)
    if op == "$exists":
        return bool(present) == bool(arg)
    if op == "$type":
        return any(_has_type(v, arg) for v in present)
    if op == "$not":
        return not _operators(values, arg, path)
    if op == "$size":
        return any(isinstance(v, list) and len(v) == arg for v in present)
    if op == "$all":
        return all(any(_equal(v, a) for v in values) for a in arg)
    if op == "$elemMatch":
        arrays = [v for v in present if isinstance(v, list)]
        return any(_elem_matches(item, arg) for arr in arrays for item in arr)
    if op == "$regex":
        import re
        return any(isinstance(v, str) and re.search(arg, v) for v in present)
    raise NotImplementedError(f"the harness's filters do not know {op} (in {path!r}); `godwit plugin test --data` "
                              f"runs the pass's real query on a throwaway database")


def _elem_matches(item, cond):
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        return _operators([item], cond, "$elemMatch")
    return isinstance(item, dict) and _matches(item, cond)


def _operators(values, cond, path):
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        if "$regex" in cond:
            import re
            flags = re.I if "i" in cond.get("$options", "") else 0
            pattern = re.compile(cond["$regex"], flags)
            rest = {k: v for k, v in cond.items() if k not in ("$regex", "$options")}
            if not any(isinstance(v, str) and pattern.search(v) for v in values):
                return False
            cond = rest
        return all(_condition(values, op, arg, path) for op, arg in cond.items())
    return any(_equal(v, cond) for v in values)


def _matches(doc, filter):
    """Whether ``doc`` matches the query ``filter``, as the server decides
    for the operators a pass filter commonly uses (comparison, ``$in``,
    ``$exists``, ``$type``, ``$not``, ``$and``/``$or``/``$nor``,
    ``$elemMatch``, ``$size``, ``$all``, ``$regex``) on dotted paths and
    arrays. Any other operator raises ``NotImplementedError``: run the
    component with ``godwit plugin test --data`` for the real query."""
    for key, cond in filter.items():
        if key == "$and":
            if not all(_matches(doc, f) for f in cond):
                return False
        elif key == "$or":
            if not any(_matches(doc, f) for f in cond):
                return False
        elif key == "$nor":
            if any(_matches(doc, f) for f in cond):
                return False
        elif key == "$comment":
            continue
        elif key.startswith("$"):
            raise NotImplementedError(f"the harness's filters do not know {key}; `godwit plugin test --data` "
                                      f"runs the pass's real query on a throwaway database")
        elif not _operators(_values(doc, key), cond, key):
            return False
    return True


def _project(doc, projection):
    """``doc`` through a pass's projection (``_id`` always kept, as godwit
    reads it): inclusion (``{"a": 1, "b.c": 1}``) or exclusion (``{"a": 0}``)."""
    if not projection:
        return doc
    fields = {k: v for k, v in projection.items() if k != "_id"}
    if any(isinstance(v, dict) for v in fields.values()):
        raise NotImplementedError("the harness projects inclusion and exclusion only; `godwit plugin test --data` "
                                  "runs the real projection")
    include = any(bool(v) for v in fields.values())

    def pick(sub, paths):
        out = {}
        for key, value in sub.items():
            nested = [p.partition(".")[2] for p in paths if p.partition(".")[0] == key and "." in p]
            if key in paths:
                out[key] = value
            elif nested and isinstance(value, dict):
                out[key] = pick(value, nested)
            elif nested and isinstance(value, list):
                out[key] = [pick(v, nested) for v in value if isinstance(v, dict)]
        return out

    def drop(sub, paths):
        out = {}
        for key, value in sub.items():
            nested = [p.partition(".")[2] for p in paths if p.partition(".")[0] == key and "." in p]
            if key in paths:
                continue
            if nested and isinstance(value, dict):
                out[key] = drop(value, nested)
            elif nested and isinstance(value, list):
                out[key] = [drop(v, nested) if isinstance(v, dict) else v for v in value]
            else:
                out[key] = value
        return out

    if include:
        projected = pick(doc, [k for k, v in fields.items() if v])
        return {"_id": doc["_id"], **{k: v for k, v in projected.items() if k != "_id"}} if "_id" in doc else projected
    return drop(doc, list(fields))


def _id_order(doc):
    """Documents in ``_id`` order across types, as godwit reads a pass
    (MongoDB's BSON type order: numbers, strings, documents, ObjectIds, ...)."""
    value = doc["_id"]
    rank = {"NoneType": 1, "number": 2, "str": 3, "dict": 4, "list": 5, "Binary": 6, "bytes": 6, "ObjectId": 7,
            "bool": 8, "datetime": 9}.get(_kind(value), 10)
    key = _number(value) if rank == 2 else value
    if rank in (4, 5, 10):
        key = bson.encode({"v": value})
    return (rank, key)


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
        docs = sorted(self.collections.get(collection, []), key=_id_order)
        out = []
        for d in docs:
            if _matches(d, filter):
                out.append(g.decode(g.encode(_project(d, projection))))
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

    def run_pass(self, pass_index, documents):
        """Feeds ``documents`` to pass ``pass_index`` as godwit reads a
        collection: in ``_id`` order, only those the pass's filter matches,
        through its projection, in batches of its batch size (0: 1,000);
        returns every action. A field the projection leaves out is not in
        the documents the plugin sees here either."""
        passes = self.manifest().passes
        if pass_index >= len(passes):
            raise g.PluginError(f"manifest has no pass {pass_index}")
        spec = passes[pass_index]
        docs = [d for d in sorted(documents, key=_id_order) if _matches(d, spec.filter or {})]
        docs = [_project(d, spec.projection) for d in docs]
        size = spec.batch_size or 1000
        actions = []
        for at in range(0, len(docs), size):
            actions.extend(self.process(pass_index, docs[at:at + size]))
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
