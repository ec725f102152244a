import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Readable } from 'stream';
import { verifyLayout } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { StoreRefusedError } from '../../tasks/DockerBuildxCacheV1/src/store/backend';
import { StoreEngine } from '../../tasks/DockerBuildxCacheV1/src/store/engine';
import { LocalBackend, LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { StoreBlobSink } from '../../tasks/DockerBuildxCacheV1/src/store/streaming';
import { LEASES } from '../../tasks/DockerBuildxCacheV1/src/store/names';
import {
  EntryUnusableError,
  type BlobSink,
  type CacheStore,
  type LayoutSaveRequest,
} from '../../tasks/DockerBuildxCacheV1/src/store/types';
import { cleanup, tempDir } from '../helpers';
import { cacheFolder, cacheLayout, type Blob } from '../oci-fixture';
import { damageFile, STORES, type Harness } from '../store-harness';

const NEVER = new AbortController().signal;
const HOUR = 3600_000;

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Bytes that hash to nothing in particular: a layer that does not compress. */
const noise = (seed: string, size: number): Buffer => {
  const out = Buffer.alloc(size);
  for (let at = 0, i = 0; at < size; at += 64, i++) crypto.createHash('sha512').update(`${seed} ${i}`).digest().copy(out, at);
  return out;
};

const index = (root: Blob): unknown => ({
  schemaVersion: 2,
  manifests: [
    { mediaType: root.mediaType, digest: root.digest, size: root.size, annotations: { 'org.opencontainers.image.ref.name': 'latest' } },
  ],
});

/** Bodies that are not the blob they are put as: none may leave anything in the store. */
const BAD_BODIES: [string, (b: Blob) => Readable][] = [
  [
    'fails before it is read',
    () => {
      const body = new Readable({ read: () => undefined });
      setImmediate(() => body.destroy(new Error('the connection dropped (injected)')));
      return body;
    },
  ],
  [
    'fails halfway',
    (b) =>
      Readable.from(
        (async function* () {
          yield b.data.subarray(0, b.size >> 1);
          await new Promise((r) => setTimeout(r, 20));
          throw new Error('the connection dropped (injected)');
        })(),
      ),
  ],
  ['holds other bytes of the same size', (b) => Readable.from([Buffer.concat([b.data.subarray(0, b.size - 1), Buffer.from('!')])])],
  ['is one byte longer', (b) => Readable.from([b.data, Buffer.from('!')])],
  ['is one byte shorter', (b) => Readable.from([b.data.subarray(0, b.size - 1)])],
];
/** A blob sent in one request, and one sent as blocks (the Azure harness sends blocks above 1 MiB). */
const SIZES: [string, number][] = [
  ['small', 40_000],
  ['large', 3 << 20],
];

for (const { name, open } of STORES) {
  describe(`store contract, blob by blob (the registry facade): ${name}`, function () {
    this.timeout(120000);
    let h: Harness;
    let store: CacheStore;
    let work: string;
    const now = new Date('2026-11-28T12:00:00Z');

    beforeEach(async () => {
      h = await open();
      store = h.store;
      work = tempDir('dbxc-work-');
    });
    afterEach(() => {
      h.done();
      cleanup();
    });

    const save = (dir: string, key = 'k|a', at = now): ReturnType<CacheStore['save']> =>
      store.save({ cacheDir: dir, key, segments: key.split('|'), scope: 'refs/heads/main', now: at });
    const put = (sink: BlobSink, b: Blob): Promise<void> => sink.put({ digest: b.digest, size: b.size }, Readable.from([b.data]), NEVER);
    /** What the facade does on an export: asks for each blob, and uploads those the store lacks. */
    const upload = async (sink: BlobSink, blobs: readonly Blob[]): Promise<number> => {
      let sent = 0;
      for (const b of blobs) {
        if ((await sink.has(b.digest, NEVER)) === b.size) continue;
        await put(sink, b);
        sent++;
      }
      return sent;
    };
    const layoutRequest = (layout: ReturnType<typeof cacheLayout>, leaseId?: string, key = 'k|a'): LayoutSaveRequest => ({
      key,
      segments: key.split('|'),
      scope: 'refs/heads/main',
      now,
      index: index(layout.root),
      blobs: layout.blobs.map((b) => ({ digest: b.digest, size: b.size })),
      leaseId,
    });

    it('opens an entry and streams each blob as stored, counting what came over the network; the lease lasts until close', async () => {
      const { dir, layout } = cacheFolder(work, 'v1', ['deps', noise('app', 300_000)]);
      const saved = await save(dir);
      const opened = await store.openEntry(saved.entry);
      assert.equal(opened.entry.root, layout.root.digest);
      assert.equal((await h.leases()).length, 1);
      for (const b of layout.blobs) assert.ok((await readAll(await opened.open(b.digest, NEVER))).equals(b.data), b.digest);
      const total = layout.blobs.reduce((a, b) => a + b.size, 0);
      assert.equal(opened.bytesDownloaded, name === 'local' ? 0 : total);
      await opened.close();
      await opened.close();
      assert.deepEqual(await h.leases(), []);
    });

    it('stops the download of a blob whose reader stops early', async () => {
      const { dir, layout } = cacheFolder(work, 'v1', [noise('big', 8 << 20)]);
      const saved = await save(dir);
      const opened = await store.openEntry(saved.entry);
      const layer = layout.layers[0] as Blob;
      const stream = await opened.open(layer.digest, NEVER);
      for await (const chunk of stream) {
        assert.ok((chunk as Buffer).length > 0);
        break;
      }
      assert.ok(stream.destroyed);
      assert.ok(opened.bytesDownloaded < layer.size);
      // Aborted before it is read: the stream fails, nothing hangs.
      const stop = new AbortController();
      const aborted = await opened.open(layer.digest, stop.signal);
      stop.abort();
      await assert.rejects(readAll(aborted), /abort/i);
      await opened.close();
      assert.ok((await h.blobs()).includes(layer.digest), 'a blob read in part is not taken for corrupt');
    });

    it('refuses a blob the entry does not list, and reports a missing one as missing', async () => {
      const { dir, layout } = cacheFolder(work, 'v1', ['deps', 'app']);
      const saved = await save(dir);
      const opened = await store.openEntry(saved.entry);
      const other = cacheLayout(['other']).layers[0] as Blob;
      await assert.rejects(
        opened.open(other.digest, NEVER),
        (e: Error) => e instanceof EntryUnusableError && /not a blob of the entry/.test(e.message),
      );
      const gone = layout.layers[0] as Blob;
      await h.remove(gone.digest);
      await assert.rejects(
        opened.open(gone.digest, NEVER),
        (e: Error) => e instanceof EntryUnusableError && /missing in the store/.test(e.message),
      );
      await opened.close();
    });

    it('deletes a blob that its reader found corrupt, so that the next upload puts a good copy', async () => {
      const { dir, layout } = cacheFolder(work, 'v1', ['deps', 'app']);
      const saved = await save(dir);
      const bad = layout.layers[0] as Blob;
      await h.damage(bad.digest);
      const opened = await store.openEntry(saved.entry);
      assert.ok(!(await readAll(await opened.open(bad.digest, NEVER))).equals(bad.data), 'the bytes are served as stored');
      assert.ok((await h.blobs()).includes(bad.digest), 'the store does not judge the bytes itself');
      await opened.corrupt(bad.digest);
      assert.ok(!(await h.blobs()).includes(bad.digest), 'the corrupt copy is deleted');
      await opened.close();
      const sink = await store.beginUpload();
      assert.equal(await sink.has(bad.digest, NEVER), undefined);
      await put(sink, bad);
      assert.equal(await sink.has(bad.digest, NEVER), bad.size);
      await store.endUpload(sink.leaseId);
    });

    for (const [size, bytes] of SIZES) {
      it(`stores a ${size} blob that is put, which has() then reports with its size`, async () => {
        const b = cacheLayout([noise(size, bytes)]).layers[0] as Blob;
        const sink = await store.beginUpload();
        assert.equal(await sink.has(b.digest, NEVER), undefined);
        await put(sink, b);
        assert.equal(await sink.has(b.digest, NEVER), b.size);
        assert.ok((await h.blobs()).includes(b.digest));
        // Put again (two uploads of one layer): the store keeps the one it has.
        await put(sink, b);
        await store.endUpload(sink.leaseId);
      });
      for (const [bad, body] of BAD_BODIES) {
        it(`stores nothing when the body of a ${size} blob ${bad}`, async () => {
          const b = cacheLayout([noise(`${size} ${bad}`, bytes)]).layers[0] as Blob;
          const sink = await store.beginUpload();
          await assert.rejects(sink.put({ digest: b.digest, size: b.size }, body(b), NEVER));
          assert.equal(await sink.has(b.digest, NEVER), undefined);
          assert.ok(!(await h.blobs()).includes(b.digest));
          await store.endUpload(sink.leaseId);
          assert.deepEqual(await h.leases(), []);
        });
      }
    }

    it('keep() leases blobs in one item, and has() of those writes no item of its own; the save ends it', async () => {
      const first = cacheFolder(work, 'v1', ['deps', 'app v1']);
      await save(first.dir, 'k|old');
      const sink = await store.beginUpload();
      await sink.keep(first.layout.blobs.map((b) => b.digest));
      for (const b of first.layout.blobs) assert.equal(await sink.has(b.digest, NEVER), b.size);
      assert.equal((await h.leases()).length, 1);
      const saved = await store.saveLayout(layoutRequest(first.layout, sink.leaseId));
      assert.deepEqual([saved.status, saved.newBlobs], ['saved', 0]);
      assert.deepEqual(await h.leases(), []);
    });

    it('saves an uploaded layout as an entry that restores, counting the blobs put; the lease ends with the save', async () => {
      const first = cacheFolder(work, 'v1', ['deps', 'app v1']);
      await save(first.dir, 'k|old');
      const next = cacheLayout(['deps', noise('app v2', 2 << 20)]);
      const sink = await store.beginUpload();
      const sent = await upload(sink, next.blobs);
      const fresh = next.blobs.filter((b) => !first.layout.blobs.some((o) => o.digest === b.digest));
      assert.equal(sent, fresh.length);
      const before = (await h.leases()).length;
      assert.ok(before > 0);
      await sink.settle();
      assert.equal((await h.leases()).length, before + 1, 'the blobs stored are recorded in one more item');
      await sink.settle();
      assert.equal((await h.leases()).length, before + 1, 'and only once');
      const saved = await store.saveLayout(layoutRequest(next, sink.leaseId));
      assert.equal(saved.status, 'saved');
      assert.equal(saved.newBlobs, fresh.length);
      assert.equal(
        saved.newBytes,
        fresh.reduce((a, b) => a + b.size, 0),
      );
      assert.deepEqual(await h.leases(), []);
      const { entries } = await store.list(['refs/heads/main']);
      assert.deepEqual(entries.map((e) => e.key).sort(), ['k|a', 'k|old']);
      const target = path.join(work, 'restored');
      await store.restore(saved.entry, target);
      await verifyLayout(target);
    });

    it('writes no entry when a blob of the layout is missing, and ends the lease', async () => {
      const layout = cacheLayout(['deps', 'app']);
      const sink = await store.beginUpload();
      await upload(
        sink,
        layout.blobs.filter((b) => b !== layout.layers[1]),
      );
      await assert.rejects(
        store.saveLayout(layoutRequest(layout, sink.leaseId)),
        /blob sha256:[0-9a-f]{64} of the layout is missing in the store: no entry was written/,
      );
      assert.deepEqual((await store.list(['refs/heads/main'])).entries, []);
      assert.deepEqual(await h.leases(), []);
    });

    it('refuses a layout whose blob list lacks a blob its root reaches', async () => {
      const layout = cacheLayout(['deps', 'app']);
      const sink = await store.beginUpload();
      await upload(sink, layout.blobs);
      const request = layoutRequest(layout, sink.leaseId);
      await assert.rejects(store.saveLayout({ ...request, blobs: request.blobs.slice(1) }), /does not list/);
      assert.deepEqual((await store.list(['refs/heads/main'])).entries, []);
    });

    it('records only the use when the newest entry of the key holds the same cache', async () => {
      const { dir, layout } = cacheFolder(work, 'v1', ['deps', 'app']);
      const first = await save(dir);
      const sink = await store.beginUpload();
      assert.equal(await upload(sink, layout.blobs), 0);
      const later = new Date(now.getTime() + HOUR);
      const again = await store.saveLayout({ ...layoutRequest(layout, sink.leaseId), now: later });
      assert.equal(again.status, 'unchanged');
      assert.equal(again.entry.id, first.entry.id);
      const { entries } = await store.list(['refs/heads/main']);
      assert.equal(entries.length, 1);
      assert.equal(entries[0]?.lastUsed, later.toISOString());
      assert.deepEqual(await h.leases(), []);
    });

    it('keeps the blobs of an upload in flight through a prune, found or put; after endUpload a prune removes them', async () => {
      // An entry long unused: the next prune removes it, and its blobs but for the upload's lease.
      const old = cacheFolder(work, 'old', ['deps']);
      await save(old.dir, 'k|old', new Date('2026-10-01T00:00:00Z'));
      const layout = cacheLayout(['deps', 'app']);
      const sink = await store.beginUpload();
      await upload(sink, layout.blobs);
      const report = await store.prune({ retentionDays: 7, now: new Date() });
      assert.equal(report.entriesRemoved, 1);
      assert.equal(report.blobsRemoved, old.layout.blobs.length - 1, 'only the old root and config go; deps is found by the upload');
      for (const b of layout.blobs) assert.ok((await h.blobs()).includes(b.digest), b.digest);
      await store.endUpload(sink.leaseId);
      assert.deepEqual(await h.leases(), []);
      const after = await store.prune({ retentionDays: 7, now: new Date() });
      assert.equal(after.blobsRemoved, layout.blobs.length);
      assert.deepEqual(await h.blobs(), []);
    });

    it("lets a killed job's upload lease expire after six hours; retention then removes its blobs", async () => {
      const layout = cacheLayout(['deps', 'app']);
      const sink = await store.beginUpload();
      await upload(sink, layout.blobs);
      assert.equal((await store.prune({ retentionDays: 7, now: new Date(Date.now() + 5 * HOUR) })).blobsRemoved, 0);
      const late = await store.prune({ retentionDays: 7, now: new Date(Date.now() + 7 * HOUR) });
      assert.equal(late.blobsRemoved, layout.blobs.length);
      assert.deepEqual(await h.leases(), []);
      // The post step comes too late: nothing is saved, and nothing points at missing blobs.
      await assert.rejects(store.saveLayout(layoutRequest(layout, sink.leaseId)), /missing in the store/);
      assert.deepEqual((await store.list(['refs/heads/main'])).entries, []);
    });

    it('opens an entry of a store that refuses writes, without a lease; its uploads are refused', async () => {
      const { dir, layout } = cacheFolder(work, 'v1', ['deps', 'app']);
      const saved = await save(dir);
      const readOnly = await h.readOnly();
      const opened = await readOnly.openEntry(saved.entry);
      for (const b of layout.blobs) assert.ok((await readAll(await opened.open(b.digest, NEVER))).equals(b.data));
      await opened.close();
      assert.deepEqual(await h.leases(), []);
      const sink = await readOnly.beginUpload();
      assert.equal(await sink.has(layout.root.digest, NEVER), layout.root.size);
      const fresh = cacheLayout(['new']).layers[0] as Blob;
      await assert.rejects(put(sink, fresh), StoreRefusedError);
    });
  });
}

describe('store, blob by blob: local only', function () {
  this.timeout(60000);
  let storeDir: string;
  let store: LocalStore;
  let work: string;
  const now = new Date('2026-11-28T12:00:00Z');
  const blobFile = (digest: string): string => path.join(storeDir, 'v1', 'blobs', 'sha256', digest.slice(7));

  beforeEach(() => {
    storeDir = tempDir('dbxc-store-');
    store = new LocalStore(storeDir);
    work = tempDir('dbxc-work-');
  });
  afterEach(cleanup);

  it('has() hashes a blob whose seal no longer matches, and reports one that fails as absent (deleting it)', async () => {
    const { dir, layout } = cacheFolder(work, 'v1', ['deps', 'app']);
    await store.save({ cacheDir: dir, key: 'k|a', segments: ['k', 'a'], scope: 's', now });
    const [good, bad] = layout.layers as [Blob, Blob];
    damageFile(blobFile(bad.digest), false);
    fs.utimesSync(blobFile(good.digest), new Date(), new Date());
    const sink = await store.beginUpload();
    assert.equal(await sink.has(good.digest, NEVER), good.size);
    assert.equal(await sink.has(bad.digest, NEVER), undefined);
    assert.ok(!fs.existsSync(blobFile(bad.digest)));
    await store.endUpload(sink.leaseId);
  });

  it('never follows a link where a blob belongs: open reports it missing and moves it to quarantine', async () => {
    const { dir, layout } = cacheFolder(work, 'v1', ['deps']);
    const saved = await store.save({ cacheDir: dir, key: 'k|a', segments: ['k', 'a'], scope: 's', now });
    const layer = layout.layers[0] as Blob;
    const outside = path.join(work, 'outside');
    fs.writeFileSync(outside, layer.data);
    fs.rmSync(blobFile(layer.digest));
    fs.symlinkSync(outside, blobFile(layer.digest));
    const opened = await store.openEntry(saved.entry);
    await assert.rejects(opened.open(layer.digest, NEVER), (e: Error) => e instanceof EntryUnusableError && /missing/.test(e.message));
    assert.equal(fs.readdirSync(path.join(storeDir, 'v1', 'quarantine')).length, 1);
    await opened.close();
  });

  it("lists an upload's lease once when it saves the layout, and reads each of its items once (on Azure, each is a request)", async () => {
    const backend = new LocalBackend(storeDir);
    const calls: string[] = [];
    const counted = new Proxy(backend, {
      get(target, prop, receiver) {
        const value: unknown = Reflect.get(target, prop, receiver);
        if ((prop !== 'list' && prop !== 'read') || typeof value !== 'function') return value;
        return (name: string, ...rest: unknown[]): unknown => {
          if (name.startsWith(LEASES)) calls.push(`${prop} ${name}`);
          return (value as (...a: unknown[]) => unknown).call(target, name, ...rest);
        };
      },
    });
    const engine = new StoreEngine(counted);
    const layout = cacheLayout(['deps', 'app']);
    const sink = await engine.beginUpload();
    for (const b of layout.blobs) await sink.put({ digest: b.digest, size: b.size }, Readable.from([b.data]), NEVER);
    await sink.settle();
    const items = fs.readdirSync(path.join(storeDir, LEASES));
    assert.ok(items.length > 0);
    calls.length = 0;
    const saved = await engine.saveLayout({
      key: 'k|a',
      segments: ['k', 'a'],
      scope: 's',
      now,
      index: index(layout.root),
      blobs: layout.blobs.map((b) => ({ digest: b.digest, size: b.size })),
      leaseId: sink.leaseId,
    });
    assert.deepEqual([saved.status, saved.newBlobs], ['saved', layout.blobs.length]);
    assert.deepEqual(calls.sort(), [`list ${LEASES}`, ...items.map((i) => `read ${LEASES}${i}`)].sort());
    assert.deepEqual(fs.readdirSync(path.join(storeDir, LEASES)), []);
  });

  it('refuses an upload lease id that is not one', async () => {
    for (const id of ['../entries/x', '', '1-zz', 'abc']) await assert.rejects(store.endUpload(id), /not an upload lease/);
  });
});

describe('upload sink: the record of the blobs stored', () => {
  after(cleanup);

  it('is written once: a failed record is not tried again, its blobs being leased already', async () => {
    const records: string[][] = [];
    let down = true;
    const sink = new StoreBlobSink(new LocalBackend(tempDir('dbxc-sink-')), 'lease1', (_id, _blobs, uploads) => {
      if (uploads.length === 0) return Promise.resolve();
      if (down) {
        down = false;
        return Promise.reject(new Error('store down'));
      }
      records.push([...uploads]);
      return Promise.resolve();
    });
    const body = Buffer.from('a layer');
    const digest = `sha256:${crypto.createHash('sha256').update(body).digest('hex')}`;
    await sink.put({ digest, size: body.length }, Readable.from([body]), NEVER);
    await assert.rejects(sink.settle(), /store down/);
    await sink.settle();
    assert.deepEqual(records, [], 'no record written after the failed one');
  });
});
