import * as assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

// The shape of the task's sources: the parts of src/ (each folder, and each file directly in src/)
// depend on each other in one direction only, and only task/ imports azure-pipelines-task-lib.

const root = path.resolve(__dirname, '..', '..', '..');
const src = path.join(root, 'tasks', 'DockerBuildxCacheV1', 'src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

/** Every module a source file names: imports, re-exports, `import()` and `require()`. */
function specifiers(file: string): string[] {
  return ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** The part of src/ a file belongs to: its folder (`docker/`), or itself when it sits in src/ (`build.ts`). */
function partOf(file: string): string {
  const [first, ...rest] = path.relative(src, file).split(path.sep);
  return rest.length > 0 ? `${first ?? ''}/` : (first ?? '');
}

/** Which parts each part imports, itself left out. */
function partGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of sources(src)) {
    const from = partOf(file);
    const to = graph.get(from) ?? new Set<string>();
    graph.set(from, to);
    for (const spec of specifiers(file).filter((s) => s.startsWith('.'))) {
      const target = path.resolve(path.dirname(file), spec);
      const part = partOf(fs.existsSync(`${target}.ts`) ? `${target}.ts` : path.join(target, 'index.ts'));
      if (part !== from) to.add(part);
    }
  }
  return graph;
}

/** A cycle in a graph, as the path that closes it (`a → b → a`), or undefined when there is none. */
function findCycle(graph: ReadonlyMap<string, ReadonlySet<string>>): string[] | undefined {
  const done = new Set<string>();
  const visit = (node: string, trail: string[]): string[] | undefined => {
    const open = trail.indexOf(node);
    if (open >= 0) return [...trail.slice(open), node];
    if (done.has(node)) return undefined;
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      const cycle = visit(next, [...trail, node]);
      if (cycle !== undefined) return cycle;
    }
    done.add(node);
    return undefined;
  };
  for (const node of [...graph.keys()].sort()) {
    const cycle = visit(node, []);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

describe('the import graph of src/', () => {
  const graphOf = (edges: Record<string, string[]>): Map<string, Set<string>> =>
    new Map(Object.entries(edges).map(([k, v]) => [k, new Set(v)]));
  const cases: [string, Record<string, string[]>, string[] | undefined][] = [
    ['no edges', { a: [] }, undefined],
    ['a chain', { a: ['b'], b: ['c'], c: [] }, undefined],
    ['a diamond', { a: ['b', 'c'], b: ['d'], c: ['d'], d: [] }, undefined],
    ['two parts that import each other', { a: ['b'], b: ['a'] }, ['a', 'b', 'a']],
    ['a cycle through three parts', { main: ['x'], x: ['y'], y: ['z'], z: ['x'] }, ['x', 'y', 'z', 'x']],
  ];
  for (const [name, edges, cycle] of cases)
    it(`finds the cycle in ${name}, or none`, () => assert.deepEqual(findCycle(graphOf(edges)), cycle));

  it('has no cycle between the folders and the top-level files', () => {
    const graph = partGraph();
    assert.ok(graph.has('task/') && graph.has('config/') && graph.has('main-step.ts'), [...graph.keys()].join(' '));
    const cycle = findCycle(graph);
    assert.equal(cycle, undefined, `import cycle: ${(cycle ?? []).join(' → ')}`);
  });

  it('imports azure-pipelines-task-lib only under task/', () => {
    const importers = sources(src).filter((file) => specifiers(file).some((s) => /^azure-pipelines-task-lib(?:\/|$)/.test(s)));
    assert.ok(importers.length > 0, 'task/ reads the agent through task-lib');
    const outside = importers.map((file) => path.relative(src, file)).filter((rel) => partOf(path.join(src, rel)) !== 'task/');
    assert.deepEqual(outside, []);
  });
});
