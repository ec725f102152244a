/**
 * Cache@2's key syntax, as the agent reads it (PipelineCacheTaskPluginBase and FingerprintCreator).
 * A key is segments separated by `|`, each trimmed, empty ones dropped; a key written on several
 * lines is the old format, one segment a line. A segment is a literal string when it is quoted (the
 * quotes stay in the key), when it has neither `.` nor a path separator, when it ends with `.`, or
 * when it holds a character that no file name can hold on the agent's OS. Any other segment is a
 * comma-separated list of file paths or globs, where a leading `!` excludes.
 */
export type Segment =
  | { readonly kind: 'literal'; readonly text: string }
  | { readonly kind: 'files'; readonly text: string; readonly include: readonly string[]; readonly exclude: readonly string[] };

export class KeySyntaxError extends Error {
  override name = 'KeySyntaxError';
}

/** The pipeline variable whose value the agent puts in front of every key, to start all caches afresh. */
export const SALT_VARIABLE = 'AZP_CACHING_SALT';

const GLOB_CHARS = /[*?[\]]/;

/**
 * Characters that no file name can hold, as .NET's Path.GetInvalidFileNameChars() lists them, less
 * the ones the agent counts as path characters (globs, separators, the volume colon): on Windows
 * control characters and `"<>|`, elsewhere only NUL. A segment with one is a literal.
 */
// eslint-disable-next-line no-control-regex
const NOT_IN_FILE_NAMES: Partial<Record<NodeJS.Platform, RegExp>> & { default: RegExp } = { win32: /[\x00-\x1f"<>|]/, default: /\x00/ };

/** Path separators: `\` is one only on Windows; elsewhere it is an ordinary character, and in globs an escape. */
const SEPARATORS: Partial<Record<NodeJS.Platform, RegExp>> & { default: RegExp } = { win32: /[/\\]/, default: /\// };

export function isFileSegment(segment: string, platform: NodeJS.Platform = process.platform): boolean {
  if (segment.length >= 2 && segment.startsWith('"') && segment.endsWith('"')) return false;
  if ((NOT_IN_FILE_NAMES[platform] ?? NOT_IN_FILE_NAMES.default).test(segment)) return false;
  if (!segment.includes('.') && !(SEPARATORS[platform] ?? SEPARATORS.default).test(segment)) return false;
  return !segment.endsWith('.');
}

export function hasGlob(rule: string): boolean {
  return GLOB_CHARS.test(rule);
}

/** Cache@2's first key format, one segment a line, which the agent still reads with a deprecation warning. */
export function isOldFormat(text: string): boolean {
  return text.includes('\n');
}

/**
 * The key with the salt in front, as its first segment `AZP_CACHING_SALT=<salt>`, as the agent puts
 * it in front of the key and of every restore key; like the agent, a key in the old format gets none.
 */
export function salted(text: string, salt: string | undefined): string {
  if (salt === undefined || salt.trim() === '' || isOldFormat(text)) return text;
  return `${SALT_VARIABLE}=${salt} | ${text}`;
}

/** The segments' texts: split on `|`, or on line breaks in the old format; trimmed; empty ones dropped. */
export function splitKey(text: string): string[] {
  return (isOldFormat(text) ? text.split(/\r?\n/) : text.split('|')).map((s) => s.trim()).filter((s) => s !== '');
}

export function parseKey(text: string, platform: NodeJS.Platform = process.platform): Segment[] {
  const segments = splitKey(text);
  if (segments.length === 0) throw new KeySyntaxError(`'${text}' has no segment; write at least one, such as "buildx"`);
  return segments.map((segment, i) => {
    // The salt is a value, never a path, whatever it holds.
    if (i === 0 && segment.startsWith(`${SALT_VARIABLE}=`)) return { kind: 'literal', text: segment };
    if (segment === '*' || segment === '**')
      throw new KeySyntaxError(`'${segment}' is a reserved segment; for a glob of files write './${segment}'`);
    if (segment.startsWith("'") || segment.startsWith('`'))
      throw new KeySyntaxError(`the segment ${segment} cannot start with ' or \`; quote literals with "`);
    if (!isFileSegment(segment, platform)) return { kind: 'literal', text: segment };
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
