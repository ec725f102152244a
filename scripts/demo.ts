// The README's first command ends here: package the extension, start the engine, and run the
// bundled task the way the agent does (main step, then post-job step) on examples/hello, with the
// default local store, three jobs in a row:
//   1. cold: no cache yet; the post-job step saves it;
//   2. warm: a new job (the engine's build cache pruned) restores every step from the store;
//   3. a source change: only the steps after the changed file run again, and only they are saved.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { docker, ROOT, runJob, type JobResult } from './agent';
import { BASE_IMAGE, ensureEngine } from './engine';
import { folderBytes } from './measure';

async function main(): Promise<void> {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'package.mjs')], { stdio: 'inherit' });
  ensureEngine();
  const demo = path.join(ROOT, 'out', 'demo');
  fs.rmSync(demo, { recursive: true, force: true });
  const ws = path.join(demo, 's');
  fs.cpSync(path.join(ROOT, 'examples', 'hello'), ws, { recursive: true });
  const store = path.join(demo, '_work', '_buildx_cache_store');

  const run = async (title: string): Promise<JobResult> => {
    docker(['buildx', 'prune', '-af']);
    const agentTemp = path.join(demo, '_temp');
    fs.mkdirSync(agentTemp, { recursive: true });
    const result = await runJob(
      { dockerfile: 'Dockerfile', imageName: 'hello-buildx-cache', tags: 'demo', buildArgs: `BASE=${BASE_IMAGE}`, driver: 'docker' },
      {
        'System.DefaultWorkingDirectory': ws,
        'Pipeline.Workspace': demo,
        'Agent.TempDirectory': agentTemp,
        'Agent.WorkFolder': path.join(demo, '_work'),
        'Build.SourceBranch': 'refs/heads/main',
        'System.JobId': crypto.randomUUID(),
        'System.TaskInstanceId': crypto.randomUUID(),
      },
      ws,
    );
    if (result.main.result !== 'Succeeded' || result.post.result !== 'Succeeded') {
      process.stdout.write(result.main.stdout + result.post.stdout);
      throw new Error(`${title}: the task failed`);
    }
    const steps = /(\d+ of \d+ steps cached)/.exec(result.main.stdout)?.[1] ?? '?';
    const build = /^Build: ([\d.]+s)/m.exec(result.main.stdout)?.[1] ?? '?';
    const saved =
      /(Saved a new version|did not change)/.exec(result.post.stdout)?.[1] === 'did not change'
        ? 'unchanged'
        : (/: ([\d.]+ \w+) in \d+ new blobs/.exec(result.post.stdout)?.[1] ?? '?');
    console.log(
      `${title.padEnd(16)} cacheHit ${(result.main.outputs.cacheHit ?? '?').padEnd(5)} task ${(result.main.ms / 1000).toFixed(1)}s, buildx build ${build}, ${steps}, saved ${saved}, store ${(folderBytes(store) / 1e6).toFixed(1)} MB`,
    );
    return result;
  };

  console.log(
    `\nRunning the bundled task (tasks/DockerBuildxCacheV1/dist/main.js, then post.js) on examples/hello, store ${path.relative(ROOT, store)}:`,
  );
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
