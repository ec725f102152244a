import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { cleanup, tempDir } from '../helpers';
import { TokenServer } from '../token-server';
import { TokenProcess } from './token-process';
import { runScenario, type MockRun } from './harness';
import { DOCKER } from './types';
import { agentTemp, buildLine, endpoint, freshJob, ID, main, ok, variables } from './job';

describe('mock-run: the main step: registry logins', function () {
  this.timeout(30000);
  beforeEach(freshJob);
  afterEach(cleanup);

  describe('containerRegistry: logins into a job-private docker config', () => {
    const tokens = new TokenProcess();
    let log: string;
    before(() => tokens.start());
    after(() => tokens.stop());
    beforeEach(() => {
      log = path.join(tempDir(), 'logins.jsonl');
      tokens.clear();
    });
    const tokenRequests = (): string[] => tokens.requests();

    const push = (): string => buildLine('default', '--tag registry.example/app:latest --push');
    const run = (env: Record<string, string>, extraVars: Record<string, string> = {}): Promise<MockRun> =>
      runScenario({
        ...main(
          { imageName: 'registry.example/app', driver: 'docker', cacheBackend: 'none', output: 'registry', containerRegistry: 'conn' },
          { [`${DOCKER} buildx inspect default`]: ok, [push()]: ok },
        ),
        variables: { ...variables(), ...extraVars },
        env: { FAKE_DOCKER_LOG: log, ...env },
      });
    const logins = (): { args: string; stdin: string; config: string }[] =>
      fs.existsSync(log)
        ? fs
            .readFileSync(log, 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as { args: string; stdin: string; config: string })
        : [];

    it('a user name and password: docker login --password-stdin into the private config, then the push', async () => {
      const r = await run(
        endpoint(
          'conn',
          'UsernamePassword',
          { registry: 'registry.example', username: 'ci-bot', password: 'pa55-w0rd' },
          { registrytype: 'Others' },
        ),
      );
      assert.ok(r.succeeded, r.stdout);
      const config = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'docker-config');
      assert.deepEqual(logins(), [{ args: 'login --username ci-bot --password-stdin registry.example', stdin: 'pa55-w0rd', config }]);
      assert.equal(r.commands.at(-1), push());
      assert.match(r.stdout, /loc_mock_LoggedIn registry\.example user name and password/);
      // The password is registered as a secret, and appears nowhere else: not on a command line.
      assert.equal(r.stdout.split('pa55-w0rd').length - 1, 1);
      assert.match(r.stdout, /##vso\[task\.setsecret\]pa55-w0rd/);
      const state = JSON.parse(r.taskVariables['DockerBuildxCache.State'] ?? '{}') as { dockerConfig?: string };
      assert.equal(state.dockerConfig, config);
    });

    it('ACR with workload identity federation: OIDC token, Entra ID, the registry exchange, then a login with the refresh token', async () => {
      const r = await run(
        {
          ...endpoint(
            'conn',
            'WorkloadIdentityFederation',
            { loginServer: tokens.base, serviceprincipalid: 'client', tenantid: 'tenant' },
            { registrytype: 'ACR', activeDirectoryAuthority: `${tokens.base}/` },
          ),
          ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: TokenServer.JOB_TOKEN,
        },
        { 'System.OidcRequestUri': `${tokens.base}/oidc` },
      );
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(tokenRequests(), ['/oidc', '/tenant/oauth2/v2.0/token', '/oauth2/exchange']);
      assert.deepEqual(
        logins().map((l) => [l.args, l.stdin]),
        [[`login --username 00000000-0000-0000-0000-000000000000 --password-stdin ${tokens.base}`, TokenServer.REFRESH]],
      );
      for (const token of [TokenServer.OIDC, TokenServer.ACCESS, TokenServer.REFRESH])
        assert.match(r.stdout, new RegExp(`##vso\\[task\\.setsecret\\]${token}`));
      assert.match(r.stdout, /loc_mock_LoggedIn \S+ workload identity federation/);
    });

    it("ACR with the agent's managed identity", async () => {
      const r = await run({
        ...endpoint('conn', 'ManagedServiceIdentity', { loginServer: tokens.base }, { registrytype: 'ACR' }),
        IMDS_ENDPOINT: tokens.base,
      });
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(tokenRequests(), ['/metadata/identity/oauth2/token', '/oauth2/exchange']);
      assert.deepEqual(
        logins().map((l) => l.stdin),
        [TokenServer.REFRESH],
      );
    });

    it('ACR with a service principal and secret logs in with them', async () => {
      const r = await run(
        endpoint(
          'conn',
          'ServicePrincipal',
          { loginServer: 'myacr.azurecr.io', serviceprincipalid: 'sp-id', serviceprincipalkey: 'sp-secret' },
          { registrytype: 'ACR' },
        ),
      );
      assert.ok(r.succeeded, r.stdout);
      assert.deepEqual(
        logins().map((l) => [l.args, l.stdin]),
        [['login --username sp-id --password-stdin myacr.azurecr.io', 'sp-secret']],
      );
    });

    const failures: [string, Record<string, string>, RegExp][] = [
      [
        'wrong credentials',
        {
          ...endpoint('conn', 'UsernamePassword', { registry: 'registry.example', username: 'u', password: 'wrong' }),
          FAKE_DOCKER_PASSWORD: 'right',
        },
        /^loc_mock_LoginFailed registry\.example user name and password Error response from daemon: .*unauthorized/,
      ],
      ['a connection that does not exist', {}, /^Input 'containerRegistry': loc_mock_InputConnectionMissing conn/],
      [
        'an Azure Resource Manager connection',
        endpoint('conn', 'WorkloadIdentityFederation', { serviceprincipalid: 'id', tenantid: 't' }, { environment: 'AzureCloud' }),
        /^Input 'containerRegistry': loc_mock_InputConnectionWrongType conn/,
      ],
      [
        'a federated credential Entra ID refuses',
        {
          ...endpoint(
            'conn',
            'WorkloadIdentityFederation',
            { loginServer: 'a.azurecr.io', serviceprincipalid: 'client', tenantid: 'nobody' },
            { registrytype: 'ACR', activeDirectoryAuthority: 'http://127.0.0.1:1/' },
          ),
          ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN: 'x',
        },
        /^loc_mock_CredentialsFailed conn /,
      ],
    ];
    for (const [name, env, pattern] of failures) {
      it(`fails clearly with ${name}, before any build`, async () => {
        const r = await run(env, { 'System.OidcRequestUri': `${tokens.base}/oidc` });
        assert.ok(r.runner.failed);
        assert.match(r.errors[0] ?? '', pattern);
        assert.ok(!r.commands.some((c) => c.includes('buildx build')));
      });
    }
  });
});
