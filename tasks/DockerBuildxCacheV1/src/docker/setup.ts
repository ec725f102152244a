import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { formatSeconds, info, warn } from '../task/agent';
import { defaultBuilderName, ensureBuilder, type Builder } from './builder';
import { buffered, type Docker, type DockerCli } from './cli';
import { chooseDriver, describeDriver, mayBeDocker, type DriverChoice } from './driver';
import { neutralise } from '../task/sanitize';
import { Background } from '../util/background';
import { agentBuilderName, chooseLifetime, describeLifetime, goesWithMachine, type AgentFacts } from './lifetime';
import { installBuildx, InstallError, RELEASES } from './install';
import { gates, preflight, type Gates, type Preflight } from './preflight';
import type { EngineStore } from './engine-api';
import type { Config, Driver } from '../config/types';
import { InputError } from '../config/source';
import { registryLogin } from './login';
import { createDockerConfig, installPlugin } from './config-dir';
import { Input } from '../task/inputs';
import { loc } from '../task/messages';
import type { SummaryData } from '../summary';

/** The job's record of what the post-job step must undo, and of the summary; see main-step. */
export interface Recorder {
  update(
    patch: {
      removeBuilder?: string;
      leaveBuilder?: boolean;
      keepBuilder?: { name: string; keepStorage?: string };
      dockerConfig?: string;
    },
    summary?: Partial<SummaryData>,
  ): void;
  timed<T>(title: string, work: () => Promise<T>, describe?: (result: T) => string): Promise<T>;
}

/**
 * The docker this job runs. With neither `buildxVersion` nor `containerRegistry` set, the agent's
 * own. Otherwise one with a job-private DOCKER_CONFIG (deleted by the post-job step): with the
 * pinned buildx from the agent's tool cache (downloaded and verified when missing) as its plugin,
 * and logged in to the registry of the connection.
 */
export async function dockerSession(
  config: Config,
  docker: Docker,
  tempRoot: string,
  job: Recorder,
): Promise<{ docker: Docker; source: string }> {
  const version = config.builder.buildxVersion;
  const connection = config.output.registryConnection;
  if (version === undefined && connection === undefined) return { docker, source: loc('BuildxInstalledPlugin') };
  const base = config.builder.buildxDownloadUrl ?? RELEASES;
  const installed =
    version === undefined
      ? undefined
      : await job
          .timed(
            loc('PhaseBuildx'),
            () => installBuildx(version, base),
            (i) => loc('BuildxInstalled', i.version, i.source),
          )
          .catch((err: unknown) => {
            if (err instanceof InstallError)
              throw new InputError(Input.buildxVersion, loc('BuildxInstallFailed', version, err.message, base));
            throw err;
          });
  const dockerConfig = await createDockerConfig(path.join(tempRoot, 'docker-config'));
  job.update({ dockerConfig });
  if (installed !== undefined) await installPlugin(dockerConfig, installed.path);
  const session = docker.withConfig(dockerConfig);
  if (connection !== undefined) {
    await job.timed(
      loc('PhaseLogin'),
      () => registryLogin(session, connection),
      (l) => loc('LoggedIn', l.registry, l.method),
    );
  }
  return { docker: session, source: installed?.source ?? loc('BuildxInstalledPlugin') };
}

export interface SetupResult {
  readonly preflight: Preflight;
  /** The driver the job builds with, and why. */
  readonly driver: DriverChoice;
  /** What this buildx, engine and driver allow. */
  readonly gates: Gates;
  readonly builder: Builder;
}

export interface Setup {
  /** Shows the preflight and builder groups, once both are done. */
  show(): Promise<SetupResult>;
  /**
   * Waits for work that runs beside the setup. When it fails, the setup is waited for and what it
   * logged is shown before the failure goes on, so that a builder it created is in the post step's
   * state by then.
   */
  during<T>(work: Promise<T>): Promise<T>;
  /**
   * The driver the job builds with, as soon as it is known: at once, unless `auto` waits for the
   * image store (the engine's API's, else the preflight's); undefined when neither said it and the preflight failed.
   */
  driver(): Promise<Driver | undefined>;
}

/** The job and the agent it runs on, which name the builder and decide how long it lives. */
export type JobAgent = AgentFacts & { readonly jobId?: string };

/**
 * The builder a job builds with, for a driver other than docker: `builderName` when given; else
 * one the agent keeps (lifetime `agent`), named for the agent and the builder's settings; else one
 * of the job's own. Only a builder of the job's own may be removed after the job.
 */
function planBuilder(
  config: Config,
  driver: Driver,
  agent: JobAgent,
): { name: string; kept: boolean; lifetime?: string; unique?: boolean } {
  const b = config.builder;
  if (b.name !== undefined) return { name: b.name, kept: false };
  const choice = chooseLifetime(b.lifetime, agent);
  if (choice.lifetime === 'job')
    return { name: defaultBuilderName(agent.jobId, agent.name), kept: false, lifetime: describeLifetime(choice), unique: true };
  const buildkitdConfigText = b.buildkitdConfig === undefined ? undefined : fs.readFileSync(b.buildkitdConfig, 'utf8');
  const name = agentBuilderName(agent, {
    driver,
    driverOptions: b.driverOptions,
    buildkitdFlags: b.buildkitdFlags,
    buildkitdConfigText,
    endpoint: b.endpoint,
    hostNetwork: b.hostNetwork,
  });
  return { name, kept: true, lifetime: describeLifetime(choice) };
}

/**
 * The preflight's facts, the driver that `auto` becomes from them, and what that driver allows. The
 * image store the engine's API gave first, when it did, is the one the driver was chosen by.
 */
async function decide(
  docker: DockerCli,
  config: Config,
  buildxSource: string,
  early: Promise<boolean | undefined>,
): Promise<Omit<SetupResult, 'builder'>> {
  const p = await preflight(docker, config, buildxSource, early);
  const driver = chooseDriver(config.builder, p.containerdStore);
  return { preflight: p, driver, gates: gates(config, driver.driver, p.buildx, p.containerdStore) };
}

/** The builder of a driver, found or created, with what the post-job step must do about it recorded as soon as it is known. */
async function startBuilder(
  docker: DockerCli,
  config: Config,
  job: Recorder,
  agent: JobAgent,
  driver: Driver,
  log: string[],
): Promise<Builder & { ms: number }> {
  const start = Date.now();
  const plan = driver === 'docker' ? { name: 'default', kept: false } : planBuilder(config, driver, agent);
  if (plan.lifetime !== undefined) log.push(neutralise(loc('LifetimeChosen', plan.lifetime)));
  // Told the builder's name once this job may have created it, and undefined when it did not after all.
  const onCreated = (name: string | undefined): void => {
    if (!plan.kept && config.builder.remove) job.update({ removeBuilder: name });
  };
  // A name unique to the job is created without a look for it first.
  const builder = await ensureBuilder(buffered(docker, log), { ...config.builder, driver }, plan.name, onCreated, plan.unique === true);
  // The post-job step prunes a builder the agent keeps, once it is there, whatever happens to the job after;
  // not a remote one, whose BuildKit daemon is not the agent's to prune.
  if (plan.kept)
    job.update({ keepBuilder: { name: plan.name, keepStorage: driver === 'remote' ? undefined : config.builder.keepStorage } });
  return { ...builder, ms: Date.now() - start };
}

/** The builder phase's closing line. */
function describeBuilder(b: Builder & { ms: number }, driver: Driver): string {
  if (b.platforms === undefined)
    return b.created ? loc('BuilderStarted', b.name, driver, formatSeconds(b.ms)) : loc('BuilderEngine', b.name);
  const platforms = b.platforms.join(', ') || '-';
  return b.created
    ? loc('BuilderCreated', b.name, driver, platforms, formatSeconds(b.ms))
    : loc('BuilderReused', b.name, driver, platforms, formatSeconds(b.ms));
}

/**
 * Starts the preflight and the builder, neither of which depends on the cache, so that they run
 * while the cache is restored. The preflight gathers the facts; the driver (for `auto`) and the
 * gates are decided from them. The docker driver's builder is only looked at, so that runs beside
 * the preflight, also for `auto` when it may become `docker`. A driver that the preflight's facts
 * cannot change (any but `docker`, or `auto` with an input that only a builder of its own takes)
 * has its builder started beside the preflight too; only a builder whose driver waits for the image
 * store waits for it: for the engine's API's answer (`engine`), else for the preflight's. Their log
 * is kept and shown in their own groups afterwards, the builder's only once the preflight passed: a
 * failed preflight is the error, whatever the builder did.
 */
export function startSetup(
  docker: DockerCli,
  config: Config,
  job: Recorder,
  buildxSource: string,
  agent: JobAgent = {},
  engine: Promise<EngineStore | undefined> = Promise.resolve(undefined),
): Setup {
  const preflightLog: string[] = [];
  const lookLog: string[] = [];
  const builderLog: string[] = [];
  const early = mayBeDocker(config.builder) ? engine.then((e) => e?.containerdStore).catch(() => undefined) : Promise.resolve(undefined);
  const checked = new Background(decide(buffered(docker, preflightLog), config, buildxSource, early));
  // The driver `auto` becomes as soon as the image store is known: from the engine's API when it answered, else from the preflight.
  const driverKnown = early.then((store) =>
    store === undefined ? checked.result().then(({ driver }) => driver.driver) : chooseDriver(config.builder, store).driver,
  );
  const builderOf = (driver: Driver, log: string[]): Promise<Builder & { ms: number }> =>
    startBuilder(docker, config, job, agent, driver, log);
  const looked = mayBeDocker(config.builder) ? new Background(builderOf('docker', lookLog)) : undefined;
  const ready = new Background(
    looked === undefined
      ? builderOf(chooseDriver(config.builder, undefined).driver, builderLog)
      : driverKnown.then((driver) => (driver === 'docker' ? looked.result() : builderOf(driver, builderLog))),
  );
  const print = (lines: string[]): void => {
    for (const line of lines.splice(0)) console.log(line);
  };

  return {
    async show() {
      const decided = await job.timed(
        loc('PhasePreflight'),
        async () => {
          const result = await checked.result().finally(() => {
            print(preflightLog);
          });
          info(result.preflight.report.join('\n'));
          // A look at the engine's builder that `auto` did not need: it ran during the preflight.
          if (looked !== undefined && result.driver.driver !== 'docker') {
            await looked.done();
            print(lookLog);
          }
          return result;
        },
        (r) => loc('PreflightDone', r.preflight.versions.server ?? '-', r.preflight.buildx),
      );
      for (const warning of decided.gates.warnings) warn(warning);
      const driverText = describeDriver(decided.driver);
      job.update({}, { driver: driverText });
      const builder = await job.timed(
        loc('PhaseBuilder'),
        () => {
          info(loc('DriverChosen', driverText));
          return ready.result().finally(() => {
            print(decided.driver.driver === 'docker' ? lookLog : builderLog);
          });
        },
        (b) => describeBuilder(b, decided.driver.driver),
      );
      // A builder of the job's own that goes with this machine is left to it (see goesWithMachine).
      const { driver } = decided.driver;
      const { engineName } = decided.preflight;
      if (goesWithMachine({ agent, driver, endpoint: config.builder.endpoint, engineName, hostname: os.hostname() }))
        job.update({ leaveBuilder: true });
      return { ...decided, builder };
    },
    driver: async () =>
      looked === undefined
        ? chooseDriver(config.builder, undefined).driver
        : driverKnown.then(
            (d) => d,
            () => undefined,
          ),
    async during(work) {
      try {
        return await work;
      } catch (err) {
        await Promise.all([checked.done(), ready.done(), looked?.done()]);
        print(preflightLog);
        print(lookLog);
        print(builderLog);
        throw err;
      }
    },
  };
}
