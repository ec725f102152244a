import type { CacheMode, Compression } from '../config/types';
import type { CacheFolder, CommitResult } from './folder';

/**
 * The fresh folder one build exports its cache into, beside the cache folder: committed in the
 * cache folder's place after a good build, or abandoned. Whoever opens it owns it, and either
 * commits it or abandons it; abandoning is safe to repeat, and does nothing once committed.
 */
export class ExportSlot {
  private closed = false;

  private constructor(
    private readonly folder: CacheFolder,
    private readonly fresh: string,
  ) {}

  /** A fresh export folder for `folder`, seeded with its blobs when `seed` (see CacheFolder.begin). */
  static async open(folder: CacheFolder, seed: boolean): Promise<ExportSlot> {
    return new ExportSlot(folder, await folder.begin(seed));
  }

  /** The cache folder that a commit replaces. */
  get dir(): string {
    return this.folder.dir;
  }

  /** The `--cache-to` spec that exports into this slot; `reset` as in CacheFolder.exportSpec. */
  exportSpec(mode: CacheMode, compression: Compression, reset = false): string {
    return this.folder.exportSpec(this.fresh, mode, compression, reset);
  }

  /**
   * Drops what the slot holds, the blobs it was seeded with included, and keeps it open: the build
   * that exports into it next writes every blob itself (after an imported blob turned out corrupt).
   */
  async empty(): Promise<void> {
    await this.remove();
  }

  /** Puts the export in place of the cache folder. When that fails, the export is abandoned and the error goes on. */
  async commit(): Promise<CommitResult> {
    this.closed = true;
    try {
      return await this.folder.commit(this.fresh);
    } catch (err) {
      await this.remove();
      throw err;
    }
  }

  /** Deletes the export, unless it was committed or abandoned already. */
  async abandon(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.remove();
  }

  private async remove(): Promise<void> {
    await this.folder.discard(this.fresh);
  }
}
