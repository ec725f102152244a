// The benchmark workloads: what each job of a pipeline builds, revision by revision. Shared by
// npm run bench, bench:load and bench:phases.
import * as fs from 'fs';
import * as path from 'path';

/**
 * Every RUN step of the workloads prints a line: a step that BuildKit took from a registry-style
 * cache is not always marked CACHED in the log, but it prints nothing.
 *
 * A dependency step that is CPU-bound (a checksum loop) and leaves a layer of about 126 MB, then an
 * application step with a small one. `base` is the FROM image.
 */
export function benchDockerfile(base: string): string {
  return `FROM ${base}
WORKDIR /app
COPY deps.lock ./
RUN echo "resolving $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=120 2>/dev/null && for i in 1 2 3 4 5 6 7 8; do sha256sum /app/deps.bin >/dev/null; done
COPY src/ ./src/
RUN echo "building $(cat src/*.txt)" && cat src/*.txt > /app/app.txt && dd if=/dev/urandom of=/app/app.bin bs=1k count=512 2>/dev/null
`;
}

/** MiB of random data in each stage of the large workload: about 1.5 GB of cache in all. */
export const LARGE_STAGES = { toolchain: 640, deps: 512, assets: 320 } as const;

/**
 * A multi-stage build whose cache (mode=max) is about 1.5 GB of incompressible layers, and whose
 * image is small, as a real multi-stage build's is:
 *   toolchain  a base layer of 640 MiB (never changes)
 *   deps       FROM toolchain, keyed by deps.lock: 512 MiB
 *   build      FROM deps, keyed by src/: reads the toolchain and the dependencies, writes 512 KiB
 *   assets     an independent stage of 320 MiB (never changes)
 *   final      FROM base: copies a little from build and assets, then final/ (the late stage)
 * A change to src/ reruns the build stage, which needs the toolchain and dependency layers; a change
 * to final/ reruns only the final stage, so every other stage is cached whole.
 */
export function largeDockerfile(base: string): string {
  const mib = (n: number, file: string): string => `dd if=/dev/urandom of=${file} bs=1M count=${n} 2>/dev/null`;
  return `FROM ${base} AS toolchain
RUN echo "installing the toolchain" && mkdir -p /opt && ${mib(LARGE_STAGES.toolchain, '/opt/toolchain.bin')}

FROM toolchain AS deps
WORKDIR /src
COPY deps.lock ./
RUN echo "resolving $(cat deps.lock)" && ${mib(LARGE_STAGES.deps, '/opt/deps.bin')}

FROM deps AS build
COPY src/ ./src/
RUN echo "building $(cat src/*.txt)" && cat src/*.txt > /out.txt && head -c 1048576 /opt/toolchain.bin | sha256sum >> /out.txt && head -c 1048576 /opt/deps.bin | sha256sum >> /out.txt && dd if=/dev/urandom of=/app.bin bs=1k count=512 2>/dev/null

FROM ${base} AS assets
RUN echo "rendering the assets" && ${mib(LARGE_STAGES.assets, '/assets.bin')} && head -c 65536 /assets.bin > /assets-small.bin

FROM ${base}
WORKDIR /app
COPY --from=build /out.txt /app.bin ./
COPY --from=assets /assets-small.bin ./
COPY final/ ./final/
RUN echo "finishing $(cat final/*.txt)" && cat final/*.txt > final.txt
`;
}

/** What a job changes in the workspace before it runs, and what kind of job that makes it. */
export interface Revision {
  readonly n: number;
  /** cold: the first job; lock: the lock file changed; source: only the sources; late: only the last stage's files. */
  readonly kind: 'cold' | 'lock' | 'source' | 'late';
  readonly files: Readonly<Record<string, string>>;
}

export interface Workload {
  readonly name: string;
  readonly dockerfile: (base: string) => string;
  readonly revisions: readonly Revision[];
  /** The Dockerfile step that is the expensive dependency install, by the start of its name in BuildKit's log. */
  readonly depsStep: string;
  /** What the image holds at a revision: a command for `docker run` and its expected output. */
  readonly check: (rev: Revision) => { readonly cmd: string[]; readonly out: string };
}

/** The ten revisions of npm run bench: the sources change at every revision, the lock file at 5 and 9. */
export function revisionsWorkload(count = 10, lockChanges: ReadonlySet<number> = new Set([5, 9])): Workload {
  const revisions: Revision[] = [];
  let lock = 'left-pad@1.3.0\n';
  for (let n = 1; n <= count; n++) {
    if (lockChanges.has(n)) lock = `left-pad@1.3.${n}\n`;
    revisions.push({
      n,
      kind: n === 1 ? 'cold' : lockChanges.has(n) ? 'lock' : 'source',
      files: { 'deps.lock': lock, 'src/main.txt': `revision ${n}\n` },
    });
  }
  return {
    name: 'revisions',
    dockerfile: benchDockerfile,
    revisions,
    depsStep: '[4/6] RUN echo "resolving',
    check: (rev) => ({ cmd: ['cat', '/app/app.txt'], out: `revision ${rev.n}` }),
  };
}

/** The large workload's jobs: cold, a source change, then a change to the last stage only. */
export function largeWorkload(): Workload {
  const base = { 'deps.lock': 'left-pad@1.3.0\n', 'src/main.txt': 'revision 1\n', 'final/notes.txt': 'final 1\n' };
  return {
    name: 'large',
    dockerfile: largeDockerfile,
    revisions: [
      { n: 1, kind: 'cold', files: base },
      { n: 2, kind: 'source', files: { ...base, 'src/main.txt': 'revision 2\n' } },
      { n: 3, kind: 'late', files: { ...base, 'src/main.txt': 'revision 2\n', 'final/notes.txt': 'final 3\n' } },
    ],
    depsStep: '[deps 3/3] RUN echo "resolving',
    check: (rev) => ({ cmd: ['cat', '/app/final.txt'], out: rev.n === 3 ? 'final 3' : 'final 1' }),
  };
}

/** Writes a workspace's Dockerfile and a revision's files. */
export function writeRevision(ws: string, workload: Workload, base: string, rev: Revision): void {
  fs.mkdirSync(ws, { recursive: true });
  fs.writeFileSync(path.join(ws, 'Dockerfile'), workload.dockerfile(base));
  for (const [rel, text] of Object.entries(rev.files)) {
    fs.mkdirSync(path.dirname(path.join(ws, rel)), { recursive: true });
    fs.writeFileSync(path.join(ws, rel), text);
  }
}
