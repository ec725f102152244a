import type { TaskLibAnswerExecResult } from 'azure-pipelines-task-lib/mock-answer';

export interface Scenario {
  readonly step: 'main' | 'post';
  readonly inputs?: Record<string, string>;
  readonly variables?: Record<string, string>;
  readonly taskVariables?: Record<string, string>;
  /** Answers by full command line: '/usr/bin/docker buildx inspect b'. */
  readonly exec?: Record<string, TaskLibAnswerExecResult>;
  /** A tool cache in `dir` standing in for azure-pipelines-tool-lib, downloading `downloads` by URL. */
  readonly tools?: { readonly dir: string; readonly downloads: Record<string, string> };
}

export const DOCKER = '/usr/bin/docker';
