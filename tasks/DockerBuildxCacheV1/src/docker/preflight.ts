import type { Config, Driver } from '../config/types';
import { loc } from '../task/messages';
import { errorTail, type DockerCli } from './cli';
import { mayBeDocker } from './driver';
import { compareVersions } from './install';

/** The oldest buildx whose flags this task uses (`--metadata-file`, cache `compression=`, `--builder`). */
export const MIN_BUILDX = '0.10.0';
/** From this buildx on, a local cache export takes `reset=true` and drops the blobs it no longer reaches itself. */
export const RESET_EXPORT_BUILDX = '0.35.0';

export class PreflightError extends Error {
  override name = 'PreflightError';
}

export interface Versions {
  readonly client?: string;
  readonly server?: string;
}

/** `github.com/docker/buildx v0.19.2 1a2b3c` or, from a distribution, `github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3`. */
export function parseBuildxVersion(text: string): string | undefined {
  return /buildx v?(\d+\.\d+\.\d+)/.exec(text)?.[1];
}

/** Whether `docker info` shows the containerd image store, which the docker driver needs to export cache. */
export function hasContainerdStore(driverStatus: string): boolean {
  return /io\.containerd\.snapshotter\.v1/.test(driverStatus);
}

export interface Gates {
  /** False when the builder cannot export cache: the build then runs without exporting it. */
  readonly cacheExport: boolean;
  /** True when buildx drops stale blobs from a local cache export itself (`reset=true`). */
  readonly resetOnExport: boolean;
  readonly warnings: readonly string[];
}

/**
 * What the task may ask of this buildx and engine with the driver chosen. A buildx older than the
 * task needs is an error that names `buildxVersion` as the fix; a feature the engine lacks is a
 * warning, never silent.
 */
export function gates(config: Config, driver: Driver, buildx: string, containerdStore: boolean | undefined): Gates {
  if (compareVersions(buildx, MIN_BUILDX) < 0) throw new PreflightError(loc('PreflightBuildxTooOld', buildx, MIN_BUILDX, MIN_BUILDX));
  const warnings: string[] = [];
  const exporting = config.cache.backend !== 'none' && config.cache.save !== 'never';
  let cacheExport = exporting;
  if (exporting && driver === 'docker' && containerdStore === false) {
    warnings.push(loc('WarnNoContainerdStore'));
    cacheExport = false;
  }
  return { cacheExport, resetOnExport: cacheExport && compareVersions(buildx, RESET_EXPORT_BUILDX) >= 0, warnings };
}

/** What the engine and buildx are: facts only; the driver and the gates are decided from them. */
export interface Preflight {
  readonly versions: Versions;
  readonly buildx: string;
  /** Asked only when the driver depends on it (the docker driver, or `auto`); undefined otherwise or when the engine did not say. */
  readonly containerdStore?: boolean;
  /** The engine's image store whatever the driver (containerd: true), for a loaded image's ID; undefined when the engine did not say. */
  readonly engineContainerdStore?: boolean;
  /** The engine's host name (`docker info`'s Name), to tell an engine on this machine; undefined when the engine did not say. */
  readonly engineName?: string;
  /** Lines for the log's preflight group. */
  readonly report: readonly string[];
}

/** The engine as docker sees it: where it is, for the message when it cannot be reached. */
export function engineAddress(): string {
  return (
    process.env.DOCKER_HOST ??
    (process.env.DOCKER_CONTEXT !== undefined ? `the docker context ${process.env.DOCKER_CONTEXT}` : 'unix:///var/run/docker.sock')
  );
}

/** What one `docker info --format '{{json .}}'` says: the engine, the CLI, its buildx plugin and the image store. */
export interface DockerInfo {
  readonly versions: Versions;
  /** The buildx plugin's version, when the CLI lists a buildx plugin it could run (ClientInfo.Plugins). */
  readonly buildx?: string;
  /** DriverStatus, as `docker info --format '{{json .DriverStatus}}'` gives it; undefined when the engine did not say. */
  readonly driverStatus?: string;
  /** Name: the host name of the engine's machine. */
  readonly name?: string;
}

/**
 * `docker info --format '{{json .}}'`: ServerVersion is empty when no engine answered (docker then
 * still prints the client's part and exits with 1); a CLI older than ClientInfo lists no plugins.
 */
export function parseDockerInfo(json: string): DockerInfo {
  try {
    const v = JSON.parse(json) as {
      ServerVersion?: string;
      DriverStatus?: unknown;
      Name?: unknown;
      ClientInfo?: { Version?: string; Plugins?: { Name?: string; Version?: string; Err?: unknown }[] | null };
    };
    const plugin = v.ClientInfo?.Plugins?.find((p) => p.Name === 'buildx' && p.Err === undefined);
    return {
      versions: { client: v.ClientInfo?.Version || undefined, server: v.ServerVersion || undefined },
      buildx: /^v?(\d+\.\d+\.\d+)/.exec(plugin?.Version ?? '')?.[1],
      driverStatus: Array.isArray(v.DriverStatus) ? JSON.stringify(v.DriverStatus) : undefined,
      ...(typeof v.Name === 'string' && v.Name !== '' ? { name: v.Name } : {}),
    };
  } catch {
    return { versions: {} };
  }
}

/**
 * Docker client and server, buildx and where it came from, and the engine's image store when the driver depends on it.
 * One `docker info` answers all of them (a start of the docker CLI costs about as much as the answer); `buildx version`
 * runs only when the CLI lists no buildx plugin it could run, for the version or for the error.
 */
export async function preflight(
  docker: DockerCli,
  config: Config,
  buildxSource: string,
  /** The image store the engine's API gave before `docker info` (docker/engine-api.ts), which the driver was chosen by. */
  apiStore: Promise<boolean | undefined> = Promise.resolve(undefined),
): Promise<Preflight> {
  const result = await docker.run(['info', '--format', '{{json .}}']);
  const info = parseDockerInfo(result.stdout.trim());
  const versions = info.versions;
  // Every driver but the remote and kubernetes ones builds on the engine; `auto` picks one of those.
  const needsEngine = (config.builder.driver !== 'remote' && config.builder.driver !== 'kubernetes') || config.output.kind === 'docker';
  if (versions.server === undefined && needsEngine) {
    throw new PreflightError(loc('PreflightNoEngine', engineAddress(), errorTail(result)));
  }
  let buildx = info.buildx;
  if (buildx === undefined) {
    const buildxVersion = await docker.run(['buildx', 'version']);
    buildx = parseBuildxVersion(buildxVersion.stdout);
    if (buildxVersion.code !== 0 || buildx === undefined) {
      throw new PreflightError(loc('PreflightNoBuildx', errorTail(buildxVersion)));
    }
  }
  const engineContainerdStore = (await apiStore) ?? (info.driverStatus === undefined ? undefined : hasContainerdStore(info.driverStatus));
  const containerdStore = mayBeDocker(config.builder) ? engineContainerdStore : undefined;
  const report = [
    loc('PreflightDocker', versions.client ?? '?', versions.server ?? loc('PreflightNotReachable', engineAddress())),
    loc('PreflightBuildx', buildx, buildxSource),
    ...(containerdStore === undefined ? [] : [loc('PreflightStore', containerdStore ? 'containerd' : 'classic')]),
  ];
  return { versions, buildx, containerdStore, engineContainerdStore, engineName: info.name, report };
}
