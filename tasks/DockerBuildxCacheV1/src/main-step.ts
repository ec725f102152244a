import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { formatBytes, info, instanceId, phase, setOutput, setSecret, setVariable, variable, warn } from './task/agent';
import { secretValues } from './config/features';
import { buildWithCacheFallback, setBuildOutputs, writeBuildkitdConfig, writeSecrets, type BuildCache } from './build';
import type { Builder } from './docker/builder';
import { Docker, type DockerCli } from './docker/cli';
import type { CommitResult } from './cache/folder';
import { planCache, withGates, type CacheKeys, type CachePlan } from './cache/plan';
import type { ExportSlot } from './cache/slot';
import { saveToStore } from './cache/save';
import { resolveKeys } from './cache/session';
import { cacheTrouble } from './cache/trouble';
import { readConfig, taskSource } from './config/read';
import { isStoreBackend, type Config } from './config/types';
import { loadMessages, loc } from './task/messages';
import type { ScopeVariables } from './store/scopes';
import { dockerSession, startSetup, type JobAgent } from './docker/setup';
import { saveState, type PostState } from './job';
import { summaryOfSave, type SummaryData } from './summary';

/** The job so far, kept in the post-job step's state as it grows, so that a failure at any point leaves the post step what it needs. */
class JobRecord {
  private state: PostState & { readonly summary: SummaryData };

  constructor(tempRoot: string, summary: SummaryData) {
    this.state = { version: 1, cleanup: [tempRoot], summary };
    saveState(this.state);
  }

  update(patch: Partial<Omit<PostState, 'version' | 'summary'>>, summary: Partial<SummaryData> = {}): void {
    this.state = { ...this.state, ...patch, summary: { ...this.state.summary, ...summary } };
    saveState(this.state);
  }

  /** One phase in its own log group, its time recorded for the summary. */
  async timed<T>(title: string, work: () => Promise<T>, describe?: (result: T) => string): Promise<T> {
    const start = Date.now();
    try {
      return await phase(title, work, describe);
    } finally {
      this.update({}, { phases: [...this.state.summary.phases, [title, Date.now() - start]] });
    }
  }
}

/** Replaces each build secret's value in text that goes to the store, the state or the summary. */
function redactor(secrets: readonly string[]): (text: string) => string {
  return (text) => secrets.reduce((t, s) => t.split(s).join('***'), text);
}

/** The job as the main step begins it: the inputs read, its folder made, its record started. */
interface MainJob {
  readonly config: Config;
  readonly redact: (text: string) => string;
  readonly cli: Docker;
  /** Names this job's folders, and its siblings of the cache folder. */
  readonly id: string;
  readonly tempRoot: string;
  readonly branch: ScopeVariables;
  readonly job: JobRecord;
}

/**
 * The main step, one way: inputs, the cache key, the docker to use, then the cache plan while the
 * preflight and the builder start, the build, the export's commit and the outputs.
 */
export async function runMain(): Promise<void> {
  const main = await beginJob();
  const { config, job } = main;
  // Keys first: a pattern that matches nothing is an input error, found before docker runs.
  const keys = isStoreBackend(config.cache.backend) ? await resolveCacheKeys(config, job, main.redact) : undefined;
  // Then the buildx to use, before any buildx command; then the preflight and the builder, which do
  // not depend on the cache, while the cache is restored.
  const { docker, source } = await dockerSession(config, main.cli, main.tempRoot, job);
  const setup = startSetup(docker, config, job, source, jobAgent());
  const plan = await setup.during(planCache({ config, id: main.id, docker, keys, branch: main.branch, job }));
  publishPlan(config, plan, job);
  // The export slot is the main step's from here: committed after a good build, abandoned on any other way out.
  try {
    const { gates, builder } = await setup.show();
    setOutput('builderName', builder.name);
    await buildImage(main, docker, builder, await withGates(config, plan, gates));
  } finally {
    await plan.slot?.abandon();
  }
}

/** Reads the inputs (a pull request from a fork saves nothing), registers the build secrets, and makes the job's own folder. */
async function beginJob(): Promise<MainJob> {
  loadMessages();
  let config = readConfig(taskSource());
  const branch = scopeVariables();
  if (branch.isFork) {
    // A pull request from a fork never writes a cache, to any backend.
    info(loc('ReadOnlyFork'));
    config = { ...config, cache: { ...config.cache, save: 'never' } };
  }
  const secrets = secretValues(config.build.secrets);
  for (const secret of secrets) setSecret(secret);
  for (const warning of config.warnings) warn(warning);
  const cli = Docker.locate();
  const id = instanceId();

  const tempRoot = path.join(variable('Agent.TempDirectory') ?? os.tmpdir(), `docker-buildx-cache-${id}`);
  await fs.promises.rm(tempRoot, { recursive: true, force: true });
  await fs.promises.mkdir(tempRoot, { recursive: true, mode: 0o700 });
  config = await writeBuildkitdConfig(config, tempRoot);
  const job = new JobRecord(tempRoot, { backend: config.cache.backend, image: config.build.tags[0] ?? config.build.imageName, phases: [] });
  return { config, redact: redactor(secrets), cli, id, tempRoot, branch, job };
}

/**
 * The build with the plan's cache, then the export's commit, the image outputs and a save after the build; the
 * secret files go either way.
 */
async function buildImage({ config, tempRoot, job }: MainJob, docker: DockerCli, builder: Builder, plan: CachePlan): Promise<void> {
  try {
    const secretFiles = await writeSecrets(config.build.secrets, tempRoot);
    // buildx writes the oci and tar outputs but does not create their folder.
    if (config.output.path !== undefined) await fs.promises.mkdir(path.dirname(config.output.path), { recursive: true });
    const metadataFile = path.join(tempRoot, 'metadata.json');
    const outcome = await job.timed(
      loc('PhaseBuild'),
      () => buildWithCacheFallback(docker, config, builder, buildCache(plan), secretFiles, metadataFile),
      (o) => loc('StepsCached', o.steps.cached, o.steps.total),
    );
    job.update({}, { steps: { cached: outcome.steps.cached, total: outcome.steps.total } });
    if (plan.slot !== undefined && outcome.exported) await commitExport(config, job, plan.slot);
    const digest = await setBuildOutputs(docker, config, metadataFile);
    job.update({}, { digest });
    if (plan.save !== undefined && config.cache.save === 'afterBuild') {
      const save = plan.save;
      const saved = await job.timed(loc('PhaseSave'), () => saveToStore(save));
      job.update({}, summaryOfSave(saved));
    }
  } finally {
    await fs.promises.rm(path.join(tempRoot, 'secrets'), { recursive: true, force: true });
  }
}

/** The job and the agent it runs on, which name the builder and decide how long it lives. */
function jobAgent(): JobAgent {
  return {
    jobId: variable('System.JobId'),
    cloudId: variable('Agent.CloudId'),
    id: variable('Agent.Id'),
    name: variable('Agent.Name'),
    home: variable('Agent.HomeDirectory'),
    // Machine-wide on Microsoft's runner images, not agent variables.
    imageOS: process.env.ImageOS || undefined,
    imageVersion: process.env.ImageVersion || undefined,
  };
}

/** The resolved key, redacted, as the cacheKey output and in the summary. */
async function resolveCacheKeys(config: Config, job: JobRecord, redact: (text: string) => string): Promise<CacheKeys> {
  const resolved = await job.timed(loc('PhaseKey'), () => resolveKeys(config));
  // A build secret in a key never reaches the store.
  const key = resolved.key.values.map(redact);
  setOutput('cacheKey', key.join('|'));
  job.update({}, { key: key.join('|') });
  return { key, restoreKeys: resolved.restoreKeys.map((k) => k.values.map(redact)) };
}

/** The plan's cache outputs, its part of the summary, and the save it hands to the post-job step. */
function publishPlan(config: Config, plan: CachePlan, job: JobRecord): void {
  if (plan.hit === undefined) return;
  setOutput('cacheHit', plan.hit);
  if (config.cache.hitVar !== undefined) setVariable(config.cache.hitVar, plan.hit);
  if (plan.restoredKey !== undefined) setOutput('cacheRestoredKey', plan.restoredKey);
  const when = config.cache.save;
  job.update(plan.save !== undefined && (when === 'onSuccess' || when === 'always') ? { save: { ...plan.save, when } } : {}, plan.summary);
}

function scopeVariables(): ScopeVariables {
  return {
    sourceBranch: variable('Build.SourceBranch'),
    targetBranch: variable('System.PullRequest.TargetBranch'),
    isFork: variable('System.PullRequest.IsFork')?.toLowerCase() === 'true',
    defaultBranch: variable('DockerBuildxCache.DefaultBranch'),
  };
}

/**
 * The plan as the build uses it: a corrupt import distrusts the entry and empties the slot of its seed; a failed
 * export abandons the slot.
 */
function buildCache(cache: CachePlan): BuildCache {
  return {
    ...cache.flags,
    onImportCorrupt: async () => {
      await cache.distrust?.();
      await cache.slot?.empty();
    },
    onExportFailed: async () => {
      await cache.slot?.abandon();
    },
  };
}

/** Commits the export in its own phase; cache trouble when that fails (the slot has then abandoned it). */
async function commitExport(config: Config, job: JobRecord, slot: ExportSlot): Promise<void> {
  const commit = async (): Promise<CommitResult | undefined> => {
    try {
      return await slot.commit();
    } catch (err) {
      cacheTrouble(config.cache.failOnError, loc('WarnCacheCommitFailed', slot.dir, (err as Error).message));
      return undefined;
    }
  };
  await job.timed(loc('PhaseCacheExport'), commit, (r) =>
    r === undefined
      ? loc('CacheNotUpdated')
      : loc('CacheCommitted', formatBytes(r.bytes), r.blobs, formatBytes(r.newBytes), formatBytes(r.prunedBytes)),
  );
}
