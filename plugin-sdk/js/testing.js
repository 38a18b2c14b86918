// Native test harness: runs a plugin module under `node --test` without
// wasm, feeds it documents (round-tripped through BSON, as in a component),
// serves its lookups from in-memory collections and checks its actions with
// the host's rules (writes only to the pass's `writes`, non-empty filters,
// BSON that encodes). The JavaScript twin of godwit_sdk.testing (Python).
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

function matches(doc, filter) {
  for (const [key, cond] of Object.entries(filter)) {
    if (key === '$and') {
      if (!cond.every((f) => matches(doc, f))) return false;
      continue;
    }
    const value = doc[key];
    const operators = cond !== null && typeof cond === 'object' && cond._bsontype === undefined && !Array.isArray(cond)
      && Object.keys(cond).length > 0 && Object.keys(cond).every((k) => k.startsWith('$'));
    if (operators) {
      for (const [op, arg] of Object.entries(cond)) {
        if (op === '$gt' && !(value != null && compare(value, arg) > 0)) return false;
        if (op === '$gte' && !(value != null && compare(value, arg) >= 0)) return false;
        if (op === '$lt' && !(value != null && compare(value, arg) < 0)) return false;
        if (op === '$in' && !arg.some((x) => same(x, value ?? null))) return false;
        if (!['$gt', '$gte', '$lt', '$in'].includes(op)) {
          throw new Error(`Harness filters support $gt/$gte/$lt/$in/$and, not ${op}`);
        }
      }
    } else if (!same(value, cond)) {
      return false;
    }
  }
  return true;
}

class MemoryHost {
  constructor() {
    this.collections = new Map();
    this.logs = [];
  }

  find(collection, filter, projection, limit) {
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
  }

  /** Documents served to the plugin's `find` lookups on `name`. */
  collection(name, documents) {
    this.host.collections.set(name, [...documents]);
    return this;
  }

  manifest() {
    return g.manifestOf(this.plugin);
  }

  /** Calls the plugin's `begin` (once per harness). */
  begin() {
    if (!this.begun) {
      g.__internal.setHost(this.host);
      g.__internal.setRun(Object.freeze({ runId: 'test-run', mode: 'execute', startedAtMs: 1_767_225_600_000, database: 'test' }));
      if (typeof this.plugin.begin === 'function') this.plugin.begin(new g.Params(this.params));
      this.begun = true;
    }
  }

  /** One `process` call; the actions are checked against the pass's rules. */
  process(passIndex, docs) {
    const passes = this.manifest().passes;
    if (passIndex >= passes.length) throw new g.PluginError(`manifest has no pass ${passIndex}`);
    this.begin();
    g.__internal.setHost(this.host);
    const actions = this.plugin.process(passIndex, docs.map((d) => g.decode(g.encode(d)))) ?? [];
    Harness.check(actions, passes[passIndex].writes);
    return actions;
  }

  /** The plugin's `finish` (none: no actions), checked against every pass's writes. */
  finish() {
    this.begin();
    g.__internal.setHost(this.host);
    const actions = (typeof this.plugin.finish === 'function' ? this.plugin.finish() : []) ?? [];
    Harness.check(actions, this.manifest().passes.flatMap((p) => p.writes));
    return actions;
  }

  static check(actions, writes) {
    for (const a of actions) {
      if (a instanceof g.Report) continue;
      if (!(a instanceof g.Update || a instanceof g.Insert || a instanceof g.Delete)) {
        throw new Error(`not an action: ${JSON.stringify(a)}`);
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
