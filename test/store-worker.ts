// A separate process that saves to or prunes a store, for the concurrency and crash tests.
//   node store-worker.js save <store> <cacheDir> <key> <scope>
//   node store-worker.js prune <store> <rounds>
//   node store-worker.js list <store> <scope>     prints what was skipped and the process's peak memory
// <store> is `local:<dir>` or `azure:<blob url>:<container>` (Azurite, with the emulator's key).
import { BlobServiceClient } from '@azure/storage-blob';
import { connectionString } from '../scripts/azurite';
import { AzureBlobStore } from '../tasks/DockerBuildxCacheV1/src/store/blob';
import { LocalStore } from '../tasks/DockerBuildxCacheV1/src/store/local';
import type { CacheStore } from '../tasks/DockerBuildxCacheV1/src/store/types';

function open(spec: string): CacheStore {
  if (spec.startsWith('local:')) return new LocalStore(spec.slice(6));
  const m = /^azure:(.+):([a-z0-9-]+)$/.exec(spec);
  if (m === null) throw new Error(`unknown store ${spec}`);
  const container = BlobServiceClient.fromConnectionString(connectionString(m[1] ?? '')).getContainerClient(m[2] ?? '');
  return new AzureBlobStore(container, spec, { graceMinutes: 0, singleShotBytes: 1 << 20, blockBytes: 256 << 10 });
}

async function main(): Promise<void> {
  const [command, spec = '', a = '', b = '', c = ''] = process.argv.slice(2);
  const store = open(spec);
  if (command === 'save') {
    const result = await store.save({ cacheDir: a, key: b, segments: b.split('|'), scope: c, now: new Date() });
    process.stdout.write(JSON.stringify({ status: result.status, id: result.entry.id }));
  } else if (command === 'prune') {
    for (let i = 0; i < Number(a); i++) await store.prune({ retentionDays: 7, now: new Date() });
  } else if (command === 'list') {
    const { skipped } = await store.list([a]);
    process.stdout.write(JSON.stringify({ skipped, maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024) }));
  } else {
    throw new Error(`unknown command ${String(command)}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err));
  process.exit(1);
});
