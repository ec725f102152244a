/** Cache@2's scopes: where a job may read entries from, in order, and the one it writes to. */
export interface ScopePlan {
  readonly read: readonly string[];
  /** Undefined when the job must not write, as for a pull request from a fork. */
  readonly write?: string;
}

export interface ScopeVariables {
  /** Build.SourceBranch: refs/heads/…, refs/tags/…, or refs/pull/N/merge for a pull request. */
  readonly sourceBranch?: string;
  /** System.PullRequest.TargetBranch. */
  readonly targetBranch?: string;
  /** System.PullRequest.IsFork. */
  readonly isFork?: boolean;
  /** The repository's default branch when the pipeline names it; else main and master are read. */
  readonly defaultBranch?: string;
}

export const SHARED_SCOPE = 'shared';
export const LOCAL_SCOPE = 'local';

const ref = (branch: string): string => (branch.startsWith('refs/') ? branch : `refs/heads/${branch}`);

export function scopePlan(mode: 'branch' | 'shared', vars: ScopeVariables): ScopePlan {
  if (mode === 'shared') return vars.isFork === true ? { read: [SHARED_SCOPE] } : { read: [SHARED_SCOPE], write: SHARED_SCOPE };
  const own = vars.sourceBranch !== undefined ? ref(vars.sourceBranch) : LOCAL_SCOPE;
  const defaults = vars.defaultBranch !== undefined ? [ref(vars.defaultBranch)] : ['refs/heads/main', 'refs/heads/master'];
  const read = [...new Set([own, ...(vars.targetBranch !== undefined ? [ref(vars.targetBranch)] : []), ...defaults])];
  return vars.isFork === true ? { read } : { read, write: own };
}
