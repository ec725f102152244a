import * as assert from 'assert/strict';
import { cleanup } from '../helpers';
import { runScenario } from './harness';
import { freshJob, main } from './job';

describe('mock-run: the main step: input errors', function () {
  this.timeout(30000);
  beforeEach(freshJob);
  afterEach(cleanup);

  // An input error stops the step before docker runs, naming the input and the message key: one
  // error of each kind that the step meets before docker, the input readers', one that depends on
  // the step's environment, a secret input's, and the key's files. Every input error is in the
  // table of test/unit/config.test.ts.
  const invalid: [Record<string, string>, string, string][] = [
    [{ dockerfile: 'missing/Dockerfile' }, 'dockerfile', 'InputDockerfileMissing'],
    [{ ssh: 'default', SSH_AUTH_SOCK: '' }, 'ssh', 'InputSshNoAgent'],
    [{ cacheBackend: 'azureBlob', storageAuth: 'connectionString' }, 'storageConnectionString', 'InputAzureConnectionStringRequired'],
    [{ cacheKey: 'k | missing/*.lock' }, 'cacheKey', 'InputKeyNoMatch'],
  ];
  for (const [given, input, key] of invalid) {
    it(`validation: ${input} ${JSON.stringify(given)} → ${key}`, async () => {
      // SSH_AUTH_SOCK is the step's environment, not an input.
      const { SSH_AUTH_SOCK, ...inputs } = given;
      const run = await runScenario({
        ...main({ imageName: 'app', ...inputs }, {}),
        env: SSH_AUTH_SOCK === undefined ? {} : { SSH_AUTH_SOCK },
      });
      assert.ok(run.runner.failed);
      assert.equal(run.commands.length, 0, 'docker never runs on bad input');
      assert.equal(run.errors.length, 1);
      assert.ok((run.errors[0] ?? '').startsWith(`Input '${input}': loc_mock_${key}`), run.errors[0]);
    });
  }
});
