import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { transcript } from '../../scripts/agent';
import { HostBuildkitd, hostedHome, type HostedEngine } from '../../scripts/hosted-engine';
import { cleanup } from '../helpers';
import {
  assertBuilderLeftToMachine,
  assertNoBuilderLeft,
  buildCommand,
  DEPS_STEP,
  driverLine,
  HOSTED_FILES,
  HostedAgents,
  hostedEngineOrSkip,
  killedJob,
} from './hosted';
import { blobsOnDisk, reachableBlobs, stepCached, type Workspace, type WorkspaceJob } from './workspace';

/**
 * The builder's life on the hosted-agent engine, with the current buildx: whatever happens to a
 * job (a failed build, a main step killed in the middle of its build), the post-job step removes
 * the builder it made, container and volume; two jobs at once on one engine keep to their own
 * builders; and a remote builder against a buildkitd on the host, the same binary as in the image.
 */
describe('end to end, hosted-agent engine: builders after failures, kills, concurrent jobs, and a remote builder', function () {
  this.timeout(15 * 60 * 1000);
  let engine: HostedEngine;
  let agents: HostedAgents;
  // The cache folder's restore and export are what these jobs check (cacheTransport auto would be direct here: direct.test.ts).
  const inputs = { cacheBackend: 'local', cacheTransport: 'folder', output: 'docker' };

  before(function () {
    engine = hostedEngineOrSkip(this);
    agents = new HostedAgents(engine);
  });
  after(() => HostedAgents.disposeAll());
  afterEach(cleanup);

  it('a failed build: the step fails with buildx error, the cache is left as it was, and the builder is left to the machine', async () => {
    const w = agents.workspace('current');
    const cold = await w.job('before the failure', inputs);
    assert.equal(cold.main.result, 'Succeeded', transcript(cold.main));
    const manifests = (): unknown =>
      (JSON.parse(fs.readFileSync(path.join(w.cacheDir, 'index.json'), 'utf8')) as { manifests: unknown }).manifests;
    const before = manifests();
    const entries = (): number =>
      fs.readdirSync(path.join(w.storeDir, 'v1', 'entries'), { recursive: true }).filter((f) => String(f).endsWith('.json')).length;

    w.write('Dockerfile', `${HOSTED_FILES.Dockerfile}RUN echo broken && exit 3\n`);
    const r = await w.job('failed build', inputs);
    assert.equal(r.main.result, 'Failed');
    assert.match(r.main.errors[0] ?? '', /docker buildx build failed with exit code 1: .*exit code: 3/);
    assert.equal(r.post.result, 'Succeeded', 'cleanup never fails the job');
    assertBuilderLeftToMachine(w, r);
    // The cache folder holds the restored cache, and the failed job saved nothing.
    assert.deepEqual(manifests(), before);
    assert.equal(entries(), 1);
    assert.deepEqual(blobsOnDisk(w.cacheDir), reachableBlobs(w.cacheDir));
  });

  it('a main step killed in the middle of its build: the post-job step still removes the builder, container and volume', async () => {
    // A self-hosted agent's builder of the job (a Microsoft-hosted one's is left to the machine), which the post step removes.
    const w = agents.workspace(
      'current',
      { ...HOSTED_FILES, Dockerfile: `${HOSTED_FILES.Dockerfile}RUN echo long-step-started && sleep 120\n` },
      {},
      'selfHosted',
    );
    const { main, post } = await killedJob(w, { ...inputs, builderLifetime: 'job' }, /long-step-started/);
    const builder = /--name (buildx-cache-[0-9a-f]{16})/.exec(main)?.[1];
    assert.ok(builder !== undefined, 'the main step had created its builder');
    assert.equal(post.result, 'Succeeded', transcript(post));
    assert.match(
      post.stdout,
      /The job's status is Canceled: with saveCache 'onSuccess' the cache is saved only after a job that succeeded/,
    );
    assert.match(post.stdout, new RegExp(`Removed builder ${builder}\\.`));
    assertNoBuilderLeft(w, builder);
  });

  it('two jobs at once on one engine, saving to one store: each its own builder, both left to the machine, both images built', async () => {
    const a = agents.workspace('current');
    const b = agents.workspace('current', { ...HOSTED_FILES, 'src/main.txt': 'revision b\n' });
    const store = path.join(a.agentWork, 'shared-store');
    const [ra, rb] = await Promise.all([
      a.job('concurrent a', { ...inputs, imageName: 'dbxc-e2e/concurrent-a', localStorePath: store }),
      b.job('concurrent b', { ...inputs, imageName: 'dbxc-e2e/concurrent-b', localStorePath: store }),
    ]);
    for (const [w, r] of [
      [a, ra],
      [b, rb],
    ] as [Workspace, WorkspaceJob][]) {
      assert.equal(r.main.result, 'Succeeded', transcript(r.main));
      assert.equal(r.post.result, 'Succeeded', transcript(r.post));
      assert.deepEqual([...r.main.warnings, ...r.post.warnings], []);
      assertBuilderLeftToMachine(w, r);
    }
    assert.notEqual(ra.main.outputs.builderName, rb.main.outputs.builderName);
    assert.equal(a.docker(['run', '--rm', 'dbxc-e2e/concurrent-a:e2e', 'cat', '/app/out.txt']).trim(), 'revision 0');
    assert.equal(a.docker(['run', '--rm', 'dbxc-e2e/concurrent-b:e2e', 'cat', '/app/out.txt']).trim(), 'revision b');
    assert.equal(
      fs.readdirSync(path.join(store, 'v1', 'entries'), { recursive: true }).filter((f) => String(f).endsWith('.json')).length,
      2,
      'both saved an entry',
    );
    a.docker(['image', 'rm', 'dbxc-e2e/concurrent-a:e2e', 'dbxc-e2e/concurrent-b:e2e']);
  });

  describe('a remote builder', () => {
    let buildkitd: HostBuildkitd;
    before(async () => {
      buildkitd = new HostBuildkitd(engine.buildkitd, path.join(hostedHome(), 'buildkitd-e2e'), agents.buildkitdConfig);
      await buildkitd.start();
    });
    after(() => buildkitd.stop());

    it('builds on a host buildkitd, loads the image into the engine, and a job whose buildkitd lost its state restores the cache', async () => {
      const w = agents.workspace('current', HOSTED_FILES, {
        driver: 'remote',
        endpoint: buildkitd.address,
        driverOptions: '',
        buildkitdConfig: '',
      });
      const cold = await w.job('remote: cold', inputs);
      assert.equal(cold.main.result, 'Succeeded', transcript(cold.main));
      assert.equal(driverLine(cold.main), 'remote, as the driver input says');
      assert.match(
        cold.main.stdout,
        new RegExp(
          `buildx create --bootstrap --name buildx-cache-[0-9a-f]{16} --driver remote ${buildkitd.address.replace(/[/.]/g, '\\$&')}`,
        ),
      );
      assert.match(buildCommand(cold.main), /--cache-to type=local,.*reset=true/);
      assertNoBuilderLeft(w, cold.main.outputs.builderName);

      // Another job on a buildkitd that lost its state: only the restored cache can make it fast.
      w.docker(['buildx', 'create', '--name', 'dbxc-e2e-remote-pruner', '--driver', 'remote', buildkitd.address]);
      try {
        w.docker(['buildx', 'prune', '-af', '--builder', 'dbxc-e2e-remote-pruner']);
      } finally {
        w.docker(['buildx', 'rm', 'dbxc-e2e-remote-pruner']);
      }
      w.write('src/main.txt', 'revision 1\n');
      const warm = await w.job('remote: after its state is gone', inputs);
      assert.equal(warm.main.result, 'Succeeded', transcript(warm.main));
      assert.equal(warm.main.outputs.cacheHit, 'true');
      assert.ok(stepCached(warm.main.stdout, DEPS_STEP));
      assert.equal(w.docker(['run', '--rm', 'dbxc-e2e/app:e2e', 'cat', '/app/out.txt']).trim(), 'revision 1');
      assertNoBuilderLeft(w, warm.main.outputs.builderName);
    });
  });
});
