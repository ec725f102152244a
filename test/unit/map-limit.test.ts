import * as assert from 'assert/strict';
import { mapLimit } from '../../tasks/DockerBuildxCacheV1/src/util/fs';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('mapLimit', () => {
  it('keeps input order, with at most `limit` calls at once', async () => {
    let running = 0;
    let most = 0;
    const out = await mapLimit([30, 5, 20, 1, 10], 2, async (ms) => {
      most = Math.max(most, ++running);
      await sleep(ms);
      running--;
      return ms * 2;
    });
    assert.deepEqual(out, [60, 10, 40, 2, 20]);
    assert.equal(most, 2);
  });

  it('after a failure starts no new call, and throws the first failure only once the calls in flight settled', async () => {
    const started: number[] = [];
    const settled: number[] = [];
    await assert.rejects(
      mapLimit([0, 1, 2, 3, 4, 5], 2, async (i) => {
        started.push(i);
        await sleep(i === 0 ? 5 : 40);
        settled.push(i);
        if (i === 0) throw new Error('first');
        if (i === 1) throw new Error('second');
        return i;
      }),
      /^Error: first$/,
    );
    assert.deepEqual(started, [0, 1], 'nothing new after the failure');
    assert.deepEqual(settled.sort(), [0, 1], 'the call in flight had settled');
  });
});
