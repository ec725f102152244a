import { fail } from './task/agent';
import { runMain } from './main-step';

runMain().catch((err: unknown) => {
  fail(err instanceof Error ? err.message : String(err));
});
