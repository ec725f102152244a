import * as path from 'path';
import { MockTestRunner } from 'azure-pipelines-task-lib/mock-test';
import type { Scenario } from './types';

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
  // A run that never reached the task prints nothing of ours; fail loudly instead of "succeeding".
  if (!stdout.includes('##vso[') || runner.stderr.includes('Error: ')) {
    throw new Error(`the scenario did not run the task:\n${stdout}\n${runner.stderr}`);
  }
  const lines = stdout.split(/\r?\n/);
  const collect = (re: RegExp): [string, string][] => lines.flatMap((l) => {
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
