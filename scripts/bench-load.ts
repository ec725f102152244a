// npm run bench:load (and part of npm run bench): the ways to get a built image into an engine with
// the classic image store, as on a Microsoft-hosted agent, measured in one run and checked.
//
// A docker-container builder on the hosted-agent engine builds the benchmark workload, every step
// cached from a local cache folder, as a hosted job with a restored cache does: before each run the
// builder's state and the image are gone, so each run imports the cache and then delivers the
// image one way:
//   cacheonly            no image at all: the baseline the others are measured against
//   load                 --load (today's output: docker): BuildKit's docker exporter, streamed into `docker load`
//   docker, uncompressed --output type=docker,compression=uncompressed,force-compression=true
//   docker tarball       --output type=docker,dest=<file>, then docker load -i <file>
//   OCI tarball          --output type=oci,dest=<file>, then docker load -i <file>
//   push + pull          --output type=image,push=true to a registry on loopback, then docker pull and docker tag
//   push + pull, layers there  the same to a repository that has the image's layers already (pushed
//                        once before, untimed), pulled, tagged, the reference removed: what the
//                        task does through its registry on loopback, whose store has the cache's layers
//   push + pull, uncompressed  the same with uncompressed layers
//   push only            what output: registry needs: the image in the registry, nothing loaded
// Each image that reaches the engine is checked: it runs and prints this revision, its layers are
// the ones --load gives, and it has its tag. Writes out/load.md; npm run bench puts the same table
// in BENCHMARKS.md. DBXC_BENCH_LOAD_REPS sets the runs of each way, DBXC_BENCH_LOAD_METHODS picks ways.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { buildxBuildArgs, OUT, run, World, type Ran } from './bench-world';
import { revisionsWorkload, writeRevision } from './bench-workload';
import { median, vertexSeconds } from './measure';

/** Runs of each way: DBXC_BENCH_LOAD_REPS, else 5 on its own (npm run bench passes its own). */
const REPS = Number(process.env.DBXC_BENCH_LOAD_REPS ?? 5);
/** DBXC_BENCH_LOAD_METHODS=load,push-pull picks ways (the baseline is always run). */
const PICKED = process.env.DBXC_BENCH_LOAD_METHODS?.split(',').filter((m) => m !== '');
const IMAGE = 'dbxc-bench/load';

export interface LoadMethod {
  readonly id: string;
  readonly title: string;
  /** Wall seconds of each run, in the order run. */
  readonly runs: number[];
  /** Seconds in BuildKit's export vertices and on the engine's side (its import, docker load or pull), medians. */
  readonly exportS: number;
  readonly engineS: number;
  /** Whether the image in the engine (or the registry, for push only) is right, and what was checked or went wrong. */
  readonly ok: boolean;
  readonly check: string;
}

export interface LoadResults {
  readonly engine: string;
  readonly imageBytes: number;
  readonly reps: number;
  readonly methods: LoadMethod[];
}

interface Spec {
  readonly id: string;
  readonly title: string;
  /** The build's output flags, and what runs after the build; `tag` is the image's name in the engine. */
  readonly output: (tag: string, file: string, ref: string) => string[];
  readonly after?: (tag: string, file: string, ref: string) => string[][];
  /** What reaches the engine: an image to check, or none. */
  readonly loads: boolean;
  /** Pushed once to `ref` before the timed run, so that the registry has its layers. */
  readonly prepush?: boolean;
}

const SPECS: Spec[] = [
  { id: 'cacheonly', title: 'no image (cacheonly), the baseline', output: () => ['--output', 'type=cacheonly'], loads: false },
  { id: 'load', title: '`--load` (today)', output: (tag) => ['--load', '--tag', tag], loads: true },
  {
    id: 'docker-uncompressed',
    title: 'docker exporter, uncompressed',
    output: (tag) => ['--output', `type=docker,name=${tag},compression=uncompressed,force-compression=true`],
    loads: true,
  },
  {
    id: 'docker-tarball',
    title: 'docker tarball to a file, `docker load -i`',
    output: (tag, file) => ['--output', `type=docker,name=${tag},dest=${file}`],
    after: (_t, file) => [['load', '-q', '-i', file]],
    loads: true,
  },
  {
    id: 'oci-tarball',
    title: 'OCI tarball to a file, `docker load -i`',
    output: (tag, file) => ['--output', `type=oci,name=${tag},dest=${file}`],
    after: (_t, file) => [['load', '-q', '-i', file]],
    loads: true,
  },
  {
    id: 'push-pull',
    title: 'push to a loopback registry, `docker pull`',
    output: (_t, _f, ref) => ['--output', `type=image,name=${ref},push=true`],
    after: (tag, _f, ref) => [
      ['pull', '-q', ref],
      ['tag', ref, tag],
    ],
    loads: true,
  },
  {
    id: 'push-pull-present',
    title: 'push to a loopback registry that has the layers, `docker pull` (what the task does)',
    output: (_t, _f, ref) => ['--output', `type=image,name=${ref},push=true`, '--provenance=false'],
    after: (tag, _f, ref) => [
      ['pull', '-q', ref],
      ['tag', ref, tag],
      ['image', 'rm', ref],
    ],
    loads: true,
    prepush: true,
  },
  {
    id: 'push-pull-uncompressed',
    title: 'push uncompressed layers, `docker pull`',
    output: (_t, _f, ref) => ['--output', `type=image,name=${ref},push=true,compression=uncompressed,force-compression=true`],
    after: (tag, _f, ref) => [
      ['pull', '-q', ref],
      ['tag', ref, tag],
    ],
    loads: true,
  },
  {
    id: 'push-only',
    title: 'push only, no load (`output: registry`)',
    output: (_t, _f, ref) => ['--output', `type=image,name=${ref},push=true`],
    loads: false,
  },
];

const EXPORT_VERTICES = /^(exporting to docker image format|exporting to oci image format|exporting to image|sending tarball)$/;

/** Runs every method `reps` times, in a rotating order, on the hosted-agent engine. */
export async function measureLoadMethods(world: World, log: (line: string) => void, reps = REPS): Promise<LoadResults> {
  const engine = world.engines.get('hosted');
  if (engine === undefined) throw new Error('the load methods need the hosted-agent engine');
  const dir = path.join(OUT, 'load');
  fs.rmSync(dir, { recursive: true, force: true });
  const ws = path.join(dir, 's');
  const workload = revisionsWorkload(1);
  const rev = workload.revisions[0];
  if (rev === undefined) throw new Error('no revision');
  writeRevision(ws, workload, engine.base, rev);
  const config = await world.dockerConfig(path.join(dir, 'docker-config'), engine, true);
  const env = { DOCKER_HOST: engine.dockerHost, DOCKER_CONFIG: config };
  const docker = (args: string[], allowFail = false): Promise<Ran> => run('docker', args, { env, allowFail });
  const builder = `dbxc-bench-load-${crypto.randomBytes(4).toString('hex')}`;
  const cacheDir = path.join(dir, 'cache');
  const reg = world.mustRegistry().host;
  await docker(['buildx', 'create', '--name', builder, ...engine.builderFlags]);
  try {
    await docker(buildxBuildArgs(builder, ['--cache-to', `type=local,dest=${cacheDir},mode=max`, '--output', 'type=cacheonly'], ws));
    const runs = new Map<string, { s: number; exportS: number; engineS: number }[]>(SPECS.map((s) => [s.id, []]));
    const checks = new Map<string, { ok: boolean; check: string }>();
    let reference: string | undefined;
    let imageBytes = 0;
    const specs = SPECS.filter((s) => s.id === 'cacheonly' || s.id === 'load' || PICKED === undefined || PICKED.includes(s.id));
    for (let rep = 0; rep < reps; rep++) {
      for (let i = 0; i < specs.length; i++) {
        const spec = specs[(i + rep) % specs.length];
        if (spec === undefined) continue;
        const tag = `${IMAGE}:${spec.id}`;
        const file = path.join(dir, `${spec.id}.tar`);
        const ref = `${reg}/dbxc-bench/load-${spec.id}-r${rep}:bench`;
        // As a new builder and a new engine: no build state, no image.
        await docker(['buildx', 'prune', '-af', '--builder', builder]);
        await docker(['image', 'rm', '-f', tag, ref], true);
        fs.rmSync(file, { force: true });
        if (spec.prepush === true) {
          // The registry gets the image's layers; the builder and the engine start empty again.
          await docker(buildxBuildArgs(builder, ['--cache-from', `type=local,src=${cacheDir}`, ...spec.output(tag, file, ref)], ws));
          await docker(['buildx', 'prune', '-af', '--builder', builder]);
        }
        const build = await docker(
          buildxBuildArgs(builder, ['--cache-from', `type=local,src=${cacheDir}`, ...spec.output(tag, file, ref)], ws),
          true,
        );
        let ms = build.ms;
        let engineMs = vertexSeconds(build.stderr, /^importing to docker$/) * 1000;
        let failed = build.code !== 0 ? `the build failed: ${lastLine(build.stderr)}` : undefined;
        for (const args of failed === undefined ? (spec.after?.(tag, file, ref) ?? []) : []) {
          const r = await docker(args, true);
          ms += r.ms;
          engineMs += r.ms;
          if (r.code !== 0) {
            failed = `docker ${args[0] ?? ''} failed: ${lastLine(r.stderr)}`;
            break;
          }
        }
        const exportS = vertexSeconds(build.stderr, EXPORT_VERTICES);
        runs.get(spec.id)?.push({ s: ms / 1000, exportS, engineS: engineMs / 1000 });
        const check = failed !== undefined ? { ok: false, check: failed } : await checkImage(docker, spec, tag, ref, reference);
        if (spec.id === 'load' && check.ok) {
          reference = (await docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', tag])).stdout.trim();
          imageBytes = Number((await docker(['image', 'inspect', '--format', '{{.Size}}', tag])).stdout.trim());
        }
        // A method is right only if it was right every time.
        const prior = checks.get(spec.id);
        checks.set(spec.id, prior !== undefined && !prior.ok ? prior : check);
        log(
          `load ${spec.id.padEnd(24)} run ${rep + 1}: ${(ms / 1000).toFixed(2)}s (export ${exportS.toFixed(2)}s, engine ${(engineMs / 1000).toFixed(2)}s) ${check.ok ? 'ok' : `WRONG: ${check.check}`}`,
        );
        await docker(['image', 'rm', '-f', tag, ref], true);
        fs.rmSync(file, { force: true });
      }
    }
    return {
      engine: 'hosted-agent engine (classic image store), a docker-container builder',
      imageBytes,
      reps,
      methods: SPECS.filter((s) => (runs.get(s.id)?.length ?? 0) > 0).map((s) => {
        const r = runs.get(s.id) ?? [];
        const c = checks.get(s.id) ?? { ok: false, check: 'not run' };
        return {
          id: s.id,
          title: s.title,
          runs: r.map((x) => x.s),
          exportS: median(r.map((x) => x.exportS)),
          engineS: median(r.map((x) => x.engineS)),
          ...c,
        };
      }),
    };
  } finally {
    await docker(['buildx', 'rm', builder], true);
  }
}

const lastLine = (text: string): string => text.trim().split('\n').slice(-1)[0]?.slice(0, 300) ?? '';

/** The image in the engine runs and prints this revision, has its tag, and has the layers that --load gives; a pushed image is in the registry. */
async function checkImage(
  docker: (args: string[], allowFail?: boolean) => Promise<Ran>,
  spec: Spec,
  tag: string,
  ref: string,
  reference: string | undefined,
): Promise<{ ok: boolean; check: string }> {
  if (!spec.loads) {
    if (spec.id === 'cacheonly') return { ok: true, check: 'nothing to check' };
    const inspect = await docker(['buildx', 'imagetools', 'inspect', ref], true);
    return inspect.code === 0
      ? { ok: true, check: 'the manifest is in the registry' }
      : { ok: false, check: `not in the registry: ${lastLine(inspect.stderr)}` };
  }
  const inspect = await docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}|{{json .RepoTags}}', tag], true);
  if (inspect.code !== 0) return { ok: false, check: `no image ${tag} in the engine` };
  const [layers = '', tags = ''] = inspect.stdout.trim().split('|');
  if (!tags.includes(`"${tag}"`)) return { ok: false, check: `the image lacks the tag ${tag}: ${tags}` };
  if (reference !== undefined && layers !== reference) return { ok: false, check: `its layers differ from --load's: ${layers}` };
  const out = await docker(['run', '--rm', tag, 'cat', '/app/app.txt'], true);
  if (out.code !== 0 || out.stdout.trim() !== 'revision 1')
    return { ok: false, check: `the image does not run right: ${out.stdout.trim()} ${lastLine(out.stderr)}` };
  return { ok: true, check: `runs, has its tag${reference === undefined ? '' : ", and --load's layers"}` };
}

/** Renders the table of the load methods. */
export function loadTable(r: LoadResults): string[] {
  const base = r.methods.find((m) => m.id === 'cacheonly');
  const baseS = base === undefined ? NaN : median(base.runs);
  const load = r.methods.find((m) => m.id === 'load');
  const loadCost = load === undefined ? NaN : median(load.runs) - baseS;
  return [
    `| way | median s (${r.reps} runs) | beyond no image, s | ÷ \`--load\`'s cost | BuildKit export s | engine side s | right |`,
    '|---|---:|---:|---:|---:|---:|---|',
    ...r.methods.map((m) => {
      const s = median(m.runs);
      const cost = m.id === 'cacheonly' ? '' : (s - baseS).toFixed(2);
      const ratio = m.id === 'cacheonly' || !Number.isFinite(loadCost) ? '' : `${((s - baseS) / loadCost).toFixed(2)}×`;
      return `| ${m.title} | ${s.toFixed(2)} | ${cost} | ${ratio} | ${m.exportS.toFixed(2)} | ${m.engineS.toFixed(2)} | ${m.ok ? 'yes' : 'no'}: ${m.check} |`;
    }),
  ];
}

async function main(): Promise<void> {
  const world = new World();
  try {
    await world.start(['hosted']);
    const r = await measureLoadMethods(world, (l) => console.log(l));
    const md = [
      `# Loading the image on a classic-store engine`,
      '',
      `Measured by \`npm run bench:load\` on ${new Date().toISOString().slice(0, 10)}: ${r.engine}; the image is ${(r.imageBytes / 1e6).toFixed(1)} MB.`,
      '',
      ...loadTable(r),
      '',
    ].join('\n');
    fs.writeFileSync(path.join(OUT, '..', 'load.md'), md);
    console.log(`\n${md}\nWritten to out/load.md`);
  } finally {
    await world.stop(process.argv.includes('--keep'));
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  });
}
