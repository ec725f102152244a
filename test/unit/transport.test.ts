import * as assert from 'assert/strict';
import {
  chooseTransport,
  credsStoreOf,
  describeTransportReason,
  instanceOnHostNetwork,
  intendedTransport,
  isLocalAddress,
  type ReachFacts,
  type TransportChoice,
} from '../../tasks/DockerBuildxCacheV1/src/cache/transport';
import type { CacheBackend, CacheTransportSetting } from '../../tasks/DockerBuildxCacheV1/src/config/types';

const facts = (driver: ReachFacts['driver'], extra: Partial<ReachFacts> = {}): ReachFacts => ({
  driver,
  builder: driver === 'docker' ? 'default' : 'b1',
  hostNetwork: false,
  ...extra,
});
const direct = (driver: ReachFacts['driver'], builder = driver === 'docker' ? 'default' : 'b1'): TransportChoice => ({
  transport: 'direct',
  reason: { kind: 'reaches', driver, builder },
});

describe('cacheTransport: what the job means to use before the builder is known', () => {
  const table: [CacheBackend, CacheTransportSetting, TransportChoice][] = [
    ['azureBlob', 'auto', { transport: 'folder', reason: { kind: 'auto', backend: 'azureBlob' } }],
    ['local', 'auto', { transport: 'folder', reason: { kind: 'auto', backend: 'local' } }],
    ['local', 'direct', { transport: 'direct', reason: { kind: 'input' } }],
    ['azureBlob', 'folder', { transport: 'folder', reason: { kind: 'input' } }],
    ['directory', 'direct', { transport: 'folder', reason: { kind: 'noStore' } }],
    ['registry', 'auto', { transport: 'folder', reason: { kind: 'noStore' } }],
    ['none', 'direct', { transport: 'folder', reason: { kind: 'noStore' } }],
  ];
  for (const [backend, transport, expected] of table)
    it(`${backend}, ${transport} → ${expected.transport}`, () => assert.deepEqual(intendedTransport({ backend, transport }), expected));
});

describe('cacheTransport: direct only with a builder that reaches this machine loopback', () => {
  // the builder → the transport of an azureBlob job with cacheTransport direct
  const table: [string, ReachFacts, TransportChoice][] = [
    ['docker driver, local engine', facts('docker'), direct('docker')],
    ['docker driver, engine on a unix socket', facts('docker', { dockerHost: 'unix:///run/docker.sock' }), direct('docker')],
    ['docker driver, engine on loopback TCP', facts('docker', { dockerHost: 'tcp://127.0.0.1:2375' }), direct('docker')],
    [
      'docker driver, engine elsewhere',
      facts('docker', { dockerHost: 'tcp://10.0.0.5:2376' }),
      { transport: 'folder', reason: { kind: 'remoteEngine', engine: 'tcp://10.0.0.5:2376' } },
    ],
    [
      'docker driver on another context',
      facts('docker', { endpoint: 'prod' }),
      { transport: 'folder', reason: { kind: 'remoteEngine', engine: 'prod' } },
    ],
    ['docker-container on the host network', facts('docker-container', { hostNetwork: true }), direct('docker-container')],
    [
      'docker-container on its own network',
      facts('docker-container'),
      { transport: 'folder', reason: { kind: 'noHostNetwork', builder: 'b1' } },
    ],
    [
      'docker-container on an engine elsewhere',
      facts('docker-container', { hostNetwork: true, dockerHost: 'ssh://build@host' }),
      { transport: 'folder', reason: { kind: 'remoteEngine', engine: 'ssh://build@host' } },
    ],
    [
      'docker-container on a context',
      facts('docker-container', { hostNetwork: true, endpoint: 'other' }),
      { transport: 'folder', reason: { kind: 'remoteEngine', engine: 'other' } },
    ],
    ['remote on a unix socket', facts('remote', { endpoint: 'unix:///run/buildkit/buildkitd.sock' }), direct('remote')],
    ['remote on localhost', facts('remote', { endpoint: 'tcp://localhost:1234' }), direct('remote')],
    [
      'remote elsewhere',
      facts('remote', { endpoint: 'tcp://buildkitd:1234' }),
      { transport: 'folder', reason: { kind: 'remoteAddress', endpoint: 'tcp://buildkitd:1234' } },
    ],
    ['kubernetes', facts('kubernetes'), { transport: 'folder', reason: { kind: 'kubernetes' } }],
    [
      "the build would use a copy of the agent's docker config, which names a credential store",
      facts('docker', { credsStore: 'desktop' }),
      { transport: 'folder', reason: { kind: 'credsStore', store: 'desktop' } },
    ],
    [
      'a credential store, and a builder that reaches loopback',
      facts('docker-container', { hostNetwork: true, credsStore: 'pass' }),
      { transport: 'folder', reason: { kind: 'credsStore', store: 'pass' } },
    ],
    ['an empty credsStore is none', facts('docker', { credsStore: '' }), direct('docker')],
  ];
  for (const [title, reach, expected] of table)
    it(title, () => assert.deepEqual(chooseTransport({ backend: 'azureBlob', transport: 'direct' }, reach), expected));

  it('keeps the folder that was intended, whatever the builder', () =>
    assert.deepEqual(chooseTransport({ backend: 'local', transport: 'auto' }, facts('docker')), {
      transport: 'folder',
      reason: { kind: 'auto', backend: 'local' },
    }));

  it('says every reason in words', () => {
    for (const [, reach] of table) {
      const text = describeTransportReason(chooseTransport({ backend: 'azureBlob', transport: 'direct' }, reach).reason);
      assert.ok(text.length > 10 && !text.includes('%s'), text);
    }
  });
});

describe("credsStoreOf: the agent's docker config.json", () => {
  const table: [string, string, string | undefined][] = [
    ['a credential store', '{"credsStore":"desktop","auths":{}}', 'desktop'],
    ['credential helpers only', '{"credHelpers":{"gcr.io":"gcloud"}}', undefined],
    ['no file', '', undefined],
    ['not JSON', '{', undefined],
    ['null', 'null', undefined],
    ['an empty store', '{"credsStore":""}', undefined],
  ];
  for (const [title, text, expected] of table) it(title, () => assert.equal(credsStoreOf(text), expected));
});

describe('isLocalAddress', () => {
  const table: [string, boolean][] = [
    ['unix:///var/run/docker.sock', true],
    ['tcp://127.0.0.1:2375', true],
    ['tcp://127.1.2.3:2375', true],
    ['tcp://localhost:1234', true],
    ['tcp://[::1]:1234', true],
    ['tcp://10.1.2.3:2375', false],
    ['tcp://127.0.0.1.example.com:2375', false],
    ['ssh://me@127.0.0.1', false],
    ['npipe:////./pipe/docker_engine', false],
    ['default', false],
  ];
  for (const [address, local] of table) it(`${address} → ${local}`, () => assert.equal(isLocalAddress(address), local));
});

describe('instanceOnHostNetwork: a builder instance as buildx stores it', () => {
  const node = (opts: Record<string, string> | null): unknown => ({
    Name: 'b10',
    Endpoint: 'unix:///var/run/docker.sock',
    DriverOpts: opts,
  });
  const table: [string, string, boolean][] = [
    ['network=host', JSON.stringify({ Name: 'b1', Driver: 'docker-container', Nodes: [node({ network: 'host' })] }), true],
    ['no driver options', JSON.stringify({ Name: 'b1', Driver: 'docker-container', Nodes: [node(null)] }), false],
    ['another network', JSON.stringify({ Name: 'b1', Driver: 'docker-container', Nodes: [node({ network: 'bridge' })] }), false],
    ['one node of two', JSON.stringify({ Name: 'b1', Nodes: [node({ network: 'host' }), node({})] }), false],
    ['no nodes', JSON.stringify({ Name: 'b1', Nodes: null }), false],
    ['not JSON', '{', false],
  ];
  for (const [title, text, expected] of table) it(title, () => assert.equal(instanceOnHostNetwork(text), expected));
});
