import * as os from 'os';
import { formatBytes, info } from '../task/agent';
import type { CacheFlags } from '../docker/args';
import type { DockerCli } from '../docker/cli';
import type { Gates } from '../docker/preflight';
import type { Recorder } from '../docker/setup';
import { InputError } from '../config/source';
import type { CacheBackend, Config } from '../config/types';
import { loc } from '../task/messages';
import { scopePlan, type ScopePlan, type ScopeVariables } from '../store/scopes';
import type { CacheStore, HitKind } from '../store/types';
import type { SummaryData } from '../summary';
import { prepareRegistry, registryRefs } from './registry';
import { describeStore, openStore, storeSpec, type SaveJob, type StoreSpec } from './save';
import { prepareFolder, prepareFromStore, type PreparedCache } from './session';
import { DirectCache } from './direct';
import type { ExportSlot } from './slot';
import { cacheTrouble } from './trouble';

/** The resolved key and restore keys, with build secrets redacted: lookups and saves both use these. */
export interface CacheKeys {
  readonly key: readonly string[];
  readonly restoreKeys: readonly (readonly string[])[];
}

/** What planning the cache needs: the job's inputs, and what the main step resolved before. */
export interface PlanContext {
  /** The job's inputs, `cacheTransport` as the main step resolved it (`auto` plans the folder). */
  readonly config: Config;
  /** Names this job's sibling folders beside the cache folder. */
  readonly id: string;
  readonly docker: DockerCli;
  /** For `local` and `azureBlob`: resolved before docker runs, so that a key error comes first. */
  readonly keys?: CacheKeys;
  /** The branch and pull request, which decide the scopes read and written. */
  readonly branch: ScopeVariables;
  readonly job: Pick<Recorder, 'timed'>;
  /** The job's own folder, where the registry facade spools chunked uploads. */
  readonly tempRoot?: string;
}

/** What one backend decided before the build: the cache flags and the export slot, the outputs, and the save. */
export interface CachePlan {
  readonly flags: CacheFlags;
  /** The fresh export folder of a local cache folder; the main step commits or abandons it. */
  readonly slot?: ExportSlot;
  /** Called when the build fails on the restored content: the store checks the entry in full next time. */
  readonly distrust?: () => Promise<void>;
  /** The `cacheHit` output; none for the backend `none`. */
  readonly hit?: HitKind;
  /** The `cacheRestoredKey` output: the key of the entry restored, or the registry reference imported. */
  readonly restoredKey?: string;
  /** The plan's part of the summary. */
  readonly summary: Partial<SummaryData>;
  /** The save this job may do, after the build or after the job; none when the cache is read-only. */
  readonly save?: SaveJob;
  /**
   * The direct transport (`local` and `azureBlob`): the registry facade over the store, which the
   * main step keeps only if the builder reaches it, and closes after the build.
   */
  readonly direct?: DirectPlan;
}

export interface DirectPlan {
  readonly cache: DirectCache;
  /** The folder's plan instead, when the builder cannot reach the facade: the direct cache is closed and its upload ended first. */
  readonly fallback: () => Promise<CachePlan>;
}

const NO_CACHE: CacheFlags = { from: [], to: [] };

const ready = (c: PreparedCache): string => loc('CacheReady', c.flags.from.length, c.flags.to.length);

/** `none`: no cache, and no cache output. */
const none = (): Promise<CachePlan> => Promise.resolve({ flags: NO_CACHE, summary: {} });

/** `registry`: BuildKit's registry cache, a reference a scope, imported as the stores fall back (see prepareRegistry). */
async function registry(ctx: PlanContext): Promise<CachePlan> {
  const { config } = ctx;
  const refs = registryRefs(config.cache.registryRef ?? '', scopePlan(config.cache.scope, ctx.branch));
  const cache = await ctx.job.timed(loc('PhaseCache'), () => prepareRegistry(config, ctx.docker, refs), ready);
  const hit = cache.hit ?? 'false';
  return { flags: cache.flags, hit, restoredKey: cache.imported, summary: { hit, key: refs.write ?? refs.read[0] } };
}

/** `directory`: the cache folder as something else keeps it, verified before BuildKit sees it (see prepareFolder). */
async function directory(ctx: PlanContext): Promise<CachePlan> {
  const cache = await ctx.job.timed(loc('PhaseCache'), () => prepareFolder(ctx.config, ctx.id), ready);
  const hit = cache.hit ?? 'false';
  return { flags: cache.flags, slot: cache.slot, hit, summary: { hit } };
}

/**
 * `local` and `azureBlob`: the best entry for the key, restored from the store into the cache folder
 * (see prepareFromStore), and the save to the same store. A store that cannot be opened is cache
 * trouble, and the build runs without the cache; bad input fails the task.
 */
async function fromStore(ctx: PlanContext): Promise<CachePlan> {
  const { config, keys } = ctx;
  if (keys === undefined) return directory(ctx);
  const scopes = scopePlan(config.cache.scope, ctx.branch);
  const spec = storeSpec(config);
  let store: CacheStore;
  try {
    store = openStore(spec);
  } catch (err) {
    if (err instanceof InputError) throw err;
    cacheTrouble(config.cache.failOnError, loc('WarnRestoreFailed', describeStore(spec), (err as Error).message));
    return { flags: NO_CACHE, hit: 'false', summary: { hit: 'false' } };
  }
  if (config.cache.transport === 'direct') return direct(ctx, keys, store, spec, scopes);
  return folderFromStore(ctx, keys, store, spec, scopes);
}

/** The store's entry restored into the cache folder, which BuildKit imports, and the export saved from it. */
async function folderFromStore(
  ctx: PlanContext,
  keys: CacheKeys,
  store: CacheStore,
  spec: StoreSpec,
  scopes: ScopePlan,
): Promise<CachePlan> {
  const { config } = ctx;
  const cache = await ctx.job.timed(
    loc('PhaseRestore'),
    () => prepareFromStore(config, ctx.id, store, keys.key, keys.restoreKeys, scopes),
    (c) => loc('RestoreDone', c.hit ?? 'false', formatBytes(c.bytesRestored ?? 0)),
  );
  const hit = cache.hit ?? 'false';
  const restored = cache.restored;
  return {
    flags: cache.flags,
    slot: cache.slot,
    distrust: cache.distrust,
    hit,
    restoredKey: restored?.key,
    summary: {
      hit,
      bytesRestored: cache.bytesRestored,
      bytesDownloaded: cache.bytesDownloaded,
      restored: restored && { key: restored.key, scope: restored.scope, created: restored.created },
    },
    save: saveJob(config, spec, scopes, keys.key),
  };
}

/**
 * The store served to BuildKit as a registry on loopback: the entry for the key opened (not
 * restored: BuildKit reads the blobs it needs), and an upload begun for the export. A store that
 * fails here is cache trouble, and the build runs without the cache.
 */
async function direct(ctx: PlanContext, keys: CacheKeys, store: CacheStore, spec: StoreSpec, scopes: ScopePlan): Promise<CachePlan> {
  const { config } = ctx;
  const save = saveJob(config, spec, scopes, keys.key);
  let cache: DirectCache;
  try {
    cache = await ctx.job.timed(
      loc('PhaseRestore'),
      () =>
        DirectCache.open({
          store,
          scopes: scopes.read,
          key: keys.key,
          restoreKeys: keys.restoreKeys,
          save: save !== undefined,
          spoolDir: ctx.tempRoot ?? os.tmpdir(),
        }),
      (c) => loc('DirectOpened', c.hit, c.opened?.entry.blobs.length ?? 0),
    );
  } catch (err) {
    if (err instanceof InputError) throw err;
    cacheTrouble(config.cache.failOnError, loc('WarnRestoreFailed', store.description, (err as Error).message));
    return { flags: NO_CACHE, hit: 'false', summary: { hit: 'false' } };
  }
  // From here the cache is open (the facade listening, the entry and the upload leased): any way
  // out but the plan closes it and ends the upload, or the step would never end.
  try {
    for (const skipped of cache.skipped) cacheTrouble(config.cache.failOnError, loc('WarnEntrySkipped', skipped));
    const e = cache.entry;
    if (e === undefined) info(loc('CacheMiss', store.description, scopes.read.join(', ')));
    else info(loc('DirectEntry', cache.hit, e.key, e.scope, e.created, cache.opened?.entry.blobs.length ?? 0));
    // The entry's last use, as a restore records it: retention keeps what builds use.
    if (e !== undefined) await store.touch(e, new Date()).catch(() => undefined);
    const hit = cache.hit;
    return {
      flags: cache.flags(config.cache.mode, config.cache.compression),
      distrust: e === undefined ? undefined : () => store.distrust(e),
      hit,
      restoredKey: e?.key,
      summary: { hit, restored: e && { key: e.key, scope: e.scope, created: e.created } },
      save,
      direct: {
        cache,
        fallback: async () => {
          await cache.discard();
          return folderFromStore(ctx, keys, store, spec, scopes);
        },
      },
    };
  } catch (err) {
    await cache.discard();
    throw err;
  }
}

/** The save this job may do, or undefined: none when the cache is read-only, as on a pull request from a fork. */
function saveJob(config: Config, store: StoreSpec, scopes: ScopePlan, segments: readonly string[]): SaveJob | undefined {
  if (config.cache.save === 'never' || scopes.write === undefined) return undefined;
  return {
    store,
    cacheDir: config.cache.dir,
    segments,
    scope: scopes.write,
    retentionDays: config.cache.retentionDays,
    failOnError: config.cache.failOnError,
  };
}

const PLANNERS: Readonly<Record<CacheBackend, (ctx: PlanContext) => Promise<CachePlan>>> = {
  none,
  registry,
  directory,
  local: fromStore,
  azureBlob: fromStore,
};

/** The restore phase of the job's backend, and what it hands on: flags, slot, outputs and save. */
export function planCache(ctx: PlanContext): Promise<CachePlan> {
  return PLANNERS[ctx.config.cache.backend](ctx);
}

/**
 * What the preflight found this builder cannot do: no cache export without the containerd store
 * (the slot is abandoned at once), reset=true from buildx 0.35.
 */
export async function withGates(config: Config, plan: CachePlan, gates: Gates): Promise<CachePlan> {
  const slot = plan.slot;
  if (!gates.cacheExport) {
    await slot?.abandon();
    return { ...plan, slot: undefined, flags: { from: plan.flags.from, to: [] } };
  }
  if (slot === undefined || !gates.resetOnExport) return plan;
  return { ...plan, flags: { from: plan.flags.from, to: [slot.exportSpec(config.cache.mode, config.cache.compression, true)] } };
}
