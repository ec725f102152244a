// One generic MockTestRunner scenario: the test that spawns it passes the inputs, agent variables,
// task variables and docker answers as JSON in DBXC_MOCK_SCENARIO, so each case is one table row.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { TaskMockRunner } from 'azure-pipelines-task-lib/mock-run';
import { agentInputs } from '../../scripts/agent';
import { DOCKER, type Scenario } from './types';
const envKey = (name: string): string => name.replace(/[.\s]/g, '_').toUpperCase();

const raw = process.env.DBXC_MOCK_SCENARIO;
if (raw === undefined) throw new Error('DBXC_MOCK_SCENARIO is not set');
const scenario = JSON.parse(raw) as Scenario;

const taskSrc = path.join(__dirname, '..', '..', 'tasks', 'DockerBuildxCacheV1', 'src');
const tmr = new TaskMockRunner(path.join(taskSrc, scenario.step === 'main' ? 'main.js' : 'post.js'));
// The inputs as the agent passes them: every default, macros expanded, file paths rooted.
for (const [name, value] of Object.entries(agentInputs(scenario.inputs ?? {}, scenario.variables ?? {}))) tmr.setInput(name, value);
for (const [name, value] of Object.entries(scenario.variables ?? {})) process.env[envKey(name)] = value;
for (const [name, value] of Object.entries(scenario.taskVariables ?? {})) process.env[`VSTS_TASKVARIABLE_${envKey(name)}`] = value;
for (const [name, value] of Object.entries(scenario.env ?? {})) process.env[name] = value;
serveEngineApi();
tmr.setAnswers({ which: { docker: DOCKER }, checkPath: { [DOCKER]: true }, exec: scenario.exec ?? {} });
const tools = scenario.tools;
if (tools !== undefined) {
  // The agent's tool cache, on a folder: each download is logged, so tests see what was fetched.
  const toolDir = (tool: string, version: string, arch = ''): string => path.join(tools.dir, tool, version, arch);
  tmr.registerMock('azure-pipelines-tool-lib/tool', {
    findLocalTool: (tool: string, version: string, arch?: string): string =>
      fs.existsSync(path.join(toolDir(tool, version, arch), '.complete')) ? toolDir(tool, version, arch) : '',
    downloadTool: (url: string): Promise<string> => {
      console.log(`[download] ${url}`);
      const content = tools.downloads[url];
      if (content === undefined) return Promise.reject(new Error('Unexpected HTTP response: 404'));
      const file = path.join(tools.dir, `.download-${crypto.randomUUID()}`);
      fs.writeFileSync(file, content);
      return Promise.resolve(file);
    },
    cacheFile: (source: string, target: string, tool: string, version: string, arch?: string): Promise<string> => {
      fs.mkdirSync(toolDir(tool, version, arch), { recursive: true });
      fs.copyFileSync(source, path.join(toolDir(tool, version, arch), target));
      fs.writeFileSync(path.join(toolDir(tool, version, arch), '.complete'), '');
      return Promise.resolve(toolDir(tool, version, arch));
    },
  });
}
tmr.run();

/**
 * The engine's API as the mocked `docker info` describes the engine (docker/engine-api.ts asks it
 * first): GET /info answers with that engine's part, on a socket that DOCKER_HOST names. Without an
 * engine in that answer, DOCKER_HOST names a socket nothing listens on, and the preflight decides, as
 * it does when the API does not answer. A scenario that sets DOCKER_HOST itself keeps it.
 */
function serveEngineApi(): void {
  if (scenario.env?.DOCKER_HOST !== undefined) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbxc-engine-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'docker.sock');
  process.env.DOCKER_HOST = `unix://${socket}`;
  const answer = scenario.exec?.[`${DOCKER} info --format {{json .}}`];
  const info = answer?.code === 0 && answer.stdout !== undefined ? (JSON.parse(answer.stdout) as Record<string, unknown>) : undefined;
  if (info === undefined || info.ServerVersion === '') return;
  const engine = Object.fromEntries(Object.entries(info).filter(([name]) => name !== 'ClientInfo'));
  const server = http.createServer((req, res) => {
    console.log(`[engine api] ${req.method ?? ''} ${req.url ?? ''}`);
    res.writeHead(req.url === '/info' ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(engine));
  });
  server.listen(socket);
  // The step ends when the task does, not when this server would.
  server.unref();
}
