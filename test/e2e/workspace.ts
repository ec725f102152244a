import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { runJob, type JobResult, type StepResult } from '../../scripts/agent';
import { BASE_IMAGE } from '../../scripts/engine';
import { tempDir } from '../helpers';

/** Blobs that index.json reaches, walked independently of the task's own code. */
export function reachableBlobs(dir: string): Set<string> {
  const seen = new Set<string>();
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; mediaType: string }[] };
  const queue = [...index.manifests];
  for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    if (!/manifest|index/.test(d.mediaType)) continue;
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'blobs', ...d.digest.split(':')), 'utf8')) as {
      manifests?: typeof queue;
      layers?: typeof queue;
      config?: (typeof queue)[0];
    };
    queue.push(...(json.manifests ?? []), ...(json.layers ?? []), ...(json.config ? [json.config] : []));
  }
  return seen;
}

export function blobsOnDisk(dir: string): Set<string> {
  return new Set(fs.readdirSync(path.join(dir, 'blobs', 'sha256')).map((h) => `sha256:${h}`));
}

export function blobSize(dir: string, digest: string): number {
  return fs.statSync(path.join(dir, 'blobs', ...digest.split(':'))).size;
}

/** `#N CACHED` lines in BuildKit's own output, counted without the task's parser. */
export const rawCachedLines = (stdout: string): number => stdout.split('\n').filter((l) => /^#\d+ CACHED$/.test(l)).length;

/** Whether the Dockerfile step whose name starts with `prefix` was CACHED, from BuildKit's own lines. */
export function stepCached(stdout: string, prefix: string): boolean {
  const lines = stdout.split('\n');
  const vertex = lines.map((l) => /^#(\d+) (\[[^\]]+\] .*)$/.exec(l)).find((m) => m?.[2]?.startsWith(prefix) === true)?.[1];
  if (vertex === undefined) throw new Error(`no step ${prefix} in the log`);
  return lines.includes(`#${vertex} CACHED`);
}

export const IMAGE = 'dbxc-e2e/app';

/** A dependency step keyed by a lock file (`mb` MB of incompressible bytes), then the sources, on `base`. */
export const depsDockerfile = (base: string, mb: number): string => `FROM ${base}
WORKDIR /app
COPY deps.lock ./
RUN echo "installing $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=${mb} 2>/dev/null
COPY src/ ./src/
RUN cat src/main.txt > /app/out.txt
`;
/** depsDockerfile on the locally built base image, with 4 MB of dependencies. */
export const DEPS_DOCKERFILE = depsDockerfile(BASE_IMAGE, 4);
/** The dependency step of depsDockerfile, as BuildKit names it. */
export const DEPS_STEP = '[4/6] RUN echo "installing';
/** A workspace for DEPS_DOCKERFILE. */
export const DEPS_FILES = { Dockerfile: DEPS_DOCKERFILE, 'deps.lock': 'left-pad@1.3.0\n', 'src/main.txt': 'revision 0\n' };

/** Where a workspace's jobs run: the engine and docker config (environment) and the inputs every job gets. */
export interface Agent {
  /** DOCKER_HOST, DOCKER_CONFIG: for the jobs and for the workspace's own docker commands. */
  readonly env?: NodeJS.ProcessEnv;
  /** Inputs of every job, under the job's own; by default the docker driver. */
  readonly inputs?: Record<string, string>;
  /**
   * A self-hosted agent's engine, which keeps the images and build cache of earlier jobs; otherwise
   * each job starts as on a new agent, without them.
   */
  readonly keepsEngine?: boolean;
}

/** A job of a workspace: what the agent saw, and a builder its post-job step left to the machine. */
export interface WorkspaceJob extends JobResult {
  /**
   * The builder the post-job step said it left to a Microsoft-hosted agent's machine, and whether
   * its container was there after the job. The workspace then removed it, as the machine's end
   * would, so that nothing of it is left for the next job or test.
   */
  readonly leftToMachine?: { readonly builder: string; readonly present: boolean };
}

/** The post-job step's line for a builder it left to the machine (docker/lifetime.ts goesWithMachine). */
const LEFT_TO_MACHINE = /^Left builder (\S+) to this Microsoft-hosted agent's machine, which is discarded after the job/m;

/** A pipeline's folders on one agent, and jobs run in them as the agent runs them. */
export class Workspace {
  readonly ws = tempDir('dbxc-e2e-ws-');
  readonly pipelineWorkspace = tempDir('dbxc-e2e-pw-');
  readonly agentWork = tempDir('dbxc-e2e-work-');
  readonly cacheDir = path.join(this.pipelineWorkspace, '.buildx-cache');
  readonly storeDir = path.join(this.agentWork, '_buildx_cache_store');
  readonly timings: { job: string; totalMs: number; build: string }[] = [];

  constructor(
    files: Record<string, string>,
    readonly agent: Agent = {},
  ) {
    for (const [rel, content] of Object.entries(files)) this.write(rel, content);
  }

  /** docker against this workspace's engine; returns stdout, throws with stderr on failure. */
  docker(args: string[]): string {
    const r = spawnSync('docker', args, { encoding: 'utf8', env: { ...process.env, ...this.agent.env }, maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`docker ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  write(rel: string, content: string): void {
    fs.mkdirSync(path.dirname(path.join(this.ws, rel)), { recursive: true });
    fs.writeFileSync(path.join(this.ws, rel), content);
  }

  /** A job; unless the agent keeps its engine, a fresh one, as on a new agent: the engine's build cache and the image are gone. */
  async job(
    name: string,
    inputs: Record<string, string> = {},
    variables: Record<string, string> = {},
    env: NodeJS.ProcessEnv = {},
    between?: (main: StepResult) => void,
  ): Promise<WorkspaceJob> {
    if (this.agent.keepsEngine !== true) {
      this.docker(['buildx', 'prune', '-af']);
      spawnSync('docker', ['image', 'rm', '-f', `${IMAGE}:e2e`], { encoding: 'utf8', env: { ...process.env, ...this.agent.env } });
    }
    const result = await runJob(
      { dockerfile: 'Dockerfile', imageName: IMAGE, tags: 'e2e', ...(this.agent.inputs ?? { driver: 'docker' }), ...inputs },
      this.variables(variables),
      this.ws,
      { ...this.agent.env, ...env },
      between,
    );
    this.timings.push({ job: name, totalMs: result.main.ms, build: /^Build: ([\d.]+s)/m.exec(result.main.stdout)?.[1] ?? 'failed' });
    const left = this.machineEnd(result.post);
    return left === undefined ? result : { ...result, leftToMachine: left };
  }

  /**
   * The end of a Microsoft-hosted agent's machine after a job, for the builder its post-job step
   * left to it: its container, its volume, its entry in the docker config. Undefined when the step
   * left none.
   */
  machineEnd(post: StepResult): { builder: string; present: boolean } | undefined {
    const builder = LEFT_TO_MACHINE.exec(post.stdout)?.[1];
    if (builder === undefined) return undefined;
    const container = `buildx_buildkit_${builder}0`;
    const present = this.docker(['ps', '-a', '--format', '{{.Names}}', '--filter', `name=^${container}$`]).trim() === container;
    this.docker(['rm', '-f', container]);
    this.docker(['volume', 'rm', '-f', `${container}_state`]);
    const config = this.agent.env?.DOCKER_CONFIG;
    if (config !== undefined) fs.rmSync(path.join(config, 'buildx', 'instances', builder), { force: true });
    return { builder, present };
  }

  /** The agent variables of a new job in this workspace. */
  variables(extra: Record<string, string> = {}): Record<string, string> {
    return {
      'System.DefaultWorkingDirectory': this.ws,
      'Pipeline.Workspace': this.pipelineWorkspace,
      'Agent.TempDirectory': tempDir('dbxc-e2e-tmp-'),
      'Agent.WorkFolder': this.agentWork,
      'Agent.OS': 'Linux',
      'System.JobId': crypto.randomUUID(),
      'System.TaskInstanceId': crypto.randomUUID(),
      'Agent.Name': 'e2e-agent',
      'Build.SourceBranch': 'refs/heads/main',
      ...extra,
    };
  }
}
