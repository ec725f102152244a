import type { TaskLibAnswerExecResult } from 'azure-pipelines-task-lib/mock-answer';

export interface Scenario {
  readonly step: 'main' | 'post';
  readonly inputs?: Record<string, string>;
  readonly variables?: Record<string, string>;
  readonly taskVariables?: Record<string, string>;
  /** Answers by full command line: '/usr/bin/docker buildx inspect b'. */
  readonly exec?: Record<string, TaskLibAnswerExecResult>;
  /** Environment variables for the step: service connections (ENDPOINT_*), the login script's settings. */
  readonly env?: Record<string, string>;
  /** A tool cache in `dir` standing in for azure-pipelines-tool-lib, downloading `downloads` by URL. */
  readonly tools?: { readonly dir: string; readonly downloads: Record<string, string> };
}

import * as os from 'os';
import * as path from 'path';

/**
 * The docker the mock runs see. Commands through task-lib's tool runner get mocked answers; a
 * command that needs standard input (docker login --password-stdin) really runs this script, which
 * records its arguments and input (see harness.ts).
 */
export const DOCKER = path.join(os.tmpdir(), 'dbxc-mockrun-bin', 'docker');
