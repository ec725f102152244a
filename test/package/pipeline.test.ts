import * as assert from 'assert/strict';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { parseDocument } from 'yaml';

// What can be checked of azure-pipelines.yml without Azure Pipelines: that it is valid YAML of the
// shape the service reads, that what it runs exists, and where the Marketplace token may go.

const root = path.resolve(__dirname, '..', '..', '..');
const text = fs.readFileSync(path.join(root, 'azure-pipelines.yml'), 'utf8');
const scripts = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

interface Step {
  script?: string;
  task?: string;
  checkout?: string;
  download?: string;
  publish?: string;
  artifact?: string;
  displayName?: string;
  inputs?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  job?: string;
  deployment?: string;
  pool: { vmImage?: string };
  environment?: string;
  steps?: Step[];
  strategy?: { runOnce: { deploy: { steps: Step[] } } };
}
interface Stage {
  stage: string;
  dependsOn?: string;
  condition?: string;
  variables?: ({ group: string } | { name: string; value: string })[];
  jobs: Job[];
}
interface Pipeline {
  trigger: { branches: { include: string[] } };
  pr: { branches: { include: string[] } };
  variables: { name: string; value: string }[];
  stages: Stage[];
}

const SECRET = 'MarketplacePat';
const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true });
const pipeline = doc.toJS() as Pipeline;
const stage = (name: string): Stage => {
  const found = pipeline.stages.find((s) => s.stage === name);
  assert.ok(found, `stage ${name}`);
  return found;
};
const stepsOf = (job: Job): Step[] => job.steps ?? job.strategy?.runOnce.deploy.steps ?? [];
const allSteps = pipeline.stages.flatMap((s) => s.jobs.flatMap((j) => stepsOf(j).map((step) => ({ stage: s, job: j, step }))));

describe("the extension's pipeline (azure-pipelines.yml)", () => {
  it('is valid YAML without duplicate keys, of the shape Azure Pipelines reads', () => {
    assert.deepEqual(
      doc.errors.map((e) => e.message),
      [],
    );
    assert.deepEqual(
      doc.warnings.map((e) => e.message),
      [],
    );
    assert.deepEqual(pipeline.trigger.branches.include, ['main']);
    assert.deepEqual(
      pipeline.stages.map((s) => s.stage),
      ['Build', 'Publish'],
    );
    const kinds = ['script', 'task', 'checkout', 'download', 'publish'] as const;
    for (const { step } of allSteps) {
      assert.equal(kinds.filter((k) => step[k] !== undefined).length, 1, `one kind of step: ${JSON.stringify(step)}`);
      if (step.task !== undefined) assert.match(step.task, /^\w+@\d+$/);
    }
    for (const job of pipeline.stages.flatMap((s) => s.jobs)) assert.ok(job.pool.vmImage, 'every job names its pool');
  });

  it('runs only what exists: npm scripts in package.json, and files in the repository', () => {
    const commands = allSteps.flatMap(({ step }) => step.script ?? []).join('\n');
    const npmRuns = [...commands.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1] ?? '');
    assert.deepEqual(new Set(npmRuns), new Set(['set-version', 'package']));
    for (const name of npmRuns) assert.ok(scripts[name], `package.json has no script ${name}`);
    for (const m of commands.matchAll(/bash (\S+)/g)) assert.ok(fs.existsSync(path.join(root, m[1] ?? '')), `${m[1]} exists`);
    assert.match(fs.readFileSync(path.join(root, '.ci', 'run'), 'utf8'), /^npm test$/m, '.ci/run runs the tests');
    assert.ok(fs.existsSync(path.join(root, 'node_modules', '.bin', 'tfx')), 'tfx comes with npm ci');
  });

  it('builds, tests, sets the version and packages for this repository, then publishes the .vsix it made', () => {
    const build = stepsOf(stage('Build').jobs[0] ?? ({} as Job)).map((s) => s.script ?? s.publish ?? s.task ?? s.checkout ?? '');
    const at = (re: RegExp): number => build.findIndex((s) => re.test(s));
    const order = [
      /npm run set-version -- "patch=\$\(Build\.BuildId\)"/,
      /bash \.ci\/run/,
      /npm run package -- --publisher "\$\(publisher\)" --repository "\$\(Build\.Repository\.Uri\)" --output "\$\(Build\.ArtifactStagingDirectory\)"/,
      /^\$\(Build\.ArtifactStagingDirectory\)$/,
    ];
    const positions = order.map(at);
    assert.ok(
      positions.every((p) => p >= 0),
      `every step is there: ${JSON.stringify(build)}`,
    );
    assert.deepEqual(
      [...positions].sort((a, b) => a - b),
      positions,
      'version, test, package, keep: in that order',
    );
    const publish = stage('Publish');
    assert.equal(publish.dependsOn, 'Build');
    assert.match(publish.condition ?? '', /eq\(variables\['Build\.SourceBranch'\], 'refs\/heads\/main'\)/);
    assert.match(publish.condition ?? '', /ne\(variables\['Build\.Reason'\], 'PullRequest'\)/);
    const steps = stepsOf(publish.jobs[0] ?? ({} as Job));
    assert.ok(steps.some((s) => s.download === 'current' && s.artifact === 'vsix'));
    assert.ok(allSteps.some(({ step }) => step.publish !== undefined && step.artifact === 'vsix'));
    assert.match(
      steps.map((s) => s.script ?? '').join('\n'),
      /npx tfx extension publish --vsix "\$\{vsix\[0\]\}" --share-with \$\(shareWith\) --token "\$MARKETPLACE_PAT" --no-prompt/,
    );
  });

  it("keeps the Marketplace token a secret: from a variable group, only in the publish step's environment", () => {
    // Nowhere defined with a value: it comes from the variable group, where it is marked secret.
    assert.ok(!pipeline.variables.some((v) => v.name === SECRET));
    assert.deepEqual(stage('Publish').variables, [{ group: 'marketplace-publishing' }]);
    assert.ok(!(stage('Build').variables ?? []).some((v) => 'group' in v), 'the build stage, which pull requests run, has no group');
    // Every use of it, anywhere in the file (comments aside), is the one env mapping of one step.
    const uses = text.split('\n').filter((line) => line.includes(SECRET) && !line.trimStart().startsWith('#'));
    assert.deepEqual(
      uses.map((l) => l.trim()),
      [`MARKETPLACE_PAT: $(${SECRET})`],
    );
    const holders = allSteps.filter(({ step }) => Object.values(step.env ?? {}).some((v) => v.includes(SECRET)));
    assert.equal(holders.length, 1);
    const holder = holders[0]?.step;
    assert.ok(holder);
    assert.deepEqual(holder.env, { MARKETPLACE_PAT: `$(${SECRET})` });
    // The step reads it from its environment, quoted, and nothing else reads that variable.
    assert.deepEqual(
      [...(holder.script ?? '').matchAll(/\$\{?MARKETPLACE_PAT\b[^\s]*/g)].map((m) => m[0]),
      ['$MARKETPLACE_PAT"'],
    );
    assert.ok(!/set -x|xtrace/.test(holder.script ?? ''), 'no command tracing in the step that holds the token');
    for (const { step } of allSteps.filter(({ step }) => step !== holder)) {
      assert.ok(!JSON.stringify(step).includes('MARKETPLACE_PAT'), `only the publish step sees the token: ${JSON.stringify(step)}`);
    }
    assert.ok(!/\$\{\{[^}]*Pat|\$\[[^\]]*Pat/i.test(text), 'no template or runtime expression of the token');
  });

  it('sets versions that only go up: patch=N keeps major.minor (set-version, scripts/version.mjs)', () => {
    const cases: [string, string, string][] = [
      ['1.0.3', 'patch', '1.0.4'],
      ['1.0.3', 'minor', '1.1.0'],
      ['1.2.3', 'patch=4711', '1.2.4711'],
      ['1.2.3', 'patch=3', '1.2.3'],
      ['1.2.3', 'patch=2', 'Error: version 1.2.3: patch=2 would go back'],
      ['1.2.3', 'patch=x', 'Error: usage: node scripts/version.mjs patch | minor | patch=N | X.Y.Z (got "patch=x")'],
    ];
    const program = `import { nextVersion } from './scripts/version.mjs';
      for (const [current, request] of JSON.parse(process.argv[1])) {
        try { console.log(nextVersion(current, request)); } catch (err) { console.log(String(err)); }
      }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', program, JSON.stringify(cases)], { cwd: root, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      r.stdout.trim().split('\n'),
      cases.map((c) => c[2]),
    );
  });
});
