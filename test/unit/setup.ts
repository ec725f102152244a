import { PassThrough } from 'stream';
import * as tl from 'azure-pipelines-task-lib/task';
import { loadMessages } from '../../tasks/DockerBuildxCacheV1/src/task/messages';

/** Everything task-lib writes during unit tests (debug lines, warnings, commands), for tests that look at it. */
export const taskLibOutput: string[] = [];

export const mochaHooks = {
  beforeAll(): void {
    const sink = new PassThrough();
    sink.on('data', (chunk: Buffer) => taskLibOutput.push(chunk.toString()));
    tl.setStdStream(sink);
    tl.setErrStream(sink);
    loadMessages();
  },
};
