// The alternatives that npm run bench compares, each as a pipeline of jobs on one kind of agent.
//
// What a job starts from (written down in BENCHMARKS.md):
//   hosted-agent engine: every job is a new agent. Its folders (workspace, work folder, temp, docker
//     config) are new, the engine has neither the image nor the BuildKit image (pulled again through
//     the loopback mirror), and its build cache is empty. What survives is only what lives outside
//     the agent: the Cache@2 service (emulated by tar files), Azure Storage, the registry, and for
//     the local store a share that agents mount.
//   self-hosted agent: one agent runs the pipeline's jobs in turn and keeps its engine (images,
//     build cache) and its folders (Pipeline.Workspace, Agent.WorkFolder); each job gets a new
//     temp folder, as the agent gives it. Each pipeline starts on a new such agent: its folders and
//     the engine's build cache are empty, and the engine has the BuildKit and base images.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { BlobServiceClient } from '@azure/storage-blob';
import { resolveKey } from '../tasks/DockerBuildxCacheV1/src/key/resolve';
import { runJob, type JobResult } from './agent';
import { connectionString } from './azurite';
import {
  BENCH_LABEL,
  BUILDKIT_IMAGE,
  buildxBuildArgs,
  OUT,
  registryRepoBytes,
  run,
  type Engine,
  type EngineKind,
  type World,
} from './bench-world';
import { writeRevision, type Revision, type Workload } from './bench-workload';
import {
  CACHE_EXPORT_VERTICES,
  imageLoadSeconds,
  probeGroups,
  readDockerCalls,
  readProbe,
  reachable,
  sum,
  vertexSeconds,
  type DockerCall,
  type StepProbe,
} from './measure';

export const IMAGE = 'dbxc-bench/app';

export const ALTERNATIVES = [
  'template',
  'template-dockerfile',
  'buildkit-azblob',
  'buildkit-registry',
  'task-local',
  'task-local-direct',
  'task-local-folder',
  'task-azureBlob',
  'task-azureBlob-direct',
  'task-azureBlob-folder',
  'task-directory',
  'task-registry',
  'kept-state',
] as const;
export type Alternative = (typeof ALTERNATIVES)[number];

export const TITLES: Record<Alternative, string> = {
  template: 'template (Cache@2, key with the lock file)',
  'template-dockerfile': 'template (Cache@2, key = Dockerfile)',
  'buildkit-azblob': 'BuildKit type=azblob',
  'buildkit-registry': 'BuildKit type=registry',
  'task-local': 'task, local',
  'task-local-direct': 'task, local, cacheTransport: direct',
  'task-local-folder': 'task, local, cacheTransport: folder',
  'task-azureBlob': 'task, azureBlob',
  'task-azureBlob-direct': 'task, azureBlob, cacheTransport: direct',
  'task-azureBlob-folder': 'task, azureBlob, cacheTransport: folder',
  'task-directory': 'task, directory',
  'task-registry': 'task, registry',
  'kept-state': 'kept-state limit',
};

export const isTask = (alt: Alternative): boolean => alt.startsWith('task-');

/** The task's cache backends that the benchmark runs. */
export type TaskBackend = 'local' | 'azureBlob' | 'directory' | 'registry';

/** A task alternative's backend, and the cacheTransport it sets (none: the input's default, auto). */
export function taskSpec(alt: Alternative): { backend: TaskBackend; transport?: 'direct' | 'folder' } {
  const [, backend = '', transport] = alt.split('-');
  if (!isTask(alt)) throw new Error(`${alt} is not the task`);
  return { backend: backend as TaskBackend, ...(transport === 'direct' || transport === 'folder' ? { transport } : {}) };
}

/**
 * For a pipeline that sets cacheTransport: the transport the same store's auto pipeline on the same
 * engine went through, as its log said, when that is the one this pipeline would set (so running it
 * would measure the same thing again); else undefined.
 */
export function sameAsAuto(jobs: readonly JobMeasure[], kind: EngineKind, alt: Alternative): string | undefined {
  if (!isTask(alt)) return undefined;
  const { backend, transport } = taskSpec(alt);
  if (transport === undefined) return undefined;
  const auto = jobs.filter((j) => j.engine === kind && j.workload === 'revisions' && isTask(j.alt) && j.alt === `task-${backend}`);
  const used = [...new Set(auto.map((j) => /^\w+/.exec(j.transport ?? '')?.[0]))];
  return used.length === 1 && used[0] === transport ? transport : undefined;
}

/** Where an alternative keeps its cache: Cache@2's tars, a kept folder, the local store, Azure, a registry, or nowhere. */
function storeOf(alt: Alternative): 'cache2' | 'directory' | 'local' | 'azure' | 'registry' | 'none' {
  if (alt === 'template' || alt === 'template-dockerfile') return 'cache2';
  if (alt === 'buildkit-azblob') return 'azure';
  if (alt === 'buildkit-registry') return 'registry';
  if (alt === 'kept-state') return 'none';
  const { backend } = taskSpec(alt);
  return backend === 'azureBlob' ? 'azure' : backend;
}

/** The alternatives that set the task's cacheTransport input, which a task without that input rejects. */
export const TRANSPORT_ALTERNATIVES = ALTERNATIVES.filter((a) => isTask(a) && taskSpec(a).transport !== undefined);

/** What the task's step processes recorded of themselves (scripts/bench-probe.ts) and of their docker calls. */
export interface TaskProbe {
  readonly main?: StepProbe;
  readonly post?: StepProbe;
  /** Wall milliseconds of each step as the agent saw it. */
  readonly mainMs: number;
  readonly postMs: number;
  readonly docker: readonly DockerCall[];
  /** The main step's phases in milliseconds, from the state it hands to the post-job step. */
  readonly phases: readonly (readonly [string, number])[];
  /** When the post-job step started (epoch ms), to split the docker calls between the steps. */
  readonly postStart: number;
}

/** One job of one alternative: seconds, bytes and what BuildKit reused. */
export interface JobMeasure {
  readonly alt: Alternative;
  readonly engine: EngineKind;
  readonly workload: string;
  readonly rev: Revision;
  /** Cache@2's or the task's hit kind; '-' where there is none. */
  readonly hit: string;
  readonly depsCached: boolean;
  readonly cached: number;
  readonly total: number;
  /** The whole job: every step the alternative needs. */
  readonly jobS: number;
  /** The `docker buildx build` process(es). */
  readonly buildS: number;
  /** Inside the build: the image's way into the engine, and the cache export. */
  readonly loadS: number;
  readonly cacheExportS: number;
  /** Before and after the build: restoring and saving the cache (Cache@2, the task's phases). */
  readonly restoreS: number;
  readonly saveS: number;
  /** Over the network (the counting proxies), or for Cache@2 the tar it restored and saved. */
  readonly downloaded: number;
  readonly uploaded: number;
  /** What the task says it restored (the entry's bytes). */
  readonly restoredBytes: number;
  /** Bytes the store gained. */
  readonly savedBytes: number;
  /** Bytes of the store after the job. */
  readonly storeBytes: number;
  /** For a cache folder: what this build's cache reaches, and what of it the previous job's did not. */
  readonly cacheBytes?: number;
  readonly changedBytes?: number;
  /** The image in the engine runs and holds this revision. */
  readonly imageOk: boolean;
  /** For the task: the builder driver its log names (`Builder driver: …`). */
  readonly driver?: string;
  /** For the task: the cache transport its log names (`Cache transport: …`), when it says. */
  readonly transport?: string;
  /** For the task: how long its builder lives, as its log says (`Builder lifetime: …`). */
  readonly lifetime?: string;
  readonly probe?: TaskProbe;
}

/**
 * BuildKit's `[n/m] …` steps (FROM lines left out) and how many were cached, from a plain progress
 * log: marked CACHED, or a RUN step that printed nothing (a step taken from a registry-style cache
 * is not always marked, and every RUN of the workloads prints a line when it runs).
 */
export function stepsOf(log: string, depsStep: string): { cached: number; total: number; depsCached: boolean } {
  const lines = log.split('\n');
  const names = new Map<string, string>();
  const ran = new Set<string>();
  const marked = new Set<string>();
  const done = new Set<string>();
  for (const l of lines) {
    const m = /^#(\d+) (.*)$/.exec(l);
    if (m === null) continue;
    const [, id = '', rest = ''] = m;
    if (!names.has(id) && /^\[[^\]]*\d+\/\d+\] /.test(rest) && !/\] FROM /.test(rest)) names.set(id, rest);
    if (/^\d+\.\d+ /.test(rest)) ran.add(id);
    if (rest === 'CACHED') marked.add(id);
    if (rest.startsWith('DONE ')) done.add(id);
  }
  const cached = (id: string): boolean => marked.has(id) || (/\] RUN /.test(names.get(id) ?? '') && done.has(id) && !ran.has(id));
  const deps = [...names].find(([, n]) => n.startsWith(depsStep))?.[0];
  return { cached: [...names.keys()].filter(cached).length, total: names.size, depsCached: deps !== undefined && cached(deps) };
}

/** Cache@2, emulated: immutable keys, a restore of the exact key or else the newest entry of the restore key, a tar of the folder saved after the job unless the key was an exact hit. */
class Cache2 {
  constructor(private readonly dir: string) {}

  async restore(
    keyText: string,
    restoreKeyText: string,
    ws: string,
    target: string,
  ): Promise<{ key: string; hit: 'true' | 'inexact' | 'false'; bytes: number; ms: number }> {
    const t = Date.now();
    const key = (await resolveKey(keyText, ws)).text;
    const restoreKey = (await resolveKey(restoreKeyText, ws)).values;
    fs.mkdirSync(this.dir, { recursive: true });
    const stored = fs
      .readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(fs.readFileSync(path.join(this.dir, f), 'utf8')) as { key: string; tar: string; created: number });
    const exact = stored.find((e) => e.key === key);
    const entry =
      exact ?? stored.filter((e) => restoreKey.every((s, i) => e.key.split('|')[i] === s)).sort((a, b) => b.created - a.created)[0];
    if (entry === undefined) return { key, hit: 'false', bytes: 0, ms: Date.now() - t };
    fs.mkdirSync(target, { recursive: true });
    await run('tar', ['-xf', entry.tar, '-C', target]);
    return { key, hit: exact !== undefined ? 'true' : 'inexact', bytes: fs.statSync(entry.tar).size, ms: Date.now() - t };
  }

  async save(key: string, source: string): Promise<{ bytes: number; ms: number }> {
    const t = Date.now();
    const tar = path.join(this.dir, `${crypto.createHash('sha256').update(key).digest('hex').slice(0, 16)}.tar`);
    await run('tar', ['-cf', tar, '-C', source, '.']);
    fs.writeFileSync(`${tar}.json`, JSON.stringify({ key, tar, created: Date.now() }));
    return { bytes: fs.statSync(tar).size, ms: Date.now() - t };
  }

  blobs(): Map<string, number> {
    if (!fs.existsSync(this.dir)) return new Map();
    return new Map(
      fs
        .readdirSync(this.dir)
        .filter((f) => f.endsWith('.tar'))
        .map((f) => [f, fs.statSync(path.join(this.dir, f)).size]),
    );
  }
}

/** What one job of any alternative ran, before the pipeline measures the store and the image: milliseconds, bytes and the build's log. */
interface RanJob {
  readonly jobMs: number;
  /** The `docker buildx build` process(es). */
  readonly buildMs: number;
  readonly restoreMs: number;
  readonly saveMs: number;
  /** Cache@2's or the task's hit kind; '-' where there is none. */
  readonly hit: string;
  /** The build's plain progress log (for the task, its main step's output). */
  readonly log: string;
  /** Bytes of Cache@2's tar restored and saved (the proxies count the rest). */
  readonly tarDown: number;
  readonly tarUp: number;
  readonly restoredBytes: number;
  readonly probe?: TaskProbe;
}

/** What one step of a job did: its wall time, and the build log when it built. */
interface Step {
  readonly ms: number;
  readonly log?: string;
}

/** One alternative's jobs on one agent kind, over one workload. */
export class Pipeline {
  private readonly dir: string;
  private readonly ws: string;
  private readonly agentDir: string;
  private readonly probes: string;
  private readonly cache2: Cache2;
  private readonly container = `bench-${crypto.randomBytes(5).toString('hex')}`;
  private readonly repo: string;
  private previous = new Map<string, number>();
  /** This pipeline's agent (a self-hosted agent keeps it across the pipeline's jobs). */
  private readonly agentId = crypto.randomBytes(4).toString('hex');
  /** The builder containers on the engine before the pipeline: any other is one its jobs left (a builder an agent keeps), removed at the end. */
  private buildersBefore = new Set<string>();
  private jobs = 0;
  private keptBuilder?: string;

  constructor(
    private readonly world: World,
    readonly engine: Engine,
    readonly workload: Workload,
    readonly alt: Alternative,
  ) {
    this.dir = path.join(OUT, engine.kind, workload.name, alt);
    this.ws = path.join(this.dir, 's');
    this.agentDir = path.join(this.dir, 'agent');
    this.probes = path.join(this.dir, 'probes');
    this.cache2 = new Cache2(path.join(this.dir, 'cache2'));
    this.repo = `dbxc-bench/${engine.kind}-${workload.name}-${alt.toLowerCase()}`;
  }

  private get env(): NodeJS.ProcessEnv {
    return { DOCKER_HOST: this.engine.dockerHost, DOCKER_CONFIG: path.join(this.agentDir, 'docker-config') };
  }
  private get pw(): string {
    return path.join(this.agentDir, 'pw');
  }
  private get work(): string {
    return path.join(this.agentDir, '_work');
  }
  private get cacheDir(): string {
    return path.join(this.pw, '.buildx-cache');
  }
  private get share(): string {
    return path.join(this.dir, 'share');
  }
  private get cacheRef(): string {
    return `${this.world.mustRegistry().host}/${this.repo}:cache`;
  }

  private docker(args: string[], allowFail = false): ReturnType<typeof run> {
    return run('docker', args, { env: this.env, allowFail });
  }

  /** A new agent: new folders and docker config. */
  private async newAgent(): Promise<void> {
    fs.rmSync(this.agentDir, { recursive: true, force: true });
    fs.mkdirSync(this.pw, { recursive: true });
    fs.mkdirSync(this.work, { recursive: true });
    await this.world.dockerConfig(this.env.DOCKER_CONFIG ?? '', this.engine, false);
  }

  /** Before the first job: a new agent, with an engine that holds nothing of this workload. */
  async setup(): Promise<void> {
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.mkdirSync(this.probes, { recursive: true });
    await this.newAgent();
    await this.docker(['image', 'rm', '-f', `${IMAGE}:bench`], true);
    await this.docker(['buildx', 'prune', '-af', '--builder', 'default'], true);
    this.buildersBefore = new Set(await this.builderContainers());
    // A self-hosted agent on the classic store ran jobs before: its engine has the BuildKit image (a hosted job's engine pulls it).
    if (this.engine.classicStore && !this.engine.newAgentPerJob) await this.world.ensureBuildkitImage(this.engine);
    if (this.alt === 'kept-state' && this.engine.classicStore) {
      this.keptBuilder = `dbxc-bench-kept-${crypto.randomBytes(4).toString('hex')}`;
      await this.docker(['buildx', 'create', '--name', this.keptBuilder, ...this.engine.builderFlags]);
      await this.docker(['buildx', 'inspect', '--bootstrap', this.keptBuilder]);
    }
  }

  /** Removes the builder containers (and their state volumes) that appeared since setup, but `keep`. */
  private async removeLeftBuilders(keep: readonly string[]): Promise<void> {
    const left = (await this.builderContainers()).filter((n) => !this.buildersBefore.has(n) && !keep.includes(n));
    if (left.length === 0) return;
    await this.docker(['rm', '-f', ...left], true);
    await this.docker(['volume', 'rm', '-f', ...left.map((n) => `${n}_state`)], true);
  }

  private async builderContainers(): Promise<string[]> {
    const r = await this.docker(['ps', '-a', '--filter', 'name=buildx_buildkit_', '--format', '{{.Names}}'], true);
    return r.stdout.split('\n').filter((n) => n !== '');
  }

  /**
   * After the last job: removes the kept-state builder, any builder container its jobs left behind
   * (a builder the task keeps for the agent) with its state volume, and the pipeline's folders, so
   * that the next pipeline starts on a new agent.
   */
  async teardown(): Promise<void> {
    if (this.keptBuilder !== undefined) await this.docker(['buildx', 'rm', this.keptBuilder], true);
    await this.removeLeftBuilders([]);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** A hosted job's engine: no image of ours, no builder of an earlier job, no BuildKit image, no build cache. */
  private async freshHostedEngine(): Promise<void> {
    await this.removeLeftBuilders(this.keptBuilder === undefined ? [] : [`buildx_buildkit_${this.keptBuilder}0`]);
    await this.docker(['image', 'rm', '-f', `${IMAGE}:bench`], true);
    if (this.keptBuilder === undefined) await this.docker(['image', 'rm', BUILDKIT_IMAGE], true);
    await this.docker(['buildx', 'prune', '-af', '--builder', 'default'], true);
  }

  async job(rev: Revision, cpuProfile?: string): Promise<JobMeasure> {
    this.jobs++;
    writeRevision(this.ws, this.workload, this.engine.base, rev);
    if (this.engine.newAgentPerJob) {
      // The kept-state limit keeps its builder, and so the docker config that knows it.
      if (this.alt !== 'kept-state') await this.newAgent();
      await this.freshHostedEngine();
    }
    const storeBefore = await this.storeBlobs();
    const traffic = this.world.traffic();
    const m = isTask(this.alt) ? await this.taskJob(rev, cpuProfile) : await this.plainJob();
    const after = this.world.traffic();
    const storeAfter = await this.storeBlobs();
    const transport = isTask(this.alt) ? /^Cache transport: (.*)$/m.exec(m.log)?.[1]?.trim() : undefined;
    // A cache folder is there for the template and the task's folder path; the direct transport leaves none.
    const noFolder =
      this.alt === 'buildkit-azblob' ||
      this.alt === 'buildkit-registry' ||
      this.alt === 'kept-state' ||
      this.alt === 'task-registry' ||
      /^direct\b/.test(transport ?? '');
    const folder = noFolder ? undefined : reachable(this.cacheDir);
    const changedBytes = folder === undefined ? undefined : sum([...folder].filter(([d]) => !this.previous.has(d)).map(([, n]) => n));
    if (folder !== undefined) this.previous = folder;
    const check = this.workload.check(rev);
    const image = await this.docker(['run', '--rm', `${IMAGE}:bench`, ...check.cmd], true);
    const steps = stepsOf(m.log, this.workload.depsStep);
    fs.mkdirSync(path.join(OUT, 'logs'), { recursive: true });
    fs.writeFileSync(path.join(OUT, 'logs', `${this.engine.kind}-${this.workload.name}-${this.alt}-${this.jobs}.log`), m.log);
    return {
      alt: this.alt,
      engine: this.engine.kind,
      workload: this.workload.name,
      rev,
      hit: m.hit,
      ...steps,
      jobS: m.jobMs / 1000,
      buildS: m.buildMs / 1000,
      loadS: imageLoadSeconds(m.log),
      cacheExportS: vertexSeconds(m.log, CACHE_EXPORT_VERTICES),
      restoreS: m.restoreMs / 1000,
      saveS: m.saveMs / 1000,
      downloaded: after.down - traffic.down + m.tarDown,
      uploaded: after.up - traffic.up + m.tarUp,
      restoredBytes: m.restoredBytes,
      savedBytes: sum([...storeAfter].filter(([k]) => !storeBefore.has(k)).map(([, n]) => n)),
      storeBytes: sum([...storeAfter.values()]),
      cacheBytes: folder === undefined ? undefined : sum([...folder.values()]),
      changedBytes,
      imageOk: image.code === 0 && image.stdout.trim() === check.out,
      driver: isTask(this.alt) ? (/^Builder driver: (.*)$/m.exec(m.log)?.[1]?.trim() ?? '?') : undefined,
      transport,
      lifetime: isTask(this.alt) ? /^Builder lifetime: (.*)$/m.exec(m.log)?.[1]?.trim() : undefined,
      probe: m.probe,
    };
  }

  /** The store's blobs (digest or file → bytes), wherever this alternative keeps its cache. */
  private async storeBlobs(): Promise<Map<string, number>> {
    const dirBlobs = (dir: string): Map<string, number> => {
      const blobs = path.join(dir, 'blobs', 'sha256');
      return new Map(fs.existsSync(blobs) ? fs.readdirSync(blobs).map((h) => [h, fs.statSync(path.join(blobs, h)).size]) : []);
    };
    switch (storeOf(this.alt)) {
      case 'cache2':
        return this.cache2.blobs();
      case 'directory':
        return this.engine.newAgentPerJob ? this.cache2.blobs() : dirBlobs(this.cacheDir);
      case 'local':
        return dirBlobs(path.join(this.engine.newAgentPerJob ? this.share : path.join(this.work, '_buildx_cache_store'), 'v1'));
      case 'azure': {
        const container = BlobServiceClient.fromConnectionString(connectionString(this.world.mustAzurite().blobUrl)).getContainerClient(
          this.container,
        );
        const out = new Map<string, number>();
        if (!(await container.exists())) return out;
        for await (const b of container.listBlobsFlat()) out.set(b.name, b.properties.contentLength ?? 0);
        return out;
      }
      case 'registry': {
        const bytes = registryRepoBytes(this.world.mustRegistry().dataDir, this.repo);
        return new Map([[`${this.repo}@${bytes}`, bytes]]);
      }
      case 'none':
        return new Map();
    }
  }

  /** The image's build: loaded into the engine with the bench's tag. */
  private buildArgs(builder: string, cache: string[]): string[] {
    return buildxBuildArgs(builder, ['--load', '--tag', `${IMAGE}:bench`, ...cache], this.ws);
  }

  private async timed(args: string[]): Promise<Step> {
    const r = await this.docker(args);
    return { ms: r.ms, log: r.stderr };
  }

  /** The template, BuildKit's own backends and the kept-state limit: docker commands, timed one by one. */
  private async plainJob(): Promise<RanJob> {
    const steps: Step[] = [];
    let builder = 'default';
    let restoreMs = 0;
    let saveMs = 0;
    let tarDown = 0;
    let tarUp = 0;
    let hit = '-';
    const newBuilder = async (bootstrap: boolean): Promise<void> => {
      builder = `dbxc-bench-${crypto.randomBytes(6).toString('hex')}`;
      steps.push(await this.timed(['buildx', 'create', '--name', builder, ...this.engine.builderFlags]));
      if (bootstrap) steps.push(await this.timed(['buildx', 'inspect', '--bootstrap', builder]));
    };
    let build: Step;
    switch (this.alt) {
      case 'template':
      case 'template-dockerfile': {
        const keyText = this.alt === 'template' ? 'buildx | "Linux" | ./Dockerfile | deps.lock' : 'buildx | "Linux" | ./Dockerfile';
        const restored = await this.cache2.restore(keyText, 'buildx | "Linux"', this.ws, this.cacheDir);
        restoreMs = restored.ms;
        tarDown = restored.bytes;
        hit = restored.hit;
        steps.push({ ms: restored.ms });
        await newBuilder(false);
        build = await this.timed(
          this.buildArgs(builder, [
            '--cache-from',
            `type=local,src=${this.cacheDir}`,
            '--cache-to',
            `type=local,dest=${this.cacheDir},mode=max`,
          ]),
        );
        steps.push(build);
        if (restored.hit !== 'true') {
          const saved = await this.cache2.save(restored.key, this.cacheDir);
          saveMs = saved.ms;
          tarUp = saved.bytes;
          steps.push({ ms: saved.ms });
        }
        break;
      }
      case 'buildkit-azblob':
      case 'buildkit-registry': {
        if (this.alt === 'buildkit-registry') steps.push({ ms: (await this.world.login(this.env.DOCKER_CONFIG ?? '', this.engine)).ms });
        await newBuilder(true);
        const cache =
          this.alt === 'buildkit-azblob' ? this.world.azblobCache(this.container, 'main') : `type=registry,ref=${this.cacheRef}`;
        build = await this.timed(this.buildArgs(builder, ['--cache-from', cache, '--cache-to', `${cache},mode=max`]));
        steps.push(build);
        break;
      }
      case 'kept-state':
        build = await this.timed(this.buildArgs(this.keptBuilder ?? 'default', []));
        steps.push(build);
        break;
      default:
        throw new Error(`${this.alt} is not a plain job`);
    }
    if (builder !== 'default') {
      // On a hosted agent the template's builder goes with the VM; elsewhere a job must remove it (the GitHub Actions pair does, in its post step).
      const rm = await this.docker(['buildx', 'rm', builder]);
      if (!(this.engine.newAgentPerJob && this.alt.startsWith('template'))) steps.push({ ms: rm.ms });
    }
    return {
      jobMs: sum(steps.map((s) => s.ms)),
      buildMs: build.ms,
      restoreMs,
      saveMs,
      hit,
      log: build.log ?? '',
      tarDown,
      tarUp,
      restoredBytes: tarDown,
    };
  }

  /** The bundled task, run as the agent runs it (main step, post-job step), with its probes; for directory on a hosted agent, between Cache@2's restore and save. */
  private async taskJob(rev: Revision, cpuProfile: string | undefined): Promise<RanJob> {
    const { backend, transport } = taskSpec(this.alt);
    // On the classic store a store's cache goes direct unless the folder is asked for: no builder inputs then (see Engine.taskInputs).
    const direct = this.engine.classicStore && (backend === 'local' || backend === 'azureBlob') && transport !== 'folder';
    const inputs: Record<string, string> = {
      dockerfile: 'Dockerfile',
      imageName: IMAGE,
      tags: 'bench',
      labels: BENCH_LABEL,
      ...(direct ? {} : this.engine.taskInputs),
      cacheBackend: backend,
      ...(transport === undefined ? {} : { cacheTransport: transport }),
    };
    let endpoint: NodeJS.ProcessEnv = {};
    if (backend === 'local' && this.engine.newAgentPerJob) inputs.localStorePath = this.share;
    if (backend === 'azureBlob')
      Object.assign(inputs, {
        storageConnectionString: connectionString(this.world.mustAzurite().blobUrl),
        storageContainer: this.container,
      });
    if (backend === 'registry') {
      Object.assign(inputs, { registryCacheRef: this.cacheRef, containerRegistry: 'REG' });
      endpoint = this.world.registryEndpoint();
    }
    const temp = path.join(this.agentDir, '_temp');
    fs.rmSync(temp, { recursive: true, force: true });
    fs.mkdirSync(temp, { recursive: true });
    const buildId = String(this.jobs);
    const variables = {
      'System.DefaultWorkingDirectory': this.ws,
      'Pipeline.Workspace': this.pw,
      'Agent.TempDirectory': temp,
      'Agent.WorkFolder': this.work,
      'Agent.OS': 'Linux',
      'Build.SourceBranch': 'refs/heads/main',
      'Build.BuildId': buildId,
      'System.JobId': crypto.randomUUID(),
      'System.TaskInstanceId': crypto.randomUUID(),
      ...this.engine.agentVariables(this.jobs, this.agentId),
    };
    // Cache@2 around the task: the README's recipe for directory on hosted agents (a key unique to each run).
    const withCache2 = backend === 'directory' && this.engine.newAgentPerJob;
    const restored = withCache2
      ? await this.cache2.restore(`buildx | "Linux" | "${buildId}"`, 'buildx | "Linux"', this.ws, this.cacheDir)
      : undefined;
    const prefix = path.join(this.probes, `job${this.jobs}`);
    const env = { ...this.env, ...endpoint, ...this.world.probeEnv(prefix, cpuProfile) };
    const result: JobResult = await runJob(inputs, variables, this.ws, env);
    if (result.main.result !== 'Succeeded' || result.post.result !== 'Succeeded') {
      throw new Error(
        `${this.engine.kind} ${this.alt}, revision ${rev.n}:\n${result.main.stdout.slice(-6000)}\n${result.main.stderr.slice(-2000)}\n${result.post.stdout.slice(-3000)}`,
      );
    }
    const saved = restored !== undefined ? await this.cache2.save(restored.key, this.cacheDir) : undefined;
    const main = readProbe(`${prefix}.main.json`);
    const post = readProbe(`${prefix}.post.json`);
    const docker = readDockerCalls(`${prefix}.docker.log`);
    const state = JSON.parse(result.main.taskVariables['DockerBuildxCache.State'] ?? '{}') as {
      summary?: { phases?: [string, number][]; bytesRestored?: number };
    };
    // The task's own phase timings (its summary's), or else its log groups as the agent shows them.
    const phases =
      state.summary?.phases ?? (main === undefined ? [] : probeGroups(main).map((g): [string, number] => [g.title, g.end - g.start]));
    const phase = (title: string): number => sum(phases.filter(([t]) => t === title).map(([, ms]) => ms));
    const postSave =
      post === undefined
        ? 0
        : sum(
            probeGroups(post)
              .filter((g) => g.title === 'Save cache')
              .map((g) => g.end - g.start),
          );
    const builds = docker.filter((c) => c.args.startsWith('buildx build'));
    return {
      jobMs: result.main.ms + result.post.ms + (restored?.ms ?? 0) + (saved?.ms ?? 0),
      buildMs: sum(builds.map((c) => c.end - c.start)),
      restoreMs: phase('Restore cache') + phase('Cache') + (restored?.ms ?? 0),
      saveMs: phase('Save cache') + postSave + (saved?.ms ?? 0),
      hit: result.main.outputs.cacheHit ?? '?',
      log: result.main.stdout,
      tarDown: restored?.bytes ?? 0,
      tarUp: saved?.bytes ?? 0,
      restoredBytes: state.summary?.bytesRestored ?? restored?.bytes ?? 0,
      probe: { main, post, mainMs: result.main.ms, postMs: result.post.ms, docker, phases, postStart: post?.origin ?? Infinity },
    };
  }
}
