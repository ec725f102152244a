import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import type { Descriptor } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { goArch, prefetchImage } from '../../tasks/DockerBuildxCacheV1/src/oci/prefetch';

const GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const D = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`;
const layer = (n: number, extra: Partial<Descriptor> = {}): Descriptor => ({
  mediaType: GZIP,
  digest: D(n),
  size: 100 + n,
  annotations: { 'buildkit/createdat': 'x', 'containerd.io/uncompressed': D(n + 5) },
  ...extra,
});
const sha = (b: Buffer): string => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;

describe("prefetch: an image of the cache's last layer chain", () => {
  it('names the layers in order and their uncompressed digests in its config; the digests are the bytes’', () => {
    const image = prefetchImage([layer(1), layer(2, { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' })], 'arm64');
    assert.ok(image !== undefined);
    assert.deepEqual(JSON.parse(image.config.toString()), {
      architecture: 'arm64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [D(6), D(7)] },
    });
    const manifest = JSON.parse(image.manifest.toString()) as Record<string, unknown>;
    assert.deepEqual(manifest, {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: image.configDigest, size: image.config.length },
      layers: [
        { mediaType: GZIP, digest: D(1), size: 101 },
        { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: D(2), size: 102 },
      ],
    });
    assert.deepEqual([image.digest, image.configDigest], [sha(image.manifest), sha(image.config)]);
  });

  // the chain → why there is no image
  const none: [string, Descriptor[]][] = [
    ['an empty chain', []],
    ['a layer without its uncompressed digest', [layer(1), layer(2, { annotations: {} })]],
    ['a zstd layer (the image’s are gzip)', [layer(1, { mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' })]],
    ['an uncompressed layer', [layer(1, { mediaType: 'application/vnd.oci.image.layer.v1.tar' })]],
    ['an uncompressed digest that is not one', [layer(1, { annotations: { 'containerd.io/uncompressed': 'sha256:xyz' } })]],
  ];
  for (const [name, chain] of none) it(`none for ${name}`, () => assert.equal(prefetchImage(chain, 'amd64'), undefined));

  const arches: [string, string][] = [
    ['x64', 'amd64'],
    ['arm64', 'arm64'],
    ['ia32', '386'],
    ['ppc64', 'ppc64le'],
    ['s390x', 's390x'],
  ];
  for (const [node, go] of arches) it(`Node's ${node} is Go's ${go}`, () => assert.equal(goArch(node), go));
});
