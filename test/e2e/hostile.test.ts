// The adversarial cases of issue #12 that involve a build, run as the agent runs the bundled task.
import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { runJob, transcript } from '../../scripts/agent';
import { BASE_IMAGE, ensureEngine } from '../../scripts/engine';
import { cleanup, tempDir, writeTree } from '../helpers';
import { IMAGE, stepCached, Workspace } from './workspace';

const DOCKERFILE = `FROM ${BASE_IMAGE}
WORKDIR /app
COPY deps.lock ./
RUN echo "installing $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=2 2>/dev/null
COPY src/ ./src/
RUN cat src/main.txt > /app/out.txt
`;
const DEPS_STEP = '[4/6] RUN echo "installing';
const FILES = { Dockerfile: DOCKERFILE, 'deps.lock': 'left-pad@1.3.0\n', 'src/main.txt': 'hello\n' };

/** The biggest blob of a layout folder: the dependency layer. */
function biggestBlob(dir: string): string {
  const blobs = path.join(dir, 'blobs', 'sha256');
  return (
    fs
      .readdirSync(blobs)
      .map((h) => path.join(blobs, h))
      .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0] ?? assert.fail('no blobs')
  );
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

describe('end to end: what a careless or hostile pipeline does to the cache', function () {
  this.timeout(10 * 60 * 1000);
  let w: Workspace;

  before(() => ensureEngine());
  beforeEach(() => {
    w = new Workspace(FILES);
  });
  afterEach(cleanup);

  it('1. cacheDir: .. is refused before anything runs, and the workspace is untouched', async () => {
    // Its own layout, nested so that the workspace ('..' of the sources) is a folder of this test.
    const root = tempDir('dbxc-e2e-nest-');
    const pipelineWorkspace = path.join(root, 'pw');
    const sources = path.join(pipelineWorkspace, 's');
    writeTree(sources, FILES);
    fs.writeFileSync(path.join(pipelineWorkspace, 'artifact.txt'), 'keep');
    const job = await runJob(
      { dockerfile: 'Dockerfile', imageName: IMAGE, tags: 'e2e', driver: 'docker', cacheDir: '..' },
      {
        'System.DefaultWorkingDirectory': sources,
        'Pipeline.Workspace': pipelineWorkspace,
        'Agent.TempDirectory': tempDir('dbxc-e2e-tmp-'),
        'Agent.WorkFolder': tempDir('dbxc-e2e-work-'),
        'Agent.OS': 'Linux',
        'System.JobId': crypto.randomUUID(),
        'System.TaskInstanceId': crypto.randomUUID(),
        'Agent.Name': 'e2e-agent',
        'Build.SourceBranch': 'refs/heads/main',
      },
      sources,
    );
    assert.equal(job.main.result, 'Failed');
    assert.match(job.main.errors.join('\n'), /Input 'cacheDir': .*Pipeline\.Workspace/);
    assert.ok(!job.main.stdout.includes('buildx build'), 'nothing ran');
    assert.equal(fs.readFileSync(path.join(pipelineWorkspace, 'artifact.txt'), 'utf8'), 'keep');
    assert.equal(fs.readFileSync(path.join(sources, 'deps.lock'), 'utf8'), FILES['deps.lock']);
  });

  it('5. a cacheDir that is not ASCII is refused before the build, naming the input and the fix', async () => {
    const job = await w.job('not ascii', { cacheDir: path.join(w.pipelineWorkspace, 'cache-café') });
    assert.equal(job.main.result, 'Failed');
    assert.match(job.main.errors.join('\n'), /Input 'cacheDir': .*not printable ASCII.*Set cacheDir to/);
    assert.ok(!job.main.stdout.includes('buildx build'), 'no build ran');
  });

  it('6. a store mounted read-only restores, with saveCache: never', async () => {
    assert.equal((await w.job('fill the store')).post.result, 'Succeeded');
    const view = tempDir('dbxc-e2e-ro-');
    sh('mount', ['--bind', w.storeDir, view]);
    try {
      sh('mount', ['-o', 'remount,bind,ro', view]);
      fs.rmSync(w.cacheDir, { recursive: true, force: true });
      const job = await w.job('read-only store', { localStorePath: view, saveCache: 'never' });
      assert.equal(job.main.result, 'Succeeded', transcript(job.main));
      assert.deepEqual(job.main.warnings, []);
      assert.equal(job.main.outputs.cacheHit, 'true');
      assert.ok(stepCached(job.main.stdout, DEPS_STEP));
    } finally {
      spawnSync('umount', [view]);
    }
  });

  it('7. links planted in cacheDir before the post-job save are never followed: the save stops with a warning', async () => {
    const outside = path.join(tempDir('dbxc-e2e-outside-'), 'victim');
    let planted = '';
    const job = await w.job('links in cacheDir', {}, {}, {}, () => {
      const blob = biggestBlob(w.cacheDir);
      planted = blob;
      fs.copyFileSync(blob, outside);
      fs.chmodSync(outside, 0o640);
      fs.rmSync(blob, { force: true });
      fs.symlinkSync('/dev/zero', blob);
    });
    assert.equal(job.main.result, 'Succeeded');
    assert.equal(job.post.result, 'Succeeded', transcript(job.post));
    assert.equal(job.post.warnings.length, 1, job.post.warnings.join('\n'));
    assert.match(job.post.warnings[0] ?? '', /could not be saved.*not a regular file/);
    assert.ok(fs.lstatSync(planted).isSymbolicLink());
    assert.equal(fs.statSync(outside).mode & 0o777, 0o640);
    const entries = path.join(w.storeDir, 'v1', 'entries');
    assert.equal(
      fs.existsSync(entries) ? fs.readdirSync(entries, { recursive: true }).filter((f) => String(f).endsWith('.json')).length : 0,
      0,
    );
  });

  it('9. a symlinked blob in a directory cache does not freeze it: the next build replaces the folder', async () => {
    const inputs = { cacheBackend: 'directory' };
    assert.equal((await w.job('fill the folder', inputs)).main.result, 'Succeeded');
    const blob = biggestBlob(w.cacheDir);
    const copy = path.join(tempDir('dbxc-e2e-copy-'), 'blob');
    fs.copyFileSync(blob, copy);
    fs.rmSync(blob, { force: true });
    fs.symlinkSync(copy, blob);

    const linked = await w.job('a linked blob', inputs);
    assert.equal(linked.main.result, 'Succeeded');
    assert.equal(linked.main.warnings.length, 1, linked.main.warnings.join('\n'));
    assert.match(linked.main.warnings[0] ?? '', /cannot be used.*not a regular file/);
    const blobs = path.join(w.cacheDir, 'blobs', 'sha256');
    assert.deepEqual(
      fs.readdirSync(blobs).filter((h) => !fs.lstatSync(path.join(blobs, h)).isFile()),
      [],
      'the folder was replaced, without the link',
    );

    const after = await w.job('after', inputs);
    assert.deepEqual(after.main.warnings, []);
    assert.equal(after.main.outputs.cacheHit, 'true');
    assert.ok(stepCached(after.main.stdout, DEPS_STEP));
  });

  it('11. failOnCacheError fails the step on a damaged cache folder', async () => {
    const inputs = { cacheBackend: 'directory' };
    assert.equal((await w.job('fill the folder', inputs)).main.result, 'Succeeded');
    const blob = biggestBlob(w.cacheDir);
    fs.chmodSync(blob, 0o644);
    const fd = fs.openSync(blob, 'r+');
    fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 100);
    fs.closeSync(fd);
    const strict = await w.job('damaged, strict', { ...inputs, failOnCacheError: 'true' });
    assert.equal(strict.main.result, 'Failed');
    assert.match(strict.main.errors.join('\n'), /cannot be used/);
  });
});
