import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { tempDir, writeTree } from '../helpers';

/**
 * The task's config from these inputs (a missing one is empty), read in a new workspace that holds
 * a Dockerfile, with the agent variables every unit test uses. Returns the workspace too.
 */
export function configIn(inputs: Record<string, string>): { config: Config; ws: string } {
  const ws = tempDir();
  writeTree(ws, { Dockerfile: 'FROM scratch\n' });
  const vars: Record<string, string> = {
    'System.DefaultWorkingDirectory': ws,
    'Pipeline.Workspace': '/pw',
    'Agent.WorkFolder': '/aw',
    'Agent.OS': 'Linux',
  };
  return { config: readConfig({ input: (name) => inputs[name] ?? '', variable: (name) => vars[name] }), ws };
}
