import * as fs from 'fs';
import * as path from 'path';
import { csvSpec } from '../docker/args';
import type { CacheMode, Compression } from '../config/types';
import { folderState, ForeignFolderError, replaceOwnedDirectory, siblingPath, siblingPrefix, type SiblingKind } from '../oci/cachedir';
import {
  blobPath,
  blobSizes,
  INDEX_FILE,
  LAYOUT_CONTENT,
  LAYOUT_FILE,
  parseStamps,
  prune,
  restamp,
  verifyLayout,
  type VerifyResult,
} from '../oci/layout';
import { writeFileAtomic } from '../util/fs';

/** Sibling folders older than this are left-overs of a killed job and are swept away. */
const STALE_MS = 60 * 60 * 1000;

export class CacheFolderError extends Error {
  override name = 'CacheFolderError';
}

export interface CommitResult {
  readonly blobs: number;
  readonly bytes: number;
  /** Bytes of blobs that the previous folder did not have. */
  readonly newBytes: number;
  /** Bytes of blobs that the export wrote but index.json does not reach. */
  readonly prunedBytes: number;
  readonly previousBytes: number;
}

/**
 * The local buildx cache folder (`cacheDir`). BuildKit's local exporter only ever adds blobs, so each
 * build exports into a fresh sibling folder that replaces `cacheDir` when the build succeeded; the
 * folder then holds exactly what the newest index.json reaches.
 */
export class CacheFolder {
  /** `id` names this job's sibling folders, so that jobs sharing a cache folder never touch each other's. */
  constructor(
    readonly dir: string,
    private readonly id: string,
  ) {}

  /**
   * What the folder holds: `empty` before the first build, `usable` when every blob checks out, or
   * `unusable` with the reason. An unusable folder is not imported and is replaced after the build;
   * a `foreign` one (files the task did not write) is neither imported nor replaced.
   */
  async inspect(): Promise<
    { state: 'empty' } | { state: 'foreign' } | ({ state: 'usable' } & VerifyResult) | { state: 'unusable'; reason: string }
  > {
    if ((await folderState(this.dir)) === 'foreign') return { state: 'foreign' };
    if (!fs.existsSync(path.join(this.dir, INDEX_FILE))) return { state: 'empty' };
    const stampsFile = this.stampsFile();
    try {
      const known = parseStamps(await fs.promises.readFile(stampsFile, 'utf8').catch(() => ''));
      const verified = await verifyLayout(this.dir, 4, known);
      // Only a record of what was read: one that cannot be written costs the next check its reads.
      await writeFileAtomic(stampsFile, JSON.stringify(verified.stamps)).catch(() => undefined);
      return { state: 'usable', ...verified };
    } catch (err) {
      await fs.promises.rm(stampsFile, { force: true }).catch(() => undefined);
      return { state: 'unusable', reason: (err as Error).message };
    }
  }

  /**
   * Beside the folder, the stamps of the blobs its last check read and found right (see BlobStamp):
   * on an agent that keeps the folder, the next job reads only the blobs written since.
   */
  private stampsFile(): string {
    return path.join(path.dirname(this.dir), `${siblingPrefix(this.dir)}verified.json`);
  }

  /**
   * The committed export hard-linked the checked blobs and the old folder's names of them are gone,
   * which changed their files' change time: their stamps follow. Only a record of what was read:
   * when it cannot be written, the next check reads those blobs again.
   */
  private async carryStamps(kept: Iterable<string>): Promise<void> {
    const file = this.stampsFile();
    const known = parseStamps(await fs.promises.readFile(file, 'utf8').catch(() => ''));
    if (Object.keys(known).length === 0) return;
    await writeFileAtomic(file, JSON.stringify(await restamp(this.dir, kept, known))).catch(() => undefined);
  }

  importSpec(): string {
    return csvSpec({ type: 'local', src: this.dir });
  }

  /** `reset`: buildx drops the blobs the new cache does not reach itself (buildx 0.35 and later). */
  exportSpec(dest: string, mode: CacheMode, compression: Compression, reset = false): string {
    return csvSpec({ type: 'local', dest, mode, compression, reset: reset ? 'true' : undefined });
  }

  /**
   * Creates the parent folder, sweeps stale siblings and returns a fresh export folder. With `seed`,
   * the fresh folder starts with hard links to the cache folder's blobs: BuildKit's exporter skips a
   * blob that exists, so an unchanged layer costs a link, not a rewrite of every byte. The prune
   * after the build removes whatever the new index.json does not reach.
   */
  async begin(seed = false): Promise<string> {
    const parent = path.dirname(this.dir);
    await fs.promises.mkdir(parent, { recursive: true });
    await this.sweep();
    const fresh = this.sibling('export');
    await fs.promises.rm(fresh, { recursive: true, force: true });
    if (seed) await this.seed(fresh);
    return fresh;
  }

  private async seed(fresh: string): Promise<void> {
    try {
      for (const digest of (await blobSizes(this.dir)).keys()) {
        const dest = blobPath(fresh, digest);
        await fs.promises.mkdir(path.dirname(dest), { recursive: true });
        await fs.promises.link(blobPath(this.dir, digest), dest);
      }
      await fs.promises.writeFile(path.join(fresh, LAYOUT_FILE), LAYOUT_CONTENT);
    } catch {
      // Across filesystems, say: BuildKit then writes every blob itself.
      await fs.promises.rm(fresh, { recursive: true, force: true });
    }
  }

  async discard(fresh: string): Promise<void> {
    await fs.promises.rm(fresh, { recursive: true, force: true });
  }

  /** Prunes the fresh export, checks that it is complete, and puts it in place of `cacheDir`. */
  async commit(fresh: string): Promise<CommitResult> {
    const pruned = await prune(fresh);
    if (pruned.missing.length > 0) {
      throw new CacheFolderError(
        `the exported cache lacks ${pruned.missing.length} blob(s) that its index.json needs, e.g. ${pruned.missing[0] ?? ''}`,
      );
    }
    const previous = await blobSizes(this.dir);
    let bytes = 0;
    let newBytes = 0;
    for (const [digest, size] of pruned.kept) {
      bytes += size;
      if (!previous.has(digest)) newBytes += size;
    }
    try {
      await replaceOwnedDirectory(this.dir, fresh, this.sibling('old'));
    } catch (err) {
      if (err instanceof ForeignFolderError) throw new CacheFolderError(err.message);
      throw err;
    }
    await this.carryStamps(pruned.kept.keys());
    return {
      blobs: pruned.kept.size,
      bytes,
      newBytes,
      prunedBytes: pruned.removedBytes,
      previousBytes: [...previous.values()].reduce((a, b) => a + b, 0),
    };
  }

  private sibling(kind: SiblingKind): string {
    return siblingPath(this.dir, kind, this.id);
  }

  private async sweep(): Promise<void> {
    const parent = path.dirname(this.dir);
    const prefix = siblingPrefix(this.dir);
    for (const name of await fs.promises.readdir(parent)) {
      if (!name.startsWith(prefix) || !/\.(export|old|restore)-[0-9a-f]+$/.test(name)) continue;
      const full = path.join(parent, name);
      const stat = await fs.promises.stat(full).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs > STALE_MS) await fs.promises.rm(full, { recursive: true, force: true });
    }
  }
}
