import * as fs from 'fs';
import * as path from 'path';
import { randomId } from '../util/fs';
import { basicAuth } from './protocol';

export interface RegistryLogin {
  /** `host:port`, the key of the `auths` entry. */
  readonly host: string;
  readonly username: string;
  readonly password: string;
}

/**
 * Writes a login into the docker config folder `configDir` (a job-private DOCKER_CONFIG), so that
 * buildx hands it to BuildKit over the session when BuildKit asks for the host's credentials.
 *
 * It edits config.json directly rather than running `docker login`, which has the engine ping the
 * registry (measured: the ping came from dockerd), so a facade on this machine's loopback could not
 * be logged in to through a remote engine. The file is replaced atomically and stays private (0600).
 * A config with a global credential store (`credsStore`) is refused: buildx would ask that store
 * instead of reading `auths`, and the job-private config never has one (see docker/config-dir.ts).
 */
export async function addLogin(configDir: string, login: RegistryLogin): Promise<void> {
  const file = path.join(configDir, 'config.json');
  let config: Record<string, unknown> = {};
  try {
    config = JSON.parse(await fs.promises.readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file} cannot be read: ${(err as Error).message}`);
  }
  if (config.credsStore !== undefined)
    throw new Error(`${file} names a credential store (credsStore), which would hide a login written to it`);
  const auths = (config.auths ?? {}) as Record<string, unknown>;
  config.auths = { ...auths, [login.host]: { auth: basicAuth(login.username, login.password) } };
  await fs.promises.mkdir(configDir, { recursive: true, mode: 0o700 });
  const tmp = path.join(configDir, `.config.json.${randomId()}.tmp`);
  try {
    await fs.promises.writeFile(tmp, JSON.stringify(config, null, 2), { mode: 0o600, flag: 'wx' });
    await fs.promises.rename(tmp, file);
  } finally {
    await fs.promises.rm(tmp, { force: true });
  }
}
