// Schema operations from JavaScript (contract 0.2): every kind, the same
// collections and operations as the Python plugin `schema-ops-py` (and the
// Rust test plugin `schema-ops`). `setup()` creates before the pass,
// `finish()` drops, changes a validator, renames and drops after it.
import * as g from 'godwit-sdk';

export const manifest = new g.Manifest('schema-ops-js', '1.0.0', { description: 'schema operations from javascript' })
  .pass(new g.Pass('users', 'users'))
  .allow('create-collection', 'audit')
  .allow('create-index', 'users')
  .allow('drop-index', 'users')
  .allow('modify-validator', 'users')
  .allow('rename-collection', 'legacy')
  .allow('rename-collection', 'legacy_renamed')
  .allow('drop-collection', 'scratch');

export function begin(params) {}

export function setup() {
  return [
    g.createCollection('audit', { $jsonSchema: { required: ['who'] } }, { validationLevel: 'strict', validationAction: 'error' }),
    g.createIndex('users', 'email_ci', { email: 1 }, {
      partialFilter: { email: { $exists: true } },
      collation: { locale: 'en', strength: 2 },
    }),
    g.createIndex('users', 'seen_ttl', { seen_at: 1 }, { expireAfterSeconds: 3600 }),
  ];
}

export function process(passIndex, docs) {
  return [];
}

export function finish() {
  return [
    g.dropIndex('users', 'old_idx'),
    g.modifyValidator('users', { $jsonSchema: { required: ['email'] } }, { validationLevel: 'moderate' }),
    g.renameCollection('legacy', 'legacy_renamed'),
    g.dropCollection('scratch'),
  ];
}
