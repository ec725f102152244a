import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { hasContainerdStore } from './preflight';

/**
 * What the engine's API says of its image store, before `docker info` does: that needs a start of
 * the docker CLI and of each of its plugins (about 130 ms here against 30 ms for the API), and
 * `driver: auto` waits for the store before the builder starts and the cache plan picks its transport.
 */
export interface EngineStore {
  readonly containerdStore: boolean;
}

/** The `currentContext` of a docker config.json; undefined when it names none or cannot be read. */
export function currentContextOf(configJson: string): string | undefined {
  try {
    const context = (JSON.parse(configJson) as { currentContext?: unknown }).currentContext;
    return typeof context === 'string' && context !== '' ? context : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The engine's Unix socket when it is certainly the one the docker CLI talks to: DOCKER_HOST's
 * `unix://` path; with no DOCKER_HOST, and no context other than `default` (DOCKER_CONTEXT, else the
 * config's currentContext), the default socket. Undefined for any other endpoint (tcp, ssh, a named
 * context's, a Windows pipe): only the CLI resolves those, so the preflight's answer is waited for.
 */
export function engineSocket(env: NodeJS.ProcessEnv, currentContext: string | undefined, platform = process.platform): string | undefined {
  const host = env.DOCKER_HOST;
  if (host !== undefined && host !== '') return /^unix:\/\/(\/.+)$/.exec(host)?.[1];
  const context = env.DOCKER_CONTEXT || currentContext;
  if (context !== undefined && context !== 'default') return undefined;
  return platform === 'win32' ? undefined : '/var/run/docker.sock';
}

/** The image store from the engine's GET /info answer; undefined when it does not say. */
export function storeOfInfo(body: string): EngineStore | undefined {
  try {
    const status = (JSON.parse(body) as { DriverStatus?: unknown }).DriverStatus;
    return Array.isArray(status) ? { containerdStore: hasContainerdStore(JSON.stringify(status)) } : undefined;
  } catch {
    return undefined;
  }
}

/** GET /info on a Unix socket; undefined when no answer with a status of 200 comes within `timeoutMs`. */
function getInfo(socketPath: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/info', timeout: timeoutMs, headers: { Host: 'docker' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        resolve(undefined);
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
      res.on('error', () => {
        resolve(undefined);
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => {
      resolve(undefined);
    });
  });
}

/**
 * The engine's image store from its API, when the socket is certain (see engineSocket) and the
 * engine answers; undefined otherwise, and the preflight's `docker info` decides. Never throws.
 */
export async function engineStore(env: NodeJS.ProcessEnv, dockerConfig: string, timeoutMs = 3000): Promise<EngineStore | undefined> {
  const configJson = await fs.promises.readFile(path.join(dockerConfig, 'config.json'), 'utf8').catch(() => '');
  const socket = engineSocket(env, currentContextOf(configJson));
  if (socket === undefined) return undefined;
  const body = await getInfo(socket, timeoutMs);
  return body === undefined ? undefined : storeOfInfo(body);
}
