import type { DockerCli, RunResult } from './cli';
import { buffered, errorTail } from './cli';
import { loc } from '../task/messages';

/**
 * Getting the image of `output: docker` into the engine by a pull from the task's registry on
 * loopback, instead of `--load`.
 *
 * With a `docker-container` builder, `--load` has BuildKit write the whole image as a docker
 * tarball and stream it through the buildx session (a `docker exec` stdio pipe) into `docker load`.
 * Measured on the hosted-agent engine (classic store, the benchmark's 128 MB image, every step
 * cached): that costs 2.0 s beyond a build that makes no image; pushing the image to a registry on
 * loopback that already has its layers and `docker pull` costs 0.85 s (0.1 s push, 0.75 s pull), in
 * each of three rounds. The facade is that registry: the layers BuildKit imported from the cache
 * are acknowledged without moving, and the engine pulls every layer from the store through it.
 *
 * The pulled image is --load's: the same config (so the same image ID), layers and manifest (the
 * build adds no provenance unless asked, as --load does). It is pulled by digest and tagged with
 * the build's tags; the facade's reference is removed again, so the engine keeps no trace of it.
 */
export interface Delivery {
  /** The facade's image reference the build pushed to (`host/repository:tag`). */
  readonly ref: string;
  /** The pushed manifest's (or index's) digest, from the build's metadata. */
  readonly digest: string;
  /** The build's tags, which the pulled image gets. */
  readonly tags: readonly string[];
  /** The one platform built, when the build named one: the pull picks it from an index. */
  readonly platform?: string;
}

/** `host/repository` of a `host/repository:tag` reference. */
export function repositoryOf(ref: string): string {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? ref.slice(0, colon) : ref;
}

/** `host/repository@digest` of a `host/repository:tag` reference. */
export function digestRef(ref: string, digest: string): string {
  return `${repositoryOf(ref)}@${digest}`;
}

/** The format of `docker image ls` that leftoverRefs reads: each image's tag and digest reference. */
export const LEFTOVER_FORMAT = '{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}';

/** The references in `docker image ls --format LEFTOVER_FORMAT` output, without the `<none>` halves. */
export function leftoverRefs(output: string): string[] {
  const refs = output
    .split(/\r?\n/)
    .flatMap((line) => line.trim().split(/\s+/))
    .filter((ref) => ref !== '' && !ref.endsWith(':<none>') && !ref.endsWith('@<none>'));
  return [...new Set(refs)];
}

/**
 * Removes the references a main step that was stopped mid-build (a cancelled job) left in the
 * engine under the facade's repository: the prefetch's tag, the pulled image's digest. Only the
 * references go: an image the build's tags also name stays, a prefetch image's layers go with it.
 */
export async function removeLeftovers(docker: DockerCli, repository: string): Promise<{ removed: string[]; failed?: string }> {
  const listed = await docker.run(['image', 'ls', '--no-trunc', '--format', LEFTOVER_FORMAT, repository]);
  if (listed.code !== 0) return { removed: [], failed: errorTail(listed, 1) || `exit code ${listed.code}` };
  const removed: string[] = [];
  let failed: string | undefined;
  // One at a time: what was removed is known even when one removal fails.
  for (const ref of leftoverRefs(listed.stdout)) {
    const rm = await docker.run(['image', 'rm', ref]);
    if (rm.code === 0) removed.push(ref);
    else failed ??= errorTail(rm, 1) || `exit code ${rm.code}`;
  }
  return { removed, ...(failed === undefined ? {} : { failed }) };
}

/** The docker commands of a delivery, in order: pull by digest, tag each tag, remove the pulled reference. */
export function deliveryCommands(d: Delivery): { pull: string[]; tags: string[][]; untag: string[] } {
  const pulled = digestRef(d.ref, d.digest);
  return {
    pull: ['pull', '--quiet', ...(d.platform === undefined ? [] : ['--platform', d.platform]), pulled],
    tags: d.tags.map((tag) => ['tag', pulled, tag]),
    untag: ['image', 'rm', pulled],
  };
}

/**
 * Tags and removals of image references without the CLI: the engine's API (docker/engine-api.ts
 * EngineImages). Each resolves with what went wrong, or undefined when it was done.
 */
export interface ImageRefs {
  tag(source: string, target: string): Promise<string | undefined>;
  remove(ref: string): Promise<string | undefined>;
}

/**
 * Pulls the pushed image into the engine and gives it the build's tags. Resolves with the failure's
 * last lines when the pull or a tag failed (the caller loads the image the usual way then); the
 * facade's reference is removed either way, and a failure to remove it is only reported. With
 * `refs`, the tags and the removal go through the engine's API, each line in the log; one that
 * fails there runs as the docker command instead, whose answer counts.
 */
export async function deliver(
  docker: DockerCli,
  d: Delivery,
  refs?: ImageRefs,
  print: (line: string) => void = (line) => console.log(line),
): Promise<{ failed?: string; untagFailed?: string }> {
  const commands = deliveryCommands(d);
  const pulled = digestRef(d.ref, d.digest);
  /** The engine's API's request when there is one and it is done (its line in the log), else the docker command. */
  const either = async (args: string[], api: (() => Promise<string | undefined>) | undefined, done: string): Promise<RunResult> => {
    if (api !== undefined && (await api()) === undefined) {
      print(done);
      return { code: 0, stdout: '', stderr: '' };
    }
    return docker.run(args);
  };
  const failure = (result: RunResult, what: string): string | undefined =>
    result.code === 0 ? undefined : errorTail(result, 3) || `docker ${what} exited with ${result.code}`;
  let failed = failure(await docker.run(commands.pull), 'pull');
  for (const [i, tag] of d.tags.entries()) {
    if (failed !== undefined) break;
    const api = refs && ((): Promise<string | undefined> => refs.tag(pulled, tag));
    failed = failure(await either(commands.tags[i] ?? [], api, loc('ImageTaggedApi', pulled, tag)), 'tag');
  }
  const untag = await either(commands.untag, refs && (() => refs.remove(pulled)), loc('ImageRefRemovedApi', pulled));
  // A pull that failed left nothing to remove.
  const untagFailed = untag.code === 0 || failed !== undefined ? undefined : errorTail(untag, 1) || `exit code ${untag.code}`;
  return { ...(failed === undefined ? {} : { failed }), ...(untagFailed === undefined ? {} : { untagFailed }) };
}

/**
 * The engine's pull, beside the build, of the image the registry makes of the restored cache's last
 * layer chain (RegistryFacade.prefetchRef, oci/prefetch.ts): the layers the last image was made
 * of, which the new one mostly shares from its base up. The engine reuses a layer it has by its
 * chain, so the pull after the build downloads only the image's new layers, and the download and
 * extraction of the others ran while BuildKit built. `pulled` settles with the pull (false when
 * there was nothing to pull or it failed); `remove()` waits for it and removes its reference, so the
 * engine keeps only the layers the build's image has. Its command lines are kept in `log`, shown
 * after the build's output rather than inside it.
 */
export interface Prefetch {
  readonly pulled: Promise<{ ok: boolean; failed?: string }>;
  readonly log: readonly string[];
  remove(): Promise<void>;
}

export function startPrefetch(docker: DockerCli, reference: () => Promise<string | undefined>): Prefetch {
  const log: string[] = [];
  const quiet = buffered(docker, log);
  let ref: string | undefined;
  const pulled = (async (): Promise<{ ok: boolean; failed?: string }> => {
    ref = await reference();
    if (ref === undefined) return { ok: false };
    const result = await quiet.run(['pull', '--quiet', ref]);
    return result.code === 0 ? { ok: true } : { ok: false, failed: errorTail(result, 2) || `exit code ${result.code}` };
  })().catch((err: unknown) => ({ ok: false, failed: (err as Error).message }));
  return {
    pulled,
    log,
    remove: async () => {
      if ((await pulled).ok && ref !== undefined) await quiet.run(['image', 'rm', ref]);
    },
  };
}

/**
 * The name buildx writes as `image.name` for a tag, as docker normalises it: `docker.io/` before a
 * name whose first part is not a registry host, and `library/` before a one-part Docker Hub name.
 */
export function normalizedName(tag: string): string {
  const slash = tag.indexOf('/');
  const first = slash < 0 ? '' : tag.slice(0, slash);
  const hasHost = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (first === 'docker.io' || first === 'index.docker.io') {
    const rest = tag.slice(slash + 1);
    return rest.includes('/') ? `docker.io/${rest}` : `docker.io/library/${rest}`;
  }
  if (hasHost) return tag;
  return slash < 0 ? `docker.io/library/${tag}` : `docker.io/${tag}`;
}

/**
 * The build's metadata file as --load would have written it: `image.name` the tags, not the
 * facade's reference. Other fields stay as buildx wrote them.
 */
export function metadataAsLoaded(text: string, tags: readonly string[]): string {
  const json = JSON.parse(text) as Record<string, unknown>;
  json['image.name'] = tags.map(normalizedName).join(',');
  return JSON.stringify(json, null, 2);
}
