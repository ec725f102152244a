import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type * as toolLib from 'azure-pipelines-tool-lib/tool';

/**
 * buildx releases, and any mirror laid out the same way:
 *   <base>/download/v<version>/buildx-v<version>.<os>-<arch>[.exe]
 *   <base>/download/v<version>/checksums.txt
 *   <base>/latest/download/checksums.txt      (the newest release's checksums)
 */
export const RELEASES = 'https://github.com/docker/buildx/releases';
export const TOOL_NAME = 'docker-buildx';

export class InstallError extends Error {
  override name = 'InstallError';
}

/** buildx's name for this OS and architecture, as in its release assets. */
export function platformSuffix(platform: string = os.platform(), arch: string = os.arch(), armVersion?: string): string {
  const osName = platform === 'win32' ? 'windows' : platform;
  const archName =
    ({ x64: 'amd64', ppc64: 'ppc64le', arm: armVersion !== undefined ? `arm-v${armVersion}` : 'arm-v7' } as Record<string, string>)[arch] ??
    arch;
  return `${osName}-${archName}${platform === 'win32' ? '.exe' : ''}`;
}

export function assetName(version: string, suffix: string = platformSuffix()): string {
  return `buildx-v${version}.${suffix}`;
}

export function releaseUrls(base: string, version: string, suffix: string = platformSuffix()): { asset: string; checksums: string } {
  const dir = `${base.replace(/\/+$/, '')}/download/v${version}`;
  return { asset: `${dir}/${assetName(version, suffix)}`, checksums: `${dir}/checksums.txt` };
}

export function latestChecksumsUrl(base: string): string {
  return `${base.replace(/\/+$/, '')}/latest/download/checksums.txt`;
}

/** `sha256sum` output: `<hex>  <name>` or `<hex> *<name>`, one per line. */
export function parseChecksums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^([0-9a-f]{64}) [ *](\S+)$/i.exec(line.trim());
    if (m) sums.set(m[2] ?? '', (m[1] ?? '').toLowerCase());
  }
  return sums;
}

/** The newest version named by the assets of a checksums file. */
export function versionFromChecksums(sums: ReadonlyMap<string, string>): string | undefined {
  const versions = [...sums.keys()].map((name) => /^buildx-v(\d+\.\d+\.\d+)\./.exec(name)?.[1]).filter((v): v is string => v !== undefined);
  return versions.sort(compareVersions).pop();
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export interface InstalledBuildx {
  /** The plugin binary. */
  readonly path: string;
  readonly version: string;
  /** Where it came from, for the log. */
  readonly source: string;
}

/** The parts of azure-pipelines-tool-lib this uses; tests hand in a fake. */
export type ToolCache = Pick<typeof toolLib, 'findLocalTool' | 'downloadTool' | 'cacheFile'>;

/**
 * azure-pipelines-tool-lib, loaded only for a job that sets `buildxVersion`: loading it (and its
 * HTTP client) at start-up would cost every other job's main step its time.
 */
export async function agentToolCache(): Promise<ToolCache> {
  return import('azure-pipelines-tool-lib/tool');
}

async function download(tools: ToolCache, url: string): Promise<string> {
  try {
    return await tools.downloadTool(url);
  } catch (err) {
    throw new InstallError(`downloading ${url} failed: ${(err as Error).message}`);
  }
}

async function sha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Puts buildx `requested` (`latest` or `X.Y.Z`) in the agent's tool cache, unless it is there already:
 * the release binary for this OS and architecture, checked against the release's published
 * SHA-256 before it is cached. A download that does not match is deleted, never cached.
 */
export async function installBuildx(
  requested: string,
  base: string = RELEASES,
  tools?: ToolCache,
  suffix: string = platformSuffix(),
): Promise<InstalledBuildx> {
  tools ??= await agentToolCache();
  let version = requested;
  let sums: Map<string, string> | undefined;
  if (requested === 'latest') {
    const file = await download(tools, latestChecksumsUrl(base));
    sums = parseChecksums(await fs.promises.readFile(file, 'utf8'));
    await fs.promises.rm(file, { force: true });
    const latest = versionFromChecksums(sums);
    if (latest === undefined) throw new InstallError(`${latestChecksumsUrl(base)} names no buildx release`);
    version = latest;
  }
  const arch = suffix.replace(/^[^-]+-/, '').replace(/\.exe$/, '');
  const binary = os.platform() === 'win32' ? `${TOOL_NAME}.exe` : TOOL_NAME;
  const cached = tools.findLocalTool(TOOL_NAME, version, arch);
  if (cached) return { path: path.join(cached, binary), version, source: `the tool cache (${cached})` };

  const urls = releaseUrls(base, version, suffix);
  if (sums === undefined || !sums.has(assetName(version, suffix))) {
    const file = await download(tools, urls.checksums);
    sums = parseChecksums(await fs.promises.readFile(file, 'utf8'));
    await fs.promises.rm(file, { force: true });
  }
  const expected = sums.get(assetName(version, suffix));
  if (expected === undefined) throw new InstallError(`${urls.checksums} has no checksum for ${assetName(version, suffix)}`);

  const file = await download(tools, urls.asset);
  const actual = await sha256(file);
  if (actual !== expected) {
    await fs.promises.rm(file, { force: true });
    throw new InstallError(
      `${urls.asset} does not match its published SHA-256 (expected ${expected}, got ${actual}); it was deleted and not cached`,
    );
  }
  await fs.promises.chmod(file, 0o755);
  const dir = await tools.cacheFile(file, binary, TOOL_NAME, version, arch);
  await fs.promises.rm(file, { force: true });
  const installed = path.join(dir, binary);
  await fs.promises.chmod(installed, 0o755);
  return { path: installed, version, source: `${urls.asset}, SHA-256 verified, now in the tool cache (${dir})` };
}
