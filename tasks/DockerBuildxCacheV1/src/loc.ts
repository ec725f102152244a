import * as path from 'path';
import * as tl from 'azure-pipelines-task-lib/task';

let loaded = false;

/**
 * Points task-lib at task.json so that `loc` finds the messages and their translations under
 * Strings/. Both the bundle (dist/main.js) and the compiled sources (build/…/src/*.js) sit one
 * folder below the task folder, so one relative path serves both.
 */
export function loadMessages(taskDir: string = path.join(__dirname, '..')): void {
  if (loaded) return;
  tl.setResourcePath(path.join(taskDir, 'task.json'), true);
  loaded = true;
}

/** A message from task.json's `messages`, formatted with util.format placeholders. */
export function loc(key: string, ...args: unknown[]): string {
  return tl.loc(key, ...args);
}
