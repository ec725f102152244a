import * as fs from 'fs';
import * as path from 'path';

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
 * in. Both the bundle and the compiled sources sit one folder below task.json, as for the messages.
 */
export function inputDefinitions(taskDir: string = path.join(__dirname, '..')): ReadonlyMap<string, InputDefinition> {
  let defs = loaded.get(taskDir);
  if (defs === undefined) {
    const task = JSON.parse(fs.readFileSync(path.join(taskDir, 'task.json'), 'utf8')) as { inputs: InputDefinition[] };
    defs = new Map(task.inputs.map((i) => [i.name, i]));
    loaded.set(taskDir, defs);
  }
  return defs;
}

const MACRO = /\$\(([A-Za-z0-9_.-]+)\)/g;

/** Expands `$(Name)` macros as the agent does: a defined variable is replaced, any other macro stays as written. */
export function expandDefined(text: string, variable: (name: string) => string | undefined): string {
  return text.replace(MACRO, (macro, name: string) => variable(name) ?? macro);
}
