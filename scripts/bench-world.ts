// What npm run bench runs against: the two kinds of agent (engines), a registry and Azurite of
// its own behind byte-counting proxies, the buildkitd.toml that builders reach them with, and the
// probes that time the task's step processes. Everything is on loopback, and everything it makes
// lives under out/bench and goes when the run ends.
import { spawn, type ChildProcess } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { EMULATOR_ACCOUNT, EMULATOR_KEY, PrivateAzurite } from './azurite';
import { ROOT } from './agent';
import { ensureEngine } from './engine';
import { buildkitdToml, dockerConfigWith, provisionHostedEngine, type HostedEngine } from './hosted-engine';
import { CountingProxy, dockerShim, freePort } from './measure';

export const OUT = path.join(ROOT, 'out', 'bench');
/** Every image the benchmark builds carries this label, so that it can remove them all and nothing else. */
export const BENCH_LABEL = 'dbxc-bench=1';
/**
 * `docker buildx build` on `builder` as every benchmark build runs it: plain progress (BuildKit's
 * vertex times are read from it) and the bench label (so that the run removes its images), then
 * `args` (output and cache flags) and the build context.
 */
export function buildxBuildArgs(builder: string, args: readonly string[], context: string): string[] {
  return ['buildx', 'build', '--builder', builder, '--progress', 'plain', '--label', BENCH_LABEL, ...args, context];
}
/** Builders that the benchmark creates are named dbxc-bench-…; their containers and volumes start with this. */
export const BUILDER_CONTAINERS = 'buildx_buildkit_dbxc-bench-';

/** The result of a command run by the benchmark: its output and wall milliseconds. */
export interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/**
 * Runs a command without blocking the event loop (the counting proxies run in this process), and
 * throws unless it succeeds or `allowFail` is set.
 */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string; allowFail?: boolean } = {},
): Promise<Ran> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const r = { code: code ?? -1, stdout, stderr, ms: Date.now() - start };
      if (r.code !== 0 && opts.allowFail !== true) reject(new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${stderr.slice(-4000)}`));
      else resolve(r);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * The kinds of agent: a Microsoft-hosted agent (the hosted-agent engine, a new agent per job), a
 * self-hosted agent on the containerd image store (scripts/engine.sh), and a self-hosted agent on
 * the classic image store (the hosted-agent engine, but one agent that outlives its jobs).
 */
export const ENGINE_KINDS = ['hosted', 'self-hosted', 'self-hosted-classic'] as const;
export type EngineKind = (typeof ENGINE_KINDS)[number];

/** The BuildKit image that docker-container builders run. */
export const BUILDKIT_IMAGE = 'moby/buildkit:buildx-stable-1';
/** The name prefix of the builder containers the task makes: buildx_buildkit_buildx-cache-…0 (a kept builder: buildx-cache-agent-…). */
export const TASK_BUILDER_CONTAINERS = 'buildx_buildkit_buildx-cache-';

/** One kind of agent, with its engine. */
export interface Engine {
  readonly kind: EngineKind;
  /** For the report. */
  readonly title: string;
  readonly dockerHost: string;
  /** The FROM image of the workloads, which every builder on this engine reaches. */
  readonly base: string;
  /** `docker buildx create` options of a docker-container builder here. */
  readonly builderFlags: readonly string[];
  /**
   * What the task needs here besides its backend's inputs (reaching the loopback mirror), for a job
   * whose cache goes through the folder. A job whose cache goes direct needs none: the task gives
   * its builder the host's network itself, and the agent's docker config has the mirror as buildx's
   * default BuildKit config (`buildkitd.default.toml`); so those jobs run the default path
   * (`driver: auto` asks the engine for its image store) as on a real agent.
   */
  readonly taskInputs: Readonly<Record<string, string>>;
  /**
   * The agent variables that tell a task what kind of agent runs it, as Azure Pipelines sets them:
   * for job `job` of the pipeline `pipeline` (each pipeline starts on an agent of its own).
   */
  agentVariables(job: number, pipeline: string): Record<string, string>;
  /** A new agent per job (Microsoft-hosted), or one agent that outlives its jobs (self-hosted). */
  readonly newAgentPerJob: boolean;
  /**
   * The classic image store: the engine's own BuildKit cannot export a cache, so the task and the
   * kept-state limit use a `docker-container` builder (the containerd store: the engine's own).
   */
  readonly classicStore: boolean;
}

/** The registry of the run, reached through its proxy. */
export interface BenchRegistry {
  /** host:port of the proxy, which is what every client uses. */
  readonly host: string;
  readonly user: string;
  readonly password: string;
  readonly dataDir: string;
  readonly proxy: CountingProxy;
}

export interface BenchAzurite {
  /** The blob endpoint through the proxy. */
  readonly blobUrl: string;
  readonly proxy: CountingProxy;
}

/** A docker-registry of the run's own on an ephemeral loopback port, with htpasswd authentication; its data under out/bench. */
class PrivateRegistry {
  private child?: ChildProcess;
  readonly user = 'bench';
  readonly password = crypto.randomBytes(12).toString('hex');
  port = 0;

  constructor(readonly dir: string) {}

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  async start(): Promise<void> {
    for (const cmd of ['docker-registry', 'htpasswd']) {
      if ((await run('sh', ['-c', `command -v ${cmd}`], { allowFail: true })).code !== 0)
        throw new Error(`${cmd} is missing: scripts/registry.sh up installs it (docker-registry and apache2-utils)`);
    }
    fs.mkdirSync(this.dataDir, { recursive: true });
    const htpasswd = await run('htpasswd', ['-Bbn', this.user, this.password]);
    fs.writeFileSync(path.join(this.dir, 'htpasswd'), htpasswd.stdout);
    this.port = await freePort();
    const config = path.join(this.dir, 'config.yml');
    fs.writeFileSync(
      config,
      [
        'version: 0.1',
        'log: { level: warn }',
        'storage:',
        `  filesystem: { rootdirectory: ${this.dataDir} }`,
        '  delete: { enabled: true }',
        `http: { addr: 127.0.0.1:${this.port} }`,
        'auth:',
        `  htpasswd: { realm: dbxc-bench, path: ${path.join(this.dir, 'htpasswd')} }`,
        '',
      ].join('\n'),
    );
    const log = fs.openSync(path.join(this.dir, 'registry.log'), 'w');
    this.child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    for (let i = 0; i < 80; i++) {
      const status = await fetch(`http://127.0.0.1:${this.port}/v2/`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 401) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`the bench registry did not answer: ${fs.readFileSync(path.join(this.dir, 'registry.log'), 'utf8').slice(-2000)}`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

/** Bytes of the blobs that a repository of the bench registry links to. */
export function registryRepoBytes(dataDir: string, repo: string): number {
  const v2 = path.join(dataDir, 'docker', 'registry', 'v2');
  const layers = path.join(v2, 'repositories', repo, '_layers', 'sha256');
  if (!fs.existsSync(layers)) return 0;
  let total = 0;
  for (const hex of fs.readdirSync(layers)) {
    const data = path.join(v2, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    if (fs.existsSync(data)) total += fs.statSync(data).size;
  }
  return total;
}

/** The variables of a self-hosted agent of one pipeline: a name and id of its own, the same in all its jobs, and no Agent.CloudId. */
function selfHostedAgent(prefix: string, pipeline: string): Record<string, string> {
  return {
    'Agent.Name': `${prefix}-${pipeline}`,
    'Agent.Id': String(parseInt(pipeline.slice(0, 6), 16)),
    'Agent.MachineName': 'bench-vm',
  };
}

/** The engines, services and probes of one run. */
export class World {
  readonly engines = new Map<EngineKind, Engine>();
  readonly toml = path.join(OUT, 'buildkitd.toml');
  readonly probeJs = path.join(ROOT, 'build', 'scripts', 'bench-probe.js');
  readonly shimDir = path.join(OUT, 'shim');
  hosted?: HostedEngine;
  registry?: BenchRegistry;
  azurite?: BenchAzurite;
  private privateRegistry?: PrivateRegistry;
  private privateAzurite?: PrivateAzurite;
  /** Images this run added to an engine that it removes at the end. */
  private readonly added: { dockerHost: string; image: string }[] = [];
  /** The task's builder containers on each engine (by DOCKER_HOST) before the run: any other is one a pipeline's agent kept, removed at the end. */
  private readonly taskBuildersBefore = new Map<string, Set<string>>();
  realDocker = 'docker';

  async start(kinds: readonly EngineKind[]): Promise<void> {
    fs.rmSync(OUT, { recursive: true, force: true });
    fs.mkdirSync(OUT, { recursive: true });
    this.realDocker = (await run('sh', ['-c', 'command -v docker'])).stdout.trim();
    dockerShim(this.shimDir, this.realDocker);
    // The hosted-agent engine brings the loopback mirror and the current buildx, which both kinds use.
    const hosted = provisionHostedEngine();
    if ('unavailable' in hosted) throw new Error(`the hosted-agent engine is not available: ${hosted.unavailable}`);
    this.hosted = hosted;

    const reg = new PrivateRegistry(path.join(OUT, 'registry'));
    await reg.start();
    this.privateRegistry = reg;
    const regProxy = new CountingProxy(reg.port);
    const regPort = await regProxy.start();
    this.registry = { host: `127.0.0.1:${regPort}`, user: reg.user, password: reg.password, dataDir: reg.dataDir, proxy: regProxy };

    const az = new PrivateAzurite(path.join(OUT, 'azurite'));
    await az.start();
    this.privateAzurite = az;
    const azPort = Number(new URL(az.blobUrl).port);
    const azProxy = new CountingProxy(azPort);
    this.azurite = { blobUrl: `http://127.0.0.1:${await azProxy.start()}/${EMULATOR_ACCOUNT}`, proxy: azProxy };

    fs.writeFileSync(this.toml, buildkitdToml(hosted.mirror, [this.registry.host]));
    const flags = ['--driver', 'docker-container', '--driver-opt', 'network=host', '--config', this.toml];
    // The hosted-agent engine, for a hosted agent and a self-hosted one alike: the builder inputs that reach the mirror.
    const classic = {
      dockerHost: hosted.dockerHost,
      base: 'busybox',
      builderFlags: flags,
      taskInputs: { driverOptions: 'network=host', buildkitdConfig: this.toml },
      classicStore: true,
    };
    if (kinds.includes('hosted')) {
      this.engines.set('hosted', {
        ...classic,
        kind: 'hosted',
        title: 'hosted-agent engine',
        newAgentPerJob: true,
        agentVariables: (job) => ({
          'Agent.Name': `Azure Pipelines ${job}`,
          'Agent.Id': String(1000 + job),
          'Agent.MachineName': `fv-az${job}-bench`,
          'Agent.CloudId': 'c3d2d4d6-6a6e-4c7a-9f2a-0b1a2c3d4e5f',
        }),
      });
    }
    if (kinds.includes('self-hosted')) {
      const dockerHost = ensureEngine();
      const base = `${hosted.mirror}/library/busybox:latest`;
      // A self-hosted agent that keeps its engine has the BuildKit image from earlier jobs.
      await this.pullAs(dockerHost, `${hosted.mirror}/${BUILDKIT_IMAGE}`, BUILDKIT_IMAGE);
      await this.pullAs(dockerHost, base, base);
      this.engines.set('self-hosted', {
        kind: 'self-hosted',
        title: 'self-hosted agent, containerd store',
        dockerHost,
        base,
        builderFlags: flags,
        taskInputs: {},
        newAgentPerJob: false,
        classicStore: false,
        agentVariables: (_job, pipeline) => selfHostedAgent('bench-self-hosted', pipeline),
      });
    }
    if (kinds.includes('self-hosted-classic')) {
      this.engines.set('self-hosted-classic', {
        ...classic,
        kind: 'self-hosted-classic',
        title: 'self-hosted agent, classic store',
        newAgentPerJob: false,
        agentVariables: (_job, pipeline) => selfHostedAgent('bench-self-hosted-classic', pipeline),
      });
    }
    for (const engine of this.engines.values()) {
      const before = await this.containers(engine.dockerHost, TASK_BUILDER_CONTAINERS);
      this.taskBuildersBefore.set(engine.dockerHost, new Set(before));
    }
  }

  /** Names of the containers on an engine whose name has `prefix`. */
  private async containers(dockerHost: string, prefix: string): Promise<string[]> {
    const r = await run('docker', ['ps', '-a', '--filter', `name=${prefix}`, '--format', '{{.Names}}'], {
      env: { DOCKER_HOST: dockerHost },
      allowFail: true,
    });
    return r.stdout.split('\n').filter((n) => n.startsWith(prefix));
  }

  /** The BuildKit image in an engine, as on a self-hosted agent that ran jobs before (pulled through the engine's mirror). */
  async ensureBuildkitImage(engine: Engine): Promise<void> {
    const env = { DOCKER_HOST: engine.dockerHost };
    if ((await run('docker', ['image', 'inspect', BUILDKIT_IMAGE], { env, allowFail: true })).code !== 0)
      await run('docker', ['pull', '-q', BUILDKIT_IMAGE], { env });
  }

  /** Pulls `from` into the engine as `as`, unless it has `as`; remembered for removal at the end. */
  private async pullAs(dockerHost: string, from: string, as: string): Promise<void> {
    const env = { DOCKER_HOST: dockerHost };
    if ((await run('docker', ['image', 'inspect', as], { env, allowFail: true })).code === 0) return;
    await run('docker', ['pull', '-q', from], { env });
    if (as !== from) {
      await run('docker', ['tag', from, as], { env });
      await run('docker', ['image', 'rm', from], { env });
    }
    this.added.push({ dockerHost, image: as });
  }

  /** An agent's docker config with the current buildx; logged in to the bench registry when `login`. */
  async dockerConfig(dir: string, engine: Engine, login: boolean): Promise<string> {
    fs.rmSync(dir, { recursive: true, force: true });
    if (this.hosted === undefined) throw new Error('not started');
    dockerConfigWith(this.hosted.buildxPlugin, dir);
    // What a builder created without --config gets: the mirror (see Engine.taskInputs).
    if (engine.classicStore) {
      fs.mkdirSync(path.join(dir, 'buildx'), { recursive: true });
      fs.copyFileSync(this.toml, path.join(dir, 'buildx', 'buildkitd.default.toml'));
    }
    if (login) await this.login(dir, engine);
    return dir;
  }

  async login(config: string, engine: Engine): Promise<Ran> {
    const reg = this.mustRegistry();
    return run('docker', ['login', reg.host, '-u', reg.user, '--password-stdin'], {
      env: { DOCKER_HOST: engine.dockerHost, DOCKER_CONFIG: config },
      input: reg.password,
    });
  }

  mustRegistry(): BenchRegistry {
    if (this.registry === undefined) throw new Error('not started');
    return this.registry;
  }

  mustAzurite(): BenchAzurite {
    if (this.azurite === undefined) throw new Error('not started');
    return this.azurite;
  }

  /** BuildKit's own azblob cache on the run's Azurite, through its proxy. */
  azblobCache(container: string, name: string): string {
    return `type=azblob,account_url=${this.mustAzurite().blobUrl},account_name=${EMULATOR_ACCOUNT},secret_access_key=${EMULATOR_KEY},container=${container},name=${name}`;
  }

  /** The Docker Registry service connection REG of the task's agent, for the bench registry. */
  registryEndpoint(): NodeJS.ProcessEnv {
    const reg = this.mustRegistry();
    return {
      ENDPOINT_URL_REG: `http://${reg.host}`,
      ENDPOINT_AUTH_SCHEME_REG: 'UsernamePassword',
      ENDPOINT_AUTH_PARAMETER_REG_REGISTRY: reg.host,
      ENDPOINT_AUTH_PARAMETER_REG_USERNAME: reg.user,
      ENDPOINT_AUTH_PARAMETER_REG_PASSWORD: reg.password,
      ENDPOINT_DATA_REG_REGISTRYTYPE: 'Others',
    };
  }

  /** Bytes through both proxies so far. */
  traffic(): { down: number; up: number } {
    const a = this.azurite?.proxy.snapshot() ?? { down: 0, up: 0 };
    const r = this.registry?.proxy.snapshot() ?? { down: 0, up: 0 };
    return { down: a.down + r.down, up: a.up + r.up };
  }

  /**
   * The environment that makes a step process record itself (scripts/bench-probe.ts) and time
   * its docker calls (the shim): its files are `<prefix>.main.json`, `<prefix>.post.json` and
   * `<prefix>.docker.log`; with `cpuProfile`, also `<cpuProfile>.main.cpuprofile` and `.post.cpuprofile`.
   */
  probeEnv(prefix: string, cpuProfile?: string): NodeJS.ProcessEnv {
    return {
      NODE_OPTIONS: `--require ${this.probeJs}`,
      DBXC_BENCH_PROBE: prefix,
      ...(cpuProfile === undefined ? {} : { DBXC_BENCH_CPU_PROF: cpuProfile }),
      DBXC_BENCH_DOCKER_LOG: `${prefix}.docker.log`,
      PATH: `${this.shimDir}:${process.env.PATH ?? ''}`,
    };
  }

  /** Stops the services, removes what the run added to the engines, and deletes out/bench but its reports, results.json and the CPU profiles. */
  async stop(keep: boolean): Promise<void> {
    await this.azurite?.proxy.close();
    await this.registry?.proxy.close();
    await this.privateAzurite?.kill();
    await this.privateRegistry?.stop();
    for (const engine of this.engines.values()) {
      const env = { DOCKER_HOST: engine.dockerHost };
      const lines = async (args: string[]): Promise<string[]> =>
        (await run('docker', args, { env, allowFail: true })).stdout.split('\n').filter((l) => l !== '');
      // Builders the benchmark made (a failed job can leave one), their state volumes, and its images.
      const containers = await lines(['ps', '-aq', '--filter', `name=${BUILDER_CONTAINERS}`]);
      if (containers.length > 0) await run('docker', ['rm', '-f', ...containers], { env, allowFail: true });
      const volumes = await lines(['volume', 'ls', '-q', '--filter', `name=${BUILDER_CONTAINERS}`]);
      if (volumes.length > 0) await run('docker', ['volume', 'rm', '-f', ...volumes], { env, allowFail: true });
      // Builders the task kept for a self-hosted agent of the run that a pipeline did not remove (a failed job), and their volumes.
      const before = this.taskBuildersBefore.get(engine.dockerHost) ?? new Set<string>();
      const kept = (await this.containers(engine.dockerHost, TASK_BUILDER_CONTAINERS)).filter((n) => !before.has(n));
      if (kept.length > 0) {
        await run('docker', ['rm', '-f', ...kept], { env, allowFail: true });
        await run('docker', ['volume', 'rm', '-f', ...kept.map((n) => `${n}_state`)], { env, allowFail: true });
      }
      const images = await lines(['image', 'ls', '-q', '--filter', `label=${BENCH_LABEL}`]);
      if (images.length > 0) await run('docker', ['image', 'rm', '-f', ...new Set(images)], { env, allowFail: true });
      // With a docker config that has buildx (a config folder without it has no `docker buildx`).
      const config = path.join(OUT, `cleanup-config-${engine.kind}`);
      if (this.hosted !== undefined) await this.dockerConfig(config, engine, false);
      await run('docker', ['buildx', 'prune', '-af', '--builder', 'default'], { env: { ...env, DOCKER_CONFIG: config }, allowFail: true });
    }
    for (const { dockerHost, image } of this.added)
      await run('docker', ['image', 'rm', image], { env: { DOCKER_HOST: dockerHost }, allowFail: true });
    if (!keep) {
      for (const entry of fs.existsSync(OUT) ? fs.readdirSync(OUT) : []) {
        if (!entry.endsWith('.md') && entry !== 'results.json' && entry !== 'profiles')
          fs.rmSync(path.join(OUT, entry), { recursive: true, force: true });
      }
    }
  }
}
