import { warn } from './agent';
import { runPost } from './post-step';

runPost().catch((err: unknown) => {
  warn(err instanceof Error ? err.message : String(err));
});
