import * as fs from 'fs';
import * as path from 'path';
import { formatBytes, info, warn } from '../agent';
import type { CacheFlags } from '../buildx/args';
import { InputError, type Config } from '../config';
import { describeKey, KeyResolveError, resolveKey, type ResolvedKey } from '../key/resolve';
import { loc } from '../loc';
import { INDEX_FILE } from '../oci/layout';
import { LocalStore } from '../store/local';
import { restoreFromStore } from '../store/restore';
import type { ScopePlan } from '../store/scopes';
import type { CacheStore, Entry, HitKind, SaveResult, StoreStats } from '../store/types';
import { CacheFolder } from './folder';

/** Cache trouble that the user asked to fail the task (`failOnCacheError`). */
export class CacheError extends Error {
  override name = 'CacheError';
}

/** Cache trouble is a warning, and the build goes on without the cache, unless the user asked for an error. */
export function cacheTrouble(failOnError: boolean, message: string): void {
  if (failOnError) throw new CacheError(message);
  warn(message);
}

/** The cache of one build: what to import and export, and what was restored. */
export interface PreparedCache {
  readonly flags: CacheFlags;
  /** The fresh export folder, committed in place of the cache folder after a good build. */
  readonly pending?: { readonly folder: CacheFolder; readonly fresh: string };
  readonly hit?: HitKind;
  readonly restored?: Entry;
  readonly bytesRestored?: number;
}

export interface ResolvedKeys {
  readonly key: ResolvedKey;
  readonly restoreKeys: readonly ResolvedKey[];
}

/** Resolves the key and the restore keys. A file pattern that matches nothing is an input error, as in Cache@2. */
export async function resolveKeys(config: Config): Promise<ResolvedKeys> {
  const resolveAs = async (input: string, text: string): Promise<ResolvedKey> => {
    try {
      return await resolveKey(text, config.workingDirectory);
    } catch (err) {
      if (err instanceof KeyResolveError) throw new InputError(input, loc('InputKeyNoMatch', err.message));
      throw err;
    }
  };
  const key = await resolveAs('cacheKey', config.cache.key);
  info(loc('KeyResolved', describeKey(key).join('\n')));
  const restoreKeys: ResolvedKey[] = [];
  for (const text of config.cache.restoreKeys) restoreKeys.push(await resolveAs('restoreKeys', text));
  if (restoreKeys.length > 0) info(loc('RestoreKeys', restoreKeys.map((k) => k.text).join('\n')));
  return { key, restoreKeys };
}

/** The store behind `cacheBackend: local`; the one place that chooses a store implementation. */
export function openStore(storePath: string): CacheStore {
  return new LocalStore(storePath);
}

/** A fresh export folder next to the cache folder, unless nothing will be saved. */
async function exportTo(config: Config, folder: CacheFolder): Promise<Pick<PreparedCache, 'pending' | 'flags'>> {
  if (config.cache.save === 'never') return { flags: { from: [], to: [] } };
  const fresh = await folder.begin();
  return { pending: { folder, fresh }, flags: { from: [], to: [folder.exportSpec(fresh, config.cache.mode, config.cache.compression)] } };
}

/** `directory`: the cache folder as something else kept it, verified blob by blob before BuildKit sees it. */
export async function prepareFolder(config: Config, id: string): Promise<PreparedCache> {
  const folder = new CacheFolder(config.cache.dir, id);
  try {
    const found = await folder.inspect();
    if (found.state === 'usable') info(loc('CacheFolderFound', folder.dir, formatBytes(found.bytes), found.blobs));
    else if (found.state === 'empty') info(loc('CacheFolderEmpty', folder.dir));
    else warn(loc('WarnCacheFolderUnusable', folder.dir, found.reason));
    const out = await exportTo(config, folder);
    return { ...out, hit: found.state === 'usable' ? 'true' : 'false', flags: { from: found.state === 'usable' ? [folder.importSpec()] : [], to: out.flags.to } };
  } catch (err) {
    cacheTrouble(config.cache.failOnError, loc('WarnCacheUnavailable', config.cache.dir, (err as Error).message));
    return { flags: { from: [], to: [] }, hit: 'false' };
  }
}

/** `local`: the best entry for the key, restored from the store into the cache folder. */
export async function prepareFromStore(
  config: Config,
  id: string,
  store: CacheStore,
  key: readonly string[],
  restoreKeys: readonly (readonly string[])[],
  scopes: ScopePlan,
): Promise<PreparedCache> {
  const folder = new CacheFolder(config.cache.dir, id);
  let outcome;
  try {
    outcome = await restoreFromStore(store, scopes.read, key, restoreKeys, folder.dir);
  } catch (err) {
    cacheTrouble(config.cache.failOnError, loc('WarnRestoreFailed', store.description, (err as Error).message));
    outcome = { hit: 'false' as const, skipped: [] };
  }
  for (const skipped of outcome.skipped) warn(loc('WarnEntrySkipped', skipped));
  if (outcome.entry === undefined || outcome.stats === undefined) {
    // The store decides what the build starts from: never a folder left by an earlier job.
    await fs.promises.rm(folder.dir, { recursive: true, force: true });
    info(loc('CacheMiss', store.description, scopes.read.join(', ')));
  } else {
    const e = outcome.entry;
    info(loc('CacheRestored', outcome.hit, e.key, e.scope, e.created, formatBytes(outcome.stats.bytes), outcome.stats.blobs, outcome.stats.linked));
  }
  try {
    const out = await exportTo(config, folder);
    const from = outcome.entry !== undefined ? [folder.importSpec()] : [];
    return { ...out, flags: { from, to: out.flags.to }, hit: outcome.hit, restored: outcome.entry, bytesRestored: outcome.stats?.bytes ?? 0 };
  } catch (err) {
    cacheTrouble(config.cache.failOnError, loc('WarnCacheUnavailable', config.cache.dir, (err as Error).message));
    return { flags: { from: [], to: [] }, hit: outcome.hit, restored: outcome.entry, bytesRestored: outcome.stats?.bytes ?? 0 };
  }
}

/** What the save needs, handed from the main step to the post-job step. */
export interface SaveJob {
  readonly storePath: string;
  readonly cacheDir: string;
  /** The resolved key's segments. */
  readonly segments: readonly string[];
  readonly scope: string;
  readonly retentionDays: number;
  readonly failOnError: boolean;
}

export interface SaveOutcome {
  readonly result?: SaveResult;
  /** Why nothing was saved, when that was not a failure. */
  readonly skipped?: string;
  readonly pruned?: { entries: number; blobs: number; bytes: number };
  readonly stats?: StoreStats;
}

/** Saves the cache folder as the newest version of its key, then applies retention. */
export async function saveToStore(job: SaveJob, store: CacheStore = openStore(job.storePath)): Promise<SaveOutcome> {
  if (!fs.existsSync(path.join(job.cacheDir, INDEX_FILE))) {
    info(loc('NothingToSave', job.cacheDir));
    return { skipped: loc('NothingToSave', job.cacheDir) };
  }
  let result: SaveResult;
  try {
    result = await store.save({ cacheDir: job.cacheDir, key: job.segments.join('|'), segments: job.segments, scope: job.scope, now: new Date() });
  } catch (err) {
    cacheTrouble(job.failOnError, loc('WarnSaveFailed', store.description, (err as Error).message));
    return {};
  }
  if (result.status === 'unchanged') info(loc('SaveUnchanged', result.entry.key, result.entry.scope));
  else info(loc('Saved', result.entry.key, result.entry.scope, formatBytes(result.newBytes), result.newBlobs));
  try {
    const report = await store.prune({ retentionDays: job.retentionDays, now: new Date() });
    const stats = await store.stats();
    info(loc('Pruned', report.entriesRemoved, report.blobsRemoved, formatBytes(report.bytesRemoved), formatBytes(stats.bytes), stats.blobs, stats.entries));
    return { result, pruned: { entries: report.entriesRemoved, blobs: report.blobsRemoved, bytes: report.bytesRemoved }, stats };
  } catch (err) {
    cacheTrouble(job.failOnError, loc('WarnPruneFailed', store.description, (err as Error).message));
    return { result };
  }
}
