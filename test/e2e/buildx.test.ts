import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { ensureEngine, BASE_IMAGE } from '../../scripts/engine';
import { cleanup, tempDir } from '../helpers';
import { Workspace } from './workspace';
import { transcript } from '../../scripts/agent';

/**
 * A release mirror on loopback, laid out like https://github.com/docker/buildx/releases, serving
 * the real buildx binary that scripts/engine.sh provisions, and counting what it serves.
 */
class Mirror {
  readonly served: string[] = [];
  private readonly server: http.Server;
  private files = new Map<string, Buffer>();

  constructor() {
    this.server = http.createServer((req, res) => {
      const url = req.url ?? '';
      const body = this.files.get(url);
      this.served.push(url);
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/docker/buildx/releases`;
  }

  /** Publishes `binary` as release `version`; `published` is the checksum the release lists, for a tampered mirror. */
  release(version: string, binary: Buffer, published = crypto.createHash('sha256').update(binary).digest('hex'), latest = false): void {
    const name = `buildx-v${version}.linux-amd64`;
    const sums = Buffer.from(`${published}  ${name}\n`);
    this.files.set(`/docker/buildx/releases/download/v${version}/${name}`, binary);
    this.files.set(`/docker/buildx/releases/download/v${version}/checksums.txt`, sums);
    if (latest) this.files.set('/docker/buildx/releases/latest/download/checksums.txt', sums);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('end to end: buildx pinned through the tool cache from a mirror', function () {
  this.timeout(10 * 60 * 1000);
  let mirror: Mirror;
  let base: string;
  let w: Workspace;
  let tools: string;
  /** The agent's docker config has no buildx at all: a build can only use the one the task installs. */
  let bareConfig: string;
  const buildx = fs.readFileSync(path.join(os.homedir(), '.docker', 'cli-plugins', 'docker-buildx'));

  before(async () => {
    ensureEngine();
    mirror = new Mirror();
    base = await mirror.start();
    mirror.release('0.13.1', buildx, undefined, true);
    mirror.release('0.13.2', Buffer.concat([buildx, Buffer.from('tampered')]), crypto.createHash('sha256').update(buildx).digest('hex'));
  });
  after(() => mirror.stop());
  beforeEach(() => {
    w = new Workspace({ Dockerfile: `FROM ${BASE_IMAGE}\nRUN echo built with a pinned buildx > /built.txt\n` });
    tools = tempDir('dbxc-e2e-tools-');
    bareConfig = tempDir('dbxc-e2e-docker-config-');
  });
  afterEach(cleanup);

  const job = (name: string, buildxVersion: string): ReturnType<Workspace['job']> =>
    w.job(
      name,
      { buildxVersion, buildxDownloadUrl: base, cacheBackend: 'none' },
      { 'Agent.ToolsDirectory': tools },
      { DOCKER_CONFIG: bareConfig },
    );

  it('the first job downloads, verifies and caches; the second downloads nothing; latest resolves from the mirror', async () => {
    const before = mirror.served.length;
    const first = await job('pinned, first job', '0.13.1');
    assert.equal(first.main.result, 'Succeeded', transcript(first.main));
    assert.equal(first.post.result, 'Succeeded', transcript(first.post));
    assert.deepEqual(mirror.served.slice(before), [
      '/docker/buildx/releases/download/v0.13.1/checksums.txt',
      '/docker/buildx/releases/download/v0.13.1/buildx-v0.13.1.linux-amd64',
    ]);
    assert.match(
      first.main.stdout,
      /^Install buildx: [\d.]+s, buildx 0\.13\.1 from http:\/\/127\.0\.0\.1:\d+\/.*buildx-v0\.13\.1\.linux-amd64, SHA-256 verified, now in the tool cache/m,
    );
    assert.match(first.main.stdout, /^buildx 0\.13\.1, from http:\/\/127\.0\.0\.1/m);
    const cached = path.join(tools, 'docker-buildx', '0.13.1', 'amd64', 'docker-buildx');
    assert.deepEqual(fs.readFileSync(cached), buildx);
    // The job-private docker config went with the job; the agent's own is as it was.
    assert.deepEqual(fs.readdirSync(bareConfig), []);

    const mark = mirror.served.length;
    const second = await job('pinned, second job', '0.13.1');
    assert.equal(second.main.result, 'Succeeded', transcript(second.main));
    assert.deepEqual(mirror.served.slice(mark), [], 'the second job downloads nothing');
    assert.match(second.main.stdout, /^Install buildx: [\d.]+s, buildx 0\.13\.1 from the tool cache/m);

    const latest = await job('latest', 'latest');
    assert.equal(latest.main.result, 'Succeeded', transcript(latest.main));
    assert.deepEqual(mirror.served.slice(mark), ['/docker/buildx/releases/latest/download/checksums.txt']);
  });

  it('a download that does not match its published checksum fails the job with a clear error and is never cached', async () => {
    const r = await job('tampered', '0.13.2');
    assert.equal(r.main.result, 'Failed');
    assert.match(
      r.main.errors[0] ?? '',
      /^Input 'buildxVersion': buildx 0\.13\.2 could not be installed: .*buildx-v0\.13\.2\.linux-amd64 does not match its published SHA-256 .*not cached/,
    );
    assert.ok(!fs.existsSync(path.join(tools, 'docker-buildx', '0.13.2')));
    assert.equal(r.post.result, 'Succeeded');
  });

  it('without buildxVersion, an agent without buildx gets an error that names buildxVersion as the fix', async () => {
    const r = await w.job('no buildx', { cacheBackend: 'none' }, { 'Agent.ToolsDirectory': tools }, { DOCKER_CONFIG: bareConfig });
    assert.equal(r.main.result, 'Failed');
    assert.match(r.main.errors[0] ?? '', /The docker CLI has no buildx plugin .*Set 'buildxVersion' to 'latest'/);
  });
});
