import * as assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import AdmZip from 'adm-zip';
import { runStep, stepEnv } from '../../scripts/agent';
import { cleanup, tempDir } from '../helpers';

const root = path.resolve(__dirname, '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string; repository: { url: string } };
/** The repository the package is made for, as a pipeline passes $(Build.Repository.Uri): with the organisation as a user name. */
const REPOSITORY = 'https://contoso@dev.azure.com/contoso/platform/_git/buildx-cache';
const REPO = 'https://dev.azure.com/contoso/platform/_git/buildx-cache';

interface Metafile {
  outputs: Record<string, { inputs: Record<string, unknown> }>;
}

describe('the packaged extension (.vsix)', function () {
  this.timeout(5 * 60 * 1000);
  let out: string;
  let unpacked: string;
  let vsix: AdmZip;
  let metafile: Metafile;

  before(() => {
    out = tempDir('dbxc-vsix-');
    execFileSync(
      process.execPath,
      [path.join(root, 'scripts', 'package.mjs'), '--publisher', 'contoso-private', '--repository', REPOSITORY, '--output', out],
      { stdio: 'pipe' },
    );
    const file = path.join(out, `contoso-private.docker-buildx-cache-${pkg.version}.vsix`);
    metafile = JSON.parse(fs.readFileSync(file.replace(/\.vsix$/, '.metafile.json'), 'utf8')) as Metafile;
    vsix = new AdmZip(file);
    unpacked = path.join(out, 'unpacked');
    vsix.extractAllTo(unpacked);
    console.log(`      vsix: ${(fs.statSync(file).size / 1024).toFixed(0)} KiB`);
  });
  after(cleanup);

  it('has a manifest with the overriding publisher, the version and the task contribution', () => {
    const xml = vsix.readAsText('extension.vsixmanifest');
    assert.match(
      xml,
      new RegExp(
        `<Identity [^>]*Id="docker-buildx-cache"[^>]*Version="${pkg.version.replace(/\./g, '\\.')}"[^>]*Publisher="contoso-private"`,
      ),
    );
    assert.match(xml, /<InstallationTarget Id="Microsoft.VisualStudio.Services"/);
    assert.match(xml, /<Categories>Azure Pipelines<\/Categories>/);
    assert.match(xml, /<Asset Type="Microsoft.VisualStudio.Services.Content.Details" [^>]*Path="overview.md"/);
    assert.match(xml, /<Asset Type="Microsoft.VisualStudio.Services.Icons.Default" [^>]*Path="images\/icon.png"/);
    const contributions = (
      JSON.parse(vsix.readAsText('extension.vsomanifest')) as { contributions: { type: string; properties: { name: string } }[] }
    ).contributions;
    assert.deepEqual(
      contributions.map((c) => [c.type, c.properties.name]),
      [['ms.vss-distributed-task.task', 'tasks/DockerBuildxCacheV1']],
    );
  });

  it('ships the task as built: task.json, strings, icon, the two step bundles and the Azure bundle, and nothing else', () => {
    const files = vsix
      .getEntries()
      .filter((e) => !e.isDirectory)
      .map((e) => e.entryName)
      .filter((n) => n.startsWith('tasks/'))
      .sort();
    assert.deepEqual(files, [
      'tasks/DockerBuildxCacheV1/Strings/resources.resjson/en-US/resources.resjson',
      'tasks/DockerBuildxCacheV1/dist/ThirdPartyNotices.txt',
      'tasks/DockerBuildxCacheV1/dist/main.js',
      'tasks/DockerBuildxCacheV1/dist/main.js.LEGAL.txt',
      'tasks/DockerBuildxCacheV1/dist/post.js',
      'tasks/DockerBuildxCacheV1/dist/post.js.LEGAL.txt',
      'tasks/DockerBuildxCacheV1/dist/remote.js',
      'tasks/DockerBuildxCacheV1/icon.png',
      'tasks/DockerBuildxCacheV1/task.json',
    ]);
    const packed = JSON.parse(vsix.readAsText('tasks/DockerBuildxCacheV1/task.json')) as {
      version: Record<string, number>;
      execution: Record<string, { target: string }>;
    };
    assert.equal(`${packed.version.Major}.${packed.version.Minor}.${packed.version.Patch}`, pkg.version);
    for (const handler of Object.values(packed.execution))
      assert.ok(fs.existsSync(path.join(unpacked, 'tasks', 'DockerBuildxCacheV1', handler.target)));
    const icon = vsix.readFile('images/icon.png');
    assert.ok(icon !== null);
    assert.equal(icon.readUInt32BE(16), 128);
    assert.equal(icon.readUInt32BE(20), 128);
  });

  it('links the manifest and the overview to the repository given at packaging, and nothing that ships to the placeholder', () => {
    const xml = vsix.readAsText('extension.vsixmanifest');
    const links = Object.fromEntries(
      [...xml.matchAll(/<Property Id="Microsoft\.VisualStudio\.Services\.Links\.(\w+)" Value="([^"]*)"/g)].map((m): [string, string] => [
        m[1] ?? '',
        (m[2] ?? '').replace(/&amp;/g, '&'),
      ]),
    );
    assert.deepEqual(links, {
      GitHub: REPO, // tfx's name for the manifest's "repository"
      Getstarted: `${REPO}?path=/README.md&anchor=usage`,
      Learn: `${REPO}?path=/README.md&anchor=inputs`,
      Support: REPO,
      License: `${REPO}?path=/LICENSE`,
    });
    assert.ok(vsix.readAsText('overview.md').includes(`](${REPO}?path=/README.md)`), 'the overview links to the README');
    for (const entry of vsix.getEntries().filter((e) => !e.isDirectory)) {
      const text = entry.getData().toString('utf8');
      assert.ok(!text.includes(pkg.repository.url), `${entry.entryName} still links to package.json's placeholder repository`);
      assert.ok(!text.includes('contoso@'), `${entry.entryName} carries the URL's user name`);
    }
  });

  it('ships the third-party notices: every package in the bundles, with its own licence text', () => {
    const notices = vsix.readAsText('tasks/DockerBuildxCacheV1/dist/ThirdPartyNotices.txt');
    // The sections: a rule, the packages under one licence, a rule, then that licence's text.
    const sections = notices.split(/^={100}\n/m).slice(1);
    const textOf = new Map<string, string>();
    for (let i = 0; i + 1 < sections.length; i += 2) {
      for (const id of (sections[i] ?? '').trim().split('\n')) textOf.set(id, (sections[i + 1] ?? '').trim());
    }
    const squash = (s: string): string => s.replace(/\s+/g, ' ').trim();
    const dirs = new Set(
      Object.values(metafile.outputs)
        .flatMap((o) => Object.keys(o.inputs))
        .flatMap((input) => /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1] ?? []),
    );
    assert.ok(dirs.size > 50, `the bundles hold ${dirs.size} package folders`);
    for (const dir of dirs) {
      const { name, version, license } = JSON.parse(fs.readFileSync(path.join(root, dir, 'package.json'), 'utf8')) as {
        name: string;
        version: string;
        license: string;
      };
      const text = textOf.get(`${name}@${version}`);
      assert.ok(text !== undefined, `${name}@${version} (${dir}) is in the notices`);
      const licenceFile = fs.readdirSync(path.join(root, dir)).find((f) => /^(licen[cs]e|copying)/i.test(f));
      if (licenceFile !== undefined) {
        assert.ok(
          squash(text).includes(squash(fs.readFileSync(path.join(root, dir, licenceFile), 'utf8'))),
          `${name}@${version}: its ${licenceFile} is in the notices`,
        );
      } else {
        // The declared licence's standard text, which the SPDX list has (MIT's, for the one such package today).
        assert.ok(
          text.startsWith(`${name} ships no licence file; its package.json declares ${license}`),
          `${name}@${version} has no licence file`,
        );
        if (license === 'MIT') assert.match(squash(text), /Permission is hereby granted, free of charge/);
      }
    }
  });

  it('ships the Azure bundle that both steps load only when a job needs it', () => {
    const dist = path.join(unpacked, 'tasks', 'DockerBuildxCacheV1', 'dist');
    for (const step of ['main.js', 'post.js']) {
      const code = fs.readFileSync(path.join(dist, step), 'utf8');
      assert.match(code, /require\("\.\/remote\.js"\)/, `${step} loads remote.js`);
      assert.ok(!code.includes('BlobServiceClient'), `${step} does not carry the storage SDK itself`);
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const remote = require(path.join(dist, 'remote.js')) as Record<string, unknown>;
    assert.deepEqual(
      ['containerClient', 'httpRequest'].map((name) => typeof remote[name]),
      ['function', 'function'],
    );
  });

  it('starts: the bundled main step runs from the package and fails on bad input with its own message', async () => {
    const ws = tempDir('dbxc-vsix-ws-');
    const taskDir = path.join(unpacked, 'tasks', 'DockerBuildxCacheV1');
    const r = await runStep(
      'main',
      stepEnv({ imageName: 'app' }, { 'System.DefaultWorkingDirectory': ws, 'Agent.TempDirectory': ws }),
      ws,
      taskDir,
    );
    assert.equal(r.result, 'Failed');
    // The message comes from the packaged task.json, so the bundle found its resources.
    assert.deepEqual(r.errors, [
      `Input 'dockerfile': no Dockerfile at 'Dockerfile' (resolved to ${path.join(ws, 'Dockerfile')}). Set it to the Dockerfile's path relative to System.DefaultWorkingDirectory, for example 'src/app/Dockerfile'.`,
    ]);
  });

  it('starts: the bundled post-job step runs from the package', async () => {
    const ws = tempDir('dbxc-vsix-ws-');
    const r = await runStep(
      'post',
      stepEnv({}, { 'Agent.JobStatus': 'Succeeded' }),
      ws,
      path.join(unpacked, 'tasks', 'DockerBuildxCacheV1'),
    );
    assert.equal(r.result, 'Succeeded');
    assert.match(r.stdout, /Nothing to clean up/);
  });
});

describe('the links into the repository, before packaging', () => {
  const read = (file: string): string => fs.readFileSync(path.join(root, file), 'utf8');
  const repository = pkg.repository.url;

  it("point at package.json's repository from the manifest and the overview", () => {
    const manifest = JSON.parse(read('vss-extension.json')) as { repository: { uri: string }; links: Record<string, { uri: string }> };
    assert.equal(manifest.repository.uri, repository);
    assert.deepEqual(Object.keys(manifest.links).sort(), ['getstarted', 'learn', 'license', 'support']);
    for (const [name, { uri }] of Object.entries(manifest.links)) assert.ok(uri.startsWith(repository), `links.${name}: ${uri}`);
    assert.ok(read('overview.md').includes(`](${repository}?path=/README.md)`));
  });

  it('lead to headings that the README has', () => {
    // Azure Repos and GitHub make a heading's anchor the same way for these: lower case, spaces as dashes.
    const anchors = new Set(
      [...read('README.md').matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
        (m[1] ?? '')
          .toLowerCase()
          .replace(/[^\w\s-]/g, '')
          .trim()
          .replace(/\s/g, '-'),
      ),
    );
    const manifest = read('vss-extension.json') + read('overview.md');
    const linked = [...manifest.matchAll(/README\.md&anchor=([\w-]+)/g)].map((m) => m[1] ?? '');
    assert.ok(linked.length >= 2);
    for (const anchor of linked) assert.ok(anchors.has(anchor), `README.md has no heading for #${anchor}`);
  });
});
