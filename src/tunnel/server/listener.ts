import { Buffer } from 'node:buffer';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { formatHostPort } from '../address.js';
import { ALPN_H2_AND_HTTP1, detectCleartextHttpVersion, tlsHttpVersion, type WireHttpVersion } from '../http/version-detect.js';

/** How long a connection told to close may linger before it is cut off. */
export const CLOSE_GRACE_MS = 1000;

/** RFC 8446 §5.1/§6: a TLS 1.2-versioned alert record, fatal (2), protocol_version (70). */
const TLS_PROTOCOL_VERSION_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);

/** What serve answers a TLS ClientHello on its cleartext port with, so the client's TLS stack fails at once. */
const CLEARTEXT_PORT_RESPONSE = (() => {
  const body = 'this port speaks cleartext HTTP (h2c and HTTP/1.1): use http://\n';
  return `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
})();

/** TLS settings of the listener; `ca` turns on client certificate verification (mTLS). */
export interface ServerTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** CA bundle for client certificates; when set, clients must present a certificate it signed. */
  ca?: string | Buffer;
  /** Receives each NSS key log line of the TLS connections (SSLKEYLOGFILE format), for decrypting captures. */
  onKeylog?: (line: Buffer) => void;
}

/**
 * What the listener counts; its owner maps each to a counter of its own name:
 * - 'connection': a TCP connection accepted (those dropped at maxConnections are 'dropped' instead);
 * - 'dropped': a TCP connection closed on accept because maxConnections were open;
 * - 'h1' / 'h2': a connection found to speak HTTP/1.1 or HTTP/2;
 * - 'header-timeout': a connection cut off for not completing its TLS handshake or first request in time;
 * - 'tls-error': a TLS handshake that failed other than by timeout;
 * - 'scheme-mismatch': a TLS ClientHello on the cleartext listener, or cleartext HTTP on the TLS listener (also a
 *   'tls-error'); the client is told and the connection closed;
 * - 'idle-close': an HTTP/2 connection closed with GOAWAY (NO_ERROR) after connectionIdleTimeoutMs without a stream;
 * - 'settings-timeout': an HTTP/2 connection closed with GOAWAY (SETTINGS_TIMEOUT).
 */
export type ListenerCount = 'connection' | 'dropped' | 'h1' | 'h2' | 'header-timeout' | 'tls-error' | 'scheme-mismatch' | 'idle-close' | 'settings-timeout';

/** What a Listener hands to its owner. */
export interface ListenerHooks<T> {
  /** The owner's state of a connection about to speak HTTP, kept as `conn.state`. */
  state(socket: net.Socket): T;
  /** An HTTP/1.1 connection: `conn.socket` is paused with no data listener, `initial` holds bytes already read. */
  h1(conn: ListenerConnection<T>, initial: Buffer): void;
  /** An HTTP/2 connection's session, once the HTTP/2 server has taken the socket. */
  h2Session?(conn: ListenerConnection<T>, session: http2.ServerHttp2Session): void;
  /** A request stream on an HTTP/2 connection (the connection's first-request timer is already stopped). */
  h2Stream(conn: ListenerConnection<T>, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]): void;
  /** Something the listener counts (see ListenerCount). */
  count(what: ListenerCount): void;
  /** An error of the listening socket after listen() resolved; the listener keeps listening. */
  error(err: Error): void;
}

/** Options of a Listener. */
export interface ListenerOptions<T> {
  host: string;
  port: number;
  /** TLS with ALPN h2 and http/1.1; cleartext (h2c prior knowledge and HTTP/1.1 side by side) when absent. */
  tls?: ServerTlsOptions | undefined;
  /** TCP connections open at once; further ones are closed as soon as they are accepted. */
  maxConnections: number;
  /**
   * Time a connection has to complete its TLS handshake, and then again to deliver its first request (for HTTP/1.1
   * the whole head: the owner calls requestStarted()); 0 = no limit of ours (Node's 120 s handshake default stays).
   */
  headerTimeoutMs: number;
  /** Time an HTTP/2 connection may stay open without any open stream once its first request came; 0 = never. */
  connectionIdleTimeoutMs: number;
  /** Time an HTTP/2 peer has to acknowledge our SETTINGS (RFC 9113 §6.5.3); 0 = no limit. */
  settingsTimeoutMs: number;
  /** The owner's HTTP/2 server (its settings are the owner's); the listener hands it the sockets that chose HTTP/2. */
  h2: http2.Http2Server;
  hooks: ListenerHooks<T>;
}

/** One client connection ready to speak HTTP (cleartext: from accept; TLS: from the completed handshake). */
export class ListenerConnection<T> {
  /** The socket HTTP is read from: the TLS socket under TLS. */
  readonly socket: net.Socket;
  /** The client's address and port, formatted once for events and stats. */
  readonly client: string;
  /** The owner's per-connection state. */
  readonly state: T;
  /** Set once the socket belongs to the HTTP/2 server, which must then be the one to close it. */
  h2: http2.ServerHttp2Session | null = null;
  /** HTTP/2 streams of this connection that are open (from their request until they close). */
  openStreams = 0;
  /** Runs until the first request arrives. */
  headerTimer: NodeJS.Timeout | null = null;
  /** Runs while an HTTP/2 connection has no open stream. */
  idleTimer: NodeJS.Timeout | null = null;

  /** Wraps `socket` with the owner's `state`. */
  constructor(socket: net.Socket, state: T) {
    this.socket = socket;
    this.client = formatHostPort(socket.remoteAddress ?? 'unknown', socket.remotePort ?? 0);
    this.state = state;
  }

  /** The first request arrived: stops the first-request timer. */
  requestStarted(): void {
    if (this.headerTimer !== null) clearTimeout(this.headerTimer);
    this.headerTimer = null;
  }

  /** Stops the idle clock of an HTTP/2 connection. */
  clearIdleTimer(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

/**
 * One TCP or TLS listener that serves HTTP/2 and HTTP/1.1 side by side: accepts connections up to maxConnections,
 * tells the two apart (the HTTP/2 preface on cleartext, ALPN under TLS), hands HTTP/2 sockets to the owner's
 * HTTP/2 server and HTTP/1.1 connections to the owner, and bounds each connection's time: TLS handshake, first
 * request, SETTINGS acknowledgement and HTTP/2 idleness. Used by serve's TunnelServer and inspect's relay.
 */
export class Listener<T> {
  private readonly opts: ListenerOptions<T>;
  private readonly hooks: ListenerHooks<T>;
  private readonly server: net.Server;
  private readonly h2: http2.Http2Server;
  /** Accepted TCP connections (for TLS: before the handshake too). */
  private readonly sockets = new Set<net.Socket>();
  /** TLS sockets on top of some of those connections. */
  private readonly tlsSockets = new Set<net.Socket>();
  private readonly h2Sessions = new Map<http2.ServerHttp2Session, ListenerConnection<T>>();
  /** Set only while a socket is handed to the HTTP/2 server, whose 'session' event fires synchronously. */
  private pendingConn: ListenerConnection<T> | null = null;
  private closing = false;

  /** Sets up the listening socket (listen() starts it) and attaches to the owner's HTTP/2 server. */
  constructor(options: ListenerOptions<T>) {
    this.opts = options;
    this.hooks = options.hooks;
    this.h2 = options.h2;
    this.h2.on('session', (s: http2.ServerHttp2Session) => this.onH2Session(s));
    this.h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: unknown) =>
      this.onH2Stream(stream, headers, flags, Array.isArray(rawHeaders) ? (rawHeaders as string[]) : []),
    );
    this.h2.on('sessionError', () => {});
    const t = options.tls;
    if (t) {
      this.server = tls.createServer({
        cert: t.cert,
        key: t.key,
        ...(t.ca ? { ca: t.ca, requestCert: true, rejectUnauthorized: true } : {}),
        // RFC 7301: the client's ALPN choice decides HTTP/2 or HTTP/1.1 on this listener.
        ALPNProtocols: [...ALPN_H2_AND_HTTP1],
        handshakeTimeout: options.headerTimeoutMs,
      });
      this.server.on('connection', (socket: net.Socket) => this.track(socket, true));
      if (t.onKeylog) this.server.on('keylog', t.onKeylog);
      this.server.on('secureConnection', (socket: tls.TLSSocket) => this.onSecureConnection(socket));
      this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
        this.hooks.count(err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'header-timeout' : 'tls-error');
        // The first bytes were no TLS record (OpenSSL names "PRI * HTTP/2.0" a wrong version, "GET " an HTTP
        // request): the client speaks cleartext HTTP. OpenSSL closes silently there; a fatal protocol_version alert
        // (RFC 8446 §6.2) written below TLS lets the client tell "use https://" from a mere reset.
        const raw = (socket as net.Socket & { _parent?: unknown })._parent;
        if ((err.code === 'ERR_SSL_HTTP_REQUEST' || err.code === 'ERR_SSL_WRONG_VERSION_NUMBER') && raw instanceof net.Socket && raw.writable) {
          this.hooks.count('scheme-mismatch');
          raw.end(TLS_PROTOCOL_VERSION_ALERT, () => socket.destroy());
          return;
        }
        socket.destroy();
      });
    } else {
      this.server = net.createServer((socket) => this.onCleartextConnection(socket));
    }
    // Every connection costs a descriptor and memory whatever it sends; past the limit net.Server closes new ones
    // before any byte is read (and before TLS starts) and reports them here.
    this.server.maxConnections = options.maxConnections;
    this.server.on('drop', () => this.hooks.count('dropped'));
  }

  /** Starts listening; resolves with the bound address (port 0 gives the real port). */
  listen(): Promise<net.AddressInfo> {
    const server = this.server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.hooks.error(err));
        resolve(server.address() as net.AddressInfo);
      });
    });
  }

  /** The bound address. */
  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  /**
   * Replaces the certificate, key and client CA bundle that new TLS handshakes use; connections already up keep
   * theirs. Only for a TLS listener, with `ca` set exactly when it was at the start (the owner checks both). Throws
   * when the material is unusable (bad PEM, a key that does not match); the old context then stays.
   */
  setTls(t: ServerTlsOptions): void {
    const current = this.opts.tls;
    if (!(this.server instanceof tls.Server) || current === undefined) throw new Error('the listener speaks cleartext');
    this.server.setSecureContext({ cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}) });
    this.opts.tls = { ...current, cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}) };
  }

  /** Client connections open now (any protocol, including ones still in their TLS handshake or first request). */
  get openConnections(): number {
    return this.sockets.size;
  }

  /**
   * Stops listening; HTTP/2 connections get a GOAWAY and CLOSE_GRACE_MS to finish, every other connection closes
   * now. `onGraceOver` runs with the forced close of what is left. Resolves once every connection is gone.
   */
  async close(onGraceOver?: () => void): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const [s, conn] of this.h2Sessions) {
      conn.clearIdleTimer();
      s.close();
    }
    const h2Owned = new Set([...this.h2Sessions.values()].map((c) => c.socket));
    // Under TLS the raw connections carry the TLS sockets, so only those still in their handshake are left to the
    // grace timer here.
    const conns = this.opts.tls ? this.tlsSockets : this.sockets;
    for (const socket of conns) if (!h2Owned.has(socket)) socket.destroy();
    const timer = setTimeout(() => {
      for (const s of this.h2Sessions.keys()) s.destroy();
      for (const socket of [...this.tlsSockets, ...this.sockets]) socket.destroy();
      onGraceOver?.();
    }, CLOSE_GRACE_MS);
    await done;
    clearTimeout(timer);
  }

  private track(socket: net.Socket, raw: boolean): void {
    const set = raw ? this.sockets : this.tlsSockets;
    if (raw) {
      this.hooks.count('connection');
      // Capsules are small writes on a long-lived stream; Nagle would hold them back behind unacknowledged bytes.
      socket.setNoDelay(true);
    }
    set.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => set.delete(socket));
    if (this.closing) socket.destroy();
  }

  /** Cleartext: peek at the first bytes; the HTTP/2 preface means h2c prior knowledge (RFC 9113 §3.3), else HTTP/1.1. */
  private onCleartextConnection(socket: net.Socket): void {
    this.track(socket, true);
    if (socket.destroyed) return;
    const conn = this.newConn(socket);
    detectCleartextHttpVersion(socket, (version, initial) => this.route(conn, version, initial));
  }

  private onSecureConnection(socket: tls.TLSSocket): void {
    this.track(socket, false);
    if (socket.destroyed) return;
    this.route(this.newConn(socket), tlsHttpVersion(socket), Buffer.alloc(0));
  }

  private newConn(socket: net.Socket): ListenerConnection<T> {
    const conn = new ListenerConnection(socket, this.hooks.state(socket));
    const ms = this.opts.headerTimeoutMs;
    if (ms > 0) {
      conn.headerTimer = setTimeout(() => {
        conn.headerTimer = null;
        // Slow or silent clients would otherwise hold a socket forever (slowloris).
        this.hooks.count('header-timeout');
        if (conn.h2 !== null) conn.h2.destroy();
        else socket.destroy();
      }, ms);
    }
    socket.once('close', () => {
      conn.requestStarted();
      conn.clearIdleTimer();
    });
    return conn;
  }

  /** Hands a connection to the HTTP/2 server or to the owner's HTTP/1.1 handling. */
  private route(conn: ListenerConnection<T>, version: WireHttpVersion, initial: Buffer): void {
    const socket = conn.socket;
    if (this.closing || socket.destroyed) {
      socket.destroy();
      return;
    }
    // RFC 8446 §5.1: a TLS handshake record (22, then version 3.x) where an HTTP request belongs; no request line
    // starts with that control byte. The HTTP/1.1 head parser would wait out the header timeout for a line end,
    // and the client its connect timeout; an HTTP answer makes the client's TLS stack fail at once instead.
    if (version === 'http/1.1' && initial[0] === 0x16) {
      this.hooks.count('scheme-mismatch');
      socket.end(CLEARTEXT_PORT_RESPONSE, () => socket.destroy());
      return;
    }
    if (version === 'http/1.1') {
      this.hooks.count('h1');
      this.hooks.h1(conn, initial);
      return;
    }
    this.hooks.count('h2');
    // Sockets are always accepted here and handed over, so one cleartext-class HTTP/2 server serves both h2c and
    // TLS connections whose ALPN chose h2.
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
      conn.clearIdleTimer();
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
    this.hooks.h2Session?.(conn, session);
  }

  /**
   * RFC 9113 §6.5.3: our SETTINGS (header list size, stream windows) bind the peer only once it acknowledges them,
   * so a peer that never does is ended with SETTINGS_TIMEOUT.
   */
  private armSettingsTimer(session: http2.ServerHttp2Session): void {
    const ms = this.opts.settingsTimeoutMs;
    if (ms <= 0) return;
    const timer = setTimeout(() => {
      if (session.destroyed || session.closed) return;
      this.hooks.count('settings-timeout');
      // destroy(err, code) would put NO_ERROR on the wire; the GOAWAY is queued first so the peer learns why.
      session.goaway(http2.constants.NGHTTP2_SETTINGS_TIMEOUT);
      setImmediate(() => session.destroy());
    }, ms);
    session.once('localSettings', () => clearTimeout(timer));
    session.once('close', () => clearTimeout(timer));
  }

  /** Starts the idle clock of an HTTP/2 connection that has no open stream. */
  private armIdleTimer(conn: ListenerConnection<T>): void {
    const ms = this.opts.connectionIdleTimeoutMs;
    const session = conn.h2;
    if (ms <= 0 || session === null || session.closed || session.destroyed || conn.idleTimer !== null || conn.openStreams > 0 || this.closing) return;
    conn.idleTimer = setTimeout(() => {
      conn.idleTimer = null;
      if (session.closed || session.destroyed || conn.openStreams > 0) return;
      this.hooks.count('idle-close');
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

  private onH2Stream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
    stream.on('error', () => {});
    const conn = this.h2Sessions.get(stream.session as http2.ServerHttp2Session);
    if (conn === undefined) {
      // RFC 9113 §8.7: REFUSED_STREAM, the request was not processed.
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    conn.requestStarted();
    conn.openStreams++;
    conn.clearIdleTimer();
    stream.once('close', () => {
      conn.openStreams--;
      this.armIdleTimer(conn);
    });
    this.hooks.h2Stream(conn, stream, headers, flags, rawHeaders);
  }
}
