import { pipeline, Transform, Writable, type Readable, type TransformCallback } from 'stream';
import { pipeline as pipelineAsync } from 'stream/promises';
import { unlessRefused, type StoreBackend, type StoredItem } from './backend';
import { DigestStream } from './digest-stream';
import { blobName } from './names';
import { EntryUnusableError, type BlobRef, type BlobSink, type Entry, type OpenedEntry } from './types';

/** A signal for a store request that no caller's signal bounds (a shared lease write, a clean-up). */
export const ownSignal = (budgetMs: number | undefined): AbortSignal =>
  budgetMs === undefined ? new AbortController().signal : AbortSignal.timeout(budgetMs);

/** Deletes a blob that did not match its digest, if it is still the copy that was read, so that a later save puts a good one back. */
async function dropCorrupt(backend: StoreBackend, digest: string, version: string, budgetMs: number | undefined): Promise<void> {
  const signal = ownSignal(budgetMs);
  await backend.deleteIfUnchanged(blobName(digest), version, signal).catch(() => undefined);
  await backend.seals?.clear(digest).catch(() => undefined);
}

/**
 * Whether a stored blob is intact: a remote store's (whose size is all a listing tells) is taken as
 * it is, and checked when it is read; a local one is hashed unless its seal says this very file
 * hashed right before. A local blob that fails is deleted.
 */
async function intact(backend: StoreBackend, digest: string, item: StoredItem, signal: AbortSignal, budgetMs?: number): Promise<boolean> {
  const seals = backend.seals;
  if (seals === undefined || (await seals.get(digest)) === item.version) return true;
  const opened = await backend.openStream(item.name, signal);
  if (opened === undefined || opened === 'other') return false;
  const check = new DigestStream({ digest, size: item.size }, false);
  await pipelineAsync(opened.body, check, new Writable({ write: (_chunk, _encoding, done) => done() }));
  const ok = check.intact === true;
  if (ok) await unlessRefused(() => seals.set(digest, opened.version));
  else await dropCorrupt(backend, digest, opened.version, budgetMs);
  return ok;
}

/** Counts the bytes that pass, without looking at them: the reader of an opened blob hashes them. */
class CountingStream extends Transform {
  size = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.size += chunk.length;
    done(null, chunk);
  }
}

/** The bytes of the streams a store hands out, counted as they pass, those still flowing included. */
class DownloadCounter {
  private readonly reading = new Set<CountingStream>();
  private done = 0;

  get bytes(): number {
    let live = 0;
    for (const s of this.reading) live += s.size;
    return this.done + live;
  }

  /** The stream to hand out: `body` counted. Its errors reach the reader; destroying it stops the download. */
  track(body: Readable): Readable {
    const counted = new CountingStream();
    this.reading.add(counted);
    counted.once('close', () => {
      this.reading.delete(counted);
      this.done += counted.size;
    });
    pipeline(body, counted, () => undefined);
    return counted;
  }
}

/** An entry opened for the registry facade: each blob streamed from the store as stored, its bytes counted as they pass. */
export class OpenedStoreEntry implements OpenedEntry {
  private readonly refs: Map<string, BlobRef>;
  private readonly downloads = new DownloadCounter();
  /** The versions read of each blob: a corrupt one is deleted only when there was one. */
  private readonly versions = new Map<string, Set<string>>();
  private closed?: Promise<void>;

  constructor(
    private readonly backend: StoreBackend,
    readonly entry: Entry,
    private readonly release: () => Promise<void>,
    private readonly budgetMs?: number,
  ) {
    this.refs = new Map(entry.blobs.map((b) => [b.digest, b]));
  }

  get bytesDownloaded(): number {
    return this.backend.remote ? this.downloads.bytes : 0;
  }

  async open(digest: string, signal: AbortSignal): Promise<Readable> {
    const ref = this.refs.get(digest);
    if (ref === undefined) throw new EntryUnusableError(`${digest} is not a blob of the entry`);
    const name = blobName(digest);
    const opened = await this.backend.openStream(name, signal);
    if (opened === 'other') await unlessRefused(() => this.backend.quarantine(name, signal));
    if (opened === undefined || opened === 'other') throw new EntryUnusableError(`blob ${digest} is missing in the store`);
    const versions = this.versions.get(digest) ?? new Set<string>();
    versions.add(opened.version);
    this.versions.set(digest, versions);
    return this.downloads.track(opened.body);
  }

  async corrupt(digest: string): Promise<void> {
    const versions = [...(this.versions.get(digest) ?? [])];
    // Two copies read (one replaced the other meanwhile): which one was bad is not known, so neither goes.
    const version = versions.length === 1 ? versions[0] : undefined;
    if (version !== undefined) await dropCorrupt(this.backend, digest, version, this.budgetMs);
  }

  close(): Promise<void> {
    this.closed ??= this.release().catch(() => undefined);
    return this.closed;
  }
}

/** What an upload needs from the engine: a lease item written for a batch of blobs, `uploads` those about to be put. */
export type LeaseWriter = (itemId: string, blobs: readonly string[], uploads: readonly string[]) => Promise<void>;

/**
 * Blobs put for a save that a later process writes. Every blob asked about or put is leased first,
 * so that a prune running meanwhile keeps it: a blob present when `has` answers, or stored by
 * `put`, is already under the lease. The lease items of calls that come together are written as one;
 * the blobs stored are recorded in one more item by `settle`.
 */
export class StoreBlobSink implements BlobSink {
  /** digest → the write of the lease item that covers it. */
  private readonly covered = new Map<string, Promise<void>>();
  private batch?: { blobs: Set<string>; written: Promise<void> };
  /** Blobs stored by `put` that no item records yet. */
  private readonly stored = new Set<string>();
  private items = 0;
  private readonly downloads = new DownloadCounter();

  constructor(
    private readonly backend: StoreBackend,
    readonly leaseId: string,
    private readonly writeLease: LeaseWriter,
    private readonly budgetMs?: number,
  ) {}

  /** Resolves once a lease item covers the digest. */
  private cover(digest: string): Promise<void> {
    const known = this.covered.get(digest);
    if (known !== undefined) return known;
    let batch = this.batch;
    if (batch === undefined) {
      const fresh = { blobs: new Set<string>(), written: Promise.resolve() };
      fresh.written = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        // Calls from now on start the next batch.
        this.batch = undefined;
        return this.writeLease(`${this.leaseId}.${this.items++}`, [...fresh.blobs], []);
      });
      this.batch = batch = fresh;
    }
    batch.blobs.add(digest);
    const written = batch.written.catch((err: unknown) => {
      // A failed lease write is tried again by the next call.
      this.covered.delete(digest);
      throw err;
    });
    this.covered.set(digest, written);
    return written;
  }

  async settle(): Promise<void> {
    if (this.stored.size === 0) return;
    const uploads = [...this.stored];
    this.stored.clear();
    // Not tried again when it fails: the blobs are leased already (has/put), only their count is lost,
    // and a later try could write an item after the save dropped the lease, which would outlive it.
    await this.writeLease(`${this.leaseId}.${this.items++}`, uploads, uploads);
  }

  async keep(digests: readonly string[]): Promise<void> {
    // In one tick, so one batch: one lease item.
    await Promise.all(digests.map((digest) => this.cover(digest)));
  }

  async has(digest: string, signal: AbortSignal): Promise<number | undefined> {
    const name = blobName(digest);
    // Leased before it is looked at: a blob found here is kept until the entry is written. A store
    // that refuses writes still answers (its put fails).
    await unlessRefused(() => this.cover(digest));
    const item = await this.backend.stat(name, signal);
    if (item === undefined) return undefined;
    if (item === 'other') {
      await unlessRefused(() => this.backend.quarantine(name, signal));
      return undefined;
    }
    return (await intact(this.backend, digest, item, signal, this.budgetMs)) ? item.size : undefined;
  }

  get bytesDownloaded(): number {
    return this.backend.remote ? this.downloads.bytes : 0;
  }

  async open(digest: string, signal: AbortSignal): Promise<Readable> {
    const opened = await this.backend.openStream(blobName(digest), signal);
    if (opened === undefined || opened === 'other') throw new Error(`blob ${digest} is missing in the store`);
    return this.downloads.track(opened.body);
  }

  async put(blob: BlobRef, body: Readable, signal: AbortSignal): Promise<void> {
    // The body may fail before the write reads it (while the lease is written): the write then
    // finds it destroyed and fails; the error must not go unheard meanwhile.
    body.on('error', () => undefined);
    try {
      const name = blobName(blob.digest);
      // Mostly covered already: the facade asks `has` before every upload.
      await this.cover(blob.digest);
      const version = await this.backend.writeIfAbsent(name, { body, ref: blob }, {}, signal);
      if (version === undefined) return;
      this.stored.add(blob.digest);
      await unlessRefused(async () => this.backend.seals?.set(blob.digest, version));
    } catch (err) {
      // Nothing more is read: the sender sees the upload fail.
      body.destroy();
      throw err;
    }
  }
}
