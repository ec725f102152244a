import { csvSpec, type CacheFlags } from '../docker/args';
import type { CacheMode, Compression } from '../config/types';

export interface FacadeRefs {
  /** The facade's import reference, when it serves a restored entry (none on a miss). */
  readonly importRef?: string;
  /** The facade's export reference, when the cache is saved. */
  readonly exportRef?: string;
}

/**
 * The `--cache-from`/`--cache-to` specs that point BuildKit at a facade. The export asks for the
 * same format as the folder path's `type=local` export (a cache index with OCI media types, not
 * `image-manifest=true`): measured, the registry exporter then pushes the very manifest that the
 * local exporter writes as its root, byte for byte, so the same cache saved through either path has
 * the same root digest, and the store sees it unchanged.
 *
 * `ignore-error=true`: an export that fails (the store failed under the facade) no longer fails the
 * build; measured with dockerd's BuildKit, the build then exits 0 and only logs the export's error.
 * The facade's events tell the task what happened, so it can warn, or fail with failOnCacheError,
 * without building twice.
 */
export function facadeCacheFlags(refs: FacadeRefs, mode: CacheMode, compression: Compression): CacheFlags {
  return {
    from: refs.importRef === undefined ? [] : [csvSpec({ type: 'registry', ref: refs.importRef })],
    to:
      refs.exportRef === undefined
        ? []
        : [csvSpec({ type: 'registry', ref: refs.exportRef, mode, compression, 'oci-mediatypes': 'true', 'ignore-error': 'true' })],
  };
}
