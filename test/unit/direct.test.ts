import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as sinon from 'sinon';
import { Readable } from 'stream';
import { DirectCache, entryReader } from '../../tasks/DockerBuildxCacheV1/src/cache/direct';
import { planCache } from '../../tasks/DockerBuildxCacheV1/src/cache/plan';
import { CacheError } from '../../tasks/DockerBuildxCacheV1/src/cache/trouble';
import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import type { DockerCli } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import { RegistryFacade } from '../../tasks/DockerBuildxCacheV1/src/facade/facade';
import { basicAuth } from '../../tasks/DockerBuildxCacheV1/src/facade/protocol';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import {
  EntryUnusableError,
  type BlobRef,
  type BlobSink,
  type CacheStore,
  type Entry,
  type EntryHead,
  type OpenedEntry,
} from '../../tasks/DockerBuildxCacheV1/src/store/types';
import { tempDir, writeTree } from '../helpers';
import { cacheFolder, cacheLayout, desc, type Blob } from '../oci-fixture';

const TAGGED = { 'org.opencontainers.image.ref.name': 'latest' };

/** An entry of key `key` in scope `scope`, holding the layout's blobs. */
function entryOf(id: string, key: string, scope: string, created: string, layout: ReturnType<typeof cacheLayout>): Entry {
  return {
    id,
    key,
    segments: key.split('|'),
    scope,
    created,
    lastUsed: created,
    root: layout.root.digest,
    index: { schemaVersion: 2, manifests: [{ ...desc(layout.root), annotations: TAGGED }] },
    blobs: layout.blobs.map((b) => ({ digest: b.digest, size: b.size })),
  };
}

/** The store's blob-by-blob API over memory: entries named `unusable-*` cannot be opened. */
class MemoryStore {
  readonly description = 'memory store';
  readonly blobs = new Map<string, Buffer>();
  readonly opened: string[] = [];
  readonly closed: string[] = [];
  readonly corrupted: string[] = [];
  readonly kept: string[] = [];
  readonly ended: string[] = [];
  readonly touched: string[] = [];

  constructor(readonly entries: Entry[]) {}

  add(blobs: readonly Blob[]): void {
    for (const b of blobs) this.blobs.set(b.digest, b.data);
  }

  list(scopes: readonly string[]): Promise<{ entries: EntryHead[]; skipped: string[] }> {
    return Promise.resolve({ entries: this.entries.filter((e) => scopes.includes(e.scope)), skipped: [] });
  }

  openEntry(head: EntryHead): Promise<OpenedEntry> {
    this.opened.push(head.id);
    if (head.id.startsWith('unusable')) return Promise.reject(new EntryUnusableError('a blob is missing'));
    const entry = this.entries.find((e) => e.id === head.id) as Entry;
    return Promise.resolve({
      entry,
      bytesDownloaded: 0,
      open: (digest: string) => Promise.resolve(Readable.from([this.blobs.get(digest) ?? Buffer.alloc(0)])),
      corrupt: (digest: string) => {
        this.corrupted.push(digest);
        return Promise.resolve();
      },
      close: () => {
        this.closed.push(head.id);
        return Promise.resolve();
      },
    });
  }

  beginUpload(): Promise<BlobSink> {
    return Promise.resolve({
      leaseId: 'lease-1',
      has: (digest: string) => Promise.resolve(this.blobs.get(digest)?.length),
      settle: () => Promise.resolve(),
      keep: (digests: readonly string[]) => {
        this.kept.push(...digests);
        return Promise.resolve();
      },
      put: async (blob: BlobRef, body: Readable) => {
        const chunks: Buffer[] = [];
        for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
        this.blobs.set(blob.digest, Buffer.concat(chunks));
      },
      open: (digest: string) => {
        const data = this.blobs.get(digest);
        return data === undefined ? Promise.reject(new Error(`${digest} is missing`)) : Promise.resolve(Readable.from([data]));
      },
      bytesDownloaded: 0,
    });
  }

  endUpload(leaseId: string): Promise<void> {
    this.ended.push(leaseId);
    return Promise.resolve();
  }

  touch(head: EntryHead): Promise<void> {
    this.touched.push(head.id);
    return Promise.resolve();
  }
}

const asStore = (m: MemoryStore): CacheStore => m as unknown as CacheStore;

async function request(cache: DirectCache, method: string, url: string, body?: Buffer, type?: string): Promise<Response> {
  const f = cache.facade;
  return fetch(`http://${f.host}${url}`, {
    method,
    headers: { authorization: `Basic ${basicAuth(f.username, f.password)}`, ...(type === undefined ? {} : { 'content-type': type }) },
    body,
  });
}

describe('direct: the store served to BuildKit through the registry facade', () => {
  const old = cacheLayout(['old layer']);
  const exact = cacheLayout(['exact layer', 'second layer']);
  const spoolDir = tempDir('dbxc-direct-spool-');
  const open = (store: MemoryStore, save: boolean, key = ['k', 'v2']): Promise<DirectCache> =>
    DirectCache.open({ store: asStore(store), scopes: ['main'], key, restoreKeys: [['k']], save, spoolDir });

  // the entries in the store → the hit, the entry opened, the entries tried, what was skipped
  const table: [string, Entry[], string, string | undefined, string[], number][] = [
    [
      'the exact key before a restore key',
      [entryOf('e1', 'k|v1', 'main', '2026-01-01T00:00:00Z', old), entryOf('e2', 'k|v2', 'main', '2025-01-01T00:00:00Z', exact)],
      'true',
      'e2',
      ['e2'],
      0,
    ],
    ['a restore key', [entryOf('e1', 'k|v1', 'main', '2026-01-01T00:00:00Z', old)], 'inexact', 'e1', ['e1'], 0],
    [
      'an entry that cannot be opened is skipped',
      [entryOf('unusable-1', 'k|v2', 'main', '2026-01-01T00:00:00Z', exact), entryOf('e1', 'k|v1', 'main', '2026-01-01T00:00:00Z', old)],
      'inexact',
      'e1',
      ['unusable-1', 'e1'],
      1,
    ],
    ['a miss', [entryOf('e9', 'other', 'main', '2026-01-01T00:00:00Z', old)], 'false', undefined, [], 0],
    ['another scope is not read', [entryOf('e1', 'k|v2', 'feature', '2026-01-01T00:00:00Z', exact)], 'false', undefined, [], 0],
  ];
  for (const [title, entries, hit, id, tried, skipped] of table) {
    it(title, async () => {
      const store = new MemoryStore(entries);
      const cache = await open(store, false);
      try {
        assert.equal(cache.hit, hit);
        assert.equal(cache.entry?.id, id);
        assert.deepEqual(store.opened, tried);
        assert.equal(cache.skipped.length, skipped);
        const flags = cache.flags('max', 'gzip');
        assert.deepEqual(flags.from, id === undefined ? [] : [`type=registry,ref=${cache.facade.importRef}`]);
        assert.deepEqual(flags.to, []);
      } finally {
        await cache.close();
      }
      assert.deepEqual(store.closed, id === undefined ? [] : [id]);
    });
  }

  it('serves the entry as the import tag and its blobs, verified', async () => {
    const store = new MemoryStore([entryOf('e2', 'k|v2', 'main', '2026-01-01T00:00:00Z', exact)]);
    store.add(exact.blobs);
    const cache = await open(store, false);
    try {
      const manifest = await request(cache, 'GET', `/v2/${cache.facade.repository}/manifests/restore`);
      assert.equal(manifest.status, 200);
      assert.equal(manifest.headers.get('docker-content-digest'), exact.root.digest);
      const layer = exact.layers[0] as Blob;
      const got = await request(cache, 'GET', `/v2/${cache.facade.repository}/blobs/${layer.digest}`);
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), layer.data);
      assert.deepEqual(await cache.trouble(), []);
    } finally {
      await cache.close();
    }
  });

  it('reports a blob that fails its digest to the store, and never serves it', async () => {
    const store = new MemoryStore([entryOf('e2', 'k|v2', 'main', '2026-01-01T00:00:00Z', exact)]);
    store.add(exact.blobs);
    const layer = exact.layers[0] as Blob;
    store.blobs.set(layer.digest, Buffer.from('tampered layer'.padEnd(layer.size, '!')));
    const cache = await open(store, false);
    try {
      const got = await request(cache, 'GET', `/v2/${cache.facade.repository}/blobs/${layer.digest}`).then(
        async (r) => ({ status: r.status, body: Buffer.from(await r.arrayBuffer()) }),
        () => undefined,
      );
      assert.ok(got === undefined || got.status !== 200 || !got.body.equals(store.blobs.get(layer.digest) as Buffer));
      assert.deepEqual(
        (await cache.trouble()).map((e) => [e.kind, 'digest' in e ? e.digest : '']),
        [['corrupt', layer.digest]],
      );
      assert.deepEqual(store.corrupted, [layer.digest], 'the store is told, to drop its copy');
    } finally {
      await cache.close();
    }
  });

  it('takes the export into the upload and keeps its layout for the save, writing no entry', async () => {
    const store = new MemoryStore([]);
    store.add(exact.layers);
    const cache = await open(store, true);
    try {
      assert.equal(cache.sink?.leaseId, 'lease-1');
      const flags = cache.flags('max', 'zstd');
      assert.deepEqual(flags.from, []);
      assert.match(flags.to[0] ?? '', /^type=registry,ref=127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}:save,mode=max,compression=zstd,/);
      const repo = `/v2/${cache.facade.repository}`;
      // The layers are in the store: acknowledged. The cache config is uploaded, then the manifest pushed.
      for (const layer of exact.layers) assert.equal((await request(cache, 'HEAD', `${repo}/blobs/${layer.digest}`)).status, 200);
      const config = exact.blobs[exact.blobs.length - 2] as Blob;
      const started = await request(cache, 'POST', `${repo}/blobs/uploads/`);
      assert.equal(started.status, 202);
      const location = started.headers.get('location') ?? '';
      const put = await request(cache, 'PUT', `${location}?digest=${config.digest}`, config.data, 'application/octet-stream');
      assert.equal(put.status, 201);
      assert.equal(cache.exported === undefined, true, 'nothing is exported before the manifest');
      const pushed = await request(cache, 'PUT', `${repo}/manifests/save`, exact.root.data, exact.root.mediaType);
      assert.equal(pushed.status, 201);
      const layout = cache.exported;
      assert.ok(layout !== undefined);
      assert.equal(layout.root.digest, exact.root.digest);
      assert.deepEqual(new Set(layout.blobs.map((b) => b.digest)), new Set(exact.blobs.map((b) => b.digest)));
      assert.deepEqual(cache.facade.stats.uploaded, 1);
      assert.ok(store.blobs.has(config.digest));
    } finally {
      await cache.close();
    }
    // The upload's lease is the save's to end, not the facade's.
    assert.deepEqual(store.ended, []);
  });

  it("serves a repository of the job's own, so that another job's cleanup on the same engine never matches its references", async () => {
    const store = new MemoryStore([]);
    const [a, b] = [await open(store, false), await open(store, false)];
    try {
      assert.match(a.facade.repository, /^buildx-cache-[0-9a-f]{12}$/);
      assert.notEqual(a.facade.repository, b.facade.repository);
      assert.ok(a.facade.imageRef.startsWith(`${a.facade.host}/${a.facade.repository}:`));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("leases the restored entry's blobs for the export at once, and none without an upload", async () => {
    for (const save of [true, false]) {
      const store = new MemoryStore([entryOf('e2', 'k|v2', 'main', '2026-01-01T00:00:00Z', exact)]);
      store.add(exact.blobs);
      const cache = await open(store, save);
      await cache.close();
      assert.deepEqual(store.kept, save ? exact.blobs.map((b) => b.digest) : []);
    }
  });

  it('refuses an entry whose index tags no root', () => {
    const entry = { ...entryOf('e1', 'k', 'main', '2026-01-01T00:00:00Z', old), index: { schemaVersion: 2, manifests: [desc(old.root)] } };
    const opened: OpenedEntry = {
      entry,
      bytesDownloaded: 0,
      open: () => Promise.reject(new Error('no')),
      corrupt: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
    assert.throws(() => entryReader(opened), EntryUnusableError);
  });
});

describe('direct: every way out without a save ends the upload', () => {
  const spoolDir = tempDir('dbxc-direct-spool-');
  const exact = cacheLayout(['exact layer']);
  const entries = (): Entry[] => [entryOf('e1', 'k|v2', 'main', '2026-01-01T00:00:00Z', exact)];
  afterEach(() => sinon.restore());

  it('a facade that fails to start: the entry is closed and the upload ended', async () => {
    const store = new MemoryStore(entries());
    sinon.stub(RegistryFacade, 'start').rejects(new Error('EADDRINUSE (injected)'));
    await assert.rejects(
      DirectCache.open({ store: asStore(store), scopes: ['main'], key: ['k', 'v2'], restoreKeys: [], save: true, spoolDir }),
      /EADDRINUSE/,
    );
    assert.deepEqual([store.closed, store.ended], [['e1'], ['lease-1']]);
  });

  // handed on to a save or not → whether endUpload ends the lease (once, however often it is called)
  const table: [string, boolean, string[]][] = [
    ['not handed on: ended once', false, ['lease-1']],
    ['handed on to a save: the save ends it', true, []],
  ];
  for (const [title, handed, ended] of table) {
    it(title, async () => {
      const store = new MemoryStore(entries());
      const cache = await DirectCache.open({
        store: asStore(store),
        scopes: ['main'],
        key: ['k', 'v2'],
        restoreKeys: [],
        save: true,
        spoolDir,
      });
      if (handed) cache.handOn();
      await cache.discard();
      await cache.endUpload();
      assert.deepEqual([store.closed, store.ended], [['e1'], ended]);
    });
  }

  it('planCache: failOnCacheError and an entry skipped after the cache opened: the plan fails, the facade is closed, no lease is left', async () => {
    const ws = tempDir();
    writeTree(ws, { Dockerfile: 'FROM scratch\n' });
    const storePath = path.join(tempDir(), 'store');
    const inputs: Record<string, string> = {
      imageName: 'app',
      cacheBackend: 'local',
      localStorePath: storePath,
      cacheKey: 'k | v1',
      cacheTransport: 'direct',
      failOnCacheError: 'true',
    };
    const vars: Record<string, string> = { 'System.DefaultWorkingDirectory': ws, 'Pipeline.Workspace': tempDir(), 'Agent.OS': 'Linux' };
    const config = readConfig({ input: (name) => inputs[name] ?? '', variable: (name) => vars[name] });
    // A usable entry for the key, and beside it one that cannot be read: the listing skips it.
    const { dir } = cacheFolder(tempDir(), 'source', ['deps layer']);
    await new LocalStore(storePath).save({ cacheDir: dir, key: 'k|v1', segments: ['k', 'v1'], scope: 'refs/heads/main', now: new Date() });
    const scopeDir = path.join(storePath, 'v1', 'entries', fs.readdirSync(path.join(storePath, 'v1', 'entries'))[0] ?? '');
    fs.writeFileSync(path.join(scopeDir, '00000000000000-broken.json'), '{ not an entry');

    const started: RegistryFacade[] = [];
    const start = RegistryFacade.start.bind(RegistryFacade);
    sinon.stub(RegistryFacade, 'start').callsFake(async (options) => {
      const f = await start(options);
      started.push(f);
      return f;
    });
    const close = sinon.spy(RegistryFacade.prototype, 'close');
    const endUpload = sinon.spy(LocalStore.prototype, 'endUpload');
    try {
      await assert.rejects(
        planCache({
          config,
          id: 'job',
          docker: {} as DockerCli,
          keys: { key: ['k', 'v1'], restoreKeys: [] },
          branch: { sourceBranch: 'refs/heads/main' },
          job: { timed: (_title, work) => work() },
          tempRoot: tempDir(),
        }),
        (err: Error) => err instanceof CacheError && /broken/.test(err.message),
      );
      assert.equal(started.length, 1, 'the facade had started');
      assert.equal(close.callCount, 1, 'and was closed');
      assert.equal(endUpload.callCount, 1, 'the upload was ended');
    } finally {
      await Promise.all(started.map((f) => f.close()));
    }
    const leases = path.join(storePath, 'v1', 'leases');
    assert.deepEqual(fs.existsSync(leases) ? fs.readdirSync(leases) : [], [], "the entry's lease was released");
  });
});
