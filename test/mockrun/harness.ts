import * as fs from 'fs';
import * as path from 'path';
import { MockTestRunner } from 'azure-pipelines-task-lib/mock-test';
import { DOCKER, type Scenario } from './types';

/**
 * The login script: appends its arguments and standard input to $FAKE_DOCKER_LOG as one JSON line,
 * and refuses a password other than $FAKE_DOCKER_PASSWORD when that is set.
 */
const LOGIN_SCRIPT = `#!/bin/sh
input=$(cat)
printf '{"args":"%s","stdin":"%s","config":"%s"}\\n' "$*" "$input" "$DOCKER_CONFIG" >> "\${FAKE_DOCKER_LOG:-/dev/null}"
if [ -n "$FAKE_DOCKER_PASSWORD" ] && [ "$input" != "$FAKE_DOCKER_PASSWORD" ]; then
  echo 'Error response from daemon: Get "https://registry/v2/": unauthorized: incorrect username or password' >&2
  exit 1
fi
echo "Login Succeeded"
`;
fs.mkdirSync(path.dirname(DOCKER), { recursive: true });
fs.writeFileSync(DOCKER, LOGIN_SCRIPT, { mode: 0o755 });

const scenarioJs = path.join(__dirname, 'scenario.js');
const taskJson = path.join(__dirname, '..', '..', 'tasks', 'DockerBuildxCacheV1', 'task.json');

export interface MockRun {
  readonly runner: MockTestRunner;
  readonly stdout: string;
  /** The `[command]` lines that the task printed, in order. */
  readonly commands: string[];
  readonly warnings: string[];
  readonly errors: string[];
  readonly succeeded: boolean;
  /** Output variables the task set, by name. */
  readonly outputs: Record<string, string>;
  readonly taskVariables: Record<string, string>;
}

/**
 * The mock runs of the test in progress, for the suite's hooks (setup.ts): the output of a test that
 * fails is printed, and that of one that passes is not.
 */
export const runsOfThisTest: { step: Scenario['step']; stdout: string; stderr: string }[] = [];

/** Runs the compiled task through MockTestRunner under this Node (never a downloaded one). */
export async function runScenario(scenario: Scenario): Promise<MockRun> {
  process.env.DBXC_MOCK_SCENARIO = JSON.stringify(scenario);
  const runner = new MockTestRunner(scenarioJs, taskJson);
  runner.nodePath = process.execPath;
  try {
    await runner.runAsync();
  } finally {
    delete process.env.DBXC_MOCK_SCENARIO;
  }
  const stdout = runner.stdout;
  runsOfThisTest.push({ step: scenario.step, stdout, stderr: runner.stderr });
  // A run that never reached the task prints nothing of ours; fail loudly instead of "succeeding".
  if (!stdout.includes('##vso[') || runner.stderr.includes('Error: ')) {
    throw new Error(`the scenario did not run the task:\n${stdout}\n${runner.stderr}`);
  }
  const lines = stdout.split(/\r?\n/);
  const collect = (re: RegExp): [string, string][] =>
    lines.flatMap((l) => {
      const m = re.exec(l);
      return m ? [[m[1] ?? '', m[2] ?? ''] as [string, string]] : [];
    });
  return {
    runner,
    stdout,
    commands: lines.filter((l) => l.startsWith('[command]')).map((l) => l.slice('[command]'.length)),
    warnings: runner.warningIssues,
    errors: runner.errorIssues,
    succeeded: runner.succeeded,
    outputs: Object.fromEntries(collect(/^##vso\[task\.setvariable variable=([^;]+);isOutput=true;[^\]]*\](.*)$/)),
    taskVariables: Object.fromEntries(collect(/^##vso\[task\.settaskvariable variable=([^;]+);[^\]]*\](.*)$/)),
  };
}
