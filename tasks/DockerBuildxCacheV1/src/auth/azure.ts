import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { setSecret } from '../task/agent';
import { InputError } from '../config/source';
import { loc } from '../task/messages';
import { taskEndpoints, type EndpointReader } from '../task/endpoints';
import { entraSecretToken, entraToken, imdsToken, federatedAssertion, STORAGE_RESOURCE, type Http, type JobIdentity } from './tokens';
import { Input } from '../task/inputs';
import { entraAuthority, requiredParameters } from './endpoint';

/** An Azure Resource Manager service connection, as the agent hands it to the task. */
export type AzureConnection =
  | { readonly kind: 'federated'; readonly id: string; readonly tenantId: string; readonly clientId: string; readonly authority: string }
  | { readonly kind: 'secret'; readonly tenantId: string; readonly clientId: string; readonly secret: string; readonly authority: string }
  | { readonly kind: 'managed-identity'; readonly clientId?: string };

/**
 * Reads the `azureSubscription` connection: workload identity federation, a service principal
 * with a secret, or the agent's managed identity. Anything else is an input error that says what
 * to use instead.
 */
export function readAzureConnection(id: string, ep: EndpointReader = taskEndpoints): AzureConnection {
  const scheme = ep.scheme(id);
  if (scheme === undefined && ep.url(id) === undefined) throw new InputError(Input.azureSubscription, loc('InputConnectionMissing', id));
  const need = requiredParameters(ep, id, Input.azureSubscription);
  const authority = entraAuthority(ep, id, 'environmentAuthorityUrl');
  switch (scheme) {
    case 'WorkloadIdentityFederation':
      return { kind: 'federated', id, tenantId: need('tenantid'), clientId: need('serviceprincipalid'), authority };
    case 'ServicePrincipal':
      if ((ep.param(id, 'authenticationType') ?? 'spnKey') !== 'spnKey')
        throw new InputError(Input.azureSubscription, loc('InputAzureCertificate', id));
      return {
        kind: 'secret',
        tenantId: need('tenantid'),
        clientId: need('serviceprincipalid'),
        secret: need('serviceprincipalkey'),
        authority,
      };
    case 'ManagedServiceIdentity':
      return { kind: 'managed-identity', clientId: ep.param(id, 'serviceprincipalid') || undefined };
    default:
      throw new InputError(Input.azureSubscription, loc('InputAzureScheme', id, scheme ?? '-'));
  }
}

export const azureMethod = (conn: AzureConnection): string =>
  ({ federated: 'workload identity federation', secret: 'service principal and secret', 'managed-identity': 'managed identity' })[
    conn.kind
  ];

/** An Entra ID access token for Azure Storage, for the connection. */
export async function storageToken(conn: AzureConnection, http: Http, job: JobIdentity): Promise<string> {
  switch (conn.kind) {
    case 'federated': {
      const oidc = await federatedAssertion(http, job, conn.id);
      return entraToken(http, conn.authority, conn.tenantId, conn.clientId, oidc, STORAGE_RESOURCE);
    }
    case 'secret':
      return entraSecretToken(http, conn.authority, conn.tenantId, conn.clientId, conn.secret, STORAGE_RESOURCE);
    case 'managed-identity':
      return imdsToken(http, conn.clientId, STORAGE_RESOURCE);
  }
}

/** How long a token is used before a new one is fetched: well inside the hour that Entra ID tokens last. */
const TOKEN_REUSE_MS = 30 * 60 * 1000;

/**
 * The storage SDK's credential for a service connection: a token is fetched when the first
 * request needs one, registered as a secret, and reused for half an hour.
 */
export class ConnectionCredential implements TokenCredential {
  private cached?: Promise<AccessToken>;

  constructor(
    private readonly fetch: () => Promise<string>,
    private readonly now: () => number = Date.now,
  ) {}

  getToken(): Promise<AccessToken> {
    const current = this.cached;
    if (current !== undefined) {
      return current.then((t) => (t.expiresOnTimestamp - this.now() > 60_000 ? t : this.refresh()));
    }
    return this.refresh();
  }

  private refresh(): Promise<AccessToken> {
    const started = this.now();
    this.cached = this.fetch().then((token) => {
      setSecret(token);
      return { token, expiresOnTimestamp: started + TOKEN_REUSE_MS };
    });
    // A failed fetch is not cached: the next request tries again.
    this.cached.catch(() => (this.cached = undefined));
    return this.cached;
  }
}
