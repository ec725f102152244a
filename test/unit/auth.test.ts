import * as assert from 'assert/strict';
import { readConnection, type Connection } from '../../tasks/DockerBuildxCacheV1/src/auth/connection';
import type { EndpointReader } from '../../tasks/DockerBuildxCacheV1/src/task/endpoints';
import { ACR_TOKEN_USER, agentHttp, CredentialError, credentialsFor } from '../../tasks/DockerBuildxCacheV1/src/auth/tokens';
import { InputError } from '../../tasks/DockerBuildxCacheV1/src/config/source';
import { TokenServer } from '../token-server';

/** A service connection as the agent describes it: scheme, authorization parameters, data. */
function endpoint(scheme: string | undefined, params: Record<string, string>, data: Record<string, string> = {}): EndpointReader {
  return {
    url: () => (scheme === undefined ? undefined : 'https://example/'),
    scheme: () => scheme,
    param: (_id, key) => params[key],
    data: (_id, key) => data[key],
  };
}

describe('registry service connections', () => {
  const acr = { registrytype: 'ACR' };
  const cases: [string, EndpointReader, Connection][] = [
    [
      'a generic registry',
      endpoint('UsernamePassword', { registry: 'https://index.docker.io/v1/', username: 'u', password: 'p' }, { registrytype: 'Others' }),
      { kind: 'password', registry: 'https://index.docker.io/v1/', username: 'u', password: 'p' },
    ],
    [
      'an old generic connection without a registry type',
      endpoint('UsernamePassword', { registry: 'r.example', username: 'u', password: 'p' }),
      { kind: 'password', registry: 'r.example', username: 'u', password: 'p' },
    ],
    [
      'ACR with a service principal',
      endpoint('ServicePrincipal', { loginServer: 'MyAcr.azurecr.io', serviceprincipalid: 'id', serviceprincipalkey: 'secret' }, acr),
      { kind: 'acr-secret', registry: 'myacr.azurecr.io', clientId: 'id', secret: 'secret' },
    ],
    [
      'ACR with workload identity federation',
      endpoint('WorkloadIdentityFederation', { loginServer: 'myacr.azurecr.io', serviceprincipalid: 'id', tenantid: 't' }, acr),
      {
        kind: 'acr-federated',
        registry: 'myacr.azurecr.io',
        clientId: 'id',
        tenantId: 't',
        authority: 'https://login.microsoftonline.com/',
        connectionId: 'conn',
      },
    ],
    [
      'ACR with workload identity federation in a sovereign cloud',
      endpoint(
        'WorkloadIdentityFederation',
        { loginServer: 'myacr.azurecr.cn', serviceprincipalid: 'id', tenantid: 't' },
        { ...acr, activeDirectoryAuthority: 'https://login.chinacloudapi.cn/' },
      ),
      {
        kind: 'acr-federated',
        registry: 'myacr.azurecr.cn',
        clientId: 'id',
        tenantId: 't',
        authority: 'https://login.chinacloudapi.cn/',
        connectionId: 'conn',
      },
    ],
    [
      'ACR with workload identity federation and an empty authority, as the public cloud',
      endpoint(
        'WorkloadIdentityFederation',
        { loginServer: 'myacr.azurecr.io', serviceprincipalid: 'id', tenantid: 't' },
        { ...acr, activeDirectoryAuthority: '' },
      ),
      {
        kind: 'acr-federated',
        registry: 'myacr.azurecr.io',
        clientId: 'id',
        tenantId: 't',
        authority: 'https://login.microsoftonline.com/',
        connectionId: 'conn',
      },
    ],
    [
      'ACR with a managed identity',
      endpoint('ManagedServiceIdentity', { loginServer: 'myacr.azurecr.io' }, acr),
      { kind: 'acr-managed-identity', registry: 'myacr.azurecr.io', clientId: undefined },
    ],
  ];
  for (const [name, ep, expected] of cases) it(`reads ${name}`, () => assert.deepEqual(readConnection('conn', ep), expected));

  const errors: [string, EndpointReader, RegExp][] = [
    ['a connection that does not exist', endpoint(undefined, {}), /there is no service connection 'conn'/],
    [
      'an Azure Resource Manager connection',
      endpoint('WorkloadIdentityFederation', { serviceprincipalid: 'id', tenantid: 't' }, { environment: 'AzureCloud' }),
      /'conn' is not a Docker Registry connection/,
    ],
    ['a generic connection without a password', endpoint('UsernamePassword', { registry: 'r', username: 'u' }), /'conn' has no password/],
    [
      'an ACR connection without a login server',
      endpoint('ServicePrincipal', { serviceprincipalid: 'id' }, acr),
      /'conn' has no loginServer/,
    ],
    ['an ACR connection with an unknown scheme', endpoint('Certificate', { loginServer: 'a.azurecr.io' }, acr), /scheme 'Certificate'/],
  ];
  for (const [name, ep, pattern] of errors) {
    it(`rejects ${name}, naming containerRegistry`, () =>
      assert.throws(
        () => readConnection('conn', ep),
        (e: Error) => e instanceof InputError && e.input === 'containerRegistry' && pattern.test(e.message),
      ));
  }
});

describe('registry credentials: token exchanges over HTTP', function () {
  this.timeout(20000);
  let server: TokenServer;
  let base: string;
  before(async () => {
    server = new TokenServer();
    base = await server.start();
  });
  after(() => server.stop());
  beforeEach(() => {
    server.requests.length = 0;
    server.failures.clear();
  });

  const job = (): { oidcRequestUri: string; accessToken: string } => ({
    oidcRequestUri: `${base}/oidc`,
    accessToken: TokenServer.JOB_TOKEN,
  });

  it('workload identity federation: the OIDC token, a client assertion to Entra ID, then the registry exchange', async () => {
    const creds = await credentialsFor(
      { kind: 'acr-federated', registry: base, clientId: 'client', tenantId: 'tenant', authority: `${base}/`, connectionId: 'conn-1' },
      agentHttp,
      job(),
    );
    assert.deepEqual(creds, {
      registry: base,
      username: ACR_TOKEN_USER,
      password: TokenServer.REFRESH,
      method: 'workload identity federation',
    });
    assert.deepEqual(
      server.requests.map((r) => `${r.method} ${r.path}`),
      ['POST /oidc', 'POST /tenant/oauth2/v2.0/token', 'POST /oauth2/exchange'],
    );
    const [, entra, exchange] = server.requests;
    assert.deepEqual(entra?.form, {
      grant_type: 'client_credentials',
      client_id: 'client',
      scope: 'https://management.azure.com/.default',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: TokenServer.OIDC,
    });
    assert.deepEqual(exchange?.form, {
      grant_type: 'access_token',
      service: base.replace('http://', ''),
      access_token: TokenServer.ACCESS,
      tenant: 'tenant',
    });
  });

  it("managed identity: the instance metadata service's token, then the registry exchange", async () => {
    process.env.IMDS_ENDPOINT = base;
    try {
      const creds = await credentialsFor({ kind: 'acr-managed-identity', registry: base, clientId: 'mi-client' }, agentHttp, {});
      assert.deepEqual([creds.username, creds.password, creds.method], [ACR_TOKEN_USER, TokenServer.REFRESH, 'managed identity']);
      assert.deepEqual(
        server.requests.map((r) => `${r.method} ${r.path}`),
        ['GET /metadata/identity/oauth2/token', 'POST /oauth2/exchange'],
      );
    } finally {
      delete process.env.IMDS_ENDPOINT;
    }
  });

  it('a user name and password, and a service principal, need no token', async () => {
    assert.deepEqual(await credentialsFor({ kind: 'acr-secret', registry: 'r', clientId: 'id', secret: 's' }, agentHttp, {}), {
      registry: 'r',
      username: 'id',
      password: 's',
      method: 'service principal and secret',
    });
    assert.equal(server.requests.length, 0);
  });

  const failures: [string, () => void, RegExp][] = [
    [
      'Entra ID refuses the federated credential',
      () => server.failures.set('/tenant/', 401),
      /the Entra ID token for the federated credential: .* answered 401 without access_token \(.*AADSTS700213/,
    ],
    [
      'the registry refuses the exchange',
      () => server.failures.set('/oauth2/exchange', 403),
      /the registry's token exchange: .*\/oauth2\/exchange answered 403/,
    ],
    ['Azure DevOps refuses the OIDC request', () => server.failures.set('/oidc', 401), /the OIDC token from Azure DevOps: .* answered 401/],
  ];
  for (const [name, fail, pattern] of failures) {
    it(`fails saying which step failed when ${name}, and never with a token in the message`, async () => {
      fail();
      await assert.rejects(
        credentialsFor(
          { kind: 'acr-federated', registry: base, clientId: 'client', tenantId: 'tenant', authority: base, connectionId: 'c' },
          agentHttp,
          job(),
        ),
        (e: Error) => {
          assert.ok(e instanceof CredentialError);
          assert.match(e.message, pattern);
          for (const token of [TokenServer.OIDC, TokenServer.ACCESS, TokenServer.REFRESH, TokenServer.JOB_TOKEN])
            assert.ok(!e.message.includes(token));
          return true;
        },
      );
    });
  }

  it('fails when the agent gives no OIDC request URI', async () => {
    await assert.rejects(
      credentialsFor(
        { kind: 'acr-federated', registry: base, clientId: 'c', tenantId: 't', authority: base, connectionId: 'c' },
        agentHttp,
        {},
      ),
      /needs the OIDC request URI/,
    );
  });
});
