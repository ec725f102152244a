// A full store recovers (issue #12, case 4): retention runs after a save that failed.
import * as assert from 'assert/strict';
import { spawnSync } from 'child_process';
import { saveToStore, type SaveJob } from '../../tasks/DockerBuildxCacheV1/src/cache/save';
import { LocalStore } from '../../tasks/DockerBuildxCacheV1/src/store/local';
import { cleanup, tempDir } from '../helpers';
import { cacheFolder } from '../oci-fixture';
import { taskLibOutput } from './setup';

const KEY = ['k', 'a'];
const SCOPE = 'refs/heads/main';

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

// 4. A full store recovers: retention runs after a failed save.
describe('hostile: a full store', function () {
  this.timeout(60000);
  afterEach(cleanup);

  it('4. a save that fails for lack of space still runs retention, and the next save succeeds', async () => {
    const small = tempDir('dbxc-small-');
    sh('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]);
    try {
      const work = tempDir('dbxc-work-');
      const store = new LocalStore(small);
      // An old entry fills most of the disk; retention would drop it.
      const stale = cacheFolder(work, 'stale', [Buffer.alloc(1_400_000, 1)]);
      await store.save({
        cacheDir: stale.dir,
        key: 'k|stale',
        segments: ['k', 'stale'],
        scope: SCOPE,
        now: new Date(Date.now() - 30 * 86400_000),
      });
      const job: SaveJob = {
        store: { kind: 'local', path: small },
        cacheDir: cacheFolder(work, 'new', [Buffer.alloc(1_000_000, 2)]).dir,
        segments: KEY,
        scope: SCOPE,
        retentionDays: 7,
        failOnError: false,
      };
      const before = taskLibOutput.length;
      const first = await saveToStore(job, () => store);
      assert.equal(first.result, undefined, 'the disk is full');
      const log = taskLibOutput.slice(before).join('');
      assert.ok(!/Nothing in the store changed/.test(log), log);
      const second = await saveToStore(job, () => store);
      assert.equal(second.result?.status, 'saved', 'retention made room');
    } finally {
      spawnSync('umount', [small]);
    }
  });
});
