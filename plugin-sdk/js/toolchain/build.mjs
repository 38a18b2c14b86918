// `godwit plugin build` of a JavaScript plugin, the Node.js half: bundles the
// entry module godwit wrote (the plugin's module + the SDK's export glue)
// with esbuild into one ES module, then makes the component with
// componentize-js, without AOT (weval downloads a binary at run time).
//
//   node build.mjs ENTRY OUT_BUNDLE OUT_WASM WIT_DIR SDK_DIR BSON_DIR PRELUDE [NODE_PATH...]
//
// Run from the toolchain directory (its node_modules hold esbuild and
// componentize-js). `godwit-sdk` and `bson` are aliased to one copy each,
// so the plugin and the glue share one SDK module (its host and run state)
// and one bson (its classes).
import { build } from 'esbuild';
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile } from 'node:fs/promises';

const [entry, bundleOut, wasmOut, witDir, sdkDir, bsonDir, prelude, ...nodePaths] = process.argv.slice(2);

const bundled = await build({
  entryPoints: [entry],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  mainFields: ['module', 'main'],
  conditions: ['browser', 'import', 'default'],
  external: ['godwit:*'],
  inject: [prelude],
  alias: { 'godwit-sdk': sdkDir, bson: bsonDir },
  nodePaths,
  outfile: bundleOut,
  logLevel: 'error',
  legalComments: 'none',
  // Same input, same bytes: the bundle is part of the plugin's identity.
  sourcemap: false,
  metafile: true,
});
const inputs = Object.keys(bundled.metafile.inputs);

const { component } = await componentize({
  sourcePath: bundleOut,
  witPath: witDir,
  worldName: 'plugin',
  // No outbound HTTP and no fetch event handler: the sandbox grants none.
  // stdio, clocks and random stay: the engine itself needs them, and the
  // sandbox gives it captured output, frozen clocks and seeded randomness.
  disableFeatures: ['http', 'fetch-event'],
  enableAot: false,
});
await writeFile(wasmOut, component);
console.log(JSON.stringify({ bundle: (await readFile(bundleOut)).length, component: component.length, inputs }));
