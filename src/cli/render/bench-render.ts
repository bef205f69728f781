import Table from 'cli-table3';
import type { BenchEvent } from '../../bench/harness.js';
import { benchMode, isBareRelayMode, isExposeMode } from '../../bench/modes.js';
import { compressedShare } from '../../bench/report.js';
import type { BenchDocument, BenchEnvironment, BenchParameters, PathResult, SummaryMetric } from '../../bench/report.js';
import type { NumberSummary } from '../../bench/stats.js';
import { color } from '../color.js';
import { renderHeadline, renderLatencyHistogram } from './bench-histogram.js';
import { firstThatFits, outputWidth, packParts, wrapText } from './width.js';

/** `1234567` -> `1,234,567`. */
export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Microseconds in the unit that reads best: `85 µs`, `1.25 ms`, `2.10 s`. */
export function fmtUs(us: number): string {
  const a = Math.abs(us);
  if (a < 1000) return `${us.toFixed(0)} µs`;
  if (a < 1_000_000) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** Bytes as KiB / MiB. */
export function fmtBytes(b: number): string {
  const a = Math.abs(b);
  if (a < 1024) return `${b.toFixed(0)} B`;
  if (a < 1024 * 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${(b / (1024 * 1024)).toFixed(1)} MiB`;
}

/** A 0..1 fraction as a percentage. */
export function fmtPct(x: number, digits = 2): string {
  return `${(x * 100).toFixed(digits)}%`;
}

function fmtMetric(metric: SummaryMetric, v: number): string {
  switch (metric) {
    case 'throughputDps':
      return fmtInt(v);
    case 'throughputMbps':
      return v.toFixed(1);
    case 'lossRatio':
      return fmtPct(v, 3);
    default:
      return fmtUs(v);
  }
}

function fmtSummary(metric: SummaryMetric, s: NumberSummary, spread = s.n > 1): string {
  if (s.n === 0) return '-';
  const main = spread || s.n > 1 ? `${fmtMetric(metric, s.mean)} ± ${fmtMetric(metric, s.stddev)}` : fmtMetric(metric, s.mean);
  return s.n > 1 ? `${main}\n${color().dim(`${fmtMetric(metric, s.min)} .. ${fmtMetric(metric, s.max)}`)}` : main;
}

function fmtRatio(s: NumberSummary | null | undefined): string {
  if (!s || s.n === 0) return '-';
  return s.n > 1 ? `${s.mean.toFixed(3)} ± ${s.stddev.toFixed(3)}` : s.mean.toFixed(3);
}

/** True when a bench ran the bare relays (a reference floor, not a tunnel) in serve's and connect's places. */
export const isBareRelay = isBareRelayMode;

/** The line that keeps a reader from taking the bare-relay numbers for a tunnel's. */
export const BARE_RELAY_NOTE = 'note: bare-relay is a reference floor, not a tunnel: two bare Node relays, TCP per peer, no HTTP';

/**
 * What the report calls the measured path, the two components, a generator flow and the socket the load enters at
 * (with a bound tunnel: serve's public port, and each flow a remote peer of that one tunnel).
 */
function names(mode: string): { path: string; connect: string; serve: string; session: string; entry: string } {
  if (isBareRelay(mode)) return { path: 'relay', connect: 'relay-front', serve: 'relay-back', session: 'session', entry: "relay-front's UDP socket" };
  if (isExposeMode(mode)) return { path: 'tunnel', connect: 'connect', serve: 'serve', session: 'remote peer', entry: "serve's public UDP port" };
  return { path: 'tunnel', connect: 'connect', serve: 'serve', session: 'session', entry: "connect's UDP socket" };
}

function describeLoad(doc: BenchDocument): string {
  const l = doc.parameters.load;
  return l.kind === 'rate' ? `open loop ${fmtInt(l.rate)} datagrams/s` : `closed loop ${l.inflight} in flight per ${names(doc.parameters.mode).session}`;
}

/** The header: parameters, Node version, CPUs and udp-tunnel version, wrapped to `width`. */
export function renderHeader(p: BenchParameters, env: BenchEnvironment, version: string, width: number = outputWidth()): string {
  const c = color();
  const n = names(p.mode);
  const load = p.load.kind === 'rate' ? `open loop ${fmtInt(p.load.rate)} datagrams/s` : `closed loop, ${p.load.inflight} in flight per ${n.session}`;
  const bare = isBareRelay(p.mode);
  const mode = p.postPath !== null ? `${p.mode} ${p.postPath}` : p.mode;
  const wire = benchMode(p.mode).http1 === true ? (p.tls ? 'TLS HTTP/1.1' : 'cleartext HTTP/1.1') : p.tls ? 'TLS h2' : 'h2c';
  const path =
    p.proxy !== null
      ? `external proxy ${p.proxy} -> ${p.target}, ${mode}`
      : bare
        ? `bare-relay (${p.tls ? 'TLS over TCP' : 'plain TCP'}, no HTTP) on ${p.host}, ${p.isolation} isolation`
        : `${mode} (${wire}) on ${p.host}, ${p.isolation} isolation` +
          (isExposeMode(p.mode) ? `, peers -> serve's public port -> ${wire} -> connect --expose -> echo` : '');
  const sessions = `${p.sessions} ${n.session}${p.sessions === 1 ? '' : 's'}${isExposeMode(p.mode) ? ' on one bound tunnel' : ''}`;
  return [
    c.bold(`udp-tunnel ${version} bench`) + c.dim(` · Node ${env.node} · ${env.cpus} CPUs (${env.cpuModel}) · ${env.platform} ${env.arch}`),
    `  ${p.size}-byte datagrams, ${sessions}, ${load}`,
    `  ${p.runs} run${p.runs === 1 ? '' : 's'} of ${p.direct ? `direct + ${n.path}` : `${n.path} only`}, each ${p.warmupMs} ms warmup + ${p.durationMs} ms measured`,
    `  ${n.path}: ${path}`,
    ...(bare ? [`  ${c.yellow(BARE_RELAY_NOTE)}`] : []),
  ]
    .map((l) => wrapText(l, width, '    '))
    .join('\n');
}

/** With a bound tunnel: how many remote peers it carried and the share of datagrams on compressed contexts. */
function boundTunnelLine(doc: BenchDocument): string | null {
  const connect = doc.components.find((x) => x.role === 'connect');
  const share = compressedShare(connect);
  const peers = connect?.counters?.['peersTotal'];
  if (share === null || typeof peers !== 'number') return null;
  const pct = (x: number | null): string => (x === null ? 'n/a' : fmtPct(x, 1));
  return `bound tunnel: ${fmtInt(peers)} remote peers over the whole bench; on compressed contexts: ${pct(share.rx)} of datagrams from peers, ${pct(share.tx)} of replies`;
}

/** One line for the spinner or the log; `tunnelLabel` names the tunnel path ('relay' in bare-relay mode). */
export function renderEvent(e: BenchEvent, tunnelLabel = 'tunnel'): string | null {
  const label = (path: string): string => (path === 'tunnel' ? tunnelLabel : path);
  switch (e.type) {
    case 'starting':
      return `starting ${e.what}`;
    case 'run-start':
      return `run ${e.run}/${e.runs} ${label(e.path)}: starting`;
    case 'progress': {
      const s = e.snapshot;
      const phase = s.phase === 'warmup' ? 'warming up' : s.phase === 'drain' ? 'draining' : 'measuring';
      return `run ${e.run}/${e.runs} ${label(e.path)}: ${phase} · ${fmtInt(s.recentDps)} dgram/s · p50 ${fmtUs(s.latencyP50Us)} · p99 ${fmtUs(s.latencyP99Us)} · ${fmtInt(s.received)}/${fmtInt(s.sent)} back`;
    }
    case 'run-end':
      return `run ${e.run}/${e.runs} ${label(e.path)}: ${fmtInt(e.result.throughputDps)} dgram/s, p50 ${fmtUs(e.result.latencyUs.p50)}, p99 ${fmtUs(e.result.latencyUs.p99)}, loss ${fmtPct(e.result.lossRatio, 3)}`;
    case 'idle-sessions':
      return `opening ${fmtInt(e.sessions)} idle sessions to measure their memory`;
    case 'stopping':
      return 'stopping';
    default:
      return null;
  }
}

/** Columns of the per-run table, widest layout first; `run` and `path` are in every layout. */
const RUN_COLUMNS: { head: string; cell: (r: PathResult) => string }[] = [
  { head: 'sent', cell: (r) => fmtInt(r.sent) },
  { head: 'received', cell: (r) => fmtInt(r.received) },
  { head: 'loss', cell: (r) => fmtPct(r.lossRatio, 3) },
  { head: 'reordered', cell: (r) => fmtInt(r.outOfOrder) },
  { head: 'dup', cell: (r) => fmtInt(r.duplicates) },
  { head: 'jitter', cell: (r) => fmtUs(r.jitterUs) },
  { head: 'dgram/s', cell: (r) => fmtInt(r.throughputDps) },
  { head: 'Mbit/s', cell: (r) => r.throughputMbps.toFixed(1) },
  { head: 'p50', cell: (r) => fmtUs(r.latencyUs.p50) },
  { head: 'p90', cell: (r) => fmtUs(r.latencyUs.p90) },
  { head: 'p99', cell: (r) => fmtUs(r.latencyUs.p99) },
  { head: 'p99.9', cell: (r) => fmtUs(r.latencyUs.p999) },
  { head: 'max', cell: (r) => fmtUs(r.latencyUs.max) },
];

/** Per-run table layouts, widest first: the columns each keeps. */
const RUN_LAYOUTS: readonly (readonly string[])[] = [
  RUN_COLUMNS.map((c) => c.head),
  ['sent', 'loss', 'reordered', 'dup', 'jitter', 'dgram/s', 'Mbit/s', 'p50', 'p90', 'p99', 'max'],
  ['sent', 'loss', 'dgram/s', 'Mbit/s', 'p50', 'p90', 'p99', 'max'],
  ['loss', 'dgram/s', 'p50', 'p99', 'max'],
  ['dgram/s', 'p50', 'p99'],
];

const TABLE_STYLE = { head: [] as string[], border: [] as string[] };
/** cli-table3 characters without the rule between body rows: one line per row. */
const COMPACT_CHARS = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

function runsTable(doc: BenchDocument, pathName: string, columns: readonly string[]): string {
  const cols = RUN_COLUMNS.filter((c) => columns.includes(c.head));
  const t = new Table({ head: ['run', 'path', ...cols.map((c) => c.head)], style: TABLE_STYLE, chars: COMPACT_CHARS });
  for (const r of doc.runs) {
    if (r.direct) t.push([String(r.index), 'direct', ...cols.map((c) => c.cell(r.direct!))]);
    t.push([String(r.index), pathName, ...cols.map((c) => c.cell(r.tunnel))]);
  }
  return t.toString();
}

/** The narrowest per-run layout: one line per run and path. */
function runsStacked(doc: BenchDocument, pathName: string): string {
  const line = (i: number, path: string, r: PathResult): string =>
    `${i} ${path}: ${fmtInt(r.throughputDps)} dgram/s, loss ${fmtPct(r.lossRatio, 2)}, p50 ${fmtUs(r.latencyUs.p50)}, p99 ${fmtUs(r.latencyUs.p99)}`;
  return doc.runs.flatMap((r) => [...(r.direct ? [line(r.index, 'direct', r.direct)] : []), line(r.index, pathName, r.tunnel)]).join('\n');
}

const SUMMARY_ROWS: [SummaryMetric, string, string][] = [
  ['throughputDps', 'throughput, dgram/s', 'dgram/s'],
  ['throughputMbps', 'throughput, Mbit/s', 'Mbit/s'],
  ['lossRatio', 'loss', 'loss'],
  ['jitterUs', 'jitter (RFC 3550)', 'jitter'],
  ['latencyP50Us', 'round trip p50', 'p50'],
  ['latencyP90Us', 'round trip p90', 'p90'],
  ['latencyP99Us', 'round trip p99', 'p99'],
  ['latencyP999Us', 'round trip p99.9', 'p99.9'],
  ['latencyMaxUs', 'round trip max', 'max'],
];

function summaryTable(doc: BenchDocument, pathName: string, opts: { range: boolean; short: boolean }): string {
  const s = doc.summary;
  const head = ['metric', ...(s.direct ? ['direct'] : []), pathName, ...(s.ratio ? [opts.short ? 'ratio' : `${pathName} / direct`] : [])];
  const t = new Table({ head, style: TABLE_STYLE, chars: opts.range ? {} : COMPACT_CHARS });
  const cell = (k: SummaryMetric, v: NumberSummary): string => (opts.range ? fmtSummary(k, v) : fmtSummary(k, { ...v, n: Math.min(v.n, 1) }, v.n > 1));
  for (const [k, label, short] of SUMMARY_ROWS) {
    t.push([opts.short ? short : label, ...(s.direct ? [cell(k, s.direct[k])] : []), cell(k, s.tunnel[k]), ...(s.ratio ? [fmtRatio(s.ratio[k])] : [])]);
  }
  return t.toString();
}

/** The narrowest summary layout: one line per metric. */
function summaryStacked(doc: BenchDocument, pathName: string): string {
  const s = doc.summary;
  return SUMMARY_ROWS.map(([k, , short]) => {
    const parts = [...(s.direct ? [`direct ${fmtSummary(k, { ...s.direct[k], n: 1 })}`] : []), `${pathName} ${fmtSummary(k, { ...s.tunnel[k], n: 1 })}`];
    const r = s.ratio?.[k];
    if (r && r.n > 0) parts.push(`×${r.mean.toFixed(2)}`);
    return `${short}: ${parts.join(', ')}`;
  }).join('\n');
}

/**
 * The report: the tunnel / direct headline, the latency histogram, the summary and per-run tables, then the
 * resource, memory, warning and fail-if lines, all within `width` columns (tables switch to narrower layouts).
 */
export function renderReport(doc: BenchDocument, width: number = outputWidth()): string {
  const c = color();
  const out: string[] = [];
  const n = names(doc.parameters.mode);
  out.push(renderHeadline(doc, n.path, { dps: fmtInt, us: fmtUs }));
  const histogram = renderLatencyHistogram(doc, width, n.path);
  if (histogram !== '') out.push('', histogram);

  out.push('', c.bold(`summary over ${doc.runs.length} run${doc.runs.length === 1 ? '' : 's'} (mean ± stddev, min .. max); ${describeLoad(doc)}`));
  out.push(
    firstThatFits(width, [
      () => summaryTable(doc, n.path, { range: true, short: false }),
      () => summaryTable(doc, n.path, { range: false, short: false }),
      () => summaryTable(doc, n.path, { range: false, short: true }),
      () => summaryStacked(doc, n.path),
    ]),
  );
  out.push(c.bold('runs'));
  out.push(firstThatFits(width, [...RUN_LAYOUTS.map((cols) => () => runsTable(doc, n.path, cols)), () => runsStacked(doc, n.path)]));
  const s = doc.summary;
  if (s.addedLatencyUs) {
    const a = s.addedLatencyUs;
    out.push(`added by the ${n.path === 'tunnel' ? 'tunnel' : 'relays'}: p50 ${fmtUs(a.p50.mean)}, p90 ${fmtUs(a.p90.mean)}, p99 ${fmtUs(a.p99.mean)} (mean over runs)`);
  }
  const busy = (role: 'serve' | 'connect'): string | null => {
    const vals = doc.runs.map((r) => r.resources[role]?.busyFraction).filter((x): x is number => typeof x === 'number');
    if (vals.length === 0) return null;
    const rss = doc.runs.map((r) => r.resources[role]?.rssMaxBytes).filter((x): x is number => typeof x === 'number');
    return `${n[role]} ${fmtPct(vals.reduce((a, b) => a + b, 0) / vals.length, 0)} of a core${rss.length ? `, RSS up to ${fmtBytes(Math.max(...rss))}` : ''}`;
  };
  const benchBusy = doc.runs.reduce((a, r) => a + r.resources.benchBusyFraction, 0) / Math.max(1, doc.runs.length);
  const parts = [busy('connect'), busy('serve'), `bench process (generator, echo) ${fmtPct(benchBusy, 0)}`].filter((x) => x !== null);
  out.push(packParts(`during ${n.path} runs: `, parts, width));
  const drops = doc.components
    .map((x) => {
      const nonZero = Object.entries(x.drops).filter(([, v]) => v > 0);
      return nonZero.length > 0 ? `${n[x.role]} ${nonZero.map(([k, v]) => `${k}=${fmtInt(v)}`).join(' ')}` : null;
    })
    .filter((x) => x !== null);
  const kernel = doc.runs.reduce((a, r) => a + (r.kernelUdpDrops?.rcvbufErrors ?? 0) + (r.kernelUdpDrops?.sndbufErrors ?? 0), 0);
  const entry = doc.runs.reduce((a, r) => a + (r.connectSocketDrops ?? 0), 0);
  const kernelParts = [
    ...(entry > 0 ? [`at ${n.entry} (receive buffer full) ${fmtInt(entry)}`] : []),
    ...(kernel > 0 ? [`kernel UDP buffers, system-wide ${fmtInt(kernel)}`] : []),
  ];
  if (drops.length > 0 || kernelParts.length > 0) out.push(c.yellow(packParts('dropped: ', [...drops, ...kernelParts], width)));
  const bound = isExposeMode(doc.parameters.mode) ? boundTunnelLine(doc) : null;
  if (bound !== null) out.push(bound);
  const idle = doc.idleSessionMemory;
  if (idle) {
    const noun = n.session === 'session' ? 'session' : 'peer';
    const per = (x: { bytesPerSession: number | null }): string => (x.bytesPerSession === null ? 'n/a' : `${fmtBytes(x.bytesPerSession)}/${noun}`);
    const what = n.session === 'session' ? 'idle sessions' : `idle ${n.session}s of one bound tunnel`;
    out.push(
      `memory of ${fmtInt(idle.answered)}/${fmtInt(idle.sessions)} ${what} (RSS growth over the last half): ${n.connect} ${per(idle.connect)}` +
        (doc.components.some((x) => x.role === 'serve') ? `, ${n.serve} ${per(idle.serve)}` : ''),
    );
  }
  for (const w of doc.warnings) out.push(c.yellow(`warning: ${w.message}`));
  if (isBareRelay(doc.parameters.mode)) out.push(c.yellow(BARE_RELAY_NOTE));
  if (doc.failIf) {
    if (doc.failIf.passed) out.push(c.green(`--fail-if ${doc.failIf.spec}: passed`));
    for (const f of doc.failIf.failures) out.push(c.red(`--fail-if: ${f.condition} holds (actual ${f.actual})`));
  }
  return wrapText(out.join('\n'), width);
}
