// A separate process that saves to or prunes a store, for the concurrency and crash tests.
//   node store-worker.js save <store> <cacheDir> <key> <scope>
//   node store-worker.js prune <store> <rounds>
import { LocalStore } from '../tasks/DockerBuildxCacheV1/src/store/local';

async function main(): Promise<void> {
  const [command, storePath = '', a = '', b = '', c = ''] = process.argv.slice(2);
  const store = new LocalStore(storePath);
  if (command === 'save') {
    const result = await store.save({ cacheDir: a, key: b, segments: b.split('|'), scope: c, now: new Date() });
    process.stdout.write(JSON.stringify({ status: result.status, id: result.entry.id }));
  } else if (command === 'prune') {
    for (let i = 0; i < Number(a); i++) await store.prune({ retentionDays: 7, now: new Date() });
  } else {
    throw new Error(`unknown command ${String(command)}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(String(err instanceof Error ? err.stack : err));
  process.exit(1);
});
