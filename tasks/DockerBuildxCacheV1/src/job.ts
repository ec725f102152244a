import { getTaskState, setTaskState } from './task/agent';
import type { DirectSave, SaveJob } from './cache/save';
import type { SummaryData } from './summary';

/** What the main step hands the post-job step, as one JSON task variable. The post step recomputes nothing. */
export interface PostState {
  readonly version: 1;
  /** The builder to remove after the job, when this task created it and `removeBuilder` is true. */
  readonly removeBuilder?: string;
  /**
   * That builder goes with the machine, which is discarded after the job (docker/lifetime.ts
   * goesWithMachine): the post-job step leaves it rather than remove it.
   */
  readonly leaveBuilder?: boolean;
  /** The builder the agent keeps across jobs (builderLifetime `agent`): never removed, pruned to `keepStorage` after the job. */
  readonly keepBuilder?: { readonly name: string; readonly keepStorage?: string };
  /** Job-private folders to delete after the job, such as the one holding secret files. */
  readonly cleanup: readonly string[];
  /**
   * The registry facade's repository while the engine pulls from it (the prefetch, the built image):
   * set for the build, cleared once the main step removed the references it pulled. Still set after
   * the job (a main step stopped mid-build), the post-job step removes what is left under it.
   */
  readonly engineRepository?: string;
  /** The job-private DOCKER_CONFIG, when the job has one: builders created there are removed there. */
  readonly dockerConfig?: string;
  /** The save to do after the job, and when; `direct` when the export went through the registry facade. */
  readonly save?: SaveJob & { readonly when: 'onSuccess' | 'always'; readonly direct?: DirectSave };
  readonly summary?: SummaryData;
}

const KEY = 'DockerBuildxCache.State';

export function saveState(state: PostState): void {
  setTaskState(KEY, JSON.stringify(state));
}

export function loadState(): PostState | undefined {
  const raw = getTaskState(KEY);
  if (raw === undefined || raw === '') return undefined;
  const parsed = JSON.parse(raw) as Partial<PostState>;
  if (parsed.version !== 1) return undefined;
  return {
    version: 1,
    removeBuilder: parsed.removeBuilder,
    leaveBuilder: parsed.leaveBuilder === true ? true : undefined,
    keepBuilder: parsed.keepBuilder,
    cleanup: Array.isArray(parsed.cleanup) ? parsed.cleanup : [],
    engineRepository: parsed.engineRepository,
    dockerConfig: parsed.dockerConfig,
    save: parsed.save,
    summary: parsed.summary,
  };
}
