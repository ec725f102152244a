import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import type { EntryReader, EntryWriter, ExportedLayout } from '../tasks/DockerBuildxCacheV1/src/facade/types';
import {
  blobPath,
  cacheRoot,
  hashFile,
  INDEX_FILE,
  LAYOUT_CONTENT,
  LAYOUT_FILE,
  layoutReachable,
  readLayoutIndex,
  type Index,
} from '../tasks/DockerBuildxCacheV1/src/oci/layout';
import type { BlobRef } from '../tasks/DockerBuildxCacheV1/src/store/types';
import { tempDir } from './helpers';

/**
 * How a store call misbehaves: `fail` rejects, `hang` never settles (and ignores its signal),
 * `break` (open, put) fails halfway through the blob, `stall` (open) stops sending halfway, `refuse` (open) cannot connect.
 */
export type Fault = 'fail' | 'hang' | 'break' | 'stall' | 'refuse';
type Operation = 'open' | 'has' | 'put' | 'commit';

interface StoredEntry {
  readonly index: Index;
  readonly blobs: BlobRef[];
}

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

/**
 * The facade's two sides over a content-addressed store in a temp folder, for the facade's tests:
 * blobs at `blobs/sha256/<hex>` (the OCI layout's own paths) and each entry as `entries/<name>.json`
 * (its index.json and blob list). Faults can be switched on per operation, and every call is counted.
 */
export class FolderStore {
  readonly faults: Partial<Record<Operation, Fault>> = {};
  /** When set, the faults hit only these blobs (say, the layers, once the manifest has been read). */
  faultsOnly: ReadonlySet<string> | undefined;
  readonly calls: Record<Operation, string[]> = { open: [], has: [], put: [], commit: [] };
  /** digest → what a put of it waits for before it reads its body (see holdPut). */
  private readonly held = new Map<string, Promise<void>>();
  /** digest → what an open of it waits for (see holdOpen). */
  private readonly heldOpen = new Map<string, Promise<void>>();

  constructor(readonly dir = tempDir('dbxc-facade-store-')) {
    fs.mkdirSync(path.join(dir, 'entries'), { recursive: true });
  }

  blobFile(digest: string): string {
    return blobPath(this.dir, digest);
  }

  blobs(): string[] {
    const base = path.join(this.dir, 'blobs', 'sha256');
    return fs.existsSync(base) ? fs.readdirSync(base).map((hex) => `sha256:${hex}`) : [];
  }

  /** Adds the OCI layout in `layoutDir` (as BuildKit's local exporter writes it) as entry `name`. */
  async addLayout(layoutDir: string, name: string): Promise<void> {
    const index = await readLayoutIndex(layoutDir);
    const live = await layoutReachable(layoutDir, index);
    for (const d of live.values()) {
      fs.mkdirSync(path.dirname(this.blobFile(d.digest)), { recursive: true });
      fs.copyFileSync(blobPath(layoutDir, d.digest), this.blobFile(d.digest));
    }
    this.writeEntry(name, { index, blobs: [...live.values()].map((d) => ({ digest: d.digest, size: d.size })) });
  }

  entry(name: string): StoredEntry {
    return JSON.parse(fs.readFileSync(path.join(this.dir, 'entries', `${name}.json`), 'utf8')) as StoredEntry;
  }

  hasEntry(name: string): boolean {
    return fs.existsSync(path.join(this.dir, 'entries', `${name}.json`));
  }

  private writeEntry(name: string, entry: StoredEntry): void {
    fs.writeFileSync(path.join(this.dir, 'entries', `${name}.json`), JSON.stringify(entry));
  }

  /** Writes entry `name` out as an OCI layout folder, for a `type=local` import. */
  writeLayout(name: string, dir: string): void {
    const entry = this.entry(name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, LAYOUT_FILE), LAYOUT_CONTENT);
    fs.writeFileSync(path.join(dir, INDEX_FILE), JSON.stringify(entry.index));
    for (const b of entry.blobs) {
      fs.mkdirSync(path.dirname(blobPath(dir, b.digest)), { recursive: true });
      fs.copyFileSync(this.blobFile(b.digest), blobPath(dir, b.digest));
    }
  }

  /** Changes one byte of a blob, keeping its size, as bit rot does. */
  damage(digest: string): void {
    const file = this.blobFile(digest);
    const data = fs.readFileSync(file);
    data[data.length - 1] = (data[data.length - 1] ?? 0) ^ 0xff;
    fs.chmodSync(file, 0o644);
    fs.writeFileSync(file, data);
  }

  /** Holds every put of `digest` (the body unread) until the returned function is called. */
  holdPut(digest: string): () => void {
    return hold(this.held, digest);
  }

  /** Holds every open of `digest` (a read from the store) until the returned function is called. */
  holdOpen(digest: string): () => void {
    return hold(this.heldOpen, digest);
  }

  private fault(operation: Operation, digest: string): Fault | undefined {
    return this.faultsOnly === undefined || this.faultsOnly.has(digest) ? this.faults[operation] : undefined;
  }

  /** The read side over entry `name`. */
  reader(name: string): EntryReader {
    const entry = this.entry(name);
    const root = cacheRoot(entry.index);
    if (root?.mediaType === undefined) throw new Error(`entry ${name} has no typed root`);
    return {
      root: { ...root, mediaType: root.mediaType },
      blobs: entry.blobs,
      open: async (digest) => {
        this.calls.open.push(digest);
        await this.heldOpen.get(digest);
        const fault = this.fault('open', digest);
        if (fault === 'fail') throw new Error('the store is unreachable (injected)');
        if (fault === 'refuse') throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9 (injected)'), { code: 'ECONNREFUSED' });
        if (fault === 'hang') return never();
        const data = await fs.promises.readFile(this.blobFile(digest));
        if (fault === 'break' || fault === 'stall') {
          return Readable.from(
            (async function* () {
              for (let at = 0; at < data.length / 2; at += 16 << 10) yield data.subarray(at, Math.min(at + (16 << 10), data.length / 2));
              if (fault === 'stall') await never();
              throw new Error('the store connection dropped (injected)');
            })(),
          );
        }
        return fs.createReadStream(this.blobFile(digest), { highWaterMark: 16 << 10 });
      },
    };
  }

  /** The write side, committing to entry `name`. */
  writer(name: string): EntryWriter {
    return {
      has: async (digest) => {
        this.calls.has.push(digest);
        const fault = this.fault('has', digest);
        if (fault === 'fail') throw new Error('the store is unreachable (injected)');
        if (fault === 'hang') return never();
        const stat = await fs.promises.stat(this.blobFile(digest)).catch(() => undefined);
        return stat?.size;
      },
      put: async (blob, body) => {
        this.calls.put.push(blob.digest);
        const fault = this.fault('put', blob.digest);
        if (fault === 'hang') return never();
        await this.held.get(blob.digest);
        const tmp = path.join(this.dir, `.tmp-${crypto.randomBytes(6).toString('hex')}`);
        try {
          if (fault === 'fail') throw new Error('the store refused the write (injected)');
          let seen = 0;
          await pipeline(
            body,
            async function* (source: AsyncIterable<Buffer>) {
              for await (const chunk of source) {
                seen += chunk.length;
                if (fault === 'break' && seen > blob.size / 2) throw new Error('the store connection dropped (injected)');
                yield chunk;
              }
            },
            fs.createWriteStream(tmp, { flags: 'wx' }),
          );
          // The store's own check, as the real stores make before a blob counts.
          if ((await hashFile(tmp)) !== blob.digest) throw new Error(`${blob.digest} arrived corrupt`);
          fs.mkdirSync(path.dirname(this.blobFile(blob.digest)), { recursive: true });
          await fs.promises.rename(tmp, this.blobFile(blob.digest));
        } finally {
          await fs.promises.rm(tmp, { force: true });
        }
      },
      open: async (digest) => {
        this.calls.open.push(digest);
        if (this.fault('open', digest) === 'fail') throw new Error('the store is unreachable (injected)');
        await fs.promises.access(this.blobFile(digest));
        return fs.createReadStream(this.blobFile(digest), { highWaterMark: 16 << 10 });
      },
      commit: async (layout: ExportedLayout) => {
        this.calls.commit.push(layout.root.digest);
        if (this.faults.commit === 'fail') throw new Error('the store refused the entry (injected)');
        if (this.faults.commit === 'hang') return never();
        for (const b of layout.blobs) {
          const stat = await fs.promises.stat(this.blobFile(b.digest));
          if (stat.size !== b.size) throw new Error(`${b.digest} has the wrong size`);
        }
        this.writeEntry(name, { index: layout.index, blobs: [...layout.blobs] });
      },
    };
  }
}

/** Puts a promise for `digest` in `holds` that the returned function resolves, and removes, releasing what waits on it. */
function hold(holds: Map<string, Promise<void>>, digest: string): () => void {
  let release = (): void => undefined;
  holds.set(digest, new Promise<void>((resolve) => (release = resolve)));
  return () => {
    holds.delete(digest);
    release();
  };
}
