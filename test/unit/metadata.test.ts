import * as assert from 'assert/strict';
import { loadedImageId, parseMetadata, type LoadedImage } from '../../tasks/DockerBuildxCacheV1/src/docker/metadata';

describe('reading the buildx metadata file', () => {
  const cases: [string, object, ReturnType<typeof parseMetadata>][] = [
    [
      'a loaded image (containerd store)',
      {
        'containerimage.digest': 'sha256:aa',
        'containerimage.descriptor': {},
        'image.name': 'docker.io/library/app:1,docker.io/library/app:latest',
      },
      { digest: 'sha256:aa', configDigest: undefined, imageNames: ['docker.io/library/app:1', 'docker.io/library/app:latest'] },
    ],
    [
      'a classic store image',
      { 'containerimage.config.digest': 'sha256:cc', 'containerimage.digest': 'sha256:dd' },
      { digest: 'sha256:dd', configDigest: 'sha256:cc', imageNames: [] },
    ],
    ['cache only', { 'buildx.build.ref': 'default/default/x' }, { digest: undefined, configDigest: undefined, imageNames: [] }],
    [
      'wrong types are ignored',
      { 'containerimage.digest': 42, 'image.name': '' },
      { digest: undefined, configDigest: undefined, imageNames: [] },
    ],
  ];
  for (const [name, json, expected] of cases) it(name, () => assert.deepEqual(parseMetadata(JSON.stringify(json)), expected));
});

describe("the loaded image's ID from the metadata, without asking the engine", () => {
  // Image and config digests as buildx 0.36 and the engines of scripts/engine.sh and hosted-engine.sh wrote and reported them.
  const both = { digest: 'sha256:ab2c', configDigest: 'sha256:fda7', imageNames: [] };
  const digestOnly = { digest: 'sha256:80f4', configDigest: undefined, imageNames: [] };
  // the engine's store, the driver, the metadata → the ID, or undefined for `docker image inspect`
  const cases: [string, LoadedImage, ReturnType<typeof parseMetadata>, string | undefined][] = [
    [
      'classic store, docker-container (loaded from a tarball): the config digest',
      { containerdStore: false, driver: 'docker-container' },
      both,
      'sha256:fda7',
    ],
    ['classic store, docker driver: the config digest', { containerdStore: false, driver: 'docker' }, both, 'sha256:fda7'],
    ['classic store without a config digest: asked', { containerdStore: false, driver: 'docker' }, digestOnly, undefined],
    ['containerd store, docker driver: the image (index) digest', { containerdStore: true, driver: 'docker' }, digestOnly, 'sha256:80f4'],
    [
      'containerd store, docker-container (loaded from a tarball): asked',
      { containerdStore: true, driver: 'docker-container' },
      both,
      undefined,
    ],
    ['containerd store, docker driver without a digest: asked', { containerdStore: true, driver: 'docker' }, { imageNames: [] }, undefined],
    ['an engine that did not say its store: asked', { driver: 'docker' }, both, undefined],
  ];
  for (const [name, loaded, metadata, expected] of cases) it(name, () => assert.equal(loadedImageId(metadata, loaded), expected));
});
