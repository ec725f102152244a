import { spawnSync } from 'child_process';
import * as path from 'path';

const SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'engine.sh');

/**
 * Provisions (or reuses) the project's Docker engine (scripts/engine.sh) and points this process
 * at it. There is no fallback: without an engine the end-to-end tests fail rather than skip.
 */
export function ensureEngine(): string {
  const r = spawnSync('bash', [SCRIPT, 'up'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const host = /^DOCKER_HOST=(\S+)$/m.exec(r.stdout)?.[1];
  if (r.status !== 0 || host === undefined) {
    throw new Error(`scripts/engine.sh up failed (exit ${String(r.status)}); the end-to-end tests need a real Docker engine with buildx`);
  }
  process.env.DOCKER_HOST = host;
  return host;
}

export const BASE_IMAGE = 'local/busybox:latest';
