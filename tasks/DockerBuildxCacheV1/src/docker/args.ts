import type { BuildConfig, BuilderConfig, OutputConfig } from '../config/types';

/** One field of a CSV spec such as `--cache-to type=local,dest=…`: quoted when it holds a comma, quote or line break. */
export function csvField(field: string): string {
  return /[",\r\n]/.test(field) || field !== field.trim() ? `"${field.replace(/"/g, '""')}"` : field;
}

/** A CSV spec from key/value pairs, skipping undefined values. */
export function csvSpec(fields: Record<string, string | undefined>): string {
  return Object.entries(fields)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => csvField(`${k}=${v}`))
    .join(',');
}

/**
 * Whether a builder the task creates gets `--driver-opt network=host`: a docker-container builder
 * asked for the host's network (the registry facade listens on the host's loopback, see
 * cache/transport.ts), unless driverOptions names a network, which wins.
 */
export function addsHostNetwork(builder: Pick<BuilderConfig, 'driver' | 'driverOptions' | 'hostNetwork'>): boolean {
  return builder.hostNetwork === true && builder.driver === 'docker-container' && !builder.driverOptions.some((o) => /^network=/i.test(o));
}

export function createBuilderArgs(builder: BuilderConfig, name: string): string[] {
  const args = ['buildx', 'create', '--name', name, '--driver', builder.driver];
  for (const opt of builder.driverOptions) args.push('--driver-opt', opt);
  if (addsHostNetwork(builder)) args.push('--driver-opt', 'network=host');
  if (builder.buildkitdFlags !== undefined) args.push('--buildkitd-flags', builder.buildkitdFlags);
  if (builder.buildkitdConfig !== undefined) args.push('--config', builder.buildkitdConfig);
  if (builder.endpoint !== undefined) args.push(builder.endpoint);
  return args;
}

export function outputArgs(output: OutputConfig): string[] {
  switch (output.kind) {
    case 'docker':
      return ['--load'];
    case 'registry':
      return ['--push'];
    case 'oci':
    case 'tar':
      return ['--output', csvSpec({ type: output.kind, dest: output.path })];
    case 'cacheOnly':
      return ['--output', 'type=cacheonly'];
    case 'custom':
      return output.specs.flatMap((spec) => ['--output', spec]);
  }
}

export interface CacheFlags {
  readonly from: readonly string[];
  readonly to: readonly string[];
}

export interface BuildInvocation {
  readonly builder: string;
  readonly build: BuildConfig;
  readonly output: OutputConfig;
  readonly cache: CacheFlags;
  readonly metadataFile: string;
  /** Secret id → path of the job-private file that holds its value, for secrets given as values. */
  readonly secretFiles: ReadonlyMap<string, string>;
  /**
   * With output docker: a registry reference to push the image to instead of `--load`, for the
   * engine to pull (see docker/deliver.ts); the tags are the pulled image's, not the build's.
   */
  readonly imageVia?: string;
}

/** `--secret` specs: a value through its job-private file, a variable by name, a file by path. Never a value itself. */
export function secretSpecs(secrets: BuildConfig['secrets'], files: ReadonlyMap<string, string>): string[] {
  return secrets.map((s) =>
    csvSpec(s.kind === 'env' ? { id: s.id, env: s.env } : { id: s.id, src: s.kind === 'file' ? s.file : files.get(s.id) }),
  );
}

export function buildArgs(inv: BuildInvocation): string[] {
  const b = inv.build;
  const via = inv.output.kind === 'docker' ? inv.imageVia : undefined;
  const args = ['buildx', 'build', '--builder', inv.builder, '--progress', 'plain', '--file', b.dockerfile];
  if (via === undefined) for (const tag of b.tags) args.push('--tag', tag);
  for (const arg of b.buildArgs) args.push('--build-arg', arg);
  if (b.target !== undefined) args.push('--target', b.target);
  if (b.platforms.length > 0) args.push('--platform', b.platforms.join(','));
  // Pipeline labels first, so that a label the pipeline sets itself wins.
  for (const label of [...b.pipelineLabels, ...b.labels]) args.push('--label', label);
  for (const annotation of b.annotations) args.push('--annotation', annotation);
  for (const spec of secretSpecs(b.secrets, inv.secretFiles)) args.push('--secret', spec);
  for (const spec of b.ssh) args.push('--ssh', spec);
  for (const context of b.contexts) args.push('--build-context', context);
  if (b.provenance !== undefined) args.push(`--provenance=${b.provenance}`);
  // --load adds no provenance by default, a push does: without it the pushed image is --load's, byte for byte.
  else if (via !== undefined) args.push('--provenance=false');
  if (b.sbom !== undefined) args.push(`--sbom=${b.sbom}`);
  if (b.noCache) args.push('--no-cache');
  if (b.pull) args.push('--pull');
  for (const spec of [...inv.cache.from, ...b.cacheFrom]) args.push('--cache-from', spec);
  for (const spec of inv.cache.to) args.push('--cache-to', spec);
  args.push(...(via === undefined ? outputArgs(inv.output) : ['--output', csvSpec({ type: 'image', name: via, push: 'true' })]));
  args.push('--metadata-file', inv.metadataFile);
  args.push(...b.additionalArguments);
  args.push(b.context);
  return args;
}
