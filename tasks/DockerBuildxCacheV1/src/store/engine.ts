import * as crypto from 'crypto';
import { setMaxListeners } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { linkOrCopy, mapLimit, randomId } from '../util/fs';
import { assertReplaceable, replaceOwnedDirectory, siblingPath } from '../oci/cachedir';
import {
  algorithmOf,
  BLOBS_DIR,
  blobPath,
  cacheRoot,
  checkBlobFile,
  holdsBlob,
  INDEX_FILE,
  LAYOUT_CONTENT,
  LAYOUT_FILE,
  LayoutError,
  MAX_DOCUMENT_BYTES,
  parseIndex,
  reachable,
  readVerified,
  type Descriptor,
  type Index,
} from '../oci/layout';
import { unlessRefused, type Fetched, type StoreBackend, type StoredItem } from './backend';
import { EntryFormatError, headOfMetadata, metadataOf, newEntry, parseEntry, savedLayout } from './entry';
import {
  blobName,
  BLOBS,
  digestOfBlobName,
  entriesPrefix,
  entryId,
  entryName,
  idOfEntryName,
  leaseName,
  LEASES,
  uploadLeasePrefix,
} from './names';
import { expiredEntries, newestOf, unreferencedBlobs } from './select';
import { OpenedStoreEntry, ownSignal, StoreBlobSink } from './streaming';
import {
  EntryUnusableError,
  type BlobRef,
  type BlobSink,
  type LayoutSaveRequest,
  type OpenedEntry,
  type CacheStore,
  type Entry,
  type EntryHead,
  type Lease,
  type PruneReport,
  type RestoreStats,
  type RetentionPolicy,
  type SaveRequest,
  type SaveResult,
  type StoreStats,
} from './types';

export interface EngineOptions {
  /** Blobs checked or transferred at once. */
  readonly concurrency?: number;
  /** Blobs written at once. */
  readonly writeConcurrency?: number;
  /** How long a lease protects the blobs that a save or restore is about to use. */
  readonly leaseMinutes?: number;
  /**
   * How long the lease of an opened entry or an upload protects its blobs: it must last from the
   * main step to the post step, and a killed job's lease ends only by expiring.
   */
  readonly jobLeaseMinutes?: number;
  /** An unreferenced blob younger than this is kept: a save may be about to reference it. */
  readonly graceMinutes?: number;
  /** Each restore, save or prune as a whole gives up after this long; none when undefined. */
  readonly budgetMs?: number;
}

/** An entry as a listing found it, with its body when reading the listing took it. */
interface Listed {
  readonly head: EntryHead;
  readonly item: StoredItem;
  readonly body?: Entry;
}

/**
 * A content-addressed store of buildx caches over any backend:
 *
 *   v1/blobs/<alg>/<hex>          each blob once, written only if absent
 *   v1/entries/<scope>/<id>.json  one per saved cache: key, scope, creation, root, index, blobs
 *   v1/leases/<id>.json           blobs that a save or restore in flight is about to use
 *
 * A save writes its lease, the blobs the store lacks, then its entry, then checks its blobs once
 * more, so an interrupted save leaves unreferenced blobs, never an entry that points at missing
 * ones. A restore stages every blob next to the cache folder, verified by digest, and swaps the
 * folder in only when the whole layout is complete. Retention removes unused and superseded
 * entries, then every blob that no entry or live lease reaches after a second look at both,
 * deleting only blobs that did not change since they were listed.
 */
export class StoreEngine implements CacheStore {
  readonly description: string;
  private readonly concurrency: number;
  private readonly writeConcurrency: number;
  private readonly leaseMs: number;
  private readonly jobLeaseMs: number;
  private readonly graceMs: number;
  private readonly budgetMs?: number;

  constructor(
    protected readonly backend: StoreBackend,
    options: EngineOptions = {},
  ) {
    this.description = backend.description;
    this.concurrency = options.concurrency ?? 8;
    this.writeConcurrency = options.writeConcurrency ?? this.concurrency;
    this.leaseMs = (options.leaseMinutes ?? 180) * 60_000;
    // Six hours: the longest job a Microsoft-hosted agent runs.
    this.jobLeaseMs = (options.jobLeaseMinutes ?? 360) * 60_000;
    this.graceMs = (options.graceMinutes ?? 0) * 60_000;
    this.budgetMs = options.budgetMs;
  }

  /** A signal that aborts every request of one operation once its time budget is spent. */
  private async begin(): Promise<AbortSignal> {
    const signal = this.budgetMs === undefined ? new AbortController().signal : AbortSignal.timeout(this.budgetMs);
    // Every request of the operation listens to it, many at once.
    setMaxListeners(0, signal);
    await this.backend.check?.();
    return signal;
  }

  // ---------------------------------------------------------------- entries

  /** The entry an item holds: from its metadata when the listing has it, else from its body. */
  private async listed(item: StoredItem, signal: AbortSignal): Promise<Listed> {
    const id = idOfEntryName(item.name);
    if (id === undefined) throw new EntryFormatError('it is not an entry file');
    if (item.size > MAX_DOCUMENT_BYTES) throw new EntryFormatError(`it is larger than the ${MAX_DOCUMENT_BYTES} bytes an entry may have`);
    let head: EntryHead;
    let body: Entry | undefined;
    if (item.metadata?.root !== undefined) {
      head = headOfMetadata(id, item.metadata);
    } else {
      const data = await this.backend.read(item.name, signal);
      if (data === undefined) throw new EntryUnusableError('the entry is gone');
      body = parseEntry(data.toString('utf8'), id);
      head = body;
    }
    if (entryName(head) !== item.name) throw new EntryFormatError(`its scope is ${head.scope}`);
    // The last use is the metadata's, or the item's own modification time (a touch sets it).
    const lastUsed =
      item.metadata?.lastused !== undefined
        ? head.lastUsed
        : new Date(Math.max(item.modified.getTime(), Date.parse(head.created))).toISOString();
    return { head: { ...head, lastUsed }, item, body: body && { ...body, lastUsed } };
  }

  /** Every entry under the prefix; the ones that cannot be read are named in `skipped` and returned in `corrupt`. */
  private async listEntries(
    prefix: string,
    depth: number,
    signal: AbortSignal,
  ): Promise<{ entries: Listed[]; skipped: string[]; corrupt: StoredItem[] }> {
    const listing = await this.backend.list(prefix, depth, signal, true);
    const skipped = listing.strange.map((name) => `${name}: not a regular file, left alone`);
    const corrupt: StoredItem[] = [];
    const read = await mapLimit(
      listing.items.filter((i) => i.name.endsWith('.json')),
      this.concurrency,
      async (item) => {
        try {
          return await this.listed(item, signal);
        } catch (err) {
          if (err instanceof EntryUnusableError) return undefined;
          // Only what is not an entry is skipped, and removed by retention; trouble reading one is trouble.
          if (!(err instanceof EntryFormatError || err instanceof LayoutError)) throw err;
          skipped.push(`${item.name}: ${err.message}`);
          corrupt.push(item);
          return undefined;
        }
      },
    );
    return { entries: read.filter((e): e is Listed => e !== undefined), skipped, corrupt };
  }

  async list(scopes: readonly string[]): Promise<{ entries: EntryHead[]; skipped: string[] }> {
    const signal = await this.begin();
    const all = await Promise.all(scopes.map((scope) => this.listEntries(entriesPrefix(scope), 1, signal)));
    return { entries: all.flatMap((r) => r.entries.map((e) => e.head)), skipped: all.flatMap((r) => r.skipped) };
  }

  /** The whole entry behind a listed one: its index and blob list. A missing or malformed one cannot be used. */
  private async body(head: EntryHead, signal: AbortSignal): Promise<Entry> {
    if ('blobs' in head && 'index' in head) return head as Entry;
    const name = entryName(head);
    const data = await this.backend.read(name, signal);
    if (data === undefined) throw new EntryUnusableError('the entry is gone');
    try {
      return { ...parseEntry(data.toString('utf8'), head.id), lastUsed: head.lastUsed };
    } catch (err) {
      throw new EntryUnusableError(`${name}: ${(err as Error).message}`);
    }
  }

  async touch(entry: EntryHead, now: Date): Promise<void> {
    await this.touchEntry(entry, now, await this.begin());
  }

  /** Records a use of the entry; false when a prune removed it meanwhile (a touch never brings it back). */
  private touchEntry(entry: EntryHead, now: Date, signal: AbortSignal): Promise<boolean> {
    return this.backend.touch(entryName(entry), now, metadataOf({ ...entry, lastUsed: now.toISOString() }), signal);
  }

  async distrust(head: EntryHead): Promise<void> {
    const seals = this.backend.seals;
    if (seals === undefined) return;
    const entry = await this.body(head, await this.begin()).catch(() => undefined);
    for (const blob of entry?.blobs ?? []) await seals.clear(blob.digest);
  }

  // ---------------------------------------------------------------- leases

  /** Writes a lease on the blobs; `uploads` (an upload lease's item) names those that were put rather than found. */
  private async lease(
    blobs: readonly string[],
    now: Date,
    signal: AbortSignal,
    options: { id?: string; ms?: number; uploads?: readonly string[] } = {},
  ): Promise<Lease> {
    const lease: Lease = {
      id: options.id ?? `${now.getTime()}-${randomId()}`,
      expires: new Date(now.getTime() + (options.ms ?? this.leaseMs)).toISOString(),
      blobs,
    };
    await this.backend.writeIfAbsent(
      leaseName(lease.id),
      Buffer.from(JSON.stringify(options.uploads === undefined ? lease : { ...lease, uploads: options.uploads })),
      { metadata: { expires: lease.expires } },
      signal,
    );
    return lease;
  }

  private async release(lease: Lease, signal: AbortSignal): Promise<void> {
    await this.backend.deleteIfUnchanged(leaseName(lease.id), undefined, signal).catch(() => undefined);
  }

  /**
   * The leases that still protect their blobs; expired and unreadable ones are deleted when `prune`.
   * A lease the store fails to read (a network error, the store down) is not unreadable: it may be
   * live, so the call throws, and a prune that cannot read every lease deletes nothing.
   */
  private async leases(now: Date, signal: AbortSignal, prune: boolean): Promise<Lease[]> {
    const listed = (await this.backend.list(LEASES, 1, signal, true)).items;
    const read = await mapLimit(listed, this.concurrency, async (item): Promise<Lease | undefined> => {
      const id = path.posix.basename(item.name, '.json');
      // Expired, too large or not a lease: it protects nothing.
      const protectsNothing = async (): Promise<undefined> => {
        if (prune) await this.backend.deleteIfUnchanged(item.name, undefined, signal).catch(() => undefined);
        return undefined;
      };
      const listedExpiry = Date.parse(item.metadata?.expires ?? '');
      if (listedExpiry <= now.getTime() || item.size > MAX_DOCUMENT_BYTES) return protectsNothing();
      const data = await this.backend.read(item.name, signal);
      if (data === undefined) return undefined;
      let lease: Partial<Lease>;
      try {
        lease = JSON.parse(data.toString('utf8')) as Partial<Lease>;
      } catch {
        return protectsNothing();
      }
      const expires = Number.isNaN(listedExpiry) ? Date.parse(lease.expires ?? '') : listedExpiry;
      if (!(expires > now.getTime())) return protectsNothing();
      if (!Array.isArray(lease.blobs)) return undefined;
      return { id, expires: new Date(expires).toISOString(), blobs: lease.blobs.filter((d): d is string => typeof d === 'string') };
    });
    return read.filter((l): l is Lease => l !== undefined);
  }

  // ---------------------------------------------------------------- restore

  async restore(head: EntryHead, cacheDir: string): Promise<RestoreStats> {
    const signal = await this.begin();
    // Before anything is fetched: a folder the task did not write is never replaced.
    await assertReplaceable(cacheDir);
    const entry = await this.body(head, signal);
    const index = parseIndex(JSON.stringify(entry.index));
    // A store that refuses writes (mounted read-only, a read-only SAS) restores without its lease and its touch.
    const lease = await unlessRefused(() =>
      this.lease(
        entry.blobs.map((b) => b.digest),
        new Date(),
        signal,
      ),
    );
    const staging = siblingPath(cacheDir, 'restore', randomId());
    try {
      await fs.promises.mkdir(path.join(staging, BLOBS_DIR), { recursive: true });
      await fs.promises.writeFile(path.join(staging, LAYOUT_FILE), LAYOUT_CONTENT);
      await fs.promises.writeFile(path.join(staging, INDEX_FILE), JSON.stringify(entry.index));
      const placed = await mapLimit(entry.blobs, this.concurrency, (ref) => this.place(ref, staging, cacheDir, signal));
      // The entry must list every blob its index reaches: nothing BuildKit needs may be missing.
      const listed = new Map(entry.blobs.map((b) => [b.digest, b.size]));
      const live = await reachable(index, (d) => readVerified(staging, d)).catch((err: unknown) => {
        throw new EntryUnusableError((err as Error).message);
      });
      for (const d of live.values()) {
        if (listed.get(d.digest) !== d.size) throw new EntryUnusableError(`the entry does not list ${d.digest} with size ${d.size}`);
      }
      await replaceOwnedDirectory(cacheDir, staging, siblingPath(cacheDir, 'old', randomId()));
      await unlessRefused(() => this.touchEntry(head, new Date(), signal));
      return {
        blobs: entry.blobs.length,
        bytes: entry.blobs.reduce((a, b) => a + b.size, 0),
        linked: placed.filter((p) => p.linked).length,
        downloaded: this.backend.remote ? placed.reduce((a, p) => a + p.downloaded, 0) : undefined,
      };
    } finally {
      if (lease !== undefined) await this.release(lease, signal);
      await fs.promises.rm(staging, { recursive: true, force: true });
    }
  }

  /**
   * Puts one blob in the staging folder, verified: reused from the cache folder when fetching it
   * would cost its bytes, else fetched from the store and checked against its digest, unless the
   * store's seal says that this very file hashed right before. A corrupt blob is deleted from the
   * store (if it is still the copy that was read), so that the next save adds a good one.
   */
  private async place(
    ref: BlobRef,
    staging: string,
    cacheDir: string,
    signal: AbortSignal,
  ): Promise<{ linked: boolean; downloaded: number }> {
    const dest = blobPath(staging, ref.digest);
    await fs.promises.mkdir(path.dirname(dest), { recursive: true });
    if (this.backend.remote && (await reusable(ref, cacheDir))) {
      await linkOrCopy(blobPath(cacheDir, ref.digest), dest);
      return { linked: true, downloaded: 0 };
    }
    const name = blobName(ref.digest);
    const fetched = await this.backend.fetch(name, dest, signal);
    if (fetched === 'other') await unlessRefused(() => this.backend.quarantine(name, signal));
    if (fetched === undefined || fetched === 'other') throw new EntryUnusableError(`blob ${ref.digest} is missing in the store`);
    const problem = await this.checkFetched(ref, dest, fetched);
    if (problem !== undefined) {
      await this.backend.deleteIfUnchanged(name, fetched.version, signal).catch(() => undefined);
      await unlessRefused(async () => this.backend.seals?.clear(ref.digest));
      throw new EntryUnusableError(`blob ${ref.digest} is corrupt in the store${problem}`);
    }
    return { linked: fetched.how === 'linked', downloaded: fetched.how === 'downloaded' ? ref.size : 0 };
  }

  /** What is wrong with a fetched blob, or undefined when it is intact. */
  private async checkFetched(ref: BlobRef, dest: string, fetched: Fetched): Promise<string | undefined> {
    if (fetched.how === 'downloaded')
      return fetched.digest === ref.digest && fetched.size === ref.size ? undefined : ` (read ${fetched.size} bytes, ${fetched.digest})`;
    const seals = this.backend.seals;
    if (seals !== undefined && (await seals.get(ref.digest)) === fetched.version) return undefined;
    if (!(await holdsBlob(dest, ref).catch(() => false))) return '';
    await unlessRefused(async () => seals?.set(ref.digest, fetched.version));
    return undefined;
  }

  // ---------------------------------------------------------------- save

  /** The newest entry of the key in the scope, as a save sees it. */
  private async newestVersion(req: { scope: string; key: string; now: Date }, signal: AbortSignal): Promise<EntryHead | undefined> {
    const { entries } = await this.listEntries(entriesPrefix(req.scope), 1, signal);
    return newestOf(
      entries.map((e) => e.head),
      req.scope,
      req.key,
      req.now,
    );
  }

  async save(req: SaveRequest): Promise<SaveResult> {
    const signal = await this.begin();
    const layout = await savedLayout(req.cacheDir);
    const newest = await this.newestVersion(req, signal);
    // The same root reaches the same blobs: the entry is this cache, only its last use changes,
    // unless the store lost one of its blobs or a prune removed that entry meanwhile.
    if (
      newest !== undefined &&
      newest.root === layout.root.digest &&
      (await mapLimit(layout.blobs, this.concurrency * 2, (ref) => this.present(ref, signal))).every(Boolean) &&
      (await this.touchEntry(newest, req.now, signal))
    ) {
      return { status: 'unchanged', entry: { ...newEntry(req, newest.id, layout), created: newest.created }, newBlobs: 0, newBytes: 0 };
    }

    await this.backend.prepareWrites?.(signal);
    const lease = await this.lease(
      layout.blobs.map((b) => b.digest),
      req.now,
      signal,
    );
    try {
      const sizes = await this.addMissing(layout.blobs, req.cacheDir, signal);
      const entry = newEntry(req, entryId(req.now, randomId()), layout);
      await this.backend.writeIfAbsent(
        entryName(entry),
        Buffer.from(JSON.stringify(entry)),
        { metadata: metadataOf(entry), modified: req.now, durable: true },
        signal,
      );
      // A prune that looked before this save's lease existed may have deleted a blob since the check.
      await this.addMissing(layout.blobs, req.cacheDir, signal);
      return { status: 'saved', entry, newBlobs: sizes.filter((s) => s > 0).length, newBytes: sizes.reduce((a, b) => a + b, 0) };
    } finally {
      await this.release(lease, signal);
    }
  }

  /**
   * Whether the store holds the blob at its size; a blob of the wrong size is deleted, as corrupt,
   * and something that is not a blob is quarantined.
   */
  private async present(ref: BlobRef, signal: AbortSignal): Promise<boolean> {
    return this.judge(ref, await this.backend.stat(blobName(ref.digest), signal), signal);
  }

  /** `present` once the blob's item has been looked at. */
  private async judge(ref: BlobRef, item: StoredItem | 'other' | undefined, signal: AbortSignal): Promise<boolean> {
    const name = blobName(ref.digest);
    if (item === undefined) return false;
    if (item === 'other') {
      await this.backend.quarantine(name, signal);
      return false;
    }
    if (item.size === ref.size) return true;
    await this.backend.deleteIfUnchanged(name, item.version, signal).catch(() => undefined);
    return false;
  }

  /** Adds the blobs the store lacks from the cache folder, each checked against its digest. Returns the bytes added per blob. */
  private async addMissing(blobs: readonly BlobRef[], cacheDir: string, signal: AbortSignal): Promise<number[]> {
    const have = await mapLimit(blobs, this.concurrency * 2, (ref) => this.present(ref, signal));
    return mapLimit(
      blobs.map((ref, i) => ({ ref, have: have[i] === true })),
      this.writeConcurrency,
      async ({ ref, have }) => {
        if (have) return 0;
        // Never through a link, never more than the declared size: the folder is the build's to write.
        const file = blobPath(cacheDir, ref.digest);
        const stat = await checkBlobFile(file, ref);
        if (stat === undefined) throw new LayoutError(`${file} does not match its digest ${ref.digest}`);
        const version = await this.backend.writeIfAbsent(blobName(ref.digest), { file, ref, stat }, {}, signal);
        if (version === undefined) return 0;
        await this.backend.seals?.set(ref.digest, version);
        return ref.size;
      },
    );
  }

  // ---------------------------------------------------------------- blob by blob (the registry facade)

  async openEntry(head: EntryHead): Promise<OpenedEntry> {
    const signal = await this.begin();
    const entry = await this.body(head, signal);
    // As a restore: a store that refuses writes opens without its lease.
    const lease = await unlessRefused(() =>
      this.lease(
        entry.blobs.map((b) => b.digest),
        new Date(),
        signal,
        { ms: this.jobLeaseMs },
      ),
    );
    const release = async (): Promise<void> => {
      if (lease !== undefined) await this.release(lease, ownSignal(this.budgetMs));
    };
    return new OpenedStoreEntry(this.backend, entry, release, this.budgetMs);
  }

  async beginUpload(): Promise<BlobSink> {
    const signal = await this.begin();
    await this.backend.prepareWrites?.(signal);
    const leaseId = `${Date.now()}-${randomId()}`;
    return new StoreBlobSink(
      this.backend,
      leaseId,
      async (itemId, blobs, uploads) => {
        await this.lease(blobs, new Date(), ownSignal(this.budgetMs), { id: itemId, ms: this.jobLeaseMs, uploads });
      },
      this.budgetMs,
    );
  }

  async endUpload(leaseId: string): Promise<void> {
    await this.dropUploadLease(leaseId, await this.begin());
  }

  /** Deletes the items of an upload lease: those given, when the caller has listed them already, else those listed now. */
  private async dropUploadLease(leaseId: string, signal: AbortSignal, listed?: readonly StoredItem[]): Promise<void> {
    const items = listed ?? (await this.uploadLeaseItems(leaseId, signal));
    await mapLimit(items, this.concurrency, (item) => this.backend.deleteIfUnchanged(item.name, undefined, signal));
  }

  /** The items of an upload lease. */
  private async uploadLeaseItems(leaseId: string, signal: AbortSignal): Promise<StoredItem[]> {
    const prefix = uploadLeasePrefix(leaseId);
    return (await this.backend.list(LEASES, 1, signal)).items.filter((i) => i.name.startsWith(prefix) && i.name.endsWith('.json'));
  }

  /** The blobs that were put under an upload lease's items (rather than found in the store). */
  private async uploadsOf(items: readonly StoredItem[], signal: AbortSignal): Promise<Set<string>> {
    const uploads = new Set<string>();
    const read = await mapLimit(
      items.filter((item) => item.size <= MAX_DOCUMENT_BYTES),
      this.concurrency,
      (item) => this.backend.read(item.name, signal),
    );
    for (const data of read) {
      try {
        const put = (JSON.parse(data?.toString('utf8') ?? '{}') as { uploads?: unknown }).uploads;
        if (Array.isArray(put)) for (const d of put) if (typeof d === 'string') uploads.add(d);
      } catch {
        // Not a lease: it counts nothing.
      }
    }
    return uploads;
  }

  /** A manifest or index among the store's blobs, checked against its descriptor. */
  private async document(desc: Descriptor, signal: AbortSignal): Promise<Buffer> {
    const data = await this.backend.read(blobName(desc.digest), signal);
    if (data === undefined) throw new Error(`blob ${desc.digest} is missing in the store`);
    const alg = algorithmOf(desc.digest);
    if (data.length !== desc.size || `${alg}:${crypto.createHash(alg).update(data).digest('hex')}` !== desc.digest)
      throw new Error(`blob ${desc.digest} does not match its digest or size in the store`);
    return data;
  }

  async saveLayout(req: LayoutSaveRequest): Promise<SaveResult> {
    if (req.leaseId !== undefined) uploadLeasePrefix(req.leaseId);
    const signal = await this.begin();
    // The upload lease's items, once the save has listed them: the drop then deletes them without listing again.
    const upload: { items?: readonly StoredItem[] } = {};
    try {
      return await this.saveStoredLayout(req, upload, signal);
    } finally {
      // Saved or not, the upload is over: its blobs are an entry's now, or retention's.
      if (req.leaseId !== undefined) await this.dropUploadLease(req.leaseId, ownSignal(this.budgetMs), upload.items).catch(() => undefined);
    }
  }

  private async saveStoredLayout(
    req: LayoutSaveRequest,
    upload: { items?: readonly StoredItem[] },
    signal: AbortSignal,
  ): Promise<SaveResult> {
    const index: Index = parseIndex(JSON.stringify(req.index ?? null), "the layout's index");
    const root = cacheRoot(index);
    if (root === undefined) throw new LayoutError('the layout\'s index has no manifest tagged "latest"');
    // The reads that do not depend on each other go at once: the documents the root reaches, the
    // blobs the layout lists (looked at only; judged once the documents say which count), the key's
    // newest entry, and the upload lease's items (the upload is over: the build's requests were all answered).
    const listed = new Map(req.blobs.map((b) => [b.digest, b.size]));
    const leaseId = req.leaseId;
    const [live, items, newest, uploadItems] = await Promise.all([
      reachable(index, (d) => this.document(d, signal)),
      mapLimit([...listed.keys()], this.concurrency * 2, (digest) => this.backend.stat(blobName(digest), signal)),
      this.newestVersion(req, signal),
      leaseId === undefined ? undefined : this.uploadLeaseItems(leaseId, signal),
    ]);
    upload.items = uploadItems;
    // The entry lists what its root reaches, read from the store: a restore refuses an entry that lacks one.
    for (const d of live.values())
      if (listed.get(d.digest) !== d.size) throw new LayoutError(`the layout does not list ${d.digest} with size ${d.size}`);
    const layout = { index, root, blobs: [...live.values()].map((d) => ({ digest: d.digest, size: d.size })) };
    const itemOf = new Map([...listed.keys()].map((digest, i) => [digest, items[i]]));

    const missing = async (stat: (ref: BlobRef) => Promise<StoredItem | 'other' | undefined>): Promise<BlobRef[]> => {
      const have = await mapLimit(layout.blobs, this.concurrency * 2, async (ref) => this.judge(ref, await stat(ref), signal));
      return layout.blobs.filter((_, i) => have[i] !== true);
    };
    const incomplete = (gone: readonly BlobRef[]): Error =>
      new Error(
        `blob ${gone[0]?.digest ?? ''}${gone.length > 1 ? ` (and ${gone.length - 1} more)` : ''} of the layout is missing in the store: ` +
          'no entry was written',
      );
    const before = await missing((ref) => Promise.resolve(itemOf.get(ref.digest)));
    if (before.length > 0) throw incomplete(before);

    const request = { key: req.key, segments: req.segments, scope: req.scope, now: req.now };
    if (newest !== undefined && newest.root === root.digest && (await this.touchEntry(newest, req.now, signal)))
      return { status: 'unchanged', entry: { ...newEntry(request, newest.id, layout), created: newest.created }, newBlobs: 0, newBytes: 0 };

    await this.backend.prepareWrites?.(signal);
    // Without an upload lease (blobs put some other way), a lease of its own, as a save takes.
    const lease =
      req.leaseId === undefined
        ? await this.lease(
            layout.blobs.map((b) => b.digest),
            req.now,
            signal,
          )
        : undefined;
    try {
      const entry = newEntry(request, entryId(req.now, randomId()), layout);
      const name = entryName(entry);
      const version = await this.backend.writeIfAbsent(
        name,
        Buffer.from(JSON.stringify(entry)),
        { metadata: metadataOf(entry), modified: req.now, durable: true },
        signal,
      );
      // A prune that looked before a blob was leased may have deleted it since: then the entry goes again.
      const [after, uploads] = await Promise.all([
        missing((ref) => this.backend.stat(blobName(ref.digest), signal)),
        this.uploadsOf(uploadItems ?? [], signal),
      ]);
      if (after.length > 0) {
        await this.backend.deleteIfUnchanged(name, version, signal).catch(() => undefined);
        throw incomplete(after);
      }
      const added = layout.blobs.filter((b) => uploads.has(b.digest));
      return { status: 'saved', entry, newBlobs: added.length, newBytes: added.reduce((a, b) => a + b.size, 0) };
    } finally {
      if (lease !== undefined) await this.release(lease, signal);
    }
  }

  // ---------------------------------------------------------------- retention

  private async bodies(entries: readonly Listed[], signal: AbortSignal): Promise<Entry[]> {
    const read = await mapLimit(entries, this.concurrency, async (e) => {
      if (e.body !== undefined) return e.body;
      try {
        return await this.body(e.head, signal);
      } catch (err) {
        if (!(err instanceof EntryUnusableError)) throw err;
        // One that cannot be read is removed, as a corrupt listing is.
        await this.backend.deleteIfUnchanged(e.item.name, e.item.version, signal);
        return undefined;
      }
    });
    return read.filter((e): e is Entry => e !== undefined);
  }

  /** digest → the blob item, for every blob in the store. */
  private async blobs(signal: AbortSignal): Promise<Map<string, StoredItem>> {
    const blobs = new Map<string, StoredItem>();
    for (const item of (await this.backend.list(BLOBS, 2, signal)).items) {
      const digest = digestOfBlobName(item.name);
      if (digest !== undefined) blobs.set(digest, item);
    }
    return blobs;
  }

  async prune(policy: RetentionPolicy): Promise<PruneReport> {
    const signal = await this.begin();
    const now = policy.now;
    const first = await this.listEntries(entriesPrefix(), 2, signal);
    for (const item of first.corrupt) await this.backend.deleteIfUnchanged(item.name, item.version, signal);
    const expired = new Set(
      expiredEntries(
        first.entries.map((e) => e.head),
        now,
        policy.retentionDays,
      ).map((e) => e.id),
    );
    const gone = first.entries.filter((e) => expired.has(e.head.id));
    // The first look, its parts at once: what it condemns, the second look below checks again.
    const [goneDeleted, live, blobs, leases] = await Promise.all([
      // A use since the listing changes the entry's version: it is then not deleted.
      mapLimit(gone, this.concurrency, (e) => this.backend.deleteIfUnchanged(e.item.name, e.item.version, signal)),
      this.bodies(
        first.entries.filter((e) => !expired.has(e.head.id)),
        signal,
      ),
      this.blobs(signal),
      this.leases(now, signal, true),
    ]);
    // An expired entry that was used since the listing stays, and so do its blobs.
    const stayed = gone.filter((_, i) => goneDeleted[i] !== true);
    const kept = [...live, ...(await this.bodies(stayed, signal))];
    const sizes = new Map([...blobs].map(([digest, b]) => [digest, b.size]));
    // Blob ages are the store's clock against this one: the prune's `now` is the retention's notion of time.
    const young = new Set([...blobs].filter(([, b]) => Date.now() - b.modified.getTime() < this.graceMs).map(([digest]) => digest));
    const condemned = unreferencedBlobs(sizes, kept, leases, now).filter((ref) => !young.has(ref.digest));

    // A second look just before deleting: an entry or lease written since the first keeps its blobs.
    // Leases first, then entries: a save writes its entry before it drops its lease, so a lease
    // gone when read means its entry is in the listing after it.
    const known = new Set([...first.entries.map((e) => e.head.id)]);
    const leasesAgain = await this.leases(now, signal, false);
    const again = await this.listEntries(entriesPrefix(), 2, signal);
    const added = await this.bodies(
      again.entries.filter((e) => !known.has(e.head.id)),
      signal,
    );
    const referenced = new Set([...kept, ...added].flatMap((e) => e.blobs.map((b) => b.digest)));
    for (const lease of leasesAgain) for (const d of lease.blobs) referenced.add(d);
    const doomed = condemned.filter((ref) => !referenced.has(ref.digest));
    const deleted = await mapLimit(doomed, this.concurrency, async (ref) => {
      const item = blobs.get(ref.digest);
      const done = await this.backend.deleteIfUnchanged(blobName(ref.digest), item?.version, signal);
      if (done) await this.backend.seals?.clear(ref.digest);
      return done;
    });
    const removed = doomed.filter((_, i) => deleted[i] === true);
    await this.backend.housekeeping?.(now);

    for (const ref of removed) sizes.delete(ref.digest);
    const after = { entries: kept.length + added.length, blobs: sizes.size, bytes: [...sizes.values()].reduce((a, b) => a + b, 0) };
    return {
      entriesRemoved: gone.length - stayed.length + first.corrupt.length,
      blobsRemoved: removed.length,
      bytesRemoved: removed.reduce((a, b) => a + b.size, 0),
      after,
    };
  }

  async stats(): Promise<StoreStats> {
    const signal = await this.begin();
    const blobs = await this.blobs(signal);
    const { entries } = await this.listEntries(entriesPrefix(), 2, signal);
    return { entries: entries.length, blobs: blobs.size, bytes: [...blobs.values()].reduce((a, b) => a + b.size, 0) };
  }
}

/** Whether the cache folder already holds the blob intact, so that it need not be downloaded. */
async function reusable(ref: BlobRef, cacheDir: string): Promise<boolean> {
  return holdsBlob(blobPath(cacheDir, ref.digest), ref).catch(() => false);
}
