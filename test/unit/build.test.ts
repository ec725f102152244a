import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as sinon from 'sinon';
import { BuildError, buildWithCacheFallback, type BuildCache } from '../../tasks/DockerBuildxCacheV1/src/build';
import type { DockerCli, RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';
import { CacheError } from '../../tasks/DockerBuildxCacheV1/src/cache/trouble';
import type { Config } from '../../tasks/DockerBuildxCacheV1/src/config/types';
import { cleanup } from '../helpers';
import { configIn } from './read-config';
import { taskLibOutput } from './setup';

const ok: RunResult = { code: 0, stdout: '', stderr: '' };
/** BuildKit's words when an imported blob does not match its digest, and when the cache export fails. */
const corrupt: RunResult = {
  code: 1,
  stdout: '',
  stderr:
    'ERROR: failed to solve: failed to compute cache key: unexpected commit digest sha256:aa, expected sha256:bb: failed precondition',
};
const exportFailed: RunResult = {
  code: 1,
  stdout: '',
  stderr:
    '#9 exporting cache to client directory\n#9 ERROR: write /cache/blobs/sha256/x: no space left on device\nERROR: failed to solve: no space left on device',
};

const config = (failOnCacheError: boolean): Config =>
  configIn({ imageName: 'app', output: 'cacheOnly', failOnCacheError: String(failOnCacheError) }).config;

/** Answers each `buildx build` in turn; the progress parser sees the stderr lines. */
function builds(...answers: RunResult[]): { docker: DockerCli; run: sinon.SinonStub } {
  const run = sinon.stub<Parameters<DockerCli['run']>, ReturnType<DockerCli['run']>>();
  answers.forEach((a, i) =>
    run.onCall(i).callsFake((_args, options) => {
      for (const line of a.stderr.split('\n')) options?.onLine?.(line);
      return Promise.resolve(a);
    }),
  );
  return { docker: { run }, run };
}

const cache = (distrust = sinon.spy()): BuildCache => ({
  from: ['type=local,src=/c'],
  to: ['type=local,dest=/c.new'],
  onImportCorrupt: (): Promise<void> => {
    distrust();
    return Promise.resolve();
  },
  onExportFailed: (): Promise<void> => Promise.resolve(),
});
const builder = { name: 'b', created: false, platforms: [] };

describe('build: cache trouble during the build and failOnCacheError', () => {
  afterEach(cleanup);

  // failOnCacheError, the first build's answer → the outcome: builds run, a CacheError or a warning
  const table: [string, boolean, RunResult, number, 'CacheError' | 'warning'][] = [
    ['a corrupt imported blob, failOnCacheError false: built again without the import, with a warning', false, corrupt, 2, 'warning'],
    ['a corrupt imported blob, failOnCacheError true: the step fails with the cache error', true, corrupt, 1, 'CacheError'],
    ['a failed cache export, failOnCacheError false: built again without the export, with a warning', false, exportFailed, 2, 'warning'],
    ['a failed cache export, failOnCacheError true: the step fails with the cache error', true, exportFailed, 1, 'CacheError'],
  ];
  for (const [name, failOnError, first, runs, outcome] of table) {
    it(name, async () => {
      const { docker, run } = builds(first, ok);
      const distrust = sinon.spy();
      const before = taskLibOutput.length;
      const result = buildWithCacheFallback(docker, config(failOnError), builder, cache(distrust), new Map(), '/tmp/metadata.json');
      if (outcome === 'CacheError') {
        await assert.rejects(
          result,
          (err: Error) => err instanceof CacheError && !(err instanceof BuildError) && /failOnCacheError is true/.test(err.message),
        );
      } else {
        await result;
        assert.ok(taskLibOutput.slice(before).some((l) => l.startsWith('##vso[task.issue type=warning')));
      }
      assert.equal(run.callCount, runs);
      // A corrupt entry is distrusted either way: the store checks it in full next time.
      assert.equal(distrust.called, first === corrupt);
    });
  }
});

describe("build: the engine's unpack race (moby/buildkit#6521)", () => {
  afterEach(cleanup);
  /** The engine's words when the image's unpack into its containerd store loses a snapshot. */
  const race: RunResult = {
    code: 1,
    stdout: '',
    stderr:
      '#12 unpacking to docker.io/app:latest 0.0s done\n#12 ERROR: failed to prepare extraction snapshot "extract-262741179-H1nY sha256:4f": parent snapshot sha256:2e does not exist: not found\n' +
      'ERROR: failed to build: failed to solve: failed to prepare extraction snapshot "extract-262741179-H1nY sha256:4f": parent snapshot sha256:2e does not exist: not found',
  };
  const broken: RunResult = {
    code: 1,
    stdout: '',
    stderr: 'ERROR: failed to build: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3',
  };

  // the builds' answers → how many builds ran, and whether the step's build failed
  const table: [string, RunResult[], number, boolean][] = [
    ['the race once: built again, with the same cache flags, and a warning', [race, ok], 2, false],
    ['the race twice: the build fails, after one retry', [race, race], 2, true],
    ['a build that fails otherwise: not run again', [broken, ok], 1, true],
  ];
  for (const [name, answers, runs, fails] of table) {
    it(name, async () => {
      const { docker, run } = builds(...answers);
      const before = taskLibOutput.length;
      const result = buildWithCacheFallback(docker, config(false), builder, cache(), new Map(), '/tmp/metadata.json');
      if (fails) await assert.rejects(result, BuildError);
      else await result;
      assert.equal(run.callCount, runs);
      const warned = taskLibOutput.slice(before).filter((l) => l.startsWith('##vso[task.issue type=warning'));
      assert.equal(
        warned.some((l) => l.includes('loc_mock_WarnEngineUnpackRetry') || l.includes('intermittent race')),
        answers[0] === race,
      );
      if (runs === 2) assert.deepEqual(run.secondCall.args[0], run.firstCall.args[0], 'the same build again');
    });
  }
});

describe('build: the image of output docker through the facade (imageVia)', () => {
  afterEach(cleanup);
  const VIA = '127.0.0.1:4321/buildx-cache:image';
  const DIGEST = `sha256:${'d'.repeat(64)}`;
  const storeDown: RunResult = {
    code: 1,
    stdout: '',
    stderr: 'ERROR: failed to solve: failed to push 127.0.0.1:4321/buildx-cache:image: 500',
  };
  const dockerfileError: RunResult = { code: 1, stdout: '', stderr: 'ERROR: failed to solve: process "/bin/sh -c false" did not complete' };
  const failed: RunResult = { code: 1, stdout: '', stderr: 'Error response from daemon: connection refused' };
  const refused: RunResult = {
    code: 1,
    stdout: '',
    stderr:
      'ERROR: failed to solve: failed to push 127.0.0.1:4321/buildx-cache:image: failed to do request: Head "http://127.0.0.1:4321/v2/buildx-cache/blobs/sha256:aa": dial tcp 127.0.0.1:4321: connect: connection refused',
  };

  function dockerConfig(failOnCacheError: boolean): { config: Config; metadata: string } {
    const { config, ws } = configIn({ imageName: 'app', tags: 'one\ntwo', failOnCacheError: String(failOnCacheError) });
    return { config, metadata: `${ws}/metadata.json` };
  }

  /** A docker whose builds answer in turn (a good one writes the metadata file, as buildx does) and whose other commands answer by their first argument. */
  function docker(
    metadata: string,
    buildAnswers: RunResult[],
    others: Record<string, RunResult> = {},
  ): { docker: DockerCli; calls: string[][] } {
    const calls: string[][] = [];
    let build = 0;
    const run: DockerCli['run'] = (args, options) => {
      calls.push([...args]);
      if (args[0] !== 'buildx') return Promise.resolve(others[args[0] ?? ''] ?? ok);
      const answer = buildAnswers[build++] ?? ok;
      for (const line of answer.stderr.split('\n')) options?.onLine?.(line);
      if (answer.code === 0)
        fs.writeFileSync(
          metadata,
          JSON.stringify({ 'containerimage.digest': DIGEST, 'image.name': args.includes('--load') ? 'docker.io/library/app:one' : VIA }),
        );
      return Promise.resolve(answer);
    };
    return { docker: { run }, calls };
  }

  const viaCache = (trouble: Trouble, from: string[], unreached = false): BuildCache => ({
    from,
    to: ['type=registry,ref=127.0.0.1:4321/buildx-cache:save'],
    onImportCorrupt: () => Promise.resolve(),
    onExportFailed: () => Promise.resolve(),
    importTrouble: () => Promise.resolve(trouble !== 'none'),
    exportTrouble: () => Promise.resolve(trouble === 'write'),
    storeFailed: () => Promise.resolve(trouble === 'read' || trouble === 'write'),
    imageVia: VIA,
    facade: { host: '127.0.0.1:4321', unreached: () => unreached },
  });
  const describeCall = (args: readonly string[]): string =>
    args[0] === 'buildx'
      ? `build ${args.includes('--load') ? '--load' : args.includes(`type=image,name=${VIA},push=true`) ? 'push' : '?'}${args.includes('--cache-from') ? ' +import' : ''}${args.includes('--cache-to') ? ' +export' : ''}`
      : args.slice(0, 2).join(' ');
  const IMPORT = ['type=registry,ref=127.0.0.1:4321/buildx-cache:restore'];
  const PULLED = `127.0.0.1:4321/buildx-cache@${DIGEST}`;

  /** What the facade reported: nothing, the store failing (reading, or only under the pushes), or a blob failing its digest. */
  type Trouble = 'none' | 'read' | 'write' | 'corrupt';
  type Case = {
    builds: RunResult[];
    others?: Record<string, RunResult>;
    failOnError?: boolean;
    trouble?: Trouble;
    from?: string[];
    /** The facade saw no request at all. */
    unreached?: boolean;
    calls: string[];
    outcome: 'none' | 'warning' | 'CacheError' | 'BuildError';
  };
  // the case → the docker commands in order (a build: how it outputs, and whether it imports), and a warning or an error
  const table: [string, Case][] = [
    [
      'pushed and pulled: tagged, the reference removed',
      { builds: [ok], calls: ['build push +export', 'pull --quiet', `tag ${PULLED}`, `tag ${PULLED}`, 'image rm'], outcome: 'none' },
    ],
    [
      'the pull fails: a warning, loaded by the build again',
      {
        builds: [ok, ok],
        others: { pull: failed },
        calls: ['build push +export', 'pull --quiet', 'image rm', 'build --load'],
        outcome: 'warning',
      },
    ],
    [
      'the pull fails, failOnCacheError: the cache error',
      {
        builds: [ok],
        others: { pull: failed },
        failOnError: true,
        calls: ['build push +export', 'pull --quiet', 'image rm'],
        outcome: 'CacheError',
      },
    ],
    [
      'a tag fails: a warning, loaded by the build again',
      {
        builds: [ok, ok],
        others: { tag: failed },
        calls: ['build push +export', 'pull --quiet', `tag ${PULLED}`, 'image rm', 'build --load'],
        outcome: 'warning',
      },
    ],
    [
      'the pull fails with an import: the build again keeps the import',
      {
        builds: [ok, ok],
        others: { pull: failed },
        from: IMPORT,
        calls: ['build push +import +export', 'pull --quiet', 'image rm', 'build --load +import'],
        outcome: 'warning',
      },
    ],
    [
      'the push fails with the store (no import): a warning, built again with --load',
      { builds: [storeDown, ok], trouble: 'write', calls: ['build push +export', 'build --load +export'], outcome: 'warning' },
    ],
    [
      'the push fails with the store, failOnCacheError: the cache error',
      { builds: [storeDown], trouble: 'write', failOnError: true, calls: ['build push +export'], outcome: 'CacheError' },
    ],
    [
      'the store failed only writing, with an import: built again with it, with --load',
      {
        builds: [storeDown, ok],
        trouble: 'write',
        from: IMPORT,
        calls: ['build push +import +export', 'build --load +import +export'],
        outcome: 'warning',
      },
    ],
    [
      'the store failed reading, with an import: built again without it, with --load',
      {
        builds: [storeDown, ok],
        trouble: 'read',
        from: IMPORT,
        calls: ['build push +import +export', 'build --load +export'],
        outcome: 'warning',
      },
    ],
    [
      'the store failed reading, failOnCacheError: the cache error',
      {
        builds: [storeDown],
        trouble: 'read',
        from: IMPORT,
        failOnError: true,
        calls: ['build push +import +export'],
        outcome: 'CacheError',
      },
    ],
    [
      'a blob failed its digest, with an import: built again without it, still exporting, with --load',
      {
        builds: [storeDown, ok],
        trouble: 'corrupt',
        from: IMPORT,
        calls: ['build push +import +export', 'build --load +export'],
        outcome: 'warning',
      },
    ],
    [
      'the builder cannot reach the registry (refused, no request came): a warning, built again without the cache, with --load',
      { builds: [refused, ok], unreached: true, from: IMPORT, calls: ['build push +import +export', 'build --load'], outcome: 'warning' },
    ],
    [
      'the same, failOnCacheError: the cache error',
      { builds: [refused], unreached: true, failOnError: true, calls: ['build push +export'], outcome: 'CacheError' },
    ],
    [
      'refused, but requests did reach the registry (the store failed under it): not taken for an unreachable builder',
      { builds: [refused], unreached: false, calls: ['build push +export'], outcome: 'BuildError' },
    ],
    [
      'a Dockerfile that fails, the store fine: the build error, not built again',
      { builds: [dockerfileError], calls: ['build push +export'], outcome: 'BuildError' },
    ],
  ];
  for (const [name, c] of table) {
    it(name, async () => {
      const { config, metadata } = dockerConfig(c.failOnError === true);
      const { docker: cli, calls } = docker(metadata, c.builds, c.others);
      const before = taskLibOutput.length;
      const result = buildWithCacheFallback(
        cli,
        config,
        builder,
        viaCache(c.trouble ?? 'none', c.from ?? [], c.unreached === true),
        new Map(),
        metadata,
      );
      if (c.outcome === 'CacheError')
        await assert.rejects(
          result,
          (err: Error) => err instanceof CacheError && (c.trouble !== 'read' || /cache store failed during the build/.test(err.message)),
        );
      else if (c.outcome === 'BuildError') await assert.rejects(result, (err: Error) => err instanceof BuildError);
      else await result;
      assert.deepEqual(
        calls.map((call) => (call[0] === 'tag' ? call.slice(0, 2).join(' ') : describeCall(call))),
        c.calls,
      );
      const warned = taskLibOutput.slice(before).some((l) => l.startsWith('##vso[task.issue type=warning'));
      assert.equal(warned, c.outcome === 'warning');
      // The warning names what failed: the store, or a blob.
      const said = taskLibOutput.slice(before).join('\n');
      if (c.outcome === 'warning' && c.trouble === 'read') assert.match(said, /cache store failed during the build/);
      if (c.outcome === 'warning' && c.trouble === 'corrupt') assert.match(said, /does not match its digest/);
      const push = calls[0] ?? [];
      // The pushed image is --load's: no tags on the build, no provenance a --load would not have.
      assert.ok(!push.includes('--tag') && push.includes('--provenance=false'), push.join(' '));
      if (c.calls.some((call) => call.startsWith('build --load'))) {
        const load = calls.find((call) => call.includes('--load')) ?? [];
        assert.ok(load.includes('--tag') && !load.includes('--provenance=false'), load.join(' '));
      }
      if (name.startsWith('pushed and pulled')) {
        assert.deepEqual(
          calls.slice(1, 4).map((call) => call.slice(-1)[0]),
          [`127.0.0.1:4321/buildx-cache@${DIGEST}`, 'app:one', 'app:two'],
        );
        const written = JSON.parse(fs.readFileSync(metadata, 'utf8')) as Record<string, string>;
        assert.equal(written['image.name'], 'docker.io/library/app:one,docker.io/library/app:two');
        assert.equal(written['containerimage.digest'], DIGEST);
      }
    });
  }
});

describe("build: the engine pulls the cache's last layers beside the build (prefetch)", () => {
  afterEach(cleanup);
  const VIA = '127.0.0.1:4321/buildx-cache:image';
  const PREFETCH = '127.0.0.1:4321/buildx-cache:prefetch';
  const DIGEST = `sha256:${'e'.repeat(64)}`;
  const failed: RunResult = { code: 1, stdout: '', stderr: 'Error response from daemon: manifest unknown' };
  const refused: RunResult = { code: 1, stdout: '', stderr: 'Error response from daemon: blob unknown: not one this build read' };
  const dockerfileError: RunResult = { code: 1, stdout: '', stderr: 'ERROR: failed to solve: process "/bin/sh -c false" did not complete' };

  type Case = {
    ref?: string;
    /** How the prefetch's pull ends: at once with this answer, or (`untilEnd`) once the facade ends the prefetch, refused. */
    prefetchPull?: RunResult | 'untilEnd';
    build?: RunResult;
    events: string[];
    said?: RegExp;
    outcome: 'none' | 'BuildError';
  };
  // the prefetch's reference and answers → what ran, in order (the build's start and end, the prefetch's end among them), and what the log says
  const table: [string, Case][] = [
    [
      "pulled while the build runs; the image's pull after it, then the prefetch ended and its reference removed",
      {
        ref: PREFETCH,
        events: ['build start', 'pull prefetch', 'build end', 'pull image', 'tag', 'image rm image', 'end', 'image rm prefetch'],
        outcome: 'none',
      },
    ],
    [
      "layers the build did not read: the image's pull does not wait for the prefetch, whose end refuses them; said, not as a failure",
      {
        ref: PREFETCH,
        prefetchPull: 'untilEnd',
        events: ['build start', 'pull prefetch', 'build end', 'pull image', 'tag', 'image rm image', 'end'],
        said: /pulled the layers of the cache's last image that this build read; the others, which it did not read, were left out/,
        outcome: 'none',
      },
    ],
    [
      'no image to prefetch (no entry, or no chain): nothing beside the build',
      { events: ['build start', 'build end', 'pull image', 'tag', 'image rm image', 'end'], outcome: 'none' },
    ],
    [
      'the prefetch fails: said, and the image is pulled as before; nothing of it to remove',
      {
        ref: PREFETCH,
        prefetchPull: failed,
        events: ['build start', 'pull prefetch', 'build end', 'pull image', 'tag', 'image rm image', 'end'],
        said: /cache's layers beside the build failed \(Error response from daemon: manifest unknown\)/,
        outcome: 'none',
      },
    ],
    [
      'the build fails: the prefetch is ended at once, and its reference removed',
      {
        ref: PREFETCH,
        build: dockerfileError,
        // Ended as the build failed, before anything asks the registry what went wrong, and again at the end.
        events: ['build start', 'pull prefetch', 'build end', 'end', 'end', 'image rm prefetch'],
        outcome: 'BuildError',
      },
    ],
  ];
  for (const [name, c] of table)
    it(name, async () => {
      const { config, ws } = configIn({ imageName: 'app', tags: 'one', failOnCacheError: 'false' });
      const metadata = `${ws}/metadata.json`;
      const events: string[] = [];
      let pulledBeside = (): void => undefined;
      const beside = new Promise<void>((resolve) => (pulledBeside = resolve));
      let ended = (): void => undefined;
      const end = new Promise<void>((resolve) => (ended = resolve));
      const run: DockerCli['run'] = async (args, options) => {
        if (args[0] === 'buildx') {
          events.push('build start');
          // The build ends only once the prefetch began (when there is one): it runs beside, not after.
          if (c.ref !== undefined) await beside;
          const answer = c.build ?? ok;
          for (const line of answer.stderr.split('\n')) options?.onLine?.(line);
          if (answer.code === 0) fs.writeFileSync(metadata, JSON.stringify({ 'containerimage.digest': DIGEST, 'image.name': VIA }));
          events.push('build end');
          return answer;
        }
        const which = args.at(-1) === PREFETCH ? 'prefetch' : 'image';
        if (args[0] === 'pull') {
          events.push(`pull ${which}`);
          if (which === 'prefetch') {
            pulledBeside();
            if (c.prefetchPull !== 'untilEnd') return c.prefetchPull ?? ok;
            await end;
            return refused;
          }
        } else events.push(args[0] === 'image' ? `image rm ${which}` : (args[0] ?? ''));
        return ok;
      };
      const before = taskLibOutput.length;
      const logged = sinon.stub(console, 'log');
      const result = buildWithCacheFallback(
        { run },
        config,
        builder,
        {
          from: [],
          to: [],
          onImportCorrupt: () => Promise.resolve(),
          onExportFailed: () => Promise.resolve(),
          imageVia: VIA,
          prefetch: {
            ref: () => Promise.resolve(c.ref),
            end: () => {
              events.push('end');
              ended();
              return c.prefetchPull === 'untilEnd';
            },
          },
        },
        new Map(),
        metadata,
      );
      try {
        if (c.outcome === 'BuildError') await assert.rejects(result, (err: Error) => err instanceof BuildError);
        else await result;
      } finally {
        logged.restore();
      }
      assert.deepEqual(events, c.events);
      const said = [...taskLibOutput.slice(before), ...logged.args.map((a) => String(a[0]))].join('\n');
      if (c.said !== undefined) assert.match(said, c.said);
      else assert.doesNotMatch(said, /beside the build failed|were left out/);
      assert.doesNotMatch(said, /##vso\[task\.issue/, 'no warning');
    });
});
