import type { BuilderConfig, Driver } from '../config/types';
import { loc } from '../task/messages';

/** Why the job builds with the driver it does. */
export type DriverReason =
  /** The `driver` input names it. */
  | { readonly kind: 'input' }
  /** `auto`, with inputs set that only a builder of its own takes. */
  | { readonly kind: 'builderInputs'; readonly inputs: readonly string[] }
  /** `auto`, from the engine's image store (`unknown` when the engine did not say). */
  | { readonly kind: 'store'; readonly store: 'containerd' | 'classic' | 'unknown' };

export interface DriverChoice {
  readonly driver: Driver;
  readonly reason: DriverReason;
}

/** The inputs that are set and that only a builder of its own (not the engine's) takes. */
export function builderOnlyInputs(builder: BuilderConfig): string[] {
  const set: Record<string, boolean> = {
    builderName: builder.name !== undefined,
    driverOptions: builder.driverOptions.length > 0,
    buildkitdFlags: builder.buildkitdFlags !== undefined,
    // buildkitdConfigInline is written to a file that becomes buildkitdConfig: it is named as written.
    buildkitdConfig: builder.buildkitdConfig !== undefined && builder.buildkitdConfigText === undefined,
    buildkitdConfigInline: builder.buildkitdConfigText !== undefined,
    endpoint: builder.endpoint !== undefined,
  };
  return Object.keys(set).filter((name) => set[name]);
}

/**
 * Whether the job may build with the docker driver. Only then does the choice, or the cache export,
 * depend on the engine's image store, and is the engine's builder worth looking at early.
 */
export function mayBeDocker(builder: BuilderConfig): boolean {
  return builder.driver === 'docker' || (builder.driver === 'auto' && builderOnlyInputs(builder).length === 0);
}

/**
 * The driver to build with. An explicit driver is kept. `auto` is `docker-container` when an input
 * needs a builder of its own; otherwise `docker` when the engine uses the containerd image store
 * (the engine's own BuildKit then exports cache, and there is no BuildKit image to pull and no image
 * to load), and `docker-container` when it does not or did not say.
 */
export function chooseDriver(builder: BuilderConfig, containerdStore: boolean | undefined): DriverChoice {
  if (builder.driver !== 'auto') return { driver: builder.driver, reason: { kind: 'input' } };
  const inputs = builderOnlyInputs(builder);
  if (inputs.length > 0) return { driver: 'docker-container', reason: { kind: 'builderInputs', inputs } };
  if (containerdStore === true) return { driver: 'docker', reason: { kind: 'store', store: 'containerd' } };
  return { driver: 'docker-container', reason: { kind: 'store', store: containerdStore === false ? 'classic' : 'unknown' } };
}

/** The choice and its reason, for the log and the summary. */
export function describeDriver(choice: DriverChoice): string {
  const reason = choice.reason;
  switch (reason.kind) {
    case 'input':
      return loc('DriverFromInput', choice.driver);
    case 'builderInputs':
      return loc('DriverAutoBuilderInputs', choice.driver, reason.inputs.join(', '));
    case 'store':
      if (reason.store === 'containerd') return loc('DriverAutoContainerd', choice.driver);
      if (reason.store === 'classic') return loc('DriverAutoClassic', choice.driver);
      return loc('DriverAutoStoreUnknown', choice.driver);
  }
}
