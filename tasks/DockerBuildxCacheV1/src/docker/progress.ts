/**
 * Reads BuildKit's `--progress plain` output. A Dockerfile step is a vertex whose name starts
 * with `[stage n/m]` or `[n/m]`; it was taken from the cache when BuildKit prints `#N CACHED`, or
 * when its only work was pulling its layers from a registry cache.
 */
export interface Step {
  readonly vertex: number;
  readonly name: string;
  cached: boolean;
}

export interface StepCount {
  readonly total: number;
  readonly cached: number;
  readonly steps: readonly Step[];
}

const NAME = /^#(\d+) (\[[^\]]*\b\d+\/\d+\] .*)$/;
const CACHED = /^#(\d+) CACHED\s*$/;
/**
 * A layer pulled from a registry cache: BuildKit then often shows a cached step only as the
 * download and extraction of its layers, without `CACHED` (measured through the registry facade).
 */
const PULLED = /^#(\d+) (?:extracting sha256:[0-9a-f]{64}\b|sha256:[0-9a-f]{64} \S+ \/ \S+ .*done$)/;
const ERROR = /^#(\d+) ERROR: (.*)$/;
const FROM = /^\[[^\]]*\] FROM /;

export class ProgressParser {
  private readonly steps = new Map<number, Step>();
  private readonly cachedVertices = new Set<number>();
  private readonly names = new Map<number, string>();
  private readonly errors: { vertex: number; message: string }[] = [];

  push(line: string): void {
    const named = NAME.exec(line);
    if (named) {
      const vertex = Number(named[1]);
      const name = named[2] ?? '';
      if (!this.names.has(vertex)) this.names.set(vertex, name);
      if (!FROM.test(name) && !this.steps.has(vertex)) {
        this.steps.set(vertex, { vertex, name, cached: this.cachedVertices.has(vertex) });
      }
      return;
    }
    const generic = /^#(\d+) (.*)$/.exec(line);
    if (generic && !this.names.has(Number(generic[1])) && !/^\d/.test(generic[2] ?? '')) {
      this.names.set(Number(generic[1]), generic[2] ?? '');
    }
    const cached = CACHED.exec(line) ?? PULLED.exec(line);
    if (cached) {
      const vertex = Number(cached[1]);
      this.cachedVertices.add(vertex);
      const step = this.steps.get(vertex);
      if (step) step.cached = true;
      return;
    }
    const error = ERROR.exec(line);
    if (error) this.errors.push({ vertex: Number(error[1]), message: error[2] ?? '' });
  }

  count(): StepCount {
    const steps = [...this.steps.values()];
    return { total: steps.length, cached: steps.filter((s) => s.cached).length, steps };
  }

  /** The vertex names that failed, such as `exporting cache to client directory`. */
  failedVertices(): string[] {
    return this.errors.map((e) => this.names.get(e.vertex) ?? `#${e.vertex}`);
  }
}

export function countSteps(lines: Iterable<string>): StepCount {
  const parser = new ProgressParser();
  for (const line of lines) parser.push(line);
  return parser.count();
}
