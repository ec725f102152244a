import * as assert from 'assert/strict';
import * as sinon from 'sinon';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import {
  gates,
  hasContainerdStore,
  parseBuildxVersion,
  parseDockerInfo,
  preflight,
  PreflightError,
} from '../../tasks/DockerBuildxCacheV1/src/docker/preflight';
import type { Config, Driver } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { cleanup } from '../helpers';
import { configIn } from './read-config';

const config = (inputs: Record<string, string>): Config => configIn(inputs).config;

describe('preflight: what the engine and buildx report', () => {
  afterEach(cleanup);

  // docker info --format '{{json .}}' → the versions, the buildx plugin's version and the driver status
  const client = (plugins: string): string => `"ClientInfo":{"Version":"28.2.2","Plugins":${plugins}}`;
  const infos: [string, string, ReturnType<typeof parseDockerInfo>][] = [
    [
      'an engine with the containerd store and buildx v0.36.1',
      `{"ServerVersion":"26.1.5+dfsg1","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]],${client('[{"Name":"buildx","Version":"v0.36.1","Path":"/p"}]')}}`,
      {
        versions: { client: '28.2.2', server: '26.1.5+dfsg1' },
        buildx: '0.36.1',
        driverStatus: '[["driver-type","io.containerd.snapshotter.v1"]]',
      },
    ],
    [
      "Debian's buildx, among other plugins",
      `{"ServerVersion":"26.1.5","DriverStatus":[],${client('[{"Name":"compose","Version":"v2.1.0"},{"Name":"buildx","Version":"0.13.1+ds1"}]')}}`,
      { versions: { client: '28.2.2', server: '26.1.5' }, buildx: '0.13.1', driverStatus: '[]' },
    ],
    [
      'no engine: the client part only',
      `{"ServerVersion":"","DriverStatus":null,${client('[{"Name":"buildx","Version":"v0.19.2"}]')}}`,
      { versions: { client: '28.2.2', server: undefined }, buildx: '0.19.2', driverStatus: undefined },
    ],
    [
      'a buildx plugin the CLI cannot run',
      `{"ServerVersion":"26.1.5","DriverStatus":[],${client('[{"Name":"buildx","Version":"v0.19.2","Err":"not a plugin"}]')}}`,
      { versions: { client: '28.2.2', server: '26.1.5' }, buildx: undefined, driverStatus: '[]' },
    ],
    [
      'no plugins',
      `{"ServerVersion":"26.1.5","DriverStatus":[],${client('null')}}`,
      { versions: { client: '28.2.2', server: '26.1.5' }, buildx: undefined, driverStatus: '[]' },
    ],
    [
      'a CLI older than ClientInfo',
      '{"ServerVersion":"19.03.1","DriverStatus":[]}',
      { versions: { client: undefined, server: '19.03.1' }, buildx: undefined, driverStatus: '[]' },
    ],
    [
      "the engine's host name",
      '{"ServerVersion":"26.1.5","DriverStatus":[],"Name":"fv-az123-456"}',
      { versions: { client: undefined, server: '26.1.5' }, buildx: undefined, driverStatus: '[]', name: 'fv-az123-456' },
    ],
    ['not JSON', 'Cannot connect', { versions: {} }],
  ];
  for (const [name, json, expected] of infos) it(`docker info: ${name}`, () => assert.deepEqual(parseDockerInfo(json), expected));

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
  const INFO = 'info --format {{json .}}';
  const info = (server: string, plugins: string, driverStatus = '[["driver-type","io.containerd.snapshotter.v1"]]'): string =>
    `{"ServerVersion":"${server}","DriverStatus":${driverStatus},"ClientInfo":{"Version":"28.2.2","Plugins":${plugins}}}`;
  const ok = { [INFO]: { stdout: info('26.1.5', '[{"Name":"buildx","Version":"v0.19.2"}]') } };
  const noEngine = {
    code: 1,
    stdout: info('', '[{"Name":"buildx","Version":"v0.19.2"}]', 'null'),
    stderr: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?',
  };

  // answers → the docker commands the preflight ran, and the buildx it found
  const calls: [string, Record<string, Partial<RunResult>>, string[], string][] = [
    ['one docker info, when the CLI lists its buildx plugin', ok, [INFO], '0.19.2'],
    [
      'buildx version as well, when the CLI lists no buildx plugin',
      { [INFO]: { stdout: info('26.1.5', 'null') }, 'buildx version': { stdout: 'github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3' } },
      [INFO, 'buildx version'],
      '0.13.1',
    ],
  ];
  for (const [name, answers, ran, buildx] of calls) {
    it(`asks ${name}`, async () => {
      const cli = docker(answers);
      const p = await preflight(cli, config({ imageName: 'app' }), 'x');
      assert.deepEqual(
        (cli.run as sinon.SinonStub).getCalls().map((c) => (c.args[0] as string[]).join(' ')),
        ran,
      );
      assert.equal(p.buildx, buildx);
    });
  }

  it('reports versions, the buildx source and the image store', async () => {
    const p = await preflight(docker(ok), config({ imageName: 'app', driver: 'docker' }), 'the tool cache');
    assert.deepEqual(p.report, [
      'docker client 28.2.2, engine 26.1.5',
      'buildx 0.19.2, from the tool cache',
      'engine image store: containerd',
    ]);
  });

  // The image store is reported only when the driver depends on it.
  const storeAsked: [string, Record<string, string>, boolean][] = [
    ['docker', { driver: 'docker' }, true],
    ['auto', { driver: 'auto' }, true],
    ['auto by default', {}, true],
    ['auto with a builder input, which makes it docker-container', { driver: 'auto', driverOptions: 'network=host' }, false],
    ['docker-container', { driver: 'docker-container' }, false],
    ['remote', { driver: 'remote', endpoint: 'tcp://bk:1234' }, false],
  ];
  for (const [name, inputs, asked] of storeAsked) {
    it(`reports the image store with ${name}: ${String(asked)}`, async () => {
      const p = await preflight(docker(ok), config({ imageName: 'app', ...inputs }), 'the plugin');
      assert.equal(p.containerdStore, asked ? true : undefined);
      assert.equal(p.report.includes('engine image store: containerd'), asked);
      assert.equal(p.engineContainerdStore, true, "the engine's store, for a loaded image's ID, whatever the driver");
    });
  }

  it('fails with the likely cause when no engine answers', async () => {
    await assert.rejects(
      preflight(docker({ [INFO]: noEngine }), config({ imageName: 'app', driver: 'docker' }), 'x'),
      (e: Error) => e instanceof PreflightError && /^No Docker engine reachable at .*Cannot connect to the Docker daemon/.test(e.message),
    );
  });

  it('needs no local engine for a remote builder that pushes', async () => {
    const p = await preflight(
      docker({ [INFO]: noEngine }),
      config({ imageName: 'app', driver: 'remote', endpoint: 'tcp://bk:1234', output: 'registry' }),
      'x',
    );
    assert.match(p.report[0] ?? '', /engine not reachable at/);
    assert.equal(p.buildx, '0.19.2');
  });

  it('fails naming buildxVersion when the CLI has no buildx', async () => {
    const answers = {
      [INFO]: { stdout: info('26.1.5', '[]') },
      'buildx version': { code: 1, stderr: "docker: 'buildx' is not a docker command." },
    };
    await assert.rejects(
      preflight(docker(answers), config({ imageName: 'app', driver: 'docker' }), 'x'),
      /no buildx plugin .*Set 'buildxVersion' to 'latest'/,
    );
  });
});
