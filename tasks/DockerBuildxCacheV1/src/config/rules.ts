import { Input, type InputName } from '../task/inputs';
import { isStoreBackend, type CacheBackend, type DriverSetting, type OutputKind } from './types';

// Cross-field rules: which inputs an input's value makes required, checked or without effect.

/** Inputs that only the stores read, both of them or one. */
const STORE_INPUTS = [Input.cacheKey, Input.restoreKeys, Input.retentionDays, Input.cacheTransport];
/** Inputs that the stores and the registry cache read. */
const SCOPED_INPUTS = [Input.cacheScope];
const LOCAL_INPUTS = [Input.localStorePath];
const AZURE_INPUTS = [
  Input.storageAuth,
  Input.azureSubscription,
  Input.storageAccountUrl,
  Input.storageContainer,
  Input.storageConnectionString,
];
/** Inputs that only a builder of the task's own reads: the docker driver ignores them. */
const BUILDER_ONLY_INPUTS = [
  Input.builderName,
  Input.driverOptions,
  Input.buildkitdFlags,
  Input.buildkitdConfig,
  Input.buildkitdConfigInline,
  Input.builderLifetime,
  Input.builderKeepStorage,
];

/** The cache inputs that have no effect with a backend: set, each is named in a warning. */
export function ignoredWithBackend(backend: CacheBackend): InputName[] {
  const ignored: InputName[] = [];
  if (!isStoreBackend(backend)) ignored.push(...STORE_INPUTS);
  if (!isStoreBackend(backend) && backend !== 'registry') ignored.push(...SCOPED_INPUTS);
  if (backend !== 'local') ignored.push(...LOCAL_INPUTS);
  if (backend !== 'azureBlob') ignored.push(...AZURE_INPUTS);
  return ignored;
}

/** The builder inputs that have no effect with a driver. */
export function ignoredWithDriver(driver: DriverSetting): InputName[] {
  return driver === 'docker' ? [...BUILDER_ONLY_INPUTS] : [];
}

/** Whether the task writes into cacheDir with this backend, so that it must be a folder of its own. */
export function usesCacheDir(backend: CacheBackend): boolean {
  return isStoreBackend(backend) || backend === 'directory';
}

/** Whether BuildKit writes the cache during the build (rather than a save after it). */
export function writesDuringBuild(backend: CacheBackend): boolean {
  return backend === 'directory' || backend === 'registry';
}

/** Whether an output needs `imageName`: all but the cache alone and raw `--output` specs. */
export function needsImageName(output: OutputKind): boolean {
  return output !== 'cacheOnly' && output !== 'custom';
}
