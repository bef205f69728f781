import type { BenchDocument, PathResult } from '../../bench/report.js';
import { LATENCY_BUCKETS_PER_OCTAVE } from '../../bench/stats.js';
import type { NumberSummary } from '../../bench/stats.js';
import { color } from '../color.js';
import { firstThatFits, wrapText } from './width.js';

/** Most rows the latency histogram draws; finer buckets are merged into rows of whole multiples. */
export const HISTOGRAM_MAX_ROWS = 12;

/** A histogram row: latencies in [fromUs, toUs) and each path's share of its replies there (0..1). */
export interface HistogramRow {
  fromUs: number;
  toUs: number;
  shares: { direct: number | null; tunnel: number };
}

/** The document's log buckets as `index -> count`, summed over every run of one path. */
function bucketCounts(results: readonly PathResult[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const r of results) {
    for (const b of r.latencyBuckets ?? []) {
      // fromUs is 2^(index/perOctave) rounded to 0.01 µs: rounding the log recovers the index exactly.
      const i = Math.round(Math.log2(b.fromUs) * LATENCY_BUCKETS_PER_OCTAVE);
      m.set(i, (m.get(i) ?? 0) + b.count);
    }
  }
  return m;
}

/**
 * Merges the runs' latency buckets into at most `maxRows` rows spanning both paths' lowest to highest bucket, each
 * row a whole number of buckets (so rows are equal steps on a log scale). Empty when no latency was recorded.
 */
export function histogramRows(doc: BenchDocument, maxRows = HISTOGRAM_MAX_ROWS): HistogramRow[] {
  const tunnel = bucketCounts(doc.runs.map((r) => r.tunnel));
  const directResults = doc.runs.flatMap((r) => (r.direct ? [r.direct] : []));
  const direct = directResults.length > 0 ? bucketCounts(directResults) : null;
  const indices = [...tunnel.keys(), ...(direct ? direct.keys() : [])];
  if (indices.length === 0) return [];
  const lo = Math.min(...indices);
  const hi = Math.max(...indices);
  const per = Math.max(1, Math.ceil((hi - lo + 1) / Math.max(1, maxRows)));
  const total = (m: Map<number, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
  const tunnelTotal = total(tunnel);
  const directTotal = direct ? total(direct) : 0;
  const rows: HistogramRow[] = [];
  for (let start = lo; start <= hi; start += per) {
    let t = 0;
    let d = 0;
    for (let i = start; i < start + per; i++) {
      t += tunnel.get(i) ?? 0;
      d += direct?.get(i) ?? 0;
    }
    rows.push({
      fromUs: 2 ** (start / LATENCY_BUCKETS_PER_OCTAVE),
      toUs: 2 ** ((start + per) / LATENCY_BUCKETS_PER_OCTAVE),
      shares: { direct: direct ? (directTotal > 0 ? d / directTotal : 0) : null, tunnel: tunnelTotal > 0 ? t / tunnelTotal : 0 },
    });
  }
  return rows;
}

/** A latency bound for a histogram label: three significant digits, `µs`, `ms` or `s`. */
export function fmtBound(us: number): string {
  const three = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  if (us < 1000) return `${us.toFixed(0)} µs`;
  if (us < 1_000_000) return `${three(us / 1000)} ms`;
  return `${three(us / 1_000_000)} s`;
}

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** A horizontal bar of `fraction` (0..1) of `width` columns, in eighths of a column; a non-zero share shows at least ▏. */
export function bar(fraction: number, width: number): string {
  const eighths = Math.round(Math.max(0, Math.min(1, fraction)) * width * 8);
  const shown = fraction > 0 && eighths === 0 ? 1 : eighths;
  return '█'.repeat(Math.floor(shown / 8)) + EIGHTHS[shown % 8]!;
}

/** A share as a percentage for the histogram: `34.1%`, `<0.1%` for a sliver, blank for none. */
function fmtShare(share: number): string {
  if (share <= 0) return '';
  if (share < 0.0005) return '<0.1%';
  return `${(share * 100).toFixed(1)}%`;
}

/**
 * The round-trip latency histogram (like oha's and wrk2's latency distribution): one row per latency range, a bar
 * per path scaled to the largest share, direct and tunnel side by side when `width` allows, else one after the
 * other. `tunnelLabel` names the tunnel path ('relay' in bare-relay mode). Empty string when nothing was recorded.
 */
export function renderLatencyHistogram(doc: BenchDocument, width: number, tunnelLabel = 'tunnel'): string {
  const rows = histogramRows(doc);
  if (rows.length === 0) return '';
  const c = color();
  const hasDirect = rows[0]!.shares.direct !== null;
  const fromWidth = Math.max(...rows.map((r) => fmtBound(r.fromUs).length));
  const toWidth = Math.max(...rows.map((r) => fmtBound(r.toUs).length));
  const labels = rows.map((r) => `${fmtBound(r.fromUs).padStart(fromWidth)} – ${fmtBound(r.toUs).padStart(toWidth)}`);
  const labelWidth = Math.max(...labels.map((l) => l.length));
  const maxShare = Math.max(...rows.flatMap((r) => [r.shares.tunnel, r.shares.direct ?? 0]), Number.MIN_VALUE);
  const pctWidth = 6;
  const title = wrapText(c.bold(`round-trip latency, share of each path's replies (${doc.runs.length} run${doc.runs.length === 1 ? '' : 's'})`), width);
  const cell = (share: number, barWidth: number, paint: (s: string) => string): string =>
    `${paint(bar(share / maxShare, barWidth).padEnd(barWidth))} ${fmtShare(share).padStart(pctWidth)}`;
  const paths = hasDirect ? (['direct', 'tunnel'] as const) : (['tunnel'] as const);
  const paint = { direct: c.blue, tunnel: c.magenta };
  const name = (p: 'direct' | 'tunnel'): string => (p === 'tunnel' ? tunnelLabel : p);
  const sideBySide = (): string | null => {
    // label │ cell │ cell, every cell the same width.
    const barWidth = Math.floor((width - labelWidth - 2 - paths.length * (3 + 1 + pctWidth)) / paths.length);
    if (barWidth < 8) return null;
    const head = `${' '.repeat(labelWidth)} ${paths.map((p) => `│ ${name(p).padEnd(barWidth + 1 + pctWidth)}`).join(' ')}`.trimEnd();
    const lines = rows.map((r, i) => `${labels[i]!} ${paths.map((p) => `│ ${cell(r.shares[p] ?? 0, barWidth, paint[p])}`).join(' ')}`.trimEnd());
    return [title, head, ...lines].join('\n');
  };
  const stacked = (): string => {
    const barWidth = Math.max(4, width - labelWidth - 3 - 1 - pctWidth);
    const blocks = paths.map((p) => [`  ${name(p)}`, ...rows.map((r, i) => `${labels[i]!} │ ${cell(r.shares[p] ?? 0, barWidth, paint[p])}`.trimEnd())].join('\n'));
    return [title, ...blocks].join('\n');
  };
  return firstThatFits(width, [sideBySide, stacked]);
}

function fmtRatioSpread(s: NumberSummary | null | undefined): string {
  if (!s || s.n === 0) return '-';
  return s.n > 1 ? `${s.mean.toFixed(2)}× ± ${s.stddev.toFixed(2)}` : `${s.mean.toFixed(2)}×`;
}

/**
 * The headline: tunnel / direct for throughput, p50 and p99 latency (mean ± stddev of the per-run ratios) with the
 * two paths' means beside each; without a direct path, the tunnel's own numbers. `fmtDps` and `fmtUs` format values.
 */
export function renderHeadline(
  doc: BenchDocument,
  tunnelLabel: string,
  fmt: { dps: (v: number) => string; us: (v: number) => string },
): string {
  const c = color();
  const s = doc.summary;
  const n = doc.runs.length;
  const over = `${n} run${n === 1 ? '' : 's'}`;
  if (!s.direct || !s.ratio) {
    const t = s.tunnel;
    return c.bold(
      `${tunnelLabel} only, ${over}: ${fmt.dps(t.throughputDps.mean)} dgram/s, p50 ${fmt.us(t.latencyP50Us.mean)}, p99 ${fmt.us(t.latencyP99Us.mean)}`,
    );
  }
  const rows: [string, NumberSummary | null, string, string][] = [
    ['throughput', s.ratio.throughputDps, `${fmt.dps(s.tunnel.throughputDps.mean)} vs ${fmt.dps(s.direct.throughputDps.mean)} dgram/s`, 'higher is better'],
    ['p50 latency', s.ratio.latencyP50Us, `${fmt.us(s.tunnel.latencyP50Us.mean)} vs ${fmt.us(s.direct.latencyP50Us.mean)}`, 'lower is better'],
    ['p99 latency', s.ratio.latencyP99Us, `${fmt.us(s.tunnel.latencyP99Us.mean)} vs ${fmt.us(s.direct.latencyP99Us.mean)}`, 'lower is better'],
  ];
  const ratios = rows.map((r) => fmtRatioSpread(r[1]));
  const rw = Math.max(...ratios.map((r) => r.length));
  const lines = rows.map((r, i) => `  ${r[0].padEnd(11)}  ${c.bold(ratios[i]!.padEnd(rw))}  ${c.dim(`${r[2]} (${r[3]})`)}`);
  const spread = n > 1 ? 'mean ± stddev over' : 'over';
  return [c.bold(`${tunnelLabel} / direct, ${spread} ${over}:`), ...lines].join('\n');
}
