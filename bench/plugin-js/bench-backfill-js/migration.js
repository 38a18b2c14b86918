// The backfill `just bench` measures, in JavaScript: the same query, the same
// lookup, the same `$set` and the same reports as tests/plugins/bench-backfill
// (Rust) and bench/plugin-py/bench-backfill-py (Python), so the bench's row
// (j) shows what a JavaScript plugin costs against the other two. Like the
// Python one it has no `--param reports=last`: that is the Rust plugin's
// probe of how the host groups statements, which the bench does not pass.
import * as g from 'godwit-sdk';

export const manifest = new g.Manifest('bench-backfill-js', '1.8.0', {
  description: 'executions.owner_user_id from users.user_id by username (benchmark, JavaScript)',
  reads: ['users'],
}).pass(
  new g.Pass('executions', 'executions', {
    // Only documents still to do: the verification after the run (the pass
    // re-run dry) then reads just the unresolved ones.
    filter: { username: { $type: 'string' }, owner_user_id: { $exists: false } },
    projection: { username: 1 },
    writes: ['executions'],
  }),
);

// username -> user_id, read once from `users` by `begin`.
let userIds;

// Each batch's actions come from the batch and the map `begin` loaded.
export const keepsState = false;

export function begin(_params) {
  // One `find` with no limit, as the Rust and Python plugins do (not
  // `findAll`'s pages), so all three journal the same lookup.
  const users = g.find('users', { user_id: { $exists: true } }, { username: 1, user_id: 1 }, 0);
  userIds = new Map();
  for (const u of users) {
    if (typeof u.username === 'string' && typeof u.user_id === 'string') userIds.set(u.username, u.user_id);
  }
}

export function process(_passIndex, docs) {
  return docs.map((d) => {
    if (!Object.hasOwn(d, '_id')) throw new g.PluginError('document without _id');
    const username = typeof d.username === 'string' ? d.username : '';
    const userId = userIds.get(username);
    return userId !== undefined
      ? g.setFields('executions', d._id, { owner_user_id: userId })
      : g.report('unresolved', username, 'no user with this username');
  });
}
