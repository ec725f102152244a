// What the benchmarks, the demo and the end-to-end tests measure with: sizes on disk, medians, the
// bytes a job moves over the network, and timestamps from inside the task's step processes.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

/** Bytes of every file under `dir`; 0 when there is no such folder. */
export function folderBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/** Bytes as decimal megabytes, one decimal: `127.5 MB`. */
export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

/** The middle value (the upper one of an even count); NaN for none. */
export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

export const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * Writes a benchmark's report `name` (BENCHMARKS.md, say) and returns its path: under out/, which
 * git ignores, unless the command line has `--update`, which writes it at the repository's root,
 * where the README links to it.
 */
export function writeReport(root: string, name: string, text: string, argv: readonly string[] = process.argv): string {
  const file = argv.includes('--update') ? path.join(root, name) : path.join(root, 'out', name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** digest → size of every blob that an OCI layout's index.json reaches (a BuildKit cache folder). */
export function reachable(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!fs.existsSync(path.join(dir, 'index.json'))) return out;
  type Desc = { digest: string; mediaType: string; size: number };
  const queue = [...(JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: Desc[] }).manifests];
  for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
    if (out.has(d.digest)) continue;
    out.set(d.digest, d.size);
    if (!/manifest|index/.test(d.mediaType)) continue;
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'blobs', ...d.digest.split(':')), 'utf8')) as {
      manifests?: Desc[];
      layers?: Desc[];
      config?: Desc;
    };
    queue.push(...(json.manifests ?? []), ...(json.layers ?? []), ...(json.config ? [json.config] : []));
  }
  return out;
}

/** Seconds of each BuildKit vertex whose name matches, from `#N name` … `#N DONE 1.2s` in a plain progress log. */
export function vertexSeconds(log: string, name: RegExp): number {
  const names = new Map<string, string>();
  let total = 0;
  for (const line of log.split('\n')) {
    const head = /^#(\d+) (.*)$/.exec(line);
    if (head === null) continue;
    const [, id = '', rest = ''] = head;
    if (!names.has(id)) names.set(id, rest);
    const done = /^DONE ([\d.]+)s$/.exec(rest);
    if (done !== null && name.test(names.get(id) ?? '')) total += Number(done[1]);
  }
  return total;
}

/**
 * Seconds of the image's trip into the engine in a build log: BuildKit's exporter (docker, or OCI
 * for a containerd-store engine, or with the docker driver the image exporter), or buildx's
 * `importing to docker`, whichever is longer. The import reads the exporter's tarball as it is
 * sent (`sending tarball` is a line inside the exporter's vertex), so the two overlap: on the
 * classic store the exporter's time alone matched what --load added to a build (npm run bench:load).
 */
export function imageLoadSeconds(log: string): number {
  return Math.max(
    vertexSeconds(log, /^(exporting to docker image format|exporting to oci image format|exporting to image)$/),
    vertexSeconds(log, /^importing to docker$/),
  );
}
/** BuildKit's cache export, to a folder or a remote backend. */
export const CACHE_EXPORT_VERTICES = /^exporting cache to /;

/** Binds a port on 127.0.0.1 that the kernel picks, lets it go, and returns it. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A TCP proxy on 127.0.0.1 in front of a store (Azurite, a registry) that counts the bytes each
 * way: `down` is what clients downloaded, `up` what they uploaded, HTTP headers included. Every
 * alternative that uses the store reaches it through the same proxy, so the count costs them alike.
 */
export class CountingProxy {
  down = 0;
  up = 0;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly targetPort: number) {}

  async start(): Promise<number> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.on('data', (d: Buffer) => (this.up += d.length));
      upstream.on('data', (d: Buffer) => (this.down += d.length));
      client.pipe(upstream);
      upstream.pipe(client);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return (server.address() as net.AddressInfo).port;
  }

  snapshot(): { down: number; up: number } {
    return { down: this.down, up: this.up };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server !== undefined) await new Promise((resolve) => server.close(resolve));
  }
}

/** What scripts/bench-probe.ts recorded inside one step process: epoch milliseconds throughout. */
export interface StepProbe {
  /** When the process started (performance.timeOrigin). */
  readonly origin: number;
  /** When Node.js had started and ran the probe, before the step's bundle. */
  readonly preload: number;
  readonly exit: number;
  /** Each of the task's bundles (dist/*.js) that was loaded: name, start, end of its compile and synchronous run. */
  readonly modules: readonly (readonly [string, number, number])[];
  /** Log lines that mark phases and commands, with when the step wrote them. */
  readonly lines: readonly (readonly [number, string])[];
  readonly maxRssKb: number;
  /** /proc/self/io at exit: rchar, wchar, read_bytes, write_bytes, … */
  readonly io: Readonly<Record<string, number>>;
}

export function readProbe(file: string): StepProbe | undefined {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as StepProbe) : undefined;
}

/** The log groups of a step (`##[group]Title` … `##[endgroup]`) with when each opened and closed. */
export function probeGroups(probe: StepProbe): { title: string; start: number; end: number }[] {
  const out: { title: string; start: number; end: number }[] = [];
  let open: { title: string; start: number } | undefined;
  for (const [t, line] of probe.lines) {
    if (line.startsWith('##[group]')) open = { title: line.slice('##[group]'.length), start: t };
    else if (line === '##[endgroup]' && open !== undefined) {
      out.push({ ...open, end: t });
      open = undefined;
    }
  }
  return out;
}

/** One docker CLI call that a step made, as the docker shim (dockerShim) logged it. */
export interface DockerCall {
  /** Epoch milliseconds. */
  readonly start: number;
  readonly end: number;
  readonly code: number;
  readonly args: string;
}

export function readDockerCalls(file: string): DockerCall[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => /^(\d+) (\d+) (-?\d+) (.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ start: Number(m[1]) / 1e6, end: Number(m[2]) / 1e6, code: Number(m[3]), args: m[4] ?? '' }));
}

/** What a docker call was, for grouping: `buildx build`, `buildx inspect --bootstrap`, `image inspect`, … without values. */
export function dockerCallKind(args: string): string {
  const words = args.split(' ');
  const sub = words[0] === 'buildx' || words[0] === 'image' || words[0] === 'container' ? words.slice(0, 2) : words.slice(0, 1);
  const flags = words.filter((w) => w === '--bootstrap');
  return [...sub, ...flags].join(' ');
}

/**
 * A folder with a `docker` that runs `realDocker` and appends `start end exit-code args` (epoch
 * nanoseconds) to $DBXC_BENCH_DOCKER_LOG: put first on PATH, it times every docker CLI call that
 * a step makes. It adds the cost of a shell and two `date` runs to each call.
 */
export function dockerShim(dir: string, realDocker: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const shim = path.join(dir, 'docker');
  fs.writeFileSync(
    shim,
    `#!/bin/sh
s=$(date +%s%N)
${JSON.stringify(realDocker)} "$@"
rc=$?
[ -z "$DBXC_BENCH_DOCKER_LOG" ] || printf '%s %s %s %s\\n' "$s" "$(date +%s%N)" "$rc" "$*" >> "$DBXC_BENCH_DOCKER_LOG"
exit $rc
`,
    { mode: 0o755 },
  );
  return dir;
}

/** A V8 CPU profile (node --cpu-prof's .cpuprofile). */
interface CpuProfile {
  readonly nodes: readonly {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

/** Where a step process's CPU time went, in milliseconds, from its CPU profile. */
export interface ProfileSummary {
  readonly totalMs: number;
  /** Self time by kind: idle (waiting for I/O and child processes), the task's bundles, Node.js internals, GC, … */
  readonly byKind: Readonly<Record<string, number>>;
  /** Compiling JavaScript (wrapSafe) and running each bundle's top level, inclusive. */
  readonly compileMs: number;
  readonly bundleTopLevelMs: Readonly<Record<string, number>>;
  /** The functions with the most self time, idle and GC left out. */
  readonly top: readonly { readonly name: string; readonly ms: number }[];
}

export function summarizeProfile(file: string): ProfileSummary | undefined {
  if (!fs.existsSync(file)) return undefined;
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const inclusive = (id: number): number => (self.get(id) ?? 0) + sum((byId.get(id)?.children ?? []).map(inclusive));
  const kind = (url: string, name: string): string => {
    if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') return name;
    const bundle = /\/dist\/([^/]+\.js)$/.exec(url)?.[1];
    if (bundle !== undefined) return `task bundle ${bundle}`;
    if (url.startsWith('node:')) return 'Node.js internals';
    if (url.includes('bench-probe')) return 'the probe';
    return 'native and other';
  };
  const byKind: Record<string, number> = {};
  const byFunction = new Map<string, number>();
  for (const n of p.nodes) {
    const ms = self.get(n.id) ?? 0;
    const k = kind(n.callFrame.url, n.callFrame.functionName);
    byKind[k] = (byKind[k] ?? 0) + ms;
    if (k === '(idle)' || k === '(garbage collector)' || k === '(program)') continue;
    const name = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\//, '')}:${n.callFrame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
  }
  const bundleTopLevelMs: Record<string, number> = {};
  for (const n of p.nodes) {
    const bundle = /\/dist\/([^/]+\.js)$/.exec(n.callFrame.url)?.[1];
    if (bundle !== undefined && n.callFrame.functionName === '' && n.callFrame.lineNumber === 0 && n.callFrame.columnNumber === 0)
      bundleTopLevelMs[bundle] = (bundleTopLevelMs[bundle] ?? 0) + inclusive(n.id);
  }
  return {
    totalMs: (p.endTime - p.startTime) / 1000,
    byKind,
    compileMs: sum(p.nodes.filter((n) => n.callFrame.functionName === 'wrapSafe').map((n) => inclusive(n.id))),
    bundleTopLevelMs,
    top: [...byFunction]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([name, ms]) => ({ name, ms })),
  };
}
