import * as assert from 'assert/strict';
import {
  builderOnlyInputs,
  chooseDriver,
  describeDriver,
  mayBeDocker,
  type DriverChoice,
} from '../../tasks/DockerBuildxCacheV1/src/docker/driver';
import type { BuilderConfig, DriverSetting } from '../../tasks/DockerBuildxCacheV1/src/config/types';

const builder = (driver: DriverSetting, extra: Partial<BuilderConfig> = {}): BuilderConfig => ({
  driver,
  driverOptions: [],
  remove: true,
  lifetime: 'auto',
  ...extra,
});

describe('driver: auto and the explicit drivers', () => {
  // the driver input and the builder inputs set, the engine's image store (true: containerd) → the driver and why
  const table: [DriverSetting, Partial<BuilderConfig>, boolean | undefined, DriverChoice][] = [
    ['auto', {}, true, { driver: 'docker', reason: { kind: 'store', store: 'containerd' } }],
    ['auto', {}, false, { driver: 'docker-container', reason: { kind: 'store', store: 'classic' } }],
    ['auto', {}, undefined, { driver: 'docker-container', reason: { kind: 'store', store: 'unknown' } }],
    [
      'auto',
      { driverOptions: ['network=host'] },
      true,
      { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['driverOptions'] } },
    ],
    [
      'auto',
      { buildkitdFlags: '--debug' },
      true,
      { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['buildkitdFlags'] } },
    ],
    [
      'auto',
      { buildkitdConfig: '/ws/buildkitd.toml' },
      true,
      { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['buildkitdConfig'] } },
    ],
    ['auto', { endpoint: 'other-context' }, true, { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['endpoint'] } }],
    [
      'auto',
      { buildkitdConfigText: '[worker.oci]' },
      true,
      { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['buildkitdConfigInline'] } },
    ],
    [
      'auto',
      { buildkitdConfigText: '[worker.oci]', buildkitdConfig: '/tmp/job/buildkitd.toml' },
      true,
      { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['buildkitdConfigInline'] } },
    ],
    ['auto', { name: 'shared-builder' }, true, { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['builderName'] } }],
    [
      'auto',
      { driverOptions: ['network=host'], buildkitdConfig: '/ws/b.toml' },
      false,
      { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['driverOptions', 'buildkitdConfig'] } },
    ],
    ['docker', {}, false, { driver: 'docker', reason: { kind: 'input' } }],
    ['docker', { driverOptions: ['network=host'] }, true, { driver: 'docker', reason: { kind: 'input' } }],
    ['docker-container', {}, true, { driver: 'docker-container', reason: { kind: 'input' } }],
    ['kubernetes', {}, undefined, { driver: 'kubernetes', reason: { kind: 'input' } }],
    ['remote', { endpoint: 'tcp://bk:1234' }, undefined, { driver: 'remote', reason: { kind: 'input' } }],
  ];
  for (const [driver, extra, store, expected] of table) {
    it(`${driver} ${JSON.stringify(extra)}, store ${String(store)} → ${expected.driver} (${expected.reason.kind})`, () => {
      assert.deepEqual(chooseDriver(builder(driver, extra), store), expected);
    });
  }

  // mayBeDocker decides whether the preflight asks for the image store and the engine's builder is looked at early.
  const may: [DriverSetting, Partial<BuilderConfig>, boolean][] = [
    ['auto', {}, true],
    ['docker', {}, true],
    ['docker', { endpoint: 'ctx' }, true],
    ['auto', { endpoint: 'ctx' }, false],
    ['docker-container', {}, false],
    ['remote', { endpoint: 'tcp://bk:1234' }, false],
  ];
  for (const [driver, extra, expected] of may) {
    it(`may build with the docker driver: ${driver} ${JSON.stringify(extra)} → ${String(expected)}`, () =>
      assert.equal(mayBeDocker(builder(driver, extra)), expected));
  }

  it('names the builder-only inputs in the order of the task', () => {
    assert.deepEqual(
      builderOnlyInputs(
        builder('auto', { name: 'b', driverOptions: ['a=b'], buildkitdFlags: '--debug', buildkitdConfig: '/c', endpoint: 'e' }),
      ),
      ['builderName', 'driverOptions', 'buildkitdFlags', 'buildkitdConfig', 'endpoint'],
    );
  });

  const texts: [DriverChoice, RegExp][] = [
    [
      { driver: 'docker', reason: { kind: 'store', store: 'containerd' } },
      /^docker \(auto\), because the engine uses the containerd image store: .*no BuildKit image to pull and no image to load$/,
    ],
    [
      { driver: 'docker-container', reason: { kind: 'store', store: 'classic' } },
      /^docker-container \(auto\), because the engine uses the classic image store, with which the docker driver cannot export cache$/,
    ],
    [
      { driver: 'docker-container', reason: { kind: 'store', store: 'unknown' } },
      /^docker-container \(auto\), because the engine did not say which image store it uses$/,
    ],
    [
      { driver: 'docker-container', reason: { kind: 'builderInputs', inputs: ['driverOptions', 'buildkitdConfig'] } },
      /^docker-container \(auto\), because driverOptions, buildkitdConfig only apply to a builder of its own$/,
    ],
    [{ driver: 'remote', reason: { kind: 'input' } }, /^remote, as the driver input says$/],
  ];
  for (const [choice, text] of texts)
    it(`says why: ${choice.driver} (${choice.reason.kind})`, () => assert.match(describeDriver(choice), text));
});
