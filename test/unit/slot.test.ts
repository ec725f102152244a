import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { CacheFolder, CacheFolderError } from '../../tasks/DockerBuildxCacheV1/src/cache/folder';
import { ExportSlot } from '../../tasks/DockerBuildxCacheV1/src/cache/slot';
import { cleanup, tempDir } from '../helpers';
import { blobFiles, cacheLayout, writeLayout } from '../oci-fixture';

/** What a step does to the slot: an export written into it, or one of the slot's own calls. */
type Step = 'export' | 'broken export' | 'empty' | 'commit' | 'abandon';

describe('the export slot: one owner commits or abandons the fresh export folder', () => {
  let parent: string;
  let folder: CacheFolder;
  const v1 = cacheLayout(['deps', 'app v1']);
  const v2 = cacheLayout(['deps', 'app v2']);
  beforeEach(async () => {
    parent = tempDir();
    folder = new CacheFolder(path.join(parent, '.buildx-cache'), 'job1');
    const fresh = await folder.begin();
    writeLayout(fresh, v1.root, v1.blobs);
    await folder.commit(fresh);
  });
  afterEach(cleanup);

  const fresh = (): string => path.join(parent, '.buildx-cache.export-job1');

  // steps → the cache folder's version afterwards, whether the export folder is left, and whether a commit failed
  const table: [string, Step[], 'v1' | 'v2', boolean, boolean][] = [
    ['a committed export replaces the cache folder; abandoning it after does nothing', ['export', 'commit', 'abandon'], 'v2', false, false],
    ['an abandoned export is deleted, and abandoning it again does nothing', ['export', 'abandon', 'abandon'], 'v1', false, false],
    ['an export that cannot be committed is abandoned by the commit itself', ['broken export', 'commit'], 'v1', false, true],
    [
      'emptied, the slot stays open: the export written after is committed',
      ['broken export', 'empty', 'export', 'commit'],
      'v2',
      false,
      false,
    ],
    ['an export nobody commits or abandons stays (its owner has not decided)', ['export'], 'v1', true, false],
  ];
  for (const [name, steps, after, left, commitFailed] of table) {
    it(name, async () => {
      const slot = await ExportSlot.open(folder, true);
      assert.equal(slot.dir, folder.dir);
      let failed = false;
      for (const step of steps) {
        if (step === 'export') writeLayout(fresh(), v2.root, v2.blobs);
        // Without its new layer: the seed has the rest.
        else if (step === 'broken export')
          writeLayout(
            fresh(),
            v2.root,
            v2.blobs.filter((b) => b !== v2.layers[1]),
          );
        else if (step === 'commit')
          failed = await slot.commit().then(
            () => false,
            (err: unknown) => err instanceof CacheFolderError,
          );
        else await slot[step]();
      }
      assert.equal(failed, commitFailed);
      assert.equal(fs.existsSync(fresh()), left);
      assert.deepEqual(blobFiles(folder.dir), (after === 'v1' ? v1 : v2).blobs.map((b) => b.digest).sort());
    });
  }

  it("exports with the folder's spec, reset=true when asked", async () => {
    const slot = await ExportSlot.open(folder, false);
    assert.equal(slot.exportSpec('max', 'zstd'), `type=local,dest=${fresh()},mode=max,compression=zstd`);
    assert.equal(slot.exportSpec('min', 'gzip', true), `type=local,dest=${fresh()},mode=min,compression=gzip,reset=true`);
  });
});
