import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { instanceIdOf } from '../../tasks/DockerBuildxCacheV1/src/task/agent';
import { defaultBuilderName } from '../../tasks/DockerBuildxCacheV1/src/docker/builder';
import { cleanup, linesShowing, tempDir, writeTree } from '../helpers';
import { resolveKey, type ResolvedKey } from '../../tasks/DockerBuildxCacheV1/src/key/resolve';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import type { CacheStore } from '../../tasks/DockerBuildxCacheV1/src/store/types';
import { blobFiles, cacheFolder, cacheLayout, writeLayout, type Blob } from '../oci-fixture';
import { TokenServer } from '../token-server';
import { TokenProcess } from './token-process';
import { connectionString, EMULATOR_KEY, ensureAzurite, freshContainer, type Azurite } from '../../scripts/azurite';
import { AzureBlobStore } from '../../tasks/DockerBuildxCacheV1/src/store/blob';
import { ContainerSASPermissions } from '@azure/storage-blob';
import { runScenario, type MockRun } from './harness';
import { DOCKER, type Scenario } from './types';

const JOB = '2f9a7c1e-0000-4000-8000-000000000001';
const TASK = '7d1b5e3a-0000-4000-8000-000000000002';
const ID = instanceIdOf(JOB, TASK);
const BUILDER = defaultBuilderName(JOB, 'agent-1');
const ok = { code: 0, stdout: '' };
/** What the preflight runs before the builder, as the log shows it: versions, and the image store for the docker driver. */
const PREFLIGHT = [`${DOCKER} version --format '{{json .}}'`, `${DOCKER} buildx version`];
const PREFLIGHT_DOCKER = [...PREFLIGHT, `${DOCKER} info --format '{{json .DriverStatus}}'`];
const preflightAnswers = (buildx = '0.19.2', store = 'io.containerd.snapshotter.v1'): Record<string, { code: number; stdout?: string; stderr?: string }> => ({
  [`${DOCKER} version --format {{json .}}`]: { code: 0, stdout: '{"Client":{"Version":"28.2.2"},"Server":{"Components":[{"Name":"Engine","Version":"26.1.5"}]}}' },
  [`${DOCKER} buildx version`]: { code: 0, stdout: `github.com/docker/buildx v${buildx} abc` },
  [`${DOCKER} info --format {{json .DriverStatus}}`]: { code: 0, stdout: `[["driver-type","${store}"]]` },
});
const missing = { code: 1, stdout: '', stderr: 'ERROR: no builder found' };

/** ENDPOINT_* variables as the agent sets them for a service connection. */
const endpoint = (id: string, scheme: string, params: Record<string, string>, data: Record<string, string> = {}, url = 'https://registry.example/'): Record<string, string> => ({
  [`ENDPOINT_URL_${id}`]: url,
  [`ENDPOINT_AUTH_SCHEME_${id}`]: scheme,
  ...Object.fromEntries(Object.entries(params).map(([k, v]) => [`ENDPOINT_AUTH_PARAMETER_${id}_${k.toUpperCase()}`, v])),
  ...Object.fromEntries(Object.entries(data).map(([k, v]) => [`ENDPOINT_DATA_${id}_${k.toUpperCase()}`, v])),
});

let ws: string;
let agentTemp: string;
let cacheDir: string;
let metadata: string;
let agentWork: string;

function variables(): Record<string, string> {
  return {
    'System.DefaultWorkingDirectory': ws,
    'Agent.TempDirectory': agentTemp,
    'Pipeline.Workspace': path.dirname(cacheDir),
    'System.JobId': JOB,
    'System.TaskInstanceId': TASK,
    'Agent.Name': 'agent-1',
    'Agent.WorkFolder': agentWork,
    'Agent.OS': 'Linux',
    'Build.SourceBranch': 'refs/heads/main',
  };
}

/** What an earlier job keyed `buildx | deps.lock` saved in the store: a two-layer cache. */
async function seedStore(store: CacheStore): Promise<{ key: ResolvedKey; blobs: Blob[] }> {
  const key = await resolveKey('buildx | deps.lock', ws);
  const { dir, layout } = cacheFolder(tempDir(), 'source', ['deps layer', 'app layer']);
  await store.save({ cacheDir: dir, key: key.text, segments: key.values, scope: 'refs/heads/main', now: new Date() });
  return { key, blobs: layout.blobs };
}

function main(inputs: Record<string, string>, exec: Record<string, { code: number; stdout?: string; stderr?: string }>): Scenario {
  return { step: 'main', inputs: { dockerfile: 'Dockerfile', buildContext: '.', ...inputs }, variables: variables(), exec: { ...preflightAnswers(), ...exec } };
}

/** The `buildx build` command line the task must run, from its variable parts. */
function buildLine(builder: string, middle: string): string {
  return `${DOCKER} buildx build --builder ${builder} --progress plain --file ${ws}/Dockerfile ${middle} --metadata-file ${metadata} ${ws}`;
}

const containerBuilder = {
  [`${DOCKER} buildx inspect ${BUILDER}`]: missing,
  [`${DOCKER} buildx create --name ${BUILDER} --driver docker-container`]: ok,
  [`${DOCKER} buildx inspect --bootstrap ${BUILDER}`]: ok,
};

/** The warnings every mock build causes: a mock build writes neither cache nor metadata. */
const MOCK_BUILD_WARNINGS = [/^loc_mock_WarnCacheCommitFailed /, /^loc_mock_WarnMetadataUnreadable /];

function assertWarnings(run: MockRun, expected: RegExp[]): void {
  assert.equal(run.warnings.length, expected.length, `warnings: ${JSON.stringify(run.warnings)}`);
  expected.forEach((re, i) => assert.match(run.warnings[i] ?? '', re));
}

describe('mock-run: the main step', function () {
  this.timeout(30000);

  beforeEach(() => {
    ws = tempDir();
    agentTemp = tempDir();
    cacheDir = path.join(tempDir(), '.buildx-cache');
    metadata = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'metadata.json');
    agentWork = tempDir();
    writeTree(ws, { Dockerfile: 'FROM scratch\n', 'buildkitd.toml': '[worker.oci]\n', 'deps.lock': 'left-pad\n' });
  });
  afterEach(cleanup);

  it('docker-container: creates a job-unique builder, builds with a fresh cache export, and hands the builder to the post step', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(BUILDER, `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(main({ imageName: 'app', driver: 'docker-container' }, { ...containerBuilder, [build]: { code: 0, stderr: '#5 [2/2] RUN make\n#5 CACHED' } }));

    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, [
      ...PREFLIGHT,
      `${DOCKER} buildx inspect ${BUILDER}`,
      `${DOCKER} buildx create --name ${BUILDER} --driver docker-container`,
      `${DOCKER} buildx inspect --bootstrap ${BUILDER}`,
      build,
    ]);
    assert.equal(run.outputs.builderName, BUILDER);
    assert.match(run.stdout, /loc_mock_StepsCached 1 1/);
    // The default backend is the local store: a miss in an empty store, a key from the Dockerfile.
    assert.equal(run.outputs.cacheHit, 'false');
    assert.match(run.outputs.cacheKey ?? '', /^buildx\|"Linux"\|"app"\|[A-Za-z0-9+/=]{44}$/);
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { removeBuilder?: string; cleanup?: string[]; save?: { scope: string; when: string; store: { kind: string; path: string } } };
    assert.equal(state.removeBuilder, BUILDER);
    assert.deepEqual(state.cleanup, [path.dirname(metadata)]);
    assert.deepEqual([state.save?.scope, state.save?.when, state.save?.store], ['refs/heads/main', 'onSuccess', { kind: 'local', path: path.join(agentWork, '_buildx_cache_store') }]);
    assertWarnings(run, MOCK_BUILD_WARNINGS);
  });

  it('docker-container with every builder input, an existing cache folder (directory) and a named builder that exists already', async () => {
    const old = cacheLayout(['deps']);
    writeLayout(cacheDir, old.root, old.blobs);
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine('ci', `--tag app:latest --cache-from type=local,src=${cacheDir} --cache-to type=local,dest=${exportDir},mode=min,compression=zstd --load`);
    const run = await runScenario(
      main(
        { imageName: 'app', builderName: 'ci', driverOptions: 'network=host', buildkitdFlags: '--debug', buildkitdConfig: 'buildkitd.toml', cacheBackend: 'directory', cacheMode: 'min', cacheCompression: 'zstd', cacheDir },
        { [`${DOCKER} buildx inspect ci`]: ok, [`${DOCKER} buildx inspect --bootstrap ci`]: ok, [build]: ok },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, [...PREFLIGHT, `${DOCKER} buildx inspect ci`, `${DOCKER} buildx inspect --bootstrap ci`, build]);
    assert.equal(run.outputs.builderName, 'ci');
    // A reused builder is never the task's to remove.
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { removeBuilder?: string };
    assert.equal(state.removeBuilder, undefined);
    // The existing cache folder is untouched when the export is unusable.
    assert.ok(fs.existsSync(path.join(cacheDir, 'index.json')));
  });

  it('warns only about inputs set to something other than their default, which the agent passes for every other input', async () => {
    const build = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(main({ imageName: 'app', driver: 'docker', cacheBackend: 'none', storageContainer: 'team-cache', cacheDir: '$(Pipeline.Workspace)/.buildx-cache' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
    assert.ok(run.succeeded, run.stdout);
    assertWarnings(run, [/^loc_mock_WarnIgnoredWithBackend none storageContainer$/, /^loc_mock_WarnMetadataUnreadable /]);
  });

  const drivers: [string, Record<string, string>, Record<string, { code: number }>, string[]][] = [
    [
      'kubernetes with driver options',
      { driver: 'kubernetes', driverOptions: 'namespace=ci\nreplicas=2', cacheBackend: 'none' },
      {
        [`${DOCKER} buildx inspect ${BUILDER}`]: missing,
        [`${DOCKER} buildx create --name ${BUILDER} --driver kubernetes --driver-opt namespace=ci --driver-opt replicas=2`]: ok,
        [`${DOCKER} buildx inspect --bootstrap ${BUILDER}`]: ok,
      },
      [`${DOCKER} buildx inspect ${BUILDER}`, `${DOCKER} buildx create --name ${BUILDER} --driver kubernetes --driver-opt namespace=ci --driver-opt replicas=2`, `${DOCKER} buildx inspect --bootstrap ${BUILDER}`],
    ],
    [
      'remote with an endpoint',
      { driver: 'remote', endpoint: 'tcp://buildkitd:1234', cacheBackend: 'none' },
      {
        [`${DOCKER} buildx inspect ${BUILDER}`]: missing,
        [`${DOCKER} buildx create --name ${BUILDER} --driver remote tcp://buildkitd:1234`]: ok,
        [`${DOCKER} buildx inspect --bootstrap ${BUILDER}`]: ok,
      },
      [`${DOCKER} buildx inspect ${BUILDER}`, `${DOCKER} buildx create --name ${BUILDER} --driver remote tcp://buildkitd:1234`, `${DOCKER} buildx inspect --bootstrap ${BUILDER}`],
    ],
    ['docker with the default context', { driver: 'docker', cacheBackend: 'none' }, { [`${DOCKER} buildx inspect default`]: ok }, [`${DOCKER} buildx inspect default`]],
    ['docker with a named context', { driver: 'docker', endpoint: 'ci-engine', cacheBackend: 'none' }, { [`${DOCKER} buildx inspect ci-engine`]: ok }, [`${DOCKER} buildx inspect ci-engine`]],
  ];
  for (const [name, inputs, builderExec, builderCommands] of drivers) {
    it(`${name}: exact command lines`, async () => {
      const builder = inputs.driver === 'docker' ? (inputs.endpoint ?? 'default') : BUILDER;
      const build = buildLine(builder, '--tag app:v1 --tag app:latest --load');
      const run = await runScenario(main({ imageName: 'app', tags: 'v1\nlatest', ...inputs }, { ...builderExec, [build]: ok }));
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, [...(inputs.driver === 'docker' ? PREFLIGHT_DOCKER : PREFLIGHT), ...builderCommands, build]);
      assertWarnings(run, [/^loc_mock_WarnMetadataUnreadable /]);
    });
  }

  // driver auto (the default): the inputs, the engine's image store → the commands after the preflight, the builder, the reason in the log and the summary
  const STORE = `${DOCKER} info --format '{{json .DriverStatus}}'`;
  const classic = { [`${DOCKER} info --format {{json .DriverStatus}}`]: { code: 0, stdout: '[["Backing Filesystem","extfs"]]' } };
  const autoCases: [string, Record<string, string>, Record<string, { code: number; stdout?: string; stderr?: string }>, string[], string, RegExp][] = [
    ['the containerd image store: the engine\'s own builder', {}, {}, [STORE, `${DOCKER} buildx inspect default`], 'default', /^loc_mock_DriverAutoContainerd docker$/],
    ['the classic image store: a builder of its own', {}, classic, [STORE, `${DOCKER} buildx inspect default`, ...Object.keys(containerBuilder)], BUILDER, /^loc_mock_DriverAutoClassic docker-container$/],
    [
      'an image store the engine does not report: a builder of its own',
      {},
      { [`${DOCKER} info --format {{json .DriverStatus}}`]: { code: 1, stderr: 'permission denied' } },
      [STORE, `${DOCKER} buildx inspect default`, ...Object.keys(containerBuilder)],
      BUILDER,
      /^loc_mock_DriverAutoStoreUnknown docker-container$/,
    ],
    [
      'driver options on the containerd store: a builder of its own, without asking the store',
      { driverOptions: 'network=host' },
      { [`${DOCKER} buildx inspect ${BUILDER}`]: missing, [`${DOCKER} buildx create --name ${BUILDER} --driver docker-container --driver-opt network=host`]: ok, [`${DOCKER} buildx inspect --bootstrap ${BUILDER}`]: ok },
      [`${DOCKER} buildx inspect ${BUILDER}`, `${DOCKER} buildx create --name ${BUILDER} --driver docker-container --driver-opt network=host`, `${DOCKER} buildx inspect --bootstrap ${BUILDER}`],
      BUILDER,
      /^loc_mock_DriverAutoBuilderInputs docker-container driverOptions$/,
    ],
  ];
  for (const [name, inputs, exec, commands, builder, reason] of autoCases) {
    it(`driver auto with ${name}`, async () => {
      const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
      const build = buildLine(builder, `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
      // No driver input: the agent passes task.json's default, auto.
      const run = await runScenario(main({ imageName: 'app', cacheBackend: 'directory', cacheDir, ...inputs }, { [`${DOCKER} buildx inspect default`]: ok, ...containerBuilder, ...exec, [build]: ok }));
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, [...PREFLIGHT, ...commands, build]);
      assert.equal(run.outputs.builderName, builder);
      const said = /^loc_mock_DriverChosen (.*)$/m.exec(run.stdout)?.[1] ?? '';
      assert.match(said, reason);
      const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { removeBuilder?: string; summary?: { driver?: string } };
      assert.equal(state.summary?.driver, said, 'the summary says what the log says');
      assert.equal(state.removeBuilder, builder === BUILDER ? BUILDER : undefined);
      // Either way the cache is exported; no warning about the image store.
      assertWarnings(run, MOCK_BUILD_WARNINGS);
    });
  }

  it('local store: restores the exact key, sets cacheHit, cacheKey, cacheRestoredKey and the hit variable, and imports the restored folder', async () => {
    const storePath = path.join(agentWork, 'store');
    const { key, blobs: cached } = await seedStore(new LocalStore(storePath));

    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine('default', `--tag app:latest --cache-from type=local,src=${cacheDir} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(
      main({ imageName: 'app', driver: 'docker', cacheKey: 'buildx | deps.lock', localStorePath: storePath, cacheDir, cacheHitVar: 'BUILDX_HIT' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.deepEqual([run.outputs.cacheHit, run.outputs.cacheKey, run.outputs.cacheRestoredKey], ['true', key.text, key.text]);
    assert.match(run.stdout, /##vso\[task\.setvariable variable=BUILDX_HIT;isOutput=false;issecret=false;\]true/);
    assert.deepEqual(blobFiles(cacheDir), cached.map((b) => b.digest).sort());
    // The log shows how the key was resolved, file by file.
    assert.match(run.stdout, /- deps\.lock \[file\] --> /);
    assert.match(run.stdout, / {3}- deps\.lock \[9 bytes\] --> [0-9a-f]{64}/);
  });

  it("local store: Cache@2's old key format, one segment a line, hashes the listed file and warns that the format is deprecated", async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine('default', `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(main({ imageName: 'app', driver: 'docker', cacheKey: 'buildx\n$(Agent.OS)\ndeps.lock', cacheDir }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
    assert.ok(run.succeeded, run.stdout);
    const key = await resolveKey('buildx | Linux | deps.lock', ws);
    assert.equal(run.outputs.cacheKey, key.text);
    assert.match(run.stdout, / {3}- deps\.lock \[9 bytes\] --> [0-9a-f]{64}/);
    assertWarnings(run, [/^loc_mock_WarnKeyOldFormat$/, ...MOCK_BUILD_WARNINGS]);
  });

  it('local store: AZP_CACHING_SALT is the first segment of the key and of every restore key', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine('default', `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario({
      ...main({ imageName: 'app', driver: 'docker', cacheDir }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
      variables: { ...variables(), AZP_CACHING_SALT: 'v2' },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.match(run.outputs.cacheKey ?? '', /^AZP_CACHING_SALT=v2\|buildx\|"Linux"\|"app"\|[A-Za-z0-9+/=]{44}$/);
    assert.match(run.stdout, /loc_mock_RestoreKeys AZP_CACHING_SALT=v2\|buildx\|"Linux"\|"app"/);
  });

  it('local store: a restored blob that fails its digest in BuildKit: the entry is distrusted and the build runs again without the import', async () => {
    const storePath = path.join(agentWork, 'store');
    const { blobs: cached } = await seedStore(new LocalStore(storePath));
    const sealed = (): string[] => fs.readdirSync(path.join(storePath, 'v1', 'checked', 'sha256'));
    assert.equal(sealed().length, cached.length);

    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const to = `--cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`;
    const withImport = buildLine('default', `--tag app:latest --cache-from type=local,src=${cacheDir} ${to}`);
    const withoutImport = buildLine('default', `--tag app:latest ${to}`);
    const digestError = 'ERROR: failed to solve: error writing layer blob: failed commit on ref "layer-sha256:aa": commit failed: unexpected commit digest sha256:bb, expected sha256:aa: failed precondition';
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheKey: 'buildx | deps.lock', localStorePath: storePath, cacheDir },
        { [`${DOCKER} buildx inspect default`]: ok, [withImport]: { code: 1, stderr: `#9 exporting cache to client directory\n#9 ERROR: unexpected commit digest\n${digestError}` }, [withoutImport]: ok },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands.slice(-2), [withImport, withoutImport]);
    assert.match(run.warnings[0] ?? '', /^loc_mock_WarnCacheContentFailed ERROR: failed to solve: .*unexpected commit digest/);
    assert.deepEqual(sealed(), [], 'every blob of the entry is checked in full before its next use');
  });

  it('local store: a pull request from a fork reads but never writes', async () => {
    const run = await runScenario({
      ...main({ imageName: 'app', driver: 'docker', cacheDir }, { [`${DOCKER} buildx inspect default`]: ok }),
      variables: { ...variables(), 'Build.SourceBranch': 'refs/pull/7/merge', 'System.PullRequest.TargetBranch': 'refs/heads/main', 'System.PullRequest.IsFork': 'True' },
      exec: { ...preflightAnswers(), [`${DOCKER} buildx inspect default`]: ok, [buildLine('default', '--tag app:latest --load')]: ok },
    });
    assert.ok(run.succeeded, run.stdout);
    // Nothing is exported: nothing would be saved.
    assert.equal(run.commands.at(-1), buildLine('default', '--tag app:latest --load'));
    assert.match(run.stdout, /loc_mock_ReadOnlyFork/);
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { save?: unknown };
    assert.equal(state.save, undefined);
    assert.match(run.stdout, /loc_mock_CacheMiss local store \S+ refs\/pull\/7\/merge, refs\/heads\/main, refs\/heads\/master/);
  });

  it('directory: a pull request from a fork imports the folder and never replaces it', async () => {
    const old = cacheLayout(['deps']);
    writeLayout(cacheDir, old.root, old.blobs);
    const build = buildLine('default', `--tag app:latest --cache-from type=local,src=${cacheDir} --load`);
    const run = await runScenario({
      ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'directory', cacheDir }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
      variables: { ...variables(), 'Build.SourceBranch': 'refs/pull/7/merge', 'System.PullRequest.IsFork': 'true' },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.match(run.stdout, /loc_mock_ReadOnlyFork/);
    assert.deepEqual(fs.readdirSync(path.dirname(cacheDir)), ['.buildx-cache'], 'no export folder');
  });

  it('local store: a build secret used in the key is redacted in the output and in what is saved', async () => {
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine('default', `--tag app:latest --secret id=tok,src=${secretFile} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(main({ imageName: 'app', driver: 'docker', cacheDir, cacheKey: 'k | "tok-hunter2"', secrets: 'tok=hunter2' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.outputs.cacheKey, 'k|"tok-***"');
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { save?: { segments: string[] }; summary?: { key: string } };
    assert.deepEqual(state.save?.segments, ['k', '"tok-***"']);
    assert.equal(state.summary?.key, 'k|"tok-***"');
  });

  it('saveCache never: the cache is read-only, so nothing is exported', async () => {
    const build = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(main({ imageName: 'app', driver: 'docker', cacheDir, saveCache: 'never' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assertWarnings(run, [/^loc_mock_WarnMetadataUnreadable /]);
  });

  describe('buildxVersion: the tool cache', () => {
    const mirror = 'https://mirror.example/buildx/releases';
    const binary = '#!/bin/sh\necho pinned buildx\n';
    const sha = (text: string): string => crypto.createHash('sha256').update(text).digest('hex');
    const asset = `${mirror}/download/v0.19.2/buildx-v0.19.2.linux-amd64`;
    const checksums = `${mirror}/download/v0.19.2/checksums.txt`;
    const latest = `${mirror}/latest/download/checksums.txt`;
    let tools: { dir: string; downloads: Record<string, string> };
    beforeEach(() => {
      tools = { dir: tempDir(), downloads: { [asset]: binary, [checksums]: `${sha(binary)}  buildx-v0.19.2.linux-amd64\n`, [latest]: `${sha(binary)}  buildx-v0.19.2.linux-amd64\n` } };
    });
    const run = (version: string): Promise<MockRun> =>
      runScenario({
        ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'none', buildxVersion: version, buildxDownloadUrl: mirror }, { [`${DOCKER} buildx inspect default`]: ok, [buildLine('default', '--tag app:latest --load')]: ok }),
        tools,
      });
    const downloads = (r: MockRun): string[] => r.stdout.split('\n').filter((l) => l.startsWith('[download] ')).map((l) => l.slice(11));
    const plugin = (): string => path.join(agentTemp, `docker-buildx-cache-${ID}`, 'docker-config', 'cli-plugins', 'docker-buildx');

    it('downloads and verifies a version, caches it, and makes it the plugin of a job-private docker config', async () => {
      const r = await run('0.19.2');
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(downloads(r), [checksums, asset]);
      assert.match(r.stdout, /loc_mock_BuildxInstalled 0\.19\.2 https:\/\/mirror\.example\/.*buildx-v0\.19\.2\.linux-amd64, SHA-256 verified, now in the tool cache/);
      assert.equal(fs.readFileSync(plugin(), 'utf8'), binary);
      assert.equal(fs.realpathSync(plugin()), path.join(tools.dir, 'docker-buildx', '0.19.2', 'amd64', 'docker-buildx'));
      const state = JSON.parse(r.taskVariables['DockerBuildxCache.State'] ?? '{}') as { dockerConfig?: string };
      assert.equal(state.dockerConfig, path.dirname(path.dirname(plugin())));
      assert.match(r.stdout, /loc_mock_PreflightBuildx 0\.19\.2 https:\/\/mirror\.example/);
    });

    it('a second job finds it in the tool cache and downloads nothing', async () => {
      await run('0.19.2');
      const second = await run('0.19.2');
      assert.ok(second.succeeded, second.stdout);
      assert.deepEqual(downloads(second), []);
      assert.match(second.stdout, /loc_mock_BuildxInstalled 0\.19\.2 the tool cache/);
    });

    it('resolves latest from the newest release checksums', async () => {
      const r = await run('latest');
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(downloads(r), [latest, asset]);
    });

    it('rejects a corrupted download with a clear error, never caches it, and never runs docker', async () => {
      tools.downloads[asset] = 'tampered';
      const r = await run('0.19.2');
      assert.ok(r.runner.failed);
      assert.match(r.errors[0] ?? '', /^Input 'buildxVersion': loc_mock_BuildxInstallFailed 0\.19\.2 .*does not match its published SHA-256/);
      assert.ok(!fs.existsSync(path.join(tools.dir, 'docker-buildx')));
      assert.deepEqual(r.commands, []);
    });
  });

  describe('containerRegistry: logins into a job-private docker config', () => {
    const tokens = new TokenProcess();
    let log: string;
    before(() => tokens.start());
    after(() => tokens.stop());
    beforeEach(() => {
      log = path.join(tempDir(), 'logins.jsonl');
      tokens.clear();
    });
    const tokenRequests = (): string[] => tokens.requests();

    const push = (): string => buildLine('default', '--tag registry.example/app:latest --push');
    const run = (env: Record<string, string>, extraVars: Record<string, string> = {}): Promise<MockRun> =>
      runScenario({
        ...main({ imageName: 'registry.example/app', driver: 'docker', cacheBackend: 'none', output: 'registry', containerRegistry: 'conn' }, { [`${DOCKER} buildx inspect default`]: ok, [push()]: ok }),
        variables: { ...variables(), ...extraVars },
        env: { FAKE_DOCKER_LOG: log, ...env },
      });
    const logins = (): { args: string; stdin: string; config: string }[] =>
      fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { args: string; stdin: string; config: string }) : [];

    it('a user name and password: docker login --password-stdin into the private config, then the push', async () => {
      const r = await run(endpoint('conn', 'UsernamePassword', { registry: 'registry.example', username: 'ci-bot', password: 'pa55-w0rd' }, { registrytype: 'Others' }));
      assert.ok(r.succeeded, r.stdout);
      const config = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'docker-config');
      assert.deepEqual(logins(), [{ args: 'login --username ci-bot --password-stdin registry.example', stdin: 'pa55-w0rd', config }]);
      assert.equal(r.commands.at(-1), push());
      assert.match(r.stdout, /loc_mock_LoggedIn registry\.example user name and password/);
      // The password is registered as a secret, and appears nowhere else: not on a command line.
      assert.equal(r.stdout.split('pa55-w0rd').length - 1, 1);
      assert.match(r.stdout, /##vso\[task\.setsecret\]pa55-w0rd/);
      const state = JSON.parse(r.taskVariables['DockerBuildxCache.State'] ?? '{}') as { dockerConfig?: string };
      assert.equal(state.dockerConfig, config);
    });

    it('ACR with workload identity federation: OIDC token, Entra ID, the registry exchange, then a login with the refresh token', async () => {
      const r = await run(
        {
          ...endpoint('conn', 'WorkloadIdentityFederation', { loginServer: tokens.base, serviceprincipalid: 'client', tenantid: 'tenant' }, { registrytype: 'ACR', activeDirectoryAuthority: `${tokens.base}/` }),
          ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: TokenServer.JOB_TOKEN,
        },
        { 'System.OidcRequestUri': `${tokens.base}/oidc` },
      );
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(tokenRequests(), ['/oidc', '/tenant/oauth2/v2.0/token', '/oauth2/exchange']);
      assert.deepEqual(logins().map((l) => [l.args, l.stdin]), [[`login --username 00000000-0000-0000-0000-000000000000 --password-stdin ${tokens.base}`, TokenServer.REFRESH]]);
      for (const token of [TokenServer.OIDC, TokenServer.ACCESS, TokenServer.REFRESH]) assert.match(r.stdout, new RegExp(`##vso\\[task\\.setsecret\\]${token}`));
      assert.match(r.stdout, /loc_mock_LoggedIn \S+ workload identity federation/);
    });

    it("ACR with the agent's managed identity", async () => {
      const r = await run({ ...endpoint('conn', 'ManagedServiceIdentity', { loginServer: tokens.base }, { registrytype: 'ACR' }), IMDS_ENDPOINT: tokens.base });
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(tokenRequests(), ['/metadata/identity/oauth2/token', '/oauth2/exchange']);
      assert.deepEqual(logins().map((l) => l.stdin), [TokenServer.REFRESH]);
    });

    it('ACR with a service principal and secret logs in with them', async () => {
      const r = await run(endpoint('conn', 'ServicePrincipal', { loginServer: 'myacr.azurecr.io', serviceprincipalid: 'sp-id', serviceprincipalkey: 'sp-secret' }, { registrytype: 'ACR' }));
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(logins().map((l) => [l.args, l.stdin]), [['login --username sp-id --password-stdin myacr.azurecr.io', 'sp-secret']]);
    });

    const failures: [string, Record<string, string>, RegExp][] = [
      ['wrong credentials', { ...endpoint('conn', 'UsernamePassword', { registry: 'registry.example', username: 'u', password: 'wrong' }), FAKE_DOCKER_PASSWORD: 'right' }, /^loc_mock_LoginFailed registry\.example user name and password Error response from daemon: .*unauthorized/],
      ['a connection that does not exist', {}, /^Input 'containerRegistry': loc_mock_InputConnectionMissing conn/],
      ['an Azure Resource Manager connection', endpoint('conn', 'WorkloadIdentityFederation', { serviceprincipalid: 'id', tenantid: 't' }, { environment: 'AzureCloud' }), /^Input 'containerRegistry': loc_mock_InputConnectionWrongType conn/],
      ['a federated credential Entra ID refuses', { ...endpoint('conn', 'WorkloadIdentityFederation', { loginServer: 'a.azurecr.io', serviceprincipalid: 'client', tenantid: 'nobody' }, { registrytype: 'ACR', activeDirectoryAuthority: 'http://127.0.0.1:1/' }), ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: 'x' }, /^loc_mock_CredentialsFailed conn /],
    ];
    for (const [name, env, pattern] of failures) {
      it(`fails clearly with ${name}, before any build`, async () => {
        const r = await run(env, { 'System.OidcRequestUri': `${tokens.base}/oidc` });
        assert.ok(r.runner.failed);
        assert.match(r.errors[0] ?? '', pattern);
        assert.ok(!r.commands.some((c) => c.includes('buildx build')));
      });
    }
  });

  describe('cacheBackend registry: falls back as the stores do, writes only its own branch', () => {
    const repo = 'registry.example/app/cache';
    const tag = (t: string): string => `${repo}:${t}`;
    const from = (t: string): string => `--cache-from type=registry,ref=${tag(t)}`;
    const to = (t: string, mode = 'max', compression = 'gzip'): string => `--cache-to type=registry,ref=${tag(t)},mode=${mode},compression=${compression},image-manifest=true,oci-mediatypes=true`;
    const found = { code: 0 };
    const notFound = (t: string): { code: number; stderr: string } => ({ code: 1, stderr: `ERROR: ${tag(t)}: not found` });
    const feature = { 'Build.SourceBranch': 'refs/heads/feature/login' };
    const pr = { 'Build.SourceBranch': 'refs/pull/7/merge', 'System.PullRequest.TargetBranch': 'refs/heads/develop' };
    type Case = [string, Record<string, string>, Record<string, string>, Record<string, { code: number; stderr?: string }>, string, string, string?];
    const cases: Case[] = [
      ['its own cache exists: imported and written', {}, {}, { 'buildcache-main': found, 'buildcache-master': notFound('buildcache-master') }, 'true', `${from('buildcache-main')} ${to('buildcache-main')}`, tag('buildcache-main')],
      [
        'a branch without a cache reads the default branch, and writes its own',
        { cacheMode: 'min', cacheCompression: 'zstd' },
        feature,
        { 'buildcache-feature-login': notFound('buildcache-feature-login'), 'buildcache-main': found, 'buildcache-master': notFound('buildcache-master') },
        'inexact',
        `${from('buildcache-main')} ${to('buildcache-feature-login', 'min', 'zstd')}`,
        tag('buildcache-main'),
      ],
      ['a pull request reads its target branch, and writes its merge ref', {}, pr, { 'buildcache-pull-7-merge': notFound('x'), 'buildcache-develop': found, 'buildcache-main': found, 'buildcache-master': notFound('x') }, 'inexact', `${from('buildcache-develop')} ${to('buildcache-pull-7-merge')}`, tag('buildcache-develop')],
      ['no cache anywhere: only written', {}, feature, { 'buildcache-feature-login': notFound('x'), 'buildcache-main': notFound('x'), 'buildcache-master': notFound('x') }, 'false', to('buildcache-feature-login')],
      ['read-only: only imported', { saveCache: 'never' }, {}, { 'buildcache-main': found, 'buildcache-master': found }, 'true', from('buildcache-main'), tag('buildcache-main')],
      ['writeCache false: only imported', { writeCache: 'false' }, {}, { 'buildcache-main': found, 'buildcache-master': found }, 'true', from('buildcache-main'), tag('buildcache-main')],
      ['one scope for all branches: the tag as written', { cacheScope: 'shared', registryCacheRef: tag('v1') }, feature, { v1: found }, 'true', `${from('v1')} ${to('v1')}`, tag('v1')],
      ['DockerBuildxCache.DefaultBranch names the default branch', {}, { ...feature, 'DockerBuildxCache.DefaultBranch': 'trunk' }, { 'buildcache-feature-login': notFound('x'), 'buildcache-trunk': found }, 'inexact', `${from('buildcache-trunk')} ${to('buildcache-feature-login')}`, tag('buildcache-trunk')],
    ];
    for (const [name, inputs, vars, answers, hit, flags, restored] of cases) {
      it(name, async () => {
        const build = buildLine('default', `--tag app:latest ${flags} --load`);
        const lookups = Object.fromEntries(Object.entries(answers).map(([t, a]) => [`${DOCKER} buildx imagetools inspect ${tag(t)}`, a]));
        const r = await runScenario({
          ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'registry', registryCacheRef: repo, ...inputs }, { ...lookups, [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
          variables: { ...variables(), ...vars },
        });
        assert.ok(r.succeeded, r.stdout);
        assert.equal(r.commands.at(-1), build);
        assert.deepEqual(new Set(r.commands.filter((c) => c.includes('imagetools'))), new Set(Object.keys(lookups)), 'every scope is looked up');
        assert.equal(r.outputs.cacheHit, hit);
        assert.equal(r.outputs.cacheRestoredKey, restored);
        assert.deepEqual(r.warnings.filter((w) => !/WarnMetadataUnreadable/.test(w)), []);
      });
    }

    it('a pull request from a fork reads but never writes the registry cache', async () => {
      const build = buildLine('default', `--tag app:latest ${from('buildcache-develop')} --load`);
      const lookups = Object.fromEntries(['buildcache-pull-7-merge', 'buildcache-develop', 'buildcache-main', 'buildcache-master'].map((t) => [`${DOCKER} buildx imagetools inspect ${tag(t)}`, t === 'buildcache-develop' ? found : notFound(t)]));
      const r = await runScenario({
        ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'registry', registryCacheRef: repo }, { ...lookups, [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
        variables: { ...variables(), ...pr, 'System.PullRequest.IsFork': 'True' },
      });
      assert.ok(r.succeeded, r.stdout);
      assert.equal(r.commands.at(-1), build);
      assert.match(r.stdout, /loc_mock_ReadOnlyFork/);
      assert.equal(r.outputs.cacheHit, 'inexact');
    });

    it('a registry that cannot be read is a warning, and the build still writes its own cache', async () => {
      const build = buildLine('default', `--tag app:latest ${to('buildcache-main')} --load`);
      const refused = { code: 1, stderr: 'ERROR: failed to authorize: 401 Unauthorized' };
      const r = await runScenario(
        main(
          { imageName: 'app', driver: 'docker', cacheBackend: 'registry', registryCacheRef: repo },
          { [`${DOCKER} buildx imagetools inspect ${tag('buildcache-main')}`]: refused, [`${DOCKER} buildx imagetools inspect ${tag('buildcache-master')}`]: refused, [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
        ),
      );
      assert.ok(r.succeeded, r.stdout);
      assert.equal(r.commands.at(-1), build);
      assertWarnings(r, [/^loc_mock_WarnRegistryCacheUnreadable registry\.example\/app\/cache:buildcache-main ERROR: failed to authorize/, /^loc_mock_WarnRegistryCacheUnreadable .*buildcache-master/, /^loc_mock_WarnMetadataUnreadable /]);
    });
  });

  describe('cacheBackend azureBlob: Azurite, with Entra ID tokens over HTTPS', () => {
    const tokens = new TokenProcess();
    let azurite: Azurite;
    before(async () => {
      azurite = ensureAzurite();
      await tokens.start();
      // The task's process trusts the HTTPS instance's self-signed certificate, as an agent would a company CA.
      process.env.NODE_EXTRA_CA_CERTS = azurite.ca;
    });
    after(() => {
      delete process.env.NODE_EXTRA_CA_CERTS;
      tokens.stop();
    });
    beforeEach(() => tokens.clear());

    const name = (): string => `mockrun-${crypto.randomBytes(5).toString('hex')}`;
    const arm = (scheme: string, params: Record<string, string>): Record<string, string> =>
      endpoint('arm', scheme, params, { environmentAuthorityUrl: `${tokens.base}/` }, 'https://management.azure.com/');
    type Connection = { env: Record<string, string>; requests: string[]; method: RegExp };
    /** The connections, once the token server has its address. */
    const connections = (): Record<string, Connection> => ({
      'workload identity federation': {
        env: { ...arm('WorkloadIdentityFederation', { tenantid: 'tenant-a', serviceprincipalid: 'client' }), ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: TokenServer.JOB_TOKEN },
        requests: ['/oidc', '/tenant-a/oauth2/v2.0/token'],
        method: /loc_mock_StoreAuthConnection workload identity federation arm/,
      },
      'a service principal and secret': {
        env: arm('ServicePrincipal', { tenantid: 'tenant-b', serviceprincipalid: 'client', serviceprincipalkey: TokenServer.SP_SECRET, authenticationType: 'spnKey' }),
        requests: ['/tenant-b/oauth2/v2.0/token'],
        method: /loc_mock_StoreAuthConnection service principal and secret arm/,
      },
      'the managed identity': {
        env: { ...arm('ManagedServiceIdentity', {}), IMDS_ENDPOINT: tokens.base },
        requests: ['/metadata/identity/oauth2/token'],
        method: /loc_mock_StoreAuthConnection managed identity arm/,
      },
    });
    const connection = (kind: string): Connection => {
      const c = connections()[kind];
      assert.ok(c);
      return c;
    };
    const KINDS = ['workload identity federation', 'a service principal and secret', 'the managed identity'];
    const jobVariables = (): Record<string, string> => ({ ...variables(), 'System.OidcRequestUri': `${tokens.base}/oidc` });

    /** The post-job step saving a two-layer cache folder under `segments`; the store spec is what the main step hands over. */
    async function postSave(store: object, env: Record<string, string>, inputs: Record<string, string> = {}): Promise<{ run: MockRun; blobs: string[] }> {
      const key = await resolveKey('buildx | deps.lock', ws);
      const { dir, layout } = cacheFolder(tempDir(), '.buildx-cache', ['deps layer', 'app layer']);
      const save = { store, cacheDir: dir, segments: key.values, scope: 'refs/heads/main', retentionDays: 7, failOnError: false, when: 'onSuccess' };
      const summary = { backend: 'azureBlob', image: 'app:latest', key: key.text, hit: 'false', phases: [] };
      const run = await runScenario({
        step: 'post',
        inputs,
        variables: { ...jobVariables(), 'Agent.JobStatus': 'Succeeded' },
        taskVariables: { 'DockerBuildxCache.State': JSON.stringify({ version: 1, cleanup: [], save, summary }) },
        env,
      });
      return { run, blobs: layout.blobs.map((b) => b.digest).sort() };
    }

    /** The main step restoring `buildx | deps.lock` from the container and building with it. */
    function mainRestore(inputs: Record<string, string>, env: Record<string, string>, importsCache = true): Promise<MockRun> {
      const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
      const from = importsCache ? `--cache-from type=local,src=${cacheDir} ` : '';
      const build = buildLine('default', `--tag app:latest ${from}--cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
      return runScenario({
        ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'azureBlob', cacheKey: 'buildx | deps.lock', cacheDir, ...inputs }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
        variables: jobVariables(),
        env,
      });
    }

    /** A token registered as a secret appears in no other line of the log. */
    function assertTokensSecret(run: MockRun): void {
      const jwts = [...run.stdout.matchAll(/##vso\[task\.setsecret\](eyJ[\w-]+\.[\w-]+\.[\w-]*)/g)].map((m) => m[1] ?? '');
      assert.ok(jwts.length > 0, 'the storage token is registered as a secret');
      for (const jwt of jwts) assert.deepEqual(linesShowing(run.stdout, jwt), []);
    }

    KINDS.forEach((saver, i) => {
      const restorer = KINDS[(i + 1) % KINDS.length] ?? saver;
      it(`saves with ${saver} and restores with ${restorer}: each asks Entra ID for one Storage token`, async () => {
        const container = name();
        const spec = { kind: 'azureBlob', accountUrl: azurite.oauthUrl, container, connection: 'arm' };
        const s = connection(saver);
        const { run: saved, blobs } = await postSave(spec, s.env);
        assert.ok(saved.succeeded, saved.stdout);
        assert.deepEqual(saved.warnings, []);
        assert.match(saved.stdout, new RegExp(`loc_mock_StoreOpened ${azurite.oauthUrl}/${container} loc_mock_StoreAuthConnection`));
        assert.match(saved.stdout, /loc_mock_Saved buildx\|/);
        assert.deepEqual(tokens.requests(), s.requests);
        assertTokensSecret(saved);

        tokens.clear();
        const r = connection(restorer);
        const run = await mainRestore({ azureSubscription: 'arm', storageAccountUrl: azurite.oauthUrl, storageContainer: container }, r.env);
        assert.ok(run.succeeded, run.stdout);
        assert.equal(run.outputs.cacheHit, 'true');
        assert.deepEqual(blobFiles(cacheDir), blobs);
        assert.deepEqual(tokens.requests(), r.requests);
        assert.match(run.stdout, r.method);
        assertTokensSecret(run);
        const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { save?: { store: object } };
        assert.deepEqual(state.save?.store, spec, 'the post step gets where the store is, and no secret');
      });
    });

    it('a token Entra ID will not give: a warning, and the build runs without the cache', async () => {
      const env = { ...endpoint('arm', 'ServicePrincipal', { tenantid: 't', serviceprincipalid: 'client', serviceprincipalkey: 'wrong-secret' }, { environmentAuthorityUrl: `${tokens.base}/` }) };
      const run = await mainRestore({ azureSubscription: 'arm', storageAccountUrl: azurite.oauthUrl, storageContainer: name() }, env, false);
      assert.ok(run.succeeded, run.stdout);
      assert.equal(run.outputs.cacheHit, 'false');
      assert.match(run.warnings[0] ?? '', /^loc_mock_WarnRestoreFailed loc_mock_StoreAzureDescription \S+ the Entra ID token for the service principal: \S+ answered 400/);
      assert.deepEqual(linesShowing(run.stdout, 'wrong-secret'), []);
    });

    it('with failOnCacheError, a token Entra ID will not give fails the step before the build', async () => {
      const env = { ...endpoint('arm', 'ServicePrincipal', { tenantid: 't', serviceprincipalid: 'client', serviceprincipalkey: 'wrong-secret' }, { environmentAuthorityUrl: `${tokens.base}/` }) };
      const run = await mainRestore({ azureSubscription: 'arm', storageAccountUrl: azurite.oauthUrl, storageContainer: name(), failOnCacheError: 'true' }, env, false);
      assert.ok(run.runner.failed);
      assert.match(run.errors[0] ?? '', /^loc_mock_WarnRestoreFailed /);
      assert.ok(!run.commands.some((c) => c.includes('buildx build')));
    });

    /** The shared-key instance, reached with the secret input in its three forms. */
    const secrets: [string, (c: ReturnType<typeof freshContainer>) => Promise<{ inputs: Record<string, string>; secret: string }>][] = [
      ['a connection string', () => Promise.resolve({ inputs: { storageConnectionString: connectionString(azurite.blobUrl) }, secret: EMULATOR_KEY })],
      ['a SAS URL of the container', async (c) => {
        const url = await c.generateSasUrl({ permissions: ContainerSASPermissions.parse('racwdl'), expiresOn: new Date(Date.now() + 3600_000) });
        return { inputs: { storageConnectionString: url }, secret: new URL(url).searchParams.get('sig') ?? '' };
      }],
      ['a SAS token with storageAccountUrl', async (c) => {
        const url = await c.generateSasUrl({ permissions: ContainerSASPermissions.parse('racwdl'), expiresOn: new Date(Date.now() + 3600_000) });
        return { inputs: { storageConnectionString: new URL(url).search.slice(1), storageAccountUrl: azurite.blobUrl }, secret: new URL(url).searchParams.get('sig') ?? '' };
      }],
    ];
    for (const [kind, access] of secrets) {
      it(`${kind}: restores what another job saved, the secret only ever in setsecret lines`, async () => {
        const c = freshContainer(azurite.blobUrl, 'mockrun');
        await c.create();
        const { inputs, secret } = await access(c);
        const { blobs } = await seedStore(new AzureBlobStore(c, 'seed'));

        const run = await mainRestore({ ...inputs, storageContainer: c.containerName }, {});
        assert.ok(run.succeeded, run.stdout);
        assert.equal(run.outputs.cacheHit, 'true');
        assert.deepEqual(blobFiles(cacheDir), blobs.map((b) => b.digest).sort());
        assert.ok(secret.length > 10);
        assert.deepEqual(linesShowing(run.stdout, secret), []);
        assert.ok(!JSON.stringify(run.taskVariables).includes(secret), 'not in the task state');
      });
    }

    const invalid: [string, Record<string, string>, Record<string, string>, RegExp][] = [
      ['a connection that does not exist', { azureSubscription: 'nope', storageAccountUrl: 'https://a.blob.core.windows.net' }, {}, /^Input 'azureSubscription': loc_mock_InputConnectionMissing nope/],
      ['a Docker Registry connection', { azureSubscription: 'arm', storageAccountUrl: 'https://a.blob.core.windows.net' }, endpoint('arm', 'UsernamePassword', { username: 'u', password: 'p' }), /^Input 'azureSubscription': loc_mock_InputAzureScheme arm UsernamePassword/],
      ['a certificate service principal', { azureSubscription: 'arm', storageAccountUrl: 'https://a.blob.core.windows.net' }, endpoint('arm', 'ServicePrincipal', { tenantid: 't', serviceprincipalid: 'c', authenticationType: 'spnCertificate', servicePrincipalCertificate: 'pem' }), /^Input 'azureSubscription': loc_mock_InputAzureCertificate arm/],
      ['a federated connection without its tenant', { azureSubscription: 'arm', storageAccountUrl: 'https://a.blob.core.windows.net' }, endpoint('arm', 'WorkloadIdentityFederation', { serviceprincipalid: 'c' }), /^Input 'azureSubscription': loc_mock_InputConnectionIncomplete arm tenantid/],
      ['a connection string that is not one', { storageConnectionString: 'AccountName=x;Nonsense' }, {}, /^Input 'storageConnectionString': loc_mock_InputAzureConnectionString /],
      ['a SAS token without an account URL', { storageConnectionString: 'sv=2024-08-04&sig=abc' }, {}, /^Input 'storageAccountUrl': loc_mock_InputAzureSasNeedsUrl/],
    ];
    for (const [what, inputs, env, pattern] of invalid) {
      it(`fails clearly with ${what}, before any build`, async () => {
        const run = await mainRestore(inputs, env, false);
        assert.ok(run.runner.failed);
        assert.match(run.errors[0] ?? '', pattern);
        assert.ok(!run.commands.some((c) => c.includes('buildx build')));
      });
    }
  });

  it('passes every build input and each output kind', async () => {
    const outputs: [Record<string, string>, string][] = [
      [{ output: 'registry' }, '--push'],
      [{ output: 'oci', outputPath: 'out/image.tar' }, `--output type=oci,dest=${ws}/out/image.tar`],
      [{ output: 'tar', outputPath: 'out/fs.tar' }, `--output type=tar,dest=${ws}/out/fs.tar`],
      [{ output: 'cacheOnly' }, '--output type=cacheonly'],
      [{ output: 'custom', outputs: 'type=local,dest=out\ntype=image,push=false' }, '--output type=local,dest=out --output type=image,push=false'],
    ];
    for (const [outputInputs, outputFlags] of outputs) {
      const inputs = {
        imageName: 'reg.example/team/app',
        driver: 'docker',
        cacheBackend: 'none',
        buildArgs: 'A=1\nB',
        target: 'runtime',
        platforms: 'linux/amd64,linux/arm64',
        labels: 'org.opencontainers.image.revision=abc',
        noCache: 'true',
        pull: 'true',
        additionalArguments: '--provenance=false --annotation "index:title=my app"',
        ...outputInputs,
      };
      const middle = `--tag reg.example/team/app:latest --build-arg A=1 --build-arg B --target runtime --platform linux/amd64,linux/arm64 --label org.opencontainers.image.revision=abc --no-cache --pull ${outputFlags}`;
      // additionalArguments come after --metadata-file, right before the context. The mock keys
      // answers on the arguments joined by spaces; the log shows them shell-quoted.
      const head = `${DOCKER} buildx build --builder default --progress plain --file ${ws}/Dockerfile ${middle} --metadata-file ${metadata}`;
      const run = await runScenario(main(inputs, { [`${DOCKER} buildx inspect default`]: ok, [`${head} --provenance=false --annotation index:title=my app ${ws}`]: ok }));
      assert.ok(run.succeeded, `${outputInputs.output ?? ''}: ${run.stdout}`);
      assert.deepEqual(run.commands, [...PREFLIGHT_DOCKER, `${DOCKER} buildx inspect default`, `${head} --provenance=false --annotation 'index:title=my app' ${ws}`]);
    }
  });

  it('passes SSH forwards, named contexts, annotations, attestations and extra cache sources, in that order, with paths made absolute', async () => {
    writeTree(ws, { 'keys/deploy': 'PRIVATE KEY', 'assets/logo.svg': '<svg/>' });
    const inputs = {
      imageName: 'app',
      driver: 'docker',
      cacheBackend: 'none',
      ssh: 'default\ngithub=keys/deploy',
      buildContexts: 'assets=assets\nbase=docker-image://local/busybox:latest',
      annotations: 'index:org.opencontainers.image.title=app',
      provenance: 'mode=max',
      sbom: 'true',
      cacheFrom: 'type=registry,ref=registry.example/app:buildcache-main',
    };
    const build = buildLine(
      'default',
      `--tag app:latest --annotation index:org.opencontainers.image.title=app --ssh default --ssh github=${ws}/keys/deploy --build-context assets=${ws}/assets --build-context base=docker-image://local/busybox:latest --provenance=mode=max --sbom=true --cache-from type=registry,ref=registry.example/app:buildcache-main --load`,
    );
    const run = await runScenario({ ...main(inputs, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }), env: { SSH_AUTH_SOCK: '/run/agent.sock' } });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.ok(!run.stdout.includes('PRIVATE KEY'));
  });

  it('imports extra cache sources beside the local store, and exports only to the store', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine('default', `--tag app:latest --cache-from type=registry,ref=registry.example/app:buildcache-main --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(main({ imageName: 'app', driver: 'docker', cacheDir, cacheFrom: 'type=registry,ref=registry.example/app:buildcache-main' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
  });

  it('adds Docker@2 pipeline labels from the job, before the labels input, and none when addPipelineData is false', async () => {
    const pipeline = {
      'System.TeamFoundationCollectionUri': 'https://dev.azure.com/contoso/',
      'System.TeamProject': 'web',
      'System.HostType': 'build',
      'Build.Repository.Name': 'shop',
      'Build.SourceVersion': '0123abc',
      'Build.SourceBranchName': 'main',
      'Build.BuildNumber': '20240601.3',
    };
    const labels = [
      'com.azure.dev.image.system.teamfoundationcollectionuri=https://dev.azure.com/contoso/',
      'com.azure.dev.image.system.teamproject=web',
      'com.azure.dev.image.build.repository.name=shop',
      'com.azure.dev.image.build.sourceversion=0123abc',
      'com.azure.dev.image.build.sourcebranchname=main',
      'com.azure.dev.image.build.buildnumber=20240601.3',
    ];
    const withLabels = buildLine('default', `--tag app:latest ${labels.map((l) => `--label ${l}`).join(' ')} --label team=web --load`);
    const labelled = await runScenario({ ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'none', labels: 'team=web' }, { [`${DOCKER} buildx inspect default`]: ok, [withLabels]: ok }), variables: { ...variables(), ...pipeline } });
    assert.ok(labelled.succeeded, labelled.stdout);
    assert.equal(labelled.commands.at(-1), withLabels);

    const without = buildLine('default', '--tag app:latest --load');
    const plain = await runScenario({ ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'none', addPipelineData: 'false' }, { [`${DOCKER} buildx inspect default`]: ok, [without]: ok }), variables: { ...variables(), ...pipeline } });
    assert.ok(plain.succeeded, plain.stdout);
    assert.equal(plain.commands.at(-1), without);
  });

  it("takes Docker@2's input names: repository, Dockerfile and arguments", async () => {
    writeTree(ws, { 'docker/Dockerfile': 'FROM scratch\n' });
    const head = `${DOCKER} buildx build --builder default --progress plain --file ${ws}/docker/Dockerfile --tag reg.example/app:latest --load --metadata-file ${metadata}`;
    const run = await runScenario({
      step: 'main',
      inputs: { repository: 'reg.example/app', Dockerfile: 'docker/Dockerfile', arguments: '--iidfile /tmp/iid', driver: 'docker', cacheBackend: 'none' },
      variables: variables(),
      exec: { ...preflightAnswers(), [`${DOCKER} buildx inspect default`]: ok, [`${head} --iidfile /tmp/iid ${ws}`]: ok },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), `${head} --iidfile /tmp/iid ${ws}`);
  });

  it('passes secrets from the environment by name and from files by path, masking their values, which reach no command line', async () => {
    writeTree(ws, { '.netrc': 'machine git.example login ci password n3trc-passw0rd\n' });
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const build = buildLine('default', `--tag app:latest --secret id=pw,src=${secretFile} --secret id=token,env=NPM_TOKEN --secret id=netrc,src=${ws}/.netrc --load`);
    const run = await runScenario({
      ...main({ imageName: 'app', driver: 'docker', cacheBackend: 'none', secrets: 'pw=file:not-a-path\nenv:token=NPM_TOKEN\nfile:netrc=.netrc' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
      env: { NPM_TOKEN: 'npm-t0ken-value' },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    for (const value of ['file:not-a-path', 'npm-t0ken-value', 'machine git.example login ci password n3trc-passw0rd']) {
      assert.match(run.stdout, new RegExp(`##vso\\[task\\.setsecret\\]${value}`));
      assert.deepEqual(linesShowing(run.stdout, value), [], value);
    }
  });

  it('writes an inline buildkitd.toml to a job-private file for buildx create --config', async () => {
    const configFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'buildkitd.toml');
    const create = `${DOCKER} buildx create --name ${BUILDER} --driver docker-container --config ${configFile}`;
    const build = buildLine(BUILDER, '--tag app:latest --load');
    let written = '';
    const run = await runScenario(
      main(
        { imageName: 'app', cacheBackend: 'none', buildkitdConfigInline: '[worker.oci]\n  max-parallelism = 2' },
        { [`${DOCKER} buildx inspect ${BUILDER}`]: missing, [create]: ok, [`${DOCKER} buildx inspect --bootstrap ${BUILDER}`]: ok, [build]: ok },
      ),
    ).finally(() => {
      written = fs.existsSync(configFile) ? fs.readFileSync(configFile, 'utf8') : '';
    });
    assert.ok(run.succeeded, run.stdout);
    assert.ok(run.commands.includes(create), run.commands.join('\n'));
    assert.equal(written, '[worker.oci]\n  max-parallelism = 2\n');
  });

  it('passes secrets as job-private files and masks their values', async () => {
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const build = buildLine('default', `--tag app:latest --secret id=npmrc,src=${secretFile} --load`);
    const run = await runScenario(main({ imageName: 'app', driver: 'docker', cacheBackend: 'none', secrets: 'npmrc=s3cr3t-value' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.match(run.stdout, /##vso\[task\.setsecret\]s3cr3t-value/);
    assert.equal(run.stdout.split('s3cr3t-value').length - 1, 1, 'the value appears only in the setsecret command');
    assert.ok(!fs.existsSync(secretFile), 'the secret file is deleted after the build');
  });

  it('fails when the build fails, with buildx last error, and deletes the secret file and the export', async () => {
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine('default', `--tag app:latest --secret id=tok,src=${secretFile} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir, secrets: 'tok=abc' },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: { code: 1, stderr: '#6 [2/2] RUN false\n#6 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1\nERROR: failed to solve: process "/bin/sh -c false" did not complete successfully: exit code: 1' } },
      ),
    );
    assert.ok(run.runner.failed);
    assert.equal(run.errors.length, 1);
    assert.match(run.errors[0] ?? '', /^loc_mock_BuildFailed 1 ERROR: failed to solve: process "\/bin\/sh -c false"/);
    assert.ok(!fs.existsSync(secretFile));
    assert.ok(!fs.existsSync(exportDir));
    assert.ok(!fs.existsSync(cacheDir), 'a failed build never creates or replaces the cache folder');
  });

  it('builds again without cache export when only the cache export failed', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const withExport = buildLine('default', `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const withoutExport = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir },
        {
          [`${DOCKER} buildx inspect default`]: ok,
          [withExport]: { code: 1, stderr: '#9 exporting cache to client directory\n#9 ERROR: error writing layer blob: no space left on device\nERROR: failed to solve: error writing layer blob: no space left on device' },
          [withoutExport]: { code: 0, stderr: '#4 [2/2] RUN make\n#4 CACHED' },
        },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands.slice(-2), [withExport, withoutExport]);
    assertWarnings(run, [/^loc_mock_WarnCacheExportFailed ERROR: failed to solve: error writing layer blob: no space left on device/, /^loc_mock_WarnMetadataUnreadable /]);
  });

  it('treats an engine without cache export support as cache trouble, not a build failure', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const withExport = buildLine('default', `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir },
        {
          [`${DOCKER} buildx inspect default`]: ok,
          [withExport]: { code: 1, stderr: 'ERROR: Cache export is not supported for the docker driver.\nSwitch to a different driver, or turn on the containerd image store, and try again.' },
          [buildLine('default', '--tag app:latest --load')]: ok,
        },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.match(run.warnings[0] ?? '', /^loc_mock_WarnCacheExportFailed ERROR: Cache export is not supported/);
  });

  it('neutralises pipeline commands in build output', async () => {
    const build = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(
      main({ imageName: 'app', driver: 'docker', cacheBackend: 'none' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: { code: 0, stdout: '##vso[task.setvariable variable=pwned]yes', stderr: '#5 0.1 ##[error]fake\n#5 0.2 ##vso[task.complete result=Failed]' } }),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.ok(!/##vso\[task\.setvariable variable=pwned/.test(run.stdout));
    assert.ok(!/##vso\[task\.complete result=Failed/.test(run.stdout));
    assert.match(run.stdout, /# #vso\[task\.setvariable variable=pwned\]yes/);
    assert.match(run.stdout, /#5 0\.1 # #\[error\]fake/);
  });

  it('fails with the likely cause when no engine answers', async () => {
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker' },
        { [`${DOCKER} version --format {{json .}}`]: { code: 1, stdout: '{"Client":{"Version":"28.2.2"},"Server":null}', stderr: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' } },
      ),
    );
    assert.ok(run.runner.failed);
    assert.match(run.errors[0] ?? '', /^loc_mock_PreflightNoEngine \S+ Cannot connect to the Docker daemon/);
  });

  // Feature gates, from what the preflight finds.
  const gateCases: [string, Record<string, string>, ReturnType<typeof preflightAnswers>, RegExp | undefined, string | RegExp][] = [
    ['the classic image store: a warning, and the docker driver builds without exporting cache', { driver: 'docker' }, preflightAnswers('0.19.2', 'Backing Filesystem'), /^loc_mock_WarnNoContainerdStore/, '--tag app:latest --load'],
    ['buildx 0.35: the local export drops stale blobs itself', { driver: 'docker' }, preflightAnswers('0.35.0'), undefined, `--tag app:latest --cache-to type=local,dest=EXPORT,mode=max,compression=gzip,reset=true --load`],
    ['buildx older than the task needs: an error naming buildxVersion', { driver: 'docker' }, preflightAnswers('0.9.1'), undefined, /^loc_mock_PreflightBuildxTooOld 0\.9\.1 0\.10\.0 0\.10\.0/],
    ['no buildx plugin: an error naming buildxVersion', { driver: 'docker' }, { ...preflightAnswers(), [`${DOCKER} buildx version`]: { code: 1, stderr: "docker: 'buildx' is not a docker command." } }, undefined, /^loc_mock_PreflightNoBuildx docker: 'buildx' is not a docker command\./],
  ];
  for (const [name, inputs, answers, warning, expected] of gateCases) {
    it(`gates: ${name}`, async () => {
      const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
      const build = typeof expected === 'string' ? buildLine('default', expected.replace('EXPORT', exportDir)) : 'none';
      const run = await runScenario(main({ imageName: 'app', cacheDir, ...inputs }, { ...answers, [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
      if (typeof expected === 'string') {
        assert.ok(run.succeeded, run.stdout);
        assert.equal(run.commands.at(-1), build);
        if (warning !== undefined) assert.match(run.warnings[0] ?? '', warning);
        else assert.ok(!run.warnings.some((w) => /ContainerdStore/.test(w)));
      } else {
        assert.ok(run.runner.failed);
        assert.match(run.errors[0] ?? '', expected);
        assert.ok(!run.commands.some((c) => c.includes('buildx build')));
      }
    });
  }

  // An input error stops the step before docker runs, naming the input and the message key: one
  // error of each kind that the step meets before docker, the input readers', one that depends on
  // the step's environment, a secret input's, and the key's files. Every input error is in the
  // table of test/unit/config.test.ts.
  const invalid: [Record<string, string>, string, string][] = [
    [{ dockerfile: 'missing/Dockerfile' }, 'dockerfile', 'InputDockerfileMissing'],
    [{ ssh: 'default', SSH_AUTH_SOCK: '' }, 'ssh', 'InputSshNoAgent'],
    [{ cacheBackend: 'azureBlob', storageAuth: 'connectionString' }, 'storageConnectionString', 'InputAzureConnectionStringRequired'],
    [{ cacheKey: 'k | missing/*.lock' }, 'cacheKey', 'InputKeyNoMatch'],
  ];
  for (const [given, input, key] of invalid) {
    it(`validation: ${input} ${JSON.stringify(given)} → ${key}`, async () => {
      // SSH_AUTH_SOCK is the step's environment, not an input.
      const { SSH_AUTH_SOCK, ...inputs } = given;
      const run = await runScenario({ ...main({ imageName: 'app', ...inputs }, {}), env: SSH_AUTH_SOCK === undefined ? {} : { SSH_AUTH_SOCK } });
      assert.ok(run.runner.failed);
      assert.equal(run.commands.length, 0, 'docker never runs on bad input');
      assert.equal(run.errors.length, 1);
      assert.ok((run.errors[0] ?? '').startsWith(`Input '${input}': loc_mock_${key}`), run.errors[0]);
    });
  }
});

describe('mock-run: the post-job step', function () {
  this.timeout(30000);
  beforeEach(() => {
    ws = tempDir();
    agentTemp = tempDir();
  });
  afterEach(cleanup);

  const state = (s: object): Record<string, string> => ({ 'DockerBuildxCache.State': JSON.stringify({ version: 1, cleanup: [], ...s }) });

  /** A state whose save points at a real cache folder and a real store. */
  function withSave(when: 'onSuccess' | 'always', extra: { storePath?: string; failOnError?: boolean } = {}): { taskVariables: Record<string, string>; storePath: string } {
    const cacheDir = path.join(tempDir(), '.buildx-cache');
    const layout = cacheLayout(['deps', 'app']);
    writeLayout(cacheDir, layout.root, layout.blobs);
    const storePath = extra.storePath ?? path.join(tempDir(), 'store');
    const save = { store: { kind: 'local', path: storePath }, cacheDir, segments: ['buildx', '"Linux"', 'app'], scope: 'refs/heads/main', retentionDays: 7, failOnError: extra.failOnError ?? false, when };
    const summary = { backend: 'local', image: 'app:latest', key: 'buildx|"Linux"|app', hit: 'false', phases: [['Build', 1200]] };
    return { taskVariables: state({ save, summary, removeBuilder: 'b1' }), storePath };
  }
  const withRm = { [`${DOCKER} buildx rm b1`]: ok };
  const summaryFile = (run: MockRun): string => {
    const m = /##vso\[task\.uploadsummary\](.*)$/m.exec(run.stdout);
    assert.ok(m, 'a summary was uploaded');
    return fs.readFileSync(m[1] ?? '', 'utf8');
  };

  const statuses: [string, 'onSuccess' | 'always', string, boolean][] = [
    ['saves after a job that succeeded', 'onSuccess', 'Succeeded', true],
    ['saves after a job that succeeded with issues', 'onSuccess', 'SucceededWithIssues', true],
    ['does not save after a failed job with onSuccess', 'onSuccess', 'Failed', false],
    ['does not save after a canceled job with onSuccess', 'onSuccess', 'Canceled', false],
    ['saves after a failed job with always', 'always', 'Failed', true],
  ];
  for (const [name, when, status, saves] of statuses) {
    it(`${name} (${status}), uploads the summary and still cleans up`, async () => {
      const { taskVariables, storePath } = withSave(when);
      const run = await runScenario({ step: 'post', variables: { 'Agent.JobStatus': status, 'Agent.TempDirectory': agentTemp }, taskVariables, exec: withRm });
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, [`${DOCKER} buildx rm b1`]);
      const stats = await new LocalStore(storePath).stats();
      assert.equal(stats.entries, saves ? 1 : 0);
      const summary = summaryFile(run);
      assert.match(summary, /\| Cache backend \| `local` \|/);
      if (saves) {
        assert.match(run.stdout, /loc_mock_Saved buildx\|"Linux"\|app refs\/heads\/main/);
        assert.match(summary, /\| Bytes saved \| \d+ B in 4 new blobs \|/);
        assert.match(summary, /\| Store size \| .* in 4 blobs, 1 entries \|/);
      } else {
        assert.match(run.stdout, new RegExp(`loc_mock_SaveSkippedJobStatus ${status}`));
        assert.match(summary, new RegExp(`\\| Bytes saved \\| nothing \\(the job's status is ${status}\\)`));
      }
    });
  }

  it('a failed save is a warning, and the summary says so', async () => {
    const blocker = path.join(tempDir(), 'not-a-folder');
    fs.writeFileSync(blocker, 'x');
    const { taskVariables } = withSave('always', { storePath: path.join(blocker, 'store') });
    const run = await runScenario({ step: 'post', variables: { 'Agent.JobStatus': 'Succeeded', 'Agent.TempDirectory': agentTemp }, taskVariables, exec: withRm });
    assert.ok(run.succeeded, run.stdout);
    assertWarnings(run, [/^loc_mock_WarnSaveFailed local store .*not-a-folder\/store ENOTDIR/]);
    assert.match(summaryFile(run), /\| Bytes saved \| nothing \(see the warning in the log\) \|/);
  });

  it('with failOnCacheError a failed save fails the step, after the summary and the cleanup', async () => {
    const blocker = path.join(tempDir(), 'not-a-folder');
    fs.writeFileSync(blocker, 'x');
    const { taskVariables } = withSave('always', { storePath: path.join(blocker, 'store'), failOnError: true });
    const run = await runScenario({ step: 'post', variables: { 'Agent.JobStatus': 'Succeeded', 'Agent.TempDirectory': agentTemp }, taskVariables, exec: withRm });
    assert.ok(run.runner.failed);
    assert.match(run.errors[0] ?? '', /^loc_mock_WarnSaveFailed local store .*ENOTDIR/);
    assert.deepEqual(run.commands, [`${DOCKER} buildx rm b1`]);
    assert.match(summaryFile(run), /\| Bytes saved \| nothing \(loc_mock_WarnSaveFailed/);
  });

  it('removes the builder the main step created and deletes the job-private folder', async () => {
    const jobDir = path.join(agentTemp, 'docker-buildx-cache-x');
    writeTree(jobDir, { 'secrets/secret-0': 'value' });
    const run = await runScenario({ step: 'post', variables: { 'Agent.JobStatus': 'Succeeded' }, taskVariables: state({ removeBuilder: 'b1', cleanup: [jobDir] }), exec: { [`${DOCKER} buildx rm b1`]: ok } });
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, [`${DOCKER} buildx rm b1`]);
    assert.match(run.stdout, /loc_mock_BuilderRemoved b1/);
    assert.ok(!fs.existsSync(jobDir));
  });

  it('warns but never fails when the builder cannot be removed', async () => {
    const run = await runScenario({ step: 'post', variables: { 'Agent.JobStatus': 'Failed' }, taskVariables: state({ removeBuilder: 'b1' }), exec: { [`${DOCKER} buildx rm b1`]: { code: 1, stdout: '', stderr: 'ERROR: no builder "b1" found' } } });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.errors.length, 0);
    assertWarnings(run, [/^loc_mock_WarnBuilderRemoveFailed b1 ERROR: no builder "b1" found/]);
  });

  it('removes nothing it did not create', async () => {
    const run = await runScenario({ step: 'post', taskVariables: state({}), exec: {} });
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, []);
  });

  it('does nothing when the main step stopped before it saved any state', async () => {
    const run = await runScenario({ step: 'post', exec: {} });
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, []);
    assert.match(run.stdout, /loc_mock_PostNothingToDo/);
  });
});
