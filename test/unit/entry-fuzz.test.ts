// Entry parsing against random and hostile JSON (fast-check): whatever a store holds, parsing an
// entry either gives an entry whose every invariant holds, or an EntryFormatError, never a crash
// or a path outside the layout.
import * as assert from 'assert/strict';
import * as path from 'path';
import fc from 'fast-check';
import { blobPath, cacheRoot, isDigest, parseIndex } from '../../tasks/DockerBuildxCacheV1/src/oci/layout';
import { EntryFormatError, headOfMetadata, metadataOf, parseEntry } from '../../tasks/DockerBuildxCacheV1/src/store/entry';
import type { Entry, EntryHead } from '../../tasks/DockerBuildxCacheV1/src/store/types';
import { cacheLayout, desc } from '../oci-fixture';

const ID = '01795918621782-02885778948b';

/** A valid entry, as a save writes it. */
function validEntry(): Entry {
  const layout = cacheLayout(['deps', 'app']);
  return {
    id: ID,
    key: 'buildx|"Linux"|app',
    segments: ['buildx', '"Linux"', 'app'],
    scope: 'refs/heads/main',
    created: '2026-11-28T12:00:00.000Z',
    lastUsed: '2026-11-28T12:00:00.000Z',
    root: layout.root.digest,
    index: { schemaVersion: 2, manifests: [{ ...desc(layout.root), annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] },
    blobs: layout.blobs.map((b) => ({ digest: b.digest, size: b.size })),
  };
}

/** Every invariant the rest of the store relies on. */
function assertValid(e: Entry): void {
  assert.equal(e.id, ID);
  assert.ok(e.key !== '' && e.segments.length > 0 && e.segments.every((s) => typeof s === 'string' && s !== ''));
  assert.equal(e.segments.join('|'), e.key);
  assert.ok(typeof e.scope === 'string' && e.scope !== '');
  assert.ok(!Number.isNaN(Date.parse(e.created)));
  assert.ok(isDigest(e.root));
  assert.equal(cacheRoot(parseIndex(JSON.stringify(e.index)))?.digest, e.root);
  assert.ok(e.blobs.some((b) => b.digest === e.root));
  for (const b of e.blobs) {
    assert.ok(isDigest(b.digest) && Number.isSafeInteger(b.size) && b.size >= 0);
    const file = blobPath('/layout', b.digest);
    assert.ok(!path.relative('/layout', file).startsWith('..'), file);
  }
}

/** parseEntry's whole contract: a valid entry or an EntryFormatError. */
function parsesOrRefuses(text: string): void {
  let parsed: Entry;
  try {
    parsed = parseEntry(text, ID);
  } catch (err) {
    assert.ok(err instanceof EntryFormatError, `not an EntryFormatError: ${String(err)}`);
    return;
  }
  assertValid(parsed);
}

const HOSTILE_DIGESTS = [
  'sha256:../../../etc/passwd',
  `sha256:${'A'.repeat(64)}`,
  `sha256:${'a'.repeat(63)}`,
  `md5:${'a'.repeat(32)}`,
  `sha256:${'a'.repeat(64)}/..`,
  '',
  'sha256:',
  `sha512:${'a'.repeat(64)}`,
];
const HOSTILE_VALUES: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    true,
    0,
    -1,
    1e308,
    -0,
    Number.MAX_SAFE_INTEGER + 2,
    1.5,
    '',
    '__proto__',
    'constructor',
    [],
    {},
    ...HOSTILE_DIGESTS,
  ),
  fc.anything({ maxDepth: 3 }),
  fc.string(),
);

describe('entry parsing, random and hostile (fast-check)', function () {
  this.timeout(60000);

  it('a valid entry parses back as itself', () => {
    const e = validEntry();
    assert.deepEqual(parseEntry(JSON.stringify(e), ID), e);
  });

  it('any string is an entry or an EntryFormatError', () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), parsesOrRefuses), { numRuns: 2000 });
  });

  it('any JSON value is an entry or an EntryFormatError', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => parsesOrRefuses(JSON.stringify(v))),
      { numRuns: 2000 },
    );
  });

  it('a valid entry with any field replaced by anything hostile is an entry or an EntryFormatError', () => {
    const fields = Object.keys(validEntry());
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...fields, '__proto__', 'extra'), HOSTILE_VALUES, { maxKeys: 4 }), (overrides) => {
        parsesOrRefuses(JSON.stringify({ ...validEntry(), ...overrides }));
      }),
      { numRuns: 3000 },
    );
  });

  it('hostile blob lists and indexes are refused or stay inside the layout', () => {
    const blobRef = fc.record({ digest: fc.oneof(fc.constantFrom(...HOSTILE_DIGESTS), fc.string()), size: HOSTILE_VALUES });
    fc.assert(
      fc.property(
        fc.array(blobRef, { maxLength: 5 }),
        fc.array(fc.record({ digest: fc.constantFrom(...HOSTILE_DIGESTS), size: HOSTILE_VALUES, annotations: HOSTILE_VALUES }), {
          maxLength: 3,
        }),
        (blobs, manifests) => {
          const e = validEntry();
          parsesOrRefuses(JSON.stringify({ ...e, blobs: [...e.blobs, ...blobs] }));
          parsesOrRefuses(JSON.stringify({ ...e, index: { manifests } }));
        },
      ),
      { numRuns: 2000 },
    );
  });

  const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);
  const HOSTILE_TEXTS: [string, string][] = [
    ['nesting 100 000 deep', nested(100_000)],
    ['an index nested 100 000 deep', JSON.stringify({ ...validEntry(), index: 0 }).replace('"index":0', `"index":${nested(100_000)}`)],
    ['a proto key', JSON.stringify(validEntry()).replace('"id"', '"__proto__":{"polluted":true},"id"')],
    ['a 2 MB key', JSON.stringify({ ...validEntry(), key: 'k'.repeat(2 << 20) })],
    ['a byte order mark', `\ufeff${JSON.stringify(validEntry())}`],
    ['a lone surrogate', JSON.stringify({ ...validEntry(), scope: '\ud800' })],
  ];
  for (const [name, text] of HOSTILE_TEXTS) {
    it(`${name} is an entry or an EntryFormatError`, () => {
      parsesOrRefuses(text);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });
  }

  it("any metadata is an entry's head or an EntryFormatError, and an entry's own metadata gives its head back", () => {
    const e: EntryHead = validEntry();
    assert.deepEqual(headOfMetadata(ID, metadataOf(e)), {
      id: e.id,
      key: e.key,
      segments: e.segments,
      scope: e.scope,
      created: e.created,
      lastUsed: e.lastUsed,
      root: e.root,
    });
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom('segments', 'scope', 'created', 'lastused', 'root', 'other'), fc.string(), { maxKeys: 6 }),
        (m) => {
          try {
            const head = headOfMetadata(ID, m);
            assert.ok(head.segments.length > 0 && head.segments.join('|') === head.key && isDigest(head.root) && head.scope !== '');
          } catch (err) {
            assert.ok(err instanceof EntryFormatError, String(err));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
