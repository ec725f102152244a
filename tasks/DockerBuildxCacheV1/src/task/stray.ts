/**
 * Errors that reach the process itself: an `error` event nobody listens to, or a rejection nobody
 * awaits. azure-pipelines-task-lib handles both when it is loaded: it marks the step Failed
 * ("Unhandled: …") and lets it run on, so a build that succeeded after a store's connection broke
 * somewhere nobody listened still failed its step.
 *
 * These handlers take the place of task-lib's. A connection that broke (the store's, or a client's
 * of the registry facade) belongs to work the step no longer waits for: a warning, and the step's
 * result stays what its own work makes it. Anything else is a bug: as task-lib did, the main step
 * is marked Failed, and runs on to its own end (its cleanup included); the post-job step only warns,
 * as for any error of its own that is not cache trouble.
 */

/** The codes of a connection that broke off, was refused or timed out: what a socket reports. */
const CONNECTION_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * The Azure SDK's error for a request it destroys when its abort signal fires (its NodeHttpClient).
 * When that request had already failed (the store's connection refused or broken), the error is
 * emitted a second time, on a request whose one-shot error listener is spent: a stray error. Seen
 * when the store is cut while a download's signal aborts (the watchdog, the facade closing).
 */
export function isSdkRequestAbort(err: unknown): boolean {
  return (
    err instanceof Error &&
    err.name === 'AbortError' &&
    err.message === 'The operation was aborted. Rejecting from abort signal callback while making request.'
  );
}

/** Whether a stray error is a connection's failure (see above), which a step outlives. */
export function isConnectionFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (isSdkRequestAbort(err)) return true;
  const code = (err as { code?: unknown }).code;
  // Node's HTTP client: a socket that closed before its response (code ECONNRESET).
  if (err.message === 'socket hang up') return true;
  // A socket's own failure names its system call (read, write, connect).
  const syscall = (err as { syscall?: unknown }).syscall;
  return typeof code === 'string' && CONNECTION_CODES.has(code) && typeof syscall === 'string';
}

export interface StrayHandlers {
  /** A connection's failure, which the step outlives. */
  readonly ignored: (err: Error) => void;
  /** Any other stray error. */
  readonly other: (err: Error) => void;
}

/** What to do with one stray error (`process` calls this for each). */
export function onStray(reason: unknown, handlers: StrayHandlers): void {
  const err = reason instanceof Error ? reason : new Error(String(reason));
  if (isConnectionFailure(err)) handlers.ignored(err);
  else handlers.other(err);
}

/**
 * Installs the handlers on this process, for uncaught exceptions and unhandled rejections alike,
 * in place of those already there (task-lib's, installed when it is loaded).
 */
export function catchStrayErrors(handlers: StrayHandlers, proc: NodeJS.EventEmitter = process): void {
  proc.removeAllListeners('uncaughtException');
  proc.removeAllListeners('unhandledRejection');
  proc.on('uncaughtException', (err: unknown) => onStray(err, handlers));
  proc.on('unhandledRejection', (reason: unknown) => onStray(reason, handlers));
}

/** The exit code of a process that wrote to a pipe nobody reads any more: 128 + SIGPIPE, as a shell reports it. */
export const OUTPUT_GONE_EXIT = 141;

/**
 * Ends the process once its own output is gone (the agent that read it ended, or closed the pipe):
 * nothing the step writes reaches anyone then, and every write fails again (EPIPE). Left to the
 * handlers above, that failure is a connection's, whose warning is written, fails, and is caught
 * again: the step spun a core for ever after its reader was gone. Node ignores SIGPIPE; this does
 * what a process that did not would: it ends.
 */
export function endWhenOutputGone(
  streams: readonly NodeJS.EventEmitter[] = [process.stdout, process.stderr],
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  for (const stream of streams) stream.on('error', () => exit(OUTPUT_GONE_EXIT));
}
