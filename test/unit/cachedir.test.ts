// The cache folder against a careless or hostile pipeline (issue #12): a cacheDir that holds what
// is not the cache is refused before anything runs, and a folder the task did not write is never
// deleted or replaced.
import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { CacheFolder } from '../../tasks/DockerBuildxCacheV1/src/cache/folder';
import { prepareFolder, prepareFromStore } from '../../tasks/DockerBuildxCacheV1/src/cache/session';
import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import { InputError, type Source } from '../../tasks/DockerBuildxCacheV1/src/config/source';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { verifyLayout } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { cleanup, tempDir, writeTree } from '../helpers';
import { blobFiles, cacheFolder, cacheLayout, writeLayout, type Blob } from '../oci-fixture';

const KEY = ['k', 'a'];
const SCOPE = 'refs/heads/main';
const now = new Date('2026-11-28T12:00:00Z');

/** A folder of the user's that must survive whatever the task does. */
function userFolder(dir: string): () => void {
  writeTree(dir, { 'notes.txt': 'mine', 'src/app.py': 'print(1)' });
  return () => {
    assert.equal(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8'), 'mine');
    assert.equal(fs.readFileSync(path.join(dir, 'src', 'app.py'), 'utf8'), 'print(1)');
  };
}

/** The config fields the cache phases read. */
function cacheConfig(dir: string, failOnError = false): Config {
  return { cache: { dir, failOnError, save: 'onSuccess', mode: 'max', compression: 'gzip' } } as unknown as Config;
}

describe('the cache folder is the cache, and nothing else', function () {
  this.timeout(60000);
  afterEach(cleanup);

  // 1. A cacheDir that holds the sources, the workspace, an agent folder, the store or the context.
  describe('1. cacheDir is refused when it holds what is not the cache', () => {
    let root: string;
    let vars: Record<string, string>;
    beforeEach(() => {
      root = tempDir('dbxc-guard-');
      vars = {
        'Pipeline.Workspace': path.join(root, 'w', '1'),
        'System.DefaultWorkingDirectory': path.join(root, 'w', '1', 's'),
        'Build.SourcesDirectory': path.join(root, 'w', '1', 's'),
        'Agent.WorkFolder': path.join(root, 'w'),
        'Agent.TempDirectory': path.join(root, 'w', '_temp'),
        'Agent.ToolsDirectory': path.join(root, 'w', '_tool'),
        'Agent.HomeDirectory': path.join(root, 'agent'),
      };
      writeTree(vars['System.DefaultWorkingDirectory'] ?? '', { Dockerfile: 'FROM scratch\n', 'app/Dockerfile': 'FROM scratch\n' });
    });
    const source = (inputs: Record<string, string>): Source => ({ input: (n) => inputs[n] ?? '', variable: (n) => vars[n] });
    const read = (inputs: Record<string, string>): Config => readConfig(source({ imageName: 'app', ...inputs }));

    const REFUSED: [string, Record<string, string>][] = [
      ['the workspace (..)', { cacheDir: '..' }],
      ['the sources (.)', { cacheDir: '.' }],
      ['the agent work folder', { cacheDir: '$(Agent.WorkFolder)' }],
      ['the temp folder', { cacheDir: '$(Agent.TempDirectory)' }],
      ['the tool cache', { cacheDir: '$(Agent.ToolsDirectory)' }],
      ['the agent home', { cacheDir: '$(Agent.HomeDirectory)' }],
      ['the file system root', { cacheDir: '/' }],
      ['the local store', { cacheDir: '$(Agent.WorkFolder)/_buildx_cache_store' }],
      ['a folder inside the local store', { cacheDir: '$(Agent.WorkFolder)/_buildx_cache_store/v1' }],
      ['a custom store', { cacheDir: '../../store', localStorePath: '../../store/cache' }],
      ['the build context', { cacheDir: 'app', buildContext: 'app' }],
      ['a folder that holds the build context', { cacheDir: 'app', buildContext: 'app/sub' }],
    ];
    for (const [name, inputs] of REFUSED) {
      it(`refuses a cacheDir that is or holds ${name}`, () => {
        if (inputs.buildContext === 'app/sub')
          fs.mkdirSync(path.join(vars['System.DefaultWorkingDirectory'] ?? '', 'app', 'sub'), { recursive: true });
        assert.throws(
          () => read(inputs),
          (err: Error) => err instanceof InputError && err.input === 'cacheDir' && /cacheDir/.test(err.message),
        );
      });
    }
    const ACCEPTED: [string, Record<string, string>][] = [
      ['the default', {}],
      ['a folder in the workspace', { cacheDir: '$(Pipeline.Workspace)/cache' }],
      ['a folder in the temp folder', { cacheDir: '$(Agent.TempDirectory)/buildx' }],
      ['a folder outside the agent', { cacheDir: '/var/cache/buildx-ci' }],
      [
        'anything with a backend that has no cache folder',
        { cacheDir: '..', cacheBackend: 'registry', registryCacheRef: 'r.example/app:cache' },
      ],
    ];
    for (const [name, inputs] of ACCEPTED) it(`accepts ${name}`, () => assert.ok(read(inputs).cache.dir));

    // 5. BuildKit carries the cache path in a gRPC header, which takes printable ASCII only.
    const NOT_ASCII = ['café', '日本', 'tab\there', 'new\nline'];
    for (const name of NOT_ASCII) {
      it(`refuses a cacheDir BuildKit cannot take: ${JSON.stringify(name)}`, () => {
        assert.throws(
          () => read({ cacheDir: `$(Pipeline.Workspace)/${name}` }),
          (err: Error) => err instanceof InputError && err.input === 'cacheDir' && /ASCII/.test(err.message),
        );
      });
    }
  });

  describe('1. the task never deletes or replaces a folder it did not write', () => {
    let store: LocalStore;
    let work: string;
    beforeEach(async () => {
      work = tempDir('dbxc-own-');
      store = new LocalStore(path.join(work, 'store'));
      const { dir } = cacheFolder(work, 'saved', ['deps']);
      await store.save({ cacheDir: dir, key: KEY.join('|'), segments: KEY, scope: SCOPE, now });
    });

    it('a cache miss leaves a user folder named as cacheDir alone', async () => {
      const dir = path.join(work, 'mine');
      const intact = userFolder(dir);
      await prepareFromStore(cacheConfig(dir), 'job', store, ['other'], [], { read: [SCOPE], write: SCOPE });
      intact();
    });

    it('a cache hit does not replace a user folder named as cacheDir', async () => {
      const dir = path.join(work, 'mine');
      const intact = userFolder(dir);
      const prepared = await prepareFromStore(cacheConfig(dir), 'job', store, KEY, [], { read: [SCOPE], write: SCOPE });
      intact();
      assert.deepEqual(prepared.flags.from, [], 'nothing is imported from a folder that is not the cache');
      assert.deepEqual(prepared.flags.to, [], 'nothing is exported to replace it');
    });

    it('a restore straight into a user folder is refused, and the folder is kept', async () => {
      const dir = path.join(work, 'mine');
      const intact = userFolder(dir);
      const { entries } = await store.list([SCOPE]);
      await assert.rejects(store.restore(entries[0] ?? assert.fail(), dir), /did not write|not a cache/);
      intact();
    });

    it('the directory backend never commits over a user folder', async () => {
      const dir = path.join(work, 'mine');
      const intact = userFolder(dir);
      const prepared = await prepareFolder(cacheConfig(dir), 'job');
      assert.equal(prepared.slot, undefined, 'no export that would replace the folder');
      const folder = new CacheFolder(dir, 'job2');
      const fresh = await folder.begin();
      const v = cacheLayout(['x']);
      writeLayout(fresh, v.root, v.blobs);
      await assert.rejects(folder.commit(fresh), /did not write|not a cache/);
      intact();
    });

    it('a folder the task wrote, or a bare BuildKit cache (an earlier version, a Cache@2 template), is replaced', async () => {
      const dir = path.join(work, 'legacy');
      const v = cacheLayout(['old']);
      writeLayout(dir, v.root, v.blobs);
      const prepared = await prepareFromStore(cacheConfig(dir), 'job', store, KEY, [], { read: [SCOPE], write: SCOPE });
      assert.equal(prepared.hit, 'true');
      await verifyLayout(dir);
      assert.ok(!blobFiles(dir).includes(v.layers[0]?.digest ?? ''));
    });
  });

  // 11. failOnCacheError fails the step for a damaged folder and for skipped entries.
  it('11. failOnCacheError fails on a damaged cache folder', async () => {
    const dir = path.join(tempDir('dbxc-damaged-'), '.buildx-cache');
    const v = cacheLayout(['deps']);
    writeLayout(dir, v.root, v.blobs);
    fs.writeFileSync(path.join(dir, 'blobs', 'sha256', (v.layers[0] as Blob).digest.slice(7)), 'DAMAGED');
    await assert.rejects(prepareFolder(cacheConfig(dir, true), 'job'), /cannot be used/);
    const lenient = await prepareFolder(cacheConfig(dir, false), 'job');
    assert.equal(lenient.hit, 'false');
  });

  it('11. failOnCacheError fails on an entry that had to be skipped', async () => {
    const work = tempDir('dbxc-skip-');
    const storeDir = path.join(work, 'store');
    const store = new LocalStore(storeDir);
    const { dir, layout } = cacheFolder(work, 'saved', ['deps']);
    await store.save({ cacheDir: dir, key: KEY.join('|'), segments: KEY, scope: SCOPE, now });
    fs.rmSync(path.join(storeDir, 'v1', 'blobs', 'sha256', (layout.layers[0] as Blob).digest.slice(7)), { force: true });
    await assert.rejects(
      prepareFromStore(cacheConfig(path.join(work, 'cache'), true), 'job', store, KEY, [], { read: [SCOPE], write: SCOPE }),
      /Skipped a cache entry/,
    );
  });

  // 9. A blob that is a link: the folder must not freeze.
  it('9. a symlinked blob in the cache folder does not freeze it: the next commit replaces it', async () => {
    const parent = tempDir('dbxc-link-');
    const folder = new CacheFolder(path.join(parent, '.buildx-cache'), 'job1');
    const v1 = cacheLayout(['deps', 'app v1']);
    let fresh = await folder.begin();
    writeLayout(fresh, v1.root, v1.blobs);
    await folder.commit(fresh);
    // The deps layer becomes a link to a good copy elsewhere.
    const deps = v1.layers[0] as Blob;
    const elsewhere = path.join(parent, 'copy');
    fs.writeFileSync(elsewhere, deps.data);
    const file = path.join(folder.dir, 'blobs', 'sha256', deps.digest.slice(7));
    fs.rmSync(file);
    fs.symlinkSync(elsewhere, file);

    const found = await folder.inspect();
    assert.equal(found.state, 'unusable', 'a link is not a blob the task can vouch for');
    fresh = await folder.begin(true);
    const v2 = cacheLayout(['deps', 'app v2']);
    writeLayout(fresh, v2.root, v2.blobs);
    await folder.commit(fresh);
    await verifyLayout(folder.dir);
    assert.ok(!fs.lstatSync(path.join(folder.dir, 'blobs', 'sha256', deps.digest.slice(7))).isSymbolicLink());
  });
});
