import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cachedSteps, docker, type JobResult, transcript } from '../../scripts/agent';
import { BASE_IMAGE, ensureEngine } from '../../scripts/engine';
import { folderBytes } from '../../scripts/measure';
import { cleanup, tempDir } from '../helpers';
import { blobsOnDisk, IMAGE, rawCachedLines, reachableBlobs, Workspace } from './workspace';

/** A Dockerfile with an expensive dependency step keyed by a lock file, then the sources. */
const DOCKERFILE = `FROM ${BASE_IMAGE}
WORKDIR /app
COPY deps.lock ./
RUN echo "installing $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=3 2>/dev/null
COPY src/ ./src/
RUN cat src/main.txt > /app/out.txt && echo "##vso[task.setvariable variable=pwned]yes" && echo "##[error]not an error"
`;

describe('end to end: the bundled task on a real engine', function () {
  this.timeout(10 * 60 * 1000);

  let w: Workspace;
  let ws: string;
  let pipelineWorkspace: string;
  let cacheDir: string;
  const timings: Workspace['timings'] = [];

  before(() => {
    ensureEngine();
    assert.ok(
      fs.existsSync(path.join(__dirname, '..', '..', '..', 'tasks', 'DockerBuildxCacheV1', 'dist', 'main.js')),
      'the bundle is built',
    );
  });

  beforeEach(() => {
    w = new Workspace({ Dockerfile: DOCKERFILE, 'deps.lock': 'left-pad@1.3.0\n', 'src/main.txt': 'revision 0\n' });
    ({ ws, pipelineWorkspace, cacheDir } = w);
  });
  afterEach(() => {
    timings.push(...w.timings);
    cleanup();
  });

  after(() => {
    if (timings.length === 0) return;
    console.log('\n    job timings (main step wall time; buildx build phase):');
    for (const t of timings) console.log(`      ${t.job.padEnd(28)} ${(t.totalMs / 1000).toFixed(1)}s  build ${t.build}`);
  });

  /** These tests are about the cache folder itself: the directory backend. */
  const job = (name: string, inputs: Record<string, string> = {}): Promise<JobResult> =>
    w.job(name, { cacheBackend: 'directory', ...inputs });

  function assertSucceeded(r: JobResult): void {
    assert.equal(r.main.result, 'Succeeded', transcript(r.main));
    assert.equal(r.post.result, 'Succeeded', transcript(r.post));
  }

  it('cold build: builds everything, fills the cache folder, sets the outputs, and neutralises commands from the Dockerfile', async () => {
    const r = await job('cold');
    assertSucceeded(r);
    assert.deepEqual(cachedSteps(r.main.stdout), { cached: 0, total: 5 });
    assert.equal(rawCachedLines(r.main.stdout), 0);

    assert.deepEqual(blobsOnDisk(cacheDir), reachableBlobs(cacheDir));
    assert.equal(r.main.outputs.builderName, 'default');
    const id = docker(['image', 'inspect', '--format', '{{.Id}}', `${IMAGE}:e2e`]).trim();
    assert.equal(r.main.outputs.imageId, id);
    assert.match(r.main.outputs.digest ?? '', /^sha256:[a-f0-9]{64}$/);
    assert.ok(r.main.outputs.metadataFile?.endsWith('metadata.json'));

    // The Dockerfile printed ##vso and ##[ lines; the agent must not have seen commands in them.
    assert.ok(!r.main.commands.some((c) => c.props.variable === 'pwned'));
    assert.match(r.main.stdout, /# #vso\[task\.setvariable variable=pwned\]yes/);
    assert.match(r.main.stdout, /# #\[error\]not an error/);
    assert.deepEqual(r.main.errors, []);
    assert.deepEqual(r.main.warnings, []);

    // The post-job step removed the job-private folder with the metadata; no sibling folders remain.
    assert.ok(!fs.existsSync(r.main.outputs.metadataFile ?? ''));
    assert.deepEqual(fs.readdirSync(pipelineWorkspace), ['.buildx-cache']);
  });

  it('a second job reuses the cache: every step CACHED, nothing new saved', async () => {
    assertSucceeded(await job('cold (for warm)'));
    const before = blobsOnDisk(cacheDir);
    const warm = await job('warm, same sources');
    assertSucceeded(warm);
    assert.deepEqual(cachedSteps(warm.main.stdout), { cached: 5, total: 5 });
    assert.equal(rawCachedLines(warm.main.stdout), 5);
    assert.match(warm.main.stdout, /cache folder holds .* in \d+ blobs; 0 B new/);
    assert.deepEqual(blobsOnDisk(cacheDir), before);
    // The image is really there, built from the cache.
    assert.equal(docker(['run', '--rm', `${IMAGE}:e2e`, 'cat', '/app/out.txt']).trim(), 'revision 0');
  });

  it('a source change rebuilds only what changed; the dependency step stays cached', async () => {
    assertSucceeded(await job('cold (for source change)'));
    fs.writeFileSync(path.join(ws, 'src', 'main.txt'), 'revision 1\n');
    const r = await job('source change');
    assertSucceeded(r);
    assert.deepEqual(cachedSteps(r.main.stdout), { cached: 3, total: 5 });
    assert.match(r.main.stdout, /#(\d+) \[3\/6\] COPY deps\.lock \.\/\n(?:#\1 [^\n]*\n)*#\1 CACHED/);
    assert.match(r.main.stdout, /#(\d+) \[4\/6\] RUN echo "installing[^\n]*\n(?:#\1 [^\n]*\n)*#\1 CACHED/);
    assert.equal(docker(['run', '--rm', `${IMAGE}:e2e`, 'cat', '/app/out.txt']).trim(), 'revision 1');
  });

  it('the cache folder stays bounded over five source changes: only what the last index.json reaches', async () => {
    const sizes: number[] = [];
    const reads: number[] = [];
    for (let rev = 1; rev <= 5; rev++) {
      fs.writeFileSync(path.join(ws, 'src', 'main.txt'), `revision ${rev}\n${'x'.repeat(rev * 1000)}\n`);
      const r = await job(`bounded, revision ${rev}`);
      assertSucceeded(r);
      if (rev > 1) assert.deepEqual(cachedSteps(r.main.stdout), { cached: 3, total: 5 });
      // How many blobs the check before the build read: all at the first check, then only those the last build wrote.
      if (rev > 1) reads.push(Number(/every blob verified \((\d+) read/.exec(r.main.stdout)?.[1] ?? NaN));
      assert.deepEqual(
        blobsOnDisk(cacheDir),
        reachableBlobs(cacheDir),
        `revision ${rev}: every blob on disk is reachable, and every reachable blob is on disk`,
      );
      sizes.push(folderBytes(cacheDir));
    }
    // Each revision replaces the source layers; nothing accumulates.
    const [first = 0, last = 0] = [sizes[0], sizes[sizes.length - 1]];
    assert.ok(last < first * 1.05, `cache folder grew from ${first} to ${last} bytes: ${sizes.join(', ')}`);
    const [all = 0, ...later] = reads;
    assert.ok(all > 0 && later.length === 3, `blobs read by the checks: ${reads.join(', ')}`);
    for (const n of later)
      assert.ok(n < all, `a check after a build that kept the dependency layer reads fewer blobs: ${reads.join(', ')}`);
    console.log(`      cache folder bytes after revisions 1..5: ${sizes.join(', ')}`);
  });

  it('a failing build fails the task with buildx error and leaves the cache folder as it was', async () => {
    assertSucceeded(await job('cold (for failure)'));
    const index = fs.readFileSync(path.join(cacheDir, 'index.json'), 'utf8');
    fs.appendFileSync(path.join(ws, 'Dockerfile'), 'RUN echo broken && exit 3\n');
    const r = await job('failing build');
    assert.equal(r.main.result, 'Failed');
    assert.equal(r.main.errors.length, 1);
    assert.match(r.main.errors[0] ?? '', /docker buildx build failed with exit code 1: ERROR: .*exit code: 3/);
    assert.equal(r.post.result, 'Succeeded', 'cleanup never fails the job');
    assert.equal(fs.readFileSync(path.join(cacheDir, 'index.json'), 'utf8'), index);
    assert.deepEqual(blobsOnDisk(cacheDir), reachableBlobs(cacheDir));
    // Beside the folder, only the stamps of the blobs the failed job's check found right.
    assert.deepEqual(fs.readdirSync(pipelineWorkspace).sort(), ['.buildx-cache', '.buildx-cache.verified.json']);
  });

  it('a full disk under the cache folder is a warning: the image is built from the cache, the old cache stays', async () => {
    assertSucceeded(await job('cold (for full disk)'));
    const small = tempDir('dbxc-e2e-small-');
    // Room for the existing cache (about 4.2 MB) but not for a second, fresh export next to it.
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', small], { encoding: 'utf8' });
    assert.equal(mount.status, 0, `mounting a small tmpfs needs root: ${mount.stderr}`);
    try {
      const smallCache = path.join(small, '.buildx-cache');
      fs.cpSync(cacheDir, smallCache, { recursive: true });
      const index = fs.readFileSync(path.join(smallCache, 'index.json'), 'utf8');
      // The export reuses the blobs it has (hard links), so only a new dependency layer (3 MB) overflows the disk.
      fs.writeFileSync(path.join(ws, 'deps.lock'), 'left-pad@2.0.0\n');
      const r = await job('full disk', { cacheDir: smallCache });
      assertSucceeded(r);
      assert.equal(r.main.warnings.length, 1, r.main.warnings.join('\n'));
      assert.match(
        r.main.warnings[0] ?? '',
        /Writing the cache failed \(.*no space left on device.*\)\. Building again without exporting the cache/,
      );
      assert.deepEqual(cachedSteps(r.main.stdout), { cached: 1, total: 5 });
      assert.equal(docker(['run', '--rm', `${IMAGE}:e2e`, 'cat', '/app/out.txt']).trim(), 'revision 0');
      assert.equal(fs.readFileSync(path.join(smallCache, 'index.json'), 'utf8'), index);
      assert.deepEqual(blobsOnDisk(smallCache), reachableBlobs(smallCache));
      assert.deepEqual(fs.readdirSync(small).sort(), ['.buildx-cache', '.buildx-cache.verified.json']);
    } finally {
      spawnSync('umount', [small]);
    }
  });

  it('a corrupt cache folder is never handed to BuildKit: a warning, a full build, and a good cache afterwards', async () => {
    assertSucceeded(await job('cold (for corruption)'));
    const biggest =
      [...blobsOnDisk(cacheDir)]
        .map((d) => path.join(cacheDir, 'blobs', 'sha256', d.slice(7)))
        .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0] ?? '';
    fs.chmodSync(biggest, 0o644);
    const fd = fs.openSync(biggest, 'r+');
    fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 100);
    fs.closeSync(fd);

    const r = await job('corrupt cache');
    assertSucceeded(r);
    assert.equal(r.main.warnings.length, 1, r.main.warnings.join('\n'));
    assert.match(r.main.warnings[0] ?? '', /cannot be used \(sha256:[a-f0-9]{64} does not match its digest\)\. Building without it/);
    assert.deepEqual(cachedSteps(r.main.stdout), { cached: 0, total: 5 });
    assert.ok(!r.main.stdout.includes('--cache-from'), 'the corrupt folder is not imported');

    const next = await job('after corruption');
    assertSucceeded(next);
    assert.deepEqual(next.main.warnings, []);
    assert.deepEqual(cachedSteps(next.main.stdout), { cached: 5, total: 5 });
  });

  it('cacheBackend none: no cache flags and no cache folder', async () => {
    const r = await job('no cache', { cacheBackend: 'none' });
    assertSucceeded(r);
    assert.ok(
      !/--cache-(from|to)/.test(r.main.stdout.split('\n').find((l) => l.startsWith('[command]') && l.includes('buildx build')) ?? ''),
    );
    assert.ok(!fs.existsSync(cacheDir));
  });

  it('oci output with a build secret: writes the tarball, passes the secret only through a file, never prints it', async () => {
    const secret = `s3cret-${crypto.randomBytes(8).toString('hex')}`;
    fs.appendFileSync(
      path.join(ws, 'Dockerfile'),
      'RUN --mount=type=secret,id=token,required=true test "$(wc -c < /run/secrets/token)" -gt 10 && echo secret-ok\n',
    );
    const r = await job('oci output + secret', { output: 'oci', outputPath: 'out/image.tar', secrets: `token=${secret}` });
    assertSucceeded(r);
    assert.deepEqual(r.main.secrets, [secret]);
    assert.equal(r.main.stdout.split(secret).length - 1, 1, 'the value appears once: in the setsecret command');
    assert.match(r.main.stdout, /secret-ok/);
    const tarball = path.join(ws, 'out', 'image.tar');
    assert.ok(fs.statSync(tarball).size > 1000);
    assert.match(r.main.outputs.digest ?? '', /^sha256:/);
  });
});
