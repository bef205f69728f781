import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { formatHostPort, parseHostPort } from '../tunnel/address.js';
import { parseIpPort } from '../tunnel/codec/bind.js';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { SERVER_DEFAULTS } from '../tunnel/server/tunnel-server.js';
import { DEFAULT_BENCH_POST_PATH, benchEntry, benchMode, isBareRelayMode } from './modes.js';
import type { BenchModeContext } from './modes.js';

/** How serve and connect are kept off the generator's event loop. */
export type { Isolation } from './defaults.js';
import type { Isolation } from './defaults.js';

/** Which place a component takes: serve's or connect's (in bare-relay mode: relay-back's or relay-front's). */
export type ComponentRole = 'serve' | 'connect';

/**
 * Where a component takes its load, from its `listening` report; for connect in a mode whose entry is 'expose', the
 * public address of its bound tunnel (on serve's side), from its `exposed` report.
 */
export interface ComponentAddress {
  address: string;
  port: number;
  family: string;
}

/** A point-in-time reading of a component's resources. */
export interface ComponentSample {
  /**
   * Resident set size, bytes: of the component's own process (process isolation, Linux /proc), or of the whole
   * bench process, which all worker threads share (worker isolation). null when unavailable.
   */
  rssBytes: number | null;
  /**
   * Busy time so far, µs: CPU time of the process (process isolation, Linux /proc, 10 ms resolution), or the
   * active time of the worker's event loop (worker isolation). null when unavailable.
   */
  busyUs: number | null;
}

/** What a component reported when it stopped. */
export interface ComponentExit {
  /**
   * The counters of its final report (TunnelServer or TunnelClient counters; with an exposed echo the Exposer's, with
   * the bound tunnel's under `tunnel`), or null if it reported none.
   */
  counters: Record<string, unknown> | null;
  /**
   * Datagrams its sessions dropped, by reason, summed over the sessions that closed (all of them on a clean stop);
   * with an exposed echo, the Exposer's and its bound tunnel's drops from the final report.
   */
  drops: Record<string, number>;
  /** Process exit code (process isolation), or null. */
  exitCode: number | null;
  /** Last lines of its stderr (process isolation). */
  stderrTail: string;
}

/** A running serve or connect. */
export interface TunnelComponent {
  readonly role: ComponentRole;
  readonly isolation: Isolation;
  /** Process id (process isolation), else null. */
  readonly pid: number | null;
  readonly address: ComponentAddress;
  /** Reads RSS and busy time now. */
  sample(): ComponentSample;
  /** Stops it (SIGTERM, then SIGKILL after a grace period) and returns its final report. Idempotent. */
  stop(): Promise<ComponentExit>;
}

/** What to start. */
export interface ComponentSpec {
  role: ComponentRole;
  isolation: Isolation;
  /** Bench mode name (see BENCH_MODES). */
  mode: string;
  /** Loopback or local address to listen on. */
  host: string;
  /** Port to listen on; default 0 (any free one). A restarted component passes the port it had. */
  port?: number;
  /** connect only: proxy URL (bare-relay: the relay-back's address as a URL). */
  proxy?: string;
  /**
   * The UDP echo, HOST:PORT: connect's --target, and where serve routes the request path of a mode that names no
   * target (POST). Needed by both roles. bare-relay: the relay-back's target (the front ignores it).
   */
  target?: string;
  /** Request path of a mode that names no target (POST); default DEFAULT_BENCH_POST_PATH. */
  postPath?: string;
  /** serve: certificate and key; connect: CA to trust. Paths for processes, PEM text for workers. */
  tls?: { certPath: string; keyPath: string; cert: string; key: string };
  /** connect only: do not verify the proxy certificate (external proxies). */
  insecure?: boolean;
  /** Extra Node options for a component process (e.g. `--cpu-prof`). */
  nodeOptions?: readonly string[];
  /** Process isolation, serve and connect only: flags appended to the command line (e.g. `--idle-timeout 5s`). */
  extraArgs?: readonly string[];
  /**
   * Process isolation: called with each NDJSON report as it is read (`listening`, `session-open`, `session-close`,
   * `shutdown`, ...), so a caller can follow sessions and drops while the component runs, and keeps what a component
   * killed with SIGKILL had reported.
   */
  onEvent?: (event: Record<string, unknown>) => void;
  /** Give up when it has not reported `listening` within this long, ms. Default 15000. */
  startTimeoutMs?: number;
}

/** Message protocol of the tunnel worker. */
export type TunnelWorkerToParent =
  | { type: 'listening'; address: ComponentAddress }
  | { type: 'stopped'; counters: Record<string, unknown>; drops: Record<string, number> }
  | { type: 'error'; message: string; code: string | null };

/** workerData of the tunnel worker. */
export interface TunnelWorkerRequest {
  role: ComponentRole;
  mode: string;
  host: string;
  proxy?: string;
  target?: string;
  postPath?: string;
  tls?: { cert: string; key: string };
  insecure?: boolean;
}

const STOP_GRACE_MS = 5000;
const STDERR_TAIL_BYTES = 4096;
// Linux reports CPU times in clock ticks; USER_HZ is 100 on every mainstream architecture.
const CLOCK_TICKS_PER_SECOND = 100;

/** The CLI entry, from dist/src/bench up to the package root. */
export const CLI_ENTRY = fileURLToPath(new URL('../../../bin/udp-tunnel.js', import.meta.url));

/** The bare relays' process entry (bare-relay mode), in the CLI layer because it writes NDJSON to stdout. */
export const BARE_RELAY_ENTRY = fileURLToPath(new URL('../cli/bare-relay-process.js', import.meta.url));

/**
 * Adds the drop counters of one session-close report to `into`: a client session's `drops` object
 * (ClientSessionStats) and a server session's `drop*` fields (ServerSessionStats).
 */
export function addSessionDrops(into: Record<string, number>, stats: Record<string, unknown>): void {
  const add = (k: string, v: unknown): void => {
    if (typeof v === 'number' && Number.isFinite(v)) into[k] = (into[k] ?? 0) + v;
  };
  const drops = stats['drops'];
  if (drops !== null && typeof drops === 'object') for (const [k, v] of Object.entries(drops)) add(k, v);
  for (const [k, v] of Object.entries(stats)) if (k.startsWith('drop')) add(k, v);
}

/**
 * Adds the drops of an Exposer's final counters to `into`: its own (`drops`) and, under `tunnel`, its bound
 * tunnels' (prefixed `tunnel.`, as both count a `backpressure`-like reason of their own).
 */
export function addExposerDrops(into: Record<string, number>, counters: Record<string, unknown>): void {
  const add = (prefix: string, drops: unknown): void => {
    if (drops === null || typeof drops !== 'object') return;
    for (const [k, v] of Object.entries(drops)) if (typeof v === 'number' && Number.isFinite(v) && v > 0) into[prefix + k] = (into[prefix + k] ?? 0) + v;
  };
  add('', counters['drops']);
  const tunnel = counters['tunnel'];
  if (tunnel !== null && typeof tunnel === 'object') add('tunnel.', (tunnel as Record<string, unknown>)['drops']);
}

/**
 * The public address of an `exposed` report that the load generator, bound to `host`, can reach: the first of the
 * IP family of `host`, else the first. Null when it lists none that parse.
 */
export function exposedAddress(publicAddresses: unknown, host: string): ComponentAddress | null {
  if (!Array.isArray(publicAddresses)) return null;
  const parsed = publicAddresses.flatMap((a) => {
    const t = typeof a === 'string' ? parseIpPort(a) : null;
    return t ? [t] : [];
  });
  const want = host.includes(':') ? 6 : 4;
  const t = parsed.find((x) => x.ipVersion === want) ?? parsed[0];
  return t ? { address: t.address, port: t.port, family: t.ipVersion === 6 ? 'IPv6' : 'IPv4' } : null;
}

/** Reads VmRSS and CPU time of a process from Linux /proc; nulls elsewhere or when it is gone. */
export function readProcSample(pid: number): ComponentSample {
  let rssBytes: number | null = null;
  let busyUs: number | null = null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (m) rssBytes = Number(m[1]) * 1024;
  } catch {
    // Not Linux, or the process has exited.
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: count fields after its closing parenthesis.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    if (Number.isFinite(utime) && Number.isFinite(stime)) busyUs = ((utime + stime) * 1e6) / CLOCK_TICKS_PER_SECOND;
  } catch {
    // As above.
  }
  return { rssBytes, busyUs };
}

/**
 * readProcSample of a process plus its direct children (serve --workers: the primary and its workers), summed;
 * without children, the process's own sample.
 */
export function readProcTreeSample(pid: number): ComponentSample {
  const own = readProcSample(pid);
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number);
  } catch {
    // Not Linux, or a kernel without that file: the process's own numbers.
  }
  let { rssBytes, busyUs } = own;
  for (const child of children) {
    const c = readProcSample(child);
    if (rssBytes !== null && c.rssBytes !== null) rssBytes += c.rssBytes;
    if (busyUs !== null && c.busyUs !== null) busyUs += c.busyUs;
  }
  return { rssBytes, busyUs };
}

// Component processes still running; killed if this process exits without stopping them (no orphans).
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  child.once('exit', () => live.delete(child));
}

/** The mode context of a component: its target and request path. Throws INVALID_OPTION without a target. */
export function componentContext(spec: Pick<ComponentSpec, 'role' | 'target' | 'postPath'>): BenchModeContext {
  if (spec.target === undefined) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `a bench ${spec.role} component needs a target`);
  return { target: parseHostPort(spec.target, { what: 'target', option: 'target' }), postPath: spec.postPath ?? DEFAULT_BENCH_POST_PATH };
}

/** The bench's connect is its serve's only client, so one address holds every session: the per-client cap is the server-wide one. */
export const BENCH_MAX_SESSIONS_PER_CLIENT = SERVER_DEFAULTS.maxSessions;

/** The command line of a component process, after the Node options. */
export function componentArgs(spec: ComponentSpec): string[] {
  const mode = benchMode(spec.mode);
  const ctx = componentContext(spec);
  const listen = formatHostPort(spec.host, spec.port ?? 0);
  const extra = spec.extraArgs ?? [];
  if (spec.role === 'serve') {
    return [
      'serve', '--listen', listen, '--json', '--quiet', '--max-sessions-per-client', String(BENCH_MAX_SESSIONS_PER_CLIENT),
      ...(spec.tls ? ['--cert', spec.tls.certPath, '--key', spec.tls.keyPath] : []),
      ...mode.serveArgs(ctx),
      ...extra,
    ];
  }
  if (spec.proxy === undefined) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'a bench connect component needs a proxy');
  if (benchEntry(mode) === 'expose') {
    // The echo is the local service: remote peers (the generator's flows) reach it through serve's public port.
    // connect --expose refuses --local, --target and --no-proxy-check, which a bound tunnel does not use.
    return [
      'connect', '--expose', formatHostPort(ctx.target.host, ctx.target.port), '--proxy', spec.proxy, '--json', '--quiet',
      ...(spec.tls ? ['--ca', spec.tls.certPath] : []),
      ...(spec.insecure ? ['--insecure'] : []),
      ...mode.connectArgs(ctx),
      ...extra,
    ];
  }
  return [
    'connect', '--local', listen, '--proxy', spec.proxy, '--json', '--quiet', '--no-proxy-check',
    // In POST mode the proxy maps the path to the target; connect refuses a --target it would ignore.
    ...(mode.usesPostPath ? [] : ['--target', formatHostPort(ctx.target.host, ctx.target.port)]),
    ...(spec.tls ? ['--ca', spec.tls.certPath] : []),
    ...(spec.insecure ? ['--insecure'] : []),
    ...mode.connectArgs(ctx),
    ...extra,
  ];
}

/**
 * The command line of a bare-relay component process, after the entry: relay-back in serve's place (it needs the
 * target), relay-front in connect's place (it reaches the back at the host and port of `proxy`).
 */
export function bareRelayArgs(spec: ComponentSpec): string[] {
  const listen = formatHostPort(spec.host, spec.port ?? 0);
  if (spec.role === 'serve') {
    if (spec.target === undefined) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'a bench relay-back needs a target');
    return ['back', '--listen', listen, '--target', spec.target, ...(spec.tls ? ['--cert', spec.tls.certPath, '--key', spec.tls.keyPath] : [])];
  }
  if (spec.proxy === undefined) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'a bench relay-front needs the relay-back address');
  const back = new URL(spec.proxy);
  return ['front', '--listen', listen, '--back', `${back.hostname}:${back.port}`, ...(spec.tls ? ['--ca', spec.tls.certPath] : [])];
}

/** The whole command line of a component process after the Node options: the entry module and its arguments. */
export function componentCommand(spec: ComponentSpec): string[] {
  return isBareRelayMode(spec.mode) ? [BARE_RELAY_ENTRY, ...bareRelayArgs(spec)] : [CLI_ENTRY, ...componentArgs(spec)];
}

/** Starts serve or connect, isolated as asked, and waits for its `listening` report. */
export function startComponent(spec: ComponentSpec): Promise<TunnelComponent> {
  return spec.isolation === 'process' ? startProcess(spec) : startWorker(spec);
}

async function startProcess(spec: ComponentSpec): Promise<TunnelComponent> {
  const args = [...(spec.nodeOptions ?? []), ...componentCommand(spec)];
  // connect --expose reports where its load goes in `exposed` (the public address), not in `listening`.
  const exposes = spec.role === 'connect' && benchEntry(benchMode(spec.mode)) === 'expose';
  const ready = exposes ? 'exposed' : 'listening';
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let stderrTail = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    stderrTail = (stderrTail + s).slice(-STDERR_TAIL_BYTES);
  });
  let counters: Record<string, unknown> | null = null;
  const drops: Record<string, number> = {};
  let exitCode: number | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitCode = code ?? (signal !== null ? 128 : null);
      resolve();
    });
  });
  // NDJSON on stdout: every line is read so the pipe never fills; only listening and shutdown matter here.
  const lines = createInterface({ input: child.stdout!, crlfDelay: Infinity });
  let linesClosed = false;
  lines.once('close', () => (linesClosed = true));
  let started = false;
  const address = await new Promise<ComponentAddress>((resolve, reject) => {
    const fail = (why: string): void => {
      if (started) return;
      started = true;
      child.kill('SIGKILL');
      reject(
        new UdpTunnelError(ErrorCodes.IO, `bench could not start ${spec.role}: ${why}${stderrTail ? `; stderr: ${stderrTail.trim()}` : ''}`, {
          role: spec.role,
          args,
        }),
      );
    };
    const timer = setTimeout(() => fail(`no ${ready} report within ${spec.startTimeoutMs ?? 15_000} ms`), spec.startTimeoutMs ?? 15_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      fail(err.message);
    });
    void exited.then(() => {
      clearTimeout(timer);
      fail(`it exited with code ${String(exitCode)}`);
    });
    lines.on('line', (line) => {
      // Only these reports matter here; the others are parsed only for an observer.
      if (
        spec.onEvent === undefined &&
        !line.startsWith(`{"event":"${ready}"`) &&
        !line.startsWith('{"event":"shutdown"') &&
        !line.startsWith('{"event":"session-close"')
      ) {
        return;
      }
      let ev: {
        event?: string;
        address?: string;
        port?: number;
        family?: string;
        public?: unknown;
        counters?: Record<string, unknown>;
        tunnel?: Record<string, unknown>;
      };
      try {
        ev = JSON.parse(line) as typeof ev;
      } catch {
        return;
      }
      if (spec.onEvent) {
        try {
          spec.onEvent(ev as Record<string, unknown>);
        } catch {
          // A failing observer must not stop the reading of the component's reports.
        }
      }
      if (exposes && ev.event === 'exposed' && !started) {
        const a = exposedAddress(ev.public, spec.host);
        if (a === null) return fail(`its exposed report lists no public address: ${line.slice(0, 200)}`);
        started = true;
        clearTimeout(timer);
        resolve(a);
      } else if (!exposes && ev.event === 'listening' && typeof ev.port === 'number' && !started) {
        started = true;
        clearTimeout(timer);
        resolve({ address: String(ev.address), port: ev.port, family: String(ev.family) });
      } else if (ev.event === 'shutdown') {
        counters = ev.counters ?? null;
        if (exposes && counters !== null) {
          if (ev.tunnel !== undefined) counters = { ...counters, tunnel: ev.tunnel };
          addExposerDrops(drops, counters);
        }
      } else if (ev.event === 'session-close') {
        addSessionDrops(drops, ev as Record<string, unknown>);
      }
    });
  });
  let stopping: Promise<ComponentExit> | null = null;
  const pid = child.pid ?? null;
  return {
    role: spec.role,
    isolation: 'process',
    pid,
    address,
    sample: () => (pid !== null && exitCode === null ? readProcTreeSample(pid) : { rssBytes: null, busyUs: null }),
    stop() {
      stopping ??= (async () => {
        if (exitCode === null) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          await exited;
          clearTimeout(t);
        }
        // The last stdout lines may be read after the exit event.
        if (!linesClosed) await new Promise<void>((resolve) => lines.once('close', () => resolve()));
        return { counters, drops, exitCode, stderrTail };
      })();
      return stopping;
    },
  };
}

async function startWorker(spec: ComponentSpec): Promise<TunnelComponent> {
  const request: TunnelWorkerRequest = {
    role: spec.role,
    mode: spec.mode,
    host: spec.host,
    ...(spec.proxy !== undefined ? { proxy: spec.proxy } : {}),
    ...(spec.target !== undefined ? { target: spec.target } : {}),
    ...(spec.postPath !== undefined ? { postPath: spec.postPath } : {}),
    ...(spec.tls ? { tls: { cert: spec.tls.cert, key: spec.tls.key } } : {}),
    ...(spec.insecure ? { insecure: true } : {}),
  };
  const worker = new Worker(new URL('./tunnel-worker.js', import.meta.url), { workerData: request });
  let exited = false;
  let counters: Record<string, unknown> | null = null;
  let drops: Record<string, number> = {};
  const exitedP = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const address = await new Promise<ComponentAddress>((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new UdpTunnelError(ErrorCodes.IO, `bench could not start ${spec.role}: no listening report`));
    }, spec.startTimeoutMs ?? 15_000);
    worker.on('message', (msg: TunnelWorkerToParent) => {
      if (msg.type === 'listening') {
        clearTimeout(timer);
        resolve(msg.address);
      } else if (msg.type === 'error') {
        clearTimeout(timer);
        void worker.terminate();
        reject(new UdpTunnelError(ErrorCodes.IO, `bench could not start ${spec.role}: ${msg.message}`, { role: spec.role, code: msg.code }));
      } else if (msg.type === 'stopped') {
        counters = msg.counters;
        drops = msg.drops;
      }
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(new UdpTunnelError(ErrorCodes.IO, `bench ${spec.role} worker failed: ${err.message}`, {}, { cause: err }));
    });
    void exitedP.then(() => {
      clearTimeout(timer);
      reject(new UdpTunnelError(ErrorCodes.IO, `bench ${spec.role} worker exited before listening`));
    });
  });
  worker.on('error', () => {});
  let stopping: Promise<ComponentExit> | null = null;
  return {
    role: spec.role,
    isolation: 'worker',
    pid: null,
    address,
    sample: () => {
      if (exited) return { rssBytes: null, busyUs: null };
      return { rssBytes: process.memoryUsage.rss(), busyUs: worker.performance.eventLoopUtilization().active * 1000 };
    },
    stop() {
      stopping ??= (async () => {
        if (!exited) {
          worker.postMessage({ type: 'stop' });
          const t = setTimeout(() => void worker.terminate(), STOP_GRACE_MS);
          await exitedP;
          clearTimeout(t);
        }
        return { counters, drops, exitCode: null, stderrTail: '' };
      })();
      return stopping;
    },
  };
}
