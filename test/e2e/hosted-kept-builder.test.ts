import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import { spawnSync } from 'child_process';
import { type JobResult, transcript } from '../../scripts/agent';
import { cleanup } from '../helpers';
import {
  assertBuilderLeftToMachine,
  assertNoBuilderLeft,
  buildCommand,
  DEPS_STEP,
  HOSTED_FILES,
  hostedAgentsForSuite,
  pulledBytes,
  rowBytes,
  summaryOf,
} from './hosted';
import { IMAGE, stepCached, type Workspace } from './workspace';

/**
 * The builder a self-hosted agent keeps (builderLifetime auto → agent), on the hosted-agent engine
 * with docker-container builders: a second job reuses it and builds from the state the first left;
 * the cache is still imported and exported on it, and the store brings the layers back when its
 * state is gone; two jobs that race to start it share it; a Microsoft-hosted agent keeps today's
 * builder for the job; the input overrides the rule both ways; a builderName is never touched.
 */
describe('end to end, hosted-agent engine: the builder a self-hosted agent keeps across jobs', function () {
  this.timeout(15 * 60 * 1000);
  const suite = hostedAgentsForSuite();
  afterEach(cleanup);

  /** A self-hosted agent of its own: a name no other test run uses. */
  const selfHosted = (): Record<string, string> => ({
    'Agent.Name': `e2e-self-hosted-${crypto.randomBytes(4).toString('hex')}`,
    'Agent.Id': '7',
  });
  const ran = (r: JobResult, what: string): boolean =>
    r.main.stdout.split('\n').some((l) => l.startsWith('[command]') && l.includes(` buildx ${what} `));
  const containerOf = (w: Workspace, builder: string): string =>
    w.docker(['ps', '-a', '--format', '{{.Names}}', '--filter', `name=^buildx_buildkit_${builder}0$`]).trim();
  const succeeded = (r: JobResult): void => {
    assert.equal(r.main.result, 'Succeeded', transcript(r.main));
    assert.equal(r.post.result, 'Succeeded', transcript(r.post));
    assert.deepEqual([...r.main.warnings, ...r.post.warnings], []);
  };
  /** The test's kept builders go after it, container and state volume, so that no other suite finds them. */
  const removeKept = (w: Workspace, builders: readonly (string | undefined)[]): void => {
    for (const b of new Set(builders))
      if (b !== undefined) spawnSync('docker', ['buildx', 'rm', b], { env: { ...process.env, ...w.agent.env } });
  };

  it('two jobs in turn: the second reuses the builder and builds from its state alone (no cache backend); the post-job steps prune it and keep it', async () => {
    const w = suite.agents.workspace('current', HOSTED_FILES, {}, 'selfHosted');
    const agent = selfHosted();
    const inputs = { cacheBackend: 'none', output: 'docker' };
    let builder: string | undefined;
    try {
      const first = await w.job('kept: first', inputs, agent);
      succeeded(first);
      builder = first.main.outputs.builderName;
      assert.match(builder ?? '', /^buildx-cache-agent-[0-9a-f]{16}$/);
      assert.match(
        first.main.stdout,
        new RegExp(`^Builder lifetime: agent \\(auto\\), because '${agent['Agent.Name'] ?? ''}' is a self-hosted agent`, 'm'),
      );
      assert.ok(ran(first, 'create'), 'the first job creates the builder');
      assert.equal(stepCached(first.main.stdout, DEPS_STEP), false);
      assert.match(first.post.stdout, new RegExp(`^Prune kept builder: [\\d.]+s, pruned builder ${builder ?? ''} to 10GB$`, 'm'));
      assert.match(first.post.stdout, new RegExp(`Kept builder ${builder ?? ''} for the agent's next jobs\\.`));
      assert.doesNotMatch(first.post.stdout, /Removed builder/);
      assert.equal(containerOf(w, builder ?? ''), `buildx_buildkit_${builder ?? ''}0`, 'the builder container outlives the job');

      w.write('src/main.txt', 'revision 1\n');
      const second = await w.job('kept: second', inputs, agent);
      succeeded(second);
      assert.equal(second.main.outputs.builderName, builder);
      assert.ok(!ran(second, 'create'), 'the second job creates no builder');
      // No cache was imported: the step is CACHED only because the builder kept its state.
      assert.doesNotMatch(buildCommand(second.main), /--cache-from/);
      assert.ok(stepCached(second.main.stdout, DEPS_STEP), 'the dependency step comes from the kept state');
      assert.equal(stepCached(second.main.stdout, '[6/6] RUN cat src/main.txt'), false);
      assert.equal(w.docker(['run', '--rm', `${IMAGE}:e2e`, 'cat', '/app/out.txt']).trim(), 'revision 1');
    } finally {
      removeKept(w, [builder]);
    }
    assertNoBuilderLeft(w, builder);
  });

  it('the kept builder still imports the restored cache and exports it; when its state is gone, the store brings the layers back', async () => {
    const w = suite.agents.workspace('current', HOSTED_FILES, {}, 'selfHosted');
    const agent = selfHosted();
    const inputs = { cacheBackend: 'local', output: 'docker' };
    let builder: string | undefined;
    try {
      const cold = await w.job('kept, local: cold', inputs, agent);
      succeeded(cold);
      builder = cold.main.outputs.builderName;
      assert.equal(cold.main.outputs.cacheHit, 'false');

      w.write('src/main.txt', 'revision 1\n');
      const warm = await w.job('kept, local: warm', inputs, agent);
      succeeded(warm);
      assert.equal(warm.main.outputs.builderName, builder);
      assert.equal(warm.main.outputs.cacheHit, 'true');
      // cacheTransport auto puts the builder the task keeps on the host's network and goes direct, and the engine,
      // which still has the first job's image, pulls only the new layer instead of a --load of the whole image.
      assert.match(
        warm.main.stdout,
        /^Cache transport: direct, through a registry on 127\.0\.0\.1:\d+ \(cacheTransport auto picks direct for cacheBackend local: the task keeps a docker-container builder for the agent/m,
      );
      assert.match(
        buildCommand(warm.main),
        /--cache-from type=registry,ref=127\.0\.0\.1:\d+\/\S+ --cache-to type=registry,ref=127\.0\.0\.1:\d+\//,
      );
      assert.doesNotMatch(buildCommand(warm.main), / --load\b/);
      assert.ok(stepCached(warm.main.stdout, DEPS_STEP), 'the dependency step is cached');

      const pulled = pulledBytes(summaryOf(warm));
      const imageBytes = Number(w.docker(['image', 'inspect', '--format', '{{.Size}}', `${IMAGE}:e2e`]).trim());
      assert.ok(pulled > 0 && pulled < 100e3 && imageBytes > 1e6, `pulled ${pulled} bytes of a ${imageBytes}-byte image`);
      assert.equal(w.docker(['run', '--rm', `${IMAGE}:e2e`, 'cat', '/app/out.txt']).trim(), 'revision 1');

      // The state is gone (a new VM, garbage collection): the same name is created again, and the store is the backstop.
      w.docker(['buildx', 'rm', builder ?? '']);
      w.write('src/main.txt', 'revision 2\n');
      const fresh = await w.job('kept, local: state gone', inputs, agent);
      succeeded(fresh);
      assert.equal(fresh.main.outputs.builderName, builder);
      assert.ok(ran(fresh, 'create'));
      assert.equal(fresh.main.outputs.cacheHit, 'true');
      // The dependency step did not run: it comes from the restored cache (through the registry BuildKit shows its download, without CACHED).
      assert.doesNotMatch(fresh.main.stdout, /^#\d+ [\d.]+ installing /m, 'the dependency step comes from the restored cache');
      const served = rowBytes(summaryOf(fresh), 'Served to BuildKit') ?? 0;
      assert.ok(served > 2e6, `the store served ${served} bytes, the 2 MB dependency layer among them`);
      assert.equal(w.docker(['run', '--rm', `${IMAGE}:e2e`, 'cat', '/app/out.txt']).trim(), 'revision 2');
    } finally {
      removeKept(w, [builder]);
    }
  });

  it('two jobs at once on one agent share its builder, whichever creates it; a second agent on the machine has its own', async () => {
    const w = suite.agents.workspace('current', HOSTED_FILES, {}, 'selfHosted');
    const one = selfHosted();
    const two = selfHosted();
    const inputs = { cacheBackend: 'none', output: 'docker' };
    let results: JobResult[] = [];
    try {
      results = await Promise.all([
        w.job('race a', { ...inputs, imageName: 'dbxc-e2e/race-a' }, one),
        w.job('race b', { ...inputs, imageName: 'dbxc-e2e/race-b' }, one),
        w.job('other agent', { ...inputs, imageName: 'dbxc-e2e/race-c' }, two),
      ]);
      for (const r of results) succeeded(r);
      const [a, b, c] = results.map((r) => r.main.outputs.builderName);
      assert.equal(a, b, 'one agent, one builder');
      assert.notEqual(a, c, 'another agent, another builder');
      for (const name of [a, c]) assert.equal(containerOf(w, name ?? ''), `buildx_buildkit_${name ?? ''}0`);
      for (const r of results) assert.doesNotMatch(r.post.stdout, /Removed builder/);
      for (const [image, text] of [
        ['dbxc-e2e/race-a', 'revision 0'],
        ['dbxc-e2e/race-c', 'revision 0'],
      ])
        assert.equal(w.docker(['run', '--rm', `${image}:e2e`, 'cat', '/app/out.txt']).trim(), text);
    } finally {
      removeKept(
        w,
        results.map((r) => r.main.outputs.builderName),
      );
      spawnSync('docker', ['image', 'rm', 'dbxc-e2e/race-a:e2e', 'dbxc-e2e/race-b:e2e', 'dbxc-e2e/race-c:e2e'], {
        env: { ...process.env, ...w.agent.env },
      });
    }
  });

  it("a Microsoft-hosted agent leaves its job's builder to the machine; builderLifetime overrides the rule both ways", async () => {
    const inputs = { cacheBackend: 'none', output: 'cacheOnly' };
    const hosted = suite.agents.workspace('current', HOSTED_FILES);
    const ephemeral = await hosted.job('hosted: auto', inputs);
    succeeded(ephemeral);
    assert.match(ephemeral.main.stdout, /^Builder lifetime: job \(auto\), because the agent reports Agent\.CloudId/m);
    assert.match(ephemeral.main.outputs.builderName ?? '', /^buildx-cache-[0-9a-f]{16}$/);
    assertBuilderLeftToMachine(hosted, ephemeral);

    let kept: string | undefined;
    try {
      const forced = await hosted.job('hosted: agent', { ...inputs, builderLifetime: 'agent' });
      succeeded(forced);
      kept = forced.main.outputs.builderName;
      assert.match(forced.main.stdout, /^Builder lifetime: agent, as the builderLifetime input says$/m);
      assert.match(kept ?? '', /^buildx-cache-agent-/);
      assert.equal(containerOf(hosted, kept ?? ''), `buildx_buildkit_${kept ?? ''}0`);
    } finally {
      removeKept(hosted, [kept]);
    }

    const self = suite.agents.workspace('current', HOSTED_FILES, {}, 'selfHosted');
    const perJob = await self.job('self-hosted: job', { ...inputs, builderLifetime: 'job' }, selfHosted());
    succeeded(perJob);
    assert.match(perJob.main.stdout, /^Builder lifetime: job, as the builderLifetime input says$/m);
    assert.match(perJob.post.stdout, /Removed builder buildx-cache-[0-9a-f]{16}\./);
    assertNoBuilderLeft(self, perJob.main.outputs.builderName);
  });

  it('a builder the pipeline names (builderName) on a self-hosted agent: used, neither pruned nor removed', async () => {
    const w = suite.agents.workspace('current', HOSTED_FILES, {}, 'selfHosted');
    const own = `dbxc-e2e-own-${crypto.randomBytes(4).toString('hex')}`;
    w.docker([
      'buildx',
      'create',
      '--name',
      own,
      '--driver',
      'docker-container',
      '--driver-opt',
      'network=host',
      '--config',
      suite.agents.buildkitdConfig,
    ]);
    try {
      const r = await w.job('builderName', { cacheBackend: 'none', output: 'cacheOnly', builderName: own }, selfHosted());
      succeeded(r);
      assert.equal(r.main.outputs.builderName, own);
      assert.doesNotMatch(r.main.stdout, /^Builder lifetime:/m);
      assert.doesNotMatch(r.post.stdout, /Prune kept builder|Kept builder|Removed builder/);
      assert.match(w.docker(['buildx', 'inspect', own]), new RegExp(`Name:\\s+${own}`));
    } finally {
      removeKept(w, [own]);
    }
  });
});
