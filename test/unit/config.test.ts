import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { agentInputs } from '../../scripts/agent';
import { readConfig } from '../../tasks/DockerBuildxCacheV1/src/config/read';
import { splitArguments } from '../../tasks/DockerBuildxCacheV1/src/config/shell';
import { InputError, type Source } from '../../tasks/DockerBuildxCacheV1/src/config/source';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { resolveKeys } from '../../tasks/DockerBuildxCacheV1/src/cache/session';
import { Input, SECRET_INPUTS } from '../../tasks/DockerBuildxCacheV1/src/task/inputs';
import { taskDir } from '../../tasks/DockerBuildxCacheV1/src/task/messages';
import { cleanup, tempDir, writeTree } from '../helpers';

let ws: string;

/** The step's environment in these tests: the process's own is never read. */
const ENV: Record<string, string> = { NPM_TOKEN: 'npm-secret', SSH_AUTH_SOCK: '/run/ssh-agent.sock' };

function source(inputs: Record<string, string>, variables: Record<string, string> = {}, env: Record<string, string> = ENV): Source {
  const vars: Record<string, string> = {
    'System.DefaultWorkingDirectory': ws,
    'Pipeline.Workspace': '/pw',
    'Agent.WorkFolder': '/aw',
    'Agent.OS': 'Linux',
    ...variables,
  };
  return { input: (name) => (inputs[name] ?? '').trim(), variable: (name) => vars[name], env: (name) => env[name] };
}

function read(inputs: Record<string, string>, variables?: Record<string, string>): Config {
  return readConfig(source(inputs, variables));
}

/** The inputs as the agent passes them: every default filled in, macros expanded, file paths rooted. */
function readAsAgent(inputs: Record<string, string>, variables: Record<string, string> = {}): Config {
  const vars: Record<string, string> = {
    'System.DefaultWorkingDirectory': ws,
    'Pipeline.Workspace': '/pw',
    'Agent.WorkFolder': '/aw',
    'Agent.OS': 'Linux',
    ...variables,
  };
  const passed = agentInputs(inputs, vars);
  return readConfig({ input: (name) => passed[name] ?? '', variable: (name) => vars[name] });
}

/**
 * Reads and validates the inputs as the agent passes them, and resolves the key and restore keys, as
 * the main step does before anything runs. `SSH_AUTH_SOCK` is the step's environment, not an input.
 */
async function readAndResolve(given: Record<string, string>): Promise<void> {
  const { SSH_AUTH_SOCK, ...inputs } = given;
  const env = SSH_AUTH_SOCK === undefined ? ENV : { ...ENV, SSH_AUTH_SOCK };
  const vars: Record<string, string> = {
    'System.DefaultWorkingDirectory': ws,
    'Pipeline.Workspace': '/pw',
    'Agent.WorkFolder': '/aw',
    'Agent.OS': 'Linux',
  };
  const passed = agentInputs(inputs, vars);
  await resolveKeys(readConfig({ input: (name) => passed[name] ?? '', variable: (name) => vars[name], env: (name) => env[name] }));
}

/** A message of task.json as a pattern: its text, with each %s or %d standing for any text. */
function messagePattern(key: string): RegExp {
  const task = JSON.parse(fs.readFileSync(path.join(taskDir(), 'task.json'), 'utf8')) as { messages: Record<string, string> };
  const text = task.messages[key];
  assert.ok(text !== undefined, `task.json has no message ${key}`);
  const literal = text.split(/%[sd]/).map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${literal.join('[\\s\\S]*')}$`);
}

describe('config: reading and validating inputs', () => {
  beforeEach(() => {
    ws = tempDir();
    writeTree(ws, {
      Dockerfile: 'FROM scratch\n',
      'sub/Dockerfile': 'FROM scratch\n',
      'ctx/file': 'x',
      'buildkitd.toml': '',
      'keys/deploy': 'key',
      '.netrc': 'machine x',
      'deps.lock': 'left-pad\n',
    });
  });
  afterEach(cleanup);

  it('names every input of task.json once, as task.json spells it, and only those', () => {
    const task = JSON.parse(fs.readFileSync(path.join(taskDir(), 'task.json'), 'utf8')) as { inputs: { name: string }[] };
    assert.deepEqual(
      Object.entries(Input),
      task.inputs.map((i) => [i.name, i.name]),
    );
    for (const name of SECRET_INPUTS)
      assert.ok(
        task.inputs.some((i) => i.name === name),
        name,
      );
  });

  it('applies the documented defaults', () => {
    const c = read({ imageName: 'app' });
    assert.equal(c.build.dockerfile, path.join(ws, 'Dockerfile'));
    assert.equal(c.build.context, ws);
    assert.deepEqual(c.build.tags, ['app:latest']);
    assert.deepEqual(c.output, { kind: 'docker', specs: [], registryConnection: undefined });
    assert.deepEqual(c.cache, {
      backend: 'local',
      dir: '/pw/.buildx-cache',
      mode: 'max',
      compression: 'gzip',
      key: 'buildx | "Linux" | "app" | ./Dockerfile',
      restoreKeys: ['buildx | "Linux" | "app"'],
      storePath: '/aw/_buildx_cache_store',
      save: 'onSuccess',
      scope: 'branch',
      retentionDays: 7,
      hitVar: undefined,
      failOnError: false,
      transport: 'auto',
      registryRef: undefined,
      azure: undefined,
    });
    assert.equal(c.builder.driver, 'auto');
    assert.equal(c.builder.remove, true);
    assert.equal(c.build.noCache, false);
    assert.equal(c.build.pull, false);
    assert.deepEqual(c.warnings, []);
  });

  const valid: [string, Record<string, string>, (c: Config) => void, Record<string, string>?][] = [
    [
      'a Dockerfile folder means its Dockerfile',
      { imageName: 'app', dockerfile: 'sub' },
      (c) => assert.equal(c.build.dockerfile, path.join(ws, 'sub', 'Dockerfile')),
    ],
    [
      'an empty filePath (the working directory) means ./Dockerfile',
      { imageName: 'app', dockerfile: '.' },
      (c) => assert.equal(c.build.dockerfile, path.join(ws, 'Dockerfile')),
    ],
    [
      'context relative to the working directory',
      { imageName: 'app', buildContext: 'ctx' },
      (c) => assert.equal(c.build.context, path.join(ws, 'ctx')),
    ],
    [
      'tags combine with the image name',
      { imageName: 'reg.io:5000/team/app', tags: 'v1\n\n 42 \nlatest' },
      (c) => assert.deepEqual(c.build.tags, ['reg.io:5000/team/app:v1', 'reg.io:5000/team/app:42', 'reg.io:5000/team/app:latest']),
    ],
    ['localhost registries', { imageName: 'localhost/app' }, (c) => assert.deepEqual(c.build.tags, ['localhost/app:latest'])],
    [
      'platforms split on commas and lines',
      { imageName: 'app', platforms: 'linux/amd64, linux/arm64/v8\nlinux/arm/v7' },
      (c) => assert.deepEqual(c.build.platforms, ['linux/amd64', 'linux/arm64/v8', 'linux/arm/v7']),
    ],
    [
      'build args, with a bare key from the environment',
      { imageName: 'app', buildArgs: 'A=1\nB=x=y\nHTTP_PROXY' },
      (c) => assert.deepEqual(c.build.buildArgs, ['A=1', 'B=x=y', 'HTTP_PROXY']),
    ],
    [
      'labels keep values with spaces',
      { imageName: 'app', labels: 'a.b=hello world' },
      (c) => assert.deepEqual(c.build.labels, ['a.b=hello world']),
    ],
    [
      'secrets keep = in values',
      { imageName: 'app', secrets: 'npmrc=abc==\ntoken=t' },
      (c) =>
        assert.deepEqual(c.build.secrets, [
          { kind: 'value', id: 'npmrc', value: 'abc==' },
          { kind: 'value', id: 'token', value: 't' },
        ]),
    ],
    [
      'secrets from the environment and from files',
      { imageName: 'app', secrets: 'env:token=NPM_TOKEN\nfile:netrc=.netrc' },
      (c) =>
        assert.deepEqual(c.build.secrets, [
          { kind: 'env', id: 'token', env: 'NPM_TOKEN', value: 'npm-secret' },
          { kind: 'file', id: 'netrc', file: path.join(ws, '.netrc') },
        ]),
    ],
    [
      'a value that looks like a reference stays a value',
      { imageName: 'app', secrets: 'pw=env:NPM_TOKEN\npw2=file:.netrc' },
      (c) =>
        assert.deepEqual(c.build.secrets, [
          { kind: 'value', id: 'pw', value: 'env:NPM_TOKEN' },
          { kind: 'value', id: 'pw2', value: 'file:.netrc' },
        ]),
    ],
    [
      'SSH: the agent, and keys made absolute',
      { imageName: 'app', ssh: 'default\ngithub=keys/deploy, .netrc' },
      (c) => assert.deepEqual(c.build.ssh, ['default', `github=${path.join(ws, 'keys/deploy')},${path.join(ws, '.netrc')}`]),
    ],
    [
      'attestations',
      { imageName: 'app', provenance: 'mode=max', sbom: 'TRUE' },
      (c) => assert.deepEqual([c.build.provenance, c.build.sbom], ['mode=max', 'true']),
    ],
    [
      'attestations left to buildx',
      { imageName: 'app' },
      (c) => assert.deepEqual([c.build.provenance, c.build.sbom], [undefined, undefined]),
    ],
    [
      'annotations, typed or not',
      { imageName: 'app', annotations: 'org.opencontainers.image.title=my app\nindex,manifest[linux/amd64]:a.b=c\nmanifest-descriptor:x=' },
      (c) =>
        assert.deepEqual(c.build.annotations, [
          'org.opencontainers.image.title=my app',
          'index,manifest[linux/amd64]:a.b=c',
          'manifest-descriptor:x=',
        ]),
    ],
    [
      'named build contexts: folders made absolute, other sources as written',
      {
        imageName: 'app',
        buildContexts: 'assets=ctx\nbase=docker-image://alpine:3.20\nstage=target:build\nsrc=https://github.com/x/y.git',
      },
      (c) =>
        assert.deepEqual(c.build.contexts, [
          `assets=${path.join(ws, 'ctx')}`,
          'base=docker-image://alpine:3.20',
          'stage=target:build',
          'src=https://github.com/x/y.git',
        ]),
    ],
    [
      'extra cache sources',
      { imageName: 'app', cacheFrom: 'type=registry,ref=r.example/app:cache-main\nr.example/app:cache\ntype=local,src=/c' },
      (c) =>
        assert.deepEqual(c.build.cacheFrom, ['type=registry,ref=r.example/app:cache-main', 'r.example/app:cache', 'type=local,src=/c']),
    ],
    [
      'pipeline labels, as Docker@2 adds them',
      { imageName: 'app' },
      (c) =>
        assert.deepEqual(c.build.pipelineLabels, [
          'com.azure.dev.image.system.teamfoundationcollectionuri=https://dev.azure.com/contoso/',
          'com.azure.dev.image.system.teamproject=web',
          'com.azure.dev.image.build.sourceversion=abc123',
          'com.azure.dev.image.build.buildnumber=20240101.1',
        ]),
      {
        'System.TeamFoundationCollectionUri': 'https://dev.azure.com/contoso/',
        'System.TeamProject': 'web',
        'System.HostType': 'build',
        'Build.SourceVersion': 'abc123',
        'Build.BuildNumber': '20240101.1',
      },
    ],
    [
      'no pipeline labels when turned off',
      { imageName: 'app', addPipelineData: 'false' },
      (c) => assert.deepEqual(c.build.pipelineLabels, []),
      { 'System.TeamFoundationCollectionUri': 'https://dev.azure.com/contoso/' },
    ],
    [
      'storageAuth connectionString uses the connection string',
      {
        imageName: 'app',
        cacheBackend: 'azureBlob',
        storageAuth: 'connectionString',
        storageConnectionString: 'AccountName=a;AccountKey=k',
      },
      (c) => assert.deepEqual(c.cache.azure, { accountUrl: undefined, container: 'buildx-cache', connection: undefined }),
    ],
    [
      'writeCache false makes a registry cache read-only',
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'r/app', writeCache: 'false' },
      (c) => assert.equal(c.cache.save, 'never'),
    ],
    [
      'saveCache never still makes the directory read-only',
      { imageName: 'app', cacheBackend: 'directory', saveCache: 'never' },
      (c) => assert.deepEqual([c.cache.save, c.warnings], ['never', []]),
    ],
    [
      'an inline buildkitd.toml',
      { imageName: 'app', buildkitdConfigInline: '[worker.oci]\n  max-parallelism = 4' },
      (c) => assert.equal(c.builder.buildkitdConfigText, '[worker.oci]\n  max-parallelism = 4'),
    ],
    [
      'additional arguments split like a shell',
      { imageName: 'app', additionalArguments: `--label "a=b c" --ssh default` },
      (c) => assert.deepEqual(c.build.additionalArguments, ['--label', 'a=b c', '--ssh', 'default']),
    ],
    [
      'booleans in any case',
      { imageName: 'app', noCache: 'True', pull: 'TRUE', removeBuilder: 'false' },
      (c) => assert.deepEqual([c.build.noCache, c.build.pull, c.builder.remove], [true, true, false]),
    ],
    [
      'oci output path resolved',
      { imageName: 'app', output: 'oci', outputPath: 'out/image.tar' },
      (c) => assert.deepEqual(c.output, { kind: 'oci', path: path.join(ws, 'out/image.tar'), specs: [], registryConnection: undefined }),
    ],
    [
      'a registry connection',
      { imageName: 'app', output: 'registry', containerRegistry: 'acr-conn' },
      (c) => assert.equal(c.output.registryConnection, 'acr-conn'),
    ],
    [
      'a registry cache',
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'myacr.azurecr.io/team/app:buildcache' },
      (c) => assert.equal(c.cache.registryRef, 'myacr.azurecr.io/team/app:buildcache'),
    ],
    [
      'an Azure container through a service connection',
      { imageName: 'app', cacheBackend: 'azureBlob', azureSubscription: 'arm', storageAccountUrl: 'https://acct.blob.core.windows.net/' },
      (c) =>
        assert.deepEqual(c.cache.azure, { accountUrl: 'https://acct.blob.core.windows.net', container: 'buildx-cache', connection: 'arm' }),
    ],
    [
      'an Azure container through a secret connection string',
      {
        imageName: 'app',
        cacheBackend: 'AZUREBLOB',
        storageConnectionString: 'AccountName=a;AccountKey=k',
        storageContainer: 'team-cache',
      },
      (c) => assert.deepEqual(c.cache.azure, { accountUrl: undefined, container: 'team-cache', connection: undefined }),
    ],
    [
      'an emulator over http with a SAS',
      {
        imageName: 'app',
        cacheBackend: 'azureBlob',
        storageAccountUrl: 'http://127.0.0.1:10000/devstoreaccount1',
        storageConnectionString: 'sv=2024&sig=x',
      },
      (c) => assert.equal(c.cache.azure?.accountUrl, 'http://127.0.0.1:10000/devstoreaccount1'),
    ],
    [
      'a registry cache on a registry with a port',
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'localhost:5000/app' },
      (c) => assert.equal(c.cache.registryRef, 'localhost:5000/app'),
    ],
    [
      'custom outputs',
      { output: 'custom', outputs: 'type=local,dest=a\ntype=tar,dest=b.tar' },
      (c) => assert.deepEqual(c.output.specs, ['type=local,dest=a', 'type=tar,dest=b.tar']),
    ],
    ['cacheOnly needs no image', { output: 'cacheOnly' }, (c) => assert.deepEqual(c.build.tags, [])],
    [
      'pick lists ignore case',
      { imageName: 'app', output: 'CACHEONLY', cacheCompression: 'ZSTD' },
      (c) => assert.deepEqual([c.output.kind, c.cache.compression], ['cacheOnly', 'zstd']),
    ],
    [
      'cacheDir macros left by the agent are expanded',
      { imageName: 'app', cacheDir: '$(Agent.TempDirectory)/c' },
      (c) => assert.equal(c.cache.dir, '/agent-temp/c'),
    ],
    [
      'relative cacheDir from the working directory',
      { imageName: 'app', cacheDir: '../cache' },
      (c) => assert.equal(c.cache.dir, path.resolve(ws, '../cache')),
    ],
    [
      'builder settings',
      {
        imageName: 'app',
        builderName: 'ci.builder-1',
        driverOptions: 'network=host\nimage=moby/buildkit:v0.13',
        buildkitdFlags: '--debug',
        buildkitdConfig: 'buildkitd.toml',
        endpoint: 'ctx',
      },
      (c) =>
        assert.deepEqual(c.builder, {
          buildxVersion: undefined,
          buildxDownloadUrl: undefined,
          driver: 'auto',
          name: 'ci.builder-1',
          driverOptions: ['network=host', 'image=moby/buildkit:v0.13'],
          buildkitdFlags: '--debug',
          buildkitdConfig: path.join(ws, 'buildkitd.toml'),
          buildkitdConfigText: undefined,
          endpoint: 'ctx',
          remove: true,
          lifetime: 'auto',
          keepStorage: '10GB',
        }),
    ],
    [
      'a builder kept for the agent, pruned to 2 GB',
      { imageName: 'app', builderLifetime: 'agent', builderKeepStorage: '2 GB' },
      (c) => assert.deepEqual([c.builder.lifetime, c.builder.keepStorage], ['agent', '2GB']),
    ],
    [
      'a kept builder that is never pruned: 0',
      { imageName: 'app', builderKeepStorage: '0' },
      (c) => assert.equal(c.builder.keepStorage, undefined),
    ],
    [
      'a builder for the job only',
      { imageName: 'app', builderLifetime: 'job', builderKeepStorage: '512mb' },
      (c) => assert.deepEqual([c.builder.lifetime, c.builder.keepStorage], ['job', '512mb']),
    ],
    [
      'remote driver with an endpoint',
      { imageName: 'app', driver: 'remote', endpoint: 'tcp://bk:1234' },
      (c) => assert.equal(c.builder.endpoint, 'tcp://bk:1234'),
    ],
    [
      'a pinned buildx from a mirror',
      { imageName: 'app', buildxVersion: 'v0.19.2', buildxDownloadUrl: 'https://mirror.example/buildx/releases' },
      (c) => assert.deepEqual([c.builder.buildxVersion, c.builder.buildxDownloadUrl], ['0.19.2', 'https://mirror.example/buildx/releases']),
    ],
    ['the latest buildx', { imageName: 'app', buildxVersion: 'latest' }, (c) => assert.equal(c.builder.buildxVersion, 'latest')],
    [
      'buildkitdConfig left empty arrives as the working directory',
      { imageName: 'app', buildkitdConfig: ws },
      (c) => assert.equal(c.builder.buildkitdConfig, undefined),
    ],
    [
      'the default key names a Dockerfile in a folder as a path',
      { imageName: 'reg.io/team/app', dockerfile: 'sub' },
      (c) => assert.equal(c.cache.key, 'buildx | "Linux" | "reg.io/team/app" | sub/Dockerfile'),
    ],
    [
      'the default key without an image',
      { output: 'cacheOnly' },
      (c) => assert.deepEqual([c.cache.key, c.cache.restoreKeys], ['buildx | "Linux" | ./Dockerfile', ['buildx | "Linux"']]),
    ],
    [
      'an explicit key has no restore keys unless given',
      { imageName: 'app', cacheKey: 'k | deps.lock' },
      (c) => assert.deepEqual([c.cache.key, c.cache.restoreKeys], ['k | deps.lock', []]),
    ],
    [
      'restore keys one per line',
      { imageName: 'app', cacheKey: 'k | deps.lock', restoreKeys: 'k\n\nj | x' },
      (c) => assert.deepEqual(c.cache.restoreKeys, ['k', 'j | x']),
    ],
    [
      'AZP_CACHING_SALT in front of the key and every restore key',
      { imageName: 'app' },
      (c) => {
        assert.equal(c.cache.key, 'AZP_CACHING_SALT=v2 | buildx | "Linux" | "app" | ./Dockerfile');
        assert.deepEqual(c.cache.restoreKeys, ['AZP_CACHING_SALT=v2 | buildx | "Linux" | "app"']);
      },
      { AZP_CACHING_SALT: 'v2' },
    ],
    [
      "a key on several lines, Cache@2's old format, without salt as in the agent",
      { imageName: 'app', cacheKey: 'buildx\n"Linux"\n./Dockerfile' },
      (c) => {
        assert.equal(c.cache.key, 'buildx\n"Linux"\n./Dockerfile');
        assert.equal(c.warnings.length, 1);
        assert.match(c.warnings[0] ?? '', /Cache@2's old format.*deprecated/);
      },
      { AZP_CACHING_SALT: 'v2' },
    ],
    [
      'store settings',
      {
        imageName: 'app',
        localStorePath: 'store',
        saveCache: 'afterBuild',
        cacheScope: 'shared',
        retentionDays: '0.5',
        cacheHitVar: 'HIT',
        failOnCacheError: 'true',
      },
      (c) =>
        assert.deepEqual(
          [c.cache.storePath, c.cache.save, c.cache.scope, c.cache.retentionDays, c.cache.hitVar, c.cache.failOnError],
          [path.join(ws, 'store'), 'afterBuild', 'shared', 0.5, 'HIT', true],
        ),
    ],
  ];
  for (const [name, inputs, check, variables] of valid) {
    it(`accepts: ${name}`, () => check(read(inputs, { 'Agent.TempDirectory': '/agent-temp', ...variables })));
  }

  const warnings: [string, Record<string, string>, RegExp][] = [
    [
      'builder inputs with the docker driver',
      { imageName: 'app', driver: 'docker', builderName: 'x', buildkitdFlags: '--debug' },
      /no effect: builderName, buildkitdFlags/,
    ],
    [
      'an inline buildkitd.toml with the docker driver',
      { imageName: 'app', driver: 'docker', buildkitdConfigInline: '[worker.oci]' },
      /no effect: buildkitdConfigInline/,
    ],
    ['a cache folder inside the build context', { imageName: 'app', cacheDir: '.cache' }, /inside the build context/],
    [
      'a download mirror without a version',
      { imageName: 'app', buildxDownloadUrl: 'https://mirror.example/x' },
      /buildxDownloadUrl has no effect without buildxVersion/,
    ],
    [
      'a registry cache reference with another backend',
      { imageName: 'app', registryCacheRef: 'r/app:c' },
      /cacheBackend 'local' these inputs have no effect: registryCacheRef/,
    ],
    [
      'a service connection with storageAuth connectionString',
      {
        imageName: 'app',
        cacheBackend: 'azureBlob',
        storageAuth: 'connectionString',
        azureSubscription: 'arm',
        storageConnectionString: 'x',
      },
      /cacheBackend 'azureBlob' these inputs have no effect: azureSubscription/,
    ],
    [
      'saveCache choices the registry cache cannot honour',
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'r/app', saveCache: 'always' },
      /cacheBackend 'registry' these inputs have no effect: saveCache/,
    ],
    ['writeCache with a store', { imageName: 'app', writeCache: 'false' }, /cacheBackend 'local' these inputs have no effect: writeCache/],
    [
      'cacheTransport without a store',
      { imageName: 'app', cacheBackend: 'directory', cacheTransport: 'direct' },
      /cacheBackend 'directory' these inputs have no effect: .*cacheTransport/,
    ],
    [
      'both a service connection and a connection string',
      {
        imageName: 'app',
        cacheBackend: 'azureBlob',
        azureSubscription: 'arm',
        storageAccountUrl: 'https://a.blob.core.windows.net',
        storageConnectionString: 'x',
      },
      /both azureSubscription and storageConnectionString are set; the service connection is used/,
    ],
    [
      'Azure inputs with the local backend',
      { imageName: 'app', storageContainer: 'c' },
      /cacheBackend 'local' these inputs have no effect: storageContainer/,
    ],
    [
      'local store inputs with the Azure backend',
      { imageName: 'app', cacheBackend: 'azureBlob', storageConnectionString: 'x', localStorePath: '/s' },
      /cacheBackend 'azureBlob' these inputs have no effect: localStorePath/,
    ],
    [
      'store inputs with the directory backend',
      { imageName: 'app', cacheBackend: 'directory', cacheKey: 'k', retentionDays: '3', cacheScope: 'shared' },
      /cacheBackend 'directory' these inputs have no effect: cacheKey, retentionDays, cacheScope/,
    ],
    [
      'store inputs with the registry backend, which has scopes too',
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'r/app', cacheKey: 'k', cacheScope: 'shared' },
      /cacheBackend 'registry' these inputs have no effect: cacheKey\.$/,
    ],
  ];
  for (const [name, inputs, pattern] of warnings) {
    it(`warns about ${name}`, () => {
      const c = read(inputs);
      assert.equal(c.warnings.length, 1);
      assert.match(c.warnings[0] ?? '', pattern);
    });
  }
  // The agent passes every default; only values that differ from them may warn.
  const quiet: [string, Record<string, string>][] = [
    ['the local store', { imageName: 'app' }],
    [
      'the Azure store with a connection string',
      { imageName: 'app', cacheBackend: 'azureBlob', storageConnectionString: 'AccountName=a;AccountKey=k' },
    ],
    ['a registry cache', { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'r.example/app:cache' }],
    ['the directory backend', { imageName: 'app', cacheBackend: 'directory' }],
    ['no cache', { imageName: 'app', cacheBackend: 'none' }],
    ['the docker driver', { imageName: 'app', driver: 'docker' }],
    [
      'a default written out by hand',
      {
        imageName: 'app',
        storageContainer: 'buildx-cache',
        cacheDir: '$(Pipeline.Workspace)/.buildx-cache',
        localStorePath: '/aw/_buildx_cache_store',
        retentionDays: '7',
        cacheScope: 'branch',
      },
    ],
  ];
  for (const [name, inputs] of quiet) {
    it(`does not warn with every other input at its default, as the agent passes it: ${name}`, () =>
      assert.deepEqual(readAsAgent(inputs).warnings, []));
  }
  it('still warns as the agent passes inputs, naming only the inputs that were set', () => {
    assert.deepEqual(
      readAsAgent({ imageName: 'app', cacheBackend: 'directory', cacheKey: 'k', storageContainer: 'other' }).warnings.map((w) =>
        w.replace(/^.*no effect: /, ''),
      ),
      ['cacheKey, storageContainer.'],
    );
    assert.deepEqual(
      readAsAgent({ imageName: 'app', driver: 'docker', buildkitdConfig: 'buildkitd.toml' }).warnings.map((w) =>
        w.replace(/^.*no effect: /, ''),
      ),
      ['buildkitdConfig.'],
    );
  });
  it('names a missing file as the pipeline wrote it, though the agent passes it rooted', () => {
    assert.throws(
      () => readAsAgent({ imageName: 'app', dockerfile: 'nope/Dockerfile' }),
      /no Dockerfile at 'nope\/Dockerfile' \(resolved to /,
    );
    assert.throws(
      () => readAsAgent({ imageName: 'app', buildkitdConfig: 'conf/buildkitd.toml' }),
      /no file at 'conf\/buildkitd\.toml' \(resolved to /,
    );
  });

  it('reads the defaults the agent passed as the defaults', () => {
    const c = readAsAgent({ imageName: 'app' });
    assert.deepEqual(
      [c.build.dockerfile, c.cache.dir, c.cache.storePath, c.builder.buildkitdConfig],
      [path.join(ws, 'Dockerfile'), '/pw/.buildx-cache', '/aw/_buildx_cache_store', undefined],
    );
  });

  it('does not warn about a cache folder inside the context when there is no cache', () => {
    assert.deepEqual(read({ imageName: 'app', cacheDir: '.cache', cacheBackend: 'none' }).warnings, []);
  });

  // Each bad value must fail, before anything runs, with an InputError that names the input, has the
  // message of its key in task.json, and says what to write instead. The inputs reach the task as the
  // agent passes them (every default filled in), and the key and restore keys are resolved against
  // the files: this is the one table of input errors (the mock-run suite shows that the step stops
  // on one before docker runs).
  const invalid: [Record<string, string>, string, string, RegExp?][] = [
    [{ imageName: 'app', dockerfile: 'nope/Dockerfile' }, 'dockerfile', 'InputDockerfileMissing', /no Dockerfile at 'nope\/Dockerfile'/],
    [{ imageName: 'app', buildContext: 'missing' }, 'buildContext', 'InputContextMissing', /is not a folder/],
    [{}, 'imageName', 'InputImageNameRequired', /required for output 'docker'.*cacheOnly/],
    [{ output: 'registry' }, 'imageName', 'InputImageNameRequired', /required for output 'registry'/],
    [{ imageName: 'My/App' }, 'imageName', 'InputImageNameUppercase', /capital letters.*'my\/app'/],
    [{ imageName: 'app:1.0' }, 'imageName', 'InputImageNameHasTag', /tag or digest.*'tags' input/],
    [{ imageName: `app@sha256:${'a'.repeat(64)}` }, 'imageName', 'InputImageNameHasTag', /tag or digest/],
    [{ imageName: 'a//b' }, 'imageName', 'InputImageNameInvalid', /not a valid repository name/],
    [{ imageName: 'bad_host!/app' }, 'imageName', 'InputImageNameInvalid', /not a valid repository name/],
    [{ imageName: 'app', tags: 'ok\nnot ok' }, 'tags', 'InputTagInvalid', /line 2, 'not ok'/],
    [{ imageName: 'app', tags: '-dash' }, 'tags', 'InputTagInvalid', /not a valid tag/],
    [{ imageName: 'app', tags: 'x'.repeat(129) }, 'tags', 'InputTagInvalid', /not a valid tag/],
    [{ output: 'cacheOnly', tags: 'v1' }, 'tags', 'InputTagsWithoutImage', /need an image name/],
    [{ imageName: 'app', platforms: 'amd64' }, 'platforms', 'InputPlatformInvalid', /'amd64' is not a platform/],
    [{ imageName: 'app', target: 'two words' }, 'target', 'InputTargetInvalid', /not a stage name/],
    [{ imageName: 'app', buildArgs: '=1' }, 'buildArgs', 'InputKeyValueInvalid', /line 1, '=1', is not KEY=VALUE/],
    [{ imageName: 'app', buildArgs: 'A B=1' }, 'buildArgs', 'InputKeyValueInvalid', /not KEY=VALUE/],
    [{ imageName: 'app', labels: 'justakey' }, 'labels', 'InputKeyValueInvalid', /not KEY=VALUE/],
    [{ imageName: 'app', secrets: 'novalue' }, 'secrets', 'InputSecretInvalid', /line 1 is not a secret/],
    [{ imageName: 'app', secrets: 'bad id=1' }, 'secrets', 'InputSecretInvalid', /line 1 is not a secret/],
    [{ imageName: 'app', secrets: 'a=1\na=2' }, 'secrets', 'InputSecretDuplicate', /'a' is given twice/],
    [{ imageName: 'app', secrets: 'a=' }, 'secrets', 'InputSecretEmpty', /'a' has an empty value/],
    [{ imageName: 'app', secrets: 'a=$(NPM_TOKEN)' }, 'secrets', 'InputSecretUnexpanded', /not defined/],
    [{ imageName: 'app', secrets: 'vault:a=x' }, 'secrets', 'InputSecretInvalid', /line 1 is not a secret/],
    [{ imageName: 'app', secrets: 'env:a=NOT SET' }, 'secrets', 'InputSecretEnvName', /'NOT SET' is not an environment variable name/],
    [
      { imageName: 'app', secrets: 'env:a=UNSET_VAR' },
      'secrets',
      'InputSecretEnvUnset',
      /reads the environment variable UNSET_VAR, which is not set for this step/,
    ],
    [
      { imageName: 'app', secrets: 'file:a=missing.txt' },
      'secrets',
      'InputSecretFileMissing',
      /reads the file 'missing.txt' .* which does not exist/,
    ],
    [{ imageName: 'app', secrets: 'a=1\nenv:a=NPM_TOKEN' }, 'secrets', 'InputSecretDuplicate', /'a' is given twice/],
    [{ imageName: 'app', ssh: 'bad id' }, 'ssh', 'InputSshInvalid', /line 1, 'bad id', is not an SSH forward/],
    [{ imageName: 'app', ssh: 'github=' }, 'ssh', 'InputSshInvalid', /is not an SSH forward/],
    [{ imageName: 'app', ssh: 'github=keys/none' }, 'ssh', 'InputSshKeyMissing', /'github' forwards 'keys\/none'.*does not exist/],
    [{ imageName: 'app', provenance: 'maximal' }, 'provenance', 'InputAttestationInvalid', /'maximal' is not an attestation setting/],
    [{ imageName: 'app', sbom: 'generator = x' }, 'sbom', 'InputAttestationInvalid', /not an attestation setting/],
    [{ imageName: 'app', annotations: 'no-value' }, 'annotations', 'InputAnnotationInvalid', /line 1, 'no-value', is not an annotation/],
    [{ imageName: 'app', annotations: 'layer:a=b' }, 'annotations', 'InputAnnotationInvalid', /is not an annotation/],
    [{ imageName: 'app', annotations: 'a key=b' }, 'annotations', 'InputAnnotationInvalid', /is not an annotation/],
    [
      { imageName: 'app', buildContexts: 'novalue' },
      'buildContexts',
      'InputBuildContextInvalid',
      /line 1, 'novalue', is not a named build context/,
    ],
    [{ imageName: 'app', buildContexts: 'x=' }, 'buildContexts', 'InputBuildContextInvalid', /is not a named build context/],
    [
      { imageName: 'app', buildContexts: 'assets=nowhere' },
      'buildContexts',
      'InputBuildContextMissing',
      /'assets' is the folder 'nowhere'.*does not exist/,
    ],
    [
      { imageName: 'app', cacheFrom: 'type=ftp,ref=x' },
      'cacheFrom',
      'InputCacheFromInvalid',
      /line 1, 'type=ftp,ref=x', is not a cache source/,
    ],
    [{ imageName: 'app', cacheFrom: 'ref=r/app:c' }, 'cacheFrom', 'InputCacheFromInvalid', /is not a cache source/],
    [{ imageName: 'app', cacheFrom: 'not a ref' }, 'cacheFrom', 'InputCacheFromInvalid', /is not a cache source/],
    [{ imageName: 'app', addPipelineData: 'yes' }, 'addPipelineData', 'InputBoolInvalid', /not true or false/],
    [
      { imageName: 'app', buildkitdConfig: 'buildkitd.toml', buildkitdConfigInline: '[worker.oci]' },
      'buildkitdConfigInline',
      'InputBuildkitdConfigBoth',
      /both set/,
    ],
    [{ imageName: 'app', additionalArguments: '--x | tee' }, 'additionalArguments', 'InputArgumentsOperator', /shell operator '\|'/],
    [{ imageName: 'app', additionalArguments: '--x > out' }, 'additionalArguments', 'InputArgumentsOperator', /shell operator '>'/],
    [{ imageName: 'app', noCache: 'yes' }, 'noCache', 'InputBoolInvalid', /'yes' is not true or false/],
    [{ imageName: 'app', pull: '1' }, 'pull', 'InputBoolInvalid', /not true or false/],
    [
      { imageName: 'app', output: 'push' },
      'output',
      'InputPickInvalid',
      /'push' is not one of: docker, registry, oci, tar, cacheOnly, custom/,
    ],
    [{ imageName: 'app', output: 'tar' }, 'outputPath', 'InputOutputPathRequired', /output 'tar' writes a file/],
    [{ output: 'custom' }, 'outputs', 'InputOutputsRequired', /at least one --output spec/],
    [
      { imageName: 'app', cacheBackend: 's3' },
      'cacheBackend',
      'InputPickInvalid',
      /not one of: local, azureBlob, directory, registry, none/,
    ],
    [
      { imageName: 'app', cacheBackend: 'azureBlob' },
      'azureSubscription',
      'InputAzureAuthRequired',
      /needs either azureSubscription .* or storageConnectionString/,
    ],
    [
      { imageName: 'app', cacheBackend: 'azureBlob', storageAuth: 'connectionString', azureSubscription: 'arm' },
      'storageConnectionString',
      'InputAzureConnectionStringRequired',
      /storageAuth 'connectionString' needs storageConnectionString/,
    ],
    [
      { imageName: 'app', cacheBackend: 'azureBlob', storageAuth: 'sas', storageConnectionString: 'x' },
      'storageAuth',
      'InputPickInvalid',
      /not one of: serviceConnection, connectionString/,
    ],
    [
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'r/app', writeCache: 'no' },
      'writeCache',
      'InputBoolInvalid',
      /not true or false/,
    ],
    [
      { imageName: 'app', cacheBackend: 'azureBlob', azureSubscription: 'arm' },
      'storageAccountUrl',
      'InputAzureAccountUrlRequired',
      /needs the storage account's blob endpoint/,
    ],
    [
      { imageName: 'app', cacheBackend: 'azureBlob', azureSubscription: 'arm', storageAccountUrl: 'http://acct.blob.core.windows.net' },
      'storageAccountUrl',
      'InputAzureAccountUrlInvalid',
      /a service connection needs https/,
    ],
    [
      {
        imageName: 'app',
        cacheBackend: 'azureBlob',
        azureSubscription: 'arm',
        storageAccountUrl: 'https://acct.blob.core.windows.net?sv=1&sig=x',
      },
      'storageAccountUrl',
      'InputAzureAccountUrlInvalid',
      /without a query/,
    ],
    [
      { imageName: 'app', cacheBackend: 'azureBlob', azureSubscription: 'arm', storageAccountUrl: 'acct' },
      'storageAccountUrl',
      'InputAzureAccountUrlInvalid',
      /'acct' is not a storage account URL/,
    ],
    [
      {
        imageName: 'app',
        cacheBackend: 'azureBlob',
        azureSubscription: 'arm',
        storageAccountUrl: 'https://a.blob.core.windows.net',
        storageContainer: 'Build_Cache',
      },
      'storageContainer',
      'InputAzureContainerInvalid',
      /'Build_Cache' is not a valid container name/,
    ],
    [
      {
        imageName: 'app',
        cacheBackend: 'azureBlob',
        azureSubscription: 'arm',
        storageAccountUrl: 'https://a.blob.core.windows.net',
        storageContainer: 'a--b',
      },
      'storageContainer',
      'InputAzureContainerInvalid',
      /not a valid container name/,
    ],
    [
      { imageName: 'app', cacheBackend: 'registry' },
      'registryCacheRef',
      'InputRegistryCacheRefRequired',
      /needs the image reference to keep the cache at/,
    ],
    [
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'My/App:cache' },
      'registryCacheRef',
      'InputReferenceInvalid',
      /'My\/App:cache' is not an image reference/,
    ],
    [
      { imageName: 'app', cacheBackend: 'registry', registryCacheRef: 'app:bad tag' },
      'registryCacheRef',
      'InputReferenceInvalid',
      /is not an image reference/,
    ],
    [{ imageName: 'app', cacheKey: ' | | ' }, 'cacheKey', 'InputKeyInvalid', /has no segment/],
    [
      { imageName: 'app', cacheKey: 'buildx\n./Dockerfile', restoreKeys: 'buildx' },
      'cacheKey',
      'InputKeyOldFormatRestoreKeys',
      /old format.*cannot be combined with restore keys/,
    ],
    [{ imageName: 'app', cacheKey: 'a | **' }, 'cacheKey', 'InputKeyInvalid', /'\*\*' is a reserved segment/],
    [{ imageName: 'app', cacheKey: "a | 'q'" }, 'cacheKey', 'InputKeyInvalid', /cannot start with '/],
    [{ imageName: 'app', restoreKeys: 'ok\n*' }, 'restoreKeys', 'InputKeyInvalid', /'\*' is a reserved segment/],
    [{ imageName: 'app', cacheKey: 'k | !only/excluded.txt' }, 'cacheKey', 'InputKeyInvalid', /only excludes/],
    [{ imageName: 'app', retentionDays: 'week' }, 'retentionDays', 'InputRetentionInvalid', /not a number of days/],
    [{ imageName: 'app', retentionDays: '0' }, 'retentionDays', 'InputRetentionInvalid', /not a number of days/],
    [{ imageName: 'app', retentionDays: '-3' }, 'retentionDays', 'InputRetentionInvalid', /not a number of days/],
    [{ imageName: 'app', cacheHitVar: 'has space' }, 'cacheHitVar', 'InputHitVarInvalid', /not a variable name/],
    [{ imageName: 'app', cacheHitVar: 'secret.x' }, 'cacheHitVar', 'InputHitVarInvalid', /not a variable name/],
    [{ imageName: 'app', saveCache: 'sometimes' }, 'saveCache', 'InputPickInvalid', /not one of: onSuccess, always, afterBuild, never/],
    [{ imageName: 'app', cacheScope: 'global' }, 'cacheScope', 'InputPickInvalid', /not one of: branch, shared/],
    [{ imageName: 'app', cacheTransport: 'registry' }, 'cacheTransport', 'InputPickInvalid', /not one of: auto, direct, folder/],
    [{ imageName: 'app', failOnCacheError: 'yes' }, 'failOnCacheError', 'InputBoolInvalid', /not true or false/],
    [{ imageName: 'app', localStorePath: '$(Nope)/store' }, 'localStorePath', 'InputMacroUndefined', /Nope, which is not defined/],
    [{ imageName: 'app', cacheMode: 'all' }, 'cacheMode', 'InputPickInvalid', /not one of: max, min/],
    [{ imageName: 'app', cacheCompression: 'lz4' }, 'cacheCompression', 'InputPickInvalid', /not one of: gzip, zstd, uncompressed/],
    [{ imageName: 'app', cacheDir: '$(No.Such.Var)/cache' }, 'cacheDir', 'InputMacroUndefined', /No.Such.Var, which is not defined/],
    [
      { imageName: 'app', driver: 'podman' },
      'driver',
      'InputPickInvalid',
      /not one of: auto, docker-container, docker, kubernetes, remote/,
    ],
    [{ imageName: 'app', builderName: '1st' }, 'builderName', 'InputBuilderNameInvalid', /Start with a letter/],
    [{ imageName: 'app', driverOptions: 'network' }, 'driverOptions', 'InputKeyValueInvalid', /not KEY=VALUE/],
    [{ imageName: 'app', buildkitdConfig: 'missing.toml' }, 'buildkitdConfig', 'InputBuildkitdConfigMissing', /no file at 'missing.toml'/],
    [{ imageName: 'app', driver: 'remote' }, 'endpoint', 'InputEndpointRequired', /remote driver needs the BuildKit address/],
    [{ imageName: 'app', removeBuilder: 'maybe' }, 'removeBuilder', 'InputBoolInvalid', /not true or false/],
    [{ imageName: 'app', builderLifetime: 'forever' }, 'builderLifetime', 'InputPickInvalid', /not one of: auto, job, agent/],
    [{ imageName: 'app', builderKeepStorage: 'ten gigabytes' }, 'builderKeepStorage', 'InputKeepStorageInvalid', /not a size.*'10GB'/],
    [{ imageName: 'app', builderKeepStorage: '-1GB' }, 'builderKeepStorage', 'InputKeepStorageInvalid', /not a size/],
    [
      { imageName: 'app', buildxVersion: '0.19' },
      'buildxVersion',
      'InputBuildxVersionInvalid',
      /not a buildx version.*'latest' or a version such as '0\.19\.2'/,
    ],
    [{ imageName: 'app', buildxVersion: 'newest' }, 'buildxVersion', 'InputBuildxVersionInvalid', /not a buildx version/],
    [
      { imageName: 'app', buildxVersion: 'latest', buildxDownloadUrl: 'ftp://mirror' },
      'buildxDownloadUrl',
      'InputDownloadUrlInvalid',
      /not an http or https URL/,
    ],
    [{ imageName: 'app', ssh: 'default', SSH_AUTH_SOCK: '' }, 'ssh', 'InputSshNoAgent'],
    [{ imageName: 'app', cacheKey: 'k | missing/*.lock' }, 'cacheKey', 'InputKeyNoMatch'],
    [{ imageName: 'app', cacheKey: 'k | deps.lock', restoreKeys: 'k | nothing.lock' }, 'restoreKeys', 'InputKeyNoMatch'],
  ];
  for (const [given, input, key, pattern] of invalid) {
    it(`rejects ${input}: ${JSON.stringify(given)} (${key})`, async () => {
      await assert.rejects(readAndResolve(given), (err: unknown) => {
        assert.ok(err instanceof InputError, String(err));
        assert.equal(err.input, input);
        assert.ok(err.message.startsWith(`Input '${input}': `), err.message);
        assert.match(err.message.slice(`Input '${input}': `.length), messagePattern(key));
        if (pattern !== undefined) assert.match(err.message, pattern);
        return true;
      });
    });
  }

  it('needs an ssh-agent for a default forward', () => {
    assert.throws(
      () => readConfig(source({ imageName: 'app', ssh: 'default' }, {}, {})),
      /'default' forwards the step's ssh-agent, but SSH_AUTH_SOCK is not set/,
    );
  });

  it('never puts a secret value in an error message', () => {
    for (const secrets of ['tok=hunter2\ntok=hunter2', 'bad id=hunter2', ' =hunter2', 'vault:tok=hunter2']) {
      assert.throws(
        () => read({ imageName: 'app', secrets }),
        (err: Error) => !err.message.includes('hunter2'),
      );
    }
  });

  it('keeps the storage connection string out of the configuration, which goes into the task state', () => {
    const c = read({ imageName: 'app', cacheBackend: 'azureBlob', storageConnectionString: 'AccountName=a;AccountKey=hunter2' });
    assert.ok(!JSON.stringify(c).includes('hunter2'));
  });
});

describe('config: splitting additionalArguments with shell rules', () => {
  const cases: [string, string[]][] = [
    ['', []],
    ['   ', []],
    ['--a b', ['--a', 'b']],
    [`--label 'a b' --x "c d"`, ['--label', 'a b', '--x', 'c d']],
    [String.raw`a\ b`, ['a b']],
    [`--build-arg X='a"b'`, ['--build-arg', 'X=a"b']],
    ['--build-arg HOME=$HOME', ['--build-arg', 'HOME=$HOME']],
    ['--platform=linux/*', ['--platform=linux/*']],
    ['--x y # a comment', ['--x', 'y']],
    ['--annotation "index:t=my app"', ['--annotation', 'index:t=my app']],
  ];
  for (const [text, words] of cases) {
    it(JSON.stringify(text), () => assert.deepEqual(splitArguments(text), words));
  }
  for (const text of ['a && b', 'a; b', 'a | b', 'a > b', 'a < b', 'a & b']) {
    it(`rejects ${JSON.stringify(text)}`, () => assert.throws(() => splitArguments(text), InputError));
  }
});
