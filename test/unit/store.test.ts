import * as assert from 'assert/strict';
import { spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as sinon from 'sinon';
import { verifyLayout } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { restoreFromStore } from '../../tasks/DockerBuildxCacheV1/src/store/restore';
import { EntryUnusableError, type CacheStore, type Entry, type EntryHead } from '../../tasks/DockerBuildxCacheV1/src/store/types';
import { cleanup, tempDir } from '../helpers';
import { blobFiles, cacheFolder, type Blob } from '../oci-fixture';
import { damageFile, STORES, type Harness } from '../store-harness';

const WORKER = path.join(__dirname, '..', 'store-worker.js');
const bytes = (blobs: readonly Blob[]): number => blobs.reduce((a, b) => a + b.size, 0);
const big = (seed: string, size: number): string =>
  crypto
    .createHash('sha512')
    .update(seed)
    .digest('hex')
    .repeat(Math.ceil(size / 128))
    .slice(0, size);

function runWorker(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, ...args]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(err))));
  });
}

for (const { name, open } of STORES) {
  describe(`store contract: ${name}`, function () {
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
    afterEach(cleanup);

    const folder = (label: string, layers: string[]): ReturnType<typeof cacheFolder> => cacheFolder(work, label, layers);
    const save = (dir: string, key = 'buildx|"Linux"|app', scope = 'refs/heads/main', at = now): ReturnType<CacheStore['save']> =>
      store.save({ cacheDir: dir, key, segments: key.split('|'), scope, now: at });
    const restoreTo = (label: string): string => path.join(work, label);

    it('saves a cache folder and restores it, every blob verified', async () => {
      const { dir, layout } = folder('v1', ['deps', 'app v1']);
      const saved = await save(dir);
      assert.equal(saved.status, 'saved');
      assert.equal(saved.newBlobs, layout.blobs.length);
      assert.equal(saved.newBytes, bytes(layout.blobs));

      const target = restoreTo('restored');
      const stats = await store.restore(saved.entry, target);
      assert.equal(stats.blobs, layout.blobs.length);
      assert.equal(stats.bytes, bytes(layout.blobs));
      assert.deepEqual(blobFiles(target), layout.blobs.map((b) => b.digest).sort());
      await verifyLayout(target);
      assert.deepEqual(await store.stats(), { entries: 1, blobs: layout.blobs.length, bytes: bytes(layout.blobs) });
      assert.deepEqual(await h.blobs(), layout.blobs.map((b) => b.digest).sort());
    });

    it('records only the use when the cache did not change', async () => {
      const { dir } = folder('v1', ['deps', 'app v1']);
      const first = await save(dir);
      const later = new Date(now.getTime() + 3600_000);
      const second = await save(dir, undefined, undefined, later);
      assert.equal(second.status, 'unchanged');
      assert.equal(second.newBytes, 0);
      assert.equal(second.entry.id, first.entry.id);
      const { entries } = await store.list(['refs/heads/main']);
      assert.equal(entries.length, 1);
      assert.equal(entries[0]?.lastUsed, later.toISOString());
    });

    it('updates an exact key with a new version that costs only its new blobs; the newest wins', async () => {
      const v1 = folder('v1', ['deps', 'app v1']);
      const v2 = folder('v2', ['deps', 'app v2']);
      await save(v1.dir);
      const second = await save(v2.dir, undefined, undefined, new Date(now.getTime() + 1000));
      assert.equal(second.status, 'saved');
      const fresh = v2.layout.blobs.filter((b) => !v1.layout.blobs.some((o) => o.digest === b.digest));
      assert.equal(second.newBytes, bytes(fresh));
      const outcome = await restoreFromStore(store, ['refs/heads/main'], ['buildx', '"Linux"', 'app'], [], restoreTo('r'));
      assert.equal(outcome.hit, 'true');
      assert.equal(outcome.entry?.id, second.entry.id);
      assert.deepEqual(blobFiles(restoreTo('r')), v2.layout.blobs.map((b) => b.digest).sort());
    });

    it('restores through a restore key as inexact, from the next scope', async () => {
      const { dir } = folder('v1', ['deps']);
      await save(dir, 'buildx|"Linux"|app|F1', 'refs/heads/main');
      const outcome = await restoreFromStore(
        store,
        ['refs/heads/feat', 'refs/heads/main'],
        ['buildx', '"Linux"', 'app', 'F2'],
        [['buildx', '"Linux"', 'app']],
        restoreTo('r'),
      );
      assert.equal(outcome.hit, 'inexact');
      assert.equal(outcome.entry?.key, 'buildx|"Linux"|app|F1');
    });

    it('misses cleanly when nothing matches', async () => {
      const outcome = await restoreFromStore(store, ['refs/heads/main'], ['k'], [['j']], restoreTo('r'));
      assert.deepEqual(outcome, { hit: 'false', skipped: [] });
      assert.ok(!fs.existsSync(restoreTo('r')));
    });

    it('skips an entry whose blob was damaged after the save, uses the next one, and takes a good copy at the next save', async () => {
      const older = folder('old', ['deps', 'app v1']);
      const newer = folder('new', ['other deps', 'app v2']);
      await save(older.dir, 'k|F1');
      await save(newer.dir, 'k|F2', undefined, new Date(now.getTime() + 1000));
      const damaged = (newer.layout.layers[0] as Blob).digest;
      await h.damage(damaged);

      const outcome = await restoreFromStore(store, ['refs/heads/main'], ['k', 'F2'], [['k']], restoreTo('r'));
      assert.equal(outcome.entry?.key, 'k|F1');
      assert.equal(outcome.hit, 'inexact');
      assert.equal(outcome.skipped.length, 1);
      assert.match(outcome.skipped[0] ?? '', /k\|F2 .*blob sha256:[0-9a-f]{64} is corrupt in the store/);
      await verifyLayout(restoreTo('r'));
      // The corrupt copy is gone, so the next save of an intact folder puts a good one back.
      assert.ok(!(await h.blobs()).includes(damaged));
      const intact = folder('new-again', ['other deps', 'app v2']);
      const again = await save(intact.dir, 'k|F2', undefined, new Date(now.getTime() + 2000));
      assert.equal(again.status, 'saved');
      assert.equal(again.newBlobs, 1);
      await store.restore(again.entry, restoreTo('r2'));
      await verifyLayout(restoreTo('r2'));
    });

    it('skips an entry with a missing blob, and one whose file is not a valid entry', async () => {
      const a = folder('a', ['deps a']);
      const saved = await save(a.dir, 'k|a');
      await h.remove((a.layout.layers[0] as Blob).digest);
      await assert.rejects(store.restore(saved.entry, restoreTo('r')), EntryUnusableError);
      assert.ok(!fs.existsSync(restoreTo('r')), 'a failed restore leaves no folder behind');

      const stillThere = await h.writeBroken('refs/heads/main');
      const listed = await store.list(['refs/heads/main']);
      assert.equal(listed.entries.length, 1);
      assert.equal(listed.skipped.length, 1);
      assert.match(listed.skipped[0] ?? '', /00000000000001-bad\.json: /);
      await store.prune({ retentionDays: 7, now });
      assert.ok(!(await stillThere()), 'prune removes an entry file that is not valid');
    });

    it('applies retention: unused entries and superseded versions go, then every blob no entry reaches', async () => {
      const old = folder('old', ['old deps', 'old app']);
      const v1 = folder('v1', ['deps', 'app v1']);
      const v2 = folder('v2', ['deps', 'app v2']);
      await save(old.dir, 'k|old', 'refs/heads/gone', new Date('2026-11-01T00:00:00Z'));
      await save(v1.dir, 'k|app', 'refs/heads/main', new Date(now.getTime() - 2000));
      await save(v2.dir, 'k|app', 'refs/heads/main', new Date(now.getTime() - 1000));
      const report = await store.prune({ retentionDays: 7, now });
      assert.equal(report.entriesRemoved, 2);
      const left = await store.stats();
      assert.deepEqual(report.after, left);
      assert.deepEqual(left, { entries: 1, blobs: v2.layout.blobs.length, bytes: bytes(v2.layout.blobs) });
      assert.deepEqual(await h.blobs(), v2.layout.blobs.map((b) => b.digest).sort());
    });

    it('never prunes a blob that a save in flight has leased', async () => {
      const v1 = folder('v1', ['deps']);
      await save(v1.dir, 'k|a', 'refs/heads/old', new Date('2026-10-01T00:00:00Z'));
      // A save that has written its lease and found its blob in the store, but not yet its entry.
      const digests = v1.layout.blobs.map((b) => b.digest);
      await h.lease('inflight', digests, new Date(now.getTime() + 60_000));
      const report = await store.prune({ retentionDays: 7, now });
      assert.equal(report.entriesRemoved, 1);
      assert.equal(report.blobsRemoved, 0);
      assert.deepEqual(await h.blobs(), [...digests].sort());
      // Once the lease is gone (or stale), the blobs go.
      const after = await store.prune({ retentionDays: 7, now: new Date(now.getTime() + 120_000) });
      assert.equal(after.blobsRemoved, digests.length);
    });

    it('stays usable after a crash between the blob writes and the entry write', async () => {
      const v1 = folder('v1', ['deps', 'app v1']);
      const saved = await save(v1.dir, 'k|a');
      // What a killed save leaves: its blobs and its lease, and no entry.
      await h.dropEntries();
      await h.lease(
        'crashed',
        saved.entry.blobs.map((b) => b.digest),
        new Date(now.getTime() + 1000),
      );

      assert.deepEqual((await restoreFromStore(store, ['refs/heads/main'], ['k', 'a'], [], restoreTo('r'))).hit, 'false');
      const again = await save(v1.dir, 'k|a');
      assert.equal(again.newBlobs, 0, 'the blobs the crashed save left are used');
      await store.restore(again.entry, restoreTo('r'));
      await verifyLayout(restoreTo('r'));
      await store.prune({ retentionDays: 7, now: new Date(now.getTime() + 2 * 3600_000) });
      assert.deepEqual(await h.leases(), []);
    });

    it('survives saves killed at any moment: every entry left restores, nothing half-written is listed', async function () {
      const layers = Array.from({ length: 6 }, (_, i) => big(`layer ${i}`, 2_000_000));
      const { dir } = folder('big', layers);
      for (const delay of [5, 40, 150, 400, 800]) {
        const child = spawn(process.execPath, [WORKER, 'save', h.spec, dir, `k|crash${delay}`, 'refs/heads/main']);
        const closed = new Promise((r) => child.on('close', r));
        await new Promise((r) => setTimeout(r, delay));
        child.kill('SIGKILL');
        await closed;
      }
      const { entries, skipped } = await store.list(['refs/heads/main']);
      assert.deepEqual(skipped, []);
      for (const e of entries) {
        await store.restore(e, restoreTo(`r-${e.id}`));
        await verifyLayout(restoreTo(`r-${e.id}`));
      }
      const saved = await save(dir, 'k|after');
      await store.restore(saved.entry, restoreTo('after'));
      await verifyLayout(restoreTo('after'));
    });

    it('keeps the store valid under concurrent saves and prunes from separate processes, even of one key', async function () {
      const caches = Array.from({ length: 6 }, (_, i) =>
        folder(`c${i}`, ['shared deps', big(`own ${i}`, 300_000), big(`app ${i % 2}`, 200_000)]),
      );
      const results = await Promise.all([
        ...caches.map((c, i) => runWorker(['save', h.spec, c.dir, i % 2 === 0 ? 'k|same' : `k|own${i}`, 'refs/heads/main'])),
        runWorker(['prune', h.spec, '20']),
        runWorker(['prune', h.spec, '20']),
      ]);
      assert.equal(results.filter((r) => r.includes('"status"')).length, caches.length);

      const { entries, skipped } = await store.list(['refs/heads/main']);
      assert.deepEqual(skipped, []);
      assert.ok(entries.length >= 1);
      for (const e of entries) {
        await store.restore(e, restoreTo(`r-${e.id}`));
        await verifyLayout(restoreTo(`r-${e.id}`));
      }
      assert.deepEqual(await h.leases(), [], 'every lease was released');
      // After a final prune the store holds only what its entries reach.
      await store.prune({ retentionDays: 7, now: new Date() });
      const kept = (await store.list(['refs/heads/main'])).entries;
      const reached = new Set<string>();
      for (const e of kept) {
        const r = restoreTo(`final-${e.id}`);
        await store.restore(e, r);
        for (const d of blobFiles(r)) reached.add(d);
      }
      assert.deepEqual(await h.blobs(), [...reached].sort());
    });
  });
}

describe('store: local only', function () {
  this.timeout(60000);
  const now = new Date('2026-11-28T12:00:00Z');
  let storeDir: string;
  let store: LocalStore;
  let work: string;
  const root = (dir: string): string => path.join(dir, 'v1');

  beforeEach(() => {
    storeDir = tempDir('dbxc-store-');
    store = new LocalStore(storeDir);
    work = tempDir('dbxc-work-');
  });
  afterEach(cleanup);

  const folder = (label: string, layers: string[]): ReturnType<typeof cacheFolder> => cacheFolder(work, label, layers);
  const save = (dir: string, key = 'buildx|"Linux"|app', scope = 'refs/heads/main', at = now): ReturnType<CacheStore['save']> =>
    store.save({ cacheDir: dir, key, segments: key.split('|'), scope, now: at });
  const restoreTo = (label: string): string => path.join(work, label);

  it('deletes nothing when a lease cannot be read (the store failing), and keeps the lease', async () => {
    const v1 = folder('v1', ['deps']);
    await save(v1.dir, 'k|a', 'refs/heads/old', new Date('2026-10-01T00:00:00Z'));
    const digests = v1.layout.blobs.map((b) => b.digest);
    // A save in flight holds a live lease on the old entry's blobs; the store fails to read it.
    const leases = path.join(root(storeDir), 'leases');
    fs.mkdirSync(leases, { recursive: true });
    const expires = new Date(now.getTime() + 60_000).toISOString();
    fs.writeFileSync(path.join(leases, 'inflight.json'), JSON.stringify({ id: 'inflight', expires, blobs: digests }));
    const backend = (store as unknown as { backend: { read: (name: string, signal: AbortSignal) => Promise<Buffer | undefined> } }).backend;
    const read = backend.read.bind(backend);
    const failing = sinon
      .stub(backend, 'read')
      .callsFake((name, signal) => (name.includes('leases/') ? Promise.reject(new Error('connection reset')) : read(name, signal)));
    try {
      await assert.rejects(store.prune({ retentionDays: 7, now }), /connection reset/);
    } finally {
      failing.restore();
    }
    assert.deepEqual(await fs.promises.readdir(leases), ['inflight.json']);
    assert.deepEqual(blobFiles(root(storeDir)).sort(), [...digests].sort());
    // Read again, the lease protects its blobs as before.
    assert.equal((await store.prune({ retentionDays: 7, now })).blobsRemoved, 0);
  });

  it('keeps an expired entry that a job used after the prune listed it, and the blobs it points at', async () => {
    const v1 = folder('v1', ['deps', 'app v1']);
    const saved = await save(v1.dir, 'k|a', 'refs/heads/main', new Date('2026-10-01T00:00:00Z'));
    const backend = (
      store as unknown as { backend: { deleteIfUnchanged: (n: string, v: string | undefined, s: AbortSignal) => Promise<boolean> } }
    ).backend;
    const del = backend.deleteIfUnchanged.bind(backend);
    let used = false;
    // Another job restores the entry (a use) just as the prune, which listed it as expired, deletes it.
    const racing = sinon.stub(backend, 'deleteIfUnchanged').callsFake(async (name, version, signal) => {
      if (!used && name.includes('entries/')) {
        used = true;
        await store.restore(saved.entry, restoreTo('meanwhile'));
      }
      return del(name, version, signal);
    });
    let report;
    try {
      report = await store.prune({ retentionDays: 7, now });
    } finally {
      racing.restore();
    }
    assert.ok(used);
    assert.equal(report.entriesRemoved, 0);
    assert.equal(report.blobsRemoved, 0);
    const [entry] = (await store.list(['refs/heads/main'])).entries;
    assert.ok(entry !== undefined, 'the entry stays');
    await store.restore(entry, restoreTo('after'));
    assert.deepEqual(blobFiles(restoreTo('after')), [...v1.layout.blobs.map((b) => b.digest)].sort());
  });

  it('hard-links restored blobs, and keeps store blobs read-only', async () => {
    const { dir, layout } = folder('v1', ['deps', 'app v1']);
    const saved = await save(dir);
    const stats = await store.restore(saved.entry, restoreTo('r'));
    assert.equal(stats.linked, layout.blobs.length);
    assert.equal(stats.downloaded, undefined);
    for (const d of blobFiles(root(storeDir)))
      assert.equal(fs.statSync(path.join(root(storeDir), 'blobs', 'sha256', d.slice(7))).mode & 0o222, 0);
  });

  it('trusts a blob whose size, mtime and inode are sealed, until the entry is distrusted; then checks it in full', async () => {
    const v1 = folder('v1', ['deps', 'app v1']);
    const saved = await save(v1.dir, 'k|a');
    // Bit rot keeps the mtime to the nanosecond; a whole-second mtime, sealed by one restore, can be put back exactly.
    const layer = path.join(root(storeDir), 'blobs', 'sha256', (v1.layout.layers[0] as Blob).digest.slice(7));
    fs.utimesSync(layer, 1_700_000_000, 1_700_000_000);
    await store.restore(saved.entry, restoreTo('resealed'));
    damageFile(layer, true);
    // The seal stands in for hashing: a change that keeps the mtime gets past it, as in git.
    await store.restore(saved.entry, restoreTo('trusted'));
    // A build that failed on the content distrusts the entry: the next restore hashes every blob.
    await store.distrust(saved.entry);
    await assert.rejects(
      store.restore(saved.entry, restoreTo('checked')),
      (e: Error) => e instanceof EntryUnusableError && /is corrupt in the store/.test(e.message),
    );
  });

  it('restores an entry known only by its listing', async () => {
    const v1 = folder('v1', ['deps']);
    const saved = await save(v1.dir, 'k|a');
    const e: Entry = saved.entry;
    const head: EntryHead = {
      id: e.id,
      key: e.key,
      segments: e.segments,
      scope: e.scope,
      created: e.created,
      lastUsed: e.lastUsed,
      root: e.root,
    };
    await store.restore(head, restoreTo('r'));
    await verifyLayout(restoreTo('r'));
  });

  it('cleans what a crashed save leaves in tmp', async () => {
    const v1 = folder('v1', ['deps']);
    await save(v1.dir, 'k|a');
    fs.writeFileSync(path.join(root(storeDir), 'tmp', '.half.tmp'), 'partial');
    await store.prune({ retentionDays: 7, now: new Date(Date.now() + 2 * 3600_000) });
    assert.deepEqual(fs.readdirSync(path.join(root(storeDir), 'tmp')), []);
  });

  it('fails a save on a full disk without a half-written entry, and keeps the earlier entries usable', async function () {
    const small = tempDir('dbxc-small-');
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small], { encoding: 'utf8' });
    assert.equal(mounted.status, 0, `mounting a small tmpfs needs root: ${mounted.stderr}`);
    try {
      const full = new LocalStore(small);
      const fits = folder('fits', ['small deps']);
      const first = await full.save({ cacheDir: fits.dir, key: 'k|a', segments: ['k', 'a'], scope: 's', now });
      // Copy, not link: the cache folder is on another filesystem, so the store must write the bytes.
      const tooBig = folder('big', [big('x', 3_000_000)]);
      await assert.rejects(full.save({ cacheDir: tooBig.dir, key: 'k|b', segments: ['k', 'b'], scope: 's', now }), /ENOSPC|no space/i);
      const { entries, skipped } = await full.list(['s']);
      assert.deepEqual(skipped, []);
      assert.deepEqual(
        entries.map((e) => e.id),
        [first.entry.id],
      );
      await full.restore(first.entry, restoreTo('r'));
      await verifyLayout(restoreTo('r'));
      assert.deepEqual(fs.readdirSync(path.join(root(small), 'tmp')), []);
    } finally {
      spawnSync('umount', [small]);
    }
  });
});
