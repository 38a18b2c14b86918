// Native test harness: runs a plugin module under `node --test` without
// wasm, feeds it documents (round-tripped through BSON, as in a component),
// serves its lookups from in-memory collections and checks its actions with
// the host's rules (writes only to the pass's `writes`, non-empty filters,
// BSON that encodes; schema operations only from `setup` and `finish`, each
// allowed by the manifest's `schema`) and its lookups (a pass's collection or
// one in the manifest's `reads`: any other fails the call, as in godwit,
// whatever the plugin does with the error). The JavaScript twin of
// godwit_sdk.testing (Python).
//
//     import * as plugin from '../migration.js';
//     const h = new Harness(plugin).collection('users', [{ _id: 1, username: 'a' }]);
//     const actions = h.process(0, [{ _id: 1 }]);

import * as g from './index.js';

function compare(a, b) {
  if (a === b) return 0;
  const key = (v) => (v !== null && typeof v === 'object' && typeof v.toHexString === 'function' ? v.toHexString() : v);
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

function same(a, b) {
  if (a !== null && typeof a === 'object' && typeof a.equals === 'function') return a.equals(b);
  return a === b;
}

const OPERATORS = ['$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$ne', '$exists'];

function matches(doc, filter) {
  for (const [key, cond] of Object.entries(filter)) {
    if (key === '$and') {
      if (!cond.every((f) => matches(doc, f))) return false;
      continue;
    }
    if (key === '$or') {
      if (!cond.some((f) => matches(doc, f))) return false;
      continue;
    }
    const present = Object.prototype.hasOwnProperty.call(doc, key) && doc[key] !== undefined;
    const value = doc[key];
    const operators = cond !== null && typeof cond === 'object' && cond._bsontype === undefined && !Array.isArray(cond)
      && Object.keys(cond).length > 0 && Object.keys(cond).every((k) => k.startsWith('$'));
    if (operators) {
      for (const [op, arg] of Object.entries(cond)) {
        if (op === '$gt' && !(value != null && compare(value, arg) > 0)) return false;
        if (op === '$gte' && !(value != null && compare(value, arg) >= 0)) return false;
        if (op === '$lt' && !(value != null && compare(value, arg) < 0)) return false;
        if (op === '$lte' && !(value != null && compare(value, arg) <= 0)) return false;
        if (op === '$in' && !arg.some((x) => same(x, value ?? null))) return false;
        if (op === '$nin' && arg.some((x) => same(x, value ?? null))) return false;
        if (op === '$ne' && same(arg, value ?? null)) return false;
        // As in MongoDB: a field that is null exists; only a missing one does not.
        if (op === '$exists' && present !== Boolean(arg)) return false;
        if (!OPERATORS.includes(op)) {
          throw new Error(`Harness filters support ${OPERATORS.join('/')}/$and/$or, not ${op}`);
        }
      }
    } else if (!same(value, cond)) {
      return false;
    }
  }
  return true;
}

/** The host's name rules (`godwit_policy::check_collection`), in short. */
function checkCollection(name, what) {
  if (typeof name !== 'string' || name === '') {
    throw new Error(`${what}: collection ${JSON.stringify(name)} is empty (rule collection-name)`);
  }
  if (name.includes('\0') || name.includes('$') || name.startsWith('.')) {
    throw new Error(`${what}: collection ${JSON.stringify(name)} is not a valid name (rule collection-name)`);
  }
  if (name.startsWith('system.') || name === 'godwit_metadata') {
    throw new Error(
      `${what}: collection ${JSON.stringify(name)} is out of reach: godwit's metadata collection and system.* (rule collection-name)`,
    );
  }
}

class MemoryHost {
  constructor() {
    this.collections = new Map();
    this.logs = [];
    // [pass collections, declared reads], set by `begin`.
    this.reads = null;
    // A lookup the host would fail the call for.
    this.refused = null;
  }

  find(collection, filter, projection, limit) {
    if (collection.startsWith('system.') || collection === 'godwit_metadata') {
      throw new g.PluginError(`find on ${collection} failed: lookups on \`${collection}\` are refused`);
    }
    if (this.reads !== null) {
      const [passes, declared] = this.reads;
      if (!passes.includes(collection) && !declared.includes(collection)) {
        const message = `lookup on \`${collection}\` refused: collection \`${collection}\` is neither read by a pass `
          + `[${passes.join(', ')}] nor in the manifest's reads [${declared.join(', ')}] `
          + "(rule undeclared-read: declare the collection in the manifest's `reads`)";
        this.refused ??= message;
        throw new g.PluginError(`find on ${collection} failed: ${message}`);
      }
    }
    const docs = [...(this.collections.get(collection) ?? [])].sort((a, b) => compare(a._id, b._id));
    const out = [];
    for (let d of docs) {
      if (!matches(d, filter)) continue;
      if (projection) {
        d = Object.fromEntries(Object.entries(d).filter(([k]) => k === '_id' || projection[k]));
      }
      out.push(g.decode(g.encode(d)));
      if (limit && out.length >= limit) break;
    }
    return out;
  }

  log(level, message) {
    this.logs.push([level, message]);
  }
}

/**
 * Runs a plugin module natively: run id `test-run` started at
 * 2026-01-01T00:00:00Z, told `execute` as godwit tells every plugin.
 */
export class Harness {
  constructor(plugin, params = {}) {
    this.plugin = plugin;
    this.params = { ...params };
    this.host = new MemoryHost();
    this.begun = false;
    this.setupActions = [];
  }

  /** Documents served to the plugin's `find` lookups on `name`. */
  collection(name, documents) {
    this.host.collections.set(name, [...documents]);
    return this;
  }

  manifest() {
    return g.manifestOf(this.plugin);
  }

  /**
   * Runs one plugin call; a refused lookup fails it as in godwit, even if
   * the plugin caught the error.
   */
  call(what, f) {
    g.__internal.setHost(this.host);
    let result;
    try {
      result = f();
    } catch (e) {
      if (this.host.refused === null) throw e;
    }
    const refused = this.host.refused;
    this.host.refused = null;
    if (refused !== null) throw new Error(`${what}: ${refused}`);
    return result;
  }

  /** Calls the plugin's `begin`, then its `setup` (once per harness). */
  begin() {
    if (!this.begun) {
      const manifest = this.manifest();
      for (const name of manifest.reads) checkCollection(name, 'reads');
      this.host.reads = [manifest.passes.map((p) => p.collection), [...manifest.reads]];
      g.__internal.setRun(Object.freeze({ runId: 'test-run', mode: 'execute', startedAtMs: 1_767_225_600_000, database: 'test' }));
      this.call('begin', () => {
        if (typeof this.plugin.begin === 'function') this.plugin.begin(new g.Params(this.params));
      });
      this.begun = true;
      this.setupActions = this.call('begin', () => (typeof this.plugin.setup === 'function' ? this.plugin.setup() : [])) ?? [];
      for (const a of this.setupActions) {
        if (!(a instanceof g.Schema)) {
          throw new Error(`setup may return schema operations only, not ${describe(a)}`);
        }
      }
      this.checkSchema(this.setupActions);
    }
  }

  /** The schema operations `setup()` returned (calls `begin`), checked against the manifest's `schema`. */
  setup() {
    this.begin();
    return [...this.setupActions];
  }

  checkSchema(actions) {
    const allowed = new Set(this.manifest().schema.map(([kind, collection]) => `${kind}\0${collection}`));
    for (const a of actions) {
      if (!(a instanceof g.Schema)) continue;
      if (!g.SCHEMA_KINDS.includes(a.kind)) throw new Error(`unknown schema operation ${JSON.stringify(a.kind)}`);
      const names = a.kind === 'rename-collection' ? [a.collection, a.args.to] : [a.collection];
      for (const name of names) {
        if (!allowed.has(`${a.kind}\0${name}`)) {
          throw new Error(`${a.kind} on ${name} is not declared in the manifest's schema (rule schema-operations)`);
        }
        if (typeof name !== 'string' || name.startsWith('system.') || name === 'godwit_metadata') {
          throw new Error(`${a.kind} on ${name}: out of reach`);
        }
      }
      if ((a.kind === 'create-index' || a.kind === 'drop-index') && !a.args.name) {
        throw new Error(`${a.kind} on ${a.collection}: name every index`);
      }
      for (const key of ['keys', 'partialFilter', 'collation', 'validator']) {
        if (a.args[key] != null) g.encode(a.args[key]);
      }
    }
  }

  /** One `process` call; the actions are checked against the pass's rules. */
  process(passIndex, docs) {
    const passes = this.manifest().passes;
    if (passIndex >= passes.length) throw new g.PluginError(`manifest has no pass ${passIndex}`);
    this.begin();
    const batch = docs.map((d) => g.decode(g.encode(d)));
    const actions = this.call(`pass ${passIndex} (${passes[passIndex].name})`, () => this.plugin.process(passIndex, batch)) ?? [];
    for (const a of actions) {
      if (a instanceof g.Schema) {
        throw new Error(`${describe(a)} returned from process: schema operations come from setup or finish`);
      }
    }
    Harness.check(actions, passes[passIndex].writes);
    return actions;
  }

  /** The plugin's `finish` (none: no actions), checked against every pass's writes and the manifest's schema. */
  finish() {
    this.begin();
    const actions = this.call('finish', () => (typeof this.plugin.finish === 'function' ? this.plugin.finish() : [])) ?? [];
    this.checkSchema(actions);
    Harness.check(
      actions.filter((a) => !(a instanceof g.Schema)),
      this.manifest().passes.flatMap((p) => p.writes),
    );
    return actions;
  }

  static check(actions, writes) {
    for (const a of actions) {
      if (a instanceof g.Report) continue;
      if (!(a instanceof g.Update || a instanceof g.Insert || a instanceof g.Delete)) {
        throw new Error(`not an action: ${describe(a)}`);
      }
      if (!writes.includes(a.collection)) {
        throw new Error(`an action writes ${a.collection}, not in the pass's writes [${writes.join(', ')}]`);
      }
      if ((a instanceof g.Update || a instanceof g.Delete) && Object.keys(a.filter).length === 0) {
        throw new Error(`an action on ${a.collection} has an empty filter`);
      }
      const docs = a instanceof g.Update ? [a.filter, a.update] : a instanceof g.Insert ? [a.document] : [a.filter];
      for (const d of docs) g.encode(d);
    }
  }
}

function describe(a) {
  if (a instanceof g.Schema) return `${a.kind} on ${a.collection}`;
  return JSON.stringify(a, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(a);
}
