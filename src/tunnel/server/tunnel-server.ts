import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { formatHostPort } from '../address.js';
import type { AuthHeaders } from '../auth.js';
import { AuthFailureLimiter } from '../auth-limiter.js';
import { DEFAULT_MAX_CAPSULE_LENGTH } from '../codec/capsule-decoder.js';
import { MAX_UDP_PAYLOAD } from '../codec/datagram.js';
import { validateConnectUdpRequest, type IncomingTunnelRequest, type PostRoutes, type TunnelMode } from './connect-udp-request.js';
import { DatagramChannel, emptyChannelCounters, type ChannelCounters, type ChannelDropKind } from '../datagram-channel.js';
import { tapChannel } from '../diagnostics.js';
import { ErrorCodes, type UdpTunnelError } from '../errors.js';
import { ALPN_H2_AND_HTTP1, detectCleartextHttpVersion, tlsHttpVersion } from '../http/version-detect.js';
import { formatResponseHead, headerValues, listsToken, parseRequestHead, rawHeaderList, type Http1Head } from '../http/http1-head.js';
import { IdleTimer } from '../idle-timer.js';
import { isLocalResourceError, type LocalResourceEvent } from '../local-resource.js';
import { formatProxyStatus, type ProxyErrorType } from '../proxy-status.js';
import { checkMaxDatagram, checkMaxUdpSendQueue, maxDatagramTo } from '../limits.js';
import { Resolver, type ResolvedAddress } from '../resolver.js';
import { DEFAULT_MAX_UDP_SEND_QUEUE } from '../udp-socket.js';
import { DEFAULT_URI_TEMPLATE, compileTemplateMatcher, type TemplateMatcher } from '../uri-template.js';

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_SCHEME, HTTP2_HEADER_STATUS } = http2.constants;
const HTTP2_HEADER_PROTOCOL = ':protocol';

export { H2_PREFACE } from '../http/version-detect.js';

// Passed through to net.Server (the http2 typings omit it): capsules are small and latency-sensitive, and Nagle's
// algorithm would hold one back while earlier bytes are unacknowledged.

/** How long a connection told to close may linger before it is cut off. */
const CLOSE_GRACE_MS = 1000;

/**
 * RFC 9113 §6.5.2: the size of a header list is the sum of each field's name and value length in octets plus 32.
 * `raw` is Node's flat `[name, value, ...]` list, whose strings hold one character per received octet.
 */
export function headerListSize(raw: readonly string[]): number {
  let size = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) size += String(raw[i]).length + String(raw[i + 1]).length + 32;
  return size;
}

/** Decides whether a resolved target may be reached (RFC 9298 §7). */
export interface TargetChecker {
  check(address: string, port: number): { allowed: true } | { allowed: false; reason: string };
}

/** Decides whether a request's credentials are acceptable, and how to challenge when they are not. */
export interface RequestAuthenticator {
  readonly enabled: boolean;
  check(headers: AuthHeaders): { ok: true; user?: string } | { ok: false; reason: string };
  challenge(httpVersion: 1 | 2): { status: number; headers: Record<string, string> };
}

/** TLS settings of the listener; `ca` turns on client certificate verification (mTLS). */
export interface ServerTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** CA bundle for client certificates; when set, clients must present a certificate it signed. */
  ca?: string | Buffer;
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
}

/** Statistics of one relayed session, reported when it closes. */
export interface ServerSessionStats extends ChannelCounters {
  id: string;
  client: string;
  target: string;
  resolved: string;
  /** `h1`, `h2` or `post`. */
  transport: string;
  /** UDP datagrams that could not be sent to the target (socket error). */
  dropUdpSend: number;
  /** UDP datagrams for the target dropped because its socket already had maxUdpSendQueue datagrams queued. */
  dropSendQueue: number;
  /** ICMP unreachable errors the target socket reported (on a receive or a send); the session stays open. */
  targetUnreachable: number;
  openedAt: number;
  durationMs: number;
  closeReason: string;
}

/** How often each configured limit was hit. */
export interface ServerLimitCounters {
  /** Requests refused (503) because the server already held maxSessions tunnels. */
  serverSessions: number;
  /** Streams refused (REFUSED_STREAM) because their connection already held maxSessionsPerConnection tunnels. */
  connectionSessions: number;
  /** HTTP/2 streams refused (REFUSED_STREAM) because their connection already had maxStreamsPerConnection open. */
  connectionStreams: number;
  /** Requests refused (503) because their client address already held maxSessionsPerClient tunnels. */
  clientSessions: number;
  /** HTTP/2 connections sent GOAWAY (ENHANCE_YOUR_CALM) after maxAuthFailuresPerConnection failed authentications. */
  authConnection: number;
  /** Requests refused (429) unchecked because their client address had spent its failed-authentication budget. */
  authRate: number;
  /** Client addresses forgotten by the failed-authentication table because it held maxAuthFailureEntries. */
  authEvictions: number;
  /** Capsule streams aborted for a capsule longer than maxCapsuleLength. */
  capsuleLength: number;
  /** Datagrams dropped for exceeding maxDatagram, either direction, or for a target over IPv4 the 65507-byte IPv4 bound. */
  datagramSize: number;
  /** Connections cut off for not completing the TLS handshake or first request head within headerTimeoutMs. */
  headerTime: number;
  /** Datagrams dropped because their stream already held maxStreamBuffer unsent bytes. */
  streamBuffer: number;
  /** Datagrams for targets dropped because the session's UDP socket already had maxUdpSendQueue queued. */
  udpSendQueue: number;
  /**
   * Requests refused with 431 for an HTTP/1.1 head or HTTP/2 header list over maxHeaderSize. An HTTP/2 peer that has
   * acknowledged our SETTINGS is refused by Node's HTTP/2 layer first (RST_STREAM ENHANCE_YOUR_CALM), uncounted.
   */
  headerSize: number;
  /** HTTP/2 connections closed with GOAWAY (NO_ERROR) after connectionIdleTimeoutMs without an open stream. */
  connectionIdle: number;
  /** TCP connections closed on accept because maxConnections were already open. */
  connections: number;
  /** HTTP/2 connections closed with GOAWAY (SETTINGS_TIMEOUT) for not acknowledging our SETTINGS within headerTimeoutMs. */
  settingsTimeout: number;
}

/** Server-wide counters. */
export interface ServerCounters {
  /** TCP connections accepted (those closed at maxConnections are counted in limits.connections instead). */
  connections: number;
  connectionsH1: number;
  connectionsH2: number;
  requests: number;
  sessionsTotal: number;
  sessionsActive: number;
  /** Refusals by status code. */
  refused: Record<number, number>;
  /** Requests without acceptable credentials. */
  authFailures: number;
  malformedStreams: number;
  idleTimeouts: number;
  /** ICMP unreachable errors reported by target sockets, all sessions (see ServerSessionStats.targetUnreachable). */
  targetUnreachable: number;
  /** TLS handshakes that failed (other than by timeout). */
  tlsErrors: number;
  /**
   * Times this host ran short of descriptors, kernel buffers or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): requests
   * refused with 503 while opening their UDP socket, and connections that failed on accept.
   */
  localResourceErrors: number;
  limits: ServerLimitCounters;
}

/** Per-connection bookkeeping. */
interface ConnState {
  socket: net.Socket;
  /** The client's address and port, formatted once for events and stats. */
  client: string;
  /** Tunnels set up or relaying on this connection. */
  sessions: number;
  headerTimer: NodeJS.Timeout | null;
  /** Set once the socket belongs to the HTTP/2 server, which must then be the one to close it. */
  h2: http2.ServerHttp2Session | null;
  /** HTTP/2 streams of this connection that are open (from their request until they close). */
  streams: number;
  /** Runs while an HTTP/2 connection has no open stream. */
  idleTimer: NodeJS.Timeout | null;
  /** The client's address without the port: the key of the per-client limits. */
  address: string;
  /** HTTP/2 streams of this connection not yet seen to close, for maxStreamsPerConnection. */
  live: Set<http2.ServerHttp2Stream>;
  /** Failed authentications on this connection. */
  authFailures: number;
}

/**
 * What the shared request handling needs from the front a request arrived through (an HTTP/2 stream or an
 * HTTP/1.1 connection awaiting its upgrade). The front owns the wire format of answers.
 */
interface RequestFront {
  readonly httpVersion: 1 | 2;
  readonly client: string;
  readonly conn: ConnState;
  /** Raw `[name, value, ...]` list, so duplicate credential fields stay visible to the authenticator. */
  readonly rawHeaders: readonly string[];
  /** HTTP/1.1 request line, for the tap. */
  readonly requestLine?: { method: string; target: string };
  /** True once no answer can reach the client. */
  gone(): boolean;
  /** Answers with a refusal and ends the request. */
  refuse(status: number, headers: Record<string, string>): void;
  /** Refuses in a way that tells the client to retry elsewhere (HTTP/2 REFUSED_STREAM, RFC 9113 §8.7). */
  refuseRetry(): void;
  /** Sends the success response and returns the capsule stream. */
  accept(): Duplex;
  /** Ends an accepted tunnel: 'malformed' aborts it (RFC 9297 §3.3), 'close' ends it. */
  end(reason: 'malformed' | 'close'): void;
}

interface Session {
  id: string;
  front: RequestFront;
  stream: Duplex;
  udp: dgram.Socket;
  channel: DatagramChannel;
  idle: IdleTimer;
  stats: ServerSessionStats;
  closed: boolean;
  /** Gives back the server-wide and per-connection slots. */
  release: () => void;
}

const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization']);

/** Copies headers for the tap with credentials replaced, so a tap never sees secrets. */
function redactHeaders(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const name = String(pairs[i]).toLowerCase();
    const value = CREDENTIAL_HEADERS.has(name) ? '[redacted]' : String(pairs[i + 1]);
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
  }
  return out;
}

/** A client's address as the per-client limits key it: IPv4-mapped IPv6 (dual-stack listeners) as plain IPv4. */
function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return 'unknown';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

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
} as const;

/**
 * The proxy side of udp-tunnel. One listener accepts CONNECT-UDP over HTTP/2 (RFC 9298 §3.4) and HTTP/1.1
 * (RFC 9298 §3.2), and POST tunnels to configured routes; each front hands a validated target and a byte stream to
 * one shared relay that owns the connected UDP socket. Events: 'session-open', 'session-close' (ServerSessionStats),
 * 'refused', 'local-resource-error' (LocalResourceEvent; a request it refuses is not also reported as 'refused'),
 * 'error'.
 */
export class TunnelServer extends EventEmitter {
  readonly counters: ServerCounters = {
    connections: 0,
    connectionsH1: 0,
    connectionsH2: 0,
    requests: 0,
    sessionsTotal: 0,
    sessionsActive: 0,
    refused: {},
    authFailures: 0,
    malformedStreams: 0,
    idleTimeouts: 0,
    targetUnreachable: 0,
    tlsErrors: 0,
    localResourceErrors: 0,
    limits: { serverSessions: 0, connectionSessions: 0, connectionStreams: 0, clientSessions: 0, authConnection: 0, authRate: 0, authEvictions: 0, capsuleLength: 0, datagramSize: 0, headerTime: 0, streamBuffer: 0, udpSendQueue: 0, headerSize: 0, connectionIdle: 0, connections: 0, settingsTimeout: 0 },
  };
  private readonly opts: Required<Omit<TunnelServerOptions, 'tls' | 'authenticator' | 'dnsServers' | 'postRoutes'>> & TunnelServerOptions;
  private readonly matcher: TemplateMatcher;
  private readonly postRoutes: PostRoutes;
  private readonly resolver: Resolver;
  private readonly h2: http2.Http2Server;
  private readonly front: net.Server;
  private readonly sessions = new Set<Session>();
  /** Accepted TCP connections (for TLS: before the handshake too). */
  private readonly sockets = new Set<net.Socket>();
  /** TLS sockets on top of some of those connections. */
  private readonly tlsSockets = new Set<net.Socket>();
  private readonly h2Sessions = new Map<http2.ServerHttp2Session, ConnState>();
  /** Set only while a socket is handed to the HTTP/2 server, whose 'session' event fires synchronously. */
  private pendingConn: ConnState | null = null;
  /** Tunnels being set up or relaying (the server-wide limit counts both). */
  private reserved = 0;
  /** Tunnels held per client address (entries leave at zero, so at most maxSessions of them). */
  private readonly clientSessions = new Map<string, number>();
  private readonly authLimiter: AuthFailureLimiter;
  private nextId = 1;
  private closing = false;

  constructor(options: TunnelServerOptions) {
    super();
    this.opts = {
      ...SERVER_DEFAULTS,
      ...options,
      // By default a connection may hold as many tunnels as it may open streams.
      maxSessionsPerConnection: options.maxSessionsPerConnection ?? options.maxStreamsPerConnection ?? 100,
    };
    checkMaxDatagram(this.opts.maxDatagram);
    checkMaxUdpSendQueue(this.opts.maxUdpSendQueue);
    this.authLimiter = new AuthFailureLimiter({
      burst: this.opts.authFailureBurst,
      refillPerSecond: this.opts.authFailureRefillPerSecond,
      maxEntries: this.opts.maxAuthFailureEntries,
    });
    this.matcher = compileTemplateMatcher(this.opts.template);
    this.postRoutes = options.postRoutes ?? new Map();
    this.resolver = new Resolver({ ...(options.dnsServers ? { servers: options.dnsServers } : {}), timeoutMs: this.opts.dnsTimeoutMs });
    const settings: http2.Settings = {
      // RFC 8441 §3: extended CONNECT must be advertised before clients may use :protocol.
      enableConnectProtocol: true,
      // No maxConcurrentStreams: once a peer has acknowledged it, nghttp2 treats a stream over it as a connection
      // error and Node answers with GOAWAY(INTERNAL_ERROR), ending every tunnel on the connection. RFC 9113 §5.1.2
      // makes it a stream error, so onH2Stream enforces maxStreamsPerConnection itself with REFUSED_STREAM.
      // RFC 9113 §6.9.2: the per-stream window bounds what one stream can make us buffer before we read it.
      initialWindowSize: Math.max(65_535, Math.min(this.opts.maxStreamBuffer, 2 ** 31 - 1)),
      maxHeaderListSize: this.opts.maxHeaderSize,
    };
    // Sockets are always accepted by our own front and handed over, so one cleartext-class server serves both
    // h2c and TLS connections whose ALPN chose h2.
    this.h2 = http2.createServer({ settings, maxSessionMemory: 64 });
    this.h2.on('session', (s: http2.ServerHttp2Session) => this.onH2Session(s));
    this.h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: unknown) =>
      this.onH2Stream(stream, headers, flags, rawHeaders as string[]),
    );
    this.h2.on('sessionError', () => {});
    if (options.tls) {
      const t = options.tls;
      this.front = tls.createServer({
        cert: t.cert,
        key: t.key,
        ...(t.ca ? { ca: t.ca, requestCert: true, rejectUnauthorized: true } : {}),
        // RFC 7301: the client's ALPN choice decides HTTP/2 or HTTP/1.1 on this listener.
        ALPNProtocols: [...ALPN_H2_AND_HTTP1],
        handshakeTimeout: this.opts.headerTimeoutMs,
      });
      this.front.on('connection', (socket: net.Socket) => this.track(socket, true));
      this.front.on('secureConnection', (socket: tls.TLSSocket) => this.onSecureConnection(socket));
      this.front.on('tlsClientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
        if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') this.counters.limits.headerTime++;
        else this.counters.tlsErrors++;
        socket.destroy();
      });
    } else {
      this.front = net.createServer((socket) => this.onCleartextConnection(socket));
    }
    // Every connection costs a descriptor and memory whatever it sends; past the limit net.Server closes new ones
    // before any byte is read (and before TLS starts) and reports them here.
    this.front.maxConnections = this.opts.maxConnections;
    this.front.on('drop', () => {
      this.counters.limits.connections++;
    });
  }

  /** Starts listening; resolves with the bound address (port 0 gives the real port). */
  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.front.once('error', onError);
      this.front.listen({ host: this.opts.host, port: this.opts.port }, () => {
        this.front.off('error', onError);
        this.front.on('error', (err) => {
          // net.Server reports EMFILE on accept when libuv could not shed the connection itself; it keeps
          // listening, and so does the proxy once descriptors free up.
          if (isLocalResourceError(err)) this.onLocalResourceError(err, null);
          else this.emit('error', err);
        });
        resolve(this.front.address() as net.AddressInfo);
      });
    });
  }

  /** The bound address. */
  address(): net.AddressInfo {
    return this.front.address() as net.AddressInfo;
  }

  /** Number of sessions relaying now. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Number of client connections open now (any protocol, including ones still sending their first request). */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** Closes the listener, every session and every connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const done = new Promise<void>((resolve) => this.front.close(() => resolve()));
    for (const s of [...this.sessions]) this.closeSession(s, 'server-shutdown');
    for (const [s, conn] of this.h2Sessions) {
      this.clearIdleTimer(conn);
      s.close();
    }
    const h2Owned = new Set([...this.h2Sessions.values()].map((c) => c.socket));
    // HTTP/2 connections get a GOAWAY and a moment to finish; everything else closes now. Under TLS the raw
    // connections carry the TLS sockets, so only those still in their handshake are cut here.
    const conns = this.opts.tls ? this.tlsSockets : this.sockets;
    for (const socket of conns) if (!h2Owned.has(socket)) socket.destroy();
    const timer = setTimeout(() => {
      for (const s of this.h2Sessions.keys()) s.destroy();
      for (const socket of [...this.tlsSockets, ...this.sockets]) socket.destroy();
    }, 1000);
    await done;
    clearTimeout(timer);
  }

  // ---- connection fronts -------------------------------------------------------------------------------------

  private track(socket: net.Socket, raw: boolean): void {
    const set = raw ? this.sockets : this.tlsSockets;
    if (raw) {
      this.counters.connections++;
      // Capsules are small writes on a long-lived stream; Nagle would hold them back behind unacknowledged bytes.
      socket.setNoDelay(true);
    }
    set.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => set.delete(socket));
    if (this.closing) socket.destroy();
  }

  private newConn(socket: net.Socket): ConnState {
    const address = clientAddress(socket.remoteAddress);
    const conn: ConnState = {
      socket,
      client: formatHostPort(socket.remoteAddress ?? 'unknown', socket.remotePort ?? 0),
      sessions: 0,
      headerTimer: null,
      h2: null,
      streams: 0,
      idleTimer: null,
      address,
      live: new Set(),
      authFailures: 0,
    };
    if (this.opts.headerTimeoutMs > 0) {
      conn.headerTimer = setTimeout(() => {
        conn.headerTimer = null;
        // Slow or silent clients would otherwise hold a socket forever (slowloris).
        this.counters.limits.headerTime++;
        if (conn.h2 !== null) conn.h2.destroy();
        else socket.destroy();
      }, this.opts.headerTimeoutMs);
    }
    socket.once('close', () => {
      this.clearHeaderTimer(conn);
      this.clearIdleTimer(conn);
    });
    return conn;
  }

  /** True when a new stream would exceed maxStreamsPerConnection. */
  private overStreamLimit(conn: ConnState): boolean {
    const max = this.opts.maxStreamsPerConnection;
    if (conn.live.size < max) return false;
    // A stream the peer has just reset is closed at once but reports 'close' only later; its slot is free already.
    for (const s of conn.live) if (s.closed || s.destroyed) conn.live.delete(s);
    return conn.live.size >= max;
  }

  private clearIdleTimer(conn: ConnState): void {
    if (conn.idleTimer !== null) clearTimeout(conn.idleTimer);
    conn.idleTimer = null;
  }

  /** Starts the idle clock of an HTTP/2 connection that has no open stream. */
  private armIdleTimer(conn: ConnState): void {
    const ms = this.opts.connectionIdleTimeoutMs;
    const session = conn.h2;
    if (ms <= 0 || session === null || session.closed || session.destroyed || conn.idleTimer !== null || conn.streams > 0 || this.closing) return;
    conn.idleTimer = setTimeout(() => {
      conn.idleTimer = null;
      if (session.closed || session.destroyed || conn.streams > 0) return;
      this.counters.limits.connectionIdle++;
      // RFC 9113 §6.8: GOAWAY with NO_ERROR and the last stream we processed is the graceful close; the client
      // opens its next request on a new connection. Node's close() sends exactly that and ends the connection.
      session.close();
      // A peer that never closes its side would otherwise keep the socket.
      const grace = setTimeout(() => {
        session.destroy();
        conn.socket.destroy();
      }, CLOSE_GRACE_MS);
      conn.socket.once('close', () => clearTimeout(grace));
    }, ms);
  }

  private clearHeaderTimer(conn: ConnState): void {
    if (conn.headerTimer !== null) clearTimeout(conn.headerTimer);
    conn.headerTimer = null;
  }

  /** Cleartext: peek at the first bytes; the HTTP/2 preface means h2c prior knowledge (RFC 9113 §3.3), else HTTP/1.1. */
  private onCleartextConnection(socket: net.Socket): void {
    this.track(socket, true);
    if (socket.destroyed) return;
    const conn = this.newConn(socket);
    detectCleartextHttpVersion(socket, (version, initial) => {
      if (version === 'h2') this.handToH2(socket, conn);
      else this.onH1Connection(socket, conn, initial);
    });
  }

  private onSecureConnection(socket: tls.TLSSocket): void {
    this.track(socket, false);
    if (socket.destroyed) return;
    const conn = this.newConn(socket);
    if (tlsHttpVersion(socket) === 'h2') this.handToH2(socket, conn);
    else this.onH1Connection(socket, conn, Buffer.alloc(0));
  }

  private handToH2(socket: net.Socket, conn: ConnState): void {
    this.counters.connectionsH2++;
    this.pendingConn = conn;
    try {
      this.h2.emit('connection', socket);
    } finally {
      this.pendingConn = null;
    }
  }

  private onH2Session(session: http2.ServerHttp2Session): void {
    const conn = this.pendingConn;
    if (conn === null) {
      session.destroy();
      return;
    }
    this.h2Sessions.set(session, conn);
    conn.h2 = session;
    session.on('close', () => {
      this.h2Sessions.delete(session);
      this.clearIdleTimer(conn);
    });
    // Before the first request the header timer guards the connection; without one the idle clock starts now.
    if (conn.headerTimer === null) this.armIdleTimer(conn);
    this.armSettingsTimer(session);
    session.on('error', () => {});
    // A large connection window so one busy stream does not stall the others; streams keep their own bound.
    session.on('connect', () => {
      try {
        session.setLocalWindowSize(16 << 20);
      } catch {
        /* the session may already be closing */
      }
    });
  }

  /**
   * RFC 9113 §6.5.3: our SETTINGS (header list size, stream windows) bind the peer only once it acknowledges them,
   * so a peer that never does is ended with SETTINGS_TIMEOUT after headerTimeoutMs.
   */
  private armSettingsTimer(session: http2.ServerHttp2Session): void {
    const ms = this.opts.headerTimeoutMs;
    if (ms <= 0) return;
    const timer = setTimeout(() => {
      if (session.destroyed || session.closed) return;
      this.counters.limits.settingsTimeout++;
      // destroy(err, code) would put NO_ERROR on the wire; the GOAWAY is queued first so the peer learns why.
      session.goaway(http2.constants.NGHTTP2_SETTINGS_TIMEOUT);
      setImmediate(() => session.destroy());
    }, ms);
    session.once('localSettings', () => clearTimeout(timer));
    session.once('close', () => clearTimeout(timer));
  }

  private onH2Stream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
    stream.on('error', () => {});
    const conn = this.h2Sessions.get(stream.session as http2.ServerHttp2Session);
    if (conn === undefined) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    this.clearHeaderTimer(conn);
    conn.streams++;
    this.clearIdleTimer(conn);
    stream.once('close', () => {
      conn.streams--;
      conn.live.delete(stream);
      this.armIdleTimer(conn);
    });
    if (this.overStreamLimit(conn)) {
      this.counters.requests++;
      this.counters.limits.connectionStreams++;
      const details = `connection stream limit ${this.opts.maxStreamsPerConnection} reached`;
      this.emit('refused', { status: null, reset: 'REFUSED_STREAM', error: 'connection_limit_reached', details, httpVersion: 2, client: conn.client });
      // RFC 9113 §5.1.2 / §8.7: a stream over the limit is refused on its own; the client may retry it elsewhere.
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    conn.live.add(stream);
    const size = headerListSize(Array.isArray(rawHeaders) ? rawHeaders : []);
    if (size > this.opts.maxHeaderSize) {
      // Node enforces SETTINGS_MAX_HEADER_LIST_SIZE only once the peer acknowledged our SETTINGS; a peer that never
      // does could send far more. RFC 9113 §10.5.1: refuse with 431 (RFC 6585 §5).
      this.counters.requests++;
      this.counters.limits.headerSize++;
      const details = `header list of ${size} bytes exceeds the limit of ${this.opts.maxHeaderSize}`;
      this.countRefusal(431, 'http_request_error', details, 2, conn.client);
      if (!stream.destroyed && !stream.closed) {
        stream.respond({ [HTTP2_HEADER_STATUS]: 431, 'proxy-status': formatProxyStatus('http_request_error', { details }) }, { endStream: true });
      }
      return;
    }
    const front: RequestFront = {
      httpVersion: 2,
      client: conn.client,
      conn,
      rawHeaders: Array.isArray(rawHeaders) ? rawHeaders : [],
      gone: () => stream.destroyed || stream.closed,
      refuse: (status, extra) => {
        if (stream.destroyed || stream.closed || stream.headersSent) return;
        stream.respond({ [HTTP2_HEADER_STATUS]: status, ...extra }, { endStream: true });
      },
      refuseRetry: () => {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      },
      accept: () => {
        // RFC 9298 §3.5 / RFC 9297 §3.4: a 2xx with Capsule-Protocol: ?1 opens the tunnel. waitForTrailers keeps
        // Node from ending the stream by itself, so an abort below is a bare RST_STREAM, never END_STREAM first.
        stream.respond({ [HTTP2_HEADER_STATUS]: 200, 'capsule-protocol': '?1' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => {
          if (!stream.closed && !stream.destroyed) stream.sendTrailers({});
        });
        return stream;
      },
      end: (reason) => {
        if (stream.destroyed || stream.closed) return;
        // RFC 9297 §3.3 + RFC 9113 §8.1.1: a malformed capsule stream is a stream error of type PROTOCOL_ERROR.
        stream.close(reason === 'malformed' ? http2.constants.NGHTTP2_PROTOCOL_ERROR : http2.constants.NGHTTP2_NO_ERROR);
      },
    };
    const req: IncomingTunnelRequest = {
      httpVersion: 2,
      method: String(headers[HTTP2_HEADER_METHOD] ?? ''),
      protocol: headers[HTTP2_HEADER_PROTOCOL] as string | undefined,
      path: headers[HTTP2_HEADER_PATH] as string | undefined,
      authority: headers[HTTP2_HEADER_AUTHORITY] as string | undefined,
      scheme: headers[HTTP2_HEADER_SCHEME] as string | undefined,
      framingHeaders: headers['content-length'] !== undefined,
    };
    // RFC 9113 §8.5 / RFC 9298 §3.4: a request that ends its stream with the headers cannot carry a tunnel.
    const ended = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || stream.readableEnded;
    this.handleRequest(front, req, ended);
  }

  /** HTTP/1.1: reads one bounded request head; the connection then carries one tunnel or one refusal. */
  private onH1Connection(socket: net.Socket, conn: ConnState, initial: Buffer): void {
    this.counters.connectionsH1++;
    let buf: Buffer = initial;
    let done = false;
    let scanned = 0;
    const attempt = (): void => {
      const r = parseRequestHead(buf, this.opts.maxHeaderSize, scanned);
      if (r.state === 'incomplete') {
        scanned = buf.length;
        return;
      }
      done = true;
      socket.removeListener('data', onData);
      socket.pause();
      this.clearHeaderTimer(conn);
      if (r.state === 'error') {
        this.counters.requests++;
        if (r.status === 431) this.counters.limits.headerSize++;
        this.countRefusal(r.status, 'http_request_error', r.details, 1, conn.client);
        this.h1Refuse(socket, r.status, { 'proxy-status': formatProxyStatus('http_request_error', { details: r.details }) });
        return;
      }
      this.onH1Request(socket, conn, r.head);
    };
    const onData = (chunk: Buffer): void => {
      if (done) return;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      attempt();
    };
    socket.on('data', onData);
    if (buf.length > 0) attempt();
    socket.resume();
  }

  private h1Refuse(socket: net.Socket, status: number, headers: Record<string, string>): void {
    if (socket.destroyed) return;
    socket.write(formatResponseHead(status, { ...headers, 'content-length': '0', connection: 'close' }));
    socket.end();
    // Drain what the client still sends so it can read the answer; cut off a client that never closes.
    socket.resume();
    const t = setTimeout(() => socket.destroy(), 2000);
    socket.once('close', () => clearTimeout(t));
  }

  private onH1Request(socket: net.Socket, conn: ConnState, head: Http1Head): void {
    let path: string | undefined;
    const hosts = headerValues(head.headers, 'host');
    let authority: string | undefined = hosts[0];
    if (head.target.startsWith('/')) path = head.target;
    else if (/^https?:\/\//i.test(head.target)) {
      // RFC 9112 §3.2.2: absolute-form; its authority replaces Host.
      try {
        const u = new URL(head.target);
        path = `${u.pathname}${u.search}`;
        authority = u.host;
      } catch {
        path = undefined;
      }
    }
    const upgrade = listsToken(head.headers, 'upgrade', 'connect-udp') ? 'connect-udp' : headerValues(head.headers, 'upgrade')[0];
    const req: IncomingTunnelRequest = {
      httpVersion: 1,
      method: head.method,
      protocol: upgrade,
      path,
      authority,
      hostCount: hosts.length,
      connectionUpgrade: listsToken(head.headers, 'connection', 'upgrade'),
      framingHeaders: headerValues(head.headers, 'content-length').length + headerValues(head.headers, 'transfer-encoding').length > 0,
    };
    let accepted = false;
    const front: RequestFront = {
      httpVersion: 1,
      client: conn.client,
      conn,
      rawHeaders: rawHeaderList(head.headers),
      requestLine: { method: head.method, target: head.target },
      gone: () => socket.destroyed,
      refuse: (status, extra) => this.h1Refuse(socket, status, extra),
      refuseRetry: () => this.h1Refuse(socket, 503, {}),
      accept: () => {
        accepted = true;
        // RFC 9298 §3.3: 101 with Connection: Upgrade and Upgrade: connect-udp; RFC 9297 §3.4 Capsule-Protocol.
        socket.write(formatResponseHead(101, { connection: 'Upgrade', upgrade: 'connect-udp', 'capsule-protocol': '?1' }));
        // Bytes that followed the request head already belong to the capsule stream.
        if (head.rest.length > 0) socket.unshift(head.rest);
        return socket;
      },
      end: (reason) => {
        if (socket.destroyed) return;
        // RFC 9297 §3.3: over HTTP/1.1 a malformed capsule stream closes the connection.
        if (reason === 'malformed' || !accepted) socket.destroy();
        else {
          socket.end();
          const t = setTimeout(() => socket.destroy(), 1000);
          socket.once('close', () => clearTimeout(t));
        }
      },
    };
    this.handleRequest(front, req, false);
  }

  // ---- shared request handling -------------------------------------------------------------------------------

  private countRefusal(status: number, error: ProxyErrorType, details: string, httpVersion: 1 | 2, client: string): void {
    this.counters.refused[status] = (this.counters.refused[status] ?? 0) + 1;
    this.emit('refused', { status, error, details, httpVersion, client });
  }

  private refuse(front: RequestFront, status: number, error: ProxyErrorType, details: string, extra: Record<string, string> = {}, rcode?: string): void {
    this.countRefusal(status, error, details, front.httpVersion, front.client);
    // RFC 9209 §2: say why in Proxy-Status.
    front.refuse(status, { 'proxy-status': formatProxyStatus(error, { ...(rcode ? { rcode } : {}), details }), ...extra });
  }

  /**
   * Checks credentials unless the client address has spent its failed-authentication budget; refuses and returns
   * false when they are missing or wrong. Only wrong credentials spend the budget: a request without any is the
   * usual first step of a challenge (RFC 9110 §11.6.1). Credentials never reach a log or event, only the reason.
   */
  private authenticate(front: RequestFront, auth: RequestAuthenticator): boolean {
    const conn = front.conn;
    const wait = this.authLimiter.retryAfterMs(conn.address);
    if (wait > 0) {
      this.counters.limits.authRate++;
      const seconds = Number.isFinite(wait) ? Math.ceil(wait / 1000) : 3600;
      // RFC 6585 §4: 429 Too Many Requests, with Retry-After (RFC 9110 §10.2.3) saying when to try again.
      this.refuse(front, 429, 'http_request_denied', `too many failed authentications from ${conn.address}`, { 'retry-after': String(seconds) });
    } else {
      const r = auth.check(front.rawHeaders);
      if (r.ok) return true;
      this.counters.authFailures++;
      // RFC 9110 §15.5.2 / §15.5.8: 401 with WWW-Authenticate (HTTP/2), 407 with Proxy-Authenticate (HTTP/1.1).
      const c = auth.challenge(front.httpVersion);
      this.refuse(front, c.status, 'http_request_denied', `authentication ${r.reason}`, c.headers);
      if (r.reason === 'missing') return false;
      this.authLimiter.fail(conn.address);
      this.counters.limits.authEvictions = this.authLimiter.evictions;
    }
    // HTTP/1.1 closes the connection with every refusal; an HTTP/2 connection that keeps guessing is told to go.
    if (++conn.authFailures >= this.opts.maxAuthFailuresPerConnection && conn.h2 !== null) this.goAwayForAuth(conn, conn.h2);
    return false;
  }

  /**
   * RFC 9113 §6.8: GOAWAY with ENHANCE_YOUR_CALM (§7: excessive load) stops new streams; tunnels already open end
   * on their own, and a connection without any is cut off after a short grace.
   */
  private goAwayForAuth(conn: ConnState, session: http2.ServerHttp2Session): void {
    if (session.closed || session.destroyed) return;
    this.counters.limits.authConnection++;
    this.emit('refused', {
      status: null,
      goaway: 'ENHANCE_YOUR_CALM',
      error: 'http_request_denied',
      details: `${conn.authFailures} failed authentications on one connection`,
      httpVersion: 2,
      client: conn.client,
    });
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.close();
    const grace = setTimeout(() => {
      if (conn.sessions === 0) session.destroy();
    }, CLOSE_GRACE_MS);
    session.once('close', () => clearTimeout(grace));
  }

  /** Every front ends here: authenticate, validate, apply limits, then relay. */
  private handleRequest(front: RequestFront, req: IncomingTunnelRequest, endedWithHeaders: boolean): void {
    this.counters.requests++;
    if (this.closing) return this.refuse(front, 503, 'proxy_internal_error', 'shutting down');
    const auth = this.opts.authenticator;
    if (auth?.enabled && !this.authenticate(front, auth)) return;
    const verdict = validateConnectUdpRequest(req, this.matcher, this.postRoutes);
    if (!verdict.ok) {
      return this.refuse(front, verdict.status, verdict.error, verdict.details, verdict.allow ? { allow: verdict.allow } : {});
    }
    if (endedWithHeaders) return this.refuse(front, 400, 'http_request_error', 'request stream ended with the headers');
    if (this.reserved >= this.opts.maxSessions) {
      this.counters.limits.serverSessions++;
      return this.refuse(front, 503, 'connection_limit_reached', `server session limit ${this.opts.maxSessions} reached`);
    }
    const address = front.conn.address;
    const clientHeld = this.clientSessions.get(address) ?? 0;
    if (clientHeld >= this.opts.maxSessionsPerClient) {
      this.counters.limits.clientSessions++;
      return this.refuse(front, 503, 'connection_limit_reached', `client session limit ${this.opts.maxSessionsPerClient} reached for ${address}`);
    }
    if (front.conn.sessions >= this.opts.maxSessionsPerConnection) {
      this.counters.limits.connectionSessions++;
      const details = `connection session limit ${this.opts.maxSessionsPerConnection} reached`;
      this.emit('refused', { status: null, reset: 'REFUSED_STREAM', error: 'connection_limit_reached', details, httpVersion: front.httpVersion, client: front.client });
      return front.refuseRetry();
    }
    this.reserved++;
    front.conn.sessions++;
    this.clientSessions.set(address, clientHeld + 1);
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      this.reserved--;
      front.conn.sessions--;
      const n = (this.clientSessions.get(address) ?? 1) - 1;
      if (n > 0) this.clientSessions.set(address, n);
      else this.clientSessions.delete(address);
    };
    const transport = verdict.mode === 'post' ? 'post' : front.httpVersion === 2 ? 'h2' : 'h1';
    this.relay(front, verdict.host, verdict.port, transport, release).catch((err: unknown) => {
      release();
      this.refuse(front, 500, 'proxy_internal_error', (err as Error)?.message ?? 'internal error');
    });
  }

  /** The one relay routine: resolve, apply the policy, open the connected UDP socket, answer, relay both ways. */
  private async relay(front: RequestFront, host: string, port: number, transport: TunnelMode | 'h1' | 'h2', release: () => void): Promise<void> {
    // RFC 9298 §3.1: resolve before replying, and apply the policy to the resolved address (§7).
    const res = await this.resolver.resolve(host);
    if (front.gone()) return release();
    if (!res.ok) {
      release();
      return this.refuse(front, res.error === 'dns_timeout' ? 504 : 502, res.error, res.message, {}, res.rcode);
    }
    let chosen: ResolvedAddress | undefined;
    let reason = 'no address';
    for (const a of res.addresses) {
      const v = this.opts.policy.check(a.address, port);
      if (v.allowed) {
        chosen = a;
        break;
      }
      reason = v.reason;
    }
    if (!chosen) {
      release();
      return this.refuse(front, 403, 'destination_ip_prohibited', reason);
    }
    const target = chosen;
    const opened = await this.openTargetSocket(target, port);
    if (!('udp' in opened) || front.gone() || this.closing) {
      if ('udp' in opened) opened.udp.close();
      release();
      if ('error' in opened) this.refuseSocketError(front, opened.error);
      return;
    }
    const udp = opened.udp;
    const id = `s${this.nextId++}`;
    const stats: ServerSessionStats = {
      id,
      client: front.client,
      target: `${host}:${port}`,
      resolved: target.address,
      transport,
      ...emptyChannelCounters(),
      dropUdpSend: 0,
      dropSendQueue: 0,
      targetUnreachable: 0,
      openedAt: Date.now(),
      durationMs: 0,
      closeReason: '',
    };
    const stream = front.accept();
    if (tapChannel.hasSubscribers) {
      tapChannel.publish({
        kind: 'request',
        session: id,
        time: Date.now(),
        headers: redactHeaders(front.rawHeaders),
        ...(front.requestLine ? { requestLine: front.requestLine } : {}),
      });
      const h2 = front.httpVersion === 2;
      const headers = h2 ? { ':status': '200', 'capsule-protocol': '?1' } : { 'capsule-protocol': '?1' };
      tapChannel.publish({ kind: 'response', session: id, time: Date.now(), http: h2 ? '2' : '1.1', status: h2 ? 200 : 101, headers });
    }
    const session = { id, front, stream, udp, stats, closed: false, release } as Session;
    const sendDone = (err: Error | null): void => {
      if (!err) return;
      stats.dropUdpSend++;
      // A pending ICMP error is reported by whichever socket call comes first; a send that reports it fails.
      if (isIcmpUnreachable(err)) this.countUnreachable(stats);
    };
    const maxQueue = this.opts.maxUdpSendQueue;
    session.channel = new DatagramChannel(stream, {
      session: id,
      role: 'server',
      maxCapsuleLength: this.opts.maxCapsuleLength,
      maxWriteBuffer: this.opts.maxStreamBuffer,
      // Datagrams too big for the target's IP version are dropped as oversize before the send, not refused by the
      // kernel; what the target sends back already fits that bound.
      maxDatagram: maxDatagramTo(target.address, this.opts.maxDatagram),
      onDrop: (kind) => this.onDrop(kind),
      onDatagram: (payload) => {
        session.idle.touch();
        // Each queued datagram is a view that pins the client's chunk until the kernel takes it: bound the queue.
        if (udp.getSendQueueCount() >= maxQueue) {
          stats.dropSendQueue++;
          this.counters.limits.udpSendQueue++;
          return;
        }
        udp.send(payload, sendDone);
      },
      onMalformed: (err) => this.onMalformed(session, err),
    });
    session.idle = new IdleTimer(this.opts.idleTimeoutMs, () => {
      this.counters.idleTimeouts++;
      this.closeSession(session, 'idle-timeout');
    });
    udp.removeAllListeners('error');
    udp.on('message', (msg) => {
      session.idle.touch();
      session.channel.send(msg);
    });
    udp.on('error', (err: NodeJS.ErrnoException) => {
      // RFC 9298 §3.1: the stream MUST close once the OS reports the socket no longer usable, which an ICMP
      // Destination Unreachable can cause. An unreachable port, host or network does not do that to a connected
      // UDP socket: the OS reports the error once and the socket keeps sending and receiving (the target may be
      // restarting, or its port may open later). UDP is connectionless, so the session stays and the error is
      // counted; closing would only make the client open a new tunnel for its next datagram. The idle timeout ends
      // a session left without traffic. Any other socket error is taken as the socket being unusable.
      if (isIcmpUnreachable(err)) return this.countUnreachable(stats);
      this.closeSession(session, `udp-error:${err.code ?? err.message}`);
    });
    stream.on('close', () => {
      const rst = (stream as Partial<http2.ServerHttp2Stream>).rstCode;
      this.closeSession(session, rst ? `stream-reset:${rst}` : 'stream-closed');
    });
    stream.on('end', () => {
      // The client finished sending; end our half too so the stream closes cleanly.
      if (!session.closed && !stream.writableEnded) stream.end();
    });
    this.sessions.add(session);
    this.counters.sessionsTotal++;
    this.counters.sessionsActive = this.sessions.size;
    this.emit('session-open', { id, client: stats.client, target: stats.target, resolved: target.address, transport });
  }

  private countUnreachable(stats: ServerSessionStats): void {
    stats.targetUnreachable++;
    this.counters.targetUnreachable++;
  }

  /**
   * Opens a request's connected UDP socket (RFC 9298 §3.1: one per request). Creating and connecting it may fail by
   * throwing or by an 'error' event (e.g. bind EMFILE); either way the socket is closed and the error returned.
   */
  private openTargetSocket(target: ResolvedAddress, port: number): Promise<{ udp: dgram.Socket } | { error: Error }> {
    return new Promise((resolve) => {
      let udp: dgram.Socket | null = null;
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        if (udp !== null) {
          // A socket that failed may still report errors while it closes; they must not reach the process.
          udp.removeAllListeners('error');
          udp.on('error', () => {});
          try {
            udp.close();
          } catch {
            /* never bound, or already closed */
          }
        }
        resolve({ error: err instanceof Error ? err : new Error(String(err)) });
      };
      try {
        const socket = dgram.createSocket({ type: target.family === 6 ? 'udp6' : 'udp4' });
        udp = socket;
        socket.once('error', fail);
        socket.connect(port, target.address, () => {
          if (settled) return;
          settled = true;
          resolve({ udp: socket });
        });
      } catch (err) {
        fail(err);
      }
    });
  }

  /** Refuses a request whose UDP socket could not be opened: local exhaustion is the proxy's trouble, the rest the route's. */
  private refuseSocketError(front: RequestFront, err: Error): void {
    if (isLocalResourceError(err)) return this.onLocalResourceError(err, front);
    this.refuse(front, 502, 'destination_ip_unroutable', err.message);
  }

  /**
   * Counts running short of local resources and reports it as 'local-resource-error' only (not also 'refused'), so
   * a flood of them can be logged sparingly. `front` is the request that hit it, or null for a failed accept.
   */
  private onLocalResourceError(err: NodeJS.ErrnoException, front: RequestFront | null): void {
    this.counters.localResourceErrors++;
    const code = err.code ?? 'unknown';
    const syscall = err.syscall ?? 'socket';
    const details = front === null ? `${syscall} ${code}` : `${syscall} ${code}: the proxy is out of local resources; try again later`;
    if (front !== null) {
      this.counters.refused[503] = (this.counters.refused[503] ?? 0) + 1;
      // RFC 9209 §2.3.30: proxy_internal_error, an error of the intermediary unrelated to the target. 503 rather
      // than its recommended 500 (RFC 9209 §2.1.1 allows another code): RFC 9110 §15.6.4, a temporary overload
      // that the same request may get past later.
      front.refuse(503, { 'proxy-status': formatProxyStatus('proxy_internal_error', { details }) });
    }
    const event: LocalResourceEvent = { code, syscall, status: front === null ? null : 503, client: front?.client ?? null, details };
    this.emit('local-resource-error', event);
  }

  private onDrop(kind: ChannelDropKind): void {
    if (kind === 'oversize') this.counters.limits.datagramSize++;
    else if (kind === 'backpressure') this.counters.limits.streamBuffer++;
  }

  private onMalformed(session: Session, err: UdpTunnelError): void {
    this.counters.malformedStreams++;
    if (err.code === ErrorCodes.CAPSULE_TOO_LARGE) this.counters.limits.capsuleLength++;
    this.closeSession(session, `malformed: ${err.message}`, 'malformed');
  }

  /** Ends a session once; `end` says how its stream ends (RFC 9297 §3.3: a malformed one is aborted). */
  private closeSession(session: Session, reason: string, end: 'malformed' | 'close' = 'close'): void {
    if (session.closed) return;
    session.closed = true;
    session.idle.stop();
    session.release();
    this.sessions.delete(session);
    this.counters.sessionsActive = this.sessions.size;
    try {
      session.udp.close();
    } catch {
      /* already closed */
    }
    session.front.end(end);
    const stats = session.stats;
    Object.assign(stats, session.channel.counters);
    stats.durationMs = Date.now() - stats.openedAt;
    stats.closeReason = reason;
    if (tapChannel.hasSubscribers) tapChannel.publish({ kind: 'close', session: session.id, time: Date.now(), reason });
    this.emit('session-close', stats);
  }
}

/** Errors a connected UDP socket reports for an ICMP destination unreachable (port, host or network). */
const ICMP_UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

function isIcmpUnreachable(err: Error): boolean {
  return ICMP_UNREACHABLE_CODES.has(String((err as NodeJS.ErrnoException).code));
}
