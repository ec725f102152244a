import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import {
  blobPath,
  hashFile,
  LayoutError,
  parseIndex,
  prune,
  reachable,
  verifyLayout,
  type Descriptor,
} from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { cleanup, tempDir } from '../helpers';
import { blob, blobFiles, cacheLayout, desc, INDEX, LAYER, MANIFEST, writeLayout, type Blob } from '../oci-fixture';

function store(blobs: readonly Blob[]): (d: Descriptor) => Promise<Buffer> {
  const byDigest = new Map(blobs.map((b) => [b.digest, b.data]));
  return (d) => {
    const data = byDigest.get(d.digest);
    return data === undefined ? Promise.reject(new Error('no such blob')) : Promise.resolve(data);
  };
}

const sorted = (m: Map<string, Descriptor>): string[] => [...m.keys()].sort();

describe('OCI reachability', () => {
  const l1 = blob(LAYER, 'layer one');
  const l2 = blob(LAYER, 'layer two');
  const cfg = blob('application/vnd.oci.image.config.v1+json', { architecture: 'amd64' });
  const manifest = blob(MANIFEST, { schemaVersion: 2, mediaType: MANIFEST, config: desc(cfg), layers: [desc(l1), desc(l2)] });
  const index = blob(INDEX, { schemaVersion: 2, mediaType: INDEX, manifests: [desc(manifest)] });
  const untyped = blob(INDEX, { manifests: [desc(l1)] });
  // Content cannot hold its own digest, but a corrupt store can serve anything under any name.
  const loopDigest = `sha256:${'b'.repeat(64)}`;
  const loop: Blob = {
    mediaType: INDEX,
    digest: loopDigest,
    size: 1,
    data: Buffer.from(JSON.stringify({ manifests: [{ mediaType: INDEX, digest: loopDigest, size: 1 }] })),
  };
  const hostile = blob(INDEX, { manifests: [{ digest: 'sha256:../../etc/passwd', size: 1 }] });

  const cases: [string, Descriptor[], Blob[], string[]][] = [
    [
      'BuildKit cache index: layers and cache config',
      [desc(cacheLayout(['a', 'b']).root)],
      cacheLayout(['a', 'b']).blobs,
      cacheLayout(['a', 'b']).blobs.map((b) => b.digest),
    ],
    ['image manifest: config and layers', [desc(manifest)], [manifest, cfg, l1, l2], [manifest, cfg, l1, l2].map((b) => b.digest)],
    ['index of manifests', [desc(index)], [index, manifest, cfg, l1, l2], [index, manifest, cfg, l1, l2].map((b) => b.digest)],
    [
      'a descriptor without a media type is read by its content',
      [{ digest: untyped.digest, size: untyped.size }],
      [untyped, l1],
      [untyped.digest, l1.digest],
    ],
    ['layers are never read, so they need not exist', [desc(l1)], [], [l1.digest]],
    [
      'a blob reached twice counts once',
      [desc(index), desc(manifest)],
      [index, manifest, cfg, l1, l2],
      [index, manifest, cfg, l1, l2].map((b) => b.digest),
    ],
    ['an empty index reaches nothing', [], [], []],
    ['an index that lists itself ends', [desc(loop)], [loop], [loop.digest]],
  ];
  for (const [name, roots, blobs, expected] of cases) {
    it(name, async () => assert.deepEqual(sorted(await reachable({ manifests: roots }, store(blobs))), [...expected].sort()));
  }

  const broken: [string, Descriptor[], Blob[], RegExp][] = [
    ['a missing manifest', [desc(manifest)], [], /cannot read sha256:/],
    ['a manifest that is not JSON', [desc(manifest)], [{ ...manifest, data: Buffer.from('{oops') }], /is not valid JSON/],
    ['a child with a digest that escapes the layout', [desc(hostile)], [hostile], /manifests\[0\] is not a valid descriptor/],
  ];
  for (const [name, roots, blobs, pattern] of broken) {
    it(`rejects ${name}`, async () =>
      assert.rejects(
        reachable({ manifests: roots }, store(blobs)),
        (err: Error) => err instanceof LayoutError && pattern.test(err.message),
      ));
  }

  const badIndexes: [string, string][] = [
    ['not JSON', '{'],
    ['not an object', '42'],
    ['manifests not a list', '{"manifests":{}}'],
    ['a digest that escapes the layout', '{"manifests":[{"digest":"sha256:../../x","size":1}]}'],
    ['a negative size', `{"manifests":[{"digest":"sha256:${'a'.repeat(64)}","size":-1}]}`],
  ];
  for (const [name, text] of badIndexes)
    it(`rejects an index.json that is ${name}`, () => assert.throws(() => parseIndex(text), LayoutError));

  it('builds blob paths only from valid digests', () => {
    assert.equal(blobPath('/c', `sha256:${'a'.repeat(64)}`), path.join('/c', 'blobs', 'sha256', 'a'.repeat(64)));
    assert.throws(() => blobPath('/c', 'sha256:../../etc/passwd'), LayoutError);
    assert.throws(() => blobPath('/c', `md5:${'a'.repeat(32)}`), LayoutError);
  });
});

describe('pruning a layout folder', () => {
  afterEach(cleanup);

  it('keeps what index.json reaches and deletes everything else', async () => {
    const dir = tempDir();
    const live = cacheLayout(['new app', 'deps']);
    const old = cacheLayout(['old app']);
    writeLayout(dir, live.root, live.blobs, old.blobs);
    fs.mkdirSync(path.join(dir, 'ingest', 'abc'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'ingest', 'abc', 'data'), 'partial');
    fs.writeFileSync(path.join(dir, 'index.json.lock'), '');

    const result = await prune(dir);

    assert.deepEqual(blobFiles(dir), live.blobs.map((b) => b.digest).sort());
    assert.deepEqual(fs.readdirSync(dir).sort(), ['blobs', 'index.json', 'oci-layout']);
    assert.equal(result.kept.size, live.blobs.length);
    assert.equal(
      [...result.kept.values()].reduce((a, b) => a + b, 0),
      live.blobs.reduce((a, b) => a + b.size, 0),
    );
    assert.equal(result.removedBlobs, old.blobs.length);
    assert.equal(
      result.removedBytes,
      old.blobs.reduce((a, b) => a + b.size, 0),
    );
    assert.deepEqual(result.missing, []);
  });

  it('reports reachable blobs that are missing', async () => {
    const dir = tempDir();
    const live = cacheLayout(['a', 'b']);
    const lost = live.layers[0] as Blob;
    writeLayout(
      dir,
      live.root,
      live.blobs.filter((b) => b !== lost),
    );
    assert.deepEqual((await prune(dir)).missing, [lost.digest]);
  });

  it('fails on a folder without index.json', async () => {
    await assert.rejects(prune(tempDir()), /ENOENT/);
  });
});

describe('verifying a cache folder before BuildKit sees it', () => {
  afterEach(cleanup);

  /** A good cache folder, then one change to it. */
  function folderWith(change: (dir: string, live: ReturnType<typeof cacheLayout>) => void): string {
    const dir = tempDir();
    const live = cacheLayout(['dependencies layer', 'app layer']);
    writeLayout(dir, live.root, live.blobs);
    change(dir, live);
    return dir;
  }
  const file = (dir: string, b: Blob): string => path.join(dir, 'blobs', 'sha256', b.digest.slice(7));
  const layer0 = (live: ReturnType<typeof cacheLayout>): Blob => live.layers[0] as Blob;

  it('accepts a complete folder and counts what it holds', async () => {
    const live = cacheLayout(['dependencies layer', 'app layer']);
    const dir = tempDir();
    writeLayout(dir, live.root, live.blobs);
    const { blobs, bytes, hashed } = await verifyLayout(dir);
    // Every leaf read: the layers and the cache config (the index and the manifest are read as they are walked).
    assert.deepEqual({ blobs, bytes, hashed }, { blobs: live.blobs.length, bytes: live.blobs.reduce((a, b) => a + b.size, 0), hashed: 3 });
  });

  // Each of these made BuildKit fail the whole build (or import nothing) when handed the folder.
  const broken: [string, (dir: string, live: ReturnType<typeof cacheLayout>) => void, RegExp][] = [
    ['a layer is missing', (dir, live) => fs.rmSync(file(dir, layer0(live))), /is missing/],
    ['a layer is truncated', (dir, live) => fs.truncateSync(file(dir, layer0(live)), 3), /has 3 bytes instead of/],
    [
      'a layer has other bytes of the same size',
      (dir, live) => fs.writeFileSync(file(dir, layer0(live)), Buffer.from('Dependencies layer')),
      /does not match its digest$/,
    ],
    ['the root index is missing', (dir, live) => fs.rmSync(file(dir, live.root)), /cannot read sha256:.*ENOENT/],
    [
      'the root index is altered',
      (dir, live) => fs.writeFileSync(file(dir, live.root), Buffer.from(JSON.stringify({ manifests: [] }))),
      /does not match its digest or size/,
    ],
    ['index.json is not JSON', (dir) => fs.writeFileSync(path.join(dir, 'index.json'), '{oops'), /not valid JSON/],
    [
      'index.json lacks the "latest" tag BuildKit imports',
      (dir, live) => fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ manifests: [desc(live.root)] })),
      /no manifest tagged "latest"/,
    ],
    [
      'index.json is empty',
      (dir) => fs.writeFileSync(path.join(dir, 'index.json'), '{"schemaVersion":2,"manifests":[]}'),
      /no manifest tagged "latest"/,
    ],
  ];
  for (const [name, change, pattern] of broken) {
    it(`rejects a folder where ${name}`, async () => {
      await assert.rejects(verifyLayout(folderWith(change)), (err: Error) => err instanceof LayoutError && pattern.test(err.message));
    });
  }

  it('hashes files as streams', async () => {
    const dir = tempDir();
    const b = blob(LAYER, Buffer.alloc(3 * 1024 * 1024, 7));
    fs.writeFileSync(path.join(dir, 'f'), b.data);
    assert.equal(await hashFile(path.join(dir, 'f')), b.digest);
  });
});
