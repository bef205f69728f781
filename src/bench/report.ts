import type { LoadMode, LoadResult } from './load-types.js';
import { disagreement, evaluateFailIf, summarize } from './stats.js';
import type { FailCondition, FailIfFailure, NumberSummary } from './stats.js';

/** Identifies the JSON document `udp-tunnel bench --json` prints; bumped on any incompatible change. */
export const BENCH_SCHEMA = 'udp-tunnel-bench/1';

/** Coefficient of variation across runs above which the report warns that runs disagree. */
export const DISAGREEMENT_THRESHOLD = 0.1;

/** Share of scheduled probes the generator failed to send above which the report warns (open loop). */
export const UNSENT_THRESHOLD = 0.01;

/** A generator result as stored in the report: LoadResult without its per-session list, plus how sessions fared. */
export interface PathResult extends Omit<LoadResult, 'perSession'> {
  /** Spread over sessions of replies received, and how many sessions lost anything. */
  sessionSpread: { minReceived: number; maxReceived: number; sessionsWithLoss: number };
}

/** The per-run numbers that are summarized across runs and compared tunnel / direct. */
export const SUMMARY_METRICS = [
  'throughputDps',
  'throughputMbps',
  'lossRatio',
  'jitterUs',
  'latencyP50Us',
  'latencyP90Us',
  'latencyP99Us',
  'latencyP999Us',
  'latencyMaxUs',
  'latencyMeanUs',
] as const;

/** One name of SUMMARY_METRICS. */
export type SummaryMetric = (typeof SUMMARY_METRICS)[number];

/** Latency percentiles whose tunnel - direct difference is reported as added latency. */
export const ADDED_LATENCY_KEYS = ['p50', 'p90', 'p99', 'p999', 'mean'] as const;

/** One name of ADDED_LATENCY_KEYS. */
export type AddedLatencyKey = (typeof ADDED_LATENCY_KEYS)[number];

/** Resource use of one component during one tunnel run. */
export interface ResourceUse {
  /** RSS at the start and end of the run and the highest sample, bytes (null when unavailable). */
  rssStartBytes: number | null;
  rssEndBytes: number | null;
  rssMaxBytes: number | null;
  /** Busy time during the run (CPU time of a process, or event-loop active time of a worker), µs; null when unavailable. */
  busyUs: number | null;
  /** busyUs / wall time of the run, as a fraction of one core (null when unavailable). */
  busyFraction: number | null;
  /** Wall time the resources were watched (warmup, measurement and drain of the tunnel path), ms. */
  wallMs: number;
}

/** One RSS sample of the tunnel components during a tunnel run. */
export interface RssSample {
  /** Since the run started, ms. */
  tMs: number;
  serveBytes: number | null;
  connectBytes: number | null;
}

/** One run: the direct path then the tunnel path, with the same generator settings. */
export interface RunRecord {
  /** 1-based. */
  index: number;
  /** Generator -> echo without the tunnel; null when the direct path is not measured. */
  direct: PathResult | null;
  /** Generator -> connect -> serve -> echo. */
  tunnel: PathResult;
  /** tunnel / direct for each metric; null entries where the direct value is 0; null without a direct path. */
  ratio: Record<SummaryMetric, number | null> | null;
  /** tunnel - direct round-trip latency, µs; null without a direct path. */
  addedLatencyUs: Record<AddedLatencyKey, number> | null;
  /** Resources during the tunnel path: serve and connect (null when not started by the bench) and the bench process. */
  resources: { serve: ResourceUse | null; connect: ResourceUse | null; benchBusyFraction: number };
  /** RSS of serve and connect sampled during the tunnel path. */
  rssSamples: RssSample[];
  /**
   * UDP datagrams the kernel dropped during the tunnel path because a socket buffer was full (Linux
   * /proc/net/snmp and snmp6, IPv4 + IPv6, system-wide: other programs' drops count too); null elsewhere.
   */
  kernelUdpDrops: { rcvbufErrors: number; sndbufErrors: number } | null;
  /**
   * Of those, datagrams dropped at connect's local UDP socket (the tunnel's entry: overload lands here) during the
   * tunnel path (Linux /proc/net/udp drops column); null elsewhere or without a local connect.
   */
  connectSocketDrops: number | null;
}

/** Summaries across runs. */
export interface BenchSummary {
  direct: Record<SummaryMetric, NumberSummary> | null;
  tunnel: Record<SummaryMetric, NumberSummary>;
  /** Per-run ratios summarized; a metric is null when no run had a usable ratio. */
  ratio: Record<SummaryMetric, NumberSummary | null> | null;
  addedLatencyUs: Record<AddedLatencyKey, NumberSummary> | null;
  /** Sums over runs. */
  totals: { direct: PathTotals | null; tunnel: PathTotals };
}

/** Datagram counts summed over runs (the path result's counts, totalled). */
export type PathTotals = Pick<LoadResult, 'sent' | 'received' | 'lost' | 'lossRatio' | 'outOfOrder' | 'duplicates' | 'timedOut' | 'unsent'>;

/** Something that makes the numbers less trustworthy, with a stable code. */
export interface BenchWarning {
  code: 'RUNS_DISAGREE' | 'DIRECT_LOSS' | 'GENERATOR_BEHIND' | 'TIMEOUTS' | 'ABORTED' | 'SINGLE_RUN' | 'NO_REPLIES' | 'ECHO_DROPS' | 'BIND_UNCOMPRESSED' | 'BIND_TUNNEL_LOST';
  message: string;
}

/** Reduces a generator result to what the report keeps. */
export function toPathResult(r: LoadResult): PathResult {
  const { perSession, ...rest } = r;
  let minReceived = perSession.length > 0 ? Infinity : 0;
  let maxReceived = 0;
  let sessionsWithLoss = 0;
  for (const s of perSession) {
    if (s.received < minReceived) minReceived = s.received;
    if (s.received > maxReceived) maxReceived = s.received;
    if (s.lost > 0) sessionsWithLoss++;
  }
  return { ...rest, sessionSpread: { minReceived, maxReceived, sessionsWithLoss } };
}

/** The SUMMARY_METRICS of one path result. */
export function pathMetrics(r: Pick<PathResult, 'throughputDps' | 'throughputMbps' | 'lossRatio' | 'jitterUs' | 'latencyUs'>): Record<SummaryMetric, number> {
  const l = r.latencyUs;
  return {
    throughputDps: r.throughputDps,
    throughputMbps: r.throughputMbps,
    lossRatio: r.lossRatio,
    jitterUs: r.jitterUs,
    latencyP50Us: l.p50,
    latencyP90Us: l.p90,
    latencyP99Us: l.p99,
    latencyP999Us: l.p999,
    latencyMaxUs: l.max,
    latencyMeanUs: l.mean,
  };
}

/** tunnel / direct per metric; null where the direct value is 0 (no meaningful ratio). */
export function metricRatios(direct: Record<SummaryMetric, number>, tunnel: Record<SummaryMetric, number>): Record<SummaryMetric, number | null> {
  const out = {} as Record<SummaryMetric, number | null>;
  for (const k of SUMMARY_METRICS) out[k] = direct[k] !== 0 ? tunnel[k] / direct[k] : null;
  return out;
}

/** tunnel - direct round-trip latency percentiles, µs. */
export function addedLatency(direct: PathResult['latencyUs'], tunnel: PathResult['latencyUs']): Record<AddedLatencyKey, number> {
  return {
    p50: tunnel.p50 - direct.p50,
    p90: tunnel.p90 - direct.p90,
    p99: tunnel.p99 - direct.p99,
    p999: tunnel.p999 - direct.p999,
    mean: tunnel.mean - direct.mean,
  };
}

function summarizeMetrics(results: readonly PathResult[]): Record<SummaryMetric, NumberSummary> {
  const per = results.map(pathMetrics);
  const out = {} as Record<SummaryMetric, NumberSummary>;
  for (const k of SUMMARY_METRICS) out[k] = summarize(per.map((m) => m[k]));
  return out;
}

function totals(results: readonly PathResult[]): PathTotals {
  const t: PathTotals = { sent: 0, received: 0, lost: 0, lossRatio: 0, outOfOrder: 0, duplicates: 0, timedOut: 0, unsent: 0 };
  for (const r of results) {
    t.sent += r.sent;
    t.received += r.received;
    t.lost += r.lost;
    t.outOfOrder += r.outOfOrder;
    t.duplicates += r.duplicates;
    t.timedOut += r.timedOut;
    t.unsent += r.unsent;
  }
  t.lossRatio = t.sent > 0 ? t.lost / t.sent : 0;
  return t;
}

/** Summarizes runs: mean, sample stddev, min and max of every metric, per path, of the ratios and of added latency. */
export function summarizeRuns(runs: readonly RunRecord[]): BenchSummary {
  const tunnel = runs.map((r) => r.tunnel);
  const direct = runs.flatMap((r) => (r.direct ? [r.direct] : []));
  const hasDirect = direct.length > 0;
  let ratio: BenchSummary['ratio'] = null;
  let added: BenchSummary['addedLatencyUs'] = null;
  if (hasDirect) {
    ratio = {} as Record<SummaryMetric, NumberSummary | null>;
    for (const k of SUMMARY_METRICS) {
      const vals = runs.flatMap((r) => {
        const v = r.ratio?.[k];
        return v === null || v === undefined ? [] : [v];
      });
      ratio[k] = vals.length > 0 ? summarize(vals) : null;
    }
    added = {} as Record<AddedLatencyKey, NumberSummary>;
    for (const k of ADDED_LATENCY_KEYS) added[k] = summarize(runs.flatMap((r) => (r.addedLatencyUs ? [r.addedLatencyUs[k]] : [])));
  }
  return {
    direct: hasDirect ? summarizeMetrics(direct) : null,
    tunnel: summarizeMetrics(tunnel),
    ratio,
    addedLatencyUs: added,
    totals: { direct: hasDirect ? totals(direct) : null, tunnel: totals(tunnel) },
  };
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/**
 * Warnings about how far the runs can be trusted. `echoDropped` counts replies the local echo could not send;
 * `tunnelLabel` names the tunnel path in messages ('relay' in bare-relay mode, which is not a tunnel).
 */
export function benchWarnings(runs: readonly RunRecord[], echoDropped = 0, tunnelLabel = 'tunnel'): BenchWarning[] {
  const w: BenchWarning[] = [];
  if (runs.length < 2) w.push({ code: 'SINGLE_RUN', message: 'only one run: no spread to judge the numbers by (use --runs 3 or more)' });
  for (const path of ['direct', 'tunnel'] as const) {
    const results = runs.flatMap((r) => (r[path] ? [r[path]] : []));
    if (results.length === 0) continue;
    const name = path === 'tunnel' ? tunnelLabel : path;
    for (const [metric, label] of [
      ['throughputDps', 'throughput'],
      ['latencyP50Us', 'p50 latency'],
    ] as const) {
      const cv = disagreement(results.map((r) => pathMetrics(r)[metric]));
      if (cv > DISAGREEMENT_THRESHOLD) {
        w.push({
          code: 'RUNS_DISAGREE',
          message: `${name} ${label} varies by ${Number.isFinite(cv) ? pct(cv) : 'an unbounded factor'} (stddev/mean) across runs; the machine may be busy`,
        });
      }
    }
    const sent = results.reduce((a, r) => a + r.sent, 0);
    const unsent = results.reduce((a, r) => a + r.unsent, 0);
    if (sent + unsent > 0 && unsent / (sent + unsent) > UNSENT_THRESHOLD) {
      w.push({
        code: 'GENERATOR_BEHIND',
        message: `${name}: the generator could not send ${unsent} scheduled datagrams (${pct(unsent / (sent + unsent))}); the offered rate was not reached`,
      });
    }
    const timedOut = results.reduce((a, r) => a + r.timedOut, 0);
    if (timedOut > 0) w.push({ code: 'TIMEOUTS', message: `${name}: ${timedOut} datagrams timed out in the closed loop (their window slot was freed)` });
    if (results.some((r) => r.aborted)) w.push({ code: 'ABORTED', message: `${name}: a run was stopped early` });
    if (path === 'direct') {
      const lost = results.reduce((a, r) => a + r.lost, 0);
      if (lost > 0) {
        w.push({ code: 'DIRECT_LOSS', message: `the direct path lost ${lost} datagrams: the generator or echo is overloaded, so the baseline understates capacity` });
      }
    }
    if (path === 'tunnel' && results.every((r) => r.received === 0)) {
      w.push({ code: 'NO_REPLIES', message: `the ${tunnelLabel} path delivered no replies at all` });
    }
  }
  if (echoDropped > 0) w.push({ code: 'ECHO_DROPS', message: `the echo dropped ${echoDropped} replies (its send queue was full)` });
  return w;
}

/**
 * The --fail-if metrics of a bench, in parseFailIf's base units: latency and jitter are the tunnel's means over
 * runs, loss is the tunnel's total lost / sent, throughput and mbps the tunnel's mean, ratio the mean per-run
 * tunnel / direct throughput (absent without a direct path).
 */
export function benchFailIfMetrics(summary: BenchSummary): Record<string, number> {
  const t = summary.tunnel;
  const m: Record<string, number> = {
    p50: t.latencyP50Us.mean,
    p90: t.latencyP90Us.mean,
    p99: t.latencyP99Us.mean,
    'p99.9': t.latencyP999Us.mean,
    max: t.latencyMaxUs.mean,
    mean: t.latencyMeanUs.mean,
    jitter: t.jitterUs.mean,
    loss: summary.totals.tunnel.lossRatio,
    throughput: t.throughputDps.mean,
    mbps: t.throughputMbps.mean,
  };
  const r = summary.ratio?.throughputDps;
  if (r) m['ratio'] = r.mean;
  return m;
}

/** Outcome of --fail-if. */
export interface FailIfOutcome {
  spec: string;
  /** The conditions as parsed (whitespace removed). */
  conditions: string[];
  failures: FailIfFailure[];
  passed: boolean;
}

/** Evaluates --fail-if conditions against a summary (see benchFailIfMetrics). */
export function evaluateBenchFailIf(spec: string, conditions: readonly FailCondition[], summary: BenchSummary): FailIfOutcome {
  const failures = evaluateFailIf(conditions, benchFailIfMetrics(summary));
  return { spec, conditions: conditions.map((c) => c.text), failures, passed: failures.length === 0 };
}

/** Parameters of a bench as recorded in the document. */
export interface BenchParameters {
  size: number;
  sessions: number;
  load: LoadMode;
  durationMs: number;
  warmupMs: number;
  drainMs: number;
  timeoutMs: number;
  runs: number;
  tls: boolean;
  mode: string;
  /** Request path of a mode that names no target (POST), which the proxy routes to the target; else null. */
  postPath: string | null;
  isolation: 'process' | 'worker';
  host: string;
  /** External proxy URL, or null when the bench ran its own serve. */
  proxy: string | null;
  /** External target HOST:PORT, or null when the bench ran its own echo. */
  target: string | null;
  direct: boolean;
  idleSessions: number;
}

/** Where the bench ran. */
export interface BenchEnvironment {
  node: string;
  v8: string;
  platform: string;
  arch: string;
  /** os.availableParallelism(). */
  cpus: number;
  cpuModel: string;
  totalMemoryBytes: number;
  /** os.loadavg() when the bench started and when it finished (1, 5, 15 minutes). */
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

/** A serve or connect as the document reports it. */
export interface ComponentReport {
  role: 'serve' | 'connect';
  isolation: 'process' | 'worker';
  pid: number | null;
  address: string;
  port: number;
  rssStartBytes: number | null;
  rssEndBytes: number | null;
  /** Its counters when it stopped (TunnelServer / TunnelClient counters), or null. */
  counters: Record<string, unknown> | null;
  /** Datagrams its sessions dropped over the whole bench, by reason (see ClientSessionStats / ServerSessionStats). */
  drops: Record<string, number>;
  exitCode: number | null;
}

/** Share of a bound tunnel's datagrams that went on compressed contexts, from connect's final counters; null if unknown. */
export function compressedShare(connect: ComponentReport | undefined): { rx: number | null; tx: number | null } | null {
  const t = connect?.counters?.['tunnel'];
  if (t === null || typeof t !== 'object') return null;
  const c = t as Record<string, unknown>;
  const share = (part: unknown, all: unknown): number | null =>
    typeof part === 'number' && typeof all === 'number' && all > 0 ? part / all : null;
  return { rx: share(c['rxCompressed'], c['rxDatagrams']), tx: share(c['txCompressed'], c['txDatagrams']) };
}

/**
 * Memory of idle sessions: `sessions` peers opened in steps, each carrying one datagram, with the RSS of serve and
 * connect read before the first step and after each. bytesPerSession is the RSS growth over the second half of the
 * steps divided by the sessions answered in it (the marginal cost of a session); null when unavailable.
 */
export interface IdleSessionMemory {
  sessions: number;
  /** Sessions whose datagram came back (each is a live tunnel). */
  answered: number;
  samples: { sessions: number; answered: number; serveRssBytes: number | null; connectRssBytes: number | null }[];
  serve: { bytesPerSession: number | null };
  connect: { bytesPerSession: number | null };
}

/** The document `udp-tunnel bench --json` prints (schema BENCH_SCHEMA); every number is raw (bytes, µs, ms, /s). */
export interface BenchDocument {
  schema: typeof BENCH_SCHEMA;
  tool: { name: 'udp-tunnel'; version: string };
  startedAt: string;
  finishedAt: string;
  wallMs: number;
  environment: BenchEnvironment;
  parameters: BenchParameters;
  runs: RunRecord[];
  summary: BenchSummary;
  components: ComponentReport[];
  echo: { datagrams: number; bytes: number; dropped: number; errors: number } | null;
  idleSessionMemory: IdleSessionMemory | null;
  warnings: BenchWarning[];
  failIf: FailIfOutcome | null;
}
