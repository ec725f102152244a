// npm run bench:store: what a job pays to restore and save its cache in each store, over the same
// ten revisions of a BuildKit cache, with the Azure Blob store on Azurite (scripts/azurite.sh).
// Writes out/STORE-BENCHMARKS.md (STORE-BENCHMARKS.md with --update). Nothing here fails on timing: it reports ratios measured in the same run.
//
// The cache is synthetic, with the shape of the benchmark's real one (BENCHMARKS.md): eight 1 MB base
// layers that never change, a 120 MiB dependency layer that changes at revisions 5 and 9, and a
// 0.5 MiB application layer that changes at every revision. The baseline is what the Cache@2
// template does, moved to the same Azurite: one tar of the whole cache folder per save, uploaded as
// one blob, and downloaded and unpacked whole by the next job.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ContainerClient } from '@azure/storage-blob';
import { ensureAzurite, freshContainer } from './azurite';
import { ROOT } from './agent';
import { AzureBlobStore } from '../tasks/DockerBuildxCacheV1/src/store/blob';
import { LocalStore } from '../tasks/DockerBuildxCacheV1/src/store/local';
import { restoreFromStore } from '../tasks/DockerBuildxCacheV1/src/store/restore';
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

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  const value = await f();
  return [value, Number(process.hrtime.bigint() - t) / 1e6];
}

/** One job per revision: restore into the cache folder, the build's folder in its place, save, retention. */
async function storeRun(name: string, store: CacheStore, revs: string[], sameAgent: boolean, bytesOf: () => Promise<number>): Promise<Row[]> {
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
    const row = { rev: i + 1, hit: outcome.hit, restoreMs, downloaded: outcome.stats?.downloaded ?? outcome.stats?.bytes ?? 0, saveMs, uploaded: saved.newBytes, pruneMs, store: await bytesOf() };
    console.log(`${name.padEnd(28)} rev ${String(row.rev).padStart(2)}: hit ${row.hit.padEnd(5)} restore ${(restoreMs / 1000).toFixed(2)}s down ${mb(row.downloaded)} save ${(saveMs / 1000).toFixed(2)}s up ${mb(row.uploaded)} store ${mb(row.store)}`);
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
    console.log(`${'tar of the folder'.padEnd(28)} rev ${String(i + 1).padStart(2)}: restore ${(restoreMs / 1000).toFixed(2)}s save ${(saveMs / 1000).toFixed(2)}s up ${mb(uploaded)} store ${mb(store)}`);
  }
  return rows;
}

const s2 = (ms: number): string => (ms / 1000).toFixed(2);
const sum = (rows: Row[], f: (r: Row) => number): number => rows.reduce((a, r) => a + f(r), 0);

function table(rows: Row[]): string[] {
  return [
    '| rev | hit | restore s | downloaded | save s | uploaded | retention s | store |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.rev} | ${r.hit} | ${s2(r.restoreMs)} | ${mb(r.downloaded)} | ${s2(r.saveMs)} | ${mb(r.uploaded)} | ${s2(r.pruneMs)} | ${mb(r.store)} |`),
  ];
}

async function containerBytes(container: ContainerClient): Promise<number> {
  let total = 0;
  for await (const b of container.listBlobsFlat({ prefix: 'v1/blobs/' })) total += b.properties.contentLength ?? 0;
  return total;
}

async function main(): Promise<void> {
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
  const local = new LocalStore(localDir);
  const results: [string, Row[]][] = [
    ['tar of the folder, Azurite', await tarRun(freshContainer(azurite.blobUrl, 'bench'), revs)],
    ['Azure Blob store, Azurite, a new agent each job', await storeRun('azure-fresh', new AzureBlobStore(fresh, 'fresh'), revs, false, () => containerBytes(fresh))],
    ['Azure Blob store, Azurite, the same agent', await storeRun('azure-same', new AzureBlobStore(same, 'same'), revs, true, () => containerBytes(same))],
    ['local store, a new agent each job', await storeRun('local', local, revs, false, () => Promise.resolve(folderBytes(path.join(localDir, 'v1', 'blobs'))))],
  ];
  const [tar, azureFresh, azureSame, localRows] = results.map(([, rows]) => rows) as [Row[], Row[], Row[], Row[]];
  // The Azure store keeps unreferenced blobs younger than an hour (a save may be about to reference
  // them); the next retention after that hour, played here by a store without the grace, deletes them.
  const later = async (container: ContainerClient): Promise<number> => {
    await new AzureBlobStore(container, 'later', { graceMinutes: 0 }).prune({ retentionDays: 7, now: new Date(Date.now() + REVISIONS * 1000) });
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
    ...results.flatMap(([name, rows]) => [`## ${name}`, '', ...table(rows), '']),
  ].join('\n');
  const report = writeReport(ROOT, 'STORE-BENCHMARKS.md', md);
  console.log(`\n${md}\n\nWritten to ${path.relative(process.cwd(), report)}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
