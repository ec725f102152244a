/**
 * Cache@2's key syntax. A key is segments separated by `|`, each trimmed. A segment is a literal
 * string when it is quoted (the quotes stay in the key), when it has neither `.` nor `/`, when it
 * ends with `.`, or when it holds a character that cannot be in a file name. Any other segment is
 * a comma-separated list of file paths or globs, where a leading `!` excludes.
 */
export type Segment = { readonly kind: 'literal'; readonly text: string } | { readonly kind: 'files'; readonly text: string; readonly include: readonly string[]; readonly exclude: readonly string[] };

export class KeySyntaxError extends Error {
  override name = 'KeySyntaxError';
}

const GLOB_CHARS = /[*?[\]]/;
/** Characters that no file name can hold on any agent OS; a segment with one is a literal. */
// eslint-disable-next-line no-control-regex
const NOT_IN_FILE_NAMES = /[\x00-\x1f<>"|]/;

export function isFileSegment(segment: string): boolean {
  if (segment.length >= 2 && segment.startsWith('"') && segment.endsWith('"')) return false;
  if (NOT_IN_FILE_NAMES.test(segment)) return false;
  if (!segment.includes('.') && !segment.includes('/') && !segment.includes('\\')) return false;
  return !segment.endsWith('.');
}

export function hasGlob(rule: string): boolean {
  return GLOB_CHARS.test(rule);
}

export function parseKey(text: string): Segment[] {
  const raw = text.split('|').map((s) => s.trim());
  if (raw.some((s) => s === '')) throw new KeySyntaxError(`'${text}' has an empty segment; separate segments with single '|'`);
  return raw.map((segment) => {
    if (segment === '*' || segment === '**') throw new KeySyntaxError(`'${segment}' is a reserved segment; for a glob of files write './${segment}'`);
    if (segment.startsWith("'") || segment.startsWith('`')) throw new KeySyntaxError(`the segment ${segment} cannot start with ' or \`; quote literals with "`);
    if (!isFileSegment(segment)) return { kind: 'literal', text: segment };
    const rules = segment
      .split(',')
      .map((r) => r.trim())
      .filter((r) => r !== '');
    const include = rules.filter((r) => !r.startsWith('!'));
    const exclude = rules.filter((r) => r.startsWith('!')).map((r) => r.slice(1));
    if (include.length === 0) throw new KeySyntaxError(`the file segment '${segment}' only excludes; add a pattern that includes files`);
    return { kind: 'files', text: segment, include, exclude };
  });
}

/** Whether `key` starts with all of `prefix`'s segments: how a restore key matches an entry's key. */
export function startsWithSegments(key: readonly string[], prefix: readonly string[]): boolean {
  return prefix.length <= key.length && prefix.every((segment, i) => key[i] === segment);
}
