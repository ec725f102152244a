import { KeySyntaxError, parseKey } from '../key/segments';
import type { InputName } from '../task/inputs';
import { loc } from '../task/messages';
import { InputError } from './source';

// The default-key policy: the key and restore key when `cacheKey` is left empty, and the check of a
// key's Cache@2 syntax.

/**
 * The key when `cacheKey` is empty: `buildx | "<Agent.OS>" | "<imageName>" | <dockerfile>`. The
 * image name is quoted so that its dots and slashes are not read as a path; the Dockerfile is
 * written so that Cache@2's syntax reads it as a file, which a bare `Dockerfile` is not.
 */
export function defaultKey(agentOs: string, imageName: string | undefined, dockerfile: string): string {
  const file = /[./]/.test(dockerfile) && !dockerfile.endsWith('.') ? dockerfile : `./${dockerfile}`;
  return `${defaultRestoreKey(agentOs, imageName)} | ${file}`;
}

export function defaultRestoreKey(agentOs: string, imageName: string | undefined): string {
  return ['buildx', `"${agentOs}"`, ...(imageName === undefined ? [] : [`"${imageName}"`])].join(' | ');
}

export function checkKey(input: InputName, key: string): void {
  try {
    parseKey(key);
  } catch (err) {
    if (err instanceof KeySyntaxError) throw new InputError(input, loc('InputKeyInvalid', err.message));
    throw err;
  }
}
