import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { fingerprint, pathFilter, resolveKey, walkRoot } from '../../tasks/DockerBuildxCacheV1/src/key/resolve';
import { isFileSegment, isOldFormat, parseKey, salted, splitKey } from '../../tasks/DockerBuildxCacheV1/src/key/segments';
import { cleanup, tempDir } from '../helpers';

/**
 * Cache@2 key parity with the Azure Pipelines agent (microsoft/azure-pipelines-agent), on Linux.
 * `agent` rows are the agent's own test cases, one row per assertion, ported from
 * src/Test/L0/Plugin/{IsPathyTests,FingerprintCreatorTests,MatchingTests}.cs (the paths of
 * MatchingTests as its MakeOSPath turns them into Linux paths). `source` rows are behaviour the
 * agent's tests do not cover, read from its PipelineCacheTaskPluginBase.ParseIntoSegments and
 * FingerprintCreator.IsPathySegment as they run on Linux.
 */
type Row = readonly ['agent' | 'source', string, (dir: string) => void | Promise<void>];

const sha = (data: Buffer | string): string => crypto.createHash('sha256').update(data).digest('hex');
const pathy = (segment: string, expected: boolean) => (): void => assert.equal(isFileSegment(segment, 'linux'), expected, segment);
const segments =
  (key: string, expected: string[], old = false) =>
  (): void => {
    assert.equal(isOldFormat(key), old);
    assert.deepEqual(splitKey(key), expected);
  };
const matches = (include: string[], exclude: string[], cases: [string, boolean][]) => (): void => {
  const filter = pathFilter(include, exclude, '/working');
  for (const [file, expected] of cases) assert.equal(filter(file), expected, file);
};
const enumerates = (glob: string, root: string, depth: number) => (): void => assert.deepEqual(walkRoot(glob), { root, depth });
const rejects =
  (key: string) =>
  async (dir: string): Promise<void> => {
    await assert.rejects(async () => resolveKey(key, dir));
  };
/** The agent's MatchedFile hash of one file, as its tests compute it: `\nSHA256(<display path>)=[<size>]<hex>`. */
const fileHash = (display: string, content: Buffer): string => fingerprint([{ path: display, size: content.length, sha256: sha(content) }]);

const content1 = crypto.randomBytes(150);
const content2 = crypto.randomBytes(120);

export const ROWS: readonly Row[] = [
  // IsPathyTests.Fingerprint_IsPath
  ['agent', "IsPathy('') literal", pathy("''", false)],
  ['agent', 'IsPathy(Windows_NT) literal', pathy('Windows_NT', false)],
  ['agent', 'IsPathy(README.md) path', pathy('README.md', true)],
  ['agent', "IsPathy('This is a sentence.') literal", pathy('This is a sentence.', false)],
  ['agent', 'IsPathy(http://xkcd.com.) literal', pathy('http://xkcd.com.', false)],
  ['agent', 'IsPathy("D:\\README.md" quoted) literal', pathy('"D:\\README.md"', false)],
  ['agent', 'IsPathy(D:\\README.md) path', pathy('D:\\README.md', true)],
  ['agent', 'IsPathy(D:\\src\\…\\s/README.md) path', pathy('D:\\src\\vsts-agent\\_layout\\_work\\2\\s/README.md', true)],
  ['agent', 'IsPathy(D:\\src\\…\\s/**/README.md) path', pathy('D:\\src\\vsts-agent\\_layout\\_work\\2\\s/**/README.md', true)],
  ['agent', 'IsPathy(/**/README.md,!./junk/**;./azure-pipelines.yml) path', pathy('/**/README.md,!./junk/**;./azure-pipelines.yml', true)],
  ['agent', 'IsPathy(./**,!./.git/**) path', pathy('./**,!./.git/**', true)],
  // FingerprintCreatorTests
  ['agent', 'Fingerprint_ReservedFails: *', rejects('*')],
  ['agent', 'Fingerprint_ReservedFails: **', rejects('**')],
  [
    'agent',
    'Fingerprint_ExcludeExactMatches: a folder, less a file in it, matches nothing',
    (dir) => rejects(`${dir},!${path.join(dir, 'file1.bin')}`)(dir),
  ],
  [
    'agent',
    'Fingerprint_ExcludeExactMisses: one file, less another',
    async (dir) =>
      assert.deepEqual((await resolveKey(`${path.join(dir, 'file1.bin')},!${path.join(dir, 'file2.bin')}`, dir)).values, [
        fileHash('file1.bin', content1),
      ]),
  ],
  [
    'agent',
    'Fingerprint_FileAbsolute: two absolute files, two segments',
    async (dir) =>
      assert.deepEqual((await resolveKey(`${path.join(dir, 'file1.bin')} | ${path.join(dir, 'file2.bin')}`, dir)).values, [
        fileHash('file1.bin', content1),
        fileHash('file2.bin', content2),
      ]),
  ],
  [
    'agent',
    'Fingerprint_FileRelative: two relative files, two segments',
    async (dir) =>
      assert.deepEqual((await resolveKey('file1.bin | file2.bin', dir)).values, [
        fileHash('file1.bin', content1),
        fileHash('file2.bin', content2),
      ]),
  ],
  ['agent', 'Fingerprint_Str: a string stays', async (dir) => assert.deepEqual((await resolveKey('hello', dir)).values, ['hello'])],
  [
    'agent',
    'ParseMultilineKeyAsOld',
    segments(
      'gems\n$(Agent.OS)\n$(Build.SourcesDirectory)/my.gemspec',
      ['gems', '$(Agent.OS)', '$(Build.SourcesDirectory)/my.gemspec'],
      true,
    ),
  ],
  ['agent', 'ParseSingleLineAsNew', segments('$(Agent.OS)', ['$(Agent.OS)'])],
  [
    'agent',
    'ParseMultilineWithRestoreKeys: the key',
    segments('$(Agent.OS) | Gemfile.lock | **/*.gemspec,!./junk/**', ['$(Agent.OS)', 'Gemfile.lock', '**/*.gemspec,!./junk/**']),
  ],
  [
    'agent',
    'ParseMultilineWithRestoreKeys: the restore keys, one a line',
    () =>
      assert.deepEqual('$(Agent.OS) | Gemfile.lock\n$(Agent.OS)'.split('\n').map(splitKey), [
        ['$(Agent.OS)', 'Gemfile.lock'],
        ['$(Agent.OS)'],
      ]),
  ],
  // MatchingTests
  [
    'agent',
    'MultipleIncludes',
    matches(
      ['good1.tmp', 'good2.tmp'],
      [],
      [
        ['/working/good1.tmp', true],
        ['/working/good2.tmp', true],
        ['/working/something.else', false],
      ],
    ),
  ],
  [
    'agent',
    'AbsoluteAndRelative',
    matches(
      ['/working/good1.tmp', 'good2.tmp'],
      [],
      [
        ['/working/good1.tmp', true],
        ['/working/good2.tmp', true],
        ['/working/something.else', false],
        ['/junk', false],
      ],
    ),
  ],
  [
    'agent',
    'ExcludeSingleFile',
    matches(
      ['*.tmp'],
      ['bad.tmp'],
      [
        ['/working/good.tmp', true],
        ['/working/bad.tmp', false],
        ['/working/something.else', false],
      ],
    ),
  ],
  [
    'agent',
    'ExcludeSingleFileWithDot',
    matches(
      ['./*.tmp'],
      ['./bad.tmp'],
      [
        ['/working/good.tmp', true],
        ['/working/bad.tmp', false],
        ['/working/something.else', false],
      ],
    ),
  ],
  [
    'agent',
    'DoubleAsteriskAsPartOfPathSegment',
    matches(
      ['./**blah/.tmp'],
      ['./bad.tmp'],
      [
        ['/working/good.tmp', false],
        ['/working/bad.tmp', false],
        ['/working/something.else', false],
      ],
    ),
  ],
  ['agent', 'DetermineFileEnumerationExact', enumerates('/dir/file.txt', '/dir', 1)],
  ['agent', 'DetermineFileEnumerationTopLevel', enumerates('/dir/*.txt', '/dir', 1)],
  ['agent', 'DetermineFileEnumerationRecursive', enumerates('/dir/**/*.txt', '/dir', Infinity)],
  [
    'agent',
    'DetermineFileEnumerationExactFileNameRecursive',
    enumerates('/dir/node_modules/**/package-lock.json', '/dir/node_modules', Infinity),
  ],
  // ParseIntoSegments and IsPathySegment, beyond the agent's tests
  ['source', 'an empty segment between pipes is dropped', segments('a || b', ['a', 'b'])],
  ['source', 'a trailing pipe is dropped', segments('a | b |', ['a', 'b'])],
  ['source', 'the old format drops empty lines and trims', segments('gems\n\n  Gemfile.lock  \n', ['gems', 'Gemfile.lock'], true)],
  [
    'source',
    'AZP_CACHING_SALT is a segment in front of the key',
    () => assert.deepEqual(splitKey(salted('a | b', 'v2')), ['AZP_CACHING_SALT=v2', 'a', 'b']),
  ],
  ['source', 'no salt segment for a key in the old format', () => assert.deepEqual(splitKey(salted('a\nb', 'v2')), ['a', 'b'])],
  ['source', '\\ is an ordinary character on Linux: C:\\src\\x is a string', pathy('C:\\src\\x', false)],
  ['source', 'only NUL cannot be in a Linux file name: a<b.c is a path', pathy('a<b.c', true)],
  ['source', 'a segment with NUL is a string', pathy('a\u0000b.c', false)],
  [
    'source',
    '\\ escapes a glob character on Linux: x/\\*.json is the file named *.json',
    async (dir) => {
      fs.mkdirSync(path.join(dir, 'x'));
      fs.writeFileSync(path.join(dir, 'x', '*.json'), 'star');
      fs.writeFileSync(path.join(dir, 'x', 'a.json'), 'a');
      const key = await resolveKey('k | x/\\*.json', dir);
      assert.deepEqual(
        key.segments.flatMap((s) => (s.kind === 'files' ? s.files.map((f) => f.path) : [])),
        ['x/*.json'],
      );
    },
  ],
  ['source', 'the salt segment is a string even with a dot in it', () => assert.equal(parseKey(salted('k', '1.0'))[0]?.kind, 'literal')],
];

describe('cache keys: parity with the Azure Pipelines agent (its own tests, and its source on Linux)', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
    fs.writeFileSync(path.join(dir, 'file1.bin'), content1);
    fs.writeFileSync(path.join(dir, 'file2.bin'), content2);
  });
  afterEach(cleanup);
  for (const [origin, name, check] of ROWS) it(`${origin}: ${name}`, () => check(dir));
});
