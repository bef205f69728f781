// The library's defaults as plain values, apart from the code that uses them: the CLI's option schemas and `--help`
// read them from here without loading the tunnel, TLS or HTTP/2 modules.
import { DEFAULT_MAX_CAPSULE_LENGTH } from './codec/capsule-decoder.js';
import { MAX_UDP_PAYLOAD } from './codec/datagram.js';
import { DEFAULT_MAX_UDP_SEND_QUEUE } from './udp-socket.js';
import { DEFAULT_URI_TEMPLATE } from './uri-template.js';

/** Which request opens a tunnel: CONNECT-UDP (RFC 9298) or a POST to a proxy-side route (not RFC 9298). */
export type ClientMode = 'connect-udp' | 'post';

/** HTTP version for CONNECT-UDP: extended CONNECT over HTTP/2 (RFC 9298 §3.4) or Upgrade over HTTP/1.1 (§3.2). */
export type HttpVersionChoice = '2' | '1.1';

/** TunnelClient's defaults (Envoy's where Envoy has one, except buffering, which is on). */
export const CLIENT_DEFAULTS = {
  idleTimeoutMs: 60_000,
  buffer: { enabled: true, maxDatagrams: 1024, maxBytes: 16384 },
  maxConnectAttempts: 1,
  backoff: { baseMs: 100, maxMs: 1000 },
  maxDatagram: MAX_UDP_PAYLOAD,
  maxCapsuleLength: DEFAULT_MAX_CAPSULE_LENGTH,
  maxStreamBuffer: 256 * 1024,
  maxSessions: 10_000,
  maxUdpSendQueue: DEFAULT_MAX_UDP_SEND_QUEUE,
} as const;

/** ProxyConfig's defaults; `connect` shows them in its help. */
export const PROXY_CONFIG_DEFAULTS = {
  mode: 'connect-udp' as ClientMode,
  http: '2' as HttpVersionChoice,
  postPath: '/',
  template: DEFAULT_URI_TEMPLATE,
  connectTimeoutMs: 10_000,
} as const;

/** How a client picks among several proxies: the first healthy one in order, or the next healthy one in turn. */
export type ProxyStrategy = 'failover' | 'round-robin';

/** FailoverTransport's defaults: a proxy that failed is skipped for 1 s, doubling per failure in a row up to 30 s. */
export const FAILOVER_DEFAULTS = {
  strategy: 'failover' as ProxyStrategy,
  downBackoff: { baseMs: 1000, maxMs: 30_000 },
} as const;

/** TunnelServer's defaults. */
export const SERVER_DEFAULTS = {
  template: DEFAULT_URI_TEMPLATE,
  idleTimeoutMs: 120_000,
  maxCapsuleLength: DEFAULT_MAX_CAPSULE_LENGTH,
  maxDatagram: MAX_UDP_PAYLOAD,
  maxUdpSendQueue: DEFAULT_MAX_UDP_SEND_QUEUE,
  maxStreamBuffer: 256 * 1024,
  maxSessions: 10_000,
  maxStreamsPerConnection: 100,
  maxSessionsPerClient: 1000,
  maxAuthFailuresPerConnection: 5,
  authFailureBurst: 20,
  authFailureRefillPerSecond: 2,
  maxAuthFailureEntries: 10_000,
  headerTimeoutMs: 10_000,
  connectionIdleTimeoutMs: 60_000,
  maxConnections: 10_000,
  maxHeaderSize: 16 * 1024,
  dnsTimeoutMs: 5000,
  allowBind: false,
  maxBindContexts: 256,
  maxBindResponses: 64,
  maxBoundPorts: 1000,
  maxBoundPortsPerClient: 16,
} as const;
