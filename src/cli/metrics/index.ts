// The metrics listener of serve and connect. Loaded only when --metrics is given: prom-client stays out of --help.
import { AggregatorRegistry, Registry, collectDefaultMetrics } from 'prom-client';
import type { TunnelClient } from '../../tunnel/client.js';
import type { TunnelServer } from '../../tunnel/server/tunnel-server.js';
import { registerRead, type Series } from './collect.js';
import { registerConnectMetrics, type ConnectMetricsOptions } from './connect-metrics.js';
import { startMetricsHttpServer, type MetricsExposition, type MetricsHttpServer } from './http.js';
import { registerServeMetrics } from './serve-metrics.js';

export { parseMetricsListen, startMetricsHttpServer, METRICS_LIMITS, type MetricsHttpServer } from './http.js';
export { ProxyReadiness, READINESS_BACKOFF } from './proxy-readiness.js';

/** Counts of an access log, exported with the metrics. */
export interface AccessLogCounts {
  readonly written: number;
  readonly dropped: number;
}

/** What every command's registry carries besides its own statistics. */
export interface CommonMetricsOptions {
  command: 'serve' | 'connect';
  version: string;
  /** Null when the command is ready (listening; connect: its proxy reachable), else why not: `/readyz`, `ready`. */
  notReady: () => string | null;
  accessLog?: () => AccessLogCounts;
  /** Node's process metrics (memory, CPU, event loop lag); default true. */
  processMetrics?: boolean;
}

function registerCommon(registry: Registry, o: CommonMetricsOptions): void {
  registerRead(registry, {
    name: 'info',
    help: 'Always 1; the labels say which udp-tunnel runs',
    type: 'gauge',
    labelNames: ['command', 'version'],
    read: () => [[{ command: o.command, version: o.version }, 1]],
    aggregator: 'max',
  });
  registerRead(registry, { name: 'ready', help: 'Whether /readyz answers 200 (1) or 503 (0)', type: 'gauge', read: () => (o.notReady() === null ? 1 : 0), aggregator: 'min' });
  const log = o.accessLog;
  if (log !== undefined) {
    registerRead(registry, {
      name: 'access_log_lines',
      help: 'Access log lines written, and dropped (write error or full buffer)',
      type: 'counter',
      labelNames: ['result'],
      read: (): Series[] => {
        const n = log();
        return [
          [{ result: 'written' }, n.written],
          [{ result: 'dropped' }, n.dropped],
        ];
      },
    });
  }
  if (o.processMetrics ?? true) collectDefaultMetrics({ register: registry });
}

/** A registry with serve's metrics. In a cluster worker, pass it to exposeToClusterPrimary(). */
export function serveRegistry(server: TunnelServer, o: CommonMetricsOptions, registry: Registry = new Registry()): Registry {
  registerCommon(registry, o);
  registerServeMetrics(registry, server);
  return registry;
}

/** A registry with connect's metrics. */
export function connectRegistry(
  client: TunnelClient | readonly TunnelClient[],
  o: CommonMetricsOptions & ConnectMetricsOptions,
  registry: Registry = new Registry(),
): Registry {
  registerCommon(registry, o);
  registerConnectMetrics(registry, client, o);
  return registry;
}

/** The exposition of one registry. */
export function registryMetrics(registry: Registry): () => Promise<MetricsExposition> {
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}

/**
 * Cluster worker side: makes `registry` the one the primary's clusterMetrics() collects, and answers its requests
 * (prom-client's AggregatorRegistry protocol over the IPC channel). A worker serves no metrics port itself.
 */
export function exposeToClusterPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs the worker's listener for the primary's requests.
  new AggregatorRegistry();
}

/**
 * Cluster primary side: the exposition of every worker's registry, aggregated (counters summed, `ready` and
 * `proxy_reachable` the minimum, `info` the maximum). Hand it to startMetricsHttpServer as `metrics`. A worker that
 * does not answer within 5 s fails the scrape (500).
 */
export function clusterMetrics(): () => Promise<MetricsExposition> {
  const aggregator = new AggregatorRegistry();
  return async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() });
}

/** Starts the metrics listener for one registry, readiness from `notReady`. */
export function serveRegistryOver(
  registry: Registry,
  listen: { host: string; port: number },
  notReady: () => string | null,
): Promise<MetricsHttpServer> {
  return startMetricsHttpServer({ ...listen, metrics: registryMetrics(registry), notReady });
}
