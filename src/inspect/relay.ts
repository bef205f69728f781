import { describeBadUrl } from '../tunnel/address.js';
import type { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import type { SecureClientSessionOptions } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { formatProxyStatus } from '../tunnel/proxy-status.js';
import { Listener, type ListenerConnection, type ListenerCount } from '../tunnel/server/listener.js';
import type { CloseReason, HeaderList, InspectEvent } from './events.js';
import { headerListFromObject, headerListFromRaw, http2Status, requestHeadFromHttp2 } from './http-fields.js';
import { http2ErrorName } from './http2-frames.js';
import { LiveSessionDecoder, type LiveDecoderOptions, type LiveDecoderStats } from './live-decoder.js';
import { Http1RelayConnection } from './relay-h1.js';
import { RELAY_PROXY_STATUS_NAME, emptyRelayCounters, upstreamFailure, type RelayCounters, type RelayFailure, type RelayUpstreamTls } from './relay-shared.js';

export { RELAY_PROXY_STATUS_NAME, upstreamFailure } from './relay-shared.js';
export type { RelayCounters, RelayFailure, RelayUpstreamTls } from './relay-shared.js';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** How long a client connection whose upstream connection failed stays open to answer requests already sent. */
const UPSTREAM_FAILURE_GRACE_MS = 500;

/** InspectRelay's defaults. */
export { RELAY_DEFAULTS } from './defaults.js';
import { RELAY_DEFAULTS } from './defaults.js';

/** Options of an InspectRelay. */
export interface InspectRelayOptions extends Omit<LiveDecoderOptions, 'onEvent'> {
  /** Address to listen on. */
  host: string;
  /** Port to listen on (0 = any; read the bound port from listen()). */
  port: number;
  /**
   * TLS toward clients with ALPN h2 and http/1.1; cleartext when absent (h2c with prior knowledge and HTTP/1.1 side by
   * side, told apart by the HTTP/2 preface).
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * The proxy every request is forwarded to: `http://HOST:PORT` (cleartext) or `https://HOST:PORT` (TLS), spoken to
   * in the HTTP version the client used.
   */
  upstream: string;
  upstreamTls?: RelayUpstreamTls;
  /**
   * Receives each NSS key log line (SSLKEYLOGFILE format) of the TLS connections on both sides: clients' connections
   * to the relay and the relay's connections to the upstream.
   */
  onKeylog?: (line: Buffer) => void;
  /** How long to wait for the upstream connection (and, for HTTP/2, its SETTINGS); default 10 s. */
  connectTimeoutMs?: number;
  /** Client connections at once (default 1024); more are closed and counted. */
  maxConnections?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients (default 100). */
  maxStreamsPerConnection?: number;
  /** Largest HTTP/1.1 request or response head (default 16 KiB); a larger one is refused and counted. */
  maxHeadBytes?: number;
  /**
   * Time a client connection has to deliver its first complete request (default 10 s; 0 = no limit); under TLS the
   * handshake gets the same time before that.
   */
  headTimeoutMs?: number;
  /** Receives every inspect event. */
  onEvent: (ev: InspectEvent) => void;
}

interface Conn {
  n: number;
  client: http2.ServerHttp2Session;
  upstream: http2.ClientHttp2Session;
  ready: Promise<void>;
  /** The upstream's SETTINGS arrived. */
  upstreamReady: boolean;
  extendedConnect: boolean;
  pairs: Set<Pair>;
}

type Party = 'client' | 'proxy' | 'relay';

interface Pair {
  id: string;
  conn: Conn;
  client: http2.ServerHttp2Stream;
  up: http2.ClientHttp2Stream | null;
  /** END_STREAM seen from the client (request content) and from the proxy (response content). */
  ended: [boolean, boolean];
  finalStatus: number | null;
  localAnswer: string | null;
  firstReset: { by: Party; code: number } | null;
  clientClosed: boolean;
  upClosed: boolean;
  done: boolean;
}

/** Node's outgoing header object for a field list: repeated names become arrays (their relative order kept). */
function outgoingHeaders(list: HeaderList): http2.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of list) {
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}

/** Raises a session's connection-level receive window (RFC 9113 §6.9.2 leaves it at 64 KiB), so streams share more. */
function widenConnectionWindow(session: http2.Http2Session): void {
  try {
    session.setLocalWindowSize(16 << 20);
  } catch {
    // The session is already closing.
  }
}

/** Parses and checks the `upstream` option (the proxy URL every request is forwarded to). */
export function parseUpstreamUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `upstream '${text}' ${describeBadUrl(text)}`, { option: 'upstream', value: text });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `upstream must use http:// (h2c) or https:// (TLS), not ${url.protocol}`, { option: 'upstream', value: text });
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.username) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `upstream '${text}': give only scheme, host and port; request paths are forwarded as the client sent them`, {
      option: 'upstream',
      value: text,
    });
  }
  return url;
}

/**
 * `udp-tunnel inspect --listen --upstream`: a relay that accepts HTTP/2 (h2c with prior knowledge, or ALPN h2) and
 * HTTP/1.1 clients on serve's Listener (told apart by the HTTP/2 preface, or ALPN).
 *
 * HTTP/2: accepts any request (extended CONNECT advertised, RFC 8441 §3), opens the same request on its own
 * connection to the upstream proxy (one upstream connection per client connection, opened eagerly; requests wait for
 * the upstream SETTINGS before :protocol is sent), pipes both bodies byte-for-byte with backpressure, and passes
 * status, headers and Proxy-Status back unchanged. Not forwarded: trailers, PRIORITY and server push.
 *
 * HTTP/1.1 (RFC 9298 §3.2 Upgrade): one upstream connection per client connection, opened once the request head is
 * read; heads go both ways exactly as received, and after a 101 both capsule streams are piped byte-for-byte (see
 * Http1RelayConnection).
 *
 * Copies of the bytes go to a LiveSessionDecoder after they were handed on, so decoding never alters, delays or stalls
 * the relayed bytes. Events: 'error' (listener), 'warning' ({code, message}).
 */
export class InspectRelay extends EventEmitter {
  /** Relay counters. */
  readonly counters: RelayCounters = emptyRelayCounters();
  /** The upstream proxy URL. */
  readonly upstream: URL;
  private readonly opts: InspectRelayOptions;
  private readonly decoder: LiveSessionDecoder;
  /** The client side: the same listener as serve's (accept, preface/ALPN, connection cap, first-request timer). */
  private readonly listener: Listener<undefined>;
  private readonly conns = new Set<Conn>();
  private readonly h1Conns = new Set<Http1RelayConnection>();
  private readonly connOf = new WeakMap<http2.Http2Session, Conn>();
  private readonly started = performance.now();
  private nextConn = 1;
  private closing = false;

  constructor(options: InspectRelayOptions) {
    super();
    this.opts = options;
    this.upstream = parseUpstreamUrl(options.upstream);
    const { onEvent, ...decode } = options;
    this.decoder = new LiveSessionDecoder({ ...decode, onEvent });
    const settings: http2.Settings = {
      // RFC 8441 §3: clients may send :protocol only after the server advertised extended CONNECT.
      enableConnectProtocol: true,
      maxConcurrentStreams: options.maxStreamsPerConnection ?? RELAY_DEFAULTS.maxStreamsPerConnection,
      initialWindowSize: 1 << 20,
    };
    this.listener = new Listener<undefined>({
      host: options.host,
      port: options.port,
      tls: options.tls && options.onKeylog ? { ...options.tls, onKeylog: options.onKeylog } : options.tls,
      maxConnections: options.maxConnections ?? RELAY_DEFAULTS.maxConnections,
      // A client that connects and never finishes a request would otherwise hold a connection slot forever.
      headerTimeoutMs: options.headTimeoutMs ?? RELAY_DEFAULTS.headTimeoutMs,
      // The relay mirrors its clients: idle and SETTINGS timeouts are the upstream proxy's to apply.
      connectionIdleTimeoutMs: 0,
      settingsTimeoutMs: 0,
      h2: http2.createServer({ settings }),
      hooks: {
        state: () => undefined,
        h1: (conn, initial) => this.onH1Connection(conn, initial),
        h2Session: (_conn, session) => this.onClientSession(session),
        h2Stream: (_conn, stream, _headers, flags, rawHeaders) => this.onStream(stream, flags, rawHeaders),
        count: (what) => this.countListener(what),
        error: (err) => this.emit('error', err),
      },
    });
  }

  /** Decoder counters (sessions dropped at the limit, failures). */
  get decoderStats(): LiveDecoderStats {
    return this.decoder.stats;
  }

  /**
   * Bytes the HTTP/1.1 connections hold in user space right now (heads being read, write queues). Backpressure keeps
   * it near the sockets' high-water marks per direction however fast one side sends and however slowly the other reads.
   */
  get bufferedBytes(): number {
    let n = 0;
    for (const c of this.h1Conns) n += c.bufferedBytes;
    return n;
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<AddressInfo> {
    return this.listener.listen();
  }

  /** The bound address. */
  address(): AddressInfo {
    return this.listener.address();
  }

  /** Stops listening, resets every relayed stream and closes both sides' connections; open sessions close as 'local'. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const c of this.conns) {
      for (const p of c.pairs) {
        p.firstReset ??= { by: 'relay', code: NGHTTP2_CANCEL };
        if (!p.client.destroyed) p.client.close(NGHTTP2_CANCEL);
        if (p.up && !p.up.destroyed) p.up.close(NGHTTP2_CANCEL);
      }
      c.upstream.close();
    }
    for (const h of [...this.h1Conns]) h.shutdown();
    // The listener sends the client sessions GOAWAY and closes every other client connection now.
    await this.listener.close(() => {
      for (const c of this.conns) c.upstream.destroy();
    });
    this.decoder.closeAll(this.now(), 'local', 'relay shutdown');
  }

  private now(): number {
    return Math.round((performance.now() - this.started) * 1000) / 1000;
  }

  private countListener(what: ListenerCount): void {
    const c = this.counters;
    switch (what) {
      case 'connection':
        c.connections++;
        return;
      case 'dropped':
        c.droppedConnections++;
        return;
      case 'h1':
        c.connectionsH1++;
        return;
      case 'h2':
        c.connectionsH2++;
        return;
      case 'header-timeout':
        c.headTimeouts++;
        return;
      case 'tls-error':
        c.tlsErrors++;
        return;
      case 'scheme-mismatch':
        c.schemeMismatches++;
        return;
      case 'idle-close':
      case 'settings-timeout':
        // Both timers are off (see the constructor).
        return;
    }
  }

  /** Hands an HTTP/1.1 client connection to its own relay connection. */
  private onH1Connection(client: ListenerConnection<undefined>, initial: Buffer): void {
    const conn = new Http1RelayConnection(
      {
        decoder: this.decoder,
        counters: this.counters,
        upstream: this.upstream,
        upstreamTls: this.opts.upstreamTls ?? {},
        ...(this.opts.onKeylog ? { onKeylog: this.opts.onKeylog } : {}),
        connectTimeoutMs: this.opts.connectTimeoutMs ?? RELAY_DEFAULTS.connectTimeoutMs,
        maxHeadBytes: this.opts.maxHeadBytes ?? RELAY_DEFAULTS.maxHeadBytes,
        now: () => this.now(),
        warn: (code, message) => this.emit('warning', { code, message }),
        requestStarted: () => client.requestStarted(),
      },
      `c${this.nextConn++}`,
      client.socket,
      initial,
      () => this.h1Conns.delete(conn),
    );
    this.h1Conns.add(conn);
  }

  private onClientSession(client: http2.ServerHttp2Session): void {
    const n = this.nextConn++;
    const up = this.upstream;
    const options: SecureClientSessionOptions = { settings: { enablePush: false, initialWindowSize: 1 << 20 } };
    if (up.protocol === 'https:') {
      const tls = this.opts.upstreamTls ?? {};
      if (tls.ca) options.ca = tls.ca;
      if (tls.servername) options.servername = tls.servername;
      options.rejectUnauthorized = !tls.insecure;
      options.ALPNProtocols = ['h2'];
      const onKeylog = this.opts.onKeylog;
      // The session's own TLS socket cannot be listened on once handed over, so the relay opens it itself.
      if (onKeylog) {
        options.createConnection = () => {
          const host = up.hostname.startsWith('[') ? up.hostname.slice(1, -1) : up.hostname;
          const sni = tls.servername ?? (net.isIP(host) ? undefined : host);
          const socket = tlsConnect({ ...options, host, port: Number(up.port), ...(sni ? { servername: sni } : {}) });
          socket.on('keylog', onKeylog);
          return socket;
        };
      }
    }
    const upstream = http2.connect(up.origin, options);
    const conn: Conn = { n, client, upstream, ready: Promise.resolve(), upstreamReady: false, extendedConnect: false, pairs: new Set() };
    const timeoutMs = this.opts.connectTimeoutMs ?? RELAY_DEFAULTS.connectTimeoutMs;
    conn.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new UdpTunnelError(ErrorCodes.TIMEOUT, `upstream ${up.host} sent no HTTP/2 SETTINGS within ${timeoutMs} ms`));
        upstream.destroy();
      }, timeoutMs);
      // RFC 8441 §3: :protocol may be sent only once the upstream's SETTINGS enabled extended CONNECT.
      upstream.once('remoteSettings', (s) => {
        clearTimeout(timer);
        conn.upstreamReady = true;
        conn.extendedConnect = s.enableConnectProtocol === true;
        resolve();
      });
      upstream.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      upstream.once('close', () => {
        clearTimeout(timer);
        reject(new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, `upstream ${up.host} closed the connection during setup`));
      });
    });
    conn.ready.catch(() => {
      // The client's next connection gets a fresh upstream attempt. Requests already on their way still get the
      // relay's own answer first: a GOAWAY sent at once could overtake a request sent right after our SETTINGS.
      const timer = setTimeout(() => {
        if (!client.closed && !client.destroyed) client.close();
      }, UPSTREAM_FAILURE_GRACE_MS);
      client.once('close', () => clearTimeout(timer));
    });
    this.conns.add(conn);
    upstream.on('error', () => {});
    // Before the upstream is ready its failure is handled above (with a grace period for requests in flight).
    const followUpstream = (): void => {
      if (conn.upstreamReady && !client.closed && !client.destroyed) client.close();
    };
    upstream.on('goaway', followUpstream);
    upstream.on('close', followUpstream);
    upstream.on('connect', () => widenConnectionWindow(upstream));
    client.on('close', () => {
      this.conns.delete(conn);
      if (!upstream.closed && !upstream.destroyed) upstream.close();
    });
    this.connOf.set(client, conn);
  }

  private onStream(stream: http2.ServerHttp2Stream, flags: number, rawHeaders: string[]): void {
    const conn = stream.session ? this.connOf.get(stream.session) : undefined;
    if (conn === undefined) {
      stream.close(NGHTTP2_CANCEL);
      return;
    }
    this.counters.streams++;
    const t = this.now();
    const list = headerListFromRaw(rawHeaders);
    const pair: Pair = {
      id: `c${conn.n}s${stream.id ?? 0}`,
      conn,
      client: stream,
      up: null,
      ended: [false, false],
      finalStatus: null,
      localAnswer: null,
      firstReset: null,
      clientClosed: false,
      upClosed: false,
      done: false,
    };
    conn.pairs.add(pair);
    this.decoder.request(pair.id, t, requestHeadFromHttp2(list));
    stream.on('close', () => this.onClientClose(pair));
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    conn.ready.then(
      () => this.openUpstream(pair, list, endStream),
      (err: unknown) => this.answerLocally(pair, upstreamFailure(err, this.upstream)),
    );
  }

  private openUpstream(pair: Pair, list: HeaderList, endStream: boolean): void {
    const { client, conn } = pair;
    if (pair.clientClosed || client.destroyed) return;
    if (this.closing) return this.answerLocally(pair, { status: 503, error: 'proxy_internal_error', details: 'relay shutting down' });
    if (list.some(([n]) => n === ':protocol') && !conn.extendedConnect) {
      return this.answerLocally(pair, {
        status: 502,
        error: 'http_protocol_error',
        details: `upstream ${this.upstream.host} did not enable extended CONNECT (RFC 8441 SETTINGS_ENABLE_CONNECT_PROTOCOL)`,
      });
    }
    let up: http2.ClientHttp2Stream;
    try {
      up = conn.upstream.request(outgoingHeaders(list), { endStream });
    } catch (err) {
      return this.answerLocally(pair, upstreamFailure(err, this.upstream));
    }
    pair.up = up;
    const id = pair.id;
    up.on('error', () => {});
    up.on('response', (_h: http2.IncomingHttpHeaders, flags: number, raw: string[]) => this.onUpstreamResponse(pair, flags, raw));
    up.on('headers', (h: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      // Interim (1xx) responses pass through as they are.
      if (!client.destroyed && !client.headersSent) {
        try {
          client.additionalHeaders(h as http2.OutgoingHttpHeaders);
        } catch {
          /* not forwardable */
        }
      }
      const fields = headerListFromRaw(raw);
      this.decoder.response(id, this.now(), '2', http2Status(fields), fields);
    });
    up.on('data', (chunk: Buffer) => {
      if (client.destroyed || client.writableEnded) this.counters.discardedBytes += chunk.length;
      else {
        if (!client.write(chunk)) up.pause();
        this.counters.bytesToClient += chunk.length;
      }
      this.decoder.bytes(id, '<-', chunk, this.now());
    });
    client.on('drain', () => up.resume());
    up.on('end', () => {
      pair.ended[1] = true;
      if (!client.destroyed && !client.writableEnded && client.headersSent) client.end();
      this.decoder.end(id, '<-', this.now());
    });
    up.on('close', () => this.onUpstreamClose(pair));
    client.on('data', (chunk: Buffer) => {
      if (up.destroyed || up.writableEnded) this.counters.discardedBytes += chunk.length;
      else {
        if (!up.write(chunk)) client.pause();
        this.counters.bytesToProxy += chunk.length;
      }
      this.decoder.bytes(id, '->', chunk, this.now());
    });
    up.on('drain', () => client.resume());
    client.on('end', () => {
      pair.ended[0] = true;
      if (!up.destroyed && !up.writableEnded) up.end();
      this.decoder.end(id, '->', this.now());
    });
  }

  private onUpstreamResponse(pair: Pair, flags: number, raw: string[]): void {
    const fields = headerListFromRaw(raw);
    const status = http2Status(fields);
    pair.finalStatus = status;
    const client = pair.client;
    if (!client.destroyed && !client.headersSent) {
      try {
        // sendDate off: the upstream's own Date (or its absence) passes through unchanged.
        client.respond(outgoingHeaders(fields), { endStream: (flags & NGHTTP2_FLAG_END_STREAM) !== 0, sendDate: false } as http2.ServerStreamResponseOptions);
      } catch {
        if (!client.destroyed) client.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    }
    this.decoder.response(pair.id, this.now(), '2', status, fields);
  }

  private answerLocally(pair: Pair, f: RelayFailure): void {
    this.counters.localAnswers++;
    pair.localAnswer = `${f.error}: ${f.details}`;
    pair.finalStatus = f.status;
    const client = pair.client;
    if (client.destroyed || client.closed || client.headersSent) return;
    // RFC 9209 §2: the relay names itself in the Proxy-Status entry for a failure of its own.
    const headers = { ':status': f.status, 'proxy-status': formatProxyStatus(f.error, { details: f.details, name: RELAY_PROXY_STATUS_NAME }) };
    client.respond(headers, { endStream: true });
    this.decoder.response(pair.id, this.now(), '2', f.status, headerListFromObject(headers));
    this.emit('warning', { code: ErrorCodes.PROXY_UNREACHABLE, message: `${pair.id}: answered ${f.status} ${f.error}: ${f.details}` });
  }

  private onClientClose(pair: Pair): void {
    pair.clientClosed = true;
    const up = pair.up;
    if (up && !up.closed && !up.destroyed) {
      if (!(pair.ended[0] && pair.ended[1])) {
        const code = pair.client.rstCode ?? NGHTTP2_CANCEL;
        pair.firstReset ??= { by: 'client', code };
        up.close(code);
      }
    }
    this.maybeFinish(pair);
  }

  private onUpstreamClose(pair: Pair): void {
    pair.upClosed = true;
    const client = pair.client;
    if (!client.closed && !client.destroyed) {
      if (!(pair.ended[0] && pair.ended[1])) {
        const code = pair.up?.rstCode ?? NGHTTP2_CANCEL;
        pair.firstReset ??= { by: 'proxy', code };
        client.close(code);
      }
    }
    this.maybeFinish(pair);
  }

  private maybeFinish(pair: Pair): void {
    if (pair.done || !pair.clientClosed || (pair.up !== null && !pair.upClosed)) return;
    pair.done = true;
    pair.conn.pairs.delete(pair);
    let reason: CloseReason;
    let detail: string | null = null;
    const status = pair.finalStatus;
    if (pair.localAnswer !== null) {
      reason = 'refused';
      detail = `relay answered ${status}: ${pair.localAnswer}`;
    } else if (status !== null && (status < 200 || status > 299)) {
      reason = 'refused';
      detail = `status ${status}`;
    } else if (pair.firstReset?.by === 'relay') {
      reason = 'local';
      detail = 'relay shutdown';
    } else if (pair.firstReset !== null) {
      reason = 'rst-stream';
      detail = `${http2ErrorName(pair.firstReset.code)} from ${pair.firstReset.by}`;
    } else if (pair.up === null) {
      reason = 'rst-stream';
      detail = 'client closed the stream before it was forwarded';
    } else {
      reason = this.decoder.isTunnel(pair.id) ? 'end-stream' : 'not-a-tunnel';
    }
    this.decoder.close(pair.id, this.now(), reason, detail);
  }
}
