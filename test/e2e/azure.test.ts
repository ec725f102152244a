import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import type { ContainerClient } from '@azure/storage-blob';
import { type JobResult, transcript } from '../../scripts/agent';
import { connectionString, EMULATOR_KEY, ensureAzurite, freshContainer, type Azurite } from '../../scripts/azurite';
import { ensureEngine } from '../../scripts/engine';
import { cleanup, linesShowing } from '../helpers';
import { DEPS_FILES, DEPS_STEP, reachableBlobs, stepCached, Workspace } from './workspace';

async function names(container: ContainerClient, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const blob of container.listBlobsFlat({ prefix })) out.push(blob.name);
  return out.sort();
}

function summaryOf(job: JobResult): string {
  const upload = job.post.commands.find((c) => c.name === 'task.uploadsummary');
  assert.ok(upload, 'the post-job step uploaded a summary');
  return fs.readFileSync(upload.data, 'utf8');
}

describe('end to end: the Azure Blob store on Azurite, each job on a fresh agent', function () {
  this.timeout(10 * 60 * 1000);
  let azurite: Azurite;
  let w: Workspace;
  let container: ContainerClient;

  before(() => {
    ensureEngine();
    azurite = ensureAzurite();
  });
  beforeEach(() => {
    w = new Workspace(DEPS_FILES);
    container = freshContainer(azurite.blobUrl, 'e2e');
  });
  afterEach(cleanup);

  /** A job on a new agent: no cache folder and no engine cache; only the container remembers. */
  const freshJob = (name: string, inputs: Record<string, string> = {}): Promise<JobResult> => {
    fs.rmSync(w.cacheDir, { recursive: true, force: true });
    return w.job(name, {
      cacheBackend: 'azureBlob',
      // The store restored into the cache folder (cacheTransport auto is direct for azureBlob: direct.test.ts).
      cacheTransport: 'folder',
      storageConnectionString: connectionString(azurite.blobUrl),
      storageContainer: container.containerName,
      ...inputs,
    });
  };

  it('saves after the job, and the next job on a new agent restores it: the dependency step is cached, and only the blobs the cache reaches are stored', async () => {
    const first = await freshJob('first');
    assert.equal(first.main.result, 'Succeeded', transcript(first.main));
    assert.equal(first.post.result, 'Succeeded', transcript(first.post));
    assert.equal(first.main.outputs.cacheHit, 'false');
    assert.deepEqual([...first.main.warnings, ...first.post.warnings], []);
    assert.match(
      first.post.stdout,
      /the store is the Azure Blob container http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/e2e-\w+, reached with a connection string/,
    );
    assert.match(first.post.stdout, /Saved a new version of .* in scope refs\/heads\/main/);
    const reach = reachableBlobs(w.cacheDir);
    const stored = (await names(container, 'v1/blobs/')).map((n) => `sha256:${path.basename(n)}`);
    assert.deepEqual(new Set(stored), reach, 'the container holds exactly the blobs the saved index reaches');
    assert.equal((await names(container, 'v1/entries/')).length, 1);

    w.write('src/main.txt', 'revision 1\n');
    const second = await freshJob('second: a source change on a new agent');
    assert.equal(second.main.result, 'Succeeded', transcript(second.main));
    assert.equal(second.main.outputs.cacheHit, 'true');
    assert.ok(stepCached(second.main.stdout, DEPS_STEP), 'the dependency step came from the restored cache');
    assert.ok(!stepCached(second.main.stdout, '[6/6] RUN cat src/main.txt'));
    assert.match(summaryOf(second), /\| Bytes downloaded \| [\d.]+ \w+ \|/);
    assert.deepEqual([...second.main.warnings, ...second.post.warnings], []);

    // The cache changed in one layer: the save uploads that, not the whole cache again.
    const uploaded = /Saved a new version of .*: ([\d.]+ \w+) in (\d+) new blobs/.exec(second.post.stdout);
    assert.ok(uploaded, second.post.stdout);
    assert.ok(Number(uploaded[2]) <= 4, `new blobs: ${uploaded[2]}`);

    // The account key never reaches the log, the task state or the summary.
    for (const job of [first, second]) {
      for (const step of [job.main, job.post]) {
        assert.deepEqual(linesShowing(step.stdout, EMULATOR_KEY), []);
        assert.ok(!step.stderr.includes(EMULATOR_KEY));
        assert.ok(!JSON.stringify(step.taskVariables).includes(EMULATOR_KEY));
      }
      assert.ok(!summaryOf(job).includes(EMULATOR_KEY));
    }
  });

  it('a blob damaged in the container: the entry is skipped with a warning, the build goes on, and the save puts a good copy back', async () => {
    assert.equal((await freshJob('fill the container')).post.result, 'Succeeded');
    const blobs = await Promise.all(
      (await names(container, 'v1/blobs/')).map(async (n) => ({
        n,
        size: (await container.getBlobClient(n).getProperties()).contentLength ?? 0,
      })),
    );
    const biggest = blobs.sort((a, b) => b.size - a.size)[0];
    assert.ok(biggest);
    await container.getBlockBlobClient(biggest.n).upload('not the blob', 12);

    const damaged = await freshJob('damaged blob');
    assert.equal(damaged.main.result, 'Succeeded');
    assert.equal(damaged.main.outputs.cacheHit, 'false');
    assert.equal(damaged.main.warnings.length, 1, damaged.main.warnings.join('\n'));
    assert.match(damaged.main.warnings[0] ?? '', /Skipped a cache entry that cannot be used, as if it were absent: .*sha256/);
    assert.equal(damaged.post.result, 'Succeeded');

    const healed = await freshJob('after the repair');
    assert.equal(healed.main.outputs.cacheHit, 'true');
    assert.deepEqual(healed.main.warnings, []);
    assert.ok(stepCached(healed.main.stdout, DEPS_STEP));
  });

  it('an unreachable store: warnings, and the job builds and succeeds without the cache', async () => {
    const unreachable = connectionString('http://127.0.0.1:9/devstoreaccount1');
    const job = await w.job(
      'store down',
      { cacheBackend: 'azureBlob', cacheTransport: 'folder', storageConnectionString: unreachable },
      {},
      {},
    );
    assert.equal(job.main.result, 'Succeeded', transcript(job.main));
    assert.equal(job.post.result, 'Succeeded', transcript(job.post));
    assert.equal(job.main.outputs.cacheHit, 'false');
    assert.match(job.main.warnings[0] ?? '', /The cache could not be restored from the Azure Blob container .*ECONNREFUSED/);
    assert.match(job.post.warnings[0] ?? '', /The cache could not be saved to the Azure Blob container .*ECONNREFUSED/);
  });
});
