import { startsWithSegments } from '../key/segments';
import type { BlobRef, Entry, EntryHead, HitKind, Lease } from './types';

export interface Candidate {
  readonly entry: EntryHead;
  readonly hit: Exclude<HitKind, 'false'>;
}

/** How far ahead of the reader's clock a writer's clock may be and still be believed: more is a bad clock. */
export const CLOCK_SKEW_MS = 10 * 60_000;

/**
 * A time as the reader's clock can believe it: one further in the future than clocks drift apart
 * ranks below every other (-Infinity), so that no timestamp can win for ever.
 */
export function believable(iso: string, now: Date): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) || t > now.getTime() + CLOCK_SKEW_MS ? -Infinity : t;
}

/** Newest first by believable creation time, then by id. */
const newestFirst =
  (now: Date) =>
  (a: EntryHead, b: EntryHead): number => {
    const ta = believable(a.created, now);
    const tb = believable(b.created, now);
    return (ta === tb ? 0 : tb > ta ? 1 : -1) || b.id.localeCompare(a.id);
  };

/**
 * The entries to try, best first, as Cache@2 orders them: the exact key in each scope in turn,
 * then each restore key (a prefix of whole segments) in each scope in turn; within one key and
 * scope the newest entry first. Restoring walks this list until an entry restores.
 */
export function candidates(
  entries: readonly EntryHead[],
  scopes: readonly string[],
  key: readonly string[],
  restoreKeys: readonly (readonly string[])[],
  now: Date,
): Candidate[] {
  const out: Candidate[] = [];
  const seen = new Set<string>();
  const take = (match: (e: EntryHead) => boolean, hit: Candidate['hit']): void => {
    for (const scope of scopes) {
      for (const entry of entries.filter((e) => e.scope === scope && match(e)).sort(newestFirst(now))) {
        if (seen.has(entry.id)) continue;
        seen.add(entry.id);
        out.push({ entry, hit });
      }
    }
  };
  const exact = key.join('|');
  take((e) => e.key === exact, 'true');
  for (const prefix of restoreKeys) take((e) => startsWithSegments(e.segments, prefix), 'inexact');
  return out;
}

/** The newest entry of a key in a scope: the one a new save would supersede. */
export function newestOf<E extends EntryHead>(entries: readonly E[], scope: string, key: string, now: Date): E | undefined {
  return entries.filter((e) => e.scope === scope && e.key === key).sort(newestFirst(now))[0];
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Entries to remove: unused for the retention period, or superseded by a newer version of their key.
 * A last use from the future counts as no use since the entry's creation, and a creation from the
 * future as none at all: such an entry goes at the next retention unless an honest clock uses it.
 */
export function expiredEntries<E extends EntryHead>(entries: readonly E[], now: Date, retentionDays: number): E[] {
  const cutoff = now.getTime() - retentionDays * DAY_MS;
  const lastUse = (e: E): number => Math.max(believable(e.lastUsed, now), believable(e.created, now));
  const newest = new Map<string, E>();
  for (const e of [...entries].sort(newestFirst(now))) {
    const slot = `${e.scope}\n${e.key}`;
    if (!newest.has(slot)) newest.set(slot, e);
  }
  return entries.filter((e) => lastUse(e) < cutoff || newest.get(`${e.scope}\n${e.key}`) !== e);
}

/** Blobs that no entry and no live lease reaches. */
export function unreferencedBlobs(
  blobs: ReadonlyMap<string, number>,
  entries: readonly Entry[],
  leases: readonly Lease[],
  now: Date,
): BlobRef[] {
  const live = new Set<string>();
  for (const e of entries) for (const b of e.blobs) live.add(b.digest);
  for (const l of leases) if (Date.parse(l.expires) > now.getTime()) for (const d of l.blobs) live.add(d);
  return [...blobs].filter(([digest]) => !live.has(digest)).map(([digest, size]) => ({ digest, size }));
}
