import { accessSync, constants, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { isBareRelayMode } from '../../bench/modes.js';
import type { BenchDocument, SummaryMetric } from '../../bench/report.js';
import type { NumberSummary } from '../../bench/stats.js';
import { UsageError } from '../errors.js';

/** One path's line of the `--csv` / `--markdown` export; latencies are means over runs, µs. */
export interface BenchSummaryRow {
  /** `direct`, or `tunnel` (`relay` in bare-relay mode). */
  path: string;
  runs: number;
  throughputDps: NumberSummary;
  throughputMbps: NumberSummary;
  /** This path's throughput / direct's, per run then summarized; 1 for direct; null without a direct path. */
  relativeThroughput: { mean: number; stddev: number } | null;
  latencyP50Us: number;
  latencyP90Us: number;
  latencyP99Us: number;
  latencyMaxUs: number;
  /** Lost / sent over all runs. */
  lossRatio: number;
  /** Mean busy fraction of one core during this path's runs; null where not measured (the direct path). */
  connectCpu: number | null;
  serveCpu: number | null;
}

function meanOf(values: readonly (number | null | undefined)[]): number | null {
  const v = values.filter((x): x is number => typeof x === 'number');
  return v.length > 0 ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

/** The summary of a bench as one row per path: direct first (when measured), then the tunnel. */
export function benchSummaryRows(doc: BenchDocument): BenchSummaryRow[] {
  const s = doc.summary;
  const row = (path: string, m: Record<SummaryMetric, NumberSummary>, lossRatio: number): Omit<BenchSummaryRow, 'relativeThroughput' | 'connectCpu' | 'serveCpu'> => ({
    path,
    runs: m.throughputDps.n,
    throughputDps: m.throughputDps,
    throughputMbps: m.throughputMbps,
    latencyP50Us: m.latencyP50Us.mean,
    latencyP90Us: m.latencyP90Us.mean,
    latencyP99Us: m.latencyP99Us.mean,
    latencyMaxUs: m.latencyMaxUs.mean,
    lossRatio,
  });
  const rows: BenchSummaryRow[] = [];
  if (s.direct && s.totals.direct) {
    rows.push({ ...row('direct', s.direct, s.totals.direct.lossRatio), relativeThroughput: { mean: 1, stddev: 0 }, connectCpu: null, serveCpu: null });
  }
  const ratio = s.ratio?.throughputDps ?? null;
  rows.push({
    ...row(isBareRelayMode(doc.parameters.mode) ? 'relay' : 'tunnel', s.tunnel, s.totals.tunnel.lossRatio),
    relativeThroughput: ratio ? { mean: ratio.mean, stddev: ratio.stddev } : null,
    connectCpu: meanOf(doc.runs.map((r) => r.resources.connect?.busyFraction)),
    serveCpu: meanOf(doc.runs.map((r) => r.resources.serve?.busyFraction)),
  });
  return rows;
}

/** Columns of the CSV export, in order; units are in the names. */
export const CSV_COLUMNS = [
  'path',
  'runs',
  'throughput_dps_mean',
  'throughput_dps_stddev',
  'throughput_mbps_mean',
  'throughput_mbps_stddev',
  'relative_throughput',
  'relative_throughput_stddev',
  'latency_p50_us',
  'latency_p90_us',
  'latency_p99_us',
  'latency_max_us',
  'loss_ratio',
  'connect_cpu',
  'serve_cpu',
] as const;

const num = (v: number | null, digits: number): string => (v === null ? '' : String(Number(v.toFixed(digits))));

/**
 * The summary as CSV: a header line, then one line per path (LF line ends, no quoting needed), raw numbers in the
 * units the column names say (µs, datagrams/s, Mbit/s, fractions 0..1); an empty field where a value does not apply.
 */
export function renderBenchCsv(doc: BenchDocument): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of benchSummaryRows(doc)) {
    lines.push(
      [
        r.path,
        String(r.runs),
        num(r.throughputDps.mean, 1),
        num(r.throughputDps.stddev, 1),
        num(r.throughputMbps.mean, 3),
        num(r.throughputMbps.stddev, 3),
        num(r.relativeThroughput?.mean ?? null, 4),
        num(r.relativeThroughput?.stddev ?? null, 4),
        num(r.latencyP50Us, 1),
        num(r.latencyP90Us, 1),
        num(r.latencyP99Us, 1),
        num(r.latencyMaxUs, 1),
        num(r.lossRatio, 6),
        num(r.connectCpu, 3),
        num(r.serveCpu, 3),
      ].join(','),
    );
  }
  return `${lines.join('\n')}\n`;
}

function mdUs(us: number): string {
  if (us < 1000) return `${us.toFixed(0)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const pct = (x: number | null, digits: number): string => (x === null ? '' : `${(x * 100).toFixed(digits)}%`);

/** The summary as a Markdown table (one row per path), in readable units like the terminal report. */
export function renderBenchMarkdown(doc: BenchDocument): string {
  const bare = isBareRelayMode(doc.parameters.mode);
  const head = ['path', 'throughput (dgram/s)', 'Mbit/s', 'relative', 'p50', 'p90', 'p99', 'max', 'loss', bare ? 'CPU relay-front' : 'CPU connect', bare ? 'CPU relay-back' : 'CPU serve'];
  const align = [':---', ...head.slice(1).map(() => '---:')];
  const cells = (r: BenchSummaryRow): string[] => {
    const spread = r.runs > 1;
    const rel = r.relativeThroughput;
    return [
      r.path,
      spread ? `${int(r.throughputDps.mean)} ± ${int(r.throughputDps.stddev)}` : int(r.throughputDps.mean),
      spread ? `${r.throughputMbps.mean.toFixed(1)} ± ${r.throughputMbps.stddev.toFixed(1)}` : r.throughputMbps.mean.toFixed(1),
      rel === null ? '' : r.path === 'direct' ? '1.00' : spread ? `${rel.mean.toFixed(2)} ± ${rel.stddev.toFixed(2)}` : rel.mean.toFixed(2),
      mdUs(r.latencyP50Us),
      mdUs(r.latencyP90Us),
      mdUs(r.latencyP99Us),
      mdUs(r.latencyMaxUs),
      pct(r.lossRatio, 3),
      pct(r.connectCpu, 0),
      pct(r.serveCpu, 0),
    ];
  };
  const line = (c: string[]): string => `| ${c.join(' | ')} |`;
  return `${[line(head), line(align), ...benchSummaryRows(doc).map((r) => line(cells(r)))].join('\n')}\n`;
}

/** Where `--csv` and `--markdown` go: a file, `-` for stdout, or nowhere. */
export interface BenchExports {
  csv: string | undefined;
  markdown: string | undefined;
  /** One of them writes to stdout (the human report then goes to stderr). */
  toStdout: boolean;
}

/** Checks `--csv` / `--markdown` before the bench starts: stdout can take one export, and none next to --json. */
export function benchExports(csv: string | undefined, markdown: string | undefined, json: boolean): BenchExports {
  for (const [flag, v] of [
    ['--csv', csv],
    ['--markdown', markdown],
  ] as const) {
    if (v === '') throw new UsageError(`${flag} needs a file name (or - for stdout)`);
    if (v !== undefined && v !== '-') {
      // Found out now rather than after the whole bench ran.
      try {
        accessSync(dirname(v), constants.W_OK);
      } catch {
        throw new UsageError(`${flag} ${v}: cannot write to directory ${dirname(v)}`);
      }
    }
  }
  if (csv === '-' && markdown === '-') throw new UsageError('--csv - and --markdown - cannot both write to stdout');
  const toStdout = csv === '-' || markdown === '-';
  if (toStdout && json) throw new UsageError(`${csv === '-' ? '--csv' : '--markdown'} - cannot share stdout with --json's events`);
  return { csv, markdown, toStdout };
}

/** Writes the exports of a finished bench. */
export function writeBenchExports(e: BenchExports, doc: BenchDocument): void {
  for (const [target, render] of [
    [e.csv, renderBenchCsv],
    [e.markdown, renderBenchMarkdown],
  ] as const) {
    if (target === undefined) continue;
    const text = render(doc);
    if (target === '-') process.stdout.write(text);
    else writeFileSync(target, text);
  }
}
