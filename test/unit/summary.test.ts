import * as assert from 'assert/strict';
import { renderSummary, summaryOfSave, type SummaryData } from '../../tasks/DockerBuildxCacheV1/src/summary';

describe('the build summary', () => {
  const full: SummaryData = {
    backend: 'local',
    image: 'app:1',
    driver: 'docker (auto), because the engine uses the containerd image store',
    key: 'buildx|"Linux"|"app"|abc=',
    hit: 'inexact',
    restored: { key: 'buildx|"Linux"|"app"|old=', scope: 'refs/heads/main', created: '2026-11-27T10:00:00.000Z' },
    bytesRestored: 137_000_000,
    steps: { cached: 4, total: 5 },
    digest: 'sha256:abc',
    saved: { status: 'saved', bytes: 5_100_000, blobs: 2 },
    store: { bytes: 142_000_000, blobs: 15, entries: 3 },
    phases: [
      ['Cache key', 40],
      ['Restore cache', 310],
      ['Build', 12_400],
    ],
  };

  const rows: [string, RegExp][] = [
    ['the driver and why', /^\| Builder driver \| docker \(auto\), because the engine uses the containerd image store \|$/m],
    ['the key', /^\| Key \| `buildx\\\|"Linux"\\\|"app"\\\|abc=` \|$/m],
    ['the hit kind', /^\| Cache hit \| restore key \(`inexact`\) \|$/m],
    [
      'the entry that was restored',
      /^\| Restored entry \| `buildx\\\|"Linux"\\\|"app"\\\|old=` from `refs\/heads\/main`, saved 2026-11-27T10:00:00.000Z \|$/m,
    ],
    ['bytes restored', /^\| Bytes restored \| 137\.0 MB \|$/m],
    ['bytes saved', /^\| Bytes saved \| 5\.1 MB in 2 new blobs \|$/m],
    ['steps cached out of total', /^\| Steps cached \| 4 of 5 \|$/m],
    ['the store size', /^\| Store size \| 142\.0 MB in 15 blobs, 3 entries \|$/m],
    ['each phase time', /^\| Restore cache \| 0\.3s \|$/m],
  ];
  for (const [what, pattern] of rows) it(`shows ${what}`, () => assert.match(renderSummary(full), pattern));

  const saves: [string, Parameters<typeof summaryOfSave>[0], RegExp][] = [
    [
      'an unchanged cache',
      { result: { status: 'unchanged', entry: {} as never, newBlobs: 0, newBytes: 0 } },
      /\| Bytes saved \| 0 B: the cache did not change/,
    ],
    [
      'nothing to save',
      { skipped: 'The cache folder /c holds no cache: nothing to save.' },
      /\| Bytes saved \| nothing \(The cache folder \/c holds no cache/,
    ],
    ['a failed save', {}, /\| Bytes saved \| nothing \(see the warning in the log\)/],
  ];
  for (const [what, outcome, pattern] of saves) {
    it(`says what the save did: ${what}`, () =>
      assert.match(renderSummary({ backend: 'local', phases: [], ...summaryOfSave(outcome) }), pattern));
  }

  it('cannot be broken out of its table by a key', () => {
    const md = renderSummary({ backend: 'local', key: 'a\n| injected | row |\n`x`', phases: [] });
    assert.ok(!/^\| injected/m.test(md));
  });
});
