import type { Registry } from 'prom-client';
import { addDrops, emptySessionDrops, type SessionDrops, type TunnelClient } from '../../tunnel/client.js';
import { UdpTunnelError, type RefusalDetails } from '../../tunnel/errors.js';
import { errorTypeLabel, eventCounter, registerRead, seriesOf } from './collect.js';
import type { ProxyCounters } from '../../tunnel/transport/failover.js';
import type { ProxyReadiness } from './proxy-readiness.js';

/** What connect's metrics label their series with. */
export interface ConnectMetricsOptions {
  /** The proxy origin (no credentials): the `proxy` label. */
  proxy: string;
  readiness?: ProxyReadiness;
  /** Each proxy's counters (the failover transport's), read at scrape time; summed per proxy over the transports. */
  proxies?: () => readonly ProxyCounters[];
}

/**
 * Registers connect's metrics in `registry`: Envoy's UDP proxy statistics read from `client.counters` and
 * `client.dropsByReason()` at scrape time; tunnel attempts and their failures (by Proxy-Status error type and error
 * code) counted from the 'session-ready' and 'connect-error' events.
 */
export function registerConnectMetrics(registry: Registry, clientOrForwards: TunnelClient | readonly TunnelClient[], opts: ConnectMetricsOptions): void {
  // With several forwards (-L) the series are sums over their clients, read at scrape time.
  const clients: readonly TunnelClient[] = Array.isArray(clientOrForwards) ? clientOrForwards : [clientOrForwards as TunnelClient];
  type Counters = TunnelClient['counters'];
  const sum = (name: keyof Counters): number => clients.reduce((n, cl) => n + cl.counters[name], 0);
  const dropsByReason = (): SessionDrops => {
    const total = emptySessionDrops();
    for (const cl of clients) addDrops(total, cl.dropsByReason());
    return total;
  };
  const read = (name: keyof Counters, help: string, type: 'counter' | 'gauge' = 'counter'): void =>
    registerRead(registry, { name, help, type, read: () => sum(name) });
  read('downstream_sess_total', 'Sessions (local peers) opened');
  read('downstream_sess_active', 'Sessions open now', 'gauge');
  read('downstream_sess_rx_datagrams', 'Datagrams received from local peers');
  read('downstream_sess_rx_bytes', 'Payload bytes received from local peers');
  read('downstream_sess_tx_datagrams', 'Datagrams sent to local peers');
  read('downstream_sess_tx_bytes', 'Payload bytes sent to local peers');
  read('downstream_sess_overflow', 'Local datagrams dropped because max-sessions sessions were open');
  read('idle_timeout', 'Sessions closed for idleness');
  read('sess_tunnel_success', 'Sessions whose tunnel was established');
  read('sess_tunnel_failure', 'Sessions whose tunnel could not be established');
  read('sess_tunnel_buffer_overflow', 'Datagrams dropped because the buffer of a connecting session was full');
  read('upstream_rq_retry', 'Tunnel attempts retried');
  registerRead(registry, {
    name: 'datagrams_dropped',
    help: 'Datagrams dropped, by reason',
    type: 'counter',
    labelNames: ['reason'],
    read: () => [...seriesOf(dropsByReason(), 'reason'), [{ reason: 'session_overflow' }, sum('downstream_sess_overflow')] as const],
  });
  const proxy = opts.proxy;
  const attempts = eventCounter(registry, 'upstream_rq_total', 'Tunnel requests (connect attempts) sent to the proxy', ['proxy']);
  const failures = eventCounter(
    registry,
    'upstream_rq_failure',
    'Tunnel requests that failed, by Proxy-Status error type (none: the proxy sent none) and error code',
    ['proxy', 'error_type', 'code'],
  );
  // Present from the start, so a rate over them has a zero to begin with.
  attempts.inc({ proxy }, 0);
  for (const client of clients) {
    client.on('session-ready', () => {
      attempts.inc({ proxy });
      opts.readiness?.tunnelReady();
    });
    client.on('connect-error', (e: { error: Error }) => {
      attempts.inc({ proxy });
      const err = e.error;
      const details = err instanceof UdpTunnelError ? (err.details as Partial<RefusalDetails>) : {};
      const code = err instanceof UdpTunnelError ? err.code : 'UNKNOWN';
      failures.inc({ proxy, error_type: errorTypeLabel(details.proxyStatus?.error), code });
      opts.readiness?.tunnelFailed(err);
    });
  }
  const perProxy = opts.proxies;
  if (perProxy !== undefined) {
    const rows = (pick: (p: ProxyCounters) => number): [{ proxy: string }, number][] => {
      const sums = new Map<string, number>();
      for (const p of perProxy()) sums.set(p.proxy, (sums.get(p.proxy) ?? 0) + pick(p));
      return [...sums].map(([proxy, n]) => [{ proxy }, n]);
    };
    const each = (name: string, help: string, type: 'counter' | 'gauge', pick: (p: ProxyCounters) => number): void =>
      registerRead(registry, { name, help, type, labelNames: ['proxy'], read: () => rows(pick) });
    each('proxy_sessions_opened', 'Tunnels established through each proxy (new and moved sessions)', 'counter', (p) => p.sessionsOpened);
    each('proxy_sessions_active', 'Tunnels open now through each proxy', 'gauge', (p) => p.sessionsActive);
    each('proxy_connect_failures', 'Attempts that could not set up a tunnel through each proxy', 'counter', (p) => p.connectFailures);
    each('proxy_sessions_moved', 'Sessions that lost their tunnel on each proxy and went on through another', 'counter', (p) => p.sessionsMoved);
    each('proxy_down', 'Whether each proxy is marked down (1) or not (0)', 'gauge', (p) => (p.down ? 1 : 0));
  }
  const readiness = opts.readiness;
  if (readiness !== undefined) {
    registerRead(registry, {
      name: 'proxy_reachable',
      help: 'Whether the proxy was last seen reachable (1) or not (0)',
      type: 'gauge',
      labelNames: ['proxy'],
      read: () => [[{ proxy }, readiness.reachable ? 1 : 0]],
      aggregator: 'min',
    });
  }
}
