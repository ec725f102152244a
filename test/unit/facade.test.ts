import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import { RegistryFacade, type FacadeOptions } from '../../tasks/DockerBuildxCacheV1/src/facade/facade';
import { addLogin } from '../../tasks/DockerBuildxCacheV1/src/facade/login';
import { basicAuth } from '../../tasks/DockerBuildxCacheV1/src/facade/protocol';
import type { FacadeEvent } from '../../tasks/DockerBuildxCacheV1/src/facade/types';
import { FolderStore } from '../facade-store';
import { cleanup, tempDir } from '../helpers';
import { blob, CACHE_CONFIG, desc, LAYER, writeLayout, type Blob } from '../oci-fixture';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A cache in the shape of `image-manifest=true`: an image manifest whose config is BuildKit's cache config. */
function imageManifestCache(layers: readonly Buffer[]): { root: Blob; blobs: Blob[]; layers: Blob[]; config: Blob } {
  const ls = layers.map((l) => blob(LAYER, l));
  const config = blob(CACHE_CONFIG, { layers: ls.map((l) => ({ blob: l.digest })) });
  const root = blob(OCI_MANIFEST, { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(config), layers: ls.map(desc) });
  return { root, blobs: [...ls, config, root], layers: ls, config };
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Set when the response was cut short. */
  error?: string;
  /** Whether the answer came before the request's body was all sent (a Go client's upload then fails: "read/write on closed pipe"). */
  early?: boolean;
}

/** One request, with the raw response, including one that is cut short. */
function request(host: string, method: string, pathname: string, headers: http.OutgoingHttpHeaders = {}, body?: Buffer): Promise<Answer> {
  const [hostname = '', port = ''] = host.split(':');
  let sent = false;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname,
        port: Number(port),
        method,
        path: pathname,
        headers: { ...headers, ...(body === undefined ? {} : { 'Content-Length': body.length }) },
      },
      (res) => {
        const early = !sent;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), early }));
        res.on('error', (err) =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error: err.message }),
        );
      },
    );
    req.on('error', reject);
    req.end(body, () => (sent = true));
  });
}

const codeOf = (a: Answer): string | undefined =>
  (JSON.parse(a.body.toString() || '{}') as { errors?: { code: string }[] }).errors?.[0]?.code;
const kinds = (events: readonly FacadeEvent[]): string[] => events.map((e) => (e.kind === 'store' ? `store:${e.operation}` : e.kind));

describe('registry facade: the server', function () {
  this.timeout(20_000);

  let store: FolderStore;
  let started: RegistryFacade[];
  const big = crypto.randomBytes(600_000);
  const cache = imageManifestCache([Buffer.from('layer one'), big]);
  const bigLayer = cache.layers[1] as Blob;

  beforeEach(async () => {
    store = new FolderStore();
    started = [];
    const layout = tempDir('dbxc-facade-layout-');
    writeLayout(layout, cache.root, cache.blobs);
    await store.addLayout(layout, 'restored');
  });
  afterEach(async () => {
    await Promise.all(started.map((f) => f.close()));
    cleanup();
  });

  async function start(
    options: FacadeOptions = { reader: store.reader('restored'), writer: store.writer('saved') },
  ): Promise<RegistryFacade> {
    const facade = await RegistryFacade.start({ spoolDir: tempDir('dbxc-facade-spool-'), idleTimeoutMs: 400, ...options });
    started.push(facade);
    return facade;
  }

  /** Requests to a facade with its credentials, under its repository. */
  function client(f: RegistryFacade): (method: string, rel: string, headers?: http.OutgoingHttpHeaders, body?: Buffer) => Promise<Answer> {
    const auth = `Basic ${basicAuth(f.username, f.password)}`;
    return (method, rel, headers = {}, body) =>
      request(f.host, method, rel.startsWith('/') ? rel : `/v2/${f.repository}/${rel}`, { authorization: auth, ...headers }, body);
  }

  /** A whole monolithic upload, as BuildKit does it: POST, then PUT with the blob. */
  async function upload(call: ReturnType<typeof client>, b: { digest: string; data: Buffer }): Promise<Answer> {
    const started = await call('POST', 'blobs/uploads/');
    assert.equal(started.status, 202, started.body.toString());
    const location = started.headers.location ?? '';
    return call(
      'PUT',
      `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(b.digest)}`,
      { 'Content-Type': 'application/octet-stream' },
      b.data,
    );
  }

  it('listens on 127.0.0.1 only, with a fresh password each time', async () => {
    const [a, b] = [await start(), await start()];
    assert.match(a.host, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(a.host, b.host);
    assert.notEqual(a.password, b.password);
    assert.ok(a.password.length >= 40);
    assert.equal(a.importRef, `${a.host}/buildx-cache:restore`);
    assert.equal(a.exportRef, `${a.host}/buildx-cache:save`);
  });

  describe('refuses every request without its credentials (401)', () => {
    const paths: [string, string][] = [
      ['GET', '/v2/'],
      ['HEAD', '/v2/buildx-cache/manifests/restore'],
      ['GET', `/v2/buildx-cache/blobs/${cache.root.digest}`],
      ['POST', '/v2/buildx-cache/blobs/uploads/'],
      ['PUT', '/v2/buildx-cache/manifests/save'],
    ];
    const credentials: [string, (own: RegistryFacade, other: RegistryFacade) => string | undefined][] = [
      ['none', () => undefined],
      ['a wrong password', (own) => `Basic ${basicAuth(own.username, 'guess')}`],
      ["the other facade's", (_own, other) => `Basic ${basicAuth(other.username, other.password)}`],
      ['a Bearer token made of its password', (own) => `Bearer ${own.password}`],
    ];
    for (const [name, make] of credentials) {
      it(name, async () => {
        const [own, other] = [await start(), await start()];
        const header = make(own, other);
        for (const [method, p] of paths) {
          const a = await request(
            own.host,
            method,
            p,
            header === undefined ? {} : { authorization: header },
            method === 'PUT' || method === 'POST' ? Buffer.from('{}') : undefined,
          );
          assert.equal(a.status, 401, `${method} ${p}`);
          assert.equal(a.headers['www-authenticate'], 'Basic realm="docker-buildx-cache"');
          if (method !== 'HEAD') assert.equal(codeOf(a), 'UNAUTHORIZED');
        }
        assert.equal(own.stats.unauthorized, paths.length);
        assert.deepEqual(store.calls, { open: [], has: [], put: [], commit: [] }, 'the store was not touched');
      });
    }
  });

  it('answers the ping with the API version', async () => {
    const a = await client(await start())('GET', '/v2/');
    assert.equal(a.status, 200);
    assert.equal(a.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.equal(a.body.toString(), '{}');
  });

  it("answers a TLS hello with an HTTP 400, which makes dockerd's BuildKit fall back to plain HTTP", async () => {
    const f = await start();
    const [host = '', port = ''] = f.host.split(':');
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), host, () =>
        socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, ...crypto.randomBytes(32)])),
      );
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request/);
  });

  describe('import', () => {
    it('serves the restored root under the import tag and by digest, and its blobs, each verified', async () => {
      const f = await start();
      const call = client(f);
      const head = await call('HEAD', 'manifests/restore');
      assert.deepEqual(
        [head.status, head.headers['content-type'], head.headers['docker-content-digest'], head.headers['content-length']],
        [200, OCI_MANIFEST, cache.root.digest, String(cache.root.size)],
      );
      const byDigest = await call('GET', `manifests/${cache.root.digest}`);
      assert.ok(byDigest.body.equals(cache.root.data));
      for (const b of [cache.config, ...cache.layers]) {
        const got = await call('GET', `blobs/${b.digest}`);
        assert.deepEqual(
          [got.status, got.headers['docker-content-digest'], got.headers['content-length'], got.error],
          [200, b.digest, String(b.size), undefined],
        );
        assert.ok(got.body.equals(b.data));
      }
      assert.deepEqual([f.stats.served, f.stats.bytesServed], [4, cache.blobs.reduce((s, b) => s + b.size, 0)]);
      assert.deepEqual(f.events, []);
    });

    it('serves a byte range, still checking the whole blob', async () => {
      const call = client(await start());
      const part = await call('GET', `blobs/${bigLayer.digest}`, { Range: 'bytes=1000-1999' });
      assert.deepEqual([part.status, part.headers['content-range'], part.body.length], [206, `bytes 1000-1999/${bigLayer.size}`, 1000]);
      assert.ok(part.body.equals(big.subarray(1000, 2000)));
      const beyond = await call('GET', `blobs/${bigLayer.digest}`, { Range: `bytes=${bigLayer.size}-` });
      assert.deepEqual([beyond.status, beyond.headers['content-range']], [416, `bytes */${bigLayer.size}`]);
    });

    const unknown: [string, string, string][] = [
      ['a blob the entry does not reach, even one the store has', 'blobs', 'other'],
      ['an unknown tag', 'manifests', 'latest'],
      ['the export tag before any export', 'manifests', 'save'],
    ];
    for (const [name, kind, ref] of unknown) {
      it(`knows nothing of ${name}`, async () => {
        const stray = blob(LAYER, 'not in the entry');
        fs.writeFileSync(store.blobFile(stray.digest), stray.data);
        const a = await client(await start())('GET', `${kind}/${ref === 'other' ? stray.digest : ref}`);
        assert.deepEqual([a.status, codeOf(a)], [404, kind === 'blobs' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN']);
        assert.ok(!store.calls.open.includes(stray.digest));
      });
    }

    it('serves nothing under the import tag without a restored entry (a miss), and only its own repository', async () => {
      const call = client(await start({ writer: store.writer('saved') }));
      assert.equal(codeOf(await call('GET', 'manifests/restore')), 'MANIFEST_UNKNOWN');
      const other = await call('GET', '/v2/library/busybox/manifests/latest');
      assert.deepEqual([other.status, codeOf(other)], [404, 'NAME_UNKNOWN']);
    });

    it('never serves a blob that fails its digest: the response is cut short, reported, and the blob is unknown from then on', async () => {
      store.damage(bigLayer.digest);
      const f = await start();
      const call = client(f);
      const got = await call('GET', `blobs/${bigLayer.digest}`);
      assert.equal(got.status, 200);
      assert.ok(got.error !== undefined, 'the body ended in an error');
      assert.ok(got.body.length < bigLayer.size, `${got.body.length} of ${bigLayer.size} bytes arrived`);
      await f.idle();
      assert.deepEqual(kinds(f.events), ['corrupt']);
      assert.equal(f.events[0]?.kind === 'corrupt' ? f.events[0].digest : '', bigLayer.digest);
      assert.deepEqual(
        [(await call('GET', `blobs/${bigLayer.digest}`)).status, (await call('HEAD', `blobs/${bigLayer.digest}`)).status],
        [404, 404],
      );
      assert.equal((await call('GET', `blobs/${bigLayer.digest}`, { Range: 'bytes=0-9' })).status, 404);
      assert.equal(f.events.length, 1, 'reported once');
    });

    it('does not serve a restored root that fails its digest: the import finds no cache', async () => {
      store.damage(cache.root.digest);
      const f = await start();
      const a = await client(f)('HEAD', 'manifests/restore');
      assert.equal(a.status, 404);
      assert.deepEqual(kinds(f.events), ['corrupt']);
    });

    const faults: [string, Partial<FolderStore['faults']>, 'status' | 'cut'][] = [
      ['the store fails to open the blob', { open: 'fail' }, 'status'],
      ['the store never answers', { open: 'hang' }, 'status'],
      ['the store connection drops halfway', { open: 'break' }, 'cut'],
      ['the store stops sending halfway', { open: 'stall' }, 'cut'],
    ];
    for (const [name, fault, how] of faults) {
      it(`${name}: an error for BuildKit within the idle timeout, never a hang`, async () => {
        const f = await start();
        Object.assign(store.faults, fault);
        const begun = Date.now();
        const got = await client(f)('GET', `blobs/${bigLayer.digest}`);
        if (how === 'status') assert.deepEqual([got.status, codeOf(got)], [500, 'UNKNOWN']);
        else assert.ok(got.error !== undefined && got.body.length < bigLayer.size, 'cut short');
        assert.ok(Date.now() - begun < 3_000, `answered after ${Date.now() - begun} ms`);
        await f.idle();
        assert.deepEqual(kinds(f.events), ['store:open']);
        assert.equal(
          store.faults.open === 'hang' || store.faults.open === 'stall'
            ? /made no progress/.test(f.events[0]?.kind === 'store' ? f.events[0].message : '')
            : true,
          true,
        );
        // The blob is not marked bad: the store may be back for the next request.
        store.faults.open = undefined;
        assert.ok((await client(f)('GET', `blobs/${bigLayer.digest}`)).body.equals(big));
      });
    }
  });

  describe('export', () => {
    const fresh = imageManifestCache([Buffer.from('layer one'), crypto.randomBytes(300_000), Buffer.from('new layer')]);
    const freshBlobs = [...fresh.layers, fresh.config];

    it('acknowledges the blobs the store has without an upload, takes the rest, and commits the manifest once complete', async () => {
      const f = await start();
      const call = client(f);
      const uploads: string[] = [];
      for (const b of freshBlobs) {
        const head = await call('HEAD', `blobs/${b.digest}`);
        if (head.status === 200) {
          assert.equal(head.headers['content-length'], String(b.size));
          continue;
        }
        assert.equal(head.status, 404);
        const put = await upload(call, b);
        assert.deepEqual(
          [put.status, put.headers['docker-content-digest'], put.headers.location],
          [201, b.digest, `/v2/buildx-cache/blobs/${b.digest}`],
        );
        uploads.push(b.digest);
      }
      // "layer one" is in the restored entry and in the store: no upload, but the store was asked (which keeps it for the save).
      assert.deepEqual(
        uploads,
        [fresh.layers[1], fresh.layers[2], fresh.config].map((b) => b?.digest),
      );
      assert.ok(store.calls.has.includes(fresh.layers[0]?.digest ?? ''));
      assert.equal(store.hasEntry('saved'), false, 'no entry before the manifest');

      const head = await call('HEAD', 'manifests/save');
      assert.equal(head.status, 404, 'BuildKit must PUT the manifest');
      const put = await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, fresh.root.data);
      assert.deepEqual([put.status, put.headers['docker-content-digest']], [201, fresh.root.digest]);
      assert.deepEqual(store.calls.commit, [fresh.root.digest]);
      const entry = store.entry('saved');
      assert.deepEqual(entry.index, {
        schemaVersion: 2,
        manifests: [
          {
            mediaType: OCI_MANIFEST,
            digest: fresh.root.digest,
            size: fresh.root.size,
            annotations: { 'org.opencontainers.image.ref.name': 'latest' },
          },
        ],
      });
      assert.deepEqual(entry.blobs.map((b) => b.digest).sort(), fresh.blobs.map((b) => b.digest).sort());
      assert.ok(fs.readFileSync(store.blobFile(fresh.root.digest)).equals(fresh.root.data), 'the manifest is a blob of the store');
      assert.deepEqual([f.stats.uploaded, f.stats.acknowledged], [3, 1]);
      assert.deepEqual(kinds(f.events), ['committed']);
      assert.equal(f.exported?.root.digest, fresh.root.digest);

      // Asked again, the facade has it; the same push is fine, another is refused, and nothing commits twice.
      assert.equal((await call('HEAD', 'manifests/save')).headers['docker-content-digest'], fresh.root.digest);
      assert.equal((await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, fresh.root.data)).status, 201);
      const other = await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, cache.root.data);
      assert.deepEqual([other.status, codeOf(other)], [403, 'DENIED']);
      assert.equal(store.calls.commit.length, 1);
    });

    // a writer or not → whether a HEAD of a blob of the restored entry asks the store, and what it answers
    const restoredHeads: [string, boolean, boolean, number][] = [
      ['with a writer, a restored blob the store has: asked, acknowledged', true, false, 200],
      ['with a writer, a restored blob gone from the store: asked, not acknowledged (BuildKit uploads it)', true, true, 404],
      ['without a writer (a read-only cache), a restored blob: from the entry, the store not asked', false, false, 200],
    ];
    for (const [title, writes, gone, status] of restoredHeads) {
      it(title, async () => {
        const layer = cache.layers[0] as Blob;
        if (gone) fs.rmSync(store.blobFile(layer.digest), { force: true });
        const f = await start({ reader: store.reader('restored'), ...(writes ? { writer: store.writer('saved') } : {}) });
        const head = await client(f)('HEAD', `blobs/${layer.digest}`);
        assert.equal(head.status, status);
        assert.deepEqual(store.calls.has, writes ? [layer.digest] : []);
        assert.equal(f.stats.acknowledged, status === 200 ? 1 : 0);
      });
    }

    it('refuses a manifest that reaches a blob the store lacks, and writes no entry', async () => {
      const f = await start();
      const call = client(f);
      for (const b of freshBlobs.slice(0, 2)) await upload(call, b);
      const put = await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, fresh.root.data);
      assert.deepEqual([put.status, codeOf(put)], [400, 'MANIFEST_BLOB_UNKNOWN']);
      const detail = (JSON.parse(put.body.toString()) as { errors: { detail: { digests: string[] } }[] }).errors[0]?.detail.digests;
      assert.deepEqual(detail?.sort(), [fresh.layers[2]?.digest, fresh.config.digest].sort());
      assert.deepEqual([store.calls.commit, store.hasEntry('saved'), f.exported], [[], false, undefined]);
    });

    it('removes where-it-came-from annotations from the committed root, and acknowledges the digest BuildKit pushed', async () => {
      const call = client(await start());
      const annotated = blob(OCI_MANIFEST, {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: desc(cache.config),
        layers: cache.layers.map((l) => ({ ...desc(l), annotations: { 'containerd.io/distribution.source.127.0.0.1': 'buildx-cache' } })),
      });
      const put = await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, annotated.data);
      assert.deepEqual([put.status, put.headers['docker-content-digest']], [201, annotated.digest]);
      // The same cache as the restored one: the same root, so the store can tell nothing changed.
      assert.equal(store.entry('saved').index.manifests[0]?.digest, cache.root.digest);
      assert.ok((await call('GET', 'manifests/save')).body.equals(annotated.data), 'BuildKit is shown what it pushed');
    });

    it('takes an index root (no image-manifest), and child manifests pushed by digest first', async () => {
      const call = client(await start());
      for (const b of freshBlobs) await upload(call, b);
      const INDEX = 'application/vnd.oci.image.index.v1+json';
      const index = blob(INDEX, { schemaVersion: 2, mediaType: INDEX, manifests: [desc(fresh.root)] });
      const early = await call('PUT', 'manifests/save', { 'Content-Type': INDEX }, index.data);
      assert.deepEqual([early.status, codeOf(early)], [400, 'MANIFEST_BLOB_UNKNOWN'], 'the child manifest was not pushed yet');
      assert.equal((await call('PUT', `manifests/${fresh.root.digest}`, { 'Content-Type': OCI_MANIFEST }, fresh.root.data)).status, 201);
      assert.equal((await call('PUT', 'manifests/save', { 'Content-Type': INDEX }, index.data)).status, 201);
      assert.deepEqual(
        store
          .entry('saved')
          .blobs.map((b) => b.digest)
          .sort(),
        [index, ...fresh.blobs].map((b) => b.digest).sort(),
      );
    });

    it('refuses an upload that does not match its digest, and stores nothing', async () => {
      const f = await start();
      const b = fresh.layers[1] as Blob;
      const wrong = Buffer.from(b.data);
      wrong[0] = (wrong[0] ?? 0) ^ 1;
      const put = await upload(client(f), { digest: b.digest, data: wrong });
      assert.deepEqual([put.status, codeOf(put)], [400, 'DIGEST_INVALID']);
      assert.deepEqual(kinds(f.events), ['rejected']);
      assert.ok(!store.blobs().includes(b.digest));
      assert.deepEqual(
        fs.readdirSync(store.dir).filter((n) => n.startsWith('.tmp')),
        [],
      );
      assert.equal((await client(f)('HEAD', `blobs/${b.digest}`)).status, 404);
    });

    it('takes chunked uploads (PATCH), spooled to disk, and monolithic POSTs', async () => {
      const spoolDir = tempDir('dbxc-facade-spool-');
      const f = await start({ writer: store.writer('saved'), spoolDir });
      const call = client(f);
      const b = fresh.layers[1] as Blob;
      const begun = await call('POST', 'blobs/uploads/');
      const at = begun.headers.location ?? '';
      const first = await call(
        'PATCH',
        at,
        { 'Content-Range': `0-99999`, 'Content-Type': 'application/octet-stream' },
        b.data.subarray(0, 100_000),
      );
      assert.deepEqual([first.status, first.headers.range], [202, '0-99999']);
      const outOfOrder = await call('PATCH', at, { 'Content-Range': '5-9' }, Buffer.from('xxxxx'));
      assert.deepEqual([outOfOrder.status, outOfOrder.headers.range], [416, '0-99999']);
      assert.equal((await call('PATCH', at, {}, b.data.subarray(100_000, 250_000))).headers.range, '0-249999');
      const done = await call('PUT', `${at}?digest=${b.digest}`, {}, b.data.subarray(250_000));
      assert.equal(done.status, 201);
      assert.ok(fs.readFileSync(store.blobFile(b.digest)).equals(b.data));
      assert.deepEqual(fs.readdirSync(spoolDir), [], 'the spool file is gone');
      assert.equal((await call('PUT', `${at}?digest=${b.digest}`, {}, Buffer.alloc(0))).status, 404, 'the session is over');

      const c = fresh.layers[2] as Blob;
      const mono = await call('POST', `blobs/uploads/?digest=${c.digest}`, { 'Content-Type': 'application/octet-stream' }, c.data);
      assert.equal(mono.status, 201);
      assert.ok(store.blobs().includes(c.digest));
    });

    it('mounts a blob the store has (201) and starts an upload for one it lacks (202)', async () => {
      const call = client(await start());
      const present = await call('POST', `blobs/uploads/?mount=${cache.layers[1]?.digest ?? ''}&from=elsewhere`);
      assert.deepEqual([present.status, present.headers['docker-content-digest']], [201, cache.layers[1]?.digest]);
      const absent = await call('POST', `blobs/uploads/?mount=${fresh.layers[2]?.digest ?? ''}&from=elsewhere`);
      assert.equal(absent.status, 202);
    });

    it('refuses pushes to the import tag, and every push to a read-only cache', async () => {
      const rw = client(await start());
      assert.equal(codeOf(await rw('PUT', 'manifests/restore', { 'Content-Type': OCI_MANIFEST }, cache.root.data)), 'DENIED');
      const ro = client(await start({ reader: store.reader('restored') }));
      assert.equal(codeOf(await ro('POST', 'blobs/uploads/')), 'DENIED');
      assert.equal(codeOf(await ro('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, cache.root.data)), 'DENIED');
      assert.equal((await ro('HEAD', `blobs/${cache.config.digest}`)).status, 200, 'still answers what it serves');
    });

    const faults: [string, Partial<FolderStore['faults']>, 'blob' | 'manifest', 'has' | 'put' | 'commit'][] = [
      ['asking the store fails', { has: 'fail' }, 'blob', 'has'],
      ['asking the store hangs', { has: 'hang' }, 'blob', 'has'],
      ['storing a blob fails', { put: 'fail' }, 'blob', 'put'],
      ['storing a blob drops halfway', { put: 'break' }, 'blob', 'put'],
      ['storing a blob hangs', { put: 'hang' }, 'blob', 'put'],
      ['writing the entry fails', { commit: 'fail' }, 'manifest', 'commit'],
      ['writing the entry hangs', { commit: 'hang' }, 'manifest', 'commit'],
    ];
    for (const [name, fault, what, operation] of faults) {
      it(`${name}: a 500 for BuildKit within the idle timeout, and no entry; a retry at once fails without the store (a 403, which BuildKit does not retry), a later one goes through`, async () => {
        const f = await start({ reader: store.reader('restored'), writer: store.writer('saved'), storeDownMs: 500 });
        const call = client(f);
        if (what === 'manifest') for (const b of freshBlobs) await upload(call, b);
        Object.assign(store.faults, fault);
        const begun = Date.now();
        const target = fresh.layers[1] as Blob;
        const a =
          what === 'manifest'
            ? await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, fresh.root.data)
            : operation === 'has'
              ? await call('HEAD', `blobs/${target.digest}`)
              : await upload(call, target);
        assert.equal(a.status, 500);
        assert.ok(Date.now() - begun < 3_000, `answered after ${Date.now() - begun} ms`);
        assert.deepEqual(kinds(f.events), [`store:${operation}`]);
        assert.deepEqual([store.hasEntry('saved'), f.exported], [false, undefined]);
        if (what === 'blob' && operation === 'put') assert.ok(!store.blobs().includes(target.digest));
        // The store is back. BuildKit's retry at once is answered without asking it again ...
        store.faults[operation] = undefined;
        const calls = JSON.stringify(store.calls);
        const again = Date.now();
        const retry =
          what === 'manifest'
            ? await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, fresh.root.data)
            : await call('POST', 'blobs/uploads/');
        assert.deepEqual([retry.status, codeOf(retry)], [403, 'DENIED']);
        assert.ok(Date.now() - again < 300, `answered after ${Date.now() - again} ms`);
        assert.equal(JSON.stringify(store.calls), calls, 'the store was not asked');
        assert.deepEqual(kinds(f.events), [`store:${operation}`], 'one warning for one failure');
        // ... and one after storeDownMs goes through.
        await new Promise((r) => setTimeout(r, 550));
        if (what === 'manifest')
          assert.equal((await call('PUT', 'manifests/save', { 'Content-Type': OCI_MANIFEST }, fresh.root.data)).status, 201);
        else assert.equal((await upload(call, target)).status, 201);
      });
    }
  });

  describe('a read that fails: whether the export still asks the store', () => {
    // the read's fault → what BuildKit's next HEAD for the export gets, and whether the store was asked
    const cases: [string, 'refuse' | 'fail', number, boolean][] = [
      ['the store could not be reached (ECONNREFUSED): the export fails at once, a 403 BuildKit does not retry', 'refuse', 403, false],
      ['a read failing for its own blob: the export asks the store as before', 'fail', 404, true],
    ];
    for (const [name, fault, status, asked] of cases)
      it(name, async () => {
        const f = await start();
        const call = client(f);
        store.faults.open = fault;
        assert.equal((await call('GET', `blobs/${bigLayer.digest}`)).status, 500);
        store.faults.open = undefined;
        const has = store.calls.has.length;
        const head = await call('HEAD', `blobs/${blob(LAYER, 'new').digest}`);
        assert.deepEqual([head.status, store.calls.has.length > has, f.storeWentDown], [status, asked, !asked]);
      });
  });

  describe('an image pushed for the engine to pull (output docker)', () => {
    const IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';
    const restoredLayer = cache.layers[0] as Blob;
    const newLayer = blob(LAYER, crypto.randomBytes(200_000));
    const config = blob(IMAGE_CONFIG, { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } });
    const manifest = blob(OCI_MANIFEST, {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: desc(config),
      layers: [desc(restoredLayer), desc(newLayer)],
    });

    /** A facade over the restored entry and a writer that keeps copies (keepCopies) in a spool folder of its own. */
    async function startCopying(
      options: FacadeOptions = {},
    ): Promise<{ f: RegistryFacade; call: ReturnType<typeof client>; spool: string }> {
      const spool = tempDir('dbxc-facade-copies-');
      const f = await start({
        reader: store.reader('restored'),
        writer: store.writer('saved'),
        keepCopies: true,
        spoolDir: spool,
        ...options,
      });
      return { f, call: client(f), spool };
    }

    /** Pushes the image as BuildKit does: HEAD each blob, upload the missing ones, then the manifest to the image tag. */
    async function pushImage(call: ReturnType<typeof client>): Promise<Answer> {
      for (const b of [restoredLayer, newLayer, config])
        if ((await call('HEAD', `blobs/${b.digest}`)).status !== 200) await upload(call, b);
      return call('PUT', 'manifests/image', { 'Content-Type': OCI_MANIFEST }, manifest.data);
    }

    it('keeps it without committing an entry, and serves it and every blob it reaches from the store, counted as pulled', async () => {
      const f = await start();
      const call = client(f);
      assert.equal(f.imageRef, `${f.host}/buildx-cache:image`);
      assert.equal((await call('GET', 'manifests/image')).status, 404, 'nothing before the push');
      const put = await pushImage(call);
      assert.deepEqual([put.status, put.headers['docker-content-digest']], [201, manifest.digest]);
      assert.deepEqual(store.calls.commit, []);
      assert.equal(store.hasEntry('saved'), false);
      assert.deepEqual(f.events, []);
      for (const ref of ['image', manifest.digest]) {
        const got = await call('GET', `manifests/${ref}`);
        assert.deepEqual(
          [got.status, got.headers['content-type'], got.headers['docker-content-digest']],
          [200, OCI_MANIFEST, manifest.digest],
        );
        assert.ok(got.body.equals(manifest.data));
      }
      for (const b of [restoredLayer, newLayer, config]) {
        const got = await call('GET', `blobs/${b.digest}`);
        assert.deepEqual([got.status, got.error], [200, undefined], b.digest);
        assert.ok(got.body.equals(b.data));
      }
      assert.deepEqual(
        [f.stats.pulled, f.stats.bytesPulled, f.stats.served],
        [5, 2 * manifest.size + restoredLayer.size + newLayer.size + config.size, 0],
      );
      // Still nothing beyond the entry and the image.
      const stray = blob(LAYER, 'in the store, in neither');
      fs.writeFileSync(store.blobFile(stray.digest), stray.data);
      assert.equal((await call('GET', `blobs/${stray.digest}`)).status, 404);
    });

    it('a new layer the image and the cache upload at once goes into the store once: the second upload waits for nothing, the manifest for the first', async () => {
      const f = await start({ reader: store.reader('restored'), writer: store.writer('saved'), idleTimeoutMs: 10_000 });
      const call = client(f);
      const release = store.holdPut(newLayer.digest);
      const first = upload(call, newLayer);
      while (!store.calls.put.includes(newLayer.digest)) await new Promise((r) => setTimeout(r, 5));
      // Answered while the first is still held: had it waited, this would not return.
      const second = await upload(call, newLayer);
      assert.deepEqual([second.status, second.error, second.early], [201, undefined, false]);
      // The image's HEAD finds the layer not there yet, uploads it a third time, then puts the manifest.
      const image = pushImage(call);
      await new Promise((r) => setTimeout(r, 50));
      release();
      assert.deepEqual([(await first).status, (await image).status], [201, 201], 'the manifest found the layer stored');
      assert.deepEqual(
        store.calls.put.filter((d) => d === newLayer.digest),
        [newLayer.digest],
      );
      assert.equal(f.stats.bytesUploaded, newLayer.size + config.size);
    });

    it('a manifest that waits for its layer’s first upload longer than the socket timeout is still answered', async () => {
      const f = await start({ reader: store.reader('restored'), writer: store.writer('saved'), socketTimeoutMs: 300 });
      const call = client(f);
      assert.equal((await upload(call, config)).status, 201);
      // The first upload's body comes in ten pieces 120 ms apart: never quiet for 300 ms, stored after about 1.2 s.
      const location = (await call('POST', 'blobs/uploads/')).headers.location ?? '';
      const [hostname = '', port = ''] = f.host.split(':');
      const first = new Promise<number>((resolve, reject) => {
        const req = http.request(
          {
            hostname,
            port: Number(port),
            method: 'PUT',
            path: `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(newLayer.digest)}`,
            headers: { authorization: `Basic ${basicAuth(f.username, f.password)}`, 'Content-Length': newLayer.size },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        void (async () => {
          const piece = Math.ceil(newLayer.size / 10);
          for (let at = 0; at < newLayer.size; at += piece) {
            req.write(newLayer.data.subarray(at, at + piece));
            await new Promise((r) => setTimeout(r, 120));
          }
          req.end();
        })();
      });
      while (!store.calls.put.includes(newLayer.digest)) await new Promise((r) => setTimeout(r, 5));
      assert.equal((await upload(call, newLayer)).status, 201);
      const begun = Date.now();
      const put = await call('PUT', 'manifests/image', { 'Content-Type': OCI_MANIFEST }, manifest.data);
      assert.deepEqual([put.status, put.error], [201, undefined], JSON.stringify(f.events));
      assert.ok(Date.now() - begun > 600, `the manifest waited ${Date.now() - begun} ms, longer than the socket timeout`);
      assert.equal(await first, 201);
    });

    it('with keepCopies from now on with firstUploads (a cache compressed otherwise than the image), an upload is copied at once', async () => {
      const spool = tempDir('dbxc-facade-first-');
      const f = await start({ reader: store.reader('restored'), writer: store.writer('saved'), spoolDir: spool });
      f.keepCopiesFromNow(true);
      const call = client(f);
      assert.equal((await upload(call, newLayer)).status, 201);
      await f.idle();
      assert.equal(fs.readdirSync(spool).length, 1, 'copied at the first upload');
      assert.equal((await call('HEAD', `blobs/${newLayer.digest}`)).status, 200, 'no second body asked for');
    });

    it('refuses an image that reaches a blob the store lacks, and then serves none', async () => {
      const call = client(await start());
      const put = await call('PUT', 'manifests/image', { 'Content-Type': OCI_MANIFEST }, manifest.data);
      assert.deepEqual([put.status, codeOf(put)], [400, 'MANIFEST_BLOB_UNKNOWN']);
      assert.equal((await call('GET', 'manifests/image')).status, 404);
      assert.equal((await call('GET', `blobs/${config.digest}`)).status, 404);
    });

    it('refuses the push to a read-only cache (no writer)', async () => {
      const put = await client(await start({ reader: store.reader('restored') }))(
        'PUT',
        'manifests/image',
        { 'Content-Type': OCI_MANIFEST },
        manifest.data,
      );
      assert.deepEqual([put.status, codeOf(put)], [403, 'DENIED']);
    });

    it('with keepCopies, a blob served whole is served again from its copy, not the store; the copies go with the facade', async () => {
      const { f, call, spool } = await startCopying();
      const first = await call('GET', `blobs/${bigLayer.digest}`);
      assert.ok(first.body.equals(big));
      await f.idle();
      assert.equal(fs.readdirSync(spool).length, 1, 'one copy');
      const opened = store.calls.open.filter((d) => d === bigLayer.digest).length;
      const again = await call('GET', `blobs/${bigLayer.digest}`);
      const part = await call('GET', `blobs/${bigLayer.digest}`, { Range: 'bytes=10-19' });
      assert.ok(again.body.equals(big) && part.body.equals(big.subarray(10, 20)));
      assert.equal(store.calls.open.filter((d) => d === bigLayer.digest).length, opened, 'the store was not asked again');
      await f.close();
      assert.deepEqual(fs.readdirSync(spool), []);
    });

    it('with keepCopies, a blob uploaded here is stored uncopied; the next push of it sends the copy, which the pull reads', async () => {
      const { f, call, spool } = await startCopying();
      assert.equal((await upload(call, newLayer)).status, 201);
      await f.idle();
      assert.deepEqual(fs.readdirSync(spool), [], 'a layer pushed once (a stage only the cache holds) is not copied');
      assert.equal((await call('HEAD', `blobs/${newLayer.digest}`)).status, 404, 'its next push is asked for the body');
      assert.equal((await pushImage(call)).status, 201);
      assert.equal(fs.readdirSync(spool).length, 1, 'the copy of the layer');
      assert.equal((await call('HEAD', `blobs/${newLayer.digest}`)).status, 200, 'copied: no body asked for again');
      assert.deepEqual(
        store.calls.put.filter((d) => d === newLayer.digest),
        [newLayer.digest],
        'stored once',
      );
      const opened = store.calls.open.length;
      const got = await call('GET', `blobs/${newLayer.digest}`);
      assert.ok(got.body.equals(newLayer.data));
      assert.equal(store.calls.open.length, opened, 'read from the copy, not the store');
      await f.close();
      assert.deepEqual(fs.readdirSync(spool), []);
    });

    it('a copy that went bad on disk is dropped, the store is not blamed, and the next request reads the store', async () => {
      const { f, call, spool } = await startCopying();
      assert.ok((await call('GET', `blobs/${bigLayer.digest}`)).body.equals(big));
      await f.idle();
      const [file] = fs.readdirSync(spool);
      assert.ok(file !== undefined);
      fs.writeFileSync(path.join(spool, file), Buffer.alloc(bigLayer.size, 7));
      const bad = await call('GET', `blobs/${bigLayer.digest}`);
      assert.ok(bad.error !== undefined || bad.status !== 200 || bad.body.length < bigLayer.size, 'the bad copy is not served whole');
      await f.idle();
      assert.deepEqual(f.events, [], 'no corrupt blob of the store reported');
      assert.deepEqual(
        fs.readdirSync(spool).filter((n) => n === file),
        [],
      );
      const again = await call('GET', `blobs/${bigLayer.digest}`);
      assert.ok(again.body.equals(big), 'served from the store again');
    });

    it('with keepCopies, copies only the layers of the last stage when the cache config names them', async () => {
      // A build stage (a toolchain) that the last stage copies from, and the last stage on its base.
      const [toolchain, base, copied] = ['toolchain', 'base', 'the copy'].map((c) =>
        blob(LAYER, crypto.randomBytes(1000).toString('hex') + c),
      ) as [Blob, Blob, Blob];
      const records = [
        { layers: [{ layer: 0 }] },
        { layers: [{ layer: 1 }] },
        { layers: [{ layer: 2 }], inputs: [[{ link: 1 }], [{ link: 0 }]] },
      ];
      const staged = blob(CACHE_CONFIG, {
        layers: [
          { blob: toolchain.digest, parent: -1 },
          { blob: base.digest, parent: -1 },
          { blob: copied.digest, parent: 1 },
        ],
        records,
      });
      const root = blob(OCI_MANIFEST, {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: desc(staged),
        layers: [toolchain, base, copied].map(desc),
      });
      const layout = tempDir('dbxc-facade-staged-');
      writeLayout(layout, root, [toolchain, base, copied, staged, root]);
      await store.addLayout(layout, 'staged');
      const { f, call, spool } = await startCopying({ reader: store.reader('staged') });
      for (const b of [toolchain, base, copied]) assert.ok((await call('GET', `blobs/${b.digest}`)).body.equals(b.data));
      await f.idle();
      assert.equal(fs.readdirSync(spool).length, 2, 'the base and the copy, not the toolchain');
      const opened = store.calls.open.filter((d) => d === toolchain.digest).length;
      await call('GET', `blobs/${toolchain.digest}`);
      assert.equal(store.calls.open.filter((d) => d === toolchain.digest).length, opened + 1, 'the toolchain comes from the store again');
    });

    it("with keepCopies, two reads of a blob at once (BuildKit's and the engine's) read the store once, the second from the copy", async () => {
      const { f, call } = await startCopying();
      const release = store.holdOpen(bigLayer.digest);
      const first = call('GET', `blobs/${bigLayer.digest}`);
      while (!store.calls.open.includes(bigLayer.digest)) await new Promise((r) => setTimeout(r, 5));
      const second = call('GET', `blobs/${bigLayer.digest}`, { 'User-Agent': 'docker/26.1.5 go/go1.24.4' });
      await new Promise((r) => setTimeout(r, 50));
      release();
      const [a, b] = await Promise.all([first, second]);
      assert.ok(a.body.equals(big) && b.body.equals(big));
      assert.equal(store.calls.open.filter((d) => d === bigLayer.digest).length, 1, 'the store was read once');
      await f.idle();
      assert.deepEqual([f.stats.served, f.stats.pulled], [1, 1], "the engine's read counted as pulled");
    });

    it('makes no copy beyond its budget', async () => {
      const { f, call, spool } = await startCopying({ copyBudgetBytes: bigLayer.size - 1 });
      assert.ok((await call('GET', `blobs/${bigLayer.digest}`)).body.equals(big));
      await call('GET', `blobs/${restoredLayer.digest}`);
      await f.idle();
      assert.equal(fs.readdirSync(spool).length, 1, 'only the small layer was copied');
    });

    it('a kept copy that fails is dropped, and its bytes return to the budget: the next read copies the blob again', async () => {
      const { f, call, spool } = await startCopying({ copyBudgetBytes: bigLayer.size });
      assert.ok((await call('GET', `blobs/${bigLayer.digest}`)).body.equals(big));
      await f.idle();
      const [copy] = fs.readdirSync(spool);
      assert.ok(copy !== undefined, 'one copy, which takes the whole budget');
      // The copy on disk goes bad: the read from it fails its digest, cut short.
      fs.writeFileSync(path.join(spool, copy), Buffer.alloc(bigLayer.size, 1));
      await call('GET', `blobs/${bigLayer.digest}`).catch(() => undefined);
      await f.idle();
      assert.deepEqual(fs.readdirSync(spool), [], 'the bad copy went');
      const opened = store.calls.open.filter((d) => d === bigLayer.digest).length;
      assert.ok((await call('GET', `blobs/${bigLayer.digest}`)).body.equals(big));
      await f.idle();
      assert.equal(store.calls.open.filter((d) => d === bigLayer.digest).length, opened + 1, 'read from the store again');
      assert.equal(fs.readdirSync(spool).length, 1, 'and copied again, within the budget the bad copy gave back');
      await f.close();
    });

    it('a large upload of a blob the store has by then is read to its end before its answer', async () => {
      const large = blob(LAYER, crypto.randomBytes(24 << 20));
      const f = await start();
      const call = client(f);
      const a = await upload(call, large);
      const b = await upload(call, large);
      assert.deepEqual([a.status, b.status, a.error, b.error, a.early, b.early], [201, 201, undefined, undefined, false, false]);
      assert.deepEqual(
        store.calls.put.filter((d) => d === large.digest),
        [large.digest],
      );
      assert.deepEqual([f.stats.uploaded, f.stats.acknowledged], [1, 1]);
      // The connection is still good: the next request on it is answered.
      assert.equal((await call('HEAD', `blobs/${large.digest}`)).status, 200);
    });

    it('with keepCopies, a range or a blob that fails its digest leaves no copy', async () => {
      store.damage(bigLayer.digest);
      const { f, call, spool } = await startCopying();
      await call('GET', `blobs/${restoredLayer.digest}`, { Range: 'bytes=0-1' });
      const got = await call('GET', `blobs/${bigLayer.digest}`);
      assert.ok(got.error !== undefined || got.body.length < bigLayer.size);
      await f.idle();
      assert.deepEqual(fs.readdirSync(spool), []);
      assert.deepEqual(kinds(f.events), ['corrupt']);
    });
  });

  describe("an image of the restored cache's last layer chain, for the engine to pull beside the build", () => {
    const UNCOMPRESSED = 'containerd.io/uncompressed';
    const diffId = (b: Blob): string => `sha256:${crypto.createHash('sha256').update(`uncompressed ${b.digest}`).digest('hex')}`;
    /** A cache of a build stage (a toolchain) and a last stage of two layers on their base, each layer annotated as BuildKit does. */
    function stagedCache(annotate = true): { root: Blob; blobs: Blob[]; chain: Blob[] } {
      const [toolchain, base, app] = ['toolchain', 'base', 'app'].map((c) => blob(LAYER, crypto.randomBytes(500).toString('hex') + c)) as [
        Blob,
        Blob,
        Blob,
      ];
      const config = blob(CACHE_CONFIG, {
        layers: [
          { blob: toolchain.digest, parent: -1 },
          { blob: base.digest, parent: -1 },
          { blob: app.digest, parent: 1 },
        ],
        records: [
          { layers: [{ layer: 0 }] },
          { layers: [{ layer: 1 }] },
          { layers: [{ layer: 2 }], inputs: [[{ link: 1 }], [{ link: 0 }]] },
        ],
      });
      const layer = (b: Blob): object => ({ ...desc(b), ...(annotate ? { annotations: { [UNCOMPRESSED]: diffId(b) } } : {}) });
      const root = blob(OCI_MANIFEST, {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: desc(config),
        layers: [toolchain, base, app].map(layer),
      });
      return { root, blobs: [toolchain, base, app, config, root], chain: [base, app] };
    }
    /** A facade over the entry; `downloads`: a store whose reads are downloads (Azure: keepCopies). */
    async function startOn(entry: { root: Blob; blobs: Blob[] }, name: string, downloads = true): Promise<RegistryFacade> {
      const layout = tempDir('dbxc-facade-prefetch-');
      writeLayout(layout, entry.root, entry.blobs);
      await store.addLayout(layout, name);
      return start({
        reader: store.reader(name),
        writer: store.writer('saved'),
        keepCopies: downloads,
        spoolDir: tempDir('dbxc-facade-copies-'),
      });
    }

    /** Pushes an image of `layer` to the image tag, as BuildKit does after the build; returns its manifest. */
    async function pushImageOf(call: ReturnType<typeof client>, layer: Blob): Promise<Blob> {
      const config = blob('application/vnd.oci.image.config.v1+json', {
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [] },
      });
      const image = blob(OCI_MANIFEST, { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(config), layers: [desc(layer)] });
      assert.equal((await upload(call, config)).status, 201);
      assert.equal((await call('PUT', 'manifests/image', { 'Content-Type': OCI_MANIFEST }, image.data)).status, 201);
      return image;
    }

    it('serves the last stage’s chain, base first, with the uncompressed digests in its config, counted as pulled by the engine', async () => {
      const entry = stagedCache();
      const f = await startOn(entry, 'staged');
      const call = client(f);
      assert.equal(await f.prefetchRef(), `${f.host}/buildx-cache:prefetch`);
      const got = await call('GET', 'manifests/prefetch', { 'User-Agent': 'docker/26.1.5' });
      assert.deepEqual([got.status, got.headers['content-type']], [200, OCI_MANIFEST]);
      const manifest = JSON.parse(got.body.toString()) as { config: { digest: string }; layers: { digest: string; mediaType: string }[] };
      assert.deepEqual(
        manifest.layers.map((l) => [l.digest, l.mediaType]),
        entry.chain.map((b) => [b.digest, LAYER]),
      );
      const digest = got.headers['docker-content-digest'] ?? '';
      assert.equal(digest, `sha256:${crypto.createHash('sha256').update(got.body).digest('hex')}`);
      assert.ok((await call('GET', `manifests/${digest}`, { 'User-Agent': 'docker/26.1.5' })).body.equals(got.body), 'by digest too');
      const config = await call('GET', `blobs/${manifest.config.digest}`, { 'User-Agent': 'docker/26.1.5' });
      assert.deepEqual(JSON.parse(config.body.toString()), {
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: entry.chain.map(diffId) },
      });
      // BuildKit reads the base first; the engine's read of the app layer waits until BuildKit reads that too.
      const base = entry.chain[0] as Blob;
      const app = entry.chain[1] as Blob;
      assert.ok((await call('GET', `blobs/${base.digest}`, { 'User-Agent': 'buildkit/v0.32' })).body.equals(base.data));
      assert.ok((await call('GET', `blobs/${base.digest}`, { 'User-Agent': 'docker/26.1.5' })).body.equals(base.data));
      let answered = false;
      const waiting = call('GET', `blobs/${app.digest}`, { 'User-Agent': 'docker/26.1.5' }).then((a) => ((answered = true), a));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(answered, false, 'the engine waits for the build to read the layer');
      assert.ok((await call('GET', `blobs/${app.digest}`, { 'User-Agent': 'buildkit/v0.32' })).body.equals(app.data));
      assert.ok((await waiting).body.equals(app.data));
      assert.equal(f.endPrefetch(), false, 'nothing was left waiting');
      await f.idle();
      assert.deepEqual([f.stats.served, f.stats.pulled], [2, 5], 'the manifest twice, the config and two layers, pulled by the engine');
      assert.deepEqual(f.events, []);
    });

    it('a layer the build does not read (old dependencies) is refused to the engine once the prefetch ends, and not read from the store', async () => {
      const entry = stagedCache();
      const f = await startOn(entry, 'stale');
      const call = client(f);
      assert.ok((await f.prefetchRef()) !== undefined);
      const app = entry.chain[1] as Blob;
      const waiting = call('GET', `blobs/${app.digest}`, { 'User-Agent': 'docker/26.1.5' });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(f.endPrefetch(), true, 'a read was waiting');
      assert.equal(codeOf(await waiting), 'BLOB_UNKNOWN');
      assert.equal(codeOf(await call('GET', `blobs/${app.digest}`, { 'User-Agent': 'docker/26.1.5' })), 'BLOB_UNKNOWN', 'and after');
      assert.deepEqual(
        store.calls.open.filter((d) => d === app.digest),
        [],
      );
      assert.ok((await call('GET', `blobs/${app.digest}`)).body.equals(app.data), 'BuildKit still gets it');
    });

    it('a layer BuildKit took elsewhere (the base, from its registry) goes to the engine once the pushed image has it', async () => {
      const entry = stagedCache();
      const f = await startOn(entry, 'based');
      const call = client(f);
      assert.ok((await f.prefetchRef()) !== undefined);
      const base = entry.chain[0] as Blob;
      let answered = false;
      const waiting = call('GET', `blobs/${base.digest}`, { 'User-Agent': 'docker/26.1.5' }).then((a) => ((answered = true), a));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(answered, false);
      await pushImageOf(call, base);
      assert.ok((await waiting).body.equals(base.data));
      assert.equal(f.endPrefetch(), false);
    });

    it("the engine's pull of the built image ends the prefetch's waiting reads soon after it began, freeing the engine's downloads", async () => {
      const entry = stagedCache();
      const f = await startOn(entry, 'graced');
      const call = client(f);
      assert.ok((await f.prefetchRef()) !== undefined);
      const app = entry.chain[1] as Blob;
      const waiting = call('GET', `blobs/${app.digest}`, { 'User-Agent': 'docker/26.1.5' });
      const base = entry.chain[0] as Blob;
      const image = await pushImageOf(call, base);
      const asked = Date.now();
      assert.equal((await call('GET', `manifests/${image.digest}`, { 'User-Agent': 'docker/26.1.5' })).status, 200);
      assert.equal(codeOf(await waiting), 'BLOB_UNKNOWN');
      const after = Date.now() - asked;
      assert.ok(after >= 400 && after < 10_000, `refused ${after} ms after the image's manifest was asked for`);
    });

    it('a layer under one BuildKit read (a base layer it took from its registry) goes to the engine at once, from the local store too', async () => {
      const entry = stagedCache();
      const f = await startOn(entry, 'local', false);
      const call = client(f);
      assert.ok((await f.prefetchRef()) !== undefined);
      const [base, app] = entry.chain as [Blob, Blob];
      assert.ok((await call('GET', `blobs/${app.digest}`, { 'User-Agent': 'buildkit/v0.32' })).body.equals(app.data));
      for (const b of [base, app])
        assert.ok((await call('GET', `blobs/${b.digest}`, { 'User-Agent': 'docker/26.1.5' })).body.equals(b.data));
      assert.equal(f.endPrefetch(), false);
    });

    // what the restored entry is → no image to pull
    const none: [string, () => { root: Blob; blobs: Blob[] } | undefined][] = [
      ['layers without their uncompressed digest', () => stagedCache(false)],
      ['a cache config without records (it cannot tell the last stage)', () => cache],
      ['no restored entry (a miss)', () => undefined],
    ];
    for (const [name, entry] of none)
      it(`none for ${name}`, async () => {
        const e = entry();
        const f = e === undefined ? await start({ writer: store.writer('saved') }) : await startOn(e, 'plain');
        assert.equal(await f.prefetchRef(), undefined);
        assert.equal(codeOf(await client(f)('GET', 'manifests/prefetch')), 'MANIFEST_UNKNOWN');
      });
  });

  it('closes promptly with requests in flight, aborting the store calls', async () => {
    const f = await start();
    store.faults.open = 'hang';
    const pending = client(f)('GET', `blobs/${bigLayer.digest}`).catch((err: unknown) => err);
    await new Promise((r) => setTimeout(r, 50));
    const begun = Date.now();
    await f.close();
    assert.ok(Date.now() - begun < 1_000);
    const outcome = await pending;
    assert.ok(outcome instanceof Error || (outcome as Answer).status >= 500 || (outcome as Answer).error !== undefined);
    assert.deepEqual(f.events, [], "closing is nobody's failure");
  });

  it('writes its login into a docker config, privately, next to the others', async () => {
    const f = await start();
    const dir = tempDir('dbxc-facade-config-');
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ auths: { 'example.io': { auth: 'eA==' } }, credHelpers: { 'acr.io': 'acr' } }),
    );
    await addLogin(dir, f);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as {
      auths: Record<string, { auth: string }>;
      credHelpers: unknown;
    };
    assert.deepEqual(Object.keys(config.auths).sort(), ['example.io', f.host].sort());
    assert.equal(Buffer.from(config.auths[f.host]?.auth ?? '', 'base64').toString(), `${f.username}:${f.password}`);
    assert.deepEqual(config.credHelpers, { 'acr.io': 'acr' });
    assert.equal(fs.statSync(path.join(dir, 'config.json')).mode & 0o777, 0o600);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credsStore: 'desktop' }));
    await assert.rejects(addLogin(dir, f), /credential store/);
  });
});
