"""Export glue between componentize-py's generated bindings (``wit_world``)
and the plugin class registered with ``godwit_sdk.export``: BSON decoding and
encoding, error mapping and the plugin's per-instance state. Only the build's
entry module imports this (it exists only inside a component build)."""

import traceback

import godwit_sdk as g
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

_LEVELS = {
    "trace": types.Level.TRACE,
    "debug": types.Level.DEBUG,
    "info": types.Level.INFO,
    "warn": types.Level.WARN,
    "error": types.Level.ERROR,
}


class _WitHost:
    def find(self, collection, filter, projection, limit):
        try:
            found = host.find(collection, g.encode(filter),
                              None if projection is None else g.encode(projection), limit)
        except Err as e:
            raise g.PluginError(f"find on {collection} failed: {e.value}")
        return [g.decode(d) for d in found]

    def log(self, level, message):
        host.log(_LEVELS.get(level, types.Level.INFO), str(message))


def _plugin_class():
    if g._plugin_class is None:
        raise RuntimeError("no plugin class: decorate it with @godwit_sdk.export")
    return g._plugin_class


def _error(e: BaseException) -> Err:
    if isinstance(e, g.PluginError):
        doc_id = None if e.document_id is None else g.encode({"_id": e.document_id})
        return Err(types.Error(e.message, doc_id))
    # Any other exception is a bug in the plugin: the traceback is the message.
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__)).strip()
    return Err(types.Error(f"python exception: {text}", None))


def _wit_action(a):
    if isinstance(a, g.Update):
        return types.Action_Update(types.Update(a.collection, g.encode(a.filter), g.encode(a.update),
                                                a.upsert, a.multi))
    if isinstance(a, g.Insert):
        return types.Action_Insert(types.Insert(a.collection, g.encode(a.document)))
    if isinstance(a, g.Delete):
        return types.Action_Delete(types.Delete(a.collection, g.encode(a.filter), a.multi))
    if isinstance(a, g.Report):
        return types.Action_Report(types.Report(a.kind, a.key, a.message))
    if isinstance(a, g.Schema):
        return types.Action_Schema(_wit_schema(a))
    raise g.PluginError(f"not an action: {a!r} (build actions with godwit_sdk.update/insert/delete/report)")


def _opt(d):
    return None if d is None else g.encode(d)


def _wit_schema(s):
    x = s.args
    if s.kind == "create-index":
        spec = types.IndexSpec(g.encode(x["keys"]), x["name"], bool(x.get("unique")),
                               _opt(x.get("partial_filter")), _opt(x.get("collation")),
                               x.get("expire_after_seconds"))
        return types.SchemaOp_CreateIndex(types.CreateIndex(s.collection, spec))
    if s.kind == "drop-index":
        return types.SchemaOp_DropIndex(types.DropIndex(s.collection, x["name"]))
    if s.kind == "create-collection":
        return types.SchemaOp_CreateCollection(types.CreateCollection(
            s.collection, _opt(x.get("validator")), x.get("validation_level"),
            x.get("validation_action"), _opt(x.get("collation"))))
    if s.kind == "modify-validator":
        return types.SchemaOp_ModifyValidator(types.ModifyValidator(
            s.collection, g.encode(x["validator"]), x.get("validation_level"), x.get("validation_action")))
    if s.kind == "rename-collection":
        return types.SchemaOp_RenameCollection(types.RenameCollection(s.collection, x["to"]))
    if s.kind == "drop-collection":
        return types.SchemaOp_DropCollection(types.DropCollection(s.collection))
    raise g.PluginError(f"unknown schema operation {s.kind!r}")


_KINDS = {
    "create-index": types.SchemaKind.CREATE_INDEX,
    "drop-index": types.SchemaKind.DROP_INDEX,
    "create-collection": types.SchemaKind.CREATE_COLLECTION,
    "modify-validator": types.SchemaKind.MODIFY_VALIDATOR,
    "rename-collection": types.SchemaKind.RENAME_COLLECTION,
    "drop-collection": types.SchemaKind.DROP_COLLECTION,
}


# componentize-py makes a new `Migration` object for every exported call, so
# the plugin instance lives here, from `begin` to the component instance's end.
_plugin = None


if hasattr(exports, "Traits"):  # world `plugin-declaring`
    class Traits(exports.Traits):
        def keeps_state(self):
            # The plugin class's `keeps_state` attribute (default True).
            return bool(getattr(_plugin_class(), "keeps_state", True))


class Migration(exports.Migration):
    def get_manifest(self):
        m = _plugin_class()().manifest()
        return types.Manifest(
            m.name, m.version, m.requires, m.description,
            [types.Pass(p.name, p.collection, g.encode(p.filter),
                        None if p.projection is None else g.encode(p.projection),
                        p.batch_size, list(p.writes)) for p in m.passes],
            [types.SchemaGrant(_KINDS[k], c) for (k, c) in m.schema],
            bool(m.idempotent),
            [str(c) for c in m.reads])

    def begin(self, params, context):
        try:
            g._host = _WitHost()
            g._run = g.RunContext(context.run_id,
                                  "execute" if context.mode == types.Mode.EXECUTE else "dry-run",
                                  context.started_at_ms, context.database)
            global _plugin
            _plugin = _plugin_class()()
            _plugin.begin(g.Params(g.decode(params)))
            setup = getattr(_plugin, "setup", None)
            actions = setup() if setup else []
            return [_wit_action(a) for a in actions or []]
        except BaseException as e:
            raise _error(e)

    def process(self, pass_, batch):
        try:
            if _plugin is None:
                raise g.PluginError("process called before begin")
            actions = _plugin.process(pass_, [g.decode(d) for d in batch])
            return [_wit_action(a) for a in actions or []]
        except BaseException as e:
            raise _error(e)

    def finish(self):
        try:
            if _plugin is None:
                raise g.PluginError("finish called before begin")
            fin = getattr(_plugin, "finish", None)
            actions = fin() if fin else []
            return [_wit_action(a) for a in actions or []]
        except BaseException as e:
            raise _error(e)
