// Native tests of the QDash port (`node --test` in this directory): the Rust
// plugin's unit tests (plugins/qdash-backfill-user-id/src/tests.rs), as the
// Python port has them too, rewritten for godwit-sdk/testing's Harness:
// same inputs, same outputs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as g from 'godwit-sdk';
import { Harness } from 'godwit-sdk/testing';
import * as plugin from '../migration.js';
import { FIELD_PAIRS, USER, USER_PASS, jsonStr, userIdFor } from '../migration.js';

const { ObjectId } = g;

const passOf = (collection) => 1 + FIELD_PAIRS.map(([c]) => c).indexOf(collection);
const oid = (n) => new ObjectId(new Uint8Array(12).fill(n));
const idOf = (n) => userIdFor(oid(n));

function users() {
  return [
    { _id: oid(1), username: 'alice' },
    { _id: oid(2), username: 'bob', user_id: 'usr_bob' },
    { _id: oid(3), username: 'carol', user_id: '' },
    { _id: oid(4), username: 'dave', user_id: null },
    { _id: oid(5), username: 'erin', user_id: 42 },
    { _id: oid(6), username: '' },
    { _id: oid(7), username: 'Alice', user_id: 'usr_capital' },
  ];
}

function harness() {
  const h = new Harness(plugin).collection(USER, users());
  h.begin();
  return h;
}

const reports = (actions, kind) =>
  actions.filter((a) => a instanceof g.Report && a.kind === kind).map((a) => [a.key, a.message]);

// `_id`s as text (ObjectId hex, numbers), to compare with deepEqual.
const key = (id) => (id instanceof ObjectId ? id.toHexString() : id);
const writes = (actions) =>
  actions.filter((a) => a instanceof g.Update).map((a) => [a.collection, key(a.filter._id), a.update.$set]);

function summary(h) {
  const actions = h.finish();
  assert.equal(actions.length, 1);
  assert.deepEqual([actions[0].kind, actions[0].key], ['summary', 'backfill-user-id']);
  return JSON.parse(actions[0].message);
}

test('ids have QDash shape and are reproducible', () => {
  const a = idOf(1);
  assert.equal(a, idOf(1));
  assert.notEqual(a, idOf(2));
  assert.notEqual(a, userIdFor(oid(1), 'staging'));
  assert.notEqual(userIdFor(1), userIdFor('1'));
  const hex = a.slice('usr_'.length);
  assert.match(a, /^usr_[0-9a-f]{32}$/);
  assert.equal(hex[12], '8');
  assert.ok('89ab'.includes(hex[16]));
  // Pinned, the same values as the Rust plugin's test.
  assert.equal(a, 'usr_7083790289668924a57af505af63ca5f');
  assert.equal(userIdFor(1), 'usr_4a534a890e698847b2db2e707056f08a');
  assert.equal(userIdFor(oid(1), 'staging'), 'usr_9be9869fea878fccaa8371f3c655826f');
});

test('users missing an id in any spelling get one and others are kept', () => {
  const h = harness();
  const actions = h.process(USER_PASS, users());
  assert.deepEqual(writes(actions), [
    [USER, key(oid(1)), { user_id: idOf(1) }],
    [USER, key(oid(3)), { user_id: idOf(3) }],
    [USER, key(oid(4)), { user_id: idOf(4) }],
  ]);
  assert.deepEqual(
    reports(actions, 'skipped').map(([, m]) => m),
    [
      'user of _id 050505050505050505050505: user_id is an integer, kept as it is; ' +
        'references to this user stay unresolved',
      'user of _id 060606060606060606060606: no username, so no user_id is generated (as upstream)',
    ],
  );
  const stats = summary(h);
  assert.deepEqual([stats.users_without_user_id, stats.users_updated], [4, 3]);
});

test('references resolve exactly and blank or filled ones are left alone', () => {
  const h = harness();
  const projects = [
    { _id: 1, owner_username: 'alice' },
    { _id: 2, owner_username: 'bob', owner_user_id: '' },
    { _id: 3, owner_username: 'carol', owner_user_id: null },
    { _id: 4, owner_username: 'bob', owner_user_id: 'usr_already' },
    { _id: 5, owner_username: '' },
    { _id: 6, owner_username: 'ALICE' },
    { _id: 7, owner_username: 'Alice' },
    { _id: 8, owner_username: 'erin' },
    { _id: 9, owner_username: 'former_member' },
    { _id: 10, owner_username: 7 },
    { _id: 11, owner_username: 'alice', owner_user_id: 99 },
  ];
  const actions = h.process(passOf('project'), projects);
  assert.deepEqual(writes(actions), [
    ['project', 1, { owner_user_id: idOf(1) }],
    ['project', 2, { owner_user_id: 'usr_bob' }],
    ['project', 3, { owner_user_id: idOf(3) }],
    ['project', 7, { owner_user_id: 'usr_capital' }],
  ]);
  assert.deepEqual(reports(actions, 'unresolved'), [
    ['ALICE', 'project.owner_username of _id 6: no user is named "ALICE"'],
    ['erin', 'project.owner_username of _id 8: user "erin"\'s user_id is an integer'],
    ['former_member', 'project.owner_username of _id 9: no user is named "former_member"'],
  ]);
  const stats = summary(h);
  assert.deepEqual(stats.collections.project, { matched: 7, updated: 4 });
  assert.deepEqual(Object.keys(stats.unresolved), ['project']);
  assert.deepEqual(Object.keys(stats.unresolved.project), ['ALICE', 'erin', 'former_member']);
});

test("two pairs make one write and count per pair with upstream's order", () => {
  const h = harness();
  const actions = h.process(passOf('project_membership'), [
    { _id: 1, username: 'ghost', invited_by: 'alice' },
    { _id: 2, username: 'bob', invited_by: 'system' },
    { _id: 3, username: 'alice', user_id: 'usr_keep', invited_by: 'ghost' },
  ]);
  assert.deepEqual(writes(actions), [
    ['project_membership', 1, { invited_by_user_id: idOf(1) }],
    ['project_membership', 2, { user_id: 'usr_bob' }],
  ]);
  const stats = summary(h);
  assert.deepEqual(stats.collections.project_membership, { matched: 5, updated: 2 });
  assert.deepEqual(Object.entries(stats.unresolved.project_membership), [['ghost', 2], ['system', 1]]);
});

test('arrays are never rewritten, only reported', () => {
  const h = harness();
  const actions = h.process(passOf('notification'), [
    { _id: 1, recipient_username: ['alice', 'bob'], actor_username: 'bob' },
    {
      _id: 2,
      recipient_username: 'alice',
      recipient_user_id: ['usr_old', null],
      actor_username: 'bob',
      actor_user_id: 'usr_bob',
    },
  ]);
  assert.deepEqual(writes(actions), [['notification', 1, { actor_user_id: 'usr_bob' }]]);
  assert.deepEqual(reports(actions, 'skipped'), [
    ['notification', 'notification.recipient_username of _id 1 holds an array, not one username: left as it is'],
    ['notification', 'notification.recipient_user_id of _id 2 holds an array, not a missing id: left as it is'],
  ]);
  assert.deepEqual(summary(h).collections.notification, { matched: 1, updated: 1 });
});

test('a username held twice is refused before anything', () => {
  const h = new Harness(plugin).collection(USER, [
    { _id: 1, username: 'twin' },
    { _id: 2, username: 'twin', user_id: 'usr_t' },
  ]);
  assert.throws(
    () => h.begin(),
    (e) => e instanceof g.PluginError && e.message.startsWith('user: username "twin" is held by 2 users (_id 1, 2); QDash\'s unique index'),
  );
});

test("the summary is upstream's statistics dict as JSON", () => {
  const h = harness();
  h.process(USER_PASS, users());
  h.process(passOf('issue'), [{ _id: 1, username: 'gh\u0301ost\n' }]);
  const [r] = h.finish();
  let expected = '{"users_without_user_id": 4, "users_updated": 3, "collections": {';
  expected += FIELD_PAIRS.map(([c]) => `"${c}": {"matched": ${c === 'issue' ? 1 : 0}, "updated": 0}`).join(', ');
  expected += '}, "unresolved": {"issue": {"gh\u0301ost\\n": 1}}}';
  assert.equal(r.message, expected);
});

test('JSON strings escape as the Rust plugin', () => {
  assert.equal(jsonStr('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(jsonStr('\n\r\t\b\f\x01\x1f'), '"\\n\\r\\t\\b\\f\\u0001\\u001f"');
  assert.equal(jsonStr('e\u0301 \x7f \u2028 \u{1F600}'), '"e\u0301 \x7f \u2028 \u{1F600}"');
});

test("passes cover upstream's 22 collections and write only their own", () => {
  const m = g.manifestOf(plugin);
  assert.equal(m.passes.length, 23);
  assert.equal(FIELD_PAIRS.length, 22);
  assert.equal(FIELD_PAIRS.reduce((n, [, p]) => n + p.length, 0), 25);
  FIELD_PAIRS.forEach(([collection, pairs], i) => {
    const p = m.passes[i + 1];
    assert.deepEqual([p.name, p.collection, p.writes], [collection, collection, [collection]]);
    assert.equal(p.filter.$or.length, pairs.length);
  });
  assert.deepEqual(m.passes[0].writes, [USER]);
});
