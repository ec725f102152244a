// node build/scripts/bench-facade.js [--rounds=N] [--mb=N] [--baseline=DIR]: how fast the registry
// facade serves a large blob of an entry in the Azure Blob store (Azurite, scripts/azurite.sh)
// against a plain GET of the same blob from Azurite, both read by curl as BuildKit would read them,
// alternating; medians. With --baseline, also the facade and store of another build (DIR: the `build`
// folder of another checkout, compiled with `node scripts/build.mjs --tests`), in the same rounds.
// Not a test: it prints the figures and their ratios, measured in the same run.
import { spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BlobSASPermissions, type ContainerClient } from '@azure/storage-blob';
import { ensureAzurite, freshContainer } from './azurite';
import * as directModule from '../tasks/DockerBuildxCacheV1/src/cache/direct';
import * as facadeModule from '../tasks/DockerBuildxCacheV1/src/facade/facade';
import * as blobModule from '../tasks/DockerBuildxCacheV1/src/store/blob';
import { blobName } from '../tasks/DockerBuildxCacheV1/src/store/names';
import { cacheFolder } from '../test/oci-fixture';
import { median } from './measure';

const option = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const arg = (name: string, fallback: number): number => Number(option(name) ?? fallback);

/** The modules of one build that serve an entry through the facade. */
interface Build {
  readonly entryReader: typeof directModule.entryReader;
  readonly RegistryFacade: typeof facadeModule.RegistryFacade;
  readonly AzureBlobStore: typeof blobModule.AzureBlobStore;
}
const CURRENT: Build = { ...directModule, ...facadeModule, ...blobModule };

function buildAt(dir: string): Build {
  const src = path.resolve(dir, 'tasks', 'DockerBuildxCacheV1', 'src');
  /* eslint-disable @typescript-eslint/no-require-imports -- another build's modules, loaded by path */
  return {
    ...(require(path.join(src, 'cache', 'direct.js')) as typeof directModule),
    ...(require(path.join(src, 'facade', 'facade.js')) as typeof facadeModule),
    ...(require(path.join(src, 'store', 'blob.js')) as typeof blobModule),
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
}

/** curl's seconds for the whole body, and its bytes. */
function curl(url: string, auth?: string): Promise<{ seconds: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const args = [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{time_total} %{size_download} %{http_code}',
      ...(auth === undefined ? [] : ['-u', auth]),
      url,
    ];
    const child = spawn('curl', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const [t, b, status] = out.trim().split(' ');
      if (code !== 0 || status !== '200') reject(new Error(`curl ${url}: exit ${String(code)}, ${out}`));
      else resolve({ seconds: Number(t), bytes: Number(b) });
    });
  });
}

async function main(): Promise<void> {
  const rounds = arg('rounds', 7);
  const size = arg('mb', 126) << 20;
  const azurite = ensureAzurite();
  const container: ContainerClient = freshContainer(azurite.blobUrl, 'dbxc-bench-facade');
  const builds: [string, Build][] = [['facade', CURRENT]];
  const baseline = option('baseline');
  if (baseline !== undefined) builds.push(['baseline facade', buildAt(baseline)]);
  const work = path.join(os.tmpdir(), `dbxc-bench-facade-${crypto.randomBytes(4).toString('hex')}`);
  const { dir } = cacheFolder(work, 'cache', [crypto.randomBytes(1 << 20), crypto.randomBytes(size)]);
  const key = 'bench';
  await new CURRENT.AzureBlobStore(container, 'bench').save({ cacheDir: dir, key, segments: [key], scope: 'main', now: new Date() });
  const plainUrl = async (digest: string): Promise<string> =>
    container
      .getBlobClient(blobName(digest))
      .generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 3600_000) });

  const targets: { name: string; url: string; auth?: string; size: number; close: () => Promise<void> }[] = [];
  try {
    for (const [name, build] of builds) {
      const store = new build.AzureBlobStore(container, 'bench');
      const head = (await store.list(['main'])).entries[0];
      if (head === undefined) throw new Error('no entry');
      const opened = await store.openEntry(head);
      const reader = build.entryReader(opened);
      const blob = reader.blobs.reduce((a, b) => (b.size > a.size ? b : a));
      const facade = await build.RegistryFacade.start({ reader });
      targets.push({
        name,
        url: `http://${facade.host}/v2/${facade.repository}/blobs/${blob.digest}`,
        auth: `${facade.username}:${facade.password}`,
        size: blob.size,
        close: async () => {
          await facade.close();
          await opened.close();
        },
      });
      if (targets.length === 1)
        targets.unshift({
          name: 'plain GET from Azurite',
          url: await plainUrl(blob.digest),
          size: blob.size,
          close: () => Promise.resolve(),
        });
    }
    const times = new Map(targets.map((t) => [t.name, [] as number[]]));
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const r = await curl(t.url, t.auth);
        if (r.bytes !== t.size) throw new Error(`${t.name}: ${r.bytes} bytes of ${t.size}`);
        times.get(t.name)?.push(r.seconds);
      }
    }
    const size0 = targets[0]?.size ?? 0;
    const plain = median(times.get('plain GET from Azurite') ?? []);
    console.log(`blob ${(size0 / 1e6).toFixed(1)} MB, ${rounds} rounds, curl's total time, medians`);
    for (const [name, ts] of times) {
      const m = median(ts);
      console.log(
        `${name.padEnd(24)} ${m.toFixed(3)} s  ${(size0 / m / 1e6).toFixed(0).padStart(4)} MB/s  ${(m / plain).toFixed(2)}x plain  [${ts.map((t) => t.toFixed(3)).join(' ')}]`,
      );
    }
    const base = times.get('baseline facade');
    if (base !== undefined) console.log(`facade / baseline facade: ${(median(times.get('facade') ?? []) / median(base)).toFixed(2)}x`);
  } finally {
    for (const t of targets) await t.close();
    await container.deleteIfExists();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
