import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { cleanup, linesShowing, tempDir } from '../helpers';
import { resolveKey } from '../../tasks/DockerBuildxCacheV1/src/key/resolve';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { blobFiles, cacheFolder, cacheLayout, writeLayout } from '../oci-fixture';
import { TokenServer } from '../token-server';
import { TokenProcess } from './token-process';
import { connectionString, EMULATOR_KEY, ensureAzurite, freshContainer, type Azurite } from '../../scripts/azurite';
import { AzureBlobStore } from '../../tasks/DockerBuildxCacheV1/src/store/blob';
import { ContainerSASPermissions } from '@azure/storage-blob';
import { runScenario, type MockRun } from './harness';
import { defaultBuilderName } from '../../tasks/DockerBuildxCacheV1/src/docker/builder';
import { agentBuilderName } from '../../tasks/DockerBuildxCacheV1/src/docker/lifetime';
import { DOCKER } from './types';
import {
  agentTemp,
  agentWork,
  assertWarnings,
  BUILDER,
  buildLine,
  cacheDir,
  endpoint,
  freshJob,
  ID,
  JOB,
  main,
  missing,
  MOCK_BUILD_WARNINGS,
  ok,
  PREFLIGHT,
  preflightAnswers,
  seedStore,
  variables,
  ws,
} from './job';

describe('mock-run: the main step: the cache backends', function () {
  this.timeout(30000);
  beforeEach(freshJob);
  afterEach(cleanup);

  describe('cacheTransport direct with a builder that cannot reach this machine loopback: the folder, and the log says why', () => {
    // the builder inputs and the commands that make the builder → the reason in the log
    const cases: [string, Record<string, string>, Record<string, { code: number; stdout?: string }>, string, RegExp][] = [
      [
        'a docker-container builder the task creates gets network=host, but buildx does not keep it so here',
        { driver: 'docker-container' },
        {
          [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver docker-container --driver-opt network=host`]: ok,
        },
        BUILDER,
        /loc_mock_TransportFolder loc_mock_TransportWhyNoHostNetwork buildx-cache-/,
      ],
      [
        'a remote builder elsewhere',
        { driver: 'remote', endpoint: 'tcp://buildkitd:1234', builderName: 'bk' },
        {
          [`${DOCKER} buildx inspect --bootstrap bk`]: missing,
          [`${DOCKER} buildx create --bootstrap --name bk --driver remote tcp://buildkitd:1234`]: ok,
        },
        'bk',
        /loc_mock_TransportFolder loc_mock_TransportWhyRemoteAddress tcp:\/\/buildkitd:1234/,
      ],
    ];
    for (const [title, inputs, builder, name, reason] of cases) {
      it(title, async () => {
        const storePath = path.join(agentWork, 'store');
        const { key } = await seedStore(new LocalStore(storePath));
        const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
        const build = buildLine(
          name,
          `--tag app:latest --cache-from type=local,src=${cacheDir} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`,
        );
        const run = await runScenario(
          main(
            { imageName: 'app', cacheTransport: 'direct', cacheKey: 'buildx | deps.lock', localStorePath: storePath, cacheDir, ...inputs },
            { ...builder, [build]: ok },
          ),
        );
        assert.ok(run.succeeded, run.stdout);
        assert.match(run.stdout, reason);
        assert.equal(run.commands.at(-1), build);
        assert.equal(run.outputs.cacheHit, 'true');
        assert.equal(run.outputs.cacheRestoredKey, key.text);
        assertWarnings(run, MOCK_BUILD_WARNINGS);
      });
    }
  });

  describe("cacheTransport auto: direct for a docker-container builder of the task's own, else the folder, and the log says why", () => {
    const selfHosted = (): Record<string, string> => {
      const v: Record<string, string> = { ...variables(), 'Agent.Name': 'build-vm-1', 'Agent.Id': '7' };
      delete v['Agent.CloudId'];
      return v;
    };
    const KEPT = agentBuilderName({ id: '7', name: 'build-vm-1' }, { driver: 'docker-container', driverOptions: [], hostNetwork: true });
    const SELF_JOB = defaultBuilderName(JOB, 'build-vm-1');
    const create = (name: string, opts = ''): string =>
      `${DOCKER} buildx create --bootstrap --name ${name} --driver docker-container${opts}`;
    const found = (name: string, opts = ''): string[] => [`${DOCKER} buildx inspect --bootstrap ${name}`, create(name, opts)];
    const HOST = ' --driver-opt network=host';
    const classic = preflightAnswers('0.19.2', 'Backing Filesystem');
    // the agent, the inputs, more answers → the builder commands after the preflight, the builder, what the log says of the transport
    type Answer = { code: number; stdout?: string; stderr?: string };
    const cases: [string, () => Record<string, string>, Record<string, string>, Record<string, Answer>, string[], string, RegExp][] = [
      [
        "a hosted agent, the docker-container builder the task creates for the job: it gets network=host (this mock buildx keeps no instance, so the builder's check falls back)",
        variables,
        { driver: 'docker-container' },
        {},
        [create(BUILDER, HOST)],
        BUILDER,
        /^loc_mock_TransportFolder loc_mock_TransportWhyNoHostNetwork buildx-cache-/m,
      ],
      [
        'a hosted agent, driver auto on the classic image store: the same, decided after the preflight',
        variables,
        {},
        classic,
        [create(BUILDER, HOST)],
        BUILDER,
        /^loc_mock_TransportFolder loc_mock_TransportWhyNoHostNetwork buildx-cache-/m,
      ],
      [
        "a hosted agent, driver auto on the containerd image store: the engine's builder, the folder",
        variables,
        {},
        { [`${DOCKER} buildx inspect default`]: ok },
        [],
        'default',
        /^loc_mock_TransportFolder loc_mock_TransportWhyAutoDriver docker$/m,
      ],
      [
        "a self-hosted agent, driver auto on the containerd image store: the engine's builder, the folder, said for the driver",
        selfHosted,
        {},
        {},
        [],
        'default',
        /^loc_mock_TransportFolder loc_mock_TransportWhyAutoDriver docker$/m,
      ],
      [
        'a self-hosted agent: the builder it keeps gets network=host too (a name of its own), and the same fallback',
        selfHosted,
        { driver: 'docker-container' },
        { [`${DOCKER} buildx inspect --bootstrap ${KEPT}`]: missing },
        found(KEPT, HOST),
        KEPT,
        /^loc_mock_TransportFolder loc_mock_TransportWhyNoHostNetwork buildx-cache-agent-/m,
      ],
      [
        'a self-hosted agent with builderLifetime job: network=host, and the same fallback',
        selfHosted,
        { driver: 'docker-container', builderLifetime: 'job' },
        {},
        [create(SELF_JOB, HOST)],
        SELF_JOB,
        /^loc_mock_TransportFolder loc_mock_TransportWhyNoHostNetwork buildx-cache-/m,
      ],
      [
        'a hosted agent with builderName: the folder',
        variables,
        { driver: 'docker-container', builderName: 'ci' },
        { [`${DOCKER} buildx inspect --bootstrap ci`]: missing },
        found('ci'),
        'ci',
        /^loc_mock_TransportFolder loc_mock_TransportWhyAutoNamedBuilder ci$/m,
      ],
      [
        'a hosted agent with a network in driverOptions: the folder',
        variables,
        { driver: 'docker-container', driverOptions: 'network=build-net' },
        {},
        [create(BUILDER, ' --driver-opt network=build-net')],
        BUILDER,
        /^loc_mock_TransportFolder loc_mock_TransportWhyAutoNetwork network=build-net$/m,
      ],
    ];
    for (const [title, vars, inputs, answers, commands, name, said] of cases) {
      it(title, async () => {
        const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
        const build = buildLine(name, `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
        const exec = Object.fromEntries([...commands.map((c) => [c, ok] as const), [build, ok] as const]);
        const run = await runScenario({
          ...main({ imageName: 'app', cacheDir, ...inputs }, { ...exec, ...answers }),
          variables: vars(),
        });
        assert.ok(run.succeeded, run.stdout);
        assert.deepEqual(run.commands, [...PREFLIGHT, ...commands, build]);
        assert.match(run.stdout, said);
        assertWarnings(run, MOCK_BUILD_WARNINGS);
      });
    }
  });

  /** The inputs of a local store's job that asks for the direct transport on the engine's builder. */
  const directOnEngine = (storePath: string): Record<string, string> => ({
    imageName: 'app',
    driver: 'docker',
    cacheTransport: 'direct',
    cacheKey: 'buildx | deps.lock',
    localStorePath: storePath,
    cacheDir,
  });

  it("cacheTransport direct with the agent's docker config naming a credential store: the folder, and the log says why", async () => {
    const storePath = path.join(agentWork, 'store');
    const { key } = await seedStore(new LocalStore(storePath));
    const agentConfig = tempDir();
    fs.writeFileSync(path.join(agentConfig, 'config.json'), JSON.stringify({ credsStore: 'desktop' }));
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(
      'default',
      `--tag app:latest --cache-from type=local,src=${cacheDir} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`,
    );
    const run = await runScenario({
      ...main(directOnEngine(storePath), { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
      env: { DOCKER_CONFIG: agentConfig },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.match(run.stdout, /loc_mock_TransportFolder loc_mock_TransportWhyCredsStore desktop/);
    assert.equal(run.commands.at(-1), build);
    assert.deepEqual([run.outputs.cacheHit, run.outputs.cacheRestoredKey], ['true', key.text]);
    assertWarnings(run, MOCK_BUILD_WARNINGS);
  });

  it('cacheTransport direct with a store that cannot be read: no cache, and the log and the summary say so', async () => {
    // The store's folder is a file: listing it fails, which is cache trouble.
    const storePath = path.join(agentWork, 'store');
    fs.writeFileSync(storePath, 'not a folder');
    const build = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(main(directOnEngine(storePath), { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }));
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.match(run.stdout, /loc_mock_TransportNone loc_mock_TransportWhyNoCache/);
    assert.doesNotMatch(run.stdout, /loc_mock_TransportFolder|loc_mock_TransportDirect/);
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as { summary?: { transport?: string } };
    assert.equal(state.summary?.transport, 'none (loc_mock_TransportWhyNoCache)');
    assert.equal(run.outputs.cacheHit, 'false');
    assertWarnings(run, [/^loc_mock_WarnRestoreFailed /, /^loc_mock_WarnMetadataUnreadable /]);
  });

  it('local store: restores the exact key, sets cacheHit, cacheKey, cacheRestoredKey and the hit variable, and imports the restored folder', async () => {
    const storePath = path.join(agentWork, 'store');
    const { key, blobs: cached } = await seedStore(new LocalStore(storePath));

    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(
      'default',
      `--tag app:latest --cache-from type=local,src=${cacheDir} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`,
    );
    const run = await runScenario(
      main(
        {
          imageName: 'app',
          driver: 'docker',
          cacheKey: 'buildx | deps.lock',
          localStorePath: storePath,
          cacheDir,
          cacheHitVar: 'BUILDX_HIT',
        },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
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
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheKey: 'buildx\n$(Agent.OS)\ndeps.lock', cacheDir },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
    );
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
    const digestError =
      'ERROR: failed to solve: error writing layer blob: failed commit on ref "layer-sha256:aa": commit failed: unexpected commit digest sha256:bb, expected sha256:aa: failed precondition';
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheKey: 'buildx | deps.lock', localStorePath: storePath, cacheDir },
        {
          [`${DOCKER} buildx inspect default`]: ok,
          [withImport]: { code: 1, stderr: `#9 exporting cache to client directory\n#9 ERROR: unexpected commit digest\n${digestError}` },
          [withoutImport]: ok,
        },
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
      variables: {
        ...variables(),
        'Build.SourceBranch': 'refs/pull/7/merge',
        'System.PullRequest.TargetBranch': 'refs/heads/main',
        'System.PullRequest.IsFork': 'True',
      },
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
      ...main(
        { imageName: 'app', driver: 'docker', cacheBackend: 'directory', cacheDir },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
      variables: { ...variables(), 'Build.SourceBranch': 'refs/pull/7/merge', 'System.PullRequest.IsFork': 'true' },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.match(run.stdout, /loc_mock_ReadOnlyFork/);
    // No export folder: only the stamps of the blobs the check read, beside the folder.
    assert.deepEqual(fs.readdirSync(path.dirname(cacheDir)).sort(), ['.buildx-cache', '.buildx-cache.verified.json'], 'no export folder');
  });

  it('local store: a build secret used in the key is redacted in the output and in what is saved', async () => {
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(
      'default',
      `--tag app:latest --secret id=tok,src=${secretFile} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`,
    );
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir, cacheKey: 'k | "tok-hunter2"', secrets: 'tok=hunter2' },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.outputs.cacheKey, 'k|"tok-***"');
    const state = JSON.parse(run.taskVariables['DockerBuildxCache.State'] ?? '{}') as {
      save?: { segments: string[] };
      summary?: { key: string };
    };
    assert.deepEqual(state.save?.segments, ['k', '"tok-***"']);
    assert.equal(state.summary?.key, 'k|"tok-***"');
  });

  it('saveCache never: the cache is read-only, so nothing is exported', async () => {
    const build = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(
      main({ imageName: 'app', driver: 'docker', cacheDir, saveCache: 'never' }, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assertWarnings(run, [/^loc_mock_WarnMetadataUnreadable /]);
  });

  describe('cacheBackend registry: falls back as the stores do, writes only its own branch', () => {
    const repo = 'registry.example/app/cache';
    const tag = (t: string): string => `${repo}:${t}`;
    const from = (t: string): string => `--cache-from type=registry,ref=${tag(t)}`;
    const to = (t: string, mode = 'max', compression = 'gzip'): string =>
      `--cache-to type=registry,ref=${tag(t)},mode=${mode},compression=${compression},image-manifest=true,oci-mediatypes=true`;
    const found = { code: 0 };
    const notFound = (t: string): { code: number; stderr: string } => ({ code: 1, stderr: `ERROR: ${tag(t)}: not found` });
    const feature = { 'Build.SourceBranch': 'refs/heads/feature/login' };
    const pr = { 'Build.SourceBranch': 'refs/pull/7/merge', 'System.PullRequest.TargetBranch': 'refs/heads/develop' };
    type Case = [
      string,
      Record<string, string>,
      Record<string, string>,
      Record<string, { code: number; stderr?: string }>,
      string,
      string,
      string?,
    ];
    const cases: Case[] = [
      [
        'its own cache exists: imported and written',
        {},
        {},
        { 'buildcache-main': found, 'buildcache-master': notFound('buildcache-master') },
        'true',
        `${from('buildcache-main')} ${to('buildcache-main')}`,
        tag('buildcache-main'),
      ],
      [
        'a branch without a cache reads the default branch, and writes its own',
        { cacheMode: 'min', cacheCompression: 'zstd' },
        feature,
        {
          'buildcache-feature-login': notFound('buildcache-feature-login'),
          'buildcache-main': found,
          'buildcache-master': notFound('buildcache-master'),
        },
        'inexact',
        `${from('buildcache-main')} ${to('buildcache-feature-login', 'min', 'zstd')}`,
        tag('buildcache-main'),
      ],
      [
        'a pull request reads its target branch, and writes its merge ref',
        {},
        pr,
        {
          'buildcache-pull-7-merge': notFound('x'),
          'buildcache-develop': found,
          'buildcache-main': found,
          'buildcache-master': notFound('x'),
        },
        'inexact',
        `${from('buildcache-develop')} ${to('buildcache-pull-7-merge')}`,
        tag('buildcache-develop'),
      ],
      [
        'no cache anywhere: only written',
        {},
        feature,
        { 'buildcache-feature-login': notFound('x'), 'buildcache-main': notFound('x'), 'buildcache-master': notFound('x') },
        'false',
        to('buildcache-feature-login'),
      ],
      [
        'read-only: only imported',
        { saveCache: 'never' },
        {},
        { 'buildcache-main': found, 'buildcache-master': found },
        'true',
        from('buildcache-main'),
        tag('buildcache-main'),
      ],
      [
        'writeCache false: only imported',
        { writeCache: 'false' },
        {},
        { 'buildcache-main': found, 'buildcache-master': found },
        'true',
        from('buildcache-main'),
        tag('buildcache-main'),
      ],
      [
        'one scope for all branches: the tag as written',
        { cacheScope: 'shared', registryCacheRef: tag('v1') },
        feature,
        { v1: found },
        'true',
        `${from('v1')} ${to('v1')}`,
        tag('v1'),
      ],
      [
        'DockerBuildxCache.DefaultBranch names the default branch',
        {},
        { ...feature, 'DockerBuildxCache.DefaultBranch': 'trunk' },
        { 'buildcache-feature-login': notFound('x'), 'buildcache-trunk': found },
        'inexact',
        `${from('buildcache-trunk')} ${to('buildcache-feature-login')}`,
        tag('buildcache-trunk'),
      ],
    ];
    for (const [name, inputs, vars, answers, hit, flags, restored] of cases) {
      it(name, async () => {
        const build = buildLine('default', `--tag app:latest ${flags} --load`);
        const lookups = Object.fromEntries(Object.entries(answers).map(([t, a]) => [`${DOCKER} buildx imagetools inspect ${tag(t)}`, a]));
        const r = await runScenario({
          ...main(
            { imageName: 'app', driver: 'docker', cacheBackend: 'registry', registryCacheRef: repo, ...inputs },
            { ...lookups, [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
          ),
          variables: { ...variables(), ...vars },
        });
        assert.ok(r.succeeded, r.stdout);
        assert.equal(r.commands.at(-1), build);
        assert.deepEqual(
          new Set(r.commands.filter((c) => c.includes('imagetools'))),
          new Set(Object.keys(lookups)),
          'every scope is looked up',
        );
        assert.equal(r.outputs.cacheHit, hit);
        assert.equal(r.outputs.cacheRestoredKey, restored);
        assert.deepEqual(
          r.warnings.filter((w) => !/WarnMetadataUnreadable/.test(w)),
          [],
        );
      });
    }

    it('a pull request from a fork reads but never writes the registry cache', async () => {
      const build = buildLine('default', `--tag app:latest ${from('buildcache-develop')} --load`);
      const lookups = Object.fromEntries(
        ['buildcache-pull-7-merge', 'buildcache-develop', 'buildcache-main', 'buildcache-master'].map((t) => [
          `${DOCKER} buildx imagetools inspect ${tag(t)}`,
          t === 'buildcache-develop' ? found : notFound(t),
        ]),
      );
      const r = await runScenario({
        ...main(
          { imageName: 'app', driver: 'docker', cacheBackend: 'registry', registryCacheRef: repo },
          { ...lookups, [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
        ),
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
          {
            [`${DOCKER} buildx imagetools inspect ${tag('buildcache-main')}`]: refused,
            [`${DOCKER} buildx imagetools inspect ${tag('buildcache-master')}`]: refused,
            [`${DOCKER} buildx inspect default`]: ok,
            [build]: ok,
          },
        ),
      );
      assert.ok(r.succeeded, r.stdout);
      assert.equal(r.commands.at(-1), build);
      assertWarnings(r, [
        /^loc_mock_WarnRegistryCacheUnreadable registry\.example\/app\/cache:buildcache-main ERROR: failed to authorize/,
        /^loc_mock_WarnRegistryCacheUnreadable .*buildcache-master/,
        /^loc_mock_WarnMetadataUnreadable /,
      ]);
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
        env: {
          ...arm('WorkloadIdentityFederation', { tenantid: 'tenant-a', serviceprincipalid: 'client' }),
          ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: TokenServer.JOB_TOKEN,
        },
        requests: ['/oidc', '/tenant-a/oauth2/v2.0/token'],
        method: /loc_mock_StoreAuthConnection workload identity federation arm/,
      },
      'a service principal and secret': {
        env: arm('ServicePrincipal', {
          tenantid: 'tenant-b',
          serviceprincipalid: 'client',
          serviceprincipalkey: TokenServer.SP_SECRET,
          authenticationType: 'spnKey',
        }),
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
    async function postSave(
      store: object,
      env: Record<string, string>,
      inputs: Record<string, string> = {},
    ): Promise<{ run: MockRun; blobs: string[] }> {
      const key = await resolveKey('buildx | deps.lock', ws);
      const { dir, layout } = cacheFolder(tempDir(), '.buildx-cache', ['deps layer', 'app layer']);
      const save = {
        store,
        cacheDir: dir,
        segments: key.values,
        scope: 'refs/heads/main',
        retentionDays: 7,
        failOnError: false,
        when: 'onSuccess',
      };
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

    /** The main step restoring `buildx | deps.lock` from the container into the cache folder (cacheTransport folder) and building with it. */
    function mainRestore(inputs: Record<string, string>, env: Record<string, string>, importsCache = true): Promise<MockRun> {
      const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
      const from = importsCache ? `--cache-from type=local,src=${cacheDir} ` : '';
      const build = buildLine(
        'default',
        `--tag app:latest ${from}--cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`,
      );
      return runScenario({
        ...main(
          {
            imageName: 'app',
            driver: 'docker',
            cacheBackend: 'azureBlob',
            cacheTransport: 'folder',
            cacheKey: 'buildx | deps.lock',
            cacheDir,
            ...inputs,
          },
          { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
        ),
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
        const run = await mainRestore(
          { azureSubscription: 'arm', storageAccountUrl: azurite.oauthUrl, storageContainer: container },
          r.env,
        );
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
      const env = {
        ...endpoint(
          'arm',
          'ServicePrincipal',
          { tenantid: 't', serviceprincipalid: 'client', serviceprincipalkey: 'wrong-secret' },
          { environmentAuthorityUrl: `${tokens.base}/` },
        ),
      };
      const run = await mainRestore(
        { azureSubscription: 'arm', storageAccountUrl: azurite.oauthUrl, storageContainer: name() },
        env,
        false,
      );
      assert.ok(run.succeeded, run.stdout);
      assert.equal(run.outputs.cacheHit, 'false');
      assert.match(
        run.warnings[0] ?? '',
        /^loc_mock_WarnRestoreFailed loc_mock_StoreAzureDescription \S+ the Entra ID token for the service principal: \S+ answered 400/,
      );
      assert.deepEqual(linesShowing(run.stdout, 'wrong-secret'), []);
    });

    it('with failOnCacheError, a token Entra ID will not give fails the step before the build', async () => {
      const env = {
        ...endpoint(
          'arm',
          'ServicePrincipal',
          { tenantid: 't', serviceprincipalid: 'client', serviceprincipalkey: 'wrong-secret' },
          { environmentAuthorityUrl: `${tokens.base}/` },
        ),
      };
      const run = await mainRestore(
        { azureSubscription: 'arm', storageAccountUrl: azurite.oauthUrl, storageContainer: name(), failOnCacheError: 'true' },
        env,
        false,
      );
      assert.ok(run.runner.failed);
      assert.match(run.errors[0] ?? '', /^loc_mock_WarnRestoreFailed /);
      assert.ok(!run.commands.some((c) => c.includes('buildx build')));
    });

    /** The shared-key instance, reached with the secret input in its three forms. */
    const secrets: [string, (c: ReturnType<typeof freshContainer>) => Promise<{ inputs: Record<string, string>; secret: string }>][] = [
      [
        'a connection string',
        () => Promise.resolve({ inputs: { storageConnectionString: connectionString(azurite.blobUrl) }, secret: EMULATOR_KEY }),
      ],
      [
        'a SAS URL of the container',
        async (c) => {
          const url = await c.generateSasUrl({
            permissions: ContainerSASPermissions.parse('racwdl'),
            expiresOn: new Date(Date.now() + 3600_000),
          });
          return { inputs: { storageConnectionString: url }, secret: new URL(url).searchParams.get('sig') ?? '' };
        },
      ],
      [
        'a SAS token with storageAccountUrl',
        async (c) => {
          const url = await c.generateSasUrl({
            permissions: ContainerSASPermissions.parse('racwdl'),
            expiresOn: new Date(Date.now() + 3600_000),
          });
          return {
            inputs: { storageConnectionString: new URL(url).search.slice(1), storageAccountUrl: azurite.blobUrl },
            secret: new URL(url).searchParams.get('sig') ?? '',
          };
        },
      ],
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
      [
        'a connection that does not exist',
        { azureSubscription: 'nope', storageAccountUrl: 'https://a.blob.core.windows.net' },
        {},
        /^Input 'azureSubscription': loc_mock_InputConnectionMissing nope/,
      ],
      [
        'a Docker Registry connection',
        { azureSubscription: 'arm', storageAccountUrl: 'https://a.blob.core.windows.net' },
        endpoint('arm', 'UsernamePassword', { username: 'u', password: 'p' }),
        /^Input 'azureSubscription': loc_mock_InputAzureScheme arm UsernamePassword/,
      ],
      [
        'a certificate service principal',
        { azureSubscription: 'arm', storageAccountUrl: 'https://a.blob.core.windows.net' },
        endpoint('arm', 'ServicePrincipal', {
          tenantid: 't',
          serviceprincipalid: 'c',
          authenticationType: 'spnCertificate',
          servicePrincipalCertificate: 'pem',
        }),
        /^Input 'azureSubscription': loc_mock_InputAzureCertificate arm/,
      ],
      [
        'a federated connection without its tenant',
        { azureSubscription: 'arm', storageAccountUrl: 'https://a.blob.core.windows.net' },
        endpoint('arm', 'WorkloadIdentityFederation', { serviceprincipalid: 'c' }),
        /^Input 'azureSubscription': loc_mock_InputConnectionIncomplete arm tenantid/,
      ],
      [
        'a connection string that is not one',
        { storageConnectionString: 'AccountName=x;Nonsense' },
        {},
        /^Input 'storageConnectionString': loc_mock_InputAzureConnectionString /,
      ],
      [
        'a SAS token without an account URL',
        { storageConnectionString: 'sv=2024-08-04&sig=abc' },
        {},
        /^Input 'storageAccountUrl': loc_mock_InputAzureSasNeedsUrl/,
      ],
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

  it('imports extra cache sources beside the local store, and exports only to the store', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(
      'default',
      `--tag app:latest --cache-from type=registry,ref=registry.example/app:buildcache-main --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`,
    );
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir, cacheFrom: 'type=registry,ref=registry.example/app:buildcache-main' },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
  });
});
