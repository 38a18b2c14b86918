// Export glue between componentize-js's bindings of the contract
// (`wit/migration.wit`, contract 0.2, world `plugin-declaring`) and a plugin module: BSON decoding
// and encoding, action and error mapping, the run's context. Only the
// build's entry module imports this (`godwit plugin build` writes it): the
// `godwit:migration/host` import exists only inside a component.

import { find as hostFind, log as hostLog } from 'godwit:migration/host@0.2.0';
import * as g from './index.js';

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error']);

const witHost = {
  find(collection, filter, projection, limit) {
    let found;
    try {
      found = hostFind(collection, g.encode(filter), projection == null ? undefined : g.encode(projection), limit >>> 0);
    } catch (e) {
      // The contract's `result<_, string>` error arrives as the thrown value's payload.
      const reason = e !== null && typeof e === 'object' && 'payload' in e ? e.payload : e;
      throw new g.PluginError(`find on ${collection} failed: ${reason}`);
    }
    return found.map((d) => g.decode(d));
  },
  log(level, message) {
    hostLog(LEVELS.has(level) ? level : 'info', message);
  },
};

/** The contract's `error` for anything a plugin call threw. */
function toError(e) {
  if (e instanceof g.PluginError) {
    return {
      message: e.message,
      documentId: e.documentId === undefined ? undefined : g.encode({ _id: e.documentId }),
    };
  }
  // Anything else is a bug in the plugin: its stack is the message.
  const text = e instanceof Error ? (e.stack ? `${e.name}: ${e.message}\n${e.stack}` : `${e.name}: ${e.message}`) : String(e);
  return { message: `javascript exception: ${text}`.trim(), documentId: undefined };
}

function guarded(f) {
  return (...args) => {
    try {
      return f(...args);
    } catch (e) {
      // componentize-js turns a thrown plain object into the `err` case.
      throw toError(e);
    }
  };
}

function toAction(a) {
  if (a instanceof g.Update) {
    return {
      tag: 'update',
      val: { collection: a.collection, filter: g.encode(a.filter), update: g.encode(a.update), upsert: !!a.upsert, multi: !!a.multi },
    };
  }
  if (a instanceof g.Insert) {
    return { tag: 'insert', val: { collection: a.collection, document: g.encode(a.document) } };
  }
  if (a instanceof g.Delete) {
    return { tag: 'delete', val: { collection: a.collection, filter: g.encode(a.filter), multi: !!a.multi } };
  }
  if (a instanceof g.Report) {
    return { tag: 'report', val: { kind: String(a.kind), key: String(a.key), message: String(a.message) } };
  }
  if (a instanceof g.Schema) {
    return { tag: 'schema', val: toSchemaOp(a) };
  }
  throw new g.PluginError(
    `not an action: ${JSON.stringify(a) ?? String(a)} (build actions with update, setFields, insert, remove, report or a schema builder from godwit-sdk)`,
  );
}

/** An optional BSON document of the contract (`option<bson>`). */
function opt(d) {
  return d == null ? undefined : g.encode(d);
}

/** An optional string of the contract (`option<string>`). */
function optString(s) {
  return s == null ? undefined : String(s);
}

/** The contract's `schema-op` for one `g.Schema`. */
function toSchemaOp(s) {
  const x = s.args ?? {};
  const collection = String(s.collection);
  switch (s.kind) {
    case 'create-index': {
      const ttl = x.expireAfterSeconds;
      if (ttl != null && !(Number.isInteger(ttl) && ttl >= 0 && ttl <= 0xffffffff)) {
        throw new g.PluginError(`index ${x.name} on ${collection}: expireAfterSeconds ${ttl} is not a whole number of seconds`);
      }
      return {
        tag: 'create-index',
        val: {
          collection,
          index: {
            keys: g.encode(x.keys ?? {}),
            name: String(x.name ?? ''),
            unique: !!x.unique,
            partialFilter: opt(x.partialFilter),
            collation: opt(x.collation),
            expireAfterSeconds: ttl == null ? undefined : ttl,
          },
        },
      };
    }
    case 'drop-index':
      return { tag: 'drop-index', val: { collection, name: String(x.name ?? '') } };
    case 'create-collection':
      return {
        tag: 'create-collection',
        val: {
          collection,
          validator: opt(x.validator),
          validationLevel: optString(x.validationLevel),
          validationAction: optString(x.validationAction),
          collation: opt(x.collation),
        },
      };
    case 'modify-validator':
      return {
        tag: 'modify-validator',
        val: {
          collection,
          validator: g.encode(x.validator ?? {}),
          validationLevel: optString(x.validationLevel),
          validationAction: optString(x.validationAction),
        },
      };
    case 'rename-collection':
      return { tag: 'rename-collection', val: { collection, to: String(x.to) } };
    case 'drop-collection':
      return { tag: 'drop-collection', val: { collection } };
    default:
      throw new g.PluginError(`unknown schema operation ${JSON.stringify(s.kind)} (one of ${g.SCHEMA_KINDS.join(', ')})`);
  }
}

function toActions(actions, call) {
  if (actions == null) return [];
  if (typeof actions.then === 'function') {
    throw new g.PluginError(`${call} returned a Promise: plugin functions must be synchronous (no async, no await)`);
  }
  if (!Array.isArray(actions)) {
    throw new g.PluginError(`${call} returned ${typeof actions}, not an array of actions (return [] for none)`);
  }
  return actions.map(toAction);
}

/**
 * The `traits` interface (world `plugin-declaring`) over `plugin`: its
 * `keepsState` export (default true); `export const keepsState = false`
 * declares that the actions of `process` and `finish` never depend on
 * earlier batches.
 */
export function traitsFor(plugin) {
  return {
    keepsState() {
      return plugin.keepsState !== false;
    },
  };
}

/** The `migration` interface's functions over `plugin` (the author's module namespace). */
export function exportsFor(plugin) {
  let begun = false;
  return {
    getManifest() {
      const m = g.manifestOf(plugin);
      return {
        name: m.name,
        version: m.version,
        requires: m.requires ?? undefined,
        description: m.description ?? '',
        passes: m.passes.map((p) => ({
          name: p.name,
          collection: p.collection,
          filter: g.encode(p.filter ?? {}),
          projection: p.projection == null ? undefined : g.encode(p.projection),
          batchSize: p.batchSize ?? 0,
          writes: [...(p.writes ?? [])],
        })),
        // Contract 0.2: enum cases are their WIT names ('create-index', ...).
        schema: (m.schema ?? []).map(([kind, collection]) => ({ kind, collection })),
        idempotent: m.idempotent !== false,
        reads: (m.reads ?? []).map(String),
      };
    },
    begin: guarded((params, context) => {
      g.__internal.setHost(witHost);
      g.__internal.setRun(
        Object.freeze({
          runId: context.runId,
          mode: context.mode,
          startedAtMs: Number(context.startedAtMs),
          database: context.database,
        }),
      );
      if (typeof plugin.begin === 'function') {
        plugin.begin(new g.Params(g.decode(params)));
      }
      begun = true;
      // Contract 0.2's `begin` returns actions: `setup`'s schema operations
      // (the host refuses anything else from begin).
      return toActions(typeof plugin.setup === 'function' ? plugin.setup() : [], 'setup');
    }),
    process: guarded((passIndex, batch) => {
      if (!begun) throw new g.PluginError('process called before begin');
      if (typeof plugin.process !== 'function') {
        throw new g.PluginError('the plugin module exports no `process(passIndex, docs)` function');
      }
      return toActions(plugin.process(passIndex, batch.map((d) => g.decode(d))), 'process');
    }),
    finish: guarded(() => {
      if (!begun) throw new g.PluginError('finish called before begin');
      return toActions(typeof plugin.finish === 'function' ? plugin.finish() : [], 'finish');
    }),
  };
}
