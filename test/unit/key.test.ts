import * as assert from 'assert/strict';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { describeKey, fingerprint, KeyResolveError, resolveKey, walkRoot } from '../../tasks/DockerBuildxCacheV1/src/key/resolve';
import { isFileSegment, KeySyntaxError, parseKey, startsWithSegments } from '../../tasks/DockerBuildxCacheV1/src/key/segments';
import { cleanup, tempDir, writeTree } from '../helpers';

describe('cache keys: segments in Cache@2 syntax', () => {
  const kinds: [string, boolean][] = [
    ['buildx', false],
    ['"Linux"', false],
    ['"my.app/x"', false],
    ['Dockerfile', false],
    ['v1', false],
    ['release.', false],
    ['Dockerfile.prod', true],
    ['./Dockerfile', true],
    ['src/Dockerfile', true],
    ['**/package-lock.json', true],
    ['*/deps.lock, !vendor/**', true],
  ];
  for (const [segment, isFile] of kinds) {
    it(`${JSON.stringify(segment)} is ${isFile ? 'a file segment' : 'a literal'}`, () => assert.equal(isFileSegment(segment), isFile));
  }

  // The agent's OS decides: on Windows `\\` separates paths and `"<>|` cannot be in a file name; elsewhere only NUL cannot.
  const byPlatform: [string, NodeJS.Platform, boolean][] = [
    ['C:\\src\\x', 'win32', true],
    ['C:\\src\\x', 'linux', false],
    ['C:\\src\\x', 'darwin', false],
    ['a<b.c', 'win32', false],
    ['a<b.c', 'linux', true],
    ['tab\there.c', 'win32', false],
    ['tab\there.c', 'linux', true],
    ['nul\u0000.c', 'linux', false],
  ];
  for (const [segment, platform, isFile] of byPlatform) {
    it(`on ${platform}, ${JSON.stringify(segment)} is ${isFile ? 'a file segment' : 'a literal'}`, () =>
      assert.equal(isFileSegment(segment, platform), isFile));
  }

  const splits: [string, string[]][] = [
    ['a || b', ['a', 'b']],
    ['a | b |', ['a', 'b']],
    ['| a', ['a']],
    ['a | | b', ['a', 'b']],
    ['buildx\n"Linux"\n  deps.lock  \n', ['buildx', '"Linux"', 'deps.lock']],
    ['one | line\nper | line', ['one | line', 'per | line']],
  ];
  for (const [key, texts] of splits)
    it(`splits ${JSON.stringify(key)} as the agent does`, () =>
      assert.deepEqual(
        parseKey(key).map((seg) => seg.text),
        texts,
      ));

  it('splits on | and trims, keeping quotes', () => {
    assert.deepEqual(
      parseKey(' buildx |"Linux"|  deps.lock , !x/** ').map((s) => s.text),
      ['buildx', '"Linux"', 'deps.lock , !x/**'],
    );
    const files = parseKey('k | a.lock, !b/**, c/*.json')[1];
    assert.deepEqual(files, { kind: 'files', text: 'a.lock, !b/**, c/*.json', include: ['a.lock', 'c/*.json'], exclude: ['b/**'] });
  });

  const bad: [string, RegExp][] = [
    ['|', /no segment/],
    [' \n ', /no segment/],
    ['*', /reserved segment.*'\.\/\*'/],
    ['k | **', /reserved segment/],
    ["k | 'x'", /cannot start with/],
    ['k | `x`', /cannot start with/],
    ['k | !a.txt', /only excludes/],
  ];
  for (const [key, pattern] of bad)
    it(`rejects ${JSON.stringify(key)}`, () =>
      assert.throws(
        () => parseKey(key),
        (e: Error) => e instanceof KeySyntaxError && pattern.test(e.message),
      ));

  const prefixes: [string[], string[], boolean][] = [
    [['a', 'b', 'c'], ['a', 'b'], true],
    [['a', 'b', 'c'], ['a', 'b', 'c'], true],
    [['a', 'bc'], ['a', 'b'], false],
    [['a'], ['a', 'b'], false],
    [['a', 'b'], [], true],
  ];
  for (const [key, prefix, expected] of prefixes) {
    it(`restore key ${JSON.stringify(prefix)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(key)}`, () =>
      assert.equal(startsWithSegments(key, prefix), expected));
  }

  const roots: [string, string, number][] = [
    ['/ws/**/package-lock.json', '/ws', Infinity],
    ['/ws/src/*.json', '/ws/src', 1],
    ['/ws/*/deps/*.lock', '/ws', 3],
    ['/*.txt', '/', 1],
  ];
  for (const [pattern, root, depth] of roots)
    it(`walks ${pattern} from ${root} to depth ${depth}`, () => assert.deepEqual(walkRoot(pattern), { root, depth }));
});

describe('cache keys: resolving file segments', () => {
  let ws: string;
  beforeEach(() => {
    ws = tempDir();
    writeTree(ws, {
      Dockerfile: 'FROM scratch\n',
      'app/package-lock.json': '{"a":1}',
      'lib/package-lock.json': '{"b":2}',
      'lib/node_modules/x/package-lock.json': '{"c":3}',
      '.hidden/package-lock.json': '{"d":4}',
      'deps.lock': 'left-pad@1\n',
      'Deps.LOCK': 'other case\n',
      'x/{a}.json': 'braces',
      'x/a.json': 'a',
      'x/b.json': 'b',
    });
  });
  afterEach(cleanup);

  const sha = (text: string): string => crypto.createHash('sha256').update(text).digest('hex');
  const resolved = async (key: string): Promise<string[]> => {
    const r = await resolveKey(key, ws);
    return r.segments.flatMap((s) => (s.kind === 'files' ? s.files.map((f) => f.path) : []));
  };

  it('keeps literals and replaces a file by Cache@2 fingerprint of path, size and SHA-256', async () => {
    const key = await resolveKey('buildx | "Linux" | deps.lock', ws);
    const expected = crypto
      .createHash('sha256')
      .update(`\nSHA256(deps.lock)=[11]${sha('left-pad@1\n')}`)
      .digest('base64');
    assert.deepEqual(key.values, ['buildx', '"Linux"', expected]);
    assert.equal(key.text, `buildx|"Linux"|${expected}`);
    assert.equal(fingerprint([{ path: 'deps.lock', size: 11, sha256: sha('left-pad@1\n') }]), expected);
  });

  const globs: [string, string[]][] = [
    [
      '**/package-lock.json',
      ['.hidden/package-lock.json', 'app/package-lock.json', 'lib/node_modules/x/package-lock.json', 'lib/package-lock.json'],
    ],
    ['**/package-lock.json, !**/node_modules/**', ['.hidden/package-lock.json', 'app/package-lock.json', 'lib/package-lock.json']],
    ['**/package-lock.json, !**/node_modules/**, !.hidden/**', ['app/package-lock.json', 'lib/package-lock.json']],
    ['app/package-lock.json, lib/package-lock.json', ['app/package-lock.json', 'lib/package-lock.json']],
    ['*/package-lock.json', ['.hidden/package-lock.json', 'app/package-lock.json', 'lib/package-lock.json']],
    ['x/{a}.json', ['x/{a}.json']],
    ['deps.lock', ['deps.lock']],
    ['./deps.lock', ['deps.lock']],
  ];
  for (const [segment, files] of globs) {
    it(`${segment} matches ${files.length} file(s), dot files included, braces literal`, async () =>
      assert.deepEqual(await resolved(`k | ${segment}`), files));
  }

  it('is case-sensitive on Linux', async function () {
    if (process.platform !== 'linux') this.skip();
    assert.deepEqual(await resolved('k | deps.lock'), ['deps.lock']);
    assert.deepEqual(await resolved('k | Deps.LOCK'), ['Deps.LOCK']);
  });

  it('gives the same fingerprint for the same files, and a new one when a byte changes', async () => {
    const a = await resolveKey('k | **/package-lock.json', ws);
    const b = await resolveKey('k | **/package-lock.json', ws);
    assert.equal(a.text, b.text);
    fs.writeFileSync(path.join(ws, 'lib', 'package-lock.json'), '{"b":3}');
    assert.notEqual((await resolveKey('k | **/package-lock.json', ws)).text, a.text);
  });

  it('changes the fingerprint when a file is renamed, even with the same content', async () => {
    const before = await resolveKey('k | x/*.json', ws);
    fs.renameSync(path.join(ws, 'x', 'b.json'), path.join(ws, 'x', 'c.json'));
    assert.notEqual((await resolveKey('k | x/*.json', ws)).text, before.text);
  });

  it('fails naming every pattern that matches nothing', async () => {
    await assert.rejects(resolveKey('k | missing.lock | **/*.nope | deps.lock', ws), (e: Error) => {
      assert.ok(e instanceof KeyResolveError);
      assert.match(e.message, /no file matches 'missing\.lock', '\*\*\/\*\.nope'/);
      return true;
    });
  });

  it('describes the key file by file', async () => {
    const lines = describeKey(await resolveKey('k | "q" | **/package-lock.json, !**/node_modules/**', ws));
    assert.match(lines[0] ?? '', /^k\|"q"\|[A-Za-z0-9+/=]{44}$/);
    assert.equal(lines[1], ' - k [string]');
    assert.equal(lines[2], ' - "q" [string]');
    assert.match(lines[3] ?? '', /^ - \*\*\/package-lock\.json, !\*\*\/node_modules\/\*\* \[file pattern; matches: 3\] --> /);
    assert.match(lines[4] ?? '', /^ {3}- \.hidden\/package-lock\.json \[7 bytes\] --> [0-9a-f]{64}$/);
  });
});
