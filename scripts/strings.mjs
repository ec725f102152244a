// Generates Strings/resources.resjson/en-US/resources.resjson from task.json, the single source of
// every user-facing string. `--check` fails instead of writing when the file is out of date.
import * as fs from 'node:fs';
import * as path from 'node:path';

export function resjson(task) {
  const out = {
    'loc.friendlyName': task.friendlyName,
    'loc.helpMarkDown': task.helpMarkDown,
    'loc.description': task.description,
    'loc.instanceNameFormat': task.instanceNameFormat,
  };
  for (const group of task.groups ?? []) out[`loc.group.displayName.${group.name}`] = group.displayName;
  for (const input of task.inputs) {
    out[`loc.input.label.${input.name}`] = input.label;
    out[`loc.input.help.${input.name}`] = input.helpMarkDown;
  }
  for (const [key, text] of Object.entries(task.messages ?? {})) out[`loc.messages.${key}`] = text;
  return JSON.stringify(out, null, 2) + '\n';
}

export function syncStrings(taskDir, check = false) {
  const task = JSON.parse(fs.readFileSync(path.join(taskDir, 'task.json'), 'utf8'));
  const file = path.join(taskDir, 'Strings', 'resources.resjson', 'en-US', 'resources.resjson');
  const want = resjson(task);
  const have = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  if (have === want) return false;
  if (check) throw new Error(`${file} is out of date: run npm run build`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, want);
  return true;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const taskDir = process.argv[2] ?? 'tasks/DockerBuildxCacheV1';
  const changed = syncStrings(taskDir, process.argv.includes('--check'));
  console.log(changed ? 'resources.resjson updated' : 'resources.resjson up to date');
}
