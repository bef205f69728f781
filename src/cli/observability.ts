import type { TunnelClient } from '../tunnel/client.js';
import type { ProxyConfig } from '../tunnel/client-config.js';
import { probeProxy, type ProxyProbeResult } from '../tunnel/proxy-probe.js';
import type { TunnelServer } from '../tunnel/server/tunnel-server.js';
import type { ProxyCounters } from '../tunnel/transport/failover.js';
import { AccessLog, attachConnectAccessLog, attachServeAccessLog, type ConnectLogContext } from './access-log.js';
import { ErrorCodes, isUdpTunnelError } from '../tunnel/errors.js';
import { UsageError } from './errors.js';
import { ProxyReadiness } from './metrics/proxy-readiness.js';
import type { Output } from './output.js';
import { packageVersion } from './version.js';

/** The flags of serve and connect this module reads. */
export interface ObserveArgs {
  metrics?: string | undefined;
  'access-log'?: string | undefined;
  'access-log-format'?: string | undefined;
  json: boolean;
  inspect: boolean;
}

/** The metrics listener and the access log of one serve or connect run. */
export interface Observability {
  /** The command listens now: /readyz may answer 200. */
  listening(): void;
  /** The command is shutting down: /readyz answers 503. */
  stopping(): void;
  /** Says where the metrics are served (after the command's `listening` event, which stays the first). */
  announce(): void;
  /** Connect: hands the start-up proxy probe's verdict to /readyz. */
  probeResult(r: ProxyProbeResult): void;
  /** Closes the metrics listener and flushes the access log; call after the sessions are closed. */
  close(): Promise<void>;
}

const NOTHING: Observability = { listening() {}, stopping() {}, announce() {}, probeResult() {}, close: async () => {} };

/** Checks the flag combinations and opens the access log (a file that cannot be opened is a usage error). */
function openAccessLog(args: ObserveArgs, secrets: readonly string[], out: Output): AccessLog | undefined {
  const path = args['access-log'];
  if (path === undefined) {
    if (args['access-log-format'] !== undefined) throw new UsageError('--access-log-format needs --access-log FILE|-');
    return undefined;
  }
  if (path === '-' && args.json) throw new UsageError('--access-log - and --json both write to stdout: give --access-log a FILE, or drop --json');
  if (path === '-' && args.inspect) throw new UsageError('--access-log - and --inspect both write to stdout: give --access-log a FILE, or drop --inspect');
  return new AccessLog({ path, format: args['access-log-format'], secrets, onProblem: (m) => out.warn(m) });
}

/** The `metrics` event and line: where the metrics are served, with a warning when beyond loopback. */
function announce(out: Output, m: { url: string; address: { address: string; port: number }; exposed: boolean }): void {
  out.event('metrics', { url: `${m.url}/metrics`, address: m.address.address, port: m.address.port });
  out.info(`metrics on ${m.url}/metrics (also /healthz, /readyz)`);
  if (m.exposed) {
    const warning = `metrics on ${m.url} have no authentication: anyone who reaches the port reads them`;
    out.warn(warning);
    out.event('warning', { message: warning });
  }
}

/** Starts serve's --metrics listener and --access-log, before the proxy listens (so /readyz says 503 until it does). */
export async function startServeObservability(args: ObserveArgs, server: TunnelServer, out: Output, secrets: readonly string[]): Promise<Observability> {
  const log = openAccessLog(args, secrets, out);
  if (log) attachServeAccessLog(server, log);
  if (args.metrics === undefined) return log ? { ...NOTHING, close: () => log.close() } : NOTHING;
  let state: 'starting' | 'listening' | 'stopping' = 'starting';
  const notReady = (): string | null => (state === 'listening' ? null : state === 'starting' ? 'not listening yet' : 'shutting down');
  let metrics;
  try {
    const m = await import('./metrics/index.js');
    const listen = m.parseMetricsListen(args.metrics);
    const registry = m.serveRegistry(server, { command: 'serve', version: packageVersion(), notReady, ...(log ? { accessLog: () => log.counts } : {}) });
    metrics = await m.serveRegistryOver(registry, listen, notReady);
  } catch (err) {
    await log?.close();
    throw metricsListenError(args.metrics, err);
  }
  const http = metrics;
  return {
    listening: () => (state = 'listening'),
    announce: () => announce(out, http),
    stopping: () => (state = 'stopping'),
    probeResult() {},
    close: async () => {
      state = 'stopping';
      await http.close();
      await log?.close();
    },
  };
}

/** What connect's observability needs to know besides its flags and forwards. */
export interface ConnectObserveContext {
  /** The proxy origin, without credentials: the metrics' `proxy` label. */
  proxy: string;
  /** Each proxy's counters, for the per-proxy series. */
  proxies?: () => readonly ProxyCounters[];
  config: ProxyConfig;
  /** The start-up probe runs and will report its verdict through probeResult(). */
  startupProbe: boolean;
}

/** Starts connect's --metrics listener (readiness: listening and the proxy reachable) and --access-log. */
export async function startConnectObservability(
  args: ObserveArgs,
  forwards: readonly { client: TunnelClient; log: ConnectLogContext }[],
  out: Output,
  secrets: readonly string[],
  ctx: ConnectObserveContext,
): Promise<Observability> {
  const log = openAccessLog(args, secrets, out);
  if (log) for (const f of forwards) attachConnectAccessLog(f.client, log, f.log);
  const clients = forwards.map((f) => f.client);
  if (args.metrics === undefined) return log ? { ...NOTHING, close: () => log.close() } : NOTHING;
  let state: 'starting' | 'listening' | 'stopping' = 'starting';
  const readiness = new ProxyReadiness((signal) => probeProxy(ctx.config, { signal }));
  const notReady = (): string | null => (state === 'listening' ? readiness.notReady() : state === 'starting' ? 'not listening yet' : 'shutting down');
  let metrics;
  try {
    const m = await import('./metrics/index.js');
    const listen = m.parseMetricsListen(args.metrics);
    const registry = m.connectRegistry(clients, {
      command: 'connect',
      version: packageVersion(),
      notReady,
      proxy: ctx.proxy,
      readiness,
      ...(ctx.proxies ? { proxies: ctx.proxies } : {}),
      ...(log ? { accessLog: () => log.counts } : {}),
    });
    metrics = await m.serveRegistryOver(registry, listen, notReady);
  } catch (err) {
    readiness.stop();
    await log?.close();
    throw metricsListenError(args.metrics, err);
  }
  const http = metrics;
  return {
    announce: () => announce(out, http),
    listening: () => {
      state = 'listening';
      if (!ctx.startupProbe) readiness.check();
    },
    stopping: () => (state = 'stopping'),
    probeResult: (r) => readiness.report(r),
    close: async () => {
      state = 'stopping';
      readiness.stop();
      await http.close();
      await log?.close();
    },
  };
}

/** A listen failure of the metrics listener, said with the flag; a bad address is a usage error. */
function metricsListenError(spec: string, err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'EADDRINUSE') return new UsageError(`--metrics ${spec}: the address is already in use`);
  if (e?.code === 'EADDRNOTAVAIL') return new UsageError(`--metrics ${spec}: no such local address`);
  if (e?.code === 'EACCES') return new UsageError(`--metrics ${spec}: permission denied (ports below 1024 need privileges)`);
  if (isUdpTunnelError(err, ErrorCodes.INVALID_ADDRESS)) return new UsageError(err.message);
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * A `serve --workers` worker: its access log (every worker appends whole lines to the same file) and its metrics
 * registry, handed to the primary's aggregation; a worker serves no metrics port itself.
 */
export async function startServeWorkerObservability(args: ObserveArgs, server: TunnelServer, out: Output, secrets: readonly string[]): Promise<{ close(): Promise<void> }> {
  const log = openAccessLog(args, secrets, out);
  if (log) attachServeAccessLog(server, log);
  if (args.metrics !== undefined) {
    const m = await import('./metrics/index.js');
    const registry = m.serveRegistry(server, { command: 'serve', version: packageVersion(), notReady: () => null, ...(log ? { accessLog: () => log.counts } : {}) });
    m.exposeToClusterPrimary(registry);
  }
  return { close: async () => void (await log?.close()) };
}

/** The `serve --workers` primary's metrics listener: every worker's series, aggregated at each scrape. */
export async function startClusterMetrics(args: ObserveArgs, out: Output, notReady: () => string | null): Promise<{ announce(): void; close(): Promise<void> }> {
  if (args.metrics === undefined) return { announce() {}, close: async () => {} };
  let http;
  try {
    const m = await import('./metrics/index.js');
    const listen = m.parseMetricsListen(args.metrics);
    http = await m.startMetricsHttpServer({ ...listen, metrics: m.clusterMetrics(), notReady });
  } catch (err) {
    throw metricsListenError(args.metrics, err);
  }
  const server = http;
  return { announce: () => announce(out, server), close: () => server.close() };
}

/** The credentials serve's access log must never show: tokens, Basic user:pass pairs and their passwords. */
export function serveSecrets(args: { token: readonly string[]; basic: readonly string[] }): string[] {
  return [...args.token, ...args.basic, ...args.basic.map((b) => b.slice(b.indexOf(':') + 1))];
}
