import * as os from 'os';
import * as path from 'path';
import { variable } from '../task/agent';
import { Input, taskInput } from '../task/inputs';
import { checkCacheDir } from './cache-dir';
import { checkKey, defaultKey, defaultRestoreKey } from './cache-key';
import { readAnnotations, readAttestation, readBuildContexts, readCacheFrom, readSecrets, readSsh } from './features';
import { pipelineLabels } from './labels';
import { expandMacros, isDirectory, isFile, isInside, keyValueLines, lines, pick, readBool } from './parsers';
import { TAG, validateImageName, validateReference } from './reference';
import { AZURE_INPUTS, BUILDER_ONLY_INPUTS, LOCAL_INPUTS, SCOPED_INPUTS, STORE_INPUTS } from './rules';
import { splitArguments } from './shell';
import { InputError, Inputs, type Source } from './source';
import { CACHE_BACKENDS, CACHE_MODES, CACHE_SCOPES, COMPRESSIONS, DRIVERS, isStoreBackend, OUTPUT_KINDS, SAVE_WHEN, STORAGE_AUTHS } from './types';
import type { AzureStoreConfig, BuildConfig, BuilderConfig, CacheBackend, CacheConfig, Config, OutputConfig, OutputKind, SaveWhen } from './types';
import { isOldFormat, salted, SALT_VARIABLE } from '../key/segments';
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
  if (imageName === undefined && output !== 'cacheOnly' && output !== 'custom') {
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
  const tags = imageName === undefined ? [] : (tagLines.length > 0 ? tagLines : ['latest']).map((t) => `${imageName}:${t}`);

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
  let dockerfile = raw === '' || resolve(raw) === src.workingDirectory ? resolve('Dockerfile') : resolve(raw);
  if (isDirectory(dockerfile)) dockerfile = path.join(dockerfile, 'Dockerfile');
  if (!isFile(dockerfile)) throw new InputError(Input.dockerfile, loc('InputDockerfileMissing', asWritten(src, raw || 'Dockerfile'), dockerfile));
  return dockerfile;
}

/**
 * A filePath input as the pipeline likely wrote it: the agent roots every filePath at
 * System.DefaultWorkingDirectory, so one inside it is shown relative again.
 */
function asWritten(src: Inputs, value: string): string {
  const rel = path.relative(src.workingDirectory, path.resolve(src.workingDirectory, value));
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : value;
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
  const cacheDirProblem = isStoreBackend(backend) || backend === 'directory' ? checkCacheDir(dir, (n) => src.variable(n), src.workingDirectory, build.context, backend === 'local' ? storePath : undefined) : undefined;
  if (cacheDirProblem !== undefined) throw new InputError(Input.cacheDir, cacheDirProblem);
  const ignored = src.without([
    ...(isStoreBackend(backend) ? [] : STORE_INPUTS),
    ...(isStoreBackend(backend) || backend === 'registry' ? [] : SCOPED_INPUTS),
    ...(backend === 'local' ? [] : LOCAL_INPUTS),
    ...(backend === 'azureBlob' ? [] : AZURE_INPUTS),
  ]);
  if (ignored.length > 0) warnings.push(loc('WarnIgnoredWithBackend', backend, ignored.join(', ')));

  const agentOs = src.variable('Agent.OS') ?? { Linux: 'Linux', Darwin: 'Darwin', Windows_NT: 'Windows_NT' }[os.type()] ?? os.type();
  const dockerfile = path.relative(src.workingDirectory, build.dockerfile).split(path.sep).join('/');
  const explicitKey = src.value(Input.cacheKey);
  const salt = src.variable(SALT_VARIABLE);
  const key = salted(explicitKey || defaultKey(agentOs, build.imageName, dockerfile), salt);
  checkKey(Input.cacheKey, key);
  const restoreKeys = (explicitKey === '' && src.value(Input.restoreKeys) === '' ? [defaultRestoreKey(agentOs, build.imageName)] : lines(src.value(Input.restoreKeys))).map((k) => salted(k, salt));
  for (const restoreKey of restoreKeys) checkKey(Input.restoreKeys, restoreKey);
  if (isOldFormat(explicitKey)) {
    // As the agent: the old one-segment-a-line format cannot be combined with restore keys.
    if (restoreKeys.length > 0) throw new InputError(Input.cacheKey, loc('InputKeyOldFormatRestoreKeys'));
    if (isStoreBackend(backend)) warnings.push(loc('WarnKeyOldFormat'));
  }

  const retention = src.value(Input.retentionDays);
  const retentionDays = Number(retention);
  if (!/^\d+(\.\d+)?$/.test(retention) || retentionDays <= 0) throw new InputError(Input.retentionDays, loc('InputRetentionInvalid', retention));

  const rawRef = src.value(Input.registryCacheRef);
  if (backend === 'registry' && rawRef === '') throw new InputError(Input.registryCacheRef, loc('InputRegistryCacheRefRequired'));
  if (backend !== 'registry' && src.given(Input.registryCacheRef)) warnings.push(loc('WarnIgnoredWithBackend', backend, Input.registryCacheRef));
  if (rawRef !== '') validateReference(Input.registryCacheRef, rawRef);
  const registryRef = rawRef === '' ? undefined : rawRef;

  const azure = backend === 'azureBlob' ? readAzureStore(src, warnings) : undefined;

  const hitVar = src.value(Input.cacheHitVar) || undefined;
  if (hitVar !== undefined && (!VARIABLE_NAME.test(hitVar) || RESERVED_VARIABLE_PREFIX.test(hitVar))) throw new InputError(Input.cacheHitVar, loc('InputHitVarInvalid', hitVar));

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
    registryRef,
    azure,
  };
}

/**
 * When the cache is written. The stores honour every `saveCache`; `directory` and `registry` are
 * written during the build, so for them only `writeCache` (or `saveCache: never`) counts: read-only.
 */
function readSave(src: Inputs, backend: CacheBackend, warnings: string[]): SaveWhen {
  const save = pick(src, Input.saveCache, SAVE_WHEN);
  const duringBuild = backend === 'directory' || backend === 'registry';
  const ignored = src.without(duringBuild ? [] : [Input.writeCache]);
  if (!isStoreBackend(backend) && save !== 'never' && src.given(Input.saveCache)) ignored.unshift(Input.saveCache);
  if (ignored.length > 0) warnings.push(loc('WarnIgnoredWithBackend', backend, ignored.join(', ')));
  if (duringBuild && !readBool(src, Input.writeCache)) return 'never';
  return save;
}

/** `azureBlob`: a container, reached with the service connection or the secret input. */
function readAzureStore(src: Inputs, warnings: string[]): AzureStoreConfig {
  // storageAuth set to connectionString (the classic editor's choice) uses the connection string; left
  // at its default, a service connection is used when one is given, else the connection string.
  const byString = pick(src, Input.storageAuth, STORAGE_AUTHS) === 'connectionString';
  if (byString && src.given(Input.azureSubscription)) warnings.push(loc('WarnIgnoredWithBackend', 'azureBlob', Input.azureSubscription));
  const connection = byString ? undefined : src.value(Input.azureSubscription) || undefined;
  const rawUrl = src.value(Input.storageAccountUrl);
  let accountUrl: string | undefined;
  if (rawUrl !== '') {
    let url: URL | undefined;
    try {
      url = new URL(rawUrl);
    } catch {
      url = undefined;
    }
    if (url === undefined || !/^https?:$/.test(url.protocol) || url.search !== '') throw new InputError(Input.storageAccountUrl, loc('InputAzureAccountUrlInvalid', rawUrl));
    // The storage SDK sends Entra ID tokens over HTTPS only.
    if (connection !== undefined && url.protocol !== 'https:') throw new InputError(Input.storageAccountUrl, loc('InputAzureAccountUrlInvalid', rawUrl));
    accountUrl = rawUrl.replace(/\/+$/, '');
  }
  const container = src.value(Input.storageContainer);
  if (!CONTAINER_NAME.test(container)) throw new InputError(Input.storageContainer, loc('InputAzureContainerInvalid', container));
  const hasSecret = src.given(Input.storageConnectionString);
  if (byString && !hasSecret) throw new InputError(Input.storageConnectionString, loc('InputAzureConnectionStringRequired'));
  if (connection !== undefined) {
    if (accountUrl === undefined) throw new InputError(Input.storageAccountUrl, loc('InputAzureAccountUrlRequired'));
    if (hasSecret) warnings.push(loc('WarnAzureBothAuth'));
  } else if (!hasSecret) {
    throw new InputError(Input.azureSubscription, loc('InputAzureAuthRequired'));
  }
  return { accountUrl, container, connection };
}

function readBuilder(src: Inputs, resolve: (p: string) => string, warnings: string[]): BuilderConfig {
  const driver = pick(src, Input.driver, DRIVERS);
  const name = src.value(Input.builderName) || undefined;
  if (name !== undefined && !BUILDER_NAME.test(name)) throw new InputError(Input.builderName, loc('InputBuilderNameInvalid', name));

  const driverOptions = keyValueLines(src, Input.driverOptions, false);
  const buildkitdFlags = src.value(Input.buildkitdFlags) || undefined;
  const rawConfig = src.value(Input.buildkitdConfig);
  const buildkitdConfig = src.given(Input.buildkitdConfig) ? resolve(rawConfig) : undefined;
  if (buildkitdConfig !== undefined && !isFile(buildkitdConfig)) {
    throw new InputError(Input.buildkitdConfig, loc('InputBuildkitdConfigMissing', asWritten(src, rawConfig), buildkitdConfig));
  }
  const buildkitdConfigText = src.value(Input.buildkitdConfigInline) || undefined;
  if (buildkitdConfigText !== undefined && buildkitdConfig !== undefined) throw new InputError(Input.buildkitdConfigInline, loc('InputBuildkitdConfigBoth'));
  const endpoint = src.value(Input.endpoint) || undefined;
  if (driver === 'remote' && endpoint === undefined) throw new InputError(Input.endpoint, loc('InputEndpointRequired'));

  if (driver === 'docker') {
    const ignored = src.without(BUILDER_ONLY_INPUTS);
    if (ignored.length > 0) warnings.push(loc('WarnIgnoredWithDockerDriver', ignored.join(', ')));
  }
  const rawVersion = src.value(Input.buildxVersion);
  if (rawVersion !== '' && rawVersion !== 'latest' && !/^v?\d+\.\d+\.\d+$/.test(rawVersion)) throw new InputError(Input.buildxVersion, loc('InputBuildxVersionInvalid', rawVersion));
  const buildxVersion = rawVersion === '' ? undefined : rawVersion.replace(/^v/, '');
  const buildxDownloadUrl = src.value(Input.buildxDownloadUrl) || undefined;
  if (buildxDownloadUrl !== undefined && !/^https?:\/\/[^\s/]+/.test(buildxDownloadUrl)) throw new InputError(Input.buildxDownloadUrl, loc('InputDownloadUrlInvalid', buildxDownloadUrl));
  if (buildxDownloadUrl !== undefined && buildxVersion === undefined) warnings.push(loc('WarnDownloadUrlWithoutVersion'));
  return { buildxVersion, buildxDownloadUrl, driver, name, driverOptions, buildkitdFlags, buildkitdConfig, buildkitdConfigText, endpoint, remove: readBool(src, Input.removeBuilder) };
}
