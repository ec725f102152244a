import * as assert from 'assert/strict';
import { CACHE_CONFIG_TYPE, cacheConfigOf, finalChain, finalLayers } from '../../tasks/DockerBuildxCacheV1/src/oci/cache-config';

const L = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`;
/** Layers 0..n-1 on the parents given (-1: a base layer). */
const stack = (parents: readonly number[]): { blob: string; parent: number }[] => parents.map((parent, i) => ({ blob: L(i), parent }));
const link = (...records: number[]): { link: number }[][] => records.map((r) => [{ link: r }]);

/**
 * Measured: a cold build of the benchmark's Dockerfile (FROM, WORKDIR, COPY deps.lock, RUN deps, COPY src/, RUN app),
 * mode=max. The COPY src/ layer (4) has no `parent`: Go's omitempty leaves out 0, the RUN deps layer under it.
 */
const COLD_BUILD = {
  layers: [
    { blob: L(0), parent: 2 },
    { blob: L(1), parent: 5 },
    { blob: L(2), parent: 1 },
    { blob: L(3), parent: 4 },
    { blob: L(4) },
    { blob: L(5), parent: -1 },
  ],
  records: [
    {},
    { layers: [{ layer: 2 }], inputs: [[{ link: 6 }], [{ link: 0 }]] },
    {},
    {},
    {},
    { layers: [{ layer: 4 }], inputs: [[{ link: 8 }], [{ link: 2 }]] },
    { layers: [{ layer: 1 }], inputs: [[{ link: 3 }, { link: 4 }]] },
    { layers: [{ layer: 3 }], inputs: [[{ selector: 'sha256:x', link: 5 }]] },
    { layers: [{ layer: 0 }], inputs: [[{ selector: 'sha256:x', link: 1 }]] },
  ],
};

describe('cache config: the layers of the last results', () => {
  // the config → the layers it names as its last results' chains (undefined: it cannot tell)
  const cases: [string, unknown, string[] | undefined][] = [
    [
      'a layer without a parent sits on layer 0; -1 is a base',
      {
        layers: [{ blob: L(0), parent: -1 }, { blob: L(1) }, { blob: L(2), parent: 1 }, { blob: L(3), parent: -1 }],
        records: [{ layers: [{ layer: 2 }] }],
      },
      [L(0), L(1), L(2)],
    ],
    [
      'one stage: the last step is the leaf, its chain every layer',
      {
        layers: stack([-1, 0, 1]),
        records: [{ layers: [{ layer: 0 }] }, { layers: [{ layer: 1 }], inputs: link(0) }, { layers: [{ layer: 2 }], inputs: link(1) }],
      },
      [L(0), L(1), L(2)],
    ],
    [
      'two stages: the build stage feeds the last one (COPY --from), so only the last one’s chain',
      {
        // 0 toolchain, 1 deps on it (the build stage); 2 base, 3 the copy on the base (the last stage)
        layers: stack([-1, 0, -1, 2]),
        records: [
          { layers: [{ layer: 0 }] },
          { layers: [{ layer: 1 }], inputs: link(0) },
          { layers: [{ layer: 2 }] },
          { layers: [{ layer: 3 }], inputs: [[{ link: 2 }], [{ link: 1, selector: 'sha256:x' }]] },
        ],
      },
      [L(2), L(3)],
    ],
    [
      'a real cold build: every layer of the image, through a parent left out for layer 0',
      COLD_BUILD,
      [L(0), L(1), L(2), L(3), L(4), L(5)],
    ],
    [
      'records without results (sources, the context) do not count',
      { layers: stack([-1]), records: [{ digest: 'sha256:ctx' }, { layers: [{ layer: 0 }], inputs: link(0) }] },
      [L(0)],
    ],
    [
      'chained results: each layer of the chain and its parents',
      { layers: stack([-1, 0, -1]), records: [{ chains: [{ layers: [1, 2] }] }] },
      [L(0), L(1), L(2)],
    ],
    [
      'a cycle of parents ends',
      {
        layers: [
          { blob: L(0), parent: 1 },
          { blob: L(1), parent: 0 },
        ],
        records: [{ layers: [{ layer: 0 }] }],
      },
      [L(0), L(1)],
    ],
    ['a config without records (the fixtures’ shape)', { layers: stack([-1]) }, undefined],
    ['no leaf with a layer', { layers: stack([-1]), records: [{ digest: 'sha256:ctx' }] }, undefined],
    ['a result beyond the layers', { layers: stack([-1]), records: [{ layers: [{ layer: 5 }] }] }, undefined],
    ['a layer without its blob', { layers: [{ parent: -1 }], records: [{ layers: [{ layer: 0 }] }] }, undefined],
    ['not an object', ['layers'], undefined],
    ['null', null, undefined],
  ];
  for (const [name, config, expected] of cases)
    it(name, () => {
      const got = finalLayers(config);
      assert.deepEqual(got === undefined ? undefined : [...got].sort(), expected?.slice().sort());
    });
});

describe("cache config: the last result's layer chain, base first", () => {
  // the config → the chain (undefined: it cannot tell)
  const cases: [string, unknown, string[] | undefined][] = [
    ['the measured cold build: the image, FROM first', COLD_BUILD, [L(5), L(1), L(2), L(0), L(4), L(3)]],
    ['one chain', { layers: stack([-1, 0, 1]), records: [{ layers: [{ layer: 2 }] }] }, [L(0), L(1), L(2)]],
    [
      'two last results: the longer chain',
      { layers: stack([-1, 0, -1]), records: [{ layers: [{ layer: 2 }] }, { layers: [{ layer: 1 }] }] },
      [L(0), L(1)],
    ],
    ['a result beyond the layers', { layers: stack([-1]), records: [{ layers: [{ layer: 5 }] }] }, undefined],
    ['no leaf with a layer', { layers: stack([-1]), records: [{ digest: 'sha256:ctx' }] }, undefined],
    ['not an object', 'x', undefined],
  ];
  for (const [name, config, expected] of cases) it(name, () => assert.deepEqual(finalChain(config), expected));
});

describe('cache config: where a cache root names it', () => {
  const config = { mediaType: CACHE_CONFIG_TYPE, digest: L(9), size: 42 };
  const cases: [string, string, typeof config | undefined][] = [
    ['the config of an image manifest (image-manifest=true)', JSON.stringify({ schemaVersion: 2, config, layers: [] }), config],
    [
      'an entry of a cache index',
      JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'x', digest: L(1), size: 1 }, config] }),
      config,
    ],
    [
      'an image config is not one',
      JSON.stringify({ config: { ...config, mediaType: 'application/vnd.oci.image.config.v1+json' } }),
      undefined,
    ],
    ['not JSON', '{', undefined],
  ];
  for (const [name, root, expected] of cases)
    it(name, () => assert.deepEqual(cacheConfigOf({ digest: L(0), size: root.length }, Buffer.from(root)), expected));
});
