import { setSecret, variable } from '../task/agent';
import { authParameter } from '../task/endpoints';
import { agentProxy, loadRemote } from '../remote/load';
import type { Connection } from './connection';

/** The few HTTP calls the logins need; the agent's proxy is honoured. Tests point them at a local server. */
export interface Http {
  request(method: 'GET' | 'POST', url: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: string }>;
}

export const agentHttp: Http = {
  request: (method, url, headers, body) => loadRemote().httpRequest(method, url, headers, body, agentProxy(url)),
};

export class CredentialError extends Error {
  override name = 'CredentialError';
}

/** Credentials for `docker login`, and how they were obtained, for the log. */
export interface Credentials {
  readonly registry: string;
  readonly username: string;
  readonly password: string;
  readonly method: string;
}

/** ACR's user name for a refresh token from the token exchange. */
export const ACR_TOKEN_USER = '00000000-0000-0000-0000-000000000000';
/** Azure Resource Manager, whose tokens ACR's exchange takes; and Azure Storage. */
export const ARM_RESOURCE = 'https://management.azure.com/';
export const STORAGE_RESOURCE = 'https://storage.azure.com/';
const scopeOf = (resource: string): string => `${resource}.default`;

const form = (fields: Record<string, string>): string => new URLSearchParams(fields).toString();

/** Calls one step of a token flow and returns a field of its JSON answer; a failure names the step. */
async function tokenStep(
  http: Http,
  step: string,
  method: 'GET' | 'POST',
  url: string,
  headers: Record<string, string>,
  field: string,
  body?: string,
): Promise<string> {
  let response;
  try {
    response = await http.request(method, url, headers, body);
  } catch (err) {
    throw new CredentialError(`${step}: ${url} cannot be reached (${(err as Error).message})`);
  }
  let value: unknown;
  try {
    value = (JSON.parse(response.body) as Record<string, unknown>)[field];
  } catch {
    value = undefined;
  }
  if (response.status < 200 || response.status >= 300 || typeof value !== 'string' || value === '') {
    // The body of a failed token call describes the error; it holds no token.
    throw new CredentialError(
      `${step}: ${url} answered ${response.status} without ${field} (${response.body.slice(0, 200).replace(/\s+/g, ' ')})`,
    );
  }
  return value;
}

/**
 * The job's OIDC token for a workload identity federation connection, registered as a secret:
 * the assertion that Entra ID exchanges for an access token.
 */
export async function federatedAssertion(http: Http, job: JobIdentity, connectionId: string): Promise<string> {
  if (job.oidcRequestUri === undefined || job.accessToken === undefined)
    throw new CredentialError(
      'workload identity federation needs the OIDC request URI and the job access token, which this agent does not provide',
    );
  const oidc = await oidcToken(http, job.oidcRequestUri, job.accessToken, connectionId);
  setSecret(oidc);
  return oidc;
}

/** The job's OIDC token for a service connection, from Azure DevOps. */
export function oidcToken(http: Http, requestUri: string, accessToken: string, connectionId: string): Promise<string> {
  const url = `${requestUri}${requestUri.includes('?') ? '&' : '?'}api-version=7.1&serviceConnectionId=${encodeURIComponent(connectionId)}`;
  return tokenStep(
    http,
    'the OIDC token from Azure DevOps',
    'POST',
    url,
    { Authorization: `Bearer ${accessToken}`, 'Content-Type': 'application/json' },
    'oidcToken',
    '{}',
  );
}

const tokenUrl = (authority: string, tenantId: string): string =>
  `${authority.replace(/\/+$/, '')}/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`;

/** An Entra ID access token for a service principal that presents the OIDC token as its client assertion. */
export function entraToken(
  http: Http,
  authority: string,
  tenantId: string,
  clientId: string,
  assertion: string,
  resource = ARM_RESOURCE,
): Promise<string> {
  const body = form({
    grant_type: 'client_credentials',
    client_id: clientId,
    scope: scopeOf(resource),
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  });
  return tokenStep(
    http,
    'the Entra ID token for the federated credential',
    'POST',
    tokenUrl(authority, tenantId),
    { 'Content-Type': 'application/x-www-form-urlencoded' },
    'access_token',
    body,
  );
}

/** An Entra ID access token for a service principal with a client secret. */
export function entraSecretToken(
  http: Http,
  authority: string,
  tenantId: string,
  clientId: string,
  secret: string,
  resource: string,
): Promise<string> {
  const body = form({ grant_type: 'client_credentials', client_id: clientId, scope: scopeOf(resource), client_secret: secret });
  return tokenStep(
    http,
    'the Entra ID token for the service principal',
    'POST',
    tokenUrl(authority, tenantId),
    { 'Content-Type': 'application/x-www-form-urlencoded' },
    'access_token',
    body,
  );
}

/** An access token of the agent's managed identity, from the instance metadata service. */
export function imdsToken(http: Http, clientId?: string, resource = ARM_RESOURCE): Promise<string> {
  const base = process.env.IMDS_ENDPOINT ?? 'http://169.254.169.254';
  const endpoint = `${base.replace(/\/+$/, '')}/metadata/identity/oauth2/token`;
  const client = clientId !== undefined ? `&client_id=${encodeURIComponent(clientId)}` : '';
  const url = `${endpoint}?api-version=2018-02-01&resource=${encodeURIComponent(resource)}${client}`;
  return tokenStep(http, "the managed identity's token", 'GET', url, { Metadata: 'true' }, 'access_token');
}

/** The registry's refresh token for an Entra ID access token: ACR's `/oauth2/exchange`, as Microsoft's Docker tasks use it. */
export function acrRefreshToken(http: Http, registry: string, accessToken: string, tenantId?: string): Promise<string> {
  const origin = /^https?:\/\//.test(registry) ? registry.replace(/\/+$/, '') : `https://${registry}`;
  const service = origin.replace(/^https?:\/\//, '');
  const body = form({
    grant_type: 'access_token',
    service,
    access_token: accessToken,
    ...(tenantId !== undefined ? { tenant: tenantId } : {}),
  });
  return tokenStep(
    http,
    "the registry's token exchange",
    'POST',
    `${origin}/oauth2/exchange`,
    { 'Content-Type': 'application/x-www-form-urlencoded' },
    'refresh_token',
    body,
  );
}

export interface JobIdentity {
  /** System.OidcRequestUri, or the plan's oidctoken URL. */
  readonly oidcRequestUri?: string;
  /** The job's access token (the SystemVssConnection's). */
  readonly accessToken?: string;
}

/** Where this job gets OIDC tokens for service connections, and its own access token. */
export function jobIdentity(): JobIdentity {
  const collection = variable('System.CollectionUri');
  const planUri =
    collection === undefined
      ? undefined
      : [
          collection.replace(/\/?$/, ''),
          variable('System.TeamProjectId') ?? '',
          '_apis/distributedtask/hubs',
          variable('System.HostType') ?? 'build',
          'plans',
          variable('System.PlanId') ?? '',
          'jobs',
          variable('System.JobId') ?? '',
          'oidctoken',
        ].join('/');
  return {
    oidcRequestUri: variable('System.OidcRequestUri') ?? planUri,
    accessToken: authParameter('SystemVssConnection', 'AccessToken') ?? variable('System.AccessToken'),
  };
}

/** The user name and password that `docker login` needs for a connection, fetching tokens where it must. */
export async function credentialsFor(conn: Connection, http: Http, job: JobIdentity): Promise<Credentials> {
  switch (conn.kind) {
    case 'password':
      return { registry: conn.registry, username: conn.username, password: conn.password, method: 'user name and password' };
    case 'acr-secret':
      return { registry: conn.registry, username: conn.clientId, password: conn.secret, method: 'service principal and secret' };
    case 'acr-federated': {
      const oidc = await federatedAssertion(http, job, conn.connectionId);
      const access = await entraToken(http, conn.authority, conn.tenantId, conn.clientId, oidc);
      setSecret(access);
      const refresh = await acrRefreshToken(http, conn.registry, access, conn.tenantId);
      return { registry: conn.registry, username: ACR_TOKEN_USER, password: refresh, method: 'workload identity federation' };
    }
    case 'acr-managed-identity': {
      const access = await imdsToken(http, conn.clientId);
      setSecret(access);
      const refresh = await acrRefreshToken(http, conn.registry, access);
      return { registry: conn.registry, username: ACR_TOKEN_USER, password: refresh, method: 'managed identity' };
    }
  }
}
