import * as fs from 'fs';
import { info, warn } from './agent';
import { removeBuilder } from './buildx/builder';
import { Docker, type DockerCli } from './buildx/docker';
import { loadMessages, loc } from './loc';
import { loadState } from './state';

/** The post-job step: removes what the main step made for this job. Cleanup never fails the job. */
export async function runPost(docker?: DockerCli): Promise<void> {
  loadMessages();
  const state = loadState();
  if (state === undefined) {
    info(loc('PostNothingToDo'));
    return;
  }
  if (state.removeBuilder !== undefined) {
    const name = state.removeBuilder;
    try {
      const result = await removeBuilder(docker ?? Docker.locate(), name);
      if (result.code !== 0) warn(loc('WarnBuilderRemoveFailed', name, (result.stderr || result.stdout).trim()));
      else info(loc('BuilderRemoved', name));
    } catch (err) {
      warn(loc('WarnBuilderRemoveFailed', name, (err as Error).message));
    }
  }
  for (const dir of state.cleanup) {
    await fs.promises.rm(dir, { recursive: true, force: true }).catch((err: unknown) => {
      warn(loc('WarnCleanupFailed', dir, (err as Error).message));
    });
  }
}
