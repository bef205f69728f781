import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import type { SecureClientSessionOptions } from 'node:http2';
import type { AddressInfo, Server } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { formatProxyStatus, type ProxyErrorType } from '../proxy-status.js';
import type { CloseReason, HeaderList, InspectEvent } from './events.js';
import { headerListFromObject, headerListFromRaw, http2Status, requestHeadFromHttp2 } from './http-fields.js';
import { http2ErrorName } from './http2-frames.js';
import { LiveSessionDecoder, type LiveDecoderOptions, type LiveDecoderStats } from './live-decoder.js';

/** The name the relay uses in the Proxy-Status entries it writes itself (RFC 9209 §2: one entry per intermediary). */
export const RELAY_PROXY_STATUS_NAME = 'udp-tunnel-inspect';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** TLS settings for the relay's connections to the upstream proxy. */
export interface RelayUpstreamTls {
  /** CA certificates to trust (PEM). */
  ca?: string | Buffer;
  /** Skip certificate verification (testing only). */
  insecure?: boolean;
  /** Server name for SNI and verification, if not the upstream host. */
  servername?: string;
}

/** Options of an InspectRelay. */
export interface InspectRelayOptions extends Omit<LiveDecoderOptions, 'onEvent'> {
  /** Address to listen on. */
  host: string;
  /** Port to listen on (0 = any; read the bound port from listen()). */
  port: number;
  /** TLS with ALPN h2 toward clients; cleartext h2c (prior knowledge) when absent. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The proxy every request is forwarded to: `http://HOST:PORT` (h2c) or `https://HOST:PORT` (TLS). */
  upstream: string;
  upstreamTls?: RelayUpstreamTls;
  /** How long to wait for the upstream connection and its SETTINGS (default 10 s). */
  connectTimeoutMs?: number;
  /** Client connections at once (default 1024); more are closed and counted. */
  maxConnections?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients (default 100). */
  maxStreamsPerConnection?: number;
  /** Receives every inspect event. */
  onEvent: (ev: InspectEvent) => void;
}

/** Counters of a relay. */
export interface RelayCounters {
  /** Client connections accepted. */
  connections: number;
  /** Client connections closed at once because maxConnections were open. */
  droppedConnections: number;
  /** Requests (streams) received from clients. */
  streams: number;
  /** Requests the relay answered itself because the upstream could not take them. */
  localAnswers: number;
  /** Bytes forwarded client -> proxy and proxy -> client (request and response content). */
  bytesToProxy: number;
  bytesToClient: number;
}

/** Why the relay answered a request itself. */
interface LocalFailure {
  status: number;
  error: ProxyErrorType;
  details: string;
}

interface Conn {
  n: number;
  client: http2.ServerHttp2Session;
  upstream: http2.ClientHttp2Session;
  ready: Promise<void>;
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

/** Maps a failure to reach the upstream proxy to a status and an RFC 9209 error type. */
export function upstreamFailure(err: unknown, upstream: URL): LocalFailure {
  if (err instanceof UdpTunnelError && err.code === ErrorCodes.TIMEOUT) {
    return { status: 504, error: 'connection_timeout', details: err.message };
  }
  const e = err as NodeJS.ErrnoException | undefined;
  const code = e?.code ?? '';
  const message = `upstream ${upstream.host}: ${e?.message ?? String(err)}${code ? ` (${code})` : ''}`;
  if (code === 'ECONNREFUSED') return { status: 502, error: 'connection_refused', details: message };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { status: 502, error: 'dns_error', details: message };
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET/.test(code)) return { status: 502, error: 'tls_certificate_error', details: message };
  if (/SSL|TLS/.test(code)) return { status: 502, error: 'tls_protocol_error', details: message };
  return { status: 502, error: 'connection_terminated', details: message };
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

/** Parses and checks the --upstream URL. */
export function parseUpstreamUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--upstream '${text}' is not a URL (example: http://127.0.0.1:4433)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--upstream must use http:// (h2c) or https:// (TLS), not ${url.protocol}`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.username) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--upstream '${text}': give only scheme, host and port; request paths are forwarded as the client sent them`);
  }
  return url;
}

/**
 * `udp-tunnel inspect --listen --upstream`: an HTTP/2 relay that accepts any request (extended CONNECT advertised,
 * RFC 8441 §3), opens the same request on its own connection to the upstream proxy (one upstream connection per client
 * connection, opened eagerly; requests wait for the upstream SETTINGS before :protocol is sent), pipes both bodies
 * byte-for-byte with backpressure, and passes status, headers and Proxy-Status back unchanged. Copies of the bytes go
 * to a LiveSessionDecoder after they were handed on, so decoding never alters, delays or stalls the relayed bytes.
 * Not forwarded: trailers, PRIORITY and server push. Events: 'error' (listener), 'warning' ({code, message}).
 */
export class InspectRelay extends EventEmitter {
  /** Relay counters. */
  readonly counters: RelayCounters = {
    connections: 0,
    droppedConnections: 0,
    streams: 0,
    localAnswers: 0,
    bytesToProxy: 0,
    bytesToClient: 0,
  };
  /** The upstream proxy URL. */
  readonly upstream: URL;
  private readonly opts: InspectRelayOptions;
  private readonly decoder: LiveSessionDecoder;
  private readonly server: http2.Http2Server | http2.Http2SecureServer;
  private readonly conns = new Set<Conn>();
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
      maxConcurrentStreams: options.maxStreamsPerConnection ?? 100,
      initialWindowSize: 1 << 20,
    };
    this.server = options.tls
      ? http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, settings, ALPNProtocols: ['h2'] })
      : http2.createServer({ settings });
    const net = this.server as unknown as Server;
    net.maxConnections = options.maxConnections ?? 1024;
    net.on('drop', () => this.counters.droppedConnections++);
    this.server.on('session', (s: http2.ServerHttp2Session) => this.onClientSession(s));
    this.server.on('stream', (stream: http2.ServerHttp2Stream, _h: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) =>
      this.onStream(stream, flags, rawHeaders),
    );
    this.server.on('sessionError', () => {});
  }

  /** Decoder counters (sessions dropped at the limit, failures). */
  get decoderStats(): LiveDecoderStats {
    return this.decoder.stats;
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<AddressInfo> {
    const net = this.server as unknown as Server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      net.once('error', onError);
      net.listen({ host: this.opts.host, port: this.opts.port }, () => {
        net.off('error', onError);
        net.on('error', (err) => this.emit('error', err));
        resolve(net.address() as AddressInfo);
      });
    });
  }

  /** The bound address. */
  address(): AddressInfo {
    return (this.server as unknown as Server).address() as AddressInfo;
  }

  /** Stops listening, resets every relayed stream and closes both sides' connections; open sessions close as 'local'. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const net = this.server as unknown as Server;
    const done = new Promise<void>((resolve) => net.close(() => resolve()));
    for (const c of this.conns) {
      for (const p of c.pairs) {
        p.firstReset ??= { by: 'relay', code: NGHTTP2_CANCEL };
        if (!p.client.destroyed) p.client.close(NGHTTP2_CANCEL);
        if (p.up && !p.up.destroyed) p.up.close(NGHTTP2_CANCEL);
      }
      c.client.close();
      c.upstream.close();
    }
    const timer = setTimeout(() => {
      for (const c of this.conns) {
        c.client.destroy();
        c.upstream.destroy();
      }
    }, 1000);
    await done;
    clearTimeout(timer);
    this.decoder.closeAll(this.now(), 'local', 'relay shutdown');
  }

  private now(): number {
    return Math.round((performance.now() - this.started) * 1000) / 1000;
  }

  private onClientSession(client: http2.ServerHttp2Session): void {
    this.counters.connections++;
    const n = this.nextConn++;
    const up = this.upstream;
    const options: SecureClientSessionOptions = { settings: { enablePush: false, initialWindowSize: 1 << 20 } };
    if (up.protocol === 'https:') {
      const tls = this.opts.upstreamTls ?? {};
      if (tls.ca) options.ca = tls.ca;
      if (tls.servername) options.servername = tls.servername;
      options.rejectUnauthorized = !tls.insecure;
      options.ALPNProtocols = ['h2'];
    }
    const upstream = http2.connect(up.origin, options);
    const conn: Conn = { n, client, upstream, ready: Promise.resolve(), extendedConnect: false, pairs: new Set() };
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    conn.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new UdpTunnelError(ErrorCodes.TIMEOUT, `upstream ${up.host} sent no HTTP/2 SETTINGS within ${timeoutMs} ms`));
        upstream.destroy();
      }, timeoutMs);
      // RFC 8441 §3: :protocol may be sent only once the upstream's SETTINGS enabled extended CONNECT.
      upstream.once('remoteSettings', (s) => {
        clearTimeout(timer);
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
      // The client's next connection gets a fresh upstream attempt.
      if (!client.closed && !client.destroyed) client.close();
    });
    this.conns.add(conn);
    upstream.on('error', () => {});
    upstream.on('goaway', () => {
      if (!client.closed && !client.destroyed) client.close();
    });
    upstream.on('close', () => {
      if (!client.closed && !client.destroyed) client.close();
    });
    upstream.on('connect', () => {
      try {
        upstream.setLocalWindowSize(16 << 20);
      } catch {
        /* closing */
      }
    });
    client.on('error', () => {});
    client.on('connect', () => {
      try {
        client.setLocalWindowSize(16 << 20);
      } catch {
        /* closing */
      }
    });
    client.on('close', () => {
      this.conns.delete(conn);
      if (!upstream.closed && !upstream.destroyed) upstream.close();
    });
    this.connOf.set(client, conn);
  }

  private onStream(stream: http2.ServerHttp2Stream, flags: number, rawHeaders: string[]): void {
    const conn = stream.session ? this.connOf.get(stream.session) : undefined;
    stream.on('error', () => {});
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
      if (!client.destroyed && !client.writableEnded && !client.write(chunk)) up.pause();
      this.counters.bytesToClient += chunk.length;
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
      if (!up.destroyed && !up.writableEnded && !up.write(chunk)) client.pause();
      this.counters.bytesToProxy += chunk.length;
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

  private answerLocally(pair: Pair, f: LocalFailure): void {
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
