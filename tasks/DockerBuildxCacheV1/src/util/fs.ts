import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

export function isMissing(err: unknown): boolean {
  return errno(err) === 'ENOENT';
}

/** The promise's value, or undefined when it failed because a file does not exist. */
export async function unlessMissing<T>(promise: Promise<T>): Promise<T | undefined> {
  try {
    return await promise;
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/**
 * Runs `fn` over `items` with at most `limit` at once; results in input order. After a call fails,
 * no new one starts, and the first failure is thrown once the calls in flight have settled: none
 * is left running (reading a folder its caller is about to delete) after this returns.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { readonly err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length && failure === undefined; i = next++) {
      try {
        out[i] = await fn(items[i] as T);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.err;
  return out;
}

export const randomId = (): string => crypto.randomBytes(6).toString('hex');

/**
 * Writes a file so that readers see the old content or the new, never a part: a temp file, then a
 * rename. `durable` also flushes it to disk first, for files that must survive a power cut.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, tmpDir = path.dirname(file), durable = false): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  await fs.promises.mkdir(tmpDir, { recursive: true });
  const tmp = path.join(tmpDir, `.${path.basename(file)}.${randomId()}.tmp`);
  try {
    const handle = await fs.promises.open(tmp, 'w');
    try {
      await handle.writeFile(data);
      if (durable) await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Makes `dst` a hard link to `src`, so that it costs nothing per byte; across filesystems, a
 * reflink where the filesystem can clone, else a copy.
 */
export async function linkOrCopy(src: string, dst: string): Promise<'linked' | 'copied'> {
  try {
    await fs.promises.link(src, dst);
    return 'linked';
  } catch (err) {
    if (!['EXDEV', 'EPERM', 'ENOTSUP', 'EMLINK', 'EOPNOTSUPP'].includes(errno(err) ?? '')) throw err;
  }
  await fs.promises.copyFile(src, dst, fs.constants.COPYFILE_FICLONE);
  return 'copied';
}

/**
 * Puts the folder `fresh` in place of `dir`: two renames on one filesystem. A `dir` that cannot be
 * renamed, such as a mount point, keeps its inode and gets the new content instead.
 */
export async function replaceDirectory(dir: string, fresh: string, old: string): Promise<void> {
  await fs.promises.rm(old, { recursive: true, force: true });
  let moved = false;
  try {
    await fs.promises.rename(dir, old);
    moved = true;
  } catch (err) {
    const code = errno(err);
    if (code === 'EBUSY' || code === 'EXDEV' || code === 'EPERM') return replaceContents(dir, fresh);
    if (code !== 'ENOENT') throw err;
  }
  try {
    await fs.promises.rename(fresh, dir);
  } catch (err) {
    if (moved) await fs.promises.rename(old, dir);
    throw err;
  }
  if (moved) await fs.promises.rm(old, { recursive: true, force: true });
}

async function replaceContents(dir: string, fresh: string): Promise<void> {
  for (const name of await fs.promises.readdir(dir)) {
    await fs.promises.rm(path.join(dir, name), { recursive: true, force: true });
  }
  await fs.promises.cp(fresh, dir, { recursive: true });
  await fs.promises.rm(fresh, { recursive: true, force: true });
}

/**
 * Every file `depth` levels below `dir`, found with lstat and never through a link: `files` are
 * regular files; `strange` are paths at that depth that are not (a link, a folder, a pipe), or
 * anything above it that is not a folder. Empty when `dir` does not exist.
 */
export async function walkFiles(
  dir: string,
  depth: number,
): Promise<{ files: { path: string; rel: string[]; stat: fs.Stats }[]; strange: string[] }> {
  const files: { path: string; rel: string[]; stat: fs.Stats }[] = [];
  const strange: string[] = [];
  const visit = async (here: string, rel: string[]): Promise<void> => {
    let names: string[];
    try {
      names = await fs.promises.readdir(here);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    const stats = await Promise.all(names.map((name) => unlessMissing(fs.promises.lstat(path.join(here, name)))));
    const below: Promise<void>[] = [];
    names.forEach((name, i) => {
      const stat = stats[i];
      if (stat === undefined) return;
      const full = path.join(here, name);
      const at = [...rel, name];
      if (at.length === depth) {
        if (stat.isFile()) files.push({ path: full, rel: at, stat });
        else strange.push(full);
      } else if (stat.isDirectory()) {
        below.push(visit(full, at));
      } else {
        strange.push(full);
      }
    });
    await Promise.all(below);
  };
  const top = await unlessMissing(fs.promises.lstat(dir));
  if (top?.isDirectory() === true) await visit(dir, []);
  else if (top !== undefined) strange.push(dir);
  return { files, strange };
}

/** Deletes files in `dir` (not below) older than `maxAgeMs`: what a killed job left behind. */
export async function sweepOld(dir: string, maxAgeMs: number, now = Date.now()): Promise<void> {
  const names = await fs.promises.readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const file = path.join(dir, name);
    const stat = await fs.promises.lstat(file).catch(() => undefined);
    if (stat && now - stat.mtimeMs > maxAgeMs) await fs.promises.rm(file, { recursive: true, force: true });
  }
}
