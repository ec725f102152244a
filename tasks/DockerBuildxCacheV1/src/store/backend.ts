import type * as fs from 'fs';
import type { Readable } from 'stream';
import type { BlobRef } from './types';

/** One item of a store: a blob, an entry or a lease. Names are `/`-separated and start with the layout version. */
export interface StoredItem {
  readonly name: string;
  readonly size: number;
  /** When it was written or last touched, by the store's clock. */
  readonly modified: Date;
  /** What `deleteIfUnchanged` compares: it changes with every write and touch (an ETag; size, mtime and inode). */
  readonly version: string;
  /** What the listing says about it without reading it (Azure's blob metadata); none in the local store. */
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface Listing {
  readonly items: StoredItem[];
  /** Names under the prefix that are not items: links, folders where an item belongs, pipes. Never followed. */
  readonly strange: string[];
}

/** A blob put in place: linked or copied from the store, or downloaded (then hashed as it came). */
export type Fetched =
  | { readonly how: 'linked' | 'copied'; readonly version: string }
  | { readonly how: 'downloaded'; readonly version: string; readonly digest: string; readonly size: number };

/** A local file to store as a blob, checked against its digest; `stat` is the stat of the file that was hashed. */
export interface SourceFile {
  readonly file: string;
  readonly ref: BlobRef;
  readonly stat: fs.Stats;
}

/** A blob to store from a stream: the backend checks the bytes against `ref` as they pass, and stores nothing that fails. */
export interface BlobStream {
  readonly body: Readable;
  readonly ref: BlobRef;
}

/** A stored blob being read, and the version that is read (what a delete of a corrupt copy compares). */
export interface OpenedBlob {
  readonly body: Readable;
  readonly version: string;
}

/** The local store's record of blobs that last hashed right, by their version: a link need not be hashed again. */
export interface Seals {
  get(digest: string): Promise<string | undefined>;
  set(digest: string, version: string): Promise<void>;
  clear(digest: string): Promise<void>;
}

/**
 * What the store engine needs from where the bytes live. Everything else (leases, save, restore
 * into staging, verification, selection, retention) is the engine's, written once.
 */
export interface StoreBackend {
  readonly description: string;
  /** Fetching a blob costs its bytes over the network: a copy the cache folder already holds is worth hashing instead. */
  readonly remote: boolean;
  /** Checks the store's own folders before an operation; throws when the store cannot be used safely. */
  check?(): Promise<void>;
  /** Items `depth` levels below the prefix (a flat store ignores the depth), with their metadata when asked. */
  list(prefix: string, depth: number, signal: AbortSignal, withMetadata?: boolean): Promise<Listing>;
  /** One item, or undefined when it is not there, or `other` when something that is not an item is. */
  stat(name: string, signal: AbortSignal): Promise<StoredItem | 'other' | undefined>;
  /** A small item's bytes (an entry, a lease), or undefined when it is gone. */
  read(name: string, signal: AbortSignal): Promise<Buffer | undefined>;
  /** Puts a blob at `dest`; undefined when it is missing, `other` when something that is not a blob is there. */
  fetch(name: string, dest: string, signal: AbortSignal): Promise<Fetched | 'other' | undefined>;
  /** Streams a blob from its first byte; undefined when it is missing, `other` when something that is not a blob is there. */
  openStream(name: string, signal: AbortSignal): Promise<OpenedBlob | 'other' | undefined>;
  /**
   * Creates the item unless it exists. Returns the new item's version, or undefined when it existed.
   * A stream is checked against its digest before the item exists: one that errors or does not match stores nothing.
   */
  writeIfAbsent(
    name: string,
    content: Buffer | SourceFile | BlobStream,
    options: { metadata?: Record<string, string>; modified?: Date; durable?: boolean },
    signal: AbortSignal,
  ): Promise<string | undefined>;
  /** Deletes the item if it is still at `version` (any version when undefined); false when it was not deleted. */
  deleteIfUnchanged(name: string, version: string | undefined, signal: AbortSignal): Promise<boolean>;
  /** Records a use: the modification time, or the metadata that holds it. False when the item is gone. */
  touch(name: string, at: Date, metadata: Record<string, string>, signal: AbortSignal): Promise<boolean>;
  /** Moves something that is not an item out of the way of the name, keeping it. */
  quarantine(name: string, signal: AbortSignal): Promise<void>;
  /** Before the first write of a save: creates what the store needs (a container). */
  prepareWrites?(signal: AbortSignal): Promise<void>;
  readonly seals?: Seals;
  /** What the backend itself cleans up after retention (the local store's tmp/ and trash/). */
  housekeeping?(now: Date): Promise<void>;
}

/** The store refuses writes (a read-only mount, a read-only SAS): a restore goes on without its lease and its touch. */
export class StoreRefusedError extends Error {
  override name = 'StoreRefusedError';
}

/** Runs a write that a read can do without: a store that refuses writes (read-only) still restores and serves. */
export async function unlessRefused<T>(work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof StoreRefusedError) return undefined;
    throw err;
  }
}

/** The store's own folders are not what the task made (a link among them): it is not used. */
export class StoreLayoutError extends Error {
  override name = 'StoreLayoutError';
}
