import type { Secret } from './features';

// The typed configuration that the inputs are read into: what every other part of the task works from.

export const OUTPUT_KINDS = ['docker', 'registry', 'oci', 'tar', 'cacheOnly', 'custom'] as const;
export type OutputKind = (typeof OUTPUT_KINDS)[number];
export const CACHE_BACKENDS = ['local', 'azureBlob', 'directory', 'registry', 'none'] as const;
export type CacheBackend = (typeof CACHE_BACKENDS)[number];
export const SAVE_WHEN = ['onSuccess', 'always', 'afterBuild', 'never'] as const;
export type SaveWhen = (typeof SAVE_WHEN)[number];
export const CACHE_SCOPES = ['branch', 'shared'] as const;
export type CacheScope = (typeof CACHE_SCOPES)[number];
export const STORAGE_AUTHS = ['serviceConnection', 'connectionString'] as const;
export const CACHE_MODES = ['max', 'min'] as const;
export type CacheMode = (typeof CACHE_MODES)[number];
export const COMPRESSIONS = ['gzip', 'zstd', 'uncompressed'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
/** How BuildKit reaches a store's cache: `direct` through the registry facade on loopback, `folder` through the cache folder. */
export const CACHE_TRANSPORTS = ['auto', 'direct', 'folder'] as const;
export type CacheTransportSetting = (typeof CACHE_TRANSPORTS)[number];
/** `auto` picks `docker` or `docker-container` once the engine's image store is known (docker/driver.ts). */
export const DRIVERS = ['auto', 'docker-container', 'docker', 'kubernetes', 'remote'] as const;
export type DriverSetting = (typeof DRIVERS)[number];
export const BUILDER_LIFETIMES = ['auto', 'job', 'agent'] as const;
export type BuilderLifetimeSetting = (typeof BUILDER_LIFETIMES)[number];
/** A driver buildx knows: what `auto` becomes. */
export type Driver = Exclude<DriverSetting, 'auto'>;

export interface BuildConfig {
  readonly dockerfile: string;
  readonly context: string;
  readonly imageName?: string;
  /** Full references: imageName:tag. Empty when there is no imageName. */
  readonly tags: readonly string[];
  readonly buildArgs: readonly string[];
  readonly target?: string;
  readonly platforms: readonly string[];
  readonly labels: readonly string[];
  /** Docker@2's `com.azure.dev.image.*` labels, unless `addPipelineData` is false. */
  readonly pipelineLabels: readonly string[];
  readonly secrets: readonly Secret[];
  /** `--ssh` specs, key paths absolute. */
  readonly ssh: readonly string[];
  /** `--provenance` and `--sbom` values; undefined leaves buildx's default. */
  readonly provenance?: string;
  readonly sbom?: string;
  readonly annotations: readonly string[];
  /** `--build-context` name=value, folders absolute. */
  readonly contexts: readonly string[];
  /** Extra `--cache-from` specs, only imported, whatever the backend. */
  readonly cacheFrom: readonly string[];
  readonly additionalArguments: readonly string[];
  readonly noCache: boolean;
  readonly pull: boolean;
}

export interface OutputConfig {
  readonly kind: OutputKind;
  /** The id of the `containerRegistry` service connection to log in with. */
  readonly registryConnection?: string;
  /** Absolute path, for `oci` and `tar`. */
  readonly path?: string;
  /** Raw `--output` specs, for `custom`. */
  readonly specs: readonly string[];
}

export interface CacheConfig {
  readonly backend: CacheBackend;
  readonly dir: string;
  readonly mode: CacheMode;
  readonly compression: Compression;
  /** The key in Cache@2 syntax, before files are fingerprinted. */
  readonly key: string;
  readonly restoreKeys: readonly string[];
  readonly storePath: string;
  readonly save: SaveWhen;
  readonly scope: CacheScope;
  readonly retentionDays: number;
  /** A variable to set to the hit kind, as Cache@2's cacheHitVar. */
  readonly hitVar?: string;
  readonly failOnError: boolean;
  /** `cacheTransport`, for `local` and `azureBlob`: `auto` picks per backend (cache/transport.ts). */
  readonly transport: CacheTransportSetting;
  /** For `registry`: the image reference BuildKit keeps its cache at. */
  readonly registryRef?: string;
  /** For `azureBlob`: the container, and the service connection unless the secret input says how to reach it. */
  readonly azure?: AzureStoreConfig;
}

export interface AzureStoreConfig {
  readonly accountUrl?: string;
  readonly container: string;
  /** The `azureSubscription` service connection; without it, `storageConnectionString`. */
  readonly connection?: string;
}

/** Whether the backend keeps entries under keys in a store. */
export const isStoreBackend = (backend: CacheBackend): backend is 'local' | 'azureBlob' => backend === 'local' || backend === 'azureBlob';

export interface BuilderConfig {
  /** `latest` or `X.Y.Z`: the buildx to install through the tool cache; undefined uses the installed plugin. */
  readonly buildxVersion?: string;
  /** A mirror laid out like https://github.com/docker/buildx/releases. */
  readonly buildxDownloadUrl?: string;
  readonly driver: DriverSetting;
  readonly name?: string;
  readonly driverOptions: readonly string[];
  readonly buildkitdFlags?: string;
  readonly buildkitdConfig?: string;
  /** `buildkitdConfigInline`: the text of a buildkitd.toml, which the main step writes to a job-private file. */
  readonly buildkitdConfigText?: string;
  readonly endpoint?: string;
  readonly remove: boolean;
  /** `builderLifetime`: a builder for the job, or one the agent keeps across its jobs; `auto` decides from the agent. */
  readonly lifetime: BuilderLifetimeSetting;
  /**
   * `builderKeepStorage`: what a builder the agent keeps is pruned to after each job, as
   * `buildx prune --keep-storage` takes it; undefined: not pruned.
   */
  readonly keepStorage?: string;
  /**
   * Set by the main step, not an input: a `docker-container` builder the task creates gets
   * `--driver-opt network=host` (unless driverOptions names a network), so that it reaches the
   * registry facade on the host's loopback.
   */
  readonly hostNetwork?: boolean;
}

export interface Config {
  readonly workingDirectory: string;
  readonly build: BuildConfig;
  readonly output: OutputConfig;
  readonly cache: CacheConfig;
  readonly builder: BuilderConfig;
  /** Inputs that were set but have no effect with the other inputs; each becomes a warning. */
  readonly warnings: readonly string[];
}
