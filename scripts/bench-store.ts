// npm run bench:store: what a job pays to restore and save its cache in each store, over the same
// ten revisions of a BuildKit cache, with the Azure Blob store on Azurite (scripts/azurite.sh).
// Writes out/STORE-BENCHMARKS.md (STORE-BENCHMARKS.md with --update). Nothing here fails on timing: it reports ratios measured in the same run.
//
// The cache is synthetic, with the shape of the benchmark's real one (BENCHMARKS.md): eight 1 MB base
// layers that never change, a 120 MiB dependency layer that changes at revisions 5 and 9, and a
// 0.5 MiB application layer that changes at every revision. The baseline is what the Cache@2
// template does, moved to the same Azurite: one tar of the whole cache folder per save, uploaded as
// one blob, and downloaded and unpacked whole by the next job.
//
//   npm run bench:store -- --baseline=<git revision> [--rounds=N]
// also builds the stores of that revision (git archive, then tsc, in out/bench-store/baseline) and
// runs each store of both revisions in the same run, alternating, reporting this one's figures as
// ratios of the baseline's.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ContainerClient } from '@azure/storage-blob';
import { ensureAzurite, freshContainer } from './azurite';
import { ROOT } from './agent';
import * as blobModule from '../tasks/DockerBuildxCacheV1/src/store/blob';
import * as localModule from '../tasks/DockerBuildxCacheV1/src/store/local';
import * as restoreModule from '../tasks/DockerBuildxCacheV1/src/store/restore';
import type { CacheStore } from '../tasks/DockerBuildxCacheV1/src/store/types';
import { cacheFolder } from '../test/oci-fixture';
import { folderBytes, mb, median, writeReport } from './measure';

const REVISIONS = 10;
const LOCK_CHANGES = new Set([5, 9]);
const OUT = path.join(ROOT, 'out', 'bench-store');
const SCOPE = 'refs/heads/main';
const KEY = ['buildx', '"Linux"', '"app"'];

const random = (bytes: number): Buffer => crypto.randomBytes(bytes);
const BASE = Array.from({ length: 8 }, () => random(1 << 20));

/** The cache folder a build of the revision leaves: the base layers, the dependency layer and a new application layer. */
function revision(rev: number, deps: Buffer): string {
  return cacheFolder(path.join(OUT, 'revisions'), String(rev), [...BASE, deps, random(512 << 10)]).dir;
}

interface Row {
  rev: number;
  hit: string;
  restoreMs: number;
  downloaded: number;
  saveMs: number;
  uploaded: number;
  pruneMs: number;
  store: number;
}

/** The stores of one revision of the task: these modules' public API is the same in every revision measured. */
interface Stores {
  readonly LocalStore: typeof localModule.LocalStore;
  readonly AzureBlobStore: typeof blobModule.AzureBlobStore;
  readonly restoreFromStore: typeof restoreModule.restoreFromStore;
}
const CURRENT: Stores = {
  LocalStore: localModule.LocalStore,
  AzureBlobStore: blobModule.AzureBlobStore,
  restoreFromStore: restoreModule.restoreFromStore,
};

/** The stores of another revision: its sources from git, compiled apart, with this checkout's node_modules. */
function baselineStores(rev: string): Stores {
  const dir = path.join(OUT, 'baseline');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const archive = execFileSync(
    'git',
    ['-C', ROOT, 'archive', '--format=tar', rev, 'tasks', 'scripts', 'test', 'tsconfig.json', 'package.json'],
    { maxBuffer: 256 << 20 },
  );
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { stdio: 'inherit' });
  const src = path.join(dir, 'build', 'tasks', 'DockerBuildxCacheV1', 'src', 'store');
  /* eslint-disable @typescript-eslint/no-require-imports */
  const local = require(path.join(src, 'local.js')) as typeof localModule;
  const blob = require(path.join(src, 'blob.js')) as typeof blobModule;
  const restore = require(path.join(src, 'restore.js')) as typeof restoreModule;
  /* eslint-enable @typescript-eslint/no-require-imports */
  return { LocalStore: local.LocalStore, AzureBlobStore: blob.AzureBlobStore, restoreFromStore: restore.restoreFromStore };
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  const value = await f();
  return [value, Number(process.hrtime.bigint() - t) / 1e6];
}

/** One job per revision: restore into the cache folder, the build's folder in its place, save, retention. */
async function storeRun(
  name: string,
  store: CacheStore,
  revs: string[],
  sameAgent: boolean,
  bytesOf: () => Promise<number>,
  restoreFromStore = CURRENT.restoreFromStore,
): Promise<Row[]> {
  const rows: Row[] = [];
  const cacheDir = path.join(OUT, name, 'cache');
  fs.rmSync(path.join(OUT, name), { recursive: true, force: true });
  for (const [i, source] of revs.entries()) {
    if (!sameAgent) fs.rmSync(cacheDir, { recursive: true, force: true });
    const [outcome, restoreMs] = await timed(() => restoreFromStore(store, [SCOPE], KEY, [], cacheDir));
    // The build: its cache folder replaces the restored one.
    fs.rmSync(cacheDir, { recursive: true, force: true });
    fs.cpSync(source, cacheDir, { recursive: true });
    const now = new Date(Date.now() + i * 1000);
    const [saved, saveMs] = await timed(() => store.save({ cacheDir, key: KEY.join('|'), segments: KEY, scope: SCOPE, now }));
    const [, pruneMs] = await timed(() => store.prune({ retentionDays: 7, now }));
    const row = {
      rev: i + 1,
      hit: outcome.hit,
      restoreMs,
      downloaded: outcome.stats?.downloaded ?? outcome.stats?.bytes ?? 0,
      saveMs,
      uploaded: saved.newBytes,
      pruneMs,
      store: await bytesOf(),
    };
    console.log(
      `${name.padEnd(28)} rev ${String(row.rev).padStart(2)}: hit ${row.hit.padEnd(5)} restore ${(restoreMs / 1000).toFixed(2)}s down ${mb(row.downloaded)} save ${(saveMs / 1000).toFixed(2)}s up ${mb(row.uploaded)} store ${mb(row.store)}`,
    );
    rows.push(row);
  }
  return rows;
}

/** The template's way on the same endpoint: one tar of the folder per job, uploaded and downloaded whole. */
async function tarRun(container: ContainerClient, revs: string[]): Promise<Row[]> {
  const rows: Row[] = [];
  const work = path.join(OUT, 'tar');
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  await container.createIfNotExists();
  let previous: string | undefined;
  for (const [i, source] of revs.entries()) {
    const cacheDir = path.join(work, 'cache');
    fs.rmSync(cacheDir, { recursive: true, force: true });
    const tarFile = path.join(work, 'cache.tar');
    const [downloaded, restoreMs] = await timed(async () => {
      if (previous === undefined) return 0;
      await container.getBlockBlobClient(previous).downloadToFile(tarFile);
      fs.mkdirSync(cacheDir);
      execFileSync('tar', ['-xf', tarFile, '-C', cacheDir]);
      return fs.statSync(tarFile).size;
    });
    fs.rmSync(cacheDir, { recursive: true, force: true });
    fs.cpSync(source, cacheDir, { recursive: true });
    const name = `cache-${i + 1}.tar`;
    const [uploaded, saveMs] = await timed(async () => {
      execFileSync('tar', ['-cf', tarFile, '-C', cacheDir, '.']);
      await container.getBlockBlobClient(name).uploadFile(tarFile, { blockSize: 8 << 20, concurrency: 8 });
      return fs.statSync(tarFile).size;
    });
    const hit = previous === undefined ? 'false' : 'true';
    // Cache@2 entries expire, they are never replaced: the container keeps every tar.
    previous = name;
    let store = 0;
    for await (const b of container.listBlobsFlat()) store += b.properties.contentLength ?? 0;
    rows.push({ rev: i + 1, hit, restoreMs, downloaded, saveMs, uploaded, pruneMs: 0, store });
    console.log(
      `${'tar of the folder'.padEnd(28)} rev ${String(i + 1).padStart(2)}: restore ${(restoreMs / 1000).toFixed(2)}s save ${(saveMs / 1000).toFixed(2)}s up ${mb(uploaded)} store ${mb(store)}`,
    );
  }
  return rows;
}

const s2 = (ms: number): string => (ms / 1000).toFixed(2);
const sum = (rows: Row[], f: (r: Row) => number): number => rows.reduce((a, r) => a + f(r), 0);

function table(rows: Row[]): string[] {
  return [
    '| rev | hit | restore s | downloaded | save s | uploaded | retention s | store |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.rev} | ${r.hit} | ${s2(r.restoreMs)} | ${mb(r.downloaded)} | ${s2(r.saveMs)} | ${mb(r.uploaded)} | ${s2(r.pruneMs)} | ${mb(r.store)} |`,
    ),
  ];
}

async function containerBytes(container: ContainerClient): Promise<number> {
  let total = 0;
  for await (const b of container.listBlobsFlat({ prefix: 'v1/blobs/' })) total += b.properties.contentLength ?? 0;
  return total;
}

/** The three store runs of one revision, on fresh containers and folders. */
async function revisionRuns(
  label: string,
  stores: Stores,
  azurite: { blobUrl: string },
  revs: string[],
): Promise<{ fresh: Row[]; same: Row[]; local: Row[] }> {
  const fresh = freshContainer(azurite.blobUrl, 'bench');
  const same = freshContainer(azurite.blobUrl, 'bench');
  const localDir = path.join(OUT, `${label}-local-store`);
  fs.rmSync(localDir, { recursive: true, force: true });
  return {
    fresh: await storeRun(
      `${label} azure-fresh`,
      new stores.AzureBlobStore(fresh, 'fresh'),
      revs,
      false,
      () => containerBytes(fresh),
      stores.restoreFromStore,
    ),
    same: await storeRun(
      `${label} azure-same`,
      new stores.AzureBlobStore(same, 'same'),
      revs,
      true,
      () => containerBytes(same),
      stores.restoreFromStore,
    ),
    local: await storeRun(
      `${label} local`,
      new stores.LocalStore(localDir),
      revs,
      false,
      () => Promise.resolve(folderBytes(path.join(localDir, 'v1', 'blobs'))),
      stores.restoreFromStore,
    ),
  };
}

/**
 * This revision against a baseline, in one run: `count` rounds (--rounds, 2 by default), the order
 * swapped in every other, so that drift in the machine's speed falls on both alike. Figures are this revision's ÷ the baseline's.
 */
async function compare(rev: string, azurite: { blobUrl: string }, revs: string[], count: number): Promise<string[]> {
  const base = baselineStores(rev);
  const rounds: { before: Awaited<ReturnType<typeof revisionRuns>>; after: Awaited<ReturnType<typeof revisionRuns>> }[] = [];
  const orders = Array.from({ length: count }, (_, i) => (i % 2 === 0 ? ['before', 'after'] : ['after', 'before']));
  for (const [i, order] of orders.entries()) {
    const got: Partial<(typeof rounds)[number]> = {};
    for (const which of order)
      got[which as 'before' | 'after'] = await revisionRuns(`${which}${i}`, which === 'before' ? base : CURRENT, azurite, revs);
    rounds.push(got as (typeof rounds)[number]);
  }
  const pick = (which: 'before' | 'after', store: 'fresh' | 'same' | 'local'): Row[] => rounds.flatMap((r) => r[which][store]);
  const sourceOnly = (rows: Row[]): Row[] => rows.filter((r) => r.rev > 1 && !LOCK_CHANGES.has(r.rev));
  const metrics: [string, (rows: Row[]) => number][] = [
    ['median restore, revisions 2–10', (rows) => median(rows.filter((r) => r.rev > 1).map((r) => r.restoreMs))],
    ['median save, source-only revision', (rows) => median(sourceOnly(rows).map((r) => r.saveMs))],
    ['median save, dependency change', (rows) => median(rows.filter((r) => LOCK_CHANGES.has(r.rev)).map((r) => r.saveMs))],
    ['median retention', (rows) => median(rows.map((r) => r.pruneMs))],
    ['bytes uploaded (written)', (rows) => sum(rows, (r) => r.uploaded)],
    ['store size after 10 jobs', (rows) => median(rows.filter((r) => r.rev === REVISIONS).map((r) => r.store))],
  ];
  const ratio = (store: 'fresh' | 'same' | 'local', f: (rows: Row[]) => number): string => {
    const b = f(pick('before', store));
    return b === 0 ? 'n/a' : `${(f(pick('after', store)) / b).toFixed(2)}×`;
  };
  return [
    `## This revision against ${rev}`,
    '',
    `The same ten revisions through the stores of this revision and of \`${rev}\` (built from git by \`npm run bench:store -- --baseline=${rev}\`), in one run: ${count} rounds, every other one in the opposite order, each store on a fresh container or folder. Each figure is this revision's ÷ the baseline's, the medians taken over all rounds; below 1.00× is better.`,
    '',
    '| | Azure Blob store, new agent | Azure Blob store, same agent | local store |',
    '|---|---:|---:|---:|',
    ...metrics.map(([name, f]) => `| ${name} | ${ratio('fresh', f)} | ${ratio('same', f)} | ${ratio('local', f)} |`),
    '',
  ];
}

async function main(): Promise<void> {
  const baseline = process.argv.find((a) => a.startsWith('--baseline='))?.slice('--baseline='.length);
  const rounds = Number(process.argv.find((a) => a.startsWith('--rounds='))?.slice('--rounds='.length) ?? 2);
  const azurite = ensureAzurite();
  fs.rmSync(OUT, { recursive: true, force: true });
  let deps = random(120 << 20);
  const revs: string[] = [];
  for (let rev = 1; rev <= REVISIONS; rev++) {
    if (LOCK_CHANGES.has(rev)) deps = random(120 << 20);
    revs.push(revision(rev, deps));
  }
  const cache = folderBytes(revs[0] ?? '');

  const fresh = freshContainer(azurite.blobUrl, 'bench');
  const same = freshContainer(azurite.blobUrl, 'bench');
  const localDir = path.join(OUT, 'local-store');
  const local = new CURRENT.LocalStore(localDir);
  const results: [string, Row[]][] = [
    ['tar of the folder, Azurite', await tarRun(freshContainer(azurite.blobUrl, 'bench'), revs)],
    [
      'Azure Blob store, Azurite, a new agent each job',
      await storeRun('azure-fresh', new CURRENT.AzureBlobStore(fresh, 'fresh'), revs, false, () => containerBytes(fresh)),
    ],
    [
      'Azure Blob store, Azurite, the same agent',
      await storeRun('azure-same', new CURRENT.AzureBlobStore(same, 'same'), revs, true, () => containerBytes(same)),
    ],
    [
      'local store, a new agent each job',
      await storeRun('local', local, revs, false, () => Promise.resolve(folderBytes(path.join(localDir, 'v1', 'blobs')))),
    ],
  ];
  const [tar, azureFresh, azureSame, localRows] = results.map(([, rows]) => rows) as [Row[], Row[], Row[], Row[]];
  // The Azure store keeps unreferenced blobs younger than an hour (a save may be about to reference
  // them); the next retention after that hour, played here by a store without the grace, deletes them.
  const later = async (container: ContainerClient): Promise<number> => {
    await new CURRENT.AzureBlobStore(container, 'later', { graceMinutes: 0 }).prune({
      retentionDays: 7,
      now: new Date(Date.now() + REVISIONS * 1000),
    });
    return containerBytes(container);
  };
  const settled = { fresh: await later(fresh), same: await later(same) };
  const sourceOnly = (rows: Row[]): Row[] => rows.filter((r) => r.rev > 1 && !LOCK_CHANGES.has(r.rev));
  const restores = (rows: Row[]): number => median(rows.filter((r) => r.rev > 1).map((r) => r.restoreMs));
  const saves = (rows: Row[]): number => median(sourceOnly(rows).map((r) => r.saveMs));

  const md = [
    '# Store benchmarks',
    '',
    `Measured by \`npm run bench:store\` on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${os.type()} ${os.release()}, Node ${process.version}, Azurite on loopback (no network latency or bandwidth limit: these are the stores' own costs).`,
    '',
    `The cache: eight 1 MB base layers that never change, a 120 MiB dependency layer that changes at revisions ${[...LOCK_CHANGES].join(' and ')}, and a 0.5 MiB application layer that changes at every revision; ${mb(cache)} in all. Each revision is one job: restore, the build's cache in place of the folder, save, retention (7 days). The baseline is today's template moved to the same Azurite: one tar of the folder per job, uploaded as one blob and downloaded whole by the next job.`,
    '',
    '## Results',
    '',
    '| | tar of the folder | Azure Blob store, new agent | Azure Blob store, same agent | local store |',
    '|---|---:|---:|---:|---:|',
    `| uploaded over ${REVISIONS} jobs | ${mb(sum(tar, (r) => r.uploaded))} | ${mb(sum(azureFresh, (r) => r.uploaded))} | ${mb(sum(azureSame, (r) => r.uploaded))} | ${mb(sum(localRows, (r) => r.uploaded))} (written) |`,
    `| uploaded, ÷ the tar | 1.00× | ${(sum(azureFresh, (r) => r.uploaded) / sum(tar, (r) => r.uploaded)).toFixed(2)}× | ${(sum(azureSame, (r) => r.uploaded) / sum(tar, (r) => r.uploaded)).toFixed(2)}× | |`,
    `| downloaded over ${REVISIONS} jobs | ${mb(sum(tar, (r) => r.downloaded))} | ${mb(sum(azureFresh, (r) => r.downloaded))} | ${mb(sum(azureSame, (r) => r.downloaded))} | (linked) |`,
    `| median save, source-only revision | ${s2(saves(tar))} s | ${s2(saves(azureFresh))} s (${(saves(azureFresh) / saves(tar)).toFixed(2)}×) | ${s2(saves(azureSame))} s (${(saves(azureSame) / saves(tar)).toFixed(2)}×) | ${s2(saves(localRows))} s |`,
    `| median restore, revisions 2–${REVISIONS} | ${s2(restores(tar))} s | ${s2(restores(azureFresh))} s (${(restores(azureFresh) / restores(tar)).toFixed(2)}×) | ${s2(restores(azureSame))} s (${(restores(azureSame) / restores(tar)).toFixed(2)}×) | ${s2(restores(localRows))} s |`,
    `| storage after ${REVISIONS} jobs, ÷ one cache | ${((tar.at(-1)?.store ?? 0) / cache).toFixed(2)}× | ${((azureFresh.at(-1)?.store ?? 0) / cache).toFixed(2)}× | ${((azureSame.at(-1)?.store ?? 0) / cache).toFixed(2)}× | ${((localRows.at(-1)?.store ?? 0) / cache).toFixed(2)}× |`,
    `| storage once the grace hour has passed, ÷ one cache | | ${(settled.fresh / cache).toFixed(2)}× | ${(settled.same / cache).toFixed(2)}× | |`,
    '',
    'Ratios in brackets are against the tar in the same run. The Azure store keeps a blob that no entry reaches for an hour after its upload (a save in another job may be about to reference it), so right after a dependency change it holds the old dependency layer too; the first retention after that hour deletes it (the last row, played by a retention without the grace).',
    '',
    ...(baseline === undefined ? [] : await compare(baseline, azurite, revs, rounds)),
    ...results.flatMap(([name, rows]) => [`## ${name}`, '', ...table(rows), '']),
  ].join('\n');
  const report = writeReport(ROOT, 'STORE-BENCHMARKS.md', md);
  console.log(`\n${md}\n\nWritten to ${path.relative(process.cwd(), report)}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
