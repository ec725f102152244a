import * as assert from 'assert/strict';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { startSetup, type Recorder } from '../../tasks/DockerBuildxCacheV1/src/docker/setup';
import { cleanup, tempDir, writeTree } from '../helpers';

const ANSWERS: Record<string, RunResult> = {
  'version --format {{json .}}': {
    code: 0,
    stdout: '{"Client":{"Version":"28.2.2"},"Server":{"Components":[{"Name":"Engine","Version":"26.1.5"}]}}',
    stderr: '',
  },
  'buildx version': { code: 0, stdout: 'github.com/docker/buildx v0.19.2 abc', stderr: '' },
  'info --format {{json .DriverStatus}}': { code: 0, stdout: '[["driver-type","io.containerd.snapshotter.v1"]]', stderr: '' },
};

const CLASSIC: RunResult = { code: 0, stdout: '[["Backing Filesystem","extfs"]]', stderr: '' };

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

  const PREFLIGHT = ['version --format {{json .}}', 'buildx version'];
  const STORE = 'info --format {{json .DriverStatus}}';
  // name, driver and inputs, docker answers → what started before anything answered, the driver chosen, every command by the end
  const cases: [string, string, Record<string, string>, Record<string, RunResult>, string[], string, RegExp][] = [
    [
      'the docker driver: its builder is only inspected, beside the preflight',
      'docker',
      {},
      {},
      [...PREFLIGHT, STORE, 'buildx inspect default'],
      'docker',
      /^buildx inspect default$/,
    ],
    [
      'docker-container: the builder, which may be created, waits for the preflight',
      'docker-container',
      {},
      {},
      PREFLIGHT,
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-/,
    ],
    [
      'auto on the containerd store: the docker driver, its builder looked at beside the preflight',
      'auto',
      {},
      {},
      [...PREFLIGHT, STORE, 'buildx inspect default'],
      'docker',
      /^buildx inspect default$/,
    ],
    [
      'auto on the classic store: a builder of its own, after the preflight',
      'auto',
      {},
      { [STORE]: CLASSIC },
      [...PREFLIGHT, STORE, 'buildx inspect default'],
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-/,
    ],
    [
      'auto with a builder input: docker-container, and the store is not asked',
      'auto',
      { driverOptions: 'network=host' },
      {},
      PREFLIGHT,
      'docker-container',
      /^buildx inspect --bootstrap buildx-cache-/,
    ],
  ];
  for (const [name, driver, inputs, overrides, before, chosen, last] of cases) {
    it(name, async () => {
      const { docker, started, release } = heldDocker(overrides);
      const setup = startSetup(docker, config(driver, inputs), recorder, 'the plugin', { jobId: 'job', name: 'agent' });
      for (let i = 0; i < 5; i++) await tick();
      assert.deepEqual(started, before, 'started before any command answered');
      release();
      const result = await setup.show();
      assert.equal(result.driver.driver, chosen);
      assert.match(started[started.length - 1] ?? '', last);
      assert.equal(
        result.builder.name,
        chosen === 'docker'
          ? 'default'
          : started
              .find((c) => c.startsWith('buildx inspect --bootstrap '))
              ?.split(' ')
              .pop(),
      );
    });
  }
});
