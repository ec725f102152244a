import { info } from '../agent';
import { csvSpec } from '../buildx/args';
import type { DockerCli } from '../buildx/docker';
import type { Config } from '../config';
import { loc } from '../loc';
import type { PreparedCache } from './session';
import { cacheTrouble } from './trouble';

/** Registry specs for BuildKit's own registry cache, with the attributes ACR and ECR-like registries accept. */
export function registryCacheSpecs(config: Config): { from: string; to: string } {
  const ref = config.cache.registryRef ?? '';
  return {
    from: csvSpec({ type: 'registry', ref }),
    to: csvSpec({ type: 'registry', ref, mode: config.cache.mode, compression: config.cache.compression, 'image-manifest': 'true', 'oci-mediatypes': 'true' }),
  };
}

/**
 * `registry`: BuildKit's own cache at `registryCacheRef`, imported when it exists (cacheHit tells
 * which), exported after the build unless the cache is read-only.
 */
export async function prepareRegistry(config: Config, docker: DockerCli): Promise<PreparedCache> {
  const ref = config.cache.registryRef ?? '';
  const specs = registryCacheSpecs(config);
  const inspect = await docker.run(['buildx', 'imagetools', 'inspect', ref]);
  const exists = inspect.code === 0;
  if (exists) info(loc('RegistryCacheFound', ref));
  else if (/not found|manifest unknown|name unknown/i.test(inspect.stderr)) info(loc('RegistryCacheMissing', ref));
  else cacheTrouble(config.cache.failOnError, loc('WarnRegistryCacheUnreadable', ref, inspect.stderr.trim().split('\n').pop() ?? ''));
  return { flags: { from: exists ? [specs.from] : [], to: config.cache.save === 'never' ? [] : [specs.to] }, hit: exists ? 'true' : 'false' };
}
