import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { isIP } from 'node:net';
import { formatHostPort, parseHostPort } from '../tunnel/address.js';
import { DEFAULT_MAX_BIND_CONTEXTS } from '../tunnel/bind-contexts.js';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { startEchoInWorker } from './echo-server.js';
import type { EchoStats, EchoWorker } from './echo-server.js';
import { normalizeLoadOptions, runLoadInWorker } from './generator.js';
import type { LoadMode, LoadOptions, LoadProgress } from './load-types.js';
import { BENCH_MODES, benchEntry, benchMode, checkBenchPostPath, isBareRelayMode } from './modes.js';
import {
  BENCH_SCHEMA,
  addedLatency,
  compressedShare,
  benchWarnings,
  evaluateBenchFailIf,
  metricRatios,
  pathMetrics,
  summarizeRuns,
  toPathResult,
} from './report.js';
import type {
  BenchDocument,
  BenchEnvironment,
  BenchParameters,
  BenchWarning,
  ComponentReport,
  IdleSessionMemory,
  PathResult,
  ResourceUse,
  RssSample,
  RunRecord,
} from './report.js';
import type { FailCondition } from './stats.js';
import { makeThrowawayCert } from './self-signed.js';
import type { ThrowawayCert } from './self-signed.js';
import { startComponent } from './tunnel-launcher.js';
import type { ComponentExit, ComponentSample, ComponentSpec, Isolation, TunnelComponent } from './tunnel-launcher.js';
import { readUdpSocketTable } from './udp-socket-table.js';

/** Which path a generator run measures. */
export type BenchPath = 'direct' | 'tunnel';

/** Progress of a bench, for spinners and logs. */
export type BenchEvent =
  | { type: 'starting'; what: 'certificate' | 'echo' | 'serve' | 'connect' }
  | {
      type: 'ready';
      parameters: BenchParameters;
      environment: BenchEnvironment;
      components: { role: string; address: string; port: number; pid: number | null }[];
      echo: { address: string; port: number } | null;
    }
  | { type: 'run-start'; run: number; runs: number; path: BenchPath }
  | { type: 'progress'; run: number; runs: number; path: BenchPath; snapshot: LoadProgress }
  | { type: 'run-end'; run: number; runs: number; path: BenchPath; result: PathResult }
  | { type: 'idle-sessions'; sessions: number }
  | { type: 'stopping' };

/** Options of runBench; everything but toolVersion has a default (see BENCH_DEFAULTS). */
export interface BenchOptions {
  /** udp-tunnel version, for the document. */
  toolVersion: string;
  /** UDP payload bytes per datagram. */
  size?: number;
  /** Local peers (generator sockets), each its own tunnel session. */
  sessions?: number;
  /** Open loop at a rate, or closed loop with a window per session. */
  load?: LoadMode;
  /** Measured time of each path in each run, ms. */
  durationMs?: number;
  /** Unmeasured sending before each measurement, ms. */
  warmupMs?: number;
  /** Wait for late replies after sending stops, ms. */
  drainMs?: number;
  /** Closed loop: a reply later than this frees its slot, ms. */
  timeoutMs?: number;
  /** Direct + tunnel pairs. */
  runs?: number;
  /** Run the bench's own serve with TLS (a throwaway certificate). */
  tls?: boolean;
  /** Tunnel transport (see BENCH_MODES). */
  mode?: string;
  /**
   * Request path of a mode that names no target (POST): the bench's serve routes it to its echo; an external
   * `proxy` must route it to `target` itself. Only with such a mode.
   */
  postPath?: string;
  /** How serve and connect are kept off the generator's event loop. */
  isolation?: Isolation;
  /** Address every local component binds: 127.0.0.1 or ::1 (or another local address). */
  host?: string;
  /** Benchmark this proxy instead of starting serve; needs `target`. */
  proxy?: string;
  /** With `proxy`: the UDP echo the proxy should reach, HOST:PORT. */
  target?: string;
  /** With an https `proxy`: do not verify its certificate. */
  insecure?: boolean;
  /** With an https `proxy`: PEM file of CAs to trust. */
  caFile?: string;
  /** Measure the direct path too (needed for ratios). */
  direct?: boolean;
  /** After the runs, open this many idle sessions and report their memory; 0 skips it. */
  idleSessions?: number;
  /** RSS sampling period during tunnel runs, ms. */
  sampleIntervalMs?: number;
  /** Extra Node options for serve and connect processes (e.g. `--cpu-prof`). */
  nodeOptions?: readonly string[];
  /** Worker processes of the bench's own serve (process isolation only); default 1, the single process. */
  serveWorkers?: number;
  /** Parsed --fail-if, evaluated into the document. */
  failIf?: { spec: string; conditions: readonly FailCondition[] };
  /** Progress observer; exceptions it throws are ignored. */
  onEvent?: (e: BenchEvent) => void;
  /** Stops the current run early and skips the rest; the document covers what was measured. */
  signal?: AbortSignal;
}

export { BENCH_DEFAULTS, DEFAULT_BENCH_INFLIGHT, MAX_IDLE_SESSIONS, MAX_RUNS } from './defaults.js';
import { BENCH_DEFAULTS, MAX_IDLE_SESSIONS, MAX_RUNS } from './defaults.js';

// How long the idle-session probe waits for its datagrams to come back, and then for the tunnel to settle.
const IDLE_REPLY_TIMEOUT_MS = 10_000;
const IDLE_SETTLE_MS = 500;

interface Normalized {
  toolVersion: string;
  params: BenchParameters;
  caFile: string | undefined;
  insecure: boolean;
  sampleIntervalMs: number;
  nodeOptions: readonly string[];
  serveWorkers: number;
}

function invalid(option: string, value: unknown, rule: string): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${option} ${rule}, got ${String(value)}`, { option, value });
}

/** Validates options and fills defaults; throws INVALID_OPTION naming the bad option before anything starts. */
export function normalizeBenchOptions(o: BenchOptions): Normalized {
  const d = BENCH_DEFAULTS;
  const host = o.host ?? d.host;
  if (isIP(host) === 0) throw invalid('host', host, 'must be an IP address literal (e.g. 127.0.0.1 or ::1)');
  const runs = o.runs ?? d.runs;
  if (!Number.isInteger(runs) || runs < 1 || runs > MAX_RUNS) throw invalid('runs', runs, `must be an integer 1..${MAX_RUNS}`);
  const idleSessions = o.idleSessions ?? d.idleSessions;
  if (!Number.isInteger(idleSessions) || idleSessions < 0 || idleSessions > MAX_IDLE_SESSIONS) {
    throw invalid('idleSessions', idleSessions, `must be an integer 0..${MAX_IDLE_SESSIONS}`);
  }
  const isolation = o.isolation ?? d.isolation;
  if (isolation !== 'process' && isolation !== 'worker') throw invalid('isolation', isolation, 'must be process or worker');
  const serveWorkers = o.serveWorkers ?? 1;
  if (!Number.isInteger(serveWorkers) || serveWorkers < 1 || serveWorkers > 256) throw invalid('serveWorkers', serveWorkers, 'must be an integer 1..256');
  if (serveWorkers > 1 && isolation !== 'process') {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'serveWorkers needs process isolation (serve forks its workers)', { option: 'serveWorkers', value: serveWorkers, related: ['isolation'] });
  }
  const modeSpec = benchMode(o.mode ?? d.mode);
  const mode = modeSpec.name;
  if (o.postPath !== undefined && !modeSpec.usesPostPath) {
    const which = BENCH_MODES.filter((m) => m.usesPostPath).map((m) => m.name);
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `postPath applies only to mode ${which.join(', ')}`, {
      option: 'postPath',
      value: o.postPath,
      related: ['mode'],
    });
  }
  const postPath = modeSpec.usesPostPath ? checkBenchPostPath(o.postPath ?? d.postPath) : null;
  const proxy = o.proxy ?? null;
  const target = o.target ?? null;
  if ((proxy === null) !== (target === null)) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'proxy and target go together: the target is the UDP echo the external proxy reaches', {
      option: proxy === null ? 'target' : 'proxy',
      related: [proxy === null ? 'proxy' : 'target'],
    });
  }
  if (target !== null) parseHostPort(target, { what: 'target', option: 'target' });
  if (proxy !== null && isBareRelayMode(mode)) {
    throw new UdpTunnelError(
      ErrorCodes.INVALID_OPTION,
      'mode bare-relay measures two local bare relays in place of serve and connect; it cannot use an external proxy',
      { option: 'proxy', related: ['mode'] },
    );
  }
  if (proxy !== null && benchEntry(modeSpec) === 'expose') {
    throw new UdpTunnelError(
      ErrorCodes.INVALID_OPTION,
      `mode ${mode} measures a bound tunnel to the bench's own serve (with allowBind) and sends to its public port; it cannot use an external proxy`,
      { option: 'proxy', related: ['mode'] },
    );
  }
  if (modeSpec.onlyIsolation !== undefined && isolation !== modeSpec.onlyIsolation.isolation) {
    throw new UdpTunnelError(
      ErrorCodes.INVALID_OPTION,
      `mode ${mode} runs with isolation ${modeSpec.onlyIsolation.isolation} only (${modeSpec.onlyIsolation.why})`,
      { option: 'isolation', value: isolation, related: ['mode'] },
    );
  }
  if (proxy !== null && o.tls) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, "tls applies to the bench's own serve; for an external one, make proxy an https:// URL", {
      option: 'tls',
      related: ['proxy'],
    });
  }
  const direct = o.direct ?? d.direct;
  if (!direct && o.failIf?.conditions.some((c) => c.metric === 'ratio')) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'failIf ratio needs the direct path (drop direct: false)', {
      option: 'failIf',
      related: ['direct: false'],
    });
  }
  const sampleIntervalMs = o.sampleIntervalMs ?? d.sampleIntervalMs;
  if (!Number.isFinite(sampleIntervalMs) || sampleIntervalMs < 10) throw invalid('sampleIntervalMs', sampleIntervalMs, 'must be at least 10 ms');
  const load = o.load ?? d.load;
  // Fails on bad load options here, before any component starts.
  const n = normalizeLoadOptions({
    target: { host, port: 9 },
    size: o.size ?? d.size,
    sessions: o.sessions ?? d.sessions,
    mode: load,
    durationMs: o.durationMs ?? d.durationMs,
    warmupMs: o.warmupMs ?? d.warmupMs,
    drainMs: o.drainMs ?? d.drainMs,
    timeoutMs: o.timeoutMs ?? d.timeoutMs,
  });
  return {
    toolVersion: o.toolVersion,
    params: {
      size: n.size,
      sessions: n.sessions,
      load: n.mode,
      durationMs: n.durationMs,
      warmupMs: n.warmupMs,
      drainMs: n.drainMs,
      timeoutMs: n.timeoutMs,
      runs,
      tls: o.tls ?? d.tls,
      mode,
      postPath,
      isolation,
      host,
      proxy,
      target,
      direct,
      idleSessions,
    },
    caFile: o.caFile,
    insecure: o.insecure ?? false,
    sampleIntervalMs,
    nodeOptions: o.nodeOptions ?? [],
    serveWorkers,
  };
}

/** Where the bench runs: Node, CPUs, memory and load. */
export function benchEnvironment(loadAverageStart: number[]): BenchEnvironment {
  const list = cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    cpus: availableParallelism(),
    cpuModel: list[0]?.model ?? 'unknown',
    totalMemoryBytes: totalmem(),
    loadAverageStart,
    loadAverageEnd: loadavg(),
  };
}

/**
 * Runs the whole benchmark: starts a UDP echo, serve and connect on the loopback with port 0 (serve and connect in
 * processes or worker threads of their own, the echo and the load generator in worker threads), then for each run
 * measures the direct path (generator -> echo) and the tunnel path (generator -> connect -> serve -> echo) with the
 * same generator settings, and returns the versioned document. With `proxy` it benchmarks that proxy instead. In
 * bare-relay mode the bare relays stand where serve and connect would (the document still calls that path `tunnel`).
 */
export async function runBench(options: BenchOptions): Promise<BenchDocument> {
  const n = normalizeBenchOptions(options);
  const p = n.params;
  const emit = (e: BenchEvent): void => {
    try {
      options.onEvent?.(e);
    } catch {
      // A failing observer must not break the measurement.
    }
  };
  const signal = options.signal;
  const startedAt = new Date();
  const loadStart = loadavg();
  const t0 = performance.now();
  let cert: ThrowawayCert | null = null;
  let echo: EchoWorker | null = null;
  let serve: TunnelComponent | null = null;
  let connect: TunnelComponent | null = null;
  const exits = new Map<TunnelComponent, ComponentExit>();
  const starts = new Map<TunnelComponent, ComponentSample>();
  const ends = new Map<TunnelComponent, ComponentSample>();
  let echoStats: EchoStats | null = null;
  const runs: RunRecord[] = [];
  let idle: IdleSessionMemory | null = null;
  try {
    const mode = benchMode(p.mode);
    let proxyUrl = '';
    let targetSpec: string;
    let serveSpec: ComponentSpec | null = null;
    let connectCa: { certPath: string; keyPath: string; cert: string; key: string } | undefined;
    if (p.proxy !== null && p.target !== null) {
      proxyUrl = p.proxy;
      targetSpec = p.target;
      if (n.caFile !== undefined) {
        const pem = readFileSync(n.caFile, 'utf8');
        connectCa = { certPath: n.caFile, keyPath: '', cert: pem, key: '' };
      }
    } else {
      emit({ type: 'starting', what: 'echo' });
      echo = await startEchoInWorker({ host: p.host });
      targetSpec = formatHostPort(echo.address.address, echo.address.port);
      if (p.tls) {
        emit({ type: 'starting', what: 'certificate' });
        cert = await makeThrowawayCert();
        connectCa = cert;
      }
      serveSpec = {
        role: 'serve',
        isolation: p.isolation,
        mode: mode.name,
        host: p.host,
        target: targetSpec,
        ...(p.postPath !== null ? { postPath: p.postPath } : {}),
        ...(cert ? { tls: cert } : {}),
        nodeOptions: n.nodeOptions,
        ...(n.serveWorkers > 1 ? { extraArgs: ['--workers', String(n.serveWorkers)] } : {}),
      };
      emit({ type: 'starting', what: 'serve' });
      serve = await startComponent(serveSpec);
    }
    const connectSpec = (proxyFor: TunnelComponent | null): ComponentSpec => ({
      role: 'connect',
      isolation: p.isolation,
      mode: mode.name,
      host: p.host,
      proxy: proxyFor ? `${p.tls ? 'https' : 'http'}://${formatHostPort(proxyFor.address.address, proxyFor.address.port)}` : proxyUrl,
      target: targetSpec,
      ...(p.postPath !== null ? { postPath: p.postPath } : {}),
      ...(connectCa ? { tls: connectCa } : {}),
      ...(n.insecure ? { insecure: true } : {}),
      nodeOptions: n.nodeOptions,
    });
    emit({ type: 'starting', what: 'connect' });
    connect = await startComponent(connectSpec(serve));
    for (const c of [serve, connect]) if (c) starts.set(c, c.sample());
    emit({
      type: 'ready',
      parameters: p,
      environment: benchEnvironment(loadStart),
      components: [serve, connect].flatMap((c) => (c ? [{ role: c.role, address: c.address.address, port: c.address.port, pid: c.pid }] : [])),
      echo: echo ? { address: echo.address.address, port: echo.address.port } : null,
    });
    const direct = parseHostPort(targetSpec, { what: 'target', option: 'target' });
    const base: Omit<LoadOptions, 'target'> = {
      size: p.size,
      sessions: p.sessions,
      mode: p.load,
      durationMs: p.durationMs,
      warmupMs: p.warmupMs,
      drainMs: p.drainMs,
      timeoutMs: p.timeoutMs,
    };
    const measure = async (run: number, path: BenchPath, host: string, port: number): Promise<PathResult> => {
      emit({ type: 'run-start', run, runs: p.runs, path });
      const r = await runLoadInWorker({
        ...base,
        target: { host, port },
        onProgress: (snapshot) => emit({ type: 'progress', run, runs: p.runs, path, snapshot }),
        ...(signal ? { signal } : {}),
      });
      const result = toPathResult(r);
      emit({ type: 'run-end', run, runs: p.runs, path, result });
      return result;
    };
    for (let run = 1; run <= p.runs && !signal?.aborted; run++) {
      const d = p.direct ? await measure(run, 'direct', direct.host, direct.port) : null;
      if (signal?.aborted && d !== null) break;
      const watch = watchResources(serve, connect, n.sampleIntervalMs);
      const udp0 = readKernelUdpDrops();
      const entry0 = readUdpPortDrops(connect.address.port);
      const t = await measure(run, 'tunnel', connect.address.address, connect.address.port);
      const udp1 = readKernelUdpDrops();
      const entry1 = readUdpPortDrops(connect.address.port);
      const resources = watch.stop();
      runs.push({
        index: run,
        direct: d,
        tunnel: t,
        ratio: d ? metricRatios(pathMetrics(d), pathMetrics(t)) : null,
        addedLatencyUs: d ? addedLatency(d.latencyUs, t.latencyUs) : null,
        resources: resources.use,
        rssSamples: resources.samples,
        kernelUdpDrops:
          udp0 !== null && udp1 !== null
            ? { rcvbufErrors: udp1.rcvbufErrors - udp0.rcvbufErrors, sndbufErrors: udp1.sndbufErrors - udp0.sndbufErrors }
            : null,
        connectSocketDrops: entry0 !== null && entry1 !== null ? entry1 - entry0 : null,
      });
    }
    if (runs.length === 0) throw new UdpTunnelError(ErrorCodes.CLOSED, 'bench interrupted before the first run finished');
    // On a second, fresh serve and connect: memory freed by earlier sessions would absorb the growth on the first
    // pair, and a thousand idle sessions kept there during the runs would enlarge its heap and its GC pauses.
    if (p.idleSessions > 0 && !signal?.aborted) {
      const limits = mode.idleProbe;
      const idleSessions = Math.min(p.idleSessions, limits?.maxSessions ?? Infinity);
      emit({ type: 'idle-sessions', sessions: idleSessions });
      // A small fixed young generation: garbage from setting sessions up is collected at once instead of growing
      // the semi-spaces in multi-megabyte steps, which would swamp the per-session growth in RSS.
      const probeOptions = p.isolation === 'process' ? [...n.nodeOptions, '--min-semi-space-size=1', '--max-semi-space-size=1'] : n.nodeOptions;
      const probeServe = serveSpec ? await startComponent({ ...serveSpec, nodeOptions: probeOptions }) : null;
      try {
        const probeConnect = await startComponent({ ...connectSpec(probeServe), nodeOptions: probeOptions });
        try {
          idle = await measureIdleSessions(p.host, probeConnect.address.port, idleSessions, limits?.burst ?? Infinity, probeServe, probeConnect, signal);
        } finally {
          await probeConnect.stop();
        }
      } finally {
        await probeServe?.stop();
      }
    }
  } finally {
    emit({ type: 'stopping' });
    // connect first: its sessions end cleanly while serve is still there.
    for (const c of [connect, serve]) {
      if (c === null) continue;
      ends.set(c, c.sample());
      exits.set(c, await c.stop());
    }
    if (echo) echoStats = await echo.close();
    if (cert) await cert.dispose();
  }
  const components: ComponentReport[] = [];
  for (const c of [serve, connect]) {
    if (c === null) continue;
    const exit = exits.get(c)!;
    const start = starts.get(c);
    components.push({
      role: c.role,
      isolation: c.isolation,
      pid: c.pid,
      address: c.address.address,
      port: c.address.port,
      rssStartBytes: start?.rssBytes ?? null,
      rssEndBytes: ends.get(c)?.rssBytes ?? null,
      counters: exit.counters,
      drops: exit.drops,
      exitCode: exit.exitCode,
    });
  }
  const summary = summarizeRuns(runs);
  return {
    schema: BENCH_SCHEMA,
    tool: { name: 'udp-tunnel', version: n.toolVersion },
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    wallMs: performance.now() - t0,
    environment: benchEnvironment(loadStart),
    parameters: p,
    runs,
    summary,
    components,
    echo: echoStats,
    idleSessionMemory: idle,
    warnings: [
      ...benchWarnings(runs, echoStats?.dropped ?? 0, isBareRelayMode(p.mode) ? 'relay' : 'tunnel'),
      ...boundTunnelWarnings(p.mode, components),
    ],
    failIf: options.failIf ? evaluateBenchFailIf(options.failIf.spec, options.failIf.conditions, summary) : null,
  };
}

/** Below this share of datagrams on compressed contexts, a compressing bound tunnel is not measured as one. */
const MIN_COMPRESSED_SHARE = 0.99;

/**
 * Warnings of modes with a bound tunnel: when connect lost it (the generator keeps sending to the first public
 * address, so what followed went nowhere), and when the tunnel was meant to compress but a noticeable share of its
 * datagrams went on the uncompressed context (a tunnel holds a limited number of contexts, and each run's flows are
 * new peers whose contexts stay open until connect forgets them).
 */
export function boundTunnelWarnings(modeName: string, components: readonly ComponentReport[]): BenchWarning[] {
  const mode = benchMode(modeName);
  if (benchEntry(mode) !== 'expose') return [];
  const connect = components.find((c) => c.role === 'connect');
  const w: BenchWarning[] = [];
  const lost = connect?.counters?.['tunnelsLost'];
  if (typeof lost === 'number' && lost > 0) {
    w.push({
      code: 'BIND_TUNNEL_LOST',
      message:
        `connect lost its bound tunnel ${lost} time${lost === 1 ? '' : 's'} and opened a new binding; the load kept going to the first ` +
        "public address, so datagrams sent after the loss went nowhere (serve's log says why it closed the tunnel)",
    });
  }
  const share = mode.exposerOptions?.compress === false ? null : compressedShare(connect);
  const low = share === null ? [] : [share.rx, share.tx].filter((x): x is number => x !== null && x < MIN_COMPRESSED_SHARE);
  if (low.length > 0) {
    w.push({
      code: 'BIND_UNCOMPRESSED',
      message:
        `only ${(Math.min(...low) * 100).toFixed(1)}% of the bound tunnel's datagrams used compressed contexts: a tunnel holds a ` +
        `limited number (${DEFAULT_MAX_BIND_CONTEXTS} by default, the uncompressed one included) and each run's flows are new peers, ` +
        "kept until connect's idle timeout",
    });
  }
  return w;
}

/** System-wide UDP (IPv4 + IPv6) datagrams dropped at full socket buffers so far, from Linux /proc; null elsewhere. */
export function readKernelUdpDrops(): { rcvbufErrors: number; sndbufErrors: number } | null {
  try {
    const snmp = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp: '));
    const names = snmp[0]?.split(/\s+/) ?? [];
    const values = snmp[1]?.split(/\s+/).map(Number) ?? [];
    let rcvbufErrors = values[names.indexOf('RcvbufErrors')] ?? NaN;
    let sndbufErrors = values[names.indexOf('SndbufErrors')] ?? NaN;
    try {
      const v6 = readFileSync('/proc/net/snmp6', 'utf8');
      rcvbufErrors += Number(/^Udp6RcvbufErrors\s+(\d+)/m.exec(v6)?.[1] ?? 0);
      sndbufErrors += Number(/^Udp6SndbufErrors\s+(\d+)/m.exec(v6)?.[1] ?? 0);
    } catch {
      // No IPv6: the IPv4 counters alone.
    }
    return Number.isFinite(rcvbufErrors) && Number.isFinite(sndbufErrors) ? { rcvbufErrors, sndbufErrors } : null;
  } catch {
    return null;
  }
}

/**
 * Datagrams the kernel dropped at the UDP sockets bound to local `port` because their receive buffer was full
 * (the `drops` column of Linux /proc/net/udp and udp6); null elsewhere.
 */
export function readUdpPortDrops(port: number): number | null {
  const rows = readUdpSocketTable().filter((r) => r.localPort === port);
  return rows.length === 0 ? null : rows.reduce((sum, r) => sum + r.drops, 0);
}

/** Samples serve and connect RSS periodically and measures their busy time and the bench process's CPU over a run. */
function watchResources(
  serve: TunnelComponent | null,
  connect: TunnelComponent | null,
  intervalMs: number,
): { stop(): { use: RunRecord['resources']; samples: RssSample[] } } {
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  const first = { serve: serve?.sample() ?? null, connect: connect?.sample() ?? null };
  const samples: RssSample[] = [];
  const take = (): { serve: ComponentSample | null; connect: ComponentSample | null } => {
    const s = { serve: serve?.sample() ?? null, connect: connect?.sample() ?? null };
    samples.push({ tMs: performance.now() - start, serveBytes: s.serve?.rssBytes ?? null, connectBytes: s.connect?.rssBytes ?? null });
    return s;
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      const last = take();
      const wallUs = (performance.now() - start) * 1000;
      const use = (role: 'serve' | 'connect'): ResourceUse | null => {
        const a = first[role];
        const b = last[role];
        if (a === null || b === null) return null;
        const rss = samples.map((s) => (role === 'serve' ? s.serveBytes : s.connectBytes)).filter((x): x is number => x !== null);
        const busy = a.busyUs !== null && b.busyUs !== null ? b.busyUs - a.busyUs : null;
        return {
          rssStartBytes: a.rssBytes,
          rssEndBytes: b.rssBytes,
          rssMaxBytes: rss.length > 0 ? Math.max(...rss) : null,
          busyUs: busy,
          busyFraction: busy !== null && wallUs > 0 ? busy / wallUs : null,
          wallMs: wallUs / 1000,
        };
      };
      const cpu = process.cpuUsage(cpu0);
      return {
        use: { serve: use('serve'), connect: use('connect'), benchBusyFraction: wallUs > 0 ? (cpu.user + cpu.system) / wallUs : 0 },
        samples,
      };
    },
  };
}

/** Steps in which the idle-session probe opens its sessions; RSS is read after each. */
export const IDLE_SESSION_STEPS = 4;

/**
 * Opens `count` local peers in IDLE_SESSION_STEPS steps; each peer sends one datagram through the tunnel and waits
 * for it to come back, so its session is live and then idle. Within a step, peers open `burst` at a time, each
 * batch once the last one's replies came back. RSS of serve and connect is read before the first step and after
 * each. The per-session figure is the growth over the second half only: the first half absorbs one-time growth (new
 * HTTP/2 connections, heap and code warm-up), so what is left is the marginal cost of one more session.
 */
async function measureIdleSessions(
  host: string,
  port: number,
  count: number,
  burst: number,
  serve: TunnelComponent | null,
  connect: TunnelComponent,
  signal: AbortSignal | undefined,
): Promise<IdleSessionMemory> {
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
  await settle();
  const sockets: Socket[] = [];
  const samples: IdleSessionMemory['samples'] = [];
  const sample = (opened: number, answered: number): void => {
    samples.push({ sessions: opened, answered, serveRssBytes: serve?.sample().rssBytes ?? null, connectRssBytes: connect.sample().rssBytes });
  };
  let answered = 0;
  const payload = Buffer.alloc(32);
  const type = isIP(host) === 6 ? 'udp6' : 'udp4';
  try {
    sample(0, 0);
    let opened = 0;
    for (let step = 1; step <= IDLE_SESSION_STEPS && !signal?.aborted; step++) {
      const target = Math.round((count * step) / IDLE_SESSION_STEPS);
      // One deadline for the whole step, however many batches it takes.
      const deadline = performance.now() + IDLE_REPLY_TIMEOUT_MS;
      while (opened < target && !signal?.aborted && performance.now() < deadline) {
        const end = Math.min(target, opened + burst);
        const want = answered + (end - opened);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
          function done(): void {
            clearTimeout(timer);
            signal?.removeEventListener('abort', done);
            resolve();
          }
          signal?.addEventListener('abort', done, { once: true });
          for (; opened < end; opened++) {
            const s = createSocket(type);
            sockets.push(s);
            s.on('error', () => {});
            s.once('message', () => {
              if (++answered >= want) done();
            });
            s.bind(0, host, () => s.send(payload, port, host));
          }
        });
      }
      await settle();
      sample(opened, answered);
    }
    const mid = samples[Math.floor(samples.length / 2)]!;
    const last = samples[samples.length - 1]!;
    const per = (a: number | null, b: number | null): number | null =>
      a !== null && b !== null && last.answered > mid.answered ? (b - a) / (last.answered - mid.answered) : null;
    return {
      sessions: count,
      answered,
      samples,
      serve: { bytesPerSession: per(mid.serveRssBytes, last.serveRssBytes) },
      connect: { bytesPerSession: per(mid.connectRssBytes, last.connectRssBytes) },
    };
  } finally {
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
