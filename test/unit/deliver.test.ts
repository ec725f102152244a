import * as assert from 'assert/strict';
import {
  deliveryCommands,
  digestRef,
  leftoverRefs,
  metadataAsLoaded,
  normalizedName,
  repositoryOf,
} from '../../tasks/DockerBuildxCacheV1/src/docker/deliver';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('the image through the facade: pull, tags, metadata', () => {
  // a tag → the name buildx writes as image.name for it
  const names: [string, string][] = [
    ['app:1', 'docker.io/library/app:1'],
    ['org/app:1', 'docker.io/org/app:1'],
    ['docker.io/app:1', 'docker.io/library/app:1'],
    ['docker.io/org/app:1', 'docker.io/org/app:1'],
    ['index.docker.io/app:1', 'docker.io/library/app:1'],
    ['index.docker.io/org/app:1', 'docker.io/org/app:1'],
    ['myacr.azurecr.io/team/app:1', 'myacr.azurecr.io/team/app:1'],
    ['localhost/app:1', 'localhost/app:1'],
    ['127.0.0.1:5000/app:1', '127.0.0.1:5000/app:1'],
  ];
  for (const [tag, name] of names) it(`names ${tag} as ${name}`, () => assert.equal(normalizedName(tag), name));

  // a reference → its digest form
  const refs: [string, string][] = [
    ['127.0.0.1:4321/buildx-cache:image', `127.0.0.1:4321/buildx-cache@${DIGEST}`],
    ['127.0.0.1:4321/buildx-cache', `127.0.0.1:4321/buildx-cache@${DIGEST}`],
  ];
  for (const [ref, byDigest] of refs) it(`pulls ${ref} by digest`, () => assert.equal(digestRef(ref, DIGEST), byDigest));

  it('pulls by digest (with the one platform built), tags each tag, then removes the pulled reference', () => {
    const pulled = `127.0.0.1:4321/buildx-cache@${DIGEST}`;
    assert.deepEqual(deliveryCommands({ ref: '127.0.0.1:4321/buildx-cache:image', digest: DIGEST, tags: ['app:1', 'app:latest'] }), {
      pull: ['pull', '--quiet', pulled],
      tags: [
        ['tag', pulled, 'app:1'],
        ['tag', pulled, 'app:latest'],
      ],
      untag: ['image', 'rm', pulled],
    });
    assert.deepEqual(
      deliveryCommands({ ref: '127.0.0.1:4321/buildx-cache:image', digest: DIGEST, tags: [], platform: 'linux/arm64' }).pull,
      ['pull', '--quiet', '--platform', 'linux/arm64', pulled],
    );
  });

  it("rewrites only the metadata's image.name, to the tags as --load names them", () => {
    const text = JSON.stringify({ 'containerimage.digest': DIGEST, 'image.name': '127.0.0.1:4321/buildx-cache:image', other: { a: 1 } });
    assert.deepEqual(JSON.parse(metadataAsLoaded(text, ['app:1', 'myacr.azurecr.io/app:2'])), {
      'containerimage.digest': DIGEST,
      'image.name': 'docker.io/library/app:1,myacr.azurecr.io/app:2',
      other: { a: 1 },
    });
  });
});

describe('what a stopped build left in the engine', () => {
  const repos: [string, string][] = [
    ['127.0.0.1:40000/buildx-cache:image', '127.0.0.1:40000/buildx-cache'],
    ['127.0.0.1:40000/buildx-cache:prefetch', '127.0.0.1:40000/buildx-cache'],
    ['127.0.0.1:40000/buildx-cache', '127.0.0.1:40000/buildx-cache'],
  ];
  for (const [ref, repo] of repos) it(`the repository of ${ref}`, () => assert.equal(repositoryOf(ref), repo));

  const d = (c: string): string => `sha256:${c.repeat(64)}`;
  const r = '127.0.0.1:4/buildx-cache';
  const listings: [string, string, string[]][] = [
    ['nothing', '', []],
    ['a tagged prefetch image', `${r}:prefetch ${r}@${d('a')}\n`, [`${r}:prefetch`, `${r}@${d('a')}`]],
    ['an image pulled by digest (no tag)', `${r}:<none> ${r}@${d('b')}\n`, [`${r}@${d('b')}`]],
    ['a tag without a digest', `${r}:prefetch ${r}@<none>`, [`${r}:prefetch`]],
    [
      'the same reference twice, CRLF',
      `${r}:prefetch ${r}@${d('a')}\r\n${r}:prefetch ${r}@${d('a')}\r\n`,
      [`${r}:prefetch`, `${r}@${d('a')}`],
    ],
  ];
  for (const [what, output, refs] of listings) it(`the references of ${what}`, () => assert.deepEqual(leftoverRefs(output), refs));
});
