import * as path from 'path';
import { formatSeconds, info, warn } from './agent';
import { defaultBuilderName, ensureBuilder, type Builder } from './buildx/builder';
import { buffered, type Docker, type DockerCli } from './buildx/docker';
import { installBuildx, InstallError, RELEASES } from './buildx/install';
import { preflight, type Preflight } from './buildx/preflight';
import type { Config } from './config';
import { InputError } from './config';
import { registryLogin } from './auth/login';
import { createDockerConfig, installPlugin } from './docker-config';
import { loc } from './loc';

/** The job's record of what the post-job step must undo; see main-step. */
export interface Recorder {
  update(patch: { removeBuilder?: string; dockerConfig?: string }): void;
  timed<T>(title: string, work: () => Promise<T>, describe?: (result: T) => string): Promise<T>;
}

/**
 * The docker this job runs. With neither `buildxVersion` nor `containerRegistry` set, the agent's
 * own. Otherwise one with a job-private DOCKER_CONFIG (deleted by the post-job step): with the
 * pinned buildx from the agent's tool cache (downloaded and verified when missing) as its plugin,
 * and logged in to the registry of the connection.
 */
export async function dockerSession(config: Config, docker: Docker, tempRoot: string, job: Recorder): Promise<{ docker: Docker; source: string }> {
  const version = config.builder.buildxVersion;
  const connection = config.output.registryConnection;
  if (version === undefined && connection === undefined) return { docker, source: loc('BuildxInstalledPlugin') };
  const base = config.builder.buildxDownloadUrl ?? RELEASES;
  const installed =
    version === undefined
      ? undefined
      : await job.timed(loc('PhaseBuildx'), () => installBuildx(version, base), (i) => loc('BuildxInstalled', i.version, i.source)).catch((err: unknown) => {
          if (err instanceof InstallError) throw new InputError('buildxVersion', loc('BuildxInstallFailed', version, err.message, base));
          throw err;
        });
  const dockerConfig = await createDockerConfig(path.join(tempRoot, 'docker-config'));
  job.update({ dockerConfig });
  if (installed !== undefined) await installPlugin(dockerConfig, installed.path);
  const session = docker.withConfig(dockerConfig);
  if (connection !== undefined) {
    await job.timed(loc('PhaseLogin'), () => registryLogin(session, connection), (l) => loc('LoggedIn', l.registry, l.method));
  }
  return { docker: session, source: installed?.source ?? loc('BuildxInstalledPlugin') };
}

export interface Setup {
  /** Shows the preflight and builder groups, once both are done. */
  show(): Promise<{ preflight: Preflight; builder: Builder }>;
  /** After a failure elsewhere: waits for both, and shows what they logged. */
  flush(): Promise<void>;
}

/**
 * Starts the preflight and the builder, neither of which depends on the cache, so that they run
 * while the cache is restored. The docker driver's builder is only looked at, so that runs beside
 * the preflight; a builder that may be created waits for the preflight to pass. Their log is kept
 * and shown in their own groups afterwards, the builder's only once the preflight passed.
 */
export function startSetup(docker: DockerCli, config: Config, job: Recorder, buildxSource: string, jobId?: string, agentName?: string): Setup {
  const preflightLog: string[] = [];
  const builderLog: string[] = [];
  const checked = preflight(buffered(docker, preflightLog), config, buildxSource);
  const startBuilder = async (): Promise<Builder & { ms: number }> => {
    const start = Date.now();
    const builder = await ensureBuilder(buffered(docker, builderLog), config.builder, defaultBuilderName(jobId, agentName), (name) => {
      if (config.builder.remove) job.update({ removeBuilder: name });
    });
    return { ...builder, ms: Date.now() - start };
  };
  const looked = config.builder.driver === 'docker' ? startBuilder() : undefined;
  const ready = checked.then(() => looked ?? startBuilder());
  checked.catch(() => undefined);
  looked?.catch(() => undefined);
  ready.catch(() => undefined);
  const print = (lines: string[]): void => {
    for (const line of lines.splice(0)) console.log(line);
  };

  return {
    async show() {
      const p = await job.timed(
        loc('PhasePreflight'),
        async () => {
          const result = await checked.finally(() => {
            print(preflightLog);
          });
          info(result.report.join('\n'));
          return result;
        },
        (r) => loc('PreflightDone', r.versions.server ?? '-', r.buildx),
      );
      for (const warning of p.gates.warnings) warn(warning);
      const builder = await job.timed(
        loc('PhaseBuilder'),
        () =>
          ready.finally(() => {
            print(builderLog);
          }),
        (b) => {
          const platforms = b.platforms.join(', ') || '-';
          return b.created ? loc('BuilderCreated', b.name, config.builder.driver, platforms, formatSeconds(b.ms)) : loc('BuilderReused', b.name, config.builder.driver, platforms, formatSeconds(b.ms));
        },
      );
      return { preflight: p, builder };
    },
    async flush() {
      await Promise.allSettled([checked, ready, looked]);
      print(preflightLog);
      print(builderLog);
    },
  };
}
