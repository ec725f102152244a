import * as assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { CacheFolder, CacheFolderError } from '../../tasks/DockerBuildxCacheV1/src/cache/folder';
import { cleanup, tempDir } from '../helpers';
import { blobFiles, cacheLayout, writeLayout, type Blob } from '../oci-fixture';

const bytes = (blobs: readonly Blob[]): number => blobs.reduce((a, b) => a + b.size, 0);

describe('the bounded cache folder', () => {
  let parent: string;
  let folder: CacheFolder;
  beforeEach(() => {
    parent = tempDir();
    folder = new CacheFolder(path.join(parent, '.buildx-cache'), 'job1');
  });
  afterEach(cleanup);

  it('is empty until the first commit, then usable, and imported as a local cache', async () => {
    assert.deepEqual(await folder.inspect(), { state: 'empty' });
    const first = cacheLayout(['deps', 'app v1']);
    const fresh = await folder.begin();
    writeLayout(fresh, first.root, first.blobs);
    await folder.commit(fresh);
    const found = await folder.inspect();
    assert.deepEqual(
      { state: found.state, blobs: 'blobs' in found && found.blobs, bytes: 'bytes' in found && found.bytes },
      { state: 'usable', blobs: first.blobs.length, bytes: bytes(first.blobs) },
    );
    assert.equal(folder.importSpec(), `type=local,src=${folder.dir}`);
  });

  // What happens to the folder between two checks → the second check's state, and how many blobs it reads (undefined: every leaf)
  const layerFile = (dir: string, layer: Blob): string => path.join(dir, 'blobs', 'sha256', layer.digest.slice(7));
  const stampsFile = (): string => path.join(parent, '.buildx-cache.verified.json');
  const between: [string, (dir: string, layer: Blob) => void, 'usable' | 'unusable', number | undefined][] = [
    ['nothing: no blob is read again', () => undefined, 'usable', 0],
    [
      'a layer rewritten with other bytes of its size: read, and found wrong',
      (dir, layer) => fs.writeFileSync(layerFile(dir, layer), Buffer.alloc(layer.size, 0x2a)),
      'unusable',
      undefined,
    ],
    [
      'a layer rewritten with its modification time put back: its change time tells, read, and found wrong',
      (dir, layer) => {
        const file = layerFile(dir, layer);
        // touch -r copies the times to the nanosecond, as a tool that restores them would.
        const ref = `${file}.times`;
        execFileSync('touch', ['-r', file, ref]);
        const before = fs.statSync(file, { bigint: true });
        fs.writeFileSync(file, Buffer.alloc(layer.size, 0x2a));
        execFileSync('touch', ['-r', ref, file]);
        fs.rmSync(ref);
        const after = fs.statSync(file, { bigint: true });
        assert.deepEqual([after.mtimeNs, after.ino, after.size], [before.mtimeNs, before.ino, before.size]);
      },
      'unusable',
      undefined,
    ],
    [
      'a layer copied over itself (a new file, its bytes): that one read',
      (dir, layer) => {
        const file = layerFile(dir, layer);
        fs.copyFileSync(file, `${file}.copy`);
        fs.renameSync(`${file}.copy`, file);
      },
      'usable',
      1,
    ],
    ['the stamps gone: every leaf read', () => fs.rmSync(stampsFile()), 'usable', undefined],
    ['stamps that are not a record: every leaf read', () => fs.writeFileSync(stampsFile(), '{"sha256:zz":1'), 'usable', undefined],
  ];
  for (const [name, change, state, hashed] of between) {
    it(`a second check after ${name}`, async () => {
      const layout = cacheLayout(['deps', 'app v1']);
      const fresh = await folder.begin();
      writeLayout(fresh, layout.root, layout.blobs);
      await folder.commit(fresh);
      const first = await folder.inspect();
      assert.equal(first.state, 'usable');
      const leaves = 'hashed' in first ? first.hashed : -1;
      assert.ok(leaves >= 2, `the first check reads every leaf blob: ${leaves}`);
      change(folder.dir, layout.layers[0] as Blob);
      const second = await folder.inspect();
      assert.equal(second.state, state);
      if (second.state === 'usable') assert.equal(second.hashed, hashed ?? leaves);
    });
  }

  it('an export seeded with links to the checked blobs keeps their stamps: the next check reads only what the build wrote', async () => {
    const v1 = cacheLayout(['deps', 'app v1']);
    let fresh = await folder.begin();
    writeLayout(fresh, v1.root, v1.blobs);
    await folder.commit(fresh);
    assert.equal((await folder.inspect()).state, 'usable');
    const v2 = cacheLayout(['deps', 'app v2']);
    fresh = await folder.begin(true);
    writeLayout(
      fresh,
      v2.root,
      v2.blobs.filter((b) => !fs.existsSync(layerFile(fresh, b))),
    );
    await folder.commit(fresh);
    const found = await folder.inspect();
    assert.equal(found.state, 'usable');
    const written = v2.blobs.filter((b) => !v1.blobs.some((o) => o.digest === b.digest) && !/manifest|index/.test(b.mediaType));
    assert.equal('hashed' in found && found.hashed, written.length);
  });

  it('is unusable, with the reason, when a blob was changed on disk', async () => {
    const first = cacheLayout(['deps', 'app v1']);
    writeLayout(folder.dir, first.root, first.blobs);
    const layer = first.layers[0] as Blob;
    fs.writeFileSync(path.join(folder.dir, 'blobs', 'sha256', layer.digest.slice(7)), Buffer.from('dePs'));
    assert.deepEqual(await folder.inspect(), { state: 'unusable', reason: `${layer.digest} does not match its digest` });
  });

  it('exports to a hidden sibling named after the job', async () => {
    const fresh = await folder.begin();
    assert.equal(fresh, path.join(parent, '.buildx-cache.export-job1'));
    assert.equal(folder.exportSpec(fresh, 'max', 'zstd'), `type=local,dest=${fresh},mode=max,compression=zstd`);
  });

  it('replaces the folder with the new export, which holds only what the new index reaches', async () => {
    const v1 = cacheLayout(['deps', 'app v1']);
    let fresh = await folder.begin();
    writeLayout(fresh, v1.root, v1.blobs);
    const first = await folder.commit(fresh);
    assert.deepEqual(
      { blobs: first.blobs, bytes: first.bytes, newBytes: first.newBytes, previousBytes: first.previousBytes },
      { blobs: 4, bytes: bytes(v1.blobs), newBytes: bytes(v1.blobs), previousBytes: 0 },
    );

    // BuildKit's exporter would add v2's blobs next to v1's; the fresh export plus prune keeps only v2's.
    const v2 = cacheLayout(['deps', 'app v2']);
    fresh = await folder.begin();
    writeLayout(fresh, v2.root, v2.blobs, v1.blobs);
    const second = await folder.commit(fresh);

    assert.deepEqual(blobFiles(folder.dir), v2.blobs.map((b) => b.digest).sort());
    const reused = v2.blobs.filter((b) => v1.blobs.some((o) => o.digest === b.digest));
    assert.equal(second.newBytes, bytes(v2.blobs) - bytes(reused));
    assert.equal(second.previousBytes, bytes(v1.blobs));
    assert.ok(second.prunedBytes > 0);
    assert.deepEqual(fs.readdirSync(parent), ['.buildx-cache']);
  });

  it('seeds a fresh export with links to the current blobs, so unchanged layers are not written again', async () => {
    const v1 = cacheLayout(['deps', 'app v1']);
    let fresh = await folder.begin();
    writeLayout(fresh, v1.root, v1.blobs);
    await folder.commit(fresh);

    fresh = await folder.begin(true);
    const deps = v1.layers[0] as Blob;
    const inode = (dir: string): number => fs.statSync(path.join(dir, 'blobs', 'sha256', deps.digest.slice(7))).ino;
    assert.deepEqual(blobFiles(fresh), v1.blobs.map((b) => b.digest).sort());
    assert.equal(inode(fresh), inode(folder.dir));
    assert.ok(!fs.existsSync(path.join(fresh, 'index.json')), 'BuildKit writes the new index.json');

    // BuildKit adds what changed and a new index; the commit keeps only what that index reaches.
    const v2 = cacheLayout(['deps', 'app v2']);
    writeLayout(fresh, v2.root, v2.blobs);
    const result = await folder.commit(fresh);
    assert.deepEqual(blobFiles(folder.dir), v2.blobs.map((b) => b.digest).sort());
    assert.ok(result.prunedBytes > 0);
  });

  it('keeps the old folder when the export lacks a blob its index needs', async () => {
    const v1 = cacheLayout(['deps', 'app v1']);
    let fresh = await folder.begin();
    writeLayout(fresh, v1.root, v1.blobs);
    await folder.commit(fresh);

    const v2 = cacheLayout(['deps', 'app v2']);
    fresh = await folder.begin();
    writeLayout(fresh, v2.root, v2.blobs.slice(1));
    await assert.rejects(folder.commit(fresh), CacheFolderError);
    assert.deepEqual(blobFiles(folder.dir), v1.blobs.map((b) => b.digest).sort());
    await folder.discard(fresh);
    assert.deepEqual(fs.readdirSync(parent), ['.buildx-cache']);
  });

  it('sweeps siblings that a killed job left an hour ago, and no others', async () => {
    const stale = path.join(parent, '.buildx-cache.export-0123456789ab');
    const live = path.join(parent, '.buildx-cache.export-ba9876543210');
    const unrelated = path.join(parent, '.buildx-cache.keep');
    for (const d of [stale, live, unrelated]) fs.mkdirSync(d);
    const hourAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    fs.utimesSync(stale, hourAgo, hourAgo);
    fs.utimesSync(unrelated, hourAgo, hourAgo);
    await folder.begin();
    assert.ok(!fs.existsSync(stale));
    assert.ok(fs.existsSync(live));
    assert.ok(fs.existsSync(unrelated));
  });

  it('starts over when this job left an export behind', async () => {
    const fresh = path.join(parent, '.buildx-cache.export-job1');
    fs.mkdirSync(fresh);
    fs.writeFileSync(path.join(fresh, 'leftover'), 'x');
    assert.equal(await folder.begin(), fresh);
    assert.ok(!fs.existsSync(fresh));
  });
});
