import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'hosted-engine.sh');

/** The hosted-agent engine of scripts/hosted-engine.sh, and the buildx and BuildKit beside it. */
export interface HostedEngine {
  /** DOCKER_HOST of the engine with the classic image store. */
  readonly dockerHost: string;
  /** host:port of the docker.io mirror, on loopback. */
  readonly mirror: string;
  /** The current buildx from ../shared, and its version. */
  readonly buildxPlugin: string;
  readonly buildxVersion: string;
  /** Debian's buildx 0.13.1, the oldest the task is tested with. */
  readonly debianBuildx: string;
  /** The buildkitd binary that the BuildKit image was assembled from. */
  readonly buildkitd: string;
}

/**
 * Provisions (or reuses) the hosted-agent engine. `unavailable` says why it cannot be had here
 * (../shared/buildkit missing, or no root to provision it); any other failure throws.
 */
export function provisionHostedEngine(): HostedEngine | { unavailable: string } {
  const r = spawnSync('bash', [SCRIPT, 'up'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const field = (name: string): string | undefined => new RegExp(`^${name}=(.+)$`, 'm').exec(r.stdout)?.[1];
  const unavailable = field('UNAVAILABLE');
  if (r.status === 3 && unavailable !== undefined) return { unavailable };
  const engine = {
    dockerHost: field('DOCKER_HOST'),
    mirror: field('MIRROR'),
    buildxPlugin: field('BUILDX_PLUGIN'),
    buildxVersion: field('BUILDX_VERSION'),
    debianBuildx: field('DEBIAN_BUILDX'),
    buildkitd: field('BUILDKITD'),
  };
  const missing = Object.entries(engine).filter(([, v]) => v === undefined);
  if (r.status !== 0 || missing.length > 0)
    throw new Error(
      `scripts/hosted-engine.sh up failed (exit ${String(r.status)}${missing.length > 0 ? `; no ${missing.map(([k]) => k).join(', ')}` : ''})`,
    );
  return engine as unknown as HostedEngine;
}

/** `buildkitd.toml` that mirrors docker.io to `mirror` and reaches it and `plainHttp` registries over HTTP, all on loopback. */
export function buildkitdToml(mirror: string, plainHttp: readonly string[] = []): string {
  const http = [mirror, ...plainHttp].map((host) => `[registry."${host}"]\n  http = true\n`);
  return [`[registry."docker.io"]\n  mirrors = ["${mirror}"]\n`, ...http].join('\n');
}

/** A docker config folder, as an agent's, whose buildx plugin is `plugin`. */
export function dockerConfigWith(plugin: string, dir: string): string {
  fs.mkdirSync(path.join(dir, 'cli-plugins'), { recursive: true });
  fs.symlinkSync(plugin, path.join(dir, 'cli-plugins', 'docker-buildx'));
  return dir;
}

/**
 * A BuildKit daemon on the host, for the remote driver: the same buildkitd binary as in the BuildKit
 * image, with the OCI worker (bookworm's runc from PATH), listening on a unix socket in `dir`.
 */
export class HostBuildkitd {
  private child?: ChildProcess;
  readonly socket: string;

  constructor(
    private readonly binary: string,
    private readonly dir: string,
    private readonly config: string,
  ) {
    this.socket = path.join(dir, 'buildkitd.sock');
  }

  get address(): string {
    return `unix://${this.socket}`;
  }

  async start(): Promise<void> {
    fs.rmSync(path.join(this.dir, 'root'), { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true });
    const log = fs.openSync(path.join(this.dir, 'buildkitd.log'), 'w');
    const args = [
      '--addr',
      this.address,
      '--root',
      path.join(this.dir, 'root'),
      '--oci-worker=true',
      '--containerd-worker=false',
      '--config',
      this.config,
    ];
    this.child = spawn(this.binary, args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    for (let i = 0; i < 100; i++) {
      if (fs.existsSync(this.socket)) return;
      if (this.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`buildkitd did not start: ${fs.readFileSync(path.join(this.dir, 'buildkitd.log'), 'utf8').slice(-2000)}`);
  }

  /** Stops it and deletes its state. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(path.join(this.dir, 'root'), { recursive: true, force: true });
  }
}

/** Where the hosted-agent engine keeps its files, for a host buildkitd of a test or a benchmark. */
export function hostedHome(): string {
  return (
    process.env.DBXC_HOSTED_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'docker-buildx-cache-hosted')
  );
}
