import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { pipeline } from 'stream/promises';
import { mapLimit, walkFiles } from '../util/fs';

/** The OCI image layout that BuildKit's local cache exporter writes: index.json, oci-layout, blobs/<alg>/<hex>. */
export const INDEX_FILE = 'index.json';
export const LAYOUT_FILE = 'oci-layout';
export const BLOBS_DIR = 'blobs';
export const LAYOUT_CONTENT = '{"imageLayoutVersion":"1.0.0"}';
/** The file by which the task knows a cache folder as its own (see oci/cachedir.ts). */
export const MARKER_FILE = '.docker-buildx-cache';
/** The tag BuildKit's local cache exporter gives its root, and its importer looks for. */
export const CACHE_TAG = 'latest';
const REF_NAME = 'org.opencontainers.image.ref.name';

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export interface Descriptor {
  readonly mediaType?: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface Index {
  readonly schemaVersion?: number;
  readonly manifests: readonly Descriptor[];
}

export class LayoutError extends Error {
  override name = 'LayoutError';
}

export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST.test(value);
}

/** The digest a blob path names, `<alg>/<hex>`; undefined for any other name. */
export function digestOfPath(alg: string, hex: string): string | undefined {
  const digest = `${alg}:${hex}`;
  return isDigest(digest) ? digest : undefined;
}

/**
 * The one walk of `blobs/<alg>/<hex>` in a layout folder (or the local store): each blob file with
 * its digest and lstat, and the paths that are not a blob file (a link, a folder, an odd name).
 */
export async function walkBlobs(dir: string): Promise<{ blobs: Map<string, { path: string; stat: fs.Stats }>; strange: string[] }> {
  const walked = await walkFiles(path.join(dir, BLOBS_DIR), 2);
  const blobs = new Map<string, { path: string; stat: fs.Stats }>();
  const strange = [...walked.strange];
  for (const f of walked.files) {
    const digest = digestOfPath(f.rel[0] ?? '', f.rel[1] ?? '');
    if (digest === undefined) strange.push(f.path);
    else blobs.set(digest, { path: f.path, stat: f.stat });
  }
  return { blobs, strange };
}

/** digest → size of each blob file in a layout folder; empty when the folder does not exist. */
export async function blobSizes(dir: string): Promise<Map<string, number>> {
  return new Map([...(await walkBlobs(dir)).blobs].map(([digest, b]) => [digest, b.stat.size]));
}

/** The path of a blob. The digest is validated first, so a hostile index cannot point outside the layout. */
export function blobPath(dir: string, digest: string): string {
  if (!isDigest(digest)) throw new LayoutError(`not a valid digest: ${JSON.stringify(digest)}`);
  const [alg, hex] = digest.split(':') as [string, string];
  return path.join(dir, BLOBS_DIR, alg, hex);
}

function descriptors(value: unknown, where: string): Descriptor[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new LayoutError(`${where} is not a list`);
  return value.map((d: unknown, i) => {
    const desc = d as Partial<Descriptor> | null;
    if (desc === null || typeof desc !== 'object' || !isDigest(desc.digest) || !Number.isSafeInteger(desc.size) || (desc.size ?? -1) < 0) {
      throw new LayoutError(`${where}[${i}] is not a valid descriptor`);
    }
    return { mediaType: desc.mediaType, digest: desc.digest, size: desc.size as number, annotations: desc.annotations };
  });
}

export function parseIndex(text: string | Buffer, where = INDEX_FILE): Index {
  let json: unknown;
  try {
    json = JSON.parse(text.toString());
  } catch {
    throw new LayoutError(`${where} is not valid JSON`);
  }
  if (json === null || typeof json !== 'object') throw new LayoutError(`${where} is not an object`);
  return { schemaVersion: (json as Index).schemaVersion, manifests: descriptors((json as Index).manifests, `${where}.manifests`) };
}

/** The descriptors that a manifest or index blob points at; none for any other blob. */
export function children(desc: Descriptor, blob: Buffer): Descriptor[] {
  const json = JSON.parse(blob.toString()) as { mediaType?: string; manifests?: unknown; config?: unknown; layers?: unknown };
  const type = desc.mediaType ?? json.mediaType ?? '';
  if (INDEX_TYPES.has(type) || (type === '' && json.manifests !== undefined)) {
    return descriptors(json.manifests, `${desc.digest}.manifests`);
  }
  if (MANIFEST_TYPES.has(type) || (type === '' && json.layers !== undefined)) {
    return [
      ...descriptors(json.config === undefined ? [] : [json.config], `${desc.digest}.config`),
      ...descriptors(json.layers, `${desc.digest}.layers`),
    ];
  }
  return [];
}

export function isTraversable(desc: Descriptor): boolean {
  return desc.mediaType === undefined || INDEX_TYPES.has(desc.mediaType) || MANIFEST_TYPES.has(desc.mediaType);
}

/**
 * Every blob that `index` reaches: index.json → manifests[] → each manifest's config and layers,
 * or each index's manifests, recursively. Only manifests and indexes are read.
 */
export async function reachable(index: Index, read: (desc: Descriptor) => Promise<Buffer>): Promise<Map<string, Descriptor>> {
  const seen = new Map<string, Descriptor>();
  const queue = [...index.manifests];
  for (let desc = queue.shift(); desc !== undefined; desc = queue.shift()) {
    if (seen.has(desc.digest)) continue;
    seen.set(desc.digest, desc);
    if (!isTraversable(desc)) continue;
    let blob: Buffer;
    try {
      blob = await read(desc);
    } catch (err) {
      throw new LayoutError(`cannot read ${desc.digest}: ${(err as Error).message}`);
    }
    try {
      queue.push(...children(desc, blob));
    } catch (err) {
      if (err instanceof LayoutError) throw err;
      throw new LayoutError(`${desc.digest} is not valid JSON`);
    }
  }
  return seen;
}

export async function readLayoutIndex(dir: string): Promise<Index> {
  return parseIndex(await readRegularFile(path.join(dir, INDEX_FILE)), path.join(dir, INDEX_FILE));
}

export function layoutReachable(dir: string, index: Index): Promise<Map<string, Descriptor>> {
  return reachable(index, (d) => readRegularFile(blobPath(dir, d.digest)));
}

/** The most a JSON document that the task reads whole may have: an index.json, a manifest, a store entry or lease. */
export const MAX_DOCUMENT_BYTES = 16 << 20;

/**
 * Opens a file only if it is a regular file, never through a link (O_NOFOLLOW) and never waiting on
 * a pipe (O_NONBLOCK): whatever a hostile folder plants where a file belongs is refused.
 */
async function openRegular(file: string): Promise<{ handle: fs.promises.FileHandle; size: number }> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new LayoutError(`${file} is a link, not a regular file`);
    throw err;
  }
  const stat = await handle.stat();
  if (!stat.isFile()) {
    await handle.close();
    throw new LayoutError(`${file} is not a regular file`);
  }
  return { handle, size: stat.size };
}

/** A regular file's content, refused when it is larger than `maxBytes`. */
export async function readRegularFile(file: string, maxBytes: number = MAX_DOCUMENT_BYTES): Promise<Buffer> {
  const { handle, size } = await openRegular(file);
  try {
    if (size > maxBytes) throw new LayoutError(`${file} is larger than the ${maxBytes} bytes it may have`);
    const data = Buffer.alloc(size);
    const { bytesRead } = await handle.read(data, 0, size, 0);
    return data.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * The stat of a regular file that holds the blob, or undefined when it does not: its size, then its
 * digest, reading no more than the size the descriptor declares. Throws a LayoutError for a link, a
 * pipe or a folder. The stat is the open file's, so it names the very bytes that were hashed.
 */
export async function checkBlobFile(file: string, ref: { readonly digest: string; readonly size: number }): Promise<fs.Stats | undefined> {
  const { handle, size } = await openRegular(file);
  try {
    if (size !== ref.size) return undefined;
    const hash = crypto.createHash(algorithmOf(ref.digest));
    if (size > 0) await pipeline(handle.createReadStream({ start: 0, end: size - 1, autoClose: false }), hash);
    return `${algorithmOf(ref.digest)}:${hash.digest('hex')}` === ref.digest ? await handle.stat() : undefined;
  } finally {
    await handle.close();
  }
}

/** Whether a regular file holds the blob (see `checkBlobFile`). */
export async function holdsBlob(file: string, ref: { readonly digest: string; readonly size: number }): Promise<boolean> {
  return (await checkBlobFile(file, ref)) !== undefined;
}

/** The digest of a file's content, streamed; `sha256:…` or `sha512:…` like the digest it is checked against. */
export async function hashFile(file: string, algorithm: 'sha256' | 'sha512' = 'sha256'): Promise<string> {
  const hash = crypto.createHash(algorithm);
  await pipeline(fs.createReadStream(file), hash);
  return `${algorithm}:${hash.digest('hex')}`;
}

export const algorithmOf = (digest: string): 'sha256' | 'sha512' => (digest.startsWith('sha512:') ? 'sha512' : 'sha256');

/** The root that BuildKit's local cache importer reads: the manifest index.json tags `latest`. */
export function cacheRoot(index: Index): Descriptor | undefined {
  return index.manifests.find((d) => d.annotations?.[REF_NAME] === CACHE_TAG);
}

/** Reads a blob and checks it against its descriptor: a manifest that does not match its digest is not used. */
export async function readVerified(dir: string, desc: Descriptor): Promise<Buffer> {
  const data = await readRegularFile(blobPath(dir, desc.digest));
  const actual = `${algorithmOf(desc.digest)}:${crypto.createHash(algorithmOf(desc.digest)).update(data).digest('hex')}`;
  if (data.length !== desc.size || actual !== desc.digest) throw new LayoutError(`${desc.digest} does not match its digest or size`);
  return data;
}

/**
 * A blob file as it was when its content last matched its digest: the same file (device, inode),
 * size, modification and change times. A later check that finds the file so is spared reading it
 * again, as git's index spares a file whose stat is unchanged. A write, a copy, a tar's extraction,
 * even a new link or a restored modification time changes the change time; the task's own links
 * (an export seeded from the folder) are followed by new stamps when the export is committed.
 */
export interface BlobStamp {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

/** Digest → the stamp of its file when it was last read and matched. */
export type BlobStamps = Readonly<Record<string, BlobStamp>>;

const STAMP_FIELDS = ['dev', 'ino', 'size', 'mtimeMs', 'ctimeMs'] as const;
const stampOf = (s: fs.Stats): BlobStamp => ({ dev: s.dev, ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs });
const sameStamp = (a: BlobStamp, b: BlobStamp): boolean => STAMP_FIELDS.every((k) => a[k] === b[k]);
/** The same file with the same content as far as its stamp tells, whatever links came and went (which change only its change time). */
const sameContent = (a: BlobStamp, b: BlobStamp): boolean => STAMP_FIELDS.every((k) => k === 'ctimeMs' || a[k] === b[k]);

/**
 * After the task's own links to stamped blobs (a seeded export, now in the folder's place): new
 * stamps for the blobs of `digests` whose file is still the one stamped, with the same size and
 * modification time. The others, such as the blobs the build wrote, are read by the next check.
 */
export async function restamp(dir: string, digests: Iterable<string>, known: BlobStamps): Promise<BlobStamps> {
  const stamps: Record<string, BlobStamp> = {};
  for (const digest of digests) {
    const before = known[digest];
    if (before === undefined) continue;
    const stat = await fs.promises.lstat(blobPath(dir, digest)).catch(() => undefined);
    if (stat?.isFile() === true && sameContent(before, stampOf(stat))) stamps[digest] = stampOf(stat);
  }
  return stamps;
}

/** Stamps as a file kept them; none from a file that is not such a record. */
export function parseStamps(json: string): BlobStamps {
  try {
    const parsed = JSON.parse(json) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    const valid = (v: unknown): v is BlobStamp =>
      typeof v === 'object' && v !== null && STAMP_FIELDS.every((k) => typeof (v as Record<string, unknown>)[k] === 'number');
    return Object.fromEntries(
      Object.entries(parsed as Record<string, unknown>).filter((e): e is [string, BlobStamp] => isDigest(e[0]) && valid(e[1])),
    );
  } catch {
    return {};
  }
}

export interface VerifyResult {
  readonly blobs: number;
  readonly bytes: number;
  /** The stamps of the leaf blobs, all of which matched: the next check's `known`. */
  readonly stamps: BlobStamps;
  /** Leaf blobs read and hashed in this check; the others matched a stamp of `known`. */
  readonly hashed: number;
}

/**
 * Checks that a cache folder can be handed to BuildKit: index.json has the root that BuildKit's
 * importer looks for, and every blob it reaches is there with the right size and digest. BuildKit
 * itself fails the whole build on a missing or corrupt cache blob, so a folder that fails here is
 * not used at all. Throws a LayoutError that says what is wrong. A leaf blob whose file still has
 * the stamp it had when it last matched (`known`) is not read again; index, manifests and configs
 * always are.
 */
export async function verifyLayout(dir: string, concurrency = 4, known: BlobStamps = {}): Promise<VerifyResult> {
  const index = await readLayoutIndex(dir);
  if (cacheRoot(index) === undefined) throw new LayoutError(`index.json has no manifest tagged "${CACHE_TAG}"`);
  const live = await reachable(index, (d) => readVerified(dir, d));
  const leaves = [...live.values()].filter((d) => !isTraversable(d));
  const stamps: Record<string, BlobStamp> = {};
  let hashed = 0;
  await mapLimit(leaves, Math.max(1, concurrency), async (desc) => {
    const file = blobPath(dir, desc.digest);
    const stat = await fs.promises.lstat(file).catch(() => undefined);
    if (stat === undefined) throw new LayoutError(`${desc.digest} is missing`);
    if (!stat.isFile()) throw new LayoutError(`${desc.digest} is not a regular file`);
    if (stat.size !== desc.size) throw new LayoutError(`${desc.digest} has ${stat.size} bytes instead of ${desc.size}`);
    // The stamp from before the read: a file written while it is read has another the next time.
    const stamp = stampOf(stat);
    const before = known[desc.digest];
    if (before === undefined || !sameStamp(before, stamp)) {
      hashed++;
      if (!(await holdsBlob(file, desc))) throw new LayoutError(`${desc.digest} does not match its digest`);
    }
    stamps[desc.digest] = stamp;
  });
  return { blobs: live.size, bytes: [...live.values()].reduce((sum, d) => sum + d.size, 0), stamps, hashed };
}

export interface PruneResult {
  /** digest → size of each blob that stays. */
  readonly kept: ReadonlyMap<string, number>;
  readonly removedBlobs: number;
  readonly removedBytes: number;
  /** Reachable blobs that the folder lacks. The layout is incomplete when this is not empty. */
  readonly missing: readonly string[];
}

/** What a layout folder keeps besides its blobs: the index, the layout file and the task's marker. */
const KEPT_NAMES = new Set([INDEX_FILE, LAYOUT_FILE, BLOBS_DIR, MARKER_FILE]);

/** Deletes every file that index.json does not reach: stray blobs, BuildKit's ingest folder, anything else. */
export async function prune(dir: string): Promise<PruneResult> {
  const index = await readLayoutIndex(dir);
  const live = await layoutReachable(dir, index);
  const kept = new Map<string, number>();
  let removedBlobs = 0;
  let removedBytes = 0;

  for (const entry of await fs.promises.readdir(dir, { withFileTypes: true })) {
    if (KEPT_NAMES.has(entry.name)) continue;
    await fs.promises.rm(path.join(dir, entry.name), { recursive: true, force: true });
  }
  const walked = await walkBlobs(dir);
  for (const [digest, { path: file, stat }] of walked.blobs) {
    if (live.has(digest)) {
      kept.set(digest, stat.size);
      continue;
    }
    await fs.promises.rm(file, { force: true });
    removedBlobs++;
    removedBytes += stat.size;
  }
  for (const file of walked.strange) {
    await fs.promises.rm(file, { recursive: true, force: true });
    removedBlobs++;
  }
  const missing = [...live.keys()].filter((d) => !kept.has(d));
  return { kept, removedBlobs, removedBytes, missing };
}
