import * as assert from 'assert/strict';
import type { DockerCli } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import {
  deliver,
  deliveryCommands,
  digestRef,
  leftoverRefs,
  metadataAsLoaded,
  normalizedName,
  repositoryOf,
  type ImageRefs,
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

  // the engine's API (undefined: none), what it fails, what the CLI fails → the docker commands run, the API's requests, the result
  const pulled = `127.0.0.1:4321/buildx-cache@${DIGEST}`;
  const viaApi: [string, boolean, string[], string[], string[], string[], { failed?: string; untagFailed?: string }][] = [
    ['no API: the CLI', false, [], [], ['pull', 'tag app:1', 'tag app:latest', 'image rm'], [], {}],
    ['the API: only the pull is a command', true, [], [], ['pull'], ['tag app:1', 'tag app:latest', 'remove'], {}],
    [
      'the API fails a tag: that one by the CLI',
      true,
      ['tag app:latest'],
      [],
      ['pull', 'tag app:latest'],
      ['tag app:1', 'tag app:latest', 'remove'],
      {},
    ],
    [
      'the API and the CLI fail a tag: the failure, the reference removed',
      true,
      ['tag app:1'],
      ['tag app:1'],
      ['pull', 'tag app:1'],
      ['tag app:1', 'remove'],
      { failed: 'no such image' },
    ],
    [
      'the pull fails: no tag, the removal tried',
      true,
      ['remove'],
      ['pull', 'image rm'],
      ['pull', 'image rm'],
      ['remove'],
      { failed: 'no such image' },
    ],
    [
      'the API and the CLI fail the removal: reported',
      true,
      ['remove'],
      ['image rm'],
      ['pull', 'image rm'],
      ['tag app:1', 'tag app:latest', 'remove'],
      { untagFailed: 'no such image' },
    ],
  ];
  for (const [name, api, apiFails, cliFails, commands, requests, result] of viaApi) {
    it(`delivers with ${name}`, async () => {
      const ran: string[] = [];
      const docker: DockerCli = {
        run: (args) => {
          const what = args[0] === 'tag' ? `tag ${args[2] ?? ''}` : args[0] === 'image' ? 'image rm' : (args[0] ?? '');
          ran.push(what);
          return Promise.resolve(
            cliFails.includes(what) ? { code: 1, stdout: '', stderr: 'no such image' } : { code: 0, stdout: '', stderr: '' },
          );
        },
      };
      const asked: string[] = [];
      const refs: ImageRefs = {
        tag: (source, target) => {
          assert.equal(source, pulled);
          asked.push(`tag ${target}`);
          return Promise.resolve(apiFails.includes(`tag ${target}`) ? 'refused' : undefined);
        },
        remove: (ref) => {
          assert.equal(ref, pulled);
          asked.push('remove');
          return Promise.resolve(apiFails.includes('remove') ? 'refused' : undefined);
        },
      };
      const printed: string[] = [];
      const d = { ref: '127.0.0.1:4321/buildx-cache:image', digest: DIGEST, tags: ['app:1', 'app:latest'] };
      assert.deepEqual(await deliver(docker, d, api ? refs : undefined, (line) => printed.push(line)), result);
      assert.deepEqual(ran, commands);
      assert.deepEqual(asked, requests);
      // Each request the API did is a line in the log.
      assert.equal(printed.length, requests.length - apiFails.filter((f) => requests.includes(f)).length);
    });
  }

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
