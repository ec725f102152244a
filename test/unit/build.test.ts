import * as assert from 'assert/strict';
import * as sinon from 'sinon';
import { BuildError, buildWithCacheFallback, type BuildCache } from '../../tasks/DockerBuildxCacheV1/src/build';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import { CacheError } from '../../tasks/DockerBuildxCacheV1/src/cache/trouble';
import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { cleanup, tempDir, writeTree } from '../helpers';
import { taskLibOutput } from './setup';

const ok: RunResult = { code: 0, stdout: '', stderr: '' };
/** BuildKit's words when an imported blob does not match its digest, and when the cache export fails. */
const corrupt: RunResult = {
  code: 1,
  stdout: '',
  stderr:
    'ERROR: failed to solve: failed to compute cache key: unexpected commit digest sha256:aa, expected sha256:bb: failed precondition',
};
const exportFailed: RunResult = {
  code: 1,
  stdout: '',
  stderr:
    '#9 exporting cache to client directory\n#9 ERROR: write /cache/blobs/sha256/x: no space left on device\nERROR: failed to solve: no space left on device',
};

function config(failOnCacheError: boolean): Config {
  const ws = tempDir();
  writeTree(ws, { Dockerfile: 'FROM scratch\n' });
  const inputs: Record<string, string> = { imageName: 'app', output: 'cacheOnly', failOnCacheError: String(failOnCacheError) };
  const vars: Record<string, string> = {
    'System.DefaultWorkingDirectory': ws,
    'Pipeline.Workspace': '/pw',
    'Agent.WorkFolder': '/aw',
    'Agent.OS': 'Linux',
  };
  return readConfig({ input: (name) => inputs[name] ?? '', variable: (name) => vars[name] });
}

/** Answers each `buildx build` in turn; the progress parser sees the stderr lines. */
function builds(...answers: RunResult[]): { docker: DockerCli; run: sinon.SinonStub } {
  const run = sinon.stub<Parameters<DockerCli['run']>, ReturnType<DockerCli['run']>>();
  answers.forEach((a, i) =>
    run.onCall(i).callsFake((_args, options) => {
      for (const line of a.stderr.split('\n')) options?.onLine?.(line);
      return Promise.resolve(a);
    }),
  );
  return { docker: { run }, run };
}

const cache = (distrust = sinon.spy()): BuildCache => ({
  from: ['type=local,src=/c'],
  to: ['type=local,dest=/c.new'],
  onImportCorrupt: (): Promise<void> => {
    distrust();
    return Promise.resolve();
  },
  onExportFailed: (): Promise<void> => Promise.resolve(),
});
const builder = { name: 'b', created: false, platforms: [] };

describe('build: cache trouble during the build and failOnCacheError', () => {
  afterEach(cleanup);

  // failOnCacheError, the first build's answer → the outcome: builds run, a CacheError or a warning
  const table: [string, boolean, RunResult, number, 'CacheError' | 'warning'][] = [
    ['a corrupt imported blob, failOnCacheError false: built again without the import, with a warning', false, corrupt, 2, 'warning'],
    ['a corrupt imported blob, failOnCacheError true: the step fails with the cache error', true, corrupt, 1, 'CacheError'],
    ['a failed cache export, failOnCacheError false: built again without the export, with a warning', false, exportFailed, 2, 'warning'],
    ['a failed cache export, failOnCacheError true: the step fails with the cache error', true, exportFailed, 1, 'CacheError'],
  ];
  for (const [name, failOnError, first, runs, outcome] of table) {
    it(name, async () => {
      const { docker, run } = builds(first, ok);
      const distrust = sinon.spy();
      const before = taskLibOutput.length;
      const result = buildWithCacheFallback(docker, config(failOnError), builder, cache(distrust), new Map(), '/tmp/metadata.json');
      if (outcome === 'CacheError') {
        await assert.rejects(
          result,
          (err: Error) => err instanceof CacheError && !(err instanceof BuildError) && /failOnCacheError is true/.test(err.message),
        );
      } else {
        await result;
        assert.ok(taskLibOutput.slice(before).some((l) => l.startsWith('##vso[task.issue type=warning')));
      }
      assert.equal(run.callCount, runs);
      // A corrupt entry is distrusted either way: the store checks it in full next time.
      assert.equal(distrust.called, first === corrupt);
    });
  }
});
