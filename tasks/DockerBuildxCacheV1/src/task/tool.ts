import * as tl from 'azure-pipelines-task-lib/task';

/** The path of a tool on PATH; task-lib fails the step when it is missing. */
export function which(tool: string): string {
  return tl.which(tool, true);
}

export interface ToolRun {
  readonly onStdout: (line: string) => void;
  readonly onStderr: (line: string) => void;
  readonly env?: NodeJS.ProcessEnv;
}

/** Runs a tool with task-lib's runner, silently, line by line: resolves to its exit code, whatever it is. */
export function execTool(toolPath: string, args: readonly string[], run: ToolRun): Promise<number> {
  const tool = tl.tool(toolPath).arg([...args]);
  tool.on('stdline', run.onStdout);
  tool.on('errline', run.onStderr);
  return tool.execAsync({ silent: true, ignoreReturnCode: true, failOnStdErr: false, env: run.env });
}
