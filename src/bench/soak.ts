import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { formatHostPort } from '../tunnel/address.js';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { ChurnLoad } from './churn-load.js';
import { startEchoInWorker } from './echo-server.js';
import type { EchoStats, EchoWorker } from './echo-server.js';
import { runLoadInWorker } from './generator.js';
import { benchEnvironment } from './harness.js';
import type { BenchEnvironment } from './report.js';
import type { LatencySummary } from './stats.js';
import { startStalledTarget } from './stalled-target.js';
import type { StalledTarget } from './stalled-target.js';
import { startComponent } from './tunnel-launcher.js';
import type { ComponentExit, ComponentSpec, TunnelComponent } from './tunnel-launcher.js';
import { isLoopback4Hex, readUdpSocketTable } from './udp-socket-table.js';
import type { UdpSocketRow } from './udp-socket-table.js';

/** Version tag of the soak's JSON document. */
export const SOAK_SCHEMA = 'udp-tunnel-soak/1';

/** Options of runSoak; everything has a default (see SOAK_DEFAULTS). */
export interface SoakOptions {
  /** Sending time, ms. */
  durationMs?: number;
  /** Datagrams/s offered to the echo path; absent: the capacity is measured first and `overload` times it is offered. */
  rate?: number;
  /** Multiple of the measured capacity to offer when `rate` is absent. */
  overload?: number;
  /** Length of the closed-loop capacity measurement, ms. */
  capacityMs?: number;
  /** UDP payload bytes per datagram. */
  size?: number;
  /** Local peers sending to the echo path at any time. */
  peers?: number;
  /** Echo-path peers replaced per second. */
  churnPerSecond?: number;
  /** Datagrams/s sent toward the target that does not read. */
  stalledRate?: number;
  /** Local peers sending toward the stalled target at any time (replaced at one per second). */
  stalledPeers?: number;
  /** When serve is killed (SIGKILL) and restarted on its port, ms after sending starts; null: never. */
  killAtMs?: number | null;
  /** connect's --idle-timeout, ms: sessions of peers that went away end after this long. */
  idleTimeoutMs?: number;
  /** Progress report period, ms (RSS and counters are sampled every second). */
  reportIntervalMs?: number;
  /** Wait for late replies after sending stops, ms. */
  drainMs?: number;
  /** A peer that stops sending keeps its socket this long for late replies, ms. */
  lingerMs?: number;
  /** After a restart, keep sending past durationMs until the first echo came back, at most this long, ms. */
  recoveryGraceMs?: number;
  /** RSS samples in the first this-many ms of a process's life are left out of its trend; default min(10 s, duration / 3). */
  rssSkipMs?: number;
  /** Extra Node options for the serve and connect processes (e.g. `--max-semi-space-size=16`). */
  nodeOptions?: readonly string[];
  /** Progress observer; exceptions it throws are ignored. */
  onEvent?: (e: SoakEvent) => void;
  /** Stops sending early; the document covers what ran and says `aborted`. */
  signal?: AbortSignal;
}

/** Defaults of runSoak. */
export const SOAK_DEFAULTS = {
  durationMs: 60_000,
  overload: 2,
  capacityMs: 3000,
  size: 256,
  peers: 16,
  churnPerSecond: 4,
  stalledRate: 1000,
  stalledPeers: 4,
  idleTimeoutMs: 5000,
  reportIntervalMs: 5000,
  drainMs: 2000,
  lingerMs: 3000,
  recoveryGraceMs: 15_000,
} as const;

/** Targets the soak reports against. */
export const SOAK_TARGETS = {
  /** Largest RSS slope (least squares, after the skipped start) still called flat, MB per minute. */
  rssSlopeMbPerMin: 1,
  /** Longest time from serve's restart to the first echo through the same connect, ms. */
  recoveryMs: 1000,
} as const;

/** The loopback address everything binds. */
const HOST = '127.0.0.1';
const SAMPLE_MS = 1000;
const MB = 1024 * 1024;

/** Which datagram path a count belongs to: peers -> connect -> serve -> echo and back, or -> the stalled target. */
export type SoakPath = 'echo' | 'stalled';

/** RSS of the three tunnel processes at one moment, bytes (null when unreadable). */
export interface SoakRssSample {
  /** Since sending started, ms. */
  tMs: number;
  serve: number | null;
  /** 1 before the kill, 2 after the restart. */
  serveIncarnation: number;
  connect: number | null;
  connectStalled: number | null;
}

/** A periodic progress report. */
export interface SoakProgress {
  tMs: number;
  rss: SoakRssSample;
  echo: { sent: number; echoed: number };
  stalled: { sent: number; targetQueueBytes: number | null };
  /** Drops counted so far by kind, per path (app counters from sessions closed so far; kernel counters live). */
  drops: Record<SoakPath, Record<string, number>>;
  /** Peer sockets open (echo path, stalled path). */
  peers: { echo: number; stalled: number };
}

/** Progress of a soak, for logs. */
export type SoakEvent =
  | { type: 'starting'; what: 'echo' | 'stalled-target' | 'serve' | 'connect' | 'connect-stalled' }
  | { type: 'capacity'; dps: number; measuredMs: number }
  | { type: 'ready'; parameters: SoakParameters; components: { role: string; pid: number | null; port: number }[] }
  | { type: 'progress'; progress: SoakProgress }
  | { type: 'kill'; tMs: number; pid: number | null }
  | { type: 'restarted'; tMs: number; pid: number | null; port: number; downMs: number }
  | { type: 'recovered'; tMs: number; recoveryMs: number }
  | { type: 'stopping'; tMs: number };

/** The parameters a soak ran with. */
export interface SoakParameters {
  durationMs: number;
  /** Datagrams/s offered to the echo path. */
  rate: number;
  /** Where `rate` came from: the --rate option, or `overload` times the measured capacity. */
  rateSource: 'option' | 'measured';
  /** Echoes/s the tunnel carried in the closed-loop measurement (null with --rate). */
  capacityDps: number | null;
  overload: number | null;
  size: number;
  peers: number;
  churnPerSecond: number;
  stalledRate: number;
  stalledPeers: number;
  killAtMs: number | null;
  idleTimeoutMs: number;
  drainMs: number;
  lingerMs: number;
  rssSkipMs: number;
  host: string;
  nodeOptions: readonly string[];
}

/** RSS trend of one process (or one serve incarnation). */
export interface RssTrend {
  /** First and last sample time used, ms since sending started. */
  fromMs: number | null;
  toMs: number | null;
  samples: number;
  minBytes: number | null;
  maxBytes: number | null;
  /** Least-squares slope of RSS over the samples after the skipped start, MB/min; null with fewer than 3 samples. */
  slopeMbPerMin: number | null;
  /** The same over the later half of those samples: RSS that grew in steps and then levelled off shows ~0 here. */
  lateSlopeMbPerMin: number | null;
}

/** Datagrams of one path, from sent to delivered, with every counted drop. */
export interface PathAccounting {
  /** Datagrams the peers handed to their sockets. */
  sent: number;
  /** sent over the sending time: the load actually offered (below the rate asked for when the sender fell behind). */
  sentPerSecond: number;
  /** Echo path: distinct datagrams echoed back to their peer. Stalled path: datagrams the target read once resumed. */
  delivered: number;
  /** Drops by counter: `kernel:*` from the sockets' drops column of /proc/net/udp, `connect:*` and `serve:*` from the session reports, `echo:*` and `peer:*` from the soak's own counters. */
  drops: Record<string, number>;
  countedDrops: number;
  /** sent - delivered - countedDrops. */
  unaccounted: number;
  /**
   * Datagrams lost with the killed serve: inside it at the kill (its sockets' queues, its TCP buffers and connect's
   * toward it), or dropped and counted only by the session counters that died with it. Null without a kill.
   * `estimate` is the unaccounted datagrams as far as `upperBound` allows (a run without a kill leaves none
   * unaccounted). `upperBound` = intoCutTunnels - droppedAtClosedSockets, from connect's reports of the sessions the
   * kill cut; it is loose by the echo socket's drops of those sessions' datagrams (counted, but not per session).
   */
  lostWithKilledServe: {
    estimate: number;
    upperBound: number;
    /** What went into the tunnels the kill cut and did not come back (echo path), or all that went in (stalled path). */
    intoCutTunnels: number;
    /** Of those, replies dropped (and counted) at serve's per-session sockets that the kill closed. */
    droppedAtClosedSockets: number;
  } | null;
  /** unaccounted - lostWithKilledServe.estimate: lost without any counter. The target is 0. */
  unexplained: number;
  /** Not sent at all (the peer's send queue was full, or the sender fell behind its schedule); not in `sent`. */
  notSent: number;
  duplicates: number;
  /** Echo path: round trip of the echoed datagrams from the moment each was sent, µs (queueing under overload shows here). */
  roundTripUs: LatencySummary | null;
}

/** The serve kill and restart. */
export interface SoakRestart {
  /** When serve got SIGKILL, ms since sending started. */
  killAtMs: number;
  /** From SIGKILL to the restarted serve's `listening` report, ms. */
  downMs: number;
  /** From the restarted serve's `listening` report to connect's first `session-ready` on the echo path (wall clocks, ms). */
  reconnectMs: number | null;
  /** From the restarted serve's `listening` report to the first echo (of a datagram sent after the kill) through the same connect, ms; null if none came. */
  recoveryMs: number | null;
  /** Longest silence of the echo path around the kill: last echo before it to first echo after it, ms. */
  echoGapMs: number | null;
  port: number;
  samePort: boolean;
  pidBefore: number | null;
  pidAfter: number | null;
}

/** What a tunnel process reported when it stopped. */
export interface SoakComponentReport {
  role: 'serve' | 'connect' | 'connect-stalled';
  incarnation: number;
  pid: number | null;
  port: number;
  /** Killed with SIGKILL by the soak (its open sessions' counters are lost). */
  killed: boolean;
  exitCode: number | null;
  counters: Record<string, unknown> | null;
}

/** The soak's result document (`--json`). */
export interface SoakDocument {
  schema: typeof SOAK_SCHEMA;
  startedAt: string;
  finishedAt: string;
  wallMs: number;
  aborted: boolean;
  environment: BenchEnvironment;
  parameters: SoakParameters;
  /** Sending time actually used (longer than durationMs when waiting for recovery), ms. */
  sendingMs: number;
  restart: SoakRestart | null;
  /** connect kept the same process from start to end. */
  connectStayedUp: boolean;
  rss: { samples: SoakRssSample[]; trend: { serve: RssTrend[]; connect: RssTrend; connectStalled: RssTrend } };
  accounting: { echo: PathAccounting; stalled: PathAccounting };
  /** Stalled target: receive buffer granted, bytes. */
  stalledTarget: { recvBufferBytes: number; read: number };
  echoServer: EchoStats | null;
  components: SoakComponentReport[];
  targets: {
    rssFlat: { limitMbPerMin: number; met: boolean | null };
    recovery: { limitMs: number; met: boolean | null };
    /** unexplained is 0 on both paths. */
    nothingLostUncounted: { met: boolean };
  };
}

/** Least-squares slope of y (bytes) over x (ms), in MB per minute; null with fewer than 3 points. */
export function slopeMbPerMin(points: readonly { x: number; y: number }[]): number | null {
  const n = points.length;
  if (n < 3) return null;
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    sx += p.x;
    sy += p.y;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  if (den === 0) return null;
  return ((num / den) * 60_000) / MB;
}

/** The trend of one series of samples, keeping those at or after `fromMs` (and before `toMs`). */
export function rssTrend(samples: readonly { tMs: number; bytes: number | null }[], fromMs: number, toMs = Infinity): RssTrend {
  const kept = samples.filter((s): s is { tMs: number; bytes: number } => s.bytes !== null && s.tMs >= fromMs && s.tMs < toMs);
  const bytes = kept.map((s) => s.bytes);
  return {
    fromMs: kept[0]?.tMs ?? null,
    toMs: kept[kept.length - 1]?.tMs ?? null,
    samples: kept.length,
    minBytes: bytes.length ? Math.min(...bytes) : null,
    maxBytes: bytes.length ? Math.max(...bytes) : null,
    slopeMbPerMin: slopeMbPerMin(kept.map((s) => ({ x: s.tMs, y: s.bytes }))),
    lateSlopeMbPerMin: slopeMbPerMin(kept.slice(Math.floor(kept.length / 2)).map((s) => ({ x: s.tMs, y: s.bytes }))),
  };
}

// Drop kinds of a connect session report: toward the proxy (the datagram never entered the tunnel) and back.
const CONNECT_INBOUND_DROPS = ['oversize', 'notReady', 'bufferOverflow', 'backpressure', 'unsent'] as const;
const CONNECT_REPLY_DROPS = ['sendQueue', 'replyFailed', 'contextId'] as const;
const SERVE_DROPS = ['dropBackpressure', 'dropOversize', 'dropContextId', 'dropUdpSend', 'dropSendQueue'] as const;

/** A wall-clock instant of an event as epoch ms: events write ISO 8601 strings (earlier versions epoch ms). */
function wallMs(v: unknown): number {
  return typeof v === 'string' ? Date.parse(v) : num(v);
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function add(into: Record<string, number>, key: string, n: number): void {
  if (n !== 0) into[key] = (into[key] ?? 0) + n;
}

/** Kernel drop counters of the sockets on both paths, per socket inode so that closed sockets keep their share. */
class KernelDropTracker {
  private readonly seen = new Map<number, { path: SoakPath; kind: string; base: number; last: number; rx: number; lastRead: number }>();
  private reads = 0;

  constructor(private readonly classify: (row: UdpSocketRow) => { path: SoakPath; kind: string } | null) {}

  /** Reads the table and returns the number of this read; with `baseline`, drops the sockets already had are not counted. */
  read(baseline = false): number {
    const n = ++this.reads;
    for (const row of readUdpSocketTable()) {
      const c = this.classify(row);
      if (c === null) continue;
      const e = this.seen.get(row.inode);
      if (e === undefined) this.seen.set(row.inode, { ...c, base: baseline ? row.drops : 0, last: row.drops, rx: row.rxQueueBytes, lastRead: n });
      else {
        e.last = Math.max(e.last, row.drops);
        e.rx = row.rxQueueBytes;
        e.lastRead = n;
      }
    }
    return n;
  }

  /** Drops per path of the sockets of one kind that read `n` saw and no later read did (they closed after it). */
  goneAfter(n: number, kind: string): Record<SoakPath, number> {
    const out: Record<SoakPath, number> = { echo: 0, stalled: 0 };
    for (const e of this.seen.values()) if (e.kind === kind && e.lastRead === n) out[e.path] += e.last - e.base;
    return out;
  }

  /** Drops per path and kind since the baseline. */
  totals(): Record<SoakPath, Record<string, number>> {
    const out: Record<SoakPath, Record<string, number>> = { echo: {}, stalled: {} };
    for (const e of this.seen.values()) add(out[e.path], e.kind, e.last - e.base);
    return out;
  }

  /** Receive-queue bytes last seen on the sockets of one kind. */
  rxQueue(path: SoakPath, kind: string): number | null {
    let found = false;
    let sum = 0;
    for (const e of this.seen.values()) {
      if (e.path === path && e.kind === kind) {
        found = true;
        sum += e.rx;
      }
    }
    return found ? sum : null;
  }
}

interface CutSession {
  path: SoakPath;
  rx: number;
  tx: number;
  inbound: number;
  reply: number;
}

function normalize(o: SoakOptions): Omit<SoakParameters, 'rate' | 'rateSource' | 'capacityDps' | 'overload'> & {
  rate: number | undefined;
  overload: number;
  capacityMs: number;
  reportIntervalMs: number;
  recoveryGraceMs: number;
} {
  const d = SOAK_DEFAULTS;
  const durationMs = o.durationMs ?? d.durationMs;
  const bad = (option: string, value: unknown, rule: string): UdpTunnelError =>
    new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${option} ${rule}, got ${String(value)}`, { option, value });
  const positive = (option: string, v: number): number => {
    if (!Number.isFinite(v) || v <= 0) throw bad(option, v, 'must be above 0');
    return v;
  };
  const whole = (option: string, v: number, min: number): number => {
    if (!Number.isInteger(v) || v < min) throw bad(option, v, `must be a whole number of at least ${min}`);
    return v;
  };
  positive('durationMs', durationMs);
  if (o.rate !== undefined) positive('rate', o.rate);
  const killAtMs = o.killAtMs === undefined ? Math.round(durationMs * 0.4) : o.killAtMs;
  if (killAtMs !== null && (!Number.isFinite(killAtMs) || killAtMs < 0 || killAtMs >= durationMs)) {
    throw bad('killAtMs', killAtMs, 'must lie within the duration');
  }
  return {
    durationMs,
    rate: o.rate,
    overload: positive('overload', o.overload ?? d.overload),
    capacityMs: positive('capacityMs', o.capacityMs ?? d.capacityMs),
    size: whole('size', o.size ?? d.size, 32),
    peers: whole('peers', o.peers ?? d.peers, 1),
    churnPerSecond: whole('churnPerSecond', o.churnPerSecond ?? d.churnPerSecond, 0),
    stalledRate: positive('stalledRate', o.stalledRate ?? d.stalledRate),
    stalledPeers: whole('stalledPeers', o.stalledPeers ?? d.stalledPeers, 1),
    killAtMs,
    idleTimeoutMs: positive('idleTimeoutMs', o.idleTimeoutMs ?? d.idleTimeoutMs),
    drainMs: o.drainMs ?? d.drainMs,
    lingerMs: o.lingerMs ?? d.lingerMs,
    rssSkipMs: o.rssSkipMs ?? Math.min(10_000, Math.round(durationMs / 3)),
    reportIntervalMs: positive('reportIntervalMs', o.reportIntervalMs ?? d.reportIntervalMs),
    recoveryGraceMs: o.recoveryGraceMs ?? d.recoveryGraceMs,
    host: HOST,
    nodeOptions: o.nodeOptions ?? [],
  };
}

/** Resolves after `ms`, or at once when `signal` is aborted. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Runs the soak: a UDP echo and a target that never reads (worker threads), serve and two connects (processes:
 * one toward the echo, one toward the stalled target) on 127.0.0.1; churning peers offer `rate` datagrams/s (by
 * default twice the capacity measured first) to the echo path and `stalledRate` to the stalled one for
 * `durationMs`; serve is killed with SIGKILL once and restarted on its port. Returns RSS samples and trends, the
 * restart's recovery time and the accounting of every datagram against the drop counters. Everything it started
 * is stopped before it returns or throws.
 */
export async function runSoak(options: SoakOptions = {}): Promise<SoakDocument> {
  const n = normalize(options);
  const signal = options.signal;
  const emit = (e: SoakEvent): void => {
    try {
      options.onEvent?.(e);
    } catch {
      // A failing observer must not break the soak.
    }
  };
  const startedAt = new Date();
  const loadStart = loadavg();
  const wall0 = performance.now();

  let echo: EchoWorker | null = null;
  let stalled: StalledTarget | null = null;
  let serve: TunnelComponent | null = null;
  let connect: TunnelComponent | null = null;
  let connectStalled: TunnelComponent | null = null;
  let echoLoad: ChurnLoad | null = null;
  let stalledLoad: ChurnLoad | null = null;
  let sampler: NodeJS.Timeout | null = null;
  const components: SoakComponentReport[] = [];

  // App counters from the components' reports, per path; sessions opened before sending started (the capacity
  // measurement's) are left out.
  let soakStartWallMs = Infinity;
  let killWallMs: number | null = null;
  const appDrops: Record<SoakPath, Record<string, number>> = { echo: {}, stalled: {} };
  const cut: CutSession[] = [];
  let serveListeningWallMs: number | null = null;
  let restartListenWallMs: number | null = null;
  let firstReadyAfterRestartWallMs: number | null = null;
  const onConnectEvent = (path: SoakPath) => (ev: Record<string, unknown>): void => {
    if (ev['event'] === 'session-ready') {
      const t = Date.parse(String(ev['time']));
      if (path === 'echo' && restartListenWallMs !== null && firstReadyAfterRestartWallMs === null && t >= restartListenWallMs) {
        firstReadyAfterRestartWallMs = t;
      }
      return;
    }
    if (ev['event'] !== 'session-close' || wallMs(ev['openedAt']) < soakStartWallMs) return;
    const drops = (ev['drops'] ?? {}) as Record<string, unknown>;
    for (const [k, v] of Object.entries(drops)) add(appDrops[path], `connect:${k}`, num(v));
    const opened = wallMs(ev['openedAt']);
    // Every session that ended after the kill and began before serve listened again: those the kill cut, and
    // those that only tried to connect while serve was down (these forward nothing, so they add nothing).
    if (killWallMs !== null && opened <= (restartListenWallMs ?? Infinity) && opened + num(ev['durationMs']) >= killWallMs - 1) {
      cut.push({
        path,
        rx: num(ev['rxDatagrams']),
        tx: num(ev['txDatagrams']),
        inbound: CONNECT_INBOUND_DROPS.reduce((s, k) => s + num(drops[k]), 0),
        reply: CONNECT_REPLY_DROPS.reduce((s, k) => s + num(drops[k]), 0),
      });
    }
  };
  let stalledPort = 0;
  let echoPort = 0;
  const onServeEvent = (ev: Record<string, unknown>): void => {
    if (ev['event'] === 'listening') {
      const t = Date.parse(String(ev['time']));
      serveListeningWallMs = Number.isFinite(t) ? t : Date.now();
      return;
    }
    if (ev['event'] !== 'session-close' || wallMs(ev['openedAt']) < soakStartWallMs) return;
    const target = String(ev['target'] ?? '');
    const path: SoakPath = target.endsWith(`:${stalledPort}`) ? 'stalled' : 'echo';
    for (const k of SERVE_DROPS) add(appDrops[path], `serve:${k}`, num(ev[k]));
  };

  let parameters: SoakParameters | null = null;
  let restart: SoakRestart | null = null;
  let aborted = false;
  let sendingMs = 0;
  let stalledRead = 0;
  let echoStats0: EchoStats | null = null;
  let echoStats: EchoStats | null = null;
  let recoveredEmitted = false;
  let lastEchoBeforeKillMs: number | null = null;
  let killPerfMs = 0;
  let tracker: KernelDropTracker | null = null;
  let killRead: number | null = null;
  const rssSamples: SoakRssSample[] = [];
  let serveIncarnation = 1;
  let t0 = 0;
  let connectPid: number | null = null;

  try {
    emit({ type: 'starting', what: 'echo' });
    echo = await startEchoInWorker({ host: HOST });
    echoPort = echo.address.port;
    emit({ type: 'starting', what: 'stalled-target' });
    // A modest buffer (the kernel doubles it, within net.core.rmem_max) fills within a second at the default rate.
    stalled = await startStalledTarget({ host: HOST, recvBufferBytes: 65536 });
    stalledPort = stalled.port;
    const echoTarget = formatHostPort(HOST, echoPort);
    const serveSpec = (port: number): ComponentSpec => ({
      role: 'serve',
      isolation: 'process',
      mode: 'connect-udp',
      host: HOST,
      port,
      target: echoTarget,
      nodeOptions: n.nodeOptions,
      onEvent: onServeEvent,
    });
    emit({ type: 'starting', what: 'serve' });
    serve = await startComponent(serveSpec(0));
    const proxy = `http://${formatHostPort(serve.address.address, serve.address.port)}`;
    const connectSpec = (target: string, path: SoakPath): ComponentSpec => ({
      role: 'connect',
      isolation: 'process',
      mode: 'connect-udp',
      host: HOST,
      proxy,
      target,
      extraArgs: ['--idle-timeout', `${n.idleTimeoutMs}ms`],
      nodeOptions: n.nodeOptions,
      onEvent: onConnectEvent(path),
    });
    emit({ type: 'starting', what: 'connect' });
    connect = await startComponent(connectSpec(echoTarget, 'echo'));
    connectPid = connect.pid;
    emit({ type: 'starting', what: 'connect-stalled' });
    connectStalled = await startComponent(connectSpec(formatHostPort(HOST, stalledPort), 'stalled'));
    if (signal?.aborted) throw new UdpTunnelError(ErrorCodes.CLOSED, 'soak interrupted before sending started');

    let rate = n.rate;
    let capacityDps: number | null = null;
    if (rate === undefined) {
      // Closed loop through the same connect and serve: what the tunnel carries when every reply is awaited.
      const r = await runLoadInWorker({
        target: { host: HOST, port: connect.address.port },
        size: n.size,
        sessions: 8,
        mode: { kind: 'inflight', inflight: 32 },
        durationMs: n.capacityMs,
        warmupMs: 500,
        drainMs: 500,
        ...(signal ? { signal } : {}),
      });
      capacityDps = r.throughputDps;
      emit({ type: 'capacity', dps: capacityDps, measuredMs: r.elapsedMs });
      if (signal?.aborted) throw new UdpTunnelError(ErrorCodes.CLOSED, 'soak interrupted before sending started');
      if (capacityDps <= 0) throw new UdpTunnelError(ErrorCodes.IO, 'the capacity measurement got no echo through the tunnel');
      rate = Math.max(1, Math.round(capacityDps * n.overload));
      // Let the measurement's datagrams settle so they do not count as the soak's.
      await sleep(1000, signal);
    }
    parameters = {
      durationMs: n.durationMs,
      rate,
      rateSource: n.rate === undefined ? 'measured' : 'option',
      capacityDps,
      overload: n.rate === undefined ? n.overload : null,
      size: n.size,
      peers: n.peers,
      churnPerSecond: n.churnPerSecond,
      stalledRate: n.stalledRate,
      stalledPeers: n.stalledPeers,
      killAtMs: n.killAtMs,
      idleTimeoutMs: n.idleTimeoutMs,
      drainMs: n.drainMs,
      lingerMs: n.lingerMs,
      rssSkipMs: n.rssSkipMs,
      host: HOST,
      nodeOptions: n.nodeOptions,
    };

    const connectPort = connect.address.port;
    const connectStalledPort = connectStalled.address.port;
    tracker = new KernelDropTracker((row) => {
      if (!isLoopback4Hex(row.localHex)) return null;
      const connected = row.remotePort !== 0 && isLoopback4Hex(row.remoteHex);
      if (!connected) {
        if (row.localPort === connectPort) return { path: 'echo', kind: 'kernel:connect-socket' };
        if (row.localPort === connectStalledPort) return { path: 'stalled', kind: 'kernel:connect-socket' };
        if (row.localPort === echoPort) return { path: 'echo', kind: 'kernel:echo-socket' };
        if (row.localPort === stalledPort) return { path: 'stalled', kind: 'kernel:target-socket' };
        return null;
      }
      // serve's per-session sockets are connected to their target (RFC 9298 §3.1); the peers to their connect.
      if (row.remotePort === echoPort) return { path: 'echo', kind: 'kernel:serve-sockets' };
      if (row.remotePort === stalledPort) return { path: 'stalled', kind: 'kernel:serve-sockets' };
      if (row.remotePort === connectPort) return { path: 'echo', kind: 'kernel:peer-sockets' };
      if (row.remotePort === connectStalledPort) return { path: 'stalled', kind: 'kernel:peer-sockets' };
      return null;
    });
    const kernel = tracker;
    kernel.read(true);
    echoStats0 = await echo.stats();
    const beforeClose = (): void => {
      kernel.read();
    };
    echoLoad = new ChurnLoad({
      host: HOST,
      port: connectPort,
      rate,
      size: n.size,
      peers: n.peers,
      churnPerSecond: n.churnPerSecond,
      lingerMs: n.lingerMs,
      beforeClose,
    });
    stalledLoad = new ChurnLoad({
      host: HOST,
      port: connectStalledPort,
      rate: n.stalledRate,
      size: n.size,
      peers: n.stalledPeers,
      churnPerSecond: 1,
      lingerMs: n.lingerMs,
      beforeClose,
    });
    emit({
      type: 'ready',
      parameters,
      components: [serve, connect, connectStalled].map((c, i) => ({ role: ['serve', 'connect', 'connect-stalled'][i]!, pid: c.pid, port: c.address.port })),
    });

    soakStartWallMs = Date.now();
    t0 = performance.now();
    await echoLoad.start();
    await stalledLoad.start();
    const eLoad = echoLoad;
    const sLoad = stalledLoad;
    const echoW = echo;
    let lastReport = 0;
    const sample = (): void => {
      const tMs = performance.now() - t0;
      kernel.read();
      const s: SoakRssSample = {
        tMs,
        serve: serve?.sample().rssBytes ?? null,
        serveIncarnation,
        connect: connect?.sample().rssBytes ?? null,
        connectStalled: connectStalled?.sample().rssBytes ?? null,
      };
      rssSamples.push(s);
      if (!recoveredEmitted && restart !== null && eLoad.firstReplyAfterMarkMs !== null) {
        recoveredEmitted = true;
        emit({ type: 'recovered', tMs, recoveryMs: recoveryOf() ?? 0 });
      }
      if (tMs - lastReport >= n.reportIntervalMs - SAMPLE_MS / 2) {
        lastReport = tMs;
        void echoW.stats().then((es) => {
          const drops = mergeDrops(appDrops, kernel.totals());
          add(drops.echo, 'echo:queue-full', es.dropped - (echoStats0?.dropped ?? 0));
          emit({
            type: 'progress',
            progress: {
              tMs,
              rss: s,
              echo: { sent: eLoad.counts.sent, echoed: eLoad.counts.received },
              stalled: { sent: sLoad.counts.sent, targetQueueBytes: kernel.rxQueue('stalled', 'kernel:target-socket') },
              drops,
              peers: { echo: eLoad.ports().length, stalled: sLoad.ports().length },
            },
          });
        });
      }
    };
    // The recovery time runs from the restarted serve's listening report (stamped by serve's own clock), moved
    // onto this process's monotonic clock through the wall clock both share.
    let listenPerfMs: number | null = null;
    const recoveryOf = (): number | null =>
      eLoad.firstReplyAfterMarkMs === null || listenPerfMs === null ? null : eLoad.firstReplyAfterMarkMs - listenPerfMs;
    sampler = setInterval(sample, SAMPLE_MS);

    if (n.killAtMs !== null) {
      await sleep(t0 + n.killAtMs - performance.now(), signal);
      if (!signal?.aborted) {
        const old = serve;
        const port = old.address.port;
        lastEchoBeforeKillMs = eLoad.lastReplyMs;
        killPerfMs = performance.now();
        killWallMs = Date.now();
        eLoad.mark();
        sLoad.mark();
        emit({ type: 'kill', tMs: killPerfMs - t0, pid: old.pid });
        // The last look at serve's sockets: their drop counters go with them.
        killRead = kernel.read();
        if (old.pid !== null) {
          try {
            process.kill(old.pid, 'SIGKILL');
          } catch {
            // Already gone: it is restarted all the same.
          }
        }
        const exit: ComponentExit = await old.stop();
        components.push({ role: 'serve', incarnation: 1, pid: old.pid, port, killed: true, exitCode: exit.exitCode, counters: exit.counters });
        serveListeningWallMs = null;
        serve = null;
        serve = await startComponent(serveSpec(port));
        serveIncarnation = 2;
        const listenWall = serveListeningWallMs ?? Date.now();
        restartListenWallMs = listenWall;
        listenPerfMs = listenWall - (Date.now() - performance.now());
        restart = {
          killAtMs: killPerfMs - t0,
          downMs: listenWall - killWallMs,
          reconnectMs: null,
          recoveryMs: null,
          echoGapMs: null,
          port: serve.address.port,
          samePort: serve.address.port === port,
          pidBefore: old.pid,
          pidAfter: serve.pid,
        };
        emit({ type: 'restarted', tMs: performance.now() - t0, pid: serve.pid, port: serve.address.port, downMs: restart.downMs });
      }
    }
    await sleep(t0 + n.durationMs - performance.now(), signal);
    // A restart near the end: keep the load on until the first echo shows the tunnel recovered (bounded).
    const graceEnd = t0 + n.durationMs + n.recoveryGraceMs;
    while (restart !== null && eLoad.firstReplyAfterMarkMs === null && !signal?.aborted && performance.now() < graceEnd) {
      await sleep(100, signal);
    }
    aborted = signal?.aborted === true;
    sendingMs = performance.now() - t0;
    eLoad.stopSending();
    sLoad.stopSending();
    emit({ type: 'stopping', tMs: sendingMs });
    if (restart !== null) {
      restart.recoveryMs = recoveryOf();
      restart.reconnectMs = firstReadyAfterRestartWallMs === null || restartListenWallMs === null ? null : firstReadyAfterRestartWallMs - restartListenWallMs;
      restart.echoGapMs =
        eLoad.firstReplyAfterMarkMs !== null ? eLoad.firstReplyAfterMarkMs - (lastEchoBeforeKillMs ?? killPerfMs) : null;
    }
    await sleep(aborted ? 0 : n.drainMs, undefined);
    stalledRead = await stalled.resume();
    kernel.read();
    await eLoad.close();
    await sLoad.close();
    clearInterval(sampler);
    sampler = null;
    sample();
  } finally {
    if (sampler) clearInterval(sampler);
    await echoLoad?.close();
    await stalledLoad?.close();
    // The connects first: their sessions end (and report) while serve is still there.
    const stops: [TunnelComponent | null, SoakComponentReport['role'], number][] = [
      [connect, 'connect', 1],
      [connectStalled, 'connect-stalled', 1],
      [serve, 'serve', serveIncarnation],
    ];
    for (const [c, role, incarnation] of stops) {
      if (c === null) continue;
      const exit = await c.stop();
      components.push({ role, incarnation, pid: c.pid, port: c.address.port, killed: false, exitCode: exit.exitCode, counters: exit.counters });
    }
    if (echo) echoStats = await echo.close();
    await stalled?.close();
  }
  // After the stops: every remaining session reported its drops.
  tracker?.read();
  if (parameters === null || echoLoad === null || stalledLoad === null) {
    throw new UdpTunnelError(ErrorCodes.CLOSED, 'soak interrupted before sending started');
  }
  const kernelDrops = tracker?.totals() ?? { echo: {}, stalled: {} };
  // serve's per-session sockets that the kill closed: the replies they dropped belong to the sessions it cut.
  const diedWithServe = killRead !== null && tracker !== null ? tracker.goneAfter(killRead, 'kernel:serve-sockets') : null;
  const drops = mergeDrops(appDrops, kernelDrops);
  add(drops.echo, 'echo:queue-full', (echoStats?.dropped ?? 0) - (echoStats0?.dropped ?? 0));
  add(drops.echo, 'peer:send-error', echoLoad.counts.sendErrors);
  add(drops.stalled, 'peer:send-error', stalledLoad.counts.sendErrors);
  const connectExit = components.find((c) => c.role === 'connect');
  const overflow = num(connectExit?.counters?.['downstream_sess_overflow']);
  add(drops.echo, 'connect:sessionOverflow', overflow);
  const overflowStalled = num(components.find((c) => c.role === 'connect-stalled')?.counters?.['downstream_sess_overflow']);
  add(drops.stalled, 'connect:sessionOverflow', overflowStalled);

  const account = (path: SoakPath, load: ChurnLoad, delivered: number): PathAccounting => {
    const d = drops[path];
    const countedDrops = Object.values(d).reduce((s, v) => s + v, 0);
    const cuts = cut.filter((c) => c.path === path);
    let lost: PathAccounting['lostWithKilledServe'] = null;
    if (killWallMs !== null) {
      const intoCut = cuts.reduce((s, c) => s + Math.max(0, path === 'echo' ? c.rx - c.inbound - c.tx - c.reply : c.rx - c.inbound), 0);
      const droppedAtClosedSockets = diedWithServe?.[path] ?? 0;
      const upperBound = Math.max(0, intoCut - droppedAtClosedSockets);
      const unaccounted = load.counts.sent - delivered - countedDrops;
      lost = { estimate: Math.max(0, Math.min(unaccounted, upperBound)), upperBound, intoCutTunnels: intoCut, droppedAtClosedSockets };
    }
    return {
      sent: load.counts.sent,
      sentPerSecond: sendingMs > 0 ? (load.counts.sent * 1000) / sendingMs : 0,
      delivered,
      drops: Object.fromEntries(Object.entries(d).sort(([a], [b]) => a.localeCompare(b))),
      countedDrops,
      unaccounted: load.counts.sent - delivered - countedDrops,
      lostWithKilledServe: lost,
      unexplained: load.counts.sent - delivered - countedDrops - (lost?.estimate ?? 0),
      notSent: load.counts.skippedQueueFull + load.counts.skippedBehind,
      duplicates: load.counts.duplicates,
      roundTripUs: path === 'echo' ? load.latency.summary() : null,
    };
  };
  const echoAcc = account('echo', echoLoad, echoLoad.counts.received);
  const stalledAcc = account('stalled', stalledLoad, stalledRead);

  const skip = n.rssSkipMs;
  const series = (pick: (s: SoakRssSample) => number | null, filter: (s: SoakRssSample) => boolean = () => true) =>
    rssSamples.filter(filter).map((s) => ({ tMs: s.tMs, bytes: pick(s) }));
  const serveTrends: RssTrend[] = [rssTrend(series((s) => s.serve, (s) => s.serveIncarnation === 1), skip)];
  if (restart !== null) {
    const from = (restart as SoakRestart).killAtMs + (restart as SoakRestart).downMs + skip;
    serveTrends.push(rssTrend(series((s) => s.serve, (s) => s.serveIncarnation === 2), from));
  }
  const trend = {
    serve: serveTrends,
    connect: rssTrend(series((s) => s.connect), skip),
    connectStalled: rssTrend(series((s) => s.connectStalled), skip),
  };
  const slopes = [trend.connect, trend.connectStalled, ...trend.serve].map((t) => t.slopeMbPerMin).filter((x): x is number => x !== null);
  const r = restart as SoakRestart | null;
  return {
    schema: SOAK_SCHEMA,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    wallMs: performance.now() - wall0,
    aborted,
    environment: benchEnvironment(loadStart),
    parameters,
    sendingMs,
    restart: r,
    connectStayedUp:
      connectExit !== undefined && connectExit.pid === connectPid && connectExit.exitCode === 0 && rssSamples.every((s) => s.connect !== null),
    rss: { samples: rssSamples, trend },
    accounting: { echo: echoAcc, stalled: stalledAcc },
    stalledTarget: { recvBufferBytes: stalled?.recvBufferBytes ?? 0, read: stalledRead },
    echoServer: echoStats,
    components,
    targets: {
      rssFlat: { limitMbPerMin: SOAK_TARGETS.rssSlopeMbPerMin, met: slopes.length > 0 ? slopes.every((s) => s <= SOAK_TARGETS.rssSlopeMbPerMin) : null },
      recovery: { limitMs: SOAK_TARGETS.recoveryMs, met: r === null ? null : r.recoveryMs !== null && r.recoveryMs < SOAK_TARGETS.recoveryMs },
      nothingLostUncounted: { met: echoAcc.unexplained === 0 && stalledAcc.unexplained === 0 },
    },
  };
}

function mergeDrops(...parts: Record<SoakPath, Record<string, number>>[]): Record<SoakPath, Record<string, number>> {
  const out: Record<SoakPath, Record<string, number>> = { echo: {}, stalled: {} };
  for (const p of parts) for (const path of ['echo', 'stalled'] as const) for (const [k, v] of Object.entries(p[path])) add(out[path], k, v);
  return out;
}
