import { fail, reportStrayErrors, warn } from './task/agent';
import { CacheError } from './cache/trouble';
import { runPost } from './post-step';

reportStrayErrors('warn');
runPost().catch((err: unknown) => {
  // Only cache trouble the user asked to fail on fails the post-job step; anything else is a warning.
  if (err instanceof CacheError) fail(err.message);
  else warn(err instanceof Error ? err.message : String(err));
});
