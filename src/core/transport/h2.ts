import http2 from 'node:http2';
import type { SecureClientSessionOptions } from 'node:http2';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { parseProxyStatusError } from '../proxy-status.js';
import type { Transport, TransportOptions, TunnelHandle } from './types.js';

// RFC 9113 §6.5.2: SETTINGS_MAX_CONCURRENT_STREAMS is unlimited until the peer says otherwise; we assume the
// recommended minimum of 100 until its SETTINGS arrive, then use what it announced.
const ASSUMED_MAX_STREAMS = 100;

/** TLS error codes that no retry will fix. */
const TLS_ERROR_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'UT_ERR_TLS',
]);

interface PoolConn {
  session: http2.ClientHttp2Session;
  ready: Promise<void>;
  reserved: number;
  limit: number;
  dead: boolean;
}

/** Maps a connection-level failure to a coded error. */
export function connectionError(err: unknown, proxy: URL): UdpTunnelError {
  if (err instanceof UdpTunnelError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  if (TLS_ERROR_CODES.has(code) || /certificate|ssl|tls/i.test(code)) {
    return new UdpTunnelError(ErrorCodes.TLS, `TLS handshake with ${proxy.host} failed: ${e.message} (${code}); use --ca FILE, --pin or --insecure for a private proxy`, { retryable: false, osCode: code }, { cause: err });
  }
  return new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, `cannot reach proxy ${proxy.host}: ${e?.message ?? String(err)}`, { retryable: true, osCode: code }, { cause: err });
}

/** Error for a non-2xx answer, or a 2xx that ends the stream. */
export function refusedError(status: number, headers: Record<string, string | string[] | undefined>, what: string): UdpTunnelError {
  const proxyStatus = headers['proxy-status'] as string | undefined;
  const kind = parseProxyStatusError(proxyStatus);
  // 5xx and 429 may succeed on another attempt; other 4xx will not.
  const retryable = status >= 500 || status === 429;
  return new UdpTunnelError(
    ErrorCodes.TUNNEL_REFUSED,
    `proxy refused ${what}: HTTP ${status}${kind ? ` (${kind})` : ''}`,
    { status, proxyStatus, retryable },
  );
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
      if (this.closed) throw new UdpTunnelError(ErrorCodes.CLOSED, 'client is closing', { retryable: false });
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
    throw new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'could not obtain an HTTP/2 stream slot', { retryable: true });
  }

  /** Returns a slot taken by acquire(). */
  release(c: PoolConn): void {
    c.reserved--;
    // Keep one idle connection; close extra ones once they carry nothing.
    if (c.reserved === 0 && !c.dead && this.conns.filter((x) => !x.dead).length > 1) {
      this.retire(c);
      c.session.close();
    }
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.conns.splice(0);
    await Promise.all(
      all.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.session.destroyed) return resolve();
            // A session that never finished its handshake may not emit 'close' after close() + destroy().
            const t = setTimeout(() => {
              c.session.destroy();
              resolve();
            }, 500);
            c.session.close(() => {
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
    const secure = proxy.protocol === 'https:';
    const options: SecureClientSessionOptions = {
      settings: { enablePush: false, initialWindowSize: 1 << 20 },
      peerMaxConcurrentStreams: ASSUMED_MAX_STREAMS,
    };
    if (secure) {
      if (tls.ca) options.ca = tls.ca;
      if (tls.cert) options.cert = tls.cert;
      if (tls.key) options.key = tls.key;
      if (tls.servername) options.servername = tls.servername;
      options.rejectUnauthorized = !tls.insecure;
      options.ALPNProtocols = ['h2'];
    }
    const session = http2.connect(proxy.origin, options);
    this.connectionsOpened++;
    const c: PoolConn = { session, ready: Promise.resolve(), reserved: 0, limit: ASSUMED_MAX_STREAMS, dead: false };
    c.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new UdpTunnelError(ErrorCodes.TIMEOUT, `proxy ${proxy.host} did not complete the HTTP/2 handshake within ${connectTimeoutMs} ms`, { retryable: true });
        reject(err);
        session.destroy();
      }, connectTimeoutMs);
      // RFC 8441 §3 (and PROTOCOL.md): wait for the server's SETTINGS before sending :protocol.
      session.once('remoteSettings', (settings) => {
        clearTimeout(timer);
        if (this.requireExtendedConnect && !settings.enableConnectProtocol) {
          reject(
            new UdpTunnelError(
              ErrorCodes.CONNECT_PROTOCOL_DISABLED,
              `proxy ${proxy.host} did not enable extended CONNECT (RFC 8441 SETTINGS_ENABLE_CONNECT_PROTOCOL); try --http 1.1 or --mode post`,
              { retryable: false },
            ),
          );
          this.retire(c);
          session.close();
          return;
        }
        const max = settings.maxConcurrentStreams;
        c.limit = max === undefined || max > 1_000_000 ? 1_000_000 : max;
        resolve();
      });
      session.once('error', (err) => {
        clearTimeout(timer);
        reject(connectionError(err, proxy));
      });
      session.once('close', () => {
        clearTimeout(timer);
        reject(new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, `connection to proxy ${proxy.host} closed during setup`, { retryable: true }));
      });
    });
    c.ready.catch(() => {});
    session.on('error', () => this.retire(c));
    session.on('close', () => this.retire(c));
    session.on('goaway', () => this.retire(c));
    this.conns.push(c);
    return c;
  }
}

/** Opens a stream on the pool with the given request headers and waits for a 2xx answer. */
export async function openH2Stream(
  pool: H2Pool,
  headers: http2.OutgoingHttpHeaders,
  signal: AbortSignal,
  connectTimeoutMs: number,
  what: string,
): Promise<TunnelHandle> {
  const conn = await pool.acquire();
  let stream: http2.ClientHttp2Stream;
  try {
    stream = conn.session.request(headers, { endStream: false });
  } catch (err) {
    pool.release(conn);
    throw new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, `could not open a stream: ${(err as Error).message}`, { retryable: true }, { cause: err });
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
    const onAbort = (): void => finish(new UdpTunnelError(ErrorCodes.CLOSED, 'session closed while connecting', { retryable: false }));
    const onEarlyClose = (): void =>
      finish(
        new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, `proxy closed the stream before answering (code ${stream.rstCode ?? 'none'})`, {
          retryable: true,
          rstCode: stream.rstCode,
        }),
      );
    const timer = setTimeout(
      () => finish(new UdpTunnelError(ErrorCodes.TIMEOUT, `no response from proxy within ${connectTimeoutMs} ms`, { retryable: true })),
      connectTimeoutMs,
    );
    signal.addEventListener('abort', onAbort, { once: true });
    stream.on('close', onEarlyClose);
    stream.once('response', (resHeaders, flags: number) => {
      const status = Number(resHeaders[':status']);
      const h = resHeaders as Record<string, string | string[] | undefined>;
      // RFC 9298 §3.5: any 2xx is success, but a response that ends the stream cannot carry a tunnel.
      if (status < 200 || status > 299) return finish(refusedError(status, h, what));
      // Node's endAfterHeaders is not yet set when 'response' fires; the HEADERS frame flags are.
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) return finish(refusedError(status, h, `${what} (response ended the stream)`));
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

/** CONNECT-UDP over HTTP/2 extended CONNECT (RFC 9298 §3.4, RFC 8441). */
export class H2ConnectUdpTransport implements Transport {
  readonly name = 'h2';
  readonly pool: H2Pool;
  private readonly opts: TransportOptions;

  constructor(opts: TransportOptions) {
    this.opts = opts;
    this.pool = new H2Pool(opts, true);
  }

  open(_session: string, signal: AbortSignal): Promise<TunnelHandle> {
    const { proxy, path } = this.opts;
    const headers: http2.OutgoingHttpHeaders = {
      ':method': 'CONNECT',
      ':protocol': 'connect-udp',
      ':scheme': proxy.protocol === 'https:' ? 'https' : 'http',
      ':authority': proxy.host,
      ':path': path,
      'capsule-protocol': '?1',
    };
    for (const [k, v] of this.opts.headers) headers[k] = v;
    return openH2Stream(this.pool, headers, signal, this.opts.connectTimeoutMs, 'CONNECT-UDP');
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
