import * as assert from 'assert/strict';
import { spawnSync } from 'child_process';
import * as path from 'path';

const root = path.resolve(__dirname, '..', '..', '..');
const run = (script: string, args: string[]): { status: number | null; stdout: string; stderr: string } => {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', script), ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe('links into the repository (scripts/links.mjs)', () => {
  const cases: [string, string, Record<string, string>][] = [
    [
      'Azure Repos, as Build.Repository.Uri gives it',
      'https://contoso@dev.azure.com/contoso/platform/_git/buildx-cache/',
      {
        repository: 'https://dev.azure.com/contoso/platform/_git/buildx-cache',
        readme: 'https://dev.azure.com/contoso/platform/_git/buildx-cache?path=/README.md',
        inputs: 'https://dev.azure.com/contoso/platform/_git/buildx-cache?path=/README.md&anchor=inputs',
      },
    ],
    [
      'Azure Repos on visualstudio.com',
      'https://contoso.visualstudio.com/platform/_git/buildx-cache',
      {
        readme: 'https://contoso.visualstudio.com/platform/_git/buildx-cache?path=/README.md',
      },
    ],
    [
      'a GitHub-style host',
      'https://github.com/contoso/buildx-cache.git',
      {
        repository: 'https://github.com/contoso/buildx-cache',
        readme: 'https://github.com/contoso/buildx-cache/blob/HEAD/README.md',
        usage: 'https://github.com/contoso/buildx-cache/blob/HEAD/README.md#usage',
      },
    ],
  ];
  for (const [name, url, expected] of cases) {
    it(`are made for ${name}`, () => {
      const r = run('links.mjs', [url]);
      assert.equal(r.status, 0, r.stderr);
      const links = JSON.parse(r.stdout) as Record<string, string>;
      for (const [key, value] of Object.entries(expected)) assert.equal(links[key], value, key);
    });
  }

  for (const url of ['git@github.com:contoso/buildx-cache.git', 'http://dev.azure.com/contoso/platform/_git/buildx-cache', '']) {
    it(`refuse ${JSON.stringify(url)} at packaging, naming --repository, before building anything`, () => {
      const r = run('package.mjs', ['--repository', url, '--output', path.join(root, 'out', 'never')]);
      assert.equal(r.status, 1);
      assert.match(
        r.stderr,
        /^package: --repository: .* is not an https URL of the repository; write it as the browser shows it, for example https:\/\/dev\.azure\.com\//,
      );
    });
  }
});
