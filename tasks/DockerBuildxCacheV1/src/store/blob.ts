import * as crypto from 'crypto';
import { setMaxListeners } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { Transform } from 'stream';
import { pipeline } from 'stream/promises';
import type { BlobItem, ContainerClient } from '@azure/storage-blob';
import { siblingPath } from '../cache/folder';
import { linkOrCopy, mapLimit, randomId, replaceDirectory } from '../fsutil';
import { algorithmOf, blobPath, hashFile, INDEX_FILE, LAYOUT_CONTENT, LAYOUT_FILE, LayoutError, parseIndex, reachable, readVerified } from '../oci/layout';
import { newEntry, parseEntry, savedLayout } from './entry';
import { entryId, LAYOUT_VERSION, scopeSlug } from './names';
import { expiredEntries, newestOf, unreferencedBlobs } from './select';
import {
  EntryUnusableError,
  type BlobRef,
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

export interface BlobStoreOptions {
  /** Blobs transferred at once. */
  readonly concurrency?: number;
  /** Blobs larger than this go up as blocks, `blockConcurrency` at once. */
  readonly singleShotBytes?: number;
  readonly blockBytes?: number;
  readonly blockConcurrency?: number;
  /** How long a save's lease protects the blobs it is about to reference. */
  readonly leaseMinutes?: number;
  /** An unreferenced blob younger than this is kept: a save may be uploading it. */
  readonly graceMinutes?: number;
  /** Each restore, save or prune as a whole gives up after this long. */
  readonly budgetMs?: number;
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');
const unb64 = (text: string | undefined): string => Buffer.from(text ?? '', 'base64url').toString('utf8');

/** The HTTP status of an Azure Storage error, or undefined for anything else. */
function statusOf(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

async function unlessNotFound<T>(promise: Promise<T>): Promise<T | undefined> {
  try {
    return await promise;
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw err;
  }
}

/**
 * A content-addressed store in an Azure Storage container, with the local store's entries,
 * scopes, versions and retention:
 *
 *   v1/blobs/sha256/<hex>          each blob once, created only if absent (If-None-Match: *)
 *   v1/entries/<scope>/<id>.json   one per saved cache; its metadata holds what a listing needs
 *                                  (key, scope, creation, last use, root), so choosing an entry
 *                                  takes one listing per scope and one download
 *   v1/leases/<id>.json            blobs that a save in flight is about to reference
 *
 * A save uploads the blobs the container lacks, then its entry, so an interrupted save leaves
 * blobs that the pruner collects, never an entry that points at missing blobs. Every blob is
 * verified by digest as it is downloaded; a corrupt one is deleted (if it is still the copy that
 * was read) so that the next save uploads a good one, and its entry is skipped.
 */
export class AzureBlobStore implements CacheStore {
  private readonly concurrency: number;
  private readonly singleShotBytes: number;
  private readonly blockBytes: number;
  private readonly blockConcurrency: number;
  private readonly leaseMs: number;
  private readonly graceMs: number;
  private readonly budgetMs: number;

  constructor(
    private readonly container: ContainerClient,
    readonly description: string,
    options: BlobStoreOptions = {},
  ) {
    this.concurrency = options.concurrency ?? 8;
    this.singleShotBytes = options.singleShotBytes ?? 8 << 20;
    this.blockBytes = options.blockBytes ?? 8 << 20;
    this.blockConcurrency = options.blockConcurrency ?? 4;
    this.leaseMs = (options.leaseMinutes ?? 180) * 60_000;
    this.graceMs = (options.graceMinutes ?? 60) * 60_000;
    this.budgetMs = options.budgetMs ?? 15 * 60_000;
  }

  /** A signal that aborts every request of one operation once its time budget is spent. */
  private budget(): AbortSignal {
    const signal = AbortSignal.timeout(this.budgetMs);
    // Every request of the operation listens to it, many at once.
    setMaxListeners(0, signal);
    return signal;
  }

  private blobName(digest: string): string {
    return `${LAYOUT_VERSION}/blobs/${digest.replace(':', '/')}`;
  }

  private entriesPrefix(scope?: string): string {
    return `${LAYOUT_VERSION}/entries/${scope === undefined ? '' : `${scopeSlug(scope)}/`}`;
  }

  private entryName(entry: Pick<EntryHead, 'scope' | 'id'>): string {
    return `${this.entriesPrefix(entry.scope)}${entry.id}.json`;
  }

  private leaseName(id: string): string {
    return `${LAYOUT_VERSION}/leases/${id}.json`;
  }

  private async *items(prefix: string, signal: AbortSignal, metadata = false): AsyncGenerator<BlobItem> {
    try {
      for await (const item of this.container.listBlobsFlat({ prefix, includeMetadata: metadata, abortSignal: signal })) yield item;
    } catch (err) {
      // A container that does not exist yet holds nothing.
      if (statusOf(err) !== 404) throw err;
    }
  }

  // ---------------------------------------------------------------- entries

  private static metadataOf(entry: EntryHead): Record<string, string> {
    return { segments: b64(JSON.stringify(entry.segments)), scope: b64(entry.scope), created: entry.created, lastused: entry.lastUsed, root: entry.root };
  }

  /** An entry as its listing describes it; throws on metadata that is not an entry's. */
  private static headOf(item: BlobItem): EntryHead {
    const m = item.metadata ?? {};
    const id = path.posix.basename(item.name, '.json');
    const segments = JSON.parse(unb64(m.segments)) as unknown;
    const scope = unb64(m.scope);
    if (!Array.isArray(segments) || !segments.every((s) => typeof s === 'string' && s !== '')) throw new Error('its metadata has no key');
    if (scope === '' || Number.isNaN(Date.parse(m.created ?? '')) || !/^sha(256|512):[a-f0-9]+$/.test(m.root ?? '')) throw new Error('its metadata lacks its scope, creation time or root');
    const created = m.created ?? '';
    const lastUsed = Number.isNaN(Date.parse(m.lastused ?? '')) ? created : (m.lastused ?? created);
    return { id, key: segments.join('|'), segments, scope, created, lastUsed, root: m.root ?? '' };
  }

  private async listScope(prefix: string, signal: AbortSignal, expect?: string): Promise<{ entries: EntryHead[]; skipped: string[]; corrupt: string[] }> {
    const entries: EntryHead[] = [];
    const skipped: string[] = [];
    const corrupt: string[] = [];
    for await (const item of this.items(prefix, signal, true)) {
      if (!item.name.endsWith('.json')) continue;
      try {
        const head = AzureBlobStore.headOf(item);
        if (expect !== undefined && head.scope !== expect) throw new Error(`its scope is ${head.scope}`);
        entries.push(head);
      } catch (err) {
        skipped.push(`${item.name}: ${(err as Error).message}`);
        corrupt.push(item.name);
      }
    }
    return { entries, skipped, corrupt };
  }

  async list(scopes: readonly string[]): Promise<{ entries: EntryHead[]; skipped: string[] }> {
    const signal = this.budget();
    const all = await Promise.all(scopes.map((scope) => this.listScope(this.entriesPrefix(scope), signal, scope)));
    return { entries: all.flatMap((r) => r.entries), skipped: all.flatMap((r) => r.skipped) };
  }

  /** The whole entry: its index and blob list. A missing or malformed one cannot be used. */
  private async body(head: EntryHead, signal: AbortSignal): Promise<Entry> {
    const name = this.entryName(head);
    const client = this.container.getBlobClient(name);
    const buffer = await unlessNotFound(client.downloadToBuffer(0, undefined, { abortSignal: signal }));
    if (buffer === undefined) throw new EntryUnusableError('the entry is gone');
    try {
      return { ...parseEntry(buffer.toString('utf8'), head.id, new Date(head.created)), lastUsed: head.lastUsed };
    } catch (err) {
      throw new EntryUnusableError(`${name}: ${(err as Error).message}`);
    }
  }

  async touch(entry: EntryHead, now: Date, signal = this.budget()): Promise<void> {
    await this.touchIfPresent(entry, now, signal);
  }

  /** Writes the last use into the entry's metadata: the only write of a save that changed nothing. */
  private async touchIfPresent(entry: EntryHead, now: Date, signal: AbortSignal): Promise<boolean> {
    const metadata = AzureBlobStore.metadataOf({ ...entry, lastUsed: now.toISOString() });
    return (await unlessNotFound(this.container.getBlobClient(this.entryName(entry)).setMetadata(metadata, { abortSignal: signal }))) !== undefined;
  }

  /** Every restore verifies every blob it downloads or reuses in full: there is nothing to distrust. */
  async distrust(): Promise<void> {
    // Nothing is trusted without hashing in this store.
  }

  // ---------------------------------------------------------------- restore

  async restore(head: EntryHead, cacheDir: string): Promise<RestoreStats> {
    const signal = this.budget();
    const entry = await this.body(head, signal);
    const index = parseIndex(JSON.stringify(entry.index));
    const staging = siblingPath(cacheDir, 'restore', randomId());
    try {
      await fs.promises.mkdir(path.join(staging, 'blobs'), { recursive: true });
      await fs.promises.writeFile(path.join(staging, LAYOUT_FILE), LAYOUT_CONTENT);
      await fs.promises.writeFile(path.join(staging, INDEX_FILE), JSON.stringify(entry.index));
      const fetched = await mapLimit(entry.blobs, this.concurrency, async (ref) => {
        const dest = blobPath(staging, ref.digest);
        await fs.promises.mkdir(path.dirname(dest), { recursive: true });
        if (await this.reusable(ref, cacheDir)) {
          await linkOrCopy(blobPath(cacheDir, ref.digest), dest);
          return { reused: true, bytes: 0 };
        }
        await this.download(ref, dest, signal);
        return { reused: false, bytes: ref.size };
      });
      // The entry must list every blob its index reaches: nothing BuildKit needs may be missing.
      const listed = new Map(entry.blobs.map((b) => [b.digest, b.size]));
      const live = await reachable(index, (d) => readVerified(staging, d)).catch((err: unknown) => {
        throw new EntryUnusableError((err as Error).message);
      });
      for (const d of live.values()) {
        if (listed.get(d.digest) !== d.size) throw new EntryUnusableError(`the entry does not list ${d.digest} with size ${d.size}`);
      }
      await replaceDirectory(cacheDir, staging, siblingPath(cacheDir, 'old', randomId()));
      await this.touch(head, new Date(), signal);
      return {
        blobs: entry.blobs.length,
        bytes: entry.blobs.reduce((a, b) => a + b.size, 0),
        linked: fetched.filter((f) => f.reused).length,
        downloaded: fetched.reduce((a, f) => a + f.bytes, 0),
      };
    } finally {
      await fs.promises.rm(staging, { recursive: true, force: true });
    }
  }

  /** Whether the cache folder already holds the blob intact, so that it need not be downloaded. */
  private async reusable(ref: BlobRef, cacheDir: string): Promise<boolean> {
    const file = blobPath(cacheDir, ref.digest);
    const stat = await fs.promises.stat(file).catch(() => undefined);
    return stat?.isFile() === true && stat.size === ref.size && (await hashFile(file, algorithmOf(ref.digest))) === ref.digest;
  }

  /** Streams a blob to `dest`, hashing as it goes; a blob that does not match its digest is deleted from the container. */
  private async download(ref: BlobRef, dest: string, signal: AbortSignal): Promise<void> {
    const client = this.container.getBlobClient(this.blobName(ref.digest));
    const response = await unlessNotFound(client.download(0, undefined, { abortSignal: signal, maxRetryRequests: 5 }));
    if (response?.readableStreamBody === undefined) throw new EntryUnusableError(`blob ${ref.digest} is missing in the store`);
    const hash = crypto.createHash(algorithmOf(ref.digest));
    let size = 0;
    const tee = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(response.readableStreamBody, tee, fs.createWriteStream(dest, { flags: 'wx' }), { signal });
    const digest = `${algorithmOf(ref.digest)}:${hash.digest('hex')}`;
    if (digest === ref.digest && size === ref.size) return;
    // Delete it only if it is still the copy that was read: a good copy may have replaced it.
    await client.deleteIfExists({ conditions: { ifMatch: response.etag }, abortSignal: signal }).catch(() => undefined);
    throw new EntryUnusableError(`blob ${ref.digest} is corrupt in the store (read ${size} bytes, ${digest})`);
  }

  // ---------------------------------------------------------------- save

  /** Which blobs the container holds at their size; a blob of the wrong size is deleted, as corrupt. */
  private async present(blobs: readonly BlobRef[], signal: AbortSignal): Promise<boolean[]> {
    return mapLimit(blobs, this.concurrency * 2, async (ref) => {
      const client = this.container.getBlobClient(this.blobName(ref.digest));
      const props = await unlessNotFound(client.getProperties({ abortSignal: signal }));
      if (props === undefined) return false;
      if (props.contentLength === ref.size) return true;
      await client.deleteIfExists({ conditions: { ifMatch: props.etag }, abortSignal: signal }).catch(() => undefined);
      return false;
    });
  }

  /** Uploads a blob unless someone else has meanwhile: the first complete upload wins, and both are the same bytes. */
  private async upload(ref: BlobRef, file: string, signal: AbortSignal): Promise<number> {
    if ((await hashFile(file, algorithmOf(ref.digest))) !== ref.digest) throw new LayoutError(`${file} does not match its digest ${ref.digest}`);
    try {
      await this.container.getBlockBlobClient(this.blobName(ref.digest)).uploadFile(file, {
        abortSignal: signal,
        conditions: { ifNoneMatch: '*' },
        maxSingleShotSize: this.singleShotBytes,
        blockSize: this.blockBytes,
        concurrency: this.blockConcurrency,
        blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
      });
      return ref.size;
    } catch (err) {
      const status = statusOf(err);
      if (status === 409 || status === 412) return 0;
      throw err;
    }
  }

  private async uploadMissing(blobs: readonly BlobRef[], cacheDir: string, signal: AbortSignal): Promise<number[]> {
    const have = await this.present(blobs, signal);
    return mapLimit(
      blobs.map((ref, i) => ({ ref, have: have[i] === true })),
      Math.max(1, Math.floor(this.concurrency / 2)),
      ({ ref, have }) => (have ? Promise.resolve(0) : this.upload(ref, blobPath(cacheDir, ref.digest), signal)),
    );
  }

  async save(req: SaveRequest): Promise<SaveResult> {
    const signal = this.budget();
    const layout = await savedLayout(req.cacheDir);
    const { entries } = await this.listScope(this.entriesPrefix(req.scope), signal, req.scope);
    const newest = newestOf(entries, req.scope, req.key);
    if (newest !== undefined && newest.root === layout.root.digest && (await this.present(layout.blobs, signal)).every(Boolean) && (await this.touchIfPresent(newest, req.now, signal))) {
      // The same root reaches the same blobs: the entry is this cache, only its last use changes.
      return { status: 'unchanged', entry: { ...newEntry(req, newest.id, layout), created: newest.created }, newBlobs: 0, newBytes: 0 };
    }

    await this.container.createIfNotExists({ abortSignal: signal }).catch((err: unknown) => {
      // A SAS for one container may not create it; the uploads say whether it exists.
      if (statusOf(err) !== 403) throw err;
    });
    const lease: Lease = { id: `${req.now.getTime()}-${randomId()}`, expires: new Date(req.now.getTime() + this.leaseMs).toISOString(), blobs: layout.blobs.map((b) => b.digest) };
    const leaseClient = this.container.getBlockBlobClient(this.leaseName(lease.id));
    const leaseBody = JSON.stringify(lease);
    await leaseClient.upload(leaseBody, Buffer.byteLength(leaseBody), { abortSignal: signal, metadata: { expires: lease.expires } });
    try {
      const sizes = await this.uploadMissing(layout.blobs, req.cacheDir, signal);
      const entry = newEntry(req, entryId(req.now, randomId()), layout);
      const body = JSON.stringify(entry);
      await this.container.getBlockBlobClient(this.entryName(entry)).upload(body, Buffer.byteLength(body), {
        abortSignal: signal,
        conditions: { ifNoneMatch: '*' },
        metadata: AzureBlobStore.metadataOf(entry),
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
      // A prune that looked before this save's lease existed may have deleted a blob since the check.
      await this.uploadMissing(layout.blobs, req.cacheDir, signal);
      return { status: 'saved', entry, newBlobs: sizes.filter((s) => s > 0).length, newBytes: sizes.reduce((a, b) => a + b, 0) };
    } finally {
      await leaseClient.deleteIfExists({ abortSignal: signal }).catch(() => undefined);
    }
  }

  // ---------------------------------------------------------------- prune

  private async leases(signal: AbortSignal, now: Date): Promise<Lease[]> {
    const live: Lease[] = [];
    for await (const item of this.items(`${LAYOUT_VERSION}/leases/`, signal, true)) {
      const client = this.container.getBlobClient(item.name);
      const expires = Date.parse(item.metadata?.expires ?? '');
      if (!(expires > now.getTime())) {
        await client.deleteIfExists({ abortSignal: signal }).catch(() => undefined);
        continue;
      }
      const buffer = await unlessNotFound(client.downloadToBuffer(0, undefined, { abortSignal: signal }));
      try {
        const lease = JSON.parse(buffer?.toString('utf8') ?? '') as Lease;
        if (Array.isArray(lease.blobs)) live.push({ ...lease, expires: new Date(expires).toISOString() });
      } catch {
        // Gone or unreadable: it protects nothing.
      }
    }
    return live;
  }

  /** The whole entries behind the heads; one that cannot be read is removed, as in the local store. */
  private async bodies(heads: readonly EntryHead[], signal: AbortSignal): Promise<Entry[]> {
    const read = await mapLimit(heads, this.concurrency, async (head) => {
      try {
        return await this.body(head, signal);
      } catch (err) {
        if (!(err instanceof EntryUnusableError)) throw err;
        await this.container.getBlobClient(this.entryName(head)).deleteIfExists({ abortSignal: signal });
        return undefined;
      }
    });
    return read.filter((e): e is Entry => e !== undefined);
  }

  private async blobs(signal: AbortSignal): Promise<Map<string, { size: number; modified: number }>> {
    const blobs = new Map<string, { size: number; modified: number }>();
    const prefix = `${LAYOUT_VERSION}/blobs/`;
    for await (const item of this.items(prefix, signal)) {
      const digest = item.name.slice(prefix.length).replace('/', ':');
      blobs.set(digest, { size: item.properties.contentLength ?? 0, modified: item.properties.lastModified.getTime() });
    }
    return blobs;
  }

  async prune(policy: RetentionPolicy): Promise<PruneReport> {
    const signal = this.budget();
    const now = policy.now;
    const listed = await this.listScope(this.entriesPrefix(), signal);
    for (const name of listed.corrupt) await this.container.getBlobClient(name).deleteIfExists({ abortSignal: signal });
    const expired = expiredEntries(listed.entries, now, policy.retentionDays);
    await mapLimit(expired, this.concurrency, (e) => this.container.getBlobClient(this.entryName(e)).deleteIfExists({ abortSignal: signal }));
    const kept = await this.bodies(
      listed.entries.filter((e) => !expired.includes(e)),
      signal,
    );

    const blobs = await this.blobs(signal);
    const sizes = new Map([...blobs].map(([digest, b]) => [digest, b.size]));
    // Blob ages are the server's clock against this one: the prune's `now` is the retention's notion of time.
    const young = new Set([...blobs].filter(([, b]) => Date.now() - b.modified < this.graceMs).map(([digest]) => digest));
    const condemned = unreferencedBlobs(sizes, kept, await this.leases(signal, now), now).filter((ref) => !young.has(ref.digest));

    // A second look just before deleting: an entry or lease written since the first keeps its blobs.
    const known = new Set(kept.map((e) => e.id));
    const again = await this.listScope(this.entriesPrefix(), signal);
    const added = await this.bodies(
      again.entries.filter((e) => !known.has(e.id) && !expired.some((x) => x.id === e.id)),
      signal,
    );
    const referenced = new Set([...kept, ...added].flatMap((e) => e.blobs.map((b) => b.digest)));
    for (const lease of await this.leases(signal, now)) for (const d of lease.blobs) referenced.add(d);
    const doomed = condemned.filter((ref) => !referenced.has(ref.digest));
    await mapLimit(doomed, this.concurrency, (ref) => this.container.getBlobClient(this.blobName(ref.digest)).deleteIfExists({ abortSignal: signal }));

    for (const ref of doomed) sizes.delete(ref.digest);
    const after = { entries: kept.length + added.length, blobs: sizes.size, bytes: [...sizes.values()].reduce((a, b) => a + b, 0) };
    return { entriesRemoved: expired.length + listed.corrupt.length, blobsRemoved: doomed.length, bytesRemoved: doomed.reduce((a, b) => a + b.size, 0), after };
  }

  async stats(): Promise<StoreStats> {
    const signal = this.budget();
    const blobs = await this.blobs(signal);
    const { entries } = await this.listScope(this.entriesPrefix(), signal);
    return { entries: entries.length, blobs: blobs.size, bytes: [...blobs.values()].reduce((a, b) => a + b.size, 0) };
  }
}
