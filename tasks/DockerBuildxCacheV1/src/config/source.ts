import * as fs from 'fs';
import * as path from 'path';
import type { InputName } from '../task/inputs';
import { taskDir } from '../task/messages';

// Reading inputs in general: task.json's definitions and defaults, where values come from, and the
// error for a bad value. The readers every input shares are in parsers.ts; what each input means is
// read.ts's concern.

/** An input as task.json declares it. */
export interface InputDefinition {
  readonly name: string;
  readonly type: string;
  readonly defaultValue?: string;
}

const loaded = new Map<string, ReadonlyMap<string, InputDefinition>>();

/**
 * task.json's inputs by name. The agent passes every input's default when a pipeline does not set
 * it, so these defaults are the only way to tell a value the user wrote from one the agent filled
 * in. task.json is found as for the messages.
 */
export function inputDefinitions(dir: string = taskDir()): ReadonlyMap<string, InputDefinition> {
  let defs = loaded.get(dir);
  if (defs === undefined) {
    const task = JSON.parse(fs.readFileSync(path.join(dir, 'task.json'), 'utf8')) as { inputs: InputDefinition[] };
    defs = new Map(task.inputs.map((i) => [i.name, i]));
    loaded.set(dir, defs);
  }
  return defs;
}

export const MACRO = /\$\(([A-Za-z0-9_.-]+)\)/g;

/** Expands `$(Name)` macros as the agent does: a defined variable is replaced, any other macro stays as written. */
export function expandDefined(text: string, variable: (name: string) => string | undefined): string {
  return text.replace(MACRO, (macro, name: string) => variable(name) ?? macro);
}

/** Where inputs and agent variables come from: task-lib on an agent, a table in tests. */
export interface Source {
  /** The input value as the step gets it (on an agent, the default when the pipeline does not set it), trimmed, or ''. */
  input(name: string): string;
  /** An agent variable such as `System.DefaultWorkingDirectory`, or undefined when unset or empty. */
  variable(name: string): string | undefined;
  /** A variable of the step's environment; the process's own when absent. */
  env?(name: string): string | undefined;
}

/** A bad input value. The message names the input, says what is wrong and what to write instead. */
export class InputError extends Error {
  constructor(
    readonly input: InputName,
    detail: string,
  ) {
    super(`Input '${input}': ${detail}`);
    this.name = 'InputError';
  }
}

/**
 * The inputs as the agent passes them, read against task.json's defaults. The agent fills in the
 * default of every input a pipeline does not set, so an input counts as set only when its value
 * differs from its default with the default's macros expanded (and, for a filePath, resolved as the
 * agent resolves it): that is what every "has no effect" warning asks.
 */
export class Inputs {
  private readonly raw = new Map<string, string>();

  constructor(
    private readonly src: Source,
    readonly workingDirectory: string,
    private readonly defs: ReadonlyMap<string, InputDefinition> = inputDefinitions(),
  ) {}

  variable(name: string): string | undefined {
    return this.src.variable(name);
  }

  env(name: string): string | undefined {
    return this.src.env === undefined ? process.env[name] : this.src.env(name);
  }

  /** The value the step works with: what the agent passed, else the input's default as task.json writes it. */
  value(name: InputName): string {
    const raw = this.read(name);
    return raw !== '' ? raw : (this.defs.get(name)?.defaultValue ?? '');
  }

  /** Whether the pipeline gave the input a value other than its default. */
  given(name: InputName): boolean {
    const raw = this.read(name);
    if (raw === '') return false;
    const def = this.defs.get(name);
    if (def === undefined) return true;
    const expanded = expandDefined(def.defaultValue ?? '', (v) => this.src.variable(v));
    if (def.type === 'filePath') return path.resolve(this.workingDirectory, raw) !== path.resolve(this.workingDirectory, expanded);
    if (def.type === 'boolean' || def.type === 'pickList') return raw.toLowerCase() !== expanded.toLowerCase();
    return raw !== expanded;
  }

  /** Those of `names` that are set but have no effect with the other inputs. */
  without(names: readonly InputName[]): InputName[] {
    return names.filter((name) => this.given(name));
  }

  private read(name: string): string {
    let raw = this.raw.get(name);
    if (raw === undefined) {
      raw = this.src.input(name);
      this.raw.set(name, raw);
    }
    return raw;
  }
}
