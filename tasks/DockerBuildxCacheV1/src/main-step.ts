import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { formatBytes, info, instanceId, phase, setOutput, setSecret, variable, warn } from './agent';
import { buildArgs, type CacheFlags } from './buildx/args';
import { defaultBuilderName, ensureBuilder, type Builder } from './buildx/builder';
import { Docker, type DockerCli } from './buildx/docker';
import { parseMetadata } from './buildx/metadata';
import { ProgressParser, type StepCount } from './buildx/progress';
import { CacheFolder, type CommitResult } from './cache/folder';
import { readConfig, taskSource, type Config, type Secret } from './config';
import { loadMessages, loc } from './loc';
import { saveState, type PostState } from './state';

export class BuildError extends Error {
  override name = 'BuildError';
}

/** The cache for one build: the flags to pass, and the fresh export folder to commit after a good build. */
interface PreparedCache {
  readonly flags: CacheFlags;
  readonly pending?: { readonly folder: CacheFolder; readonly fresh: string };
}

interface BuildOutcome {
  readonly code: number;
  readonly steps: StepCount;
  readonly failed: readonly string[];
  readonly stderr: string;
}

export async function runMain(docker?: DockerCli): Promise<void> {
  loadMessages();
  const config = readConfig(taskSource());
  for (const secret of config.build.secrets) setSecret(secret.value);
  for (const warning of config.warnings) warn(warning);
  const cli = docker ?? Docker.locate();
  const id = instanceId();

  const tempRoot = path.join(variable('Agent.TempDirectory') ?? os.tmpdir(), `docker-buildx-cache-${id}`);
  await fs.promises.rm(tempRoot, { recursive: true, force: true });
  await fs.promises.mkdir(tempRoot, { recursive: true, mode: 0o700 });
  let state: PostState = { version: 1, cleanup: [tempRoot] };
  saveState(state);

  const builder = await phase(
    loc('PhaseBuilder'),
    () =>
      ensureBuilder(cli, config.builder, defaultBuilderName(variable('System.JobId'), variable('Agent.Name')), (name) => {
        if (config.builder.remove) {
          state = { ...state, removeBuilder: name };
          saveState(state);
        }
      }),
    (b) => (b.created ? loc('BuilderCreated', b.name, config.builder.driver) : loc('BuilderReused', b.name, config.builder.driver)),
  );
  setOutput('builderName', builder.name);

  const cache = await phase(loc('PhaseCache'), () => prepareCache(config, id), (c) => loc('CacheReady', c.flags.from.length, c.flags.to.length));
  let settled = false;
  try {
    const secretFiles = await writeSecrets(config.build.secrets, tempRoot);
    // buildx writes the oci and tar outputs but does not create their folder.
    if (config.output.path !== undefined) await fs.promises.mkdir(path.dirname(config.output.path), { recursive: true });
    const metadataFile = path.join(tempRoot, 'metadata.json');
    const outcome = await phase(loc('PhaseBuild'), () => buildWithCacheFallback(cli, config, builder, cache, secretFiles, metadataFile), (o) =>
      loc('StepsCached', o.steps.cached, o.steps.total),
    );

    const pending = cache.pending;
    if (pending !== undefined && outcome.exported) {
      settled = true;
      await phase(loc('PhaseCacheExport'), () => commitCache(pending.folder, pending.fresh), (r) =>
        r === undefined ? loc('CacheNotUpdated') : loc('CacheCommitted', formatBytes(r.bytes), r.blobs, formatBytes(r.newBytes), formatBytes(r.prunedBytes)),
      );
    }
    await setBuildOutputs(cli, config, metadataFile);
  } finally {
    await fs.promises.rm(path.join(tempRoot, 'secrets'), { recursive: true, force: true });
    if (!settled && cache.pending !== undefined) await cache.pending.folder.discard(cache.pending.fresh);
  }
}

async function prepareCache(config: Config, id: string): Promise<PreparedCache> {
  if (config.cache.backend === 'none') return { flags: { from: [], to: [] } };
  const folder = new CacheFolder(config.cache.dir, id);
  try {
    const found = await folder.inspect();
    if (found.state === 'usable') info(loc('CacheFolderFound', folder.dir, formatBytes(found.bytes), found.blobs));
    else if (found.state === 'empty') info(loc('CacheFolderEmpty', folder.dir));
    else warn(loc('WarnCacheFolderUnusable', folder.dir, found.reason));
    const fresh = await folder.begin();
    const from = found.state === 'usable' ? [folder.importSpec()] : [];
    return { pending: { folder, fresh }, flags: { from, to: [folder.exportSpec(fresh, config.cache.mode, config.cache.compression)] } };
  } catch (err) {
    warn(loc('WarnCacheUnavailable', config.cache.dir, (err as Error).message));
    return { flags: { from: [], to: [] } };
  }
}

/** Secret values go to BuildKit as files in a folder only this job can read; they never reach a command line. */
async function writeSecrets(secrets: readonly Secret[], tempRoot: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  if (secrets.length === 0) return files;
  const dir = path.join(tempRoot, 'secrets');
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [i, secret] of secrets.entries()) {
    const file = path.join(dir, `secret-${i}`);
    await fs.promises.writeFile(file, secret.value, { mode: 0o600 });
    files.set(secret.id, file);
  }
  return files;
}

async function runBuild(docker: DockerCli, args: string[]): Promise<BuildOutcome> {
  const parser = new ProgressParser();
  const result = await docker.run(args, { echo: true, onLine: (line) => {
      parser.push(line);
    } });
  return { code: result.code, steps: parser.count(), failed: parser.failedVertices(), stderr: result.stderr };
}

/** A build whose only failure was writing the cache; the image itself was built. */
export function isCacheExportFailure(outcome: Pick<BuildOutcome, 'failed' | 'stderr'>): boolean {
  return outcome.failed.some((name) => /^exporting cache\b/i.test(name)) || /cache export (?:feature )?is (?:currently )?not supported/i.test(outcome.stderr);
}

function lastError(stderr: string): string {
  const errors = stderr.split('\n').filter((l) => /^ERROR:|^error:/i.test(l.trim()));
  return (errors[errors.length - 1] ?? '').trim();
}

/** Cache trouble never fails the build: when only the cache export failed, build once more without it. */
async function buildWithCacheFallback(
  docker: DockerCli,
  config: Config,
  builder: Builder,
  cache: PreparedCache,
  secretFiles: ReadonlyMap<string, string>,
  metadataFile: string,
): Promise<BuildOutcome & { exported: boolean }> {
  const invocation = { builder: builder.name, build: config.build, output: config.output, metadataFile, secretFiles };
  let outcome = await runBuild(docker, buildArgs({ ...invocation, cache: cache.flags }));
  let exported = cache.flags.to.length > 0;
  if (outcome.code !== 0 && exported && isCacheExportFailure(outcome)) {
    warn(loc('WarnCacheExportFailed', lastError(outcome.stderr)));
    if (cache.pending !== undefined) await cache.pending.folder.discard(cache.pending.fresh);
    exported = false;
    // The first attempt built the image; the retry only re-exports it, so its step count is the one to report.
    const retry = await runBuild(docker, buildArgs({ ...invocation, cache: { from: cache.flags.from, to: [] } }));
    outcome = { ...retry, steps: outcome.steps };
  }
  if (outcome.code !== 0) throw new BuildError(loc('BuildFailed', outcome.code, lastError(outcome.stderr) || loc('SeeLogAbove')));
  return { ...outcome, exported };
}

async function commitCache(folder: CacheFolder, fresh: string): Promise<CommitResult | undefined> {
  try {
    return await folder.commit(fresh);
  } catch (err) {
    warn(loc('WarnCacheCommitFailed', folder.dir, (err as Error).message));
    await folder.discard(fresh);
    return undefined;
  }
}

async function setBuildOutputs(docker: DockerCli, config: Config, metadataFile: string): Promise<void> {
  setOutput('metadataFile', metadataFile);
  let metadata;
  try {
    metadata = parseMetadata(await fs.promises.readFile(metadataFile, 'utf8'));
  } catch (err) {
    warn(loc('WarnMetadataUnreadable', metadataFile, (err as Error).message));
    return;
  }
  if (metadata.digest !== undefined) setOutput('digest', metadata.digest);
  let imageId = metadata.configDigest;
  const firstTag = config.build.tags[0];
  if (config.output.kind === 'docker' && firstTag !== undefined) {
    // The engine's own image ID: the config digest in the classic store, the index digest in the containerd store.
    const inspect = await docker.run(['image', 'inspect', '--format', '{{.Id}}', firstTag]);
    if (inspect.code === 0 && inspect.stdout.trim() !== '') imageId = inspect.stdout.trim();
  }
  if (imageId !== undefined) setOutput('imageId', imageId);
  info(loc('Outputs', imageId ?? '-', metadata.digest ?? '-'));
}
