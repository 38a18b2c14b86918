// The Rust test plugin `increment` in JavaScript: `$inc` of counters.n by
// one, wrong if applied twice, so the manifest says `idempotent: false` and
// godwit must refuse to execute it where a batch may be applied again (a
// server without transactions) unless the operator overrides it.
import * as g from 'godwit-sdk';

export const manifest = new g.Manifest('increment-js', '2.0.0', {
  description: '$inc counters.n by one',
  idempotent: false,
}).pass(new g.Pass('counters', 'counters', { filter: { n: 0 }, batchSize: 10, writes: ['counters'] }));

export function begin(params) {}

export function process(passIndex, docs) {
  return docs.map((d) => g.incFields('counters', g.idOf(d), { n: 1 }));
}
