import * as fs from 'fs';
import * as path from 'path';
import type { InputName } from '../task/inputs';
import { loc } from '../task/messages';
import { InputError, MACRO, type Inputs } from './source';

// The readers every input shares: lines, KEY=VALUE lines, booleans, pick lists, macros, and the
// file-system facts that paths are checked against.

export function keyValueLines(src: Inputs, name: InputName, allowBareKey: boolean): string[] {
  return lines(src.value(name)).map((line, i) => {
    const eq = line.indexOf('=');
    if (eq === 0 || (eq < 0 && !allowBareKey) || /\s/.test(eq < 0 ? line : line.slice(0, eq))) {
      throw new InputError(name, loc('InputKeyValueInvalid', i + 1, line));
    }
    return line;
  });
}

export function readBool(src: Inputs, name: InputName): boolean {
  const raw = src.value(name).toLowerCase();
  if (raw === '') return false;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw new InputError(name, loc('InputBoolInvalid', raw));
}

export function pick<T extends string>(src: Inputs, name: InputName, allowed: readonly T[]): T {
  const raw = src.value(name);
  const found = allowed.find((a) => a.toLowerCase() === raw.toLowerCase());
  if (found === undefined) throw new InputError(name, loc('InputPickInvalid', raw, allowed.join(', ')));
  return found;
}

/** Replaces `$(Variable)` macros that the agent left unexpanded, for example in a default value run outside an agent. */
export function expandMacros(src: Inputs, input: InputName, value: string): string {
  return value.replace(MACRO, (_m, name: string) => {
    const v = src.variable(name);
    if (v === undefined) throw new InputError(input, loc('InputMacroUndefined', value, name));
    return v;
  });
}

export function lines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

export function isFile(p: string): boolean {
  return fs.statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
}

export function isDirectory(p: string): boolean {
  return fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

export function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** A URL, or undefined for text that is not one. */
export function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}
