import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import type { LoadResult } from '../../../src/bench/load-types.js';
import {
  BENCH_SCHEMA,
  SUMMARY_METRICS,
  addedLatency,
  benchFailIfMetrics,
  benchWarnings,
  evaluateBenchFailIf,
  metricRatios,
  pathMetrics,
  summarizeRuns,
  toPathResult,
} from '../../../src/bench/report.js';
import type { PathResult, RunRecord } from '../../../src/bench/report.js';
import { parseFailIf } from '../../../src/bench/stats.js';
import type { LatencySummary } from '../../../src/bench/stats.js';

function latency(p50: number, extra: Partial<LatencySummary> = {}): LatencySummary {
  return { count: 10, min: p50 / 2, max: p50 * 4, mean: p50 + 5, p50, p90: p50 * 2, p99: p50 * 3, p999: p50 * 3.5, clamped: 0, ...extra };
}

/** A synthetic path result: only the fields a test names differ from zero. */
function path(fields: Partial<PathResult> & { p50?: number } = {}): PathResult {
  const { p50 = 100, ...rest } = fields;
  const lat = latency(p50);
  return {
    target: { address: '127.0.0.1', family: 4, port: 9 },
    mode: { kind: 'inflight', inflight: 32 },
    size: 64,
    sessions: 1,
    elapsedMs: 1000,
    totalMs: 1500,
    aborted: false,
    sent: 1000,
    received: 1000,
    lost: 0,
    lossRatio: 0,
    outOfOrder: 0,
    duplicates: 0,
    tooOld: 0,
    timedOut: 0,
    unsent: 0,
    sendErrors: 0,
    socketErrors: 0,
    invalid: 0,
    jitterUs: 10,
    throughputDps: 1000,
    throughputMbps: 0.512,
    sendRateDps: 1000,
    latencyUs: lat,
    latencyBuckets: [],
    serviceLatencyUs: lat,
    socketBuffers: { recv: 1, send: 1 },
    lastError: null,
    sessionSpread: { minReceived: 1000, maxReceived: 1000, sessionsWithLoss: 0 },
    ...rest,
  };
}

function run(index: number, direct: PathResult | null, tunnel: PathResult): RunRecord {
  return {
    index,
    direct,
    tunnel,
    ratio: direct ? metricRatios(pathMetrics(direct), pathMetrics(tunnel)) : null,
    addedLatencyUs: direct ? addedLatency(direct.latencyUs, tunnel.latencyUs) : null,
    resources: { serve: null, connect: null, benchBusyFraction: 0 },
    rssSamples: [],
    kernelUdpDrops: null,
    connectSocketDrops: null,
  };
}

const close = (actual: number, expected: number, what: string): void => {
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);
};

describe('bench report', () => {
  it('names its schema with a version', () => {
    assert.equal(BENCH_SCHEMA, 'udp-tunnel-bench/1');
  });

  it('toPathResult drops the per-session list and keeps its spread', () => {
    const base = path();
    const load: LoadResult = {
      ...base,
      perSession: [5, 9, 7].map((received, i) => ({
        flowId: i,
        localAddress: '127.0.0.1',
        localPort: 1000 + i,
        sent: 9,
        received,
        lost: 9 - received,
        outOfOrder: 0,
        duplicates: 0,
        tooOld: 0,
        timedOut: 0,
        jitterUs: 0,
      })),
    };
    const r = toPathResult(load);
    assert.equal('perSession' in r, false);
    assert.deepEqual(r.sessionSpread, { minReceived: 5, maxReceived: 9, sessionsWithLoss: 2 });
    assert.deepEqual(toPathResult({ ...base, perSession: [] }).sessionSpread, { minReceived: 0, maxReceived: 0, sessionsWithLoss: 0 });
  });

  it('metricRatios divides tunnel by direct and gives null where the direct value is 0', () => {
    const d = pathMetrics(path({ throughputDps: 200, lossRatio: 0, p50: 100 }));
    const t = pathMetrics(path({ throughputDps: 50, lossRatio: 0.02, p50: 250 }));
    const r = metricRatios(d, t);
    assert.equal(r.throughputDps, 0.25);
    assert.equal(r.latencyP50Us, 2.5);
    assert.equal(r.lossRatio, null);
    assert.deepEqual(Object.keys(r), [...SUMMARY_METRICS]);
  });

  it('addedLatency subtracts direct from tunnel percentiles', () => {
    assert.deepEqual(addedLatency(latency(100), latency(130)), { p50: 30, p90: 60, p99: 90, p999: 105, mean: 30 });
  });

  it('summarizes two runs by hand-computed mean, sample stddev, min and max', () => {
    const runs = [
      run(1, path({ throughputDps: 100, p50: 100 }), path({ throughputDps: 50, p50: 150, sent: 1000, received: 990, lost: 10 })),
      run(2, path({ throughputDps: 200, p50: 120 }), path({ throughputDps: 80, p50: 200, sent: 3000, received: 2970, lost: 30 })),
    ];
    const s = summarizeRuns(runs);
    const tp = s.tunnel.throughputDps;
    assert.equal(tp.n, 2);
    assert.equal(tp.mean, 65);
    close(tp.stddev, Math.sqrt(450), 'tunnel throughput stddev');
    assert.equal(tp.min, 50);
    assert.equal(tp.max, 80);
    assert.equal(s.direct!.throughputDps.mean, 150);
    const ratio = s.ratio!.throughputDps!;
    close(ratio.mean, 0.45, 'ratio mean');
    close(ratio.stddev, Math.sqrt(0.005), 'ratio stddev');
    assert.equal(ratio.min, 0.4);
    assert.equal(ratio.max, 0.5);
    assert.equal(s.ratio!.lossRatio, null);
    assert.equal(s.addedLatencyUs!.p50.mean, 65);
    close(s.addedLatencyUs!.p50.stddev, Math.sqrt(450), 'added p50 stddev');
    assert.deepEqual(s.totals.tunnel, { sent: 4000, received: 3960, lost: 40, lossRatio: 0.01, outOfOrder: 0, duplicates: 0, timedOut: 0, unsent: 0 });
    assert.equal(s.totals.direct!.sent, 2000);

    const m = benchFailIfMetrics(s);
    assert.equal(m['ratio'], ratio.mean);
    assert.equal(m['loss'], 0.01);
    assert.equal(m['p50'], 175);
    assert.equal(m['p99'], 525);
    assert.equal(m['throughput'], 65);
    const outcome = evaluateBenchFailIf('p50>170us,loss>1%,ratio<0.5', parseFailIf('p50>170us,loss>1%,ratio<0.5'), s);
    assert.equal(outcome.passed, false);
    assert.deepEqual(outcome.conditions, ['p50>170us', 'loss>1%', 'ratio<0.5']);
    assert.deepEqual(
      outcome.failures.map((f) => f.condition),
      ['p50>170us', 'ratio<0.5'],
    );
    assert.equal(evaluateBenchFailIf('p50>175us', parseFailIf('p50>175us'), s).passed, true);
  });

  it('without a direct path there are no ratios, and a ratio condition is an error', () => {
    const s = summarizeRuns([run(1, null, path()), run(2, null, path())]);
    assert.equal(s.direct, null);
    assert.equal(s.ratio, null);
    assert.equal(s.addedLatencyUs, null);
    assert.equal(s.totals.direct, null);
    assert.equal('ratio' in benchFailIfMetrics(s), false);
    assert.throws(
      () => evaluateBenchFailIf('ratio<0.5', parseFailIf('ratio<0.5'), s),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION'),
    );
  });

  it('warns when runs disagree beyond 10% (stddev / mean) and not at or below it', () => {
    // tunnel throughput 50 and 80: CV 0.326; direct 100 and 200: CV 0.471; p50 direct 100/120: CV 0.129, tunnel 150/200: CV 0.202.
    const disagree = benchWarnings([
      run(1, path({ throughputDps: 100, p50: 100 }), path({ throughputDps: 50, p50: 150 })),
      run(2, path({ throughputDps: 200, p50: 120 }), path({ throughputDps: 80, p50: 200 })),
    ]);
    assert.deepEqual(
      disagree.map((w) => w.code),
      ['RUNS_DISAGREE', 'RUNS_DISAGREE', 'RUNS_DISAGREE', 'RUNS_DISAGREE'],
    );
    assert.match(disagree[0]!.message, /^direct throughput varies by 47\.1%/);
    // 100 and 110: CV = 7.07 / 105 = 0.067.
    const agree = benchWarnings([run(1, path({ throughputDps: 100 }), path({ throughputDps: 100 })), run(2, path({ throughputDps: 110 }), path({ throughputDps: 110 }))]);
    assert.deepEqual(agree, []);
  });

  it('warns about a single run, the generator falling behind, timeouts, aborts, direct loss, no replies and echo drops', () => {
    const codes = (runs: RunRecord[], echo = 0): string[] => benchWarnings(runs, echo).map((w) => w.code);
    assert.deepEqual(codes([run(1, path(), path())]), ['SINGLE_RUN']);
    const two = (d: Partial<PathResult>, t: Partial<PathResult>): RunRecord[] => [run(1, path(d), path(t)), run(2, path(d), path(t))];
    // 20 unsent of 2000 scheduled is exactly 1%: not more than the threshold.
    assert.deepEqual(codes(two({}, { sent: 990, unsent: 10 })), []);
    assert.deepEqual(codes(two({}, { sent: 989, unsent: 11 })), ['GENERATOR_BEHIND']);
    assert.deepEqual(codes(two({}, { timedOut: 1 })), ['TIMEOUTS']);
    assert.deepEqual(codes(two({ aborted: true }, {})), ['ABORTED']);
    assert.deepEqual(codes(two({ lost: 1 }, {})), ['DIRECT_LOSS']);
    assert.deepEqual(codes(two({}, { lost: 1 })), []);
    assert.deepEqual(codes(two({}, { received: 0, throughputDps: 0 })), ['NO_REPLIES']);
    assert.deepEqual(codes(two({}, {}), 3), ['ECHO_DROPS']);
  });
});
