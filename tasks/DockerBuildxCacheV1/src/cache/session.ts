import { formatBytes, info } from '../task/agent';
import type { CacheFlags } from '../docker/args';
import { InputError } from '../config/source';
import type { Config } from '../config/types';
import { describeKey, KeyResolveError, resolveKey, type ResolvedKey } from '../key/resolve';
import { loc } from '../task/messages';
import { folderState, removeOwnedDirectory } from '../oci/cachedir';
import { restoreFromStore } from '../store/restore';
import type { ScopePlan } from '../store/scopes';
import type { CacheStore, EntryHead, HitKind } from '../store/types';
import { CacheFolder } from './folder';
import { ExportSlot } from './slot';
import { CacheError, cacheTrouble } from './trouble';
import { Input, type InputName } from '../task/inputs';

/** The cache of one build: what to import and export, and what was restored. */
export interface PreparedCache {
  readonly flags: CacheFlags;
  /** The fresh export folder, committed in place of the cache folder after a good build; its owner commits or abandons it. */
  readonly slot?: ExportSlot;
  readonly hit?: HitKind;
  readonly restored?: EntryHead;
  readonly bytesRestored?: number;
  /** What came over the network, for a remote store. */
  readonly bytesDownloaded?: number;
  /** Called when the build fails on the restored content: the store checks the entry in full next time. */
  readonly distrust?: () => Promise<void>;
}

export interface ResolvedKeys {
  readonly key: ResolvedKey;
  readonly restoreKeys: readonly ResolvedKey[];
}

/** Resolves the key and the restore keys. A file pattern that matches nothing is an input error, as in Cache@2. */
export async function resolveKeys(config: Config): Promise<ResolvedKeys> {
  const resolveAs = async (input: InputName, text: string): Promise<ResolvedKey> => {
    try {
      return await resolveKey(text, config.workingDirectory);
    } catch (err) {
      if (err instanceof KeyResolveError) throw new InputError(input, loc('InputKeyNoMatch', err.message));
      throw err;
    }
  };
  const key = await resolveAs(Input.cacheKey, config.cache.key);
  info(loc('KeyResolved', describeKey(key).join('\n')));
  const restoreKeys: ResolvedKey[] = [];
  for (const text of config.cache.restoreKeys) restoreKeys.push(await resolveAs(Input.restoreKeys, text));
  if (restoreKeys.length > 0) info(loc('RestoreKeys', restoreKeys.map((k) => k.text).join('\n')));
  return { key, restoreKeys };
}

/** A fresh export folder next to the cache folder, seeded with the cache being imported; none when nothing will be saved. */
async function exportTo(config: Config, folder: CacheFolder, seed: boolean): Promise<Pick<PreparedCache, 'slot' | 'flags'>> {
  if (config.cache.save === 'never') return { flags: { from: [], to: [] } };
  const slot = await ExportSlot.open(folder, seed);
  return { slot, flags: { from: [], to: [slot.exportSpec(config.cache.mode, config.cache.compression)] } };
}

/** `directory`: the cache folder as something else kept it, verified blob by blob before BuildKit sees it. */
export async function prepareFolder(config: Config, id: string): Promise<PreparedCache> {
  const folder = new CacheFolder(config.cache.dir, id);
  if ((await folderState(folder.dir)) === 'foreign') {
    cacheTrouble(config.cache.failOnError, loc('WarnCacheDirForeign', folder.dir));
    return { flags: { from: [], to: [] }, hit: 'false' };
  }
  try {
    const found = await folder.inspect();
    if (found.state === 'foreign') throw new Error(loc('WarnCacheDirForeign', folder.dir));
    if (found.state === 'usable') info(loc('CacheFolderFound', folder.dir, formatBytes(found.bytes), found.blobs, found.hashed));
    else if (found.state === 'empty') info(loc('CacheFolderEmpty', folder.dir));
    else cacheTrouble(config.cache.failOnError, loc('WarnCacheFolderUnusable', folder.dir, found.reason));
    const out = await exportTo(config, folder, found.state === 'usable');
    return {
      ...out,
      hit: found.state === 'usable' ? 'true' : 'false',
      flags: { from: found.state === 'usable' ? [folder.importSpec()] : [], to: out.flags.to },
    };
  } catch (err) {
    if (err instanceof CacheError) throw err;
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
  if ((await folderState(folder.dir)) === 'foreign') {
    cacheTrouble(config.cache.failOnError, loc('WarnCacheDirForeign', folder.dir));
    return { flags: { from: [], to: [] }, hit: 'false' };
  }
  let outcome;
  try {
    outcome = await restoreFromStore(store, scopes.read, key, restoreKeys, folder.dir);
  } catch (err) {
    cacheTrouble(config.cache.failOnError, loc('WarnRestoreFailed', store.description, (err as Error).message));
    outcome = { hit: 'false' as const, skipped: [] };
  }
  for (const skipped of outcome.skipped) cacheTrouble(config.cache.failOnError, loc('WarnEntrySkipped', skipped));
  if (outcome.entry === undefined || outcome.stats === undefined) {
    // The store decides what the build starts from: never a folder left by an earlier job.
    await removeOwnedDirectory(folder.dir);
    info(loc('CacheMiss', store.description, scopes.read.join(', ')));
  } else {
    const e = outcome.entry;
    const s = outcome.stats;
    if (s.downloaded === undefined)
      info(loc('CacheRestored', outcome.hit, e.key, e.scope, e.created, formatBytes(s.bytes), s.blobs, s.linked));
    else
      info(
        loc(
          'CacheRestoredRemote',
          outcome.hit,
          e.key,
          e.scope,
          e.created,
          formatBytes(s.bytes),
          s.blobs,
          formatBytes(s.downloaded),
          s.linked,
        ),
      );
  }
  try {
    const out = await exportTo(config, folder, outcome.entry !== undefined);
    const entry = outcome.entry;
    const from = entry !== undefined ? [folder.importSpec()] : [];
    const distrust = entry === undefined ? undefined : (): Promise<void> => store.distrust(entry);
    return {
      ...out,
      flags: { from, to: out.flags.to },
      hit: outcome.hit,
      restored: entry,
      bytesRestored: outcome.stats?.bytes ?? 0,
      bytesDownloaded: outcome.stats?.downloaded,
      distrust,
    };
  } catch (err) {
    cacheTrouble(config.cache.failOnError, loc('WarnCacheUnavailable', config.cache.dir, (err as Error).message));
    return { flags: { from: [], to: [] }, hit: outcome.hit, restored: outcome.entry, bytesRestored: outcome.stats?.bytes ?? 0 };
  }
}
