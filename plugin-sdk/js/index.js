// The JavaScript SDK for godwit migration plugins.
//
// A plugin is one ES module exporting `manifest` (an object, or a function
// returning one), `begin(params)`, `process(passIndex, docs)` and optionally
// `setup()` (schema operations applied before the first pass, contract 0.2)
// and `finish()`. Documents arrive as plain objects decoded from BSON (the `bson`
// package, the one the MongoDB Node.js driver uses) and leave as actions
// built with `update`, `setFields`, `insert`, `remove` and `report` (schema
// operations with `createIndex`, `dropIndex`, ...):
//
//     import * as g from 'godwit-sdk';
//
//     export const manifest = new g.Manifest('lowercase-emails', '1.1.0').pass(
//       new g.Pass('users', 'users', { filter: { email: { $type: 'string' } }, writes: ['users'] }));
//
//     export function begin(params) {}
//
//     export function process(passIndex, docs) {
//       return docs.filter((d) => d.email !== d.email.toLowerCase())
//         .map((d) => g.setFields('users', d._id, { email: d.email.toLowerCase() }));
//     }
//
// The same module runs natively under `node --test` through `Harness`
// (`godwit-sdk/testing`); `godwit plugin build DIR` builds it into a
// component with componentize-js. This module imports nothing of the
// component's host interface: that glue lives in `component.js`, which only
// the build's entry module imports. It mirrors the Python SDK
// (`plugin-sdk/python/godwit_sdk`) name for name, in camelCase.

import { BSON } from 'bson';

export { BSON, Binary, Decimal128, Double, Int32, Long, ObjectId, Timestamp, UUID } from 'bson';

// int64 values decode as BigInt and encode back as int64, so that a
// document written back keeps its types. (int32 and double decode as
// numbers; a number encodes as int32 when it is an integer in int32's range,
// else as a double - as in the MongoDB Node.js driver. Wrap a value in
// `new Double(x)` to write a double whose value is integral.)
const DECODE = Object.freeze({ useBigInt64: true });

/** One BSON document (bytes) as a plain object. */
export function decode(bytes) {
  return BSON.deserialize(bytes, DECODE);
}

/** A plain object as one BSON document (bytes); key order is kept. */
export function encode(document) {
  return BSON.serialize(document);
}

/** A plugin's refusal to go on (the contract's `error`): the run stops with `message`. */
export class PluginError extends Error {
  constructor(message, documentId = undefined) {
    super(message);
    this.name = 'PluginError';
    this.documentId = documentId;
  }
}

/** One scan over a collection (the contract's `pass`). */
export class Pass {
  constructor(name, collection, { filter = {}, projection = undefined, batchSize = 0, writes = [] } = {}) {
    this.name = name;
    this.collection = collection;
    this.filter = filter;
    this.projection = projection;
    this.batchSize = batchSize;
    this.writes = [...writes];
  }
}

/** The kinds of schema operation a manifest may allow (contract 0.2). */
export const SCHEMA_KINDS = Object.freeze([
  'create-index',
  'drop-index',
  'create-collection',
  'modify-validator',
  'rename-collection',
  'drop-collection',
]);

function schemaGrant(kind, collection) {
  if (!SCHEMA_KINDS.includes(kind)) {
    throw new PluginError(`unknown schema kind ${JSON.stringify(kind)} (one of ${SCHEMA_KINDS.join(', ')})`);
  }
  return [kind, String(collection)];
}

/**
 * Static description of a migration (the contract's `manifest`).
 *
 * Contract 0.2's fields: `reads`, the collections `find` may look up besides
 * the passes' own (godwit fails a lookup on any other: rule
 * `undeclared-read`); `idempotent: false` when applying the actions twice
 * is wrong (an `$inc`, a `$push`): godwit then refuses settings under which
 * a batch may be applied again unless the operator overrides it; `schema`,
 * the schema operations the plugin may return, as `[kind, collection]`
 * pairs (or `{ kind, collection }`) with kinds from `SCHEMA_KINDS` - or
 * grant them one by one with `allow(kind, collection)`.
 */
export class Manifest {
  constructor(
    name,
    version,
    { requires = undefined, description = '', passes = [], reads = [], idempotent = true, schema = [] } = {},
  ) {
    this.name = name;
    this.version = version;
    this.requires = requires;
    this.description = description;
    this.passes = passes.map((p) => (p instanceof Pass ? p : new Pass(p.name, p.collection, p)));
    this.reads = [...reads];
    this.idempotent = idempotent;
    this.schema = schema.map((s) => (Array.isArray(s) ? schemaGrant(s[0], s[1]) : schemaGrant(s.kind, s.collection)));
  }

  /** Appends a pass; returns the manifest for chaining. */
  pass(p) {
    this.passes.push(p instanceof Pass ? p : new Pass(p.name, p.collection, p));
    return this;
  }

  /**
   * Allows schema operations of `kind` on `collection` (a rename: allow
   * both names); returns the manifest for chaining.
   */
  allow(kind, collection) {
    this.schema.push(schemaGrant(kind, collection));
    return this;
  }
}

/**
 * A schema operation (contract 0.2): return it from `setup()` (applied
 * before the first pass) or `finish()` (after finish's document actions),
 * never from `process`. Build it with `createIndex`, `dropIndex`,
 * `createCollection`, `modifyValidator`, `renameCollection` or
 * `dropCollection`; the manifest must allow its kind on its collection.
 */
export class Schema {
  constructor(kind, collection, args = {}) {
    this.kind = kind;
    this.collection = collection;
    /**
     * Per kind: `keys`, `name`, `unique`, `partialFilter`, `collation`,
     * `expireAfterSeconds` (create-index); `name` (drop-index);
     * `validator`, `validationLevel`, `validationAction`, `collation`
     * (create-collection, modify-validator); `to` (rename-collection).
     */
    this.args = args;
  }
}

/** Builds index `name` over `keys` (`{ email: 1 }`) on `collection`. */
export function createIndex(
  collection,
  name,
  keys,
  { unique = false, partialFilter = undefined, collation = undefined, expireAfterSeconds = undefined } = {},
) {
  return new Schema('create-index', collection, { keys, name, unique, partialFilter, collation, expireAfterSeconds });
}

/** Drops index `name` of `collection` (a revert builds it again from its journaled spec). */
export function dropIndex(collection, name) {
  return new Schema('drop-index', collection, { name });
}

/** Creates `collection`, with a validator (`{ $jsonSchema: ... }` or a query document) if given. */
export function createCollection(
  collection,
  validator = undefined,
  { validationLevel = undefined, validationAction = undefined, collation = undefined } = {},
) {
  return new Schema('create-collection', collection, { validator, validationLevel, validationAction, collation });
}

/** Replaces the validator of `collection` (`collMod`). */
export function modifyValidator(collection, validator, { validationLevel = undefined, validationAction = undefined } = {}) {
  return new Schema('modify-validator', collection, { validator, validationLevel, validationAction });
}

/** Renames `collection` to `to` in the same database (refused if `to` exists). */
export function renameCollection(collection, to) {
  return new Schema('rename-collection', collection, { to });
}

/**
 * Drops `collection`; a revert re-creates it only from the before-images
 * godwit journals of its documents.
 */
export function dropCollection(collection) {
  return new Schema('drop-collection', collection, {});
}

/** A plugin module's manifest, whether it exports it as an object or as a function returning one. */
export function manifestOf(plugin) {
  const m = typeof plugin.manifest === 'function' ? plugin.manifest() : plugin.manifest;
  if (m == null || typeof m !== 'object') {
    throw new PluginError('the plugin module exports no `manifest` (an object, or a function returning one)');
  }
  return m instanceof Manifest ? m : new Manifest(m.name, m.version, m);
}

export class Update {
  constructor(collection, filter, update, upsert = false, multi = false) {
    this.collection = collection;
    this.filter = filter;
    this.update = update;
    this.upsert = upsert;
    this.multi = multi;
  }
}

export class Insert {
  constructor(collection, document) {
    this.collection = collection;
    this.document = document;
  }
}

export class Delete {
  constructor(collection, filter, multi = false) {
    this.collection = collection;
    this.filter = filter;
    this.multi = multi;
  }
}

export class Report {
  constructor(kind, key, message) {
    this.kind = kind;
    this.key = key;
    this.message = message;
  }
}

/** Update the first (`multi`: every) document matching `filter`. */
export function update(collection, filter, updateDoc, { upsert = false, multi = false } = {}) {
  return new Update(collection, filter, updateDoc, upsert, multi);
}

/** `$set` of `fields` on the document whose `_id` is `id`. */
export function setFields(collection, id, fields) {
  return new Update(collection, { _id: id }, { $set: fields });
}

/** `$unset` of `fields` (names) on the document whose `_id` is `id`. */
export function unsetFields(collection, id, fields) {
  return new Update(collection, { _id: id }, { $unset: Object.fromEntries(fields.map((f) => [f, ''])) });
}

/** `$inc` of `fields` (field -> amount) on the document whose `_id` is `id`. */
export function incFields(collection, id, fields) {
  return new Update(collection, { _id: id }, { $inc: fields });
}

/** Insert `document` into `collection`. */
export function insert(collection, document) {
  return new Insert(collection, document);
}

/** Delete the first (`multi`: every) document matching `filter` (Python's `delete`). */
export function remove(collection, filter, { multi = false } = {}) {
  return new Delete(collection, filter, multi);
}

/** A finding for the report ("unresolved", "warning", "skipped", ...): counted, sampled, never applied. */
export function report(kind, key, message) {
  return new Report(kind, key, message);
}

/**
 * An update document built one field at a time (the Rust SDK's `Update`):
 *
 *     new UpdateBuilder().set('a.b', 1).unset('old').inc('n', 1).byId('users', doc._id)
 *
 * Operators appear in the order first used; a field added twice to one
 * operator keeps the last value. `isEmpty()`: nothing to write.
 */
export class UpdateBuilder {
  constructor() {
    this.update = {};
  }

  op(operator, field, value) {
    (this.update[operator] ??= {})[field] = value;
    return this;
  }

  set(field, value) {
    return this.op('$set', field, value);
  }

  unset(field) {
    return this.op('$unset', field, '');
  }

  inc(field, by) {
    return this.op('$inc', field, by);
  }

  rename(field, to) {
    return this.op('$rename', field, to);
  }

  push(field, value) {
    return this.op('$push', field, value);
  }

  isEmpty() {
    return Object.keys(this.update).length === 0;
  }

  byId(collection, id) {
    return new Update(collection, { _id: id }, this.update);
  }

  one(collection, filter) {
    return new Update(collection, filter, this.update);
  }

  many(collection, filter) {
    return new Update(collection, filter, this.update, false, true);
  }

  upsert(collection, filter) {
    return new Update(collection, filter, this.update, true, false);
  }
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && value._bsontype === undefined
    && !(value instanceof Date) && !(value instanceof Uint8Array) && !(value instanceof RegExp);
}

/**
 * The value at a dotted path (`"a.b.0.c"`: field names, and indexes into
 * arrays), `fallback` if any segment is missing. Like the other SDKs'
 * `get_path`, it does not fan out over an array's elements.
 */
export function getPath(doc, path, fallback = undefined) {
  let value = doc;
  for (const segment of path.split('.')) {
    if (isPlainObject(value) && Object.hasOwn(value, segment)) {
      value = value[segment];
    } else if (Array.isArray(value) && /^[0-9]+$/.test(segment) && Number(segment) < value.length) {
      value = value[Number(segment)];
    } else {
      return fallback;
    }
  }
  return value;
}

/** The document's `_id`; a `PluginError` if it has none. */
export function idOf(doc) {
  if (!Object.hasOwn(doc, '_id')) {
    throw new PluginError("a document came without _id (a pass's projection must keep _id)");
  }
  return doc._id;
}

/** `{_id: ...}`: the filter that addresses exactly this document. */
export function idFilter(doc) {
  return { _id: idOf(doc) };
}

/** The operator's `--param k=v` pairs (all strings). */
export class Params {
  constructor(entries = {}) {
    this.values = { ...entries };
  }

  has(key) {
    return Object.hasOwn(this.values, key);
  }

  /** The value of `key`, `fallback` if the operator did not pass it. */
  get(key, fallback = undefined) {
    return this.has(key) ? this.values[key] : fallback;
  }

  /** The value of `key`; a `PluginError` telling the operator what to pass if it is missing. */
  require(key) {
    if (!this.has(key)) {
      throw new PluginError(`missing parameter \`${key}\` (pass --param ${key}=VALUE)`);
    }
    return this.values[key];
  }
}

function quote(s) {
  let out = '"';
  for (const c of s) {
    if (c === '"') out += '\\"';
    else if (c === '\\') out += '\\\\';
    else if (c.codePointAt(0) < 0x20) out += `\\u${c.codePointAt(0).toString(16).padStart(4, '0')}`;
    else out += c;
  }
  return `${out}"`;
}

/**
 * Named counters reported as one JSON object, in first-touched order (the
 * same text as the Rust and Python SDKs' `Tally`).
 */
export class Tally {
  constructor() {
    this.counts = new Map();
  }

  touch(name) {
    this.add(name, 0);
  }

  add(name, n) {
    this.counts.set(name, (this.counts.get(name) ?? 0) + n);
  }

  incr(name) {
    this.add(name, 1);
  }

  get(name) {
    return this.counts.get(name) ?? 0;
  }

  toJson() {
    return `{${[...this.counts].map(([k, v]) => `${quote(k)}: ${v}`).join(', ')}}`;
  }

  report(kind, key) {
    return new Report(kind, key, this.toJson());
  }
}

// The host's services, set by the component glue or by the test harness:
// an object with `find(collection, filter, projection, limit) -> object[]`
// and `log(level, message)`; and the run's context.
let host = null;
let runContext = null;

/** For `component.js` and `testing.js` only. */
export const __internal = Object.freeze({
  setHost(h) {
    host = h;
  },
  setRun(r) {
    runContext = r;
  },
});

/** Run id, mode, start time (ms since the epoch, UTC) and database of the current run. */
export function run() {
  if (runContext === null) {
    throw new PluginError('no run yet: the run context exists from begin on');
  }
  return runContext;
}

/**
 * Read-only lookup of reference data (`limit` 0: the host's cap of 10,000)
 * in a pass's collection or one in the manifest's `reads` (any other fails
 * the call: rule `undeclared-read`). Journaled by the host, so a replay
 * sees the same data.
 */
export function find(collection, filter, projection = undefined, limit = 0) {
  if (host === null) {
    throw new PluginError('find called outside a run');
  }
  return host.find(collection, filter, projection, limit);
}

/**
 * Every matching document however many: pages of `page` (0: 1,000) in `_id`
 * order, each one journaled `find` with `_id` past the last seen.
 */
export function findAll(collection, filter, projection = undefined, page = 0) {
  const size = page || 1000;
  const everything = [];
  for (;;) {
    let paged = filter;
    if (everything.length > 0) {
      const after = { $gt: everything[everything.length - 1]._id };
      paged = Object.hasOwn(filter, '_id') ? { $and: [filter, { _id: after }] } : { ...filter, _id: after };
    }
    const found = find(collection, paged, projection, size);
    if (found.some((d) => !Object.hasOwn(d, '_id'))) {
      throw new PluginError(`findAll on ${collection}: a document came back without _id (a projection must keep _id)`);
    }
    everything.push(...found);
    if (found.length < size) {
      return everything;
    }
  }
}

function logAt(level, message) {
  if (host !== null) {
    host.log(level, String(message));
  }
}

/** `log.info('...')`: the host's log, tagged with the plugin's name. */
export const log = Object.freeze({
  trace: (message) => logAt('trace', message),
  debug: (message) => logAt('debug', message),
  info: (message) => logAt('info', message),
  warn: (message) => logAt('warn', message),
  error: (message) => logAt('error', message),
});
