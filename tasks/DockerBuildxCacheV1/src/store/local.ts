import * as fs from 'fs';
import * as path from 'path';
import { addAbortSignal } from 'stream';
import { pipeline } from 'stream/promises';
import { isMissing, linkOrCopy, randomId, sweepOld, unlessMissing, walkFiles } from '../util/fs';
import { holdsBlob, LayoutError, readRegularFile } from '../oci/layout';
import { DigestStream } from './digest-stream';
import {
  StoreLayoutError,
  type BlobStream,
  type OpenedBlob,
  StoreRefusedError,
  type Fetched,
  type Listing,
  type Seals,
  type SourceFile,
  type StoreBackend,
  type StoredItem,
} from './backend';
import { StoreEngine } from './engine';
import { LAYOUT_VERSION } from './names';

/** What stands in for hashing a blob again while the file is unchanged, and what deleteIfUnchanged compares. */
function versionOf(stat: fs.Stats): string {
  return `${stat.size}:${stat.mtimeMs}:${stat.ino}`;
}

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

/** The store's own folders under v1/: none of them may be a link. */
const OWN_FOLDERS = ['blobs', 'entries', 'leases', 'checked', 'tmp', 'trash', 'quarantine'];

/** A write that the file system refused (a read-only mount, no permission) becomes a StoreRefusedError. */
async function writing<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (['EROFS', 'EACCES', 'EPERM'].includes(errno(err) ?? '')) throw new StoreRefusedError((err as Error).message);
    throw err;
  }
}

/**
 * The local store's files, on a local path or a mounted share:
 *
 *   <storePath>/v1/…                   the engine's items, one file each
 *   <storePath>/v1/checked/<alg>/<hex> size, mtime and inode when the blob last hashed right
 *   <storePath>/v1/tmp/                files being written, linked into place when complete
 *   <storePath>/v1/trash/              items being deleted, until it is sure they did not change
 *
 * Every write is a complete file linked into place (link(2) fails on an existing name, which makes
 * it a write-if-absent), so a crash at any point leaves a store that later jobs can use.
 */
export class LocalBackend implements StoreBackend {
  readonly description: string;
  readonly remote = false;
  readonly seals: Seals;

  constructor(private readonly storePath: string) {
    this.description = `local store ${storePath}`;
    this.seals = {
      get: async (digest) => (await readRegularFile(this.sealFile(digest), 256).catch(() => undefined))?.toString('utf8'),
      set: async (digest, version) => {
        await this.writeFile(this.sealFile(digest), Buffer.from(version), {}, true);
      },
      clear: async (digest) => {
        await writing(fs.promises.rm(this.sealFile(digest), { force: true }));
      },
    };
  }

  /**
   * Refuses a store whose own folders are links (or not folders): whoever can write the store could
   * otherwise make every agent that prunes it delete files outside it.
   */
  async check(): Promise<void> {
    this.safeDirs.clear();
    const root = path.join(this.storePath, LAYOUT_VERSION);
    const folders = [root, ...OWN_FOLDERS.map((f) => path.join(root, f))];
    const stats = await Promise.all(folders.map((f) => unlessMissing(fs.promises.lstat(f))));
    for (const [i, folder] of folders.entries()) {
      const stat = stats[i];
      if (stat === undefined || stat.isDirectory()) continue;
      throw new StoreLayoutError(
        `${folder} is ${stat.isSymbolicLink() ? 'a link' : 'not a folder'}: the store never follows links in its own folders. ` +
          'Replace it with a folder, or use another localStorePath.',
      );
    }
  }

  /** Folders found or made safe since the last check, so that each is looked at once per operation. */
  private readonly safeDirs = new Set<string>();

  /** Creates the folders down to `dir` under the store's root, refusing any that is a link. */
  private async ensureDir(dir: string): Promise<void> {
    if (this.safeDirs.has(dir)) return;
    const rel = path.relative(this.storePath, dir).split(path.sep);
    let here = this.storePath;
    await fs.promises.mkdir(here, { recursive: true });
    for (const part of rel) {
      here = path.join(here, part);
      const stat = await unlessMissing(fs.promises.lstat(here));
      if (stat === undefined) await fs.promises.mkdir(here, { recursive: true });
      else if (!stat.isDirectory()) throw new StoreLayoutError(`${here} is not a folder of the store: it is not followed`);
    }
    this.safeDirs.add(dir);
  }

  private path(name: string): string {
    return path.join(this.storePath, ...name.split('/'));
  }

  private dir(name: 'checked' | 'tmp' | 'trash' | 'quarantine'): string {
    return path.join(this.storePath, LAYOUT_VERSION, name);
  }

  private sealFile(digest: string): string {
    const [alg, hex] = digest.split(':') as [string, string];
    return path.join(this.dir('checked'), alg, hex);
  }

  private item(name: string, stat: fs.Stats): StoredItem {
    return { name, size: stat.size, modified: stat.mtime, version: versionOf(stat) };
  }

  async list(prefix: string, depth: number): Promise<Listing> {
    const base = this.path(prefix);
    const walked = await walkFiles(base, depth);
    const rel = (full: string): string => `${prefix}${path.relative(base, full).split(path.sep).join('/')}`;
    return { items: walked.files.map((f) => this.item(rel(f.path), f.stat)), strange: walked.strange.map(rel) };
  }

  async stat(name: string): Promise<StoredItem | 'other' | undefined> {
    const stat = await unlessMissing(fs.promises.lstat(this.path(name)));
    if (stat === undefined) return undefined;
    return stat.isFile() ? this.item(name, stat) : 'other';
  }

  async read(name: string): Promise<Buffer | undefined> {
    return unlessMissing(readRegularFile(this.path(name)));
  }

  async fetch(name: string, dest: string): Promise<Fetched | 'other' | undefined> {
    const file = this.path(name);
    const stat = await unlessMissing(fs.promises.lstat(file));
    if (stat === undefined) return undefined;
    if (!stat.isFile()) return 'other';
    return { how: await linkOrCopy(file, dest), version: versionOf(stat) };
  }

  /** Opens the blob file itself, never through a link (O_NOFOLLOW) and never waiting on a pipe (O_NONBLOCK). */
  async openStream(name: string, signal: AbortSignal): Promise<OpenedBlob | 'other' | undefined> {
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(this.path(name), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      if (isMissing(err)) return undefined;
      if (errno(err) === 'ELOOP') return 'other';
      throw err;
    }
    const stat = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw err;
    });
    if (!stat.isFile()) {
      await handle.close();
      return 'other';
    }
    return { body: addAbortSignal(signal, handle.createReadStream()), version: versionOf(stat) };
  }

  /** Writes a complete file in tmp/ and links it into place; undefined when the name exists. */
  private writeFile(
    file: string,
    content: Buffer | SourceFile | BlobStream,
    options: { modified?: Date; durable?: boolean },
    replace = false,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    return writing(this.writeFileUnchecked(file, content, options, replace, signal));
  }

  private async writeFileUnchecked(
    file: string,
    content: Buffer | SourceFile | BlobStream,
    options: { modified?: Date; durable?: boolean },
    replace: boolean,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    await this.ensureDir(this.dir('tmp'));
    await this.ensureDir(path.dirname(file));
    const tmp = path.join(this.dir('tmp'), `${path.basename(file)}.${randomId()}`);
    try {
      if (Buffer.isBuffer(content)) {
        const handle = await fs.promises.open(tmp, 'wx');
        try {
          await handle.writeFile(content);
          if (options.durable === true) await handle.sync();
        } finally {
          await handle.close();
        }
      } else if ('body' in content) {
        // Hashed as it is written: a body that errors, or is not the blob, never gets past tmp/.
        await pipeline(content.body, new DigestStream(content.ref, true), fs.createWriteStream(tmp, { flags: 'wx' }), {
          signal,
        });
        await fs.promises.chmod(tmp, 0o444);
      } else {
        // A link to the very file that was checked needs no second hash; a copy does.
        const how = await linkOrCopy(content.file, tmp);
        const linked = await fs.promises.lstat(tmp);
        const same =
          how === 'linked' &&
          linked.ino === content.stat.ino &&
          linked.dev === content.stat.dev &&
          linked.size === content.stat.size &&
          linked.mtimeMs === content.stat.mtimeMs;
        if (!same && !(await holdsBlob(tmp, content.ref)))
          throw new LayoutError(`${content.file} does not match its digest ${content.ref.digest}`);
        await fs.promises.chmod(tmp, 0o444);
      }
      if (options.modified !== undefined) await fs.promises.utimes(tmp, options.modified, options.modified);
      if (replace) {
        await fs.promises.rename(tmp, file);
      } else {
        try {
          await fs.promises.link(tmp, file);
        } catch (err) {
          if (errno(err) === 'EEXIST') return undefined;
          // A share without hard links: a rename, unless the name exists. The race left is harmless:
          // blobs are content-addressed, and entries and leases have random names.
          if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes(errno(err) ?? '')) throw err;
          if ((await unlessMissing(fs.promises.lstat(file))) !== undefined) return undefined;
          await fs.promises.rename(tmp, file);
        }
      }
      return versionOf(await fs.promises.lstat(file));
    } finally {
      await fs.promises.rm(tmp, { force: true });
    }
  }

  writeIfAbsent(
    name: string,
    content: Buffer | SourceFile | BlobStream,
    options: { modified?: Date; durable?: boolean },
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    return this.writeFile(this.path(name), content, options, false, signal);
  }

  /**
   * Moves the item to trash/ (one rename), and deletes it there only if it is the version that was
   * listed; else puts it back. A crash in between leaves it in trash/, swept after an hour.
   */
  deleteIfUnchanged(name: string, version: string | undefined): Promise<boolean> {
    return writing(this.deleteUnchecked(name, version));
  }

  private async deleteUnchecked(name: string, version: string | undefined): Promise<boolean> {
    const file = this.path(name);
    if (version === undefined) return (await unlessMissing(fs.promises.unlink(file).then(() => true))) === true;
    const parked = path.join(this.dir('trash'), `${path.basename(file)}.${randomId()}`);
    await this.ensureDir(this.dir('trash'));
    try {
      await fs.promises.rename(file, parked);
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
    const stat = await fs.promises.lstat(parked);
    if (versionOf(stat) === version) {
      await fs.promises.unlink(parked);
      return true;
    }
    await fs.promises.link(parked, file).catch(() => undefined);
    await fs.promises.rm(parked, { force: true });
    return false;
  }

  /** The item's mtime is its last use. utimes never brings back an item that a prune removed: false then. */
  async touch(name: string, at: Date): Promise<boolean> {
    // lutimes: never the time of what a link points at.
    return (await writing(unlessMissing(fs.promises.lutimes(this.path(name), at, at).then(() => true)))) === true;
  }

  /** Moves what is not a blob (a folder, a link, a pipe) out of the blob's way, into quarantine/, where it is kept. */
  async quarantine(name: string): Promise<void> {
    await writing(
      (async () => {
        await this.ensureDir(this.dir('quarantine'));
        await unlessMissing(
          fs.promises.rename(this.path(name), path.join(this.dir('quarantine'), `${name.split('/').join('_')}.${randomId()}`)),
        );
      })(),
    );
  }

  async housekeeping(now: Date): Promise<void> {
    const hour = 60 * 60 * 1000;
    await sweepOld(this.dir('tmp'), hour, now.getTime());
    await sweepOld(this.dir('trash'), hour, now.getTime());
  }
}

/**
 * A content-addressed store on a local path or a mounted share: the store engine over the local
 * files. Restores hard-link blobs (a reflink or a copy across file systems); the seal of a blob
 * (size, mtime and inode when it last hashed right, as git's index with core.trustctime off) stands
 * in for hashing it again, until a build distrusts its entry.
 */
export class LocalStore extends StoreEngine {
  constructor(storePath: string, options: { leaseMinutes?: number } = {}) {
    super(new LocalBackend(storePath), { leaseMinutes: options.leaseMinutes });
  }
}
