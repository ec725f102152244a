import * as fs from 'fs';
import * as path from 'path';
import { info, setOutput, warn } from './task/agent';
import { cacheTrouble } from './cache/trouble';
import type { Secret } from './config/features';
import type { Config } from './config/types';
import { loc } from './task/messages';
import { buildArgs, type CacheFlags } from './docker/args';
import type { Builder } from './docker/builder';
import { errorTail, type DockerCli } from './docker/cli';
import { loadedImageId, parseMetadata, type LoadedImage } from './docker/metadata';
import { deliver, metadataAsLoaded, startPrefetch, type ImageRefs } from './docker/deliver';
import { ProgressParser, type StepCount } from './docker/progress';

export class BuildError extends Error {
  override name = 'BuildError';
}

interface BuildOutcome {
  readonly code: number;
  readonly steps: StepCount;
  readonly failed: readonly string[];
  readonly stderr: string;
}

/** The cache as the build uses it: what it imports and exports, and what to do before it builds again without either. */
export interface BuildCache extends CacheFlags {
  /** An imported blob failed its digest or length: called before the build runs again without the import. */
  readonly onImportCorrupt: () => Promise<void>;
  /** The cache export failed: called before the build runs again without it. */
  readonly onExportFailed: () => Promise<void>;
  /**
   * Whether the cache's source reported trouble during the build (the registry facade: the store
   * failed, or a blob failed its digest): a failed build is then a cache failure, whatever BuildKit said.
   */
  readonly importTrouble?: () => Promise<boolean>;
  /** Whether the store failed only under the export's pushes (the facade's has, put or commit), never a read. */
  readonly exportTrouble?: () => Promise<boolean>;
  /**
   * Whether the store went down (unreachable, or a write failed; not a blob that failed or is
   * missing): the entry then needs no distrust, and the warning says the store failed.
   */
  readonly storeFailed?: () => Promise<boolean>;
  /**
   * With output docker: the registry facade's image reference. The first build pushes the image
   * there and the engine pulls it (docker/deliver.ts) instead of `--load`; a build run again after
   * cache trouble, or a pull that fails, loads it the usual way.
   */
  readonly imageVia?: string;
  /**
   * With imageVia: what the engine pulls while the build runs (docker/deliver.ts startPrefetch), so
   * that the pull after it downloads only the new layers (`ref`, undefined: nothing), and the end of
   * it once the image is in the engine (`end`: whether layers the build did not read were left out).
   */
  readonly prefetch?: { readonly ref: () => Promise<string | undefined>; readonly end: () => boolean };
  /** With imageVia: the pulled image's tags and the removal of its reference through the engine's API, when its socket is certain. */
  readonly images?: ImageRefs;
  /**
   * With the registry facade: its address (`127.0.0.1:PORT`) and whether it was asked for nothing at
   * all. A build that failed to connect to it, without a request reaching it, ran on a builder that
   * does not share this machine's loopback (an agent in a container using the host's engine).
   */
  readonly facade?: { readonly host: string; readonly unreached: () => boolean };
}

/** Secrets given as values go to BuildKit as files in a folder only this job can read; they never reach a command line. */
export async function writeSecrets(secrets: readonly Secret[], tempRoot: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const values = secrets.filter((s) => s.kind === 'value');
  if (values.length === 0) return files;
  const dir = path.join(tempRoot, 'secrets');
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [i, secret] of values.entries()) {
    const file = path.join(dir, `secret-${i}`);
    await fs.promises.writeFile(file, secret.value, { mode: 0o600 });
    files.set(secret.id, file);
  }
  return files;
}

/**
 * `buildkitdConfigInline`: the text goes into a job-private file that `buildx create --config`
 * reads, as a `buildkitdConfig` file would (buildx keeps its own copy with the builder).
 */
export async function writeBuildkitdConfig(config: Config, tempRoot: string): Promise<Config> {
  const text = config.builder.buildkitdConfigText;
  if (text === undefined) return config;
  const file = path.join(tempRoot, 'buildkitd.toml');
  await fs.promises.writeFile(file, text.endsWith('\n') ? text : `${text}\n`, { mode: 0o600 });
  return { ...config, builder: { ...config.builder, buildkitdConfig: file } };
}

async function runBuild(docker: DockerCli, args: string[]): Promise<BuildOutcome> {
  const parser = new ProgressParser();
  const result = await docker.run(args, {
    echo: true,
    onLine: (line) => {
      parser.push(line);
    },
  });
  return { code: result.code, steps: parser.count(), failed: parser.failedVertices(), stderr: result.stderr };
}

/** A build whose only failure was writing the cache; the image itself was built. */
export function isCacheExportFailure(outcome: Pick<BuildOutcome, 'failed' | 'stderr'>): boolean {
  return (
    outcome.failed.some((name) => /^exporting cache\b/i.test(name)) ||
    /cache export (?:feature )?is (?:currently )?not supported/i.test(outcome.stderr)
  );
}

/**
 * A build whose image failed to unpack into the engine's containerd image store, on a snapshot that
 * was gone under it: an intermittent race in the engine (moby/buildkit#6521, also with Docker 29's
 * containerd store on hosted runners), not a fault of the build or its cache. Seen here once in a
 * benchmark's 4th job on one engine.
 */
export function isEngineUnpackRace(outcome: Pick<BuildOutcome, 'stderr'>): boolean {
  return /failed to prepare extraction snapshot[^\n]*parent snapshot[^\n]*does not exist/i.test(outcome.stderr);
}

/** The last `ERROR:` line of a build's output. */
const lastError = (stderr: string): string => errorTail({ stderr }, 1, /^error:/i);

/**
 * A build that failed on the content of an imported cache blob (a digest or length that does not
 * match): the blob changed on disk after it was last checked.
 */
export function isCacheContentFailure(outcome: Pick<BuildOutcome, 'stderr'>): boolean {
  return /unexpected commit digest|failed to read expected number of bytes|digest mismatch|content sha256:[0-9a-f]{64}: not found/i.test(
    outcome.stderr,
  );
}

/**
 * Cache trouble fails the build only with failOnCacheError (a CacheError). Otherwise, when an
 * imported cache blob turns out corrupt, the entry is distrusted and the build runs again without
 * the import; when only the cache export failed, it runs again without the export. With imageVia
 * and prefetch, the engine pulls the restored cache's last layers while the build runs.
 */
export async function buildWithCacheFallback(
  docker: DockerCli,
  config: Config,
  builder: Builder,
  cache: BuildCache,
  secretFiles: ReadonlyMap<string, string>,
  metadataFile: string,
): Promise<BuildOutcome & { exported: boolean }> {
  const prefetch = cache.imageVia !== undefined && cache.prefetch !== undefined ? startPrefetch(docker, cache.prefetch.ref) : undefined;
  try {
    return await buildAndDeliver(docker, config, builder, cache, secretFiles, metadataFile);
  } finally {
    if (prefetch !== undefined) {
      // The image is in the engine (or the build failed): the layers the build did not read are refused, which ends the prefetch.
      // Whether any was refused, then or before.
      const partial = cache.prefetch?.end() === true;
      await prefetch.remove();
      for (const line of prefetch.log) info(line);
      const failed = (await prefetch.pulled).failed;
      if (partial) info(loc('ImagePrefetchPartial'));
      else if (failed !== undefined) info(loc('ImagePrefetchFailed', failed));
    }
  }
}

/**
 * The builds of buildWithCacheFallback, then the image's pull, while the prefetch's may still wait for
 * layers the build did not read: the pull finds the layers it has brought, or joins their download.
 */
async function buildAndDeliver(
  docker: DockerCli,
  config: Config,
  builder: Builder,
  cache: BuildCache,
  secretFiles: ReadonlyMap<string, string>,
  metadataFile: string,
): Promise<BuildOutcome & { exported: boolean }> {
  const invocation = { builder: builder.name, build: config.build, output: config.output, metadataFile, secretFiles };
  let from = cache.from;
  const to = cache.to;
  let outcome = await runBuild(docker, buildArgs({ ...invocation, imageVia: cache.imageVia, cache: { from, to } }));
  let pushed = cache.imageVia !== undefined && outcome.code === 0;
  // A failed build loads no pushed image: the prefetch ends now, before the facade is asked what went wrong (which waits for its requests).
  if (outcome.code !== 0) cache.prefetch?.end();
  if (outcome.code !== 0 && cache.facade !== undefined && unreachable(outcome, cache.facade)) {
    // The builder cannot reach the registry on loopback: the build runs again without the cache, and loads its image.
    cacheTrouble(config.cache.failOnError, loc('WarnRegistryUnreached', cache.facade.host, lastError(outcome.stderr)));
    await cache.onExportFailed();
    const load = await runBuild(docker, buildArgs({ ...invocation, cache: { from: [], to: [] } }));
    if (load.code !== 0) throw new BuildError(loc('BuildFailed', load.code, lastError(load.stderr) || loc('SeeLogAbove')));
    return { ...load, exported: false };
  }
  if (
    outcome.code !== 0 &&
    cache.imageVia !== undefined &&
    !isCacheContentFailure(outcome) &&
    (from.length === 0 ? await cache.importTrouble?.() : await cache.exportTrouble?.()) === true
  ) {
    // The store failed under the pushes, not under the import: the image is loaded the usual way,
    // with the import as it was. The export is tried again: while the store is still down it fails
    // at once (a 403 from the facade, and ignore-error), and a store back by then takes it.
    cacheTrouble(config.cache.failOnError, loc('WarnImagePushFailed', lastError(outcome.stderr)));
    outcome = await runBuild(docker, buildArgs({ ...invocation, cache: { from, to } }));
  }
  if (outcome.code !== 0 && from.length > 0 && (isCacheContentFailure(outcome) || (await cache.importTrouble?.()) === true)) {
    const detail = lastError(outcome.stderr);
    const fail = config.cache.failOnError;
    if (!isCacheContentFailure(outcome) && (await cache.storeFailed?.()) === true) {
      // The store went down, no blob failed: nothing to distrust. The export is tried again, as above.
      cacheTrouble(fail, fail ? loc('CacheStoreFailed', detail) : loc('WarnCacheStoreFailed', detail));
    } else {
      // The entry is distrusted either way; with failOnCacheError the step then fails instead of building again.
      await cache.onImportCorrupt();
      cacheTrouble(fail, fail ? loc('CacheContentFailed', detail) : loc('WarnCacheContentFailed', detail));
    }
    from = [];
    outcome = await runBuild(docker, buildArgs({ ...invocation, cache: { from, to } }));
    pushed = false;
  }
  let exported = to.length > 0;
  if (outcome.code !== 0 && exported && isCacheExportFailure(outcome)) {
    await cache.onExportFailed();
    const detail = lastError(outcome.stderr);
    cacheTrouble(
      config.cache.failOnError,
      config.cache.failOnError ? loc('CacheExportFailed', detail) : loc('WarnCacheExportFailed', detail),
    );
    exported = false;
    // The first attempt built the image; the retry only re-exports it, so its step count is the one to report.
    const retry = await runBuild(docker, buildArgs({ ...invocation, cache: { from, to: [] } }));
    outcome = { ...retry, steps: outcome.steps };
    pushed = false;
  }
  if (outcome.code !== 0 && isEngineUnpackRace(outcome)) {
    // Every step is cached by then: the build runs again once, only to export the image (and the cache, unless its export failed).
    warn(loc('WarnEngineUnpackRetry', lastError(outcome.stderr)));
    const retry = await runBuild(docker, buildArgs({ ...invocation, cache: { from, to: exported ? to : [] } }));
    outcome = { ...retry, steps: outcome.steps };
    pushed = false;
  }
  if (outcome.code !== 0) throw new BuildError(loc('BuildFailed', outcome.code, lastError(outcome.stderr) || loc('SeeLogAbove')));
  if (pushed && cache.imageVia !== undefined && !(await pullPushedImage(docker, config, cache.imageVia, metadataFile, cache.images))) {
    // The build again loads the image: with the same import (a new builder imported lazily, and
    // has not every layer), without the export, which is done.
    const load = await runBuild(docker, buildArgs({ ...invocation, cache: { from, to: [] } }));
    if (load.code !== 0) throw new BuildError(loc('BuildFailed', load.code, lastError(load.stderr) || loc('SeeLogAbove')));
  }
  return { ...outcome, exported };
}

/** A build that could not connect to the facade, which no request reached: its builder is not on this machine's loopback. */
export function unreachable(
  outcome: Pick<BuildOutcome, 'stderr'>,
  facade: { readonly host: string; readonly unreached: () => boolean },
): boolean {
  const refused = new RegExp(`${facade.host.replace(/\./g, '\\.')}[^\n]*(?:connection refused|no route to host|i/o timeout)`, 'i');
  return refused.test(outcome.stderr) && facade.unreached();
}

/**
 * The image pushed to the facade goes into the engine by `docker pull`, with the build's tags, and the
 * metadata file names the tags as --load's would. False, after a warning (or a failure with
 * failOnCacheError), when that did not work: the caller loads the image the usual way.
 */
async function pullPushedImage(
  docker: DockerCli,
  config: Config,
  ref: string,
  metadataFile: string,
  images: ImageRefs | undefined,
): Promise<boolean> {
  let text: string;
  let digest: string | undefined;
  try {
    text = await fs.promises.readFile(metadataFile, 'utf8');
    digest = parseMetadata(text).digest;
  } catch (err) {
    cacheTrouble(config.cache.failOnError, loc('WarnImagePullFailed', (err as Error).message));
    return false;
  }
  if (digest === undefined) {
    cacheTrouble(config.cache.failOnError, loc('WarnImagePullFailed', loc('NoImageDigest')));
    return false;
  }
  const platform = config.build.platforms.length === 1 ? config.build.platforms[0] : undefined;
  const delivered = await deliver(
    docker,
    { ref, digest, tags: config.build.tags, ...(platform === undefined ? {} : { platform }) },
    images,
  );
  if (delivered.untagFailed !== undefined) info(loc('ImageRefNotRemoved', delivered.untagFailed));
  if (delivered.failed !== undefined) {
    cacheTrouble(config.cache.failOnError, loc('WarnImagePullFailed', delivered.failed));
    return false;
  }
  await fs.promises.writeFile(metadataFile, metadataAsLoaded(text, config.build.tags));
  info(loc('ImagePulled', digest));
  return true;
}

/** Sets the imageId, digest and metadataFile outputs from buildx's metadata file; returns the digest. */
export async function setBuildOutputs(
  docker: DockerCli,
  config: Config,
  metadataFile: string,
  loaded?: LoadedImage,
): Promise<string | undefined> {
  setOutput('metadataFile', metadataFile);
  let metadata;
  try {
    metadata = parseMetadata(await fs.promises.readFile(metadataFile, 'utf8'));
  } catch (err) {
    warn(loc('WarnMetadataUnreadable', metadataFile, (err as Error).message));
    return undefined;
  }
  if (metadata.digest !== undefined) setOutput('digest', metadata.digest);
  let imageId = metadata.configDigest;
  const firstTag = config.build.tags[0];
  if (config.output.kind === 'docker' && firstTag !== undefined) {
    // The engine's own image ID: the config digest in the classic store, the index digest in the containerd store;
    // asked of the engine only when the metadata does not tell it for sure.
    const known = loaded === undefined ? undefined : loadedImageId(metadata, loaded);
    if (known !== undefined) imageId = known;
    else {
      const inspect = await docker.run(['image', 'inspect', '--format', '{{.Id}}', firstTag]);
      if (inspect.code === 0 && inspect.stdout.trim() !== '') imageId = inspect.stdout.trim();
    }
  }
  if (imageId !== undefined) setOutput('imageId', imageId);
  info(loc('Outputs', imageId ?? '-', metadata.digest ?? '-'));
  return metadata.digest;
}
