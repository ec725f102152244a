import * as assert from 'assert/strict';
import * as sinon from 'sinon';
import {
  BOOTSTRAP_RETRY,
  defaultBuilderName,
  ensureBuilder,
  BuilderError,
  parsePlatforms,
  pruneBuilder,
  type BuilderSpec,
} from '../../tasks/DockerBuildxCacheV1/src/docker/builder';
import { errorTail, type DockerCli, type RunOptions, type RunResult } from '../../tasks/DockerBuildxCacheV1/src/docker/cli';

type Script = Record<string, RunResult | RunResult[]>;
const ok: RunResult = { code: 0, stdout: '', stderr: '' };
const missing: RunResult = { code: 1, stdout: '', stderr: 'ERROR: no builder "x" found' };

/** A docker CLI whose answers are scripted by command line; a list answers successive calls in turn. */
type RunStub = sinon.SinonStub<Parameters<DockerCli['run']>, ReturnType<DockerCli['run']>>;

function fakeDocker(script: Script): { docker: DockerCli; run: RunStub } {
  const calls = new Map<string, number>();
  const run: RunStub = sinon.stub<Parameters<DockerCli['run']>, ReturnType<DockerCli['run']>>().callsFake((args) => {
    const key = args.join(' ');
    const answer = script[key];
    if (answer === undefined) return Promise.reject(new Error(`unexpected docker ${key}`));
    const n = calls.get(key) ?? 0;
    calls.set(key, n + 1);
    return Promise.resolve(Array.isArray(answer) ? (answer[Math.min(n, answer.length - 1)] ?? ok) : answer);
  });
  return { docker: { run }, run };
}

const config = (extra: Partial<BuilderSpec> = {}): BuilderSpec => ({
  driver: 'docker-container',
  driverOptions: [],
  remove: true,
  lifetime: 'auto',
  ...extra,
});

describe('builder lifecycle', () => {
  it('creates and starts a builder that buildx says is not there', async () => {
    const { docker, run } = fakeDocker({
      'buildx inspect --bootstrap job-b': missing,
      'buildx create --bootstrap --name job-b --driver docker-container': ok,
    });
    const created = sinon.spy();
    assert.deepEqual(await ensureBuilder(docker, config(), 'job-b', created), { name: 'job-b', created: true });
    assert.ok(created.calledOnceWith('job-b'));
    assert.deepEqual(
      run.args.map((a) => a[0].join(' ')),
      ['buildx inspect --bootstrap job-b', 'buildx create --bootstrap --name job-b --driver docker-container'],
    );
  });

  it('the first bootstrap does not show buildx\'s "no builder found" (the builder is created then), and shows all else', async () => {
    const echoes: RunOptions['echo'][] = [];
    const docker: DockerCli = {
      run: (args, options) => {
        echoes.push(options?.echo);
        return Promise.resolve(args.includes('create') ? ok : echoes.length === 1 ? missing : ok);
      },
    };
    await ensureBuilder(docker, config(), 'job-b', () => undefined);
    const first = echoes[0];
    assert.equal(typeof first, 'function');
    if (typeof first !== 'function') return;
    assert.equal(first('ERROR: no builder "job-b" found'), false);
    assert.equal(first('Platforms: linux/amd64'), true);
    assert.equal(first('ERROR: failed to pull moby/buildkit'), true);
    assert.deepEqual(echoes.slice(1), [true], 'the create shows everything');
  });

  // A name unique to the job: created and started at once; looked for only when that fails.
  const CREATE = 'buildx create --bootstrap --name job-b --driver docker-container';
  const BOOT = 'buildx inspect --bootstrap job-b';
  const createFirst: [string, Script, string[], boolean | RegExp, boolean][] = [
    ['creates and starts it in one command', { [CREATE]: ok }, [CREATE], true, true],
    [
      'reuses it when it is there already (the job runs again), and leaves it',
      {
        [CREATE]: { code: 1, stdout: '', stderr: 'ERROR: existing instance for "job-b" but no append mode' },
        [BOOT]: { code: 0, stdout: 'Platforms: linux/amd64\n', stderr: '' },
      },
      [CREATE, BOOT],
      false,
      false,
    ],
    [
      "created but not started: an error, and the builder is still the job's to remove",
      {
        [CREATE]: { code: 1, stdout: '', stderr: 'ERROR: failed to pull moby/buildkit' },
        'buildx inspect job-b': ok,
      },
      [CREATE, 'buildx inspect job-b'],
      /create --bootstrap --name job-b failed with exit code 1: ERROR: failed to pull moby\/buildkit/,
      true,
    ],
    [
      'not created: an error, and nothing to remove',
      {
        [CREATE]: { code: 1, stdout: '', stderr: 'ERROR: failed to find driver "docker-container"' },
        'buildx inspect job-b': missing,
      },
      [CREATE, 'buildx inspect job-b'],
      /create --bootstrap --name job-b failed with exit code 1: ERROR: failed to find driver/,
      false,
    ],
  ];
  for (const [name, script, ran, outcome, removable] of createFirst) {
    it(`a builder name unique to the job: ${name}`, async () => {
      const { docker, run } = fakeDocker(script);
      const onCreated = sinon.spy();
      const built = ensureBuilder(docker, config(), 'job-b', onCreated, true);
      if (outcome instanceof RegExp) await assert.rejects(built, (e: Error) => e instanceof BuilderError && outcome.test(e.message));
      else assert.equal((await built).created, outcome);
      assert.equal(onCreated.lastCall.args[0] === 'job-b', removable, 'recorded for the post-job step to remove');
      assert.deepEqual(
        run.args.map((a) => a[0].join(' ')),
        ran,
      );
    });
  }

  it('a builder name unique to the job is recorded for removal before its create starts, so a job stopped meanwhile still removes it', async () => {
    const onCreated = sinon.spy();
    const recordedFirst: boolean[] = [];
    const docker: DockerCli = {
      run: (args) => {
        recordedFirst.push(onCreated.calledOnceWith('job-b'));
        assert.equal(args.join(' '), CREATE);
        return Promise.resolve(ok);
      },
    };
    await ensureBuilder(docker, config(), 'job-b', onCreated, true);
    assert.deepEqual(recordedFirst, [true]);
  });

  it('reuses an existing builder with the requested name and never claims it', async () => {
    const { docker, run } = fakeDocker({ 'buildx inspect --bootstrap shared': ok });
    const created = sinon.spy();
    assert.deepEqual(await ensureBuilder(docker, config({ name: 'shared' }), 'job-b', created), {
      name: 'shared',
      created: false,
      platforms: [],
    });
    assert.ok(created.notCalled);
    assert.deepEqual(
      run.args.map((a) => a[0].join(' ')),
      ['buildx inspect --bootstrap shared'],
      'one buildx call finds it, starts it and asks for its platforms',
    );
  });

  it('reuses a builder that another job created at the same moment', async () => {
    const { docker } = fakeDocker({
      'buildx inspect --bootstrap shared': [missing, ok],
      'buildx create --bootstrap --name shared --driver docker-container': {
        code: 1,
        stdout: '',
        stderr: 'ERROR: existing instance for "shared"',
      },
    });
    assert.deepEqual(await ensureBuilder(docker, config({ name: 'shared' }), 'job-b', () => undefined), {
      name: 'shared',
      created: false,
      platforms: [],
    });
  });

  it('fails with buildx own words when create fails', async () => {
    const { docker } = fakeDocker({
      'buildx inspect --bootstrap job-b': missing,
      'buildx inspect job-b': missing,
      'buildx create --bootstrap --name job-b --driver remote tcp://nowhere:1234': {
        code: 1,
        stdout: '',
        stderr: 'ERROR: failed to dial tcp://nowhere:1234',
      },
    });
    await assert.rejects(
      ensureBuilder(docker, config({ driver: 'remote', endpoint: 'tcp://nowhere:1234' }), 'job-b', () => undefined),
      (err: Error) => {
        assert.ok(err instanceof BuilderError);
        assert.match(err.message, /create --bootstrap --name job-b failed with exit code 1: ERROR: failed to dial/);
        return true;
      },
    );
  });

  it('a builder created but not started is still reported, so the post-job step removes it', async () => {
    const { docker } = fakeDocker({
      'buildx inspect --bootstrap job-b': missing,
      'buildx create --bootstrap --name job-b --driver docker-container': {
        code: 1,
        stdout: '',
        stderr: 'ERROR: failed to pull moby/buildkit',
      },
      'buildx inspect job-b': ok,
    });
    const created = sinon.spy();
    await assert.rejects(ensureBuilder(docker, config(), 'job-b', created), /create --bootstrap --name job-b failed/);
    assert.equal(created.lastCall.args[0], 'job-b');
  });

  it('two jobs starting one builder at once: the one whose bootstrap lost the race tries again and finds it started', async () => {
    const retry = { ...BOOTSTRAP_RETRY };
    BOOTSTRAP_RETRY.delayMs = 1;
    try {
      const { docker, run } = fakeDocker({
        'buildx create --bootstrap --name kept --driver docker-container': {
          code: 1,
          stdout: '',
          stderr: 'ERROR: existing instance for "kept" but no append mode, specify the node name to make changes for existing instances',
        },
        'buildx inspect --bootstrap kept': [
          missing,
          {
            code: 1,
            stdout: '',
            stderr:
              'ERROR: Error response from daemon: Conflict. The container name "/buildx_buildkit_kept0" is already in use by container "4f1c".',
          },
          { code: 0, stdout: 'Name: kept\nPlatforms: linux/amd64\n', stderr: '' },
        ],
      });
      const created = sinon.spy();
      assert.deepEqual(await ensureBuilder(docker, config(), 'kept', created), {
        name: 'kept',
        created: false,
        platforms: ['linux/amd64'],
      });
      assert.equal(created.lastCall.args[0], undefined, "a builder another job created is not this job's to remove");
      assert.equal(run.args.filter((a) => a[0].join(' ') === 'buildx inspect --bootstrap kept').length, 3);
    } finally {
      Object.assign(BOOTSTRAP_RETRY, retry);
    }
  });

  it('a bootstrap that fails for another reason is not tried again', async () => {
    const { docker, run } = fakeDocker({
      'buildx inspect --bootstrap kept': { code: 1, stdout: '', stderr: 'ERROR: failed to pull moby/buildkit' },
    });
    await assert.rejects(
      ensureBuilder(docker, config(), 'kept', () => undefined),
      /bootstrap kept failed/,
    );
    assert.equal(run.callCount, 1, 'neither tried again nor created: the builder is there');
  });

  it('prunes a kept builder to its limit, least recently used first, internal records included', async () => {
    const { docker, run } = fakeDocker({ 'buildx prune --builder kept --all --force --keep-storage 10GB': ok });
    assert.equal((await pruneBuilder(docker, 'kept', '10GB')).code, 0);
    assert.equal(run.callCount, 1);
  });

  it('docker driver with the default context: the engine is its builder, and nothing is asked', async () => {
    const { docker, run } = fakeDocker({});
    assert.deepEqual(await ensureBuilder(docker, config({ driver: 'docker' }), 'job-b', () => undefined), {
      name: 'default',
      created: false,
    });
    assert.equal(run.callCount, 0);
  });

  it('docker driver with a named context: looked at, and nothing created', async () => {
    const { docker, run } = fakeDocker({ 'buildx inspect remote-engine': { code: 0, stdout: 'Platforms: linux/amd64\n', stderr: '' } });
    assert.deepEqual(await ensureBuilder(docker, config({ driver: 'docker', endpoint: 'remote-engine' }), 'job-b', () => undefined), {
      name: 'remote-engine',
      created: false,
      platforms: ['linux/amd64'],
    });
    assert.equal(run.callCount, 1);
  });

  it('docker driver with a context that does not answer fails with the reason', async () => {
    const { docker } = fakeDocker({
      'buildx inspect ci-engine': { code: 1, stdout: '', stderr: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' },
    });
    await assert.rejects(
      ensureBuilder(docker, config({ driver: 'docker', endpoint: 'ci-engine' }), 'job-b', () => undefined),
      /Cannot connect to the Docker daemon/,
    );
  });
});

describe('builder platforms', () => {
  const cases: [string, string[]][] = [
    [
      'Name: default\nDriver: docker\nPlatforms:        linux/amd64, linux/amd64/v2, linux/amd64/v3\nLabels:',
      ['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v3'],
    ],
    ['Name: b\nPlatforms: \n', []],
    ['Name: b\nStatus: inactive\n', []],
  ];
  for (const [text, platforms] of cases) it(JSON.stringify(text.slice(0, 40)), () => assert.deepEqual(parsePlatforms(text), platforms));
});

describe('default builder names', () => {
  it('are valid buildx names, stable per job and agent, and differ between jobs and agents', () => {
    const a = defaultBuilderName('job-1', 'agent-1');
    assert.match(a, /^[a-zA-Z][a-zA-Z0-9._-]*$/);
    assert.equal(defaultBuilderName('job-1', 'agent-1'), a);
    assert.notEqual(defaultBuilderName('job-2', 'agent-1'), a);
    assert.notEqual(defaultBuilderName('job-1', 'agent-2'), a);
  });
  it('are random outside an agent', () =>
    assert.notEqual(defaultBuilderName(undefined, undefined), defaultBuilderName(undefined, undefined)));
});

describe("a failed command's last words", () => {
  const build =
    '#9 exporting cache\n#9 ERROR: write x: no space left on device\n  ERROR: failed to solve: no space left on device \n#10 DONE\n';
  const cases: [string, { stderr: string; stdout?: string }, number, string, RegExp?][] = [
    ['the last line of the error', { stderr: 'first\nsecond\nERROR: third\n', stdout: 'out' }, 1, 'ERROR: third'],
    ['the output when there is no error', { stderr: '', stdout: 'only\nout\n' }, 1, 'out'],
    ['the error only, when asked for it alone', { stderr: '' }, 1, ''],
    ['nothing when the command said nothing', { stderr: '  \n', stdout: '' }, 1, ''],
    ['several lines, joined', { stderr: 'a\nb\nc\nd', stdout: '' }, 3, 'b | c | d'],
    [
      "a build's last ERROR: line, trimmed, among its progress",
      { stderr: build },
      1,
      'ERROR: failed to solve: no space left on device',
      /^error:/i,
    ],
    ['nothing when no line matches', { stderr: '#10 DONE\n#9 ERROR: x\n' }, 1, '', /^error:/i],
  ];
  for (const [name, result, lines, expected, only] of cases) it(name, () => assert.equal(errorTail(result, lines, only), expected));
});
