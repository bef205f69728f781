import { parseArgs } from 'node:util';
import { STARTUP_CASES, measureStartup, type StartupResult } from '../bench/startup.js';

// Entry of `npm run bench:startup`: times the CLI's startup (--help, --version, connect --help) against `node -e 0`
// and prints a table with the ratios to that baseline.

const USAGE = `usage: npm run bench:startup -- [--runs N]

  --runs N   runs per case (default 20); the table shows the median wall time and the peak RSS`;

function render(results: readonly StartupResult[]): string {
  const base = results[0]!;
  const rows = results.map((r) => [
    r.label,
    `${r.medianMs.toFixed(1)}`,
    r.maxRssKb === null ? 'n/a' : `${(r.maxRssKb / 1024).toFixed(1)}`,
    `${(r.medianMs / base.medianMs).toFixed(2)}x`,
    r.maxRssKb === null || base.maxRssKb === null ? 'n/a' : `${(r.maxRssKb / base.maxRssKb).toFixed(2)}x`,
  ]);
  const header = ['case', 'median ms', 'max RSS MB', 'wall vs node', 'RSS vs node'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

function run(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { runs: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const runs = values.runs === undefined ? 20 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) {
    process.stderr.write(`bench:startup: --runs must be a whole number of at least 1, got ${values.runs}\n`);
    return 2;
  }
  const results: StartupResult[] = [];
  for (const c of STARTUP_CASES) {
    process.stderr.write(`${c.label} x${runs}\n`);
    results.push(measureStartup(c, runs));
  }
  process.stdout.write(`${render(results)}\n`);
  return 0;
}

try {
  process.exitCode = run(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`bench:startup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
