import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

export const INDEX = 'application/vnd.oci.image.index.v1+json';
export const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const CACHE_CONFIG = 'application/vnd.buildkit.cacheconfig.v0';

export interface Blob {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly data: Buffer;
}

export function blob(mediaType: string, data: string | Buffer | object): Blob {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(typeof data === 'string' ? data : JSON.stringify(data));
  return { mediaType, digest: `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length, data: bytes };
}

export const desc = (b: Blob): { mediaType: string; digest: string; size: number } => ({
  mediaType: b.mediaType,
  digest: b.digest,
  size: b.size,
});

/** A cache in BuildKit's default shape: index.json → a cache index listing the layers and the cache config. */
export function cacheLayout(layerContents: readonly (string | Buffer)[]): { blobs: Blob[]; root: Blob; layers: Blob[] } {
  const layers = layerContents.map((c) => blob(LAYER, c));
  const config = blob(CACHE_CONFIG, { layers: layers.map((l) => ({ blob: l.digest })) });
  const root = blob(INDEX, { schemaVersion: 2, mediaType: INDEX, manifests: [...layers.map(desc), desc(config)] });
  return { blobs: [...layers, config, root], root, layers };
}

/** Writes an OCI layout folder; `extra` blobs are written too but not referenced. */
export function writeLayout(dir: string, root: Blob, blobs: readonly Blob[], extra: readonly Blob[] = []): void {
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  fs.writeFileSync(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...desc(root), annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }),
  );
  for (const b of [...blobs, ...extra]) fs.writeFileSync(path.join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.data);
}

/** A cache folder `label` under `work`, holding these layers. */
export function cacheFolder(
  work: string,
  label: string,
  layers: readonly (string | Buffer)[],
): { dir: string; layout: ReturnType<typeof cacheLayout> } {
  const dir = path.join(work, label);
  const layout = cacheLayout(layers);
  writeLayout(dir, layout.root, layout.blobs);
  return { dir, layout };
}

export function blobFiles(dir: string): string[] {
  const base = path.join(dir, 'blobs', 'sha256');
  return fs.existsSync(base)
    ? fs
        .readdirSync(base)
        .map((h) => `sha256:${h}`)
        .sort()
    : [];
}
