// The stores that the store contract runs against, each opened fresh, with what the tests need to
// look inside one and to damage it the way real stores get damaged.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ContainerClient, ContainerSASPermissions } from '@azure/storage-blob';
import { ensureAzurite, freshContainer } from '../scripts/azurite';
import { AzureBlobStore } from '../tasks/DockerBuildxCacheV1/src/store/blob';
import { LocalStore } from '../tasks/DockerBuildxCacheV1/src/store/local';
import { scopeSlug } from '../tasks/DockerBuildxCacheV1/src/store/names';
import type { CacheStore } from '../tasks/DockerBuildxCacheV1/src/store/types';
import { tempDir } from './helpers';
import { blobFiles } from './oci-fixture';

function sh(command: string, args: string[]): void {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${r.stderr}`);
}

/**
 * One store under test, opened fresh for each test, with what the contract needs to look inside it
 * and to damage it the way real stores get damaged.
 */
export interface Harness {
  readonly store: CacheStore;
  /** How the worker process opens the same store: `local:<dir>` or `azure:<blob url>:<container>`. */
  readonly spec: string;
  blobs(): Promise<string[]>;
  /** Changes the blob's content, keeping its size. */
  damage(digest: string): Promise<void>;
  remove(digest: string): Promise<void>;
  /** Removes every entry, as a save killed before its entry write leaves the store. */
  dropEntries(): Promise<void>;
  /** Writes a file where the scope's entries are that is not an entry; returns whether it is still there. */
  writeBroken(scope: string): Promise<() => Promise<boolean>>;
  /** A lease of a save in flight. */
  lease(id: string, digests: readonly string[], expires: Date): Promise<void>;
  leases(): Promise<string[]>;
  /** The same store, allowed only to read (a read-only bind mount, a read-only SAS). */
  readOnly(): Promise<CacheStore>;
  /** Undoes what readOnly() set up. */
  done(): void;
}

export const localHarness = (): Promise<Harness> => {
  const dir = tempDir('dbxc-store-');
  const root = path.join(dir, 'v1');
  const store = new LocalStore(dir);
  let view: string | undefined;
  return Promise.resolve({
    store,
    spec: `local:${dir}`,
    blobs: () => Promise.resolve(blobFiles(root)),
    damage: (digest) => {
      damageFile(path.join(root, 'blobs', 'sha256', digest.slice(7)), false);
      return Promise.resolve();
    },
    remove: (digest) => fs.promises.rm(path.join(root, 'blobs', 'sha256', digest.slice(7)), { force: true }),
    dropEntries: () => fs.promises.rm(path.join(root, 'entries'), { recursive: true, force: true }),
    writeBroken(scope) {
      const file = path.join(root, 'entries', scopeSlug(scope), '00000000000001-bad.json');
      fs.writeFileSync(file, '{"id":"00000000000001-bad","key":');
      return Promise.resolve(() => Promise.resolve(fs.existsSync(file)));
    },
    lease(id, digests, expires) {
      fs.mkdirSync(path.join(root, 'leases'), { recursive: true });
      fs.writeFileSync(path.join(root, 'leases', `${id}.json`), JSON.stringify({ id, expires: expires.toISOString(), blobs: digests }));
      return Promise.resolve();
    },
    leases: () => Promise.resolve(fs.existsSync(path.join(root, 'leases')) ? fs.readdirSync(path.join(root, 'leases')) : []),
    readOnly() {
      view = tempDir('dbxc-ro-');
      sh('mount', ['--bind', dir, view]);
      sh('mount', ['-o', 'remount,bind,ro', view]);
      return Promise.resolve(new LocalStore(view));
    },
    done: () => {
      if (view !== undefined) spawnSync('umount', [view]);
    },
  });
};

export const azureHarness = async (): Promise<Harness> => {
  const { blobUrl } = ensureAzurite();
  const container: ContainerClient = freshContainer(blobUrl);
  await container.create();
  // No grace period: the contract's retention test prunes blobs it has just written.
  const store = new AzureBlobStore(container, `Azure Blob container ${container.containerName}`, {
    graceMinutes: 0,
    singleShotBytes: 1 << 20,
    blockBytes: 256 << 10,
  });
  const names = async (prefix: string): Promise<string[]> => {
    const out: string[] = [];
    for await (const item of container.listBlobsFlat({ prefix })) out.push(item.name);
    return out;
  };
  return {
    store,
    spec: `azure:${blobUrl}:${container.containerName}`,
    blobs: async () => (await names('v1/blobs/')).map((n) => n.slice('v1/blobs/'.length).replace('/', ':')).sort(),
    async damage(digest) {
      const client = container.getBlockBlobClient(`v1/blobs/${digest.replace(':', '/')}`);
      const data = await client.downloadToBuffer();
      data[0] = data[0] === 0x4f ? 0x50 : 0x4f;
      await client.upload(data, data.length);
    },
    async remove(digest) {
      await container.getBlobClient(`v1/blobs/${digest.replace(':', '/')}`).deleteIfExists();
    },
    async dropEntries() {
      for (const name of await names('v1/entries/')) await container.getBlobClient(name).delete();
    },
    async writeBroken(scope) {
      const client = container.getBlockBlobClient(`v1/entries/${scopeSlug(scope)}/00000000000001-bad.json`);
      await client.upload('{"id":', 6, { metadata: { segments: 'not base64 json' } });
      return async () => await client.exists();
    },
    async lease(id, digests, expires) {
      const body = JSON.stringify({ id, expires: expires.toISOString(), blobs: digests });
      await container
        .getBlockBlobClient(`v1/leases/${id}.json`)
        .upload(body, body.length, { metadata: { expires: expires.toISOString() } });
    },
    leases: () => names('v1/leases/'),
    async readOnly() {
      const url = await container.generateSasUrl({
        permissions: ContainerSASPermissions.parse('rl'),
        expiresOn: new Date(Date.now() + 3600_000),
      });
      return new AzureBlobStore(new ContainerClient(url), 'read-only', {
        graceMinutes: 0,
        singleShotBytes: 1 << 20,
        blockBytes: 256 << 10,
      });
    },
    done: () => undefined,
  };
};

/** Every store implementation runs the same contract: add a line here for a new one. */
export const STORES: { name: string; open: () => Promise<Harness> }[] = [
  { name: 'local', open: localHarness },
  { name: 'Azure Blob (Azurite)', open: azureHarness },
];

/** Changes one byte of a file; `keepMtime` puts its modification time back, as bit rot would leave it. */
export function damageFile(file: string, keepMtime: boolean): string {
  const stat = fs.statSync(file);
  fs.chmodSync(file, 0o644);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('O'), 0, 1, 0);
  fs.closeSync(fd);
  if (keepMtime) fs.utimesSync(file, stat.atimeMs / 1000, stat.mtimeMs / 1000);
  return file;
}
