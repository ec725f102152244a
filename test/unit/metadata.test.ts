import * as assert from 'assert/strict';
import { parseMetadata } from '../../tasks/DockerBuildxCacheV1/src/docker/metadata';

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
