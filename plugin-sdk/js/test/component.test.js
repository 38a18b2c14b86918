// Native tests of the component glue (`component.js`) against contract 0.2's
// shapes as componentize-js binds them: the manifest's `schema`, `idempotent`
// and `reads`, `begin` returning `setup`'s schema operations, every schema
// kind and option. `godwit:migration/host@0.2.0` (and only that version)
// resolves to a stub here; inside a component it is the host's import.
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { test } from 'node:test';

const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier === 'godwit:migration/host@0.2.0') {
    const stub = 'export function find(...a) { return globalThis.godwitHostStub.find(...a); }\\n'
      + 'export function log(...a) { globalThis.godwitHostStub.log(...a); }\\n';
    return { url: 'data:text/javascript,' + encodeURIComponent(stub), shortCircuit: true };
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);

const g = await import('../index.js');
const { exportsFor, traitsFor } = await import('../component.js');

const calls = [];
globalThis.godwitHostStub = {
  find(collection, filter, projection, limit) {
    calls.push([collection, g.decode(filter), limit]);
    if (collection === 'secrets') throw { payload: 'lookup on `secrets` refused (rule undeclared-read)' };
    return [g.encode({ _id: 1, name: 'Platform' })];
  },
  log() {},
};

const context = { runId: 'run-1', mode: 'dry-run', startedAtMs: 1_767_225_600_000n, database: 'test' };

const plugin = {
  manifest: new g.Manifest('glue', '1.0.0', { reads: ['teams'], idempotent: false })
    .pass(new g.Pass('users', 'users', { writes: ['users'] }))
    .allow('create-index', 'users')
    .allow('rename-collection', 'legacy'),
  begin(params) {
    this.teams = g.find('teams', { x: 1 });
    this.op = params.get('op');
  },
  setup() {
    if (this.op === 'not-an-array') return 'nope';
    if (this.op === 'lookup') g.find('secrets', {});
    return [
      g.createIndex('users', 'email_ci', { email: 1 }, {
        unique: true,
        partialFilter: { email: { $exists: true } },
        collation: { locale: 'en', strength: 2 },
        expireAfterSeconds: 60,
      }),
    ];
  },
  process() {
    return [];
  },
  finish() {
    return [
      g.dropIndex('users', 'old_idx'),
      g.createCollection('audit', { $jsonSchema: { required: ['who'] } }, { validationAction: 'warn' }),
      g.modifyValidator('users', { a: 1 }, { validationLevel: 'moderate' }),
      g.renameCollection('legacy', 'legacy_renamed'),
      g.dropCollection('scratch'),
      g.report('done', 'k', 'm'),
    ];
  },
};

test('the manifest carries contract 0.2 reads, idempotent and schema grants', () => {
  const m = exportsFor(plugin).getManifest();
  assert.deepEqual(m.reads, ['teams']);
  assert.equal(m.idempotent, false);
  assert.deepEqual(m.schema, [
    { kind: 'create-index', collection: 'users' },
    { kind: 'rename-collection', collection: 'legacy' },
  ]);
  const plain = exportsFor({ manifest: { name: 'p', version: '1.0.0', passes: [] }, process: () => [] }).getManifest();
  assert.deepEqual([plain.reads, plain.idempotent, plain.schema], [[], true, []]);
});

test('keeps-state is the module\'s keepsState, true unless it says false', () => {
  assert.equal(traitsFor({}).keepsState(), true);
  assert.equal(traitsFor({ keepsState: true }).keepsState(), true);
  assert.equal(traitsFor({ keepsState: false }).keepsState(), false);
});

test("begin returns setup's schema operations as contract 0.2 actions", () => {
  const exports = exportsFor(plugin);
  const actions = exports.begin(g.encode({}), context);
  assert.deepEqual(calls.at(-1), ['teams', { x: 1 }, 0]);
  assert.equal(actions.length, 1);
  const { tag, val } = actions[0];
  assert.equal(tag, 'schema');
  assert.equal(val.tag, 'create-index');
  assert.equal(val.val.collection, 'users');
  const index = val.val.index;
  assert.deepEqual(g.decode(index.keys), { email: 1 });
  assert.equal(index.name, 'email_ci');
  assert.equal(index.unique, true);
  assert.deepEqual(g.decode(index.partialFilter), { email: { $exists: true } });
  assert.deepEqual(g.decode(index.collation), { locale: 'en', strength: 2 });
  assert.equal(index.expireAfterSeconds, 60);
  assert.deepEqual(exportsFor({ ...plugin, setup: undefined }).begin(g.encode({}), context), []);
});

test('finish maps every schema kind and keeps document actions', () => {
  const exports = exportsFor(plugin);
  exports.begin(g.encode({}), context);
  const [drop, create, modify, rename, dropColl, report] = exports.finish();
  assert.deepEqual(drop, { tag: 'schema', val: { tag: 'drop-index', val: { collection: 'users', name: 'old_idx' } } });
  assert.equal(create.val.tag, 'create-collection');
  assert.deepEqual(g.decode(create.val.val.validator), { $jsonSchema: { required: ['who'] } });
  assert.equal(create.val.val.validationAction, 'warn');
  assert.equal(create.val.val.validationLevel, undefined);
  assert.equal(create.val.val.collation, undefined);
  assert.equal(modify.val.tag, 'modify-validator');
  assert.deepEqual(g.decode(modify.val.val.validator), { a: 1 });
  assert.equal(modify.val.val.validationLevel, 'moderate');
  assert.deepEqual(rename.val, { tag: 'rename-collection', val: { collection: 'legacy', to: 'legacy_renamed' } });
  assert.deepEqual(dropColl.val, { tag: 'drop-collection', val: { collection: 'scratch' } });
  assert.deepEqual(report, { tag: 'report', val: { kind: 'done', key: 'k', message: 'm' } });
});

test("setup's failures are the call's error", () => {
  const begin = (op) => () => exportsFor(plugin).begin(g.encode({ op }), context);
  assert.throws(begin('not-an-array'), (e) => /setup returned string, not an array of actions/.test(e.message));
  assert.throws(begin('lookup'), (e) => /find on secrets failed: lookup on `secrets` refused/.test(e.message));
  const ttl = { ...plugin, setup: () => [g.createIndex('users', 'ttl', { at: 1 }, { expireAfterSeconds: 1.5 })] };
  assert.throws(
    () => exportsFor(ttl).begin(g.encode({}), context),
    (e) => /expireAfterSeconds 1.5 is not a whole number of seconds/.test(e.message),
  );
});
