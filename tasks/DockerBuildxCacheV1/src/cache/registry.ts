import * as crypto from 'crypto';
import { info } from '../task/agent';
import { csvSpec } from '../docker/args';
import { errorTail, type DockerCli } from '../docker/cli';
import type { Config } from '../config/types';
import { loc } from '../task/messages';
import { SHARED_SCOPE, type ScopePlan } from '../store/scopes';
import type { HitKind } from '../store/types';
import type { PreparedCache } from './session';
import { cacheTrouble } from './trouble';

/** The tag of a `registryCacheRef` without one. */
export const DEFAULT_CACHE_TAG = 'buildcache';
const MAX_TAG = 128;

/** The registry caches a job reads, in order, and the one it writes (none on a pull request from a fork). */
export interface RegistryRefs {
  readonly read: readonly string[];
  readonly write?: string;
}

/**
 * The tag of a scope's cache: the tag of `registryCacheRef` for the shared scope, and for a branch
 * the tag, `-`, and the branch with every character a tag cannot hold made `-` (`refs/heads/feature/x`
 * → `buildcache-feature-x`; a pull request's `refs/pull/7/merge` → `buildcache-pull-7-merge`). A tag
 * longer than a registry allows is cut, with a hash of the branch to keep it apart.
 */
export function scopeTag(base: string, scope: string): string {
  if (scope === SHARED_SCOPE) return base;
  const branch = scope.replace(/^refs\/heads\//, '').replace(/^refs\//, '');
  const tag = `${base}-${branch.replace(/[^\w.-]+/g, '-')}`;
  if (tag.length <= MAX_TAG) return tag;
  const hash = crypto.createHash('sha256').update(scope).digest('hex').slice(0, 8);
  return `${tag.slice(0, MAX_TAG - hash.length - 1)}-${hash}`;
}

/**
 * The references of the scopes, as the stores read and write them: the repository of
 * `registryCacheRef`, and the scope's tag derived from its tag (see scopeTag).
 */
export function registryRefs(ref: string, scopes: ScopePlan): RegistryRefs {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  const [repository, base] = colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, DEFAULT_CACHE_TAG];
  const at = (scope: string): string => `${repository}:${scopeTag(base, scope)}`;
  return { read: [...new Set(scopes.read.map(at))], write: scopes.write === undefined ? undefined : at(scopes.write) };
}

/** Registry specs for BuildKit's own registry cache, with the attributes ACR and ECR-like registries accept. */
export function registryCacheSpecs(config: Config, ref: string): { from: string; to: string } {
  return {
    from: csvSpec({ type: 'registry', ref }),
    to: csvSpec({
      type: 'registry',
      ref,
      mode: config.cache.mode,
      compression: config.cache.compression,
      'image-manifest': 'true',
      'oci-mediatypes': 'true',
    }),
  };
}

type LookUp = { readonly state: 'found' | 'missing' } | { readonly state: 'unreadable'; readonly reason: string };

/** Whether a reference exists, is missing, or cannot be read (with the registry's answer). */
async function lookUp(docker: DockerCli, ref: string): Promise<LookUp> {
  const inspect = await docker.run(['buildx', 'imagetools', 'inspect', ref]);
  if (inspect.code === 0) return { state: 'found' };
  if (/not found|manifest unknown|name unknown/i.test(inspect.stderr)) return { state: 'missing' };
  return { state: 'unreadable', reason: errorTail({ stderr: inspect.stderr }) };
}

/**
 * `registry`: BuildKit's own cache, which falls back as the stores do. The scopes' references are
 * looked up together; the first that exists is imported (cacheHit `true` for the job's own,
 * `inexact` for another branch's). The export goes to the job's own reference only, and never
 * when the cache is read-only (saveCache `never`, or a pull request from a fork).
 */
export async function prepareRegistry(
  config: Config,
  docker: DockerCli,
  refs: RegistryRefs,
): Promise<PreparedCache & { readonly imported?: string }> {
  const found = await Promise.all(refs.read.map((ref) => lookUp(docker, ref)));
  const at = found.findIndex((f) => f.state === 'found');
  const imported = at < 0 ? undefined : refs.read[at];
  found.forEach((f, i) => {
    if (f.state === 'unreadable' && (at < 0 || i < at))
      cacheTrouble(config.cache.failOnError, loc('WarnRegistryCacheUnreadable', refs.read[i] ?? '', f.reason));
  });
  const hit: HitKind =
    imported === undefined ? 'false' : imported === refs.write || (refs.write === undefined && at === 0) ? 'true' : 'inexact';
  if (imported !== undefined) info(loc('RegistryCacheFound', imported, hit));
  else info(loc('RegistryCacheMissing', refs.read.join(', ')));
  const write = config.cache.save === 'never' ? undefined : refs.write;
  if (write !== undefined) info(loc('RegistryCacheWrite', write));
  return {
    flags: {
      from: imported === undefined ? [] : [registryCacheSpecs(config, imported).from],
      to: write === undefined ? [] : [registryCacheSpecs(config, write).to],
    },
    hit,
    imported,
  };
}
