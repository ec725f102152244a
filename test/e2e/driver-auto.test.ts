import * as assert from 'assert/strict';
import { ensureEngine, BASE_IMAGE } from '../../scripts/engine';
import type { HostedEngine } from '../../scripts/hosted-engine';
import { cleanup } from '../helpers';
import { assertBuilderLeftToMachine, buildCommand, driverLine, HostedAgents, hostedEngineOrSkip, summaryOf } from './hosted';
import { stepCached, Workspace } from './workspace';
import { transcript } from '../../scripts/agent';

const DEPS_STEP = '[3/5] RUN echo "installing';

/** driver: auto, the default, decided by the engine it meets: the log and the summary say what and why. */
describe('end to end: driver auto on both engines', function () {
  this.timeout(10 * 60 * 1000);
  afterEach(cleanup);

  describe('on the containerd image store', () => {
    before(() => ensureEngine());

    it("builds with the engine's own BuildKit: no builder to create, no image to load, the cache exported and restored", async () => {
      const dockerfile = `FROM ${BASE_IMAGE}\nCOPY deps.lock ./\nRUN echo "installing $(cat deps.lock)" && dd if=/dev/urandom of=/deps.bin bs=1M count=1 2>/dev/null\nCOPY src/ ./src/\nRUN cat src/main.txt > /out.txt\n`;
      const w = new Workspace(
        { Dockerfile: dockerfile, 'deps.lock': 'a\n', 'src/main.txt': 'revision 0\n' },
        { inputs: { driver: 'auto' } },
      );
      const cold = await w.job('auto, containerd: cold', { cacheBackend: 'local', output: 'docker' });
      assert.equal(cold.main.result, 'Succeeded', transcript(cold.main));
      assert.deepEqual([...cold.main.warnings, ...cold.post.warnings], []);
      const why =
        "docker (auto), because the engine uses the containerd image store: the engine's own BuildKit exports cache, with no BuildKit image to pull and no image to load";
      assert.equal(driverLine(cold.main), why);
      assert.match(summaryOf(cold), new RegExp(`\\| Builder driver \\| ${why.replace(/[()]/g, '\\$&')} \\|`));
      assert.equal(cold.main.outputs.builderName, 'default');
      assert.doesNotMatch(cold.main.stdout, /buildx create/);
      assert.match(buildCommand(cold.main), /--builder default .*--cache-to type=local,/);
      // The imageId output is the engine's ID (the index digest), read from the build's metadata without asking the engine.
      assert.equal(w.docker(['image', 'inspect', '--format', '{{.Id}}', 'dbxc-e2e/app:e2e']).trim(), cold.main.outputs.imageId);
      assert.doesNotMatch(cold.main.stdout, / image inspect /);

      w.write('src/main.txt', 'revision 1\n');
      const warm = await w.job('auto, containerd: source change', { cacheBackend: 'local', output: 'docker' });
      assert.equal(warm.main.result, 'Succeeded', transcript(warm.main));
      assert.equal(warm.main.outputs.cacheHit, 'true');
      assert.ok(stepCached(warm.main.stdout, DEPS_STEP));
    });
  });

  describe('on the classic image store (the hosted-agent engine)', () => {
    let engine: HostedEngine;
    let agents: HostedAgents;
    before(function () {
      engine = hostedEngineOrSkip(this);
      agents = new HostedAgents(engine);
    });
    after(() => HostedAgents.disposeAll());

    it('creates a docker-container builder, because the docker driver could not export cache there, on the host network for the direct cache, and leaves it to the machine', async () => {
      // Nothing to pull from inside the builder, so it needs no mirror: auto decides by the store alone.
      const w = new Workspace(
        { Dockerfile: 'FROM scratch\nCOPY src/ /src/\n', 'src/main.txt': 'revision 0\n' },
        { env: agents.env('current'), inputs: { driver: 'auto' } },
      );
      const r = await w.job('auto, classic store', { cacheBackend: 'local', output: 'docker' });
      assert.equal(r.main.result, 'Succeeded', transcript(r.main));
      assert.equal(r.post.result, 'Succeeded', transcript(r.post));
      assert.deepEqual([...r.main.warnings, ...r.post.warnings], []);
      const why =
        'docker-container (auto), because the engine uses the classic image store, with which the docker driver cannot export cache';
      assert.equal(driverLine(r.main), why);
      assert.match(summaryOf(r), new RegExp(`\\| Builder driver \\| ${why.replace(/[()]/g, '\\$&')} \\|`));
      assert.match(r.main.stdout, /engine image store: classic/);
      // cacheTransport auto, decided after the preflight and before the builder: direct, so the task gives its builder the host's network.
      assert.match(
        r.main.stdout,
        /buildx create --bootstrap --name buildx-cache-[0-9a-f]{16} --driver docker-container --driver-opt network=host\n/,
      );
      assert.match(
        r.main.stdout,
        /^Cache transport: direct, through a registry on 127\.0\.0\.1:\d+ \(cacheTransport auto picks direct for cacheBackend local:/m,
      );
      // The image goes to the engine by a push to that registry and a pull, not --load.
      assert.match(
        buildCommand(r.main),
        /--cache-to type=registry,ref=127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}:save\S* --output type=image,name=127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}:image,push=true/,
      );
      assert.match(r.main.stdout, /docker pull --quiet 127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}@sha256:[0-9a-f]{64}\n/);
      // The config digest from the build's metadata, without asking the engine.
      assert.equal(w.docker(['image', 'inspect', '--format', '{{.Id}}', 'dbxc-e2e/app:e2e']).trim(), r.main.outputs.imageId);
      assert.doesNotMatch(r.main.stdout, / image inspect /);
      assertBuilderLeftToMachine(w, r);
    });
  });
});
