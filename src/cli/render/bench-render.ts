import Table from 'cli-table3';
import type { BenchEvent } from '../../bench/harness.js';
import { benchMode, isBareRelayMode } from '../../bench/modes.js';
import type { BenchDocument, BenchEnvironment, BenchParameters, PathResult, SummaryMetric } from '../../bench/report.js';
import type { NumberSummary } from '../../bench/stats.js';
import { color } from '../color.js';

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

function fmtSummary(metric: SummaryMetric, s: NumberSummary): string {
  if (s.n === 0) return '-';
  const main = `${fmtMetric(metric, s.mean)} ± ${fmtMetric(metric, s.stddev)}`;
  return s.n > 1 ? `${main}\n${color().dim(`${fmtMetric(metric, s.min)} .. ${fmtMetric(metric, s.max)}`)}` : main;
}

function fmtRatio(s: NumberSummary | null | undefined): string {
  if (!s || s.n === 0) return '-';
  return s.n > 1 ? `${s.mean.toFixed(3)} ± ${s.stddev.toFixed(3)}` : s.mean.toFixed(3);
}

/** True when a bench ran the bare relays (a reference floor, not a tunnel) in serve's and connect's places. */
export const isBareRelay = isBareRelayMode;

/** The line that keeps a reader from taking the bare-relay numbers for a tunnel's. */
export const BARE_RELAY_NOTE =
  'note: bare-relay is a reference floor, not a tunnel: two bare Node relays stand where connect and serve sit (one TCP connection per peer, 2-byte length-prefixed frames, no HTTP)';

/** What the report calls the measured path and the two components. */
function names(mode: string): { path: string; connect: string; serve: string } {
  return isBareRelay(mode) ? { path: 'relay', connect: 'relay-front', serve: 'relay-back' } : { path: 'tunnel', connect: 'connect', serve: 'serve' };
}

function describeLoad(doc: BenchDocument): string {
  const l = doc.parameters.load;
  return l.kind === 'rate' ? `open loop ${fmtInt(l.rate)} datagrams/s` : `closed loop ${l.inflight} in flight per session`;
}

/** The header: parameters, Node version, CPUs and udp-tunnel version. */
export function renderHeader(p: BenchParameters, env: BenchEnvironment, version: string): string {
  const c = color();
  const load = p.load.kind === 'rate' ? `open loop ${fmtInt(p.load.rate)} datagrams/s` : `closed loop, ${p.load.inflight} in flight per session`;
  const bare = isBareRelay(p.mode);
  const n = names(p.mode);
  const mode = p.postPath !== null ? `${p.mode} ${p.postPath}` : p.mode;
  const wire = benchMode(p.mode).http1 === true ? (p.tls ? 'TLS HTTP/1.1' : 'cleartext HTTP/1.1') : p.tls ? 'TLS h2' : 'h2c';
  const path =
    p.proxy !== null
      ? `external proxy ${p.proxy} -> ${p.target}, ${mode}`
      : bare
        ? `bare-relay (${p.tls ? 'TLS over TCP' : 'plain TCP'}, no HTTP) on ${p.host}, ${p.isolation} isolation`
        : `${mode} (${wire}) on ${p.host}, ${p.isolation} isolation`;
  return [
    c.bold(`udp-tunnel ${version} bench`) + c.dim(` · Node ${env.node} · ${env.cpus} CPUs (${env.cpuModel}) · ${env.platform} ${env.arch}`),
    `  ${p.size}-byte datagrams, ${p.sessions} session${p.sessions === 1 ? '' : 's'}, ${load}`,
    `  ${p.runs} run${p.runs === 1 ? '' : 's'} of ${p.direct ? `direct + ${n.path}` : `${n.path} only`}, each ${p.warmupMs} ms warmup + ${p.durationMs} ms measured`,
    `  ${n.path}: ${path}`,
    ...(bare ? [`  ${c.yellow(BARE_RELAY_NOTE)}`] : []),
  ].join('\n');
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

function runRow(index: number, path: string, r: PathResult): string[] {
  const l = r.latencyUs;
  return [
    String(index),
    path,
    fmtInt(r.sent),
    fmtInt(r.received),
    fmtPct(r.lossRatio, 3),
    fmtInt(r.outOfOrder),
    fmtInt(r.duplicates),
    fmtUs(r.jitterUs),
    fmtInt(r.throughputDps),
    r.throughputMbps.toFixed(1),
    fmtUs(l.p50),
    fmtUs(l.p90),
    fmtUs(l.p99),
    fmtUs(l.p999),
    fmtUs(l.max),
  ];
}

const TABLE_STYLE = { head: [] as string[], border: [] as string[] };

/** The per-run table, the summary table and the resource, memory, warning and fail-if lines. */
export function renderReport(doc: BenchDocument): string {
  const c = color();
  const out: string[] = [];
  const n = names(doc.parameters.mode);
  const runs = new Table({
    head: ['run', 'path', 'sent', 'received', 'loss', 'reordered', 'dup', 'jitter', 'dgram/s', 'Mbit/s', 'p50', 'p90', 'p99', 'p99.9', 'max'],
    style: TABLE_STYLE,
  });
  for (const r of doc.runs) {
    if (r.direct) runs.push(runRow(r.index, 'direct', r.direct));
    runs.push(runRow(r.index, n.path, r.tunnel));
  }
  out.push(runs.toString());

  const s = doc.summary;
  const head = ['metric', ...(s.direct ? ['direct'] : []), n.path, ...(s.ratio ? [`${n.path} / direct`] : [])];
  const sum = new Table({ head, style: TABLE_STYLE });
  const rows: [SummaryMetric, string][] = [
    ['throughputDps', 'throughput, dgram/s'],
    ['throughputMbps', 'throughput, Mbit/s'],
    ['lossRatio', 'loss'],
    ['jitterUs', 'jitter (RFC 3550)'],
    ['latencyP50Us', 'round trip p50'],
    ['latencyP90Us', 'round trip p90'],
    ['latencyP99Us', 'round trip p99'],
    ['latencyP999Us', 'round trip p99.9'],
    ['latencyMaxUs', 'round trip max'],
  ];
  for (const [k, label] of rows) {
    sum.push([label, ...(s.direct ? [fmtSummary(k, s.direct[k])] : []), fmtSummary(k, s.tunnel[k]), ...(s.ratio ? [fmtRatio(s.ratio[k])] : [])]);
  }
  out.push(c.bold(`summary over ${doc.runs.length} run${doc.runs.length === 1 ? '' : 's'} (mean ± stddev, min .. max); ${describeLoad(doc)}`));
  out.push(sum.toString());
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
  out.push(`during ${n.path} runs: ${parts.join('; ')}`);
  const drops = doc.components
    .map((x) => {
      const nonZero = Object.entries(x.drops).filter(([, v]) => v > 0);
      return nonZero.length > 0 ? `${n[x.role]} ${nonZero.map(([k, v]) => `${k}=${fmtInt(v)}`).join(' ')}` : null;
    })
    .filter((x) => x !== null);
  const kernel = doc.runs.reduce((a, r) => a + (r.kernelUdpDrops?.rcvbufErrors ?? 0) + (r.kernelUdpDrops?.sndbufErrors ?? 0), 0);
  const entry = doc.runs.reduce((a, r) => a + (r.connectSocketDrops ?? 0), 0);
  const kernelParts = [
    ...(entry > 0 ? [`at ${n.connect}'s UDP socket (receive buffer full) ${fmtInt(entry)}`] : []),
    ...(kernel > 0 ? [`kernel UDP buffers, system-wide ${fmtInt(kernel)}`] : []),
  ];
  if (drops.length > 0 || kernelParts.length > 0) out.push(c.yellow(`dropped: ${[...drops, ...kernelParts].join('; ')}`));
  const idle = doc.idleSessionMemory;
  if (idle) {
    const per = (x: { bytesPerSession: number | null }): string => (x.bytesPerSession === null ? 'n/a' : `${fmtBytes(x.bytesPerSession)}/session`);
    out.push(
      `memory of ${fmtInt(idle.answered)}/${fmtInt(idle.sessions)} idle sessions (RSS growth over the last half): ${n.connect} ${per(idle.connect)}` +
        (doc.components.some((x) => x.role === 'serve') ? `, ${n.serve} ${per(idle.serve)}` : ''),
    );
  }
  for (const w of doc.warnings) out.push(c.yellow(`warning: ${w.message}`));
  if (isBareRelay(doc.parameters.mode)) out.push(c.yellow(BARE_RELAY_NOTE));
  if (doc.failIf) {
    if (doc.failIf.passed) out.push(c.green(`--fail-if ${doc.failIf.spec}: passed`));
    for (const f of doc.failIf.failures) out.push(c.red(`--fail-if: ${f.condition} holds (actual ${f.actual})`));
  }
  return out.join('\n');
}
