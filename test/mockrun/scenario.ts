// One generic MockTestRunner scenario: the test that spawns it passes the inputs, agent variables,
// task variables and docker answers as JSON in DBXC_MOCK_SCENARIO, so each case is one table row.
import * as path from 'path';
import { TaskMockRunner } from 'azure-pipelines-task-lib/mock-run';
import { DOCKER, type Scenario } from './types';
const envKey = (name: string): string => name.replace(/[.\s]/g, '_').toUpperCase();

const raw = process.env.DBXC_MOCK_SCENARIO;
if (raw === undefined) throw new Error('DBXC_MOCK_SCENARIO is not set');
const scenario = JSON.parse(raw) as Scenario;

const taskSrc = path.join(__dirname, '..', '..', 'tasks', 'DockerBuildxCacheV1', 'src');
const tmr = new TaskMockRunner(path.join(taskSrc, scenario.step === 'main' ? 'main.js' : 'post.js'));
for (const [name, value] of Object.entries(scenario.inputs ?? {})) tmr.setInput(name, value);
for (const [name, value] of Object.entries(scenario.variables ?? {})) process.env[envKey(name)] = value;
for (const [name, value] of Object.entries(scenario.taskVariables ?? {})) process.env[`VSTS_TASKVARIABLE_${envKey(name)}`] = value;
tmr.setAnswers({ which: { docker: DOCKER }, checkPath: { [DOCKER]: true }, exec: scenario.exec ?? {} });
tmr.run();
