import * as assert from 'assert/strict';
import { PassThrough, Readable } from 'stream';
import { ResumingStream } from '../../tasks/DockerBuildxCacheV1/src/store/resuming';

const DATA = Buffer.from('0123456789abcdefghij');

/** A connection that sends DATA from `offset`, and breaks off after `upTo` bytes of it: with an error, or by ending early. */
function connection(offset: number, upTo: number, how: 'error' | 'end'): Readable {
  return Readable.from(
    (function* () {
      yield DATA.subarray(offset, Math.min(offset + upTo, DATA.length));
      if (offset + upTo < DATA.length && how === 'error') throw new Error('connection reset (injected)');
    })(),
    { objectMode: false },
  );
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('store: a download that resumes where it broke off', () => {
  // How the connections break: bytes each sends before it breaks, and how; the download gives up after 2 resumes.
  const CASES: [string, (readonly [number, 'error' | 'end'])[], boolean][] = [
    ['a whole first connection', [[20, 'end']], true],
    [
      'one reset',
      [
        [7, 'error'],
        [20, 'end'],
      ],
      true,
    ],
    [
      'an early end, then a reset',
      [
        [5, 'end'],
        [6, 'error'],
        [20, 'end'],
      ],
      true,
    ],
    [
      'three breaks: more than it resumes',
      [
        [3, 'error'],
        [3, 'error'],
        [3, 'error'],
        [20, 'end'],
      ],
      false,
    ],
  ];
  for (const [label, breaks, whole] of CASES) {
    it(`${label}: ${whole ? 'every byte, in order' : 'fails'}`, async () => {
      const offsets: number[] = [];
      let n = 0;
      const open = (offset: number): Readable => {
        offsets.push(offset);
        const [upTo, how] = breaks[n++] ?? [20, 'end'];
        return connection(offset, upTo, how);
      };
      const stream = new ResumingStream(
        open(0),
        DATA.length,
        (offset) => Promise.resolve(open(offset)),
        2,
        new AbortController().signal,
        'x',
      );
      if (whole) assert.ok((await readAll(stream)).equals(DATA));
      else await assert.rejects(readAll(stream), /injected/);
      // Each resume starts where the bytes so far end.
      let at = 0;
      for (const [i, offset] of offsets.entries()) {
        assert.equal(offset, at);
        at = Math.min(at + (breaks[i]?.[0] ?? 20), DATA.length);
      }
    });
  }

  it('a stalled connection is destroyed at once when the signal aborts, and when the reader stops', async () => {
    for (const stop of ['abort', 'destroy'] as const) {
      const stalled = new PassThrough();
      stalled.write(DATA.subarray(0, 4));
      const controller = new AbortController();
      const stream = new ResumingStream(stalled, DATA.length, () => Promise.reject(new Error('no resume')), 2, controller.signal, 'x');
      const first = (await stream[Symbol.asyncIterator]().next()).value as Buffer;
      assert.equal(first.length, 4);
      if (stop === 'abort') controller.abort();
      else stream.destroy();
      await new Promise((r) => setImmediate(r));
      assert.ok(stalled.destroyed, stop);
      assert.ok(stream.destroyed, stop);
    }
  });
});
