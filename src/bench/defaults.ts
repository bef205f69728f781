// The bench's and demo's defaults as plain values: the CLI's option schemas and `--help` read them without loading
// the harness, the generator or the tunnel.
import type { LoadMode } from './load-types.js';
import { DEFAULT_BENCH_MODE, DEFAULT_BENCH_POST_PATH } from './modes.js';

/** Where bench runs serve and connect: child processes or worker threads. */
export type Isolation = 'process' | 'worker';

/** Closed-loop window per session of the default load. */
export const DEFAULT_BENCH_INFLIGHT = 32;
/** Default drain time, ms. */
export const DEFAULT_DRAIN_MS = 500;
/** Default closed-loop probe timeout, ms. */
export const DEFAULT_TIMEOUT_MS = 1000;

/** Defaults of runBench: a comparison that finishes in about 25 s. */
export const BENCH_DEFAULTS = {
  size: 64,
  sessions: 1,
  load: { kind: 'inflight', inflight: DEFAULT_BENCH_INFLIGHT } as LoadMode,
  durationMs: 2000,
  warmupMs: 1000,
  drainMs: DEFAULT_DRAIN_MS,
  timeoutMs: DEFAULT_TIMEOUT_MS,
  runs: 3,
  tls: false,
  mode: DEFAULT_BENCH_MODE,
  postPath: DEFAULT_BENCH_POST_PATH,
  isolation: 'process' as Isolation,
  host: '127.0.0.1',
  direct: true,
  idleSessions: 1000,
  sampleIntervalMs: 500,
} as const;

/** Largest number of generator sessions (local sockets) per run. */
export const MAX_SESSIONS = 4096;
/** Largest closed-loop window per session. */
export const MAX_INFLIGHT = 65536;
/** Largest open-loop rate, datagrams/s. */
export const MAX_RATE = 10_000_000;

/** Largest --runs. */
export const MAX_RUNS = 100;
/** Largest --idle-sessions. */
export const MAX_IDLE_SESSIONS = 10_000;

/** runDemoTraffic's defaults; `demo` shows them in its help. */
export const DEMO_TRAFFIC_DEFAULTS = {
  peers: 4,
  count: 250,
  size: 64,
  timeoutMs: 1000,
} as const;
