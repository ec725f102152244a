// Builds the task: strings from task.json, then one bundled file per step (dist/main.js and
// dist/post.js), which is what task.json's handlers run and what the .vsix ships, and the bundle
// of the Azure SDK and the HTTP client that both load on demand (dist/remote.js).
//   node scripts/build.mjs            bundle the task
//   node scripts/build.mjs --tests    also compile sources and tests with tsc into build/
import * as esbuild from 'esbuild';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { syncStrings } from './strings.mjs';

const root = path.resolve(import.meta.dirname, '..');
export const taskDir = path.join(root, 'tasks', 'DockerBuildxCacheV1');

/**
 * src/remote/sdk.ts (the Azure SDK, the HTTP client) goes into dist/remote.js, which main.js and
 * post.js require only when they fetch a token or use `azureBlob` (src/remote/load.ts, loadRemote):
 * every other job starts without parsing it.
 */
const remoteBundle = {
  name: 'remote-bundle',
  setup(build) {
    build.onResolve({ filter: /^\.\/sdk$/ }, (args) =>
      args.kind === 'require-call' ? { path: './remote.js', external: true } : undefined,
    );
  },
};

export async function bundle() {
  syncStrings(taskDir);
  const dist = path.join(taskDir, 'dist');
  fs.rmSync(dist, { recursive: true, force: true });
  // debug (in the HTTP client's proxy agents) requires supports-color inside a try, for colours
  // only. It is not a dependency of ours, so it stays out: whether a dev dependency happens to be
  // installed must not change what ships.
  const common = {
    absWorkingDir: root,
    external: ['supports-color'],
    outdir: dist,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: true,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
  };
  const steps = await esbuild.build({
    ...common,
    entryPoints: { main: path.join(taskDir, 'src', 'main.ts'), post: path.join(taskDir, 'src', 'post.ts') },
    plugins: [remoteBundle],
  });
  const remote = await esbuild.build({
    ...common,
    entryPoints: { remote: path.join(taskDir, 'src', 'remote', 'sdk.ts') },
    // The storage SDK's ESM build finds itself through `import.meta.url` (its CRC-64 module does,
    // at load), which a CommonJS bundle lacks: it is given the bundle's own URL. Its CommonJS build
    // would need no help, but bundles a third bigger and loads twice as slowly (measured).
    define: { 'import.meta.url': '__bundleUrl' },
    banner: { js: 'var __bundleUrl = require("url").pathToFileURL(__filename).href;' },
  });
  // One metafile for the three bundles, in esbuild's format with paths relative to the root: what
  // each bundle holds, which the third-party notices are made from (scripts/notices.mjs).
  const metafile = {
    inputs: { ...steps.metafile.inputs, ...remote.metafile.inputs },
    outputs: { ...steps.metafile.outputs, ...remote.metafile.outputs },
  };
  for (const [file, out] of Object.entries(metafile.outputs)) console.log(`${file}: ${(out.bytes / 1024).toFixed(0)} KiB`);
  return metafile;
}

export function compileTests() {
  // From scratch: the compiled copy of a source or test that was moved or deleted would stay in
  // build/, and mocha would still run it.
  fs.rmSync(path.join(root, 'build'), { recursive: true, force: true });
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root], { stdio: 'inherit' });
  // The compiled task finds task.json one folder above its sources, as the bundle does.
  const out = path.join(root, 'build', 'tasks', 'DockerBuildxCacheV1');
  fs.copyFileSync(path.join(taskDir, 'task.json'), path.join(out, 'task.json'));
  fs.cpSync(path.join(taskDir, 'Strings'), path.join(out, 'Strings'), { recursive: true });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await bundle();
  if (process.argv.includes('--tests')) compileTests();
}
