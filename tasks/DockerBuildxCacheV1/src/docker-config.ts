import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The agent's own docker config folder: DOCKER_CONFIG, else ~/.docker. */
export function agentDockerConfig(): string {
  return process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker');
}

/**
 * A DOCKER_CONFIG private to this job. The agent's config.json (credential helpers, current
 * context), its contexts and its buildx builders are copied in, so the job sees what the agent has;
 * what the job adds (plugins, builders, logins) stays in this folder, which the post-job step deletes.
 */
export async function createDockerConfig(dir: string, source: string = agentDockerConfig()): Promise<string> {
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const part of ['config.json', 'contexts', path.join('buildx', 'instances'), path.join('buildx', 'defaults'), path.join('buildx', 'current')]) {
    const from = path.join(source, part);
    if (!fs.existsSync(from)) continue;
    await fs.promises.mkdir(path.dirname(path.join(dir, part)), { recursive: true });
    await fs.promises.cp(from, path.join(dir, part), { recursive: true });
  }
  return dir;
}

/** Makes `binary` the buildx plugin of the docker config in `dir`. */
export async function installPlugin(dir: string, binary: string): Promise<string> {
  const plugins = path.join(dir, 'cli-plugins');
  await fs.promises.mkdir(plugins, { recursive: true });
  const plugin = path.join(plugins, os.platform() === 'win32' ? 'docker-buildx.exe' : 'docker-buildx');
  await fs.promises.rm(plugin, { force: true });
  await fs.promises.symlink(binary, plugin);
  return plugin;
}
