import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as crypto from 'crypto';
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
  if (r.status !== 0 || blobUrl === undefined || oauthUrl === undefined || ca === undefined) throw new Error(`scripts/azurite.sh up failed (exit ${String(r.status)})`);
  return { blobUrl, oauthUrl, ca };
}

/** A container of its own, for one test, with the shared key. */
export function freshContainer(blobUrl: string, prefix = 'dbxc'): ContainerClient {
  return BlobServiceClient.fromConnectionString(connectionString(blobUrl)).getContainerClient(`${prefix}-${crypto.randomBytes(6).toString('hex')}`);
}

/**
 * A private Azurite that a test may stop and start again on the same data, as a store that goes
 * down in the middle of a save and comes back.
 */
export class PrivateAzurite {
  private child?: ChildProcess;

  constructor(
    readonly port: number,
    readonly location: string,
  ) {}

  get blobUrl(): string {
    return `http://127.0.0.1:${this.port}/${EMULATOR_ACCOUNT}`;
  }

  async start(): Promise<void> {
    const bin = path.join(ROOT, 'node_modules', '.bin', 'azurite-blob');
    const child = spawn(bin, ['--blobHost', '127.0.0.1', '--blobPort', String(this.port), '--location', this.location, '--silent', '--skipApiVersionCheck', '--loose', '--disableTelemetry'], { stdio: 'ignore' });
    this.child = child;
    for (let i = 0; i < 80; i++) {
      const up = await fetch(`${this.blobUrl}?comp=list`).then(
        () => true,
        () => false,
      );
      if (up) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`azurite did not start on port ${this.port}`);
  }

  /** Kills it at once, as a crash would: nothing is flushed. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}
