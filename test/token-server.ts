import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';

/**
 * Plays Azure DevOps' OIDC token endpoint, Entra ID's token endpoint, the instance metadata service
 * and ACR's token exchange on loopback, checking each request as the real services would.
 */
export class TokenServer {
  static readonly OIDC = 'oidc-token-for-the-connection';
  static readonly ACCESS = 'entra-access-token';
  static readonly MI_ACCESS = 'managed-identity-access-token';
  static readonly REFRESH = 'acr-refresh-token';
  static readonly JOB_TOKEN = 'job-access-token';
  static readonly SP_SECRET = 'service-principal-secret';
  static readonly STORAGE = 'https://storage.azure.com/';

  /**
   * An Entra ID access token for Azure Storage as Azurite's `--oauth basic` checks it: a JWT whose
   * audience is Storage, issued by a tenant, valid now. Its signature is not checked, so it has none.
   */
  static storageToken(tenant: string): string {
    const now = Math.floor(Date.now() / 1000);
    const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    return `${part({ typ: 'JWT', alg: 'RS256' })}.${part({ aud: 'https://storage.azure.com', iss: `https://sts.windows.net/${tenant}/`, iat: now - 60, nbf: now - 60, exp: now + 3600, tid: tenant })}.c2ln`;
  }

  readonly requests: { method: string; path: string; form: Record<string, string>; headers: http.IncomingHttpHeaders }[] = [];
  /** Each request is also appended here as a JSON line, for tests in another process. */
  log?: string;
  /** Status codes to answer instead, by path prefix. */
  readonly failures = new Map<string, number>();
  private readonly server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const form = Object.fromEntries(new URLSearchParams(body));
      this.requests.push({ method: req.method ?? '', path: url.pathname, form, headers: req.headers });
      if (this.log !== undefined) fs.appendFileSync(this.log, `${JSON.stringify({ method: req.method, path: url.pathname })}\n`);
      const [status, json] = this.route(req, url, form);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
    });
  });

  private route(req: http.IncomingMessage, url: URL, form: Record<string, string>): [number, object] {
    const fail = [...this.failures].find(([prefix]) => url.pathname.startsWith(prefix))?.[1];
    if (fail !== undefined)
      return [fail, { error: 'invalid_client', error_description: 'AADSTS700213: No matching federated identity record found' }];
    if (
      url.pathname === '/oidc' &&
      req.headers.authorization === `Bearer ${TokenServer.JOB_TOKEN}` &&
      url.searchParams.get('serviceConnectionId') !== null
    ) {
      return [200, { oidcToken: TokenServer.OIDC }];
    }
    const tenant = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(url.pathname)?.[1];
    if (
      tenant !== undefined &&
      form.grant_type === 'client_credentials' &&
      (form.client_assertion === TokenServer.OIDC || form.client_secret === TokenServer.SP_SECRET)
    ) {
      const storage = form.scope === `${TokenServer.STORAGE}.default`;
      return [200, { token_type: 'Bearer', access_token: storage ? TokenServer.storageToken(tenant) : TokenServer.ACCESS }];
    }
    if (url.pathname === '/metadata/identity/oauth2/token' && req.headers.metadata === 'true') {
      return [
        200,
        {
          access_token:
            url.searchParams.get('resource') === TokenServer.STORAGE ? TokenServer.storageToken('managed-identity') : TokenServer.MI_ACCESS,
        },
      ];
    }
    if (
      url.pathname === '/oauth2/exchange' &&
      form.grant_type === 'access_token' &&
      (form.access_token === TokenServer.ACCESS || form.access_token === TokenServer.MI_ACCESS)
    ) {
      return [200, { refresh_token: TokenServer.REFRESH }];
    }
    return [400, { error: 'unexpected request' }];
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Run as a process of its own (`node token-server.js <log>`): prints its base URL, logs requests to <log>. */
if (require.main === module) {
  const server = new TokenServer();
  server.log = process.argv[2];
  void server.start().then((base) => {
    process.stdout.write(`${base}\n`);
  });
}
