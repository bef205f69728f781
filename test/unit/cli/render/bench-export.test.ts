import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BENCH_SCHEMA, addedLatency, metricRatios, pathMetrics, summarizeRuns } from '../../../../src/bench/report.js';
import type { BenchDocument, PathResult, RunRecord } from '../../../../src/bench/report.js';
import type { LatencyBucket } from '../../../../src/bench/stats.js';
import { CSV_COLUMNS, renderBenchCsv, renderBenchMarkdown } from '../../../../src/cli/render/bench-export.js';
import { bar, histogramRows, renderLatencyHistogram } from '../../../../src/cli/render/bench-histogram.js';
import { renderReport } from '../../../../src/cli/render/bench-render.js';
import { setupColor } from '../../../../src/cli/color.js';

/** Buckets 2^(i/4) µs for the given indices and counts. */
function buckets(entries: [number, number][]): LatencyBucket[] {
  return entries.map(([i, count]) => ({ fromUs: Math.round(2 ** (i / 4) * 100) / 100, toUs: Math.round(2 ** ((i + 1) / 4) * 100) / 100, count }));
}

function path(throughputDps: number, p50: number, latencyBuckets: LatencyBucket[], lost = 0): PathResult {
  const count = latencyBuckets.reduce((a, b) => a + b.count, 0);
  const lat = { count, min: p50 / 2, max: p50 * 4, mean: p50, p50, p90: p50 * 2, p99: p50 * 3, p999: p50 * 3.5, clamped: 0 };
  return {
    target: { address: '127.0.0.1', family: 4, port: 9 },
    mode: { kind: 'inflight', inflight: 32 },
    size: 64,
    sessions: 1,
    elapsedMs: 1000,
    totalMs: 1500,
    aborted: false,
    sent: 1000,
    received: 1000 - lost,
    lost,
    lossRatio: lost / 1000,
    outOfOrder: 0,
    duplicates: 0,
    tooOld: 0,
    timedOut: 0,
    unsent: 0,
    sendErrors: 0,
    socketErrors: 0,
    invalid: 0,
    jitterUs: 10,
    throughputDps,
    throughputMbps: (throughputDps * 64 * 8) / 1e6,
    sendRateDps: throughputDps,
    latencyUs: lat,
    latencyBuckets,
    serviceLatencyUs: lat,
    socketBuffers: { recv: 1, send: 1 },
    lastError: null,
    sessionSpread: { minReceived: 1000, maxReceived: 1000, sessionsWithLoss: 0 },
  };
}

function run(index: number, direct: PathResult, tunnel: PathResult, busy: [number, number]): RunRecord {
  const use = (f: number) => ({ rssStartBytes: 1, rssEndBytes: 1, rssMaxBytes: 1, busyUs: f * 1e6, busyFraction: f, wallMs: 1000 });
  return {
    index,
    direct,
    tunnel,
    ratio: metricRatios(pathMetrics(direct), pathMetrics(tunnel)),
    addedLatencyUs: addedLatency(direct.latencyUs, tunnel.latencyUs),
    resources: { connect: use(busy[0]), serve: use(busy[1]), benchBusyFraction: 0.5 },
    rssSamples: [],
    kernelUdpDrops: null,
    connectSocketDrops: null,
  };
}

// Direct: 512 µs (index 36) mostly; tunnel: 2048 µs (index 44) mostly, a tail at 8192 µs (index 52).
const RUNS = [
  run(1, path(40_000, 500, buckets([[36, 900], [37, 100]])), path(10_000, 2000, buckets([[44, 800], [52, 200]])), [0.2, 0.3]),
  run(2, path(60_000, 520, buckets([[36, 1000]])), path(8_000, 2100, buckets([[44, 1000]]), 10), [0.4, 0.5]),
];

const DOC = {
  schema: BENCH_SCHEMA,
  tool: { name: 'udp-tunnel', version: '9.9.9' },
  startedAt: '2025-01-01T00:00:00.000Z',
  finishedAt: '2025-01-01T00:00:10.000Z',
  wallMs: 10_000,
  environment: { node: 'v20.0.0', v8: '11', platform: 'linux', arch: 'x64', cpus: 2, cpuModel: 'test', totalMemoryBytes: 1, loadAverageStart: [0, 0, 0], loadAverageEnd: [0, 0, 0] },
  parameters: {
    size: 64, sessions: 1, load: { kind: 'inflight', inflight: 32 }, durationMs: 1000, warmupMs: 0, drainMs: 500, timeoutMs: 1000, runs: 2,
    tls: false, mode: 'connect-udp', postPath: null, isolation: 'process', host: '127.0.0.1', proxy: null, target: null, direct: true, idleSessions: 0,
  },
  runs: RUNS,
  summary: summarizeRuns(RUNS),
  components: [],
  echo: null,
  idleSessionMemory: null,
  warnings: [],
  failIf: null,
} satisfies BenchDocument;

const widest = (text: string): number => Math.max(...text.split('\n').map((l) => [...l].length));

describe('bench summary export', () => {
  it('CSV: a header and one row per path, raw numbers in the units the columns name', () => {
    const lines = renderBenchCsv(DOC).trimEnd().split('\n');
    assert.deepEqual(lines[0]!.split(','), [...CSV_COLUMNS]);
    const rows = lines.slice(1).map((l) => Object.fromEntries(l.split(',').map((v, i) => [CSV_COLUMNS[i]!, v])));
    assert.deepEqual(
      rows.map((r) => [r['path'], r['runs'], r['throughput_dps_mean'], r['throughput_dps_stddev'], r['latency_p50_us'], r['latency_p99_us']]),
      [
        ['direct', '2', '50000', '14142.1', '510', '1530'],
        ['tunnel', '2', '9000', '1414.2', '2050', '6150'],
      ],
    );
    // (10000/40000 + 8000/60000) / 2
    assert.equal(rows[1]!['relative_throughput'], '0.1917');
    assert.equal(rows[0]!['relative_throughput'], '1');
    assert.equal(rows[1]!['loss_ratio'], '0.005');
    assert.deepEqual([rows[0]!['connect_cpu'], rows[0]!['serve_cpu'], rows[1]!['connect_cpu'], rows[1]!['serve_cpu']], ['', '', '0.3', '0.4']);
  });

  it('Markdown: one table row per path in readable units, the tunnel relative to direct', () => {
    const md = renderBenchMarkdown(DOC).trimEnd().split('\n');
    assert.equal(md.length, 4);
    assert.equal(md[0], '| path | throughput (dgram/s) | Mbit/s | relative | p50 | p90 | p99 | max | loss | CPU connect | CPU serve |');
    assert.match(md[1]!, /^\| :--- \|( ---: \|){10}$/);
    assert.equal(md[2], '| direct | 50,000 ± 14,142 | 25.6 ± 7.2 | 1.00 | 510 µs | 1.02 ms | 1.53 ms | 2.04 ms | 0.000% |  |  |');
    assert.equal(md[3], '| tunnel | 9,000 ± 1,414 | 4.6 ± 0.7 | 0.19 ± 0.08 | 2.05 ms | 4.10 ms | 6.15 ms | 8.20 ms | 0.500% | 30% | 40% |');
  });
});

describe('bench latency histogram', () => {
  it('merges the runs into rows spanning both paths, each path as a share of its own replies', () => {
    const rows = histogramRows(DOC, 100);
    assert.equal(rows.length, 52 - 36 + 1, 'one row per bucket when there is room');
    const at = (i: number) => rows[i - 36]!.shares;
    assert.deepEqual(at(36), { direct: 1900 / 2000, tunnel: 0 });
    assert.deepEqual(at(37), { direct: 100 / 2000, tunnel: 0 });
    assert.deepEqual(at(44), { direct: 0, tunnel: 1800 / 2000 });
    assert.deepEqual(at(52), { direct: 0, tunnel: 200 / 2000 });
    assert.ok(Math.abs(rows[0]!.fromUs - 512) < 1e-9);
    const merged = histogramRows(DOC, 4);
    assert.ok(merged.length <= 4);
    assert.equal(merged.reduce((a, r) => a + r.shares.tunnel, 0), 1);
    assert.equal(merged.reduce((a, r) => a + (r.shares.direct ?? 0), 0), 1);
  });

  it('draws bars in eighths of a column, at least a sliver for a non-zero share', () => {
    assert.equal(bar(1, 4), '████');
    assert.equal(bar(0.5, 3), '█▌');
    assert.equal(bar(0.001, 10), '▏');
    assert.equal(bar(0, 10), '');
  });

  it('puts direct and tunnel side by side within 100 columns and one after the other when narrow', () => {
    setupColor(0);
    const wide = renderLatencyHistogram(DOC, 100);
    assert.ok(widest(wide) <= 100, wide);
    assert.match(wide.split('\n')[1]!, /│ direct .*│ tunnel/);
    // 17 buckets in at most 12 rows: two buckets a row; the largest share fills the bar.
    assert.match(wide, /^ 512 µs – {2}724 µs │ █{30} 100\.0% │$/m);
    assert.match(wide, /^2\.05 ms – 2\.90 ms │ +│ █{27} +90\.0%$/m);
    const narrow = renderLatencyHistogram(DOC, 50);
    assert.ok(widest(narrow) <= 50, narrow);
    assert.match(narrow, /^ {2}direct$/m);
    assert.match(narrow, /^ {2}tunnel$/m);
  });

  it('the whole report leads with the ratio headline and fits 100 and 80 columns', () => {
    setupColor(0);
    for (const width of [100, 80]) {
      const text = renderReport(DOC, width);
      assert.ok(widest(text) <= width, `${width}:\n${text}`);
      const lines = text.split('\n');
      assert.equal(lines[0], 'tunnel / direct, mean ± stddev over 2 runs:');
      assert.match(lines[1]!, /^ {2}throughput {3}0\.19× ± 0\.08 /);
      assert.match(lines[2]!, /^ {2}p50 latency {2}4\.02× ± 0\.03 /);
      assert.match(text, /round-trip latency, share of each path's replies \(2 runs\)/);
    }
  });
});
