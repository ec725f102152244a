import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { sameAsAuto, taskSpec, type Alternative, type JobMeasure } from '../../scripts/bench-pipelines';
import { attribute, breakdown, entryBytes, renderReport, type Results } from '../../scripts/bench-report';
import { writeReport, type DockerCall } from '../../scripts/measure';
import { cleanup, tempDir } from '../helpers';

describe('benchmark reports', () => {
  after(cleanup);

  const cases: [string, string[], string][] = [
    ['go under out/ by default, so a run leaves the tree clean', ['node', 'bench.js'], 'out/BENCHMARKS.md'],
    ['go to the repository root with --update', ['node', 'bench.js', '--update'], 'BENCHMARKS.md'],
  ];
  for (const [name, argv, where] of cases) {
    it(name, () => {
      const root = tempDir('dbxc-report-');
      const file = writeReport(root, 'BENCHMARKS.md', '# report\n', argv);
      assert.equal(path.relative(root, file), where);
      assert.equal(fs.readFileSync(file, 'utf8'), '# report\n');
      assert.deepEqual(fs.readdirSync(root).sort(), where === 'BENCHMARKS.md' ? ['BENCHMARKS.md'] : ['out']);
    });
  }
});

/** A job of the benchmark with what a test cares about; the rest as a warm job that moved nothing. */
function job(alt: Alternative, n: number, jobS: number, more: Partial<JobMeasure> = {}): JobMeasure {
  return {
    alt,
    engine: 'hosted',
    workload: 'revisions',
    rev: { n, kind: n === 1 ? 'cold' : 'source', files: {} },
    hit: 'true',
    depsCached: n > 1,
    cached: 3,
    total: 5,
    jobS,
    buildS: jobS / 2,
    loadS: 0,
    cacheExportS: 0,
    restoreS: 0,
    saveS: 0,
    downloaded: 0,
    uploaded: 0,
    restoredBytes: 0,
    savedBytes: 0,
    storeBytes: 0,
    imageOk: true,
    ...more,
  };
}

function results(jobs: JobMeasure[]): Results {
  return { jobs, profiles: {}, argv: [], minutes: 1, nodeStartMs: 50, shimMs: 2 };
}

/** The row of the targets table whose target has `what`. */
const targetRow = (report: string, what: RegExp): string => report.split('\n').find((l) => l.startsWith('| #') && what.test(l)) ?? '';

describe('benchmark report: the task alternatives and their transports', () => {
  const specs: [Alternative, ReturnType<typeof taskSpec>][] = [
    ['task-local', { backend: 'local' }],
    ['task-azureBlob', { backend: 'azureBlob' }],
    ['task-local-direct', { backend: 'local', transport: 'direct' }],
    ['task-azureBlob-folder', { backend: 'azureBlob', transport: 'folder' }],
    ['task-registry', { backend: 'registry' }],
  ];
  for (const [alt, spec] of specs) it(`${alt}: ${JSON.stringify(spec)}`, () => assert.deepEqual(taskSpec(alt), spec));

  const folderLog = 'folder (cacheTransport auto picks folder for cacheBackend local).';
  const directLog = 'direct, through a registry on 127.0.0.1:1 (cacheTransport auto picks direct for cacheBackend azureBlob).';
  const skips: [string, JobMeasure[], Alternative, string | undefined][] = [
    [
      'auto went through folder: the folder pipeline is skipped',
      [job('task-local', 1, 1, { transport: folderLog })],
      'task-local-folder',
      'folder',
    ],
    [
      'auto went through folder: the direct pipeline runs',
      [job('task-local', 1, 1, { transport: folderLog })],
      'task-local-direct',
      undefined,
    ],
    ['auto went through direct', [job('task-azureBlob', 1, 1, { transport: directLog })], 'task-azureBlob-direct', 'direct'],
    ['another store is not this one', [job('task-azureBlob', 1, 1, { transport: directLog })], 'task-local-direct', undefined],
    [
      'another engine is not this one',
      [job('task-local', 1, 1, { engine: 'self-hosted', transport: folderLog })],
      'task-local-folder',
      undefined,
    ],
    ['auto named no transport: both run', [job('task-local', 1, 1)], 'task-local-folder', undefined],
    ['not a transport pipeline', [job('task-local', 1, 1, { transport: folderLog })], 'task-local', undefined],
  ];
  for (const [name, jobs, alt, skipped] of skips)
    it(`skips a transport pipeline that measures what auto did: ${name}`, () => assert.equal(sameAsAuto(jobs, 'hosted', alt), skipped));

  it('compares the local store through the transport each pipeline used, as its log named it', () => {
    const folder = { transport: 'folder (cacheTransport auto picks folder for cacheBackend local).' };
    const direct = { transport: 'direct, through a registry on 127.0.0.1:1234 (cacheTransport says so).' };
    const report = renderReport(
      results([
        ...[1, 2, 3].map((n) => job('task-local', n, n === 1 ? 10 : 2, folder)),
        ...[1, 2, 3].map((n) => job('task-local-direct', n, n === 1 ? 10 : 1.8, direct)),
      ]),
    );
    assert.match(
      targetRow(report, /through the direct transport no slower/),
      /task, local, cacheTransport: direct 1\.80 s against task, local \(folder\) 2\.00 s: 0\.90× \| \*\*met\*\*/,
    );
    assert.match(report, /task, local: \?; transport folder \(cacheTransport auto picks folder for cacheBackend local\)\./);
  });

  it("measures azureBlob against BuildKit's azblob through the direct transport, and shows the folder's figure beside it", () => {
    const report = renderReport(
      results([
        ...[1, 2].map((n) => job('task-azureBlob', n, 3, { transport: 'direct, through a registry on 127.0.0.1:1 (auto).' })),
        ...[1, 2].map((n) => job('task-azureBlob-folder', n, 5, { transport: 'folder (cacheTransport says so).' })),
        ...[1, 2].map((n) => job('buildkit-azblob', n, 4)),
      ]),
    );
    assert.match(
      targetRow(report, /a new agent with azureBlob, direct transport/),
      /task, azureBlob \(direct\): 3\.00 s against 4\.00 s: 0\.75×.*task, azureBlob, cacheTransport: folder: 5\.00 s, 1\.25× \| \*\*met\*\*/,
    );
  });

  it("counts the bytes each transport of the Azure store downloaded in the large workload against BuildKit's azblob", () => {
    const late = (alt: Alternative, downloaded: number, transport?: string): JobMeasure => ({
      ...job(alt, 3, 20, { downloaded, ...(transport === undefined ? {} : { transport }) }),
      workload: 'large',
      rev: { n: 3, kind: 'late', files: {} },
    });
    const report = renderReport(
      results([
        late('task-azureBlob', 1500e6, 'folder (auto).'),
        late('task-azureBlob-direct', 1.8e6, 'direct, through a registry on 127.0.0.1:1 (cacheTransport says so).'),
        late('buildkit-azblob', 1.7e6),
      ]),
    );
    assert.match(
      targetRow(report, /blobs the build reads.*task, azureBlob, cacheTransport: direct,/),
      /late-stage change: 1\.8 MB against 1\.7 MB, 1\.06× \| \*\*met\*\*/,
    );
    assert.match(
      targetRow(report, /blobs the build reads.*task, azureBlob \(folder\)/),
      /late-stage change: 1500\.0 MB against 1\.7 MB, 882\.35× \| \*\*not met\*\*/,
    );
  });

  it('a job without a cache folder (direct) takes the changed layers of the same revision through the folder', () => {
    const large = (alt: Alternative, more: Partial<JobMeasure>): JobMeasure => ({
      ...job(alt, 2, 20, more),
      workload: 'large',
    });
    const report = renderReport(
      results([large('task-local', { changedBytes: 1e6, savedBytes: 1e6 }), large('task-azureBlob', { uploaded: 1.1e6 })]),
    );
    assert.match(
      targetRow(report, /1\.5 GB workload, task, azureBlob: a source-only save moves/),
      /uploaded 1\.1 MB for 1\.0 MB of changed layers \(the folder path's, same revision\): 1\.10× \| \*\*met\*\*/,
    );
  });
});

describe('benchmark report: the entry a restore made ready', () => {
  const direct = 'direct, through a registry on 127.0.0.1:1 (auto).';
  const cases: [string, Partial<JobMeasure>, number][] = [
    ['what the task restored', { restoredBytes: 100, storeBytes: 500 }, 100],
    ['direct: the store before the job', { transport: direct, storeBytes: 500, savedBytes: 20 }, 480],
    ['direct, a miss: nothing', { transport: direct, hit: 'false', storeBytes: 500 }, 0],
    ['the folder restored nothing: nothing', { transport: 'folder (auto).', storeBytes: 500 }, 0],
  ];
  for (const [name, more, bytes] of cases) it(name, () => assert.equal(entryBytes(job('task-azureBlob', 2, 1, more)), bytes));
});

describe("benchmark report: where a task's job goes", () => {
  it("leaves the loading of remote.js out of the post step's Save cache, which has a row of its own", () => {
    const post = {
      origin: 1000,
      preload: 1050,
      exit: 1400,
      modules: [
        ['post.js', 1050, 1080],
        ['remote.js', 1120, 1180],
      ] as const,
      lines: [
        [1100, '##[group]Save cache'],
        [1300, '##[endgroup]'],
      ] as const,
      maxRssKb: 1,
      io: {},
    };
    const main = { ...post, modules: [['main.js', 1050, 1080]] as const, lines: [] };
    const parts = (docker: DockerCall[]): Map<string, number> =>
      breakdown(job('task-azureBlob', 2, 1, { probe: { main, post, mainMs: 400, postMs: 400, docker, phases: [], postStart: 1000 } }));
    const alone = parts([]);
    assert.equal(alone.get('post: loading remote.js (Azure SDK)'), 60);
    assert.equal(alone.get('post: Save cache'), 140);
    assert.equal(alone.get('post: the rest (summary, cleanup, exit)'), 400 - 50 - 30 - 60 - 140);
    // The builder's removal beside the save counts only once the save is done.
    const rm = parts([{ start: 1250, end: 1350, code: 0, args: 'buildx rm b' }]);
    assert.equal(rm.get('post: `docker buildx rm` (the builder; beside the save, only after it)'), 50);
    assert.equal(rm.get('post: Save cache'), 140);
    assert.equal(rm.get('post: the rest (summary, cleanup, exit)'), 400 - 50 - 30 - 60 - 140 - 50);
  });

  const attributions: [string, [string, [number, number][]][], Record<string, number>][] = [
    ['nothing: all rest', [['a', []]], { a: 0, rest: 10 }],
    ['one part', [['a', [[2, 5]]]], { a: 3, rest: 7 }],
    [
      'the first of two at once wins',
      [
        ['a', [[2, 6]]],
        ['b', [[4, 8]]],
      ],
      { a: 4, b: 2, rest: 4 },
    ],
    [
      'outside the window is left out',
      [
        [
          'a',
          [
            [-5, 3],
            [9, 20],
          ],
        ],
      ],
      { a: 4, rest: 6 },
    ],
  ];
  for (const [name, labelled, want] of attributions)
    it(`gives each moment to one part: ${name}`, () => assert.deepEqual(Object.fromEntries(attribute(labelled, 0, 10, 'rest')), want));
});
