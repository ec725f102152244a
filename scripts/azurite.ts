import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as crypto from 'crypto';
import * as net from 'net';
import * as path from 'path';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';

const ROOT = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'azurite.sh');

/** The emulator's well-known account and key (public, documented by Microsoft; not a secret). */
export const EMULATOR_ACCOUNT = 'devstoreaccount1';
export const EMULATOR_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export function connectionString(blobUrl: string): string {
  return `DefaultEndpointsProtocol=http;AccountName=${EMULATOR_ACCOUNT};AccountKey=${EMULATOR_KEY};BlobEndpoint=${blobUrl};`;
}

export interface Azurite {
  /** http://127.0.0.1:<port>/devstoreaccount1, with the shared key. */
  readonly blobUrl: string;
  /** https://127.0.0.1:<port>/devstoreaccount1, which takes bearer tokens. */
  readonly oauthUrl: string;
  /** The HTTPS instance's self-signed certificate, for NODE_EXTRA_CA_CERTS. */
  readonly ca: string;
}

/** Starts (or reuses) the project's Azurite instances (scripts/azurite.sh). Without them the tests fail rather than skip. */
export function ensureAzurite(): Azurite {
  const r = spawnSync('bash', [SCRIPT, 'up'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const field = (name: string): string | undefined => new RegExp(`^${name}=(\\S+)$`, 'm').exec(r.stdout)?.[1];
  const blobUrl = field('AZURITE_BLOB');
  const oauthUrl = field('AZURITE_BLOB_OAUTH');
  const ca = field('AZURITE_CA');
  if (r.status !== 0 || blobUrl === undefined || oauthUrl === undefined || ca === undefined)
    throw new Error(`scripts/azurite.sh up failed (exit ${String(r.status)})`);
  return { blobUrl, oauthUrl, ca };
}

/** A container of its own, for one test, with the shared key. */
export function freshContainer(blobUrl: string, prefix = 'dbxc'): ContainerClient {
  return BlobServiceClient.fromConnectionString(connectionString(blobUrl)).getContainerClient(
    `${prefix}-${crypto.randomBytes(6).toString('hex')}`,
  );
}

/** Binds the port (0: one from the kernel's ephemeral range) and lets it go: a port nothing listens on now. Fails when it is taken. */
async function freePort(port = 0): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const bound = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return bound;
}

/** Whether a child process is still running: one killed by a signal has a null exitCode and a signalCode. */
const running = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null;

/**
 * A private Azurite that a test may stop and start again on the same data, as a store that goes
 * down in the middle of a save and comes back. Its port is free when it first starts (never a
 * fixed one: tests in other worktrees run at the same time), and it is ready only when its own
 * process answers, never another one that holds the port.
 */
export class PrivateAzurite {
  private child?: ChildProcess;
  private port?: number;

  constructor(readonly location: string) {}

  get blobUrl(): string {
    if (this.port === undefined) throw new Error('azurite has not started');
    return `http://127.0.0.1:${this.port}/${EMULATOR_ACCOUNT}`;
  }

  /** Starts it; again on the same port and data after `kill`. */
  async start(): Promise<void> {
    if (this.port !== undefined) {
      const port = this.port;
      const free = await freePort(port).then(
        () => true,
        () => false,
      );
      if (!free || !(await this.spawnOn(port))) throw new Error(`azurite could not start again on port ${port}: another process holds it`);
      return;
    }
    for (let attempt = 1; attempt <= 3; attempt++) {
      const port = await freePort();
      if (await this.spawnOn(port)) {
        this.port = port;
        return;
      }
      // Another process took the port before azurite bound it: try another.
    }
    throw new Error('azurite did not start');
  }

  /** Spawns azurite on the port; true once it answers, false when it exited first (the port was taken). */
  private async spawnOn(port: number): Promise<boolean> {
    const bin = path.join(ROOT, 'node_modules', '.bin', 'azurite-blob');
    const child = spawn(
      bin,
      [
        '--blobHost',
        '127.0.0.1',
        '--blobPort',
        String(port),
        '--location',
        this.location,
        '--silent',
        '--skipApiVersionCheck',
        '--loose',
        '--disableTelemetry',
      ],
      { stdio: 'ignore' },
    );
    this.child = child;
    // A test that times out must not leave it running.
    const reap = (): void => {
      if (running(child)) child.kill('SIGKILL');
    };
    process.once('exit', reap);
    child.once('exit', () => process.removeListener('exit', reap));
    for (let i = 0; i < 120 && running(child); i++) {
      const up = await fetch(`http://127.0.0.1:${port}/${EMULATOR_ACCOUNT}?comp=list`, { signal: AbortSignal.timeout(2000) }).then(
        () => true,
        () => false,
      );
      if (up && running(child)) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    if (running(child)) throw new Error(`azurite did not answer on port ${port}`);
    return false;
  }

  /** Kills it at once, as a crash would: nothing is flushed. Does nothing when it is not running. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || !running(child)) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}
