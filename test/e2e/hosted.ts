import * as assert from 'assert/strict';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { envKey, parseCommands, runStep, stepEnv, TASK_DIR, transcript, type JobResult, type StepResult } from '../../scripts/agent';
import { buildkitdToml, dockerConfigWith, provisionHostedEngine, type HostedEngine } from '../../scripts/hosted-engine';
import { tempDir } from '../helpers';
import { DEPS_FILES, DEPS_STEP, depsDockerfile, Workspace, type WorkspaceJob } from './workspace';

/**
 * The hosted-agent engine for a suite (scripts/hosted-engine.sh). Where it cannot be had (no
 * ../shared/buildkit, or no root to provision it) the suite is skipped with a notice in the test
 * log; under CI=true it must run, so that is a failure instead.
 */
export function hostedEngineOrSkip(suite: Mocha.Context): HostedEngine {
  const engine = provisionHostedEngine();
  if ('unavailable' in engine) {
    if (process.env.CI === 'true') throw new Error(`CI=true, so the hosted-agent suites must run, but: ${engine.unavailable}`);
    console.log(`\n    NOTICE: the hosted-agent suite "${suite.test?.parent?.title ?? ''}" is skipped: ${engine.unavailable}\n`);
    suite.skip();
  }
  return engine;
}

/** Which buildx a job's agent has: the current one from ../shared, or Debian's 0.13.1. */
export type BuildxSide = 'current' | 'debian';

/** A Dockerfile as users write them, from Docker Hub's busybox (through the mirror). */
export const HOSTED_DOCKERFILE = depsDockerfile('busybox', 2);
export { DEPS_STEP };
export const HOSTED_FILES = { ...DEPS_FILES, Dockerfile: HOSTED_DOCKERFILE };

/** The Agent.CloudId of the emulated Microsoft-hosted agents. */
export const HOSTED_CLOUD_ID = 'c3d2d4d6-6a6e-4c7a-9f2a-0b1a2c3d4e5f';

/** Names of builder containers and volumes that jobs of this task make: buildx_buildkit_<builder>0[_state]. */
const TASK_BUILDERS = 'buildx_buildkit_buildx-cache-';

/** Agents on the hosted-agent engine: its DOCKER_HOST, an agent docker config with either buildx, and the builder inputs that reach the mirror. */
export class HostedAgents {
  private static readonly made: HostedAgents[] = [];
  /** A suite's own folder, outlasting each test's temporary folders; `disposeAll()` removes it. */
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbxc-e2e-hosted-'));
  readonly buildkitdConfig = path.join(this.dir, 'buildkitd.toml');

  constructor(
    readonly engine: HostedEngine,
    /** Registries besides the mirror that builders reach over plain HTTP (the test registry). */
    plainHttp: readonly string[] = [],
  ) {
    fs.writeFileSync(this.buildkitdConfig, buildkitdToml(engine.mirror, plainHttp));
    HostedAgents.made.push(this);
  }

  /** Removes the folders of every HostedAgents made so far: for a suite's `after`, which runs also when the suite was skipped. */
  static disposeAll(): void {
    for (const agents of HostedAgents.made.splice(0)) fs.rmSync(agents.dir, { recursive: true, force: true });
  }

  /**
   * The environment of an agent whose docker config has the `side` buildx. A Microsoft-hosted
   * agent (the default) has what such an agent tells a task: Agent.CloudId, and the runner image's
   * ImageOS and ImageVersion; a self-hosted one has neither.
   */
  env(side: BuildxSide, kind: 'hosted' | 'selfHosted' = 'hosted'): NodeJS.ProcessEnv {
    const plugin = side === 'current' ? this.engine.buildxPlugin : this.engine.debianBuildx;
    const hosted = kind === 'hosted' ? { AGENT_CLOUDID: HOSTED_CLOUD_ID, ImageOS: 'ubuntu24', ImageVersion: '20251123.1.0' } : {};
    return { DOCKER_HOST: this.engine.dockerHost, DOCKER_CONFIG: dockerConfigWith(plugin, tempDir('dbxc-e2e-docker-config-')), ...hosted };
  }

  /**
   * What a hosted agent's builder needs here: the host's network, where the mirror is, and a
   * buildkitd.toml that mirrors docker.io. On a real hosted agent neither is needed.
   */
  get builderInputs(): Record<string, string> {
    return { driverOptions: 'network=host', buildkitdConfig: this.buildkitdConfig };
  }

  /**
   * A workspace on a hosted agent, or on a self-hosted one, which keeps the engine's images between its
   * jobs; every job states the driver it depends on (auto) and reaches the mirror.
   */
  workspace(
    side: BuildxSide,
    files: Record<string, string> = HOSTED_FILES,
    inputs: Record<string, string> = {},
    kind: 'hosted' | 'selfHosted' = 'hosted',
  ): Workspace {
    return new Workspace(files, {
      env: this.env(side, kind),
      inputs: { driver: 'auto', ...this.builderInputs, ...inputs },
      keepsEngine: kind === 'selfHosted',
    });
  }
}

/**
 * A suite's agents on the hosted-agent engine: its `before` provisions the engine (or skips the
 * suite, as hostedEngineOrSkip does) and makes the agents, its `after` removes their folders. Call
 * it in a `describe`; the engine and the agents are there from the suite's first test on.
 */
export function hostedAgentsForSuite(plainHttp: readonly string[] = []): { readonly engine: HostedEngine; readonly agents: HostedAgents } {
  let engine: HostedEngine | undefined;
  let agents: HostedAgents | undefined;
  before(function () {
    engine = hostedEngineOrSkip(this);
    agents = new HostedAgents(engine, plainHttp);
  });
  after(() => HostedAgents.disposeAll());
  const ready = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error("the hosted agents are made in the suite's before hook");
    return v;
  };
  return {
    get engine() {
      return ready(engine);
    },
    get agents() {
      return ready(agents);
    },
  };
}

/** The buildx version a workspace's docker reports. */
export function buildxVersionOf(w: Workspace): string {
  return /buildx v?(\d+\.\d+\.\d+)/.exec(w.docker(['buildx', 'version']))?.[1] ?? '?';
}

/**
 * After a job: the builder the task created is gone, from the engine (container and volume) and
 * from the agent's docker config; no container or volume of any task builder is left.
 */
export function assertNoBuilderLeft(w: Workspace, builder: string | undefined): void {
  const containers = w.docker(['ps', '-a', '--format', '{{.Names}}', '--filter', `name=${TASK_BUILDERS}`]).trim();
  const volumes = w.docker(['volume', 'ls', '--format', '{{.Name}}', '--filter', `name=${TASK_BUILDERS}`]).trim();
  assert.equal(containers, '', 'no builder container is left');
  assert.equal(volumes, '', 'no builder volume is left');
  const config = w.agent.env?.DOCKER_CONFIG;
  if (builder !== undefined && config !== undefined)
    assert.ok(
      !fs.existsSync(path.join(config, 'buildx', 'instances', builder)),
      `builder ${builder} is gone from the agent's docker config`,
    );
}

/**
 * A Microsoft-hosted job's builder, which its post-job step left to the machine (docker/lifetime.ts
 * goesWithMachine): the step said so and removed nothing, and the builder's container was there
 * after the job (the workspace then removed it, as the machine's end would: Workspace.job), and
 * nothing else of a task builder is left.
 */
export function assertBuilderLeftToMachine(w: Workspace, r: WorkspaceJob): void {
  const builder = r.main.outputs.builderName;
  assert.match(builder ?? '', /^buildx-cache-[0-9a-f]{16}$/);
  assert.deepEqual(r.leftToMachine, { builder, present: true }, transcript(r.post));
  assert.doesNotMatch(r.post.stdout, /Removed builder|docker buildx rm/);
  assertNoBuilderLeft(w, builder);
}

/** The one `[command]` line that ran `docker buildx build`. */
export function buildCommand(step: StepResult): string {
  return step.stdout.split('\n').find((l) => l.startsWith('[command]') && l.includes(' buildx build ')) ?? '';
}

/** The task's `Builder driver: …` line in the Builder group (`docker buildx inspect` prints `Driver:` lines of its own). */
export function driverLine(step: StepResult): string {
  return /^Builder driver: (.*)$/m.exec(step.stdout)?.[1] ?? '';
}

export const UNITS = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9 } as const;

/** The bytes of a summary row such as `Served to BuildKit | 1.2 MB in 3 blobs`; undefined without that row. */
export function rowBytes(summary: string, row: string): number | undefined {
  const m = new RegExp(`\\| ${row} \\| ([\\d.]+) (B|KB|MB|GB) in (\\d+) blobs`).exec(summary);
  return m === null ? undefined : Number(m[1]) * UNITS[m[2] as keyof typeof UNITS];
}

/** The image the engine pulled from the task's registry instead of --load; 0 without that row. */
export const pulledBytes = (summary: string): number => rowBytes(summary, 'Pulled by the engine') ?? 0;

export function summaryOf(job: JobResult): string {
  const upload = job.post.commands.find((c) => c.name === 'task.uploadsummary');
  assert.ok(upload, 'the post-job step uploaded a summary');
  return fs.readFileSync(upload.data, 'utf8');
}

/**
 * A job whose main step is killed (SIGKILL, as an agent does after a cancel or a timeout) when its
 * output first matches `when`; the post-job step then runs, as it always does, with the task
 * variables the main step had set and the job canceled. What the main step had started (the
 * docker CLI) is left running, as after a real kill, and ended only after the post-job step.
 */
export async function killedJob(w: Workspace, inputs: Record<string, string>, when: RegExp): Promise<{ main: string; post: StepResult }> {
  const allInputs = { dockerfile: 'Dockerfile', imageName: 'dbxc-e2e/killed', tags: 'e2e', ...w.agent.inputs, ...inputs };
  const variables = w.variables();
  const env = stepEnv(allInputs, variables, w.agent.env);
  const child = spawn(process.execPath, [path.join(TASK_DIR, 'dist', 'main.js')], { env, cwd: w.ws, detached: true });
  let stdout = '';
  let killed = false;
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (!killed && when.test(stdout)) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  await exited;
  assert.ok(killed, `the main step ended before ${String(when)}:\n${stdout}`);
  const postEnv = stepEnv(allInputs, { ...variables, 'Agent.JobStatus': 'Canceled' }, w.agent.env);
  for (const c of parseCommands(stdout).filter((c) => c.name === 'task.settaskvariable'))
    postEnv[`VSTS_TASKVARIABLE_${envKey(c.props.variable ?? '')}`] = c.data;
  try {
    const post = await runStep('post', postEnv, w.ws);
    w.machineEnd(post);
    return { main: stdout, post };
  } finally {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // The main step's process group has ended already.
    }
  }
}
