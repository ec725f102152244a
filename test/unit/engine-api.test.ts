import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import {
  currentContextOf,
  EngineImages,
  engineSocket,
  engineStore,
  repoAndTag,
  storeOfInfo,
} from '../../tasks/DockerBuildxCacheV1/src/docker/engine-api';
import { cleanup, tempDir } from '../helpers';

describe('engine API: the image store before docker info', () => {
  afterEach(cleanup);

  // DOCKER_HOST, DOCKER_CONTEXT, the config's currentContext, the platform → the socket, or undefined (the CLI decides)
  const sockets: [string, Record<string, string>, string | undefined, NodeJS.Platform, string | undefined][] = [
    ['nothing set: the default socket', {}, undefined, 'linux', '/var/run/docker.sock'],
    ['a unix DOCKER_HOST', { DOCKER_HOST: 'unix:///run/user/1000/docker.sock' }, undefined, 'linux', '/run/user/1000/docker.sock'],
    ['DOCKER_HOST before any context', { DOCKER_HOST: 'unix:///x.sock', DOCKER_CONTEXT: 'remote' }, 'other', 'linux', '/x.sock'],
    ['an empty DOCKER_HOST is none', { DOCKER_HOST: '' }, undefined, 'linux', '/var/run/docker.sock'],
    ['a tcp DOCKER_HOST', { DOCKER_HOST: 'tcp://10.0.0.2:2376' }, undefined, 'linux', undefined],
    ['an ssh DOCKER_HOST', { DOCKER_HOST: 'ssh://builder@host' }, undefined, 'linux', undefined],
    ['a relative unix path', { DOCKER_HOST: 'unix://docker.sock' }, undefined, 'linux', undefined],
    ['DOCKER_CONTEXT names another', { DOCKER_CONTEXT: 'rootless' }, undefined, 'linux', undefined],
    ['DOCKER_CONTEXT default', { DOCKER_CONTEXT: 'default' }, 'rootless', 'linux', '/var/run/docker.sock'],
    ["the config's currentContext", {}, 'colima', 'darwin', undefined],
    ["the config's currentContext default", {}, 'default', 'linux', '/var/run/docker.sock'],
    ['Windows: a named pipe', {}, undefined, 'win32', undefined],
  ];
  for (const [name, env, context, platform, expected] of sockets) {
    it(`socket: ${name}`, () => {
      assert.equal(engineSocket(env, context, platform), expected);
    });
  }

  const contexts: [string, string, string | undefined][] = [
    ['a context', '{"auths":{},"currentContext":"rootless"}', 'rootless'],
    ['none', '{"auths":{}}', undefined],
    ['empty', '{"currentContext":""}', undefined],
    ['not JSON', 'nope', undefined],
    ['not a string', '{"currentContext":3}', undefined],
  ];
  for (const [name, json, expected] of contexts) {
    it(`currentContext: ${name}`, () => {
      assert.equal(currentContextOf(json), expected);
    });
  }

  const references: [string, { repo: string; tag: string }][] = [
    ['app:1', { repo: 'app', tag: '1' }],
    ['app', { repo: 'app', tag: 'latest' }],
    ['registry.example:5000/team/app', { repo: 'registry.example:5000/team/app', tag: 'latest' }],
    ['registry.example:5000/team/app:v2', { repo: 'registry.example:5000/team/app', tag: 'v2' }],
  ];
  for (const [reference, expected] of references) {
    it(`repository and tag of ${reference}`, () => {
      assert.deepEqual(repoAndTag(reference), expected);
    });
  }

  const infos: [string, string, ReturnType<typeof storeOfInfo>][] = [
    ['the containerd store', '{"DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}', { containerdStore: true }],
    ['the classic store', '{"DriverStatus":[["Backing Filesystem","extfs"],["Supports d_type","true"]]}', { containerdStore: false }],
    ['no DriverStatus', '{"ServerVersion":"26.1.5"}', undefined],
    ['a null DriverStatus', '{"DriverStatus":null}', undefined],
    ['not JSON', '<html>', undefined],
  ];
  for (const [name, body, expected] of infos) {
    it(`GET /info: ${name}`, () => {
      assert.deepEqual(storeOfInfo(body), expected);
    });
  }

  describe('asking an engine on a socket', () => {
    let servers: http.Server[] = [];
    afterEach(async () => {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      servers = [];
    });
    /** An engine API on a socket in a folder of its own; `answer` says what GET /info gets. */
    const engine = async (answer: (res: http.ServerResponse) => void): Promise<{ socket: string; asked: string[] }> => {
      const socket = path.join(tempDir(), 'docker.sock');
      const asked: string[] = [];
      const server = http.createServer((req, res) => {
        asked.push(`${req.method ?? ''} ${req.url ?? ''}`);
        answer(res);
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(socket, r));
      return { socket, asked };
    };
    const json = (status: number, body: string) => (res: http.ServerResponse) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(body);
    };

    // GET /info's answer → the store, or undefined
    const answers: [string, (res: http.ServerResponse) => void, ReturnType<typeof storeOfInfo>][] = [
      ['the containerd store', json(200, '{"DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}'), { containerdStore: true }],
      ['the classic store', json(200, '{"DriverStatus":[["Backing Filesystem","extfs"]]}'), { containerdStore: false }],
      ['an error status', json(500, '{"message":"boom"}'), undefined],
      ['a hang past the timeout', () => undefined, undefined],
    ];
    for (const [name, answer, expected] of answers) {
      it(`answers ${name}`, async () => {
        const { socket, asked } = await engine(answer);
        assert.deepEqual(await engineStore(socket, 300), expected);
        assert.deepEqual(asked, ['GET /info']);
      });
    }

    it('nothing listening: undefined, not an error', async () => {
      assert.equal(await engineStore(path.join(tempDir(), 'none.sock'), 300), undefined);
    });

    // tag or remove, the engine's answer → what the request was, and what went wrong (undefined: done)
    const DIGEST = `sha256:${'c'.repeat(64)}`;
    const pulled = `127.0.0.1:4321/buildx-cache-0123456789ab@${DIGEST}`;
    const images: [
      string,
      (i: EngineImages) => Promise<string | undefined>,
      (res: http.ServerResponse) => void,
      string,
      string | undefined,
    ][] = [
      [
        'a tag',
        (i) => i.tag(pulled, 'registry.example:5000/team/app:1.2'),
        json(201, ''),
        `POST /images/${pulled}/tag?repo=registry.example%3A5000%2Fteam%2Fapp&tag=1.2`,
        undefined,
      ],
      [
        'a tag without one: latest',
        (i) => i.tag(pulled, 'app'),
        json(201, ''),
        `POST /images/${pulled}/tag?repo=app&tag=latest`,
        undefined,
      ],
      [
        'a tag refused',
        (i) => i.tag(pulled, 'app:1'),
        json(404, `{"message":"No such image: ${pulled}"}`),
        `POST /images/${pulled}/tag?repo=app&tag=1`,
        `No such image: ${pulled}`,
      ],
      ['a removal', (i) => i.remove(pulled), json(200, `[{"Untagged":"${pulled}"}]`), `DELETE /images/${pulled}`, undefined],
      ['a removal refused, not JSON', (i) => i.remove(pulled), json(409, 'conflict'), `DELETE /images/${pulled}`, 'conflict'],
    ];
    for (const [name, call, answer, request, expected] of images) {
      it(`images: ${name}`, async () => {
        const { socket, asked } = await engine(answer);
        assert.equal(await call(new EngineImages(socket, 300)), expected);
        assert.deepEqual(asked, [request]);
      });
    }

    it('images: no engine on the socket is what went wrong, not an error', async () => {
      const failed = await new EngineImages(path.join(tempDir(), 'none.sock'), 300).remove(pulled);
      assert.match(failed ?? '', /ENOENT|ECONNREFUSED/);
    });

    it('a context in the docker config: no socket, so the API is not asked, whatever the default socket is', () => {
      // As the main step reads it: the agent's config.json, then the socket from its current context.
      const dir = tempDir();
      fs.writeFileSync(path.join(dir, 'config.json'), '{"currentContext":"rootless"}');
      assert.equal(engineSocket({}, currentContextOf(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))), undefined);
    });
  });
});
