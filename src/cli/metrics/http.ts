import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatHostPort, parseHostPort, type HostPort } from '../../tunnel/address.js';
import { isLoopbackListen } from '../../tunnel/server-config.js';

/** The host the metrics listener binds when `--metrics` names only a port. */
export const METRICS_DEFAULT_HOST = '127.0.0.1';

/** Bounds of the metrics listener: it is reachable by whoever can reach its port, so nothing it holds may grow unbounded. */
export const METRICS_LIMITS = {
  /** Connections open at once; more are closed on accept. */
  maxConnections: 32,
  /** Time a client has to send its request head. */
  headersTimeoutMs: 5_000,
  /** Time a client has for the whole request. */
  requestTimeoutMs: 10_000,
  /** Idle time of a kept-alive connection between requests. */
  keepAliveTimeoutMs: 5_000,
  /** Largest request head in bytes (431 beyond). */
  maxHeaderSize: 8 * 1024,
  /** Requests one connection may make before it is closed. */
  maxRequestsPerSocket: 100,
} as const;

/**
 * Reads a `--metrics` value: `PORT` (on 127.0.0.1), `HOST:PORT` or `[IPv6]:PORT`; port 0 picks a free one. Throws the
 * address parser's error naming `what`.
 */
export function parseMetricsListen(spec: string, what = '--metrics'): HostPort {
  if (/^\d+$/.test(spec)) return parseHostPort(`${METRICS_DEFAULT_HOST}:${spec}`, { allowPortZero: true, what });
  return parseHostPort(spec, { allowPortZero: true, what });
}

/** The exposition a scrape returns: Prometheus text and its content type. */
export interface MetricsExposition {
  contentType: string;
  body: string;
}

/** What the metrics listener serves. */
export interface MetricsHttpOptions {
  host: string;
  port: number;
  /** Renders `/metrics` (may be slow, e.g. asking cluster workers; a failure answers 500). */
  metrics: () => Promise<MetricsExposition>;
  /** `/readyz`: null when ready, else why not (answered with 503). */
  notReady: () => string | null;
}

/** A running metrics listener. */
export interface MetricsHttpServer {
  readonly address: AddressInfo;
  /** The base URL, `http://HOST:PORT`. */
  readonly url: string;
  /** True when it listens beyond loopback, where anyone who reaches the port reads the metrics. */
  readonly exposed: boolean;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

function answer(res: http.ServerResponse, head: boolean, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(head ? undefined : body);
}

/**
 * Starts the metrics listener: GET or HEAD on `/metrics` (Prometheus text), `/healthz` (200 while the process runs)
 * and `/readyz` (200 when ready, else 503 and why); 404 for other paths, 405 for other methods. Rejects when it
 * cannot listen (e.g. the port is taken).
 */
export async function startMetricsHttpServer(opts: MetricsHttpOptions): Promise<MetricsHttpServer> {
  const server = http.createServer(
    {
      headersTimeout: METRICS_LIMITS.headersTimeoutMs,
      requestTimeout: METRICS_LIMITS.requestTimeoutMs,
      keepAliveTimeout: METRICS_LIMITS.keepAliveTimeoutMs,
      maxHeaderSize: METRICS_LIMITS.maxHeaderSize,
    },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const head = req.method === 'HEAD';
      // RFC 9110 §15.5.6: 405 names the methods the resource supports in Allow.
      if (req.method !== 'GET' && !head) return answer(res, false, 405, 'method not allowed: use GET or HEAD\n', { allow: 'GET, HEAD' });
      if (path === '/healthz') return answer(res, head, 200, 'ok\n');
      if (path === '/readyz') {
        const why = opts.notReady();
        return why === null ? answer(res, head, 200, 'ready\n') : answer(res, head, 503, `not ready: ${why}\n`);
      }
      if (path !== '/metrics') return answer(res, head, 404, 'not found: try /metrics, /healthz or /readyz\n');
      opts.metrics().then(
        (m) => answer(res, head, 200, m.body, { 'content-type': m.contentType }),
        (err: unknown) => answer(res, head, 500, `metrics unavailable: ${(err as Error)?.message ?? String(err)}\n`),
      );
    },
  );
  server.maxConnections = METRICS_LIMITS.maxConnections;
  server.maxRequestsPerSocket = METRICS_LIMITS.maxRequestsPerSocket;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // An error after listening (rare: accept failures) must not end the tunnels.
  server.on('error', () => {});
  const address = server.address() as AddressInfo;
  const exposed = !(await isLoopbackListen(address.address));
  return {
    address,
    url: `http://${formatHostPort(address.address, address.port)}`,
    exposed,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
