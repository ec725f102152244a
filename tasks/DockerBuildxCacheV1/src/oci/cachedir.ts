import * as path from 'path';

/** The kinds of hidden sibling folder a job makes next to a cache folder. */
export type SiblingKind = 'export' | 'old' | 'restore';

/** Hidden siblings of a cache folder live on its filesystem, so that swapping them in is a rename. */
export function siblingPrefix(dir: string): string {
  const base = path.basename(dir);
  return `${base.startsWith('.') ? '' : '.'}${base}.`;
}

/** The sibling folder of `dir` where a job stages an export or a restore, or parks the old folder. */
export function siblingPath(dir: string, kind: SiblingKind, id: string): string {
  return path.join(path.dirname(dir), `${siblingPrefix(dir)}${kind}-${id}`);
}
