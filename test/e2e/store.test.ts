import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { type JobResult, type StepResult, transcript } from '../../scripts/agent';
import { BASE_IMAGE, ensureEngine } from '../../scripts/engine';
import { folderBytes } from '../../scripts/measure';
import { cleanup } from '../helpers';
import { blobSize, reachableBlobs, stepCached, Workspace } from './workspace';

/** A dependency step keyed by a lock file (8 MB of incompressible bytes), then the sources. */
const DOCKERFILE = `FROM ${BASE_IMAGE}
WORKDIR /app
COPY deps.lock ./
RUN echo "installing $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=8 2>/dev/null
COPY src/ ./src/
RUN cat src/main.txt > /app/out.txt && dd if=/dev/urandom of=/app/app.bin bs=1k count=200 2>/dev/null
`;
const DEPS_STEP = '[4/6] RUN echo "installing';

/** Seconds of a phase from the step's log line `<Phase>: 1.2s`. */
function phaseSeconds(step: StepResult, title: string): number {
  const m = new RegExp(`^${title}: ([\\d.]+)s`, 'm').exec(step.stdout);
  return m ? Number(m[1]) : 0;
}

function summaryOf(job: JobResult): string {
  const upload = job.post.commands.find((c) => c.name === 'task.uploadsummary');
  assert.ok(upload, 'the post-job step uploaded a summary');
  return fs.readFileSync(upload.data, 'utf8');
}

function sizes(dir: string, digests: Iterable<string>): number {
  let total = 0;
  for (const d of digests) total += blobSize(dir, d);
  return total;
}

describe('end to end: the local store over ten revisions, each a fresh job', function () {
  this.timeout(15 * 60 * 1000);
  let w: Workspace;

  before(() => ensureEngine());
  beforeEach(() => {
    w = new Workspace({ Dockerfile: DOCKERFILE, 'deps.lock': 'left-pad@1.3.0\n', 'src/main.txt': 'revision 0\n' });
  });
  afterEach(cleanup);

  const storeBlobs = (): Set<string> => {
    const dir = path.join(w.storeDir, 'v1', 'blobs', 'sha256');
    return new Set(fs.existsSync(dir) ? fs.readdirSync(dir).map((h) => `sha256:${h}`) : []);
  };
  const storeBytes = (): number => folderBytes(path.join(w.storeDir, 'v1', 'blobs'));
  const storeBlobBytes = (digests: Iterable<string>): number => sizes(path.join(w.storeDir, 'v1'), digests);

  it('never goes stale and never grows: the dependency step is cached again right after each change, and the store stays one cache big', async () => {
    const rows: string[] = [];
    let previousReach = new Set<string>();
    for (let rev = 1; rev <= 10; rev++) {
      w.write('src/main.txt', `revision ${rev}\n`);
      const depsChanged = rev === 5 || rev === 9;
      if (depsChanged) w.write('deps.lock', `left-pad@1.3.${rev}\n`);
      const before = storeBlobs();
      const job = await w.job(`revision ${rev}`);
      assert.equal(job.main.result, 'Succeeded', transcript(job.main));
      assert.equal(job.post.result, 'Succeeded', transcript(job.post));
      assert.deepEqual(job.main.warnings, []);
      assert.deepEqual(job.post.warnings, []);

      const hit = job.main.outputs.cacheHit;
      assert.equal(hit, rev === 1 ? 'false' : 'true', `revision ${rev}: the default key is the same every run`);
      const depsCached = stepCached(job.main.stdout, DEPS_STEP);
      assert.equal(
        depsCached,
        !(rev === 1 || depsChanged),
        `revision ${rev}: the dependency step ${depsCached ? 'was' : 'was not'} cached`,
      );

      // What this build's cache reaches, and what changed since the last one.
      const reach = reachableBlobs(w.cacheDir);
      const reachBytes = sizes(w.cacheDir, reach);
      const changed = [...reach].filter((d) => !previousReach.has(d));
      const changedBytes = sizes(w.cacheDir, changed);
      const added = [...storeBlobs()].filter((d) => !before.has(d));
      const savedBytes = storeBlobBytes(added);
      const total = storeBytes();

      assert.ok(total <= 1.3 * reachBytes, `revision ${rev}: the store holds ${total} bytes for a cache of ${reachBytes}`);
      if (rev > 1 && !depsChanged) {
        assert.ok(
          savedBytes > 0 && savedBytes <= 1.2 * changedBytes,
          `revision ${rev}: saved ${savedBytes} bytes for ${changedBytes} bytes of changed layers`,
        );
        assert.ok(savedBytes < 8e6, 'the dependency layer is not saved again');
      }
      const summary = summaryOf(job);
      assert.match(summary, new RegExp(`\\| Cache hit \\| .*\`${hit}\``));
      assert.match(summary, /\| Steps cached \| \d of 5 \|/);

      const overhead = phaseSeconds(job.main, 'Cache key') + phaseSeconds(job.main, 'Restore cache') + phaseSeconds(job.post, 'Save cache');
      const restored = /Restored \(cacheHit \w+\) .*: ([\d.]+ \w+) in \d+ blobs/.exec(job.main.stdout)?.[1] ?? '0 B';
      rows.push(
        [
          String(rev).padStart(3),
          hit.padEnd(7),
          (depsCached ? 'yes' : 'no').padEnd(5),
          restored.padStart(9),
          `${(savedBytes / 1e6).toFixed(2)} MB`.padStart(9),
          `${(changedBytes / 1e6).toFixed(2)} MB`.padStart(9),
          `${(total / 1e6).toFixed(2)} MB`.padStart(9),
          `${(reachBytes / 1e6).toFixed(2)} MB`.padStart(9),
          `${overhead.toFixed(1)}s`.padStart(6),
          `${phaseSeconds(job.main, 'Build').toFixed(1)}s`.padStart(6),
        ].join(' '),
      );
      previousReach = reach;
    }
    console.log('\n      rev hit     deps  restored     saved   changed     store     cache   ovh.  build');
    for (const row of rows) console.log(`      ${row}`);
  });

  it('restore keys: a new lock file restores the older entry as inexact; a branch reads main and writes its own scope; a fork only reads', async () => {
    const inputs = { cacheKey: 'buildx | "Linux" | deps.lock', restoreKeys: 'buildx | "Linux"' };
    const first = await w.job('main, lock v1', inputs);
    assert.equal(first.main.outputs.cacheHit, 'false');

    w.write('deps.lock', 'left-pad@2.0.0\n');
    const second = await w.job('main, lock v2', inputs);
    assert.equal(second.main.outputs.cacheHit, 'inexact');
    assert.equal(second.main.outputs.cacheRestoredKey, first.main.outputs.cacheKey);
    assert.notEqual(second.main.outputs.cacheKey, first.main.outputs.cacheKey);
    assert.ok(stepCached(second.main.stdout, '[2/6] WORKDIR'));
    assert.ok(!stepCached(second.main.stdout, DEPS_STEP));

    const feature = await w.job('feature branch', inputs, { 'Build.SourceBranch': 'refs/heads/feature/x' });
    assert.equal(feature.main.outputs.cacheHit, 'true', 'the exact key, found in the default branch scope');
    assert.ok(stepCached(feature.main.stdout, DEPS_STEP));
    assert.match(
      feature.post.stdout,
      /did not change: its last use was recorded|Saved a new version of .* in scope refs\/heads\/feature\/x/,
    );

    const fork = await w.job('fork pull request', inputs, {
      'Build.SourceBranch': 'refs/pull/9/merge',
      'System.PullRequest.TargetBranch': 'refs/heads/main',
      'System.PullRequest.IsFork': 'True',
    });
    assert.equal(fork.main.outputs.cacheHit, 'true');
    assert.match(fork.main.stdout, /pull request from a fork, so the cache is read-only/);
    assert.ok(!/^##\[group\]Save cache/m.test(fork.post.stdout), 'a fork never saves');
    const scopes = fs.readdirSync(path.join(w.storeDir, 'v1', 'entries'));
    assert.ok(!scopes.some((s) => s.includes('pull')), `scopes: ${scopes.join(', ')}`);
  });

  it('a corrupt blob in the store is skipped with a warning, the build goes on, and the save puts a good copy back', async () => {
    assert.equal((await w.job('fill the store')).post.result, 'Succeeded');
    const blobs = path.join(w.storeDir, 'v1', 'blobs', 'sha256');
    const biggest =
      fs
        .readdirSync(blobs)
        .map((h) => path.join(blobs, h))
        .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0] ?? '';
    fs.chmodSync(biggest, 0o644);
    const fd = fs.openSync(biggest, 'r+');
    fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 1000);
    fs.closeSync(fd);

    const damaged = await w.job('corrupt store blob');
    assert.equal(damaged.main.result, 'Succeeded');
    assert.equal(damaged.main.outputs.cacheHit, 'false');
    assert.equal(damaged.main.warnings.length, 1);
    assert.match(
      damaged.main.warnings[0] ?? '',
      /Skipped a cache entry that cannot be used, as if it were absent: .*is corrupt in the store/,
    );

    const healed = await w.job('after the repair');
    assert.equal(healed.main.outputs.cacheHit, 'true');
    assert.deepEqual(healed.main.warnings, []);
    assert.ok(stepCached(healed.main.stdout, DEPS_STEP));
  });

  it('a store blob changed with its mtime put back (as bit rot leaves it) fails in BuildKit, and the build runs again without the cache', async () => {
    assert.equal((await w.job('fill the store (bit rot)')).post.result, 'Succeeded');
    const blobs = path.join(w.storeDir, 'v1', 'blobs', 'sha256');
    const biggest =
      fs
        .readdirSync(blobs)
        .map((h) => path.join(blobs, h))
        .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0] ?? '';
    // Bit rot keeps the mtime to the nanosecond. Give the blob a whole-second mtime, let a job seal it,
    // then change bytes and put that mtime back exactly.
    fs.utimesSync(biggest, 1_700_000_000, 1_700_000_000);
    assert.equal((await w.job('reseal')).main.outputs.cacheHit, 'true');
    fs.chmodSync(biggest, 0o644);
    const fd = fs.openSync(biggest, 'r+');
    fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 1000);
    fs.closeSync(fd);
    fs.utimesSync(biggest, 1_700_000_000, 1_700_000_000);

    const rotten = await w.job('bit rot');
    assert.equal(rotten.main.result, 'Succeeded', transcript(rotten.main));
    assert.equal(rotten.main.outputs.cacheHit, 'true', 'the seal trusted the blob');
    assert.equal(rotten.main.warnings.length, 1, rotten.main.warnings.join('\n'));
    assert.match(rotten.main.warnings[0] ?? '', /A restored cache blob does not match its digest/);

    const healed = await w.job('after bit rot');
    assert.equal(healed.main.result, 'Succeeded');
    assert.deepEqual([...healed.main.warnings, ...healed.post.warnings], []);
    assert.equal(healed.main.outputs.cacheHit, 'true');
    assert.ok(stepCached(healed.main.stdout, DEPS_STEP));
  });

  it('saveCache afterBuild saves in the main step; never keeps the store read-only', async () => {
    const after = await w.job('afterBuild', { saveCache: 'afterBuild' });
    assert.match(after.main.stdout, /^##\[group\]Save cache$/m);
    assert.match(after.main.stdout, /^Save cache: [\d.]+s/m);
    assert.ok(!/^##\[group\]Save cache/m.test(after.post.stdout), 'the post-job step does not save again');
    const entries = (): number =>
      fs.readdirSync(path.join(w.storeDir, 'v1', 'entries'), { recursive: true }).filter((f) => String(f).endsWith('.json')).length;
    assert.equal(entries(), 1);

    w.write('src/main.txt', 'a change the store never sees\n');
    const readOnly = await w.job('never', { saveCache: 'never' });
    assert.equal(readOnly.main.outputs.cacheHit, 'true');
    assert.ok(!readOnly.main.stdout.includes('--cache-to'));
    assert.equal(entries(), 1);
  });
});
