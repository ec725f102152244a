// Root hooks of the mock-run suite: a passing test prints nothing of its mock runs; a failing one
// prints each run's output, debug lines included, right after its title.
import { runsOfThisTest } from './harness';

const indent = (text: string): string => text.replace(/\n$/, '').replace(/^/gm, '      ');

export const mochaHooks = {
  beforeEach(): void {
    runsOfThisTest.length = 0;
  },
  afterEach(this: Mocha.Context): void {
    if (this.currentTest?.state !== 'failed') return;
    for (const [i, run] of runsOfThisTest.entries()) {
      console.log(`\n      ── mock run ${i + 1} of ${runsOfThisTest.length}: the ${run.step} step's output ──`);
      console.log(indent(run.stdout));
      if (run.stderr.trim() !== '') console.log(`      ── its standard error ──\n${indent(run.stderr)}`);
    }
  },
};
