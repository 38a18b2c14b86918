// Native tests of the JavaScript bench plugin: the Rust plugin's unit test
// (tests/plugins/bench-backfill), the same inputs and outputs, plus the
// lookup and the manifest the three plugins share.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as g from 'godwit-sdk';
import { Harness } from 'godwit-sdk/testing';
import * as plugin from '../migration.js';

const LOOKUP = { user_id: { $exists: true } };

// The Harness's in-memory filters know no `$exists`: this serves the one
// lookup the plugin makes (checked to be the Rust plugin's, word for word)
// through the Harness's own `find`, which still refuses undeclared reads.
function harness(users) {
  const h = new Harness(plugin).collection('users', users);
  const find = h.host.find.bind(h.host);
  h.lookups = [];
  h.host.find = (collection, filter, projection, limit) => {
    h.lookups.push([collection, filter, projection, limit]);
    assert.deepEqual(filter, LOOKUP);
    return find(collection, {}, projection, limit).filter((u) => Object.hasOwn(u, 'user_id'));
  };
  return h;
}

test('known usernames get their user_id and unknown ones are reported', () => {
  const h = harness([
    { _id: 10, username: 'ada', user_id: 'usr_1' },
    { _id: 11, username: 'bob' },
  ]);
  const actions = h.process(0, [
    { _id: 1, username: 'ada' },
    { _id: 2, username: 'bob' },
  ]);
  assert.deepEqual(actions, [
    g.setFields('executions', 1, { owner_user_id: 'usr_1' }),
    g.report('unresolved', 'bob', 'no user with this username'),
  ]);
});

test('users are read once, in one find without a limit, as the Rust and Python plugins do', () => {
  const h = harness([{ _id: 10, username: 'ada', user_id: 'usr_1' }]);
  h.process(0, [{ _id: 1, username: 'ada' }]);
  h.process(0, [{ _id: 2, username: 'ada' }]);
  assert.deepEqual(h.lookups, [['users', LOOKUP, { username: 1, user_id: 1 }, 0]]);
});

test('a username or user_id that is not a string resolves nothing', () => {
  const h = harness([
    { _id: 10, username: 'ada', user_id: 7 },
    { _id: 11, username: 8, user_id: 'usr_8' },
  ]);
  const actions = h.process(0, [
    { _id: 1, username: 'ada' },
    { _id: 2, username: 8 },
    { _id: 3 },
  ]);
  assert.deepEqual(actions, [
    g.report('unresolved', 'ada', 'no user with this username'),
    g.report('unresolved', '', 'no user with this username'),
    g.report('unresolved', '', 'no user with this username'),
  ]);
});

test('a document without _id fails the call', () => {
  const h = harness([]);
  assert.throws(() => h.process(0, [{ username: 'ada' }]), (e) => e instanceof g.PluginError && e.message === 'document without _id');
});

test('the manifest is the Rust plugin with its own name', () => {
  const m = g.manifestOf(plugin);
  assert.deepEqual([m.name, m.version], ['bench-backfill-js', '1.8.0']);
  assert.deepEqual(m.reads, ['users']);
  assert.equal(m.passes.length, 1);
  const [p] = m.passes;
  assert.deepEqual([p.name, p.collection, p.writes], ['executions', 'executions', ['executions']]);
  assert.deepEqual(p.filter, { username: { $type: 'string' }, owner_user_id: { $exists: false } });
  assert.deepEqual(p.projection, { username: 1 });
});
