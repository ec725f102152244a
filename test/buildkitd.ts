import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT } from '../scripts/agent';

/**
 * A standalone BuildKit on the host, for tests with the `remote` driver: the buildkitd binary from
 * `../shared/buildkit` (DBXC_SHARED overrides where `shared` is), unpacked once into
 * ~/.cache/docker-buildx-cache-buildkitd and checked against the sha256 that shared/buildkit/README.md
 * gives, run as root with its state and socket in a temp folder that `stop()` removes.
 */
const VERSION = 'v0.32.2';
const SHA256 = '4c631c18a9e5c771c92c5421ec723179098a42599acd9b57d8387c2eb0dd2f6a';

export function sharedDir(): string {
  return process.env.DBXC_SHARED ?? path.resolve(ROOT, '..', 'shared');
}

function binary(): string {
  const home = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'docker-buildx-cache-buildkitd');
  const bin = path.join(home, `buildkitd-${VERSION}`);
  const hash = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  if (fs.existsSync(bin) && hash(bin) === SHA256) return bin;
  const xz = path.join(sharedDir(), 'buildkit', `buildkitd-${VERSION}-linux-amd64.xz`);
  if (!fs.existsSync(xz))
    throw new Error(
      `${xz} is missing: the remote-driver tests need the BuildKit binary from shared/buildkit (set DBXC_SHARED to the shared folder)`,
    );
  fs.mkdirSync(home, { recursive: true });
  const unpacked = spawnSync('xz', ['-dc', xz], { maxBuffer: 512 << 20 });
  if (unpacked.status !== 0) throw new Error(`xz -dc ${xz} failed: ${unpacked.stderr.toString()}`);
  const tmp = `${bin}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, unpacked.stdout, { mode: 0o755 });
  if (hash(tmp) !== SHA256) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`${xz} does not unpack to the buildkitd whose sha256 is ${SHA256}`);
  }
  fs.renameSync(tmp, bin);
  return bin;
}

export interface Buildkitd {
  /** `unix:///…/buildkitd.sock`, the endpoint for `docker buildx create --driver remote`. */
  readonly endpoint: string;
  stop(): Promise<void>;
}

export async function startBuildkitd(): Promise<Buildkitd> {
  // Not a helpers tempDir: those go after each test, and buildkitd outlives tests.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbxc-buildkitd-'));
  const socket = path.join(dir, 'buildkitd.sock');
  const log = fs.openSync(path.join(dir, 'buildkitd.log'), 'w');
  const child: ChildProcess = spawn(
    binary(),
    ['--addr', `unix://${socket}`, '--root', path.join(dir, 'root'), '--oci-worker=true', '--containerd-worker=false'],
    { stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; i < 100 && !fs.existsSync(socket) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  if (!fs.existsSync(socket)) {
    child.kill('SIGKILL');
    throw new Error(`buildkitd did not start: ${fs.readFileSync(path.join(dir, 'buildkitd.log'), 'utf8').slice(-2000)}`);
  }
  return {
    endpoint: `unix://${socket}`,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
