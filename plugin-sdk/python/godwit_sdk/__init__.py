"""The Python SDK for godwit migration plugins.

A plugin is a class with ``manifest()``, ``begin(params)``, ``process(pass_index,
docs)`` and optionally ``finish()``, registered with :func:`export`. Documents
arrive as dicts decoded from BSON (pymongo's ``bson`` package, bundled into
the component in its pure-Python form) and leave as actions built with
:func:`update`, :func:`set_fields`, :func:`insert`, :func:`delete` and
:func:`report`::

    import godwit_sdk as g

    @g.export
    class LowercaseEmails:
        def manifest(self):
            return g.Manifest("lowercase-emails", "1.1.0").pass_(
                g.Pass("users", "users", filter={"email": {"$type": "string"}}, writes=["users"]))

        def begin(self, params):
            pass

        def process(self, pass_index, docs):
            return [g.set_fields("users", d["_id"], {"email": d["email"].lower()})
                    for d in docs if d["email"] != d["email"].lower()]

A class attribute ``keeps_state = False`` declares that the actions of
``process`` and ``finish`` never depend on earlier batches (this one's do
not): godwit then keeps the instance after a batch its write guard refused
and resumes without replaying the written batches. The default is True.

The same class runs natively under ``pytest`` through
:class:`godwit_sdk.testing.Harness`; ``just plugin-py DIR`` builds it into a
component with componentize-py.

This module imports nothing of the generated bindings: the component glue
lives in ``godwit_sdk._component``, which the build's entry module imports.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import bson
from bson.codec_options import CodecOptions, DatetimeConversion

__all__ = [
    "Manifest", "Pass", "Update", "Insert", "Delete", "Report", "PluginError",
    "Params", "RunContext", "Tally", "export", "update", "set_fields", "unset_fields",
    "insert", "delete", "report", "find", "find_all", "log", "run", "encode", "decode",
    "inc_fields", "UpdateBuilder", "id_of", "id_filter", "get_path",
    "Schema", "SCHEMA_KINDS", "create_index", "drop_index", "create_collection",
    "modify_validator", "rename_collection", "drop_collection",
]

# Decoding keeps every BSON type's identity so that a document written back is
# the document read: int64 stays `bson.Int64`, datetimes out of Python's range
# stay `DatetimeMS`, binary UUIDs stay `Binary`.
CODEC = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def decode(data: bytes) -> Dict[str, Any]:
    """One BSON document as a dict."""
    return bson.decode(bytes(data), codec_options=CODEC)


def encode(document: Dict[str, Any]) -> bytes:
    """A dict as one BSON document; key order is kept."""
    return bson.encode(document, codec_options=CODEC)


class PluginError(Exception):
    """A plugin's refusal to go on (the contract's ``error``)."""

    def __init__(self, message: str, document_id: Any = None):
        super().__init__(message)
        self.message = message
        self.document_id = document_id


@dataclass
class Pass:
    """One scan over a collection (the contract's ``pass``)."""
    name: str
    collection: str
    filter: Dict[str, Any] = field(default_factory=dict)
    projection: Optional[Dict[str, Any]] = None
    batch_size: int = 0
    writes: List[str] = field(default_factory=list)


@dataclass
class Manifest:
    """Static description of a migration (the contract's ``manifest``)."""
    name: str
    version: str
    requires: Optional[str] = None
    description: str = ""
    passes: List[Pass] = field(default_factory=list)
    #: Schema operations the plugin may return: ``(kind, collection)`` pairs,
    #: kinds as in ``SCHEMA_KINDS`` (contract 0.2).
    schema: List[Tuple[str, str]] = field(default_factory=list)
    #: False: applying the plugin's actions twice is wrong (``$inc``): godwit
    #: refuses to run it where a batch may be applied again (no transactions)
    #: unless the operator passes ``--allow-at-least-once``.
    idempotent: bool = True
    #: Collections :func:`find` may look up besides the passes' own (a pass's
    #: collection is readable without being listed). godwit fails the call
    #: of a lookup on any other collection (rule ``undeclared-read``), and
    #: refuses its metadata collection and ``system.*`` here as in ``writes``.
    reads: List[str] = field(default_factory=list)

    def pass_(self, p: Pass) -> "Manifest":
        """Appends a pass; returns the manifest for chaining."""
        self.passes.append(p)
        return self

    def allow(self, kind: str, collection: str) -> "Manifest":
        """Allows schema operations of ``kind`` on ``collection`` (a rename:
        declare both names); returns the manifest for chaining."""
        if kind not in SCHEMA_KINDS:
            raise ValueError(f"unknown schema kind {kind!r} (one of {', '.join(SCHEMA_KINDS)})")
        self.schema.append((kind, collection))
        return self


#: The kinds of schema operation a manifest may allow.
SCHEMA_KINDS = ("create-index", "drop-index", "create-collection", "modify-validator",
                "rename-collection", "drop-collection")


@dataclass
class Schema:
    """A schema operation (contract 0.2): return it from ``setup()`` (applied
    before the first pass) or ``finish()``. Build it with ``create_index``,
    ``drop_index``, ``create_collection``, ``modify_validator``,
    ``rename_collection`` or ``drop_collection``."""
    kind: str
    collection: str
    #: Per kind: ``keys``, ``name``, ``unique``, ``partial_filter``,
    #: ``collation``, ``expire_after_seconds`` (create-index); ``name``
    #: (drop-index); ``validator``, ``validation_level``,
    #: ``validation_action``, ``collation`` (create-collection,
    #: modify-validator); ``to`` (rename-collection).
    args: Dict[str, Any] = field(default_factory=dict)


def create_index(collection: str, name: str, keys: Dict[str, Any], *, unique: bool = False,
                 partial_filter: Optional[Dict[str, Any]] = None,
                 collation: Optional[Dict[str, Any]] = None,
                 expire_after_seconds: Optional[int] = None) -> Schema:
    """Builds index ``name`` over ``keys`` (``{"email": 1}``) on ``collection``."""
    return Schema("create-index", collection, dict(
        keys=keys, name=name, unique=unique, partial_filter=partial_filter,
        collation=collation, expire_after_seconds=expire_after_seconds))


def drop_index(collection: str, name: str) -> Schema:
    return Schema("drop-index", collection, dict(name=name))


def create_collection(collection: str, validator: Optional[Dict[str, Any]] = None, *,
                      validation_level: Optional[str] = None,
                      validation_action: Optional[str] = None,
                      collation: Optional[Dict[str, Any]] = None) -> Schema:
    return Schema("create-collection", collection, dict(
        validator=validator, validation_level=validation_level,
        validation_action=validation_action, collation=collation))


def modify_validator(collection: str, validator: Dict[str, Any], *,
                     validation_level: Optional[str] = None,
                     validation_action: Optional[str] = None) -> Schema:
    """Replaces the validator of ``collection`` (``collMod``)."""
    return Schema("modify-validator", collection, dict(
        validator=validator, validation_level=validation_level,
        validation_action=validation_action))


def rename_collection(collection: str, to: str) -> Schema:
    """Renames ``collection`` to ``to`` (refused if ``to`` exists)."""
    return Schema("rename-collection", collection, dict(to=to))


def drop_collection(collection: str) -> Schema:
    """Drops ``collection``; a revert re-creates it only from the
    before-images godwit journals of its documents."""
    return Schema("drop-collection", collection, {})


@dataclass
class Update:
    collection: str
    filter: Dict[str, Any]
    update: Dict[str, Any]
    upsert: bool = False
    multi: bool = False


@dataclass
class Insert:
    collection: str
    document: Dict[str, Any]


@dataclass
class Delete:
    collection: str
    filter: Dict[str, Any]
    multi: bool = False


@dataclass
class Report:
    kind: str
    key: str
    message: str


def update(collection: str, filter: Dict[str, Any], update: Dict[str, Any], *,
           upsert: bool = False, multi: bool = False) -> Update:
    """Update the first (``multi``: every) document matching ``filter``."""
    return Update(collection, filter, update, upsert, multi)


def set_fields(collection: str, _id: Any, fields: Dict[str, Any]) -> Update:
    """``$set`` of ``fields`` on the document whose ``_id`` is ``_id``."""
    return Update(collection, {"_id": _id}, {"$set": fields})


def unset_fields(collection: str, _id: Any, fields: List[str]) -> Update:
    """``$unset`` of ``fields`` on the document whose ``_id`` is ``_id``."""
    return Update(collection, {"_id": _id}, {"$unset": {f: "" for f in fields}})


def inc_fields(collection: str, _id: Any, fields: Dict[str, Any]) -> Update:
    """``$inc`` of ``fields`` (field -> amount) on the document whose ``_id`` is ``_id``."""
    return Update(collection, {"_id": _id}, {"$inc": fields})


class UpdateBuilder:
    """An update document built one field at a time (the Rust SDK's ``Update``)::

        UpdateBuilder().set("a.b", 1).unset("old").inc("n", 1).by_id("users", doc["_id"])

    Operators appear in the order first used; a field added twice to one
    operator keeps the last value. ``is_empty()``: nothing to write."""

    def __init__(self):
        self.update: Dict[str, Dict[str, Any]] = {}

    def op(self, operator: str, field: str, value: Any) -> "UpdateBuilder":
        self.update.setdefault(operator, {})[field] = value
        return self

    def set(self, field: str, value: Any) -> "UpdateBuilder":
        return self.op("$set", field, value)

    def unset(self, field: str) -> "UpdateBuilder":
        return self.op("$unset", field, "")

    def inc(self, field: str, by: Any) -> "UpdateBuilder":
        return self.op("$inc", field, by)

    def rename(self, field: str, to: str) -> "UpdateBuilder":
        return self.op("$rename", field, to)

    def push(self, field: str, value: Any) -> "UpdateBuilder":
        return self.op("$push", field, value)

    def is_empty(self) -> bool:
        return not self.update

    def by_id(self, collection: str, _id: Any) -> Update:
        return Update(collection, {"_id": _id}, self.update)

    def one(self, collection: str, filter: Dict[str, Any]) -> Update:
        return Update(collection, filter, self.update)

    def many(self, collection: str, filter: Dict[str, Any]) -> Update:
        return Update(collection, filter, self.update, multi=True)

    def upsert(self, collection: str, filter: Dict[str, Any]) -> Update:
        return Update(collection, filter, self.update, upsert=True)


_MISSING = object()


def get_path(doc: Dict[str, Any], path: str, default: Any = None) -> Any:
    """The value at a dotted path (``"a.b.0.c"``: field names, and indexes
    into lists), ``default`` if any segment is missing. Like the Rust SDK's
    ``get_path``, it does not fan out over a list's elements."""
    value: Any = doc
    for segment in path.split("."):
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return default
        if value is _MISSING:
            return default
    return value


def id_of(doc: Dict[str, Any]) -> Any:
    """The document's ``_id``; a :class:`PluginError` if it has none."""
    if "_id" not in doc:
        raise PluginError("a document came without _id (a pass's projection must keep _id)")
    return doc["_id"]


def id_filter(doc: Dict[str, Any]) -> Dict[str, Any]:
    """``{"_id": ...}``: the filter that addresses exactly this document."""
    return {"_id": id_of(doc)}


def insert(collection: str, document: Dict[str, Any]) -> Insert:
    return Insert(collection, document)


def delete(collection: str, filter: Dict[str, Any], *, multi: bool = False) -> Delete:
    return Delete(collection, filter, multi)


def report(kind: str, key: str, message: str) -> Report:
    """A finding for the report ("unresolved", "warning", "skipped", ...)."""
    return Report(kind, key, message)


@dataclass
class RunContext:
    """Facts about the run: a plugin needs neither clock nor randomness."""
    run_id: str
    mode: str  # always "execute" from godwit, dry runs included
    started_at_ms: int
    database: str


class Params(dict):
    """The operator's ``--param k=v`` pairs (all strings)."""

    def require(self, key: str) -> str:
        if key not in self:
            raise PluginError(f"missing parameter `{key}` (pass --param {key}=VALUE)")
        return self[key]


class Tally:
    """Named counters reported as one JSON object, in first-touched order
    (the same text as the Rust SDK's ``Tally``)."""

    def __init__(self):
        self.counts: Dict[str, int] = {}

    def touch(self, name: str) -> None:
        self.add(name, 0)

    def add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def incr(self, name: str) -> None:
        self.add(name, 1)

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)

    def to_json(self) -> str:
        def quote(s: str) -> str:
            out = []
            for c in s:
                if c == '"':
                    out.append('\\"')
                elif c == "\\":
                    out.append("\\\\")
                elif ord(c) < 0x20:
                    out.append("\\u%04x" % ord(c))
                else:
                    out.append(c)
            return '"' + "".join(out) + '"'
        return "{" + ", ".join(f"{quote(k)}: {v}" for k, v in self.counts.items()) + "}"

    def report(self, kind: str, key: str) -> Report:
        return Report(kind, key, self.to_json())


# The host's services, set by the component glue or by the test harness:
# an object with `find(collection, filter: dict, projection: dict|None,
# limit: int) -> list[dict]` and `log(level: str, message: str)`.
_host = None
_run: Optional[RunContext] = None
_plugin_class = None


def export(cls):
    """Class decorator: makes ``cls`` the plugin this component exports."""
    global _plugin_class
    _plugin_class = cls
    return cls


def run() -> RunContext:
    """Run id, mode, start time and database of the current run."""
    if _run is None:
        raise PluginError("no run yet: the run context exists from begin on")
    return _run


def find(collection: str, filter: Dict[str, Any], projection: Optional[Dict[str, Any]] = None,
         limit: int = 0) -> List[Dict[str, Any]]:
    """Read-only lookup of reference data (``limit`` 0: the host's cap of
    10,000) in a pass's collection or one in the manifest's ``reads`` (any
    other fails the call). Journaled by the host, so a replay sees the same
    data."""
    if _host is None:
        raise PluginError("find called outside a run")
    return _host.find(collection, filter, projection, limit)


def find_all(collection: str, filter: Dict[str, Any], projection: Optional[Dict[str, Any]] = None,
             page: int = 0) -> List[Dict[str, Any]]:
    """Every matching document however many: pages of ``page`` (0: 1,000) in
    ``_id`` order, each one journaled ``find`` with ``_id`` past the last seen."""
    page = page or 1000
    everything: List[Dict[str, Any]] = []
    while True:
        if not everything:
            paged = filter
        elif "_id" not in filter:
            paged = dict(filter)
            paged["_id"] = {"$gt": everything[-1]["_id"]}
        else:
            paged = {"$and": [filter, {"_id": {"$gt": everything[-1]["_id"]}}]}
        found = find(collection, paged, projection, page)
        if any("_id" not in d for d in found):
            raise PluginError(f"find_all on {collection}: a document came back without _id "
                              "(a projection must keep _id)")
        everything.extend(found)
        if len(found) < page:
            return everything


class _Log:
    def __call__(self, level: str, message: str) -> None:
        if _host is not None:
            _host.log(level, message)

    def debug(self, message: str) -> None:
        self("debug", message)

    def info(self, message: str) -> None:
        self("info", message)

    def warn(self, message: str) -> None:
        self("warn", message)

    def error(self, message: str) -> None:
        self("error", message)


log = _Log()
"""``log.info("...")``: the host's log, tagged with the plugin's name."""
