import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import { PassThrough, Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { facadeCacheFlags } from '../../tasks/DockerBuildxCacheV1/src/facade/flags';
import {
  basicAuth,
  basicAuthorized,
  canonicalManifest,
  errorBody,
  manifestMediaType,
  parseRange,
  parseRoute,
  type Route,
} from '../../tasks/DockerBuildxCacheV1/src/facade/protocol';
import { BlobVerifier, DigestMismatchError, StalledError, Watchdog } from '../../tasks/DockerBuildxCacheV1/src/facade/verify';

const D = `sha256:${'a'.repeat(64)}`;
const sha = (data: Buffer): string => `sha256:${crypto.createHash('sha256').update(data).digest('hex')}`;

describe('registry facade: protocol', () => {
  describe('routes', () => {
    const cases: [string, Route][] = [
      ['/v2/', { kind: 'ping' }],
      ['/v2', { kind: 'ping' }],
      ['/v2/buildx-cache/manifests/restore', { kind: 'manifest', name: 'buildx-cache', reference: 'restore' }],
      [`/v2/a/b-c/manifests/${D}`, { kind: 'manifest', name: 'a/b-c', reference: D }],
      [`/v2/a/manifests/${encodeURIComponent(D)}`, { kind: 'manifest', name: 'a', reference: D }],
      [`/v2/a/blobs/${D}`, { kind: 'blob', name: 'a', digest: D }],
      ['/v2/a/blobs/uploads/', { kind: 'upload-start', name: 'a', digest: undefined, mount: undefined }],
      [`/v2/a/blobs/uploads/?digest=${encodeURIComponent(D)}`, { kind: 'upload-start', name: 'a', digest: D, mount: undefined }],
      [`/v2/a/blobs/uploads/?mount=${D}&from=other`, { kind: 'upload-start', name: 'a', digest: undefined, mount: D }],
      ['/v2/a/blobs/uploads/0123abcd', { kind: 'upload', name: 'a', id: '0123abcd', digest: undefined }],
      [`/v2/a/blobs/uploads/0123abcd?_state=x&digest=${encodeURIComponent(D)}`, { kind: 'upload', name: 'a', id: '0123abcd', digest: D }],
      ['/v2/a/blobs/sha256:../../etc/passwd', { kind: 'unknown' }],
      ['/v2/a/blobs/sha256:..%2F..%2Fetc%2Fpasswd', { kind: 'invalid', code: 'DIGEST_INVALID', message: 'invalid digest' }],
      ['/v2/a/blobs/sha256:abc', { kind: 'invalid', code: 'DIGEST_INVALID', message: 'invalid digest' }],
      [`/v2/a/blobs/uploads/?digest=md5:x`, { kind: 'invalid', code: 'DIGEST_INVALID', message: 'digest is not a valid digest' }],
      ['/v2/Upper/manifests/latest', { kind: 'invalid', code: 'NAME_INVALID', message: 'invalid repository name' }],
      ['/v2/a/manifests/-bad', { kind: 'invalid', code: 'MANIFEST_INVALID', message: 'invalid tag or digest' }],
      ['/v2/a/blobs/uploads/..%2F..', { kind: 'invalid', code: 'BLOB_UPLOAD_UNKNOWN', message: 'unknown upload' }],
      ['/v2/_catalog', { kind: 'unknown' }],
      ['/v2/a/tags/list', { kind: 'unknown' }],
      ['/other', { kind: 'unknown' }],
    ];
    for (const [url, route] of cases) it(url, () => assert.deepEqual(parseRoute(url), route));
  });

  it("error bodies are the distribution spec's", () => {
    assert.deepEqual(errorBody('BLOB_UNKNOWN', 'blob unknown'), {
      status: 404,
      body: '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}',
    });
    assert.deepEqual(JSON.parse(errorBody('MANIFEST_BLOB_UNKNOWN', 'missing', { digests: [D] }).body), {
      errors: [{ code: 'MANIFEST_BLOB_UNKNOWN', message: 'missing', detail: { digests: [D] } }],
    });
    const statuses: [Parameters<typeof errorBody>[0], number][] = [
      ['UNAUTHORIZED', 401],
      ['DENIED', 403],
      ['MANIFEST_UNKNOWN', 404],
      ['DIGEST_INVALID', 400],
      ['UNSUPPORTED', 405],
      ['UNKNOWN', 500],
    ];
    for (const [code, status] of statuses) assert.equal(errorBody(code, '').status, status, code);
  });

  describe('Basic credentials', () => {
    const header = (user: string, pass: string): string => `Basic ${basicAuth(user, pass)}`;
    const cases: [string, string | undefined, boolean][] = [
      ['the right ones', header('buildx-cache', 's3cret:with:colons'), true],
      ['the scheme in any case', `basic ${basicAuth('buildx-cache', 's3cret:with:colons')}`, true],
      ['none', undefined, false],
      ['a wrong password', header('buildx-cache', 's3cret'), false],
      ['a wrong user', header('someone', 's3cret:with:colons'), false],
      ['a Bearer token', 'Bearer s3cret:with:colons', false],
      ['no colon', `Basic ${Buffer.from('buildx-cache').toString('base64')}`, false],
      ['not base64', 'Basic %%%', false],
    ];
    for (const [name, value, ok] of cases) it(name, () => assert.equal(basicAuthorized(value, 'buildx-cache', 's3cret:with:colons'), ok));
  });

  describe('ranges', () => {
    const cases: [string | undefined, ReturnType<typeof parseRange>][] = [
      [undefined, undefined],
      ['bytes=0-9', { start: 0, end: 9 }],
      ['bytes=10-', { start: 10, end: 99 }],
      ['bytes=90-200', { start: 90, end: 99 }],
      ['bytes=-10', { start: 90, end: 99 }],
      ['bytes=-500', { start: 0, end: 99 }],
      ['bytes=100-', 'unsatisfiable'],
      ['bytes=-0', 'unsatisfiable'],
      ['bytes=5-2', undefined],
      ['bytes=0-1,5-6', undefined],
      ['items=0-1', undefined],
    ];
    for (const [header, range] of cases) it(String(header), () => assert.deepEqual(parseRange(header, 100), range));
  });

  describe('manifest media types', () => {
    const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}');
    const untyped = Buffer.from('{"schemaVersion":2,"manifests":[]}');
    const cases: [string, string | undefined, Buffer, string | RegExp][] = [
      ['the Content-Type', 'application/vnd.oci.image.manifest.v1+json', manifest, 'application/vnd.oci.image.manifest.v1+json'],
      ['the body when no Content-Type', undefined, manifest, 'application/vnd.oci.image.manifest.v1+json'],
      ['an index without mediaType field', 'application/vnd.oci.image.index.v1+json', untyped, 'application/vnd.oci.image.index.v1+json'],
      ['a disagreement', 'application/vnd.oci.image.index.v1+json', manifest, /is not its Content-Type/],
      ['a layer type', 'application/vnd.oci.image.layer.v1.tar+gzip', untyped, /unsupported manifest media type/],
      ['no type at all', undefined, untyped, /unsupported manifest media type/],
      ['not JSON', 'application/vnd.oci.image.manifest.v1+json', Buffer.from('{'), /not valid JSON/],
      ['not an object', 'application/vnd.oci.image.manifest.v1+json', Buffer.from('[]'), /not a JSON object/],
    ];
    for (const [name, type, body, expected] of cases) {
      it(name, () => {
        if (typeof expected === 'string') assert.equal(manifestMediaType(type, body), expected);
        else assert.throws(() => manifestMediaType(type, body), expected);
      });
    }
  });

  describe('the pushed manifest without where-it-came-from annotations', () => {
    // As BuildKit writes them: compact JSON in struct order (measured shapes, shortened).
    const layer = (annotations: Record<string, string>): object => ({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: D,
      size: 93,
      annotations,
    });
    const manifest = (layers: object[]): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.buildkit.cacheconfig.v0', digest: D, size: 1914 },
          layers,
        }),
      );
    const own = { 'buildkit/createdat': '2026-11-29T01:44:09.997493119Z', 'containerd.io/uncompressed': D };
    const clean = manifest([layer(own)]);
    const cases: [string, Buffer, Buffer | undefined][] = [
      [
        'dockerd: distribution.source.ref with the port and tag',
        manifest([
          layer({
            'buildkit/createdat': own['buildkit/createdat'],
            'containerd.io/distribution.source.ref': '127.0.0.1:5070/probe/cache:main',
            'containerd.io/uncompressed': D,
          }),
        ]),
        clean,
      ],
      [
        'BuildKit 0.32: distribution.source.<host>',
        manifest([layer({ ...own, 'containerd.io/distribution.source.127.0.0.1': 'buildx-cache' })]),
        clean,
      ],
      [
        'annotations that were only sources go',
        manifest([layer({ 'containerd.io/distribution.source.127.0.0.1': 'x' })]),
        manifest([{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D, size: 93 }]),
      ],
      ['nothing to remove: the bytes stand', clean, undefined],
      [
        'an index (no image-manifest)',
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: 'application/vnd.oci.image.index.v1+json',
            manifests: [layer({ 'containerd.io/distribution.source.127.0.0.1': 'x', a: 'b' })],
          }),
        ),
        Buffer.from(
          JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [layer({ a: 'b' })] }),
        ),
      ],
    ];
    for (const [name, pushed, expected] of cases)
      it(name, () => assert.deepEqual(canonicalManifest(pushed)?.toString(), expected?.toString()));
  });

  describe('the blob verifier', () => {
    const data = crypto.randomBytes(100_000);
    const good = { digest: sha(data), size: data.length };
    /** Feeds `input` in chunks of `chunk` bytes; returns what came out, and the error if any. */
    async function run(
      ref: { digest: string; size: number },
      input: Buffer,
      range?: { start: number; end: number },
      chunk = 7_000,
    ): Promise<{ out: Buffer; err?: Error; emittedBeforeEnd: number }> {
      const verifier = new BlobVerifier(ref, { range });
      const pieces: Buffer[] = [];
      let ended = false;
      let emittedBeforeEnd = 0;
      verifier.on('data', (c: Buffer) => {
        pieces.push(c);
        if (!ended) emittedBeforeEnd += c.length;
      });
      const source = new PassThrough();
      const done = pipeline(source, verifier).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      for (let i = 0; i < input.length; i += chunk) source.write(input.subarray(i, i + chunk));
      await new Promise((r) => setImmediate(r));
      ended = true;
      source.end();
      const err = await done;
      return { out: Buffer.concat(pieces), err, emittedBeforeEnd };
    }
    const flipped = Buffer.from(data);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;

    it('passes a good blob through whole, holding back only its last piece until the end', async () => {
      const r = await run(good, data);
      assert.equal(r.err, undefined);
      assert.ok(r.out.equals(data));
      assert.ok(
        r.emittedBeforeEnd < data.length && r.emittedBeforeEnd >= data.length - 7_000,
        `${r.emittedBeforeEnd} bytes out before the end`,
      );
    });
    const bad: [string, Buffer, RegExp][] = [
      ['a changed byte', flipped, /does not match/],
      ['a short blob', data.subarray(0, 50_000), /does not match: 50000 bytes/],
      ['a long blob', Buffer.concat([data, Buffer.from('x')]), /has more than its 100000 bytes/],
    ];
    for (const [name, input, pattern] of bad) {
      it(`never lets ${name} out whole`, async () => {
        const r = await run(good, input);
        assert.ok(r.err instanceof DigestMismatchError && pattern.test(r.err.message), String(r.err));
        assert.ok(r.out.length < data.length, `${r.out.length} bytes came out`);
      });
    }
    it('passes only the range, after hashing every byte', async () => {
      const r = await run(good, data, { start: 10_000, end: 10_099 });
      assert.ok(r.out.equals(data.subarray(10_000, 10_100)));
      assert.equal(r.emittedBeforeEnd, 0, 'a range held back until the whole blob matched');
      const wrong = await run(good, flipped, { start: 10_000, end: 10_099 });
      assert.ok(wrong.err instanceof DigestMismatchError);
      assert.equal(wrong.out.length, 0);
    });
    it('counts progress', async () => {
      let seen = 0;
      await pipeline(Readable.from([data]), new BlobVerifier(good, { onProgress: (n) => (seen += n) }), new PassThrough().resume());
      assert.equal(seen, data.length);
    });
  });

  describe('cache flags', () => {
    const refs = { importRef: '127.0.0.1:40000/buildx-cache:restore', exportRef: '127.0.0.1:40000/buildx-cache:save' };
    const cases: [string, Parameters<typeof facadeCacheFlags>, ReturnType<typeof facadeCacheFlags>][] = [
      [
        "a hit, saved: the folder path's export format",
        [refs, 'max', 'gzip'],
        {
          from: ['type=registry,ref=127.0.0.1:40000/buildx-cache:restore'],
          to: ['type=registry,ref=127.0.0.1:40000/buildx-cache:save,mode=max,compression=gzip,oci-mediatypes=true,ignore-error=true'],
        },
      ],
      [
        'a miss',
        [{ exportRef: refs.exportRef }, 'min', 'zstd'],
        {
          from: [],
          to: ['type=registry,ref=127.0.0.1:40000/buildx-cache:save,mode=min,compression=zstd,oci-mediatypes=true,ignore-error=true'],
        },
      ],
      [
        'a read-only cache',
        [{ importRef: refs.importRef }, 'max', 'gzip'],
        { from: ['type=registry,ref=127.0.0.1:40000/buildx-cache:restore'], to: [] },
      ],
    ];
    for (const [name, args, flags] of cases) it(name, () => assert.deepEqual(facadeCacheFlags(...args), flags));
  });

  describe('the watchdog', () => {
    it('aborts a call that makes no progress, with a StalledError', async () => {
      const dog = new Watchdog(50, 'reading x');
      await assert.rejects(
        dog.guard(new Promise(() => undefined)),
        (err: Error) => err instanceof StalledError && /reading x made no progress/.test(err.message),
      );
      dog.stop();
    });
    it('is kept alive by progress, and lets a call finish', async () => {
      const dog = new Watchdog(400, 'x');
      const kicks = setInterval(() => dog.kick(), 25);
      const value = await dog.guard(new Promise((r) => setTimeout(() => r(7), 600)));
      clearInterval(kicks);
      dog.stop();
      assert.equal(value, 7);
      assert.equal(dog.signal.aborted, false);
    });
    const lateCases: [string, number, boolean][] = [
      ['a stream that arrives after the call gave up is destroyed', 150, true],
      ['a stream that arrives in time is left to its reader', 0, false],
    ];
    for (const [what, delay, destroyed] of lateCases)
      it(what, async () => {
        const dog = new Watchdog(60, 'x');
        const stream = new PassThrough();
        const opening = new Promise<PassThrough>((r) => setTimeout(() => r(stream), delay));
        const got = dog.guard(opening, (s) => void s.destroy());
        if (destroyed) await assert.rejects(got, StalledError);
        else assert.equal(await got, stream);
        await new Promise((r) => setTimeout(r, delay + 20));
        dog.stop();
        assert.equal(stream.destroyed, destroyed);
      });
    it('follows its parent', async () => {
      const parent = new AbortController();
      const dog = new Watchdog(10_000, 'x', parent.signal);
      parent.abort(new Error('client gone'));
      await assert.rejects(dog.guard(new Promise(() => undefined)), /client gone/);
      dog.stop();
    });
  });
});
