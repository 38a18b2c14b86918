// Seed 000, QDash v1.8.0 `backfill-user-id`, in JavaScript: the same
// migration as plugins/qdash-backfill-user-id (Rust) and
// plugins-py/qdash-backfill-user-id-py (Python), action for action and
// report for report (byte for byte), so that the same end-to-end test runs
// all three and compares their dry-run reports.
//
// QDash's own schema and rules (upstream's `migrate_backfill_user_id` in
// `src/qdash/dbmodel/migration.py`): users in `user` whose `user_id` is
// missing (absent, null or "") get an immutable `usr_` + 32 hex id (derived
// from the user's `_id`, see `userIdFor`); then the 22 collections of
// `USER_ID_FIELD_MIGRATIONS` get each `*_user_id` filled from the username ->
// user_id map where the username is a non-empty string (exact match) and the
// id is missing. Unresolved usernames are counted and reported, never
// invented. Arrays where QDash stores one value are left as they are and
// reported `skipped`. The `summary` report is upstream's statistics dict as
// Python's `json.dumps(..., ensure_ascii=False)` prints it. See the Rust
// crate's doc for the why.

import { sha256 } from '@noble/hashes/sha2.js';
import * as g from 'godwit-sdk';

// BSON's classes come from godwit-sdk: the one bson the documents are decoded with.
const { ObjectId } = g;

export const USER = 'user';

// Upstream's USER_ID_FIELD_MIGRATIONS: [collection, [[username field, user id field]]].
export const FIELD_PAIRS = [
  ['project', [['owner_username', 'owner_user_id']]],
  ['project_membership', [['username', 'user_id'], ['invited_by', 'invited_by_user_id']]],
  ['notification', [['recipient_username', 'recipient_user_id'], ['actor_username', 'actor_user_id']]],
  ['note_event', [['actor', 'actor_user_id']]],
  ['cooldown_wiring_event', [['actor', 'actor_user_id']]],
  ['forum_post', [['username', 'user_id']]],
  ['issue', [['username', 'user_id']]],
  ['issue_knowledge', [['reviewed_by', 'reviewed_by_user_id']]],
  ['backend', [['username', 'user_id']]],
  ['task', [['username', 'user_id']]],
  ['tag', [['username', 'user_id']]],
  ['flows', [['username', 'user_id']]],
  ['execution_history', [['username', 'user_id']]],
  ['execution_counter', [['username', 'user_id']]],
  ['chip', [['username', 'user_id']]],
  ['chip_history', [['username', 'user_id']]],
  ['qubit', [['username', 'user_id']]],
  ['qubit_history', [['username', 'user_id']]],
  ['coupling', [['username', 'user_id']]],
  ['coupling_history', [['username', 'user_id']]],
  ['calibration_note', [['username', 'user_id']]],
  ['task_result_history', [['username', 'user_id'], ['excluded_by', 'excluded_by_user_id']]],
];

export const USER_PASS = 0;

const PREFIX = new TextEncoder().encode('godwit/qdash-backfill-user-id\0');

/**
 * `usr_` + 32 lowercase hex: the first 16 bytes of
 * sha256("godwit/qdash-backfill-user-id\0" + namespace + "\0" + BSON of
 * {"_id": id}), shaped as a version-8 UUID (the Rust plugin's derivation).
 */
export function userIdFor(id, namespace = '') {
  const parts = [PREFIX, new TextEncoder().encode(namespace), new Uint8Array([0]), g.encode({ _id: id })];
  const input = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    input.set(p, at);
    at += p.length;
  }
  const b = sha256(input).slice(0, 16);
  b[6] = (b[6] & 0x0f) | 0x80;
  b[8] = (b[8] & 0x3f) | 0x80;
  return `usr_${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

/** A string as Python's `json.dumps(s, ensure_ascii=False)` writes it (JSON.stringify does the same). */
export function jsonStr(s) {
  return JSON.stringify(s);
}

/** A value as Python's `json.dumps(..., ensure_ascii=False)` writes it: ", " and ": " separators. */
export function pythonJson(value) {
  if (value instanceof Map) {
    return `{${[...value].map(([k, v]) => `${jsonStr(k)}: ${pythonJson(v)}`).join(', ')}}`;
  }
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${jsonStr(k)}: ${pythonJson(v)}`).join(', ')}}`;
  }
  return typeof value === 'string' ? jsonStr(value) : String(value);
}

function isInteger(value) {
  return typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value));
}

/** An `_id` in a message, as the Rust plugin prints it. */
export function idText(id) {
  if (id instanceof ObjectId) return id.toHexString();
  if (typeof id === 'string') return jsonStr(id);
  if (isInteger(id)) return String(id);
  return '(an _id of another type)';
}

/** Absent, null or "": QDash's three spellings of "no id yet". */
function isMissing(value) {
  return value === undefined || value === null || value === '';
}

function typeName(value) {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof ObjectId) return 'an ObjectId';
  if (typeof value === 'boolean') return 'a boolean';
  if (isInteger(value)) return 'an integer';
  if (typeof value === 'number') return 'a double';
  if (value !== null && typeof value === 'object' && value._bsontype === undefined && !(value instanceof Date)) {
    return 'a document';
  }
  return 'not a string';
}

function passFilter(pairs) {
  return { $or: pairs.map(([src, dst]) => ({ [src]: { $type: 'string', $ne: '' }, [dst]: { $in: [null, ''] } })) };
}

export function manifest() {
  const m = new g.Manifest('qdash-backfill-user-id', '1.8.0', {
    requires: '>=1.7.2, <1.8.0',
    description:
      'QDash v1.8.0 backfill-user-id: usr_<hex> ids for users missing user_id, then the *_user_id fields of ' +
      "QDash's 22 collections from the username map (upstream's USER_ID_FIELD_MIGRATIONS); usernames are kept",
  }).pass(new g.Pass(USER, USER, { projection: { username: 1, user_id: 1 }, writes: [USER] }));
  for (const [collection, pairs] of FIELD_PAIRS) {
    const projection = {};
    for (const [src, dst] of pairs) {
      projection[src] = 1;
      projection[dst] = 1;
    }
    m.pass(new g.Pass(collection, collection, { filter: passFilter(pairs), projection, writes: [collection] }));
  }
  return m;
}

// The run's state, set up afresh by `begin`.
let namespace;
let ids;
let unusable;
let usersWithoutUserId;
let usersUpdated;
let stats;

export function begin(params) {
  namespace = params.get('id_namespace', '');
  const users = g.findAll(USER, {}, { username: 1, user_id: 1 }, 5000);
  const holders = new Map();
  const found = new Map();
  const generated = new Map();
  unusable = new Map();
  for (const user of users) {
    const username = user.username;
    if (typeof username !== 'string') continue;
    if (!holders.has(username)) holders.set(username, []);
    holders.get(username).push(user._id);
    const userId = user.user_id;
    if (isMissing(userId)) {
      if (username) generated.set(username, userIdFor(user._id, namespace));
    } else if (typeof userId === 'string') {
      found.set(username, userId);
    } else {
      unusable.set(username, typeName(userId));
    }
  }
  for (const user of users) {
    const username = user.username;
    if (typeof username === 'string' && holders.get(username).length > 1) {
      const held = holders.get(username);
      throw new g.PluginError(
        `user: username ${jsonStr(username)} is held by ${held.length} users ` +
          `(_id ${held.map(idText).join(', ')}); QDash's unique index on username forbids ` +
          'this, so this is not a QDash database as it should be - make the usernames unique, then run again',
      );
    }
  }
  const taken = new Map([...found].map(([u, i]) => [i, u]));
  for (const [username, userId] of generated) {
    if (taken.has(userId)) {
      throw new g.PluginError(
        `user: the id derived for ${jsonStr(username)} is ${userId}, which user ` +
          `${jsonStr(taken.get(userId))} already holds; run again with another --param id_namespace=...`,
      );
    }
  }
  ids = new Map([...found, ...generated]);
  g.log.info(`${users.length} users, ${ids.size} usernames mapped to an id`);
  usersWithoutUserId = 0;
  usersUpdated = 0;
  // Per collection: matched, updated, and per pair an insertion-ordered
  // username -> count (merged pair by pair, as upstream counts).
  stats = FIELD_PAIRS.map(([, pairs]) => ({ matched: 0, updated: 0, unresolved: pairs.map(() => new Map()) }));
}

export function process(passIndex, docs) {
  const actions = [];
  for (const document of docs) {
    if (!Object.hasOwn(document, '_id')) throw new g.PluginError('a document came without _id');
    if (passIndex === USER_PASS) {
      user(document, document._id, actions);
    } else {
      references(passIndex - 1, document, document._id, actions);
    }
  }
  return actions;
}

export function finish() {
  return [g.report('summary', 'backfill-user-id', statistics())];
}

function user(doc, id, actions) {
  const userId = doc.user_id;
  if (!isMissing(userId)) {
    if (typeof userId !== 'string') {
      actions.push(
        g.report(
          'skipped',
          USER,
          `user of _id ${idText(id)}: user_id is ${typeName(userId)}, kept as it is; ` +
            'references to this user stay unresolved',
        ),
      );
    }
    return;
  }
  usersWithoutUserId += 1;
  const username = doc.username;
  if (typeof username === 'string' && username) {
    usersUpdated += 1;
    actions.push(g.setFields(USER, id, { user_id: userIdFor(id, namespace) }));
  } else {
    actions.push(
      g.report('skipped', USER, `user of _id ${idText(id)}: no username, so no user_id is generated (as upstream)`),
    );
  }
}

function references(index, doc, id, actions) {
  const [collection, pairs] = FIELD_PAIRS[index];
  const s = stats[index];
  const fields = {};
  pairs.forEach(([src, dst], pair) => {
    const target = doc[dst];
    const username = doc[src];
    if (typeof username === 'string' && username) {
      if (Array.isArray(target)) {
        actions.push(
          g.report(
            'skipped',
            collection,
            `${collection}.${dst} of _id ${idText(id)} holds an array, not a missing id: left as it is`,
          ),
        );
        return;
      }
      if (!isMissing(target)) return;
      s.matched += 1;
      const userId = ids.get(username);
      if (userId) {
        s.updated += 1;
        fields[dst] = userId;
      } else {
        const counts = s.unresolved[pair];
        counts.set(username, (counts.get(username) ?? 0) + 1);
        const why = unusable.has(username)
          ? `user ${jsonStr(username)}'s user_id is ${unusable.get(username)}`
          : `no user is named ${jsonStr(username)}`;
        actions.push(g.report('unresolved', username, `${collection}.${src} of _id ${idText(id)}: ${why}`));
      }
    } else if (Array.isArray(username) && isMissing(target)) {
      actions.push(
        g.report(
          'skipped',
          collection,
          `${collection}.${src} of _id ${idText(id)} holds an array, not one username: left as it is`,
        ),
      );
    }
  });
  if (Object.keys(fields).length > 0) actions.push(g.setFields(collection, id, fields));
}

/** Upstream's statistics dict, as json.dumps prints it. */
function statistics() {
  const collections = new Map();
  const unresolved = new Map();
  FIELD_PAIRS.forEach(([collection], i) => {
    const s = stats[i];
    collections.set(collection, new Map([['matched', s.matched], ['updated', s.updated]]));
    const merged = new Map();
    for (const counts of s.unresolved) {
      for (const [username, n] of counts) merged.set(username, (merged.get(username) ?? 0) + n);
    }
    if (merged.size > 0) unresolved.set(collection, merged);
  });
  return pythonJson(
    new Map([
      ['users_without_user_id', usersWithoutUserId],
      ['users_updated', usersUpdated],
      ['collections', collections],
      ['unresolved', unresolved],
    ]),
  );
}
