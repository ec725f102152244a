import * as assert from 'assert/strict';
import { spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BASE_IMAGE, ensureEngine } from '../../scripts/engine';
import { createDockerConfig } from '../../tasks/DockerBuildxCacheV1/src/docker/config-dir';
import { RegistryFacade, type FacadeOptions } from '../../tasks/DockerBuildxCacheV1/src/facade/facade';
import { facadeCacheFlags } from '../../tasks/DockerBuildxCacheV1/src/facade/flags';
import { addLogin } from '../../tasks/DockerBuildxCacheV1/src/facade/login';
import type { FacadeEvent } from '../../tasks/DockerBuildxCacheV1/src/facade/types';
import { verifyLayout } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { startBuildkitd, type Buildkitd } from '../buildkitd';
import { FolderStore } from '../facade-store';
import { cleanup, tempDir, writeTree } from '../helpers';

/**
 * The registry facade with a real BuildKit pushing and pulling cache through it, backed by a temp
 * folder store: the module on its own, before the task uses it. RUN steps get `--network none`
 * (they need no network, and the facade is reached by BuildKit itself, not by the steps).
 */
const DOCKERFILE = `FROM ${BASE_IMAGE}
WORKDIR /app
COPY deps.lock ./
RUN echo "deps $(cat deps.lock)" && head -c 3000000 /dev/urandom > deps.bin
COPY src.txt ./
RUN echo "build $(cat src.txt)" && cat src.txt deps.lock > out.txt
`;
const DEPS_STEP = 'RUN echo "deps';
const SRC_STEP = 'RUN echo "build';

/**
 * Whether the Dockerfile step whose command starts with `command` was CACHED, from BuildKit's own
 * lines (by command, not number: with a named base context the FROM step is not counted).
 */
function stepCached(out: string, command: string): boolean {
  const lines = out.split('\n');
  const vertex = lines.map((l) => /^#(\d+) \[[^\]]+\] (.*)$/.exec(l)).find((m) => m?.[2]?.startsWith(command) === true)?.[1];
  if (vertex === undefined) throw new Error(`no step ${command} in the log:\n${out}`);
  return lines.includes(`#${vertex} CACHED`);
}

/**
 * Whether the step that echoes `marker` ran, from its output in BuildKit's log. A cached step whose
 * layer BuildKit has to pull from a registry cache (for the step above it) is not always shown as
 * CACHED, only as its download (measured with dockerd's BuildKit: CACHED in 1 run of 6 through the
 * facade, 6 of 6 from the same cache as a type=local folder; BuildKit 0.32 likewise), so the tests
 * of such steps look for the step's own output instead.
 */
function ran(out: string, marker: string): boolean {
  return out.split('\n').some((l) => /^#\d+ \d+\.\d+ /.test(l) && l.endsWith(` ${marker}`));
}

interface Run {
  readonly code: number;
  readonly out: string;
  readonly ms: number;
}

/** docker, without blocking this process: the facade answers BuildKit from here meanwhile. */
function dockerAsync(args: readonly string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const begun = Date.now();
  return new Promise((resolve) => {
    const child = spawn('docker', args, { env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, out, ms: Date.now() - begun }));
  });
}

const kinds = (events: readonly FacadeEvent[]): string[] => events.map((e) => (e.kind === 'store' ? `store:${e.operation}` : e.kind));

describe('end to end: the registry facade with a real BuildKit', function () {
  this.timeout(10 * 60 * 1000);

  let configDir: string;
  let ctx: string;
  let store: FolderStore;
  let facades: RegistryFacade[];

  /** A folder for the whole suite: helpers' temp folders go after each test. */
  const suiteDirs: string[] = [];
  const suiteDir = (prefix: string): string => {
    suiteDirs.push(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
    return suiteDirs[suiteDirs.length - 1] ?? '';
  };

  before(async () => {
    ensureEngine();
    configDir = await createDockerConfig(path.join(suiteDir('dbxc-facade-config-'), 'docker'));
  });
  beforeEach(() => {
    store = new FolderStore();
    facades = [];
    ctx = tempDir('dbxc-facade-ctx-');
    // A dependency of its own per test, so that no test finds another's layers anywhere.
    writeTree(ctx, { Dockerfile: DOCKERFILE, 'deps.lock': `dep-${crypto.randomBytes(6).toString('hex')}\n`, 'src.txt': 'revision 0\n' });
  });
  /** What the two RUN steps print when they run, with the context as it is now. */
  const markers = (): { deps: string; build: string } => ({
    deps: `deps ${fs.readFileSync(path.join(ctx, 'deps.lock'), 'utf8').trim()}`,
    build: `build ${fs.readFileSync(path.join(ctx, 'src.txt'), 'utf8').trim()}`,
  });

  afterEach(async () => {
    await Promise.all(facades.map((f) => f.close()));
    cleanup();
  });
  after(() => {
    for (const dir of suiteDirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** docker with the test's own DOCKER_CONFIG, where its logins and builders live. */
  function docker(args: readonly string[]): string {
    const r = spawnSync('docker', args, { encoding: 'utf8', env: { ...process.env, DOCKER_CONFIG: configDir } });
    if (r.status !== 0) throw new Error(`docker ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  async function facade(options: FacadeOptions, login = true): Promise<RegistryFacade> {
    const f = await RegistryFacade.start({ idleTimeoutMs: 5_000, ...options });
    facades.push(f);
    if (login) await addLogin(configDir, f);
    return f;
  }

  interface BuildOptions {
    readonly builder?: string;
    readonly from?: string;
    readonly to?: string;
    readonly dir?: string;
    readonly env?: NodeJS.ProcessEnv;
    readonly extra?: readonly string[];
  }

  /** A job on a new agent: the builder's cache is emptied first, then one build. */
  async function job(o: BuildOptions): Promise<Run> {
    const builder = o.builder ?? 'default';
    docker(['buildx', 'prune', '--builder', builder, '-af']);
    const args = ['buildx', 'build', '--builder', builder, '--progress', 'plain', '--output', 'type=cacheonly'];
    if (builder === 'default') args.push('--network', 'none');
    if (o.from !== undefined) args.push('--cache-from', o.from);
    if (o.to !== undefined) args.push('--cache-to', o.to);
    args.push(...(o.extra ?? []), o.dir ?? ctx);
    return dockerAsync(args, { DOCKER_CONFIG: configDir, ...o.env });
  }

  const flags = (f: RegistryFacade): { from: string; to: string } => {
    const { from, to } = facadeCacheFlags(f, 'max', 'gzip');
    return { from: from[0] ?? '', to: to[0] ?? '' };
  };
  const from = (f: RegistryFacade): string => flags(f).from;
  const to = (f: RegistryFacade): string => flags(f).to;

  function assertBuilt(r: Run): void {
    assert.equal(r.code, 0, r.out);
  }

  it('a miss: the export becomes an entry, written only when the manifest arrives, that a type=local import also reads', async () => {
    const f = await facade({ writer: store.writer('first') });
    // With image-manifest=true, as registries such as ACR need; the facade takes either form.
    const r = await job({ from: from(f), to: `${to(f)},image-manifest=true` });
    assertBuilt(r);
    assert.deepEqual([stepCached(r.out, DEPS_STEP), ran(r.out, markers().deps)], [false, true]);
    await f.idle();
    assert.deepEqual(kinds(f.events), ['committed']);
    const layout = f.exported;
    assert.ok(layout !== undefined);
    assert.equal(layout.root.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(layout.pushed, layout.root.digest, 'nothing imported, nothing to remove');
    assert.equal(f.stats.uploaded, layout.blobs.length - 1, 'every blob but the manifest uploaded, once');
    assert.equal(store.calls.commit.length, 1);

    // The entry, written out as a folder, is a cache that BuildKit's local importer takes.
    const folder = path.join(tempDir('dbxc-facade-folder-'), 'cache');
    store.writeLayout('first', folder);
    await verifyLayout(folder);
    const local = await job({ from: `type=local,src=${folder}` });
    assertBuilt(local);
    assert.deepEqual([stepCached(local.out, DEPS_STEP), ran(local.out, markers().deps)], [true, false], local.out);
  });

  it('a hit: the dependency step is CACHED; a full hit reads the manifest and the cache config and no layer, and saves the same root', async () => {
    const first = await facade({ writer: store.writer('first') });
    assertBuilt(await job({ to: to(first) }));

    const second = await facade({ reader: store.reader('first'), writer: store.writer('second') });
    const r = await job({ from: from(second), to: to(second) });
    assertBuilt(r);
    for (const step of [DEPS_STEP, SRC_STEP]) assert.equal(stepCached(r.out, step), true, `${step}\n${r.out}`);
    assert.deepEqual([ran(r.out, markers().deps), ran(r.out, markers().build)], [false, false]);
    await second.idle();
    const restored = store.entry('first');
    const layers = restored.blobs.filter((b) => b.digest !== restored.index.manifests[0]?.digest);
    const entryBytes = restored.blobs.reduce((sum, b) => sum + b.size, 0);
    console.log(
      `      a full hit through the facade: ${second.stats.bytesServed} bytes served of the entry's ${entryBytes}, ${second.stats.acknowledged} blobs acknowledged, ${second.stats.uploaded} uploaded`,
    );
    assert.equal(second.stats.served, 2, 'the manifest and the cache config');
    assert.ok(second.stats.bytesServed < 10_000, `${second.stats.bytesServed} bytes served`);
    assert.equal(second.stats.uploaded, 0, 'no blob uploaded');
    assert.ok(second.stats.acknowledged >= layers.length, 'every blob acknowledged without an upload');
    // BuildKit marked the imported layers with this facade's address; without those marks it is the same cache.
    assert.equal(second.exported?.root.digest, restored.index.manifests[0]?.digest);

    // A source change: the dependency layer comes from the store, the last step runs.
    fs.writeFileSync(path.join(ctx, 'src.txt'), 'revision 1\n');
    const third = await facade({ reader: store.reader('second'), writer: store.writer('third') });
    const changed = await job({ from: from(third), to: to(third) });
    assertBuilt(changed);
    // The dependency layer is pulled from the store for the step above it: BuildKit then shows that
    // step's download, and not always CACHED (measured, both BuildKits), so its own output decides.
    assert.deepEqual([ran(changed.out, markers().deps), ran(changed.out, markers().build)], [false, true], changed.out);
    await third.idle();
    assert.deepEqual(kinds(third.events), ['committed']);
    assert.notEqual(third.exported?.root.digest, second.exported?.root.digest);
  });

  it('one entry either way: a cache the local exporter wrote is served as a registry cache, and saved back as the same root', async () => {
    const folder = path.join(tempDir('dbxc-facade-folder-'), 'cache');
    assertBuilt(await job({ to: `type=local,dest=${folder},mode=max,compression=gzip` }));
    await store.addLayout(folder, 'local');
    const f = await facade({ reader: store.reader('local'), writer: store.writer('next') });
    assert.equal(store.reader('local').root.mediaType, 'application/vnd.oci.image.index.v1+json');
    const r = await job({ from: from(f), to: to(f) });
    assertBuilt(r);
    assert.deepEqual([stepCached(r.out, DEPS_STEP), ran(r.out, markers().deps)], [true, false], r.out);
    await f.idle();
    assert.equal(f.exported?.root.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(f.exported.root.digest, store.reader('local').root.digest, 'the folder path and the facade write the same cache alike');
  });

  it('a blob that fails its digest is never served: BuildKit fails, the blob is reported, and the build without the import succeeds', async () => {
    const first = await facade({ writer: store.writer('first') });
    assertBuilt(await job({ to: to(first) }));
    const layers = first.exported?.blobs ?? [];
    const deps = [...layers].sort((a, b) => b.size - a.size)[0];
    assert.ok(deps !== undefined && deps.size > 1_000_000);
    store.damage(deps.digest);

    // The last step changed: BuildKit needs the dependency layer below it.
    fs.writeFileSync(path.join(ctx, 'src.txt'), 'revision 1\n');
    const f = await facade({ reader: store.reader('first'), writer: store.writer('second') });
    const r = await job({ from: from(f), to: to(f) });
    await f.idle();
    assert.notEqual(r.code, 0, r.out);
    // The body was cut short: BuildKit fails at once, without a retry.
    assert.match(r.out, /unexpected EOF/);
    assert.deepEqual(
      f.events.flatMap((e) => (e.kind === 'corrupt' ? [e.digest] : [])),
      [deps.digest],
    );
    assert.equal(store.hasEntry('second'), false);
    // As the task does today when a restored blob fails its digest: again, without the import.
    const again = await facade({ writer: store.writer('second') });
    const retry = await job({ to: to(again) });
    assertBuilt(retry);
    await again.idle();
    assert.ok(store.hasEntry('second'));
  });

  const storeFaults: [string, Partial<FolderStore['faults']>, 'import' | 'export'][] = [
    ['reading a layer fails', { open: 'fail' }, 'import'],
    ['reading a layer hangs', { open: 'hang' }, 'import'],
    ['storing the export fails', { put: 'fail' }, 'export'],
    ['writing the entry hangs', { commit: 'hang' }, 'export'],
  ];
  for (const [name, fault, side] of storeFaults) {
    const outcome = side === 'import' ? 'fails the build' : 'is only logged (ignore-error=true)';
    it(`the store failing mid-build (${name}) ${outcome}, within the idle timeout, and leaves no entry`, async () => {
      const first = await facade({ writer: store.writer('first') });
      assertBuilt(await job({ to: to(first) }));
      fs.writeFileSync(path.join(ctx, 'src.txt'), 'revision 1\n');
      const f = await facade({ reader: store.reader('first'), writer: store.writer('second') });
      // The store goes wrong for the layers: the manifest and the cache config are read, and the
      // build has begun, when the layer below the changed step is needed or the export is pushed.
      const exported = first.exported;
      assert.ok(exported !== undefined);
      const manifest = JSON.parse(fs.readFileSync(store.blobFile(exported.root.digest), 'utf8')) as {
        manifests: { mediaType: string; digest: string }[];
      };
      const config = manifest.manifests.find((d) => d.mediaType === 'application/vnd.buildkit.cacheconfig.v0')?.digest;
      store.faultsOnly =
        side === 'export'
          ? undefined
          : new Set(exported.blobs.map((b) => b.digest).filter((d) => d !== exported.root.digest && d !== config));
      Object.assign(store.faults, fault);
      const r = await job({ from: from(f), to: to(f) });
      await f.idle();
      if (side === 'import') assert.notEqual(r.code, 0, r.out);
      else assertBuilt(r);
      assert.match(r.out, /500 Internal Server Error/);
      assert.ok(r.ms < 60_000, `took ${r.ms} ms`);
      assert.ok(
        kinds(f.events).some((k) => k.startsWith('store:')),
        kinds(f.events).join(),
      );
      assert.deepEqual([store.hasEntry('second'), f.exported], [false, undefined]);
    });
  }

  it('wrong or missing credentials get 401 and never reach the store', async () => {
    const unknown = await facade({ writer: store.writer('x') }, false);
    const wrong = await facade({ writer: store.writer('y') }, false);
    await addLogin(configDir, { host: wrong.host, username: wrong.username, password: 'not-the-password' });
    for (const f of [unknown, wrong]) {
      const r = await job({ from: from(f), to: to(f) });
      await f.idle();
      // The import finds nothing and the export is refused, which ignore-error only logs.
      assertBuilt(r);
      assert.match(r.out, /401|[Uu]nauthorized/);
      assert.equal(f.exported, undefined);
      assert.ok(f.stats.unauthorized > 0);
      assert.equal(f.stats.requests, f.stats.unauthorized, 'every request was refused');
      assert.deepEqual([store.calls.has, store.calls.put, store.calls.commit], [[], [], []]);
    }
  });

  it('two facades at once, each with its own store entry and credentials', async () => {
    const other = tempDir('dbxc-facade-ctx-');
    writeTree(other, { Dockerfile: DOCKERFILE, 'deps.lock': `dep-${crypto.randomBytes(6).toString('hex')}\n`, 'src.txt': 'other\n' });
    const [a, b] = [await facade({ writer: store.writer('a') }), await facade({ writer: store.writer('b') })];
    docker(['buildx', 'prune', '-af']);
    const build = (f: RegistryFacade, dir: string): Promise<Run> =>
      dockerAsync(
        [
          'buildx',
          'build',
          '--builder',
          'default',
          '--network',
          'none',
          '--progress',
          'plain',
          '--output',
          'type=cacheonly',
          '--cache-to',
          to(f),
          dir,
        ],
        { DOCKER_CONFIG: configDir },
      );
    const [ra, rb] = await Promise.all([build(a, ctx), build(b, other)]);
    assertBuilt(ra);
    assertBuilt(rb);
    await Promise.all([a.idle(), b.idle()]);
    assert.ok(a.exported !== undefined && b.exported !== undefined);
    assert.notEqual(a.exported.root.digest, b.exported.root.digest);
    assert.deepEqual([store.entry('a').index, store.entry('b').index], [a.exported.index, b.exported.index]);
  });

  describe('with a standalone BuildKit (the remote driver, BuildKit v0.32 on the host)', () => {
    let buildkitd: Buildkitd;
    let base: string;
    const builder = `dbxc-facade-${crypto.randomBytes(4).toString('hex')}`;

    before(async () => {
      buildkitd = await startBuildkitd();
      docker(['buildx', 'create', '--name', builder, '--driver', 'remote', buildkitd.endpoint]);
      // Its own BuildKit cannot see the engine's images: the base image goes in as an OCI layout.
      base = path.join(suiteDir('dbxc-facade-base-'), 'busybox');
      const baseCtx = suiteDir('dbxc-facade-basectx-');
      writeTree(baseCtx, { Dockerfile: `FROM ${BASE_IMAGE}\n` });
      docker(['buildx', 'build', '--builder', 'default', '--output', `type=oci,dest=${base},tar=false`, baseCtx]);
    });
    after(async () => {
      try {
        docker(['buildx', 'rm', '--force', builder]);
      } finally {
        await buildkitd.stop();
      }
    });

    it('a miss, then a hit that does not run the dependency step, over plain HTTP with no registry configuration', async () => {
      const extra = ['--build-context', `${BASE_IMAGE}=oci-layout://${base}`];
      const first = await facade({ writer: store.writer('first') });
      const miss = await job({ builder, from: from(first), to: to(first), extra });
      assertBuilt(miss);
      assert.equal(ran(miss.out, markers().deps), true);
      await first.idle();
      assert.ok(first.exported !== undefined);

      fs.writeFileSync(path.join(ctx, 'src.txt'), 'revision 1\n');
      const second = await facade({ reader: store.reader('first'), writer: store.writer('second') });
      const hit = await job({ builder, from: from(second), to: to(second), extra });
      assertBuilt(hit);
      assert.deepEqual([ran(hit.out, markers().deps), ran(hit.out, markers().build)], [false, true], hit.out);
      await second.idle();
      assert.deepEqual(kinds(second.events), ['committed']);
    });
  });
});
