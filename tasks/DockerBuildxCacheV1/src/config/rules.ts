import { Input } from '../task/inputs';

// Cross-field rules: which inputs have an effect only with which backend or driver.

/** Inputs that only the stores read, both of them or one. */
export const STORE_INPUTS = [Input.cacheKey, Input.restoreKeys, Input.retentionDays];
/** Inputs that the stores and the registry cache read. */
export const SCOPED_INPUTS = [Input.cacheScope];
export const LOCAL_INPUTS = [Input.localStorePath];
export const AZURE_INPUTS = [Input.storageAuth, Input.azureSubscription, Input.storageAccountUrl, Input.storageContainer, Input.storageConnectionString];
/** Inputs that only a builder of the task's own reads: the docker driver ignores them. */
export const BUILDER_ONLY_INPUTS = [Input.builderName, Input.driverOptions, Input.buildkitdFlags, Input.buildkitdConfig, Input.buildkitdConfigInline];
