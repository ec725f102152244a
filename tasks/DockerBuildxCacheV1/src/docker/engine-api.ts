import * as http from 'http';
import { configSetting } from './config-dir';
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
  return configSetting(configJson, 'currentContext');
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

/** An answer of the engine's API: its status and body; status 0 when none came (the error's message in the body). */
interface Answer {
  readonly status: number;
  readonly body: string;
}

/** One request on a Unix socket; never rejects. */
function request(socketPath: string, method: string, urlPath: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath, method, path: urlPath, timeout: timeoutMs, headers: { Host: 'docker' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (err) => {
        resolve({ status: 0, body: err.message });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (err) => {
      resolve({ status: 0, body: err.message });
    });
    req.end();
  });
}

/**
 * The engine's image store from its API on a socket that is certain (see engineSocket), when the
 * engine answers; undefined otherwise, and the preflight's `docker info` decides. Never throws.
 */
export async function engineStore(socket: string, timeoutMs = 3000): Promise<EngineStore | undefined> {
  const answer = await request(socket, 'GET', '/info', timeoutMs);
  return answer.status === 200 ? storeOfInfo(answer.body) : undefined;
}

/** `repository` and `tag` of an image reference for the API's tag request (`latest` when it names none). */
export function repoAndTag(reference: string): { repo: string; tag: string } {
  const slash = reference.lastIndexOf('/');
  const colon = reference.lastIndexOf(':');
  return colon > slash ? { repo: reference.slice(0, colon), tag: reference.slice(colon + 1) } : { repo: reference, tag: 'latest' };
}

/** What the engine said when a request failed: its `message`, else the body, else the status. */
function failure(answer: Answer): string {
  try {
    const message = (JSON.parse(answer.body) as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return message;
  } catch {
    // Not JSON: the body as it is.
  }
  return answer.body.trim() || `status ${answer.status}`;
}

/**
 * Tags and removals of image references through the engine's API: each one request on the socket
 * (a few milliseconds) where `docker tag` and `docker image rm` start the CLI (about 60 ms each
 * here). Each resolves with what went wrong, or undefined when it was done.
 */
export class EngineImages {
  constructor(
    readonly socket: string,
    private readonly timeoutMs = 30_000,
  ) {}

  /** `docker tag source target`: POST /images/{source}/tag (201). */
  async tag(source: string, target: string): Promise<string | undefined> {
    const { repo, tag } = repoAndTag(target);
    const query = new URLSearchParams({ repo, tag }).toString();
    const answer = await request(this.socket, 'POST', `/images/${source}/tag?${query}`, this.timeoutMs);
    return answer.status === 201 || answer.status === 200 ? undefined : failure(answer);
  }

  /** `docker image rm ref`: DELETE /images/{ref} (200), which only untags an image that other references keep. */
  async remove(ref: string): Promise<string | undefined> {
    const answer = await request(this.socket, 'DELETE', `/images/${ref}`, this.timeoutMs);
    return answer.status === 200 ? undefined : failure(answer);
  }
}
