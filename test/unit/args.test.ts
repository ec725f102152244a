import * as assert from 'assert/strict';
import {
  buildArgs,
  createBuilderArgs,
  csvField,
  csvSpec,
  outputArgs,
  type BuildInvocation,
} from '../../tasks/DockerBuildxCacheV1/src/docker/args';
import type { BuildConfig, BuilderConfig, Driver, OutputConfig } from '../../tasks/DockerBuildxCacheV1/src/config/types';

const builderBase: BuilderConfig = { driver: 'docker-container', driverOptions: [], remove: true, lifetime: 'auto' };

describe('buildx create arguments, per driver', () => {
  const cases: [Driver, Partial<BuilderConfig>, string[]][] = [
    ['docker-container', {}, ['buildx', 'create', '--name', 'b1', '--driver', 'docker-container']],
    [
      'docker-container',
      {
        driverOptions: ['network=host', 'image=moby/buildkit:v0.13.2'],
        buildkitdFlags: '--allow-insecure-entitlement network.host',
        buildkitdConfig: '/ws/buildkitd.toml',
      },
      [
        'buildx',
        'create',
        '--name',
        'b1',
        '--driver',
        'docker-container',
        '--driver-opt',
        'network=host',
        '--driver-opt',
        'image=moby/buildkit:v0.13.2',
        '--buildkitd-flags',
        '--allow-insecure-entitlement network.host',
        '--config',
        '/ws/buildkitd.toml',
      ],
    ],
    ['docker-container', { endpoint: 'my-context' }, ['buildx', 'create', '--name', 'b1', '--driver', 'docker-container', 'my-context']],
    // hostNetwork: the builder reaches the registry facade on the host's loopback; a network the user names wins
    [
      'docker-container',
      { hostNetwork: true },
      ['buildx', 'create', '--name', 'b1', '--driver', 'docker-container', '--driver-opt', 'network=host'],
    ],
    [
      'docker-container',
      { hostNetwork: true, driverOptions: ['network=bridge'] },
      ['buildx', 'create', '--name', 'b1', '--driver', 'docker-container', '--driver-opt', 'network=bridge'],
    ],
    [
      'remote',
      { hostNetwork: true, endpoint: 'unix:///run/buildkit.sock' },
      ['buildx', 'create', '--name', 'b1', '--driver', 'remote', 'unix:///run/buildkit.sock'],
    ],
    [
      'kubernetes',
      { driverOptions: ['namespace=buildkit', 'replicas=2'] },
      ['buildx', 'create', '--name', 'b1', '--driver', 'kubernetes', '--driver-opt', 'namespace=buildkit', '--driver-opt', 'replicas=2'],
    ],
    [
      'remote',
      { endpoint: 'tcp://buildkitd:1234', driverOptions: ['cacert=/certs/ca.pem'] },
      ['buildx', 'create', '--name', 'b1', '--driver', 'remote', '--driver-opt', 'cacert=/certs/ca.pem', 'tcp://buildkitd:1234'],
    ],
  ];
  for (const [driver, extra, expected] of cases) {
    it(`${driver} ${JSON.stringify(extra)}`, () =>
      assert.deepEqual(createBuilderArgs({ ...builderBase, ...extra, driver }, 'b1'), expected));
  }
});

describe('buildx build --output arguments, per output kind', () => {
  const cases: [OutputConfig, string[]][] = [
    [{ kind: 'docker', specs: [] }, ['--load']],
    [{ kind: 'registry', specs: [] }, ['--push']],
    [{ kind: 'oci', path: '/out/image.tar', specs: [] }, ['--output', 'type=oci,dest=/out/image.tar']],
    [{ kind: 'tar', path: '/out/fs.tar', specs: [] }, ['--output', 'type=tar,dest=/out/fs.tar']],
    [{ kind: 'oci', path: '/out/a,b.tar', specs: [] }, ['--output', 'type=oci,"dest=/out/a,b.tar"']],
    [{ kind: 'cacheOnly', specs: [] }, ['--output', 'type=cacheonly']],
    [
      { kind: 'custom', specs: ['type=local,dest=out', 'type=image,push=false'] },
      ['--output', 'type=local,dest=out', '--output', 'type=image,push=false'],
    ],
  ];
  for (const [output, expected] of cases) {
    it(output.kind + (output.path ?? ''), () => assert.deepEqual(outputArgs(output), expected));
  }
});

describe('buildx build arguments', () => {
  const minimal: BuildConfig = {
    dockerfile: '/ws/Dockerfile',
    context: '/ws',
    imageName: 'app',
    tags: ['app:latest'],
    buildArgs: [],
    platforms: [],
    labels: [],
    pipelineLabels: [],
    secrets: [],
    ssh: [],
    annotations: [],
    contexts: [],
    cacheFrom: [],
    additionalArguments: [],
    noCache: false,
    pull: false,
  };
  const base: BuildInvocation = {
    builder: 'b1',
    build: minimal,
    output: { kind: 'docker', specs: [] },
    cache: { from: [], to: [] },
    metadataFile: '/tmp/m.json',
    secretFiles: new Map(),
  };
  const head = ['buildx', 'build', '--builder', 'b1', '--progress', 'plain', '--file', '/ws/Dockerfile'];

  const cases: [string, Partial<BuildInvocation>, string[]][] = [
    ['minimal', {}, [...head, '--tag', 'app:latest', '--load', '--metadata-file', '/tmp/m.json', '/ws']],
    [
      'output docker through the facade: a push instead of --load, no tags, no provenance --load would not add',
      { imageVia: '127.0.0.1:9/buildx-cache:image' },
      [
        ...head,
        '--provenance=false',
        '--output',
        'type=image,name=127.0.0.1:9/buildx-cache:image,push=true',
        '--metadata-file',
        '/tmp/m.json',
        '/ws',
      ],
    ],
    [
      'output docker through the facade, provenance asked for: as asked',
      { imageVia: '127.0.0.1:9/buildx-cache:image', build: { ...minimal, provenance: 'mode=max' } },
      [
        ...head,
        '--provenance=mode=max',
        '--output',
        'type=image,name=127.0.0.1:9/buildx-cache:image,push=true',
        '--metadata-file',
        '/tmp/m.json',
        '/ws',
      ],
    ],
    [
      'imageVia with another output: ignored',
      { imageVia: '127.0.0.1:9/buildx-cache:image', output: { kind: 'registry', specs: [] } },
      [...head, '--tag', 'app:latest', '--push', '--metadata-file', '/tmp/m.json', '/ws'],
    ],
    [
      'every build input',
      {
        build: {
          ...minimal,
          tags: ['app:1', 'app:latest'],
          buildArgs: ['A=1', 'B'],
          target: 'runtime',
          platforms: ['linux/amd64', 'linux/arm64'],
          labels: ['org.opencontainers.image.revision=abc'],
          pipelineLabels: ['com.azure.dev.image.build.buildnumber=20240101.1'],
          secrets: [
            { kind: 'value', id: 'npmrc', value: 'never-on-the-command-line' },
            { kind: 'env', id: 'token', env: 'NPM_TOKEN', value: 'nor-this-one' },
            { kind: 'file', id: 'netrc', file: '/ws/.netrc' },
          ],
          ssh: ['default', 'github=/keys/id_ed25519'],
          annotations: ['index:org.opencontainers.image.title=app'],
          contexts: ['base=docker-image://alpine:3.20', 'assets=/ws/assets'],
          provenance: 'mode=max',
          sbom: 'true',
          cacheFrom: ['type=registry,ref=r.example/app:cache-main'],
          additionalArguments: ['--iidfile=/tmp/iid'],
          noCache: true,
          pull: true,
        },
        cache: { from: ['type=local,src=/c'], to: [] },
        secretFiles: new Map([['npmrc', '/tmp/s/secret-0']]),
      },
      [
        ...head,
        '--tag',
        'app:1',
        '--tag',
        'app:latest',
        '--build-arg',
        'A=1',
        '--build-arg',
        'B',
        '--target',
        'runtime',
        '--platform',
        'linux/amd64,linux/arm64',
        '--label',
        'com.azure.dev.image.build.buildnumber=20240101.1',
        '--label',
        'org.opencontainers.image.revision=abc',
        '--annotation',
        'index:org.opencontainers.image.title=app',
        '--secret',
        'id=npmrc,src=/tmp/s/secret-0',
        '--secret',
        'id=token,env=NPM_TOKEN',
        '--secret',
        'id=netrc,src=/ws/.netrc',
        '--ssh',
        'default',
        '--ssh',
        'github=/keys/id_ed25519',
        '--build-context',
        'base=docker-image://alpine:3.20',
        '--build-context',
        'assets=/ws/assets',
        '--provenance=mode=max',
        '--sbom=true',
        '--no-cache',
        '--pull',
        '--cache-from',
        'type=local,src=/c',
        '--cache-from',
        'type=registry,ref=r.example/app:cache-main',
        '--load',
        '--metadata-file',
        '/tmp/m.json',
        '--iidfile=/tmp/iid',
        '/ws',
      ],
    ],
    [
      'a local cache',
      { cache: { from: ['type=local,src=/c'], to: ['type=local,dest=/c.new,mode=max,compression=gzip'] } },
      [
        ...head,
        '--tag',
        'app:latest',
        '--cache-from',
        'type=local,src=/c',
        '--cache-to',
        'type=local,dest=/c.new,mode=max,compression=gzip',
        '--load',
        '--metadata-file',
        '/tmp/m.json',
        '/ws',
      ],
    ],
    [
      'no image name, cache only',
      { build: { ...minimal, imageName: undefined, tags: [] }, output: { kind: 'cacheOnly', specs: [] } },
      [...head, '--output', 'type=cacheonly', '--metadata-file', '/tmp/m.json', '/ws'],
    ],
  ];
  for (const [name, extra, expected] of cases) {
    it(name, () => assert.deepEqual(buildArgs({ ...base, ...extra }), expected));
  }

  it('never puts a secret value on the command line', () => {
    const secrets = [
      { kind: 'value', id: 's', value: 'hunter2' },
      { kind: 'env', id: 'e', env: 'TOKEN', value: 'hunter3' },
    ] as const;
    const args = buildArgs({ ...base, build: { ...minimal, secrets }, secretFiles: new Map([['s', '/tmp/f']]) });
    assert.ok(!/hunter/.test(args.join(' ')));
  });
});

describe('CSV fields of cache and output specs', () => {
  const cases: [string, string][] = [
    ['dest=/a/b', 'dest=/a/b'],
    ['dest=/a,b', '"dest=/a,b"'],
    ['dest=/a"b', '"dest=/a""b"'],
    ['dest=/trail ', '"dest=/trail "'],
  ];
  for (const [field, quoted] of cases) it(JSON.stringify(field), () => assert.equal(csvField(field), quoted));
  it('skips undefined values', () => assert.equal(csvSpec({ type: 'local', src: undefined, dest: '/x' }), 'type=local,dest=/x'));
});
