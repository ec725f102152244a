import { spawn } from 'child_process';
import { neutralise } from '../task/sanitize';
import { execTool, which } from '../task/tool';

export interface RunOptions {
  /** Show each output line in the log, neutralised; a function shows only the lines it accepts. */
  readonly echo?: boolean | ((line: string) => boolean);
  /** Where the command line and echoed lines go; the log by default. */
  readonly print?: (line: string) => void;
  /** Written to the command's standard input, such as a password for `--password-stdin`. */
  readonly input?: string;
  /** Called with each output line (stdout and stderr) as it arrives. */
  readonly onLine?: (line: string) => void;
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The one way this task runs the docker CLI. Tests hand in a fake. */
export interface DockerCli {
  run(args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/** Keeps at most the last `limit` characters, so a long build log cannot exhaust memory. */
class Tail {
  private text = '';
  constructor(private readonly limit = 1 << 20) {}
  push(line: string): void {
    this.text += line + '\n';
    if (this.text.length > this.limit * 2) this.text = this.text.slice(-this.limit);
  }
  value(): string {
    return this.text.length > this.limit ? this.text.slice(-this.limit) : this.text;
  }
}

/**
 * What a failed command said, for an error message: the last `lines` lines of its standard error, or
 * of its standard output when it wrote no error (a result without `stdout`: its error only), joined
 * with ` | `; '' when it said nothing. With `only`, just the lines that match it count, trimmed: the
 * `ERROR:` lines among a build's progress output.
 */
export function errorTail(result: { readonly stderr: string; readonly stdout?: string }, lines = 1, only?: RegExp): string {
  const said = ((result.stderr || result.stdout) ?? '').trim().split('\n');
  const counted = only === undefined ? said : said.map((line) => line.trim()).filter((line) => only.test(line));
  return counted.slice(-lines).join(' | ');
}

/** How a command line is shown in the log: each argument that a shell would split is single-quoted. */
export function displayCommand(tool: string, args: readonly string[]): string {
  return [tool, ...args].map((a) => (a === '' || /[^\w@%+=:,./-]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a)).join(' ');
}

const echoes = (options: RunOptions, line: string): boolean =>
  typeof options.echo === 'function' ? options.echo(line) : options.echo === true;

/** A docker CLI whose log lines are kept in `lines`, for work that runs while another log group is open. */
export function buffered(docker: DockerCli, lines: string[]): DockerCli {
  return { run: (args, options) => docker.run(args, { ...options, print: (line) => lines.push(line) }) };
}

export class Docker implements DockerCli {
  /** `env` replaces the environment of every docker run, for a job-private DOCKER_CONFIG. */
  constructor(
    private readonly toolPath: string,
    private readonly env?: NodeJS.ProcessEnv,
  ) {}

  static locate(env?: NodeJS.ProcessEnv): Docker {
    return new Docker(which('docker'), env);
  }

  /** The same docker, run with a different DOCKER_CONFIG. */
  withConfig(dockerConfig: string): Docker {
    return new Docker(this.toolPath, { ...(this.env ?? process.env), DOCKER_CONFIG: dockerConfig });
  }

  async run(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const print = options.print ?? ((line: string): void => console.log(line));
    print(`[command]${neutralise(displayCommand(this.toolPath, args))}`);
    if (options.input !== undefined) return this.runWithInput(args, options.input, options, print);
    const out = new Tail();
    const err = new Tail();
    const handle = (tail: Tail) => (line: string) => {
      tail.push(line);
      options.onLine?.(line);
      if (echoes(options, line)) print(neutralise(line));
    };
    const code = await execTool(this.toolPath, args, { onStdout: handle(out), onStderr: handle(err), env: options.env ?? this.env });
    return { code, stdout: out.value(), stderr: err.value() };
  }

  /** task-lib's tool runner has no standard input, so a command that reads one runs here. */
  private runWithInput(args: readonly string[], input: string, options: RunOptions, print: (line: string) => void): Promise<RunResult> {
    return new Promise((resolve) => {
      const child = spawn(this.toolPath, [...args], { env: options.env ?? this.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (e) => {
        resolve({ code: -1, stdout, stderr: e.message });
      });
      child.on('close', (code) => {
        for (const line of `${stdout}${stderr}`.split('\n').filter((l) => l !== '')) {
          options.onLine?.(line);
          if (echoes(options, line)) print(neutralise(line));
        }
        resolve({ code: code ?? -1, stdout, stderr });
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    });
  }
}
