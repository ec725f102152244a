import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/**
 * Runs the bundled task the way the Azure Pipelines agent does: inputs as INPUT_* variables, every
 * default filled in and macros expanded; agent variables in the environment; logging commands read
 * from stdout; and a post-job step that gets the task variables the main step set and the job status.
 */
export const ROOT = path.resolve(__dirname, '..', '..');
export const TASK_DIR = path.join(ROOT, 'tasks', 'DockerBuildxCacheV1');

export interface Command {
  readonly name: string;
  readonly props: Record<string, string>;
  readonly data: string;
}

export interface StepResult {
  readonly exitCode: number;
  readonly result: 'Succeeded' | 'Failed';
  readonly stdout: string;
  readonly stderr: string;
  readonly commands: Command[];
  readonly outputs: Record<string, string>;
  readonly taskVariables: Record<string, string>;
  readonly warnings: string[];
  readonly errors: string[];
  readonly secrets: string[];
  readonly ms: number;
}

/** A step's whole output, stdout then stderr: what a failed assertion shows. */
export function transcript(step: Pick<StepResult, 'stdout' | 'stderr'>): string {
  return `${step.stdout}\n${step.stderr}`;
}

export interface JobResult {
  readonly main: StepResult;
  readonly post: StepResult;
}

const unescapeData = (s: string): string => s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
const unescapeProp = (s: string): string => unescapeData(s.replace(/%3B/g, ';').replace(/%5D/g, ']'));

/** Parses `##vso[area.event k=v;k=v]data` lines as the agent does. */
export function parseCommands(stdout: string): Command[] {
  const commands: Command[] = [];
  for (const line of stdout.split(/\r?\n/)) {
    const at = line.indexOf('##vso[');
    if (at < 0) continue;
    const close = line.indexOf(']', at);
    if (close < 0) continue;
    const [name = '', ...pairs] = line
      .slice(at + 6, close)
      .split(/[ ;]/)
      .filter((p) => p !== '');
    const props: Record<string, string> = {};
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      if (eq > 0) props[pair.slice(0, eq)] = unescapeProp(pair.slice(eq + 1));
    }
    commands.push({ name, props, data: unescapeData(line.slice(close + 1)) });
  }
  return commands;
}

export const envKey = (name: string): string => name.replace(/[.\s]/g, '_').toUpperCase();

interface TaskInput {
  readonly name: string;
  readonly type: string;
  readonly defaultValue?: string;
  readonly aliases?: readonly string[];
}

/**
 * The inputs a step gets, computed as the agent's TaskRunner does: every input's task.json default,
 * trimmed; over it the pipeline's values, trimmed, by name or alias (the server resolves aliases
 * before the agent sees them) and case-insensitively; then `$(Variable)` macros expanded with the
 * job's variables, case-insensitively, an undefined one left as written; then each filePath input
 * rooted at System.DefaultWorkingDirectory, an empty one becoming that folder itself.
 */
export function agentInputs(
  inputs: Record<string, string>,
  variables: Record<string, string>,
  taskJson = path.join(TASK_DIR, 'task.json'),
): Record<string, string> {
  const defs = (JSON.parse(fs.readFileSync(taskJson, 'utf8')) as { inputs: TaskInput[] }).inputs;
  const canonical = new Map<string, string>();
  for (const def of defs) for (const name of [def.name, ...(def.aliases ?? [])]) canonical.set(name.toLowerCase(), def.name);
  const values: Record<string, string> = Object.fromEntries(defs.map((d) => [d.name, (d.defaultValue ?? '').trim()]));
  for (const [name, value] of Object.entries(inputs)) values[canonical.get(name.toLowerCase()) ?? name] = value.trim();

  const vars = new Map(Object.entries(variables).map(([k, v]) => [k.toLowerCase(), v]));
  const expand = (text: string): string =>
    text.replace(/\$\(([^()]+)\)/g, (macro, name: string) => vars.get(name.trim().toLowerCase()) ?? macro);
  const root = variables['System.DefaultWorkingDirectory'] ?? '';
  for (const [name, value] of Object.entries(values)) values[name] = expand(value);
  for (const def of defs) {
    if (def.type !== 'filePath') continue;
    const value = values[def.name] ?? '';
    values[def.name] = path.isAbsolute(value) ? path.resolve(value) : root === '' ? value : path.resolve(root, value);
  }
  return values;
}

/** A step's environment: the job's variables, and its inputs as the agent computes them (see agentInputs). */
export function stepEnv(
  inputs: Record<string, string>,
  variables: Record<string, string>,
  extra: NodeJS.ProcessEnv = {},
): NodeJS.ProcessEnv {
  const inherited = Object.entries(process.env).filter(([key]) => !key.startsWith('INPUT_') && !key.startsWith('VSTS_TASKVARIABLE_'));
  const env: NodeJS.ProcessEnv = { ...Object.fromEntries(inherited), AGENT_VERSION: '4.266.2', ...extra };
  for (const [name, value] of Object.entries(variables)) env[envKey(name)] = value;
  for (const [name, value] of Object.entries(agentInputs(inputs, variables))) env[`INPUT_${envKey(name)}`] = value;
  return env;
}

export async function runStep(entry: 'main' | 'post', env: NodeJS.ProcessEnv, cwd: string, taskDir = TASK_DIR): Promise<StepResult> {
  const start = Date.now();
  const child = spawn(process.execPath, [path.join(taskDir, 'dist', `${entry}.js`)], { env, cwd });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitCode = await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  const commands = parseCommands(stdout);
  const failed = commands.some((c) => c.name === 'task.complete' && c.props.result === 'Failed') || exitCode !== 0;
  const pick = (name: string): Command[] => commands.filter((c) => c.name === name);
  return {
    exitCode,
    result: failed ? 'Failed' : 'Succeeded',
    stdout,
    stderr,
    commands,
    outputs: Object.fromEntries(
      pick('task.setvariable')
        .filter((c) => c.props.isOutput === 'true')
        .map((c) => [c.props.variable ?? '', c.data]),
    ),
    taskVariables: Object.fromEntries(pick('task.settaskvariable').map((c) => [c.props.variable ?? '', c.data])),
    warnings: pick('task.issue')
      .filter((c) => c.props.type === 'warning')
      .map((c) => c.data),
    errors: pick('task.issue')
      .filter((c) => c.props.type === 'error')
      .map((c) => c.data),
    secrets: pick('task.setsecret').map((c) => c.data),
    ms: Date.now() - start,
  };
}

/**
 * One job: the main step, then the post-job step with the main step's task variables and the job
 * status. `between` sees what the main step left before the post-job step deletes it.
 */
export async function runJob(
  inputs: Record<string, string>,
  variables: Record<string, string>,
  cwd: string,
  extraEnv: NodeJS.ProcessEnv = {},
  between?: (main: StepResult) => void,
): Promise<JobResult> {
  const main = await runStep('main', stepEnv(inputs, variables, extraEnv), cwd);
  between?.(main);
  const postEnv = stepEnv(inputs, { ...variables, 'Agent.JobStatus': main.result }, extraEnv);
  for (const [name, value] of Object.entries(main.taskVariables)) postEnv[`VSTS_TASKVARIABLE_${envKey(name)}`] = value;
  const post = await runStep('post', postEnv, cwd);
  return { main, post };
}

/** Runs docker against the test engine and returns stdout; throws with stderr on failure. */
export function docker(args: string[], input?: string): string {
  const r = spawnSync('docker', args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** The task's own count of cached steps, read from a step's log. */
export function cachedSteps(stdout: string): { cached: number; total: number } {
  const m = /(\d+) of (\d+) steps cached/.exec(stdout);
  if (!m) throw new Error('the log has no step count');
  return { cached: Number(m[1]), total: Number(m[2]) };
}
