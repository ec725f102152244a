import * as assert from 'assert/strict';
import {
  autoTransport,
  autoReasonForDriver,
  chooseTransport,
  credsStoreOf,
  describeTransportReason,
  instanceOnHostNetwork,
  intendedTransport,
  isLocalAddress,
  type AutoFacts,
  type ReachFacts,
  type TransportChoice,
  type TransportReason,
} from '../../tasks/DockerBuildxCacheV1/src/cache/transport';
import type { CacheBackend, CacheTransportSetting, Driver } from '../../tasks/DockerBuildxCacheV1/src/config/types';

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

/** A Microsoft-hosted job's own docker-container builder: what auto picks direct for. */
const hostedJob: AutoFacts = { driver: 'docker-container', lifetime: 'job', driverOptions: [] };
const autoDirect = (backend: 'local' | 'azureBlob', lifetime: 'job' | 'agent' = 'job'): TransportChoice => ({
  transport: 'direct',
  reason: { kind: 'autoOwnBuilder', backend, lifetime },
});
const folder = (reason: TransportChoice['reason']): TransportChoice => ({ transport: 'folder', reason });

describe('cacheTransport: what the job means to use before the builder is known', () => {
  const selfHosted: AutoFacts = { ...hostedJob, lifetime: 'agent' };
  const table: [CacheBackend, CacheTransportSetting, AutoFacts, TransportChoice][] = [
    ['azureBlob', 'auto', hostedJob, autoDirect('azureBlob')],
    ['local', 'auto', hostedJob, autoDirect('local')],
    ['local', 'auto', selfHosted, autoDirect('local', 'agent')],
    ['local', 'direct', selfHosted, { transport: 'direct', reason: { kind: 'input' } }],
    ['azureBlob', 'folder', hostedJob, folder({ kind: 'input' })],
    ['directory', 'direct', hostedJob, folder({ kind: 'noStore' })],
    ['registry', 'auto', hostedJob, folder({ kind: 'noStore' })],
    ['none', 'direct', hostedJob, folder({ kind: 'noStore' })],
  ];
  for (const [backend, transport, facts, expected] of table)
    it(`${backend}, ${transport}, ${facts.lifetime} builder → ${expected.transport}`, () =>
      assert.deepEqual(intendedTransport({ backend, transport }, facts), expected));
});

describe("cacheTransport auto: direct for a docker-container builder of the task's own, else the folder", () => {
  // what differs from a hosted job's own docker-container builder → what auto picks for azureBlob
  const table: [string, Partial<AutoFacts>, TransportChoice][] = [
    ["a hosted agent, the task's builder for the job", {}, autoDirect('azureBlob')],
    ['builderLifetime job, set on a hosted agent', { lifetime: 'job' }, autoDirect('azureBlob')],
    ['the pipeline sets network=host itself', { driverOptions: ['network=host'] }, autoDirect('azureBlob')],
    ['other driver options', { driverOptions: ['image=moby/buildkit:v0.20.0'] }, autoDirect('azureBlob')],
    ['an engine on a unix socket', { dockerHost: 'unix:///var/run/docker.sock' }, autoDirect('azureBlob')],
    ['the docker driver', { driver: 'docker' }, folder({ kind: 'autoDriver', driver: 'docker' })],
    ['the remote driver', { driver: 'remote', endpoint: 'unix:///run/buildkit.sock' }, folder({ kind: 'autoDriver', driver: 'remote' })],
    ['the kubernetes driver', { driver: 'kubernetes' }, folder({ kind: 'autoDriver', driver: 'kubernetes' })],
    ['builderName', { builderName: 'shared' }, folder({ kind: 'autoNamedBuilder', builder: 'shared' })],
    ['the builder the agent keeps (builderLifetime agent)', { lifetime: 'agent' }, autoDirect('azureBlob', 'agent')],
    [
      'a kept builder with network=host in driverOptions',
      { lifetime: 'agent', driverOptions: ['network=host'] },
      autoDirect('azureBlob', 'agent'),
    ],
    [
      'a kept builder with a network of its own',
      { lifetime: 'agent', driverOptions: ['network=build-net'] },
      folder({ kind: 'autoNetwork', option: 'network=build-net' }),
    ],
    [
      'a kept builder on an engine elsewhere',
      { lifetime: 'agent', dockerHost: 'tcp://10.0.0.5:2376' },
      folder({ kind: 'remoteEngine', engine: 'tcp://10.0.0.5:2376' }),
    ],
    [
      'a kept builder that builderName names',
      { lifetime: 'agent', builderName: 'shared' },
      folder({ kind: 'autoNamedBuilder', builder: 'shared' }),
    ],
    [
      'driverOptions names a network',
      { driverOptions: ['network=build-net'] },
      folder({ kind: 'autoNetwork', option: 'network=build-net' }),
    ],
    ['an engine elsewhere', { dockerHost: 'tcp://10.0.0.5:2376' }, folder({ kind: 'remoteEngine', engine: 'tcp://10.0.0.5:2376' })],
    ['an endpoint on another context', { endpoint: 'other' }, folder({ kind: 'remoteEngine', engine: 'other' })],
    ["the agent's docker config has a credential store", { credsStore: 'pass' }, folder({ kind: 'credsStore', store: 'pass' })],
  ];
  for (const [title, extra, expected] of table)
    it(title, () => assert.deepEqual(autoTransport('azureBlob', { ...hostedJob, ...extra }), expected));

  it('says every reason in words', () => {
    for (const [, extra] of table) {
      const text = describeTransportReason(autoTransport('local', { ...hostedJob, ...extra }).reason);
      assert.ok(text.length > 10 && !text.includes('%s'), text);
    }
  });
});

describe("cacheTransport auto: the folder's reason said for the driver the job got", () => {
  const folder = (reason: TransportReason): TransportChoice => ({ transport: 'folder', reason });
  // what auto picked as if for a docker-container builder, the driver the job got → what the log says
  const table: [TransportChoice, Driver, TransportChoice][] = [
    [folder({ kind: 'autoNamedBuilder', builder: 'b' }), 'remote', folder({ kind: 'autoDriver', driver: 'remote' })],
    [folder({ kind: 'autoNamedBuilder', builder: 'b' }), 'docker', folder({ kind: 'autoDriver', driver: 'docker' })],
    [folder({ kind: 'autoNetwork', option: 'network=n' }), 'docker', folder({ kind: 'autoDriver', driver: 'docker' })],
    [folder({ kind: 'autoNamedBuilder', builder: 'b' }), 'docker-container', folder({ kind: 'autoNamedBuilder', builder: 'b' })],
    [folder({ kind: 'autoNetwork', option: 'network=n' }), 'docker-container', folder({ kind: 'autoNetwork', option: 'network=n' })],
    [folder({ kind: 'input' }), 'docker', folder({ kind: 'input' })],
    [folder({ kind: 'credsStore', store: 'pass' }), 'docker', folder({ kind: 'credsStore', store: 'pass' })],
  ];
  for (const [picked, driver, said] of table)
    it(`${picked.reason.kind} with the ${driver} driver`, () => assert.deepEqual(autoReasonForDriver(picked, driver), said));
});

describe('cacheTransport: direct only with a builder that reaches this machine loopback', () => {
  // cacheTransport direct, set by the pipeline
  const asked: TransportChoice = { transport: 'direct', reason: { kind: 'input' } };
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
  for (const [title, reach, expected] of table) it(title, () => assert.deepEqual(chooseTransport(asked, reach), expected));

  it('keeps the folder that was intended, whatever the builder', () =>
    assert.deepEqual(
      chooseTransport(folder({ kind: 'autoDriver', driver: 'docker' }), facts('docker')),
      folder({ kind: 'autoDriver', driver: 'docker' }),
    ));

  it("keeps auto's reason for direct when the builder confirms it", () =>
    assert.deepEqual(chooseTransport(autoDirect('local'), facts('docker-container', { hostNetwork: true })), autoDirect('local')));

  it("falls back from auto's direct when the builder does not reach loopback", () =>
    assert.deepEqual(chooseTransport(autoDirect('local'), facts('docker-container')), folder({ kind: 'noHostNetwork', builder: 'b1' })));

  it('says every reason in words', () => {
    for (const [, reach] of table) {
      const text = describeTransportReason(chooseTransport(asked, reach).reason);
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
