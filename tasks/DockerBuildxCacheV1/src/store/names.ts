import * as crypto from 'crypto';
import { digestOfPath, isDigest } from '../oci/layout';

/** The layout version of both stores: everything lives under this prefix. */
export const LAYOUT_VERSION = 'v1';

/** The prefixes of a store's items; names are `/`-separated in every backend. */
export const BLOBS = `${LAYOUT_VERSION}/blobs/`;
export const ENTRIES = `${LAYOUT_VERSION}/entries/`;
export const LEASES = `${LAYOUT_VERSION}/leases/`;

/**
 * A scope's folder name: readable, bounded, and unique. Branch names may hold characters that
 * neither file systems nor blob names take well, and two branches may differ only in those.
 */
export function scopeSlug(scope: string): string {
  const slug = scope.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-60);
  return `${slug}-${crypto.createHash('sha256').update(scope).digest('hex').slice(0, 12)}`;
}

/** An entry's id: its creation time, zero-padded so that names sort by age, and a random part. */
export function entryId(now: Date, random: string): string {
  return `${String(now.getTime()).padStart(14, '0')}-${random}`;
}

/** `v1/blobs/<alg>/<hex>`; the digest is validated, so a hostile entry cannot name anything else. */
export function blobName(digest: string): string {
  if (!isDigest(digest)) throw new Error(`not a valid digest: ${JSON.stringify(digest)}`);
  return `${BLOBS}${digest.replace(':', '/')}`;
}

/** The digest a blob name holds; undefined for anything else under the prefix. */
export function digestOfBlobName(name: string): string | undefined {
  if (!name.startsWith(BLOBS)) return undefined;
  const parts = name.slice(BLOBS.length).split('/');
  return parts.length === 2 ? digestOfPath(parts[0] ?? '', parts[1] ?? '') : undefined;
}

export function entriesPrefix(scope?: string): string {
  return scope === undefined ? ENTRIES : `${ENTRIES}${scopeSlug(scope)}/`;
}

export function entryName(entry: { readonly scope: string; readonly id: string }): string {
  return `${entriesPrefix(entry.scope)}${entry.id}.json`;
}

/** The id an entry's name holds (its file name without `.json`); undefined for anything that is not an entry name. */
export function idOfEntryName(name: string): string | undefined {
  const m = /^[^/]+\/entries\/[^/]+\/([^/]+)\.json$/.exec(name);
  return m?.[1];
}

export function leaseName(id: string): string {
  return `${LEASES}${id}.json`;
}

/** An upload lease's id, as beginUpload makes it: its start and a random part. */
export const UPLOAD_LEASE_ID = /^\d{1,15}-[0-9a-f]{12}$/;

/**
 * What the names of an upload lease's items start with: `v1/leases/<leaseId>.<n>.json`, one item
 * per batch of blobs, flat beside the other leases so that every version of the task sees them.
 */
export function uploadLeasePrefix(leaseId: string): string {
  if (!UPLOAD_LEASE_ID.test(leaseId)) throw new Error(`not an upload lease: ${JSON.stringify(leaseId)}`);
  return `${LEASES}${leaseId}.`;
}
