import * as fs from 'fs';
import { info, phase, uploadSummary, variable, warn } from './task/agent';
import { pruneBuilder, removeBuilder } from './docker/builder';
import { buffered, Docker, errorTail, type DockerCli, type RunResult } from './docker/cli';
import { removeLeftovers } from './docker/deliver';
import { Background } from './util/background';
import { endDirectUpload, saveDirectToStore, saveToStore } from './cache/save';
import { loadMessages, loc } from './task/messages';
import { loadState, type PostState } from './job';
import { renderSummary, summaryOfSave, type SummaryData } from './summary';

/** Cache@2 saves after a job that succeeded; SucceededWithIssues counts, as in `succeeded()`. */
const SUCCEEDED = new Set(['succeeded', 'succeededwithissues']);

/**
 * The post-job step: saves the cache when the job asks for it, uploads the summary, and removes
 * what the main step made for this job. Cleanup never fails the job; only a save failure with
 * `failOnCacheError` does.
 */
export async function runPost(docker?: DockerCli): Promise<void> {
  loadMessages();
  const state = loadState();
  if (state === undefined) {
    info(loc('PostNothingToDo'));
    return;
  }
  // The builder's removal or prune needs nothing that the save does, so it runs beside the save; its log follows the save's.
  const removal = startRemoval(state, docker);
  const prune = startPrune(state, docker);
  const leftovers = startLeftovers(state, docker);
  let summary = state.summary;
  let error: Error | undefined;
  if (state.save !== undefined) {
    const saved = await saveAfterJob(state.save);
    error = saved.error;
    if (summary !== undefined)
      summary = {
        ...summary,
        ...saved.patch,
        phases: saved.ms === undefined ? summary.phases : [...summary.phases, [loc('PhaseSave'), saved.ms]],
      };
  }
  if (summary !== undefined) uploadSummary(renderSummary(summary), `Buildx cache ${summary.image ?? ''}`.trim());
  await cleanup(state, removal, prune);
  await reportLeftovers(state, leftovers);
  if (error !== undefined) throw error;
}

/** Saves when the job's status allows it. With failOnCacheError a failed save is returned as `error`, thrown after cleanup. */
async function saveAfterJob(job: NonNullable<PostState['save']>): Promise<{ patch: Partial<SummaryData>; ms?: number; error?: Error }> {
  const status = variable('Agent.JobStatus') ?? 'Succeeded';
  const direct = job.direct;
  if (job.when === 'onSuccess' && !SUCCEEDED.has(status.toLowerCase())) {
    info(loc('SaveSkippedJobStatus', status));
    if (direct !== undefined) await endDirectUpload(job, direct);
    return { patch: { saved: { status: 'skipped', reason: `the job's status is ${status}` } } };
  }
  const start = Date.now();
  const save = direct !== undefined ? () => saveDirectToStore(job, direct) : () => saveToStore(job);
  try {
    return { patch: summaryOfSave(await phase(loc('PhaseSave'), save)), ms: Date.now() - start };
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    return { patch: { saved: { status: 'failed', reason: error.message } }, ms: Date.now() - start, error };
  }
}

/** The docker the main step ran: with its job-private DOCKER_CONFIG, where the builders it made are known. */
function jobDocker(state: PostState, docker: DockerCli | undefined): DockerCli {
  return (
    docker ?? (state.dockerConfig !== undefined ? Docker.locate({ ...process.env, DOCKER_CONFIG: state.dockerConfig }) : Docker.locate())
  );
}

/** Docker work started beside the save; its log lines are kept until it is reported. */
interface Started<T = RunResult> {
  readonly lines: string[];
  readonly result: Background<T>;
}

function start<T>(state: PostState, docker: DockerCli | undefined, work: (docker: DockerCli) => Promise<T>): Started<T> {
  const lines: string[] = [];
  // Docker not found (or anything else thrown at once) fails this work when it is reported, not the step before the save.
  const result = Promise.resolve().then(() => work(buffered(jobDocker(state, docker), lines)));
  return { lines, result: new Background(result) };
}

/** Its result, once its log lines are shown. */
const reported = <T>(started: Started<T>): Promise<T> =>
  started.result.result().finally(() => {
    for (const line of started.lines) console.log(line);
  });

/** The prune of the builder the agent keeps, started now: it bounds BuildKit's state, which the save does not read. */
function startPrune(state: PostState, docker: DockerCli | undefined): Started | undefined {
  const kept = state.keepBuilder;
  const limit = kept?.keepStorage;
  if (kept === undefined || limit === undefined) return undefined;
  return start(state, docker, (d) => pruneBuilder(d, kept.name, limit));
}

/** A builder the agent keeps is never removed; its state is pruned to its limit, so that a long-lived agent does not fill its disk. */
async function keepBuilder(state: PostState, prune: Started | undefined): Promise<void> {
  const kept = state.keepBuilder;
  if (kept === undefined) return;
  const limit = kept.keepStorage;
  if (prune !== undefined && limit !== undefined) {
    try {
      await phase(
        loc('PhasePruneBuilder'),
        async () => {
          const result = await reported(prune);
          if (result.code !== 0) throw new Error(errorTail(result, 3));
        },
        () => loc('BuilderPruned', kept.name, limit),
      );
    } catch (err) {
      warn(loc('WarnBuilderPruneFailed', kept.name, limit, (err as Error).message));
    }
  }
  info(loc('BuilderKept', kept.name));
}

/** The removal, started beside the save, of what a main step stopped mid-build left in the engine (see PostState.engineRepository). */
function startLeftovers(state: PostState, docker: DockerCli | undefined): Started<{ removed: string[]; failed?: string }> | undefined {
  const repository = state.engineRepository;
  if (repository === undefined) return undefined;
  return start(state, docker, (d) => removeLeftovers(d, repository));
}

/** What the removal of leftovers did, its log after the save's: nothing of it fails or warns, the references only take a name. */
async function reportLeftovers(state: PostState, leftovers: ReturnType<typeof startLeftovers>): Promise<void> {
  if (leftovers === undefined) return;
  try {
    const done = await reported(leftovers);
    if (done.removed.length > 0) info(loc('EngineLeftoversRemoved', done.removed.join(', ')));
    if (done.failed !== undefined) info(loc('EngineLeftoversNotRemoved', done.failed, state.engineRepository));
  } catch (err) {
    info(loc('EngineLeftoversNotRemoved', (err as Error).message, state.engineRepository));
  }
}

function startRemoval(state: PostState, docker: DockerCli | undefined): Started | undefined {
  const name = state.removeBuilder;
  if (name === undefined || state.leaveBuilder === true) return undefined;
  return start(state, docker, (d) => removeBuilder(d, name));
}

async function cleanup(state: PostState, removal: Started | undefined, prune: Started | undefined): Promise<void> {
  await keepBuilder(state, prune);
  const name = state.removeBuilder;
  if (name !== undefined && state.leaveBuilder === true) info(loc('BuilderLeftToMachine', name));
  if (removal !== undefined && name !== undefined) {
    try {
      const result = await reported(removal);
      if (result.code !== 0) warn(loc('WarnBuilderRemoveFailed', name, errorTail(result, 3)));
      else info(loc('BuilderRemoved', name));
    } catch (err) {
      warn(loc('WarnBuilderRemoveFailed', name, (err as Error).message));
    }
  }
  for (const dir of state.cleanup) {
    await fs.promises.rm(dir, { recursive: true, force: true }).catch((err: unknown) => {
      warn(loc('WarnCleanupFailed', dir, (err as Error).message));
    });
  }
}
