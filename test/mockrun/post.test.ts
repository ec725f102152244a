import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { Readable } from 'stream';
import { cleanup, tempDir, writeTree } from '../helpers';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { cacheLayout, writeLayout } from '../oci-fixture';
import { runScenario, type MockRun } from './harness';
import { DOCKER } from './types';
import { agentTemp, assertWarnings, freshPostJob, ok } from './job';

describe('mock-run: the post-job step', function () {
  this.timeout(30000);
  beforeEach(freshPostJob);
  afterEach(cleanup);

  const state = (s: object): Record<string, string> => ({ 'DockerBuildxCache.State': JSON.stringify({ version: 1, cleanup: [], ...s }) });

  /** A state whose save points at a real cache folder and a real store. */
  function withSave(
    when: 'onSuccess' | 'always',
    extra: { storePath?: string; failOnError?: boolean } = {},
  ): { taskVariables: Record<string, string>; storePath: string } {
    const cacheDir = path.join(tempDir(), '.buildx-cache');
    const layout = cacheLayout(['deps', 'app']);
    writeLayout(cacheDir, layout.root, layout.blobs);
    const storePath = extra.storePath ?? path.join(tempDir(), 'store');
    const save = {
      store: { kind: 'local', path: storePath },
      cacheDir,
      segments: ['buildx', '"Linux"', 'app'],
      scope: 'refs/heads/main',
      retentionDays: 7,
      failOnError: extra.failOnError ?? false,
      when,
    };
    const summary = { backend: 'local', image: 'app:latest', key: 'buildx|"Linux"|app', hit: 'false', phases: [['Build', 1200]] };
    return { taskVariables: state({ save, summary, removeBuilder: 'b1' }), storePath };
  }
  const withRm = { [`${DOCKER} buildx rm b1`]: ok };
  const summaryFile = (run: MockRun): string => {
    const m = /##vso\[task\.uploadsummary\](.*)$/m.exec(run.stdout);
    assert.ok(m, 'a summary was uploaded');
    return fs.readFileSync(m[1] ?? '', 'utf8');
  };

  describe('an export that came through the registry facade (cacheTransport direct)', () => {
    /** An upload of a layout's blobs into a real local store, as the facade leaves it, and the state that hands it on. */
    async function uploaded(
      when: 'onSuccess' | 'always',
      withLayout: boolean,
    ): Promise<{ taskVariables: Record<string, string>; store: LocalStore; leaseItems: () => string[] }> {
      const storePath = path.join(tempDir(), 'store');
      const store = new LocalStore(storePath);
      const layout = cacheLayout(['deps', 'app']);
      const sink = await store.beginUpload();
      for (const b of layout.blobs)
        await sink.put({ digest: b.digest, size: b.size }, Readable.from([b.data]), new AbortController().signal);
      await sink.settle();
      const index = {
        schemaVersion: 2,
        manifests: [
          {
            mediaType: layout.root.mediaType,
            digest: layout.root.digest,
            size: layout.root.size,
            annotations: { 'org.opencontainers.image.ref.name': 'latest' },
          },
        ],
      };
      const save = {
        store: { kind: 'local', path: storePath },
        cacheDir: path.join(tempDir(), '.buildx-cache'),
        segments: ['buildx', '"Linux"', 'app'],
        scope: 'refs/heads/main',
        retentionDays: 7,
        failOnError: false,
        when,
        direct: {
          leaseId: sink.leaseId,
          ...(withLayout ? { layout: { index, blobs: layout.blobs.map((b) => ({ digest: b.digest, size: b.size })) } } : {}),
        },
      };
      const summary = { backend: 'local', image: 'app:latest', phases: [] };
      const leases = path.join(storePath, 'v1', 'leases');
      const leaseItems = (): string[] =>
        fs.existsSync(leases) ? fs.readdirSync(leases).filter((n) => n.startsWith(`${sink.leaseId}.`)) : [];
      assert.notDeepEqual(leaseItems(), [], 'the upload holds its blobs under its lease');
      return { taskVariables: state({ save, summary }), store, leaseItems };
    }
    // the job's status, saveCache, whether the export arrived complete → whether an entry is written
    const table: [string, 'onSuccess' | 'always', boolean, boolean][] = [
      ['Succeeded', 'onSuccess', true, true],
      ['Failed', 'onSuccess', true, false],
      ['Failed', 'always', true, true],
      ['Succeeded', 'onSuccess', false, false],
    ];
    for (const [status, when, complete, saves] of table) {
      it(`${status}, ${when}, ${complete ? 'a complete export' : 'no complete export'}: ${saves ? 'the layout becomes the entry' : 'no entry, the upload ended'}`, async () => {
        const { taskVariables, store, leaseItems } = await uploaded(when, complete);
        const run = await runScenario({
          step: 'post',
          variables: { 'Agent.JobStatus': status, 'Agent.TempDirectory': agentTemp },
          taskVariables,
        });
        assert.ok(run.succeeded, run.stdout);
        assert.equal((await store.stats()).entries, saves ? 1 : 0);
        if (saves) assert.match(run.stdout, /loc_mock_Saved buildx\|"Linux"\|app refs\/heads\/main/);
        else assert.doesNotMatch(run.stdout, /loc_mock_Saved /);
        // Saved or not, the upload is over: nothing of its lease is left to pin its blobs.
        assert.deepEqual(leaseItems(), []);
        assert.deepEqual(run.warnings, []);
      });
    }
  });

  const statuses: [string, 'onSuccess' | 'always', string, boolean][] = [
    ['saves after a job that succeeded', 'onSuccess', 'Succeeded', true],
    ['saves after a job that succeeded with issues', 'onSuccess', 'SucceededWithIssues', true],
    ['does not save after a failed job with onSuccess', 'onSuccess', 'Failed', false],
    ['does not save after a canceled job with onSuccess', 'onSuccess', 'Canceled', false],
    ['saves after a failed job with always', 'always', 'Failed', true],
  ];
  for (const [name, when, status, saves] of statuses) {
    it(`${name} (${status}), uploads the summary and still cleans up`, async () => {
      const { taskVariables, storePath } = withSave(when);
      const run = await runScenario({
        step: 'post',
        variables: { 'Agent.JobStatus': status, 'Agent.TempDirectory': agentTemp },
        taskVariables,
        exec: withRm,
      });
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, [`${DOCKER} buildx rm b1`]);
      const stats = await new LocalStore(storePath).stats();
      assert.equal(stats.entries, saves ? 1 : 0);
      const summary = summaryFile(run);
      assert.match(summary, /\| Cache backend \| `local` \|/);
      if (saves) {
        assert.match(run.stdout, /loc_mock_Saved buildx\|"Linux"\|app refs\/heads\/main/);
        assert.match(summary, /\| Bytes saved \| \d+ B in 4 new blobs \|/);
        assert.match(summary, /\| Store size \| .* in 4 blobs, 1 entries \|/);
      } else {
        assert.match(run.stdout, new RegExp(`loc_mock_SaveSkippedJobStatus ${status}`));
        assert.match(summary, new RegExp(`\\| Bytes saved \\| nothing \\(the job's status is ${status}\\)`));
      }
    });
  }

  it('a failed save is a warning, and the summary says so', async () => {
    const blocker = path.join(tempDir(), 'not-a-folder');
    fs.writeFileSync(blocker, 'x');
    const { taskVariables } = withSave('always', { storePath: path.join(blocker, 'store') });
    const run = await runScenario({
      step: 'post',
      variables: { 'Agent.JobStatus': 'Succeeded', 'Agent.TempDirectory': agentTemp },
      taskVariables,
      exec: withRm,
    });
    assert.ok(run.succeeded, run.stdout);
    assertWarnings(run, [/^loc_mock_WarnSaveFailed local store .*not-a-folder\/store ENOTDIR/]);
    assert.match(summaryFile(run), /\| Bytes saved \| nothing \(see the warning in the log\) \|/);
  });

  it('with failOnCacheError a failed save fails the step, after the summary and the cleanup', async () => {
    const blocker = path.join(tempDir(), 'not-a-folder');
    fs.writeFileSync(blocker, 'x');
    const { taskVariables } = withSave('always', { storePath: path.join(blocker, 'store'), failOnError: true });
    const run = await runScenario({
      step: 'post',
      variables: { 'Agent.JobStatus': 'Succeeded', 'Agent.TempDirectory': agentTemp },
      taskVariables,
      exec: withRm,
    });
    assert.ok(run.runner.failed);
    assert.match(run.errors[0] ?? '', /^loc_mock_WarnSaveFailed local store .*ENOTDIR/);
    assert.deepEqual(run.commands, [`${DOCKER} buildx rm b1`]);
    assert.match(summaryFile(run), /\| Bytes saved \| nothing \(loc_mock_WarnSaveFailed/);
  });

  it('a builder the agent keeps: pruned to its limit, never removed', async () => {
    const run = await runScenario({
      step: 'post',
      variables: { 'Agent.JobStatus': 'Succeeded' },
      taskVariables: state({ keepBuilder: { name: 'kept', keepStorage: '10GB' } }),
      exec: { [`${DOCKER} buildx prune --builder kept --all --force --keep-storage 10GB`]: ok },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, [`${DOCKER} buildx prune --builder kept --all --force --keep-storage 10GB`]);
    assert.match(run.stdout, /loc_mock_PhasePruneBuilder: [\d.]+s, loc_mock_BuilderPruned kept 10GB/);
    assert.match(run.stdout, /loc_mock_BuilderKept kept/);
  });

  it('a builder the agent keeps with builderKeepStorage 0: neither pruned nor removed', async () => {
    const run = await runScenario({ step: 'post', taskVariables: state({ keepBuilder: { name: 'kept' } }), exec: {} });
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, []);
    assert.match(run.stdout, /loc_mock_BuilderKept kept/);
  });

  it('a kept builder that cannot be pruned: a warning, never a failure', async () => {
    const run = await runScenario({
      step: 'post',
      variables: { 'Agent.JobStatus': 'Succeeded' },
      taskVariables: state({ keepBuilder: { name: 'kept', keepStorage: '1GB' } }),
      exec: {
        [`${DOCKER} buildx prune --builder kept --all --force --keep-storage 1GB`]: {
          code: 1,
          stdout: '',
          stderr: 'ERROR: no builder "kept" found',
        },
      },
    });
    assert.ok(run.succeeded, run.stdout);
    assertWarnings(run, [/^loc_mock_WarnBuilderPruneFailed kept 1GB ERROR: no builder "kept" found/]);
  });

  // the builder left to the machine or not → the docker commands, the line that says so, the line that must not be there
  const builderWork: [string, boolean, string[], RegExp, RegExp][] = [
    [
      'removes the builder the main step created',
      false,
      [`${DOCKER} buildx rm b1`],
      /loc_mock_BuilderRemoved b1/,
      /loc_mock_BuilderLeftToMachine/,
    ],
    ['leaves a builder that goes with the machine, and says so', true, [], /loc_mock_BuilderLeftToMachine b1/, /loc_mock_BuilderRemoved/],
  ];
  for (const [name, leaveBuilder, commands, says, never] of builderWork) {
    it(`${name}; deletes the job-private folder either way`, async () => {
      const jobDir = path.join(agentTemp, 'docker-buildx-cache-x');
      writeTree(jobDir, { 'secrets/secret-0': 'value' });
      const run = await runScenario({
        step: 'post',
        variables: { 'Agent.JobStatus': 'Succeeded' },
        taskVariables: state({ removeBuilder: 'b1', ...(leaveBuilder ? { leaveBuilder } : {}), cleanup: [jobDir] }),
        exec: Object.fromEntries(commands.map((c) => [c, ok])),
      });
      assert.ok(run.succeeded, run.stdout);
      assert.deepEqual(run.commands, commands);
      assert.match(run.stdout, says);
      assert.doesNotMatch(run.stdout, never);
      assert.ok(!fs.existsSync(jobDir));
    });
  }

  it('warns but never fails when the builder cannot be removed', async () => {
    const run = await runScenario({
      step: 'post',
      variables: { 'Agent.JobStatus': 'Failed' },
      taskVariables: state({ removeBuilder: 'b1' }),
      exec: { [`${DOCKER} buildx rm b1`]: { code: 1, stdout: '', stderr: 'ERROR: no builder "b1" found' } },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.errors.length, 0);
    assertWarnings(run, [/^loc_mock_WarnBuilderRemoveFailed b1 ERROR: no builder "b1" found/]);
  });

  describe('what a main step stopped mid-build left in the engine from the facade (engineRepository)', () => {
    const repo = '127.0.0.1:40123/buildx-cache';
    // The mock's answers are keyed by the arguments joined; the [command] line quotes the one with a space.
    const ls = `${DOCKER} image ls --no-trunc --format {{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}} ${repo}`;
    const lsLine = `${DOCKER} image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}' ${repo}`;
    const listed = `${repo}:prefetch ${repo}@sha256:${'a'.repeat(64)}\n${repo}:<none> ${repo}@sha256:${'b'.repeat(64)}\n`;
    const refs = [`${repo}:prefetch`, `${repo}@sha256:${'a'.repeat(64)}`, `${repo}@sha256:${'b'.repeat(64)}`];
    const rm = refs.map((ref) => `${DOCKER} image rm ${ref}`);
    const removed = Object.fromEntries(rm.map((c) => [c, ok]));
    const conflict = { code: 1, stdout: '', stderr: 'Error response from daemon: conflict' };
    const cases: [string, Record<string, { code: number; stdout: string; stderr?: string }>, string[], RegExp][] = [
      [
        'the prefetch tag and a pulled digest: removed, one by one',
        { [ls]: { code: 0, stdout: listed }, ...removed },
        [lsLine, ...rm],
        new RegExp(`loc_mock_EngineLeftoversRemoved ${refs.join(', ').replace(/[.:]/g, '\\$&')}`),
      ],
      [
        'nothing left (the pulls had not begun): nothing removed',
        { [ls]: { code: 0, stdout: '' } },
        [lsLine],
        /^(?![\s\S]*EngineLeftovers)/,
      ],
      [
        'one removal that fails: the others still go, and a line in the log says which failed, never a warning',
        { [ls]: { code: 0, stdout: listed }, ...removed, [rm[0] ?? '']: conflict },
        [lsLine, ...rm],
        /loc_mock_EngineLeftoversRemoved [^\n]*@sha256:a+, [^\n]*@sha256:b+\n[\s\S]*loc_mock_EngineLeftoversNotRemoved Error response from daemon: conflict 127\.0\.0\.1:40123\/buildx-cache/,
      ],
    ];
    for (const [what, exec, commands, says] of cases)
      it(what, async () => {
        const run = await runScenario({ step: 'post', taskVariables: state({ engineRepository: repo }), exec });
        assert.ok(run.succeeded, run.stdout);
        assert.deepEqual(run.commands, commands);
        assert.match(run.stdout, says);
        assert.deepEqual(run.warnings, []);
      });
  });

  it('removes nothing it did not create', async () => {
    const run = await runScenario({ step: 'post', taskVariables: state({}), exec: {} });
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, []);
  });

  it('does nothing when the main step stopped before it saved any state', async () => {
    const run = await runScenario({ step: 'post', exec: {} });
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands, []);
    assert.match(run.stdout, /loc_mock_PostNothingToDo/);
  });
});
