import { fail, reportStrayErrors } from './task/agent';
import { runMain } from './main-step';

reportStrayErrors('fail');
runMain().catch((err: unknown) => {
  fail(err instanceof Error ? err.message : String(err));
});
