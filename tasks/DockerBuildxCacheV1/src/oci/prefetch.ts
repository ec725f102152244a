import * as crypto from 'crypto';
import type { Descriptor } from './layout';

/**
 * An image made of the restored cache's last layer chain, for the engine to pull while the build
 * runs: when the build's own image is pulled after it, its layers that the chain shares from the
 * base up (all but the changed ones, in a build whose sources changed) are there already, and only
 * the new ones are downloaded. The engine reuses a pulled layer by its chain (the layer and every
 * layer under it), so the chain must be in order, base first, and each layer must say its
 * uncompressed digest (BuildKit's cache annotates its layers with it).
 */
export interface PrefetchImage {
  /** The image manifest (OCI), and its digest. */
  readonly manifest: Buffer;
  readonly digest: string;
  /** The image config, which names the layers' uncompressed digests, and its digest. */
  readonly config: Buffer;
  readonly configDigest: string;
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
/** The annotation BuildKit gives each layer of a cache: its uncompressed digest (the image's diff ID). */
const UNCOMPRESSED = 'containerd.io/uncompressed';
/** gzip layers only: the image's layers are gzip, so a cache compressed otherwise shares none with it. */
const GZIP_LAYERS = new Set(['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.docker.image.rootfs.diff.tar.gzip']);
const DIGEST = /^sha256:[0-9a-f]{64}$/;

const sha256 = (bytes: Buffer): string => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;

/**
 * The image of a layer chain (base first) for a Linux engine of `architecture` (Go's name, see
 * goArch); undefined when the chain is empty or a layer is not a gzip layer with its uncompressed
 * digest.
 */
export function prefetchImage(chain: readonly Descriptor[], architecture: string): PrefetchImage | undefined {
  if (chain.length === 0) return undefined;
  const diffIds: string[] = [];
  for (const layer of chain) {
    const diffId = layer.annotations?.[UNCOMPRESSED];
    if (!GZIP_LAYERS.has(layer.mediaType ?? '') || diffId === undefined || !DIGEST.test(diffId) || !DIGEST.test(layer.digest))
      return undefined;
    diffIds.push(diffId);
  }
  const config = Buffer.from(JSON.stringify({ architecture, os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const configDigest = sha256(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
      layers: chain.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }),
  );
  return { manifest, digest: sha256(manifest), config, configDigest };
}

/** Go's name of a Node.js architecture (`process.arch`), as an image config states it. */
export function goArch(arch: string): string {
  const names: Record<string, string> = { x64: 'amd64', ia32: '386', ppc64: 'ppc64le' };
  return names[arch] ?? arch;
}
