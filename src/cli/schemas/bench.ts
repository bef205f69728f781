import { BENCH_DEFAULTS, DEFAULT_BENCH_INFLIGHT, MAX_IDLE_SESSIONS, MAX_INFLIGHT, MAX_RATE, MAX_RUNS, MAX_SESSIONS } from '../../bench/defaults.js';
import { BENCH_MODES } from '../../bench/modes.js';
import { showDuration, type CommandSchema, type OptionSpec, type OptionValues } from '../options/spec.js';
import { OUTPUT_GROUP, OUTPUT_OPTIONS } from './common.js';

const LOAD = 'Load';
const TUNNEL = 'What is measured';
const EXTERNAL = 'An external proxy';
const REPORT = 'Report';

/** `udp-tunnel bench`'s options. */
export const BENCH_OPTIONS = [
  { name: 'size', kind: 'int', value: 'BYTES', min: 32, max: 65507, default: BENCH_DEFAULTS.size, group: LOAD, describe: 'UDP payload bytes per datagram' },
  {
    name: 'sessions',
    kind: 'int',
    value: 'N',
    min: 1,
    max: MAX_SESSIONS,
    default: BENCH_DEFAULTS.sessions,
    group: LOAD,
    describe: 'Local peers, each its own tunnel session',
    details:
      'Each is a socket of its own (a distinct source port). With --mode bind: remote peers of ONE bound tunnel, each with its own ' +
      'compressed context (a tunnel holds 255; each run brings new peers, kept until connect\'s idle timeout).',
  },
  {
    name: 'inflight',
    kind: 'int',
    value: 'N',
    min: 1,
    max: MAX_INFLIGHT,
    group: LOAD,
    describe: `Closed loop: datagrams in flight per session (default ${DEFAULT_BENCH_INFLIGHT})`,
  },
  {
    name: 'rate',
    kind: 'number',
    value: 'N',
    min: 1,
    max: MAX_RATE,
    group: LOAD,
    describe: 'Open loop: datagrams/s in total, latency from the scheduled time',
  },
  { name: 'duration', kind: 'duration', min: 1, default: showDuration(BENCH_DEFAULTS.durationMs), group: LOAD, describe: 'Measured time of each path in each run' },
  { name: 'warmup', kind: 'duration', default: showDuration(BENCH_DEFAULTS.warmupMs), group: LOAD, describe: 'Unmeasured sending before each measurement' },
  { name: 'runs', kind: 'int', value: 'N', min: 1, max: MAX_RUNS, default: BENCH_DEFAULTS.runs, group: LOAD, describe: 'Direct + tunnel pairs, summarized as mean ± stddev' },
  { name: 'drain', kind: 'duration', default: showDuration(BENCH_DEFAULTS.drainMs), group: LOAD, describe: 'Wait for late replies after sending stops', advanced: true },
  { name: 'timeout', kind: 'duration', min: 1, default: showDuration(BENCH_DEFAULTS.timeoutMs), group: LOAD, describe: 'Closed loop: a reply later than this frees its slot', advanced: true },
  {
    name: 'mode',
    kind: 'choice',
    choices: BENCH_MODES.map((m) => m.name),
    default: BENCH_DEFAULTS.mode,
    group: TUNNEL,
    describe: 'Tunnel transport, or bare-relay (a floor, not a tunnel)',
    details: BENCH_MODES.map((m) => `${m.name}: ${m.describe}.`).join(' '),
  },
  { name: 'tls', kind: 'boolean', group: TUNNEL, describe: "TLS on the bench's serve (a throwaway self-signed certificate)" },
  { name: 'direct', kind: 'boolean', default: true, group: TUNNEL, describe: 'Measure the direct path too (--no-direct: no ratios)' },
  {
    name: 'idle-sessions',
    kind: 'int',
    value: 'N',
    min: 0,
    max: MAX_IDLE_SESSIONS,
    default: BENCH_DEFAULTS.idleSessions,
    group: TUNNEL,
    describe: 'Then open this many idle sessions and report memory each (0 = skip)',
    details: 'With --mode bind: idle remote peers of one bound tunnel (a fresh serve and connect), at most 255, opened 32 at a time; memory per peer.',
  },
  {
    name: 'isolation',
    kind: 'choice',
    choices: ['process', 'worker'],
    default: BENCH_DEFAULTS.isolation,
    group: TUNNEL,
    describe: 'Run serve and connect as child processes or worker threads',
    advanced: true,
  },
  { name: 'host', kind: 'choice', choices: ['127.0.0.1', '::1'], default: BENCH_DEFAULTS.host, group: TUNNEL, describe: 'Loopback address for echo, serve and connect', advanced: true },
  { name: 'post-path', kind: 'string', value: 'PATH', group: TUNNEL, describe: `With --mode post: the request path (default ${BENCH_DEFAULTS.postPath})`, advanced: true },
  { name: 'node-option', kind: 'list', value: 'OPTION', group: TUNNEL, describe: 'Extra Node option for serve and connect, e.g. --node-option=--cpu-prof', advanced: true },
  { name: 'serve-workers', kind: 'int', value: 'N', min: 1, max: 256, default: 1, group: TUNNEL, describe: "Run the bench's serve with --workers N (process isolation)", advanced: true },
  { name: 'proxy', kind: 'string', value: 'URL', group: EXTERNAL, describe: 'Benchmark this proxy instead of a local serve (needs --target)', advanced: true },
  { name: 'target', kind: 'string', value: 'HOST:PORT', group: EXTERNAL, describe: 'With --proxy: a UDP echo the proxy can reach', advanced: true },
  { name: 'ca', kind: 'string', value: 'FILE', group: EXTERNAL, describe: 'With an https --proxy: PEM CAs to trust', advanced: true },
  { name: 'insecure', kind: 'boolean', group: EXTERNAL, describe: 'With an https --proxy: do not verify its certificate', advanced: true },
  { name: 'csv', kind: 'string', value: 'FILE|-', group: REPORT, describe: 'Also write the summary as CSV, a row per path (- = stdout)' },
  { name: 'markdown', kind: 'string', value: 'FILE|-', group: REPORT, describe: 'Also write the summary as a Markdown table (- = stdout)' },
  { name: 'fail-if', kind: 'string', value: 'CONDITIONS', group: REPORT, describe: "Exit 1 when a condition holds: 'p99>5ms,loss>0.1%,ratio<0.5'" },
  ...OUTPUT_OPTIONS,
] as const satisfies readonly OptionSpec[];

/** bench's parsed options. */
export type BenchOptions = OptionValues<typeof BENCH_OPTIONS>;

/** `udp-tunnel bench`. */
export const BENCH_SCHEMA: CommandSchema = {
  command: 'bench',
  usage: 'bench [options]',
  summary: 'Benchmark the tunnel on loopback: echo, serve and connect, the same load sent direct and through the tunnel, compared run by run.',
  groups: [LOAD, TUNNEL, EXTERNAL, REPORT, OUTPUT_GROUP],
  options: BENCH_OPTIONS,
  examples: [
    { cmd: 'udp-tunnel bench', what: `Default: ${BENCH_DEFAULTS.size}-byte datagrams, ${DEFAULT_BENCH_INFLIGHT} in flight, ${BENCH_DEFAULTS.runs} runs` },
    { cmd: 'udp-tunnel bench --size 1200 --inflight 64', what: 'Bulk throughput' },
    { cmd: "udp-tunnel bench --json --fail-if 'p99>5ms,ratio<0.5'", what: 'CI gate: NDJSON, exit 1 on a regression' },
    { cmd: 'udp-tunnel bench --markdown results.md --csv results.csv', what: 'Export the summary, a row per path' },
    { cmd: 'udp-tunnel bench --mode bare-relay --idle-sessions 0', what: 'The floor: two bare relays (not a tunnel)' },
    { cmd: 'udp-tunnel bench --rate 20000 --sessions 100 --duration 10s', what: 'Open loop, 100 peers' },
    { cmd: 'udp-tunnel bench --proxy https://127.0.0.1:443 --target 127.0.0.1:7 --no-direct', what: 'An external proxy' },
  ],
};
