// Builds the task bundle and packages the extension as a .vsix with tfx.
//   node scripts/package.mjs [--publisher ID] [--extension-id ID] [--output DIR]
// The publisher and the extension id in vss-extension.json are placeholders for private
// publishing: each organisation packages under its own marketplace publisher.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { bundle } from './build.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    publisher: { type: 'string', default: process.env.VSIX_PUBLISHER },
    'extension-id': { type: 'string', default: process.env.VSIX_EXTENSION_ID },
    output: { type: 'string', default: path.join(root, 'out') },
  },
});

export async function packageExtension({ publisher, extensionId, output }) {
  await bundle();
  fs.mkdirSync(output, { recursive: true });
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'vss-extension.json'), 'utf8'));
  const file = path.join(output, `${publisher ?? manifest.publisher}.${extensionId ?? manifest.id}-${manifest.version}.vsix`);
  const args = ['extension', 'create', '--root', root, '--manifest-globs', 'vss-extension.json', '--output-path', file, '--no-prompt'];
  if (publisher) args.push('--publisher', publisher);
  if (extensionId) args.push('--extension-id', extensionId);
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'tfx-cli', '_build', 'tfx-cli.js'), ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  const size = fs.statSync(file).size;
  console.log(`${path.relative(process.cwd(), file)}: ${(size / 1024).toFixed(0)} KiB`);
  return { file, size };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await packageExtension({ publisher: values.publisher, extensionId: values['extension-id'], output: path.resolve(values.output) });
}
