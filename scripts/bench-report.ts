// The report of npm run bench: BENCHMARKS.md, rendered from the measurements of one run
// (out/bench/results.json), with the targets of issues #14 and #16 computed and shown as met or not.
import { loadTable, type LoadResults } from './bench-load';
import { ALTERNATIVES, isTask, taskSpec, TITLES, type Alternative, type JobMeasure } from './bench-pipelines';
import { ENGINE_KINDS, type EngineKind } from './bench-world';
import { LARGE_STAGES } from './bench-workload';
import { dockerCallKind, mb, median, sum, summarizeProfile, type ProfileSummary, type StepProbe } from './measure';

export interface Results {
  jobs: JobMeasure[];
  profiles: Record<string, { prefix: string; job: JobMeasure }>;
  argv: string[];
  minutes: number;
  machine?: {
    date: string;
    cpu: string;
    memory: string;
    os: string;
    node: string;
    buildx: string;
    buildkit: string;
    engines: Record<string, string>;
  };
  keys?: { files: number; oursMs: number; baselineMs: number };
  load?: LoadResults;
  nodeStartMs: number;
  shimMs: number;
  /** What the run left out and why (an older results.json has none). */
  notes?: string[];
}

const ENGINES = ENGINE_KINDS;
const ENGINE_TITLES: Record<EngineKind, string> = {
  hosted: 'hosted-agent engine',
  'self-hosted': 'self-hosted agent, containerd store',
  'self-hosted-classic': 'self-hosted agent, classic store',
};
const TASK_ALTS = ALTERNATIVES.filter(isTask);
/** The task's alternatives that ran on an engine (over the revisions workload). */
const taskAltsOn = (r: Results, engine: EngineKind): Alternative[] => TASK_ALTS.filter((a) => jobsOf(r, engine, 'revisions', a).length > 0);

const s1 = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '–');
const s2 = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '–');
const x2 = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–');
const pct = (v: number): string => (Number.isFinite(v) ? `${(v * 100).toFixed(0)}%` : '–');
const gb = (b: number): number => b / 1e9;
const mbs = (b: number): string => (Number.isFinite(b) ? mb(b) : '–');

/** The jobs of one pipeline. */
function jobsOf(r: Results, engine: EngineKind, workload: string, alt: Alternative): JobMeasure[] {
  return r.jobs.filter((j) => j.engine === engine && j.workload === workload && j.alt === alt);
}
const warmOf = (jobs: readonly JobMeasure[]): JobMeasure[] => jobs.filter((j) => j.rev.kind === 'source');
const medianOf = (jobs: readonly JobMeasure[], pick: (j: JobMeasure) => number): number => median(jobs.map(pick));

interface Target {
  readonly issue: string;
  readonly what: string;
  readonly measured: string;
  /** undefined: not measured in this run. */
  readonly met?: boolean;
}

/** The warm source-only job of `alt`, as a ratio to `base`'s, on one engine. */
function warmRatio(r: Results, engine: EngineKind, alt: Alternative, base: Alternative): { ratio: number; a: number; b: number } {
  const a = medianOf(warmOf(jobsOf(r, engine, 'revisions', alt)), (j) => j.jobS);
  const b = medianOf(warmOf(jobsOf(r, engine, 'revisions', base)), (j) => j.jobS);
  return { ratio: a / b, a, b };
}

const met = (ok: boolean, measurable: boolean): boolean | undefined => (measurable ? ok : undefined);

/** The cache transport the task's log named in a pipeline's jobs (`direct`, `folder`), or '' when it named none. */
function transportOf(r: Results, engine: EngineKind, workload: string, alt: Alternative): string {
  const seen = [...new Set(jobsOf(r, engine, workload, alt).map((j) => /^\w+/.exec(j.transport ?? '')?.[0] ?? ''))];
  return seen.length === 1 ? (seen[0] ?? '') : seen.join('/');
}

/** The pipeline of the task's `backend` store whose jobs all went through `transport`: the default (auto) one if it did, else the one that set cacheTransport. */
function withTransport(
  r: Results,
  engine: EngineKind,
  workload: string,
  backend: 'local' | 'azureBlob',
  transport: 'direct' | 'folder',
): Alternative | undefined {
  return TASK_ALTS.filter((a) => taskSpec(a).backend === backend && jobsOf(r, engine, workload, a).length > 0)
    .sort((a, b) => a.length - b.length)
    .find((a) => transportOf(r, engine, workload, a) === transport);
}

/** A title with the transport the task's log named, where it named one: `task, azureBlob (direct)`. */
function titled(r: Results, engine: EngineKind, workload: string, alt: Alternative): string {
  const t = isTask(alt) && taskSpec(alt).transport === undefined ? transportOf(r, engine, workload, alt) : '';
  return t === '' ? TITLES[alt] : `${TITLES[alt]} (${t})`;
}

/**
 * The bytes of the layers a job changed, from its cache folder; for a job that had none (the
 * direct transport), those of a job of the same revision that had one, on the same engine.
 */
function changedLayers(r: Results, j: JobMeasure): number {
  if (j.changedBytes !== undefined) return j.changedBytes;
  const same = r.jobs.filter(
    (o) => o.engine === j.engine && o.workload === j.workload && o.rev.n === j.rev.n && o.changedBytes !== undefined,
  );
  return (same.find((o) => o.alt === 'task-local') ?? same[0])?.changedBytes ?? NaN;
}

function targets(r: Results): Target[] {
  const out: Target[] = [];
  for (const engine of ['self-hosted', 'self-hosted-classic'] as const) {
    for (const alt of taskAltsOn(r, engine)) {
      const kept = warmRatio(r, engine, alt, 'kept-state');
      const tpl = warmRatio(r, engine, alt, 'template');
      out.push({
        issue: '#14',
        what: `${ENGINE_TITLES[engine]}, warm source-only job, ${titled(r, engine, 'revisions', alt)}: ≤ 1.2× the kept-state limit and ≤ 0.6× the template`,
        measured: `${s2(kept.a)} s: ${x2(kept.ratio)} the kept-state limit (${s2(kept.b)} s), ${x2(tpl.ratio)} the template (${s2(tpl.b)} s)`,
        met: met(kept.ratio <= 1.2 && tpl.ratio <= 0.6, Number.isFinite(kept.ratio) && Number.isFinite(tpl.ratio)),
      });
    }
  }
  for (const alt of taskAltsOn(r, 'hosted')) {
    const tpl = warmRatio(r, 'hosted', alt, 'template');
    out.push({
      issue: '#14',
      what: `hosted-agent engine, warm source-only job, ${titled(r, 'hosted', 'revisions', alt)}: ≤ 0.8× the template`,
      measured: `${s2(tpl.a)} s against ${s2(tpl.b)} s: ${x2(tpl.ratio)}`,
      met: met(tpl.ratio <= 0.8, Number.isFinite(tpl.ratio)),
    });
  }
  // azureBlob against BuildKit's own azblob cache: through the direct transport where it ran, else whatever the task did.
  const azDirect = withTransport(r, 'hosted', 'revisions', 'azureBlob', 'direct');
  const azFolder = withTransport(r, 'hosted', 'revisions', 'azureBlob', 'folder');
  const azAlt = azDirect ?? 'task-azureBlob';
  const az = warmRatio(r, 'hosted', azAlt, 'buildkit-azblob');
  const azDown = medianOf(warmOf(jobsOf(r, 'hosted', 'revisions', azAlt)), (j) => j.downloaded);
  const nativeDown = medianOf(warmOf(jobsOf(r, 'hosted', 'revisions', 'buildkit-azblob')), (j) => j.downloaded);
  const folderAz = azFolder === undefined || azFolder === azAlt ? undefined : warmRatio(r, 'hosted', azFolder, 'buildkit-azblob');
  out.push({
    issue: '#14, #16',
    what: `a new agent with azureBlob${azDirect === undefined ? '' : ', direct transport'}: job time ≤ 1.0× BuildKit's type=azblob on the same Azurite (warm source-only jobs, hosted-agent engine)`,
    measured: `${titled(r, 'hosted', 'revisions', azAlt)}: ${s2(az.a)} s against ${s2(az.b)} s: ${x2(az.ratio)}; downloaded ${mbs(azDown)} against ${mbs(nativeDown)}${
      folderAz === undefined || azFolder === undefined
        ? ''
        : `. ${titled(r, 'hosted', 'revisions', azFolder)}: ${s2(folderAz.a)} s, ${x2(folderAz.ratio)}`
    }`,
    met: met(az.ratio <= 1.0, Number.isFinite(az.ratio)),
  });
  for (const alt of taskAltsOn(r, 'hosted')) {
    const warm = warmOf(jobsOf(r, 'hosted', 'revisions', alt));
    const share = medianOf(warm, (j) => (j.jobS - j.buildS) / j.buildS);
    out.push({
      issue: '#14',
      what: `the task's own processes (everything but \`docker buildx build\`) ≤ 10% of the warm build, hosted-agent engine, ${titled(r, 'hosted', 'revisions', alt)}`,
      measured: `median ${pct(share)} (${s2(medianOf(warm, (j) => j.jobS - j.buildS))} s beside a ${s2(medianOf(warm, (j) => j.buildS))} s build)`,
      met: met(share <= 0.1, Number.isFinite(share)),
    });
  }
  // The large workload against the revisions workload, on the hosted-agent engine.
  // The task's stores as auto ran them, and the Azure store through the other transport where the run has it.
  const largeAlts: Alternative[] = ['task-local', 'task-azureBlob', 'task-azureBlob-direct', 'task-azureBlob-folder'];
  for (const alt of largeAlts.filter((a) => taskSpec(a).transport === undefined || jobsOf(r, 'hosted', 'large', a).length > 0)) {
    const large = jobsOf(r, 'hosted', 'large', alt);
    const small = jobsOf(r, 'hosted', 'revisions', alt);
    const restorePerGb = (jobs: JobMeasure[]): number =>
      medianOf(
        jobs.filter((j) => j.rev.kind !== 'cold' && entryBytes(j) > 0),
        (j) => j.restoreS / gb(entryBytes(j)),
      );
    const savePerGb = (jobs: JobMeasure[]): number =>
      medianOf(
        jobs.filter((j) => j.rev.kind === 'cold'),
        (j) => j.saveS / gb(j.savedBytes),
      );
    const rr = restorePerGb(large) / restorePerGb(small);
    const sr = savePerGb(large) / savePerGb(small);
    out.push({
      issue: '#14',
      what: `1.5 GB workload, ${titled(r, 'hosted', 'large', alt)}: restore and save time grow no faster than the cache (seconds per GB ≤ 1.0× the 126 MB workload's)`,
      measured: `restore ${s2(restorePerGb(large))} s/GB against ${s2(restorePerGb(small))}: ${x2(rr)}; save ${s2(savePerGb(large))} s/GB against ${s2(savePerGb(small))}: ${x2(sr)}`,
      met: met(rr <= 1.0 && sr <= 1.0, Number.isFinite(rr) && Number.isFinite(sr)),
    });
    const rss = Math.max(...large.map((j) => (j.probe?.post?.maxRssKb ?? NaN) / 1024));
    out.push({
      issue: '#14',
      what: `1.5 GB workload, ${titled(r, 'hosted', 'large', alt)}: the post-job step's peak RSS < 150 MB`,
      measured: `at most ${s1(rss)} MB`,
      met: met(rss < 150, Number.isFinite(rss)),
    });
    const source = large.filter((j) => j.rev.kind === 'source');
    const azure = taskSpec(alt).backend === 'azureBlob';
    const moved = (j: JobMeasure): number => (azure ? j.uploaded : j.savedBytes);
    const ratio = Math.max(...source.map((j) => moved(j) / changedLayers(r, j)));
    out.push({
      issue: '#14',
      what: `1.5 GB workload, ${titled(r, 'hosted', 'large', alt)}: a source-only save moves ≤ 1.2× the changed layers`,
      measured:
        source
          .map(
            (j) =>
              `${azure ? 'uploaded' : 'saved'} ${mb(moved(j))} for ${mb(changedLayers(r, j))} of changed layers${j.changedBytes === undefined ? " (the folder path's, same revision)" : ''}: ${x2(ratio)}`,
          )
          .join('; ') || '–',
      met: met(ratio <= 1.2, Number.isFinite(ratio)),
    });
  }
  // What a build reads: BuildKit's own azblob cache fetches only the blobs the build needs. One row per
  // transport the Azure store went through in the large workload (the target is the direct one's).
  for (const transport of ['direct', 'folder'] as const) {
    const ours = withTransport(r, 'hosted', 'large', 'azureBlob', transport);
    if (ours === undefined) continue;
    const small = withTransport(r, 'hosted', 'revisions', 'azureBlob', transport);
    const reads: string[] = [];
    let worst = NaN;
    const pairs: [string, JobMeasure[], JobMeasure[]][] = [
      [
        '126 MB workload, source-only',
        small === undefined ? [] : warmOf(jobsOf(r, 'hosted', 'revisions', small)),
        warmOf(jobsOf(r, 'hosted', 'revisions', 'buildkit-azblob')),
      ],
      [
        '1.5 GB workload, source change',
        jobsOf(r, 'hosted', 'large', ours).filter((j) => j.rev.kind === 'source'),
        jobsOf(r, 'hosted', 'large', 'buildkit-azblob').filter((j) => j.rev.kind === 'source'),
      ],
      [
        '1.5 GB workload, late-stage change',
        jobsOf(r, 'hosted', 'large', ours).filter((j) => j.rev.kind === 'late'),
        jobsOf(r, 'hosted', 'large', 'buildkit-azblob').filter((j) => j.rev.kind === 'late'),
      ],
    ];
    for (const [label, mine, native] of pairs) {
      if (mine.length === 0 || native.length === 0) continue;
      const ratio = medianOf(mine, (j) => j.downloaded) / medianOf(native, (j) => j.downloaded);
      worst = Number.isFinite(worst) ? Math.max(worst, ratio) : ratio;
      reads.push(`${label}: ${mb(medianOf(mine, (j) => j.downloaded))} against ${mb(medianOf(native, (j) => j.downloaded))}, ${x2(ratio)}`);
    }
    out.push({
      issue: '#16',
      what: `bytes downloaded by a job ≤ 1.1× the blobs the build reads (what BuildKit's own azblob cache downloads for the same job), ${titled(r, 'hosted', 'large', ours)}, hosted-agent engine`,
      measured: reads.join('; ') || '–',
      met: met(worst <= 1.1, Number.isFinite(worst)),
    });
  }
  const localDirect = withTransport(r, 'hosted', 'revisions', 'local', 'direct');
  const localFolder = withTransport(r, 'hosted', 'revisions', 'local', 'folder');
  if (localDirect !== undefined && localFolder !== undefined) {
    // Both transports of the local store ran: the one against the other.
    const d = warmRatio(r, 'hosted', localDirect, localFolder);
    out.push({
      issue: '#16',
      what: 'the local store through the direct transport no slower than through the folder (docker-container builder, hosted-agent engine, warm source-only jobs)',
      measured: `${titled(r, 'hosted', 'revisions', localDirect)} ${s2(d.a)} s against ${titled(r, 'hosted', 'revisions', localFolder)} ${s2(d.b)} s: ${x2(d.ratio)}`,
      met: met(d.ratio <= 1.0, Number.isFinite(d.ratio)),
    });
  } else {
    const local = medianOf(warmOf(jobsOf(r, 'hosted', 'revisions', 'task-local')), (j) => j.jobS);
    // The folder path: the task over a cache folder that is simply there (directory), without Cache@2's restore and save around it.
    const folder = medianOf(
      warmOf(jobsOf(r, 'hosted', 'revisions', 'task-directory')),
      (j) => j.jobS - j.restoreS - j.saveS + folderPhases(j),
    );
    out.push({
      issue: '#16',
      what: 'the local store with a docker-container builder no slower than the folder path (hosted-agent engine, warm source-only jobs)',
      measured: `${titled(r, 'hosted', 'revisions', 'task-local')} ${s2(local)} s against ${s2(folder)} s for the task over a cache folder that is there (directory, Cache@2's restore and save left out): ${x2(local / folder)}`,
      met: met(local / folder <= 1.0, Number.isFinite(local / folder)),
    });
  }
  // The targets the earlier benchmark kept, on the self-hosted agent's local store.
  const sh = jobsOf(r, 'self-hosted', 'revisions', 'task-local');
  const shSource = warmOf(sh);
  const saveRatio = Math.max(...shSource.map((j) => j.savedBytes / (j.changedBytes ?? NaN)));
  out.push({
    issue: 'earlier',
    what: `a source-only revision saves ≤ 1.2× the bytes of the changed layers (${ENGINE_TITLES['self-hosted']}, local)`,
    measured: `at most ${x2(saveRatio)} over ${shSource.length} source-only revisions`,
    met: met(saveRatio <= 1.2, Number.isFinite(saveRatio)),
  });
  const last = sh[sh.length - 1];
  const storeRatio = last === undefined ? NaN : last.storeBytes / (last.cacheBytes ?? NaN);
  out.push({
    issue: 'earlier',
    what: `the store after ${sh.length} revisions ≤ 1.3× one build's cache (${ENGINE_TITLES['self-hosted']}, local)`,
    measured: x2(storeRatio),
    met: met(storeRatio <= 1.3, Number.isFinite(storeRatio)),
  });
  for (const engine of ENGINES) {
    const jobs = jobsOf(r, engine, 'revisions', 'task-local');
    const could = jobs.filter((j) => j.rev.kind === 'source');
    if (jobs.length === 0) continue;
    out.push({
      issue: 'earlier',
      what: `the dependency step is cached in every job after its first build with the same lock file (${ENGINE_TITLES[engine]}, local)`,
      measured: `${could.filter((j) => j.depsCached).length} of ${could.length}`,
      met: met(
        could.every((j) => j.depsCached),
        could.length > 0,
      ),
    });
  }
  if (r.keys !== undefined) {
    const k = r.keys.oursMs / r.keys.baselineMs;
    out.push({
      issue: 'earlier',
      what: `key resolution over ${r.keys.files} files with \`**\` ≤ 1.5× \`find … \\| xargs sha256sum\``,
      measured: `${s1(r.keys.oursMs)} ms against ${s1(r.keys.baselineMs)} ms: ${x2(k)}`,
      met: k <= 1.5,
    });
  }
  return out;
}

/**
 * The entry a job's restore made ready: what the task says it restored, or for the direct transport
 * (whose restore only opens the entry, and BuildKit then reads what it needs) the store's bytes before the job.
 */
export function entryBytes(j: JobMeasure): number {
  if (j.restoredBytes > 0) return j.restoredBytes;
  return /^direct\b/.test(j.transport ?? '') && j.hit !== 'false' ? j.storeBytes - j.savedBytes : 0;
}

/** The directory backend's own Cache phase, which the folder path keeps (restoreS holds it together with Cache@2's restore). */
function folderPhases(j: JobMeasure): number {
  return sum((j.probe?.phases ?? []).filter(([t]) => t === 'Cache').map(([, ms]) => ms)) / 1000;
}

/** Which builder driver and cache transport the task chose on an engine, as its log says, per alternative. */
function driversLine(r: Results, engine: EngineKind): string[] {
  // What differs from job to job (the facade's port, the builder's and the agent's names) is left out, and so is the closing stop.
  const tidy = (text: string): string =>
    text
      .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1')
      .replace(/buildx-cache-[0-9a-z-]+/g, 'buildx-cache-…')
      .replace(/'bench-self-hosted[a-z-]*-[0-9a-f]+'/g, "the pipeline's agent")
      .replace(/\.$/, '');
  const said = (a: Alternative, pick: (j: JobMeasure) => string | undefined): string[] => [
    ...new Set(jobsOf(r, engine, 'revisions', a).flatMap((j) => tidy(pick(j) ?? '') || [])),
  ];
  const seen = taskAltsOn(r, engine).map((a) => {
    const lifetimes = said(a, (j) => j.lifetime);
    const transports = said(a, (j) => j.transport);
    return `${TITLES[a]}: ${said(a, (j) => j.driver ?? '?').join('; ')}${lifetimes.length === 0 ? '' : `; lifetime ${lifetimes.join('; ')}`}${transports.length === 0 ? '' : `; transport ${transports.join('; ')}`}`;
  });
  if (seen.length === 0) return [];
  return [
    `The task's builder, its lifetime and the cache transport on the ${ENGINE_TITLES[engine]}, as its log says:`,
    '',
    ...seen.map((l) => `- ${l}.`),
    '',
  ];
}

/**
 * The README's headline table: the warm source-only job of every alternative on both engines, as
 * ratios to the template and the kept-state limit on the same engine (written to out/bench/headline.md).
 */
export function renderHeadline(r: Results): string {
  const warm = (e: EngineKind, a: Alternative): number => medianOf(warmOf(jobsOf(r, e, 'revisions', a)), (j) => j.jobS);
  const engines = ENGINES.filter((e) => r.jobs.some((j) => j.engine === e && j.workload === 'revisions'));
  const alts = ALTERNATIVES.filter((a) => engines.some((e) => jobsOf(r, e, 'revisions', a).length > 0));
  const cells = (e: EngineKind, a: Alternative): string => {
    const s = warm(e, a);
    return Number.isFinite(s) ? `${s2(s)} s | ${x2(s / warm(e, 'template'))} | ${x2(s / warm(e, 'kept-state'))}` : '– | – | –';
  };
  return [
    `| warm source-only job | ${engines.map((e) => `${ENGINE_TITLES[e]} | ÷ template | ÷ kept state`).join(' | ')} |`,
    `|---|${engines.map(() => '---:|---:|---:').join('|')}|`,
    ...alts.map((a) => `| ${TITLES[a]} | ${engines.map((e) => cells(e, a)).join(' | ')} |`),
    '',
  ].join('\n');
}

/** The comparison table of one engine: every alternative against the template and the kept-state limit. */
function comparison(r: Results, engine: EngineKind): string[] {
  const alts = ALTERNATIVES.filter((a) => jobsOf(r, engine, 'revisions', a).length > 0);
  if (alts.length === 0) return [];
  const warmJob = (a: Alternative): number => medianOf(warmOf(jobsOf(r, engine, 'revisions', a)), (j) => j.jobS);
  const tpl = warmJob('template');
  const kept = warmJob('kept-state');
  const total = (a: Alternative): number => sum(jobsOf(r, engine, 'revisions', a).map((j) => j.jobS));
  const tplTotal = total('template');
  const n = jobsOf(r, engine, 'revisions', alts[0] ?? 'template').length;
  return [
    `| ${ENGINE_TITLES[engine]} | warm source-only job, median s | ÷ template | ÷ kept-state limit | ${n} jobs, s | ÷ template | dependency step cached | downloaded per warm job | uploaded per warm job | store after the last job |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...alts.map((a) => {
      const jobs = jobsOf(r, engine, 'revisions', a);
      const warm = warmOf(jobs);
      const could = jobs.filter((j) => j.rev.kind === 'source');
      return `| ${TITLES[a]} | ${s2(warmJob(a))} | ${x2(warmJob(a) / tpl)} | ${x2(warmJob(a) / kept)} | ${s1(total(a))} | ${x2(total(a) / tplTotal)} | ${could.filter((j) => j.depsCached).length} of ${could.length} | ${mb(medianOf(warm, (j) => j.downloaded))} | ${mb(medianOf(warm, (j) => j.uploaded))} | ${a === 'kept-state' ? '(the builder)' : mb(jobs[jobs.length - 1]?.storeBytes ?? NaN)} |`;
    }),
  ];
}

/** Every job of one pipeline. */
function jobTable(jobs: readonly JobMeasure[]): string[] {
  const folder = jobs.some((j) => j.changedBytes !== undefined);
  return [
    `| rev | kind | hit | steps cached | job s | build s | of which load s | restore s | save s | downloaded | uploaded | store gained |${folder ? ' changed layers |' : ''} image |`,
    `|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|${folder ? '---:|' : ''}---|`,
    ...jobs.map(
      (j) =>
        `| ${j.rev.n} | ${j.rev.kind} | ${j.hit} | ${j.cached}/${j.total}${j.depsCached ? ' (deps)' : ''} | ${s1(j.jobS)} | ${s1(j.buildS)} | ${s1(j.loadS)} | ${s1(j.restoreS)} | ${s1(j.saveS)} | ${mb(j.downloaded)} | ${mb(j.uploaded)} | ${mb(j.savedBytes)} |${folder ? ` ${j.changedBytes === undefined ? '–' : mb(j.changedBytes)} |` : ''} ${j.imageOk ? 'right' : 'WRONG'} |`,
    ),
  ];
}

/** The large workload: per job, restore and save per GB, bytes moved, peak RSS. */
function largeTable(r: Results): string[] {
  const jobs = r.jobs.filter((j) => j.workload === 'large');
  if (jobs.length === 0) return [];
  const rss = (p?: StepProbe): string => (p === undefined ? '–' : s1(p.maxRssKb / 1024));
  const written = (p?: StepProbe): string => (p?.io.write_bytes === undefined ? '–' : mb(p.io.write_bytes));
  return [
    '| alternative | job | job s | build s | restore s | restored | restore s/GB | save s | save s/GB | downloaded | uploaded | written, main / post | peak RSS MB, main / post | image |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...jobs.map((j) => {
      // BuildKit's own caches have no restore or save of their own: their cells are '–', not 0.
      const phases = isTask(j.alt);
      const restorePerGb = phases && entryBytes(j) > 0 ? j.restoreS / gb(entryBytes(j)) : NaN;
      const saveBytes = isTask(j.alt) && taskSpec(j.alt).backend === 'azureBlob' ? j.uploaded : j.savedBytes;
      const savePerGb = phases && saveBytes > 1e7 ? j.saveS / gb(saveBytes) : NaN;
      return `| ${TITLES[j.alt]} | ${j.rev.n} ${j.rev.kind} | ${s1(j.jobS)} | ${s1(j.buildS)} | ${phases ? s2(j.restoreS) : '–'} | ${phases ? mb(j.restoredBytes) : '–'} | ${s2(restorePerGb)} | ${phases ? s2(j.saveS) : '–'} | ${s2(savePerGb)} | ${mb(j.downloaded)} | ${mb(j.uploaded)} | ${written(j.probe?.main)} / ${written(j.probe?.post)} | ${rss(j.probe?.main)} / ${rss(j.probe?.post)} | ${j.imageOk ? 'right' : 'WRONG'} |`;
    }),
  ];
}

/**
 * Milliseconds of [from, to) given to labels: each moment to the first label (in the order given)
 * with an interval under way then, else to `rest`. Every label given has an entry (0 when it had none).
 */
export function attribute(
  labelled: readonly (readonly [string, readonly (readonly [number, number])[]])[],
  from: number,
  to: number,
  rest: string,
): Map<string, number> {
  const out = new Map<string, number>([...labelled.map(([label]): [string, number] => [label, 0]), [rest, 0]]);
  const cuts = [...new Set([from, to, ...labelled.flatMap(([, spans]) => spans.flat()).filter((t) => t > from && t < to)])].sort(
    (a, b) => a - b,
  );
  for (let i = 0; i + 1 < cuts.length; i++) {
    const a = cuts[i] ?? 0;
    const b = cuts[i + 1] ?? 0;
    const label = labelled.find(([, spans]) => spans.some(([s, e]) => s <= a && e >= b))?.[0] ?? rest;
    out.set(label, (out.get(label) ?? 0) + b - a);
  }
  return out;
}

/** Milliseconds of one task job by part, from its probes: the main step, then the post-job step. */
export function breakdown(j: JobMeasure): Map<string, number> {
  const parts = new Map<string, number>();
  const p = j.probe;
  if (p?.main === undefined || p.post === undefined) return parts;
  const add = (k: string, ms: number): void => {
    parts.set(k, (parts.get(k) ?? 0) + ms);
  };
  const module = (probe: StepProbe): number =>
    sum(probe.modules.filter(([name]) => name === 'main.js' || name === 'post.js').map(([, a, b]) => b - a));
  const lazyLoads = (probe: StepProbe): (readonly [string, number, number])[] => probe.modules.filter(([name]) => name === 'remote.js');
  const lazy = (probe: StepProbe): number => sum(lazyLoads(probe).map(([, a, b]) => b - a));
  const inMain = p.docker.filter((c) => c.start < p.postStart);
  const inPost = p.docker.filter((c) => c.start >= p.postStart);
  const build = sum(inMain.filter((c) => c.args.startsWith('buildx build')).map((c) => c.end - c.start));

  add('main: Node.js start-up', p.main.preload - p.main.origin);
  add('main: loading main.js (compile, top level)', module(p.main));
  if (lazy(p.main) > 0) add('main: loading remote.js (Azure SDK)', lazy(p.main));
  for (const [title, ms] of p.phases) {
    if (title === 'Build') {
      add('main: Build: `docker buildx build`, image load', j.loadS * 1000);
      add('main: Build: `docker buildx build`, cache export', j.cacheExportS * 1000);
      add('main: Build: `docker buildx build`, the rest', build - (j.loadS + j.cacheExportS) * 1000);
      add('main: Build: the task around it', ms - build);
    } else add(`main: ${title}${title === 'Preflight' || title === 'Builder' ? ' (waiting, after the restore)' : ''}`, ms);
  }
  const accounted = sum([...parts.values()]);
  add('main: the rest (between phases, outputs, exit)', p.mainMs - accounted);

  // The post step's wall time, each moment given to the first of these that was under way then, so
  // that what ran side by side (the builder's removal beside the save, remote.js inside it) counts once.
  const groups: (readonly [number, number])[] = [];
  let open: number | undefined;
  for (const [t, line] of p.post.lines) {
    if (line === '##[group]Save cache') open = t;
    else if (line === '##[endgroup]' && open !== undefined) {
      groups.push([open, t]);
      open = undefined;
    }
  }
  const calls = (what: string): (readonly [number, number])[] =>
    inPost.filter((c) => c.args.startsWith(what)).map((c): readonly [number, number] => [c.start, c.end]);
  const rest = 'post: the rest (summary, cleanup, exit)';
  const post = attribute(
    [
      ['post: Node.js start-up', [[p.post.origin, p.post.preload]]],
      ['post: loading remote.js (Azure SDK)', lazyLoads(p.post).map(([, a, b]): readonly [number, number] => [a, b])],
      [
        'post: loading post.js (compile, top level)',
        p.post.modules.filter(([n]) => n === 'post.js').map(([, a, b]): readonly [number, number] => [a, b]),
      ],
      ['post: Save cache', groups],
      ['post: `docker buildx rm` (the builder; beside the save, only after it)', calls('buildx rm')],
      ['post: `docker buildx prune` (the builder the agent keeps; beside the save, only after it)', calls('buildx prune')],
    ],
    p.post.origin,
    p.post.origin + p.postMs,
    rest,
  );
  // In the rows' usual order; a part that did not happen has no row.
  for (const k of [
    'post: Node.js start-up',
    'post: loading post.js (compile, top level)',
    'post: Save cache',
    'post: `docker buildx rm` (the builder; beside the save, only after it)',
    'post: `docker buildx prune` (the builder the agent keeps; beside the save, only after it)',
    rest,
    'post: loading remote.js (Azure SDK)',
  ]) {
    const ms = post.get(k);
    if (ms !== undefined && (ms > 0 || k === rest)) add(k, ms);
  }
  return parts;
}

/** Medians of each docker call kind in each step. */
function dockerCalls(jobs: readonly JobMeasure[]): { kind: string; step: string; ms: number; n: number }[] {
  const per = new Map<string, number[]>();
  for (const j of jobs) {
    const p = j.probe;
    if (p === undefined) continue;
    const byKind = new Map<string, number>();
    for (const c of p.docker) {
      const k = `${c.start < p.postStart ? 'main' : 'post'}|${dockerCallKind(c.args)}`;
      byKind.set(k, (byKind.get(k) ?? 0) + c.end - c.start);
    }
    for (const [k, ms] of byKind) per.set(k, [...(per.get(k) ?? []), ms]);
  }
  return [...per].map(([k, ms]) => {
    const [step = '', kind = ''] = k.split('|');
    return { kind, step, ms: median(ms), n: ms.length };
  });
}

function whereTimeGoes(r: Results, engine: EngineKind): string[] {
  const alts = TASK_ALTS.filter((a) => warmOf(jobsOf(r, engine, 'revisions', a)).some((j) => j.probe !== undefined));
  if (alts.length === 0) return [];
  const perAlt = new Map(alts.map((a) => [a, warmOf(jobsOf(r, engine, 'revisions', a)).map(breakdown)]));
  const keys = [...new Set([...perAlt.values()].flatMap((bs) => bs.flatMap((b) => [...b.keys()])))];
  const mainKeys = keys.filter((k) => k.startsWith('main'));
  const postKeys = keys.filter((k) => k.startsWith('post'));
  const cell = (a: Alternative, k: string): string => {
    const values = (perAlt.get(a) ?? []).map((b) => b.get(k)).filter((v): v is number => v !== undefined);
    return values.length === 0 ? '' : median(values).toFixed(0);
  };
  const jobMs = (a: Alternative): string => (medianOf(warmOf(jobsOf(r, engine, 'revisions', a)), (j) => j.jobS) * 1000).toFixed(0);
  const lines = [
    `| ms, median of the warm source-only jobs | ${alts.map((a) => TITLES[a]).join(' | ')} |`,
    `|---|${alts.map(() => '---:').join('|')}|`,
    ...[...mainKeys, ...postKeys].map((k) => `| ${k} | ${alts.map((a) => cell(a, k)).join(' | ')} |`),
    `| **the job** | ${alts.map((a) => `**${jobMs(a)}**`).join(' | ')} |`,
    '',
    `The docker CLI calls the task made (medians, ms; each call through the timing shim costs about ${s1(r.shimMs)} ms more than without it). The preflight's and the builder's calls run beside the restore.`,
    '',
    `| step | call | ${alts.map((a) => TITLES[a]).join(' | ')} |`,
    `|---|---|${alts.map(() => '---:').join('|')}|`,
  ];
  const calls = new Map(alts.map((a) => [a, dockerCalls(warmOf(jobsOf(r, engine, 'revisions', a)))]));
  const kinds = [...new Set([...calls.values()].flatMap((cs) => cs.map((c) => `${c.step}|${c.kind}`)))].sort();
  for (const k of kinds) {
    const [step = '', kind = ''] = k.split('|');
    lines.push(
      `| ${step} | \`docker ${kind}\` | ${alts
        .map(
          (a) =>
            calls
              .get(a)
              ?.find((c) => c.step === step && c.kind === kind)
              ?.ms.toFixed(0) ?? '',
        )
        .join(' | ')} |`,
    );
  }
  return lines;
}

function profileSection(r: Results): string[] {
  const out: string[] = [];
  for (const [engine, { prefix, job }] of Object.entries(r.profiles)) {
    const steps: [string, ProfileSummary | undefined][] = [
      ['main', summarizeProfile(`${prefix}.main.cpuprofile`)],
      ['post', summarizeProfile(`${prefix}.post.cpuprofile`)],
    ];
    if (steps.every(([, s]) => s === undefined)) continue;
    out.push(
      `**${ENGINE_TITLES[engine as EngineKind]}**, one more warm job of the task's local store (a full hit, ${s1(job.jobS)} s), profiled:`,
      '',
    );
    for (const [step, s] of steps) {
      if (s === undefined) continue;
      const kinds = Object.entries(s.byKind)
        .sort((a, b) => b[1] - a[1])
        .map(([k, ms]) => `${k} ${ms.toFixed(0)}`)
        .join(', ');
      const top = s.top.map((t) => `\`${t.name}\` ${t.ms.toFixed(1)}`).join(', ');
      out.push(
        `- ${step} step, ${s.totalMs.toFixed(0)} ms profiled: ${kinds}. Compiling JavaScript ${s.compileMs.toFixed(0)} ms; the bundles' top level ${Object.entries(
          s.bundleTopLevelMs,
        )
          .map(([b, ms]) => `${b} ${ms.toFixed(0)} ms`)
          .join(', ')}. Most self time: ${top}.`,
      );
    }
    out.push('');
  }
  return out;
}

function loadSection(load: LoadResults | undefined): string[] {
  if (load === undefined) return [];
  const right = load.methods.filter((m) => m.ok && m.id !== 'cacheonly' && m.id !== 'push-only');
  const fastest = [...right].sort((a, b) => median(a.runs) - median(b.runs))[0];
  const today = load.methods.find((m) => m.id === 'load');
  const base = load.methods.find((m) => m.id === 'cacheonly');
  const push = load.methods.find((m) => m.id === 'push-only');
  const cost = (m: { runs: number[] } | undefined): number =>
    m === undefined || base === undefined ? NaN : median(m.runs) - median(base.runs);
  return [
    '## Loading the image on a classic-store engine',
    '',
    `Measured in this run by \`scripts/bench-load.ts\` (also \`npm run bench:load\` on its own): ${load.engine}, the revisions workload's image (${mb(load.imageBytes)} in the engine), every step cached from a local cache folder that each run imports into an empty builder, as on a new hosted agent. ${load.reps} runs of each way, in a rotating order. *Beyond no image* is the run's time less the median of the runs that made no image; *BuildKit export* and *engine side* are BuildKit's export vertices and what the engine did (its import, \`docker load\`, \`docker pull\`).`,
    '',
    ...loadTable(load),
    '',
    fastest === undefined || today === undefined
      ? 'No way of loading was right in this run.'
      : `Fastest way that is right: **${fastest.title}**, ${s2(cost(fastest))} s beyond no image against ${s2(cost(today))} s for \`--load\` (${x2(cost(fastest) / cost(today))}).${push === undefined ? '' : ` Not loading at all when the output goes to a registry costs ${s2(cost(push))} s beyond no image (the push itself).`}`,
    '',
  ];
}

/** Which alternatives ran on each kind of agent, over the revisions workload. */
function ranText(r: Results): string {
  const engines = ENGINES.filter((e) => r.jobs.some((j) => j.engine === e && j.workload === 'revisions'));
  if (engines.length === 0) return 'No pipeline of the revisions workload ran.';
  return `${engines
    .map(
      (e) =>
        `On the ${ENGINE_TITLES[e]}: ${ALTERNATIVES.filter((a) => jobsOf(r, e, 'revisions', a).length > 0)
          .map((a) => TITLES[a])
          .join('; ')}`,
    )
    .join(
      '. ',
    )}. (\`npm run bench\` runs fewer alternatives on the self-hosted agent on the classic store and compares the transports on the hosted-agent engine only, so that the whole run stays near 22 minutes; \`--alternatives\` runs the ones it names on every kind.)`;
}

/** The revisions the run's jobs went through: how many, where the lock file changed, which were warm source-only jobs. */
function revisionsCount(r: Results): number {
  return Math.max(0, ...r.jobs.filter((j) => j.workload === 'revisions').map((j) => j.rev.n));
}

function revisionsText(r: Results): string {
  const revs = new Map(r.jobs.filter((j) => j.workload === 'revisions').map((j) => [j.rev.n, j.rev.kind]));
  const list = (kind: string): string => {
    const ns = [...revs]
      .filter(([, k]) => k === kind)
      .map(([n]) => n)
      .sort((a, b) => a - b);
    return ns.length === 0 ? 'none' : ns.length === 1 ? String(ns[0]) : `${ns.slice(0, -1).join(', ')} and ${String(ns[ns.length - 1])}`;
  };
  const fewer =
    revisionsCount(r) < 10
      ? " (fewer than the issue's ten, so that the whole run stays under 25 minutes on this machine; `--revisions=10` runs ten)"
      : '';
  return `${revisionsCount(r)} revisions${fewer}, the sources changing at every one, the lock file at ${list('lock')}, so the warm source-only jobs are revisions ${list('source')}`;
}

export function renderReport(r: Results): string {
  const m = r.machine;
  const ts = targets(r);
  const shown = (t: Target): string => (t.met === undefined ? 'not measured' : t.met ? '**met**' : '**not met**');
  const versions =
    m === undefined
      ? ''
      : `${m.cpu}, ${m.memory}, ${m.os}, Node ${m.node}; buildx ${m.buildx} and BuildKit ${m.buildkit} (from ../shared) on every engine; ${Object.entries(
          m.engines,
        )
          .map(([k, v]) => `${ENGINE_TITLES[k as EngineKind]}: ${v}`)
          .join('; ')}`;
  return [
    '# Benchmarks',
    '',
    `Measured by \`npm run bench\`${r.argv.length > 0 ? ` (\`${r.argv.join(' ')}\`)` : ''} on ${m?.date ?? '?'} in ${r.minutes.toFixed(0)} minutes: ${versions}.`,
    '',
    'Times are wall seconds of one run on a noisy two-core machine: compare them within the run, as ratios. Every figure below comes from this run.',
    '',
    '## How it is measured',
    '',
    '**Three kinds of agent**, on two engines:',
    '',
    "- **hosted-agent engine** (`scripts/hosted-engine.sh`): the classic image store, as on a Microsoft-hosted agent. Every job is a new agent: new workspace, work, temp and docker-config folders; the engine holds neither the image nor the BuildKit image, which is pulled again (from the loopback mirror that stands in for Docker Hub), nor any builder of an earlier job (one the template or the task left to the machine, which a Microsoft-hosted agent discards after the job, is removed between jobs, outside their time), and its build cache is empty. What outlives a job is only what lives outside the agent: the Cache@2 service (emulated: a tar per entry on local disk, so without its network time), Azurite, the registry, and for the task's `local` store a folder that agents mount as a share (`localStorePath`). The task runs with its default `driver: auto` (which chooses `docker-container` on the classic store; the line under each table below says what it chose in this run); when the task's cache goes direct it runs with no builder input, as on a real agent (the task gives its builder the host's network, and the agent's docker config holds the mirror of docker.io as buildx's default BuildKit config, `buildkitd.default.toml`), so `auto` asks the engine for its image store before it creates the builder; when it goes through the folder (`cacheTransport: folder`, `directory`, `registry`), `driverOptions: network=host` and a `buildkitdConfig` that mirrors docker.io are what reaching the loopback mirror takes here, and with them `auto` is `docker-container` at once.",
    "- **self-hosted agent, containerd store** (`scripts/engine.sh`): the containerd image store, the task with its default `driver: auto` (which chooses the engine's own BuildKit, the `docker` driver). One agent runs a pipeline's jobs in turn and keeps its engine (images, build cache) and its folders (`Pipeline.Workspace`, so the cache folder; `Agent.WorkFolder`, so the local store); each job gets a new temp folder. Each pipeline starts on a new such agent: empty folders, an empty build cache, the BuildKit and base images present.",
    "- **self-hosted agent, classic store** (the hosted-agent engine, as on a self-hosted agent with Ubuntu's `docker.io`): one agent that outlives its jobs, as above, on the classic image store, so `driver: auto` chooses `docker-container` and the task keeps that builder for the agent across the pipeline's jobs (`builderLifetime: auto`, pruned to `builderKeepStorage` after each job); the mirror is reached as on the hosted-agent engine (no builder input when the cache goes direct, else `driverOptions` and `buildkitdConfig`). Each pipeline starts on a new agent (a new name and id, so a new kept builder): the builder the previous pipeline's agent kept is removed with its state volume after that pipeline, and any left at the end of the run.",
    '',
    "The agent variables differ as on real agents: a hosted job gets `Agent.Name` `Azure Pipelines N`, a new `Agent.Id` and `Agent.MachineName`, and `Agent.CloudId`; each self-hosted pipeline runs on an agent with a name and id of its own, the same in all its jobs, and no `Agent.CloudId` (so the task treats it as an agent that outlives its jobs). All use buildx from `../shared` through the agent's docker config.",
    '',
    '**The alternatives**, each a pipeline of jobs, the same revisions, the same Dockerfile on an engine:',
    '',
    '- **template**: today\'s template: Cache@2 restores a tar of the cache folder (the exact key `buildx | "Linux" | ./Dockerfile | deps.lock`, else the newest entry of `buildx | "Linux"`; on a self-hosted agent over the folder that is there), a `docker-container` builder is created, `docker buildx build --cache-from type=local,src=… --cache-to type=local,dest=…,mode=max --load` runs, and Cache@2 saves a new tar when the key was not an exact hit. On a self-hosted agent the job removes its builder (a fixed name would collide with the next job); on a hosted agent it goes with the VM.',
    "- **BuildKit type=azblob** and **type=registry**: BuildKit's own cache backends, as docker/setup-buildx-action and docker/build-push-action use them: a `docker-container` builder created and bootstrapped per job and removed after it, `--cache-from`/`--cache-to type=azblob,…` on the run's Azurite (account name and key as attributes) or `type=registry,ref=…` on the run's registry (after a `docker login`), `mode=max`, `--load`. The engine's own BuildKit has no azblob cache (`unknown cache exporter: \"azblob\"` on engine 26.1), so both use a builder of their own on both engines.",
    "- **task, local / azureBlob / directory / registry**: the bundled task run as the agent runs it (`scripts/agent.ts`: the main step, then the post-job step), whatever it does today, with its defaults and the backend's inputs. `directory` on a hosted agent runs between Cache@2's restore and save, as the README's recipe has it (a key unique to each run); on a self-hosted agent the folder is simply kept. `registry` logs in with a Docker Registry service connection. *task, local, cacheTransport: direct* and the like set that input, so that one run compares BuildKit reading the store through the task's registry on loopback (`direct`) with the cache folder (`folder`); the plain *task, local* and *task, azureBlob* leave it at `auto`, and the line under each table says which transport the task's log named.",
    "- **kept-state limit**: a plain `docker buildx build --load` without cache flags on a builder that kept its state: on the classic store (the hosted-agent engine and the self-hosted agent on it) one `docker-container` builder kept across the pipeline's jobs (on the hosted-agent engine the image is still gone before each job), on the containerd store the engine's own builder.",
    '',
    `**What ran.** ${ranText(r)}`,
    ...(r.notes ?? []).flatMap((n) => ['', `**Note.** ${n}`]),
    '',
    `**What is measured.** A job's time is the sum of its steps' wall times: the task's two step processes as the agent sees them (plus Cache@2 around \`directory\` on a hosted agent), or the template's and BuildKit's commands one by one. The \`docker buildx build\` process is timed on its own: for the task by a \`docker\` shim first on the steps' PATH that logs each docker call's start and end (about ${s1(r.shimMs)} ms a call). Inside the build, BuildKit's own vertex times give the image load (the exporter, \`exporting to docker image format\` or \`exporting to oci image format\` or with the docker driver \`exporting to image\`, or buildx's \`importing to docker\` if that took longer: the import reads the tarball as it is sent, so the two overlap) and the cache export (\`exporting cache to …\`). Azurite and the registry are the run's own, each behind a proxy on loopback that counts the bytes each way: *downloaded* and *uploaded* are what went through it (for Cache@2, the tar). A probe loaded into each of the task's step processes (\`NODE_OPTIONS=--require scripts/bench-probe.ts\`; the task's code is unchanged) records when the process started, when its bundle was loaded, when each log group opened and closed, its peak RSS (getrusage, the Node.js process alone) and its \`/proc/self/io\`. Starting \`node -e ''\` takes ${s1(r.nodeStartMs)} ms here.`,
    '',
    `**Workloads.** *revisions*: a dependency step keyed by a lock file (a checksum loop over 120 MiB of random data, a layer of about 126 MB) and an application step keyed by the sources; ${revisionsText(r)}. *large* (hosted-agent engine): a multi-stage build with about 1.5 GB of cache in incompressible layers (` +
      `a ${LARGE_STAGES.toolchain} MiB toolchain stage, a ${LARGE_STAGES.deps} MiB dependency stage on it, a build stage on that, an independent ${LARGE_STAGES.assets} MiB assets stage, and a small final image), three jobs: cold, a source change (the build stage runs again and needs the toolchain and dependencies), and a late-stage change (only the final stage runs again: every other stage is cached whole, so a build that fetches lazily reads almost nothing).`,
    '',
    '## Targets',
    '',
    '| issue | target | measured | |',
    '|---|---|---|---|',
    ...ts.map((t) => `| ${t.issue} | ${t.what} | ${t.measured} | ${shown(t)} |`),
    '',
    `## ${revisionsCount(r)} revisions, every alternative`,
    '',
    ...ENGINES.flatMap((e) => {
      const c = comparison(r, e);
      return c.length === 0 ? [] : [...c, '', ...driversLine(r, e)];
    }),
    "## Where the task's time goes",
    '',
    "Each warm source-only job of the task split by its probes, medians in milliseconds. The main step's phases are the task's own timings; the preflight and the builder run beside the restore, so their rows are only what the job still waited for after it. Inside the build, the image load and the cache export are BuildKit's vertex times.",
    '',
    ...ENGINES.flatMap((e) => {
      const w = whereTimeGoes(r, e);
      return w.length === 0 ? [] : [`### ${ENGINE_TITLES[e]}`, '', ...w, ''];
    }),
    ...(Object.keys(r.profiles).length > 0 ? ['### CPU profiles', '', ...profileSection(r)] : []),
    ...(r.jobs.some((j) => j.workload === 'large')
      ? [
          '## The large workload (hosted-agent engine)',
          '',
          "*restored* is the entry the task restored; *restore s/GB* and *save s/GB* divide the phase by it (for the direct transport, whose restore only opens the entry, by the store before the job) and by what the save stored (for azureBlob, uploaded). *written* is `write_bytes` of the step's Node.js process (`/proc/self/io`), peak RSS its getrusage maximum. BuildKit's azblob cache shows what a build that fetches blobs lazily downloads.",
          '',
          ...largeTable(r),
          '',
        ]
      : []),
    ...loadSection(r.load),
    ...(r.keys === undefined
      ? []
      : [
          '## Key resolution',
          '',
          `Over ${r.keys.files} files with \`**\`: ${s1(r.keys.oursMs)} ms against ${s1(r.keys.baselineMs)} ms for \`find … | xargs sha256sum\` over the same files (medians of five after a warm-up).`,
          '',
        ]),
    '## Every job',
    '',
    ...ENGINES.flatMap((e) =>
      ALTERNATIVES.flatMap((a) => {
        const jobs = jobsOf(r, e, 'revisions', a);
        return jobs.length === 0 ? [] : [`### ${ENGINE_TITLES[e]}: ${TITLES[a]}`, '', ...jobTable(jobs), ''];
      }),
    ),
  ].join('\n');
}
