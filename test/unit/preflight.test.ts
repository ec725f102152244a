import * as assert from 'assert/strict';
import * as sinon from 'sinon';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import {
  gates,
  hasContainerdStore,
  parseBuildxVersion,
  parseDockerVersion,
  preflight,
  PreflightError,
} from '../../tasks/DockerBuildxCacheV1/src/docker/preflight';
import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import type { Config, Driver } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { cleanup, tempDir, writeTree } from '../helpers';

function config(inputs: Record<string, string>): Config {
  const ws = tempDir();
  writeTree(ws, { Dockerfile: 'FROM scratch\n' });
  const vars: Record<string, string> = {
    'System.DefaultWorkingDirectory': ws,
    'Pipeline.Workspace': '/pw',
    'Agent.WorkFolder': '/aw',
    'Agent.OS': 'Linux',
  };
  return readConfig({ input: (n) => inputs[n] ?? '', variable: (n) => vars[n] });
}

describe('preflight: what the engine and buildx report', () => {
  afterEach(cleanup);

  const versions: [string, ReturnType<typeof parseDockerVersion>][] = [
    [
      '{"Client":{"Version":"28.2.2"},"Server":{"Version":"26.1.5","Components":[{"Name":"Engine","Version":"26.1.5+dfsg1"}]}}',
      { client: '28.2.2', server: '26.1.5+dfsg1' },
    ],
    ['{"Client":{"Version":"28.2.2"},"Server":null}', { client: '28.2.2', server: undefined }],
    ['Cannot connect', {}],
  ];
  for (const [json, expected] of versions)
    it(`docker version ${json.slice(0, 40)}`, () => assert.deepEqual(parseDockerVersion(json), expected));

  const buildx: [string, string | undefined][] = [
    ['github.com/docker/buildx v0.19.2 1b2c3d4', '0.19.2'],
    ['github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3', '0.13.1'],
    ['docker: unknown command: docker buildx', undefined],
  ];
  for (const [text, expected] of buildx) it(`buildx version "${text}"`, () => assert.equal(parseBuildxVersion(text), expected));

  it('recognises the containerd image store', () => {
    assert.equal(hasContainerdStore('[["driver-type","io.containerd.snapshotter.v1"]]'), true);
    assert.equal(hasContainerdStore('[["Backing Filesystem","extfs"],["Supports d_type","true"]]'), false);
  });

  // inputs, the driver chosen, buildx, containerd store → export, reset, warnings
  const table: [string, Record<string, string>, Driver, string, boolean | undefined, boolean, boolean, number][] = [
    ['docker driver with the containerd store', {}, 'docker', '0.13.1', true, true, false, 0],
    ['docker driver with the classic store: no export, a warning', {}, 'docker', '0.13.1', false, false, false, 1],
    ['docker driver, classic store, no cache: nothing to warn about', { cacheBackend: 'none' }, 'docker', '0.13.1', false, false, false, 0],
    ['docker driver, classic store, read-only cache', { saveCache: 'never' }, 'docker', '0.13.1', false, false, false, 0],
    ['docker-container needs no containerd store', {}, 'docker-container', '0.13.1', undefined, true, false, 0],
    ['docker-container on the classic store exports', {}, 'docker-container', '0.13.1', false, true, false, 0],
    ['buildx 0.35 resets the local export itself', {}, 'docker-container', '0.35.0', undefined, true, true, 0],
    ['buildx 0.36.1 resets it on the docker driver too', {}, 'docker', '0.36.1', true, true, true, 0],
    ['buildx 0.35 without export', { saveCache: 'never' }, 'docker', '0.35.0', true, false, false, 0],
  ];
  for (const [name, inputs, driver, version, store, cacheExport, resetOnExport, warnings] of table) {
    it(`gates: ${name}`, () => {
      const g = gates(config({ imageName: 'app', ...inputs }), driver, version, store);
      assert.deepEqual([g.cacheExport, g.resetOnExport, g.warnings.length], [cacheExport, resetOnExport, warnings]);
    });
  }

  it('a buildx older than the task needs is an error naming buildxVersion', () => {
    assert.throws(
      () => gates(config({ imageName: 'app' }), 'docker-container', '0.9.1', undefined),
      (e: Error) => e instanceof PreflightError && /buildx 0\.9\.1 is older than 0\.10\.0.*Set 'buildxVersion'/.test(e.message),
    );
  });

  function docker(answers: Record<string, Partial<RunResult>>): DockerCli {
    return {
      run: sinon.stub<Parameters<DockerCli['run']>, ReturnType<DockerCli['run']>>().callsFake((args) => {
        const a = answers[args.join(' ')];
        return Promise.resolve({ code: 0, stdout: '', stderr: '', ...(a ?? { code: 1, stderr: 'unexpected' }) });
      }),
    };
  }
  const ok = {
    'version --format {{json .}}': {
      stdout: '{"Client":{"Version":"28.2.2"},"Server":{"Components":[{"Name":"Engine","Version":"26.1.5"}]}}',
    },
    'buildx version': { stdout: 'github.com/docker/buildx v0.19.2 abc' },
    'info --format {{json .DriverStatus}}': { stdout: '[["driver-type","io.containerd.snapshotter.v1"]]' },
  };

  it('reports versions, the buildx source and the image store', async () => {
    const p = await preflight(docker(ok), config({ imageName: 'app', driver: 'docker' }), 'the tool cache');
    assert.deepEqual(p.report, [
      'docker client 28.2.2, engine 26.1.5',
      'buildx 0.19.2, from the tool cache',
      'engine image store: containerd',
    ]);
  });

  // The image store is asked for only when the driver depends on it.
  const storeAsked: [string, Record<string, string>, boolean][] = [
    ['docker', { driver: 'docker' }, true],
    ['auto', { driver: 'auto' }, true],
    ['auto by default', {}, true],
    ['auto with a builder input, which makes it docker-container', { driver: 'auto', driverOptions: 'network=host' }, false],
    ['docker-container', { driver: 'docker-container' }, false],
    ['remote', { driver: 'remote', endpoint: 'tcp://bk:1234' }, false],
  ];
  for (const [name, inputs, asked] of storeAsked) {
    it(`asks for the image store with ${name}: ${String(asked)}`, async () => {
      const p = await preflight(docker(ok), config({ imageName: 'app', ...inputs }), 'the plugin');
      assert.equal(p.containerdStore, asked ? true : undefined);
      assert.equal(p.report.includes('engine image store: containerd'), asked);
    });
  }

  it('fails with the likely cause when no engine answers', async () => {
    const answers = {
      ...ok,
      'version --format {{json .}}': {
        code: 1,
        stdout: '{"Client":{"Version":"28.2.2"},"Server":null}',
        stderr: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?',
      },
    };
    await assert.rejects(
      preflight(docker(answers), config({ imageName: 'app', driver: 'docker' }), 'x'),
      (e: Error) => e instanceof PreflightError && /^No Docker engine reachable at .*Cannot connect to the Docker daemon/.test(e.message),
    );
  });

  it('needs no local engine for a remote builder that pushes', async () => {
    const answers = {
      ...ok,
      'version --format {{json .}}': { code: 1, stdout: '{"Client":{"Version":"28.2.2"},"Server":null}', stderr: 'Cannot connect' },
    };
    const p = await preflight(
      docker(answers),
      config({ imageName: 'app', driver: 'remote', endpoint: 'tcp://bk:1234', output: 'registry' }),
      'x',
    );
    assert.match(p.report[0] ?? '', /engine not reachable at/);
  });

  it('fails naming buildxVersion when the CLI has no buildx', async () => {
    const answers = { ...ok, 'buildx version': { code: 1, stderr: "docker: 'buildx' is not a docker command." } };
    await assert.rejects(
      preflight(docker(answers), config({ imageName: 'app', driver: 'docker' }), 'x'),
      /no buildx plugin .*Set 'buildxVersion' to 'latest'/,
    );
  });
});
