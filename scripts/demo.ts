// The README's first command ends here: package the extension, start the engine, and run the
// bundled task the way the agent does on examples/hello, three jobs in a row:
//   1. cold: no cache yet;
//   2. warm: a new job (the engine's build cache pruned) restores every step from the cache folder;
//   3. a source change: only the steps after the changed file run again.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { docker, ROOT, runJob, type JobResult } from './agent';
import { BASE_IMAGE, ensureEngine } from './engine';

function folderBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .reduce((sum, e) => sum + fs.statSync(path.join(e.parentPath, e.name)).size, 0);
}

async function main(): Promise<void> {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'package.mjs')], { stdio: 'inherit' });
  ensureEngine();
  const demo = path.join(ROOT, 'out', 'demo');
  fs.rmSync(demo, { recursive: true, force: true });
  const ws = path.join(demo, 's');
  fs.cpSync(path.join(ROOT, 'examples', 'hello'), ws, { recursive: true });
  const cacheDir = path.join(demo, '.buildx-cache');

  const run = async (title: string): Promise<JobResult> => {
    docker(['buildx', 'prune', '-af']);
    const agentTemp = path.join(demo, '_temp');
    fs.mkdirSync(agentTemp, { recursive: true });
    const result = await runJob(
      { dockerfile: 'Dockerfile', imageName: 'hello-buildx-cache', tags: 'demo', buildArgs: `BASE=${BASE_IMAGE}`, driver: 'docker', cacheBackend: 'directory' },
      { 'System.DefaultWorkingDirectory': ws, 'Pipeline.Workspace': demo, 'Agent.TempDirectory': agentTemp, 'System.JobId': crypto.randomUUID(), 'System.TaskInstanceId': crypto.randomUUID() },
      ws,
    );
    if (result.main.result !== 'Succeeded') {
      process.stdout.write(result.main.stdout);
      throw new Error(`${title}: the task failed`);
    }
    const steps = /(\d+ of \d+ steps cached)/.exec(result.main.stdout)?.[1] ?? '?';
    const build = /^Build: ([\d.]+s)/m.exec(result.main.stdout)?.[1] ?? '?';
    console.log(`${title.padEnd(16)} task ${(result.main.ms / 1000).toFixed(1)}s, buildx build ${build}, ${steps}, cache folder ${(folderBytes(cacheDir) / 1e6).toFixed(1)} MB`);
    return result;
  };

  console.log(`\nRunning the bundled task (tasks/DockerBuildxCacheV1/dist/main.js) on examples/hello, cache folder ${path.relative(ROOT, cacheDir)}:`);
  await run('1. cold');
  await run('2. warm');
  fs.appendFileSync(path.join(ws, 'app.sh'), 'echo "a source change"\n');
  const last = await run('3. source change');
  console.log(`\nOutputs of the last job: ${JSON.stringify(last.main.outputs)}`);
  console.log(docker(['run', '--rm', 'hello-buildx-cache:demo']).trim());
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
