import { proxyFor } from '../task/agent';
import type { Proxy } from './sdk';

/**
 * The Azure SDK and the HTTP client, from their own bundle next to this one: scripts/build.mjs
 * resolves this require to `./remote.js`. Only jobs that fetch tokens or use `azureBlob` load it.
 */
export function loadRemote(): typeof import('./sdk') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on demand, from a separate bundle
  return require('./sdk') as typeof import('./sdk');
}

/** The agent's proxy for a URL, if it has one that the URL does not bypass. */
export function agentProxy(url: string): Proxy | undefined {
  return proxyFor(url);
}
