// Native tests of the SDK itself (`node --test` in plugin-sdk/js): the
// helpers build the same actions as the Python SDK's, BSON round-trips keep
// types, and the harness applies the host's rules.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as g from '../index.js';
import { Harness } from '../testing.js';

test('action helpers build the documents the other SDKs build', () => {
  assert.deepEqual(g.setFields('users', 1, { a: 2 }), new g.Update('users', { _id: 1 }, { $set: { a: 2 } }));
  assert.deepEqual(g.unsetFields('users', 1, ['a', 'b']).update, { $unset: { a: '', b: '' } });
  assert.deepEqual(g.incFields('users', 1, { n: 1 }).update, { $inc: { n: 1 } });
  assert.deepEqual(g.update('users', { x: 1 }, { $set: { y: 1 } }, { multi: true }).multi, true);
  assert.deepEqual(g.remove('users', { x: 1 }), new g.Delete('users', { x: 1 }, false));
  assert.deepEqual(g.insert('users', { _id: 1 }), new g.Insert('users', { _id: 1 }));
  const u = new g.UpdateBuilder().set('a.b', 1).unset('old').inc('n', 1).set('a.b', 2);
  assert.deepEqual(u.byId('users', 7), new g.Update('users', { _id: 7 }, { $set: { 'a.b': 2 }, $unset: { old: '' }, $inc: { n: 1 } }));
  assert.equal(new g.UpdateBuilder().isEmpty(), true);
  assert.equal(u.many('users', { x: 1 }).multi, true);
  assert.equal(u.upsert('users', { x: 1 }).upsert, true);
});

test('BSON round trip keeps int64, ObjectId, dates and key order', () => {
  const id = new g.ObjectId('0123456789abcdef01234567');
  const doc = { _id: id, big: 2n ** 40n, small: 5, ratio: 0.5, when: new Date(0), z: 1, a: 2 };
  const back = g.decode(g.encode(doc));
  assert.deepEqual(Object.keys(back), Object.keys(doc));
  assert.equal(typeof back.big, 'bigint');
  assert.equal(back.big, 2n ** 40n);
  assert.ok(back._id instanceof g.ObjectId && back._id.equals(id));
  assert.equal(back.when.getTime(), 0);
});

test('getPath, idOf and Params say what is missing', () => {
  const doc = { _id: 1, a: { b: [{ c: 3 }] } };
  assert.equal(g.getPath(doc, 'a.b.0.c'), 3);
  assert.equal(g.getPath(doc, 'a.b.1.c', 'none'), 'none');
  assert.equal(g.getPath(doc, 'a.b.c'), undefined, 'no fan-out over arrays');
  assert.deepEqual(g.idFilter(doc), { _id: 1 });
  assert.throws(() => g.idOf({}), /a document came without _id/);
  const params = new g.Params({ a: '1' });
  assert.equal(params.get('a'), '1');
  assert.equal(params.get('b', 'x'), 'x');
  assert.throws(() => params.require('b'), /missing parameter `b` \(pass --param b=VALUE\)/);
});

test('Tally prints the Rust SDK\'s text', () => {
  const t = new g.Tally();
  t.touch('seen');
  t.incr('fixed "x"');
  t.add('seen', 2);
  assert.equal(t.toJson(), '{"seen": 2, "fixed \\"x\\"": 1}');
  assert.deepEqual(t.report('summary', 'k'), new g.Report('summary', 'k', t.toJson()));
});

const plugin = {
  manifest: { name: 'p', version: '1.0.0', passes: [{ name: 'users', collection: 'users', writes: ['users'] }] },
  begin(params) {
    this.owners = g.findAll('owners', {}, undefined, 2);
  },
  process(passIndex, docs) {
    return docs.map((d) => g.setFields(d.target ?? 'users', d._id, { n: this.owners.length }));
  },
};

test('the harness serves findAll page by page and applies the pass rules', () => {
  const h = new Harness(plugin).collection('owners', [{ _id: 3 }, { _id: 1 }, { _id: 2 }]);
  assert.deepEqual(h.process(0, [{ _id: 1 }]), [g.setFields('users', 1, { n: 3 })]);
  assert.throws(() => h.process(0, [{ _id: 2, target: 'other' }]), /writes other, not in the pass's writes \[users\]/);
  assert.throws(() => h.process(1, []), /manifest has no pass 1/);
});
