import { Buffer } from 'node:buffer';
import type net from 'node:net';
import type tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { PROXY_CONFIG_DEFAULTS, parseProxyUrl, type ProxyConfig } from './client-config.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { explainFailure, type CheckProblem } from './failure-hint.js';
import { connectProxySocket, connectionError, speaksTlsError, startsTlsRecord } from './transport/proxy-socket.js';

/** How the probe spoke to the proxy: HTTP/2 over TLS, HTTP/2 cleartext with prior knowledge, or HTTP/1.1. */
export type ProbeTransport = 'h2' | 'h2c' | 'http/1.1';

/** What probeProxy found out. */
export interface ProxyProbeResult {
  /** The proxy can carry tunnels in the configured mode (HTTP/2 CONNECT-UDP also needs extended CONNECT). */
  ok: boolean;
  /** The proxy origin (no credentials). */
  proxy: string;
  transport: ProbeTransport;
  /** Whether the connection is TLS (an https:// proxy). */
  tls: boolean;
  /** The negotiated TLS version as Node names it (`TLSv1.3`), once the handshake completed. */
  tlsVersion?: string;
  /** The ALPN protocol the proxy selected (RFC 7301), or false when it selected none. */
  alpn?: string | false;
  /** HTTP/2: the server's SETTINGS_ENABLE_CONNECT_PROTOCOL was 1 (RFC 8441 §3). */
  extendedConnect?: boolean;
  /** HTTP/2: the server's SETTINGS_MAX_CONCURRENT_STREAMS, if it sent one. */
  maxConcurrentStreams?: number;
  /** Time from the start of the probe to its verdict. */
  elapsedMs: number;
  /** Why the probe failed (or, with `ok` false after a completed exchange, what the proxy lacks). */
  error?: UdpTunnelError;
  problem?: CheckProblem;
  /** What to try; names library options (see `hintOptions`). */
  hint?: string;
  hintOptions?: string[];
}

/** Options of probeProxy. */
export interface ProbeOptions {
  /** Give up after this long (default: the config's connectTimeoutMs). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

// RFC 9113 §3.4: the client connection preface, then our (empty) SETTINGS frame.
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_BYTES = 9;
const FRAME_SETTINGS = 0x4;
const FRAME_GOAWAY = 0x7;
const FLAG_ACK = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
// RFC 8441 §3
const SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8;
// RFC 9113 §6.5.1: each setting is a 16-bit identifier and a 32-bit value.
const SETTING_BYTES = 6;
// RFC 9113 §4.2: until our SETTINGS say otherwise, no frame payload may exceed the initial SETTINGS_MAX_FRAME_SIZE.
const MAX_FRAME_PAYLOAD = 16_384;
// How long the proxy gets to close the connection after our GOAWAY before it is destroyed.
const CLOSE_GRACE_MS = 1000;
// TLS 1.3 over HTTP/1.1: how long to wait for the proxy's verdict on our Finished (a ticket or an alert).
const TLS13_VERDICT_WAIT_MS = 500;

function frame(type: number, flags: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  return Buffer.concat([h, payload]);
}

/** Our preface and SETTINGS (RFC 9113 §3.4), with SETTINGS_ENABLE_PUSH 0: the probe takes nothing. */
function clientPreface(): Buffer {
  const push = Buffer.alloc(SETTING_BYTES);
  push.writeUInt16BE(0x2, 0);
  return Buffer.concat([H2_PREFACE, frame(FRAME_SETTINGS, 0, push)]);
}

/** SETTINGS ACK for the server's SETTINGS (RFC 9113 §6.5.3), then GOAWAY NO_ERROR with no stream processed (§6.8). */
function politeGoodbye(): Buffer {
  return Buffer.concat([frame(FRAME_SETTINGS, FLAG_ACK), frame(FRAME_GOAWAY, 0, Buffer.alloc(8))]);
}

/** A failure the probe classified itself. */
class ProbeFailure extends Error {
  constructor(
    readonly error: UdpTunnelError,
    readonly problem: CheckProblem,
    readonly hint: string,
    readonly hintOptions: string[] = [],
  ) {
    super(error.message);
  }
}

/** What the proxy sent first, as far as the probe needs to know. */
type FirstAnswer = { kind: 'settings'; settings: Map<number, number> } | { kind: 'http1' };

const HTTP1 = Buffer.from('HTTP/', 'latin1');

/**
 * Reads the server's first bytes after our HTTP/2 preface: a SETTINGS frame (RFC 9113 §3.4), an HTTP/1.1 response
 * (a server without h2c rejects the preface, as §3.4 intends), or a TLS record (a TLS port). Returns undefined while
 * more bytes are needed; throws ProbeFailure for anything else. Never needs more than one frame's bytes.
 */
function classifyFirstBytes(buf: Buffer, proxy: URL): FirstAnswer | undefined {
  if (proxy.protocol === 'http:' && startsTlsRecord(buf)) {
    throw new ProbeFailure(speaksTlsError(proxy), 'scheme-mismatch', `the proxy speaks TLS: use https://${proxy.host}`);
  }
  if (buf.length < HTTP1.length && HTTP1.subarray(0, buf.length).equals(buf)) return undefined;
  if (buf.subarray(0, HTTP1.length).equals(HTTP1)) return { kind: 'http1' };
  if (buf.length < FRAME_HEADER_BYTES) return undefined;
  const length = buf.readUIntBE(0, 3);
  const type = buf[3]!;
  const flags = buf[4]!;
  const stream = buf.readUInt32BE(5) & 0x7fffffff;
  const bad = (why: string): ProbeFailure => {
    const error = new UdpTunnelError(ErrorCodes.HTTP2_PROTOCOL, `proxy ${proxy.host} did not start HTTP/2 with SETTINGS: ${why}`);
    return new ProbeFailure(error, 'protocol', `the server at ${proxy.host} does not answer like an HTTP/2 proxy: check the port`);
  };
  if (type !== FRAME_SETTINGS || (flags & FLAG_ACK) !== 0 || stream !== 0) throw bad(`first frame has type ${type}, flags ${flags}, stream ${stream} (RFC 9113 §3.4)`);
  // RFC 9113 §6.5: a length that is not a multiple of 6 is a FRAME_SIZE_ERROR; §4.2 bounds it.
  if (length % SETTING_BYTES !== 0 || length > MAX_FRAME_PAYLOAD) throw bad(`SETTINGS payload of ${length} bytes (RFC 9113 §6.5, §4.2)`);
  if (buf.length < FRAME_HEADER_BYTES + length) return undefined;
  const settings = new Map<number, number>();
  for (let off = FRAME_HEADER_BYTES; off < FRAME_HEADER_BYTES + length; off += SETTING_BYTES) {
    settings.set(buf.readUInt16BE(off), buf.readUInt32BE(off + 2));
  }
  return { kind: 'settings', settings };
}

/** Writes `bytes` and reads until `classify` returns an answer; the buffer never outgrows one SETTINGS frame. */
function exchange(socket: net.Socket, bytes: Buffer, proxy: URL, timeoutMs: number, signal: AbortSignal | undefined): Promise<FirstAnswer> {
  return new Promise<FirstAnswer>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (err: unknown, answer?: FirstAnswer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (err) reject(err);
      else resolve(answer!);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      try {
        const answer = classifyFirstBytes(buf, proxy);
        if (answer) finish(null, answer);
      } catch (err) {
        finish(err);
      }
    };
    const onError = (err: Error): void => finish(connectionError(err, proxy));
    const onClose = (): void => {
      const secure = proxy.protocol === 'https:';
      const error = new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, `proxy ${proxy.host} closed the connection without answering (${buf.length} bytes read)`);
      // A TLS server that gets cleartext it cannot parse may close without an alert.
      const hint = secure ? `the proxy closed the connection: its log says why` : `the proxy closed the connection: if it speaks TLS, use https://${proxy.host}`;
      finish(new ProbeFailure(error, 'unreachable', hint));
    };
    const onAbort = (): void => finish(new UdpTunnelError(ErrorCodes.CLOSED, 'proxy check cancelled'));
    const timer = setTimeout(
      () => finish(new UdpTunnelError(ErrorCodes.TIMEOUT, `proxy ${proxy.host} did not answer within ${timeoutMs} ms`, { timeoutMs })),
      timeoutMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.write(bytes);
  });
}

/**
 * TLS 1.3 (RFC 8446 §4.4.2): the server checks our Finished (and client certificate) after our handshake is done and
 * answers with a session ticket or an alert. Waits for either, a close, or `ms`, so a refused client certificate is
 * seen. Node's TLS servers send tickets; for others the wait simply runs out.
 */
function awaitTls13Verdict(socket: tls.TLSSocket, proxy: URL, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err: unknown): void => {
      clearTimeout(timer);
      socket.removeListener('session', onSession);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      socket.removeListener('data', onData);
      if (err) reject(err);
      else resolve();
    };
    const onSession = (): void => done(null);
    const onError = (err: Error): void => done(connectionError(err, proxy));
    const onClose = (): void => done(new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, `proxy ${proxy.host} closed the connection after the TLS handshake`));
    // An HTTP/1.1 server says nothing first; reading keeps TLS records (tickets, alerts) flowing.
    const onData = (): void => {};
    const timer = setTimeout(() => done(null), ms);
    socket.once('session', onSession);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.on('data', onData);
  });
}

/** Ends the connection and resolves once it is closed (destroyed after a grace period). */
function closeSocket(socket: net.Socket, farewell?: Buffer): Promise<void> {
  return new Promise<void>((resolve) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on('error', () => {});
    // Discard whatever else arrives so the close is not held up by unread data.
    socket.on('data', () => {});
    if (farewell) socket.end(farewell);
    else socket.end();
  });
}

/**
 * Checks that a proxy is there and speaks what `config` expects, the way the transport connects (TLS options, pins,
 * ALPN, server name): HTTP/2 reads the server's SETTINGS and whether extended CONNECT is enabled (RFC 8441 §3,
 * RFC 9220); HTTP/1.1 over TLS stops after the handshake and ALPN, over cleartext it sends the HTTP/2 preface, which
 * an HTTP/1.1 server refuses with a response (RFC 9113 §3.4) and a TLS port with a TLS record. Opens no stream, sends
 * no request, and leaves no socket open. Resolves with a verdict; rejects only for an invalid `config`.
 */
export async function probeProxy(config: ProxyConfig, opts: ProbeOptions = {}): Promise<ProxyProbeResult> {
  const { url } = parseProxyUrl(config.proxy, config.template);
  url.username = '';
  url.password = '';
  const mode = config.mode ?? PROXY_CONFIG_DEFAULTS.mode;
  const h2 = mode === 'post' || (config.http ?? PROXY_CONFIG_DEFAULTS.http) === '2';
  const secure = url.protocol === 'https:';
  const timeoutMs = opts.timeoutMs ?? config.connectTimeoutMs ?? PROXY_CONFIG_DEFAULTS.connectTimeoutMs;
  const started = performance.now();
  const result: ProxyProbeResult = { ok: false, proxy: url.origin, transport: h2 ? (secure ? 'h2' : 'h2c') : 'http/1.1', tls: secure, elapsedMs: 0 };
  const remaining = (): number => Math.max(1, timeoutMs - (performance.now() - started));
  let socket: net.Socket | undefined;
  let farewell: Buffer | undefined;
  try {
    socket = await connectProxySocket({
      proxy: url,
      tls: config.tls ?? {},
      alpn: [h2 ? 'h2' : 'http/1.1'],
      timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (secure) {
      const s = socket as tls.TLSSocket;
      result.tlsVersion = s.getProtocol() ?? undefined;
      result.alpn = s.alpnProtocol ?? false;
    }
    if (h2 || !secure) {
      const answer = await exchange(socket, clientPreface(), url, remaining(), opts.signal);
      if (answer.kind === 'settings') farewell = politeGoodbye();
      if (h2) {
        if (answer.kind === 'http1') {
          const error = new UdpTunnelError(ErrorCodes.CONNECT_PROTOCOL_DISABLED, `proxy ${url.host} answered the HTTP/2 preface with HTTP/1.1; try http 1.1`, { related: ['http'] });
          throw new ProbeFailure(error, 'no-h2', 'the proxy speaks HTTP/1.1 but not HTTP/2 here: try http 1.1', ['http']);
        }
        // RFC 8441 §3: extended CONNECT may be used only after the server sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
        result.extendedConnect = answer.settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL) === 1;
        const max = answer.settings.get(SETTINGS_MAX_CONCURRENT_STREAMS);
        if (max !== undefined) result.maxConcurrentStreams = max;
        if (mode === 'connect-udp' && !result.extendedConnect) {
          const error = new UdpTunnelError(
            ErrorCodes.CONNECT_PROTOCOL_DISABLED,
            `proxy ${url.host} did not enable extended CONNECT (RFC 8441 SETTINGS_ENABLE_CONNECT_PROTOCOL); try http 1.1 or mode post`,
            { related: ['http', 'mode'] },
          );
          throw new ProbeFailure(error, 'no-extended-connect', 'the proxy does not enable extended CONNECT (RFC 8441): try http 1.1 or mode post', ['http', 'mode']);
        }
      }
    } else if (result.tlsVersion === 'TLSv1.3') {
      await awaitTls13Verdict(socket as tls.TLSSocket, url, Math.min(TLS13_VERDICT_WAIT_MS, remaining()));
    }
    result.ok = true;
    result.elapsedMs = Math.round(performance.now() - started);
  } catch (err) {
    result.elapsedMs = Math.round(performance.now() - started);
    if (err instanceof ProbeFailure) {
      Object.assign(result, { error: err.error, problem: err.problem, hint: err.hint, hintOptions: err.hintOptions });
    } else {
      const error = err instanceof UdpTunnelError ? err : connectionError(err, url);
      const why = explainFailure(error, url, false);
      Object.assign(result, { error, problem: why.problem, hint: why.hint, hintOptions: why.hintOptions });
    }
  } finally {
    if (socket) await closeSocket(socket, farewell);
  }
  return result;
}
