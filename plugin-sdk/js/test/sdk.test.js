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
  manifest: {
    name: 'p',
    version: '1.0.0',
    reads: ['owners'],
    passes: [{ name: 'users', collection: 'users', writes: ['users'] }],
  },
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

test('the harness filters lookups with $exists, $ne, $nin, $lte and $or as MongoDB does', () => {
  const docs = [{ _id: 1, v: 1 }, { _id: 2, v: null }, { _id: 3 }, { _id: 4, v: 4 }];
  const ids = (filter) => {
    const p = { ...plugin, begin() { this.found = g.findAll('owners', filter); } };
    const h = new Harness(p).collection('owners', docs);
    h.begin();
    return p.found.map((d) => d._id);
  };
  assert.deepEqual(ids({ v: { $exists: true } }), [1, 2, 4]);
  assert.deepEqual(ids({ v: { $exists: false } }), [3]);
  assert.deepEqual(ids({ v: { $ne: 1 } }), [2, 3, 4]);
  assert.deepEqual(ids({ v: { $nin: [1, null] } }), [4]);
  assert.deepEqual(ids({ v: { $lte: 1 } }), [1]);
  assert.deepEqual(ids({ $or: [{ v: 4 }, { v: { $exists: false } }] }), [3, 4]);
  assert.throws(() => ids({ v: { $regex: 'x' } }), /not \$regex/);
});

test('the harness fails a lookup outside the passes and reads like the host (rule undeclared-read)', () => {
  const undeclared = { ...plugin, manifest: { ...plugin.manifest, reads: [] } };
  assert.throws(
    () => new Harness(undeclared).collection('owners', [{ _id: 1 }]).process(0, [{ _id: 1 }]),
    /begin: lookup on `owners` refused: collection `owners` is neither read by a pass \[users\] nor in the manifest's reads \[\] \(rule undeclared-read/,
  );
  // Catching the error does not help: godwit fails the call all the same.
  const swallowing = {
    manifest: undeclared.manifest,
    process(passIndex, docs) {
      try {
        g.find('owners', {});
      } catch {
        // ignored
      }
      return [];
    },
  };
  assert.throws(() => new Harness(swallowing).process(0, []), /pass 0 \(users\): lookup on `owners` refused/);
  // A pass's own collection needs no declaration; godwit's state is refused whatever reads says.
  const own = { manifest: undeclared.manifest, process: () => g.find('users', {}).map((d) => g.report('seen', String(d._id), '')) };
  assert.equal(new Harness(own).collection('users', [{ _id: 1 }]).process(0, []).length, 1);
  const meta = { ...plugin, manifest: { ...plugin.manifest, reads: ['godwit_metadata'] } };
  assert.throws(() => new Harness(meta).begin(), /reads: collection "godwit_metadata" is out of reach/);
});

test('schema builders mirror the Python SDK', () => {
  assert.deepEqual(
    g.createIndex('users', 'email_ci', { email: 1 }, { unique: true, collation: { locale: 'en', strength: 2 } }),
    new g.Schema('create-index', 'users', {
      keys: { email: 1 },
      name: 'email_ci',
      unique: true,
      partialFilter: undefined,
      collation: { locale: 'en', strength: 2 },
      expireAfterSeconds: undefined,
    }),
  );
  assert.deepEqual(g.dropIndex('users', 'old_idx'), new g.Schema('drop-index', 'users', { name: 'old_idx' }));
  assert.equal(g.createCollection('audit', { n: { $type: 'int' } }, { validationAction: 'warn' }).args.validationAction, 'warn');
  assert.deepEqual(g.modifyValidator('users', { a: 1 }).args.validator, { a: 1 });
  assert.deepEqual(g.renameCollection('legacy', 'legacy_renamed'), new g.Schema('rename-collection', 'legacy', { to: 'legacy_renamed' }));
  assert.deepEqual(g.dropCollection('scratch'), new g.Schema('drop-collection', 'scratch', {}));
  const m = new g.Manifest('p', '1.0.0', { schema: [['create-index', 'users']], idempotent: false, reads: ['teams'] }).allow(
    'drop-index',
    'users',
  );
  assert.deepEqual(m.schema, [['create-index', 'users'], ['drop-index', 'users']]);
  assert.equal(m.idempotent, false);
  assert.deepEqual(m.reads, ['teams']);
  assert.equal(new g.Manifest('p', '1.0.0').idempotent, true);
  assert.throws(() => m.allow('create-view', 'users'), /unknown schema kind "create-view"/);
});

const schemaPlugin = {
  manifest: () =>
    new g.Manifest('s', '1.0.0', { passes: [{ name: 'users', collection: 'users', writes: ['users'] }] })
      .allow('create-index', 'users')
      .allow('rename-collection', 'legacy')
      .allow('rename-collection', 'legacy_renamed'),
  begin(params) {
    this.op = params.get('op', 'index');
  },
  setup() {
    if (this.op === 'index') return [g.createIndex('users', 'email_1', { email: 1 })];
    if (this.op === 'undeclared') return [g.dropIndex('users', 'email_1')];
    if (this.op === 'unnamed') return [g.createIndex('users', '', { email: 1 })];
    if (this.op === 'rename-half') return [g.renameCollection('legacy', 'elsewhere')];
    if (this.op === 'update') return [g.setFields('users', 1, { a: 1 })];
    return [];
  },
  process(passIndex, docs) {
    return this.op === 'from-process' ? [g.createIndex('users', 'email_1', { email: 1 })] : [];
  },
  finish() {
    return [g.renameCollection('legacy', 'legacy_renamed'), g.report('done', 'k', '')];
  },
};

test('the harness returns setup\'s schema operations and applies the schema rules', () => {
  const h = new Harness(schemaPlugin);
  assert.deepEqual(h.setup(), [g.createIndex('users', 'email_1', { email: 1 })]);
  assert.equal(h.finish().length, 2);
  const refused = (op) => () => new Harness(schemaPlugin, { op }).setup();
  assert.throws(refused('undeclared'), /drop-index on users is not declared in the manifest's schema/);
  assert.throws(refused('unnamed'), /create-index on users: name every index/);
  assert.throws(refused('rename-half'), /rename-collection on elsewhere is not declared/);
  assert.throws(refused('update'), /setup may return schema operations only/);
  assert.throws(
    () => new Harness(schemaPlugin, { op: 'from-process' }).process(0, []),
    /create-index on users returned from process: schema operations come from setup or finish/,
  );
});
