import * as fs from 'fs';
import * as path from 'path';
import { formatBytes, info } from '../agent';
import { loc } from '../loc';
import { INDEX_FILE } from '../oci/layout';
import { LocalStore } from '../store/local';
import type { CacheStore, SaveResult, StoreStats } from '../store/types';
import { cacheTrouble } from './trouble';

/** The store behind `cacheBackend: local`; the one place that chooses a store implementation. */
export function openStore(storePath: string): CacheStore {
  return new LocalStore(storePath);
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
    const stats = report.after;
    info(loc('Pruned', report.entriesRemoved, report.blobsRemoved, formatBytes(report.bytesRemoved), formatBytes(stats.bytes), stats.blobs, stats.entries));
    return { result, pruned: { entries: report.entriesRemoved, blobs: report.blobsRemoved, bytes: report.bytesRemoved }, stats };
  } catch (err) {
    cacheTrouble(job.failOnError, loc('WarnPruneFailed', store.description, (err as Error).message));
    return { result };
  }
}
