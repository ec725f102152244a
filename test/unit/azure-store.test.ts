import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { Readable } from 'stream';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { connectionString, ensureAzurite, freshContainer, PrivateAzurite } from '../../scripts/azurite';
import { verifyLayout } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { AzureBlobStore, type BlobStoreOptions } from '../../tasks/DockerBuildxCacheV1/src/store/blob';
import { restoreFromStore } from '../../tasks/DockerBuildxCacheV1/src/store/restore';
import { isSdkRequestAbort } from '../../tasks/DockerBuildxCacheV1/src/task/stray';
import { cleanup, tempDir } from '../helpers';
import { blobFiles, cacheFolder, cacheLayout, type Blob } from '../oci-fixture';

/**
 * A reverse proxy in front of Azurite that records each request, and can stop answering: the
 * requests a store makes are then visible, and a store that hangs can be made. `before` runs
 * before a request is passed on, so that a test can act at an exact point of a store operation.
 */
class RecordingProxy {
  readonly requests: string[] = [];
  hang = false;
  before?: (request: string) => Promise<void>;
  /** When set, the response to each request it matches is cut off (the connection closed) after this many bytes. */
  cut?: { readonly at: RegExp; readonly after: number; count: number };
  private readonly server: http.Server;

  constructor(private readonly target: URL) {
    this.server = http.createServer((req, res) => void this.forward(req, res));
  }

  private async forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const request = `${req.method ?? ''} ${req.url ?? ''}`;
    this.requests.push(request);
    if (this.hang) return;
    await this.before?.(request);
    const up = http.request(
      { host: this.target.hostname, port: this.target.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        const cut = this.cut;
        if (cut?.at.test(request) === true) {
          let sent = 0;
          r.on('data', (chunk: Buffer) => {
            sent += chunk.length;
            if (sent <= cut.after) return;
            cut.count++;
            res.destroy();
            r.destroy();
          });
        }
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${this.target.pathname}`;
  }

  /** The writes, as `METHOD what`: blob uploads, block uploads, metadata. */
  writes(): string[] {
    return this.requests.filter((r) => r.startsWith('PUT ') || r.startsWith('DELETE '));
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const containerAt = (blobUrl: string, name: string): ContainerClient =>
  BlobServiceClient.fromConnectionString(connectionString(blobUrl)).getContainerClient(name);
const big = (seed: string, size: number): string => seed.repeat(Math.ceil(size / seed.length)).slice(0, size);

describe('store: Azure Blob only (Azurite)', function () {
  this.timeout(120000);
  let blobUrl: string;
  let container: ContainerClient;
  let proxy: RecordingProxy;
  let work: string;
  const now = new Date('2026-11-28T12:00:00Z');

  before(() => {
    ({ blobUrl } = ensureAzurite());
  });
  beforeEach(async () => {
    container = freshContainer(blobUrl);
    await container.create();
    proxy = new RecordingProxy(new URL(blobUrl));
    work = tempDir('dbxc-azure-');
  });
  afterEach(async () => {
    await proxy.stop();
    cleanup();
  });

  /** The store, through the recording proxy. */
  async function store(options: BlobStoreOptions = {}): Promise<AzureBlobStore> {
    const url = await proxy.start();
    return new AzureBlobStore(containerAt(url, container.containerName), 'test', { graceMinutes: 0, ...options });
  }
  const folder = (label: string, layers: string[]): ReturnType<typeof cacheFolder> => cacheFolder(work, label, layers);
  const request = (dir: string, at = now): Parameters<AzureBlobStore['save']>[0] => ({
    cacheDir: dir,
    key: 'k|a',
    segments: ['k', 'a'],
    scope: 'refs/heads/main',
    now: at,
  });

  it('an unchanged cache uploads nothing but a last-use mark', async () => {
    const s = await store();
    const { dir } = folder('v1', ['deps', 'app']);
    await s.save(request(dir));
    proxy.requests.length = 0;
    const again = await s.save(request(dir, new Date(now.getTime() + 60_000)));
    assert.equal(again.status, 'unchanged');
    assert.deepEqual(
      proxy.writes().map((w) => w.replace(/\/v1\/entries\/[^?]+/, '/v1/entries/<entry>')),
      [`PUT /devstoreaccount1/${container.containerName}/v1/entries/<entry>?comp=metadata`],
    );
  });

  it('finds the entry with one listing per scope read, however many entries other scopes hold, and reads one entry', async () => {
    const s = await store();
    const { dir } = folder('v1', ['deps', 'app']);
    const scopes = ['refs/heads/feature/x', 'refs/heads/main', 'refs/heads/master'];
    for (let i = 0; i < 12; i++) await s.save({ ...request(dir), scope: `refs/heads/other-${i}`, now: new Date(now.getTime() + i * 1000) });
    await s.save({ ...request(dir), key: 'k|b', segments: ['k', 'b'], now: new Date(now.getTime() + 20_000) });
    await s.save({ ...request(dir), now: new Date(now.getTime() + 30_000) });

    proxy.requests.length = 0;
    const outcome = await restoreFromStore(s, scopes, ['k', 'a'], [['k']], path.join(work, 'cache'));
    assert.equal(outcome.hit, 'true');
    const lists = proxy.requests.filter((r) => r.includes('comp=list'));
    assert.equal(lists.length, scopes.length, lists.join('\n'));
    for (const l of lists) assert.match(decodeURIComponent(l), /prefix=v1\/entries\/[^&]+\//);
    assert.equal(
      proxy.requests.filter((r) => r.startsWith('GET ') && r.includes('/v1/entries/') && !r.includes('comp=')).length,
      1,
      'one entry downloaded',
    );
  });

  it('restore downloads only the blobs the cache folder lacks, and verifies the ones it has', async () => {
    const s = await store();
    const v1 = folder('v1', ['deps', 'app v1']);
    const v2 = folder('v2', ['deps', 'app v2']);
    await s.save(request(v1.dir));
    const saved = await s.save(request(v2.dir, new Date(now.getTime() + 1000)));
    // The cache folder holds v1, as the last job left it; one of its blobs was damaged meanwhile.
    const cacheDir = path.join(work, 'cache');
    fs.cpSync(v1.dir, cacheDir, { recursive: true });
    const deps = v1.layout.layers[0];
    assert.ok(deps !== undefined);
    fs.writeFileSync(path.join(cacheDir, 'blobs', 'sha256', deps.digest.slice(7)), 'DAMAGED');

    proxy.requests.length = 0;
    const stats = await s.restore(saved.entry, cacheDir);
    const fresh = v2.layout.blobs.filter((b) => !v1.layout.blobs.some((o) => o.digest === b.digest) || b.digest === deps.digest);
    assert.equal(
      stats.downloaded,
      fresh.reduce((a, b) => a + b.size, 0),
    );
    assert.equal(stats.linked, v2.layout.blobs.length - fresh.length);
    const downloads = proxy.requests
      .filter((r) => r.startsWith('GET ') && r.includes('/v1/blobs/'))
      .map((r) => `sha256:${r.split('/').pop() ?? ''}`);
    assert.deepEqual(downloads.sort(), fresh.map((b) => b.digest).sort());
    await verifyLayout(cacheDir);
    assert.deepEqual(blobFiles(cacheDir), v2.layout.blobs.map((b) => b.digest).sort());
  });

  it('uploads a large blob as parallel blocks, created only if absent', async () => {
    const s = await store({ singleShotBytes: 1 << 20, blockBytes: 256 << 10, blockConcurrency: 4 });
    const { dir, layout } = folder('big', [big('layer ', 3 << 20)]);
    const saved = await s.save(request(dir));
    assert.equal(saved.newBlobs, layout.blobs.length);
    const layer = layout.layers[0]?.digest.slice(7) ?? '';
    const blocks = proxy.writes().filter((w) => w.includes(layer) && w.includes('comp=block&'));
    assert.equal(blocks.length, 12);
    assert.equal(proxy.writes().filter((w) => w.includes(layer) && w.includes('comp=blocklist')).length, 1);
    await s.restore(saved.entry, path.join(work, 'r'));
    await verifyLayout(path.join(work, 'r'));
  });

  it('keeps an unreferenced blob younger than the grace period: a save may be about to reference it', async () => {
    const s = await store({ graceMinutes: 60 });
    const { dir, layout } = folder('v1', ['deps']);
    await s.save({ ...request(dir), now: new Date('2026-10-01T00:00:00Z') });
    const report = await s.prune({ retentionDays: 7, now });
    assert.equal(report.entriesRemoved, 1);
    assert.equal(report.blobsRemoved, 0);
    assert.equal(report.after.blobs, layout.blobs.length);
  });

  it('a store that stops answering gives up within its time budget', async () => {
    const s = await store({ budgetMs: 2000 });
    proxy.hang = true;
    await assert.rejects(restoreFromStore(s, ['refs/heads/main'], ['k', 'a'], [], path.join(work, 'r')), /abort/i);
  });

  it('a store that cannot be reached fails after its retries, not never', async () => {
    const s = new AzureBlobStore(containerAt('http://127.0.0.1:9/devstoreaccount1', 'nowhere'), 'test');
    await assert.rejects(s.list(['refs/heads/main']), /ECONNREFUSED|connect/i);
  });

  // The save is stopped at an exact request, so that it is always cut short in the middle (a fixed
  // delay let a fast save finish first); the store must give up within its budget.
  const BUDGET_MS = 3000;
  const KILLED_AT: [string, RegExp][] = [
    ['while it uploads blocks of a blob', /^PUT .*\/v1\/blobs\/.*comp=block&/],
    ['just before it writes the entry', /^PUT .*\/v1\/entries\//],
  ];
  for (const [when, at] of KILLED_AT) {
    it(`Azurite killed ${when}: the save fails within its budget, a later restore is a clean miss or a clean hit, and the next save works`, async () => {
      const azurite = new PrivateAzurite(tempDir('dbxc-azurite-'));
      await azurite.start();
      const front = new RecordingProxy(new URL(azurite.blobUrl));
      try {
        await containerAt(azurite.blobUrl, 'crash').create();
        const s = new AzureBlobStore(containerAt(await front.start(), 'crash'), 'test', {
          singleShotBytes: 1 << 20,
          blockBytes: 256 << 10,
          budgetMs: BUDGET_MS,
        });
        const { dir, layout } = folder(
          'big',
          Array.from({ length: 6 }, (_, i) => big(`layer ${i} `, 2 << 20)),
        );
        let killed = false;
        front.before = async (r) => {
          if (killed || !at.test(r)) return;
          killed = true;
          await azurite.kill();
        };
        const started = Date.now();
        await assert.rejects(s.save(request(dir)));
        assert.ok(killed, `the save never sent a request matching ${String(at)}`);
        // A correctness bound, not a speed figure: an operation that ignored its budget would hang here.
        assert.ok(
          Date.now() - started < BUDGET_MS + 10_000,
          `the save gave up after ${Date.now() - started} ms, with a budget of ${BUDGET_MS} ms`,
        );
        front.before = undefined;

        await azurite.start();
        const target = path.join(work, 'restored');
        const outcome = await restoreFromStore(s, ['refs/heads/main'], ['k', 'a'], [], target);
        if (outcome.hit === 'false') assert.ok(!fs.existsSync(target), 'a miss leaves no folder');
        else await verifyLayout(target);
        const again = await s.save(request(dir, new Date(now.getTime() + 1000)));
        assert.ok(again.entry.blobs.length === layout.blobs.length);
        const after = await restoreFromStore(s, ['refs/heads/main'], ['k', 'a'], [], path.join(work, 'after'));
        assert.equal(after.hit, 'true');
        await verifyLayout(path.join(work, 'after'));
      } finally {
        await front.stop();
        await azurite.kill();
      }
    });
  }
  /** A private Azurite behind a recording proxy, with a store on it that gives up after BUDGET_MS. */
  async function killable(): Promise<{ azurite: PrivateAzurite; front: RecordingProxy; store: AzureBlobStore; done: () => Promise<void> }> {
    const azurite = new PrivateAzurite(tempDir('dbxc-azurite-'));
    await azurite.start();
    const front = new RecordingProxy(new URL(azurite.blobUrl));
    await containerAt(azurite.blobUrl, 'crash').create();
    const s = new AzureBlobStore(containerAt(await front.start(), 'crash'), 'test', {
      singleShotBytes: 1 << 20,
      blockBytes: 256 << 10,
      budgetMs: BUDGET_MS,
    });
    // A kill while a request's signal aborts can make the Azure SDK raise its abort error where nobody
    // listens any more, as an error event or a rejection (see isSdkRequestAbort): the task's own handler takes that as a
    // connection's failure; here it is dropped, and every other uncaught error still fails the test.
    const events = ['uncaughtException', 'unhandledRejection'];
    const proc = process as unknown as NodeJS.EventEmitter;
    const mochas = events.map((event) => proc.listeners(event) as ((err: unknown, ...rest: unknown[]) => void)[]);
    const filters = events.map((_, i) => (err: unknown, ...rest: unknown[]): void => {
      if (!isSdkRequestAbort(err)) for (const l of mochas[i] ?? []) l(err, ...rest);
    });
    events.forEach((event, i) => {
      proc.removeAllListeners(event);
      proc.on(event, filters[i] as (err: unknown) => void);
    });
    const restore = (): void =>
      events.forEach((event, i) => {
        proc.off(event, filters[i] as (err: unknown) => void);
        for (const l of mochas[i] ?? []) proc.on(event, l);
      });
    return {
      azurite,
      front,
      store: s,
      done: async () => {
        try {
          await front.stop();
          await azurite.kill();
        } finally {
          restore();
        }
      },
    };
  }

  /** Reads the first chunk of a stream, then waits until told to read the rest: the download is then surely in flight. */
  async function firstChunk(stream: Readable): Promise<{ rest: () => Promise<Buffer> }> {
    const chunks: Buffer[] = [];
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done === true) throw new Error('the stream was empty');
    chunks.push(first.value as Buffer);
    return {
      rest: async () => {
        for (let next = await it.next(); next.done !== true; next = await it.next()) chunks.push(next.value as Buffer);
        return Buffer.concat(chunks);
      },
    };
  }

  it('a connection that breaks off while a blob streams to the facade: the download resumes where it stopped, every byte intact', async () => {
    const s = await store();
    const { dir, layout } = folder('big', [big('layer resumed ', 8 << 20)]);
    const saved = await s.save(request(dir));
    const opened = await s.openEntry(saved.entry);
    const layer = layout.layers[0];
    assert.ok(layer !== undefined);
    // The first two responses for the layer are cut off after 1 MiB each.
    proxy.cut = { at: new RegExp(`^GET .*${layer.digest.slice(7)}`), after: 1 << 20, count: 0 };
    const data = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      void opened.open(layer.digest, AbortSignal.timeout(60_000)).then((stream) => {
        stream.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          if (proxy.cut !== undefined && proxy.cut.count >= 2) proxy.cut = undefined;
        });
        stream.on('end', () => resolve(Buffer.concat(chunks)));
        stream.on('error', reject);
      }, reject);
    });
    assert.ok(data.equals(layer.data));
    const gets = proxy.requests.filter((r) => r.startsWith('GET ') && r.includes(layer.digest.slice(7)));
    assert.ok(gets.length >= 2, gets.join('\n'));
    assert.equal(opened.bytesDownloaded, layer.size);
    await opened.close();
  });

  it('Azurite killed while a blob streams to the facade for good: the stream fails by its signal, never ends short', async () => {
    const k = await killable();
    try {
      const { dir, layout } = folder('big', [big('layer lost ', 24 << 20)]);
      const saved = await k.store.save(request(dir));
      const opened = await k.store.openEntry(saved.entry);
      const layer = layout.layers[0] as Blob;
      const started = Date.now();
      const reading = await firstChunk(await opened.open(layer.digest, AbortSignal.timeout(BUDGET_MS)));
      await k.azurite.kill();
      await assert.rejects(reading.rest());
      // A correctness bound, not a speed figure: a stream that ignored its signal would hang here.
      assert.ok(Date.now() - started < BUDGET_MS + 10_000, `the stream failed after ${Date.now() - started} ms`);
      assert.ok(opened.bytesDownloaded < layer.size);
      await opened.close();
    } finally {
      await k.done();
    }
  });

  it('Azurite killed while a put uploads blocks: the put fails within its signal, and after the restart the blob is absent and can be put', async () => {
    const k = await killable();
    try {
      const layer = cacheLayout([big('layer put ', 4 << 20)]).layers[0] as Blob;
      const sink = await k.store.beginUpload();
      let killed = false;
      k.front.before = async (r) => {
        if (killed || !/^PUT .*\/v1\/blobs\/.*comp=block&/.test(r)) return;
        killed = true;
        await k.azurite.kill();
      };
      const started = Date.now();
      await assert.rejects(
        sink.put({ digest: layer.digest, size: layer.size }, Readable.from([layer.data]), AbortSignal.timeout(BUDGET_MS)),
      );
      assert.ok(killed, 'the put sent a block');
      assert.ok(Date.now() - started < BUDGET_MS + 10_000, `the put failed after ${Date.now() - started} ms`);
      k.front.before = undefined;
      await k.azurite.start();
      // Azurite keeps its state in memory between saves of it: a kill may lose the container.
      await containerAt(k.azurite.blobUrl, 'crash').createIfNotExists();
      assert.equal(await sink.has(layer.digest, AbortSignal.timeout(BUDGET_MS)), undefined);
      await sink.put({ digest: layer.digest, size: layer.size }, Readable.from([layer.data]), AbortSignal.timeout(30_000));
      assert.equal(await sink.has(layer.digest, AbortSignal.timeout(BUDGET_MS)), layer.size);
      await k.store.endUpload(sink.leaseId);
    } finally {
      await k.done();
    }
  });
});
