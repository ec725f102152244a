import * as assert from 'assert/strict';
import { registryRefs, scopeTag } from '../../tasks/DockerBuildxCacheV1/src/cache/registry';
import { scopePlan } from '../../tasks/DockerBuildxCacheV1/src/store/scopes';

describe('registry cache: one reference per scope, derived from registryCacheRef', () => {
  const tags: [string, string, string][] = [
    ['buildcache', 'shared', 'buildcache'],
    ['buildcache', 'refs/heads/main', 'buildcache-main'],
    ['buildcache', 'refs/heads/feature/login', 'buildcache-feature-login'],
    ['v1', 'refs/heads/users/ann/fix #3', 'v1-users-ann-fix-3'],
    ['buildcache', 'refs/pull/7/merge', 'buildcache-pull-7-merge'],
    ['buildcache', 'refs/tags/v1.2.0', 'buildcache-tags-v1.2.0'],
    ['buildcache', 'local', 'buildcache-local'],
  ];
  for (const [base, scope, tag] of tags) it(`${scope} → ${tag}`, () => assert.equal(scopeTag(base, scope), tag));

  it('cuts a tag too long for a registry, keeping branches apart with a hash', () => {
    const a = scopeTag('buildcache', `refs/heads/${'x'.repeat(200)}a`);
    const b = scopeTag('buildcache', `refs/heads/${'x'.repeat(200)}b`);
    assert.equal(a.length, 128);
    assert.match(a, /^buildcache-x+-[0-9a-f]{8}$/);
    assert.notEqual(a, b);
  });

  const plans: [string, string, Parameters<typeof scopePlan>, { read: string[]; write?: string }][] = [
    [
      'a branch build',
      'acr.io/app/cache',
      ['branch', { sourceBranch: 'refs/heads/feature/x' }],
      {
        read: ['acr.io/app/cache:buildcache-feature-x', 'acr.io/app/cache:buildcache-main', 'acr.io/app/cache:buildcache-master'],
        write: 'acr.io/app/cache:buildcache-feature-x',
      },
    ],
    [
      'the default branch itself, read once',
      'acr.io/app/cache',
      ['branch', { sourceBranch: 'refs/heads/main' }],
      { read: ['acr.io/app/cache:buildcache-main', 'acr.io/app/cache:buildcache-master'], write: 'acr.io/app/cache:buildcache-main' },
    ],
    [
      'a pull request, with the target branch',
      'localhost:5000/app:cache',
      ['branch', { sourceBranch: 'refs/pull/4/merge', targetBranch: 'refs/heads/release', defaultBranch: 'main' }],
      {
        read: ['localhost:5000/app:cache-pull-4-merge', 'localhost:5000/app:cache-release', 'localhost:5000/app:cache-main'],
        write: 'localhost:5000/app:cache-pull-4-merge',
      },
    ],
    [
      'a pull request from a fork writes nothing',
      'acr.io/app',
      ['branch', { sourceBranch: 'refs/pull/4/merge', targetBranch: 'main', isFork: true, defaultBranch: 'main' }],
      { read: ['acr.io/app:buildcache-pull-4-merge', 'acr.io/app:buildcache-main'], write: undefined },
    ],
    [
      'one shared scope: the tag as written',
      'acr.io/app:cache',
      ['shared', { sourceBranch: 'refs/heads/feature/x' }],
      { read: ['acr.io/app:cache'], write: 'acr.io/app:cache' },
    ],
  ];
  for (const [name, ref, plan, expected] of plans) it(name, () => assert.deepEqual(registryRefs(ref, scopePlan(...plan)), expected));
});
