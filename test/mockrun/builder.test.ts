import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cleanup, tempDir } from '../helpers';
import { cacheLayout, writeLayout } from '../oci-fixture';
import { runScenario, type MockRun } from './harness';
import { DOCKER } from './types';
import {
  agentTemp,
  agentWork,
  assertWarnings,
  BUILDER,
  buildLine,
  cacheDir,
  containerBuilder,
  freshJob,
  ID,
  JOB,
  main,
  metadata,
  missing,
  MOCK_BUILD_WARNINGS,
  ok,
  PREFLIGHT,
  preflightAnswers,
  variables,
} from './job';
import { defaultBuilderName } from '../../tasks/DockerBuildxCacheV1/src/docker/builder';
import { agentBuilderName } from '../../tasks/DockerBuildxCacheV1/src/docker/lifetime';

describe('mock-run: the main step: builders, drivers, buildx and the preflight', function () {
  this.timeout(30000);
  beforeEach(freshJob);
  afterEach(cleanup);

  describe('builder lifetime', () => {
    const selfHosted = (): Record<string, string> => {
      const v: Record<string, string> = {
        ...variables(),
        'Agent.Name': 'build-vm-1',
        'Agent.Id': '7',
        'Agent.HomeDirectory': '/opt/agent',
      };
      delete v['Agent.CloudId'];
      return v;
    };
    const KEPT = agentBuilderName({ id: '7', name: 'build-vm-1', home: '/opt/agent' }, { driver: 'docker-container', driverOptions: [] });
    const JOB_ON_SELF_HOSTED = defaultBuilderName(JOB, 'build-vm-1');
    const exportDir = (): string => path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const builds = (builder: string): string =>
      buildLine(builder, `--tag app:latest --cache-to type=local,dest=${exportDir()},mode=max,compression=gzip --load`);
    const creates = (builder: string): Record<string, { code: number; stdout?: string; stderr?: string }> => ({
      [`${DOCKER} buildx inspect --bootstrap ${builder}`]: missing,
      [`${DOCKER} buildx create --bootstrap --name ${builder} --driver docker-container`]: ok,
      [builds(builder)]: ok,
    });
    type State = { removeBuilder?: string; leaveBuilder?: boolean; keepBuilder?: { name: string; keepStorage?: string } };
    const stateOf = (run: MockRun): State => JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as State;

    // the agent, the inputs (and the engine's host name) → the builder, what the post-job step does with it, the log's reason
    const cases: [string, () => Record<string, string>, Record<string, string>, string, State, RegExp, string?][] = [
      [
        'a self-hosted agent keeps its builder, pruned to 10GB',
        selfHosted,
        {},
        KEPT,
        { keepBuilder: { name: KEPT, keepStorage: '10GB' } },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeSelfHosted agent build-vm-1$/m,
      ],
      [
        'a self-hosted agent with builderLifetime job: the job builder, removed',
        selfHosted,
        { builderLifetime: 'job' },
        JOB_ON_SELF_HOSTED,
        { removeBuilder: JOB_ON_SELF_HOSTED },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeFromInput job$/m,
      ],
      [
        'a Microsoft-hosted agent: the job builder, removed',
        variables,
        {},
        BUILDER,
        { removeBuilder: BUILDER },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeCloudId job$/m,
      ],
      [
        'a Microsoft-hosted agent, its engine on this machine: the job builder, left to the machine',
        variables,
        {},
        BUILDER,
        { removeBuilder: BUILDER, leaveBuilder: true },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeCloudId job$/m,
        os.hostname(),
      ],
      [
        'a Microsoft-hosted agent, an engine on another machine: the job builder, removed',
        variables,
        {},
        BUILDER,
        { removeBuilder: BUILDER },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeCloudId job$/m,
        `not-${os.hostname()}`,
      ],
      [
        'a self-hosted agent with builderLifetime job, its engine on this machine: removed',
        selfHosted,
        { builderLifetime: 'job' },
        JOB_ON_SELF_HOSTED,
        { removeBuilder: JOB_ON_SELF_HOSTED },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeFromInput job$/m,
        os.hostname(),
      ],
      [
        'a Microsoft-hosted agent with builderLifetime agent: kept, pruned to 2GB',
        variables,
        { builderLifetime: 'agent', builderKeepStorage: '2GB' },
        agentBuilderName({ name: 'agent-1' }, { driver: 'docker-container', driverOptions: [] }),
        {
          keepBuilder: {
            name: agentBuilderName({ name: 'agent-1' }, { driver: 'docker-container', driverOptions: [] }),
            keepStorage: '2GB',
          },
        },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeFromInput agent$/m,
      ],
      [
        'a self-hosted agent with removeBuilder false: kept, as without it',
        selfHosted,
        { removeBuilder: 'false' },
        KEPT,
        { keepBuilder: { name: KEPT, keepStorage: '10GB' } },
        /^loc_mock_LifetimeChosen loc_mock_LifetimeSelfHosted agent build-vm-1$/m,
      ],
    ];
    for (const [name, vars, inputs, builder, state, reason, engineName] of cases) {
      it(name, async () => {
        const run = await runScenario({
          step: 'main',
          // The folder's export, whatever cacheTransport auto picks for the agent (mock-run: cache.test.ts).
          inputs: {
            dockerfile: 'Dockerfile',
            buildContext: '.',
            imageName: 'app',
            driver: 'docker-container',
            cacheTransport: 'folder',
            ...inputs,
          },
          variables: vars(),
          exec: { ...preflightAnswers(undefined, undefined, engineName), ...creates(builder) },
        });
        assert.ok(run.succeeded, run.stdout);
        assert.deepEqual(run.commands, [
          ...PREFLIGHT,
          // A builder an agent keeps is started if it is there, else created and started; the job's own, whose name is new, is created and started at once.
          ...(state.keepBuilder === undefined
            ? [`${DOCKER} buildx create --bootstrap --name ${builder} --driver docker-container`]
            : [
                `${DOCKER} buildx inspect --bootstrap ${builder}`,
                `${DOCKER} buildx create --bootstrap --name ${builder} --driver docker-container`,
              ]),
          builds(builder),
        ]);
        assert.equal(run.outputs.builderName, builder);
        const s = stateOf(run);
        assert.deepEqual(
          { removeBuilder: s.removeBuilder, leaveBuilder: s.leaveBuilder, keepBuilder: s.keepBuilder },
          { removeBuilder: state.removeBuilder, leaveBuilder: state.leaveBuilder, keepBuilder: state.keepBuilder },
        );
        assert.match(run.stdout, reason);
      });
    }

    it('a self-hosted agent with builderName: that builder, neither kept nor removed when it existed', async () => {
      const exec = {
        ...preflightAnswers(),
        [`${DOCKER} buildx inspect --bootstrap mine`]: ok,
        [builds('mine')]: ok,
      };
      const run = await runScenario({
        step: 'main',
        inputs: { dockerfile: 'Dockerfile', buildContext: '.', imageName: 'app', builderName: 'mine' },
        variables: selfHosted(),
        exec,
      });
      assert.ok(run.succeeded, run.stdout);
      assert.equal(run.outputs.builderName, 'mine');
      assert.deepEqual(stateOf(run).keepBuilder, undefined);
      assert.deepEqual(stateOf(run).removeBuilder, undefined);
      assert.doesNotMatch(run.stdout, /loc_mock_LifetimeChosen/);
    });

    it('a self-hosted agent with the remote driver: the builder is kept, and its daemon is not pruned', async () => {
      const remote = agentBuilderName(
        { id: '7', name: 'build-vm-1', home: '/opt/agent' },
        { driver: 'remote', driverOptions: [], endpoint: 'tcp://bk:1234' },
      );
      const exec = {
        ...preflightAnswers(),
        [`${DOCKER} buildx inspect --bootstrap ${remote}`]: missing,
        [`${DOCKER} buildx create --bootstrap --name ${remote} --driver remote tcp://bk:1234`]: ok,
        [builds(remote)]: ok,
      };
      const run = await runScenario({
        step: 'main',
        inputs: { dockerfile: 'Dockerfile', buildContext: '.', imageName: 'app', driver: 'remote', endpoint: 'tcp://bk:1234' },
        variables: selfHosted(),
        exec,
      });
      assert.ok(run.succeeded, run.stdout);
      assert.equal(run.outputs.builderName, remote);
      assert.deepEqual(stateOf(run).keepBuilder, { name: remote });
    });

    it('a self-hosted agent whose kept builder exists: reused, not created', async () => {
      const exec = {
        ...preflightAnswers(),
        [`${DOCKER} buildx inspect --bootstrap ${KEPT}`]: ok,
        [builds(KEPT)]: ok,
      };
      const run = await runScenario({
        step: 'main',
        // The folder's export, as above: cacheTransport auto would go direct, with a builder of another name (network=host).
        inputs: { dockerfile: 'Dockerfile', buildContext: '.', imageName: 'app', driver: 'docker-container', cacheTransport: 'folder' },
        variables: selfHosted(),
        exec,
      });
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, [...PREFLIGHT, `${DOCKER} buildx inspect --bootstrap ${KEPT}`, builds(KEPT)]);
      assert.deepEqual(stateOf(run).keepBuilder, { name: KEPT, keepStorage: '10GB' });
    });
  });

  it('docker-container: creates a job-unique builder, builds with a fresh cache export, and hands the builder to the post step', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(BUILDER, `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker-container', cacheTransport: 'folder' },
        { ...containerBuilder, [build]: { code: 0, stderr: '#5 [2/2] RUN make\n#5 CACHED' } },
      ),
    );

    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, [
      ...PREFLIGHT,
      `${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver docker-container`,
      build,
    ]);
    assert.equal(run.outputs.builderName, BUILDER);
    assert.match(run.stdout, new RegExp(`, loc_mock_BuilderStarted ${BUILDER} docker-container \\d+\\.\\ds$`, 'm'));
    assert.match(run.stdout, /loc_mock_StepsCached 1 1/);
    // The default backend is the local store: a miss in an empty store, a key from the Dockerfile.
    assert.equal(run.outputs.cacheHit, 'false');
    assert.match(run.outputs.cacheKey ?? '', /^buildx\|"Linux"\|"app"\|[A-Za-z0-9+/=]{44}$/);
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as {
      removeBuilder?: string;
      cleanup?: string[];
      save?: { scope: string; when: string; store: { kind: string; path: string } };
    };
    assert.equal(state.removeBuilder, BUILDER);
    assert.deepEqual(state.cleanup, [path.dirname(metadata)]);
    assert.deepEqual(
      [state.save?.scope, state.save?.when, state.save?.store],
      ['refs/heads/main', 'onSuccess', { kind: 'local', path: path.join(agentWork, '_buildx_cache_store') }],
    );
    assertWarnings(run, MOCK_BUILD_WARNINGS);
  });

  it('docker-container with every builder input, an existing cache folder (directory) and a named builder that exists already', async () => {
    const old = cacheLayout(['deps']);
    writeLayout(cacheDir, old.root, old.blobs);
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(
      'ci',
      `--tag app:latest --cache-from type=local,src=${cacheDir} --cache-to type=local,dest=${exportDir},mode=min,compression=zstd --load`,
    );
    const run = await runScenario(
      main(
        {
          imageName: 'app',
          builderName: 'ci',
          driverOptions: 'network=host',
          buildkitdFlags: '--debug',
          buildkitdConfig: 'buildkitd.toml',
          cacheBackend: 'directory',
          cacheMode: 'min',
          cacheCompression: 'zstd',
          cacheDir,
        },
        { [`${DOCKER} buildx inspect --bootstrap ci`]: ok, [build]: ok },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, [...PREFLIGHT, `${DOCKER} buildx inspect --bootstrap ci`, build]);
    assert.equal(run.outputs.builderName, 'ci');
    // A reused builder is never the task's to remove.
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { removeBuilder?: string };
    assert.equal(state.removeBuilder, undefined);
    // The existing cache folder is untouched when the export is unusable.
    assert.ok(fs.existsSync(path.join(cacheDir, 'index.json')));
  });

  it('warns only about inputs set to something other than their default, which the agent passes for every other input', async () => {
    const build = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(
      main(
        {
          imageName: 'app',
          driver: 'docker',
          cacheBackend: 'none',
          storageContainer: 'team-cache',
          cacheDir: '$(Pipeline.Workspace)/.buildx-cache',
        },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assertWarnings(run, [/^loc_mock_WarnIgnoredWithBackend none storageContainer$/, /^loc_mock_WarnMetadataUnreadable /]);
  });

  const drivers: [string, Record<string, string>, Record<string, { code: number }>, string[]][] = [
    [
      'kubernetes with driver options',
      { driver: 'kubernetes', driverOptions: 'namespace=ci\nreplicas=2', cacheBackend: 'none' },
      {
        [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver kubernetes --driver-opt namespace=ci --driver-opt replicas=2`]: ok,
      },
      [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver kubernetes --driver-opt namespace=ci --driver-opt replicas=2`],
    ],
    [
      'remote with an endpoint',
      { driver: 'remote', endpoint: 'tcp://buildkitd:1234', cacheBackend: 'none' },
      {
        [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver remote tcp://buildkitd:1234`]: ok,
      },
      [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver remote tcp://buildkitd:1234`],
    ],
    ['docker with the default context', { driver: 'docker', cacheBackend: 'none' }, {}, []],
    [
      'docker with a named context',
      { driver: 'docker', endpoint: 'ci-engine', cacheBackend: 'none' },
      { [`${DOCKER} buildx inspect ci-engine`]: ok },
      [`${DOCKER} buildx inspect ci-engine`],
    ],
  ];
  for (const [name, inputs, builderExec, builderCommands] of drivers) {
    it(`${name}: exact command lines`, async () => {
      const builder = inputs.driver === 'docker' ? (inputs.endpoint ?? 'default') : BUILDER;
      const build = buildLine(builder, '--tag app:v1 --tag app:latest --load');
      const run = await runScenario(main({ imageName: 'app', tags: 'v1\nlatest', ...inputs }, { ...builderExec, [build]: ok }));
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, [...PREFLIGHT, ...builderCommands, build]);
      // The engine's own builder is named, not asked: the log says so instead of giving its platforms.
      if (builder === 'default') assert.match(run.stdout, /, loc_mock_BuilderEngine default$/m);
      else assert.doesNotMatch(run.stdout, /loc_mock_BuilderEngine/);
      assertWarnings(run, [/^loc_mock_WarnMetadataUnreadable /]);
    });
  }

  // driver auto (the default): the inputs, the engine's image store → the commands after the preflight, the builder, the reason in the log and the summary
  const classic = preflightAnswers('0.19.2', 'Backing Filesystem');
  const autoCases: [
    string,
    Record<string, string>,
    Record<string, { code: number; stdout?: string; stderr?: string }>,
    string[],
    string,
    RegExp,
  ][] = [
    ["the containerd image store: the engine's own builder", {}, {}, [], 'default', /^loc_mock_DriverAutoContainerd docker$/],
    [
      'the classic image store: a builder of its own',
      {},
      classic,
      Object.keys(containerBuilder),
      BUILDER,
      /^loc_mock_DriverAutoClassic docker-container$/,
    ],
    [
      'an image store the engine does not report: a builder of its own',
      {},
      {
        [`${DOCKER} info --format {{json .}}`]: {
          code: 0,
          stdout: JSON.stringify({ ServerVersion: '26.1.5', ClientInfo: { Plugins: [{ Name: 'buildx', Version: 'v0.19.2' }] } }),
        },
      },
      Object.keys(containerBuilder),
      BUILDER,
      /^loc_mock_DriverAutoStoreUnknown docker-container$/,
    ],
    [
      'driver options on the containerd store: a builder of its own, without asking the store',
      { driverOptions: 'network=host' },
      {
        [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver docker-container --driver-opt network=host`]: ok,
      },
      [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver docker-container --driver-opt network=host`],
      BUILDER,
      /^loc_mock_DriverAutoBuilderInputs docker-container driverOptions$/,
    ],
  ];
  for (const [name, inputs, exec, commands, builder, reason] of autoCases) {
    it(`driver auto with ${name}`, async () => {
      const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
      const build = buildLine(builder, `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
      // No driver input: the agent passes task.json's default, auto.
      const run = await runScenario(
        main(
          { imageName: 'app', cacheBackend: 'directory', cacheDir, ...inputs },
          { [`${DOCKER} buildx inspect default`]: ok, ...containerBuilder, ...exec, [build]: ok },
        ),
      );
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, [...PREFLIGHT, ...commands, build]);
      // The engine's API is asked for the image store first, unless a builder input decides without it.
      assert.equal(/^\[engine api\] GET \/info$/m.test(run.stdout), !('driverOptions' in inputs), 'the engine API asked');
      assert.equal(run.outputs.builderName, builder);
      const said = /^loc_mock_DriverChosen (.*)$/m.exec(run.stdout)?.[1] ?? '';
      assert.match(said, reason);
      const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as {
        removeBuilder?: string;
        summary?: { driver?: string };
      };
      assert.equal(state.summary?.driver, said, 'the summary says what the log says');
      assert.equal(state.removeBuilder, builder === BUILDER ? BUILDER : undefined);
      // Either way the cache is exported; no warning about the image store.
      assertWarnings(run, MOCK_BUILD_WARNINGS);
    });
  }

  describe('buildxVersion: the tool cache', () => {
    const mirror = 'https://mirror.example/buildx/releases';
    const binary = '#!/bin/sh\necho pinned buildx\n';
    const sha = (text: string): string => crypto.createHash('sha256').update(text).digest('hex');
    const asset = `${mirror}/download/v0.19.2/buildx-v0.19.2.linux-amd64`;
    const checksums = `${mirror}/download/v0.19.2/checksums.txt`;
    const latest = `${mirror}/latest/download/checksums.txt`;
    let tools: { dir: string; downloads: Record<string, string> };
    beforeEach(() => {
      tools = {
        dir: tempDir(),
        downloads: {
          [asset]: binary,
          [checksums]: `${sha(binary)}  buildx-v0.19.2.linux-amd64\n`,
          [latest]: `${sha(binary)}  buildx-v0.19.2.linux-amd64\n`,
        },
      };
    });
    const run = (version: string): Promise<MockRun> =>
      runScenario({
        ...main(
          { imageName: 'app', driver: 'docker', cacheBackend: 'none', buildxVersion: version, buildxDownloadUrl: mirror },
          { [`${DOCKER} buildx inspect default`]: ok, [buildLine('default', '--tag app:latest --load')]: ok },
        ),
        tools,
      });
    const downloads = (r: MockRun): string[] =>
      r.stdout
        .split('\n')
        .filter((l) => l.startsWith('[download] '))
        .map((l) => l.slice(11));
    const plugin = (): string => path.join(agentTemp, `docker-buildx-cache-${ID}`, 'docker-config', 'cli-plugins', 'docker-buildx');

    it('downloads and verifies a version, caches it, and makes it the plugin of a job-private docker config', async () => {
      const r = await run('0.19.2');
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(downloads(r), [checksums, asset]);
      assert.match(
        r.stdout,
        /loc_mock_BuildxInstalled 0\.19\.2 https:\/\/mirror\.example\/.*buildx-v0\.19\.2\.linux-amd64, SHA-256 verified, now in the tool cache/,
      );
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
      assert.match(
        r.errors[0] ?? '',
        /^Input 'buildxVersion': loc_mock_BuildxInstallFailed 0\.19\.2 .*does not match its published SHA-256/,
      );
      assert.ok(!fs.existsSync(path.join(tools.dir, 'docker-buildx')));
      assert.deepEqual(r.commands, []);
    });
  });

  it('fails with the likely cause when no engine answers', async () => {
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker' },
        {
          [`${DOCKER} info --format {{json .}}`]: {
            code: 1,
            stdout:
              '{"ServerVersion":"","DriverStatus":null,"ClientInfo":{"Version":"28.2.2","Plugins":[{"Name":"buildx","Version":"v0.19.2"}]}}',
            stderr: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?',
          },
        },
      ),
    );
    assert.ok(run.runner.failed);
    assert.match(run.errors[0] ?? '', /^loc_mock_PreflightNoEngine \S+ Cannot connect to the Docker daemon/);
  });

  // Feature gates, from what the preflight finds.
  const gateCases: [string, Record<string, string>, ReturnType<typeof preflightAnswers>, RegExp | undefined, string | RegExp][] = [
    [
      'the classic image store: a warning, and the docker driver builds without exporting cache',
      { driver: 'docker' },
      preflightAnswers('0.19.2', 'Backing Filesystem'),
      /^loc_mock_WarnNoContainerdStore/,
      '--tag app:latest --load',
    ],
    [
      'buildx 0.35: the local export drops stale blobs itself',
      { driver: 'docker' },
      preflightAnswers('0.35.0'),
      undefined,
      `--tag app:latest --cache-to type=local,dest=EXPORT,mode=max,compression=gzip,reset=true --load`,
    ],
    [
      'buildx older than the task needs: an error naming buildxVersion',
      { driver: 'docker' },
      preflightAnswers('0.9.1'),
      undefined,
      /^loc_mock_PreflightBuildxTooOld 0\.9\.1 0\.10\.0 0\.10\.0/,
    ],
    [
      'no buildx plugin: an error naming buildxVersion',
      { driver: 'docker' },
      { ...preflightAnswers(''), [`${DOCKER} buildx version`]: { code: 1, stderr: "docker: 'buildx' is not a docker command." } },
      undefined,
      /^loc_mock_PreflightNoBuildx docker: 'buildx' is not a docker command\./,
    ],
  ];
  for (const [name, inputs, answers, warning, expected] of gateCases) {
    it(`gates: ${name}`, async () => {
      const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
      const build = typeof expected === 'string' ? buildLine('default', expected.replace('EXPORT', exportDir)) : 'none';
      const run = await runScenario(
        main({ imageName: 'app', cacheDir, ...inputs }, { ...answers, [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
      );
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
});
