import * as assert from 'assert/strict';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '..', '..', '..');

describe('the mock-run test log', function () {
  this.timeout(60_000);
  let log: string;
  let status: number | null;

  before(() => {
    // The suite's own command line from package.json, on a fixture with one passing and one failing test, as CI runs it.
    const scripts = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    const command = (scripts['test:mockrun'] ?? '').replace(
      "'build/test/mockrun/**/*.test.js'",
      'build/test/mockrun/fixtures/quiet.fixture.js',
    );
    assert.ok(command.includes('quiet.fixture.js'), command);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CI: 'true',
      PATH: `${path.join(root, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`,
    };
    delete env.SYSTEM_DEBUG;
    const r = spawnSync('sh', ['-c', command], { cwd: root, env, encoding: 'utf8' });
    log = r.stdout + r.stderr;
    status = r.status;
  });

  it('has no colour codes under CI=true', () => {
    assert.equal(status, 1, log);
    assert.ok(!log.includes('\x1b['), 'an escape sequence in the log');
  });

  it("prints no debug line: neither the test process's task-lib nor a passing test's mock run", () => {
    const failure = log.indexOf('1) fails after a mock run');
    assert.ok(failure > 0, log);
    const debugLines = [...log.matchAll(/##vso\[task\.debug\]/g)].map((m) => m.index);
    assert.ok(
      debugLines.every((at) => at > failure),
      'a debug line before the failing test',
    );
    assert.ok(!log.includes('INPUT_PASSINGRUN'));
  });

  it("prints a failing test's mock runs, debug lines included, after its title", () => {
    assert.match(log, /1\) fails after a mock run\n\n {6}── mock run 1 of 1: the post step's output ──\n/);
    assert.match(log, /^ {6}##vso\[task\.debug\]loading INPUT_FAILINGRUN$/m);
    assert.match(log, /PostNothingToDo/);
  });
});
