import type { Readable } from 'stream';

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

/** A layout whose blobs are already in the store (put through a BlobSink), to be saved as a new version of the key. */
export interface LayoutSaveRequest {
  readonly key: string;
  readonly segments: readonly string[];
  readonly scope: string;
  readonly now: Date;
  /** The layout's index.json: its manifest tagged `latest` is the cache root. */
  readonly index: unknown;
  /** Every blob the root reaches, the root included. */
  readonly blobs: readonly BlobRef[];
  /** The upload lease that keeps the blobs (BlobSink.leaseId); released once the save is done, whatever its outcome. */
  readonly leaseId?: string;
}

/** An entry opened for reading blob by blob, its blobs kept by a lease until close(). */
export interface OpenedEntry {
  /** The index and blob list, as the store holds them. */
  readonly entry: Entry;
  /**
   * Streams one of the entry's blobs from the store, from its first byte, as stored: the caller
   * verifies the digest (the store does not hash them a second time) and reports a mismatch with
   * `corrupt`. A blob that is not the entry's, or is missing, is an EntryUnusableError.
   */
  open(digest: string, signal: AbortSignal): Promise<Readable>;
  /**
   * The caller found the bytes `open` gave it not to match the digest: the copy that was read is
   * deleted from the store (as a restore does), so that the next save puts a good copy back. A copy
   * written since is kept. Never throws.
   */
  corrupt(digest: string): Promise<void>;
  /** Bytes that came over the network so far (a remote store); 0 for a local store. */
  readonly bytesDownloaded: number;
  /** Releases the lease; idempotent. */
  close(): Promise<void>;
}

/**
 * Blobs uploaded for a save that another process writes later (saveLayout), kept by a lease that
 * grows with every blob asked about or put, until saveLayout or endUpload ends it (or it expires).
 */
export interface BlobSink {
  /** Goes into the task state; the post step passes it to saveLayout or endUpload. */
  readonly leaseId: string;
  /** The blob's size if the store holds it (a local store also checks its digest), else undefined. The blob is leased from now on. */
  has(digest: string, signal: AbortSignal): Promise<number | undefined>;
  /**
   * Leases these blobs now, in one lease item, before anyone asks about them (the restored entry's,
   * which an export mostly reaches again): a later `has` of one of them writes no item of its own.
   * Resolves once the item is written; when it could not be, a later `has` tries again.
   */
  keep(digests: readonly string[]): Promise<void>;
  /**
   * Stores the blob from `body`, checked by digest as it passes: a body that errors or does not
   * match stores nothing (and the promise rejects). Resolves when the blob is in the store.
   */
  put(blob: BlobRef, body: Readable, signal: AbortSignal): Promise<void>;
  /**
   * Streams a blob that `has` found or `put` stored (so under this upload's lease), from its first
   * byte, as stored: the caller verifies the digest. A blob that is missing is an error.
   */
  open(digest: string, signal: AbortSignal): Promise<Readable>;
  /** Bytes `open` brought over the network so far (a remote store); 0 for a local store. */
  readonly bytesDownloaded: number;
  /**
   * Records the blobs `put` stored so far (what saveLayout counts as new) in one lease item. Called
   * once the puts are over, before the save; a blob stored and not recorded is kept all the same,
   * only not counted.
   */
  settle(): Promise<void>;
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
  /** Opens the entry for reading blob by blob (the registry facade); a store that refuses writes opens without its lease. */
  openEntry(entry: EntryHead): Promise<OpenedEntry>;
  /** Starts an upload of blobs for a later saveLayout, under a new lease. */
  beginUpload(): Promise<BlobSink>;
  /**
   * Writes the entry of a layout whose blobs are already in the store (each checked present first;
   * a missing one fails the save and no entry is written), then releases `leaseId`. Same result
   * shape and `unchanged` rule as save(); newBlobs and newBytes count the blobs the upload recorded as stored (BlobSink.settle).
   */
  saveLayout(request: LayoutSaveRequest): Promise<SaveResult>;
  /** Ends an upload lease without saving (the job failed, or saveCache's condition was not met). */
  endUpload(leaseId: string): Promise<void>;
}
