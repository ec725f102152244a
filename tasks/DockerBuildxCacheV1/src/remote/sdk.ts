/**
 * What talks to Azure and to token endpoints: the Azure Storage SDK and an HTTP client that honours
 * the agent's proxy. Bundled on its own (dist/remote.js) and loaded by `loadRemote` only in jobs
 * that need it, so that every other job starts without parsing it. It must not import task-lib:
 * what it needs from the agent (a token credential, the proxy) is passed in.
 */
import type { TokenCredential } from '@azure/core-auth';
import { BlobServiceClient, ContainerClient, type StoragePipelineOptions } from '@azure/storage-blob';
import { HttpClient } from 'typed-rest-client/HttpClient';

/** How the container is reached. */
export type AzureAccess =
  | { readonly kind: 'token'; readonly accountUrl: string; readonly container: string; readonly credential: TokenCredential }
  | { readonly kind: 'sasUrl'; readonly url: string; readonly container: string }
  | { readonly kind: 'sasToken'; readonly accountUrl: string; readonly token: string; readonly container: string }
  | { readonly kind: 'connectionString'; readonly value: string; readonly container: string };

/** The agent's proxy, as task-lib describes it. */
export interface Proxy {
  readonly proxyUrl: string;
  readonly proxyUsername?: string;
  readonly proxyPassword?: string;
  readonly proxyBypassHosts?: string[];
}

/** One HTTP request through the agent's proxy. */
export async function httpRequest(
  method: 'GET' | 'POST',
  url: string,
  headers: Record<string, string>,
  body: string | undefined,
  proxy: Proxy | undefined,
): Promise<{ status: number; body: string }> {
  const client = new HttpClient('docker-buildx-cache', undefined, { proxy, socketTimeout: 30000 });
  const response = method === 'GET' ? await client.get(url, headers) : await client.post(url, body ?? '', headers);
  return { status: response.message.statusCode ?? 0, body: await response.readBody() };
}

/** Retries with exponential backoff on throttling, server errors and dropped connections; one try never waits longer than ten minutes. */
function pipelineOptions(proxy: Proxy | undefined): StoragePipelineOptions {
  const proxyUrl = proxy ? new URL(proxy.proxyUrl) : undefined;
  return {
    retryOptions: { maxTries: 5, retryDelayInMs: 500, maxRetryDelayInMs: 8000, tryTimeoutInMs: 10 * 60_000 },
    userAgentOptions: { userAgentPrefix: 'DockerBuildxCache/1' },
    ...(proxy && proxyUrl
      ? {
          proxyOptions: {
            host: `${proxyUrl.protocol}//${proxyUrl.hostname}`,
            port: Number(proxyUrl.port || (proxyUrl.protocol === 'https:' ? 443 : 80)),
            username: proxy.proxyUsername,
            password: proxy.proxyPassword,
          },
        }
      : {}),
  };
}

/** A SAS URL of one container ends in its name; one of the account does not. Emulators put the account name first in the path. */
function isContainerUrl(url: URL): boolean {
  const depth = url.pathname.split('/').filter(Boolean).length;
  return depth > (/^(127\.|localhost$)/.test(url.hostname) ? 1 : 0);
}

/** The container client for the access; a connection string the SDK cannot read throws the SDK's message, which never holds the value. */
export function containerClient(access: AzureAccess, proxy: (url: string) => Proxy | undefined): ContainerClient {
  switch (access.kind) {
    case 'token':
      return new BlobServiceClient(access.accountUrl, access.credential, pipelineOptions(proxy(access.accountUrl))).getContainerClient(
        access.container,
      );
    case 'sasUrl': {
      const options = pipelineOptions(proxy(access.url));
      return isContainerUrl(new URL(access.url))
        ? new ContainerClient(access.url, undefined, options)
        : new BlobServiceClient(access.url, undefined, options).getContainerClient(access.container);
    }
    case 'sasToken': {
      const url = `${access.accountUrl.replace(/\/+$/, '')}?${access.token.replace(/^\?/, '')}`;
      return new BlobServiceClient(url, undefined, pipelineOptions(proxy(url))).getContainerClient(access.container);
    }
    case 'connectionString':
      return BlobServiceClient.fromConnectionString(
        access.value,
        pipelineOptions(proxy('https://blob.core.windows.net')),
      ).getContainerClient(access.container);
  }
}
