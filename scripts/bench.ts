// npm run bench: today's Cache@2 template against the task, in one run on the same engine.
//
// Ten revisions of one workload run as ten fresh jobs per pipeline (the engine's build cache and the
// image are gone before each job). The sources change at every revision, the lock file at 5 and 9.
// Pipelines:
//   - template, key = Dockerfile:            Cache@2 emulated around buildx with a local cache folder
//   - template, key = Dockerfile + lock file: the same with the lock file in the key
//   - task, local store:                     the bundled task (main step, post-job step) with its defaults
//   - task, Azure Blob store:                the same with cacheBackend azureBlob on Azurite (scripts/azurite.sh)
// Then key resolution over a 10,000-file tree against `find … | xargs sha256sum`.
// Writes out/BENCHMARKS.md (BENCHMARKS.md with --update). Nothing here fails on timing: it reports ratios measured in the same run.
import { execFileSync, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveKey } from '../tasks/DockerBuildxCacheV1/src/key/resolve';
import type { ContainerClient } from '@azure/storage-blob';
import { docker, ROOT, runJob } from './agent';
import { connectionString, ensureAzurite, freshContainer } from './azurite';
import { BASE_IMAGE, ensureEngine } from './engine';
import { benchDockerfile } from './bench-workload';
import { folderBytes, mb, median, writeReport } from './measure';

const REVISIONS = 10;
const LOCK_CHANGES = new Set([5, 9]);
const IMAGE = 'dbxc-bench/app';
const DEPS_STEP = '[4/6] RUN echo "resolving';
const OUT = path.join(ROOT, 'out', 'bench');

const DOCKERFILE = benchDockerfile(BASE_IMAGE);

interface Row {
  readonly rev: number;
  readonly hit: string;
  readonly depsCached: boolean;
  readonly cached: number;
  readonly total: number;
  /** Seconds per phase. */
  readonly key: number;
  readonly restore: number;
  readonly build: number;
  readonly save: number;
  /** Everything but the buildx build process itself. */
  readonly overhead: number;
  readonly restoredBytes: number;
  readonly savedBytes: number;
  /** Bytes of the layers this build's cache has that the previous build's had not. */
  readonly changedBytes: number;
  readonly storeBytes: number;
  /** Bytes that this build's cache reaches. */
  readonly cacheBytes: number;
  /** For the task: milliseconds of its overhead by where they go. */
  readonly parts?: Readonly<Record<string, number>>;
  /** For a remote store: bytes the restore downloaded. */
  readonly downloadedBytes?: number;
}

/** What the benchmark reads of a store: its blobs and its entries. */
interface StoreView {
  readonly name: string;
  /** The task's inputs that choose the store. */
  readonly inputs: (work: string) => Record<string, string>;
  /** digest hex → size. */
  blobs(work: string): Promise<Map<string, number>>;
  entries(work: string): Promise<{ key: string; created: string; blobs: { size: number }[] }[]>;
}

const localStore: StoreView = {
  name: 'local store',
  inputs: () => ({}),
  blobs: (work) => {
    const dir = path.join(work, '_buildx_cache_store', 'v1', 'blobs', 'sha256');
    return Promise.resolve(new Map(fs.existsSync(dir) ? fs.readdirSync(dir).map((h) => [h, fs.statSync(path.join(dir, h)).size]) : []));
  },
  entries: (work) => {
    const dir = path.join(work, '_buildx_cache_store', 'v1', 'entries');
    const files = fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()) : [];
    return Promise.resolve(files.map((f) => JSON.parse(fs.readFileSync(path.join(f.parentPath, f.name), 'utf8')) as { key: string; created: string; blobs: { size: number }[] }));
  },
};

function azureStore(container: ContainerClient, blobUrl: string): StoreView {
  return {
    name: 'Azure Blob store (Azurite)',
    inputs: () => ({ cacheBackend: 'azureBlob', storageConnectionString: connectionString(blobUrl), storageContainer: container.containerName }),
    async blobs() {
      const out = new Map<string, number>();
      if (!(await container.exists())) return out;
      for await (const b of container.listBlobsFlat({ prefix: 'v1/blobs/sha256/' })) out.set(path.basename(b.name), b.properties.contentLength ?? 0);
      return out;
    },
    async entries() {
      const out: { key: string; created: string; blobs: { size: number }[] }[] = [];
      if (!(await container.exists())) return out;
      for await (const b of container.listBlobsFlat({ prefix: 'v1/entries/' })) {
        out.push(JSON.parse((await container.getBlobClient(b.name).downloadToBuffer()).toString('utf8')) as { key: string; created: string; blobs: { size: number }[] });
      }
      return out;
    },
  };
}

interface Pipeline {
  readonly name: string;
  job(rev: number, ws: string): Promise<Row>;
}

const seconds = (ms: number): number => ms / 1000;

/** digest → size of what a cache folder's index.json reaches. */
function reachable(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!fs.existsSync(path.join(dir, 'index.json'))) return out;
  const queue = [...(JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; mediaType: string; size: number }[] }).manifests];
  for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
    if (out.has(d.digest)) continue;
    out.set(d.digest, d.size);
    if (!/manifest|index/.test(d.mediaType)) continue;
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'blobs', ...d.digest.split(':')), 'utf8')) as { manifests?: typeof queue; layers?: typeof queue; config?: (typeof queue)[0] };
    queue.push(...(json.manifests ?? []), ...(json.layers ?? []), ...(json.config ? [json.config] : []));
  }
  return out;
}

function stepsOf(log: string): { cached: number; total: number; depsCached: boolean } {
  const lines = log.split('\n');
  const names = new Map<string, string>();
  for (const l of lines) {
    const m = /^#(\d+) (\[[^\]]*\d+\/\d+\] .*)$/.exec(l);
    if (m && !names.has(m[1] ?? '') && !/\] FROM /.test(m[2] ?? '')) names.set(m[1] ?? '', m[2] ?? '');
  }
  const cached = new Set(lines.map((l) => /^#(\d+) CACHED$/.exec(l)?.[1]).filter((v): v is string => v !== undefined));
  const deps = [...names].find(([, n]) => n.startsWith(DEPS_STEP))?.[0];
  return { cached: [...names.keys()].filter((v) => cached.has(v)).length, total: names.size, depsCached: deps !== undefined && cached.has(deps) };
}

function freshEngineState(): void {
  docker(['buildx', 'prune', '-af']);
  spawnSync('docker', ['image', 'rm', '-f', `${IMAGE}:bench`], { encoding: 'utf8' });
}

/**
 * Today's template, emulated faithfully: Cache@2 restores a tar of the cache folder (the exact key,
 * else the newest entry of the restore key), buildx reads and writes that same folder with
 * mode=max, and Cache@2 saves a new tar after the job only when the key was not an exact hit.
 */
function template(name: string, keyText: string): Pipeline {
  const dir = path.join(OUT, name.replace(/\W+/g, '-'));
  const entries = path.join(dir, 'cache2');
  const cacheDir = path.join(dir, '.buildx-cache');
  let previous = new Map<string, number>();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(entries, { recursive: true });
  return {
    name,
    async job(rev, ws): Promise<Row> {
      freshEngineState();
      fs.rmSync(cacheDir, { recursive: true, force: true });
      let t = Date.now();
      const key = (await resolveKey(keyText, ws)).text;
      const restoreKey = (await resolveKey('buildx | "Linux"', ws)).values;
      const keyS = seconds(Date.now() - t);

      t = Date.now();
      const stored = fs.readdirSync(entries).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(fs.readFileSync(path.join(entries, f), 'utf8')) as { key: string; tar: string; created: number });
      const exact = stored.find((e) => e.key === key);
      const fallback = stored.filter((e) => restoreKey.every((s, i) => e.key.split('|')[i] === s)).sort((a, b) => b.created - a.created)[0];
      const entry = exact ?? fallback;
      let restoredBytes = 0;
      if (entry !== undefined) {
        fs.mkdirSync(cacheDir, { recursive: true });
        execFileSync('tar', ['-xf', entry.tar, '-C', cacheDir]);
        restoredBytes = fs.statSync(entry.tar).size;
      }
      const restoreS = seconds(Date.now() - t);

      t = Date.now();
      const build = spawnSync(
        'docker',
        ['buildx', 'build', '--progress', 'plain', '--cache-from', `type=local,src=${cacheDir}`, '--cache-to', `type=local,dest=${cacheDir},mode=max`, '--load', '--tag', `${IMAGE}:bench`, ws],
        { encoding: 'utf8', maxBuffer: 256 << 20 },
      );
      const buildS = seconds(Date.now() - t);
      if (build.status !== 0) throw new Error(`${name} revision ${rev}: ${build.stderr}`);

      t = Date.now();
      let savedBytes = 0;
      if (exact === undefined) {
        const tar = path.join(entries, `${crypto.createHash('sha256').update(key).digest('hex').slice(0, 16)}.tar`);
        execFileSync('tar', ['-cf', tar, '-C', cacheDir, '.']);
        fs.writeFileSync(`${tar}.json`, JSON.stringify({ key, tar, created: Date.now() }));
        savedBytes = fs.statSync(tar).size;
      }
      const saveS = seconds(Date.now() - t);

      const now = reachable(cacheDir);
      const changedBytes = [...now].filter(([d]) => !previous.has(d)).reduce((s, [, n]) => s + n, 0);
      previous = now;
      return {
        rev,
        hit: exact !== undefined ? 'true' : entry !== undefined ? 'inexact' : 'false',
        ...stepsOf(build.stderr),
        key: keyS,
        restore: restoreS,
        build: buildS,
        save: saveS,
        overhead: keyS + restoreS + saveS,
        restoredBytes,
        savedBytes,
        changedBytes,
        storeBytes: folderBytes(entries),
        cacheBytes: [...now.values()].reduce((a, b) => a + b, 0),
      };
    },
  };
}

/** The bundled task, run as the agent runs it: the main step, then the post-job step that saves. */
function task(name: string, store: StoreView): Pipeline {
  const dir = path.join(OUT, name.replace(/\W+/g, '-'));
  const work = path.join(dir, '_work');
  const pipelineWorkspace = path.join(dir, 'pw');
  let previous = new Map<string, number>();
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    name,
    async job(rev, ws): Promise<Row> {
      freshEngineState();
      fs.rmSync(pipelineWorkspace, { recursive: true, force: true });
      const before = await store.blobs(work);
      // What each key's newest entry holds before the job: the restore takes one of them.
      const entryBytes = new Map<string, number>();
      for (const e of (await store.entries(work)).sort((a, b) => a.created.localeCompare(b.created))) {
        entryBytes.set(e.key, e.blobs.reduce((sum, b) => sum + b.size, 0));
      }
      const temp = path.join(dir, '_temp');
      fs.mkdirSync(temp, { recursive: true });
      const result = await runJob(
        { dockerfile: 'Dockerfile', imageName: IMAGE, tags: 'bench', driver: 'docker', ...store.inputs(work) },
        {
          'System.DefaultWorkingDirectory': ws,
          'Pipeline.Workspace': pipelineWorkspace,
          'Agent.TempDirectory': temp,
          'Agent.WorkFolder': work,
          'Agent.OS': 'Linux',
          'Build.SourceBranch': 'refs/heads/main',
          'System.JobId': crypto.randomUUID(),
          'System.TaskInstanceId': crypto.randomUUID(),
        },
        ws,
      );
      if (result.main.result !== 'Succeeded' || result.post.result !== 'Succeeded') throw new Error(`${name} revision ${rev}:\n${result.main.stdout}\n${result.post.stdout}`);
      const phase = (log: string, title: string): number => Number(new RegExp(`^${title}: ([\\d.]+)s`, 'm').exec(log)?.[1] ?? 0);
      const buildS = phase(result.main.stdout, 'Build');
      const cacheDir = path.join(pipelineWorkspace, '.buildx-cache');
      const now = reachable(cacheDir);
      const after = await store.blobs(work);
      const changedBytes = [...now].filter(([d]) => !previous.has(d)).reduce((s, [, n]) => s + n, 0);
      const restoredBytes = entryBytes.get(result.main.outputs.cacheRestoredKey ?? '') ?? 0;
      previous = now;
      // The main step's phases in milliseconds, from the state it hands to the post-job step.
      const state = JSON.parse(result.main.taskVariables['DockerBuildxCache.State'] ?? '{}') as { summary?: { phases?: [string, number][]; bytesDownloaded?: number } };
      const phases = new Map(state.summary?.phases ?? []);
      const inPhases = [...phases.values()].reduce((a, b) => a + b, 0);
      const parts = {
        'main step: key': phases.get('Cache key') ?? 0,
        'main step: restore': phases.get('Restore cache') ?? 0,
        'main step: wait for the builder': phases.get('Builder') ?? 0,
        'main step: cache export commit': phases.get('Cache export') ?? 0,
        'main step: Node.js start-up, inputs, outputs': result.main.ms - inPhases,
        'post-job step: Node.js start-up, save, retention, summary': result.post.ms,
      };
      return {
        parts,
        rev,
        hit: result.main.outputs.cacheHit ?? '?',
        ...stepsOf(result.main.stdout),
        key: phase(result.main.stdout, 'Cache key'),
        restore: phase(result.main.stdout, 'Restore cache'),
        build: buildS,
        save: phase(result.post.stdout, 'Save cache'),
        overhead: seconds(result.main.ms + result.post.ms) - buildS,
        restoredBytes,
        savedBytes: [...after].filter(([h]) => !before.has(h)).reduce((s, [, n]) => s + n, 0),
        changedBytes,
        storeBytes: [...after.values()].reduce((a, b) => a + b, 0),
        downloadedBytes: state.summary?.bytesDownloaded,
        cacheBytes: [...now.values()].reduce((a, b) => a + b, 0),
      };
    },
  };
}

function workspace(name: string): string {
  const ws = path.join(OUT, name.replace(/\W+/g, '-'), 's');
  fs.rmSync(ws, { recursive: true, force: true });
  fs.mkdirSync(path.join(ws, 'src'), { recursive: true });
  fs.writeFileSync(path.join(ws, 'Dockerfile'), DOCKERFILE);
  fs.writeFileSync(path.join(ws, 'deps.lock'), 'left-pad@1.3.0\n');
  return ws;
}

async function runPipeline(p: Pipeline): Promise<Row[]> {
  const ws = workspace(p.name);
  const rows: Row[] = [];
  for (let rev = 1; rev <= REVISIONS; rev++) {
    fs.writeFileSync(path.join(ws, 'src', 'main.txt'), `revision ${rev}\n`);
    if (LOCK_CHANGES.has(rev)) fs.writeFileSync(path.join(ws, 'deps.lock'), `left-pad@1.3.${rev}\n`);
    const row = await p.job(rev, ws);
    rows.push(row);
    console.log(`${p.name.padEnd(40)} rev ${String(rev).padStart(2)}: hit ${row.hit.padEnd(7)} deps ${row.depsCached ? 'cached' : 'built '} build ${row.build.toFixed(1)}s overhead ${row.overhead.toFixed(1)}s store ${mb(row.storeBytes)}`);
  }
  return rows;
}

const s1 = (v: number): string => v.toFixed(1);

/** Key resolution over 10,000 files with a `**` glob, against find | xargs sha256sum over the same files. */
async function keyBench(): Promise<{ files: number; ours: number; baseline: number }> {
  const tree = path.join(OUT, 'key-tree');
  fs.rmSync(tree, { recursive: true, force: true });
  for (let d = 0; d < 100; d++) {
    const dir = path.join(tree, `pkg${d}`, 'lib');
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(dir, `f${f}.json`), crypto.randomBytes(2048));
  }
  const ours: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < 6; i++) {
    let t = process.hrtime.bigint();
    await resolveKey('k | **/*.json', tree);
    ours.push(Number(process.hrtime.bigint() - t) / 1e9);
    t = process.hrtime.bigint();
    execFileSync('sh', ['-c', `find "${tree}" -type f -name '*.json' -print0 | xargs -0 sha256sum > /dev/null`]);
    baseline.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  // The first run of each warms the page cache; the median of the rest is reported.
  return { files: 10000, ours: median(ours.slice(1)), baseline: median(baseline.slice(1)) };
}

function table(rows: readonly Row[]): string[] {
  const remote = rows.some((r) => r.downloadedBytes !== undefined);
  return [
    `| rev | hit | deps step | steps cached | key s | restore s | build s | save s | overhead s | restored |${remote ? ' downloaded |' : ''} saved | changed layers | store |`,
    `|---:|---|---|---:|---:|---:|---:|---:|---:|---:|${remote ? '---:|' : ''}---:|---:|---:|`,
    ...rows.map(
      (r) =>
        `| ${r.rev} | ${r.hit} | ${r.depsCached ? 'cached' : 'built'} | ${r.cached}/${r.total} | ${s1(r.key)} | ${s1(r.restore)} | ${s1(r.build)} | ${s1(r.save)} | ${s1(r.overhead)} | ${mb(r.restoredBytes)} |${remote ? ` ${mb(r.downloadedBytes ?? 0)} |` : ''} ${mb(r.savedBytes)} | ${mb(r.changedBytes)} | ${mb(r.storeBytes)} |`,
    ),
  ];
}

function totals(rows: readonly Row[]): { wall: number; build: number; depsCached: number; depsCachable: number; store: number; cache: number } {
  const cachable = rows.filter((r) => r.rev > 1 && !LOCK_CHANGES.has(r.rev));
  const last = rows[rows.length - 1];
  return {
    wall: rows.reduce((s, r) => s + r.build + r.overhead, 0),
    build: rows.reduce((s, r) => s + r.build, 0),
    depsCached: cachable.filter((r) => r.depsCached).length,
    depsCachable: cachable.length,
    store: last?.storeBytes ?? 0,
    cache: last?.cacheBytes ?? 0,
  };
}

async function main(): Promise<void> {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  ensureEngine();
  const azurite = ensureAzurite();
  fs.mkdirSync(OUT, { recursive: true });
  const pipelines = [
    template('template, key = Dockerfile', 'buildx | "Linux" | ./Dockerfile'),
    template('template, key = Dockerfile + lock file', 'buildx | "Linux" | ./Dockerfile | deps.lock'),
    task('task, local store', localStore),
    task('task, Azure Blob store (Azurite)', azureStore(freshContainer(azurite.blobUrl, 'bench'), azurite.blobUrl)),
  ];
  const results: [Pipeline, Row[]][] = [];
  for (const p of pipelines) results.push([p, await runPipeline(p)]);
  const keys = await keyBench();
  const nodeStart = median(
    Array.from({ length: 7 }, () => {
      const t = process.hrtime.bigint();
      execFileSync(process.execPath, ['-e', '']);
      return Number(process.hrtime.bigint() - t) / 1e6;
    }),
  );

  const [tplDocker, tplLock, ours, azure] = results.map(([, rows]) => rows) as [Row[], Row[], Row[], Row[]];
  const sourceOnlyOf = (rows: Row[]): Row[] => rows.filter((r) => r.rev > 1 && !LOCK_CHANGES.has(r.rev));
  const azureSourceOnly = sourceOnlyOf(azure);
  const localSourceOnly = sourceOnlyOf(ours);
  const t4 = totals(azure);
  const t = { docker: totals(tplDocker), lock: totals(tplLock), ours: totals(ours) };
  const warm = ours.filter((r) => r.depsCached);
  const overheadRatio = median(warm.map((r) => r.overhead / r.build));
  const sourceOnly = localSourceOnly;
  const saveRatio = Math.max(...sourceOnly.map((r) => r.savedBytes / r.changedBytes));
  const storeRatio = t.ours.store / t.ours.cache;
  const keyRatio = keys.ours / keys.baseline;
  const versions = {
    engine: docker(['version', '--format', '{{.Server.Version}}']).trim(),
    buildx: docker(['buildx', 'version']).trim().split(' ').slice(1, 2).join(' '),
    cpu: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
  };

  const md = [
    '# Benchmarks',
    '',
    `Measured by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${versions.cpu}, ${versions.memory}, ${os.type()} ${os.release()}, Node ${process.version}, Docker engine ${versions.engine} (containerd image store), buildx ${versions.buildx}, the \`docker\` driver.`,
    '',
    'The workload: a dependency step keyed by a lock file (a checksum loop over 120 MiB of random data, leaving a layer of about 126 MB), then an application step keyed by the sources (a layer of about 0.5 MB). Ten revisions run as ten fresh jobs per pipeline: before each job the engine\'s build cache and the image are removed. The sources change at every revision, the lock file at revisions 5 and 9.',
    '',
    '- **template**: today\'s Cache@2 template, emulated: Cache@2 restores a tar of the cache folder (the exact key, else the newest entry of the restore key `buildx | "Linux"`), `docker buildx build` runs with `--cache-from`/`--cache-to type=local` on that folder with `mode=max`, and Cache@2 saves a new tar in the post-job step only when the key was not an exact hit. Once with the Dockerfile alone in the key, once with the Dockerfile and the lock file.',
    '- **task**: the bundled task run as the agent runs it (main step, then post-job step) with its defaults: the local store, the default key, `saveCache: onSuccess`, retention 7 days. Once more with `cacheBackend: azureBlob` on Azurite (loopback, a connection string): like a Microsoft-hosted agent, each job starts without a cache folder and downloads what it restores.',
    '',
    'Times are wall seconds of one run on a noisy two-core machine; compare them within the run. *overhead* is everything but the `docker buildx build` process: key, restore, save, and for the task its own start-up and cache export commit. *changed layers* is what this build\'s cache reaches that the previous build\'s did not.',
    '',
    '## Results',
    '',
    '| | template, key = Dockerfile | template, key = Dockerfile + lock | task, local store |',
    '|---|---:|---:|---:|',
    `| dependency step cached, of the ${t.ours.depsCachable} runs that could | ${t.docker.depsCached} | ${t.lock.depsCached} | ${t.ours.depsCached} |`,
    `| store after ${REVISIONS} revisions | ${mb(t.docker.store)} | ${mb(t.lock.store)} | ${mb(t.ours.store)} |`,
    `| store ÷ one build's cache (${mb(t.ours.cache)}) | ${(t.docker.store / t.ours.cache).toFixed(2)}× | ${(t.lock.store / t.ours.cache).toFixed(2)}× | ${storeRatio.toFixed(2)}× |`,
    `| total wall time of the ${REVISIONS} jobs | ${s1(t.docker.wall)} s | ${s1(t.lock.wall)} s | ${s1(t.ours.wall)} s |`,
    `| of which buildx build | ${s1(t.docker.build)} s | ${s1(t.lock.build)} s | ${s1(t.ours.build)} s |`,
    '',
    '## Targets',
    '',
    '| target | measured | met |',
    '|---|---|---|',
    `| the task's overhead is at most 10% of a warm build | median ${(overheadRatio * 100).toFixed(0)}% over the ${warm.length} warm runs | ${overheadRatio <= 0.1 ? 'yes' : 'no'} |`,
    `| a source-only revision saves at most 1.2× the bytes of the changed layers | at most ${saveRatio.toFixed(2)}× over the ${sourceOnly.length} source-only revisions | ${saveRatio <= 1.2 ? 'yes' : 'no'} |`,
    `| the store after ${REVISIONS} revisions is at most 1.3× one build's cache | ${storeRatio.toFixed(2)}× (the lock-file template: ${(t.lock.store / t.ours.cache).toFixed(2)}×, growing with every lock change) | ${storeRatio <= 1.3 ? 'yes' : 'no'} |`,
    `| the dependency step is cached in every run after its first build with the same lock file | ${t.ours.depsCached} of ${t.ours.depsCachable} (the Dockerfile-only template: ${t.docker.depsCached} of ${t.docker.depsCachable}) | ${t.ours.depsCached === t.ours.depsCachable ? 'yes' : 'no'} |`,
    `| key resolution over ${keys.files} files with \`**\` takes at most 1.5× \`find … \\| xargs sha256sum\` | ${s1(keys.ours * 1000)} ms against ${s1(keys.baseline * 1000)} ms: ${keyRatio.toFixed(2)}× | ${keyRatio <= 1.5 ? 'yes' : 'no'} |`,
    '',
    '## The Azure Blob store',
    '',
    `The same ten jobs with \`cacheBackend: azureBlob\` on Azurite. Medians over the ${azureSourceOnly.length} source-only revisions (the dependency layer unchanged), against the local store in the same run:`,
    '',
    '| | local store | Azure Blob store (Azurite) |',
    '|---|---:|---:|',
    `| dependency step cached, of the ${t4.depsCachable} runs that could | ${t.ours.depsCached} | ${t4.depsCached} |`,
    `| restore phase | ${s1(median(localSourceOnly.map((r) => r.restore)))} s | ${s1(median(azureSourceOnly.map((r) => r.restore)))} s |`,
    `| bytes downloaded by the restore | (linked) | ${mb(median(azureSourceOnly.map((r) => r.downloadedBytes ?? 0)))} of ${mb(median(azureSourceOnly.map((r) => r.restoredBytes)))} |`,
    `| save phase | ${s1(median(localSourceOnly.map((r) => r.save)))} s | ${s1(median(azureSourceOnly.map((r) => r.save)))} s |`,
    `| bytes saved (uploaded) | ${mb(median(localSourceOnly.map((r) => r.savedBytes)))} | ${mb(median(azureSourceOnly.map((r) => r.savedBytes)))} |`,
    `| changed layers | ${mb(median(localSourceOnly.map((r) => r.changedBytes)))} | ${mb(median(azureSourceOnly.map((r) => r.changedBytes)))} |`,
    `| total wall time of the ${REVISIONS} jobs | ${s1(t.ours.wall)} s | ${s1(t4.wall)} s |`,
    `| store after ${REVISIONS} revisions, ÷ one build's cache | ${storeRatio.toFixed(2)}× | ${(t4.store / t4.cache).toFixed(2)}× |`,
    '',
    'The Azure store keeps an unreferenced blob for an hour after its upload (another job\'s save may be about to reference it), so within this run it still holds the dependency layers that the lock changes replaced; the first retention an hour later deletes them (STORE-BENCHMARKS.md shows it).',
    '',
    '### Where the task\'s overhead goes',
    '',
    `Medians over the ${warm.length} warm runs, in milliseconds. A warm build of this workload takes ${s1(median(warm.map((r) => r.build)))} s. For scale: starting \`node -e ''\` takes ${nodeStart.toFixed(0)} ms on this machine, and the agent starts Node.js twice for a task with a post-job step.`,
    '',
    '| part | ms |',
    '|---|---:|',
    ...Object.keys(warm[0]?.parts ?? {}).map((k) => `| ${k} | ${median(warm.map((r) => r.parts?.[k] ?? 0)).toFixed(0)} |`),
    '',
    ...results.flatMap(([p, rows]) => [`## ${p.name}`, '', ...table(rows), '']),
  ].join('\n');
  const report = writeReport(ROOT, 'BENCHMARKS.md', md);
  console.log(`\n${md}\n\nWritten to ${path.relative(process.cwd(), report)}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
