/** Cache@2's hit kinds: an exact key, a restore-key match, or nothing. */
export type HitKind = 'true' | 'inexact' | 'false';

export interface BlobRef {
  readonly digest: string;
  readonly size: number;
}

/**
 * What a listing tells about a saved cache: enough to choose it, without its index and blob list.
 * Entries of one key are versions; the newest wins.
 */
export interface EntryHead {
  readonly id: string;
  /** The resolved key, segments joined with `|`. */
  readonly key: string;
  readonly segments: readonly string[];
  readonly scope: string;
  readonly created: string;
  readonly lastUsed: string;
  /** The digest of the cache root that index.json tags `latest`: two entries with one root hold the same cache. */
  readonly root: string;
}

/**
 * One saved cache: a key in a scope, and the root index.json of an OCI layout whose blobs the
 * store keeps once each, by digest.
 */
export interface Entry extends EntryHead {
  /** The layout's index.json, as written. */
  readonly index: unknown;
  /** Every blob the index reaches. */
  readonly blobs: readonly BlobRef[];
}

/** A promise by a job in flight that it is about to use these blobs; the pruner keeps them. */
export interface Lease {
  readonly id: string;
  readonly expires: string;
  readonly blobs: readonly string[];
}

export interface RestoreStats {
  readonly blobs: number;
  readonly bytes: number;
  /** Blobs linked (hard link or reflink) rather than copied, or taken from the cache folder. */
  readonly linked: number;
  /** Bytes that came over the network, for a remote store. */
  readonly downloaded?: number;
}

export interface SaveRequest {
  readonly cacheDir: string;
  readonly key: string;
  readonly segments: readonly string[];
  readonly scope: string;
  readonly now: Date;
}

export interface SaveResult {
  /** `unchanged`: the newest entry of the key already held this cache; only its last use was recorded. */
  readonly status: 'saved' | 'unchanged';
  readonly entry: Entry;
  readonly newBlobs: number;
  readonly newBytes: number;
}

/** What a save and the retention after it did, for the log and the summary. */
export interface SaveOutcome {
  readonly result?: SaveResult;
  /** Why nothing was saved, when that was not a failure. */
  readonly skipped?: string;
  readonly pruned?: { entries: number; blobs: number; bytes: number };
  readonly stats?: StoreStats;
}

export interface RetentionPolicy {
  readonly retentionDays: number;
  readonly now: Date;
}

export interface PruneReport {
  readonly entriesRemoved: number;
  readonly blobsRemoved: number;
  readonly bytesRemoved: number;
  /** The store as the prune left it. */
  readonly after: StoreStats;
}

export interface StoreStats {
  readonly entries: number;
  readonly blobs: number;
  readonly bytes: number;
}

/** An entry that cannot be restored (a blob missing or corrupt): it is skipped as if it were absent. */
export class EntryUnusableError extends Error {
  override name = 'EntryUnusableError';
}

/**
 * Where caches live between jobs. The local store and the Azure Blob store implement this; the key,
 * scope and selection logic around it is shared.
 */
export interface CacheStore {
  readonly description: string;
  /** The entries of these scopes, one listing each. Entries that cannot be read are left out and named in `skipped`. */
  list(scopes: readonly string[]): Promise<{ entries: EntryHead[]; skipped: string[] }>;
  /**
   * Puts the entry's layout in place of `cacheDir`, every blob verified by digest. An entry that
   * is gone, or has a blob missing or corrupt, is an EntryUnusableError.
   */
  restore(entry: EntryHead, cacheDir: string): Promise<RestoreStats>;
  /** Records that the entry was used now. */
  touch(entry: EntryHead, now: Date): Promise<void>;
  /** The build failed on this entry's content: check every one of its blobs in full before it is used again. */
  distrust(entry: EntryHead): Promise<void>;
  /** Saves `cacheDir` as a new version of the key, adding only the blobs the store lacks. */
  save(request: SaveRequest): Promise<SaveResult>;
  /** Removes entries unused for the retention period and superseded versions, then blobs no entry reaches. */
  prune(policy: RetentionPolicy): Promise<PruneReport>;
  stats(): Promise<StoreStats>;
}
