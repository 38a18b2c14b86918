// Type definitions of godwit-sdk/testing: the native test harness.
import type { Action, Document, Manifest, ManifestLike, Params } from './index.js';

export interface PluginModule {
  manifest: ManifestLike | (() => ManifestLike);
  begin?(params: Params): void;
  process(passIndex: number, docs: Document[]): Action[];
  finish?(): Action[];
}

/** Runs a plugin module natively under `node --test`: lookups served from memory, actions checked. */
export class Harness {
  constructor(plugin: PluginModule, params?: { [key: string]: string });
  host: { logs: [string, string][] };
  /** Documents served to the plugin's `find` lookups on `name`. */
  collection(name: string, documents: Document[]): this;
  manifest(): Manifest;
  begin(): void;
  process(passIndex: number, docs: Document[]): Action[];
  finish(): Action[];
  static check(actions: Action[], writes: string[]): void;
}
