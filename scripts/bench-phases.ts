// npm run bench:phases: where a warm job of the benchmark workload spends its time, on both engines,
// in one run.
//
//   - hosted-agent engine (scripts/hosted-engine.sh): the classic image store, driver auto, which
//     becomes docker-container; each job on a fresh agent pulls the BuildKit image (from the
//     loopback mirror) and gets a new builder, as on a Microsoft-hosted agent;
//   - containerd engine (scripts/engine.sh): driver auto, which becomes docker (the engine's BuildKit).
//
// Both with the current buildx from ../shared (in a private DOCKER_CONFIG), the local store and
// output docker, FROM busybox. One cold job, then warm jobs with the same sources, each with a
// fresh engine state (no image, no build cache). A warm job is split into:
//   builder boot  the builder's own time (create, pull, start; for docker: inspect), beside the restore
//   restore       the Restore cache phase
//   build         the Build phase without the image load and the cache export
//   image load    BuildKit's image export into the engine (`exporting to docker image format` and
//                 `importing to docker`, or `exporting to image`)
//   cache export  BuildKit's `exporting cache to client directory`, plus the task's Cache export phase
//   save          the post-job step's Save cache phase
// Writes out/bench/phases.md. Nothing here fails on timing.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { ROOT, runJob, type JobResult } from './agent';
import { benchDockerfile } from './bench-workload';
import { BASE_IMAGE, ensureEngine } from './engine';
import { BUILDKIT_IMAGE } from './bench-world';
import { buildkitdToml, dockerConfigWith, provisionHostedEngine } from './hosted-engine';
import { median, vertexSeconds } from './measure';

const WARM_JOBS = Number(process.env.DBXC_BENCH_WARM_JOBS ?? 3);
const IMAGE = 'dbxc-bench/phases';
const OUT = path.join(ROOT, 'out', 'bench', 'phases');

interface Setup {
  readonly name: string;
  readonly env: NodeJS.ProcessEnv;
  readonly base: string;
  readonly inputs: Record<string, string>;
  /** Makes the engine as a new agent finds it. */
  fresh(): void;
}

const PARTS = ['builder boot', 'restore', 'build', 'image load', 'cache export', 'save'] as const;
type Part = (typeof PARTS)[number];
interface Split {
  readonly parts: Record<Part, number>;
  /** Wall time of the main and post-job steps. */
  readonly main: number;
  readonly post: number;
  readonly driver: string;
}

function split(r: JobResult): Split {
  const log = r.main.stdout;
  // The main step's phases in milliseconds, from the state it hands to the post-job step; the
  // post-job step's save and the builder's own time only as the log gives them (0.1 s).
  const state = JSON.parse(r.main.taskVariables['DockerBuildxCache.State'] ?? '{}') as { summary?: { phases?: [string, number][] } };
  const phases = new Map(state.summary?.phases ?? []);
  const phase = (title: string): number => (phases.get(title) ?? 0) / 1000;
  const load = vertexSeconds(log, /^(exporting to docker image format|importing to docker|exporting to image)$/);
  const cacheExport = vertexSeconds(log, /^exporting cache to client directory$/);
  return {
    parts: {
      // The docker driver's `default` builder is the engine's own BuildKit: nothing runs for it.
      'builder boot': Number(
        /builder \S+ \(driver [^)]*\),? (?:checked )?in ([\d.]+)s/.exec(log)?.[1] ?? (/the engine's own BuildKit/.test(log) ? 0 : NaN),
      ),
      restore: phase('Restore cache'),
      build: phase('Build') - load - cacheExport,
      'image load': load,
      'cache export': cacheExport + phase('Cache export'),
      save: Number(/^Save cache: ([\d.]+)s/m.exec(r.post.stdout)?.[1] ?? 0),
    },
    main: r.main.ms / 1000,
    post: r.post.ms / 1000,
    driver: /^Builder driver: (.*)$/m.exec(log)?.[1] ?? '?',
  };
}

async function run(setup: Setup): Promise<{ cold: Split; warm: Split[] }> {
  const dir = path.join(OUT, setup.name.replace(/\W+/g, '-'));
  fs.rmSync(dir, { recursive: true, force: true });
  const ws = path.join(dir, 's');
  fs.mkdirSync(path.join(ws, 'src'), { recursive: true });
  fs.writeFileSync(path.join(ws, 'Dockerfile'), benchDockerfile(setup.base));
  fs.writeFileSync(path.join(ws, 'deps.lock'), 'left-pad@1.3.0\n');
  fs.writeFileSync(path.join(ws, 'src', 'main.txt'), 'revision 1\n');
  const splits: Split[] = [];
  for (let n = 0; n <= WARM_JOBS; n++) {
    setup.fresh();
    fs.rmSync(path.join(dir, 'pw'), { recursive: true, force: true });
    const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbxc-bench-temp-'));
    const r = await runJob(
      {
        dockerfile: 'Dockerfile',
        imageName: IMAGE,
        tags: 'bench',
        cacheBackend: 'local',
        output: 'docker',
        driver: 'auto',
        ...setup.inputs,
      },
      {
        'System.DefaultWorkingDirectory': ws,
        'Pipeline.Workspace': path.join(dir, 'pw'),
        'Agent.TempDirectory': temp,
        'Agent.WorkFolder': path.join(dir, '_work'),
        'Agent.OS': 'Linux',
        'Build.SourceBranch': 'refs/heads/main',
        'System.JobId': crypto.randomUUID(),
        'System.TaskInstanceId': crypto.randomUUID(),
      },
      ws,
      setup.env,
    );
    fs.rmSync(temp, { recursive: true, force: true });
    if (r.main.result !== 'Succeeded' || r.post.result !== 'Succeeded')
      throw new Error(`${setup.name}, job ${n}:\n${r.main.stdout}\n${r.post.stdout}`);
    if (n > 0 && r.main.outputs.cacheHit !== 'true') throw new Error(`${setup.name}, job ${n}: no cache hit`);
    const s = split(r);
    splits.push(s);
    console.log(
      `${setup.name.padEnd(28)} job ${n} (${n === 0 ? 'cold' : 'warm'}): ${PARTS.map((p) => `${p} ${s.parts[p].toFixed(2)}s`).join(', ')}; main ${s.main.toFixed(1)}s, post ${s.post.toFixed(1)}s`,
    );
  }
  const [cold, ...warm] = splits;
  if (cold === undefined) throw new Error('no jobs ran');
  return { cold, warm };
}

function docker(env: NodeJS.ProcessEnv, args: string[]): void {
  spawnSync('docker', args, { env: { ...process.env, ...env }, stdio: 'ignore' });
}

function versionsOf(env: NodeJS.ProcessEnv): string {
  const out = (args: string[]): string => spawnSync('docker', args, { env: { ...process.env, ...env }, encoding: 'utf8' }).stdout.trim();
  return `engine ${out(['version', '--format', '{{.Server.Version}}'])}, buildx ${/v?(\d+\.\d+\.\d+)/.exec(out(['buildx', 'version']))?.[1] ?? '?'}`;
}

async function main(): Promise<void> {
  const hosted = provisionHostedEngine();
  if ('unavailable' in hosted) throw new Error(`the hosted-agent engine is not available: ${hosted.unavailable}`);
  const containerdHost = ensureEngine();
  fs.mkdirSync(OUT, { recursive: true });
  const toml = path.join(OUT, 'buildkitd.toml');
  fs.writeFileSync(toml, buildkitdToml(hosted.mirror));
  const config = (name: string): string => {
    const dir = path.join(OUT, name);
    fs.rmSync(dir, { recursive: true, force: true });
    return dockerConfigWith(hosted.buildxPlugin, dir);
  };
  const hostedEnv = { DOCKER_HOST: hosted.dockerHost, DOCKER_CONFIG: config('docker-config-hosted') };
  const containerdEnv = { DOCKER_HOST: containerdHost, DOCKER_CONFIG: config('docker-config-containerd') };
  const setups: Setup[] = [
    {
      name: 'hosted-agent engine',
      env: hostedEnv,
      base: 'busybox',
      // What reaching the loopback mirror takes here; a hosted agent reaches Docker Hub without them.
      inputs: { driverOptions: 'network=host', buildkitdConfig: toml },
      fresh: () => {
        docker(hostedEnv, ['image', 'rm', '-f', `${IMAGE}:bench`]);
        docker(hostedEnv, ['image', 'rm', BUILDKIT_IMAGE]);
        docker(hostedEnv, ['buildx', 'prune', '-af', '--builder', 'default']);
      },
    },
    {
      name: 'containerd engine',
      env: containerdEnv,
      base: BASE_IMAGE,
      inputs: {},
      fresh: () => {
        docker(containerdEnv, ['image', 'rm', '-f', `${IMAGE}:bench`]);
        docker(containerdEnv, ['buildx', 'prune', '-af', '--builder', 'default']);
      },
    },
  ];
  const results: [Setup, { cold: Split; warm: Split[] }][] = [];
  for (const setup of setups) results.push([setup, await run(setup)]);

  const med = (splits: Split[], pick: (s: Split) => number): number => median(splits.map(pick));
  const total = (s: Split): number => s.main + s.post;
  const [base] = results.map(([, r]) => med(r.warm, total)).slice(-1);
  const lines = [
    '# Where a warm job goes, on both engines',
    '',
    `Measured by \`npm run bench:phases\` on ${new Date().toISOString().slice(0, 10)} (${os.cpus().length} CPUs, ${os.type()} ${os.release()}, Node ${process.version}): the benchmark workload of \`npm run bench\` (a 126 MB dependency layer), the local store, \`output: docker\`, \`driver: auto\`, each job a fresh agent. Medians of ${WARM_JOBS} warm jobs (the same sources, the cache restored), in seconds. Builder boot runs beside the restore, so the parts do not add up to the job.`,
    '',
    `| | ${results.map(([s, r]) => `${s.name}: ${r.cold.driver.split(',')[0] ?? ''}`).join(' | ')} |`,
    `|---|${results.map(() => '---:').join('|')}|`,
    ...PARTS.map((p) => `| ${p} | ${results.map(([, r]) => med(r.warm, (s) => s.parts[p]).toFixed(2)).join(' | ')} |`),
    `| main step | ${results.map(([, r]) => med(r.warm, (s) => s.main).toFixed(2)).join(' | ')} |`,
    `| post-job step | ${results.map(([, r]) => med(r.warm, (s) => s.post).toFixed(2)).join(' | ')} |`,
    `| job ÷ containerd engine's job | ${results.map(([, r]) => `${(med(r.warm, total) / (base ?? NaN)).toFixed(2)}×`).join(' | ')} |`,
    `| cold job (main + post) | ${results.map(([, r]) => total(r.cold).toFixed(2)).join(' | ')} |`,
    '',
    ...results.map(([s, r]) => `- ${s.name} (${versionsOf(s.env)}): ${r.cold.driver}`),
    '',
  ];
  const md = lines.join('\n');
  fs.writeFileSync(path.join(ROOT, 'out', 'bench', 'phases.md'), md);
  console.log(`\n${md}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
