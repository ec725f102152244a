import { setSecret } from '../task/agent';
import { errorTail, type DockerCli } from './cli';
import { loc } from '../task/messages';
import { readConnection } from '../auth/connection';
import { taskEndpoints, type EndpointReader } from '../task/endpoints';
import { agentHttp, CredentialError, credentialsFor, jobIdentity, type Http } from '../auth/tokens';

export class LoginError extends Error {
  override name = 'LoginError';
}

/**
 * Logs in to the registry of the `containerRegistry` connection. The password (or the registry's
 * refresh token) is registered as a secret and goes to `docker login --password-stdin`, never on a
 * command line; `docker` here runs with the job-private DOCKER_CONFIG, so the login dies with the job.
 */
export async function registryLogin(
  docker: DockerCli,
  connectionId: string,
  http: Http = agentHttp,
  endpoints: EndpointReader = taskEndpoints,
): Promise<{ registry: string; method: string }> {
  const connection = readConnection(connectionId, endpoints);
  const credentials = await credentialsFor(connection, http, jobIdentity()).catch((err: unknown) => {
    if (err instanceof CredentialError) throw new LoginError(loc('CredentialsFailed', connectionId, err.message));
    throw err;
  });
  setSecret(credentials.password);
  const result = await docker.run(['login', '--username', credentials.username, '--password-stdin', credentials.registry], {
    input: credentials.password,
    echo: true,
  });
  if (result.code !== 0) {
    throw new LoginError(loc('LoginFailed', credentials.registry, credentials.method, errorTail(result)));
  }
  return { registry: credentials.registry, method: credentials.method };
}
