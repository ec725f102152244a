import * as assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as semver from 'semver';

const root = path.resolve(__dirname, '..', '..', '..');
const taskDir = path.join(root, 'tasks', 'DockerBuildxCacheV1');

interface Input {
  name: string;
  type: string;
  label: string;
  defaultValue?: string;
  required?: boolean;
  aliases?: string[];
  groupName?: string;
  helpMarkDown?: string;
  visibleRule?: string;
  options?: Record<string, string>;
  properties?: Record<string, string>;
}
interface TaskJson {
  name: string;
  helpUrl: string;
  helpMarkDown: string;
  friendlyName: string;
  category: string;
  version: { Major: number; Minor: number; Patch: number };
  minimumAgentVersion: string;
  instanceNameFormat: string;
  groups: { name: string; displayName: string; isExpanded?: boolean }[];
  inputs: Input[];
  outputVariables: { name: string }[];
  execution: Record<string, { target: string }>;
  postjobexecution: Record<string, { target: string }>;
  messages: Record<string, string>;
}

const task = JSON.parse(fs.readFileSync(path.join(taskDir, 'task.json'), 'utf8')) as TaskJson;
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'vss-extension.json'), 'utf8')) as Record<string, unknown>;
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };

/** The public contract (shared/task-contract.md) for the inputs this version implements: name, type, default. */
const CONTRACT: [string, string, string][] = [
  ['dockerfile', 'filePath', 'Dockerfile'],
  ['buildContext', 'string', '.'],
  ['imageName', 'string', ''],
  ['tags', 'multiLine', ''],
  ['buildArgs', 'multiLine', ''],
  ['target', 'string', ''],
  ['platforms', 'string', ''],
  ['labels', 'multiLine', ''],
  ['secrets', 'multiLine', ''],
  ['ssh', 'multiLine', ''],
  ['output', 'pickList', 'docker'],
  ['outputPath', 'string', ''],
  ['outputs', 'multiLine', ''],
  ['containerRegistry', 'connectedService:dockerregistry', ''],
  ['cacheBackend', 'pickList', 'local'],
  ['cacheKey', 'string', ''],
  ['restoreKeys', 'multiLine', ''],
  ['cacheMode', 'pickList', 'max'],
  ['cacheCompression', 'pickList', 'gzip'],
  ['cacheDir', 'string', '$(Pipeline.Workspace)/.buildx-cache'],
  ['localStorePath', 'string', '$(Agent.WorkFolder)/_buildx_cache_store'],
  ['storageAuth', 'pickList', 'serviceConnection'],
  ['azureSubscription', 'connectedService:AzureRM', ''],
  ['storageAccountUrl', 'string', ''],
  ['storageContainer', 'string', 'buildx-cache'],
  ['storageConnectionString', 'string', ''],
  ['registryCacheRef', 'string', ''],
  ['cacheFrom', 'multiLine', ''],
  ['saveCache', 'pickList', 'onSuccess'],
  ['writeCache', 'boolean', 'true'],
  ['cacheScope', 'pickList', 'branch'],
  ['retentionDays', 'string', '7'],
  ['cacheHitVar', 'string', ''],
  ['failOnCacheError', 'boolean', 'false'],
  ['driver', 'pickList', 'auto'],
  ['builderName', 'string', ''],
  ['driverOptions', 'multiLine', ''],
  ['buildkitdFlags', 'string', ''],
  ['buildkitdConfig', 'filePath', ''],
  ['buildkitdConfigInline', 'multiLine', ''],
  ['endpoint', 'string', ''],
  ['removeBuilder', 'boolean', 'true'],
  ['builderLifetime', 'pickList', 'auto'],
  ['builderKeepStorage', 'string', '10GB'],
  ['buildxVersion', 'string', ''],
  ['buildxDownloadUrl', 'string', ''],
  ['buildContexts', 'multiLine', ''],
  ['annotations', 'multiLine', ''],
  ['provenance', 'string', ''],
  ['sbom', 'string', ''],
  ['addPipelineData', 'boolean', 'true'],
  ['noCache', 'boolean', 'false'],
  ['pull', 'boolean', 'false'],
  ['cacheTransport', 'pickList', 'auto'],
  ['additionalArguments', 'string', ''],
];
const PICK_OPTIONS: Record<string, string[]> = {
  output: ['docker', 'registry', 'oci', 'tar', 'cacheOnly', 'custom'],
  cacheBackend: ['local', 'azureBlob', 'directory', 'registry', 'none'],
  saveCache: ['onSuccess', 'always', 'afterBuild', 'never'],
  cacheScope: ['branch', 'shared'],
  storageAuth: ['serviceConnection', 'connectionString'],
  cacheMode: ['max', 'min'],
  cacheCompression: ['gzip', 'zstd', 'uncompressed'],
  driver: ['auto', 'docker-container', 'docker', 'kubernetes', 'remote'],
  builderLifetime: ['auto', 'job', 'agent'],
  cacheTransport: ['auto', 'direct', 'folder'],
};
const OUTPUT_VARIABLES = ['cacheHit', 'cacheKey', 'cacheRestoredKey', 'imageId', 'digest', 'metadataFile', 'builderName'];

describe('task.json: the public contract and the classic editor', () => {
  it('has the contract identity', () => {
    assert.equal(task.name, 'DockerBuildxCache');
    assert.equal(task.category, 'Build');
    assert.equal(task.version.Major, 1);
    assert.ok(task.friendlyName.length <= 40, task.friendlyName);
    assert.match(task.instanceNameFormat, /\$\(imageName\)/);
  });

  it('runs one bundled file per step on Node24 and Node20_1, with an agent that has Node20_1', () => {
    assert.deepEqual(Object.keys(task.execution).sort(), ['Node20_1', 'Node24']);
    assert.deepEqual(new Set(Object.values(task.execution).map((h) => h.target)), new Set(['dist/main.js']));
    assert.deepEqual(Object.keys(task.postjobexecution).sort(), ['Node20_1', 'Node24']);
    assert.deepEqual(new Set(Object.values(task.postjobexecution).map((h) => h.target)), new Set(['dist/post.js']));
    // Node20_1 came with agent 3.232.1; agents without the Node24 handler fall back to it.
    const [major = 0, minor = 0] = task.minimumAgentVersion.split('.').map(Number);
    assert.ok(major > 3 || (major === 3 && minor >= 232), task.minimumAgentVersion);
  });

  it('has exactly the contract inputs, each with its type and default', () => {
    assert.deepEqual(
      task.inputs.map((i) => [i.name, i.type, i.defaultValue ?? '']),
      CONTRACT,
    );
  });

  it('puts every input in a group and gives it help with an example', () => {
    assert.deepEqual(
      task.groups.map((g) => g.displayName),
      ['Build', 'Output', 'Cache', 'Builder', 'Advanced'],
    );
    const groups = new Set(task.groups.map((g) => g.name));
    for (const input of task.inputs) {
      assert.ok(input.groupName !== undefined && groups.has(input.groupName), `${input.name} has no group`);
      assert.match(input.helpMarkDown ?? '', /Example/, `${input.name} help has no example`);
      assert.ok(input.label.length > 0);
    }
  });

  it('offers each closed set as a pickList whose default is an option', () => {
    for (const input of task.inputs.filter((i) => i.type === 'pickList')) {
      assert.deepEqual(Object.keys(input.options ?? {}), PICK_OPTIONS[input.name], input.name);
      assert.ok(Object.keys(input.options ?? {}).includes(input.defaultValue ?? ''), input.name);
    }
  });

  it('has visibleRules that name real inputs and values', () => {
    const byName = new Map(task.inputs.map((i) => [i.name, i]));
    const rules = task.inputs.filter((i) => i.visibleRule !== undefined);
    assert.deepEqual(rules.map((i) => i.name).sort(), [
      'azureSubscription',
      'builderKeepStorage',
      'builderLifetime',
      'builderName',
      'buildkitdConfig',
      'buildkitdConfigInline',
      'buildkitdFlags',
      'cacheCompression',
      'cacheDir',
      'cacheHitVar',
      'cacheKey',
      'cacheMode',
      'cacheScope',
      'cacheTransport',
      'driverOptions',
      'endpoint',
      'failOnCacheError',
      'localStorePath',
      'outputPath',
      'outputs',
      'registryCacheRef',
      'removeBuilder',
      'restoreKeys',
      'retentionDays',
      'saveCache',
      'storageAccountUrl',
      'storageAuth',
      'storageConnectionString',
      'storageContainer',
      'writeCache',
    ]);
    for (const input of rules) {
      // The editor takes && or || in one rule, not both.
      assert.ok(
        !(input.visibleRule?.includes('&&') === true && input.visibleRule.includes('||')),
        `${input.name}: ${input.visibleRule ?? ''}`,
      );
      const clauses = (input.visibleRule ?? '').split(/\s*(?:&&|\|\|)\s*/);
      for (const clause of clauses) {
        const m = /^(\w+) (=|!=) (\S+)$/.exec(clause);
        assert.ok(m, `${input.name}: ${clause}`);
        const [, ref = '', , value = ''] = m;
        const target = byName.get(ref);
        assert.ok(target, `${input.name} refers to ${ref}`);
        assert.ok(Object.keys(target.options ?? {}).includes(value), `${input.name}: ${ref} has no value ${value}`);
      }
    }
  });

  // As Microsoft's own tasks: an input needed only for some choices is required and shown only for them.
  const requiredWhen: [string, string][] = [
    ['outputPath', 'output = oci || output = tar'],
    ['outputs', 'output = custom'],
    ['registryCacheRef', 'cacheBackend = registry'],
    ['storageAccountUrl', 'cacheBackend = azureBlob && storageAuth = serviceConnection'],
    ['azureSubscription', 'cacheBackend = azureBlob && storageAuth = serviceConnection'],
    ['storageConnectionString', 'cacheBackend = azureBlob && storageAuth = connectionString'],
    ['endpoint', 'driver = remote'],
  ];
  for (const [name, rule] of requiredWhen) {
    it(`makes ${name} required when it is shown: ${rule}`, () => {
      const input = task.inputs.find((i) => i.name === name);
      assert.deepEqual([input?.required, input?.visibleRule], [true, rule]);
    });
  }

  it('offers saveCache only with the stores, which honour every choice, and writeCache with the backends written during the build', () => {
    const rule = (name: string): string | undefined => task.inputs.find((i) => i.name === name)?.visibleRule;
    assert.equal(rule('saveCache'), 'cacheBackend = local || cacheBackend = azureBlob');
    assert.equal(rule('writeCache'), 'cacheBackend = directory || cacheBackend = registry');
  });

  it("takes Docker@2's names as aliases", () => {
    const aliases = Object.fromEntries(task.inputs.filter((i) => i.aliases !== undefined).map((i) => [i.name, i.aliases]));
    assert.deepEqual(aliases, { imageName: ['repository'], dockerfile: ['Dockerfile'], additionalArguments: ['arguments'] });
  });

  it('collapses the Builder and Advanced groups, and keeps the advanced build options there', () => {
    assert.deepEqual(
      task.groups.filter((g) => g.isExpanded === false).map((g) => g.name),
      ['builder', 'advanced'],
    );
    assert.deepEqual(
      task.inputs.filter((i) => i.groupName === 'advanced').map((i) => i.name),
      ['buildContexts', 'annotations', 'provenance', 'sbom', 'addPipelineData', 'noCache', 'pull', 'cacheTransport', 'additionalArguments'],
    );
  });

  it('has the classic editor check that retentionDays is a number (or a variable)', () => {
    assert.deepEqual(task.inputs.find((i) => i.name === 'retentionDays')?.properties, { isVariableOrNonNegativeNumber: 'true' });
  });

  it("leads to the extension's documentation: helpUrl and help link into the README of package.json's repository (scripts/links.mjs)", () => {
    const links = JSON.parse(execFileSync(process.execPath, [path.join(root, 'scripts', 'links.mjs')], { encoding: 'utf8' })) as Record<
      string,
      string
    >;
    assert.equal(task.helpUrl, links.readme);
    for (const link of [links.usage, links.inputs]) assert.ok(task.helpMarkDown.includes(`(${link ?? ''})`), link);
  });

  it('declares the output variables it sets', () => {
    assert.deepEqual(
      task.outputVariables.map((v) => v.name),
      OUTPUT_VARIABLES,
    );
  });

  it('has a message for every key the code uses, and no message the code does not use', () => {
    const used = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (file.endsWith('.ts')) for (const m of fs.readFileSync(file, 'utf8').matchAll(/\bloc\(\s*'(\w+)'/g)) used.add(m[1] ?? '');
      }
    };
    walk(path.join(taskDir, 'src'));
    assert.deepEqual(
      [...used].filter((k) => !(k in task.messages)),
      [],
      'keys without a message',
    );
    assert.deepEqual(
      Object.keys(task.messages).filter((k) => !used.has(k)),
      [],
      'messages no code uses',
    );
  });

  it('ships strings generated from task.json', () => {
    execFileSync(process.execPath, [path.join(root, 'scripts', 'strings.mjs'), taskDir, '--check']);
  });

  it('has one version in the extension, the task and package.json', () => {
    assert.equal(manifest.version, pkg.version);
    assert.equal(`${task.version.Major}.${task.version.Minor}.${task.version.Patch}`, pkg.version);
  });

  it("documents every input in the README's table of its group, with its type and default, and no input task.json lacks", () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const start = readme.indexOf('\n## Inputs\n');
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
    const documented: [string, string, string, string][] = [];
    let heading = '';
    for (const line of section.split('\n')) {
      heading = /^### (.+)$/.exec(line)?.[1] ?? heading;
      const row = /^\| `(\w+)` \| ([^|]+?) \| ?(`[^`]*`)? ?\|/.exec(line);
      if (row) documented.push([row[1] ?? '', row[2] ?? '', (row[3] ?? '').replace(/^`|`$/g, ''), heading]);
    }
    const group = new Map(task.groups.map((g) => [g.name, g.displayName]));
    const byName = (a: [string, ...string[]], b: [string, ...string[]]): number => a[0].localeCompare(b[0]);
    assert.deepEqual(
      documented.sort(byName),
      task.inputs
        .map((i): [string, string, string, string] => [i.name, i.type, i.defaultValue ?? '', group.get(i.groupName ?? '') ?? ''])
        .sort(byName),
    );
  });

  it('documents every output variable in the README', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    for (const output of task.outputVariables)
      assert.match(readme, new RegExp(`^\\| \`${output.name}\` \\|`, 'm'), `README lacks output ${output.name}`);
  });

  it('bundles only packages that support Node 20, which agents without the Node24 handler run', function () {
    // `npm ls` alone takes seconds on a busy machine: this checks the tree, not its speed.
    this.timeout(60_000);
    const dirs = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8' })
      .trim()
      .split('\n')
      .slice(1);
    assert.ok(dirs.length > 10, dirs.join('\n'));
    const unsupported = dirs.flatMap((dir) => {
      const { name, version, engines } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name: string;
        version: string;
        engines?: { node?: string };
      };
      const range = engines?.node;
      // Agents ship a recent Node 20 for the Node20_1 handler.
      return range === undefined || semver.satisfies('20.19.0', range, true) ? [] : [`${name}@${version} needs node ${range}`];
    });
    assert.deepEqual(unsupported, []);
  });

  it('is a private Azure Pipelines extension for Azure DevOps', () => {
    assert.equal(manifest.public, false);
    assert.deepEqual(manifest.targets, [{ id: 'Microsoft.VisualStudio.Services' }]);
    assert.deepEqual(manifest.categories, ['Azure Pipelines']);
    assert.equal(typeof manifest.publisher, 'string');
  });
});
