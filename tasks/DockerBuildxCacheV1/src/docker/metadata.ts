import type { Driver } from '../config/types';

/** The parts of buildx's `--metadata-file` that become output variables. */
export interface BuildMetadata {
  /** The image (or index) digest: pushed, or as stored locally. */
  readonly digest?: string;
  /** The image config digest, which the classic image store uses as the image ID. */
  readonly configDigest?: string;
  readonly imageNames: readonly string[];
}

export function parseMetadata(text: string): BuildMetadata {
  const json = JSON.parse(text) as Record<string, unknown>;
  const str = (key: string): string | undefined => {
    const v = json[key];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  return {
    digest: str('containerimage.digest'),
    configDigest: str('containerimage.config.digest'),
    imageNames: (str('image.name') ?? '').split(',').filter((n) => n !== ''),
  };
}

/** How an image came into the engine: the engine's image store (undefined when it did not say) and the driver that built it. */
export interface LoadedImage {
  readonly containerdStore?: boolean;
  readonly driver: Driver;
}

/**
 * The engine's ID of the image the build loaded, when the metadata tells it for sure; undefined
 * when only `docker image inspect` can. The classic store's image ID is the digest of the image's
 * config, however the image came in. The containerd store's is the digest of the image's manifest
 * or index, which the docker driver's image exporter reports as the image digest (an image loaded
 * from another driver's tarball is not vouched for here).
 */
export function loadedImageId(metadata: BuildMetadata, loaded: LoadedImage): string | undefined {
  if (loaded.containerdStore === false) return metadata.configDigest;
  if (loaded.containerdStore === true && loaded.driver === 'docker') return metadata.digest;
  return undefined;
}
