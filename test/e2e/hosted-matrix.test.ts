import * as assert from 'assert/strict';
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { type JobResult, transcript } from '../../scripts/agent';
import { connectionString, ensureAzurite, freshContainer, type Azurite } from '../../scripts/azurite';
import type { HostedEngine } from '../../scripts/hosted-engine';
import { ensureRegistry, type Registry } from '../../scripts/registry';
import { cleanup } from '../helpers';
import {
  assertBuilderLeftToMachine,
  assertNoBuilderLeft,
  buildCommand,
  buildxVersionOf,
  DEPS_STEP,
  driverLine,
  HostedAgents,
  hostedEngineOrSkip,
  summaryOf,
  type BuildxSide,
} from './hosted';
import { blobsOnDisk, reachableBlobs, stepCached, type Workspace } from './workspace';

/**
 * The task's default path as users run it on a Microsoft-hosted agent: an engine with the classic
 * image store, driver auto (which becomes docker-container), BuildKit pulled from "Docker Hub" (the
 * loopback mirror), FROM busybox, the bundled task run as the agent runs it. Every cacheBackend and
 * every output, each once, paired so that the interactions that matter meet: the image load
 * (docker), the local exports with and without buildx's reset=true (local and azureBlob on the
 * current buildx, directory on Debian's 0.13.1), BuildKit's own registry cache with a push through a
 * login, and no cache at all.
 *
 *   cacheBackend  output     buildx   jobs
 *   local         docker     current  cold, warm, source change (reset=true prunes; cacheTransport folder)
 *   local         cacheOnly  current  cold, source change (cacheTransport auto: direct)
 *   directory     cacheOnly  0.13.1   cold, source change (the task prunes; no reset=true)
 *   azureBlob     tar        current  cold, warm on a new agent
 *   registry      registry   current  cold, warm on a new agent (login, push, registry cache)
 *   none          oci        0.13.1   one job
 * and the docker driver on this engine: a warning, and a build without a cache export.
 */
describe('end to end, hosted-agent engine: every cacheBackend and output on the default driver', function () {
  this.timeout(15 * 60 * 1000);
  let engine: HostedEngine;
  let agents: HostedAgents;
  let registry: Registry;
  let azurite: Azurite;
  const timings: Workspace['timings'] = [];
  const workspaces: Workspace[] = [];

  before(function () {
    engine = hostedEngineOrSkip(this);
    registry = ensureRegistry();
    azurite = ensureAzurite();
    agents = new HostedAgents(engine, [registry.host]);
  });
  after(() => {
    HostedAgents.disposeAll();
    if (timings.length === 0) return;
    console.log('\n    job timings (main step wall time; buildx build phase):');
    for (const t of timings) console.log(`      ${t.job.padEnd(40)} ${(t.totalMs / 1000).toFixed(1)}s  build ${t.build}`);
  });
  afterEach(() => {
    for (const w of workspaces.splice(0)) timings.push(...w.timings);
    cleanup();
  });

  function workspace(side: BuildxSide): Workspace {
    const w = agents.workspace(side);
    workspaces.push(w);
    return w;
  }

  /** A job that must succeed and leave its builder only to the machine, on the driver that auto chose for the builder inputs. */
  async function job(w: Workspace, name: string, inputs: Record<string, string>, env: NodeJS.ProcessEnv = {}): Promise<JobResult> {
    const r = await w.job(name, inputs, {}, env);
    assert.equal(r.main.result, 'Succeeded', transcript(r.main));
    assert.equal(r.post.result, 'Succeeded', transcript(r.post));
    assert.deepEqual([...r.main.warnings, ...r.post.warnings], []);
    assert.equal(driverLine(r.main), 'docker-container (auto), because driverOptions, buildkitdConfig only apply to a builder of its own');
    assert.match(r.main.outputs.builderName ?? '', /^buildx-cache-[0-9a-f]{16}$/);
    assertBuilderLeftToMachine(w, r);
    return r;
  }

  const cacheTo = (r: JobResult): string => / --cache-to (\S+)/.exec(buildCommand(r.main))?.[1] ?? '';
  const prunedByTask = (r: JobResult): string => / ([\d.]+ [KMG]?B) of unreachable blobs pruned/.exec(r.main.stdout)?.[1] ?? '';

  it('local, docker, current buildx: BuildKit comes through the mirror, the image is loaded, the store restores, and reset=true prunes the export', async () => {
    const w = workspace('current');
    assert.equal(buildxVersionOf(w), engine.buildxVersion);
    // As on a fresh hosted agent, the engine has no BuildKit image: the first builder pulls it.
    const mirrored = w.docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}']).includes(engine.mirror);
    if (mirrored && w.docker(['ps', '-aq', '--filter', 'ancestor=moby/buildkit:buildx-stable-1']).trim() === '') {
      spawnSync('docker', ['image', 'rm', 'moby/buildkit:buildx-stable-1'], { env: { ...process.env, ...w.agent.env } });
    }
    // The folder's local export (reset=true) is this row's subject; auto's direct has the next one.
    const inputs = { cacheBackend: 'local', cacheTransport: 'folder', output: 'docker' };
    const cold = await job(w, 'local/docker: cold', inputs);
    assert.equal(cold.main.outputs.cacheHit, 'false');
    if (mirrored) {
      assert.match(cold.main.stdout, /pulling image moby\/buildkit:buildx-stable-1/);
      const digest = (
        await fetch(`http://${engine.mirror}/v2/moby/buildkit/manifests/buildx-stable-1`, {
          method: 'HEAD',
          headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
        })
      ).headers.get('docker-content-digest');
      assert.ok(
        w
          .docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', 'moby/buildkit:buildx-stable-1'])
          .includes(`moby/buildkit@${digest ?? '-'}`),
        'the engine has the BuildKit image that the mirror serves',
      );
    }
    assert.match(cacheTo(cold), /^type=local,dest=.*,mode=max,compression=gzip,reset=true$/);
    assert.equal(w.docker(['run', '--rm', 'dbxc-e2e/app:e2e', 'cat', '/app/out.txt']).trim(), 'revision 0');
    assert.deepEqual(blobsOnDisk(w.cacheDir), reachableBlobs(w.cacheDir));
    assert.match(
      summaryOf(cold),
      /\| Builder driver \| docker-container \(auto\), because driverOptions, buildkitdConfig only apply to a builder of its own \|/,
    );

    const warm = await job(w, 'local/docker: warm', inputs);
    assert.equal(warm.main.outputs.cacheHit, 'true');
    assert.ok(stepCached(warm.main.stdout, DEPS_STEP), 'a new builder imports the restored cache');
    assert.ok(stepCached(warm.main.stdout, '[6/6] RUN cat'));

    w.write('src/main.txt', 'revision 1\n');
    const change = await job(w, 'local/docker: source change', inputs);
    assert.ok(stepCached(change.main.stdout, DEPS_STEP));
    assert.ok(!stepCached(change.main.stdout, '[6/6] RUN cat'));
    // The export started with the old cache's blobs; buildx 0.35+ dropped the stale ones itself.
    assert.equal(prunedByTask(change), '0 B', change.main.stdout);
    assert.deepEqual(blobsOnDisk(w.cacheDir), reachableBlobs(w.cacheDir));
    assert.equal(w.docker(['run', '--rm', 'dbxc-e2e/app:e2e', 'cat', '/app/out.txt']).trim(), 'revision 1');
  });

  it("local, cacheOnly, current buildx, cacheTransport auto: the job's own builder on a hosted agent reads and writes the store directly", async () => {
    const w = workspace('current');
    const inputs = { cacheBackend: 'local', output: 'cacheOnly', imageName: '', tags: '' };
    const cold = await job(w, 'local/auto: cold', inputs);
    assert.equal(cold.main.outputs.cacheHit, 'false');
    const auto =
      /^Cache transport: direct, through a registry on 127\.0\.0\.1:\d+ \(cacheTransport auto picks direct for cacheBackend local: the task creates a docker-container builder for this job and gives it network=host/m;
    assert.match(cold.main.stdout, auto);
    assert.match(cacheTo(cold), /^type=registry,ref=127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}:save/);
    assert.ok(!fs.existsSync(w.cacheDir), 'the cache folder is not used');
    assert.match(summaryOf(cold), /\| Cache transport \| direct \(cacheTransport auto picks direct for cacheBackend local/);

    w.write('src/main.txt', 'revision 1\n');
    const change = await job(w, 'local/auto: source change', inputs);
    assert.equal(change.main.outputs.cacheHit, 'true');
    assert.match(change.main.stdout, auto);
    // A hit that the next step builds on shows its layers being pulled (DONE, not CACHED): the step does not run.
    const ran = /^#\d+ [\d.]+ installing /m;
    assert.match(cold.main.stdout, ran, 'the cold job runs the dependency step');
    assert.doesNotMatch(change.main.stdout, ran, `a new builder imports the dependency step through the facade:\n${change.main.stdout}`);
    assert.match(change.main.stdout, /^Build: [\d.]+s, [3-9] of \d+ steps cached$/m);
    assert.ok(!stepCached(change.main.stdout, '[6/6] RUN cat'));
  });

  it('directory, cacheOnly, Debian buildx 0.13.1: no reset=true, the task prunes the export itself, and no image', async () => {
    const w = workspace('debian');
    assert.equal(buildxVersionOf(w), '0.13.1');
    const inputs = { cacheBackend: 'directory', output: 'cacheOnly', imageName: '', tags: '' };
    const cold = await job(w, 'directory/cacheOnly: cold', inputs);
    assert.match(buildCommand(cold.main), / --output type=cacheonly /);
    assert.match(cacheTo(cold), /^type=local,dest=.*,mode=max,compression=gzip$/);
    assert.deepEqual(blobsOnDisk(w.cacheDir), reachableBlobs(w.cacheDir));

    w.write('src/main.txt', 'revision 1\n');
    const change = await job(w, 'directory/cacheOnly: source change', inputs);
    assert.equal(change.main.outputs.cacheHit, 'true');
    assert.ok(stepCached(change.main.stdout, DEPS_STEP));
    assert.doesNotMatch(cacheTo(change), /reset=true/);
    assert.notEqual(prunedByTask(change), '0 B', 'the stale application layer was pruned by the task');
    assert.notEqual(prunedByTask(change), '');
    assert.deepEqual(blobsOnDisk(w.cacheDir), reachableBlobs(w.cacheDir));
  });

  it('azureBlob on Azurite, tar, current buildx: a new agent restores from the container', async () => {
    const w = workspace('current');
    const container = freshContainer(azurite.blobUrl, 'e2e-hosted');
    const inputs = {
      cacheBackend: 'azureBlob',
      // The folder's local export (reset=true) is this row's subject; direct.test.ts covers the facade.
      cacheTransport: 'folder',
      storageConnectionString: connectionString(azurite.blobUrl),
      storageContainer: container.containerName,
      output: 'tar',
      outputPath: 'out/image.tar',
    };
    const cold = await job(w, 'azureBlob/tar: cold', inputs);
    assert.match(cacheTo(cold), /reset=true$/);
    const files = spawnSync('tar', ['-tf', path.join(w.ws, 'out', 'image.tar')], { encoding: 'utf8' }).stdout.split('\n');
    assert.ok(files.includes('app/out.txt'), 'the tar output holds the image file system');

    fs.rmSync(w.cacheDir, { recursive: true, force: true });
    const warm = await job(w, 'azureBlob/tar: new agent', inputs);
    assert.equal(warm.main.outputs.cacheHit, 'true');
    assert.ok(stepCached(warm.main.stdout, DEPS_STEP));
    await container.deleteIfExists();
  });

  it('registry, registry, current buildx: logs in, pushes, and a new agent imports the registry cache', async () => {
    const w = workspace('current');
    const repo = `${registry.host}/dbxc-e2e/hosted-${crypto.randomBytes(4).toString('hex')}`;
    const connection: NodeJS.ProcessEnv = {
      ENDPOINT_URL_REG: `http://${registry.host}`,
      ENDPOINT_AUTH_SCHEME_REG: 'UsernamePassword',
      ENDPOINT_AUTH_PARAMETER_REG_REGISTRY: registry.host,
      ENDPOINT_AUTH_PARAMETER_REG_USERNAME: registry.user,
      ENDPOINT_AUTH_PARAMETER_REG_PASSWORD: registry.password,
      ENDPOINT_DATA_REG_REGISTRYTYPE: 'Others',
    };
    const inputs = {
      imageName: repo,
      tags: 'v1',
      output: 'registry',
      containerRegistry: 'REG',
      cacheBackend: 'registry',
      registryCacheRef: `${repo}/cache`,
    };
    const cold = await job(w, 'registry/registry: cold', inputs, connection);
    assert.equal(cold.main.outputs.cacheHit, 'false');
    // On refs/heads/main the cache is at the tag buildcache-main (the tag, then the branch).
    assert.match(cacheTo(cold), /^type=registry,ref=.*\/cache:buildcache-main,mode=max/);
    assert.doesNotMatch(cacheTo(cold), /reset=true/);
    assert.match(cold.main.outputs.digest ?? '', /^sha256:[0-9a-f]{64}$/);
    // The job used the current buildx through the job-private docker config that the login made.
    assert.match(cold.main.stdout, new RegExp(`buildx ${engine.buildxVersion.replace(/\./g, '\\.')}, from`));

    const warm = await job(w, 'registry/registry: new agent', inputs, connection);
    assert.equal(warm.main.outputs.cacheHit, 'true');
    assert.ok(stepCached(warm.main.stdout, DEPS_STEP));
  });

  it('none, oci, Debian buildx 0.13.1: no cache flags, an OCI tarball', async () => {
    const w = workspace('debian');
    const r = await job(w, 'none/oci', { cacheBackend: 'none', output: 'oci', outputPath: 'out/image.oci.tar' });
    assert.doesNotMatch(buildCommand(r.main), /--cache-(from|to)/);
    const files = spawnSync('tar', ['-tf', path.join(w.ws, 'out', 'image.oci.tar')], { encoding: 'utf8' }).stdout.split('\n');
    assert.ok(files.includes('index.json') && files.includes('oci-layout'), files.join(' '));
    assert.ok(!fs.existsSync(w.cacheDir));
  });

  it('the docker driver on the classic store, even with buildx 0.35+: a warning, and the image is built without a cache export', async () => {
    const w = workspace('current');
    const r = await w.job('docker driver, classic store', {
      driver: 'docker',
      driverOptions: '',
      buildkitdConfig: '',
      cacheBackend: 'local',
      output: 'docker',
    });
    assert.equal(r.main.result, 'Succeeded', transcript(r.main));
    assert.equal(r.post.result, 'Succeeded', transcript(r.post));
    assert.equal(r.main.warnings.length, 1, r.main.warnings.join('\n'));
    assert.match(r.main.warnings[0] ?? '', /can export cache only with the containerd image store.*building without exporting the cache/);
    assert.equal(driverLine(r.main), 'docker, as the driver input says');
    assert.match(r.main.stdout, /engine image store: classic/);
    assert.doesNotMatch(buildCommand(r.main), /--cache-to/);
    assert.equal(r.main.outputs.builderName, 'default');
    assert.equal(w.docker(['run', '--rm', 'dbxc-e2e/app:e2e', 'cat', '/app/out.txt']).trim(), 'revision 0');
    assertNoBuilderLeft(w, undefined);
  });
});
