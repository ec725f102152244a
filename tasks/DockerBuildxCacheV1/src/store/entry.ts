import {
  cacheRoot,
  isDigest,
  LayoutError,
  parseIndex,
  reachable,
  readLayoutIndex,
  readVerified,
  type Descriptor,
  type Index,
} from '../oci/layout';
import type { BlobRef, Entry, EntryHead, SaveRequest } from './types';

function isBlobRef(value: unknown): value is BlobRef {
  const b = value as Partial<BlobRef> | null;
  return b !== null && typeof b === 'object' && isDigest(b.digest) && Number.isSafeInteger(b.size) && (b.size ?? -1) >= 0;
}

/** An entry file or its metadata that is not an entry: it is skipped as if the entry were absent. */
export class EntryFormatError extends Error {
  override name = 'EntryFormatError';
}

/** Reads an entry file strictly: anything malformed is an EntryFormatError. Its last use is its creation until the store says otherwise. */
export function parseEntry(text: string, id: string): Entry {
  try {
    return parseEntryUnchecked(text, id);
  } catch (err) {
    // JSON.parse's SyntaxError, a RangeError from hostile nesting: all mean the same.
    throw err instanceof EntryFormatError ? err : new EntryFormatError(`it is not an entry: ${(err as Error).message}`);
  }
}

function parseEntryUnchecked(text: string, id: string): Entry {
  const e = JSON.parse(text) as Partial<Entry> | null;
  if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new EntryFormatError('it is not a JSON object');
  const str = (v: unknown): v is string => typeof v === 'string' && v !== '';
  if (e.id !== id) throw new EntryFormatError('its id does not match its file name');
  if (!str(e.key) || !str(e.scope) || !str(e.created) || Number.isNaN(Date.parse(e.created)))
    throw new EntryFormatError('it lacks its key, scope or creation time');
  if (!Array.isArray(e.segments) || !e.segments.every(str) || e.segments.join('|') !== e.key)
    throw new EntryFormatError('its segments do not make its key');
  if (!isDigest(e.root)) throw new EntryFormatError('its root is not a digest');
  const blobs: unknown = e.blobs;
  if (!Array.isArray(blobs) || !blobs.every(isBlobRef)) throw new EntryFormatError('its blob list is malformed');
  const index = parseIndex(JSON.stringify(e.index ?? null), 'its index');
  if (cacheRoot(index)?.digest !== e.root) throw new EntryFormatError('its index does not tag its root');
  if (!blobs.some((b) => b.digest === e.root)) throw new EntryFormatError('its blob list lacks its root');
  return {
    id,
    key: e.key,
    segments: e.segments,
    scope: e.scope,
    created: e.created,
    lastUsed: e.created,
    root: e.root,
    index: e.index,
    blobs: blobs.map((b) => ({ digest: b.digest, size: b.size })),
  };
}

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');
const unb64 = (text: string | undefined): string => Buffer.from(text ?? '', 'base64url').toString('utf8');

/** What a listing with metadata tells about an entry (Azure), so that choosing one needs no download. */
export function metadataOf(entry: EntryHead): Record<string, string> {
  return {
    segments: b64(JSON.stringify(entry.segments)),
    scope: b64(entry.scope),
    created: entry.created,
    lastused: entry.lastUsed,
    root: entry.root,
  };
}

/** An entry as its metadata describes it; an EntryFormatError for metadata that is not an entry's. */
export function headOfMetadata(id: string, m: Readonly<Record<string, string>>): EntryHead {
  let segments: unknown;
  try {
    segments = JSON.parse(unb64(m.segments));
  } catch {
    throw new EntryFormatError('its metadata has no key');
  }
  const scope = unb64(m.scope);
  if (!Array.isArray(segments) || !segments.every((s) => typeof s === 'string' && s !== ''))
    throw new EntryFormatError('its metadata has no key');
  if (scope === '' || Number.isNaN(Date.parse(m.created ?? '')) || !isDigest(m.root))
    throw new EntryFormatError('its metadata lacks its scope, creation time or root');
  const created = m.created ?? '';
  const lastUsed = Number.isNaN(Date.parse(m.lastused ?? '')) ? created : (m.lastused ?? created);
  return { id, key: segments.join('|'), segments, scope, created, lastUsed, root: m.root };
}

/** The cache folder as a save sees it: its index, the root it tags, and every blob the root reaches, verified. */
export async function savedLayout(cacheDir: string): Promise<{ index: Index; root: Descriptor; blobs: BlobRef[] }> {
  const index = await readLayoutIndex(cacheDir);
  const root = cacheRoot(index);
  if (root === undefined) throw new LayoutError(`${cacheDir}/index.json has no manifest tagged "latest"`);
  const live = await reachable(index, (d) => readVerified(cacheDir, d));
  return { index, root, blobs: [...live.values()].map((d) => ({ digest: d.digest, size: d.size })) };
}

/** A new version of the request's key, holding the layout. */
export function newEntry(
  req: Pick<SaveRequest, 'key' | 'segments' | 'scope' | 'now'>,
  id: string,
  layout: { index: Index; root: Descriptor; blobs: BlobRef[] },
): Entry {
  return {
    id,
    key: req.key,
    segments: req.segments,
    scope: req.scope,
    created: req.now.toISOString(),
    lastUsed: req.now.toISOString(),
    root: layout.root.digest,
    index: JSON.parse(JSON.stringify(layout.index)) as unknown,
    blobs: layout.blobs,
  };
}
