import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// The import rules of docs/architecture.md, checked on the TypeScript sources (no sockets, no build output):
// cli -> (bench, inspect) -> tunnel -> tunnel/codec, src/index.ts is the package entry, no import cycles, and only
// the CLI talks to the terminal.

// Compiled to dist/test/unit/: the repository root is three levels up.
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** The layers, from the top. A file belongs to the first whose test matches its path (relative, '/'-separated). */
type Layer = 'api' | 'cli' | 'bench' | 'inspect' | 'tunnel' | 'codec';

function layerOf(file: string): Layer | null {
  if (file === 'src/index.ts') return 'api';
  if (file.startsWith('src/cli/')) return 'cli';
  if (file.startsWith('src/bench/')) return 'bench';
  if (file.startsWith('src/inspect/')) return 'inspect';
  if (file.startsWith('src/tunnel/codec/')) return 'codec';
  if (file.startsWith('src/tunnel/')) return 'tunnel';
  return null;
}

/** Which layers a layer may import from. Downward only; bench and inspect are siblings that never meet. */
const MAY_IMPORT: Record<Layer, readonly Layer[]> = {
  api: ['inspect', 'tunnel', 'codec'],
  cli: ['cli', 'bench', 'inspect', 'tunnel', 'codec'],
  bench: ['bench', 'tunnel', 'codec'],
  inspect: ['inspect', 'tunnel', 'codec'],
  tunnel: ['tunnel', 'codec'],
  codec: ['codec'],
};

/** The one tunnel module the codec may use besides itself: its errors carry stable codes. */
const CODEC_MAY_ALSO_IMPORT = new Set(['src/tunnel/errors.ts']);
/** The only packages the codec may import: it is pure (Buffers in, values out). */
const CODEC_PACKAGES = new Set(['node:buffer']);
/** Terminal libraries: only src/cli may use them. */
const CLI_PACKAGES = new Set(['yargs', 'chalk', 'ora', 'cli-table3']);

/** One module reference found in a source file. */
interface ModuleRef {
  specifier: string;
  line: number;
}

/** What the checker found wrong. Empty means the rules hold. */
interface Report {
  violations: string[];
  cycles: string[][];
}

function lineOf(sf: ts.SourceFile, node: ts.Node): number {
  return sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
}

/**
 * Every module a file names: `import ... from`, `export ... from`, side-effect imports, `import x = require()`,
 * dynamic `import('...')` and `typeof import('...')`. Type-only imports count: a type cycle is still a cycle in the design.
 * A dynamic import whose specifier is not a string literal cannot be checked and is reported.
 */
function moduleRefs(file: string, text: string): { refs: ModuleRef[]; problems: string[] } {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const refs: ModuleRef[] = [];
  const problems: string[] = [];
  const add = (spec: ts.Expression | undefined, node: ts.Node): void => {
    if (spec !== undefined && ts.isStringLiteralLike(spec)) refs.push({ specifier: spec.text, line: lineOf(sf, node) });
    else problems.push(`${file}:${lineOf(sf, node)}: module specifier is not a string literal, so its layer cannot be checked`);
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) add(node.moduleSpecifier, node);
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined) add(node.moduleSpecifier, node);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression, node);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0], node);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal, node);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return { refs, problems };
}

/** Uses of the terminal or of the process's fate: `console.*`, `process.exit`/`exitCode`/`stdout`/`stderr`. */
function terminalUses(file: string, text: string): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression)) {
      const obj = node.expression.text;
      const prop = node.name.text;
      if (obj === 'console' || (obj === 'process' && ['exit', 'exitCode', 'stdout', 'stderr'].includes(prop))) {
        found.push(`${file}:${lineOf(sf, node)}: ${obj}.${prop}`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** The package a bare specifier names (`@scope/name/sub` -> `@scope/name`, `yargs/helpers` -> `yargs`). */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** A relative specifier as the source file it names: `./x.js` is compiled from `./x.ts`. */
function resolveRelative(from: string, specifier: string): string {
  const joined = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  return joined.replace(/\.js$/, '.ts');
}

/**
 * One cycle per strongly connected component (Tarjan), each as a path that starts and ends at the same file.
 * A file that imports itself is a cycle of one.
 */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const strongConnect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        strongConnect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) strongConnect(v);

  const cycles: string[][] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = [...component].sort()[0]!;
    const selfLoop = graph.get(start)?.includes(start) ?? false;
    if (component.length === 1 && !selfLoop) continue;
    if (selfLoop) {
      cycles.push([start, start]);
      continue;
    }
    // Shortest way back to the start inside the component (breadth first), so the report names a real path.
    const previous = new Map<string, string>();
    const queue = [start];
    let last: string | undefined;
    while (queue.length > 0 && last === undefined) {
      const v = queue.shift()!;
      for (const w of [...(graph.get(v) ?? [])].sort()) {
        if (!members.has(w)) continue;
        if (w === start) {
          last = v;
          break;
        }
        if (!previous.has(w)) {
          previous.set(w, v);
          queue.push(w);
        }
      }
    }
    const cyclePath = [start];
    for (let v = last!; v !== start; v = previous.get(v)!) cyclePath.splice(1, 0, v);
    cyclePath.push(start);
    cycles.push(cyclePath);
  }
  return cycles;
}

/** Checks a set of sources (repository-relative path -> text) against the layer rules. */
function checkArchitecture(sources: ReadonlyMap<string, string>): Report {
  const violations: string[] = [];
  const graph = new Map<string, string[]>();
  for (const [file, text] of [...sources].sort(([a], [b]) => a.localeCompare(b))) {
    const layer = layerOf(file);
    if (layer === null) {
      violations.push(`${file}: not in a known layer (src/index.ts, src/cli, src/bench, src/inspect, src/tunnel)`);
      continue;
    }
    const edges: string[] = [];
    graph.set(file, edges);
    const { refs, problems } = moduleRefs(file, text);
    for (const { specifier, line } of refs) {
      const where = `${file}:${line}`;
      if (specifier.startsWith('.')) {
        const target = resolveRelative(file, specifier);
        if (!sources.has(target)) {
          violations.push(`${where}: '${specifier}' does not name a source file (${target})`);
          continue;
        }
        edges.push(target);
        const targetLayer = layerOf(target);
        if (target === 'src/index.ts') {
          violations.push(`${where}: imports src/index.ts; the package entry is for users, import the module itself`);
        } else if (targetLayer === null) {
          // Reported once for the target itself.
        } else if (!MAY_IMPORT[layer].includes(targetLayer) && !(layer === 'codec' && CODEC_MAY_ALSO_IMPORT.has(target))) {
          violations.push(`${where}: ${layer} may not import ${targetLayer} ('${specifier}')`);
        }
      } else {
        const pkg = packageName(specifier);
        if (layer === 'codec' && !CODEC_PACKAGES.has(pkg)) {
          violations.push(`${where}: the codec imports only ${[...CODEC_PACKAGES].join(', ')}, not '${specifier}'`);
        } else if (layer !== 'cli' && CLI_PACKAGES.has(pkg)) {
          violations.push(`${where}: only src/cli may use '${pkg}'`);
        }
      }
    }
    violations.push(...problems);
    if (layer !== 'cli') {
      for (const use of terminalUses(file, text)) violations.push(`${use}: only src/cli writes to the terminal or ends the process`);
    }
  }
  return { violations, cycles: findCycles(graph) };
}

/** Every .ts file under src/, as repository-relative '/'-separated paths. */
function readSources(): Map<string, string> {
  const sources = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.isFile() && rel.endsWith('.ts') && !rel.endsWith('.d.ts')) sources.set(rel, readFileSync(path.join(ROOT, rel), 'utf8'));
    }
  };
  walk('src');
  return sources;
}

function formatReport(report: Report): string {
  return [...report.violations, ...report.cycles.map((c) => `import cycle: ${c.join(' -> ')}`)].join('\n');
}

describe('architecture: the sources', () => {
  it('import one way (cli -> bench/inspect -> tunnel -> codec), have no cycles, and only the CLI uses the terminal', () => {
    const sources = readSources();
    // Guards against checking an empty or wrong directory, which would pass vacuously.
    assert.ok(sources.has('src/index.ts') && sources.has('src/tunnel/codec/capsule-decoder.ts') && sources.size > 50);
    const report = checkArchitecture(sources);
    assert.equal(formatReport(report), '');
  });
});

describe('architecture: the checker', () => {
  const check = (files: Record<string, string>): Report => checkArchitecture(new Map(Object.entries(files)));

  it('accepts downward imports of every kind', () => {
    const report = check({
      'src/index.ts': "export * from './tunnel/a.js';\nexport { v } from './inspect/v.js';",
      'src/cli/main.ts': "import yargs from 'yargs';\nimport { b } from '../bench/b.js';\nconsole.log(b, yargs);",
      'src/bench/b.ts': "import type { A } from '../tunnel/a.js';\nexport const b = import('../tunnel/codec/c.js');",
      'src/inspect/v.ts': "import '../tunnel/a.js';\nexport const v: typeof import('../tunnel/codec/c.js') | undefined = undefined;",
      'src/tunnel/a.ts': "import { c } from './codec/c.js';\nexport type A = typeof c;",
      'src/tunnel/errors.ts': 'export class E extends Error {}',
      'src/tunnel/codec/c.ts': "import { Buffer } from 'node:buffer';\nimport { E } from '../errors.js';\nexport const c = [Buffer, E];",
    });
    assert.deepEqual(report, { violations: [], cycles: [] });
  });

  it('reports upward and sideways imports, static, dynamic, type-only and re-exports', () => {
    const report = check({
      'src/cli/main.ts': '',
      'src/bench/b.ts': "import type { V } from '../inspect/v.js';",
      'src/inspect/v.ts': "export type V = 1;\nexport { m } from '../cli/main.js';",
      'src/tunnel/a.ts': "const m = await import('../bench/b.js');",
      'src/tunnel/codec/c.ts': "import { x } from '../a.js';",
    });
    assert.deepEqual(report.violations, [
      "src/bench/b.ts:1: bench may not import inspect ('../inspect/v.js')",
      "src/inspect/v.ts:2: inspect may not import cli ('../cli/main.js')",
      "src/tunnel/a.ts:1: tunnel may not import bench ('../bench/b.js')",
      "src/tunnel/codec/c.ts:1: codec may not import tunnel ('../a.js')",
    ]);
  });

  it('reports CLI packages, the terminal and process.exit outside src/cli, and codec packages', () => {
    const report = check({
      'src/tunnel/a.ts': "import chalk from 'chalk';\nimport { hideBin } from 'yargs/helpers';\n// console.log in a comment is fine\nconsole.error(chalk);\nprocess.exit(1);\nprocess.stdout.write('x');",
      'src/tunnel/codec/c.ts': "import { randomBytes } from 'node:crypto';",
      'src/inspect/v.ts': "const s = 'process.exit(1)';",
    });
    assert.deepEqual(report.violations, [
      "src/tunnel/a.ts:1: only src/cli may use 'chalk'",
      "src/tunnel/a.ts:2: only src/cli may use 'yargs'",
      'src/tunnel/a.ts:4: console.error: only src/cli writes to the terminal or ends the process',
      'src/tunnel/a.ts:5: process.exit: only src/cli writes to the terminal or ends the process',
      'src/tunnel/a.ts:6: process.stdout: only src/cli writes to the terminal or ends the process',
      "src/tunnel/codec/c.ts:1: the codec imports only node:buffer, not 'node:crypto'",
    ]);
  });

  it('reports imports of the package entry, missing files and unchecked dynamic imports', () => {
    const report = check({
      'src/index.ts': '',
      'src/cli/main.ts': "import { x } from '../index.js';\nimport { y } from './gone.js';\nconst name = './main.js';\nawait import(name);",
    });
    assert.deepEqual(report.violations, [
      'src/cli/main.ts:1: imports src/index.ts; the package entry is for users, import the module itself',
      "src/cli/main.ts:2: './gone.js' does not name a source file (src/cli/gone.ts)",
      'src/cli/main.ts:4: module specifier is not a string literal, so its layer cannot be checked',
    ]);
  });

  it('reports each import cycle once, as a path back to where it started, type-only imports included', () => {
    const report = check({
      'src/bench/generator.ts': "import type { W } from './worker-messages.js';",
      'src/bench/worker-messages.ts': "import type { G } from './generator.js';",
      'src/cli/main.ts': "import './commands/a.js';",
      'src/cli/commands/a.ts': "import './b.js';",
      'src/cli/commands/b.ts': "import '../main.js';\nimport './b.js';",
      'src/tunnel/self.ts': "export * from './self.js';",
    });
    assert.deepEqual(report.violations, []);
    assert.deepEqual(
      report.cycles.map((c) => c.join(' -> ')).sort(),
      [
        'src/bench/generator.ts -> src/bench/worker-messages.ts -> src/bench/generator.ts',
        'src/cli/commands/a.ts -> src/cli/commands/b.ts -> src/cli/main.ts -> src/cli/commands/a.ts',
        'src/tunnel/self.ts -> src/tunnel/self.ts',
      ],
    );
    assert.match(formatReport(report), /^import cycle: src\/bench\/generator\.ts -> /m);
  });
});
