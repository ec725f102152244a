import * as assert from 'assert/strict';
import {
  agentBuilderName,
  chooseLifetime,
  describeLifetime,
  goesWithMachine,
  type AgentFacts,
  type BuilderShape,
  type LeaveFacts,
  type Lifetime,
  type LifetimeReason,
  type LifetimeSetting,
} from '../../tasks/DockerBuildxCacheV1/src/docker/lifetime';

const CLOUD = 'c3d2d4d6-6a6e-4c7a-9f2a-0b1a2c3d4e5f';
const selfHosted: AgentFacts = { id: '7', name: 'build-vm-1', home: '/opt/agent' };

describe('builder lifetime: the agent kind', () => {
  // the builderLifetime input, what the agent tells the task → the lifetime and why
  const table: [string, LifetimeSetting, AgentFacts, Lifetime, LifetimeReason['kind']][] = [
    ['a self-hosted agent', 'auto', selfHosted, 'agent', 'selfHosted'],
    ['a self-hosted agent with only a name', 'auto', { name: 'build-vm-1' }, 'agent', 'selfHosted'],
    ['a Microsoft-hosted agent: Agent.CloudId', 'auto', { id: '12', name: 'Azure Pipelines 3', cloudId: CLOUD }, 'job', 'cloudId'],
    ['Agent.CloudId with any name', 'auto', { name: 'custom', cloudId: CLOUD }, 'job', 'cloudId'],
    [
      'the hosted images: ImageOS and ImageVersion',
      'auto',
      { name: 'vmss-agent-1', imageOS: 'ubuntu24', imageVersion: '20251123.1.0' },
      'job',
      'hostedImage',
    ],
    ['ImageOS alone is not a hosted image', 'auto', { name: 'vmss-agent-1', imageOS: 'ubuntu24' }, 'agent', 'selfHosted'],
    ['a hosted agent name, before Agent.CloudId: Azure Pipelines N', 'auto', { name: 'Azure Pipelines 12' }, 'job', 'hostedName'],
    ['a hosted agent name, before Agent.CloudId: Hosted Agent', 'auto', { name: 'Hosted Agent' }, 'job', 'hostedName'],
    ['a self-hosted name that only starts like a hosted one', 'auto', { name: 'Azure Pipelines runner on rack 3' }, 'agent', 'selfHosted'],
    ['outside an agent: no name', 'auto', {}, 'job', 'noAgent'],
    ['job on a self-hosted agent', 'job', selfHosted, 'job', 'input'],
    ['agent on a Microsoft-hosted agent', 'agent', { name: 'Azure Pipelines 3', cloudId: CLOUD }, 'agent', 'input'],
  ];
  for (const [name, setting, agent, lifetime, reason] of table) {
    it(`${name}: ${setting} → ${lifetime} (${reason})`, () => {
      const choice = chooseLifetime(setting, agent);
      assert.deepEqual([choice.lifetime, choice.reason.kind], [lifetime, reason]);
      assert.match(
        describeLifetime(choice),
        new RegExp(`^${lifetime}${setting === 'auto' ? ' \\(auto\\), because ' : ', as the builderLifetime input says$'}`),
      );
    });
  }
});

describe("builder lifetime: a job's builder left to the machine it goes with", () => {
  const HOST = 'fv-az123-456';
  const hosted: LeaveFacts = {
    agent: { name: 'Azure Pipelines 3', cloudId: CLOUD },
    driver: 'docker-container',
    engineName: HOST,
    hostname: HOST,
  };
  // the facts → whether the post-job step leaves the builder rather than remove it
  const table: [string, Partial<LeaveFacts>, boolean][] = [
    ['a Microsoft-hosted agent, a docker-container builder on its own engine', {}, true],
    ['a hosted agent name, before Agent.CloudId', { agent: { name: 'Azure Pipelines 12' } }, true],
    ['a self-hosted agent (builderLifetime job)', { agent: selfHosted }, false],
    [
      "the hosted images' ImageOS alone: a scale-set agent may outlive its jobs",
      { agent: { name: 'vmss-1', imageOS: 'ubuntu24', imageVersion: '1' } },
      false,
    ],
    ['outside an agent', { agent: {} }, false],
    ['an engine on another machine (DOCKER_HOST, a docker context)', { engineName: 'build-host-2' }, false],
    ['an engine that did not say its name', { engineName: undefined }, false],
    ['the endpoint input: a builder on the engine it names', { endpoint: 'tcp://build-host-2:2376' }, false],
    ['the remote driver: a daemon elsewhere', { driver: 'remote' }, false],
    ['the kubernetes driver: a deployment in a cluster', { driver: 'kubernetes' }, false],
  ];
  for (const [name, facts, expected] of table) {
    it(`${name}: ${expected ? 'left' : 'removed'}`, () => assert.equal(goesWithMachine({ ...hosted, ...facts }), expected));
  }
});

describe('builder lifetime: the name of the builder an agent keeps', () => {
  const shape: BuilderShape = {
    driver: 'docker-container',
    driverOptions: ['network=host'],
    buildkitdConfigText: '[worker.oci]\n  gc = true\n',
  };
  const base = agentBuilderName(selfHosted, shape);

  it('is a valid builder name, stable across jobs, and tells itself from a job builder', () => {
    assert.match(base, /^buildx-cache-agent-[0-9a-f]{16}$/);
    assert.equal(agentBuilderName({ ...selfHosted }, { ...shape, driverOptions: ['network=host'] }), base);
  });

  // what differs from the base → a different builder
  const different: [string, AgentFacts, BuilderShape][] = [
    ['another agent id', { ...selfHosted, id: '8' }, shape],
    ['another agent name (a second agent on the machine)', { ...selfHosted, name: 'build-vm-2' }, shape],
    ['another agent installation', { ...selfHosted, home: '/opt/agent2' }, shape],
    ['another driver', selfHosted, { ...shape, driver: 'kubernetes' }],
    ['other driver options', selfHosted, { ...shape, driverOptions: ['network=host', 'memory=4g'] }],
    ['no driver options', selfHosted, { ...shape, driverOptions: [] }],
    ['buildkitd flags', selfHosted, { ...shape, buildkitdFlags: '--debug' }],
    ['a changed buildkitd.toml', selfHosted, { ...shape, buildkitdConfigText: '[worker.oci]\n  gc = false\n' }],
    ['no buildkitd.toml', selfHosted, { ...shape, buildkitdConfigText: undefined }],
    ['an endpoint', selfHosted, { ...shape, endpoint: 'other-context' }],
  ];
  for (const [name, agent, other] of different) {
    it(`differs with ${name}`, () => {
      assert.notEqual(agentBuilderName(agent, other), base);
    });
  }
});

describe('builder lifetime: the host network in the name of the builder an agent keeps', () => {
  // A direct job's docker-container builder gets --driver-opt network=host; a folder job's does not.
  const container: BuilderShape = { driver: 'docker-container', driverOptions: [] };
  const name = (shape: Partial<BuilderShape>): string => agentBuilderName(selfHosted, { ...container, ...shape });

  // two shapes → the same builder or not
  const table: [string, Partial<BuilderShape>, Partial<BuilderShape>, 'same' | 'different'][] = [
    ['the host network added, and not', { hostNetwork: true }, { hostNetwork: false }, 'different'],
    ['the host network added, and unset', { hostNetwork: true }, {}, 'different'],
    ['the host network added twice', { hostNetwork: true }, { hostNetwork: true }, 'same'],
    ['not added, and unset (the names agents already keep)', { hostNetwork: false }, {}, 'same'],
    [
      'a network the user names, which wins',
      { hostNetwork: true, driverOptions: ['network=bridge'] },
      { driverOptions: ['network=bridge'] },
      'same',
    ],
    ['another driver, which does not get it', { driver: 'kubernetes', hostNetwork: true }, { driver: 'kubernetes' }, 'same'],
  ];
  for (const [what, a, b, expected] of table) {
    it(`${what}: ${expected}`, () => {
      assert.equal(name(a) === name(b) ? 'same' : 'different', expected);
    });
  }

  it('leaves the name of a builder without it as it was before the host network was in the name', () => {
    // What agentBuilderName gave for this shape before; a builder an agent keeps must not be orphaned.
    assert.equal(name({ hostNetwork: false }), 'buildx-cache-agent-87416aed0f73fba4');
  });
});
