import type { Registry } from 'prom-client';
import type { LocalResourceEvent } from '../../tunnel/local-resource.js';
import type { RefusedEvent, TunnelServer } from '../../tunnel/server/tunnel-server.js';
import { errorTypeLabel, eventCounter, registerRead, seriesOf } from './collect.js';

/** The status label of a refusal: its HTTP status, or `reset` / `goaway` when none was sent. */
function statusLabel(e: RefusedEvent): string {
  if (e.status !== null) return String(e.status);
  return e.reset !== undefined ? 'reset' : 'goaway';
}

/**
 * Registers serve's metrics in `registry`: read from `server.counters` and `server.sessionTotals()` at scrape time,
 * refusals counted from its 'refused' and 'local-resource-error' events. Names follow Envoy's HTTP connection manager
 * (downstream_cx_*, downstream_rq_*) and UDP proxy (downstream_sess_*) statistics.
 */
export function registerServeMetrics(registry: Registry, server: TunnelServer): void {
  const c = server.counters;
  const read = (name: string, help: string, type: 'counter' | 'gauge', value: () => number): void =>
    registerRead(registry, { name, help, type, read: value });
  read('downstream_cx_total', 'TCP connections accepted', 'counter', () => c.connections);
  read('downstream_cx_active', 'Client connections open now', 'gauge', () => server.openConnections);
  read('downstream_cx_http1_total', 'Connections that spoke HTTP/1.1', 'counter', () => c.connectionsH1);
  read('downstream_cx_http2_total', 'Connections that spoke HTTP/2', 'counter', () => c.connectionsH2);
  read('downstream_rq_total', 'Requests received', 'counter', () => c.requests);
  read('downstream_sess_total', 'Tunnels (sessions) opened', 'counter', () => c.sessionsTotal);
  read('downstream_sess_active', 'Tunnels relaying now', 'gauge', () => c.sessionsActive);
  // One pass over the live sessions per scrape, shared by the traffic series and the drops: a scrape collects every
  // metric in one synchronous turn, so the snapshot is dropped at the next one.
  let snapshot: ReturnType<TunnelServer['sessionTotals']> | null = null;
  const fresh = (): ReturnType<TunnelServer['sessionTotals']> => {
    if (snapshot === null) {
      snapshot = server.sessionTotals();
      setImmediate(() => (snapshot = null));
    }
    return snapshot;
  };
  read('downstream_sess_rx_datagrams', 'Datagrams received from clients through their tunnels', 'counter', () => fresh().rxDatagrams);
  read('downstream_sess_rx_bytes', 'Payload bytes received from clients through their tunnels', 'counter', () => fresh().rxBytes);
  read('downstream_sess_tx_datagrams', 'Datagrams sent to clients through their tunnels', 'counter', () => fresh().txDatagrams);
  read('downstream_sess_tx_bytes', 'Payload bytes sent to clients through their tunnels', 'counter', () => fresh().txBytes);
  registerRead(registry, {
    name: 'datagrams_dropped',
    help: 'Datagrams dropped, by reason',
    type: 'counter',
    labelNames: ['reason'],
    read: () => {
      const t = fresh();
      return seriesOf({ oversize: t.dropOversize, backpressure: t.dropBackpressure, contextId: t.dropContextId, udpSend: t.dropUdpSend, sendQueue: t.dropSendQueue }, 'reason');
    },
  });
  read('idle_timeout', 'Tunnels closed for idleness', 'counter', () => c.idleTimeouts);
  read('downstream_rq_auth_failure', 'Requests without acceptable credentials', 'counter', () => c.authFailures);
  read('malformed_streams', 'Tunnels aborted for a malformed capsule stream', 'counter', () => c.malformedStreams);
  read('target_unreachable', 'ICMP unreachable errors reported by target sockets', 'counter', () => c.targetUnreachable);
  read('tls_errors', 'TLS handshakes that failed', 'counter', () => c.tlsErrors);
  read('scheme_mismatches', 'Connections that spoke TLS to cleartext or cleartext to TLS', 'counter', () => c.schemeMismatches);
  read('local_resource_errors', 'Times the host ran short of descriptors, buffers or memory', 'counter', () => c.localResourceErrors);
  registerRead(registry, {
    name: 'limit_hits',
    help: 'Times each configured limit was hit',
    type: 'counter',
    labelNames: ['limit'],
    read: () => seriesOf(c.limits, 'limit'),
  });
  read('bind_sessions', 'Bound tunnels opened (CONNECT-UDP Bind)', 'counter', () => c.bind.sessions);
  read('bind_ports_active', 'UDP ports bound for bound tunnels now', 'gauge', () => c.bind.portsInUse);
  registerRead(registry, {
    name: 'bind_dropped',
    help: 'Bound tunnels: datagrams dropped and registrations refused, by reason',
    type: 'counter',
    labelNames: ['reason'],
    read: () => {
      const { sessions: _s, portsInUse: _p, ...drops } = c.bind;
      return seriesOf(drops, 'reason');
    },
  });
  const refused = eventCounter(registry, 'downstream_rq_refused', 'Requests refused, by status (reset, goaway) and Proxy-Status error type', ['status', 'error_type']);
  server.on('refused', (e: RefusedEvent) => refused.inc({ status: statusLabel(e), error_type: errorTypeLabel(e.error) }));
  server.on('local-resource-error', (e: LocalResourceEvent) => {
    if (e.status !== null) refused.inc({ status: String(e.status), error_type: 'proxy_internal_error' });
  });
}
