import * as crypto from 'crypto';
import type { BuilderConfig, Driver } from '../config/types';
import { createBuilderArgs } from './args';
import { errorTail, type DockerCli, type RunResult } from './cli';

export interface Builder {
  readonly name: string;
  /** True when this job created the builder; only then may the post-job step remove it. */
  readonly created: boolean;
  /** The platforms the builder reports; undefined when it was not asked (the engine's own, or one created and started at once). */
  readonly platforms?: readonly string[];
}

/** The `Platforms:` of `docker buildx inspect` output. */
export function parsePlatforms(inspect: string): string[] {
  const line = /^Platforms:\s*(.*)$/m.exec(inspect)?.[1] ?? '';
  return line
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

/** The builder inputs with the driver that the job builds with (what `auto` became). */
export type BuilderSpec = BuilderConfig & { readonly driver: Driver };

export class BuilderError extends Error {
  override name = 'BuilderError';
}

/**
 * A builder name unique to this job, so that two jobs on one self-hosted agent never share or
 * remove each other's builder. Builder names start with a letter and hold only [a-zA-Z0-9._-].
 */
export function defaultBuilderName(jobId: string | undefined, agentName: string | undefined): string {
  const seed = jobId === undefined ? crypto.randomUUID() : `${jobId}/${agentName ?? ''}`;
  return `buildx-cache-${crypto.createHash('sha256').update(seed).digest('hex').slice(0, 16)}`;
}

function explain(what: string, result: RunResult): string {
  const detail = errorTail(result, 3);
  return `${what} failed with exit code ${result.code}${detail === '' ? '' : `: ${detail}`}`;
}

/**
 * The docker driver uses the engine's own BuildKit: nothing is created, and the builder is the
 * docker context (`endpoint`, else `default`). The `default` builder is there whenever the engine
 * is, which the preflight found, so it is not asked (a `buildx inspect` costs a buildx start and a
 * call to BuildKit, on the main step's way to the build); a named context is looked at, for the
 * error when it does not exist. Any other driver gets a builder of its own, reused when one with
 * that name exists already: `buildx inspect --bootstrap` starts it and asks for its platforms in one
 * buildx start (about 0.1 s less than a look for it first), and the builder is created and started
 * (see createStarted) only when buildx says there is none of that name. With `createFirst` (a name
 * unique to the job, which no builder has yet but for a job that runs again) it is created and
 * started at once, without looking for it first.
 */
export async function ensureBuilder(
  docker: DockerCli,
  config: BuilderSpec,
  defaultName: string,
  onCreated: (name: string | undefined) => void,
  createFirst = false,
): Promise<Builder> {
  if (config.driver === 'docker') {
    if (config.endpoint === undefined) return { name: 'default', created: false };
    const name = config.endpoint;
    const inspect = await docker.run(['buildx', 'inspect', name], { echo: true });
    if (inspect.code !== 0) throw new BuilderError(explain(`docker buildx inspect ${name}`, inspect));
    return { name, created: false, platforms: parsePlatforms(inspect.stdout) };
  }

  const name = config.name ?? defaultName;
  if (createFirst) {
    const started = await createStarted(docker, config, name, onCreated);
    if (started !== undefined) return started;
  }
  // A builder that is there (one the agent keeps, builderName's, or the job's own when it runs again)
  // is started and asked in one call; only a builder that buildx says is not there is created.
  const found = await bootstrapBuilder(docker, name, !createFirst);
  if (found.code === 0) return { name, created: false, platforms: parsePlatforms(found.stdout) };
  if (createFirst || !isMissingBuilder(found)) throw new BuilderError(explain(`docker buildx inspect --bootstrap ${name}`, found));
  const started = await createStarted(docker, config, name, onCreated);
  if (started !== undefined) return started;
  // Another job created it in the meantime: it is that job's, started here as any other.
  const bootstrap = await bootstrapBuilder(docker, name);
  if (bootstrap.code !== 0) throw new BuilderError(explain(`docker buildx inspect --bootstrap ${name}`, bootstrap));
  return { name, created: false, platforms: parsePlatforms(bootstrap.stdout) };
}

/** What buildx says when no builder has the name: `ERROR: no builder "name" found`. */
const MISSING_BUILDER = /no builder (?:".*" )?found/i;
export const isMissingBuilder = (result: RunResult): boolean => MISSING_BUILDER.test(result.stderr + result.stdout);

/** What buildx says when asked to create a builder whose name a builder has already. */
export const isExistingBuilder = (result: RunResult): boolean => /existing instance/i.test(result.stderr + result.stdout);

/**
 * A builder that is not there, created and started by one `buildx create --bootstrap`: one buildx
 * start fewer than a create and an `inspect --bootstrap`, which also asks the started BuildKit for
 * its platforms (about 0.2 s less on the hosted-agent engine). It is recorded as the job's to
 * remove before the create starts, so that a job stopped while the BuildKit image is pulled still
 * has it removed; the record is taken back when the create made nothing. Undefined when a builder
 * of that name exists already (the job runs again, or another job created it first), which is then
 * reused as any other.
 */
async function createStarted(
  docker: DockerCli,
  config: BuilderSpec,
  name: string,
  onCreated: (name: string | undefined) => void,
): Promise<Builder | undefined> {
  const args = createBuilderArgs(config, name);
  args.splice(2, 0, '--bootstrap'); // buildx create --bootstrap --name …
  onCreated(name);
  const result = await docker.run(args, { echo: true });
  if (result.code === 0) return { name, created: true };
  if (isExistingBuilder(result)) {
    onCreated(undefined);
    return undefined;
  }
  // Created but not started, the builder is still the job's to remove; not created, there is nothing to remove.
  if ((await docker.run(['buildx', 'inspect', name])).code !== 0) onCreated(undefined);
  throw new BuilderError(explain(`docker buildx create --bootstrap --name ${name}`, result));
}

/** How often, and how far apart, a bootstrap that lost a race is tried again. */
export const BOOTSTRAP_RETRY = { attempts: 3, delayMs: 1000 };

/** What docker says to the loser of two jobs that start one builder at once. */
export const isBootstrapRace = (result: RunResult): boolean =>
  /already in use|already exists|Conflict\./i.test(result.stderr + result.stdout);

/**
 * `buildx inspect --bootstrap`, tried again when it lost a race: two jobs that start one builder
 * at once (a builder an agent keeps, or a shared builderName) both create its container, and the
 * one that loses the race ("is already in use") finds it started on the next try. With `mayBeMissing`,
 * buildx's "no builder found" is not shown in the log: the caller creates the builder then.
 */
async function bootstrapBuilder(docker: DockerCli, name: string, mayBeMissing = false): Promise<RunResult> {
  const echo = mayBeMissing ? (line: string): boolean => !MISSING_BUILDER.test(line) : true;
  let result = await docker.run(['buildx', 'inspect', '--bootstrap', name], { echo });
  for (let attempt = 1; result.code !== 0 && isBootstrapRace(result) && attempt < BOOTSTRAP_RETRY.attempts; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, BOOTSTRAP_RETRY.delayMs));
    result = await docker.run(['buildx', 'inspect', '--bootstrap', name], { echo });
  }
  return result;
}

/**
 * Bounds the state of a builder that the agent keeps: `buildx prune --all --keep-storage`, which
 * removes the least recently used records until the builder holds no more than `keepStorage`.
 */
export async function pruneBuilder(docker: DockerCli, name: string, keepStorage: string): Promise<RunResult> {
  return docker.run(['buildx', 'prune', '--builder', name, '--all', '--force', '--keep-storage', keepStorage], { echo: true });
}

export async function removeBuilder(docker: DockerCli, name: string): Promise<RunResult> {
  return docker.run(['buildx', 'rm', name], { echo: true });
}
