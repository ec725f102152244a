import { warn } from '../task/agent';

/** Cache trouble that the user asked to fail the task (`failOnCacheError`). */
export class CacheError extends Error {
  override name = 'CacheError';
}

/** Cache trouble is a warning, and the build goes on without the cache, unless the user asked for an error. */
export function cacheTrouble(failOnError: boolean, message: string): void {
  if (failOnError) throw new CacheError(message);
  warn(message);
}
