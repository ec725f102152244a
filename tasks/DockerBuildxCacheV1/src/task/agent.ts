import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Writable } from 'stream';
import * as tl from 'azure-pipelines-task-lib/task';
import { loadMessages, loc } from './messages';
import { neutralise } from './sanitize';
import { catchStrayErrors, endWhenOutputGone } from './stray';

/** The small seam over the agent: variables, task state, logging. Every line we print is neutralised. */
export function variable(name: string): string | undefined {
  const value = tl.getVariable(name);
  return value === undefined || value === '' ? undefined : value;
}

/**
 * A short id of this task instance in this job, for the names of job-private folders: stable for
 * one step, different for every other step and job, random outside an agent.
 */
export function instanceId(): string {
  return instanceIdOf(variable('System.JobId'), variable('System.TaskInstanceId'));
}

export function instanceIdOf(jobId: string | undefined, taskInstanceId: string | undefined): string {
  if (jobId === undefined || taskInstanceId === undefined) return crypto.randomBytes(6).toString('hex');
  return crypto.createHash('sha256').update(`${jobId}/${taskInstanceId}`).digest('hex').slice(0, 12);
}

/**
 * Runs `read` while task-lib's output drops lines that start with `prefix`. task-lib echoes every
 * input it reads as a debug line, which for a secret input would print the value before the task
 * can register it as a secret.
 */
export function withoutEcho<T>(prefix: string, read: () => T): T {
  tl.setStdStream(
    new Writable({
      write(chunk: Buffer, _encoding, done): void {
        if (!chunk.toString().startsWith(prefix)) process.stdout.write(chunk);
        done();
      },
    }),
  );
  try {
    return read();
  } finally {
    tl.setStdStream(process.stdout);
  }
}

export function info(text: string): void {
  for (const line of text.split(/\r?\n/)) console.log(neutralise(line));
}

export function warn(text: string): void {
  tl.warning(neutralise(text));
}

export function debug(text: string): void {
  tl.debug(neutralise(text));
}

export function setOutput(name: string, value: string): void {
  tl.setVariable(name, value, false, true);
}

export function setVariable(name: string, value: string): void {
  tl.setVariable(name, value);
}

/** Attaches markdown to the build's summary tab; the file name becomes the section's title. */
export function uploadSummary(markdown: string, title: string): void {
  const dir = variable('Agent.TempDirectory') ?? os.tmpdir();
  const file = path.join(dir, `${title.replace(/[^\w .()-]+/g, '-')}.md`);
  fs.writeFileSync(file, markdown);
  tl.uploadSummary(file);
}

/** The agent's proxy for a URL, if it has one that the URL does not bypass. */
export function proxyFor(url: string): tl.ProxyConfiguration | undefined {
  return tl.getHttpProxyConfiguration(url) ?? undefined;
}

export function setSecret(value: string): void {
  tl.setSecret(value);
}

export function setTaskState(name: string, value: string): void {
  tl.setTaskVariable(name, value);
}

export function getTaskState(name: string): string | undefined {
  return tl.getTaskVariable(name);
}

export function fail(message: string): void {
  tl.setResult(tl.TaskResult.Failed, neutralise(message));
}

/**
 * A step's errors that nothing handled (see task/stray.ts), in place of task-lib's handling: a
 * connection's failure is a warning and the step goes on; anything else marks the main step Failed
 * (a warning in the post-job step, which fails only on cache trouble the user asked for). The
 * stack goes to the debug log. A step whose own output is gone ends (see endWhenOutputGone).
 */
export function reportStrayErrors(otherwise: 'fail' | 'warn'): void {
  loadMessages();
  endWhenOutputGone();
  catchStrayErrors({
    ignored: (err) => {
      debug(err.stack ?? err.message);
      warn(loc('StrayConnectionFailure', err.message));
    },
    other: (err) => {
      debug(err.stack ?? err.message);
      if (otherwise === 'fail') fail(loc('StrayError', err.message));
      else warn(loc('StrayError', err.message));
    },
  });
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value.toString() : value.toFixed(1)} ${units[unit] ?? 'B'}`;
}

export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** Runs one phase of the job in its own collapsible log group; its last line gives the time and what it did. */
export async function phase<T>(title: string, work: () => Promise<T>, describe?: (result: T) => string): Promise<T> {
  console.log(`##[group]${title}`);
  const start = Date.now();
  try {
    const result = await work();
    const what = describe?.(result);
    info(`${title}: ${formatSeconds(Date.now() - start)}${what === undefined || what === '' ? '' : `, ${what}`}`);
    return result;
  } finally {
    console.log('##[endgroup]');
  }
}
