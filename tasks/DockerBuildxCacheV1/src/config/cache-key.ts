import * as os from 'os';
import * as path from 'path';
import { isOldFormat, KeySyntaxError, parseKey, salted, SALT_VARIABLE } from '../key/segments';
import { Input, type InputName } from '../task/inputs';
import { loc } from '../task/messages';
import { lines } from './parsers';
import { InputError, type Inputs } from './source';
import { isStoreBackend, type CacheBackend } from './types';

// The default-key policy: the key and restore key when `cacheKey` is left empty, the salt, and the
// check of a key's Cache@2 syntax.

/** The agent's OS as Agent.OS names it; outside an agent, this machine's. */
function agentOs(src: Inputs): string {
  const names: Record<string, string> = { Linux: 'Linux', Darwin: 'Darwin', Windows_NT: 'Windows_NT' };
  return src.variable('Agent.OS') ?? names[os.type()] ?? os.type();
}

/**
 * `cacheKey` and `restoreKeys`, salted, in Cache@2 syntax. Both left empty, the key names the OS,
 * the image and the Dockerfile, and the restore key all but the Dockerfile.
 */
export function readKeys(
  src: Inputs,
  backend: CacheBackend,
  imageName: string | undefined,
  dockerfilePath: string,
  warnings: string[],
): { key: string; restoreKeys: string[] } {
  const osName = agentOs(src);
  const dockerfile = path.relative(src.workingDirectory, dockerfilePath).split(path.sep).join('/');
  const explicitKey = src.value(Input.cacheKey);
  const salt = src.variable(SALT_VARIABLE);
  const key = salted(explicitKey || defaultKey(osName, imageName, dockerfile), salt);
  checkKey(Input.cacheKey, key);
  const bothEmpty = explicitKey === '' && src.value(Input.restoreKeys) === '';
  const unsalted = bothEmpty ? [defaultRestoreKey(osName, imageName)] : lines(src.value(Input.restoreKeys));
  const restoreKeys = unsalted.map((k) => salted(k, salt));
  for (const restoreKey of restoreKeys) checkKey(Input.restoreKeys, restoreKey);
  if (isOldFormat(explicitKey)) {
    // As the agent: the old one-segment-a-line format cannot be combined with restore keys.
    if (restoreKeys.length > 0) throw new InputError(Input.cacheKey, loc('InputKeyOldFormatRestoreKeys'));
    if (isStoreBackend(backend)) warnings.push(loc('WarnKeyOldFormat'));
  }
  return { key, restoreKeys };
}

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

function checkKey(input: InputName, key: string): void {
  try {
    parseKey(key);
  } catch (err) {
    if (err instanceof KeySyntaxError) throw new InputError(input, loc('InputKeyInvalid', err.message));
    throw err;
  }
}
