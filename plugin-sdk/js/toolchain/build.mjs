// `godwit plugin build` of a JavaScript plugin, the Node.js half: bundles the
// entry module godwit wrote (the plugin's module + the SDK's export glue)
// with esbuild into one ES module, then makes the component with
// componentize-js, without AOT (weval downloads a binary at run time).
//
//   node build.mjs ENTRY OUT_BUNDLE OUT_WASM WIT_DIR SDK_DIR BSON_DIR PRELUDE STAMP PLUGIN_DIR [NODE_PATH...]
//
// The component is made again only when the bundle, the contract, the
// toolchain, this script or the output path changed (STAMP holds the sha256
// of them; componentize-js's output is not reproducible): an unchanged plugin
// keeps its sha256, so a run stays resumable and its compile stays cached.
//
// Run from the toolchain directory (its node_modules hold esbuild and
// componentize-js). `godwit-sdk` and `bson` are aliased to one copy each,
// so the plugin and the glue share one SDK module (its host and run state)
// and one bson (its classes).
import { build } from 'esbuild';
import { componentize } from '@bytecodealliance/componentize-js';
// es-module-lexer comes with componentize-js (it reads exports the same way).
import * as lexer from 'es-module-lexer';
import { createHash } from 'node:crypto';
import { readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';


const [entry, bundleOut, wasmOut, witDir, sdkDir, bsonDir, prelude, stamp, pluginDir, ...nodePaths] = process.argv.slice(2);

// The entry module goes in as stdin, resolved from the plugin's directory,
// which is also the working directory: the paths esbuild writes into the
// bundle's comments are then relative to the plugin, so the same plugin
// bundles to the same bytes wherever it is checked out or built.
const bundled = await build({
  logLevel: 'silent',
  stdin: { contents: await readFile(entry, 'utf8'), resolveDir: pluginDir, sourcefile: 'godwit-entry.js', loader: 'js' },
  absWorkingDir: pluginDir,
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
  legalComments: 'none',
  // Same input, same bytes: the bundle is part of the plugin's identity.
  sourcemap: false,
  metafile: true,
}).catch((e) => {
  // esbuild's own errors (syntax, an import it cannot resolve) as
  // `file:line:column: text`, one line, the file named from here.
  if (!Array.isArray(e.errors) || e.errors.length === 0) throw e;
  const where = (l) => (l ? `${join(pluginDir, l.file)}:${l.line}:${l.column}: ` : `${join(pluginDir, 'migration.js')}: `);
  console.error(
    `${e.errors.map((m) => `${where(m.location)}${m.text}`).join('; ')}; fix the module, then run \`godwit plugin build\` again`,
  );
  process.exit(2);
});
// A module without `manifest` or `process` bundles (esbuild has refused
// syntax errors, naming line and column) and would make a component that
// fails only when run: refuse it here, saying what to add.
// (A module that re-exports with `export *` is left to the run.)
{
  const file = join(pluginDir, 'migration.js');
  await lexer.init;
  let exported;
  try {
    const [, exports] = lexer.parse(await readFile(file, 'utf8'));
    exported = exports.map((e) => e.n);
  } catch (e) {
    // esbuild parsed it above; a module the lexer cannot read is left to the run.
  }
  const reexports = /^\s*export\s*\*/m.test(await readFile(file, 'utf8'));
  if (exported && !reexports) {
    const missing = [
      ['manifest', 'export const manifest = new Manifest(name, version, {...}).pass(...)'],
      ['process', 'export function process(passIndex, docs) { return [/* actions */]; }'],
    ].filter(([name]) => !exported.includes(name));
    if (missing.length > 0) {
      console.error(
        `${file} exports no ${missing.map(([n]) => '`' + n + '`').join(' and no ')}: add ${missing
          .map(([, how]) => `\`${how}\``)
          .join(' and ')} (see godwit-sdk's README), then run \`godwit plugin build\` again`,
      );
      process.exit(2);
    }
  }
}

const inputs = Object.keys(bundled.metafile.inputs);

const hash = createHash('sha256');
hash.update(await readFile(bundleOut));
for (const file of (await readdir(witDir)).sort()) hash.update(file).update(await readFile(join(witDir, file)));
hash.update(await readFile(new URL('./package.json', import.meta.url)));
// This script's own options (features, AOT) shape the component too.
hash.update(await readFile(new URL(import.meta.url)));
// And where the component goes: the stamp is per plugin, the output is not.
hash.update(wasmOut);
const digest = hash.digest('hex');
if (existsSync(wasmOut) && existsSync(stamp) && (await readFile(stamp, 'utf8')).trim() === digest) {
  console.log(JSON.stringify({ upToDate: true, inputs }));
  process.exit(0);
}

const { component } = await componentize({
  sourcePath: bundleOut,
  witPath: witDir,
  // `plugin-declaring` when the entry exports `traits` (godwit says so).
  worldName: process.env.GODWIT_WORLD ?? 'plugin',
  // No outbound HTTP and no fetch event handler: the sandbox grants none.
  // stdio, clocks and random stay: the engine itself needs them, and the
  // sandbox gives it captured output, frozen clocks and seeded randomness.
  disableFeatures: ['http', 'fetch-event'],
  enableAot: false,
});
// Written whole or not at all: a half-written component must not pass for the plugin.
await writeFile(`${wasmOut}.tmp`, component);
await rename(`${wasmOut}.tmp`, wasmOut);
await writeFile(stamp, digest);
console.log(JSON.stringify({ bundle: (await readFile(bundleOut)).length, component: component.length, inputs }));
