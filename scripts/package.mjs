// Builds the task bundle and packages the extension as a .vsix with tfx.
//   node scripts/package.mjs [--publisher ID] [--extension-id ID] [--repository URL] [--output DIR]
// The publisher and the extension id in vss-extension.json are placeholders for private
// publishing: each organisation packages under its own marketplace publisher. Likewise the links
// into the repository (the manifest's, the overview's, task.json's) point at package.json's
// "repository" and are rewritten for --repository (scripts/links.mjs).
// What ships is staged apart, so packaging changes nothing in the tree: the files the manifest
// names, with the links rewritten, and the third-party notices of what the bundles hold
// (scripts/notices.mjs) beside them. esbuild's metafile of the bundles is written next to the .vsix.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { bundle, taskDir } from './build.mjs';
import { defaultRepository, normaliseRepository, rewriteLinks } from './links.mjs';
import { NOTICES_FILE, thirdPartyNotices } from './notices.mjs';

const root = path.resolve(import.meta.dirname, '..');

/** Every path the manifest ships: the manifest itself, its icons and content files, and its `files`. */
function shippedPaths(manifest) {
  return [
    'vss-extension.json',
    ...Object.values(manifest.icons ?? {}),
    ...Object.values(manifest.content ?? {}).map((c) => c.path),
    ...(manifest.files ?? []).map((f) => f.path),
  ];
}

/** Copies what ships into `stage`, each text file with its links into the repository made links into `repository`. */
function stage(stageDir, manifest, repository) {
  const from = defaultRepository();
  for (const rel of shippedPaths(manifest)) {
    fs.cpSync(path.join(root, rel), path.join(stageDir, rel), { recursive: true });
  }
  for (const entry of fs.readdirSync(stageDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.(json|md|resjson)$/.test(entry.name)) continue;
    const file = path.join(entry.parentPath, entry.name);
    const text = fs.readFileSync(file, 'utf8');
    const rewritten = rewriteLinks(text, from, repository);
    if (rewritten !== text) fs.writeFileSync(file, rewritten);
  }
}

export async function packageExtension({ publisher, extensionId, repository, output }) {
  const repo = repository === undefined ? defaultRepository() : normaliseRepository(repository);
  const metafile = await bundle();
  fs.mkdirSync(output, { recursive: true });
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'vss-extension.json'), 'utf8'));
  const file = path.join(output, `${publisher ?? manifest.publisher}.${extensionId ?? manifest.id}-${manifest.version}.vsix`);
  const stageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbxc-stage-'));
  try {
    stage(stageDir, manifest, repo);
    const notices = await thirdPartyNotices({ root, metafile, title: `${manifest.name} ${manifest.version}` });
    fs.writeFileSync(path.join(stageDir, path.relative(root, taskDir), 'dist', NOTICES_FILE), notices.text);
    const args = [
      'extension',
      'create',
      '--root',
      stageDir,
      '--manifest-globs',
      'vss-extension.json',
      '--output-path',
      file,
      '--no-prompt',
    ];
    if (publisher) args.push('--publisher', publisher);
    if (extensionId) args.push('--extension-id', extensionId);
    execFileSync(process.execPath, [path.join(root, 'node_modules', 'tfx-cli', '_build', 'tfx-cli.js'), ...args], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    fs.writeFileSync(file.replace(/\.vsix$/, '.metafile.json'), JSON.stringify(metafile));
    console.log(`third-party notices: ${notices.packages.length} bundled packages`);
  } finally {
    fs.rmSync(stageDir, { recursive: true, force: true });
  }
  const size = fs.statSync(file).size;
  console.log(`links into ${repo}`);
  console.log(`${path.relative(process.cwd(), file)}: ${(size / 1024).toFixed(0)} KiB`);
  return { file, size };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      publisher: { type: 'string', default: process.env.VSIX_PUBLISHER },
      'extension-id': { type: 'string', default: process.env.VSIX_EXTENSION_ID },
      repository: { type: 'string', default: process.env.VSIX_REPOSITORY || undefined },
      output: { type: 'string', default: path.join(root, 'out') },
    },
  });
  try {
    await packageExtension({
      publisher: values.publisher,
      extensionId: values['extension-id'],
      repository: values.repository,
      output: path.resolve(values.output),
    });
  } catch (err) {
    console.error(`package: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
