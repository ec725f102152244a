// Sets one version on the extension (vss-extension.json), the task (task.json) and package.json,
// so that every published build carries a new task version and agents download it.
//   node scripts/version.mjs patch | minor | patch=N | 1.4.2
// patch=N keeps major.minor and makes the patch N: azure-pipelines.yml passes $(Build.BuildId), which
// only grows, so every published build has a new version without a commit.
// The task's major version is part of its name (DockerBuildxCache@1); a new major is a new task
// folder, so this script keeps major 1.
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const files = {
  package: path.join(root, 'package.json'),
  lock: path.join(root, 'package-lock.json'),
  extension: path.join(root, 'vss-extension.json'),
  task: path.join(root, 'tasks', 'DockerBuildxCacheV1', 'task.json'),
};
const read = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
const write = (f, json) => fs.writeFileSync(f, JSON.stringify(json, null, 2) + '\n');

export function nextVersion(current, request) {
  const [major, minor, patch] = current.split('.').map(Number);
  if (request === 'patch') return `${major}.${minor}.${patch + 1}`;
  if (request === 'minor') return `${major}.${minor + 1}.0`;
  const build = /^patch=(\d+)$/.exec(request ?? '');
  if (build) {
    if (Number(build[1]) < patch) throw new Error(`version ${current}: patch=${build[1]} would go back`);
    return `${major}.${minor}.${Number(build[1])}`;
  }
  if (/^\d+\.\d+\.\d+$/.test(request ?? '')) return request;
  throw new Error(`usage: node scripts/version.mjs patch | minor | patch=N | X.Y.Z (got ${JSON.stringify(request)})`);
}

export function setVersion(version) {
  const [major, minor, patch] = version.split('.').map(Number);
  if (major !== 1)
    throw new Error(
      `version ${version}: the task is DockerBuildxCache@1, so its major version stays 1; a new major needs a new task folder`,
    );
  const pkg = read(files.package);
  pkg.version = version;
  write(files.package, pkg);
  const lock = read(files.lock);
  lock.version = version;
  if (lock.packages?.['']) lock.packages[''].version = version;
  write(files.lock, lock);
  const ext = read(files.extension);
  ext.version = version;
  write(files.extension, ext);
  const task = read(files.task);
  task.version = { Major: major, Minor: minor, Patch: patch };
  write(files.task, task);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const version = nextVersion(read(files.package).version, process.argv[2]);
  setVersion(version);
  console.log(`version ${version}: package.json, vss-extension.json, task.json`);
}
