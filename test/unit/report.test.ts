import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { writeReport } from '../../scripts/measure';
import { cleanup, tempDir } from '../helpers';

describe('benchmark reports', () => {
  after(cleanup);

  const cases: [string, string[], string][] = [
    ['go under out/ by default, so a run leaves the tree clean', ['node', 'bench.js'], 'out/BENCHMARKS.md'],
    ['go to the repository root with --update', ['node', 'bench.js', '--update'], 'BENCHMARKS.md'],
  ];
  for (const [name, argv, where] of cases) {
    it(name, () => {
      const root = tempDir('dbxc-report-');
      const file = writeReport(root, 'BENCHMARKS.md', '# report\n', argv);
      assert.equal(path.relative(root, file), where);
      assert.equal(fs.readFileSync(file, 'utf8'), '# report\n');
      assert.deepEqual(fs.readdirSync(root).sort(), where === 'BENCHMARKS.md' ? ['BENCHMARKS.md'] : ['out']);
    });
  }
});
