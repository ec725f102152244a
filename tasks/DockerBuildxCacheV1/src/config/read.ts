import * as path from 'path';
import { variable } from '../task/agent';
import { Input, taskInput } from '../task/inputs';
import { checkCacheDir } from './cache-dir';
import { readKeys } from './cache-key';
import { readAnnotations, readAttestation, readBuildContexts, readCacheFrom, readSecrets, readSsh } from './features';
import { pipelineLabels } from './labels';
import { expandMacros, isDirectory, isFile, isInside, keyValueLines, lines, parseUrl, pick, readBool } from './parsers';
import { TAG, validateImageName, validateReference } from './reference';
import { ignoredWithBackend, ignoredWithDriver, needsImageName, usesCacheDir, writesDuringBuild } from './rules';
import { splitArguments } from './shell';
import { InputError, Inputs, type Source } from './source';
import {
  BUILDER_LIFETIMES,
  CACHE_BACKENDS,
  CACHE_MODES,
  CACHE_SCOPES,
  COMPRESSIONS,
  CACHE_TRANSPORTS,
  DRIVERS,
  isStoreBackend,
  OUTPUT_KINDS,
  SAVE_WHEN,
  STORAGE_AUTHS,
} from './types';
import type {
  AzureStoreConfig,
  BuildConfig,
  BuilderConfig,
  CacheBackend,
  CacheConfig,
  Config,
  OutputConfig,
  OutputKind,
  SaveWhen,
} from './types';
import { loc } from '../task/messages';

/** Inputs and variables as the agent passes them (task/inputs.ts reads them). */
export function taskSource(): Source {
  return { input: taskInput, variable };
}

const PLATFORM = /^(?:local|[a-z0-9_]+\/[a-z0-9_]+(?:\/[a-z0-9_.]+)?)$/i;
const BUILDER_NAME = /^[a-zA-Z][a-zA-Z0-9._-]*$/;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;
const RESERVED_VARIABLE_PREFIX = /^(endpoint|input|secret|securefile)[._]/i;
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$/;

export function readConfig(src: Source): Config {
  const warnings: string[] = [];
  const workingDirectory = path.resolve(src.variable('System.DefaultWorkingDirectory') ?? process.cwd());
  const inputs = new Inputs(src, workingDirectory);
  const resolve = (p: string): string => path.resolve(workingDirectory, p);

  const output = readOutput(inputs, resolve);
  const build = readBuild(inputs, resolve, output.kind);
  const cache = readCache(inputs, resolve, build, warnings);
  const builder = readBuilder(inputs, resolve, warnings);
  return { workingDirectory, build, output, cache, builder, warnings };
}

function readBuild(src: Inputs, resolve: (p: string) => string, output: OutputKind): BuildConfig {
  const context = resolve(src.value(Input.buildContext));
  if (!isDirectory(context)) {
    throw new InputError(Input.buildContext, loc('InputContextMissing', src.value(Input.buildContext), context));
  }

  const dockerfile = readDockerfile(src, resolve);

  const imageName = src.value(Input.imageName) || undefined;
  if (imageName === undefined && needsImageName(output)) {
    throw new InputError(Input.imageName, loc('InputImageNameRequired', output));
  }
  if (imageName !== undefined) validateImageName(imageName);

  const tagLines = lines(src.value(Input.tags));
  tagLines.forEach((tag, i) => {
    if (!TAG.test(tag)) throw new InputError(Input.tags, loc('InputTagInvalid', i + 1, tag));
  });
  if (tagLines.length > 0 && imageName === undefined) {
    throw new InputError(Input.tags, loc('InputTagsWithoutImage'));
  }
  const tagNames = tagLines.length > 0 ? tagLines : ['latest'];
  const tags = imageName === undefined ? [] : tagNames.map((t) => `${imageName}:${t}`);

  const platforms = src
    .value(Input.platforms)
    .split(/[,\n]/)
    .map((p) => p.trim())
    .filter((p) => p !== '');
  for (const p of platforms) {
    if (!PLATFORM.test(p)) throw new InputError(Input.platforms, loc('InputPlatformInvalid', p));
  }

  const target = src.value(Input.target) || undefined;
  if (target !== undefined && /\s/.test(target)) throw new InputError(Input.target, loc('InputTargetInvalid', target));

  return {
    dockerfile,
    context,
    imageName,
    tags,
    buildArgs: keyValueLines(src, Input.buildArgs, true),
    target,
    platforms,
    labels: keyValueLines(src, Input.labels, false),
    pipelineLabels: readBool(src, Input.addPipelineData) ? pipelineLabels((name) => src.variable(name)) : [],
    secrets: readSecrets(src, (name) => src.env(name)),
    ssh: readSsh(src, (name) => src.env(name)),
    provenance: readAttestation(src, Input.provenance),
    sbom: readAttestation(src, Input.sbom),
    annotations: readAnnotations(src),
    contexts: readBuildContexts(src),
    cacheFrom: readCacheFrom(src),
    additionalArguments: splitArguments(src.value(Input.additionalArguments)),
    noCache: readBool(src, Input.noCache),
    pull: readBool(src, Input.pull),
  };
}

function readDockerfile(src: Inputs, resolve: (p: string) => string): string {
  const raw = src.value(Input.dockerfile);
  // A filePath input left empty arrives as the default working directory itself.
  const leftEmpty = raw === '' || resolve(raw) === src.workingDirectory;
  let dockerfile = leftEmpty ? resolve('Dockerfile') : resolve(raw);
  if (isDirectory(dockerfile)) dockerfile = path.join(dockerfile, 'Dockerfile');
  if (!isFile(dockerfile)) {
    throw new InputError(Input.dockerfile, loc('InputDockerfileMissing', asWritten(src, raw || 'Dockerfile'), dockerfile));
  }
  return dockerfile;
}

/**
 * A filePath input as the pipeline likely wrote it: the agent roots every filePath at
 * System.DefaultWorkingDirectory, so one inside it is shown relative again.
 */
function asWritten(src: Inputs, value: string): string {
  const full = path.resolve(src.workingDirectory, value);
  if (full === src.workingDirectory || !isInside(full, src.workingDirectory)) return value;
  return path.relative(src.workingDirectory, full).split(path.sep).join('/');
}

function readOutput(src: Inputs, resolve: (p: string) => string): OutputConfig {
  const kind = pick(src, Input.output, OUTPUT_KINDS);
  const registryConnection = src.value(Input.containerRegistry) || undefined;
  if (kind === 'oci' || kind === 'tar') {
    const raw = src.value(Input.outputPath);
    if (raw === '') throw new InputError(Input.outputPath, loc('InputOutputPathRequired', kind));
    return { kind, path: resolve(raw), specs: [], registryConnection };
  }
  if (kind === 'custom') {
    const specs = lines(src.value(Input.outputs));
    if (specs.length === 0) throw new InputError(Input.outputs, loc('InputOutputsRequired'));
    return { kind, specs, registryConnection };
  }
  return { kind, specs: [], registryConnection };
}

function readCache(src: Inputs, resolve: (p: string) => string, build: BuildConfig, warnings: string[]): CacheConfig {
  const backend = pick(src, Input.cacheBackend, CACHE_BACKENDS);
  const dir = resolve(expandMacros(src, Input.cacheDir, src.value(Input.cacheDir)));
  if (backend !== 'none' && isInside(dir, build.context)) warnings.push(loc('WarnCacheDirInContext', dir, build.context));
  const storePath = resolve(expandMacros(src, Input.localStorePath, src.value(Input.localStorePath)));
  if (usesCacheDir(backend)) {
    const localStore = backend === 'local' ? storePath : undefined;
    const problem = checkCacheDir(dir, (n) => src.variable(n), src.workingDirectory, build.context, localStore);
    if (problem !== undefined) throw new InputError(Input.cacheDir, problem);
  }
  const ignored = src.without(ignoredWithBackend(backend));
  if (ignored.length > 0) warnings.push(loc('WarnIgnoredWithBackend', backend, ignored.join(', ')));

  const { key, restoreKeys } = readKeys(src, backend, build.imageName, build.dockerfile, warnings);
  const retentionDays = readRetention(src);
  const registryRef = readRegistryRef(src, backend, warnings);
  const azure = backend === 'azureBlob' ? readAzureStore(src, warnings) : undefined;
  const hitVar = readHitVar(src);

  return {
    backend,
    dir,
    mode: pick(src, Input.cacheMode, CACHE_MODES),
    compression: pick(src, Input.cacheCompression, COMPRESSIONS),
    key,
    restoreKeys,
    storePath,
    save: readSave(src, backend, warnings),
    scope: pick(src, Input.cacheScope, CACHE_SCOPES),
    retentionDays,
    hitVar,
    failOnError: readBool(src, Input.failOnCacheError),
    transport: pick(src, Input.cacheTransport, CACHE_TRANSPORTS),
    registryRef,
    azure,
  };
}

function readRetention(src: Inputs): number {
  const retention = src.value(Input.retentionDays);
  const retentionDays = Number(retention);
  if (!/^\d+(\.\d+)?$/.test(retention) || retentionDays <= 0) {
    throw new InputError(Input.retentionDays, loc('InputRetentionInvalid', retention));
  }
  return retentionDays;
}

/** `registryCacheRef`: required by the registry backend, and ignored, with a warning, by the others. */
function readRegistryRef(src: Inputs, backend: CacheBackend, warnings: string[]): string | undefined {
  const ref = src.value(Input.registryCacheRef);
  if (backend === 'registry' && ref === '') throw new InputError(Input.registryCacheRef, loc('InputRegistryCacheRefRequired'));
  if (backend !== 'registry' && src.given(Input.registryCacheRef)) {
    warnings.push(loc('WarnIgnoredWithBackend', backend, Input.registryCacheRef));
  }
  if (ref === '') return undefined;
  validateReference(Input.registryCacheRef, ref);
  return ref;
}

/** `cacheHitVar`: a variable name the task may set, not one the agent reserves. */
function readHitVar(src: Inputs): string | undefined {
  const hitVar = src.value(Input.cacheHitVar) || undefined;
  if (hitVar === undefined) return undefined;
  if (!VARIABLE_NAME.test(hitVar) || RESERVED_VARIABLE_PREFIX.test(hitVar)) {
    throw new InputError(Input.cacheHitVar, loc('InputHitVarInvalid', hitVar));
  }
  return hitVar;
}

/**
 * When the cache is written. The stores honour every `saveCache`; `directory` and `registry` are
 * written during the build, so for them only `writeCache` (or `saveCache: never`) counts: read-only.
 */
function readSave(src: Inputs, backend: CacheBackend, warnings: string[]): SaveWhen {
  const save = pick(src, Input.saveCache, SAVE_WHEN);
  const duringBuild = writesDuringBuild(backend);
  const ignored = src.without(duringBuild ? [] : [Input.writeCache]);
  // A backend without a store has no save after the job: saveCache counts there only as `never`.
  const saveIgnored = !isStoreBackend(backend) && save !== 'never' && src.given(Input.saveCache);
  if (saveIgnored) ignored.unshift(Input.saveCache);
  if (ignored.length > 0) warnings.push(loc('WarnIgnoredWithBackend', backend, ignored.join(', ')));
  if (duringBuild && !readBool(src, Input.writeCache)) return 'never';
  return save;
}

/** `azureBlob`: a container, reached with the service connection or the secret input. */
function readAzureStore(src: Inputs, warnings: string[]): AzureStoreConfig {
  // storageAuth set to connectionString (the classic editor's choice) uses the connection string; left
  // at its default, a service connection is used when one is given, else the connection string.
  const byString = pick(src, Input.storageAuth, STORAGE_AUTHS) === 'connectionString';
  if (byString && src.given(Input.azureSubscription)) {
    warnings.push(loc('WarnIgnoredWithBackend', 'azureBlob', Input.azureSubscription));
  }
  const connection = byString ? undefined : src.value(Input.azureSubscription) || undefined;
  const accountUrl = readAccountUrl(src, connection !== undefined);
  const container = src.value(Input.storageContainer);
  if (!CONTAINER_NAME.test(container)) {
    throw new InputError(Input.storageContainer, loc('InputAzureContainerInvalid', container));
  }
  const hasSecret = src.given(Input.storageConnectionString);
  if (byString && !hasSecret) {
    throw new InputError(Input.storageConnectionString, loc('InputAzureConnectionStringRequired'));
  }
  if (connection !== undefined) {
    if (accountUrl === undefined) throw new InputError(Input.storageAccountUrl, loc('InputAzureAccountUrlRequired'));
    if (hasSecret) warnings.push(loc('WarnAzureBothAuth'));
  } else if (!hasSecret) {
    throw new InputError(Input.azureSubscription, loc('InputAzureAuthRequired'));
  }
  return { accountUrl, container, connection };
}

/** `storageAccountUrl`: an http(s) URL without a query, and https for Entra ID tokens; no trailing slash. */
function readAccountUrl(src: Inputs, byConnection: boolean): string | undefined {
  const raw = src.value(Input.storageAccountUrl);
  if (raw === '') return undefined;
  const url = parseUrl(raw);
  const invalid = () => new InputError(Input.storageAccountUrl, loc('InputAzureAccountUrlInvalid', raw));
  if (url === undefined || !/^https?:$/.test(url.protocol) || url.search !== '') throw invalid();
  // The storage SDK sends Entra ID tokens over HTTPS only.
  if (byConnection && url.protocol !== 'https:') throw invalid();
  return raw.replace(/\/+$/, '');
}

function readBuilder(src: Inputs, resolve: (p: string) => string, warnings: string[]): BuilderConfig {
  const driver = pick(src, Input.driver, DRIVERS);
  const name = src.value(Input.builderName) || undefined;
  if (name !== undefined && !BUILDER_NAME.test(name)) {
    throw new InputError(Input.builderName, loc('InputBuilderNameInvalid', name));
  }

  const driverOptions = keyValueLines(src, Input.driverOptions, false);
  const buildkitdFlags = src.value(Input.buildkitdFlags) || undefined;
  const rawConfig = src.value(Input.buildkitdConfig);
  const buildkitdConfig = src.given(Input.buildkitdConfig) ? resolve(rawConfig) : undefined;
  if (buildkitdConfig !== undefined && !isFile(buildkitdConfig)) {
    throw new InputError(Input.buildkitdConfig, loc('InputBuildkitdConfigMissing', asWritten(src, rawConfig), buildkitdConfig));
  }
  const buildkitdConfigText = src.value(Input.buildkitdConfigInline) || undefined;
  if (buildkitdConfigText !== undefined && buildkitdConfig !== undefined) {
    throw new InputError(Input.buildkitdConfigInline, loc('InputBuildkitdConfigBoth'));
  }
  const endpoint = src.value(Input.endpoint) || undefined;
  if (driver === 'remote' && endpoint === undefined) throw new InputError(Input.endpoint, loc('InputEndpointRequired'));

  const ignored = src.without(ignoredWithDriver(driver));
  if (ignored.length > 0) warnings.push(loc('WarnIgnoredWithDockerDriver', ignored.join(', ')));
  const buildxVersion = readBuildxVersion(src);
  const buildxDownloadUrl = src.value(Input.buildxDownloadUrl) || undefined;
  if (buildxDownloadUrl !== undefined && !/^https?:\/\/[^\s/]+/.test(buildxDownloadUrl)) {
    throw new InputError(Input.buildxDownloadUrl, loc('InputDownloadUrlInvalid', buildxDownloadUrl));
  }
  if (buildxDownloadUrl !== undefined && buildxVersion === undefined) warnings.push(loc('WarnDownloadUrlWithoutVersion'));
  return {
    buildxVersion,
    buildxDownloadUrl,
    driver,
    name,
    driverOptions,
    buildkitdFlags,
    buildkitdConfig,
    buildkitdConfigText,
    endpoint,
    remove: readBool(src, Input.removeBuilder),
    lifetime: pick(src, Input.builderLifetime, BUILDER_LIFETIMES),
    keepStorage: readKeepStorage(src),
  };
}

/** A size as docker's units read it: `10GB`, `512mb`, `2g`, `0`. */
const SIZE = /^\d+(?:\.\d+)?\s?(?:[kmgtp]i?b?|b)?$/i;

/** `builderKeepStorage`: a size for `buildx prune --keep-storage`, or undefined for `0` (and empty): no prune. */
function readKeepStorage(src: Inputs): string | undefined {
  const raw = src.value(Input.builderKeepStorage);
  if (raw !== '' && !SIZE.test(raw)) throw new InputError(Input.builderKeepStorage, loc('InputKeepStorageInvalid', raw));
  return raw === '' || /^0+(?:\.0+)?\s?[a-z]*$/i.test(raw) ? undefined : raw.replace(/\s/g, '');
}

/** `buildxVersion`: `latest` or `X.Y.Z` (a leading `v` dropped); empty uses the installed plugin. */
function readBuildxVersion(src: Inputs): string | undefined {
  const raw = src.value(Input.buildxVersion);
  if (raw === '') return undefined;
  if (raw !== 'latest' && !/^v?\d+\.\d+\.\d+$/.test(raw)) throw new InputError(Input.buildxVersion, loc('InputBuildxVersionInvalid', raw));
  return raw.replace(/^v/, '');
}
