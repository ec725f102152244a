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
