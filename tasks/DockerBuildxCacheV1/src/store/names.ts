import * as crypto from 'crypto';

/** The layout version of both stores: everything lives under this prefix. */
export const LAYOUT_VERSION = 'v1';

/**
 * A scope's folder name: readable, bounded, and unique. Branch names may hold characters that
 * neither file systems nor blob names take well, and two branches may differ only in those.
 */
export function scopeSlug(scope: string): string {
  const slug = scope.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-60);
  return `${slug}-${crypto.createHash('sha256').update(scope).digest('hex').slice(0, 12)}`;
}

/** An entry's id: its creation time, zero-padded so that names sort by age, and a random part. */
export function entryId(now: Date, random: string): string {
  return `${String(now.getTime()).padStart(14, '0')}-${random}`;
}
