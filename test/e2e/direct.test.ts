import * as assert from 'assert/strict';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { envKey, type JobResult, parseCommands, runStep, stepEnv, type StepResult, TASK_DIR, transcript } from '../../scripts/agent';
import { connectionString, ensureAzurite, freshContainer, type Azurite } from '../../scripts/azurite';
import { cleanup } from '../helpers';
import { DEPS_STEP as HOSTED_DEPS_STEP, HOSTED_FILES, hostedAgentsForSuite, killedJob, pulledBytes, rowBytes, UNITS } from './hosted';
import { BASE_IMAGE, ensureEngine } from '../../scripts/engine';
import { DEPS_FILES, DEPS_STEP, depsDockerfile, IMAGE, stepCached, Workspace } from './workspace';

// The direct transport end to end: the bundled task serves the store (local, and Azure Blob on
// Azurite) to BuildKit as a registry on loopback, on the containerd engine (docker driver) and on
// the hosted-agent engine (a docker-container builder the task creates).

/** With DBXC_E2E_DUMP set to a folder, a job's logs are kept there for a look after the run. */
function dump(name: string, job: JobResult): void {
  const dir = process.env.DBXC_E2E_DUMP;
  if (dir === undefined) return;
  fs.mkdirSync(dir, { recursive: true });
  const file = name.replace(/[^\w-]+/g, '_');
  fs.writeFileSync(path.join(dir, `${file}.main.log`), job.main.stdout);
  fs.writeFileSync(path.join(dir, `${file}.post.log`), job.post.stdout);
}

function summaryOf(step: StepResult): string {
  const upload = step.commands.find((c) => c.name === 'task.uploadsummary');
  assert.ok(upload, 'the post-job step uploaded a summary');
  return fs.readFileSync(upload.data, 'utf8');
}

function servedBytes(summary: string): number {
  const bytes = rowBytes(summary, 'Served to BuildKit');
  assert.ok(bytes !== undefined, summary);
  return bytes;
}

/** A TCP proxy on loopback in front of `target`, which a test can cut (every connection reset, new ones refused). */
class Proxy {
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;
  private cut = false;

  constructor(private readonly target: URL) {
    this.server = net.createServer((client) => {
      if (this.cut) {
        client.destroy();
        return;
      }
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
  }

  async listen(port: number): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    return `http://127.0.0.1:${port}${this.target.pathname}`;
  }

  stop(): void {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.stop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The main step, run as the agent runs it, calling `onLine` for each line of its output as it comes. */
async function runMainWatching(env: NodeJS.ProcessEnv, cwd: string, onLine: (line: string) => void): Promise<StepResult> {
  const child = spawn(process.execPath, [path.join(TASK_DIR, 'dist', 'main.js')], { env, cwd });
  let stdout = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitCode = await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  const commands = parseCommands(stdout);
  const issues = (type: string): string[] => commands.filter((c) => c.name === 'task.issue' && c.props.type === type).map((c) => c.data);
  return {
    exitCode,
    result: exitCode === 0 && !commands.some((c) => c.name === 'task.complete' && c.props.result === 'Failed') ? 'Succeeded' : 'Failed',
    stdout,
    stderr,
    commands,
    outputs: {},
    taskVariables: Object.fromEntries(
      commands.filter((c) => c.name === 'task.settaskvariable').map((c) => [c.props.variable ?? '', c.data]),
    ),
    warnings: issues('warning'),
    errors: issues('error'),
    secrets: commands.filter((c) => c.name === 'task.setsecret').map((c) => c.data),
    ms: 0,
  };
}

interface Backend {
  readonly name: 'local' | 'azureBlob';
  /** The inputs of a job against this store. */
  inputs(): Record<string, string>;
  /** The store's blobs: digest and size. */
  blobs(): Promise<[string, number][]>;
  entries(): Promise<number>;
  /** Overwrites a blob of the store with other bytes of the same size. */
  corrupt(digest: string): Promise<void>;
}

function localBackend(w: () => Workspace): Backend {
  const blobsDir = (): string => path.join(w().storeDir, 'v1', 'blobs', 'sha256');
  return {
    name: 'local',
    inputs: () => ({ cacheBackend: 'local', cacheTransport: 'direct' }),
    blobs: () =>
      Promise.resolve(
        fs.existsSync(blobsDir())
          ? fs.readdirSync(blobsDir()).map((h): [string, number] => [`sha256:${h}`, fs.statSync(path.join(blobsDir(), h)).size])
          : [],
      ),
    entries: () => {
      const dir = path.join(w().storeDir, 'v1', 'entries');
      const count = (d: string): number =>
        fs.existsSync(d)
          ? fs.readdirSync(d, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? count(path.join(d, e.name)) : 1), 0)
          : 0;
      return Promise.resolve(count(dir));
    },
    corrupt: (digest) => {
      const file = path.join(blobsDir(), digest.slice(7));
      const size = fs.statSync(file).size;
      fs.chmodSync(file, 0o644);
      fs.writeFileSync(file, Buffer.alloc(size, 7));
      return Promise.resolve();
    },
  };
}

/** Where a suite's jobs run: a workspace on its engine, and the dependency step of its Dockerfile. */
interface Engine {
  readonly name: string;
  workspace(): Workspace;
  readonly depsStep: string;
  /** Whether a hit after a source change reads less than the whole cache (the engine has the base image). */
  readonly readsLess: boolean;
}

function azureBackend(azurite: () => Azurite, container: () => ReturnType<typeof freshContainer>, endpoint?: () => string): Backend {
  return {
    name: 'azureBlob',
    inputs: () => ({
      cacheBackend: 'azureBlob',
      cacheTransport: 'direct',
      storageConnectionString: connectionString(endpoint?.() ?? azurite().blobUrl),
      storageContainer: container().containerName,
    }),
    blobs: async () => {
      const out: [string, number][] = [];
      for await (const b of container().listBlobsFlat({ prefix: 'v1/blobs/' }))
        out.push([`sha256:${path.basename(b.name)}`, b.properties.contentLength ?? 0]);
      return out;
    },
    entries: async () => {
      let n = 0;
      for await (const item of container().listBlobsFlat({ prefix: 'v1/entries/' })) if (item.name.endsWith('.json')) n++;
      return n;
    },
    corrupt: async (digest) => {
      const blob = container().getBlockBlobClient(`v1/blobs/sha256/${digest.slice(7)}`);
      const size = (await blob.getProperties()).contentLength ?? 0;
      await blob.upload(Buffer.alloc(size, 7), size);
    },
  };
}

/** A job whose main step's output is watched line by line (`onLine`), then the post-job step, as the agent runs them. */
async function watchedJob(w: Workspace, inputs: Record<string, string>, onLine: (line: string) => void): Promise<JobResult> {
  w.docker(['buildx', 'prune', '-af']);
  const all = { dockerfile: 'Dockerfile', imageName: IMAGE, tags: 'e2e', ...(w.agent.inputs ?? { driver: 'docker' }), ...inputs };
  const variables = w.variables();
  const main = await runMainWatching(stepEnv(all, variables, w.agent.env), w.ws, onLine);
  const postEnv = stepEnv(all, { ...variables, 'Agent.JobStatus': main.result }, w.agent.env);
  for (const [name, value] of Object.entries(main.taskVariables)) postEnv[`VSTS_TASKVARIABLE_${envKey(name)}`] = value;
  const post = await runStep('post', postEnv, w.ws);
  w.machineEnd(post);
  return { main, post };
}

const PORT = 5070;

/** The cases every engine and store go through. */
function directSuite(engine: () => Engine, backendName: 'local' | 'azureBlob', azurite: () => Azurite): void {
  let w: Workspace;
  let backend: Backend;
  let container: ReturnType<typeof freshContainer>;
  let proxy: Proxy | undefined;
  let proxyUrl = '';
  beforeEach(async () => {
    w = engine().workspace();
    if (backendName === 'local') backend = localBackend(() => w);
    else {
      container = freshContainer(azurite().blobUrl, 'e2e-direct');
      proxy = new Proxy(new URL(azurite().blobUrl));
      proxyUrl = await proxy.listen(PORT);
      backend = azureBackend(
        azurite,
        () => container,
        () => proxyUrl,
      );
    }
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  const job = async (name: string, inputs: Record<string, string> = {}): Promise<JobResult> => {
    fs.rmSync(w.cacheDir, { recursive: true, force: true });
    const j = await w.job(name, { ...backend.inputs(), ...inputs });
    dump(`${engine().name}-${backendName}-${name}`, j);
    return j;
  };
  const good = (j: JobResult, what: string): void => {
    assert.equal(j.main.result, 'Succeeded', `${what}: ${transcript(j.main)}`);
    assert.equal(j.post.result, 'Succeeded', `${what}: ${transcript(j.post)}`);
  };

  it('a miss, then a hit: the dependency step is cached, BuildKit reads less than the cache, and the export becomes the entry', async () => {
    const first = await job('miss');
    good(first, 'miss');
    assert.deepEqual([...first.main.warnings, ...first.post.warnings], []);
    assert.equal(first.main.outputs.cacheHit, 'false');
    assert.match(first.main.stdout, /Cache transport: direct, through a registry on 127\.0\.0\.1:\d+/);
    assert.match(first.main.stdout, /--cache-to type=registry,ref=127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}:save/);
    assert.ok(!fs.existsSync(w.cacheDir), 'the cache folder is not used');
    assert.match(first.post.stdout, /Saved a new version of /);
    assert.equal(await backend.entries(), 1);
    const cacheBlobs = await backend.blobs();
    const cacheBytes = cacheBlobs.reduce((n, [, size]) => n + size, 0);
    // The facade's password is a secret of the job, and in no line of the log.
    const password = first.main.secrets.find((s) => /^[\w-]{43}$/.test(s));
    assert.ok(password !== undefined, first.main.secrets.join(' '));
    assert.ok(!first.main.stdout.split('\n').some((l) => l.includes(password) && !l.startsWith('##vso[task.setsecret]')));

    w.write('src/main.txt', 'revision 1\n');
    const second = await job('hit');
    good(second, 'hit');
    assert.deepEqual([...second.main.warnings, ...second.post.warnings], []);
    assert.equal(second.main.outputs.cacheHit, 'true');
    const steps = /(\d+) of (\d+) steps cached/.exec(second.main.stdout);
    assert.ok(steps !== null && Number(steps[1]) >= 3, `the dependency step and those above it count as cached: ${steps?.[0] ?? '-'}`);
    const summary = summaryOf(second.post);
    assert.match(summary, /\| Cache transport \| direct /);
    // The docker driver's engine has the base image and reads only the layers under the changed step; a
    // new docker-container builder has nothing, and reads the whole cache to load the image.
    const served = servedBytes(summary);
    if (engine().readsLess) assert.ok(served < cacheBytes, `BuildKit read less than the cache's ${cacheBytes} bytes: ${summary}`);
    else assert.ok(served <= cacheBytes * 1.01, `BuildKit read at most the cache's ${cacheBytes} bytes: ${summary}`);
    // A docker-container builder's image goes into the engine by a pull from the facade, not --load:
    // the image is --load's (the engine's ID is the imageId output), with its tag and no reference to the facade.
    const pulled = pulledBytes(summary);
    const ref = `${IMAGE}:e2e`;
    if (engine().name === 'hosted') {
      assert.match(second.main.stdout, /--output type=image,name=127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}:image,push=true/);
      assert.doesNotMatch(second.main.stdout, /\[command\].*buildx build.* --load /);
      assert.match(second.main.stdout, /The image went into the engine by a pull from the task's registry on loopback/);
      // The engine's socket is certain here (DOCKER_HOST unix://): the tag and the removal go through its API, not the CLI.
      assert.match(
        second.main.stdout,
        new RegExp(`^Tagged 127\\.0\\.0\\.1:\\d+/buildx-cache-[0-9a-f]{12}@sha256:[0-9a-f]{64} as ${ref}, through the engine's API$`, 'm'),
      );
      assert.match(
        second.main.stdout,
        /^Removed the reference 127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}@sha256:[0-9a-f]{64}, through the engine's API$/m,
      );
      assert.doesNotMatch(second.main.stdout, /^\[command\].*docker (?:tag|image rm) 127\.0\.0\.1/m);
      assert.ok(pulled > 0, summary);
      const [id, repoTags, repoDigests] = w
        .docker(['image', 'inspect', '--format', '{{.Id}}|{{json .RepoTags}}|{{json .RepoDigests}}', ref])
        .trim()
        .split('|');
      assert.equal(id, second.main.outputs.imageId);
      assert.ok(repoTags?.includes(`"${ref}"`), repoTags);
      assert.doesNotMatch(`${repoTags ?? ''} ${repoDigests ?? ''}`, /127\.0\.0\.1/);
      assert.equal(w.docker(['run', '--rm', ref, 'cat', '/app/out.txt']).trim(), 'revision 1');
      // The engine pulled the cache's last layers beside the build, only those the build read (the old sources' layers are
      // left out, and that pull then fails, having brought the others), and keeps no reference to them.
      assert.match(second.main.stdout, /^\[command\].*docker pull --quiet 127\.0\.0\.1:\d+\/buildx-cache-[0-9a-f]{12}:prefetch$/m);
      assert.match(second.main.stdout, /the others, which it did not read, were left out/);
      assert.doesNotMatch(second.main.stdout, /beside the build failed/);
      assert.equal(w.docker(['images', '--format', '{{.Repository}}', '--filter', 'reference=127.0.0.1:*/*']).trim(), '');
    } else assert.equal(pulled, 0, summary);
    // What came over the network is what BuildKit and the engine read, each blob once (the target: at most 1.1 times):
    // a layer the build read is pulled from the facade's copy.
    const downloaded = /\| Bytes downloaded \| ([\d.]+) (B|KB|MB|GB)/.exec(summary);
    if (backendName === 'azureBlob' && downloaded !== null) {
      const bytes = Number(downloaded[1]) * UNITS[downloaded[2] as keyof typeof UNITS];
      assert.ok(bytes <= Math.max(served, pulled) * 1.1 + 1e4, `downloaded ${bytes} bytes for ${served} served and ${pulled} pulled`);
      assert.ok(bytes <= cacheBytes * 1.1, `downloaded ${bytes} bytes of a ${cacheBytes}-byte cache`);
    }
    // A new version of the key, which supersedes the first (retention keeps the newest).
    assert.match(second.post.stdout, /Saved a new version of /);
    assert.equal(await backend.entries(), 1);
  });

  it('a dependency change with a large layer, which the image and the cache push at once: stored once, and the next job has it cached', async () => {
    // Large enough that the second push's body is still coming when the first upload ends.
    w.write('Dockerfile', depsDockerfile(engine().name === 'hosted' ? 'busybox' : BASE_IMAGE, 48));
    good(await job('first'), 'first');
    w.write('deps.lock', 'left-pad@1.3.1\n');
    const changed = await job('dependency change');
    good(changed, 'dependency change');
    assert.deepEqual([...changed.main.warnings, ...changed.post.warnings], []);
    assert.doesNotMatch(changed.main.stdout, /closed pipe|Building again/);
    // The image and the cache both push the new 48 MiB layer; it goes into the store once.
    const uploaded = rowBytes(summaryOf(changed.post), 'Uploaded by BuildKit');
    assert.ok(uploaded !== undefined && uploaded > 0.9 * 48 * 2 ** 20 && uploaded < 1.2 * 48 * 2 ** 20, `uploaded ${uploaded} bytes`);
    // Nor does the engine's pull download it back: the second push's body is its copy.
    const downloaded = /\| Bytes downloaded \| ([\d.]+) (B|KB|MB|GB)/.exec(summaryOf(changed.post));
    if (downloaded !== null)
      assert.ok(Number(downloaded[1]) * UNITS[downloaded[2] as keyof typeof UNITS] < 0.5 * 48 * 2 ** 20, downloaded[0]);
    w.write('src/main.txt', 'revision 1\n');
    const next = await job('after the change');
    good(next, 'after the change');
    assert.deepEqual([...next.main.warnings, ...next.post.warnings], []);
    // The dependency step did not run (through the registry cache BuildKit may show it as its download, without CACHED).
    assert.doesNotMatch(next.main.stdout, /^#\d+ [\d.]+ installing /m, next.main.stdout);
    assert.match(changed.main.stdout, /^#\d+ [\d.]+ installing left-pad@1\.3\.1/m, 'the step that prints it ran in the change');
  });

  it('a corrupt blob in the store: the build succeeds with a warning, the blob is never served, and the next save puts a good copy back', async () => {
    good(await job('first'), 'first');
    const [largest] = (await backend.blobs()).sort((a, b) => b[1] - a[1]);
    assert.ok(largest);
    await backend.corrupt(largest[0]);
    w.write('src/main.txt', 'revision 1\n');
    const second = await job('corrupt');
    good(second, 'corrupt');
    assert.ok(
      second.main.warnings.some((m) => m.includes(largest[0]) || /does not match|content/i.test(m)),
      second.main.warnings.join('\n'),
    );
    w.write('src/main.txt', 'revision 2\n');
    const third = await job('after the corrupt blob');
    good(third, 'after');
    assert.deepEqual([...third.main.warnings, ...third.post.warnings], []);
    assert.ok(stepCached(third.main.stdout, engine().depsStep) || /[3-9] of \d+ steps cached/.test(third.main.stdout), third.main.stdout);
  });

  for (const failOnCacheError of [false, true]) {
    it(`the store going down mid-build: ${failOnCacheError ? 'with failOnCacheError the task fails' : 'a warning, and the build succeeds'}`, async () => {
      good(await job('first'), 'first');
      w.write('src/main.txt', 'revision 1\n');
      const blobs = path.join(w.storeDir, 'v1', 'blobs');
      let down = false;
      const takeDown = (line: string): void => {
        if (down || !line.startsWith('Cache transport: direct')) return;
        down = true;
        if (backendName === 'local') fs.renameSync(blobs, `${blobs}.away`);
        else proxy?.stop();
      };
      const inputs = { ...backend.inputs(), ...(failOnCacheError ? { failOnCacheError: 'true' } : {}) };
      let second: JobResult;
      try {
        second = await watchedJob(w, inputs, takeDown);
      } finally {
        // The store comes back: what the job wrote meanwhile stays, and the blobs that were away return.
        if (backendName === 'local' && fs.existsSync(`${blobs}.away`)) {
          fs.cpSync(`${blobs}.away`, blobs, { recursive: true, force: false });
          fs.rmSync(`${blobs}.away`, { recursive: true, force: true });
        }
      }
      dump(`${engine().name}-${backendName}-down-${failOnCacheError}`, second);
      assert.ok(down, 'the store went down before the build');
      if (failOnCacheError) {
        assert.equal(second.main.result, 'Failed', transcript(second.main));
      } else {
        assert.equal(second.main.result, 'Succeeded', transcript(second.main));
        assert.ok(second.main.warnings.length > 0, 'a warning says the store failed');
      }
      assert.equal(second.post.result, 'Succeeded', transcript(second.post));
      assert.equal(await backend.entries(), 1, 'no entry was added');
    });
  }

  it('two jobs at once: both succeed, and the store holds a whole entry that the next job restores', async () => {
    good(await job('first'), 'first');
    w.write('src/main.txt', 'revision 1\n');
    // Two images, so that the engine's image store is no part of the race.
    const [a, b] = await Promise.all([job('at once A', { tags: 'a' }), job('at once B', { tags: 'b' })]);
    good(a, 'A');
    good(b, 'B');
    assert.deepEqual([...a.main.warnings, ...b.main.warnings, ...a.post.warnings, ...b.post.warnings], []);
    w.write('src/main.txt', 'revision 2\n');
    const next = await job('after both');
    good(next, 'after both');
    assert.equal(next.main.outputs.cacheHit, 'true');
    assert.deepEqual([...next.main.warnings, ...next.post.warnings], []);
  });

  it('a main step killed during its build leaves no entry, and the next job restores the last one', async () => {
    good(await job('first'), 'first');
    const before = await backend.entries();
    w.write('src/main.txt', 'revision 1\n');
    fs.rmSync(w.cacheDir, { recursive: true, force: true });
    const killed = await killedJob(w, backend.inputs(), /\n#\d+ \[[^\]]*4\/6\]/);
    assert.match(killed.main, /Cache transport: direct/);
    assert.equal(killed.post.result, 'Succeeded', transcript(killed.post));
    assert.equal(await backend.entries(), before, 'no entry was added');
    // What the stopped build had the engine pull from the facade (its prefetch, its image) is gone after the post-job step.
    const images = spawnSync('docker', ['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}@{{.Digest}}'], {
      encoding: 'utf8',
      env: { ...process.env, ...w.agent.env },
    });
    const host = /Cache transport: direct, through a registry on (127\.0\.0\.1:\d+)/.exec(killed.main)?.[1];
    assert.ok(host !== undefined, killed.main);
    const left = images.stdout.split('\n').filter((ref) => ref.startsWith(`${host}/`));
    assert.deepEqual(left, [], killed.post.stdout);
    const next = await job('after the kill');
    good(next, 'after the kill');
    assert.equal(next.main.outputs.cacheHit, 'true');
    assert.deepEqual([...next.main.warnings, ...next.post.warnings], []);
  });
}

describe('end to end: the direct transport, the store as a registry on loopback', function () {
  this.timeout(20 * 60 * 1000);
  let azurite: Azurite | undefined;
  const theAzurite = (): Azurite => {
    azurite ??= ensureAzurite();
    return azurite;
  };
  afterEach(cleanup);

  describe('the docker driver on the containerd engine', () => {
    before(() => ensureEngine());
    const containerd: Engine = { name: 'containerd', workspace: () => new Workspace(DEPS_FILES), depsStep: DEPS_STEP, readsLess: true };
    for (const backendName of ['local', 'azureBlob'] as const)
      describe(backendName, () => directSuite(() => containerd, backendName, theAzurite));
  });

  describe('a docker-container builder the task creates, on the hosted-agent engine', () => {
    const suite = hostedAgentsForSuite();
    const hosted = (): Engine => ({
      name: 'hosted',
      workspace: () => suite.agents.workspace('current', HOSTED_FILES),
      depsStep: HOSTED_DEPS_STEP,
      readsLess: false,
    });
    for (const backendName of ['local', 'azureBlob'] as const) describe(backendName, () => directSuite(hosted, backendName, theAzurite));
  });
});
