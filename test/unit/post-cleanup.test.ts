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

/** The main step's state for a job with a cache folder to save to a new local store, and the builder work; returns the store's path. */
function jobWithCache(builder: Pick<PostState, 'removeBuilder' | 'keepBuilder'>): string {
  const cacheDir = path.join(tempDir(), '.buildx-cache');
  const layout = cacheLayout(['deps', 'app']);
  writeLayout(cacheDir, layout.root, layout.blobs);
  const storePath = path.join(tempDir(), 'store');
  saveState({
    version: 1,
    cleanup: [],
    ...builder,
    save: {
      store: { kind: 'local', path: storePath },
      cacheDir,
      segments: ['buildx', 'app'],
      scope: 'refs/heads/main',
      retentionDays: 7,
      failOnError: false,
      when: 'always',
    },
  });
  return storePath;
}

describe('the post-job step: removing or pruning the builder beside the save', () => {
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

  // what the state asks of the builder → the docker command that does it
  const work: [string, Pick<PostState, 'removeBuilder' | 'keepBuilder'>, string[]][] = [
    ['the removal', { removeBuilder: 'b1' }, ['buildx', 'rm', 'b1']],
    [
      'the prune of a kept builder',
      { keepBuilder: { name: 'b1', keepStorage: '10GB' } },
      ['buildx', 'prune', '--builder', 'b1', '--all', '--force', '--keep-storage', '10GB'],
    ],
  ];
  // docker's answer → whether the post step says it did it or warns
  const answers: [string, RunResult | Error, RegExp][] = [
    ['done', { code: 0, stdout: '', stderr: '' }, /^$/],
    ['docker fails: a warning', { code: 1, stdout: '', stderr: 'ERROR: no builder "b1" found' }, /no builder "b1" found/],
    ['docker cannot be run: a warning', new Error('spawn docker ENOENT'), /spawn docker ENOENT/],
  ];
  const cases = work.flatMap(([what, builder, command]) =>
    answers.map(([name, answer, warning]) => ({ what, builder, command, name, answer, warning })),
  );
  for (const { what, builder, command, name, answer, warning } of cases) {
    it(`starts ${what} before the save, and reports it after: ${name}`, async () => {
      const storePath = jobWithCache(builder);
      // What the store held when the builder's command started: nothing, when it started before the save.
      const storeAtStart: number[] = [];
      const lines: string[] = [];
      const shown = `[command]docker ${command.join(' ')}`;
      const docker: DockerCli = {
        run(args, options) {
          assert.deepEqual(args, command);
          storeAtStart.push(files(storePath));
          options?.print?.(shown);
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
      assert.deepEqual(storeAtStart, [0]);
      assert.equal((await new LocalStore(storePath).stats()).entries, 1, 'the save still ran');
      // The command's own log comes after the save's group (the first), not inside it.
      const at = lines.indexOf(shown);
      assert.ok(at > lines.indexOf('##[endgroup]') && lines.indexOf('##[endgroup]') >= 0, lines.join('\n'));
      assert.match(warned, warning);
    });
  }

  for (const [what, builder] of work) {
    it(`saves, and warns about ${what}, when docker is not on PATH`, async () => {
      const storePath = jobWithCache(builder);
      const pathVar = process.env.PATH;
      process.env.PATH = path.join(tempDir(), 'no-docker-here');
      const log = console.log;
      console.log = (): void => undefined;
      const before = taskLibOutput.length;
      try {
        await runPost();
      } finally {
        console.log = log;
        process.env.PATH = pathVar;
      }
      assert.equal((await new LocalStore(storePath).stats()).entries, 1, 'the save ran');
      const warned = taskLibOutput.slice(before).filter((l) => l.includes('##vso[task.issue type=warning'));
      assert.equal(warned.length, 1, warned.join('\n'));
      assert.match(warned.join(''), /docker/);
    });
  }
});
