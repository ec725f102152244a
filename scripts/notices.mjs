// Third-party notices for the npm packages that the task's bundles contain, made at packaging.
//   node scripts/notices.mjs --metafile FILE [--root DIR] [--output FILE]
// esbuild's metafile says exactly which files, so which packages, each bundle holds; generate-license-file
// (which walks the installed tree with npm's own Arborist) reads each package's licence text and NOTICE
// files. A package that ships no licence text gets the standard text of the licence that its
// package.json declares (spdx-license-list), marked as such. A bundled package whose licence cannot
// be found fails the packaging: the notices are never incomplete.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { getProjectLicenses } from 'generate-license-file';
import spdx from 'spdx-license-list/full.js';

export const NOTICES_FILE = 'ThirdPartyNotices.txt';

/**
 * The npm packages in the bundles that `metafile` describes (esbuild's format, paths relative to
 * `root`), by `name@version`: where each is installed and which bundles hold its code.
 */
export function bundledPackages(root, metafile) {
  const packages = new Map();
  for (const [output, { inputs }] of Object.entries(metafile.outputs)) {
    for (const input of Object.keys(inputs)) {
      const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input.replaceAll('\\', '/'));
      if (!m) continue;
      const dir = path.resolve(root, m[1]);
      const { name, version, license, author } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      const id = `${name}@${version}`;
      const entry = packages.get(id) ?? {
        id,
        name,
        version,
        license,
        author: typeof author === 'object' ? author?.name : author,
        dir,
        bundles: new Set(),
      };
      entry.bundles.add(path.basename(output));
      packages.set(id, entry);
    }
  }
  return packages;
}

/** A regular expression that matches every `name@version` except those given (generate-license-file's exclude). */
const allBut = (ids) => `/^(?!(?:${ids.map((id) => id.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')})$)/`;

/** The declared licence's standard texts, when the package has only its SPDX expression, or null. */
function standardText(declared) {
  const ids = String(declared ?? '')
    .replace(/[()]/g, ' ')
    .split(/\s+(?:OR|AND|WITH)\s+|\s+/)
    .filter(Boolean);
  if (ids.length === 0 || ids.some((id) => !spdx[id])) return null;
  return ids.map((id) => spdx[id].licenseText.trim()).join('\n\n');
}

/**
 * The notices text for every package the bundles hold, grouped by identical licence text. Throws,
 * naming them, when some bundled package has no licence text to be found.
 */
export async function thirdPartyNotices({ root, metafile, title }) {
  const bundled = bundledPackages(root, metafile);
  const licences = await getProjectLicenses(path.join(root, 'package.json'), { exclude: [allBut([...bundled.keys()])] });
  const groups = new Map();
  const missing = new Set(bundled.keys());
  for (const licence of licences) {
    for (const id of licence.dependencies) {
      const pkg = bundled.get(id);
      if (!pkg) continue;
      let text = licence.content.replace(/\r\n?/g, '\n').trim();
      const onlyDeclared = text === String(pkg.license ?? '').trim() || /^(https?:|www\.)\S*$/.test(text);
      if (onlyDeclared) {
        const standard = standardText(pkg.license);
        if (standard === null) continue;
        const by = pkg.author ? ` and names ${pkg.author} as its author` : '';
        text = `${pkg.name} ships no licence file; its package.json declares ${pkg.license}${by}. The standard text of that licence:\n\n${standard}`;
      }
      const notices = licence.notices.map((n) => n.replace(/\r\n?/g, '\n').trim()).filter(Boolean);
      if (notices.length > 0) text += `\n\nNOTICE:\n\n${notices.join('\n\n')}`;
      const group = groups.get(text) ?? [];
      group.push(pkg);
      groups.set(text, group);
      missing.delete(id);
    }
  }
  if (missing.size > 0) {
    throw new Error(
      `no licence text found for bundled package(s) ${[...missing].join(', ')}: each must be a production dependency (package.json "dependencies") that ships a licence file or declares an SPDX licence`,
    );
  }
  const line = (pkg) => `  ${pkg.id.padEnd(48)} ${String(pkg.license ?? '').padEnd(14)} ${[...pkg.bundles].sort().join(', ')}`;
  const all = [...bundled.values()].sort((a, b) => a.id.localeCompare(b.id));
  const rule = '='.repeat(100);
  const text = [
    `${title}: third-party notices`,
    '',
    `The task's bundled code includes the ${all.length} npm packages below, each under the licence whose text follows.`,
    'This file is generated at packaging from the bundles themselves (scripts/notices.mjs); licence comments',
    "kept from the bundled sources are also in each bundle's .LEGAL.txt file where it has one.",
    '',
    `  ${'package'.padEnd(48)} ${'licence'.padEnd(14)} bundles`,
    ...all.map(line),
    '',
    ...[...groups.entries()].flatMap(([licenceText, pkgs]) => [
      rule,
      ...pkgs.sort((a, b) => a.id.localeCompare(b.id)).map((pkg) => pkg.id),
      rule,
      '',
      licenceText,
      '',
    ]),
  ].join('\n');
  return { text, packages: all };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      root: { type: 'string', default: process.cwd() },
      metafile: { type: 'string' },
      output: { type: 'string' },
      title: { type: 'string', default: 'Docker Buildx Cache' },
    },
  });
  if (!values.metafile) {
    console.error('usage: node scripts/notices.mjs --metafile FILE [--root DIR] [--output FILE]');
    process.exit(2);
  }
  const root = path.resolve(values.root);
  try {
    const { text } = await thirdPartyNotices({ root, metafile: JSON.parse(fs.readFileSync(values.metafile, 'utf8')), title: values.title });
    if (values.output) fs.writeFileSync(values.output, text);
    else process.stdout.write(text);
  } catch (err) {
    console.error(`notices: ${err.message}`);
    process.exit(1);
  }
}
