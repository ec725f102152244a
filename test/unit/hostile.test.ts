// The adversarial cases of issue #12: what a careless or hostile user, a bad clock or a damaged
// store does to the stores and the cache folder. Each case failed before its fix.
import * as assert from 'assert/strict';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ContainerClient, ContainerSASPermissions, type ContainerClient as Container } from '@azure/storage-blob';
import { ensureAzurite, freshContainer } from '../../scripts/azurite';
import { verifyLayout } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { AzureBlobStore } from '../../tasks/DockerBuildxCacheV1/src/store/blob';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { scopeSlug } from '../../tasks/DockerBuildxCacheV1/src/store/names';
import { restoreFromStore } from '../../tasks/DockerBuildxCacheV1/src/store/restore';
import type { CacheStore } from '../../tasks/DockerBuildxCacheV1/src/store/types';
import { cleanup, tempDir, writeTree } from '../helpers';
import { blobFiles, cacheFolder, type Blob } from '../oci-fixture';

const WORKER = path.join(__dirname, '..', 'store-worker.js');
const KEY = ['k', 'a'];
const SCOPE = 'refs/heads/main';
const now = new Date('2026-11-28T12:00:00Z');
const hex = (b: Blob): string => b.digest.slice(7);

/** Runs a command as root; the tests that mount file systems need it (as the full-disk test does). */
function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

describe('hostile: the local store', function () {
  this.timeout(60000);
  let storeDir: string;
  let root: string;
  let store: LocalStore;
  let work: string;
  let outside: string;
  beforeEach(async () => {
    work = tempDir('dbxc-work-');
    storeDir = path.join(tempDir('dbxc-store-'), 'store');
    root = path.join(storeDir, 'v1');
    store = new LocalStore(storeDir);
    outside = tempDir('dbxc-outside-');
    const { dir } = cacheFolder(work, 'seed', ['deps']);
    await store.save({ cacheDir: dir, key: 'k|old', segments: ['k', 'old'], scope: SCOPE, now: new Date('2026-01-01T00:00:00Z') });
  });
  afterEach(cleanup);

  // 2. Retention must never follow a link out of the store.
  const old = (file: string): void => {
    const t = new Date(Date.now() - 3 * 3600_000);
    fs.lutimesSync(file, t, t);
  };
  const PLANTED: [string, (outside: string) => void, boolean][] = [
    // [what, plant, whether the store is refused as a whole]
    ['a scope folder that links outside', (o) => fs.symlinkSync(o, path.join(root, 'entries', 'evil')), false],
    [
      'an entry file that links outside',
      (o) => fs.symlinkSync(path.join(o, 'config.json'), path.join(root, 'entries', scopeSlug(SCOPE), '00000000000002-evil.json')),
      false,
    ],
    ['a blob folder that links outside', (o) => fs.symlinkSync(o, path.join(root, 'blobs', 'sha512')), false],
    [
      'a blob that links outside',
      (o) => fs.symlinkSync(path.join(o, 'a'.repeat(64)), path.join(root, 'blobs', 'sha256', 'b'.repeat(64))),
      false,
    ],
    [
      'a file in tmp that links outside',
      (o) => {
        fs.mkdirSync(path.join(root, 'tmp'), { recursive: true });
        fs.symlinkSync(o, path.join(root, 'tmp', 'evil'));
        old(path.join(root, 'tmp', 'evil'));
      },
      false,
    ],
    [
      'tmp itself a link',
      (o) => {
        fs.rmSync(path.join(root, 'tmp'), { recursive: true, force: true });
        fs.symlinkSync(o, path.join(root, 'tmp'));
      },
      true,
    ],
    [
      'trash itself a link',
      (o) => {
        fs.rmSync(path.join(root, 'trash'), { recursive: true, force: true });
        fs.symlinkSync(o, path.join(root, 'trash'));
      },
      true,
    ],
    [
      'entries itself a link',
      (o) => {
        fs.renameSync(path.join(root, 'entries'), path.join(o, 'moved-entries'));
        fs.symlinkSync(path.join(o, 'moved-entries'), path.join(root, 'entries'));
      },
      true,
    ],
  ];
  for (const [what, plant, refused] of PLANTED) {
    it(`2. retention never follows ${what}`, async () => {
      const victims = { 'config.json': '{"not":"an entry"}', ['a'.repeat(64)]: 'precious', 'old.txt': 'keep me' };
      writeTree(outside, victims);
      for (const name of Object.keys(victims)) old(path.join(outside, name));
      plant(outside);
      const pruning = store.prune({ retentionDays: 7, now });
      if (refused) await assert.rejects(pruning, /link/);
      else await pruning;
      for (const [name, content] of Object.entries(victims))
        assert.equal(fs.readFileSync(path.join(outside, name), 'utf8'), content, `${name} outside the store`);
      if (!refused) {
        const { skipped } = await store.list([SCOPE]);
        if (what.startsWith('an entry'))
          assert.ok(
            skipped.some((s) => /not a regular file|link/.test(s)),
            skipped.join('\n'),
          );
      }
    });
  }

  // 8. A folder (or anything but a file) where a blob belongs.
  const AT_BLOB_PATH: [string, (file: string) => void][] = [
    ['a folder', (f) => fs.mkdirSync(path.join(f, 'inner'), { recursive: true })],
    ['a link', (f) => fs.symlinkSync('/dev/zero', f)],
    ['a named pipe', (f) => sh('mkfifo', [f])],
  ];
  for (const [what, put] of AT_BLOB_PATH) {
    it(`8. ${what} at a blob path is quarantined; restore skips its entry, and the next save puts the blob back`, async () => {
      const { dir, layout } = cacheFolder(work, 'v1', ['deps v1', 'app v1']);
      const saved = await store.save({ cacheDir: dir, key: KEY.join('|'), segments: KEY, scope: SCOPE, now });
      const file = path.join(root, 'blobs', 'sha256', hex(layout.layers[0] as Blob));
      fs.chmodSync(file, 0o644);
      fs.rmSync(file);
      put(file);
      const outcome = await restoreFromStore(store, [SCOPE], KEY, [], path.join(work, 'r1'));
      assert.equal(outcome.hit, 'false');
      assert.equal(outcome.skipped.length, 1);
      const again = await store.save({
        cacheDir: dir,
        key: KEY.join('|'),
        segments: KEY,
        scope: SCOPE,
        now: new Date(now.getTime() + 1000),
      });
      assert.equal(again.newBlobs >= 1, true);
      const after = await restoreFromStore(store, [SCOPE], KEY, [], path.join(work, 'r2'));
      assert.equal(after.hit, 'true');
      await verifyLayout(path.join(work, 'r2'));
      assert.ok(saved.entry.id);
      await store.prune({ retentionDays: 7, now: new Date(now.getTime() + 2000) });
    });
  }

  // 10. An entry file is read only up to a cap.
  it('10. a huge (sparse) entry file is skipped without being read', async () => {
    const scopeDir = path.join(root, 'entries', scopeSlug(SCOPE));
    const huge = path.join(scopeDir, '00000000000003-huge.json');
    fs.writeFileSync(huge, '');
    fs.truncateSync(huge, 1 << 30);
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, [WORKER, 'list', `local:${storeDir}`, SCOPE]);
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(text))));
    });
    const { skipped, maxRssMb } = JSON.parse(out) as { skipped: string[]; maxRssMb: number };
    assert.ok(
      skipped.some((s) => s.includes('00000000000003-huge.json') && /larger than/.test(s)),
      skipped.join('\n'),
    );
    assert.ok(maxRssMb < 300, `listing took ${maxRssMb} MB of memory`);
  });
});

describe('hostile: both stores', function () {
  this.timeout(120000);
  let azurite: string;
  before(() => {
    azurite = ensureAzurite().blobUrl;
  });
  afterEach(cleanup);

  interface Opened {
    readonly store: CacheStore;
    /** The same store, allowed only to read. */
    readOnly(): Promise<CacheStore>;
    done(): void;
  }
  const STORES: [string, () => Promise<Opened>][] = [
    [
      'local',
      () => {
        const dir = tempDir('dbxc-store-');
        const view = tempDir('dbxc-ro-');
        return Promise.resolve({
          store: new LocalStore(dir),
          readOnly() {
            sh('mount', ['--bind', dir, view]);
            sh('mount', ['-o', 'remount,bind,ro', view]);
            return Promise.resolve(new LocalStore(view));
          },
          done: () => void spawnSync('umount', [view]),
        });
      },
    ],
    [
      'Azure Blob (Azurite)',
      async () => {
        const container: Container = freshContainer(azurite);
        await container.create();
        return {
          store: new AzureBlobStore(container, 'test', { graceMinutes: 0 }),
          async readOnly() {
            const url = await container.generateSasUrl({
              permissions: ContainerSASPermissions.parse('rl'),
              expiresOn: new Date(Date.now() + 3600_000),
            });
            return new AzureBlobStore(new ContainerClient(url), 'read-only', { graceMinutes: 0 });
          },
          done: () => undefined,
        };
      },
    ],
  ];

  for (const [name, open] of STORES) {
    describe(name, () => {
      let s: Opened;
      let work: string;
      beforeEach(async () => {
        s = await open();
        work = tempDir('dbxc-work-');
      });
      afterEach(() => s.done());
      const save = (dir: string, at: Date, key = KEY): ReturnType<CacheStore['save']> =>
        s.store.save({ cacheDir: dir, key: key.join('|'), segments: key, scope: SCOPE, now: at });

      // 3. A clock in the future must not freeze a key.
      it('3. an entry dated 2099 neither outranks a later save nor makes retention delete it', async () => {
        const future = cacheFolder(work, 'future', ['deps', 'app from a bad clock']);
        const honest = cacheFolder(work, 'honest', ['deps', 'app now']);
        await save(future.dir, new Date('2099-01-01T00:00:00Z'));
        const fresh = await save(honest.dir, new Date());
        const outcome = await restoreFromStore(s.store, [SCOPE], KEY, [], path.join(work, 'r'));
        assert.equal(outcome.entry?.id, fresh.entry.id, 'the honest save is the newest');
        await s.store.prune({ retentionDays: 7, now: new Date() });
        const { entries } = await s.store.list([SCOPE]);
        assert.deepEqual(
          entries.map((e) => e.id),
          [fresh.entry.id],
          'retention kept the honest save and dropped the future one',
        );
      });

      // 6. A store that may only be read restores.
      it('6. a read-only store restores', async () => {
        const { dir, layout } = cacheFolder(work, 'v1', ['deps', 'app']);
        await save(dir, now);
        const ro = await s.readOnly();
        const outcome = await restoreFromStore(ro, [SCOPE], KEY, [], path.join(work, 'r'));
        assert.equal(outcome.hit, 'true', outcome.skipped.join('\n'));
        assert.deepEqual(blobFiles(path.join(work, 'r')), layout.blobs.map((b) => b.digest).sort());
      });

      // 7. The save never follows a link in the cache folder.
      const LINKED: [string, (dir: string, file: string, outsideFile: string) => void][] = [
        ['to a file outside with the same content', (_d, f, o) => fs.symlinkSync(o, f)],
        ['to /dev/zero', (_d, f) => fs.symlinkSync('/dev/zero', f)],
        ['as a named pipe', (_d, f) => sh('mkfifo', [f])],
      ];
      for (const [what, plant] of LINKED) {
        it(`7. a blob in the cache folder planted ${what} fails the save without touching what it points at`, async () => {
          const { dir, layout } = cacheFolder(work, 'v1', ['deps', 'app']);
          const deps = layout.layers[0] as Blob;
          const outsideFile = path.join(tempDir('dbxc-outside-'), 'victim');
          fs.writeFileSync(outsideFile, deps.data, { mode: 0o640 });
          const file = path.join(dir, 'blobs', 'sha256', hex(deps));
          fs.rmSync(file);
          plant(dir, file, outsideFile);
          await assert.rejects(save(dir, now), /regular file|link/);
          assert.equal(fs.statSync(outsideFile).mode & 0o777, 0o640, 'the file outside keeps its mode');
          const { entries } = await s.store.list([SCOPE]);
          assert.deepEqual(entries, []);
        });
      }
    });
  }
});
