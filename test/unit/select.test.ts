import * as assert from 'assert/strict';
import { scopePlan, type ScopePlan, type ScopeVariables } from '../../tasks/DockerBuildxCacheV1/src/store/scopes';
import { candidates, expiredEntries, newestOf, unreferencedBlobs } from '../../tasks/DockerBuildxCacheV1/src/store/select';
import type { Entry, Lease } from '../../tasks/DockerBuildxCacheV1/src/store/types';

describe('scopes: where a job reads and writes', () => {
  const cases: [string, 'branch' | 'shared', ScopeVariables, ScopePlan][] = [
    [
      'a CI build of a feature branch',
      'branch',
      { sourceBranch: 'refs/heads/feature/x' },
      { read: ['refs/heads/feature/x', 'refs/heads/main', 'refs/heads/master'], write: 'refs/heads/feature/x' },
    ],
    [
      'a CI build of main',
      'branch',
      { sourceBranch: 'refs/heads/main' },
      { read: ['refs/heads/main', 'refs/heads/master'], write: 'refs/heads/main' },
    ],
    [
      'a pull request',
      'branch',
      { sourceBranch: 'refs/pull/42/merge', targetBranch: 'refs/heads/release/1', isFork: false },
      { read: ['refs/pull/42/merge', 'refs/heads/release/1', 'refs/heads/main', 'refs/heads/master'], write: 'refs/pull/42/merge' },
    ],
    [
      'a pull request from a fork',
      'branch',
      { sourceBranch: 'refs/pull/43/merge', targetBranch: 'refs/heads/main', isFork: true },
      { read: ['refs/pull/43/merge', 'refs/heads/main', 'refs/heads/master'] },
    ],
    [
      'a named default branch',
      'branch',
      { sourceBranch: 'refs/heads/x', defaultBranch: 'develop' },
      { read: ['refs/heads/x', 'refs/heads/develop'], write: 'refs/heads/x' },
    ],
    [
      'a target branch given without refs/heads',
      'branch',
      { sourceBranch: 'refs/pull/1/merge', targetBranch: 'main' },
      { read: ['refs/pull/1/merge', 'refs/heads/main', 'refs/heads/master'], write: 'refs/pull/1/merge' },
    ],
    [
      'a tag build',
      'branch',
      { sourceBranch: 'refs/tags/v1.0' },
      { read: ['refs/tags/v1.0', 'refs/heads/main', 'refs/heads/master'], write: 'refs/tags/v1.0' },
    ],
    ['a run outside a pipeline', 'branch', {}, { read: ['local', 'refs/heads/main', 'refs/heads/master'], write: 'local' }],
    ['shared', 'shared', { sourceBranch: 'refs/heads/feature/x' }, { read: ['shared'], write: 'shared' }],
    ['shared, from a fork', 'shared', { sourceBranch: 'refs/pull/9/merge', isFork: true }, { read: ['shared'] }],
  ];
  for (const [name, mode, vars, plan] of cases) it(name, () => assert.deepEqual(scopePlan(mode, vars), plan));
});

const D = (n: number): string => `sha256:${n.toString(16).padStart(64, '0')}`;
function entry(id: string, key: string, scope: string, created: string, lastUsed = created, blobs: number[] = [1]): Entry {
  return {
    id,
    key,
    segments: key.split('|'),
    scope,
    created,
    lastUsed,
    root: D(blobs[0] ?? 1),
    index: {},
    blobs: blobs.map((b) => ({ digest: D(b), size: b * 10 })),
  };
}

describe('selecting the entry to restore', () => {
  const main = 'refs/heads/main';
  const feat = 'refs/heads/feat';
  const entries = [
    entry('m-exact-old', 'b|L|app|F1', main, '2026-11-01T00:00:00Z'),
    entry('m-exact-new', 'b|L|app|F1', main, '2026-11-02T00:00:00Z'),
    entry('f-exact', 'b|L|app|F1', feat, '2026-10-01T00:00:00Z'),
    entry('f-other', 'b|L|app|F2', feat, '2026-11-03T00:00:00Z'),
    entry('m-other', 'b|L|app|F3', main, '2026-11-04T00:00:00Z'),
    entry('m-otherapp', 'b|L|api|F1', main, '2026-11-05T00:00:00Z'),
    entry('m-win', 'b|W|app|F1', main, '2026-11-06T00:00:00Z'),
  ];
  const ids = (cs: ReturnType<typeof candidates>): string[] => cs.map((c) => `${c.entry.id}:${c.hit}`);
  const reader = new Date('2026-11-28T00:00:00Z');

  const cases: [string, string[], string[][], string[]][] = [
    [
      'the exact key in the own scope first, then in later scopes, newest first',
      ['b', 'L', 'app', 'F1'],
      [],
      ['f-exact:true', 'm-exact-new:true', 'm-exact-old:true'],
    ],
    [
      'then each restore key, in scope order, newest first',
      ['b', 'L', 'app', 'F9'],
      [
        ['b', 'L', 'app'],
        ['b', 'L'],
      ],
      ['f-other:inexact', 'f-exact:inexact', 'm-other:inexact', 'm-exact-new:inexact', 'm-exact-old:inexact', 'm-otherapp:inexact'],
    ],
    ['restore keys match whole segments only', ['x'], [['b', 'L', 'ap']], []],
    [
      'an entry is offered once, under its best match',
      ['b', 'L', 'app', 'F1'],
      [['b', 'L', 'app']],
      ['f-exact:true', 'm-exact-new:true', 'm-exact-old:true', 'f-other:inexact', 'm-other:inexact'],
    ],
    ['no match', ['z'], [['y']], []],
  ];
  for (const [name, key, restoreKeys, expected] of cases) {
    it(name, () => assert.deepEqual(ids(candidates(entries, [feat, main], key, restoreKeys, reader)), expected));
  }

  it('never reads a scope that is not in the plan', () => {
    assert.deepEqual(ids(candidates(entries, [main], ['b', 'L', 'app', 'F2'], [], reader)), []);
  });

  it('finds the newest version of a key in a scope', () => {
    assert.equal(newestOf(entries, main, 'b|L|app|F1', reader)?.id, 'm-exact-new');
    assert.equal(newestOf(entries, feat, 'b|L|app|F3', reader), undefined);
  });

  // 3. A writer's clock in the future must not freeze a key: the reader's clock decides.
  const future = [
    ...entries,
    entry('m-2099', 'b|L|app|F1', main, '2099-01-01T00:00:00Z'),
    entry('m-skew', 'b|L|app|F1', main, '2026-11-28T00:05:00Z'),
  ];
  const clockCases: [string, Date, string][] = [
    ['an entry from far in the future ranks below every honest one', reader, 'm-skew'],
    ['a few minutes of skew are believed', new Date('2026-11-27T23:58:00Z'), 'm-skew'],
    ['the future entry stays last however late it is read', new Date('2030-01-01T00:00:00Z'), 'm-skew'],
  ];
  for (const [name, at, newest] of clockCases) it(`3. ${name}`, () => assert.equal(newestOf(future, main, 'b|L|app|F1', at)?.id, newest));
});

describe('retention', () => {
  const now = new Date('2026-11-28T00:00:00Z');
  const cases: [string, Entry[], number, string[]][] = [
    ['keeps entries used within the period', [entry('a', 'k', 's', '2026-11-01T00:00:00Z', '2026-11-27T00:00:00Z')], 7, []],
    ['removes entries unused for the period', [entry('a', 'k', 's', '2026-11-01T00:00:00Z', '2026-11-20T00:00:00Z')], 7, ['a']],
    [
      'keeps only the newest version of a key in a scope',
      [
        entry('v1', 'k', 's', '2026-11-25T00:00:00Z'),
        entry('v2', 'k', 's', '2026-11-26T00:00:00Z'),
        entry('v3', 'k', 's', '2026-11-27T00:00:00Z'),
      ],
      7,
      ['v1', 'v2'],
    ],
    [
      'versions are per scope',
      [entry('main', 'k', 'refs/heads/main', '2026-11-25T00:00:00Z'), entry('feat', 'k', 'refs/heads/feat', '2026-11-26T00:00:00Z')],
      7,
      [],
    ],
    ['a newest version unused for the period goes too', [entry('old', 'k', 's', '2026-10-01T00:00:00Z')], 30, ['old']],
    ['fractions of a day', [entry('a', 'k', 's', '2026-11-27T00:00:00Z')], 0.5, ['a']],
    [
      '3. a version from the future is superseded by an honest one',
      [entry('bad', 'k', 's', '2099-01-01T00:00:00Z'), entry('ok', 'k', 's', '2026-11-27T00:00:00Z')],
      7,
      ['bad'],
    ],
    [
      '3. a sole version from the future is not used by anyone honest: it goes',
      [entry('bad', 'k', 's', '2099-01-01T00:00:00Z')],
      7,
      ['bad'],
    ],
    [
      '3. a last use from the future counts as none since the creation',
      [entry('a', 'k', 's', '2026-11-01T00:00:00Z', '2099-01-01T00:00:00Z')],
      7,
      ['a'],
    ],
    ['3. a little skew in the last use is believed', [entry('a', 'k', 's', '2026-11-01T00:00:00Z', '2026-11-28T00:05:00Z')], 7, []],
  ];
  for (const [name, entries, days, expected] of cases) {
    it(name, () =>
      assert.deepEqual(
        expiredEntries(entries, now, days)
          .map((e) => e.id)
          .sort(),
        expected,
      ),
    );
  }

  it('keeps blobs that an entry or a live lease reaches, and nothing else', () => {
    const blobs = new Map([1, 2, 3, 4, 5].map((n) => [D(n), n] as [string, number]));
    const leases: Lease[] = [
      { id: 'live', expires: '2026-11-28T01:00:00Z', blobs: [D(3)] },
      { id: 'stale', expires: '2026-11-27T23:00:00Z', blobs: [D(4)] },
    ];
    const left = unreferencedBlobs(blobs, [entry('e', 'k', 's', '2026-11-27T00:00:00Z', undefined, [1, 2])], leases, now);
    assert.deepEqual(left, [
      { digest: D(4), size: 4 },
      { digest: D(5), size: 5 },
    ]);
  });
});
