// Type definitions of godwit-sdk, the JavaScript SDK for godwit migration plugins.
// A plugin module (migration.js / migration.ts compiled to it) exports:
//
//   export const manifest: ManifestLike | (() => ManifestLike);
//   export function begin(params: Params): void;
//   export function setup(): Schema[];             // optional: schema operations (contract 0.2)
//   export function process(passIndex: number, docs: Document[]): Action[];
//   export function finish(): (Action | Schema)[]; // optional
//   export const keepsState: boolean;              // optional, default true: false declares that
//                                                  // process and finish keep nothing between calls
//                                                  // (no restart after a refused batch, no replay on resume)
//
// Every function is synchronous: a Promise returned is refused.

export { BSON, Binary, Decimal128, Double, Int32, Long, ObjectId, Timestamp, UUID } from 'bson';

/** A document decoded from BSON: int64 as bigint, int32 and double as number. */
export type Document = { [field: string]: any };

/** One BSON document (bytes) as a plain object. */
export function decode(bytes: Uint8Array): Document;
/** A plain object as one BSON document (bytes); key order is kept. */
export function encode(document: Document): Uint8Array;

/** A plugin's refusal to go on (the contract's `error`): the run stops with `message`. */
export class PluginError extends Error {
  constructor(message: string, documentId?: unknown);
  documentId: unknown;
}

export interface PassOptions {
  /** Query selecting the documents to read (default `{}`: all). */
  filter?: Document;
  /** Projection; `_id` is always included. */
  projection?: Document;
  /** Documents per `process` call; 0 lets the host choose. */
  batchSize?: number;
  /** Collections this pass may write; the host refuses any other. */
  writes?: string[];
}

/** One scan over a collection (the contract's `pass`). */
export class Pass {
  constructor(name: string, collection: string, options?: PassOptions);
  name: string;
  collection: string;
  filter: Document;
  projection: Document | undefined;
  batchSize: number;
  writes: string[];
}

export interface PassLike extends PassOptions {
  name: string;
  collection: string;
}

export interface ManifestOptions {
  /** Semantic version requirement on the database's version, e.g. "^1.7". */
  requires?: string;
  description?: string;
  passes?: PassLike[];
  /**
   * Collections `find` may look up besides the passes' own; godwit fails a
   * lookup on any other (rule `undeclared-read`).
   */
  reads?: string[];
  /**
   * False: applying the actions twice is wrong (`$inc`, `$push`): godwit
   * refuses settings under which a batch may be applied again unless the
   * operator overrides it. Default true.
   */
  idempotent?: boolean;
  /** Schema operations the plugin may return: `[kind, collection]` pairs (a rename: both names). */
  schema?: ([SchemaKind, string] | { kind: SchemaKind; collection: string })[];
}

export interface ManifestLike extends ManifestOptions {
  name: string;
  /** Semantic version the database reaches once this migration ran. */
  version: string;
}

/** Static description of a migration (the contract's `manifest`). */
export class Manifest {
  constructor(name: string, version: string, options?: ManifestOptions);
  name: string;
  version: string;
  requires: string | undefined;
  description: string;
  passes: Pass[];
  reads: string[];
  idempotent: boolean;
  schema: [SchemaKind, string][];
  /** Appends a pass; returns the manifest for chaining. */
  pass(p: Pass | PassLike): this;
  /** Allows schema operations of `kind` on `collection` (a rename: allow both names). */
  allow(kind: SchemaKind, collection: string): this;
}

/** The kinds of schema operation a manifest may allow (contract 0.2). */
export type SchemaKind =
  | 'create-index'
  | 'drop-index'
  | 'create-collection'
  | 'modify-validator'
  | 'rename-collection'
  | 'drop-collection';
export const SCHEMA_KINDS: readonly SchemaKind[];

/**
 * A schema operation (contract 0.2), returned from `setup()` (before the
 * first pass) or `finish()`, never from `process`.
 */
export class Schema {
  constructor(kind: SchemaKind, collection: string, args?: Document);
  kind: SchemaKind;
  collection: string;
  args: Document;
}

export interface IndexOptions {
  unique?: boolean;
  /** `partialFilterExpression`, a query document. */
  partialFilter?: Document;
  /** e.g. `{ locale: 'en', strength: 2 }`. */
  collation?: Document;
  /** TTL on a single date field. */
  expireAfterSeconds?: number;
}

export interface ValidatorOptions {
  /** "strict" (default), "moderate" or "off". */
  validationLevel?: string;
  /** "error" (default) or "warn". */
  validationAction?: string;
}

/** Builds index `name` over `keys` (`{ email: 1 }`) on `collection`. */
export function createIndex(collection: string, name: string, keys: Document, options?: IndexOptions): Schema;
/** Drops index `name` of `collection`. */
export function dropIndex(collection: string, name: string): Schema;
/** Creates `collection`, with a validator if given. */
export function createCollection(
  collection: string,
  validator?: Document,
  options?: ValidatorOptions & { collation?: Document },
): Schema;
/** Replaces the validator of `collection` (`collMod`). */
export function modifyValidator(collection: string, validator: Document, options?: ValidatorOptions): Schema;
/** Renames `collection` to `to` in the same database (refused if `to` exists). */
export function renameCollection(collection: string, to: string): Schema;
/** Drops `collection`; a revert re-creates it from journaled before-images. */
export function dropCollection(collection: string): Schema;

/** A plugin module's manifest, whether exported as an object or as a function. */
export function manifestOf(plugin: { manifest?: ManifestLike | (() => ManifestLike) }): Manifest;

export class Update {
  constructor(collection: string, filter: Document, update: Document, upsert?: boolean, multi?: boolean);
  collection: string;
  filter: Document;
  update: Document;
  upsert: boolean;
  multi: boolean;
}

export class Insert {
  constructor(collection: string, document: Document);
  collection: string;
  document: Document;
}

export class Delete {
  constructor(collection: string, filter: Document, multi?: boolean);
  collection: string;
  filter: Document;
  multi: boolean;
}

export class Report {
  constructor(kind: string, key: string, message: string);
  kind: string;
  key: string;
  message: string;
}

export type Action = Update | Insert | Delete | Report;

/** Update the first (`multi`: every) document matching `filter`. */
export function update(collection: string, filter: Document, update: Document, options?: { upsert?: boolean; multi?: boolean }): Update;
/** `$set` of `fields` on the document whose `_id` is `id`. */
export function setFields(collection: string, id: unknown, fields: Document): Update;
/** `$unset` of `fields` on the document whose `_id` is `id`. */
export function unsetFields(collection: string, id: unknown, fields: string[]): Update;
/** `$inc` of `fields` (field -> amount) on the document whose `_id` is `id`. */
export function incFields(collection: string, id: unknown, fields: Document): Update;
/** Insert `document` into `collection`. */
export function insert(collection: string, document: Document): Insert;
/** Delete the first (`multi`: every) document matching `filter` (Python's `delete`). */
export function remove(collection: string, filter: Document, options?: { multi?: boolean }): Delete;
/** A finding for the report ("unresolved", "warning", "skipped", ...). */
export function report(kind: string, key: string, message: string): Report;

/** An update document built one field at a time. */
export class UpdateBuilder {
  update: { [operator: string]: Document };
  op(operator: string, field: string, value: unknown): this;
  set(field: string, value: unknown): this;
  unset(field: string): this;
  inc(field: string, by: number | bigint): this;
  rename(field: string, to: string): this;
  push(field: string, value: unknown): this;
  isEmpty(): boolean;
  byId(collection: string, id: unknown): Update;
  one(collection: string, filter: Document): Update;
  many(collection: string, filter: Document): Update;
  upsert(collection: string, filter: Document): Update;
}

/** The value at a dotted path (`"a.b.0.c"`), `fallback` if a segment is missing. */
export function getPath(doc: Document, path: string, fallback?: unknown): any;
/** The document's `_id`; a `PluginError` if it has none. */
export function idOf(doc: Document): any;
/** `{_id: ...}`: the filter that addresses exactly this document. */
export function idFilter(doc: Document): { _id: any };

/** The operator's `--param k=v` pairs (all strings). */
export class Params {
  constructor(entries?: { [key: string]: string });
  values: { [key: string]: string };
  has(key: string): boolean;
  get(key: string): string | undefined;
  get<T>(key: string, fallback: T): string | T;
  /** The value; a `PluginError` telling the operator what to pass if missing. */
  require(key: string): string;
}

/** Named counters reported as one JSON object, in first-touched order. */
export class Tally {
  counts: Map<string, number>;
  touch(name: string): void;
  add(name: string, n: number): void;
  incr(name: string): void;
  get(name: string): number;
  toJson(): string;
  report(kind: string, key: string): Report;
}

export interface RunContext {
  runId: string;
  /** What godwit tells the plugin; dry runs are told "execute" too. */
  mode: 'dry-run' | 'execute';
  /** Start of the run, milliseconds since the Unix epoch (UTC): the plugin's only clock. */
  startedAtMs: number;
  database: string;
}

/** Run id, mode, start time and database of the current run (from `begin` on). */
export function run(): RunContext;

/**
 * Read-only lookup of reference data (`limit` 0: the host's cap of 10,000)
 * in a pass's collection or one in the manifest's `reads`; journaled.
 */
export function find(collection: string, filter: Document, projection?: Document, limit?: number): Document[];
/** Every matching document however many, in pages of `page` (0: 1,000) in `_id` order. */
export function findAll(collection: string, filter: Document, projection?: Document, page?: number): Document[];

/** The host's log, tagged with the plugin's name. */
export const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

/** For the SDK's component glue and test harness only. */
export const __internal: {
  setHost(host: unknown): void;
  setRun(run: RunContext | null): void;
};
