/**
 * The SDK's layers import only downwards: runtime <- operators <- report <- sdk <- examples.
 * Reads the import lines of every file under src/ (no dependency needed) and fails on an upward import or a cycle.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

/** Layers from the bottom; a file may import its own layer and those below it. */
const LAYERS = ['runtime', 'operators', 'report', 'sdk', 'examples'] as const;

/** Relative module specifiers of `import ... from`, `export ... from`, `import '...'` and `import('...')`. */
export function importSpecifiers(source: string): string[] {
  const found = source.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g);
  return [...found].map((match) => match[1]!);
}

/** The layer of a path relative to src/, e.g. `operators/alignFrames/warp.ts` -> `operators`. */
function layerOf(path: string): string {
  return path.split('/')[0]!;
}

/** Every upward import among `modules` (path relative to src/ -> its source text), as readable lines. */
export function upwardImports(modules: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  for (const [path, source] of modules) {
    const rank = LAYERS.indexOf(layerOf(path) as (typeof LAYERS)[number]);
    if (rank < 0) {
      problems.push(`${path}: in no layer (${LAYERS.join(', ')})`);
      continue;
    }
    for (const spec of importSpecifiers(source)) {
      const target = relative(SRC, resolve(SRC, dirname(path), spec));
      const targetRank = LAYERS.indexOf(layerOf(target) as (typeof LAYERS)[number]);
      if (targetRank < 0 || targetRank > rank) problems.push(`${path} imports ${target} (${layerOf(target)} is not below ${layerOf(path)})`);
    }
  }
  return problems;
}

/** One import cycle among `modules`, as a path list, or undefined. */
export function findCycle(modules: ReadonlyMap<string, string>): string[] | undefined {
  const edges = new Map<string, string[]>();
  for (const [path, source] of modules) {
    edges.set(path, importSpecifiers(source).map((spec) => relative(SRC, resolve(SRC, dirname(path), spec)).replace(/\.js$/, '.ts')));
  }
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (path: string): string[] | undefined => {
    if (state.get(path) === 'done') return undefined;
    if (state.get(path) === 'open') return [...stack.slice(stack.indexOf(path)), path];
    state.set(path, 'open');
    stack.push(path);
    for (const next of edges.get(path) ?? []) {
      const cycle = edges.has(next) ? visit(next) : undefined;
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(path, 'done');
    return undefined;
  };
  for (const path of edges.keys()) {
    const cycle = visit(path);
    if (cycle) return cycle;
  }
  return undefined;
}

function sourceModules(): Map<string, string> {
  const modules = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) modules.set(relative(SRC, path), readFileSync(path, 'utf8'));
    }
  };
  for (const layer of LAYERS) walk(join(SRC, layer));
  return modules;
}

test('no file under src/ imports a layer above its own', () => {
  const modules = sourceModules();
  assert.ok(modules.size > 40, `read ${modules.size} modules`);
  assert.equal(upwardImports(modules), []);
});

test('no import cycle under src/', () => {
  assert.is(findCycle(sourceModules()), undefined);
});

test('the check catches an upward import, a dynamic one and a cycle', () => {
  const modules = new Map([
    ['runtime/errors.ts', "import type { Pipeline } from '../sdk/pipeline.js';"],
    ['operators/a.ts', "const late = await import('../report/replay.js');\nimport { b } from './b.js';"],
    ['operators/b.ts', "export { a } from './a.js';"],
    ['viewer/viewer.ts', ''],
  ]);
  assert.equal(upwardImports(modules), [
    'runtime/errors.ts imports sdk/pipeline.js (sdk is not below runtime)',
    'operators/a.ts imports report/replay.js (report is not below operators)',
    'viewer/viewer.ts: in no layer (runtime, operators, report, sdk, examples)',
  ]);
  assert.equal(findCycle(modules), ['operators/a.ts', 'operators/b.ts', 'operators/a.ts']);
});

test.run();
