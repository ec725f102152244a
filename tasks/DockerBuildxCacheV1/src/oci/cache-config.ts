import { children, type Descriptor } from './layout';

/** BuildKit's cache config: the layers of a cache and the build records they are the results of. */
export const CACHE_CONFIG_TYPE = 'application/vnd.buildkit.cacheconfig.v0';

/**
 * The cache config's descriptor in a cache root (`root`, read as `bytes`): the config of an image
 * manifest (`image-manifest=true`), or the index's entry of that type (BuildKit's default shape).
 * Undefined when the root names none, or is not a manifest or an index that reads.
 */
export function cacheConfigOf(root: Descriptor, bytes: Buffer): Descriptor | undefined {
  let found: Descriptor | undefined;
  try {
    found = children(root, bytes).find((d) => d.mediaType === CACHE_CONFIG_TYPE);
  } catch {
    return undefined;
  }
  return found === undefined ? undefined : { mediaType: found.mediaType, digest: found.digest, size: found.size };
}

/**
 * The layers of the cache's last results, the ones its image was made of: the layer chains (each
 * result's layer and its parents, down to the base) of the records that no other record takes as
 * an input, the build's final steps. A stage that only feeds another (`COPY --from`, a mount) is an
 * input of it, so its own layers are not among them. Undefined when the config is not one this
 * reads, or names no such layer.
 */
export function finalLayers(config: unknown): Set<string> | undefined {
  const chains = finalChains(config);
  const found = new Set(chains?.flat());
  return found.size > 0 ? found : undefined;
}

/**
 * The layer chain of the cache's last result, base first: of the chains finalLayers reads, the
 * longest (the final image's, when the build made one image). Undefined when the config cannot tell.
 */
export function finalChain(config: unknown): string[] | undefined {
  const chains = finalChains(config);
  return chains?.reduce<string[] | undefined>((longest, c) => (c.length > (longest?.length ?? 0) ? c : longest), undefined);
}

/**
 * Each last result's layer chain, base first.
 *
 * The shape, as BuildKit writes it (solver/remotecache/v1/spec.go): `{"layers": [{"blob": digest,
 * "parent": index}], "records": [{"layers": [{"layer": index}], "chains": [{"layers": [index]}],
 * "inputs": [[{"link": record}]]}]}`. `parent` is -1 for a base layer and is left out when it is 0
 * (Go's omitempty), so a layer without it sits on layer 0.
 */
function finalChains(config: unknown): string[][] | undefined {
  if (!isObject(config) || !Array.isArray(config.layers) || !Array.isArray(config.records)) return undefined;
  const layers = config.layers as unknown[];
  const records = config.records as unknown[];
  if (!records.every(isObject)) return undefined;
  const linked = new Set<number>();
  for (const record of records)
    for (const input of arrayOf(record.inputs))
      for (const link of arrayOf(input)) if (isObject(link) && isIndex(link.link)) linked.add(link.link);

  const chainOf = (start: unknown): string[] | undefined => {
    if (!isIndex(start)) return undefined;
    const chain: string[] = [];
    // A parent seen already (layer 0 without a parent of its own) ends the chain.
    for (let at = start, seen = new Set<number>(); at >= 0 && !seen.has(at);) {
      seen.add(at);
      const layer = layers[at];
      if (!isObject(layer) || typeof layer.blob !== 'string') return undefined;
      chain.push(layer.blob);
      at = layer.parent === undefined ? 0 : isIndex(layer.parent) ? layer.parent : -1;
    }
    return chain.reverse();
  };
  const chains: string[][] = [];
  for (const [i, record] of records.entries()) {
    if (linked.has(i)) continue;
    const starts = [
      ...arrayOf(record.layers).map((r) => (isObject(r) ? r.layer : undefined)),
      ...arrayOf(record.chains).flatMap((c) => (isObject(c) ? arrayOf(c.layers) : [])),
    ];
    for (const start of starts) {
      const chain = chainOf(start);
      if (chain === undefined) return undefined;
      chains.push(chain);
    }
  }
  return chains;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isIndex = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const arrayOf = (v: unknown): unknown[] => (Array.isArray(v) ? (v as unknown[]) : []);
