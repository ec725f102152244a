import * as fs from 'fs';
import * as path from 'path';
import { csvSpec } from '../buildx/args';
import type { CacheMode, Compression } from '../config';
import { BLOBS_DIR, INDEX_FILE, prune, verifyLayout, type VerifyResult } from '../oci/layout';

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
   * `unusable` with the reason. An unusable folder is not imported and is replaced after the build.
   */
  async inspect(): Promise<{ state: 'empty' } | ({ state: 'usable' } & VerifyResult) | { state: 'unusable'; reason: string }> {
    if (!fs.existsSync(path.join(this.dir, INDEX_FILE))) return { state: 'empty' };
    try {
      return { state: 'usable', ...(await verifyLayout(this.dir)) };
    } catch (err) {
      return { state: 'unusable', reason: (err as Error).message };
    }
  }

  importSpec(): string {
    return csvSpec({ type: 'local', src: this.dir });
  }

  exportSpec(dest: string, mode: CacheMode, compression: Compression): string {
    return csvSpec({ type: 'local', dest, mode, compression });
  }

  /** Creates the parent folder, sweeps stale siblings and returns a fresh export path (not yet created). */
  async begin(): Promise<string> {
    const parent = path.dirname(this.dir);
    await fs.promises.mkdir(parent, { recursive: true });
    await this.sweep();
    const fresh = this.sibling('export');
    await fs.promises.rm(fresh, { recursive: true, force: true });
    return fresh;
  }

  async discard(fresh: string): Promise<void> {
    await fs.promises.rm(fresh, { recursive: true, force: true });
  }

  /** Prunes the fresh export, checks that it is complete, and puts it in place of `cacheDir`. */
  async commit(fresh: string): Promise<CommitResult> {
    const pruned = await prune(fresh);
    if (pruned.missing.length > 0) {
      throw new CacheFolderError(`the exported cache lacks ${pruned.missing.length} blob(s) that its index.json needs, e.g. ${pruned.missing[0] ?? ''}`);
    }
    const previous = await blobSizes(this.dir);
    let bytes = 0;
    let newBytes = 0;
    for (const [digest, size] of pruned.kept) {
      bytes += size;
      if (!previous.has(digest)) newBytes += size;
    }
    await this.replaceWith(fresh);
    return {
      blobs: pruned.kept.size,
      bytes,
      newBytes,
      prunedBytes: pruned.removedBytes,
      previousBytes: [...previous.values()].reduce((a, b) => a + b, 0),
    };
  }

  private async replaceWith(fresh: string): Promise<void> {
    const old = this.sibling('old');
    await fs.promises.rm(old, { recursive: true, force: true });
    let moved = false;
    try {
      await fs.promises.rename(this.dir, old);
      moved = true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EBUSY' || code === 'EXDEV' || code === 'EPERM') return this.replaceContents(fresh);
      if (code !== 'ENOENT') throw err;
    }
    try {
      await fs.promises.rename(fresh, this.dir);
    } catch (err) {
      if (moved) await fs.promises.rename(old, this.dir);
      throw err;
    }
    if (moved) await fs.promises.rm(old, { recursive: true, force: true });
  }

  /** For a `cacheDir` that cannot be renamed, such as a mount point: empty it and move the new content in. */
  private async replaceContents(fresh: string): Promise<void> {
    for (const name of await fs.promises.readdir(this.dir)) {
      await fs.promises.rm(path.join(this.dir, name), { recursive: true, force: true });
    }
    await fs.promises.cp(fresh, this.dir, { recursive: true });
    await fs.promises.rm(fresh, { recursive: true, force: true });
  }

  /** Hidden siblings of `cacheDir` on the same filesystem, so that the swap is a rename. */
  private get siblingPrefix(): string {
    const base = path.basename(this.dir);
    return `${base.startsWith('.') ? '' : '.'}${base}.`;
  }

  private sibling(kind: 'export' | 'old'): string {
    return path.join(path.dirname(this.dir), `${this.siblingPrefix}${kind}-${this.id}`);
  }

  private async sweep(): Promise<void> {
    const parent = path.dirname(this.dir);
    const prefix = this.siblingPrefix;
    for (const name of await fs.promises.readdir(parent)) {
      if (!name.startsWith(prefix) || !/\.(export|old)-[0-9a-f]+$/.test(name)) continue;
      const full = path.join(parent, name);
      const stat = await fs.promises.stat(full).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs > STALE_MS) await fs.promises.rm(full, { recursive: true, force: true });
    }
  }
}

/** digest → size of each blob file in a layout folder; empty when the folder does not exist. */
export async function blobSizes(dir: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  const blobs = path.join(dir, BLOBS_DIR);
  const algs = await fs.promises.readdir(blobs).catch(() => [] as string[]);
  for (const alg of algs) {
    const hexes = await fs.promises.readdir(path.join(blobs, alg)).catch(() => [] as string[]);
    for (const hex of hexes) {
      const stat = await fs.promises.stat(path.join(blobs, alg, hex)).catch(() => undefined);
      if (stat?.isFile()) sizes.set(`${alg}:${hex}`, stat.size);
    }
  }
  return sizes;
}
