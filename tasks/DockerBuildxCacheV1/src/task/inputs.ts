import * as tl from 'azure-pipelines-task-lib/task';
import { withoutEcho } from './agent';

/**
 * Every input of task.json by name, in task.json's groups: the one spelling the code uses for an
 * input (a unit test holds it to task.json).
 */
export const Input = {
  // build
  dockerfile: 'dockerfile',
  buildContext: 'buildContext',
  imageName: 'imageName',
  tags: 'tags',
  buildArgs: 'buildArgs',
  target: 'target',
  platforms: 'platforms',
  labels: 'labels',
  secrets: 'secrets',
  ssh: 'ssh',
  // output
  output: 'output',
  outputPath: 'outputPath',
  outputs: 'outputs',
  containerRegistry: 'containerRegistry',
  // cache
  cacheBackend: 'cacheBackend',
  cacheKey: 'cacheKey',
  restoreKeys: 'restoreKeys',
  cacheMode: 'cacheMode',
  cacheCompression: 'cacheCompression',
  cacheDir: 'cacheDir',
  localStorePath: 'localStorePath',
  storageAuth: 'storageAuth',
  azureSubscription: 'azureSubscription',
  storageAccountUrl: 'storageAccountUrl',
  storageContainer: 'storageContainer',
  storageConnectionString: 'storageConnectionString',
  registryCacheRef: 'registryCacheRef',
  cacheFrom: 'cacheFrom',
  saveCache: 'saveCache',
  writeCache: 'writeCache',
  cacheScope: 'cacheScope',
  retentionDays: 'retentionDays',
  cacheHitVar: 'cacheHitVar',
  failOnCacheError: 'failOnCacheError',
  // builder
  driver: 'driver',
  builderName: 'builderName',
  driverOptions: 'driverOptions',
  buildkitdFlags: 'buildkitdFlags',
  buildkitdConfig: 'buildkitdConfig',
  buildkitdConfigInline: 'buildkitdConfigInline',
  endpoint: 'endpoint',
  removeBuilder: 'removeBuilder',
  builderLifetime: 'builderLifetime',
  builderKeepStorage: 'builderKeepStorage',
  buildxVersion: 'buildxVersion',
  buildxDownloadUrl: 'buildxDownloadUrl',
  // advanced
  buildContexts: 'buildContexts',
  annotations: 'annotations',
  provenance: 'provenance',
  sbom: 'sbom',
  addPipelineData: 'addPipelineData',
  noCache: 'noCache',
  pull: 'pull',
  cacheTransport: 'cacheTransport',
  additionalArguments: 'additionalArguments',
} as const;

export type InputName = (typeof Input)[keyof typeof Input];

/** Inputs whose values are secrets: never echoed, never in an error message. */
export const SECRET_INPUTS: ReadonlySet<string> = new Set<InputName>([Input.secrets, Input.storageConnectionString]);

/**
 * An input as the agent passes it (the default when the pipeline does not set it), or ''. A secret
 * input is read without task-lib's debug line, which would print its value.
 */
export function taskInput(name: string): string {
  const read = (): string => tl.getInput(name, false) ?? '';
  return SECRET_INPUTS.has(name) ? withoutEcho(`##vso[task.debug]${name}=`, read) : read();
}

/**
 * `storageConnectionString`, read when a store is opened (in the post-job step too): it never goes
 * into the config or the task state.
 */
export function storageSecret(): string | undefined {
  return taskInput(Input.storageConnectionString) || undefined;
}
