import * as fs from 'fs';
import * as path from 'path';
import * as tl from 'azure-pipelines-task-lib/task';

let loaded = false;

/**
 * The task folder, which holds task.json: the nearest folder above this module that does. The bundle
 * (dist/main.js) sits one folder below it, the compiled sources (build/…/src/…) one or more.
 */
export function taskDir(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'task.json'))) return dir;
    if (path.dirname(dir) === dir) return path.dirname(from);
  }
}

/** Points task-lib at task.json so that `loc` finds the messages and their translations under Strings/. */
export function loadMessages(dir: string = taskDir()): void {
  if (loaded) return;
  tl.setResourcePath(path.join(dir, 'task.json'), true);
  loaded = true;
}

/** A message from task.json's `messages`, formatted with util.format placeholders. */
export function loc(key: string, ...args: unknown[]): string {
  return tl.loc(key, ...args);
}
