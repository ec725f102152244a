// npm run bench: every alternative, in one run, on three kinds of agent.
//
//   alternatives  the seed template (Cache@2 around a docker-container builder with a local cache
//                 folder), BuildKit's own azblob and registry caches (a docker-container builder per
//                 job, as docker/setup-buildx-action makes), the bundled task on each of its
//                 backends (run as the agent runs it, so whatever the task does today is measured;
//                 for the stores also with each cacheTransport), and the kept-state limit (a plain
//                 build on a builder that kept its state);
//   agents        hosted: the hosted-agent engine, a new agent per job; self-hosted: a self-hosted
//                 agent on the containerd store that keeps its engine and folders; self-hosted-classic:
//                 the same on the classic store (the hosted-agent engine), where the task keeps a
//                 docker-container builder for the agent (scripts/bench-pipelines.ts says what each
//                 job starts from);
//   workloads     revisions: six revisions of the benchmark workload by default, --revisions=10 for
//                 the ten (sources at every revision, the lock file at 5 and 9); large: a multi-stage build with about 1.5 GB of cache, cold,
//                 a source change and a late-stage change, on the hosted-agent engine; load: the ways
//                 to get the image into a classic-store engine (scripts/bench-load.ts); keys: key
//                 resolution against find | sha256sum.
//
// Flags: --engines=hosted,self-hosted,self-hosted-classic  --alternatives=<ids> (on every engine; without it, each
//        engine's defaults: DEFAULT_ALTERNATIVES)  --workloads=revisions,large,load,keys
//        --revisions=N (6)  --load-reps=N (3)  --keep (leave out/bench in place)  --update (write BENCHMARKS.md itself)
//        --report-only (render out/bench/results.json again)
// Run under the engine lock: flock -o /work/engine.lock npm run bench
// Nothing here fails on timing: it reports ratios measured in the same run.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveKey } from '../tasks/DockerBuildxCacheV1/src/key/resolve';
import { ROOT } from './agent';
import { measureLoadMethods } from './bench-load';
import {
  ALTERNATIVES,
  isTask,
  Pipeline,
  sameAsAuto,
  TITLES,
  TRANSPORT_ALTERNATIVES,
  type Alternative,
  type JobMeasure,
} from './bench-pipelines';
import { renderHeadline, renderReport, type Results } from './bench-report';
import { ENGINE_KINDS, OUT, run, World, type EngineKind } from './bench-world';
import { largeWorkload, revisionsWorkload, type Workload } from './bench-workload';
import { median, writeReport } from './measure';

const WORKLOADS = ['revisions', 'large', 'load', 'keys'] as const;
type WorkloadId = (typeof WORKLOADS)[number];
/**
 * The large workload's alternatives: the task's two stores (the Azure store also through the
 * transport its auto pipeline did not take, for the bytes each transport downloads), and BuildKit's
 * azblob for the bytes a build reads.
 */
const LARGE_ALTERNATIVES: readonly Alternative[] = [
  'task-local',
  'task-azureBlob',
  'task-azureBlob-direct',
  'task-azureBlob-folder',
  'buildkit-azblob',
];
/**
 * What each kind of agent runs without --alternatives. The hosted-agent engine: everything, and
 * each store also with the cacheTransport that its auto pipeline did not go through (the one it did
 * is skipped: see sameAsAuto), so that one run compares the two transports. The self-hosted agent
 * on the containerd store: everything but the transports. The self-hosted agent on the classic
 * store (the task's kept docker-container builder): the template, the task's two stores, the local
 * store also through the folder (auto goes direct there), and the kept-state limit, so that the
 * whole run stays near 24 minutes.
 */
const DEFAULT_ALTERNATIVES: Record<EngineKind, readonly Alternative[]> = {
  hosted: ALTERNATIVES.filter((a) => a !== 'template-dockerfile'),
  'self-hosted': ALTERNATIVES.filter((a) => a !== 'template-dockerfile' && !TRANSPORT_ALTERNATIVES.includes(a)),
  'self-hosted-classic': ['template', 'task-local', 'task-local-folder', 'task-azureBlob', 'kept-state'],
};

/** Whether the bundled task has an input (a task without it rejects it). */
function taskHasInput(name: string): boolean {
  const task = JSON.parse(fs.readFileSync(path.join(ROOT, 'tasks', 'DockerBuildxCacheV1', 'task.json'), 'utf8')) as {
    inputs: { name: string }[];
  };
  return task.inputs.some((i) => i.name === name);
}

function flag(name: string): string | undefined {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function listFlag<T extends string>(name: string, all: readonly T[], defaults: readonly T[]): T[] {
  const value = flag(name);
  if (value === undefined) return [...defaults];
  const picked = value.split(',').filter((v) => v !== '');
  const bad = picked.filter((v) => !(all as readonly string[]).includes(v));
  if (bad.length > 0) throw new Error(`--${name}: unknown ${bad.join(', ')}; one or more of ${all.join(', ')}`);
  return picked as T[];
}

const log = (line: string): void => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);

function describe(m: JobMeasure): string {
  const mbs = (b: number): string => `${(b / 1e6).toFixed(1)}MB`;
  return `rev ${String(m.rev.n).padStart(2)} ${m.rev.kind.padEnd(6)} hit ${m.hit.padEnd(7)} deps ${m.depsCached ? 'cached' : 'built '} ${m.cached}/${m.total} job ${m.jobS.toFixed(1)}s build ${m.buildS.toFixed(1)}s load ${m.loadS.toFixed(1)}s restore ${m.restoreS.toFixed(1)}s save ${m.saveS.toFixed(1)}s down ${mbs(m.downloaded)} up ${mbs(m.uploaded)}${m.imageOk ? '' : ' IMAGE WRONG'}`;
}

async function runPipeline(world: World, kind: EngineKind, workload: Workload, alt: Alternative, results: JobMeasure[]): Promise<Pipeline> {
  const engine = world.engines.get(kind);
  if (engine === undefined) throw new Error(`no ${kind} engine`);
  const p = new Pipeline(world, engine, workload, alt);
  await p.setup();
  for (const rev of workload.revisions) {
    const m = await p.job(rev);
    results.push(m);
    log(`${kind} ${workload.name} ${TITLES[alt]}: ${describe(m)}`);
  }
  return p;
}

/** Key resolution over 10,000 files with a `**` glob, against find | xargs sha256sum over the same files. */
async function keyBench(): Promise<Results['keys']> {
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
    ours.push(Number(process.hrtime.bigint() - t) / 1e6);
    t = process.hrtime.bigint();
    await run('sh', ['-c', `find "${tree}" -type f -name '*.json' -print0 | xargs -0 sha256sum > /dev/null`]);
    baseline.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  fs.rmSync(tree, { recursive: true, force: true });
  // The first run of each warms the page cache; the median of the rest is reported.
  return { files: 10000, oursMs: median(ours.slice(1)), baselineMs: median(baseline.slice(1)) };
}

function machine(world: World): Results['machine'] {
  const version = (host: string, args: string[]): string => {
    try {
      return execFileSync('docker', args, { env: { ...process.env, DOCKER_HOST: host }, encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  const engines = Object.fromEntries(
    [...world.engines].map(([k, e]) => [
      k,
      `Docker engine ${version(e.dockerHost, ['version', '--format', '{{.Server.Version}}'])}, ${version(e.dockerHost, ['info', '--format', '{{.Driver}}'])} storage driver`,
    ]),
  );
  return {
    date: new Date().toISOString().slice(0, 10),
    cpu: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    buildx: world.hosted?.buildxVersion ?? '?',
    buildkit:
      world.hosted === undefined
        ? '?'
        : execFileSync(world.hosted.buildkitd, ['--version'], { encoding: 'utf8' }).trim().split(' ').slice(2, 3).join(''),
    engines,
  };
}

async function main(): Promise<void> {
  const resultsFile = path.join(OUT, 'results.json');
  if (process.argv.includes('--report-only')) {
    const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8')) as Results;
    const report = writeReport(ROOT, 'BENCHMARKS.md', renderReport(results));
    fs.writeFileSync(path.join(OUT, 'headline.md'), renderHeadline(results));
    console.log(`Written to ${path.relative(process.cwd(), report)} and out/bench/headline.md`);
    return;
  }
  const engines = listFlag<EngineKind>('engines', ENGINE_KINDS, ENGINE_KINDS);
  const picked = flag('alternatives') === undefined ? undefined : listFlag<Alternative>('alternatives', ALTERNATIVES, []);
  const notes: string[] = [];
  // Until the task has the cacheTransport input, it would reject the alternatives that set it: they are left out, and the report says so.
  const transports = taskHasInput('cacheTransport');
  if (!transports) {
    const dropped = [...new Set(engines.flatMap((k) => picked ?? DEFAULT_ALTERNATIVES[k]))].filter((a) =>
      TRANSPORT_ALTERNATIVES.includes(a),
    );
    if (dropped.length > 0) {
      notes.push(
        `Not run: ${dropped.map((a) => TITLES[a]).join(', ')}: the task of this revision has no \`cacheTransport\` input (tasks/DockerBuildxCacheV1/task.json), so the run compares no transports.`,
      );
      log(`NOTE: ${notes[notes.length - 1] ?? ''}`);
    }
  }
  /** The alternatives of one kind of agent: --alternatives on every kind, else that kind's defaults. */
  const alternativesOf = (kind: EngineKind): Alternative[] =>
    (picked ?? DEFAULT_ALTERNATIVES[kind]).filter((a) => transports || !TRANSPORT_ALTERNATIVES.includes(a));
  const alternatives = [...new Set(engines.flatMap(alternativesOf))];
  const workloads = listFlag<WorkloadId>('workloads', WORKLOADS, WORKLOADS);
  // Six revisions by default (the lock file changes at 5), so that the whole run stays under 25 minutes here; --revisions=10 is the ten.
  const revisions = Number(flag('revisions') ?? 6);
  const keep = process.argv.includes('--keep');
  const started = Date.now();

  const world = new World();
  const results: Results = {
    jobs: [],
    profiles: {},
    argv: process.argv.slice(2),
    minutes: 0,
    machine: undefined,
    keys: undefined,
    load: undefined,
    nodeStartMs: NaN,
    shimMs: NaN,
    notes,
  };
  try {
    await world.start(engines);
    results.machine = machine(world);
    const revisionsWl = revisionsWorkload(revisions);
    if (workloads.includes('revisions')) {
      for (const kind of engines) {
        for (const alt of alternativesOf(kind)) {
          const same = picked === undefined ? sameAsAuto(results.jobs, kind, alt) : undefined;
          if (same !== undefined) {
            log(`${kind} ${TITLES[alt]}: skipped, ${TITLES[alt].split(',').slice(0, 2).join(',')} (auto) went through ${same} already`);
            continue;
          }
          const p = await runPipeline(world, kind, revisionsWl, alt, results.jobs);
          // One more warm job of the task's default backend under --cpu-prof, outside the comparison.
          if (alt === 'task-local') {
            const prefix = path.join(OUT, 'profiles', kind);
            fs.mkdirSync(path.dirname(prefix), { recursive: true });
            const last = revisionsWl.revisions[revisionsWl.revisions.length - 1];
            if (last !== undefined) {
              const m = await p.job(last, prefix);
              results.profiles[kind] = { prefix, job: m };
              log(`${kind} task-local under --cpu-prof: ${describe(m)}`);
            }
          }
          await p.teardown();
        }
      }
    }
    if (workloads.includes('large') && engines.includes('hosted')) {
      for (const alt of LARGE_ALTERNATIVES.filter((a) => alternativesOf('hosted').includes(a))) {
        const same = picked === undefined ? sameAsAuto(results.jobs, 'hosted', alt) : undefined;
        if (same !== undefined) {
          log(`hosted large ${TITLES[alt]}: skipped, the auto pipeline went through ${same} already`);
          continue;
        }
        const p = await runPipeline(world, 'hosted', largeWorkload(), alt, results.jobs);
        await p.teardown();
      }
    }
    if (workloads.includes('load') && engines.includes('hosted')) {
      results.load = await measureLoadMethods(world, log, Number(flag('load-reps') ?? 3));
    }
    if (workloads.includes('keys')) results.keys = await keyBench();
    results.nodeStartMs = median(
      Array.from({ length: 7 }, () => {
        const t = process.hrtime.bigint();
        execFileSync(process.execPath, ['-e', '']);
        return Number(process.hrtime.bigint() - t) / 1e6;
      }),
    );
    results.shimMs = await shimCost(world);
  } finally {
    results.minutes = (Date.now() - started) / 60000;
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(resultsFile, JSON.stringify(results, null, 1));
    await world.stop(keep);
  }
  const report = writeReport(ROOT, 'BENCHMARKS.md', renderReport(results));
  fs.writeFileSync(path.join(OUT, 'headline.md'), renderHeadline(results));
  log(
    `done in ${results.minutes.toFixed(1)} min; written to ${path.relative(process.cwd(), report)} (the measurements: ${path.relative(process.cwd(), resultsFile)})`,
  );
  if (results.jobs.some((j) => !j.imageOk)) throw new Error('some jobs built a wrong image: see IMAGE WRONG above');
  if ((workloads.includes('revisions') || workloads.includes('large')) && alternatives.some(isTask) && results.jobs.length === 0)
    throw new Error('no jobs ran');
}

/** What the docker shim adds to one docker call: `docker --version` through it, against without it. */
async function shimCost(world: World): Promise<number> {
  const direct: number[] = [];
  const shimmed: number[] = [];
  for (let i = 0; i < 7; i++) {
    direct.push((await run(world.realDocker, ['--version'])).ms);
    shimmed.push((await run(path.join(world.shimDir, 'docker'), ['--version'])).ms);
  }
  return median(shimmed) - median(direct);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
