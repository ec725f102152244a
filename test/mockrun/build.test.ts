import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { cleanup, linesShowing, writeTree } from '../helpers';
import { runScenario } from './harness';
import { DOCKER } from './types';
import {
  agentTemp,
  assertWarnings,
  BUILDER,
  buildLine,
  cacheDir,
  freshJob,
  ID,
  main,
  metadata,
  missing,
  ok,
  PREFLIGHT,
  preflightAnswers,
  variables,
  ws,
} from './job';

describe('mock-run: the main step: the build', function () {
  this.timeout(30000);
  beforeEach(freshJob);
  afterEach(cleanup);

  it('passes every build input and each output kind', async () => {
    const outputs: [Record<string, string>, string][] = [
      [{ output: 'registry' }, '--push'],
      [{ output: 'oci', outputPath: 'out/image.tar' }, `--output type=oci,dest=${ws}/out/image.tar`],
      [{ output: 'tar', outputPath: 'out/fs.tar' }, `--output type=tar,dest=${ws}/out/fs.tar`],
      [{ output: 'cacheOnly' }, '--output type=cacheonly'],
      [
        { output: 'custom', outputs: 'type=local,dest=out\ntype=image,push=false' },
        '--output type=local,dest=out --output type=image,push=false',
      ],
    ];
    for (const [outputInputs, outputFlags] of outputs) {
      const inputs = {
        imageName: 'reg.example/team/app',
        driver: 'docker',
        cacheBackend: 'none',
        buildArgs: 'A=1\nB',
        target: 'runtime',
        platforms: 'linux/amd64,linux/arm64',
        labels: 'org.opencontainers.image.revision=abc',
        noCache: 'true',
        pull: 'true',
        additionalArguments: '--provenance=false --annotation "index:title=my app"',
        ...outputInputs,
      };
      const middle = `--tag reg.example/team/app:latest --build-arg A=1 --build-arg B --target runtime --platform linux/amd64,linux/arm64 --label org.opencontainers.image.revision=abc --no-cache --pull ${outputFlags}`;
      // additionalArguments come after --metadata-file, right before the context. The mock keys
      // answers on the arguments joined by spaces; the log shows them shell-quoted.
      const head = `${DOCKER} buildx build --builder default --progress plain --file ${ws}/Dockerfile ${middle} --metadata-file ${metadata}`;
      const run = await runScenario(
        main(inputs, {
          [`${DOCKER} buildx inspect default`]: ok,
          [`${head} --provenance=false --annotation index:title=my app ${ws}`]: ok,
        }),
      );
      assert.ok(run.succeeded, `${outputInputs.output ?? ''}: ${run.stdout}`);
      assert.deepEqual(run.commands, [...PREFLIGHT, `${head} --provenance=false --annotation 'index:title=my app' ${ws}`]);
    }
  });

  it('passes SSH forwards, named contexts, annotations, attestations and extra cache sources, in that order, with paths made absolute', async () => {
    writeTree(ws, { 'keys/deploy': 'PRIVATE KEY', 'assets/logo.svg': '<svg/>' });
    const inputs = {
      imageName: 'app',
      driver: 'docker',
      cacheBackend: 'none',
      ssh: 'default\ngithub=keys/deploy',
      buildContexts: 'assets=assets\nbase=docker-image://local/busybox:latest',
      annotations: 'index:org.opencontainers.image.title=app',
      provenance: 'mode=max',
      sbom: 'true',
      cacheFrom: 'type=registry,ref=registry.example/app:buildcache-main',
    };
    const build = buildLine(
      'default',
      `--tag app:latest --annotation index:org.opencontainers.image.title=app --ssh default --ssh github=${ws}/keys/deploy --build-context assets=${ws}/assets --build-context base=docker-image://local/busybox:latest --provenance=mode=max --sbom=true --cache-from type=registry,ref=registry.example/app:buildcache-main --load`,
    );
    const run = await runScenario({
      ...main(inputs, { [`${DOCKER} buildx inspect default`]: ok, [build]: ok }),
      env: { SSH_AUTH_SOCK: '/run/agent.sock' },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.ok(!run.stdout.includes('PRIVATE KEY'));
  });

  it('adds Docker@2 pipeline labels from the job, before the labels input, and none when addPipelineData is false', async () => {
    const pipeline = {
      'System.TeamFoundationCollectionUri': 'https://dev.azure.com/contoso/',
      'System.TeamProject': 'web',
      'System.HostType': 'build',
      'Build.Repository.Name': 'shop',
      'Build.SourceVersion': '0123abc',
      'Build.SourceBranchName': 'main',
      'Build.BuildNumber': '20240601.3',
    };
    const labels = [
      'com.azure.dev.image.system.teamfoundationcollectionuri=https://dev.azure.com/contoso/',
      'com.azure.dev.image.system.teamproject=web',
      'com.azure.dev.image.build.repository.name=shop',
      'com.azure.dev.image.build.sourceversion=0123abc',
      'com.azure.dev.image.build.sourcebranchname=main',
      'com.azure.dev.image.build.buildnumber=20240601.3',
    ];
    const withLabels = buildLine('default', `--tag app:latest ${labels.map((l) => `--label ${l}`).join(' ')} --label team=web --load`);
    const labelled = await runScenario({
      ...main(
        { imageName: 'app', driver: 'docker', cacheBackend: 'none', labels: 'team=web' },
        { [`${DOCKER} buildx inspect default`]: ok, [withLabels]: ok },
      ),
      variables: { ...variables(), ...pipeline },
    });
    assert.ok(labelled.succeeded, labelled.stdout);
    assert.equal(labelled.commands.at(-1), withLabels);

    const without = buildLine('default', '--tag app:latest --load');
    const plain = await runScenario({
      ...main(
        { imageName: 'app', driver: 'docker', cacheBackend: 'none', addPipelineData: 'false' },
        { [`${DOCKER} buildx inspect default`]: ok, [without]: ok },
      ),
      variables: { ...variables(), ...pipeline },
    });
    assert.ok(plain.succeeded, plain.stdout);
    assert.equal(plain.commands.at(-1), without);
  });

  it("takes Docker@2's input names: repository, Dockerfile and arguments", async () => {
    writeTree(ws, { 'docker/Dockerfile': 'FROM scratch\n' });
    const head = `${DOCKER} buildx build --builder default --progress plain --file ${ws}/docker/Dockerfile --tag reg.example/app:latest --load --metadata-file ${metadata}`;
    const run = await runScenario({
      step: 'main',
      inputs: {
        repository: 'reg.example/app',
        Dockerfile: 'docker/Dockerfile',
        arguments: '--iidfile /tmp/iid',
        driver: 'docker',
        cacheBackend: 'none',
      },
      variables: variables(),
      exec: { ...preflightAnswers(), [`${DOCKER} buildx inspect default`]: ok, [`${head} --iidfile /tmp/iid ${ws}`]: ok },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), `${head} --iidfile /tmp/iid ${ws}`);
  });

  it('passes secrets from the environment by name and from files by path, masking their values, which reach no command line', async () => {
    writeTree(ws, { '.netrc': 'machine git.example login ci password n3trc-passw0rd\n' });
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const build = buildLine(
      'default',
      `--tag app:latest --secret id=pw,src=${secretFile} --secret id=token,env=NPM_TOKEN --secret id=netrc,src=${ws}/.netrc --load`,
    );
    const run = await runScenario({
      ...main(
        { imageName: 'app', driver: 'docker', cacheBackend: 'none', secrets: 'pw=file:not-a-path\nenv:token=NPM_TOKEN\nfile:netrc=.netrc' },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
      env: { NPM_TOKEN: 'npm-t0ken-value' },
    });
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    for (const value of ['file:not-a-path', 'npm-t0ken-value', 'machine git.example login ci password n3trc-passw0rd']) {
      assert.match(run.stdout, new RegExp(`##vso\\[task\\.setsecret\\]${value}`));
      assert.deepEqual(linesShowing(run.stdout, value), [], value);
    }
  });

  it('writes an inline buildkitd.toml to a job-private file for buildx create --config', async () => {
    const configFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'buildkitd.toml');
    const create = `${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver docker-container --config ${configFile}`;
    const build = buildLine(BUILDER, '--tag app:latest --load');
    let written = '';
    const run = await runScenario(
      main(
        { imageName: 'app', cacheBackend: 'none', buildkitdConfigInline: '[worker.oci]\n  max-parallelism = 2' },
        {
          [`${DOCKER} buildx inspect ${BUILDER}`]: missing,
          [create]: ok,
          [build]: ok,
        },
      ),
    ).finally(() => {
      written = fs.existsSync(configFile) ? fs.readFileSync(configFile, 'utf8') : '';
    });
    assert.ok(run.succeeded, run.stdout);
    assert.ok(run.commands.includes(create), run.commands.join('\n'));
    assert.equal(written, '[worker.oci]\n  max-parallelism = 2\n');
  });

  it('passes secrets as job-private files and masks their values', async () => {
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const build = buildLine('default', `--tag app:latest --secret id=npmrc,src=${secretFile} --load`);
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheBackend: 'none', secrets: 'npmrc=s3cr3t-value' },
        { [`${DOCKER} buildx inspect default`]: ok, [build]: ok },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.equal(run.commands.at(-1), build);
    assert.match(run.stdout, /##vso\[task\.setsecret\]s3cr3t-value/);
    assert.equal(run.stdout.split('s3cr3t-value').length - 1, 1, 'the value appears only in the setsecret command');
    assert.ok(!fs.existsSync(secretFile), 'the secret file is deleted after the build');
  });

  it('fails when the build fails, with buildx last error, and deletes the secret file and the export', async () => {
    const secretFile = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'secrets', 'secret-0');
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const build = buildLine(
      'default',
      `--tag app:latest --secret id=tok,src=${secretFile} --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`,
    );
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir, secrets: 'tok=abc' },
        {
          [`${DOCKER} buildx inspect default`]: ok,
          [build]: {
            code: 1,
            stderr:
              '#6 [2/2] RUN false\n#6 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1\nERROR: failed to solve: process "/bin/sh -c false" did not complete successfully: exit code: 1',
          },
        },
      ),
    );
    assert.ok(run.runner.failed);
    assert.equal(run.errors.length, 1);
    assert.match(run.errors[0] ?? '', /^loc_mock_BuildFailed 1 ERROR: failed to solve: process "\/bin\/sh -c false"/);
    assert.ok(!fs.existsSync(secretFile));
    assert.ok(!fs.existsSync(exportDir));
    assert.ok(!fs.existsSync(cacheDir), 'a failed build never creates or replaces the cache folder');
  });

  it('builds again without cache export when only the cache export failed', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const withExport = buildLine('default', `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const withoutExport = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir },
        {
          [`${DOCKER} buildx inspect default`]: ok,
          [withExport]: {
            code: 1,
            stderr:
              '#9 exporting cache to client directory\n#9 ERROR: error writing layer blob: no space left on device\nERROR: failed to solve: error writing layer blob: no space left on device',
          },
          [withoutExport]: { code: 0, stderr: '#4 [2/2] RUN make\n#4 CACHED' },
        },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.deepEqual(run.commands.slice(-2), [withExport, withoutExport]);
    assertWarnings(run, [
      /^loc_mock_WarnCacheExportFailed ERROR: failed to solve: error writing layer blob: no space left on device/,
      /^loc_mock_WarnMetadataUnreadable /,
    ]);
  });

  it('treats an engine without cache export support as cache trouble, not a build failure', async () => {
    const exportDir = path.join(path.dirname(cacheDir), `.buildx-cache.export-${ID}`);
    const withExport = buildLine('default', `--tag app:latest --cache-to type=local,dest=${exportDir},mode=max,compression=gzip --load`);
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheDir },
        {
          [`${DOCKER} buildx inspect default`]: ok,
          [withExport]: {
            code: 1,
            stderr:
              'ERROR: Cache export is not supported for the docker driver.\nSwitch to a different driver, or turn on the containerd image store, and try again.',
          },
          [buildLine('default', '--tag app:latest --load')]: ok,
        },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.match(run.warnings[0] ?? '', /^loc_mock_WarnCacheExportFailed ERROR: Cache export is not supported/);
  });

  it('neutralises pipeline commands in build output', async () => {
    const build = buildLine('default', '--tag app:latest --load');
    const run = await runScenario(
      main(
        { imageName: 'app', driver: 'docker', cacheBackend: 'none' },
        {
          [`${DOCKER} buildx inspect default`]: ok,
          [build]: {
            code: 0,
            stdout: '##vso[task.setvariable variable=pwned]yes',
            stderr: '#5 0.1 ##[error]fake\n#5 0.2 ##vso[task.complete result=Failed]',
          },
        },
      ),
    );
    assert.ok(run.succeeded, run.stdout);
    assert.ok(!/##vso\[task\.setvariable variable=pwned/.test(run.stdout));
    assert.ok(!/##vso\[task\.complete result=Failed/.test(run.stdout));
    assert.match(run.stdout, /# #vso\[task\.setvariable variable=pwned\]yes/);
    assert.match(run.stdout, /#5 0\.1 # #\[error\]fake/);
  });
});
