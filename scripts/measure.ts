// What the benchmarks, the demo and the end-to-end tests measure with: sizes on disk and medians.
import * as fs from 'fs';
import * as path from 'path';

/** Bytes of every file under `dir`; 0 when there is no such folder. */
export function folderBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/** Bytes as decimal megabytes, one decimal: `127.5 MB`. */
export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

/** The middle value (the upper one of an even count); NaN for none. */
export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Writes a benchmark's report `name` (BENCHMARKS.md, say) and returns its path: under out/, which
 * git ignores, unless the command line has `--update`, which writes it at the repository's root,
 * where the README links to it.
 */
export function writeReport(root: string, name: string, text: string, argv: readonly string[] = process.argv): string {
  const file = argv.includes('--update') ? path.join(root, name) : path.join(root, 'out', name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}
