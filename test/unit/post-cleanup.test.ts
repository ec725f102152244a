import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import { saveState, type PostState } from '../../tasks/DockerBuildxCacheV1/src/job';
import { runPost } from '../../tasks/DockerBuildxCacheV1/src/post-step';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { cacheLayout, writeLayout } from '../oci-fixture';
import { cleanup, tempDir } from '../helpers';
import { taskLibOutput } from './setup';

const files = (dir: string): number => (fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true }).length : 0);

describe('the post-job step: removing the builder beside the save', () => {
  let temp: string | undefined;
  beforeEach(() => {
    temp = process.env.AGENT_TEMPDIRECTORY;
    process.env.AGENT_TEMPDIRECTORY = tempDir();
  });
  afterEach(() => {
    if (temp === undefined) delete process.env.AGENT_TEMPDIRECTORY;
    else process.env.AGENT_TEMPDIRECTORY = temp;
    cleanup();
  });

  // the builder's removal answers → whether the post step says it removed it or warns
  const cases: [string, RunResult | Error, RegExp][] = [
    ['removed', { code: 0, stdout: '', stderr: '' }, /^$/],
    ['docker fails: a warning', { code: 1, stdout: '', stderr: 'ERROR: no builder "b1" found' }, /no builder "b1" found/],
    ['docker cannot be run: a warning', new Error('spawn docker ENOENT'), /spawn docker ENOENT/],
  ];
  for (const [name, answer, warning] of cases) {
    it(`starts the removal before the save, and reports it after: ${name}`, async () => {
      const cacheDir = path.join(tempDir(), '.buildx-cache');
      const layout = cacheLayout(['deps', 'app']);
      writeLayout(cacheDir, layout.root, layout.blobs);
      const storePath = path.join(tempDir(), 'store');
      const state: PostState = {
        version: 1,
        cleanup: [],
        removeBuilder: 'b1',
        save: {
          store: { kind: 'local', path: storePath },
          cacheDir,
          segments: ['buildx', 'app'],
          scope: 'refs/heads/main',
          retentionDays: 7,
          failOnError: false,
          when: 'always',
        },
      };
      saveState(state);
      // What the store held when the removal started: nothing, when it started before the save.
      const storeAtRemoval: number[] = [];
      const lines: string[] = [];
      const docker: DockerCli = {
        run(args, options) {
          assert.deepEqual(args, ['buildx', 'rm', 'b1']);
          storeAtRemoval.push(files(storePath));
          options?.print?.('[command]docker buildx rm b1');
          return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
        },
      };
      const log = console.log;
      console.log = (line: string): void => void lines.push(line);
      const before = taskLibOutput.length;
      try {
        await runPost(docker);
      } finally {
        console.log = log;
      }
      const warned = taskLibOutput
        .slice(before)
        .filter((l) => l.includes('##vso[task.issue type=warning'))
        .join('');
      assert.deepEqual(storeAtRemoval, [0]);
      assert.equal((await new LocalStore(storePath).stats()).entries, 1, 'the save still ran');
      // The removal's own log comes after the save's, not inside its group.
      const rm = lines.indexOf('[command]docker buildx rm b1');
      assert.ok(rm > lines.lastIndexOf('##[endgroup]'), lines.join('\n'));
      assert.match(warned, warning);
    });
  }
});
