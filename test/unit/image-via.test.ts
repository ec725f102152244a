import * as assert from 'assert/strict';
import { imageVia } from '../../tasks/DockerBuildxCacheV1/src/main-step';
import type { CachePlan } from '../../tasks/DockerBuildxCacheV1/src/cache/plan';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import type { LoadedImage } from '../../tasks/DockerBuildxCacheV1/src/docker/metadata';
import { cleanup } from '../helpers';
import { configIn } from './read-config';

const REF = '127.0.0.1:4321/buildx-cache:image';
const direct = { direct: { cache: { imageRef: REF } } } as unknown as CachePlan;
const readOnly = { direct: { cache: { imageRef: undefined } } } as unknown as CachePlan;
const folder = {} as CachePlan;
const container: LoadedImage = { containerdStore: false, driver: 'docker-container' };

const config = (inputs: Record<string, string>): Config => configIn({ imageName: 'app', ...inputs }).config;

describe('the image through the facade: when (imageVia)', () => {
  afterEach(cleanup);
  // inputs, the plan, how the image reaches the engine → pushed to the facade, or --load
  const table: [string, Record<string, string>, CachePlan, LoadedImage | undefined, boolean][] = [
    ['output docker, direct with an upload, a docker-container builder: the facade', {}, direct, container, true],
    ['one platform: the facade (pulled for it)', { platforms: 'linux/arm64' }, direct, container, true],
    ['two platforms: --load', { platforms: 'linux/amd64,linux/arm64' }, direct, container, false],
    ['output registry: as it is', { output: 'registry' }, direct, container, false],
    ['the docker driver (the engine builds into itself): --load', {}, direct, { containerdStore: true, driver: 'docker' }, false],
    ['a builder on another engine (endpoint): --load', {}, direct, undefined, false],
    ['the folder transport: --load', {}, folder, container, false],
    ['a read-only cache (no upload): --load', {}, readOnly, container, false],
    ['additionalArguments with a tag: --load', { additionalArguments: '-t app:extra' }, direct, container, false],
    ['additionalArguments with --push: --load', { additionalArguments: '--push' }, direct, container, false],
    ['additionalArguments with an output: --load', { additionalArguments: '--output=type=docker' }, direct, container, false],
    ['additionalArguments with attestations: --load', { additionalArguments: '--attest type=sbom' }, direct, container, false],
    [
      'additionalArguments of other kinds: the facade',
      { additionalArguments: '--progress plain --pull --network host' },
      direct,
      container,
      true,
    ],
  ];
  for (const [name, inputs, plan, loaded, pushed] of table)
    it(name, () => assert.equal(imageVia(config(inputs), plan, loaded), pushed ? REF : undefined));
});
