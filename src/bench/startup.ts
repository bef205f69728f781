import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

// Startup cost of the CLI: how long `udp-tunnel --help` and friends take and how much memory they touch, next to a
// bare `node -e 0`. Each case runs as its own child process; nothing here asserts a time.

/** The CLI's bin script, resolved from dist/src/bench/. */
const CLI_BIN = fileURLToPath(new URL('../../../bin/udp-tunnel.js', import.meta.url));
/** GNU time prints the child's peak RSS; without it only wall time is measured. */
const GNU_TIME = '/usr/bin/time';

/** One command line to time: a label and the arguments given to node. */
export interface StartupCase {
  label: string;
  nodeArgs: string[];
}

/** What one case measured over its runs. */
export interface StartupResult {
  label: string;
  runs: number;
  /** Median wall time of the child, in milliseconds. */
  medianMs: number;
  /** Largest peak resident set size seen, in kilobytes, or null when /usr/bin/time is not available. */
  maxRssKb: number | null;
}

/** The cases `npm run bench:startup` measures; the baseline (`node -e 0`) comes first. */
export const STARTUP_CASES: readonly StartupCase[] = [
  { label: 'node -e 0', nodeArgs: ['-e', '0'] },
  { label: 'udp-tunnel --help', nodeArgs: [CLI_BIN, '--help'] },
  { label: 'udp-tunnel --version', nodeArgs: [CLI_BIN, '--version'] },
  { label: 'udp-tunnel connect --help', nodeArgs: [CLI_BIN, 'connect', '--help'] },
  { label: 'udp-tunnel serve --help-all', nodeArgs: [CLI_BIN, 'serve', '--help-all'] },
  { label: 'udp-tunnel bench --help', nodeArgs: [CLI_BIN, 'bench', '--help'] },
];

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Runs one case `runs` times and reports its median wall time and peak RSS. Throws if the child fails. */
export function measureStartup(c: StartupCase, runs: number): StartupResult {
  const withTime = existsSync(GNU_TIME);
  const walls: number[] = [];
  let maxRssKb: number | null = null;
  for (let i = 0; i < runs; i++) {
    // GNU time writes its line last on stderr, after anything the child wrote there.
    const [cmd, args] = withTime ? [GNU_TIME, ['-f', '%M', process.execPath, ...c.nodeArgs]] : [process.execPath, c.nodeArgs];
    const start = performance.now();
    const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
    walls.push(performance.now() - start);
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`${c.label} exited with ${r.status}: ${r.stderr.trim()}`);
    if (withTime) {
      const lines = r.stderr.trim().split('\n');
      const kb = Number(lines[lines.length - 1]);
      if (Number.isFinite(kb)) maxRssKb = Math.max(maxRssKb ?? 0, kb);
    }
  }
  return { label: c.label, runs, medianMs: median(walls), maxRssKb };
}
