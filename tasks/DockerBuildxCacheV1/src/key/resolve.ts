import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Minimatch, type MinimatchOptions } from 'minimatch';
import { hasGlob, parseKey, type Segment } from './segments';

/** A file that a key segment matched: its path relative to the working directory, size and SHA-256. */
export interface MatchedFile {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

export type ResolvedSegment =
  | { readonly kind: 'literal'; readonly text: string; readonly value: string }
  | { readonly kind: 'files'; readonly text: string; readonly value: string; readonly files: readonly MatchedFile[] };

export interface ResolvedKey {
  readonly segments: readonly ResolvedSegment[];
  /** The resolved segments: literals as written, file segments as fingerprints. */
  readonly values: readonly string[];
  /** The values joined with `|`, as Cache@2 shows a resolved key. */
  readonly text: string;
}

export class KeyResolveError extends Error {
  override name = 'KeyResolveError';
}

/**
 * Globs as Cache@2 matches them: dot files included, no brace expansion, case-sensitive on Linux;
 * `\` is a path separator on Windows and an escape elsewhere.
 */
const MATCH_OPTIONS: MinimatchOptions = {
  dot: true,
  nobrace: true,
  nocase: process.platform !== 'linux',
  windowsPathsNoEscape: process.platform === 'win32',
};
const SMALL_FILE = 1 << 22;

const toPosix = path.sep === '/' ? (p: string): string => p : (p: string): string => p.split(path.sep).join('/');

/**
 * Cache@2's fingerprint of a file segment: base64 SHA-256 over `\nSHA256(<path>)=[<size>]<sha256>`
 * for each matched file, in ordinal order of their paths.
 */
export function fingerprint(files: readonly MatchedFile[]): string {
  const text = files.map((f) => `\nSHA256(${f.path})=[${f.size}]${f.sha256}`).join('');
  return crypto.createHash('sha256').update(text, 'utf8').digest('base64');
}

/** Where to start walking for an absolute glob, and how deep: the folder before the first glob part (for a plain path, its folder). */
export function walkRoot(absolutePattern: string): { root: string; depth: number } {
  const parts = absolutePattern.split('/');
  const glob = parts.findIndex((p) => hasGlob(p));
  const firstGlob = Math.max(1, glob < 0 ? parts.length - 1 : glob);
  const rest = parts.slice(firstGlob);
  return { root: parts.slice(0, firstGlob).join('/') || '/', depth: rest.includes('**') ? Infinity : rest.length };
}

/**
 * The size and SHA-256 of a file, from one open file: open, fstat, read, close. Small files are
 * read synchronously, because for thousands of small files Node's asynchronous calls cost several
 * times the work itself; large files stream.
 */
async function hashFileInfo(file: string): Promise<{ size: number; sha256: string }> {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
    if (size <= SMALL_FILE) {
      const buffer = Buffer.allocUnsafe(size);
      let read = 0;
      while (read < size) {
        const n = fs.readSync(fd, buffer, read, size - read, read);
        if (n === 0) break;
        read += n;
      }
      return { size: read, sha256: hash.update(buffer.subarray(0, read)).digest('hex') };
    }
  } finally {
    fs.closeSync(fd);
  }
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return { size, sha256: hash.digest('hex') };
}

/** Files (absolute, posix) under `root` down to `depth`, skipping folders that an exclude rule removes whole. */
function walk(root: string, depth: number, prunes: readonly Minimatch[]): string[] {
  const found: string[] = [];
  const visit = (dir: string, level: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = dir === '/' ? `/${entry.name}` : `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (level < depth && !prunes.some((m) => m.match(full))) visit(full, level + 1);
      } else if (entry.isFile() || (entry.isSymbolicLink() && fs.statSync(full, { throwIfNoEntry: false })?.isFile() === true)) {
        found.push(full);
      }
    }
  };
  visit(root, 1);
  return found;
}

/** Whether a file (absolute, posix) is one a segment's rules select: any include matches and no exclude does. */
export function pathFilter(include: readonly string[], exclude: readonly string[], workingDirectory: string): (file: string) => boolean {
  const absolute = (rule: string): string => toPosix(path.resolve(workingDirectory, rule));
  const includes = include.map((r) => new Minimatch(absolute(r), MATCH_OPTIONS));
  const excludes = exclude.map((r) => new Minimatch(absolute(r), MATCH_OPTIONS));
  return (file) => includes.some((m) => m.match(file)) && !excludes.some((m) => m.match(file));
}

async function resolveFiles(segment: Extract<Segment, { kind: 'files' }>, workingDirectory: string): Promise<MatchedFile[]> {
  const absolute = (rule: string): string => toPosix(path.resolve(workingDirectory, rule));
  const selected = pathFilter(segment.include, segment.exclude, workingDirectory);
  // `!dir/**` excludes everything below dir, so the walk need not enter it.
  const prunes = segment.exclude.filter((r) => r.endsWith('/**')).map((r) => new Minimatch(absolute(r.slice(0, -3)), MATCH_OPTIONS));

  const candidates = new Set<string>();
  const roots = new Map<string, number>();
  for (const rule of segment.include) {
    if (!hasGlob(rule)) {
      // A plain path is one file: no need to list its folder.
      const file = absolute(rule);
      if (fs.statSync(file, { throwIfNoEntry: false })?.isFile() === true) candidates.add(file);
      continue;
    }
    const { root, depth } = walkRoot(absolute(rule));
    roots.set(root, Math.max(roots.get(root) ?? 0, depth));
  }
  for (const [root, depth] of roots) for (const file of walk(root, depth, prunes)) candidates.add(file);

  const matched = [...candidates].filter(selected).sort();
  const base = `${toPosix(path.resolve(workingDirectory))}/`;
  const relative = (file: string): string =>
    file.startsWith(base) ? file.slice(base.length) : toPosix(path.relative(workingDirectory, file));
  const files: MatchedFile[] = [];
  for (const file of matched) files.push({ path: relative(file), ...(await hashFileInfo(file)) });
  return files;
}

/**
 * Resolves a key: literals stay as written, each file segment becomes the fingerprint of the
 * files it matches. A file segment that matches nothing is an error that names the segment.
 */
export async function resolveKey(text: string, workingDirectory: string): Promise<ResolvedKey> {
  const segments: ResolvedSegment[] = [];
  const unmatched: string[] = [];
  for (const segment of parseKey(text)) {
    if (segment.kind === 'literal') {
      segments.push({ kind: 'literal', text: segment.text, value: segment.text });
      continue;
    }
    const files = await resolveFiles(segment, workingDirectory);
    if (files.length === 0) unmatched.push(segment.text);
    segments.push({ kind: 'files', text: segment.text, value: fingerprint(files), files });
  }
  if (unmatched.length > 0) {
    throw new KeyResolveError(`no file matches ${unmatched.map((s) => `'${s}'`).join(', ')} (paths are relative to ${workingDirectory})`);
  }
  const values = segments.map((s) => s.value);
  return { segments, values, text: values.join('|') };
}

/** The log lines that show how a key was resolved, file by file, so a user can see why it changed. */
export function describeKey(key: ResolvedKey): string[] {
  const lines = [key.text];
  for (const s of key.segments) {
    if (s.kind === 'literal') {
      lines.push(` - ${s.text} [string]`);
      continue;
    }
    lines.push(
      ` - ${s.text} [${hasGlob(s.text) || s.files.length > 1 ? `file pattern; matches: ${s.files.length}` : 'file'}] --> ${s.value}`,
    );
    for (const f of s.files) lines.push(`   - ${f.path} [${f.size} bytes] --> ${f.sha256}`);
  }
  return lines;
}
