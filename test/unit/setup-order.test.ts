import * as assert from 'assert/strict';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/buildx/docker';
import { readConfig, type Config } from '../../tasks/DockerBuildxCacheV1/src/config';
import { startSetup, type Recorder } from '../../tasks/DockerBuildxCacheV1/src/setup';
import { cleanup, tempDir, writeTree } from '../helpers';

const ANSWERS: Record<string, RunResult> = {
  'version --format {{json .}}': { code: 0, stdout: '{"Client":{"Version":"28.2.2"},"Server":{"Components":[{"Name":"Engine","Version":"26.1.5"}]}}', stderr: '' },
  'buildx version': { code: 0, stdout: 'github.com/docker/buildx v0.19.2 abc', stderr: '' },
  'info --format {{json .DriverStatus}}': { code: 0, stdout: '[["driver-type","io.containerd.snapshotter.v1"]]', stderr: '' },
};

/** A docker whose commands all hang until `release()`: what has started by then ran side by side. */
function heldDocker(): { docker: DockerCli; started: string[]; release: () => void } {
  const started: string[] = [];
  const waiting: (() => void)[] = [];
  let released = false;
  const docker: DockerCli = {
    run(args) {
      const line = args.join(' ');
      started.push(line);
      const answer = ANSWERS[line] ?? { code: 0, stdout: 'Name: b\nPlatforms: linux/amd64\n', stderr: '' };
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
  const config = (driver: string): Config =>
    readConfig({ input: (n) => ({ imageName: 'app', driver, cacheBackend: 'none' })[n] ?? '', variable: (n) => ({ 'System.DefaultWorkingDirectory': ws, 'Pipeline.Workspace': ws, 'Agent.WorkFolder': ws, 'Agent.OS': 'Linux' })[n] });
  beforeEach(() => {
    ws = tempDir();
    writeTree(ws, { Dockerfile: 'FROM scratch\n' });
  });
  afterEach(cleanup);

  const cases: [string, string[], string[]][] = [
    ['the docker driver: its builder is only inspected, beside the preflight', ['docker'], ['version --format {{json .}}', 'buildx version', 'info --format {{json .DriverStatus}}', 'buildx inspect default']],
    ['docker-container: the builder, which may be created, waits for the preflight', ['docker-container'], ['version --format {{json .}}', 'buildx version']],
  ];
  for (const [name, [driver = ''], before] of cases) {
    it(name, async () => {
      const { docker, started, release } = heldDocker();
      const setup = startSetup(docker, config(driver), recorder, 'the plugin', 'job', 'agent');
      for (let i = 0; i < 5; i++) await tick();
      assert.deepEqual(started, before, 'started before any command answered');
      release();
      const { builder } = await setup.show();
      assert.equal(builder.name, driver === 'docker' ? 'default' : started.find((c) => c.startsWith('buildx inspect '))?.split(' ').pop());
    });
  }
});
