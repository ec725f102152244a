import * as fs from 'fs';
import * as path from 'path';
import { formatBytes, info, variable } from '../task/agent';
import { openContainer } from '../auth/storage';
import type { AzureStoreConfig, Config } from '../config/types';
import { storageSecret } from '../task/inputs';
import { loc } from '../task/messages';
import { folderState } from '../oci/cachedir';
import { INDEX_FILE } from '../oci/layout';
import { AzureBlobStore } from '../store/blob';
import { LocalStore } from '../store/local';
import type { BlobRef, CacheStore, SaveOutcome, SaveResult } from '../store/types';
import { cacheTrouble } from './trouble';

/** Which store, and where: no secret, so that it can go to the post-job step. */
export type StoreSpec = { readonly kind: 'local'; readonly path: string } | ({ readonly kind: 'azureBlob' } & AzureStoreConfig);

export function storeSpec(config: Config): StoreSpec {
  return config.cache.azure !== undefined ? { kind: 'azureBlob', ...config.cache.azure } : { kind: 'local', path: config.cache.storePath };
}

/** The store in words, before it is opened. */
export function describeStore(spec: StoreSpec): string {
  return spec.kind === 'local' ? `local store ${spec.path}` : loc('StoreAzureDescription', `${spec.accountUrl ?? ''}/${spec.container}`);
}

/** How long one restore, save or prune may take against Azure before the task gives up on it; a pipeline variable overrides it. */
function azureBudgetMs(): number {
  const minutes = Number(variable('DockerBuildxCache.StoreTimeoutMinutes') ?? '');
  return (Number.isFinite(minutes) && minutes > 0 ? minutes : 15) * 60_000;
}

/**
 * The store of a spec; the one place that chooses a store implementation. Opening Azure reads the
 * secret input or the service connection and logs which method is used; a missing connection is
 * an InputError.
 */
export function openStore(spec: StoreSpec): CacheStore {
  if (spec.kind === 'local') return new LocalStore(spec.path);
  const { client, method } = openContainer(spec, storageSecret());
  // A SAS URL's query is a secret: the description has the container's address only.
  const where = client.url.split('?')[0] ?? '';
  info(loc('StoreOpened', where, method));
  return new AzureBlobStore(client, loc('StoreAzureDescription', where), { budgetMs: azureBudgetMs() });
}

/** What the save needs, handed from the main step to the post-job step. */
export interface SaveJob {
  readonly store: StoreSpec;
  readonly cacheDir: string;
  /** The resolved key's segments. */
  readonly segments: readonly string[];
  readonly scope: string;
  readonly retentionDays: number;
  readonly failOnError: boolean;
}

/** An export through the registry facade, as the post-job step saves it: its index and blobs, and the upload that holds them. */
export interface DirectSave {
  /** The store's upload lease (BlobSink.leaseId): ended by the save, or without one. */
  readonly leaseId?: string;
  /** The export, once its manifest arrived complete: saved as the entry (saveLayout). */
  readonly layout?: { readonly index: unknown; readonly blobs: readonly BlobRef[] };
}

/** Saves the cache folder as the newest version of its key, then applies retention. */
export async function saveToStore(job: SaveJob, open: (spec: StoreSpec) => CacheStore = openStore): Promise<SaveOutcome> {
  if (!fs.existsSync(path.join(job.cacheDir, INDEX_FILE)) || (await folderState(job.cacheDir)) === 'foreign') {
    info(loc('NothingToSave', job.cacheDir));
    return { skipped: loc('NothingToSave', job.cacheDir) };
  }
  return saveWith(job, open, (store, request) => store.save({ ...request, cacheDir: job.cacheDir }));
}

/**
 * Saves an export that came through the registry facade: its blobs are in the store already, under
 * the upload's lease, and the entry is written now (saveLayout), then retention as after any save.
 * Without a complete export nothing is saved and the upload is ended.
 */
export async function saveDirectToStore(
  job: SaveJob,
  direct: DirectSave,
  open: (spec: StoreSpec) => CacheStore = openStore,
): Promise<SaveOutcome> {
  const layout = direct.layout;
  if (layout === undefined) {
    await endDirectUpload(job, direct, open);
    info(loc('NothingToSaveDirect'));
    return { skipped: loc('NothingToSaveDirect') };
  }
  return saveWith(job, open, (store, request) =>
    store.saveLayout({ ...request, index: layout.index, blobs: layout.blobs, leaseId: direct.leaseId }),
  );
}

/** Ends the upload of an export that is not saved; a failure is only logged: the lease expires by itself. */
export async function endDirectUpload(job: SaveJob, direct: DirectSave, open: (spec: StoreSpec) => CacheStore = openStore): Promise<void> {
  const leaseId = direct.leaseId;
  if (leaseId === undefined) return;
  try {
    await open(job.store).endUpload(leaseId);
  } catch (err) {
    info(loc('UploadNotEnded', (err as Error).message));
  }
}

type SaveCall = (store: CacheStore, request: { key: string; segments: readonly string[]; scope: string; now: Date }) => Promise<SaveResult>;

/** Opens the store, saves with `call`, then applies retention. */
async function saveWith(job: SaveJob, open: (spec: StoreSpec) => CacheStore, call: SaveCall): Promise<SaveOutcome> {
  let store: CacheStore;
  try {
    store = open(job.store);
  } catch (err) {
    cacheTrouble(job.failOnError, loc('WarnSaveFailed', describeStore(job.store), (err as Error).message));
    return {};
  }
  let result: SaveResult | undefined;
  let failure: string | undefined;
  try {
    result = await call(store, { key: job.segments.join('|'), segments: job.segments, scope: job.scope, now: new Date() });
    if (result.status === 'unchanged') info(loc('SaveUnchanged', result.entry.key, result.entry.scope));
    else info(loc('Saved', result.entry.key, result.entry.scope, formatBytes(result.newBytes), result.newBlobs));
  } catch (err) {
    failure = loc('WarnSaveFailed', store.description, (err as Error).message);
  }
  // Retention runs after a failed save too: it removes what the save left, and in a full store it
  // is what makes room for the next save.
  let outcome: SaveOutcome = { result };
  try {
    const report = await store.prune({ retentionDays: job.retentionDays, now: new Date() });
    const stats = report.after;
    info(
      loc(
        'Pruned',
        report.entriesRemoved,
        report.blobsRemoved,
        formatBytes(report.bytesRemoved),
        formatBytes(stats.bytes),
        stats.blobs,
        stats.entries,
      ),
    );
    outcome = { result, pruned: { entries: report.entriesRemoved, blobs: report.blobsRemoved, bytes: report.bytesRemoved }, stats };
  } catch (err) {
    if (failure === undefined) cacheTrouble(job.failOnError, loc('WarnPruneFailed', store.description, (err as Error).message));
  }
  if (failure !== undefined) cacheTrouble(job.failOnError, failure);
  return outcome;
}
