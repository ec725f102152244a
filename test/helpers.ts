import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** A fresh temporary folder, removed by `cleanup()`. */
export function tempDir(prefix = 'dbxc-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  created.push(dir);
  return dir;
}

const created: string[] = [];

export function cleanup(): void {
  for (const dir of created.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** Writes files given as relative path → content under `root`, creating folders. */
export function writeTree(root: string, files: Record<string, string | Buffer>): void {
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(root, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
  }
}

/**
 * The lines of a step's output that show `needle` as the agent would: a setsecret line is the
 * command that masks it, not output.
 */
export function linesShowing(stdout: string, needle: string): string[] {
  return stdout.split('\n').filter((l) => l.includes(needle) && !l.startsWith('##vso[task.setsecret]'));
}
