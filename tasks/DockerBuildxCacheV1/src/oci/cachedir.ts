import * as fs from 'fs';
import * as path from 'path';
import { replaceDirectory, unlessMissing } from '../util/fs';
import { CACHE_CONFIG_TYPE } from './cache-config';
import { cacheRoot, MARKER_FILE, readLayoutIndex, readVerified } from './layout';

/** The kinds of hidden sibling folder a job makes next to a cache folder. */
export type SiblingKind = 'export' | 'old' | 'restore';

/** Hidden siblings of a cache folder live on its filesystem, so that swapping them in is a rename. */
export function siblingPrefix(dir: string): string {
  const base = path.basename(dir);
  return `${base.startsWith('.') ? '' : '.'}${base}.`;
}

/** The sibling folder of `dir` where a job stages an export or a restore, or parks the old folder. */
export function siblingPath(dir: string, kind: SiblingKind, id: string): string {
  return path.join(path.dirname(dir), `${siblingPrefix(dir)}${kind}-${id}`);
}

/** The task writes its marker into every folder it puts in place. */
const MARKER_CONTENT = '{"writtenBy":"DockerBuildxCache@1"}\n';

/** What BuildKit's local cache exporter leaves in a folder, and all that an earlier version of the task left. */
const BUILDKIT_NAMES = new Set(['index.json', 'oci-layout', 'blobs', 'ingest', 'index.json.lock']);

export class ForeignFolderError extends Error {
  override name = 'ForeignFolderError';
}

/**
 * Whose the folder is: `absent`, `empty`, `owned` (the task's marker is in it, or it holds only a
 * bare BuildKit cache, as an earlier version of the task or the Cache@2 template left it), or
 * `foreign` (anything else, a link included): the task never deletes or replaces a foreign folder.
 */
export async function folderState(dir: string): Promise<'absent' | 'empty' | 'owned' | 'foreign'> {
  const stat = await unlessMissing(fs.promises.lstat(dir));
  if (stat === undefined) return 'absent';
  if (!stat.isDirectory()) return 'foreign';
  const names = await fs.promises.readdir(dir);
  if (names.length === 0) return 'empty';
  if (names.includes(MARKER_FILE) && (await fs.promises.lstat(path.join(dir, MARKER_FILE))).isFile()) return 'owned';
  return names.every((n) => BUILDKIT_NAMES.has(n)) && (await isBuildkitCache(dir)) ? 'owned' : 'foreign';
}

/** Whether index.json's `latest` root is a BuildKit cache: an index that lists a cache config, which no image has. */
async function isBuildkitCache(dir: string): Promise<boolean> {
  try {
    const root = cacheRoot(await readLayoutIndex(dir));
    if (root === undefined) return false;
    const index = JSON.parse((await readVerified(dir, root)).toString()) as { manifests?: { mediaType?: unknown }[] };
    return Array.isArray(index.manifests) && index.manifests.some((d) => d.mediaType === CACHE_CONFIG_TYPE);
  } catch {
    return false;
  }
}

/** Throws unless the task may replace or delete the folder. */
export async function assertReplaceable(dir: string): Promise<void> {
  if ((await folderState(dir)) === 'foreign')
    throw new ForeignFolderError(`${dir} holds files that the task did not write: it is not a cache folder the task may replace`);
}

/** Puts `fresh` in place of `dir`, marked as the task's, unless `dir` is a folder the task did not write. */
export async function replaceOwnedDirectory(dir: string, fresh: string, old: string): Promise<void> {
  await assertReplaceable(dir);
  await fs.promises.writeFile(path.join(fresh, MARKER_FILE), MARKER_CONTENT);
  await replaceDirectory(dir, fresh, old);
}

/** Deletes the folder, unless it is one the task did not write. */
export async function removeOwnedDirectory(dir: string): Promise<void> {
  await assertReplaceable(dir);
  await fs.promises.rm(dir, { recursive: true, force: true });
}
