import * as assert from 'assert/strict';
import { firstUsable } from '../../tasks/DockerBuildxCacheV1/src/store/restore';
import { EntryUnusableError, type CacheStore, type EntryHead } from '../../tasks/DockerBuildxCacheV1/src/store/types';

const now = new Date('2026-11-28T12:00:00Z');
const head = (id: string, key: string, created: string): EntryHead => ({
  id,
  key,
  segments: key.split('|'),
  scope: 'refs/heads/main',
  created,
  lastUsed: created,
  root: `sha256:${id}`,
});
// In the order a restore tries them: the exact key newest first, then the restore key's.
const ENTRIES = [
  head('new', 'k|a', '2026-11-28T11:00:00Z'),
  head('old', 'k|a', '2026-11-27T11:00:00Z'),
  head('other', 'k|b', '2026-11-28T10:00:00Z'),
];
const store = { list: () => Promise.resolve({ entries: ENTRIES, skipped: ['listed (unreadable)'] }) } as unknown as CacheStore;

/** What `attempt` does with an entry: uses it, finds it unusable, or fails otherwise (the store unreachable). */
type Outcome = 'use' | 'unusable' | 'fail';

describe('store restore: the first usable entry', () => {
  // what attempt does with each entry, in order → the hit, the entry used, the attempts made, the skipped count
  const table: [string, Outcome[], 'true' | 'inexact' | 'false' | 'throws', string | undefined, number, number][] = [
    ['the newest exact entry', ['use'], 'true', 'new', 1, 1],
    ['an unusable entry skipped for the next of its key', ['unusable', 'use'], 'true', 'old', 2, 2],
    ['both exact entries unusable: the restore key', ['unusable', 'unusable', 'use'], 'inexact', 'other', 3, 3],
    ['none usable', ['unusable', 'unusable', 'unusable'], 'false', undefined, 3, 4],
    ['another failure is thrown, and nothing after it tried', ['fail', 'use'], 'throws', undefined, 1, 0],
  ];
  for (const [name, outcomes, hit, used, attempts, skipped] of table) {
    it(`${name} → ${hit}`, async () => {
      const tried: string[] = [];
      const attempt = (entry: EntryHead): Promise<string> => {
        const outcome = outcomes[tried.length];
        tried.push(entry.id);
        if (outcome === 'unusable') return Promise.reject(new EntryUnusableError(`blob of ${entry.id} is corrupt`));
        if (outcome === 'fail') return Promise.reject(new Error('the store is unreachable'));
        return Promise.resolve(`value of ${entry.id}`);
      };
      const result = firstUsable(store, ['refs/heads/main'], ['k', 'a'], [['k']], attempt, now);
      if (hit === 'throws') {
        await assert.rejects(result, /unreachable/);
        assert.equal(tried.length, attempts);
        return;
      }
      const found = await result;
      assert.equal(found.hit, hit);
      assert.equal(tried.length, attempts);
      assert.equal(found.skipped.length, skipped);
      assert.equal(found.skipped[0], skipped > 0 ? 'listed (unreadable)' : undefined);
      if (found.hit === 'false') assert.equal(used, undefined);
      else assert.deepEqual([found.entry.id, found.value], [used, `value of ${used ?? ''}`]);
      if (skipped > 1) assert.match(found.skipped[1] ?? '', /^k\|a \(refs\/heads\/main, 2026-11-28T11:00:00Z\): blob of new is corrupt$/);
    });
  }
});
