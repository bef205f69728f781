import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import type { ProxyErrorType } from '../tunnel/proxy-status.js';

/** The name the relay uses in the Proxy-Status entries it writes itself (RFC 9209 §2: one entry per intermediary). */
export const RELAY_PROXY_STATUS_NAME = 'udp-tunnel-inspect';

/** TLS settings for the relay's connections to the upstream proxy. */
export interface RelayUpstreamTls {
  /** CA certificates to trust (PEM). */
  ca?: string | Buffer;
  /** Skip certificate verification (testing only). */
  insecure?: boolean;
  /** Server name for SNI and verification, if not the upstream host. */
  servername?: string;
}

/** Counters of a relay. */
export interface RelayCounters {
  /** Client connections accepted (any protocol). */
  connections: number;
  /** Client connections that spoke HTTP/2 (h2c prior knowledge, or ALPN h2). */
  connectionsH2: number;
  /** Client connections that spoke HTTP/1.1. */
  connectionsH1: number;
  /** Client connections closed at once because maxConnections were open. */
  droppedConnections: number;
  /** Client TLS handshakes that failed (other than by timeout). */
  tlsErrors: number;
  /** Client connections that spoke TLS to a cleartext relay, or cleartext HTTP to a TLS one: told so and closed. */
  schemeMismatches: number;
  /** Client connections closed for completing no TLS handshake, or sending no complete first request, within headTimeoutMs. */
  headTimeouts: number;
  /** Requests received from clients (HTTP/2 streams and HTTP/1.1 request heads). */
  streams: number;
  /** Requests the relay answered itself because the upstream could not take them. */
  localAnswers: number;
  /** HTTP/1.1 heads (request or response) that could not be parsed, including those over the size limit. */
  headErrors: number;
  /** Of those, heads longer than maxHeadBytes. */
  headLimit: number;
  /** Bytes forwarded client -> proxy and proxy -> client (request and response content). */
  bytesToProxy: number;
  bytesToClient: number;
  /** Bytes read from a side but not forwarded: its HTTP/1.1 exchange was over, or the other side was already gone. */
  discardedBytes: number;
}

/** A zeroed RelayCounters. */
export function emptyRelayCounters(): RelayCounters {
  return {
    connections: 0,
    connectionsH2: 0,
    connectionsH1: 0,
    droppedConnections: 0,
    tlsErrors: 0,
    schemeMismatches: 0,
    headTimeouts: 0,
    streams: 0,
    localAnswers: 0,
    headErrors: 0,
    headLimit: 0,
    bytesToProxy: 0,
    bytesToClient: 0,
    discardedBytes: 0,
  };
}

/** Why the relay answered a request itself. */
export interface RelayFailure {
  status: number;
  error: ProxyErrorType;
  details: string;
}

/** Maps a failure to reach the upstream proxy to a status and an RFC 9209 error type. */
export function upstreamFailure(err: unknown, upstream: URL): RelayFailure {
  if (err instanceof UdpTunnelError && err.code === ErrorCodes.TIMEOUT) {
    return { status: 504, error: 'connection_timeout', details: err.message };
  }
  // A coded wrapper around a socket error (see connectProxySocket) is judged by the socket error it carries.
  if (err instanceof UdpTunnelError && err.cause !== undefined) return upstreamFailure(err.cause, upstream);
  const e = err as NodeJS.ErrnoException | undefined;
  const code = e?.code ?? '';
  const message = `upstream ${upstream.host}: ${e?.message ?? String(err)}${code ? ` (${code})` : ''}`;
  if (code === 'ECONNREFUSED') return { status: 502, error: 'connection_refused', details: message };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { status: 502, error: 'dns_error', details: message };
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET/.test(code)) return { status: 502, error: 'tls_certificate_error', details: message };
  if (/SSL|TLS/.test(code)) return { status: 502, error: 'tls_protocol_error', details: message };
  return { status: 502, error: 'connection_terminated', details: message };
}
