import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'registry.sh');

export interface Registry {
  /** host:port, on loopback. */
  readonly host: string;
  readonly user: string;
  readonly password: string;
  /** Where the registry keeps its blobs and manifests. */
  readonly dataDir: string;
}

/**
 * Starts (or reuses) the project's registry (scripts/registry.sh): Debian's docker-registry with
 * htpasswd authentication. Without it the registry tests fail rather than skip.
 */
export function ensureRegistry(): Registry {
  const r = spawnSync('bash', [SCRIPT, 'up'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const field = (name: string): string | undefined => new RegExp(`^${name}=(\\S+)$`, 'm').exec(r.stdout)?.[1];
  const host = field('REGISTRY');
  const user = field('REGISTRY_USER');
  const passwordFile = field('REGISTRY_PASSWORD_FILE');
  if (r.status !== 0 || host === undefined || user === undefined || passwordFile === undefined) {
    throw new Error(`scripts/registry.sh up failed (exit ${String(r.status)}); the registry tests need Debian's docker-registry`);
  }
  return { host, user, password: fs.readFileSync(passwordFile, 'utf8').trim(), dataDir: path.join(path.dirname(passwordFile), 'data') };
}
