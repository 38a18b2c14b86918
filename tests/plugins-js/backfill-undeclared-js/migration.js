// plugins-js/backfill-team-name-js with its `reads` taken away: the same
// `begin` looks up `teams`, which no pass reads and the manifest no longer
// declares, so godwit must fail the call (rule undeclared-read) before any
// write, as it does for a Rust or Python plugin.
import * as g from 'godwit-sdk';
import { manifest as declared } from '../../../plugins-js/backfill-team-name-js/migration.js';

export { begin, process } from '../../../plugins-js/backfill-team-name-js/migration.js';

export const manifest = new g.Manifest(declared.name, declared.version, { ...declared, reads: [] });
