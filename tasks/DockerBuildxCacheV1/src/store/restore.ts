import { candidates } from './select';
import { EntryUnusableError, type CacheStore, type EntryHead, type HitKind, type RestoreStats } from './types';

export interface RestoreOutcome {
  readonly hit: HitKind;
  readonly entry?: EntryHead;
  readonly stats?: RestoreStats;
  /** Entries that could not be read or restored, each with the reason; they were skipped as if absent. */
  readonly skipped: readonly string[];
}

/**
 * Restores the best entry for the key into `cacheDir`: the exact key first, then each restore key,
 * each in the scopes in order, newest first. An entry with a missing or corrupt blob is skipped
 * and the next one tried. Any other failure (the store unreachable, a full disk) is thrown.
 */
export async function restoreFromStore(
  store: CacheStore,
  scopes: readonly string[],
  key: readonly string[],
  restoreKeys: readonly (readonly string[])[],
  cacheDir: string,
): Promise<RestoreOutcome> {
  const listed = await store.list(scopes);
  const skipped = [...listed.skipped];
  for (const candidate of candidates(listed.entries, scopes, key, restoreKeys, new Date())) {
    try {
      const stats = await store.restore(candidate.entry, cacheDir);
      return { hit: candidate.hit, entry: candidate.entry, stats, skipped };
    } catch (err) {
      if (!(err instanceof EntryUnusableError)) throw err;
      skipped.push(`${candidate.entry.key} (${candidate.entry.scope}, ${candidate.entry.created}): ${err.message}`);
    }
  }
  return { hit: 'false', skipped };
}
