import { Buffer } from 'node:buffer';
import type net from 'node:net';
import { ErrorCodes } from '../tunnel/errors.js';
import { Http1HeadParser, formatResponseHead } from '../tunnel/http/http1-head.js';
import { formatProxyStatus } from '../tunnel/proxy-status.js';
import { connectProxySocket } from '../tunnel/transport/proxy-socket.js';
import type { CloseReason, Direction, HeaderList } from './events.js';
import { errorFacts } from './error-facts.js';
import { fieldValues, requestHeadFromHttp1 } from './http-fields.js';
import type { LiveSessionDecoder } from './live-decoder.js';
import { RELAY_PROXY_STATUS_NAME, upstreamFailure, type RelayCounters, type RelayFailure, type RelayUpstreamTls } from './relay-shared.js';

/** How long a side told to close (FIN sent) may linger before it is cut off. */
const CLOSE_GRACE_MS = 2000;

/** What an HTTP/1.1 relay connection uses of the relay that owns it. */
export interface Http1RelayContext {
  readonly decoder: LiveSessionDecoder;
  readonly counters: RelayCounters;
  readonly upstream: URL;
  readonly upstreamTls: RelayUpstreamTls;
  /** Receives the key log lines of the upstream TLS connections. */
  readonly onKeylog?: (line: Buffer) => void;
  readonly connectTimeoutMs: number;
  readonly maxHeadBytes: number;
  /** Milliseconds since the relay started (event time). */
  now(): number;
  /** A warning for the relay's 'warning' event. */
  warn(code: string, message: string): void;
  /** The client's request head is complete (stops the relay's first-request timer). */
  requestStarted(): void;
}

type Phase = 'request-head' | 'connecting' | 'response-head' | 'tunnel' | 'body' | 'done';
type Side = 'client' | 'proxy';

/**
 * One HTTP/1.1 client connection of the relay (RFC 9298 §3.2): reads the request head with the lenient capture
 * parser, opens its own TCP or TLS connection to the upstream, sends the head exactly as received, forwards the
 * response head(s) exactly as received and then, after a 101 (RFC 9110 §7.8), both capsule streams byte-for-byte with
 * backpressure while copies go to the live decoder. A final response other than 101 is forwarded with its body and
 * both connections close (one request per connection). Session id `c<N>`, as the capture decoder names it.
 */
export class Http1RelayConnection {
  /** Session id of the exchange. */
  readonly id: string;
  private readonly ctx: Http1RelayContext;
  private readonly client: net.Socket;
  private up: net.Socket | null = null;
  private phase: Phase = 'request-head';
  private readonly requestParser: Http1HeadParser;
  private readonly responseParser: Http1HeadParser;
  /** Bytes of the upstream's TCP stream consumed by complete response heads (offsets of response-head errors). */
  private responseOffset = 0;
  /** Client bytes that came with or after the request head while the upstream connection was being opened. */
  private held: Buffer[] = [];
  /** The request head, exactly as received, while the upstream connection is being opened. */
  private pendingHead: Buffer | null = null;
  private readonly connecting = new AbortController();
  /** True while the upstream connection is being opened. */
  private upstreamPending = false;
  private method = '';
  private announced = false;
  private finalStatus: number | null = null;
  private bodyRemaining = 0;
  private localAnswer: string | null = null;
  private headFailure: string | null = null;
  private reset: { by: Side; code: string } | null = null;
  private shutdownByRelay = false;
  private readonly ended: Record<Side, boolean> = { client: false, proxy: false };
  private readonly closed: Record<Side, boolean> = { client: false, proxy: false };
  private readonly timers = new Set<NodeJS.Timeout>();
  private finished = false;
  private readonly onFinished: () => void;

  /** Takes over `client` (paused, with no data listener) whose first bytes `initial` were already read. */
  constructor(ctx: Http1RelayContext, id: string, client: net.Socket, initial: Buffer, onFinished: () => void) {
    this.ctx = ctx;
    this.id = id;
    this.client = client;
    this.onFinished = onFinished;
    const limits = { maxHeadBytes: ctx.maxHeadBytes };
    this.requestParser = new Http1HeadParser('request', limits);
    this.responseParser = new Http1HeadParser('response', limits);
    // A FIN from one side is passed on as a FIN; the other direction keeps flowing until it ends too.
    client.allowHalfOpen = true;
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    client.on('end', () => this.onEnd('client'));
    client.on('error', (err: NodeJS.ErrnoException) => this.onError('client', err));
    client.on('close', () => this.onClose('client'));
    client.on('drain', () => this.up?.resume());
    // resume() takes effect on a later tick, so a pause() while handling `initial` still holds.
    client.resume();
    if (initial.length > 0) this.fromClient(initial);
  }

  /** Bytes held in user space: heads being read or waiting for the upstream, client bytes waiting too, both write queues. */
  get bufferedBytes(): number {
    let n = this.requestParser.bufferedBytes + this.responseParser.bufferedBytes + this.client.writableLength + (this.up?.writableLength ?? 0);
    n += this.pendingHead?.length ?? 0;
    for (const chunk of this.held) n += chunk.length;
    return n;
  }

  /** Relay shutdown: cuts both connections; the session closes as 'local'. */
  shutdown(): void {
    this.shutdownByRelay = true;
    this.phase = 'done';
    this.connecting.abort();
    this.client.destroy();
    this.up?.destroy();
    this.maybeFinish();
  }

  private t(): number {
    return this.ctx.now();
  }

  // ---- client -> proxy ---------------------------------------------------------------------------------------

  private fromClient(chunk: Buffer): void {
    switch (this.phase) {
      case 'request-head':
        return this.requestHeadBytes(chunk);
      case 'connecting':
        // Paused; only a read already under way can land here, and it waits for the upstream connection.
        this.held.push(chunk);
        return;
      case 'done':
        this.ctx.counters.discardedBytes += chunk.length;
        return;
      default:
        this.toProxy(chunk);
    }
  }

  private requestHeadBytes(chunk: Buffer): void {
    let r;
    try {
      r = this.requestParser.push(chunk);
    } catch (err) {
      return this.requestHeadFailed(err);
    }
    if (r === null || r.head.kind !== 'request') return;
    this.ctx.requestStarted();
    this.phase = 'connecting';
    this.client.pause();
    // The head goes upstream exactly as received (leading empty lines included), so the proxy judges what the client sent.
    this.pendingHead = r.raw;
    // RFC 9298 §3.2: bytes after the request head already belong to the capsule stream (optimistic datagrams).
    if (r.rest.length > 0) this.held.push(r.rest);
    this.method = r.head.method;
    this.ctx.counters.streams++;
    this.announced = true;
    this.ctx.decoder.request(this.id, this.t(), requestHeadFromHttp1(r.head.method, r.head.target, r.head.headers));
    const tlsOptions = this.ctx.upstreamTls;
    this.upstreamPending = true;
    connectProxySocket({
      proxy: this.ctx.upstream,
      tls: {
        ...(tlsOptions.ca !== undefined ? { ca: tlsOptions.ca } : {}),
        ...(tlsOptions.servername !== undefined ? { servername: tlsOptions.servername } : {}),
        insecure: tlsOptions.insecure ?? false,
        ...(this.ctx.onKeylog ? { onKeylog: this.ctx.onKeylog } : {}),
      },
      // RFC 7301: the same HTTP version the client chose goes upstream.
      alpn: ['http/1.1'],
      timeoutMs: this.ctx.connectTimeoutMs,
      signal: this.connecting.signal,
    }).then(
      (up) => {
        this.upstreamPending = false;
        this.upstreamReady(up);
      },
      (err: unknown) => {
        this.upstreamPending = false;
        this.pendingHead = null;
        if (this.phase === 'connecting') this.answerLocally(upstreamFailure(err, this.ctx.upstream));
        else this.maybeFinish();
      },
    );
  }

  private upstreamReady(up: net.Socket): void {
    const head = this.pendingHead;
    this.pendingHead = null;
    if (this.phase !== 'connecting' || head === null) {
      up.destroy();
      this.maybeFinish();
      return;
    }
    this.up = up;
    this.phase = 'response-head';
    up.allowHalfOpen = true;
    up.setNoDelay(true);
    up.on('data', (chunk: Buffer) => this.fromProxy(chunk));
    up.on('end', () => this.onEnd('proxy'));
    up.on('error', (err: NodeJS.ErrnoException) => this.onError('proxy', err));
    up.on('close', () => this.onClose('proxy'));
    up.on('drain', () => {
      if (!this.ended.client) this.client.resume();
    });
    up.write(head);
    const held = this.held;
    this.held = [];
    for (const chunk of held) this.toProxy(chunk);
    if (this.ended.client) up.end();
    else if (!up.writableNeedDrain) this.client.resume();
  }

  private toProxy(chunk: Buffer): void {
    const up = this.up;
    if (up === null || up.destroyed || up.writableEnded) {
      this.ctx.counters.discardedBytes += chunk.length;
      return;
    }
    if (!up.write(chunk)) this.client.pause();
    this.ctx.counters.bytesToProxy += chunk.length;
    this.ctx.decoder.bytes(this.id, '->', chunk, this.t());
  }

  // ---- proxy -> client ---------------------------------------------------------------------------------------

  private fromProxy(chunk: Buffer): void {
    switch (this.phase) {
      case 'response-head':
        return this.responseHeadBytes(chunk);
      case 'tunnel':
        return this.toClient(chunk, true);
      case 'body':
        return this.bodyBytes(chunk);
      default:
        this.ctx.counters.discardedBytes += chunk.length;
    }
  }

  private responseHeadBytes(chunk: Buffer): void {
    let c = chunk;
    for (;;) {
      let r;
      try {
        r = this.responseParser.push(c);
      } catch (err) {
        return this.responseHeadFailed(err);
      }
      if (r === null || r.head.kind !== 'response') return;
      this.responseOffset += r.headLength;
      this.writeClient(r.raw);
      const { status, headers } = r.head;
      this.ctx.decoder.response(this.id, this.t(), '1.1', status, headers);
      // RFC 9110 §15.2: other 1xx responses are interim; the final response follows on the same connection.
      if (status >= 100 && status < 200 && status !== 101) {
        if (r.rest.length === 0) return;
        c = r.rest;
        continue;
      }
      this.finalStatus = status;
      if (status === 101) {
        // RFC 9298 §3.2: after the 101 the connection carries the capsule streams; bytes behind the head belong to it.
        this.phase = 'tunnel';
        if (r.rest.length > 0) this.toClient(r.rest, true);
        return;
      }
      this.phase = 'body';
      this.bodyRemaining = this.bodyLength(status, headers);
      if (r.rest.length > 0) this.bodyBytes(r.rest);
      else if (this.bodyRemaining === 0) this.endExchange();
      return;
    }
  }

  /**
   * RFC 9112 §6.3: no body after a HEAD request, 1xx, 204 or 304; else Content-Length bytes; otherwise (chunked or
   * close-delimited) everything until the upstream or the client closes.
   */
  private bodyLength(status: number, headers: HeaderList): number {
    if (this.method === 'HEAD' || status === 204 || status === 304 || status < 200) return 0;
    if (fieldValues(headers, 'transfer-encoding').length > 0) return Infinity;
    const lengths = new Set(fieldValues(headers, 'content-length').flatMap((v) => v.split(',').map((x) => x.trim())));
    if (lengths.size !== 1) return Infinity;
    const [only] = [...lengths];
    return /^[0-9]{1,15}$/.test(only!) ? Number(only) : Infinity;
  }

  private bodyBytes(chunk: Buffer): void {
    const n = Math.min(chunk.length, this.bodyRemaining);
    if (n > 0) this.toClient(n === chunk.length ? chunk : chunk.subarray(0, n), false);
    this.bodyRemaining -= n;
    if (n < chunk.length) this.ctx.counters.discardedBytes += chunk.length - n;
    if (this.bodyRemaining === 0) this.endExchange();
  }

  private toClient(chunk: Buffer, decode: boolean): void {
    // A chunk the client can no longer take was counted as discarded; the decoder still sees what the proxy sent.
    if (this.writeClient(chunk)) this.ctx.counters.bytesToClient += chunk.length;
    if (decode) this.ctx.decoder.bytes(this.id, '<-', chunk, this.t());
  }

  /** Writes to the client; false (and the chunk counted as discarded) when the client side is gone. */
  private writeClient(chunk: Buffer): boolean {
    const client = this.client;
    if (client.destroyed || client.writableEnded) {
      this.ctx.counters.discardedBytes += chunk.length;
      return false;
    }
    if (!client.write(chunk)) this.up?.pause();
    return true;
  }

  // ---- failures ----------------------------------------------------------------------------------------------

  private requestHeadFailed(err: unknown): void {
    const f = this.headError(err, '->', 0);
    const status = f.tooLarge ? 431 : 400;
    this.headFailure = `HTTP/1.1 request head could not be parsed; relay answered ${status}`;
    this.writeAnswer({ status, error: 'http_request_error', details: f.message });
  }

  private responseHeadFailed(err: unknown): void {
    const f = this.headError(err, '<-', this.responseOffset);
    this.headFailure = 'HTTP/1.1 response head could not be parsed; relay answered 502';
    this.writeAnswer({ status: 502, error: f.tooLarge ? 'http_response_header_section_size' : 'http_protocol_error', details: `upstream ${this.ctx.upstream.host}: ${f.message}` });
  }

  /** Reports a head that could not be parsed; `base` is where the head starts in that direction's TCP stream. */
  private headError(err: unknown, dir: Direction, base: number): { tooLarge: boolean; message: string } {
    const { code, offset: rel, rfc, message } = errorFacts(err, ErrorCodes.HTTP1_MALFORMED);
    const tooLarge = code === ErrorCodes.HEADERS_TOO_LARGE;
    this.ctx.counters.headErrors++;
    if (tooLarge) this.ctx.counters.headLimit++;
    this.ctx.decoder.httpError(this.id, this.t(), dir, base + rel, code, message, rfc);
    this.announced = true;
    return { tooLarge, message };
  }

  /** The relay answers itself because the upstream could not be reached. */
  private answerLocally(f: RelayFailure): void {
    this.ctx.counters.localAnswers++;
    this.localAnswer = `${f.error}: ${f.details}`;
    this.writeAnswer(f);
    this.ctx.warn(ErrorCodes.PROXY_UNREACHABLE, `${this.id}: answered ${f.status} ${f.error}: ${f.details}`);
  }

  private writeAnswer(f: RelayFailure): void {
    this.finalStatus = f.status;
    // RFC 9209 §2: the relay names itself in the Proxy-Status entry for a failure of its own.
    const fields: Record<string, string> = {
      'proxy-status': formatProxyStatus(f.error, { details: f.details, name: RELAY_PROXY_STATUS_NAME }),
      'content-length': '0',
      connection: 'close',
    };
    if (!this.client.destroyed && !this.client.writableEnded) this.client.write(formatResponseHead(f.status, fields), 'latin1');
    this.ctx.decoder.response(this.id, this.t(), '1.1', f.status, Object.entries(fields));
    this.endExchange();
  }

  /** The exchange is over without a tunnel: the client gets a FIN after what was written, the upstream is cut. */
  private endExchange(): void {
    this.phase = 'done';
    this.connecting.abort();
    if (this.up !== null && !this.up.destroyed) this.up.destroy();
    if (!this.client.destroyed) {
      this.client.end();
      // Read on (and discard, counted) so the client can take the answer in; a client that never closes is cut off.
      this.client.resume();
      this.armGrace(this.client);
    }
  }

  // ---- connection ends ---------------------------------------------------------------------------------------

  private onEnd(side: Side): void {
    this.ended[side] = true;
    const t = this.t();
    if (side === 'client') {
      if (this.phase === 'request-head') {
        const got = this.requestParser.bufferedBytes;
        if (got > 0) {
          // RFC 9112 §8: a connection closed before the head was complete leaves an incomplete message.
          this.ctx.decoder.httpError(this.id, t, '->', got, ErrorCodes.HTTP1_MALFORMED, `client closed the connection inside the request head after ${got} bytes`, 'RFC 9112 §8');
          this.ctx.counters.headErrors++;
          this.announced = true;
          this.headFailure = 'client closed the connection inside the request head';
        }
        this.phase = 'done';
        this.client.end();
        return;
      }
      if (this.phase === 'done') return;
      // RFC 9297 §3.3: over HTTP/1.1 the capsule stream ends with the connection; a FIN inside a capsule is truncation.
      this.ctx.decoder.end(this.id, '->', t);
      const up = this.up;
      if (up !== null && !up.destroyed && !up.writableEnded) up.end();
      return;
    }
    switch (this.phase) {
      case 'response-head': {
        const got = this.responseParser.bufferedBytes;
        if (got > 0) {
          this.ctx.decoder.httpError(this.id, t, '<-', this.responseOffset + got, ErrorCodes.HTTP1_MALFORMED, `upstream closed the connection inside the response head after ${got} bytes`, 'RFC 9112 §8');
          this.ctx.counters.headErrors++;
          this.headFailure = 'upstream closed the connection inside the response head; relay answered 502';
          this.writeAnswer({ status: 502, error: 'http_response_incomplete', details: `upstream ${this.ctx.upstream.host} closed the connection inside the response head` });
        } else {
          this.answerLocally({ status: 502, error: 'connection_terminated', details: `upstream ${this.ctx.upstream.host} closed the connection before answering` });
        }
        return;
      }
      case 'tunnel':
        this.ctx.decoder.end(this.id, '<-', t);
        if (!this.client.destroyed && !this.client.writableEnded) this.client.end();
        return;
      case 'body':
        // A close-delimited body ends here (RFC 9112 §6.3); a shorter one than announced is passed on as it is.
        this.endExchange();
        return;
      default:
        return;
    }
  }

  private onError(side: Side, err: NodeJS.ErrnoException): void {
    // After its FIN a side may close before taking our last bytes (EPIPE, ECONNRESET): its stream still ended cleanly.
    if (this.shutdownByRelay || this.phase === 'done' || this.ended[side]) return;
    if (side === 'proxy' && this.phase === 'response-head') {
      // No response yet: the client gets an answer rather than a reset.
      this.answerLocally(upstreamFailure(err, this.ctx.upstream));
      return;
    }
    this.reset ??= { by: side, code: err.code ?? err.message };
    // A reset on one side is passed on as a reset on the other, as the HTTP/2 path passes RST_STREAM on.
    const other = side === 'client' ? this.up : this.client;
    if (other !== null && !other.destroyed) {
      try {
        other.resetAndDestroy();
      } catch {
        other.destroy();
      }
    }
  }

  private onClose(side: Side): void {
    this.closed[side] = true;
    if (side === 'client') {
      this.connecting.abort();
      const up = this.up;
      // What the client sent is flushed, then FIN; an upstream that does not close in time is cut off.
      if (up !== null && !up.destroyed) {
        if (!up.writableEnded) up.end();
        // Paused for a client that will never drain: read on so what still arrives is counted as discarded.
        up.resume();
        this.armGrace(up);
      }
      if (this.phase === 'connecting') this.phase = 'done';
    } else if (!this.client.destroyed) {
      if (!this.client.writableEnded) this.client.end();
      this.armGrace(this.client);
    }
    this.maybeFinish();
  }

  private armGrace(socket: net.Socket): void {
    const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    this.timers.add(timer);
    socket.once('close', () => {
      clearTimeout(timer);
      this.timers.delete(timer);
    });
  }

  private maybeFinish(): void {
    const proxyGone = this.closed.proxy || (this.up === null && !this.upstreamPending);
    if (this.finished || !this.closed.client || !proxyGone) return;
    this.finished = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.onFinished();
    if (!this.announced) return;
    const { reason, detail } = this.closeReason();
    this.ctx.decoder.close(this.id, this.t(), reason, detail);
  }

  private closeReason(): { reason: CloseReason; detail: string | null } {
    const status = this.finalStatus;
    if (this.shutdownByRelay) return { reason: 'local', detail: 'relay shutdown' };
    if (this.headFailure !== null) return { reason: 'error', detail: this.headFailure };
    if (this.localAnswer !== null) return { reason: 'refused', detail: `relay answered ${status}: ${this.localAnswer}` };
    const tunnel = this.ctx.decoder.isTunnel(this.id);
    if (status !== null && status !== 101) return tunnel ? { reason: 'refused', detail: `status ${status}` } : { reason: 'not-a-tunnel', detail: null };
    if (this.reset !== null) return { reason: 'tcp-rst', detail: `${this.reset.code} from ${this.reset.by}` };
    if (status === null) return { reason: 'tcp-fin', detail: 'client closed the connection before the response' };
    return { reason: tunnel ? 'tcp-fin' : 'not-a-tunnel', detail: null };
  }
}
