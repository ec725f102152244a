import * as assert from 'assert/strict';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { cleanup, tempDir, writeTree } from '../helpers';

const root = path.resolve(__dirname, '..', '..', '..');

interface Fake {
  readonly license?: string;
  readonly author?: string;
  readonly files?: Record<string, string>;
}

/**
 * Runs scripts/notices.mjs on a project of its own: `deps` are its dependencies and `devDeps` its
 * devDependencies, installed as folders, and the bundle holds a file of each package in `bundled`.
 */
function notices(
  deps: Record<string, Fake>,
  devDeps: Record<string, Fake>,
  bundled: string[],
): { status: number | null; stdout: string; stderr: string } {
  const project = tempDir('dbxc-notices-');
  const tree: Record<string, string> = {
    'package.json': JSON.stringify({
      name: 'app',
      version: '1.0.0',
      dependencies: Object.fromEntries(Object.keys(deps).map((n) => [n, '1.0.0'])),
      devDependencies: Object.fromEntries(Object.keys(devDeps).map((n) => [n, '1.0.0'])),
    }),
  };
  for (const [name, fake] of Object.entries({ ...deps, ...devDeps })) {
    tree[`node_modules/${name}/package.json`] = JSON.stringify({ name, version: '1.0.0', license: fake.license, author: fake.author });
    tree[`node_modules/${name}/index.js`] = 'module.exports = 1;\n';
    for (const [file, text] of Object.entries(fake.files ?? {})) tree[`node_modules/${name}/${file}`] = text;
  }
  const metafile = {
    inputs: {},
    outputs: {
      'dist/main.js': { inputs: Object.fromEntries(bundled.map((name) => [`node_modules/${name}/index.js`, { bytesInOutput: 1 }])) },
    },
  };
  tree['meta.json'] = JSON.stringify(metafile);
  writeTree(project, tree);
  const r = spawnSync(
    process.execPath,
    [path.join(root, 'scripts', 'notices.mjs'), '--root', project, '--metafile', path.join(project, 'meta.json')],
    { encoding: 'utf8' },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('third-party notices (scripts/notices.mjs)', function () {
  this.timeout(60_000);
  after(cleanup);

  const mit =
    'MIT License\n\nCopyright (c) 2024 Someone\n\nPermission is hereby granted, free of charge, to any person obtaining a copy…\n';

  it('lists only what the bundle holds, each with its own licence file and NOTICE', () => {
    const r = notices(
      {
        'with-file': { license: 'MIT', files: { LICENSE: mit, NOTICE: 'Portions by Contoso.' } },
        'not-bundled': { license: 'MIT', files: { LICENSE: 'Other licence' } },
      },
      {},
      ['with-file'],
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ {2}with-file@1\.0\.0 +MIT +main\.js$/m);
    assert.ok(r.stdout.includes(`with-file@1.0.0\n${'='.repeat(100)}\n\n${mit.trim()}\n\nNOTICE:\n\nPortions by Contoso.`));
    assert.ok(!r.stdout.includes('not-bundled'));
  });

  it('gives a package without a licence file the standard text of its declared licence, and says so', () => {
    const r = notices({ bare: { license: 'ISC', author: 'Ada' } }, {}, ['bare']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /bare ships no licence file; its package\.json declares ISC and names Ada as its author\. The standard text of that licence:\n\nISC License/,
    );
  });

  const failures: [string, Record<string, Fake>, Record<string, Fake>, string[], RegExp][] = [
    [
      'a bundled package with neither a licence file nor an SPDX licence',
      { mystery: { license: 'SEE LICENSE IN the wind' } },
      {},
      ['mystery'],
      /no licence text found for bundled package\(s\) mystery@1\.0\.0:/,
    ],
    [
      'a bundled package that is only a dev dependency',
      { fine: { license: 'MIT', files: { LICENSE: mit } } },
      { 'dev-only': { license: 'MIT', files: { LICENSE: mit } } },
      ['fine', 'dev-only'],
      /no licence text found for bundled package\(s\) dev-only@1\.0\.0: each must be a production dependency/,
    ],
  ];
  for (const [name, deps, devDeps, bundled, error] of failures) {
    it(`fails the packaging for ${name}, naming it`, () => {
      const r = notices(deps, devDeps, bundled);
      assert.equal(r.status, 1);
      assert.match(r.stderr, error);
    });
  }
});
