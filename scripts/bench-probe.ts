// Loaded into each of the task's step processes by the benchmark (NODE_OPTIONS=--require …) when
// DBXC_BENCH_PROBE is set; otherwise it does nothing. It records, in epoch milliseconds:
//   - when the process started (performance.timeOrigin) and when Node.js reached this file;
//   - the compile and synchronous run of each of the task's bundles (dist/*.js);
//   - when the step wrote each line that opens or closes a log group, runs a command or sets a
//     variable (the agent timestamps log lines the same way);
//   - at exit: the process's peak resident set (getrusage, this process only) and /proc/self/io;
//   - with DBXC_BENCH_CPU_PROF set, a CPU profile of the step from this point to its exit, as
//     node --cpu-prof writes one (which NODE_OPTIONS does not take): <DBXC_BENCH_CPU_PROF>.<step>.cpuprofile.
// It writes <DBXC_BENCH_PROBE>.<main|post>.json at exit. The task's code is not changed.
import * as fs from 'fs';
import * as path from 'path';
import { Session } from 'inspector';
import { performance } from 'perf_hooks';

const out = process.env.DBXC_BENCH_PROBE;

function readIo(): Record<string, number> {
  try {
    const pairs = fs
      .readFileSync('/proc/self/io', 'utf8')
      .split('\n')
      .map((l) => /^(\w+): (\d+)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null);
    return Object.fromEntries(pairs.map((m) => [m[1] ?? '', Number(m[2])]));
  } catch {
    return {};
  }
}

if (out !== undefined && out !== '') {
  const at = (): number => performance.timeOrigin + performance.now();
  const preload = at();
  const modules: [string, number, number][] = [];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Module = require('module') as { prototype: { _compile: (this: unknown, content: string, filename: string) => unknown } };
  const compile = Module.prototype._compile;
  Module.prototype._compile = function (this: unknown, content: string, filename: string): unknown {
    const start = at();
    try {
      return compile.call(this, content, filename);
    } finally {
      if (/[\\/]dist[\\/][^\\/]+\.js$/.test(filename)) modules.push([path.basename(filename), start, at()]);
    }
  };

  const lines: [number, string][] = [];
  const marks = /^(##\[group\]|##\[endgroup\]|\[command\]|##vso\[task\.(complete|setvariable|settaskvariable|uploadsummary))/;
  let partial = '';
  const write = process.stdout.write.bind(process.stdout) as (chunk: unknown, ...rest: unknown[]) => boolean;
  process.stdout.write = (chunk: unknown, ...rest: unknown[]): boolean => {
    const t = at();
    const text = partial + (typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : '');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) if (marks.test(line)) lines.push([t, line.slice(0, 300)]);
    return write(chunk, ...rest);
  };

  const profile = process.env.DBXC_BENCH_CPU_PROF;
  const session = profile !== undefined && profile !== '' ? new Session() : undefined;
  if (session !== undefined) {
    session.connect();
    session.post('Profiler.enable');
    session.post('Profiler.setSamplingInterval', { interval: 200 });
    session.post('Profiler.start');
  }

  process.on('exit', () => {
    const step = path.basename(process.argv[1] ?? 'step', '.js');
    // An in-process inspector session answers synchronously, so the profile is written before the process ends.
    session?.post('Profiler.stop', (err, result) => {
      if (err === null) fs.writeFileSync(`${profile ?? ''}.${step}.cpuprofile`, JSON.stringify(result.profile));
    });
    fs.writeFileSync(
      `${out}.${step}.json`,
      JSON.stringify({
        origin: performance.timeOrigin,
        preload,
        exit: at(),
        modules,
        lines,
        maxRssKb: process.resourceUsage().maxRSS,
        io: readIo(),
      }),
    );
  });
}
