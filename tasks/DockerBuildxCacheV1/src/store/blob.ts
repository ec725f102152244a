import * as crypto from 'crypto';
import * as fs from 'fs';
import { pipeline as pipelineCallback, Transform, type Readable } from 'stream';
import { pipeline } from 'stream/promises';
import type { BlobDownloadResponseParsed, BlobItem, BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { algorithmOf, MAX_DOCUMENT_BYTES } from '../oci/layout';
import {
  StoreRefusedError,
  type BlobStream,
  type Fetched,
  type Listing,
  type OpenedBlob,
  type SourceFile,
  type StoreBackend,
  type StoredItem,
} from './backend';
import { DigestStream } from './digest-stream';
import { ResumingStream } from './resuming';
import { StoreEngine } from './engine';
import { digestOfBlobName } from './names';

export interface BlobStoreOptions {
  /** Blobs transferred at once. */
  readonly concurrency?: number;
  /** Blobs larger than this go up as blocks, `blockConcurrency` at once. */
  readonly singleShotBytes?: number;
  readonly blockBytes?: number;
  readonly blockConcurrency?: number;
  /** How long a save's lease protects the blobs it is about to reference. */
  readonly leaseMinutes?: number;
  /** An unreferenced blob younger than this is kept: a save may be about to reference it. */
  readonly graceMinutes?: number;
  /** Each restore, save or prune as a whole gives up after this long. */
  readonly budgetMs?: number;
}

/** How many times a blob's download is resumed after its connection broke off. */
const RESUMES = 5;

/** The HTTP status of an Azure Storage error, or undefined for anything else. */
function statusOf(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** A write that the credentials may not make (a read-only SAS: 403) becomes a StoreRefusedError. */
async function writing<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (statusOf(err) === 403) throw new StoreRefusedError((err as Error).message);
    throw err;
  }
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
 * The engine's items as blobs of one Azure Storage container. Entries carry what a listing needs
 * (key, scope, creation, last use, root) as metadata, so that choosing one takes one listing per
 * scope; blobs are created only if absent (If-None-Match: *), large ones in parallel blocks, and
 * streamed through their hash as they download; a delete is conditional on the ETag that was read.
 */
export class AzureBackend implements StoreBackend {
  readonly remote = true;
  private readonly singleShotBytes: number;
  private readonly blockBytes: number;
  private readonly blockConcurrency: number;

  constructor(
    private readonly container: ContainerClient,
    readonly description: string,
    options: BlobStoreOptions = {},
  ) {
    this.singleShotBytes = options.singleShotBytes ?? 8 << 20;
    this.blockBytes = options.blockBytes ?? 8 << 20;
    this.blockConcurrency = options.blockConcurrency ?? 4;
  }

  private item(b: BlobItem): StoredItem {
    return {
      name: b.name,
      size: b.properties.contentLength ?? 0,
      modified: b.properties.lastModified,
      version: b.properties.etag,
      metadata: b.metadata,
    };
  }

  async list(prefix: string, _depth: number, signal: AbortSignal, withMetadata = false): Promise<Listing> {
    const items: StoredItem[] = [];
    try {
      for await (const b of this.container.listBlobsFlat({ prefix, includeMetadata: withMetadata, abortSignal: signal }))
        items.push(this.item(b));
    } catch (err) {
      // A container that does not exist yet holds nothing.
      if (statusOf(err) !== 404) throw err;
    }
    return { items, strange: [] };
  }

  async stat(name: string, signal: AbortSignal): Promise<StoredItem | undefined> {
    const props = await unlessNotFound(this.container.getBlobClient(name).getProperties({ abortSignal: signal }));
    if (props === undefined) return undefined;
    return {
      name,
      size: props.contentLength ?? 0,
      modified: props.lastModified ?? new Date(0),
      version: props.etag ?? '',
      metadata: props.metadata,
    };
  }

  /** At most MAX_DOCUMENT_BYTES are downloaded: a larger item is refused. */
  async read(name: string, signal: AbortSignal): Promise<Buffer | undefined> {
    const response = await unlessNotFound(
      this.container.getBlobClient(name).download(0, MAX_DOCUMENT_BYTES + 1, { abortSignal: signal, maxRetryRequests: 5 }),
    );
    if (response?.readableStreamBody === undefined) return undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response.readableStreamBody) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size > MAX_DOCUMENT_BYTES) throw new Error(`${name} is larger than the ${MAX_DOCUMENT_BYTES} bytes it may have`);
    }
    return Buffer.concat(chunks);
  }

  /** Streams a blob to `dest`, hashing it as it goes. */
  async fetch(name: string, dest: string, signal: AbortSignal): Promise<Fetched | undefined> {
    const response = await unlessNotFound(
      this.container.getBlobClient(name).download(0, undefined, { abortSignal: signal, maxRetryRequests: 5 }),
    );
    if (response?.readableStreamBody === undefined) return undefined;
    const algorithm = algorithmOf(digestOfBlobName(name) ?? '');
    const hash = crypto.createHash(algorithm);
    let size = 0;
    const tee = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(response.readableStreamBody, tee, fs.createWriteStream(dest, { flags: 'wx' }), { signal });
    return { how: 'downloaded', version: response.etag ?? '', digest: `${algorithm}:${hash.digest('hex')}`, size };
  }

  /**
   * The blob's bytes as they download. A connection that breaks off is resumed where it stopped,
   * from the same version (If-Match), up to 5 times; the SDK's own resume gives up on a connection
   * that the other end closed. The requests themselves are retried by the SDK's retry policy.
   */
  async openStream(name: string, signal: AbortSignal): Promise<OpenedBlob | undefined> {
    const client = this.container.getBlobClient(name);
    // The signal bounds each request until its response starts; a body in flight is stopped by
    // destroying it (ResumingStream): the SDK's own abort of one errors a stream nobody listens to.
    const download = async (offset: number, ifMatch?: string): Promise<BlobDownloadResponseParsed> => {
      const requesting = new AbortController();
      const abort = (): void => requesting.abort(signal.reason);
      if (signal.aborted) abort();
      signal.addEventListener('abort', abort);
      try {
        return await client.download(offset, undefined, {
          abortSignal: requesting.signal,
          maxRetryRequests: 0,
          conditions: ifMatch === undefined ? undefined : { ifMatch },
        });
      } finally {
        signal.removeEventListener('abort', abort);
      }
    };
    const first = await unlessNotFound(download(0));
    if (first?.readableStreamBody === undefined) return undefined;
    const version = first.etag ?? '';
    const reopen = async (offset: number): Promise<NodeJS.ReadableStream> => {
      const next = (await download(offset, version)).readableStreamBody;
      if (next === undefined) throw new Error(`${name}: the download could not be resumed`);
      return next;
    };
    return { body: new ResumingStream(first.readableStreamBody, first.contentLength ?? 0, reopen, RESUMES, signal, name), version };
  }

  /**
   * Uploads a stream, checked as it passes: a small blob is gathered and sent in one request, a
   * large one goes up as blocks, committed (If-None-Match: *) only once the stream ended and
   * matched its digest. A body that errors or does not match commits nothing; the blocks it
   * staged are discarded by the service.
   */
  private uploadChecked(
    name: string,
    content: BlobStream,
    common: Parameters<BlockBlobClient['upload']>[2] & { abortSignal: AbortSignal },
  ): Promise<{ etag?: string }> {
    const client = this.container.getBlockBlobClient(name);
    const checked = new DigestStream(content.ref, true);
    // The body's errors reach `checked`; a failed `checked` stops the body.
    pipelineCallback(content.body, checked, () => undefined);
    if (content.ref.size <= this.singleShotBytes)
      return (async () => {
        const chunks: Buffer[] = [];
        for await (const chunk of checked) chunks.push(chunk as Buffer);
        const data = Buffer.concat(chunks);
        return client.upload(data, data.length, common);
      })();
    return this.uploadBlocks(client, checked, common);
  }

  /**
   * Stages the stream's blocks, `blockConcurrency` at once, and commits them when it ended. Not the
   * SDK's uploadStream, which stages its blocks without the abort signal: a put the facade gives up
   * on would go on retrying behind it.
   */
  private async uploadBlocks(
    client: BlockBlobClient,
    source: Readable,
    common: Parameters<BlockBlobClient['upload']>[2] & { abortSignal: AbortSignal },
  ): Promise<{ etag?: string }> {
    const stop = new AbortController();
    const abort = (): void => stop.abort(common.abortSignal.reason);
    common.abortSignal.addEventListener('abort', abort);
    const prefix = crypto.randomBytes(12).toString('hex');
    const ids: string[] = [];
    const staging = new Set<Promise<void>>();
    const stage = async (data: Buffer): Promise<void> => {
      const id = Buffer.from(`${prefix}-${String(ids.length).padStart(6, '0')}`).toString('base64');
      ids.push(id);
      const staged: Promise<void> = client
        .stageBlock(id, data, data.length, { abortSignal: stop.signal })
        .then(() => undefined)
        .finally(() => staging.delete(staged));
      // Awaited by the race or the final wait; a failure is not left unhandled meanwhile.
      staged.catch(() => undefined);
      staging.add(staged);
      if (staging.size >= this.blockConcurrency) await Promise.race(staging);
    };
    try {
      let block: Buffer[] = [];
      let held = 0;
      for await (const chunk of source) {
        let rest = chunk as Buffer;
        while (held + rest.length >= this.blockBytes) {
          const take = this.blockBytes - held;
          await stage(Buffer.concat([...block, rest.subarray(0, take)]));
          rest = rest.subarray(take);
          block = [];
          held = 0;
        }
        if (rest.length > 0) {
          block.push(rest);
          held += rest.length;
        }
      }
      if (held > 0) await stage(Buffer.concat(block));
      await Promise.all(staging);
      return await client.commitBlockList(ids, common);
    } finally {
      // Blocks still in flight after a failure are not retried on.
      stop.abort();
      common.abortSignal.removeEventListener('abort', abort);
    }
  }

  async writeIfAbsent(
    name: string,
    content: Buffer | SourceFile | BlobStream,
    options: { metadata?: Record<string, string> },
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const client = this.container.getBlockBlobClient(name);
    const common = {
      abortSignal: signal,
      conditions: { ifNoneMatch: '*' },
      metadata: options.metadata,
      blobHTTPHeaders: { blobContentType: name.endsWith('.json') ? 'application/json' : 'application/octet-stream' },
    };
    try {
      const response = await writing(
        Buffer.isBuffer(content)
          ? client.upload(content, content.length, common)
          : 'body' in content
            ? this.uploadChecked(name, content, common)
            : client.uploadFile(content.file, {
                ...common,
                maxSingleShotSize: this.singleShotBytes,
                blockSize: this.blockBytes,
                concurrency: this.blockConcurrency,
              }),
      );
      return response.etag ?? '';
    } catch (err) {
      // Someone else's complete upload won: content-addressed, so the same bytes.
      const status = statusOf(err);
      if (status === 409 || status === 412) return undefined;
      throw err;
    }
  }

  async deleteIfUnchanged(name: string, version: string | undefined, signal: AbortSignal): Promise<boolean> {
    try {
      return (
        await writing(
          this.container
            .getBlobClient(name)
            .deleteIfExists({ abortSignal: signal, conditions: version === undefined ? undefined : { ifMatch: version } }),
        )
      ).succeeded;
    } catch (err) {
      if (statusOf(err) === 412) return false;
      throw err;
    }
  }

  /** Writes the last use into the metadata: the only write of a save that changed nothing. */
  async touch(name: string, _at: Date, metadata: Record<string, string>, signal: AbortSignal): Promise<boolean> {
    return (await writing(unlessNotFound(this.container.getBlobClient(name).setMetadata(metadata, { abortSignal: signal })))) !== undefined;
  }

  /** A flat namespace holds nothing but blobs at a blob's name. */
  async quarantine(): Promise<void> {
    // Nothing to move.
  }

  async prepareWrites(signal: AbortSignal): Promise<void> {
    await this.container.createIfNotExists({ abortSignal: signal }).catch((err: unknown) => {
      // A SAS for one container may not create it; the uploads say whether it exists.
      if (statusOf(err) !== 403) throw err;
    });
  }
}

/**
 * A content-addressed store in an Azure Storage container: the store engine over its blobs.
 * Every blob is verified by digest as it is downloaded; blobs the cache folder already holds
 * intact are not downloaded again. An unreferenced blob younger than an hour is kept, because
 * another job's save may be about to reference it.
 */
export class AzureBlobStore extends StoreEngine {
  constructor(container: ContainerClient, description: string, options: BlobStoreOptions = {}) {
    const concurrency = options.concurrency ?? 8;
    super(new AzureBackend(container, description, options), {
      concurrency,
      writeConcurrency: Math.max(1, Math.floor(concurrency / 2)),
      leaseMinutes: options.leaseMinutes,
      graceMinutes: options.graceMinutes ?? 60,
      budgetMs: options.budgetMs ?? 15 * 60_000,
    });
  }
}
