import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import {
  assetName,
  installBuildx,
  InstallError,
  latestChecksumsUrl,
  parseChecksums,
  platformSuffix,
  releaseUrls,
  versionFromChecksums,
  type ToolCache,
} from '../../tasks/DockerBuildxCacheV1/src/docker/install';
import { createDockerConfig, installPlugin } from '../../tasks/DockerBuildxCacheV1/src/docker/config-dir';
import { cleanup, tempDir, writeTree } from '../helpers';

const sha = (data: string | Buffer): string => crypto.createHash('sha256').update(data).digest('hex');

describe('buildx releases: names and checksums', () => {
  const suffixes: [string, string, string | undefined, string][] = [
    ['linux', 'x64', undefined, 'linux-amd64'],
    ['linux', 'arm64', undefined, 'linux-arm64'],
    ['linux', 'arm', '6', 'linux-arm-v6'],
    ['linux', 'ppc64', undefined, 'linux-ppc64le'],
    ['darwin', 'arm64', undefined, 'darwin-arm64'],
    ['win32', 'x64', undefined, 'windows-amd64.exe'],
  ];
  for (const [platform, arch, arm, suffix] of suffixes)
    it(`${platform}/${arch} is ${suffix}`, () => assert.equal(platformSuffix(platform, arch, arm), suffix));

  it('lays out URLs as the GitHub releases do, for any mirror', () => {
    assert.equal(assetName('0.19.2', 'linux-amd64'), 'buildx-v0.19.2.linux-amd64');
    assert.deepEqual(releaseUrls('https://mirror.example/buildx/releases/', '0.19.2', 'linux-amd64'), {
      asset: 'https://mirror.example/buildx/releases/download/v0.19.2/buildx-v0.19.2.linux-amd64',
      checksums: 'https://mirror.example/buildx/releases/download/v0.19.2/checksums.txt',
    });
    assert.equal(
      latestChecksumsUrl('https://github.com/docker/buildx/releases'),
      'https://github.com/docker/buildx/releases/latest/download/checksums.txt',
    );
  });

  it('reads sha256sum lines in both modes and finds the newest version', () => {
    const a = 'a'.repeat(64);
    const b = 'B'.repeat(64);
    const sums = parseChecksums(
      `${a}  buildx-v0.9.1.linux-amd64\n${b} *buildx-v0.19.2.linux-amd64\nnot a line\n\n${a}  buildx-v0.19.2.darwin-arm64\n`,
    );
    assert.equal(sums.get('buildx-v0.19.2.linux-amd64'), 'b'.repeat(64));
    assert.equal(sums.size, 3);
    assert.equal(versionFromChecksums(sums), '0.19.2');
    assert.equal(versionFromChecksums(new Map()), undefined);
  });
});

describe('installing buildx through the tool cache', () => {
  let cacheRoot: string;
  let downloads: string[];
  let files: Record<string, Buffer | undefined>;
  const base = 'https://mirror.example/buildx/releases';
  const binary = Buffer.from('#!/bin/sh\necho buildx\n');

  /** A tool cache on a temp folder, downloading from `files`. */
  function fakeTools(): ToolCache {
    const dl = tempDir();
    return {
      findLocalTool: (tool, version, arch) => {
        const dir = path.join(cacheRoot, tool, version, arch ?? '');
        return fs.existsSync(path.join(dir, '.complete')) ? dir : '';
      },
      downloadTool: (url) => {
        downloads.push(url);
        const content = files[url];
        if (content === undefined) return Promise.reject(new Error('Unexpected HTTP response: 404'));
        const file = path.join(dl, crypto.randomUUID());
        fs.writeFileSync(file, content);
        return Promise.resolve(file);
      },
      cacheFile: (source, target, tool, version, arch) => {
        const dir = path.join(cacheRoot, tool, version, arch ?? '');
        fs.mkdirSync(dir, { recursive: true });
        fs.copyFileSync(source, path.join(dir, target));
        fs.writeFileSync(path.join(dir, '.complete'), '');
        return Promise.resolve(dir);
      },
    };
  }

  beforeEach(() => {
    cacheRoot = tempDir();
    downloads = [];
    const urls = releaseUrls(base, '0.19.2', 'linux-amd64');
    files = {
      [urls.asset]: binary,
      [urls.checksums]: Buffer.from(`${sha(binary)}  buildx-v0.19.2.linux-amd64\n`),
      [latestChecksumsUrl(base)]: Buffer.from(`${sha('other')}  buildx-v0.18.0.linux-amd64\n${sha(binary)}  buildx-v0.19.2.linux-amd64\n`),
    };
  });
  afterEach(cleanup);

  it('downloads, verifies and caches a version, then finds it in the cache without downloading', async () => {
    const tools = fakeTools();
    const first = await installBuildx('0.19.2', base, tools, 'linux-amd64');
    assert.deepEqual(downloads, [`${base}/download/v0.19.2/checksums.txt`, `${base}/download/v0.19.2/buildx-v0.19.2.linux-amd64`]);
    assert.equal(first.version, '0.19.2');
    assert.match(first.source, /buildx-v0\.19\.2\.linux-amd64, SHA-256 verified, now in the tool cache/);
    assert.deepEqual(fs.readFileSync(first.path), binary);
    assert.equal(fs.statSync(first.path).mode & 0o111, 0o111);

    downloads = [];
    const second = await installBuildx('0.19.2', base, tools, 'linux-amd64');
    assert.deepEqual(downloads, []);
    assert.equal(second.path, first.path);
    assert.match(second.source, /^the tool cache/);
  });

  it('resolves latest from the newest release checksums', async () => {
    const installed = await installBuildx('latest', base, fakeTools(), 'linux-amd64');
    assert.equal(installed.version, '0.19.2');
    assert.deepEqual(downloads, [`${base}/latest/download/checksums.txt`, `${base}/download/v0.19.2/buildx-v0.19.2.linux-amd64`]);
  });

  const failures: [string, (f: Record<string, Buffer | undefined>) => void, RegExp][] = [
    [
      'a download that does not match its checksum',
      (f) => (f[`${base}/download/v0.19.2/buildx-v0.19.2.linux-amd64`] = Buffer.from('tampered')),
      /does not match its published SHA-256 \(expected [0-9a-f]{64}, got [0-9a-f]{64}\); it was deleted and not cached/,
    ],
    [
      'checksums without the asset',
      (f) => (f[`${base}/download/v0.19.2/checksums.txt`] = Buffer.from(`${sha('x')}  buildx-v0.19.2.darwin-arm64\n`)),
      /has no checksum for buildx-v0\.19\.2\.linux-amd64/,
    ],
    [
      'a version that does not exist',
      (f) => (f[`${base}/download/v0.19.2/checksums.txt`] = undefined),
      /downloading .*checksums\.txt failed: Unexpected HTTP response: 404/,
    ],
  ];
  for (const [name, change, pattern] of failures) {
    it(`rejects ${name}, and caches nothing`, async () => {
      change(files);
      await assert.rejects(
        installBuildx('0.19.2', base, fakeTools(), 'linux-amd64'),
        (e: Error) => e instanceof InstallError && pattern.test(e.message),
      );
      assert.deepEqual(fs.readdirSync(cacheRoot), []);
    });
  }
});

describe('the job-private docker config', () => {
  afterEach(cleanup);

  it("copies the agent's config, contexts and builders, and takes a buildx plugin of its own", async () => {
    const agent = tempDir();
    writeTree(agent, {
      'config.json': '{"credsStore":"pass","currentContext":"ci"}',
      'contexts/meta/abc/meta.json': '{"Name":"ci"}',
      'buildx/instances/shared': '{"Name":"shared"}',
      'buildx/buildkitd.default.toml': '[registry."docker.io"]\n  mirrors = ["mirror.example"]\n',
      'buildx/refs/default/default/x': 'not copied',
      'cli-plugins/docker-buildx': 'the agent plugin',
    });
    const dir = await createDockerConfig(path.join(tempDir(), 'docker-config'), agent);
    // The global credential store is left out, so that a login stays in this folder.
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), { currentContext: 'ci' });
    assert.ok(fs.existsSync(path.join(dir, 'contexts', 'meta', 'abc', 'meta.json')));
    assert.ok(fs.existsSync(path.join(dir, 'buildx', 'instances', 'shared')));
    assert.ok(!fs.existsSync(path.join(dir, 'buildx', 'refs')));
    // The BuildKit config a builder created without --config gets, as with the agent's own docker config.
    assert.match(fs.readFileSync(path.join(dir, 'buildx', 'buildkitd.default.toml'), 'utf8'), /mirror\.example/);
    // The agent's plugins stay visible.
    assert.equal(fs.readFileSync(path.join(dir, 'cli-plugins', 'docker-buildx'), 'utf8'), 'the agent plugin');
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);

    const binary = path.join(tempDir(), 'docker-buildx');
    fs.writeFileSync(binary, 'pinned');
    const plugin = await installPlugin(dir, binary);
    assert.equal(fs.readFileSync(plugin, 'utf8'), 'pinned');
    assert.equal(
      fs.readFileSync(path.join(agent, 'cli-plugins', 'docker-buildx'), 'utf8'),
      'the agent plugin',
      "the agent's own plugin is untouched",
    );
  });

  it('starts empty when the agent has no docker config', async () => {
    const dir = await createDockerConfig(path.join(tempDir(), 'docker-config'), path.join(tempDir(), 'missing'));
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});
