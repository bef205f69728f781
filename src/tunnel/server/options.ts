import type { AuthHeaders } from '../auth.js';
import type { PostRoutes } from './connect-udp-request.js';
import { checkMaxDatagram, checkMaxUdpSendQueue } from '../limits.js';
import type { ServerTlsOptions } from './listener.js';

/**
 * Decides whether a resolved target may be reached (RFC 9298 §7). A refusal's `reason` goes to the client in
 * Proxy-Status details; `rule`, if given, names what decided and goes only to the server's 'refused' event.
 */
export interface TargetChecker {
  check(address: string, port: number): { allowed: true } | { allowed: false; reason: string; rule?: string };
}

/** Decides whether a request's credentials are acceptable, and how to challenge when they are not. */
export interface RequestAuthenticator {
  readonly enabled: boolean;
  check(headers: AuthHeaders): { ok: true; user?: string } | { ok: false; reason: string };
  challenge(httpVersion: 1 | 2): { status: number; headers: Record<string, string> };
}

/** Options of a TunnelServer. */
export interface TunnelServerOptions {
  host: string;
  port: number;
  /** TLS with ALPN h2 and http/1.1; cleartext (h2c prior knowledge and HTTP/1.1 side by side) when absent. */
  tls?: ServerTlsOptions;
  /** URI template (RFC 9298 §2); default `/.well-known/masque/udp/{target_host}/{target_port}/`. */
  template?: string;
  policy: TargetChecker;
  authenticator?: RequestAuthenticator;
  /** POST mode: exact request path -> target (not RFC 9298). */
  postRoutes?: PostRoutes;
  /** Inactivity in both directions that closes a session; 0 = never. RFC 9298 §3.1 suggests at least 2 minutes. */
  idleTimeoutMs?: number;
  maxCapsuleLength?: number;
  /** Largest UDP payload relayed either way (0..65527, RFC 9298 §5); larger datagrams are dropped and counted. */
  maxDatagram?: number;
  /**
   * Datagrams a session's target socket may have queued (kernel send buffer full) before further datagrams from the
   * client are dropped and counted in `dropSendQueue`. Default 1024.
   */
  maxUdpSendQueue?: number;
  /** Bytes a stream may hold unsent toward the client before datagrams are dropped; also the HTTP/2 per-stream receive window. */
  maxStreamBuffer?: number;
  /** Tunnels across the whole server. */
  maxSessions?: number;
  /** Tunnels one client connection may hold at once (HTTP/2 and POST); more are refused with REFUSED_STREAM. Default: maxStreamsPerConnection. */
  maxSessionsPerConnection?: number;
  /**
   * Streams one HTTP/2 connection may have open at once; more are refused with RST_STREAM(REFUSED_STREAM) while the
   * others go on. Not sent as SETTINGS_MAX_CONCURRENT_STREAMS: Node's HTTP/2 layer would then answer the first
   * stream over it with a GOAWAY that ends every tunnel on the connection. Default 100.
   */
  maxStreamsPerConnection?: number;
  /** Tunnels one client address may hold across all its connections; more get 503 connection_limit_reached. Default 1,000. */
  maxSessionsPerClient?: number;
  /**
   * Failed authentications (wrong credentials, or requests refused with 429 below; requests without credentials do
   * not count) after which an HTTP/2 connection gets GOAWAY and is closed. Default 5.
   */
  maxAuthFailuresPerConnection?: number;
  /**
   * Wrong credentials one client address may present in a burst; once they are spent its requests get 429 without
   * their credentials being checked, until the bucket refills. Default 20.
   */
  authFailureBurst?: number;
  /** Failed authentications forgiven per second and client address (the bucket's refill rate). Default 2. */
  authFailureRefillPerSecond?: number;
  /** Client addresses whose failed authentications are remembered at once; the one touched longest ago is forgotten first. Default 10,000. */
  maxAuthFailureEntries?: number;
  /** Time a new connection has to complete its TLS handshake and first request head; slower clients are cut off. */
  headerTimeoutMs?: number;
  /**
   * Time an HTTP/2 connection may stay open without any open stream once its first request came; it then gets a
   * GOAWAY with NO_ERROR and is closed. 0 = never. Default 60 s.
   */
  connectionIdleTimeoutMs?: number;
  /** Client TCP connections open at once (any protocol); further ones are closed as soon as they are accepted. Default 10,000. */
  maxConnections?: number;
  /** Largest HTTP/1.1 request head and HTTP/2 header list (RFC 9113 §6.5.2 size) accepted; larger requests get 431. */
  maxHeaderSize?: number;
  /** DNS servers for target names; the system resolver when absent. */
  dnsServers?: string[];
  dnsTimeoutMs?: number;
  /**
   * Accept bound UDP proxying requests (draft-ietf-masque-connect-udp-listen): each hands the client a public UDP
   * port that any peer can send to. Off by default; without it a bound request falls back to plain CONNECT-UDP, or is
   * refused when it names no target.
   */
  allowBind?: boolean;
  /** Address the bound UDP sockets bind to; default the listen host (its wildcard when the listen host is one). */
  bindAddress?: string;
  /** Ports bound sockets take, inclusive; default any free port the OS picks. */
  bindPorts?: { from: number; to: number };
  /**
   * Address announced in Proxy-Public-Address instead of the bound one (a proxy behind NAT). Default: the bound
   * address, or for a wildcard bind the local address the client's connection reached.
   */
  publicAddress?: string;
  /** Contexts one bound tunnel may have open at once (draft §9: a limit is required); more are refused with COMPRESSION_CLOSE. */
  maxBindContexts?: number;
  /**
   * COMPRESSION_ACK/CLOSE answers one bound tunnel may have waiting behind flow control; past it the stream is aborted
   * (draft §9 requires both the limit and the abort).
   */
  maxBindResponses?: number;
  /** Bound ports across the server; further bound requests get 503. */
  maxBoundPorts?: number;
  /** Bound ports one client address may hold; further bound requests get 503. */
  maxBoundPortsPerClient?: number;
}

/** TunnelServer's defaults. */
export { SERVER_DEFAULTS } from '../defaults.js';
import { SERVER_DEFAULTS } from '../defaults.js';

/** TunnelServerOptions with every default applied. */
export type ResolvedServerOptions = Required<Omit<TunnelServerOptions, 'tls' | 'authenticator' | 'dnsServers' | 'postRoutes' | 'bindAddress' | 'bindPorts' | 'publicAddress'>> & TunnelServerOptions;

/** Applies SERVER_DEFAULTS to `options` and checks the relay limits; throws a coded error for a bad value. */
export function resolveServerOptions(options: TunnelServerOptions): ResolvedServerOptions {
  const opts = {
    ...SERVER_DEFAULTS,
    ...options,
    // By default a connection may hold as many tunnels as it may open streams.
    maxSessionsPerConnection: options.maxSessionsPerConnection ?? options.maxStreamsPerConnection ?? 100,
  };
  checkMaxDatagram(opts.maxDatagram);
  checkMaxUdpSendQueue(opts.maxUdpSendQueue);
  return opts;
}
