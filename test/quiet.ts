// Required first by every mocha suite (package.json's test scripts). azure-pipelines-task-lib writes
// ##vso[task.debug] lines when it loads and whenever code in the test process logs at debug level,
// which would fill the test log. The agent's own switch for that,
// DistributedTask.Tasks.Node.SkipDebugLogsWhenDebugModeOff, is read once as the library loads (after
// two lines of its own, which are dropped): it is set for that moment only, so the task processes
// that tests start still write their debug lines (tests read them, and a failing mock run prints
// them). SYSTEM_DEBUG=true brings them all back.
const KNOB = 'DISTRIBUTEDTASK_TASKS_NODE_SKIPDEBUGLOGSWHENDEBUGMODEOFF';
const previous = process.env[KNOB];
const write = process.stdout.write.bind(process.stdout);
process.env[KNOB] = 'true';
if (process.env.SYSTEM_DEBUG?.toLowerCase() !== 'true') process.stdout.write = (): boolean => true;
try {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('azure-pipelines-task-lib/task');
} finally {
  process.stdout.write = write;
  if (previous === undefined) delete process.env.DISTRIBUTEDTASK_TASKS_NODE_SKIPDEBUGLOGSWHENDEBUGMODEOFF;
  else process.env[KNOB] = previous;
}

export {};
