import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The agent's own docker config folder: DOCKER_CONFIG, else ~/.docker. */
export function agentDockerConfig(): string {
  return process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker');
}

/** The text of the agent's docker config.json; '' when there is none or it cannot be read. */
export function readAgentConfig(): Promise<string> {
  return fs.promises.readFile(path.join(agentDockerConfig(), 'config.json'), 'utf8').catch(() => '');
}

/** A string setting of a docker config.json's text; undefined when it is not set, is empty, or the text is not JSON. */
export function configSetting(configJson: string, name: 'credsStore' | 'currentContext'): string | undefined {
  try {
    const value = (JSON.parse(configJson) as Record<string, unknown> | null)?.[name];
    return typeof value === 'string' && value !== '' ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A DOCKER_CONFIG private to this job. The agent's config.json (per-registry credential helpers,
 * current context), its contexts, its buildx builders, buildx's default BuildKit config and its CLI
 * plugins are brought in, so the job sees what the agent has; what the job adds (a buildx, builders,
 * logins) stays in this folder, which the post-job step deletes. The agent's global credential store
 * (`credsStore`) is left out, so that a login is written to this folder and never outlives the job.
 */
export async function createDockerConfig(dir: string, source: string = agentDockerConfig()): Promise<string> {
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  // buildkitd.default.toml: the BuildKit config a builder created without `--config` gets (registry mirrors, say).
  const parts = ['contexts', ...['instances', 'defaults', 'current', 'buildkitd.default.toml'].map((p) => path.join('buildx', p))];
  for (const part of parts) {
    const from = path.join(source, part);
    if (!fs.existsSync(from)) continue;
    await fs.promises.mkdir(path.dirname(path.join(dir, part)), { recursive: true });
    await fs.promises.cp(from, path.join(dir, part), { recursive: true });
  }
  const configFile = path.join(source, 'config.json');
  if (fs.existsSync(configFile)) {
    const config = JSON.parse(await fs.promises.readFile(configFile, 'utf8')) as Record<string, unknown>;
    delete config.credsStore;
    await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, 2), { mode: 0o600 });
  }
  // The CLI looks for plugins in DOCKER_CONFIG/cli-plugins before the system folders: keep the agent's.
  const plugins = path.join(source, 'cli-plugins');
  for (const name of await fs.promises.readdir(plugins).catch(() => [] as string[])) {
    await fs.promises.mkdir(path.join(dir, 'cli-plugins'), { recursive: true });
    await fs.promises.symlink(path.join(plugins, name), path.join(dir, 'cli-plugins', name));
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
