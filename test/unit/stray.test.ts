import * as assert from 'assert/strict';
import { spawn, spawnSync } from 'child_process';
import { EventEmitter } from 'events';
import * as path from 'path';
import { catchStrayErrors, endWhenOutputGone, isConnectionFailure, OUTPUT_GONE_EXIT } from '../../tasks/DockerBuildxCacheV1/src/task/stray';

/** An error as Node's sockets make them: a code and the system call that failed. */
const sys = (message: string, code: string, syscall: string): Error => Object.assign(new Error(message), { code, syscall });
const coded = (message: string, code: string): Error => Object.assign(new Error(message), { code });

describe('stray errors: what a step outlives', () => {
  const cases: [string, unknown, boolean][] = [
    ['socket hang up (Node http client)', coded('socket hang up', 'ECONNRESET'), true],
    ['a reset read', sys('read ECONNRESET', 'ECONNRESET', 'read'), true],
    ['a refused connection', sys('connect ECONNREFUSED 127.0.0.1:10100', 'ECONNREFUSED', 'connect'), true],
    ['a broken pipe', sys('write EPIPE', 'EPIPE', 'write'), true],
    ['a timed-out connection', sys('connect ETIMEDOUT 10.0.0.1:443', 'ETIMEDOUT', 'connect'), true],
    [
      "the Azure SDK's abort of a request that had failed already",
      Object.assign(new Error('The operation was aborted. Rejecting from abort signal callback while making request.'), {
        name: 'AbortError',
      }),
      true,
    ],
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'digest')"), false],
    ['a connection code without a system call (made up, not a socket)', coded('ECONNRESET', 'ECONNRESET'), false],
    ['a stream closed early (fs streams too)', coded('Premature close', 'ERR_STREAM_PREMATURE_CLOSE'), false],
    ['a write after destroy (a bug)', coded('Cannot call write after a stream was destroyed', 'ERR_STREAM_DESTROYED'), false],
    ['an abort', Object.assign(new Error('The operation was aborted'), { name: 'AbortError', code: 'ABORT_ERR' }), false],
    ['a message that only mentions a reset', new Error('the store said socket hang up once, then parsed nothing'), false],
    ['a file that is missing', sys("ENOENT: no such file or directory, open '/tmp/x'", 'ENOENT', 'open'), false],
    ['a full disk', sys('ENOSPC: no space left on device, write', 'ENOSPC', 'write'), false],
    ['not an Error', 'socket hang up', false],
    ['undefined', undefined, false],
  ];
  for (const [what, err, outlived] of cases)
    it(`${what}: ${outlived ? 'outlived' : 'not outlived'}`, () => assert.equal(isConnectionFailure(err), outlived));

  it('replaces the handlers already there; uncaught exceptions and unhandled rejections both reach its own, a non-Error as an Error', () => {
    const proc = new EventEmitter();
    const seen: string[] = [];
    proc.on('uncaughtException', () => seen.push('the old handler'));
    proc.on('unhandledRejection', () => seen.push('the old handler'));
    catchStrayErrors({ ignored: (e) => seen.push(`ignored ${e.message}`), other: (e) => seen.push(`other ${e.message}`) }, proc);
    proc.emit('uncaughtException', coded('socket hang up', 'ECONNRESET'));
    proc.emit('unhandledRejection', new RangeError('bad'));
    proc.emit('unhandledRejection', 42);
    assert.deepEqual(seen, ['ignored socket hang up', 'other bad', 'other 42']);
  });
});

describe('stray errors in a step process, with task-lib loaded as in the bundle', () => {
  const agent = path.join(__dirname, '..', '..', 'tasks', 'DockerBuildxCacheV1', 'src', 'task', 'agent.js');
  /** A process that installs the handlers as a step does, then meets `stray`: an error event nobody listens to, or a rejection. */
  const step = (otherwise: 'fail' | 'warn', stray: string, how: 'event' | 'rejection'): { code: number | null; stdout: string } => {
    const script = [
      `require(${JSON.stringify(agent)}).reportStrayErrors(${JSON.stringify(otherwise)});`,
      how === 'event'
        ? `const e = new (require('events').EventEmitter)(); setImmediate(() => e.emit('error', ${stray}));`
        : `setImmediate(() => { Promise.reject(${stray}); });`,
      `setTimeout(() => console.log('the step went on'), 50);`,
    ].join('\n');
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, SYSTEM_DEBUG: 'true' } });
    return { code: r.status, stdout: r.stdout };
  };

  const hangUp = `Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })`;
  const bug = `new TypeError('x is not a function')`;
  const FAILED = /##vso\[task\.complete result=Failed/;
  const cases: [string, 'fail' | 'warn', string, 'event' | 'rejection', RegExp, boolean][] = [
    [
      "main: a store's connection, an error event",
      'fail',
      hangUp,
      'event',
      /type=warning[^\]]*\]A connection the task no longer waited on failed: socket hang up/,
      false,
    ],
    [
      "main: a store's connection, a rejection",
      'fail',
      hangUp,
      'rejection',
      /type=warning[^\]]*\]A connection the task no longer waited on failed: socket hang up/,
      false,
    ],
    ['main: a bug', 'fail', bug, 'event', /type=error[^\]]*\]An error that nothing in the task handled: x is not a function/, true],
    [
      'main: a bug, a rejection',
      'fail',
      bug,
      'rejection',
      /type=error[^\]]*\]An error that nothing in the task handled: x is not a function/,
      true,
    ],
    ['post: a bug', 'warn', bug, 'event', /type=warning[^\]]*\]An error that nothing in the task handled: x is not a function/, false],
  ];
  for (const [what, otherwise, stray, how, says, failed] of cases)
    it(`${what}: ${failed ? 'the step is Failed' : 'a warning'}, and the step runs on`, () => {
      const r = step(otherwise, stray, how);
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, says);
      assert.equal(FAILED.test(r.stdout), failed, r.stdout);
      // task-lib's own handling is gone: no "Unhandled:" failure, no stack as an error.
      assert.doesNotMatch(r.stdout, /Unhandled: |type=error[^\]]*\]\w*Error: /);
      // The stack is in the debug log.
      assert.match(r.stdout, /##vso\[task\.debug\][^\n]*Error: /);
      assert.ok(r.stdout.includes('the step went on'), r.stdout);
    });
});

describe('a step whose own output is gone (the agent that read it ended)', () => {
  const agent = path.join(__dirname, '..', '..', 'tasks', 'DockerBuildxCacheV1', 'src', 'task', 'agent.js');

  it('ends, instead of spinning on the warning about its failed write', async function () {
    this.timeout(20_000);
    // It writes a line every 5 ms for 10 s: without the fix, each write's EPIPE is a stray connection failure whose warning fails again.
    const script = [
      `require(${JSON.stringify(agent)}).reportStrayErrors('fail');`,
      `const t = setInterval(() => console.log('working'), 5);`,
      `setTimeout(() => { clearInterval(t); }, 10_000);`,
    ].join('\n');
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.stdout.destroy();
    const started = Date.now();
    const code = await Promise.race([exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 8_000))]);
    if (code === 'running') child.kill('SIGKILL');
    assert.equal(code, OUTPUT_GONE_EXIT, `still running ${Date.now() - started} ms after its output was closed`);
  });

  it('only for its own output: the streams given, and the exit code of a broken pipe', () => {
    const out = new EventEmitter();
    const codes: number[] = [];
    endWhenOutputGone([out], (code) => codes.push(code));
    out.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' }));
    assert.deepEqual(codes, [141]);
  });
});
