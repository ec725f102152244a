import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { docker, type JobResult, transcript } from '../../scripts/agent';
import { BASE_IMAGE, ensureEngine } from '../../scripts/engine';
import { ensureRegistry, type Registry } from '../../scripts/registry';
import { cleanup, linesShowing, tempDir } from '../helpers';
import { stepCached, Workspace } from './workspace';

const DOCKERFILE = `FROM ${BASE_IMAGE}
WORKDIR /app
COPY deps.lock ./
RUN echo "installing $(cat deps.lock)" && dd if=/dev/urandom of=/app/deps.bin bs=1M count=2 2>/dev/null
RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /app/token.sha256
COPY src/ ./src/
RUN cat src/main.txt > /app/out.txt
`;

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** Every file under `dir`, decompressed when it is gzip, so a layer's content can be searched. */
function* readableFiles(dir: string): Generator<[string, Buffer]> {
  if (!fs.existsSync(dir)) return;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const raw = fs.readFileSync(file);
    yield [file, raw[0] === 0x1f && raw[1] === 0x8b ? zlib.gunzipSync(raw) : raw];
  }
}

function filesContaining(dir: string, needle: string): string[] {
  return [...readableFiles(dir)].filter(([, content]) => content.includes(needle)).map(([file]) => file);
}

describe('end to end: registries (a real docker-registry with htpasswd)', function () {
  this.timeout(10 * 60 * 1000);

  let registry: Registry;
  let w: Workspace;
  let repo: string;

  before(() => {
    ensureEngine();
    registry = ensureRegistry();
  });
  beforeEach(() => {
    w = new Workspace({ Dockerfile: DOCKERFILE, 'deps.lock': 'left-pad@1.3.0\n', 'src/main.txt': 'revision 0\n' });
    // A repository of its own per test, so no test sees another's images or cache.
    repo = `dbxc-e2e/${crypto.randomBytes(4).toString('hex')}`;
  });
  afterEach(() => cleanup());

  /** ENDPOINT_* variables as the agent sets them for a Docker Registry connection of type "Others". */
  const connection = (password = registry.password): NodeJS.ProcessEnv => ({
    ENDPOINT_URL_REG: `http://${registry.host}`,
    ENDPOINT_AUTH_SCHEME_REG: 'UsernamePassword',
    ENDPOINT_AUTH_PARAMETER_REG_REGISTRY: registry.host,
    ENDPOINT_AUTH_PARAMETER_REG_USERNAME: registry.user,
    ENDPOINT_AUTH_PARAMETER_REG_PASSWORD: password,
    ENDPOINT_DATA_REG_REGISTRYTYPE: 'Others',
  });

  /** The registry's HTTP API, with the test's own credentials. */
  async function api(pathname: string, method = 'GET'): Promise<Response> {
    const auth = Buffer.from(`${registry.user}:${registry.password}`).toString('base64');
    return fetch(`http://${registry.host}/v2/${pathname}`, { method, headers: { authorization: `Basic ${auth}`, accept: MANIFEST_TYPES } });
  }

  const secretInputs = (token: string): Record<string, string> => ({ secrets: `token=${token}` });

  function assertSucceeded(r: JobResult): void {
    assert.equal(r.main.result, 'Succeeded', transcript(r.main));
    assert.equal(r.post.result, 'Succeeded', transcript(r.post));
  }

  it('pushes every tag after logging in with the connection, in a docker config that dies with the job', async () => {
    const agentConfig = path.join(os.homedir(), '.docker', 'config.json');
    const before = fs.existsSync(agentConfig) ? fs.readFileSync(agentConfig, 'utf8') : undefined;
    const image = `${registry.host}/${repo}`;

    const agentTemp = tempDir('dbxc-e2e-agent-tmp-');
    const r = await w.job(
      'push',
      {
        imageName: image,
        tags: 'v1\nlatest',
        output: 'registry',
        cacheBackend: 'none',
        containerRegistry: 'REG',
        ...secretInputs('t0ken'),
      },
      { 'Agent.TempDirectory': agentTemp },
      connection(),
    );
    assertSucceeded(r);
    assert.match(r.main.stdout, new RegExp(`logged in to ${registry.host.replace(/\./g, '\\.')} with user name and password`));

    const tags = (await (await api(`${repo}/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags.sort(), ['latest', 'v1']);
    const head = await api(`${repo}/manifests/v1`, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(r.main.outputs.digest, head.headers.get('docker-content-digest'));

    // The password was registered as a secret before anything could print it, and printed nowhere.
    assert.ok(r.main.secrets.includes(registry.password));
    assert.deepEqual(linesShowing(r.main.stdout, registry.password), []);
    assert.ok(!r.main.stderr.includes(registry.password));
    // The agent's own docker config is untouched: the login lived in the job's private one, now deleted.
    assert.equal(fs.existsSync(agentConfig) ? fs.readFileSync(agentConfig, 'utf8') : undefined, before);
    assert.deepEqual(filesContaining(agentTemp, '"auths"'), [], 'no docker login is left in the agent temp folder');
    // Left: the summary, and task-lib's own vault key.
    assert.deepEqual(
      fs.readdirSync(agentTemp).filter((f) => !f.endsWith('.md') && f !== '.taskkey'),
      [],
      `the job-private folders are deleted: ${fs.readdirSync(agentTemp, { recursive: true }).join(', ')}`,
    );
  });

  it('a builder the task creates lives in the job-private config, where the post-job step finds and removes it', async () => {
    // docker-container cannot boot here (its BuildKit image cannot be pulled), but `buildx create`
    // records the builder in the config, and the post-job step must remove it from the same one.
    const r = await w.job(
      'builder in private config',
      { driver: 'docker-container', builderLifetime: 'job', cacheBackend: 'none', containerRegistry: 'REG' },
      {},
      connection(),
    );
    const name = r.main.outputs.builderName ?? /--name (buildx-cache-[0-9a-f]+)/.exec(r.main.stdout)?.[1];
    assert.match(name ?? '', /^buildx-cache-[0-9a-f]+$/, r.main.stdout);
    assert.match(r.main.stdout, new RegExp(`docker buildx create --bootstrap --name ${name ?? ''}`));
    assert.equal(r.post.result, 'Succeeded');
    assert.deepEqual(r.post.warnings, []);
    assert.match(r.post.stdout, new RegExp(`Removed builder ${name ?? ''}`));
    assert.doesNotMatch(docker(['buildx', 'ls']), new RegExp(name ?? 'unreachable'), 'the agent never saw the builder');
  });

  it('registry cache: a fresh engine imports the layers, and a source change rebuilds only what changed', async () => {
    // On refs/heads/main the cache is at the tag buildcache-main.
    const ref = `${registry.host}/${repo}/cache`;
    const inputs = { cacheBackend: 'registry', registryCacheRef: ref, containerRegistry: 'REG', ...secretInputs('t0ken') };

    const cold = await w.job('registry cache cold', inputs, {}, connection());
    assertSucceeded(cold);
    assert.equal(cold.main.outputs.cacheHit, 'false');
    assert.match(cold.main.stdout, /no registry cache exists yet at \S+:buildcache-main, \S+:buildcache-master/);
    assert.equal(stepCached(cold.main.stdout, '[stage-0 4/7] RUN echo "installing'), false);

    // The cache is an OCI image manifest, which ACR and other strict registries accept.
    const manifest = (await (await api(`${repo}/cache/manifests/buildcache-main`)).json()) as { mediaType: string; layers: unknown[] };
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.ok(manifest.layers.length > 0);

    // Workspace.job empties the engine's build cache first: only the registry can supply these layers.
    const warm = await w.job('registry cache warm', inputs, {}, connection());
    assertSucceeded(warm);
    assert.equal(warm.main.outputs.cacheHit, 'true');
    assert.match(warm.main.stdout, /importing the registry cache \S+:buildcache-main \(cacheHit true\)/);
    assert.equal(stepCached(warm.main.stdout, '[stage-0 4/7] RUN echo "installing'), true);
    assert.equal(stepCached(warm.main.stdout, '[stage-0 7/7] RUN cat src/main.txt'), true);

    w.write('src/main.txt', 'revision 1\n');
    const changed = await w.job('registry cache, source change', inputs, {}, connection());
    assertSucceeded(changed);
    assert.equal(stepCached(changed.main.stdout, '[stage-0 4/7] RUN echo "installing'), true);
    assert.equal(stepCached(changed.main.stdout, '[stage-0 6/7] COPY src/'), false);
  });

  it('wrong password: fails before the build with an error that names the registry and the fix', async () => {
    const r = await w.job('login refused', { cacheBackend: 'none', containerRegistry: 'REG' }, {}, connection('not-the-password'));
    assert.equal(r.main.result, 'Failed');
    assert.equal(r.main.errors.length, 1);
    assert.match(
      r.main.errors[0] ?? '',
      new RegExp(
        `^docker login to ${registry.host.replace(/\./g, '\\.')} with user name and password failed: .*(unauthorized|401).*Check the credentials of the containerRegistry service connection\\.$`,
        's',
      ),
    );
    assert.doesNotMatch(r.main.stdout, /^#\d+ \[/m, 'nothing was built');
    assert.deepEqual(linesShowing(r.main.stdout, 'not-the-password'), []);
    assert.equal(r.post.result, 'Succeeded');
  });

  it('an unreachable registry cache warns and the build goes on without it', async () => {
    const r = await w.job('registry cache unreachable', {
      cacheBackend: 'registry',
      registryCacheRef: '127.0.0.1:9/nowhere/cache:main',
      ...secretInputs('t0ken'),
    });
    assertSucceeded(r);
    assert.equal(r.main.outputs.cacheHit, 'false');
    assert.ok(
      r.main.warnings.some((m) => /^The registry cache 127\.0\.0\.1:9\/nowhere\/cache:main-main cannot be read/.test(m)),
      r.main.warnings.join('\n'),
    );
    assert.ok(
      r.main.warnings.some((m) => /^Writing the cache failed/.test(m)),
      r.main.warnings.join('\n'),
    );
    assert.ok(docker(['image', 'inspect', '--format', '{{.Id}}', 'dbxc-e2e/app:e2e']).startsWith('sha256:'));
  });

  // A build secret must not reach the log, the image, the cache (in the registry or the store), the
  // summary or the state the post-job step reads; the registry password neither.
  for (const backend of ['registry', 'local'] as const) {
    it(`build secrets stay out of the log, the metadata, the image, the ${backend} cache and the summary`, async () => {
      const token = `tok-${crypto.randomBytes(12).toString('hex')}`;
      const image = `${registry.host}/${repo}`;
      const cacheInputs: Record<string, string> = backend === 'registry' ? { registryCacheRef: `${image}/cache:main` } : {};
      // What the main step leaves for the post-job step: buildx's metadata and the job's folder.
      const left: string[] = [];
      const r = await w.job(
        `secrets, ${backend} cache`,
        {
          imageName: image,
          tags: 'v1',
          output: 'registry',
          containerRegistry: 'REG',
          cacheBackend: backend,
          ...cacheInputs,
          ...secretInputs(token),
        },
        {},
        connection(),
        (main) => {
          const metadata = main.outputs.metadataFile ?? '';
          left.push(
            fs.readFileSync(metadata, 'utf8'),
            ...[...readableFiles(path.dirname(metadata))].map(([, content]) => content.toString('latin1')),
          );
        },
      );
      assertSucceeded(r);
      assert.match(left[0] ?? '', /"containerimage\.digest"/, 'the metadata file was read');

      // It was mounted: the image holds its hash.
      const hash = crypto.createHash('sha256').update(token).digest('hex');
      const repoDir = path.join(registry.dataDir, 'docker', 'registry', 'v2');
      const blobs = path.join(repoDir, 'blobs');
      assert.ok(filesContaining(blobs, hash).length > 0, 'the image layer with the secret hash is in the registry');

      for (const needle of [token, registry.password]) {
        assert.ok(r.main.secrets.includes(needle));
        for (const step of [r.main, r.post]) {
          assert.deepEqual(linesShowing(step.stdout, needle), [], 'not in the log');
          assert.ok(!step.stderr.includes(needle));
          assert.ok(!Object.values(step.taskVariables).some((v) => v.includes(needle)), 'not in the task state');
        }
        assert.ok(!left.some((content) => content.includes(needle)), 'not in the metadata, nor anything else the main step left');
        assert.deepEqual(filesContaining(blobs, needle), [], 'not in the registry: image or cache');
        assert.deepEqual(filesContaining(w.storeDir, needle), [], 'not in the local store');
        assert.deepEqual(filesContaining(w.cacheDir, needle), [], 'not in the cache folder');
        for (const summary of [...r.main.commands, ...r.post.commands].filter((c) => c.name === 'task.uploadsummary')) {
          assert.ok(!fs.readFileSync(summary.data, 'utf8').includes(needle), 'not in the summary');
        }
      }
    });
  }
});
