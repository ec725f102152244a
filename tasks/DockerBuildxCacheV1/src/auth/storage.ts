import { setSecret } from '../task/agent';
import { InputError } from '../config/source';
import type { AzureStoreConfig } from '../config/types';
import { loc } from '../task/messages';
import { agentProxy, loadRemote } from '../remote/load';
import type { AzureAccess } from '../remote/sdk';
import { azureMethod, ConnectionCredential, readAzureConnection, storageToken } from './azure';
import { agentHttp, jobIdentity, type Http } from './tokens';
import { Input } from '../task/inputs';

const SAS_TOKEN = /^\??(sv|sig|se|sp|ss|srt|st|spr|sr|si|skoid)=/;

/** Registers a connection string or SAS as secret, whole and by the parts that could be printed alone. */
function registerSecret(value: string): void {
  setSecret(value);
  for (const m of value.matchAll(/(?:AccountKey|SharedAccessSignature)=([^;]+)/gi)) if (m[1] !== undefined) setSecret(m[1]);
  for (const m of value.matchAll(/(?:^|[?&])sig=([^&;]+)/gi)) if (m[1] !== undefined) setSecret(m[1]);
}

/**
 * How to reach the container. With a service connection, Entra ID tokens for Storage (workload
 * identity federation, a service principal secret, or the managed identity), fetched when the
 * first request needs one; otherwise `storageConnectionString`, which may be a connection string,
 * a SAS URL of the account or the container, or a SAS token for `storageAccountUrl`.
 */
export function azureAccess(
  spec: AzureStoreConfig,
  secret: string | undefined,
  http: Http = agentHttp,
): { access: AzureAccess; method: string } {
  const container = spec.container;
  if (spec.connection !== undefined) {
    const connection = readAzureConnection(spec.connection);
    const credential = new ConnectionCredential(() => storageToken(connection, http, jobIdentity()));
    return {
      access: { kind: 'token', accountUrl: spec.accountUrl ?? '', container, credential },
      method: loc('StoreAuthConnection', azureMethod(connection), spec.connection),
    };
  }
  if (secret === undefined || secret === '') throw new InputError(Input.storageConnectionString, loc('InputAzureAuthRequired'));
  registerSecret(secret);
  const value = secret.trim();
  if (/^https?:\/\//i.test(value)) return { access: { kind: 'sasUrl', url: value, container }, method: loc('StoreAuthSas') };
  if (SAS_TOKEN.test(value)) {
    if (spec.accountUrl === undefined) throw new InputError(Input.storageAccountUrl, loc('InputAzureSasNeedsUrl'));
    return { access: { kind: 'sasToken', accountUrl: spec.accountUrl, token: value, container }, method: loc('StoreAuthSas') };
  }
  return { access: { kind: 'connectionString', value, container }, method: loc('StoreAuthConnectionString') };
}

/** The container client: a connection string that cannot be read is an input error that names the input. */
export function openContainer(
  spec: AzureStoreConfig,
  secret: string | undefined,
  http: Http = agentHttp,
): { client: import('@azure/storage-blob').ContainerClient; method: string } {
  const { access, method } = azureAccess(spec, secret, http);
  try {
    return { client: loadRemote().containerClient(access, agentProxy), method };
  } catch (err) {
    if (access.kind !== 'token')
      throw new InputError(Input.storageConnectionString, loc('InputAzureConnectionString', (err as Error).message));
    throw err;
  }
}
