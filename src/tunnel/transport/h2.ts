import http2 from 'node:http2';
import type net from 'node:net';
import { tapChannel } from '../diagnostics.js';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { connectProxySocket, connectionError, lastSocketError, speaksTlsError } from './proxy-socket.js';
import { refusedError } from './refusal.js';
import { resolveRequest } from './request.js';
import type { Transport, TransportOptions, TunnelHandle, TunnelRequest } from './types.js';


// RFC 9113 §8.7: REFUSED_STREAM means the request was not processed and may be retried; bound the retries.
const REFUSED_STREAM_RETRIES = 3;

// RFC 9113 §6.5.2: SETTINGS_MAX_CONCURRENT_STREAMS is unlimited until the peer says otherwise; we assume the
// recommended minimum of 100 until its SETTINGS arrive, then use what it announced.
const ASSUMED_MAX_STREAMS = 100;

// RFC 9113 §6.9.2: the connection window starts at 65,535 bytes whatever SETTINGS say. Many sessions share one
// connection, so that would cap all of them together at 64 KiB in flight toward us; raise it once connected.
const CONNECTION_WINDOW = 16 << 20;

// RFC 8446 §5.1/§6.2: a record header (5 bytes) and an alert (level, description).
const TLS_ALERT_RECORD_BYTES = 7;

// How long to wait for the server's SETTINGS before handing a TLS socket to the HTTP/2 session anyway.
const SERVER_PREFACE_WAIT_MS = 500;

/**
 * Waits for the server's first bytes (its SETTINGS, RFC 9113 §3.4) and puts them back. Over TLS 1.3 a refused
 * client certificate arrives as an alert only after the handshake; the HTTP/2 session would read it natively and
 * never report it, so it is caught here. Resolves after `ms` without data for servers that wait for our preface.
 */
function awaitServerPreface(socket: net.Socket, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err: Error | null): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      socket.pause();
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer): void => {
      done(null);
      socket.unshift(chunk);
    };
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done(lastSocketError(socket) ?? new Error('connection closed after the TLS handshake'));
    const timer = setTimeout(() => done(null), ms);
    const early = lastSocketError(socket);
    if (early || socket.destroyed) return done(early ?? new Error('connection closed after the TLS handshake'));
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

interface PoolConn {
  /** Null until the byte stream to the proxy is up. */
  session: http2.ClientHttp2Session | null;
  socket: net.Socket | null;
  /** Streams on this connection that the proxy accepted and that are still open. */
  open: number;
  ready: Promise<void>;
  reserved: number;
  limit: number;
  dead: boolean;
}

/**
 * A pool of HTTP/2 connections to one proxy. Streams are multiplexed over one connection; a further connection is
 * opened when the proxy's SETTINGS_MAX_CONCURRENT_STREAMS is reached. Broken connections leave the pool at once, so
 * retries never land on a dying connection.
 */
export class H2Pool {
  private readonly conns: PoolConn[] = [];
  private readonly opts: TransportOptions;
  private readonly requireExtendedConnect: boolean;
  private closed = false;
  /** Connections opened so far. */
  connectionsOpened = 0;

  constructor(opts: TransportOptions, requireExtendedConnect: boolean) {
    this.opts = opts;
    this.requireExtendedConnect = requireExtendedConnect;
  }

  /** Reserves a stream slot on a ready connection. Pair with release(). */
  async acquire(): Promise<PoolConn> {
    for (let i = 0; i < 8; i++) {
      if (this.closed) throw new UdpTunnelError(ErrorCodes.CLOSED, 'client is closing');
      let c = this.conns.find((x) => !x.dead && x.reserved < x.limit);
      if (!c) c = this.connect();
      c.reserved++;
      try {
        await c.ready;
      } catch (err) {
        c.reserved--;
        throw err;
      }
      if (c.dead || c.reserved > c.limit) {
        c.reserved--;
        continue;
      }
      return c;
    }
    throw new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'could not obtain an HTTP/2 stream slot');
  }

  /** Returns a slot taken by acquire(). */
  release(c: PoolConn): void {
    c.reserved--;
    // Keep one idle connection; close extra ones once they carry nothing.
    if (c.reserved === 0 && !c.dead && this.conns.filter((x) => !x.dead).length > 1) {
      this.retire(c);
      c.session?.close();
    }
  }

  /** Lowers a connection's stream budget after the proxy refused a stream on it (RFC 9113 §8.7). */
  refusedOn(c: PoolConn): void {
    // The proxy holds what it has already accepted; anything more goes to another connection.
    c.limit = Math.min(c.limit, c.open);
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.conns.splice(0);
    await Promise.all(
      all.map(
        (c) =>
          new Promise<void>((resolve) => {
            const session = c.session;
            if (session === null || session.destroyed) {
              c.socket?.destroy();
              return resolve();
            }
            // A session that never finished its handshake may not emit 'close' after close() + destroy().
            const t = setTimeout(() => {
              session.destroy();
              resolve();
            }, 500);
            session.close(() => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
  }

  private retire(c: PoolConn): void {
    c.dead = true;
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
  }

  private connect(): PoolConn {
    const { proxy, tls, connectTimeoutMs } = this.opts;
    this.connectionsOpened++;
    const c: PoolConn = { session: null, socket: null, open: 0, ready: Promise.resolve(), reserved: 0, limit: ASSUMED_MAX_STREAMS, dead: false };
    this.conns.push(c);
    c.ready = (async () => {
      const started = Date.now();
      let socket: net.Socket;
      try {
        socket = await connectProxySocket({ proxy, tls, alpn: ['h2'], timeoutMs: connectTimeoutMs });
      } catch (err) {
        this.retire(c);
        throw err;
      }
      c.socket = socket;
      // A small capsule written while earlier bytes are unacknowledged must not wait for Nagle.
      socket.setNoDelay(true);
      if (proxy.protocol === 'https:') {
        try {
          await awaitServerPreface(socket, Math.min(SERVER_PREFACE_WAIT_MS, connectTimeoutMs));
        } catch (err) {
          socket.destroy();
          this.retire(c);
          throw connectionError(err, proxy);
        }
      }
      if (this.closed || c.dead) {
        socket.destroy();
        throw new UdpTunnelError(ErrorCodes.CLOSED, 'client is closing');
      }
      const session = http2.connect(proxy.origin, {
        createConnection: () => socket,
        settings: { enablePush: false, initialWindowSize: 1 << 20 },
        peerMaxConcurrentStreams: ASSUMED_MAX_STREAMS,
      });
      c.session = session;
      session.once('connect', () => {
        try {
          session.setLocalWindowSize(CONNECTION_WINDOW);
        } catch {
          // The session may already be closing.
        }
      });
      // The session reads the socket natively and misses TLS alerts that arrive after the handshake (TLS 1.3 sends
      // "certificate required" late); pass them on so setup fails with the real cause instead of a timeout.
      socket.on('error', (err) => {
        if (!session.destroyed) session.destroy(err);
      });
      session.on('error', () => this.retire(c));
      session.on('close', () => this.retire(c));
      session.on('goaway', () => this.retire(c));
      await this.awaitSettings(c, session, Math.max(1, connectTimeoutMs - (Date.now() - started)));
    })();
    c.ready.catch(() => {});
    return c;
  }

  private awaitSettings(c: PoolConn, session: http2.ClientHttp2Session, timeoutMs: number): Promise<void> {
    const { proxy } = this.opts;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new UdpTunnelError(ErrorCodes.TIMEOUT, `proxy ${proxy.host} did not complete the HTTP/2 handshake within ${timeoutMs} ms`, { timeoutMs }));
        session.destroy();
      }, timeoutMs);
      // RFC 8441 §3 (and PROTOCOL.md): wait for the server's SETTINGS before sending :protocol.
      session.once('remoteSettings', (settings) => {
        clearTimeout(timer);
        if (this.requireExtendedConnect && !settings.enableConnectProtocol) {
          reject(
            new UdpTunnelError(
              ErrorCodes.CONNECT_PROTOCOL_DISABLED,
              `proxy ${proxy.host} did not enable extended CONNECT (RFC 8441 SETTINGS_ENABLE_CONNECT_PROTOCOL); try http 1.1 or mode post`,
              { related: ['http', 'mode'] },
            ),
          );
          this.retire(c);
          session.close();
          return;
        }
        const max = settings.maxConcurrentStreams;
        // A proxy that states no limit (udp-tunnel's serve among them: it refuses excess streams one by one rather than
        // through SETTINGS) still has one; RFC 9113 §5.1.2 recommends at least 100, so spread streams at that.
        c.limit = max === undefined || max >= 2 ** 31 ? ASSUMED_MAX_STREAMS : Math.min(max, 1_000_000);
        resolve();
      });
      session.once('error', (err) => {
        clearTimeout(timer);
        reject(connectionError(err, proxy));
      });
      session.once('close', () => {
        clearTimeout(timer);
        // RFC 9113 §3.4: a server's first bytes are a SETTINGS frame (9 bytes or more). A cleartext connection that
        // closed after fewer read none; 7 is a TLS alert record (RFC 8446 §5.1/§6), which serve sends to cleartext
        // on its TLS port. The session reads the socket natively, so the count is all there is to go on.
        const read = c.socket?.bytesRead ?? 0;
        if (proxy.protocol === 'http:' && read === TLS_ALERT_RECORD_BYTES) return reject(speaksTlsError(proxy));
        const cause = c.socket ? lastSocketError(c.socket) : undefined;
        reject(cause ? connectionError(cause, proxy) : new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, `connection to proxy ${proxy.host} closed during setup`));
      });
    });
  }
}

/**
 * Opens a stream on the pool with the given request headers and waits for a 2xx answer. A stream the proxy
 * refuses with REFUSED_STREAM (RFC 9113 §8.7: not processed) is retried on another connection.
 */
export async function openH2Stream(
  pool: H2Pool,
  headers: http2.OutgoingHttpHeaders,
  signal: AbortSignal,
  connectTimeoutMs: number,
  what: string,
  sentCredentials = false,
  session?: string,
): Promise<TunnelHandle> {
  for (let i = 0; ; i++) {
    try {
      return await openH2StreamOnce(pool, headers, signal, connectTimeoutMs, what, sentCredentials, session);
    } catch (err) {
      if (!(err instanceof UdpTunnelError) || err.details['rstCode'] !== http2.constants.NGHTTP2_REFUSED_STREAM || i >= REFUSED_STREAM_RETRIES) throw err;
    }
  }
}

async function openH2StreamOnce(
  pool: H2Pool,
  headers: http2.OutgoingHttpHeaders,
  signal: AbortSignal,
  connectTimeoutMs: number,
  what: string,
  sentCredentials: boolean,
  session: string | undefined,
): Promise<TunnelHandle> {
  const conn = await pool.acquire();
  let stream: http2.ClientHttp2Stream;
  try {
    // waitForTrailers: Node would otherwise send END_STREAM ahead of an abort's RST_STREAM (RFC 9297 §3.3 wants a reset).
    stream = conn.session!.request(headers, { endStream: false, waitForTrailers: true });
    stream.on('wantTrailers', () => {
      if (!stream.closed && !stream.destroyed) stream.sendTrailers({});
    });
  } catch (err) {
    pool.release(conn);
    throw new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, `could not open a stream: ${(err as Error).message}`, {}, { cause: err });
  }
  if (session !== undefined && tapChannel.hasSubscribers) {
    tapChannel.publish({ kind: 'request', session, time: Date.now(), headers: { ...headers } });
    stream.once('response', (h) => {
      if (tapChannel.hasSubscribers) tapChannel.publish({ kind: 'response', session, time: Date.now(), http: '2', status: Number(h[':status']), headers: { ...h } });
    });
  }
  let released = false;
  stream.on('close', () => {
    if (!released) {
      released = true;
      pool.release(conn);
    }
  });
  stream.on('error', () => {});
  return new Promise<TunnelHandle>((resolve, reject) => {
    let settled = false;
    const finish = (err: UdpTunnelError | null, handle?: TunnelHandle): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      stream.off('close', onEarlyClose);
      if (err) {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(err);
      } else resolve(handle!);
    };
    const onAbort = (): void => finish(new UdpTunnelError(ErrorCodes.CLOSED, 'session closed while connecting'));
    const onEarlyClose = (): void => {
      if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) pool.refusedOn(conn);
      finish(
        new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, `proxy closed the stream before answering (code ${stream.rstCode ?? 'none'})`, {
          rstCode: stream.rstCode,
        }),
      );
    };
    const timer = setTimeout(
      () => finish(new UdpTunnelError(ErrorCodes.TIMEOUT, `no response from proxy within ${connectTimeoutMs} ms`, { timeoutMs: connectTimeoutMs })),
      connectTimeoutMs,
    );
    signal.addEventListener('abort', onAbort, { once: true });
    stream.on('close', onEarlyClose);
    stream.once('response', (resHeaders, flags: number) => {
      const status = Number(resHeaders[':status']);
      const h = resHeaders as Record<string, string | string[] | undefined>;
      // RFC 9298 §3.5: any 2xx is success, but a response that ends the stream cannot carry a tunnel.
      if (status < 200 || status > 299) return finish(refusedError(status, h, what, sentCredentials));
      // Node's endAfterHeaders is not yet set when 'response' fires; the HEADERS frame flags are.
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) return finish(refusedError(status, h, `${what} (response ended the stream)`, sentCredentials));
      conn.open++;
      stream.once('close', () => conn.open--);
      finish(null, {
        stream,
        responseHeaders: h,
        abort(reason) {
          if (stream.destroyed) return;
          // RFC 9297 §3.3: malformed capsule stream -> stream error PROTOCOL_ERROR (RFC 9113 §8.1.1).
          stream.close(reason === 'malformed' ? http2.constants.NGHTTP2_PROTOCOL_ERROR : http2.constants.NGHTTP2_CANCEL);
        },
      });
    });
  });
}

/** Shared by the two HTTP/2 transports: one pool, one request shape that differs only in method and :protocol. */
abstract class H2TunnelTransport implements Transport {
  abstract readonly name: string;
  readonly pool: H2Pool;
  private readonly opts: TransportOptions;
  private readonly extendedConnect: boolean;

  protected constructor(opts: TransportOptions, extendedConnect: boolean) {
    this.opts = opts;
    this.extendedConnect = extendedConnect;
    this.pool = new H2Pool(opts, extendedConnect);
  }

  async open(session: string, signal: AbortSignal, request?: TunnelRequest): Promise<TunnelHandle> {
    const { proxy } = this.opts;
    const { path, headers: extra } = resolveRequest(this.opts, !this.extendedConnect, session, request);
    const headers: http2.OutgoingHttpHeaders = this.extendedConnect
      ? { ':method': 'CONNECT', ':protocol': 'connect-udp' }
      : { ':method': 'POST' };
    headers[':scheme'] = proxy.protocol === 'https:' ? 'https' : 'http';
    headers[':authority'] = proxy.host;
    headers[':path'] = path;
    headers['capsule-protocol'] = '?1';
    for (const [k, v] of extra) headers[k] = v;
    if (this.opts.authorization) headers['authorization'] = this.opts.authorization;
    const what = this.extendedConnect ? 'CONNECT-UDP' : 'POST tunnel';
    return openH2Stream(this.pool, headers, signal, this.opts.connectTimeoutMs, what, Boolean(this.opts.authorization), session);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** CONNECT-UDP over HTTP/2 extended CONNECT (RFC 9298 §3.4, RFC 8441). */
export class H2ConnectUdpTransport extends H2TunnelTransport {
  readonly name = 'h2';

  constructor(opts: TransportOptions) {
    super(opts, true);
  }
}

/**
 * POST mode (Envoy `use_post`; not RFC 9298): an HTTP/2 POST to a path the proxy maps to a fixed target; request
 * and response bodies carry DATAGRAM capsules (RFC 9297 §3.5), so datagram boundaries survive.
 */
export class H2PostTransport extends H2TunnelTransport {
  readonly name = 'post';

  constructor(opts: TransportOptions) {
    super(opts, false);
  }
}
