import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { formatBytes, info, instanceId, phase, setOutput, setSecret, setVariable, variable, warn } from './task/agent';
import { secretValues } from './config/features';
import { buildWithCacheFallback, setBuildOutputs, writeBuildkitdConfig, writeSecrets, type BuildCache } from './build';
import type { RegistryFacade } from './facade/facade';
import type { Builder } from './docker/builder';
import { repositoryOf } from './docker/deliver';
import type { LoadedImage } from './docker/metadata';
import { Docker, type DockerCli } from './docker/cli';
import type { CommitResult } from './cache/folder';
import { planCache, withGates, type CacheKeys, type CachePlan, type DirectPlan } from './cache/plan';
import {
  chooseTransport,
  credsStoreOf,
  describeTransportReason,
  instanceOnHostNetwork,
  intendedTransport,
  autoReasonForDriver,
  type AutoFacts,
  type TransportChoice,
} from './cache/transport';
import { chooseLifetime } from './docker/lifetime';
import { mayBeDocker } from './docker/driver';
import { currentContextOf, EngineImages, engineSocket, engineStore } from './docker/engine-api';
import { agentDockerConfig, createDockerConfig, readAgentConfig } from './docker/config-dir';
import { addLogin } from './facade/login';
import type { Driver } from './config/types';
import type { ExportSlot } from './cache/slot';
import { saveDirectToStore, saveToStore, type SaveJob } from './cache/save';
import { resolveKeys } from './cache/session';
import { cacheTrouble } from './cache/trouble';
import { readConfig, taskSource } from './config/read';
import { isStoreBackend, type Config, type SaveWhen } from './config/types';
import { loadMessages, loc } from './task/messages';
import type { ScopeVariables } from './store/scopes';
import { dockerSession, startSetup, type JobAgent, type Setup } from './docker/setup';
import { saveState, type PostState } from './job';
import type { DirectSave } from './cache/save';
import { summaryOfSave, type SummaryData } from './summary';

/** The job so far, kept in the post-job step's state as it grows, so that a failure at any point leaves the post step what it needs. */
class JobRecord {
  private state: PostState & { readonly summary: SummaryData };

  constructor(tempRoot: string, summary: SummaryData) {
    this.state = { version: 1, cleanup: [tempRoot], summary };
    saveState(this.state);
  }

  /** The job-private DOCKER_CONFIG, once the docker session made one. */
  get dockerConfig(): string | undefined {
    return this.state.dockerConfig;
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
  /** The agent's docker config.json, read once: its credential store, and its current context, which names the engine's socket. */
  readonly agentConfig: Promise<string>;
  /** The engine's Unix socket when the docker CLI certainly talks to it (docker/engine-api.ts engineSocket). */
  readonly socket: Promise<string | undefined>;
}

/**
 * The main step, one way: inputs, the cache key, the docker to use, then the cache plan while the
 * preflight and the builder start, the build, the export's commit and the outputs.
 */
export async function runMain(): Promise<void> {
  const main = await beginJob();
  const { config, job } = main;
  // The engine's image store, asked of its API at once: `driver: auto` waits for it (see docker/engine-api.ts).
  const engine = mayBeDocker(config.builder) ? main.socket.then((s) => (s === undefined ? undefined : engineStore(s))) : undefined;
  // Keys first: a pattern that matches nothing is an input error, found before docker runs.
  const keys = isStoreBackend(config.cache.backend) ? await resolveCacheKeys(config, job, main.redact) : undefined;
  // Then the buildx to use, before any buildx command; then the preflight and the builder, which do
  // not depend on the cache, while the cache is restored.
  const { docker, source } = await dockerSession(config, main.cli, main.tempRoot, job);
  const agent = jobAgent();
  const facts = await autoFacts(main, agent);
  // A docker-container builder the task creates gets the host's network when the cache may go direct with it.
  const ifContainer = intendedTransport(config.cache, { ...facts, driver: 'docker-container' });
  const setup = startSetup(docker, ifContainer.transport === 'direct' ? withHostNetwork(config) : config, job, source, agent, engine);
  const planned = setup.during(
    (async () => {
      const intended = await intendTransport(config, facts, ifContainer, setup);
      // The plan is given the transport resolved: `auto` is not its to decide.
      const resolved = { ...config, cache: { ...config.cache, transport: intended.transport } };
      const plan = await planCache({ config: resolved, id: main.id, docker, keys, branch: main.branch, job, tempRoot: main.tempRoot });
      return { plan, intended };
    })(),
  );
  const intended = (await planned).intended;
  let plan = (await planned).plan;
  // The export slot and the direct cache are the main step's from here: committed after a good build,
  // abandoned (closed) on any other way out.
  try {
    publishPlan(config, plan, job);
    const { gates, builder, driver, preflight } = await setup.show();
    setOutput('builderName', builder.name);
    plan = await confirmTransport(main, plan, intended, driver.driver, builder.name);
    const buildDocker = plan.direct === undefined ? docker : await facadeLogin(main, docker, plan.direct);
    // The preflight's engine is the one the image goes to, unless the builder is on another (endpoint).
    const loaded =
      config.builder.endpoint === undefined ? { containerdStore: preflight.engineContainerdStore, driver: driver.driver } : undefined;
    await buildImage(main, buildDocker, builder, await withGates(config, plan, gates), loaded);
  } finally {
    await plan.slot?.abandon();
    await closeDirect(plan, config.cache.save);
  }
}

const withHostNetwork = (config: Config): Config => ({ ...config, builder: { ...config.builder, hostNetwork: true } });

/** What `cacheTransport: auto` decides from that is known before the driver (see cache/transport.ts autoTransport). */
async function autoFacts({ config, job, agentConfig }: MainJob, agent: JobAgent): Promise<Omit<AutoFacts, 'driver'>> {
  const b = config.builder;
  return {
    builderName: b.name,
    lifetime: chooseLifetime(b.lifetime, agent).lifetime,
    driverOptions: b.driverOptions,
    endpoint: b.endpoint,
    dockerHost: process.env.DOCKER_HOST,
    // Without a job-private docker config, the facade's login goes into a copy of the agent's, without its credential store.
    credsStore: job.dockerConfig === undefined ? credsStoreOf(await agentConfig) : undefined,
  };
}

/**
 * The transport the job means to use. Only `auto`'s direct depends on the driver, which `driver:
 * auto` knows once the preflight saw the engine's image store: then the plan waits for it.
 */
async function intendTransport(
  config: Config,
  facts: Omit<AutoFacts, 'driver'>,
  ifContainer: TransportChoice,
  setup: Setup,
): Promise<TransportChoice> {
  if (ifContainer.reason.kind !== 'autoOwnBuilder') return ifContainer;
  const driver = await setup.driver();
  // A failed preflight fails the job when the setup is shown, before any build.
  return driver === undefined ? ifContainer : intendedTransport(config.cache, { ...facts, driver });
}

/**
 * A store's cache goes direct only with a builder that reaches this machine's loopback (see
 * cache/transport.ts); otherwise the direct cache is closed and the entry restored into the
 * folder after all. The log says which and why.
 */
async function confirmTransport(
  main: MainJob,
  plan: CachePlan,
  intended: TransportChoice,
  driver: Driver,
  builder: string,
): Promise<CachePlan> {
  const { config, job } = main;
  if (!isStoreBackend(config.cache.backend)) return plan;
  if (plan.direct === undefined && intended.transport === 'direct') {
    // The store failed before the facade started (cache trouble, already reported): no cache at all.
    const why = describeTransportReason({ kind: 'noCache' });
    job.update({}, { transport: `none (${why})` });
    info(loc('TransportNone', why));
    return plan;
  }
  const choice: TransportChoice =
    plan.direct === undefined
      ? autoReasonForDriver(intended, driver)
      : chooseTransport(intended, {
          driver,
          builder,
          endpoint: config.builder.endpoint,
          dockerHost: process.env.DOCKER_HOST,
          hostNetwork: driver === 'docker-container' && (await builderOnHostNetwork(job.dockerConfig, builder)),
          // Without a job-private docker config, the facade's login goes into a copy of the agent's, without its credential store.
          credsStore: job.dockerConfig === undefined ? credsStoreOf(await main.agentConfig) : undefined,
        });
  const why = describeTransportReason(choice.reason);
  job.update({}, { transport: `${choice.transport} (${why})` });
  if (plan.direct === undefined) {
    info(loc('TransportFolder', why));
    return plan;
  }
  if (choice.transport === 'direct') {
    info(loc('TransportDirect', plan.direct.cache.facade.host, why));
    return plan;
  }
  info(loc('TransportFolder', why));
  const folder = await plan.direct.fallback();
  publishPlan(config, folder, job);
  // The direct entry's key was published already: the folder's miss must not keep it.
  if (folder.restoredKey === undefined && plan.restoredKey !== undefined) setOutput('cacheRestoredKey', '');
  return folder;
}

/** Whether buildx keeps the builder as one on the host's network (its instance file in the docker config). */
async function builderOnHostNetwork(dockerConfig: string | undefined, name: string): Promise<boolean> {
  const file = path.join(dockerConfig ?? agentDockerConfig(), 'buildx', 'instances', name);
  return instanceOnHostNetwork(await fs.promises.readFile(file, 'utf8').catch(() => ''));
}

/**
 * The docker the build runs with the facade's login: the job-private DOCKER_CONFIG gets it, or, when
 * the job has none, a copy of the agent's made for the build (with the builder just created in it).
 * The password is a secret of the job.
 */
async function facadeLogin(main: MainJob, docker: Docker, direct: DirectPlan): Promise<Docker> {
  const facade = direct.cache.facade;
  setSecret(facade.password);
  const dir = main.job.dockerConfig ?? (await createDockerConfig(path.join(main.tempRoot, 'docker-config-direct')));
  await addLogin(dir, { host: facade.host, username: facade.username, password: facade.password });
  return docker.withConfig(dir);
}

/**
 * Stops the facade after the build; an upload that the main step neither saved nor handed on is
 * ended, unless the store went down during the build and the post-job step saves (`onSuccess`,
 * `always`): ending it would then only wait out the store's retries in the build's step, and the
 * post-job step ends an upload that nothing was saved from anyway.
 */
async function closeDirect(plan: CachePlan, save: SaveWhen): Promise<void> {
  const direct = plan.direct;
  if (direct === undefined) return;
  await direct.cache.close().catch((err: unknown) => {
    warn(loc('WarnDirectClose', (err as Error).message));
  });
  if (direct.cache.facade.storeWentDown && (save === 'onSuccess' || save === 'always')) return;
  await direct.cache.endUpload();
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
  const agentConfig = readAgentConfig();
  const socket = agentConfig.then((json) => engineSocket(process.env, currentContextOf(json)));
  return { config, redact: redactor(secrets), cli, id, tempRoot, branch, job, agentConfig, socket };
}

/**
 * The build with the plan's cache, then the export's commit, the image outputs and a save after the build; the
 * secret files go either way.
 */
async function buildImage(
  { config, tempRoot, job, socket: engineSocketOf }: MainJob,
  docker: DockerCli,
  builder: Builder,
  plan: CachePlan,
  loaded: LoadedImage | undefined,
): Promise<void> {
  try {
    const secretFiles = await writeSecrets(config.build.secrets, tempRoot);
    // buildx writes the oci and tar outputs but does not create their folder.
    if (config.output.path !== undefined) await fs.promises.mkdir(path.dirname(config.output.path), { recursive: true });
    const metadataFile = path.join(tempRoot, 'metadata.json');
    const via = imageVia(config, plan, loaded);
    // The engine's pull then reads the blobs the build read or wrote from copies, not from Azure again.
    // A cache compressed otherwise than the image (gzip) shares no layer with it: copies are then made at the first upload.
    if (via !== undefined && config.cache.backend === 'azureBlob')
      plan.direct?.cache.facade.keepCopiesFromNow(config.cache.compression !== 'gzip');
    // A main step stopped before the engine's references to the facade are removed leaves them to the post-job step.
    if (via !== undefined) job.update({ engineRepository: repositoryOf(via) });
    // The pulled image's tags through the engine's API when its socket is certain: each a request, not a start of the CLI.
    const socket = via === undefined ? undefined : await engineSocketOf;
    const images = socket === undefined ? undefined : new EngineImages(socket);
    const outcome = await job
      .timed(
        loc('PhaseBuild'),
        () => buildWithCacheFallback(docker, config, builder, { ...buildCache(plan, via), images }, secretFiles, metadataFile),
        (o) => loc('StepsCached', o.steps.cached, o.steps.total),
      )
      .finally(() => {
        if (via !== undefined) job.update({ engineRepository: undefined });
      });
    job.update({}, { steps: { cached: outcome.steps.cached, total: outcome.steps.total } });
    if (plan.slot !== undefined && outcome.exported) await commitExport(config, job, plan.slot);
    const direct = plan.direct === undefined ? undefined : await finishDirect(config, job, plan, plan.direct, outcome.exported);
    const digest = await setBuildOutputs(docker, config, metadataFile, loaded);
    job.update({}, { digest });
    if (plan.save !== undefined && config.cache.save === 'afterBuild') {
      const save = plan.save;
      const saved = await job.timed(loc('PhaseSave'), () => (direct !== undefined ? saveDirectToStore(save, direct) : saveToStore(save)));
      // The save ran (saveLayout ends the upload, whatever its outcome); otherwise closeDirect ends it.
      if (saved.result !== undefined) plan.direct?.cache.handOn();
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
  const post = postSave(config, plan.save, plan.direct && { leaseId: plan.direct.cache.sink?.leaseId });
  job.update(post === undefined ? {} : { save: post }, plan.summary);
}

/** The save the post-job step does (saveCache onSuccess or always), or undefined when the main step saves or nothing is saved. */
function postSave(config: Config, save: SaveJob | undefined, direct: DirectSave | undefined): NonNullable<PostState['save']> | undefined {
  const when = config.cache.save;
  return save !== undefined && (when === 'onSuccess' || when === 'always') ? { ...save, when, direct } : undefined;
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
function buildCache(cache: CachePlan, imageVia: string | undefined): BuildCache {
  return {
    ...cache.flags,
    ...(imageVia === undefined ? {} : { imageVia }),
    // The engine pulls the restored cache's last layers beside the build, when the image is pulled from the facade after it.
    ...(imageVia === undefined || cache.direct === undefined ? {} : { prefetch: prefetchOf(cache.direct.cache.facade) }),
    ...(cache.direct === undefined ? {} : { facade: reachOf(cache.direct.cache.facade) }),
    onImportCorrupt: async () => {
      await cache.distrust?.();
      await cache.slot?.empty();
    },
    onExportFailed: async () => {
      await cache.slot?.abandon();
    },
    importTrouble:
      cache.direct === undefined
        ? undefined
        : async () => (await cache.direct?.cache.trouble())?.some((e) => e.kind === 'store' || e.kind === 'corrupt') === true,
    exportTrouble:
      cache.direct === undefined
        ? undefined
        : async () => {
            const trouble = (await cache.direct?.cache.trouble()) ?? [];
            const read = trouble.some((e) => e.kind === 'corrupt' || (e.kind === 'store' && e.operation === 'open'));
            return !read && trouble.some((e) => e.kind === 'store');
          },
    // The store went down; not a blob of the entry that failed or is missing (that entry is distrusted, and the export replaces it).
    storeFailed:
      cache.direct === undefined
        ? undefined
        : async () => {
            const trouble = (await cache.direct?.cache.trouble()) ?? [];
            return cache.direct?.cache.facade.storeWentDown === true && !trouble.some((e) => e.kind === 'corrupt');
          },
  };
}

/** Whether anything reached the facade: a request of BuildKit's or the engine's, even an unauthorized one. */
const reachOf = (facade: RegistryFacade): NonNullable<BuildCache['facade']> => ({
  host: facade.host,
  unreached: () => facade.stats.requests === 0,
});

/** The facade's image of the restored cache's last layers, for the engine to pull beside the build (see build.ts). */
const prefetchOf = (facade: RegistryFacade): NonNullable<BuildCache['prefetch']> => ({
  ref: () => facade.prefetchRef(),
  end: () => facade.endPrefetch(),
});

/**
 * Where the image of `output: docker` is pushed for the engine to pull it instead of `--load` (see
 * docker/deliver.ts): the facade, when the cache goes direct with an upload, the builder is a
 * `docker-container` one on the engine the image goes to (which then shares this machine's
 * loopback: the builder reaches the facade there), and one platform at most is built.
 */
export function imageVia(config: Config, plan: CachePlan, loaded: LoadedImage | undefined): string | undefined {
  if (config.output.kind !== 'docker' || loaded?.driver !== 'docker-container' || config.build.platforms.length > 1) return undefined;
  // Arguments that name outputs, tags or platforms of their own would change what the push does.
  if (config.build.additionalArguments.some((a) => OUTPUT_ARGUMENTS.test(a))) return undefined;
  return plan.direct?.cache.imageRef;
}

/** `additionalArguments` after which the image is loaded with `--load` as given, not pushed to the facade. */
const OUTPUT_ARGUMENTS = /^(?:-[to].*|--(?:tag|push|load|output|platform|attest|sbom|provenance)(?:=.*)?)$/;

/**
 * After a good build through the facade: what went wrong is cache trouble now (a store that
 * failed, a blob that failed its digest, which also distrusts the entry), the figures go to the
 * summary, and a complete export is handed to the save (after the build, or in the post-job step's
 * state). Returns what to save; undefined when the export is not saved.
 */
async function finishDirect(
  config: Config,
  job: JobRecord,
  plan: CachePlan,
  direct: DirectPlan,
  exported: boolean,
): Promise<DirectSave | undefined> {
  const cache = direct.cache;
  const trouble = await cache.trouble();
  const stats = cache.facade.stats;
  job.update(
    {},
    {
      bytesDownloaded: cache.bytesDownloaded,
      direct: {
        bytesServed: stats.bytesServed,
        blobsServed: stats.served,
        bytesUploaded: stats.bytesUploaded,
        blobsUploaded: stats.uploaded,
        acknowledged: stats.acknowledged,
        bytesPulled: stats.bytesPulled,
        blobsPulled: stats.pulled,
      },
    },
  );
  info(
    loc(
      'DirectDone',
      formatBytes(stats.bytesServed),
      stats.served,
      formatBytes(cache.bytesDownloaded),
      formatBytes(stats.bytesUploaded),
      stats.uploaded,
      stats.acknowledged,
    ),
  );
  if (trouble.some((e) => e.kind === 'corrupt')) await plan.distrust?.();
  const said = new Set<string>();
  for (const event of trouble) {
    // One warning for each failure, not for each request it failed.
    const what =
      event.kind === 'store' ? `${event.operation}|${event.message}` : event.kind === 'committed' ? '' : `${event.kind}|${event.digest}`;
    if (said.has(what)) continue;
    said.add(what);
    if (event.kind === 'store')
      cacheTrouble(config.cache.failOnError, loc('WarnDirectStore', event.operation, event.digest ?? '-', event.message));
    else if (event.kind === 'corrupt') cacheTrouble(config.cache.failOnError, loc('WarnDirectCorrupt', event.digest, event.message));
    else if (event.kind === 'rejected') warn(loc('WarnDirectRejected', event.digest));
  }
  const sink = cache.sink;
  if (sink === undefined || plan.save === undefined || !exported || plan.flags.to.length === 0) return undefined;
  const layout = cache.exported;
  if (layout === undefined) {
    if (!trouble.some((e) => e.kind === 'store')) cacheTrouble(config.cache.failOnError, loc('WarnDirectNotExported'));
    return undefined;
  }
  info(loc('DirectExported', layout.blobs.length, layout.root.digest));
  const save: DirectSave = { leaseId: sink.leaseId, layout: { index: layout.index, blobs: layout.blobs } };
  const post = postSave(config, plan.save, save);
  if (post !== undefined) {
    // The post-job step's state has the upload now: its save (or endUpload) ends it.
    job.update({ save: post });
    cache.handOn();
  }
  return save;
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
