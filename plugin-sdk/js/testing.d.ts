// Type definitions of godwit-sdk/testing: the native test harness.
import type { Action, Document, Manifest, ManifestLike, Params, Schema } from './index.js';

export interface PluginModule {
  manifest: ManifestLike | (() => ManifestLike);
  begin?(params: Params): void;
  setup?(): Schema[];
  process(passIndex: number, docs: Document[]): Action[];
  finish?(): (Action | Schema)[];
}

/** Runs a plugin module natively under `node --test`: lookups served from memory, actions checked. */
export class Harness {
  constructor(plugin: PluginModule, params?: { [key: string]: string });
  host: { logs: [string, string][] };
  /** Documents served to the plugin's `find` lookups on `name`. */
  collection(name: string, documents: Document[]): this;
  manifest(): Manifest;
  /** Calls `begin`, then `setup` (once); a lookup outside the passes and `reads` fails it. */
  begin(): void;
  /** The schema operations `setup()` returned, checked against the manifest's `schema`. */
  setup(): Schema[];
  process(passIndex: number, docs: Document[]): Action[];
  finish(): (Action | Schema)[];
  static check(actions: Action[], writes: string[]): void;
}
