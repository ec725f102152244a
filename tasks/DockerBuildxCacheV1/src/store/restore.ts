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
 * The first entry that `attempt` could use, with what it gave; or none (hit `false`). Skipped: the
 * entries it could not use, each with why.
 */
export type Usable<T> =
  | { readonly hit: Exclude<HitKind, 'false'>; readonly entry: EntryHead; readonly value: T; readonly skipped: readonly string[] }
  | { readonly hit: 'false'; readonly skipped: readonly string[] };

/**
 * Tries the entries for the key in the order a restore takes them (the exact key first, then each
 * restore key, each in the scopes in order, newest first) until `attempt` uses one. An entry that
 * `attempt` finds unusable (EntryUnusableError: a missing or corrupt blob) is skipped, with why, and
 * the next one tried; `attempt` cleans up after itself when it throws. Any other failure (the store
 * unreachable, a full disk) is thrown.
 */
export async function firstUsable<T>(
  store: CacheStore,
  scopes: readonly string[],
  key: readonly string[],
  restoreKeys: readonly (readonly string[])[],
  attempt: (entry: EntryHead) => Promise<T>,
  now: Date = new Date(),
): Promise<Usable<T>> {
  const listed = await store.list(scopes);
  const skipped = [...listed.skipped];
  for (const candidate of candidates(listed.entries, scopes, key, restoreKeys, now)) {
    try {
      const value = await attempt(candidate.entry);
      return { hit: candidate.hit, entry: candidate.entry, value, skipped };
    } catch (err) {
      if (!(err instanceof EntryUnusableError)) throw err;
      skipped.push(`${candidate.entry.key} (${candidate.entry.scope}, ${candidate.entry.created}): ${err.message}`);
    }
  }
  return { hit: 'false', skipped };
}

/**
 * Restores the best entry for the key into `cacheDir` (see firstUsable): an entry with a missing or
 * corrupt blob is skipped and the next one tried. Any other failure (the store unreachable, a full
 * disk) is thrown.
 */
export async function restoreFromStore(
  store: CacheStore,
  scopes: readonly string[],
  key: readonly string[],
  restoreKeys: readonly (readonly string[])[],
  cacheDir: string,
): Promise<RestoreOutcome> {
  const found = await firstUsable(store, scopes, key, restoreKeys, (e) => store.restore(e, cacheDir));
  return found.hit === 'false' ? found : { hit: found.hit, entry: found.entry, stats: found.value, skipped: found.skipped };
}
