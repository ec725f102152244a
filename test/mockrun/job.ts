import * as assert from 'assert/strict';
import * as path from 'path';
import { instanceIdOf } from '../../tasks/DockerBuildxCacheV1/src/task/agent';
import { defaultBuilderName } from '../../tasks/DockerBuildxCacheV1/src/docker/builder';
import { tempDir, writeTree } from '../helpers';
import { resolveKey, type ResolvedKey } from '../../tasks/DockerBuildxCacheV1/src/key/resolve';
import type { CacheStore } from '../../tasks/DockerBuildxCacheV1/src/store/types';
import { cacheFolder, type Blob } from '../oci-fixture';
import type { MockRun } from './harness';
import { DOCKER, type Scenario } from './types';

// What the mock-run tests of both steps share: the job, its folders and variables, the mocked docker's
// answers, and the command lines the task must run.

export const JOB = '2f9a7c1e-0000-4000-8000-000000000001';
export const TASK = '7d1b5e3a-0000-4000-8000-000000000002';
export const ID = instanceIdOf(JOB, TASK);
export const BUILDER = defaultBuilderName(JOB, 'agent-1');
export const ok = { code: 0, stdout: '' };
/** What the preflight runs before the builder, as the log shows it: one docker info, whatever the driver. */
export const PREFLIGHT = [`${DOCKER} info --format '{{json .}}'`];
/** The answer to the preflight's docker info: an engine, its image store, and the CLI's buildx plugin (none when `buildx` is empty). */
export const preflightAnswers = (
  buildx = '0.19.2',
  store = 'io.containerd.snapshotter.v1',
  /** The engine's host name (`Name`): this machine's for an engine on it; none by default. */
  engineName?: string,
): Record<string, { code: number; stdout?: string; stderr?: string }> => ({
  [`${DOCKER} info --format {{json .}}`]: {
    code: 0,
    stdout: JSON.stringify({
      ...(engineName === undefined ? {} : { Name: engineName }),
      ServerVersion: '26.1.5',
      DriverStatus: [['driver-type', store]],
      ClientInfo: { Version: '28.2.2', Plugins: buildx === '' ? [] : [{ Name: 'buildx', Version: `v${buildx}` }] },
    }),
  },
});
export const missing = { code: 1, stdout: '', stderr: 'ERROR: no builder found' };

/** ENDPOINT_* variables as the agent sets them for a service connection. */
export const endpoint = (
  id: string,
  scheme: string,
  params: Record<string, string>,
  data: Record<string, string> = {},
  url = 'https://registry.example/',
): Record<string, string> => ({
  [`ENDPOINT_URL_${id}`]: url,
  [`ENDPOINT_AUTH_SCHEME_${id}`]: scheme,
  ...Object.fromEntries(Object.entries(params).map(([k, v]) => [`ENDPOINT_AUTH_PARAMETER_${id}_${k.toUpperCase()}`, v])),
  ...Object.fromEntries(Object.entries(data).map(([k, v]) => [`ENDPOINT_DATA_${id}_${k.toUpperCase()}`, v])),
});

export let ws: string;
export let agentTemp: string;
export let cacheDir: string;
export let metadata: string;
export let agentWork: string;

export function variables(): Record<string, string> {
  return {
    'System.DefaultWorkingDirectory': ws,
    'Agent.TempDirectory': agentTemp,
    'Pipeline.Workspace': path.dirname(cacheDir),
    'System.JobId': JOB,
    'System.TaskInstanceId': TASK,
    // A Microsoft-hosted agent, whose builders live for the job (builder.test.ts has self-hosted ones).
    'Agent.Name': 'agent-1',
    'Agent.CloudId': 'c3d2d4d6-6a6e-4c7a-9f2a-0b1a2c3d4e5f',
    'Agent.WorkFolder': agentWork,
    'Agent.OS': 'Linux',
    'Build.SourceBranch': 'refs/heads/main',
  };
}

/** What an earlier job keyed `buildx | deps.lock` saved in the store: a two-layer cache. */
export async function seedStore(store: CacheStore): Promise<{ key: ResolvedKey; blobs: Blob[] }> {
  const key = await resolveKey('buildx | deps.lock', ws);
  const { dir, layout } = cacheFolder(tempDir(), 'source', ['deps layer', 'app layer']);
  await store.save({ cacheDir: dir, key: key.text, segments: key.values, scope: 'refs/heads/main', now: new Date() });
  return { key, blobs: layout.blobs };
}

export function main(inputs: Record<string, string>, exec: Record<string, { code: number; stdout?: string; stderr?: string }>): Scenario {
  return {
    step: 'main',
    inputs: { dockerfile: 'Dockerfile', buildContext: '.', ...inputs },
    variables: variables(),
    exec: { ...preflightAnswers(), ...exec },
  };
}

/** The `buildx build` command line the task must run, from its variable parts. */
export function buildLine(builder: string, middle: string): string {
  return `${DOCKER} buildx build --builder ${builder} --progress plain --file ${ws}/Dockerfile ${middle} --metadata-file ${metadata} ${ws}`;
}

/** A builder of the job's own: created and started at once, without a look for it first. */
export const containerBuilder = {
  [`${DOCKER} buildx create --bootstrap --name ${BUILDER} --driver docker-container`]: ok,
};

/** The warnings every mock build causes: a mock build writes neither cache nor metadata. */
export const MOCK_BUILD_WARNINGS = [/^loc_mock_WarnCacheCommitFailed /, /^loc_mock_WarnMetadataUnreadable /];

export function assertWarnings(run: MockRun, expected: RegExp[]): void {
  assert.equal(run.warnings.length, expected.length, `warnings: ${JSON.stringify(run.warnings)}`);
  expected.forEach((re, i) => assert.match(run.warnings[i] ?? '', re));
}

/** A fresh job for a main-step test: its workspace (a Dockerfile, a buildkitd.toml, a lock file), agent folders and cache folder. */
export function freshJob(): void {
  ws = tempDir();
  agentTemp = tempDir();
  cacheDir = path.join(tempDir(), '.buildx-cache');
  metadata = path.join(agentTemp, `docker-buildx-cache-${ID}`, 'metadata.json');
  agentWork = tempDir();
  writeTree(ws, { Dockerfile: 'FROM scratch\n', 'buildkitd.toml': '[worker.oci]\n', 'deps.lock': 'left-pad\n' });
}

/** A fresh job for a post-step test: its workspace and agent temp folder. */
export function freshPostJob(): void {
  ws = tempDir();
  agentTemp = tempDir();
}
