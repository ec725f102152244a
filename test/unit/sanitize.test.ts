import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import { neutralise } from '../../tasks/DockerBuildxCacheV1/src/task/sanitize';

/** What the agent would treat as a command or a log format anywhere in a line. */
const COMMAND = /##vso\[|##\[/i;

describe('neutralising build output', () => {
  const cases: [string, string][] = [
    ['plain output', 'plain output'],
    ['##vso[task.setvariable variable=x]1', '# #vso[task.setvariable variable=x]1'],
    ['#8 0.3 ##vso[task.complete result=Failed]', '#8 0.3 # #vso[task.complete result=Failed]'],
    ['##VSO[task.setvariable variable=x]1', '# #VSO[task.setvariable variable=x]1'],
    ['##[group]fake', '# #[group]fake'],
    ['##[error]fake', '# #[error]fake'],
    ['###vso[x]', '## #vso[x]'],
    ['a##vso[b##vso[c', 'a# #vso[b# #vso[c'],
    ['\r##vso[task.logissue type=error]x', '\r# #vso[task.logissue type=error]x'],
    ['# just a comment ## and hashes [x]', '# just a comment ## and hashes [x]'],
    ['##vso', '##vso'],
  ];
  for (const [input, expected] of cases) {
    it(JSON.stringify(input), () => assert.equal(neutralise(input), expected));
  }

  it('leaves no command in any line built from #, v, s, o, [ and other characters', () => {
    const alphabet = ['#', '#', 'v', 's', 'o', 'V', '[', ']', ' ', 'x', '\r'];
    for (let i = 0; i < 20000; i++) {
      const bytes = crypto.randomBytes(12);
      const line = [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
      const out = neutralise(line);
      assert.ok(!COMMAND.test(out), `${JSON.stringify(line)} became ${JSON.stringify(out)}`);
    }
  });
});
