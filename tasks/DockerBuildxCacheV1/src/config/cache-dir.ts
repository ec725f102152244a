import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loc } from '../task/messages';

/** A folder the cache folder must never be, nor hold: the task replaces the cache folder whole. */
export interface Guarded {
  /** What it is, in words: `the sources (Build.SourcesDirectory)`. */
  readonly what: string;
  readonly path: string;
}

/** Agent folders, by the variable that names them. */
const AGENT_FOLDERS = [
  'System.DefaultWorkingDirectory',
  'Build.SourcesDirectory',
  'Pipeline.Workspace',
  'Agent.BuildDirectory',
  'Build.ArtifactStagingDirectory',
  'Build.BinariesDirectory',
  'Common.TestResultsDirectory',
  'System.ArtifactsDirectory',
  'Agent.WorkFolder',
  'Agent.TempDirectory',
  'Agent.ToolsDirectory',
  'Agent.HomeDirectory',
];

/** The folders the cache folder is checked against, from the agent's variables, the build context and the store. */
export function guardedFolders(variable: (name: string) => string | undefined, context: string, store: string | undefined): Guarded[] {
  const out: Guarded[] = AGENT_FOLDERS.flatMap((name) => {
    const value = variable(name);
    return value === undefined ? [] : [{ what: `$(${name})`, path: value }];
  });
  out.push({ what: 'your home folder', path: os.homedir() }, { what: 'the build context (buildContext)', path: context });
  if (store !== undefined) out.push({ what: 'the store (localStorePath)', path: store });
  return out;
}

const contains = (outer: string, inner: string): boolean => {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/** Printable ASCII: what BuildKit takes in the gRPC header that carries a local cache's path. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * Why `dir` cannot be the cache folder, or undefined when it can. Pure: the paths are resolved (see
 * `resolveReal`) by the caller. The cache folder is deleted on a miss and replaced on a hit, so it
 * must not be, nor hold, anything else; and BuildKit must be able to take its path.
 */
export function cacheDirProblem(dir: string, guarded: readonly Guarded[], store?: string): string | undefined {
  if (!PRINTABLE_ASCII.test(dir)) return loc('InputCacheDirNotAscii', JSON.stringify(dir));
  // The folder it is, if any, names the mistake best; then the first folder it holds.
  const hit = guarded.find((g) => path.relative(dir, g.path) === '') ?? guarded.find((g) => contains(dir, g.path));
  if (hit !== undefined) return loc('InputCacheDirHolds', dir, hit.what, hit.path);
  if (store !== undefined && contains(store, dir)) return loc('InputCacheDirInStore', dir, store);
  return undefined;
}

/** The path with every link in its existing part resolved, so that a link cannot hide what a folder is. */
export function resolveReal(p: string): string {
  const rest: string[] = [];
  let here = path.resolve(p);
  for (;;) {
    try {
      return path.join(fs.realpathSync(here), ...rest.reverse());
    } catch {
      const parent = path.dirname(here);
      if (parent === here) return path.resolve(p);
      rest.push(path.basename(here));
      here = parent;
    }
  }
}

/** `cacheDirProblem` for the inputs as read, every path resolved through its links first. */
export function checkCacheDir(
  dir: string,
  variable: (name: string) => string | undefined,
  workingDirectory: string,
  context: string,
  store: string | undefined,
): string | undefined {
  const guarded = [{ what: 'the working directory', path: workingDirectory }, ...guardedFolders(variable, context, store)].map((g) => ({
    ...g,
    path: resolveReal(g.path),
  }));
  return cacheDirProblem(resolveReal(dir), guarded, store === undefined ? undefined : resolveReal(store));
}
