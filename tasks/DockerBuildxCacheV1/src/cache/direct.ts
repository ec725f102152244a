import * as crypto from 'crypto';
import { cacheRoot, parseIndex, type Descriptor } from '../oci/layout';
import { firstUsable, type Usable } from '../store/restore';
import { EntryUnusableError, type BlobSink, type CacheStore, type EntryHead, type HitKind, type OpenedEntry } from '../store/types';
import type { CacheFlags } from '../docker/args';
import type { CacheMode, Compression } from '../config/types';
import { RegistryFacade } from '../facade/facade';
import { facadeCacheFlags } from '../facade/flags';
import type { EntryReader, EntryWriter, ExportedLayout, FacadeEvent } from '../facade/types';
import { info } from '../task/agent';
import { loc } from '../task/messages';

/** What the direct transport needs: the store, what to look for in it, and whether the export is saved. */
export interface DirectRequest {
  readonly store: CacheStore;
  readonly scopes: readonly string[];
  readonly key: readonly string[];
  readonly restoreKeys: readonly (readonly string[])[];
  /** Whether the export goes to the store: an upload begins, under its lease. */
  readonly save: boolean;
  /** Where the facade spools chunked uploads, and keeps its copies of blobs (keepCopiesFromNow). */
  readonly spoolDir: string;
  readonly now?: Date;
}

/**
 * The facade's repository, a name of this job's own: the engine's references to it (the prefetch's
 * tag, the pulled image's digest) are then this job's alone, so that the post-job step of a job
 * stopped mid-build, which removes what is left under its repository, never touches those of
 * another job on the same engine that got the same port since.
 */
export function jobRepository(): string {
  return `buildx-cache-${crypto.randomBytes(6).toString('hex')}`;
}

/** An entry opened, and the facade's view of it. */
interface Opened {
  readonly opened: OpenedEntry;
  readonly reader: EntryReader;
}

/** The restored entry as the facade reads it: its root, its blobs, and the store's stream of each. */
export function entryReader(opened: OpenedEntry): EntryReader {
  const index = parseIndex(JSON.stringify(opened.entry.index ?? null), "the entry's index");
  const root: Descriptor | undefined = cacheRoot(index);
  if (root === undefined) throw new EntryUnusableError('its index has no manifest tagged "latest"');
  const mediaType = root.mediaType;
  if (mediaType === undefined) throw new EntryUnusableError('its root has no media type');
  return {
    root: { ...root, mediaType },
    blobs: opened.entry.blobs,
    open: (digest, signal) => opened.open(digest, signal),
    corrupt: (digest) => void opened.corrupt(digest),
  };
}

/**
 * The export's side of the facade: the store's upload, blob by blob. The commit writes nothing: the
 * facade keeps the layout (`exported`), which the post-job step saves as the entry (saveLayout),
 * so that a build or a job that fails after the export writes no entry.
 */
export function uploadWriter(sink: BlobSink): EntryWriter {
  return {
    has: (digest, signal) => sink.has(digest, signal),
    put: (blob, body, signal) => sink.put(blob, body, signal),
    commit: () => Promise.resolve(),
    open: (digest, signal) => sink.open(digest, signal),
  };
}

/**
 * The cache of one build through the registry facade: the best entry for the key opened in the
 * store (the exact key first, then each restore key, in the scopes in order, newest first; an entry
 * that cannot be opened is skipped, as a restore skips it), an upload begun for the export, and
 * the facade serving both on loopback. Its owner closes it after the build.
 */
export class DirectCache {
  private closed = false;
  private handed = false;
  private ended = false;

  private constructor(
    private readonly store: CacheStore,
    readonly facade: RegistryFacade,
    readonly hit: HitKind,
    /** Entries skipped, each with why. */
    readonly skipped: readonly string[],
    /** The lease write for the restored entry's blobs: done before the upload ends. */
    private readonly keeping: Promise<void>,
    readonly opened?: OpenedEntry,
    readonly sink?: BlobSink,
  ) {}

  static async open(req: DirectRequest): Promise<DirectCache> {
    // The upload begins while the entry is looked for: neither waits for the other's round trips.
    const uploading = req.save ? req.store.beginUpload() : Promise.resolve(undefined);
    const begun = uploading.then(
      (sink) => ({ sink }),
      (err: unknown) => ({ err }),
    );
    let usable: Usable<Opened>;
    try {
      usable = await DirectCache.find(req);
    } catch (err) {
      const upload = await begun;
      if ('sink' in upload && upload.sink !== undefined) await endUpload(req.store, upload.sink.leaseId);
      throw err;
    }
    const skipped = usable.skipped;
    const found = usable.hit === 'false' ? undefined : { ...usable.value, hit: usable.hit };
    let sink: BlobSink | undefined;
    let keeping: Promise<void> = Promise.resolve();
    try {
      const upload = await begun;
      if ('err' in upload) throw upload.err;
      sink = upload.sink;
      // The export asks about the restored entry's blobs one by one: they are leased for it at once,
      // while the build starts (a failed write is the first `has`'s to try again).
      if (found !== undefined && sink !== undefined) keeping = sink.keep(found.reader.blobs.map((b) => b.digest)).catch(() => undefined);
      const facade = await RegistryFacade.start({
        repository: jobRepository(),
        reader: found?.reader,
        writer: sink === undefined ? undefined : uploadWriter(sink),
        spoolDir: req.spoolDir,
      });
      return new DirectCache(req.store, facade, found?.hit ?? 'false', skipped, keeping, found?.opened, sink);
    } catch (err) {
      await found?.opened.close().catch(() => undefined);
      await keeping;
      if (sink !== undefined) await endUpload(req.store, sink.leaseId);
      throw err;
    }
  }

  /** The candidates as a restore takes them; an entry that cannot be opened is skipped, with why. */
  private static find(req: DirectRequest): Promise<Usable<Opened>> {
    return firstUsable(
      req.store,
      req.scopes,
      req.key,
      req.restoreKeys,
      async (entry) => {
        const opened = await req.store.openEntry(entry);
        try {
          return { opened, reader: entryReader(opened) };
        } catch (err) {
          await opened.close().catch(() => undefined);
          throw err;
        }
      },
      req.now ?? new Date(),
    );
  }

  /** The upload went on to a save (the main step's, or the post-job step's state): its lease is the save's to end. */
  handOn(): void {
    this.handed = true;
  }

  /** The restored entry, when there is one. */
  get entry(): EntryHead | undefined {
    return this.opened?.entry;
  }

  /** The `--cache-from` and `--cache-to` specs that point BuildKit at the facade. */
  flags(mode: CacheMode, compression: Compression): CacheFlags {
    return facadeCacheFlags(
      {
        importRef: this.opened === undefined ? undefined : this.facade.importRef,
        exportRef: this.sink === undefined ? undefined : this.facade.exportRef,
      },
      mode,
      compression,
    );
  }

  /** The export, once its manifest arrived complete with every blob in the store. */
  get exported(): ExportedLayout | undefined {
    return this.facade.exported;
  }

  /** What went wrong so far, after the requests in flight are done and the upload's lease items written: a save may follow. */
  async trouble(): Promise<FacadeEvent[]> {
    await this.facade.idle();
    await this.settle();
    return this.facade.events.filter((e) => e.kind !== 'committed');
  }

  /** Bytes that came from the store over the network (a remote store): the entry's, and the pushed image's for the engine's pull. */
  get bytesDownloaded(): number {
    return (this.opened?.bytesDownloaded ?? 0) + (this.sink?.bytesDownloaded ?? 0);
  }

  /** The reference to push the image to for the engine to pull it; undefined without an upload (a read-only cache). */
  get imageRef(): string | undefined {
    return this.sink === undefined ? undefined : this.facade.imageRef;
  }

  /**
   * Ends the upload without a save, on the store this cache holds, unless it went on to a save
   * (handOn) or has no upload. A failure is only logged: the lease expires by itself. Idempotent.
   */
  async endUpload(): Promise<void> {
    if (this.sink === undefined || this.handed || this.ended) return;
    this.ended = true;
    await this.keeping;
    await endUpload(this.store, this.sink.leaseId);
  }

  /** Closes the cache and ends its upload: what every way out without a save does. Never throws. */
  async discard(): Promise<void> {
    await this.close().catch(() => undefined);
    await this.endUpload();
  }

  /** Stops the facade and releases the entry's lease; the upload's lease is the save's (or endUpload's). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.facade.close();
    } finally {
      await this.settle();
      await this.opened?.close();
    }
  }

  /**
   * The upload's lease items, all written before the job goes on to its save, which lists them: the
   * restored blobs' and the record of the blobs stored (a failure to record only goes uncounted).
   */
  private async settle(): Promise<void> {
    await this.keeping;
    await this.sink?.settle().catch(() => undefined);
  }
}

/** Ends an upload lease without a save; a failure is only logged: the lease expires by itself. */
async function endUpload(store: CacheStore, leaseId: string): Promise<void> {
  try {
    await store.endUpload(leaseId);
  } catch (err) {
    info(loc('UploadNotEnded', (err as Error).message));
  }
}
