// A JavaScript plugin that misbehaves on purpose (the behaviour is the
// `behaviour` parameter): the JavaScript twin of tests/plugins/hostile, for
// the sandbox tests in tests/e2e/sandbox_js.rs. No package.json: it builds
// with the godwit-sdk `godwit plugin build` carries.
import * as g from 'godwit-sdk';

export const manifest = new g.Manifest('hostile-js', '0.0.1', { description: 'misbehaves on purpose' }).pass(
  new g.Pass('things', 'things', { batchSize: 10, writes: ['things'] }),
);

let behaviour = 'ok';
// Keeps every allocation alive so that memory only grows.
const hoard = [];

function spin() {
  let x = 0;
  for (;;) x = (x + 1) | 0;
}

export function begin(params) {
  behaviour = params.get('behaviour', 'ok');
  if (behaviour === 'loop-in-begin') spin();
}

/** What a global offers the plugin: its type, or that it threw. */
function probe(f) {
  try {
    return String(f());
  } catch (e) {
    return `error: ${e}`;
  }
}

export function process(passIndex, docs) {
  switch (behaviour) {
    case 'ok':
      return [g.report('count', String(docs.length), '')];
    case 'loop':
      return spin();
    case 'oom':
      for (;;) hoard.push(new Uint8Array(8 << 20).fill(1));
    case 'throw':
      throw new TypeError(`hostile plugin throws on purpose (batch of ${docs.length})`);
    case 'error':
      throw new g.PluginError('refusing on purpose', 42);
    case 'probe': {
      const names = ['process', 'require', 'Deno', 'Bun', 'fetch', 'XMLHttpRequest', 'WebSocket'];
      return [
        // No module system, runtime or network API reaches out of the sandbox.
        g.report('globals', names.map((n) => `${n}=${typeof globalThis[n]}`).join(' '), ''),
        g.report('clock', probe(() => Date.now()), ''),
        g.report('date', probe(() => new Date().toISOString()), ''),
        g.report('random', probe(() => Math.random()), ''),
        g.report('run', probe(() => g.run().startedAtMs), ''),
      ];
    }
    default:
      throw new g.PluginError(`unknown behaviour ${JSON.stringify(behaviour)}`);
  }
}
