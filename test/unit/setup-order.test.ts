import * as assert from 'assert/strict';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { startSetup, type JobAgent, type Recorder } from '../../tasks/DockerBuildxCacheV1/src/docker/setup';
import { cleanup, tempDir, writeTree } from '../helpers';

const info = (driverStatus: string): string =>
  `{"ServerVersion":"26.1.5","DriverStatus":${driverStatus},"ClientInfo":{"Version":"28.2.2","Plugins":[{"Name":"buildx","Version":"v0.19.2"}]}}`;
const INFO = 'info --format {{json .}}';
const ANSWERS: Record<string, RunResult> = {
  [INFO]: { code: 0, stdout: info('[["driver-type","io.containerd.snapshotter.v1"]]'), stderr: '' },
};

const CLASSIC: RunResult = { code: 0, stdout: info('[["Backing Filesystem","extfs"]]'), stderr: '' };

/** A docker whose commands all hang until `release()`: what has started by then ran side by side. */
function heldDocker(overrides: Record<string, RunResult> = {}): { docker: DockerCli; started: string[]; release: () => void } {
  const started: string[] = [];
  const waiting: (() => void)[] = [];
  let released = false;
  const docker: DockerCli = {
    run(args) {
      const line = args.join(' ');
      started.push(line);
      const answer = overrides[line] ?? ANSWERS[line] ?? { code: 0, stdout: 'Name: b\nPlatforms: linux/amd64\n', stderr: '' };
      if (released) return Promise.resolve(answer);
      return new Promise((resolve) => waiting.push(() => resolve(answer)));
    },
  };
  const release = (): void => {
    released = true;
    for (const answer of waiting.splice(0)) answer();
  };
  return { docker, started, release };
}

const recorder: Recorder = { update: () => undefined, timed: (_title, work) => work() };
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('setup: the preflight and the builder while the cache restores', () => {
  let ws: string;
  const config = (driver: string, extra: Record<string, string> = {}): Config =>
    readConfig({
      input: (n) => ({ imageName: 'app', driver, cacheBackend: 'none', ...extra })[n] ?? '',
      variable: (n) => ({ 'System.DefaultWorkingDirectory': ws, 'Pipeline.Workspace': ws, 'Agent.WorkFolder': ws, 'Agent.OS': 'Linux' })[n],
    });
  beforeEach(() => {
    ws = tempDir();
    writeTree(ws, { Dockerfile: 'FROM scratch\n' });
  });
  afterEach(cleanup);

  const SELF_HOSTED = { jobId: 'job', name: 'agent' };
  const HOSTED = { jobId: 'job', name: 'Azure Pipelines 2', cloudId: '1' };
  const KEPT = /^buildx inspect --bootstrap buildx-cache-agent-[0-9a-f]{16}$/;
  // name, driver and inputs, the agent, docker answers → what started before anything answered, the driver chosen, the last command
  // …, and what the engine's API said of the image store first (nothing: it did not answer)
  const cases: [
    string,
    string,
    Record<string, string>,
    JobAgent,
    Record<string, RunResult>,
    (string | RegExp)[],
    string,
    RegExp,
    boolean?,
  ][] = [
    [
      'the docker driver: the engine is its builder, and only the preflight runs',
      'docker',
      {},
      SELF_HOSTED,
      {},
      [INFO],
      'docker',
      /^info /,
    ],
    [
      'the docker driver with a named context: the context is looked at beside the preflight',
      'docker',
      { endpoint: 'ci-engine' },
      SELF_HOSTED,
      {},
      [INFO, 'buildx inspect ci-engine'],
      'docker',
      /^buildx inspect ci-engine$/,
    ],
    [
      'docker-container: the builder an agent keeps is started beside the preflight',
      'docker-container',
      {},
      SELF_HOSTED,
      {},
      [INFO, KEPT],
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-agent-/,
    ],
    [
      "docker-container on a hosted agent: the job's own builder is created and started beside the preflight, without a look first",
      'docker-container',
      {},
      HOSTED,
      {},
      [INFO, /^buildx create --bootstrap --name buildx-cache-[0-9a-f]{16} --driver docker-container$/],
      'docker-container',
      /^buildx create --bootstrap --name buildx-cache-[0-9a-f]{16} --driver docker-container$/,
    ],
    [
      'auto on the containerd store: the docker driver, and only the preflight runs',
      'auto',
      {},
      SELF_HOSTED,
      {},
      [INFO],
      'docker',
      /^info /,
    ],
    [
      'auto on the classic store: a builder of its own, after the preflight',
      'auto',
      {},
      SELF_HOSTED,
      { [INFO]: CLASSIC },
      [INFO],
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-/,
    ],
    [
      "auto, the engine's API said the classic store: a builder of its own, beside the preflight",
      'auto',
      {},
      SELF_HOSTED,
      { [INFO]: CLASSIC },
      [INFO, KEPT],
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-/,
      false,
    ],
    [
      "auto, the engine's API said the containerd store: the docker driver, and only the preflight runs",
      'auto',
      {},
      SELF_HOSTED,
      {},
      [INFO],
      'docker',
      /^info /,
      true,
    ],
    [
      "auto, the API's store goes before the preflight's: the builder already started for it",
      'auto',
      {},
      SELF_HOSTED,
      {},
      [INFO, KEPT],
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-/,
      false,
    ],
    [
      'auto with a builder input: docker-container, its builder beside the preflight',
      'auto',
      { driverOptions: 'network=host' },
      SELF_HOSTED,
      {},
      [INFO, KEPT],
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-/,
    ],
  ];
  for (const [name, driver, inputs, agent, overrides, before, chosen, last, apiStore] of cases) {
    it(name, async () => {
      const { docker, started, release } = heldDocker(overrides);
      const engine = Promise.resolve(apiStore === undefined ? undefined : { containerdStore: apiStore });
      const setup = startSetup(docker, config(driver, inputs), recorder, 'the plugin', agent, engine);
      for (let i = 0; i < 5; i++) await tick();
      assert.equal(started.length, before.length, `started before any command answered: ${started.join('; ')}`);
      before.forEach((expected, i) => {
        if (typeof expected === 'string') assert.equal(started[i], expected);
        else assert.match(started[i] ?? '', expected);
      });
      release();
      const result = await setup.show();
      assert.equal(result.driver.driver, chosen);
      assert.match(started[started.length - 1] ?? '', last);
      assert.equal(
        result.builder.name,
        chosen === 'docker'
          ? (inputs.endpoint ?? 'default')
          : /^buildx (?:inspect --bootstrap|create --bootstrap --name) (\S+)/.exec(started.at(-1) ?? '')?.[1],
      );
    });
  }
});
