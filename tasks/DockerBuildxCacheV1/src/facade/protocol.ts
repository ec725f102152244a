import * as crypto from 'crypto';
import { isDigest } from '../oci/layout';

/**
 * The pure pieces of the OCI distribution protocol that the registry facade speaks: routes, error
 * bodies, Basic credentials, byte ranges, manifest media types, and the one rewrite the facade
 * makes to a pushed cache manifest. No I/O here; see facade.ts for the server.
 */

/** Repository names as the distribution spec defines them. */
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const UPLOAD_ID = /^[a-zA-Z0-9_-]{1,64}$/;

export type Route =
  | { readonly kind: 'ping' }
  | { readonly kind: 'manifest'; readonly name: string; readonly reference: string }
  | { readonly kind: 'blob'; readonly name: string; readonly digest: string }
  | { readonly kind: 'upload-start'; readonly name: string; readonly digest?: string; readonly mount?: string }
  | { readonly kind: 'upload'; readonly name: string; readonly id: string; readonly digest?: string }
  | { readonly kind: 'invalid'; readonly code: ErrorCode; readonly message: string }
  | { readonly kind: 'unknown' };

/**
 * What a request path asks for. Names, tags, digests and upload ids are validated here, so the
 * handlers only ever see well-formed ones.
 */
export function parseRoute(rawUrl: string): Route {
  let url: URL;
  try {
    url = new URL(rawUrl, 'http://facade.invalid');
  } catch {
    return { kind: 'unknown' };
  }
  const p = url.pathname;
  if (p === '/v2/' || p === '/v2') return { kind: 'ping' };
  const query = (key: string): string | undefined => url.searchParams.get(key) ?? undefined;
  const digestParam = (key: string): string | undefined | Route => {
    const value = query(key);
    if (value === undefined) return undefined;
    return isDigest(value) ? value : { kind: 'invalid', code: 'DIGEST_INVALID', message: `${key} is not a valid digest` };
  };
  const checkName = (name: string): Route | undefined =>
    NAME.test(name) && name.length <= 255 ? undefined : { kind: 'invalid', code: 'NAME_INVALID', message: 'invalid repository name' };

  let m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(p);
  if (m !== null) {
    const [, name = '', reference = ''] = m;
    const ref = decodeURIComponent(reference);
    if (!TAG.test(ref) && !isDigest(ref)) return { kind: 'invalid', code: 'MANIFEST_INVALID', message: 'invalid tag or digest' };
    return checkName(name) ?? { kind: 'manifest', name, reference: ref };
  }
  m = /^\/v2\/(.+)\/blobs\/uploads\/?$/.exec(p);
  if (m !== null) {
    const name = m[1] ?? '';
    const digest = digestParam('digest');
    const mount = digestParam('mount');
    if (typeof digest === 'object') return digest;
    if (typeof mount === 'object') return mount;
    return checkName(name) ?? { kind: 'upload-start', name, digest, mount };
  }
  m = /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/.exec(p);
  if (m !== null) {
    const [, name = '', id = ''] = m;
    if (!UPLOAD_ID.test(id)) return { kind: 'invalid', code: 'BLOB_UPLOAD_UNKNOWN', message: 'unknown upload' };
    const digest = digestParam('digest');
    if (typeof digest === 'object') return digest;
    return checkName(name) ?? { kind: 'upload', name, id, digest };
  }
  m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(p);
  if (m !== null) {
    const [, name = '', digest = ''] = m;
    const d = decodeURIComponent(digest);
    if (!isDigest(d)) return { kind: 'invalid', code: 'DIGEST_INVALID', message: 'invalid digest' };
    return checkName(name) ?? { kind: 'blob', name, digest: d };
  }
  return { kind: 'unknown' };
}

/** The distribution spec's error codes that the facade answers with, and their HTTP status. */
export const ERROR_STATUS = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  /** A Range the blob cannot satisfy, or an upload chunk out of order: not a spec code (the spec names only the status). */
  RANGE_INVALID: 416,
  /** The backing store failed: not a spec code, the one the distribution registry uses for its own failures. */
  UNKNOWN: 500,
} as const;
export type ErrorCode = keyof typeof ERROR_STATUS;

/** An error response: its status and the spec's `{"errors":[{code,message,detail}]}` body. */
export function errorBody(code: ErrorCode, message: string, detail?: unknown): { status: number; body: string } {
  return { status: ERROR_STATUS[code], body: JSON.stringify({ errors: [{ code, message, ...(detail === undefined ? {} : { detail }) }] }) };
}

/** The realm of the Basic challenge, shown by clients that print it. */
export const REALM = 'docker-buildx-cache';
export const CHALLENGE = `Basic realm="${REALM}"`;

const sha256 = (text: string): Buffer => crypto.createHash('sha256').update(text, 'utf8').digest();

/**
 * Whether an Authorization header carries exactly these Basic credentials. Compared in constant
 * time (hashes of equal length), so the answer time tells nothing about the password.
 */
export function basicAuthorized(header: string | undefined, username: string, password: string): boolean {
  const m = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header ?? '');
  if (m === null) return false;
  const decoded = Buffer.from(m[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const userOk = crypto.timingSafeEqual(sha256(decoded.slice(0, colon)), sha256(username));
  const passOk = crypto.timingSafeEqual(sha256(decoded.slice(colon + 1)), sha256(password));
  return userOk && passOk;
}

/** The `auth` field of a docker config.json `auths` entry. */
export const basicAuth = (username: string, password: string): string => Buffer.from(`${username}:${password}`, 'utf8').toString('base64');

export interface ByteRange {
  /** First byte, inclusive. */
  readonly start: number;
  /** Last byte, inclusive. */
  readonly end: number;
}

/**
 * A Range header against a blob of `size` bytes: one range, `bytes=a-b`, `bytes=a-` or `bytes=-n`.
 * `undefined` means serve the whole blob (no header, or one the facade need not honour, such as
 * several ranges, which RFC 9110 lets a server ignore); `'unsatisfiable'` is a 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null) return undefined;
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  if (start >= size) return 'unsatisfiable';
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (end < start) return undefined;
  return { start, end };
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const MANIFEST_MEDIA_TYPES: readonly string[] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/**
 * The media type of a pushed manifest: its Content-Type, which must be a manifest or index type
 * and agree with the `mediaType` field when the body has one. Throws a message for MANIFEST_INVALID.
 */
export function manifestMediaType(contentType: string | undefined, body: Buffer): string {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new Error('the manifest is not valid JSON');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error('the manifest is not a JSON object');
  const declared = (json as { mediaType?: unknown }).mediaType;
  const header = contentType?.split(';')[0]?.trim();
  const type = header !== undefined && header !== '' ? header : typeof declared === 'string' ? declared : undefined;
  if (type === undefined || !MANIFEST_MEDIA_TYPES.includes(type))
    throw new Error(`unsupported manifest media type ${JSON.stringify(type ?? '')}`);
  if (declared !== undefined && declared !== type)
    throw new Error(`the manifest's mediaType ${JSON.stringify(declared)} is not its Content-Type ${type}`);
  return type;
}

/** Annotations that containerd adds to a descriptor to say where its blob was pulled from. */
const SOURCE_ANNOTATION = 'containerd.io/distribution.source.';

/**
 * A pushed cache manifest without the `containerd.io/distribution.source.*` annotations that
 * BuildKit adds to each layer it imported from a registry: dockerd's BuildKit writes
 * `containerd.io/distribution.source.ref: 127.0.0.1:PORT/repo:tag`, BuildKit 0.32 writes
 * `containerd.io/distribution.source.127.0.0.1: repo`. They name this job's facade, which is gone
 * when the next job reads the entry, and with dockerd's BuildKit they change the manifest's digest
 * with every port, so an unchanged cache would never look unchanged. Without them the manifest is
 * byte for byte the one BuildKit writes for a build that imported nothing (key order and compact
 * JSON kept). Returns undefined when there is nothing to remove: the pushed bytes stand as they are.
 */
export function canonicalManifest(body: Buffer): Buffer | undefined {
  const json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  let removed = 0;
  const clean = (desc: unknown): unknown => {
    if (typeof desc !== 'object' || desc === null) return desc;
    const annotations = (desc as { annotations?: unknown }).annotations;
    if (typeof annotations !== 'object' || annotations === null) return desc;
    const entries = Object.entries(annotations);
    const kept = entries.filter(([key]) => !key.startsWith(SOURCE_ANNOTATION));
    if (kept.length === entries.length) return desc;
    removed += entries.length - kept.length;
    // The annotations keep their place among the descriptor's fields, so the JSON keeps its order.
    return Object.fromEntries(
      Object.entries(desc).flatMap(([key, value]: [string, unknown]) => {
        if (key !== 'annotations') return [[key, value]];
        return kept.length > 0 ? [[key, Object.fromEntries(kept)]] : [];
      }),
    );
  };
  const out = Object.fromEntries(
    Object.entries(json).map(([key, value]) => {
      if ((key === 'layers' || key === 'manifests') && Array.isArray(value)) return [key, value.map(clean)];
      if (key === 'config') return [key, clean(value)];
      return [key, value];
    }),
  );
  return removed > 0 ? Buffer.from(JSON.stringify(out), 'utf8') : undefined;
}
