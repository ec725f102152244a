import * as assert from 'assert/strict';
import { Background } from '../../tasks/DockerBuildxCacheV1/src/util/background';

/** Unhandled rejections while `work` runs and a tick after. */
async function unhandledDuring(work: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const listener = (reason: unknown): void => {
    seen.push(reason);
  };
  process.on('unhandledRejection', listener);
  try {
    await work();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('unhandledRejection', listener);
  }
  return seen;
}

describe('Background: work started now, its result asked for later or never', () => {
  const failure = new Error('the preflight failed');

  // the work's outcome, whether the result is asked for → what result() gives
  const table: [string, () => Promise<string>, boolean, string | Error | undefined][] = [
    ['a value, asked for', () => Promise.resolve('ok'), true, 'ok'],
    ['a failure, asked for: thrown to whoever asks', () => Promise.reject(failure), true, failure],
    ['a failure nobody asks for: no unhandled rejection', () => Promise.reject(failure), false, undefined],
  ];
  for (const [name, work, ask, expected] of table) {
    it(name, async () => {
      const unhandled = await unhandledDuring(async () => {
        const task = new Background(work());
        await task.done();
        if (!ask) return;
        if (expected instanceof Error) await assert.rejects(task.result(), expected);
        else assert.equal(await task.result(), expected);
      });
      assert.deepEqual(unhandled, []);
    });
  }

  it('done waits for the work to end, well or not', async () => {
    const ended: string[] = [];
    const slow = (label: string, fail: boolean): Promise<void> =>
      new Promise((resolve, reject) =>
        setTimeout(() => {
          ended.push(label);
          if (fail) reject(failure);
          else resolve();
        }, 20),
      );
    await Promise.all([new Background(slow('good', false)).done(), new Background(slow('bad', true)).done()]);
    assert.deepEqual(ended.sort(), ['bad', 'good']);
  });
});
