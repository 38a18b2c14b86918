// The example migration (plugins/normalize-emails) in JavaScript: store every
// user's e-mail address trimmed and in lower case, and report addresses that
// collide once normalized instead of silently merging them. Also the plugin
// the JavaScript figures in plugin-sdk/js/README.md were measured with.
import * as g from 'godwit-sdk';

export const manifest = new g.Manifest('normalize-emails', '1.1.0', {
  requires: '>=1.0.0',
  description: 'Trim and lower-case users.email; report addresses that collide once normalized',
}).pass(
  new g.Pass('users', 'users', {
    filter: { email: { $type: 'string' } },
    projection: { email: 1 },
    batchSize: 1000,
    writes: ['users'],
  }),
);

/** Normalized address -> `_id` (as text) of the first user seen with it. */
let seen;

export function begin(params) {
  seen = new Map();
}

export function process(passIndex, users) {
  const actions = [];
  for (const user of users) {
    const id = g.idOf(user);
    if (typeof user.email !== 'string') {
      throw new g.PluginError(`user ${id}: email is not a string`, id);
    }
    const normalized = user.email.trim().toLowerCase();
    const first = seen.get(normalized);
    if (first !== undefined) {
      actions.push(g.report('conflict', normalized, `user ${id} has the same address as user ${first} once normalized`));
      continue;
    }
    seen.set(normalized, String(id));
    if (normalized !== user.email) {
      actions.push(g.setFields('users', id, { email: normalized }));
    }
  }
  return actions;
}
