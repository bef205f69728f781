import { Buffer } from 'node:buffer';
import { BindSession, requestsBind } from './bind-view.js';
import { ErrorCodes } from '../tunnel/errors.js';
import { errorFacts } from './error-facts.js';
import { CapsuleView } from './capsule-view.js';
import type { CloseReason, Direction, ErrorLayer, HeaderList, InspectEvent } from './events.js';
import { DEFAULT_MAX_HEADER_LIST_SIZE, HpackDecoder } from './hpack.js';
import {
  isCapsuleRequest,
  isInterimStatus,
  opensTunnel,
  requestEvent,
  requestHeadFromHttp1,
  requestHeadFromHttp2,
  responseEvent,
  http2Status,
} from './http-fields.js';
import { DEFAULT_MAX_HEAD_BYTES, HTTP1_REQUEST_LINE, Http1HeadParser } from '../tunnel/http/http1-head.js';
import { H2_PREFACE } from '../tunnel/http/version-detect.js';
import { Http2FrameParser, SETTINGS_ID, http2ErrorName } from './http2-frames.js';
import type { Http2FrameItem } from './http2-frames.js';
import { decodeFrame } from './ip-tcp.js';
import type { SkipReason } from './ip-tcp.js';
import { readCapture } from './pcap.js';
import type { CaptureFormat } from './pcap.js';
import { TcpReassembler, emptyTcpReassemblyStats, type TcpConnection, type TcpEndReason, type TcpReassemblyStats, type TcpSide } from './tcp-reassembly.js';

/** Options of decodeCapture. */
export interface CaptureDecodeOptions {
  /** Check CONNECT-UDP Bind context-ID rules and report violations as error events (inspect --strict). */
  bindRules?: boolean;
  /** Payload/value bytes shown as hex per capsule (default 16). */
  previewBytes?: number;
  /** Show whole payloads/values. */
  full?: boolean;
  /** Largest declared capsule length accepted (--max-capsule). */
  maxCapsuleLength?: number;
  /** Out-of-order TCP bytes held per direction (default 1 MiB). */
  maxTcpBufferedBytes?: number;
  /** Out-of-order TCP segments held per direction (default 4096). */
  maxTcpBufferedSegments?: number;
  /** TCP connections tracked at once (default 4096). */
  maxConnections?: number;
  /** HTTP/2 streams tracked per connection (default 1000); later streams are dropped and counted. */
  maxStreamsPerConnection?: number;
  /** Limit on an HTTP/1.1 head, an HTTP/2 header block and a decoded header list (default 64 KiB). */
  maxHeaderBytes?: number;
  /** Bytes held per connection while its protocol is not yet known (default 64 KiB). */
  maxDetectBytes?: number;
  /**
   * Which request bodies are decoded as capsule streams: 'auto' (protocol connect-udp, or Capsule-Protocol: ?1 on
   * the request) or 'all' (every HTTP/2 request, e.g. POST mode without the header, and every HTTP/1.1 Upgrade).
   * HTTP/1.1 bodies are decoded only after an Upgrade.
   */
  capsuleStreams?: 'auto' | 'all';
}

/** Something worth telling the user that is not an event of a session. */
export interface CaptureWarning {
  code: string;
  message: string;
  /** Connection session id (`c3`) when the warning is about one connection. */
  session: string | null;
  /** Byte offset in the file, when the warning is about the file. */
  offset: number | null;
}

/** Counters of a capture decode. */
export interface CaptureStats extends TcpReassemblyStats {
  packets: number;
  tcpPackets: number;
  /** Frames that carried no usable TCP segment, by reason. */
  skippedFrames: Record<SkipReason, number>;
  http2Connections: number;
  http1Connections: number;
  /** Connections that were neither (TLS, other protocols, or started mid-stream). */
  otherConnections: number;
  streams: number;
  droppedStreams: number;
}

/** Result of decodeCapture. */
export interface CaptureDecodeResult {
  format: CaptureFormat;
  events: InspectEvent[];
  /** True when the file ended inside a record (the events cover every complete record). */
  truncated: boolean;
  warnings: CaptureWarning[];
  stats: CaptureStats;
}

const DIRS: readonly [Direction, Direction] = ['->', '<-'];
const ROLE_NAMES = ['client', 'server'] as const;
const DEFAULT_MAX_STREAMS = 1000;
const DEFAULT_DETECT_BYTES = 64 * 1024;
const TLS_RECORD_HANDSHAKE = 0x16;
const DETECT_LINE_BYTES = 8192;

type Role = 0 | 1;
type Emit = (ev: InspectEvent) => void;

interface Settings {
  bindRules: boolean;
  previewBytes: number | undefined;
  full: boolean;
  maxCapsuleLength: number | undefined;
  maxStreams: number;
  maxHeaderBytes: number;
  maxDetectBytes: number;
  capsuleStreams: 'auto' | 'all';
}

interface Context {
  settings: Settings;
  emit: Emit;
  warn: (w: CaptureWarning) => void;
  stats: CaptureStats;
}

function closeReasonOf(reason: TcpEndReason): CloseReason {
  return reason === 'fin' ? 'tcp-fin' : reason === 'rst' ? 'tcp-rst' : 'capture-end';
}

/** One HTTP session seen in a capture (an HTTP/2 stream or an HTTP/1.1 connection): its capsule views and end state. */
class CaptureSession {
  readonly id: string;
  views: [CapsuleView | null, CapsuleView | null] = [null, null];
  ended: [boolean, boolean] = [false, false];
  closed = false;
  tunnel = false;
  constructor(id: string) {
    this.id = id;
  }

  openViews(settings: Settings, bind: boolean): void {
    this.tunnel = true;
    const session = new BindSession({ enabled: bind, rules: settings.bindRules, bothDirections: true, requestSeen: true });
    for (const role of [0, 1] as const) {
      this.views[role] = new CapsuleView({
        bind: session,
        session: this.id,
        dir: DIRS[role],
        ...(settings.previewBytes === undefined ? {} : { previewBytes: settings.previewBytes }),
        full: settings.full,
        ...(settings.maxCapsuleLength === undefined ? {} : { maxCapsuleLength: settings.maxCapsuleLength }),
      });
    }
  }

  push(role: Role, data: Buffer, t: number, emit: Emit): void {
    const v = this.views[role];
    if (v === null || this.ended[role] || this.closed) return;
    for (const ev of v.push(data, t)) emit(ev);
  }

  /** Ends one direction; closes the session with `reason` once both directions ended. */
  endDir(role: Role, t: number, aborted: boolean, reason: CloseReason, detail: string | null, emit: Emit): void {
    if (this.closed || this.ended[role]) return;
    this.ended[role] = true;
    const v = this.views[role];
    if (v !== null) for (const ev of v.end(t, { aborted })) emit(ev);
    if (this.ended[0] && this.ended[1]) this.close(t, reason, detail, emit);
  }

  /** Ends whatever is open (aborted) and closes the session. */
  abort(t: number, reason: CloseReason, detail: string | null, emit: Emit): void {
    if (this.closed) return;
    for (const role of [0, 1] as const) {
      if (this.ended[role]) continue;
      this.ended[role] = true;
      const v = this.views[role];
      if (v !== null) for (const ev of v.end(t, { aborted: true })) emit(ev);
    }
    this.close(t, reason, detail, emit);
  }

  private close(t: number, reason: CloseReason, detail: string | null, emit: Emit): void {
    this.closed = true;
    emit({ event: 'close', tMs: t, session: this.id, reason, detail });
  }
}

/** Protocol-specific decoding of one TCP connection, fed per role (0 client, 1 server). */
interface ProtocolDecoder {
  data(role: Role, data: Buffer, t: number): void;
  gap(role: Role): void;
  end(role: Role, reason: TcpEndReason, t: number): void;
}

/** HTTP/2 with prior knowledge (RFC 9113 §3.3), cleartext. */
class Http2Decoder implements ProtocolDecoder {
  private readonly ctx: Context;
  private readonly connSession: string;
  private readonly parsers: [Http2FrameParser, Http2FrameParser];
  private readonly hpack: [HpackDecoder, HpackDecoder];
  private readonly hpackBroken: [boolean, boolean] = [false, false];
  private readonly streams = new Map<number, CaptureSession>();
  private readonly tcpEnded: [TcpEndReason | null, TcpEndReason | null] = [null, null];
  private failed = false;
  private streamLimitWarned = false;
  private highestStreamId = 0;

  constructor(ctx: Context, connSession: string) {
    this.ctx = ctx;
    this.connSession = connSession;
    const maxHeaderBlock = ctx.settings.maxHeaderBytes;
    this.parsers = [
      new Http2FrameParser({ expectPreface: true, maxHeaderBlock }),
      new Http2FrameParser({ expectPreface: false, maxHeaderBlock }),
    ];
    const hp = { maxHeaderListSize: ctx.settings.maxHeaderBytes };
    this.hpack = [new HpackDecoder(hp), new HpackDecoder(hp)];
  }

  data(role: Role, data: Buffer, t: number): void {
    if (this.failed) return;
    for (const item of this.parsers[role].push(data)) this.frame(role, item, t);
  }

  gap(): void {
    // Bytes are missing: later frames cannot be trusted, so stop decoding the connection.
    this.failed = true;
  }

  end(role: Role, reason: TcpEndReason, t: number): void {
    this.tcpEnded[role] = reason;
    const both = this.tcpEnded[0] !== null && this.tcpEnded[1] !== null;
    for (const s of this.streams.values()) {
      if (s.closed) continue;
      // RFC 9113 §8.1: an HTTP/2 stream ends with END_STREAM; a connection ending first leaves it incomplete.
      if (reason === 'rst' || both) s.abort(t, closeReasonOf(reason), null, this.ctx.emit);
      else s.endDir(role, t, true, closeReasonOf(reason), null, this.ctx.emit);
    }
  }

  private connError(role: Role, offset: number, layer: ErrorLayer, code: string, reason: string, rfc: string | null, t: number): void {
    this.ctx.emit({ event: 'error', tMs: t, session: this.connSession, dir: DIRS[role], offset, layer, code, reason, rfc });
  }

  private fail(t: number): void {
    this.failed = true;
    for (const s of this.streams.values()) s.abort(t, 'error', 'HTTP/2 connection could not be decoded further', this.ctx.emit);
  }

  private frame(role: Role, f: Http2FrameItem, t: number): void {
    const emit = this.ctx.emit;
    switch (f.type) {
      case 'ERROR':
        this.connError(role, f.offset, 'http', f.code, `${f.h2Error}: ${f.reason}`, f.rfc, t);
        this.fail(t);
        return;
      case 'SETTINGS':
        if (f.ack) return;
        for (const [id, value] of f.settings) {
          // The sender's decoder and receive limits bound what its peer sends (RFC 9113 §6.5.2).
          if (id === SETTINGS_ID.HEADER_TABLE_SIZE) this.hpack[role === 0 ? 1 : 0].setMaxTableSize(value);
          else if (id === SETTINGS_ID.MAX_FRAME_SIZE) this.parsers[role === 0 ? 1 : 0].setMaxFrameSize(value);
        }
        return;
      case 'HEADERS': {
        const headers = this.decodeBlock(role, f.headerBlock, f.offset, t);
        if (headers === null) return;
        if (role === 0) this.requestHeaders(f.streamId, headers, f.endStream, t);
        else this.responseHeaders(f.streamId, headers, f.endStream, t);
        return;
      }
      case 'PUSH_PROMISE':
        this.decodeBlock(role, f.headerBlock, f.offset, t);
        return;
      case 'DATA': {
        const s = this.streams.get(f.streamId);
        if (s === undefined || s.closed) return;
        s.push(role, f.data, t, emit);
        if (f.endStream) s.endDir(role, t, false, s.tunnel ? 'end-stream' : 'not-a-tunnel', null, emit);
        return;
      }
      case 'RST_STREAM': {
        const s = this.streams.get(f.streamId);
        if (s === undefined) return;
        s.abort(t, 'rst-stream', `${http2ErrorName(f.errorCode)} from ${ROLE_NAMES[role]}`, emit);
        return;
      }
      case 'GOAWAY':
        // RFC 9113 §6.8: streams above the last stream id were not (and will not be) processed by the sender.
        if (role !== 1) return;
        for (const [id, s] of this.streams) {
          if (id > f.lastStreamId) s.abort(t, 'goaway', `${http2ErrorName(f.errorCode)}, last stream ${f.lastStreamId}`, emit);
        }
        return;
      default:
        return;
    }
  }

  private decodeBlock(role: Role, block: Buffer, offset: number, t: number): HeaderList | null {
    if (this.hpackBroken[role]) return null;
    try {
      return this.hpack[role].decode(block);
    } catch (err) {
      this.hpackBroken[role] = true;
      const { code, rfc, message } = errorFacts(err, ErrorCodes.HPACK);
      // RFC 9113 §4.3: a header block that cannot be decoded is a connection error (COMPRESSION_ERROR).
      this.connError(role, offset, 'http', code, `COMPRESSION_ERROR: ${message}; later ${DIRS[role]} header blocks are skipped`, rfc, t);
      return null;
    }
  }

  private requestHeaders(streamId: number, headers: HeaderList, endStream: boolean, t: number): void {
    const emit = this.ctx.emit;
    const existing = this.streams.get(streamId);
    if (existing !== undefined) {
      // Trailers: nothing to report beyond the end of the direction.
      if (endStream) existing.endDir(0, t, false, existing.tunnel ? 'end-stream' : 'not-a-tunnel', null, emit);
      return;
    }
    // RFC 9113 §5.1.1: stream ids only grow; a lower id is a stream already forgotten (or a peer error).
    if (streamId <= this.highestStreamId) return;
    this.highestStreamId = streamId;
    let open = 0;
    for (const s of this.streams.values()) if (!s.closed) open++;
    if (open >= this.ctx.settings.maxStreams) {
      this.ctx.stats.droppedStreams++;
      if (!this.streamLimitWarned) {
        this.streamLimitWarned = true;
        this.ctx.warn({
          code: ErrorCodes.LIMIT_EXCEEDED,
          message: `more than ${this.ctx.settings.maxStreams} open streams; later streams are not decoded`,
          session: this.connSession,
          offset: null,
        });
      }
      return;
    }
    // Forget closed streams so a long-lived connection does not grow the table without bound.
    if (this.streams.size >= this.ctx.settings.maxStreams) {
      for (const [id, s] of this.streams) if (s.closed) this.streams.delete(id);
    }
    const s = new CaptureSession(`${this.connSession}s${streamId}`);
    this.streams.set(streamId, s);
    this.ctx.stats.streams++;
    const head = requestHeadFromHttp2(headers);
    const ev = requestEvent(s.id, t, head);
    emit(ev);
    if (isCapsuleRequest(head, ev.capsuleProtocol, this.ctx.settings.capsuleStreams)) s.openViews(this.ctx.settings, requestsBind(head.headers));
    if (endStream) s.endDir(0, t, false, s.tunnel ? 'end-stream' : 'not-a-tunnel', null, emit);
  }

  private responseHeaders(streamId: number, headers: HeaderList, endStream: boolean, t: number): void {
    const emit = this.ctx.emit;
    const s = this.streams.get(streamId);
    if (s === undefined || s.closed) return;
    const status = http2Status(headers);
    if (headers.some(([n]) => n === ':status')) {
      emit(responseEvent(s.id, t, '2', status, headers));
      if (s.tunnel && !isInterimStatus(status) && !opensTunnel('2', status)) {
        s.abort(t, 'refused', `status ${status}`, emit);
        return;
      }
    }
    if (endStream) s.endDir(1, t, false, s.tunnel ? 'end-stream' : 'not-a-tunnel', null, emit);
  }
}

/** HTTP/1.1 with the RFC 9298 §3.2 Upgrade to connect-udp. */
class Http1Decoder implements ProtocolDecoder {
  private readonly ctx: Context;
  private readonly session: CaptureSession;
  private readonly request: Http1HeadParser;
  private readonly response: Http1HeadParser;
  private requestDone = false;
  private responseDone = false;
  private refused = false;
  private failed = false;
  private readonly consumed: [number, number] = [0, 0];
  private readonly gapSeen: [boolean, boolean] = [false, false];
  private readonly tcpEnded: [TcpEndReason | null, TcpEndReason | null] = [null, null];
  private heldResponse: Array<{ data: Buffer; t: number }> = [];
  private heldBytes = 0;

  constructor(ctx: Context, session: string) {
    this.ctx = ctx;
    this.session = new CaptureSession(session);
    const opts = { maxHeadBytes: ctx.settings.maxHeaderBytes };
    this.request = new Http1HeadParser('request', opts);
    this.response = new Http1HeadParser('response', opts);
  }

  data(role: Role, data: Buffer, t: number): void {
    if (this.failed || this.session.closed) {
      this.consumed[role] += data.length;
      return;
    }
    if (role === 0) {
      this.clientData(data, t);
      return;
    }
    if (!this.requestDone) {
      // Keep the event order request -> response even if the server's bytes were captured first.
      this.heldBytes += data.length;
      if (this.heldBytes > this.ctx.settings.maxHeaderBytes) {
        this.error(1, this.consumed[1], ErrorCodes.HEADERS_TOO_LARGE, `server sent over ${this.ctx.settings.maxHeaderBytes} bytes before the request head ended`, null, t);
        return;
      }
      this.heldResponse.push({ data, t });
      return;
    }
    this.serverData(data, t);
  }

  private clientData(data: Buffer, t: number): void {
    const emit = this.ctx.emit;
    if (this.requestDone) {
      this.session.push(0, data, t, emit);
      return;
    }
    const headStart = this.consumed[0] - this.request.bufferedBytes;
    let r;
    try {
      r = this.request.push(data);
    } catch (err) {
      this.headError(0, headStart, err, t);
      return;
    }
    this.consumed[0] += data.length;
    if (r === null) return;
    this.requestDone = true;
    if (r.head.kind !== 'request') return;
    const head = requestHeadFromHttp1(r.head.method, r.head.target, r.head.headers);
    const ev = requestEvent(this.session.id, t, head);
    emit(ev);
    this.ctx.stats.streams++;
    if (isCapsuleRequest(head, ev.capsuleProtocol, this.ctx.settings.capsuleStreams)) this.session.openViews(this.ctx.settings, requestsBind(head.headers));
    // RFC 9298 §3.2: bytes after the request head already belong to the capsule stream (optimistic datagrams).
    if (r.rest.length > 0) this.session.push(0, r.rest, t, emit);
    const held = this.heldResponse;
    this.heldResponse = [];
    this.heldBytes = 0;
    for (const h of held) if (!this.failed && !this.session.closed) this.serverData(h.data, h.t);
    this.replayEnds(t);
  }

  private serverData(data: Buffer, t: number): void {
    const emit = this.ctx.emit;
    if (this.responseDone) {
      if (!this.refused) this.session.push(1, data, t, emit);
      return;
    }
    let chunk: Buffer = data;
    for (;;) {
      const headStart = this.consumed[1] - this.response.bufferedBytes;
      let r;
      try {
        r = this.response.push(chunk);
      } catch (err) {
        this.headError(1, headStart, err, t);
        return;
      }
      if (r === null) {
        this.consumed[1] += chunk.length;
        return;
      }
      this.consumed[1] += chunk.length - r.rest.length;
      if (r.head.kind !== 'response') return;
      emit(responseEvent(this.session.id, t, '1.1', r.head.status, r.head.headers));
      if (isInterimStatus(r.head.status)) {
        if (r.rest.length === 0) return;
        chunk = r.rest;
        continue;
      }
      this.responseDone = true;
      if (!this.session.tunnel) {
        this.session.abort(t, 'not-a-tunnel', null, emit);
        return;
      }
      if (!opensTunnel('1.1', r.head.status)) {
        this.refused = true;
        this.session.abort(t, 'refused', `status ${r.head.status}`, emit);
        return;
      }
      if (r.rest.length > 0) this.session.push(1, r.rest, t, emit);
      return;
    }
  }

  private headError(role: Role, headStart: number, err: unknown, t: number): void {
    const f = errorFacts(err, ErrorCodes.HTTP1_MALFORMED);
    this.error(role, headStart + f.offset, f.code, f.message, f.rfc, t);
  }

  private error(role: Role, offset: number, code: string, reason: string, rfc: string | null, t: number): void {
    this.failed = true;
    this.ctx.emit({ event: 'error', tMs: t, session: this.session.id, dir: DIRS[role], offset, layer: 'http', code, reason, rfc });
    this.session.abort(t, 'error', 'HTTP/1.1 head could not be parsed', this.ctx.emit);
  }

  gap(role: Role): void {
    this.gapSeen[role] = true;
  }

  end(role: Role, reason: TcpEndReason, t: number): void {
    this.tcpEnded[role] = reason;
    if (!this.requestDone) return; // finished once the request head is known (see replayEnds)
    this.finishDir(role, reason, t);
  }

  private replayEnds(t: number): void {
    for (const role of [0, 1] as const) {
      const reason = this.tcpEnded[role];
      if (reason !== null) this.finishDir(role, reason, t);
    }
  }

  private finishDir(role: Role, reason: TcpEndReason, t: number): void {
    // RFC 9297 §3.3: in HTTP/1.1 the capsule stream ends with the connection; a FIN inside a capsule is truncation.
    const aborted = reason !== 'fin' || this.gapSeen[role];
    this.session.endDir(role, t, aborted, closeReasonOf(reason), null, this.ctx.emit);
  }
}

/** Routes one TCP connection's bytes: detects the protocol, then feeds the protocol decoder per role. */
class ConnectionDecoder {
  private readonly ctx: Context;
  private readonly conn: TcpConnection;
  private readonly session: string;
  private clientSide: TcpSide | null;
  private mode: 'detect' | 'h2' | 'h1' | 'other' = 'detect';
  private decoder: ProtocolDecoder | null = null;
  private held: Array<{ side: TcpSide; data: Buffer; t: number }> = [];
  private heldBytes: [number, number] = [0, 0];
  private heldEnds: Array<{ side: TcpSide; reason: TcpEndReason; t: number }> = [];
  private heldGaps: Array<{ side: TcpSide; offset: number; missing: number; t: number }> = [];

  constructor(ctx: Context, conn: TcpConnection) {
    this.ctx = ctx;
    this.conn = conn;
    this.session = `c${conn.id}`;
    this.clientSide = conn.handshake ? 0 : null;
  }

  private role(side: TcpSide): Role {
    return side === this.clientSide ? 0 : 1;
  }

  data(side: TcpSide, data: Buffer, t: number): void {
    if (this.mode === 'other') return;
    if (this.decoder !== null) {
      this.decoder.data(this.role(side), data, t);
      return;
    }
    this.held.push({ side, data, t });
    this.heldBytes[side] += data.length;
    this.detect();
  }

  gap(side: TcpSide, offset: number, missing: number, t: number): void {
    if (this.mode === 'other') return;
    if (this.decoder === null) {
      this.heldGaps.push({ side, offset, missing, t });
      return;
    }
    const role = this.role(side);
    this.ctx.emit({
      event: 'error',
      tMs: t,
      session: this.session,
      dir: DIRS[role],
      offset,
      layer: 'tcp',
      code: ErrorCodes.CAPTURE_GAP,
      reason: `${missing > 0 ? `${missing} bytes` : 'bytes'} missing from the capture at byte ${offset} of the ${ROLE_NAMES[role]} stream; the rest of it is not decoded`,
      rfc: null,
    });
    this.decoder.gap(role);
  }

  end(side: TcpSide, reason: TcpEndReason, t: number): void {
    if (this.mode === 'other') return;
    if (this.decoder !== null) {
      this.decoder.end(this.role(side), reason, t);
      return;
    }
    this.heldEnds.push({ side, reason, t });
    if (this.heldEnds.length === 2 && this.mode === 'detect') {
      // Both directions ended before the protocol was recognised.
      this.giveUp('connection ended before its protocol could be recognised');
    }
  }

  private classify(bytes: Buffer): 'h2' | 'h1' | 'tls' | 'other' | 'undecided' {
    const n = Math.min(bytes.length, H2_PREFACE.length);
    if (bytes.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return n === H2_PREFACE.length ? 'h2' : 'undecided';
    if (bytes[0] === TLS_RECORD_HANDSHAKE && (bytes.length < 2 || bytes[1] === 0x03)) return bytes.length < 2 ? 'undecided' : 'tls';
    // RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
    const lf = bytes.indexOf(0x0a);
    if (lf < 0) {
      const sp = bytes.indexOf(0x20);
      const method = bytes.subarray(0, sp < 0 ? bytes.length : sp).toString('latin1');
      if (!/^[A-Z][A-Z-]{0,23}$/.test(method) || bytes.length >= DETECT_LINE_BYTES) return 'other';
      return 'undecided';
    }
    return HTTP1_REQUEST_LINE.test(bytes.subarray(0, lf).toString('latin1')) ? 'h1' : 'other';
  }

  private sideBytes(side: TcpSide): Buffer {
    const parts: Buffer[] = [];
    let n = 0;
    for (const h of this.held) {
      if (h.side !== side) continue;
      parts.push(h.data);
      n += h.data.length;
      if (n >= DETECT_LINE_BYTES) break;
    }
    return Buffer.concat(parts);
  }

  private detect(): void {
    const candidates: TcpSide[] = this.clientSide === null ? [0, 1] : [this.clientSide];
    let waiting = false;
    for (const side of candidates) {
      if (this.heldBytes[side] === 0) {
        waiting = true;
        continue;
      }
      const kind = this.classify(this.sideBytes(side));
      if (kind === 'undecided') {
        waiting = true;
        continue;
      }
      if (kind === 'tls') return this.giveUp('TLS: encrypted traffic cannot be decoded (cleartext captures only)');
      if (kind === 'other') continue;
      this.clientSide = side;
      this.start(kind);
      return;
    }
    if (!waiting) return this.giveUp('neither HTTP/2 with prior knowledge nor HTTP/1.1 (or the capture starts mid-connection)');
    if (this.heldBytes[0] + this.heldBytes[1] > this.ctx.settings.maxDetectBytes) {
      this.giveUp(`protocol not recognised within ${this.ctx.settings.maxDetectBytes} bytes`);
    }
  }

  private giveUp(message: string): void {
    this.mode = 'other';
    this.held = [];
    this.ctx.stats.otherConnections++;
    const [a, b] = this.conn.endpoints;
    this.ctx.warn({
      code: ErrorCodes.INVALID_INPUT,
      message: `connection ${this.session} ${a.address}:${a.port} <-> ${b.address}:${b.port} skipped: ${message}`,
      session: this.session,
      offset: null,
    });
  }

  private start(kind: 'h2' | 'h1'): void {
    this.mode = kind;
    if (kind === 'h2') {
      this.decoder = new Http2Decoder(this.ctx, this.session);
      this.ctx.stats.http2Connections++;
    } else {
      this.decoder = new Http1Decoder(this.ctx, this.session);
      this.ctx.stats.http1Connections++;
    }
    const held = this.held;
    this.held = [];
    for (const h of held) this.decoder.data(this.role(h.side), h.data, h.t);
    for (const g of this.heldGaps) this.gap(g.side, g.offset, g.missing, g.t);
    for (const e of this.heldEnds) this.decoder.end(this.role(e.side), e.reason, e.t);
  }
}

function emptyStats(): CaptureStats {
  return {
    packets: 0,
    tcpPackets: 0,
    skippedFrames: { 'unsupported-link': 0, 'not-ip': 0, 'not-tcp': 0, fragment: 0, truncated: 0, malformed: 0 },
    http2Connections: 0,
    http1Connections: 0,
    otherConnections: 0,
    streams: 0,
    droppedStreams: 0,
    ...emptyTcpReassemblyStats(),
  };
}

/**
 * Decodes a cleartext pcap/pcapng capture into inspect events, calling `onEvent` for each in time order. Returns
 * everything but the events. Throws UdpTunnelError (CAPTURE_INVALID / CAPTURE_TRUNCATED, details.offset) only for a
 * file that is not a readable capture; everything inside the traffic becomes events, warnings or counters.
 */
export function streamCapture(
  buf: Buffer,
  onEvent: (ev: InspectEvent) => void,
  options: CaptureDecodeOptions = {},
): Omit<CaptureDecodeResult, 'events'> {
  const file = readCapture(buf);
  const warnings: CaptureWarning[] = [];
  const stats = emptyStats();
  const ctx: Context = {
    settings: {
      bindRules: options.bindRules ?? false,
      previewBytes: options.previewBytes,
      full: options.full ?? false,
      maxCapsuleLength: options.maxCapsuleLength,
      maxStreams: options.maxStreamsPerConnection ?? DEFAULT_MAX_STREAMS,
      maxHeaderBytes: options.maxHeaderBytes ?? Math.max(DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADER_LIST_SIZE),
      maxDetectBytes: options.maxDetectBytes ?? DEFAULT_DETECT_BYTES,
      capsuleStreams: options.capsuleStreams ?? 'auto',
    },
    emit: onEvent,
    warn: (w) => warnings.push(w),
    stats,
  };
  // Validate view options once, up front, so a bad option is a clear error rather than a per-session failure.
  new CapsuleView({
    session: '',
    dir: '->',
    ...(options.previewBytes === undefined ? {} : { previewBytes: options.previewBytes }),
    ...(options.maxCapsuleLength === undefined ? {} : { maxCapsuleLength: options.maxCapsuleLength }),
  });
  const decoders = new Map<number, ConnectionDecoder>();
  const endedSides = new Map<number, number>();
  const get = (conn: TcpConnection): ConnectionDecoder => {
    let d = decoders.get(conn.id);
    if (d === undefined) {
      d = new ConnectionDecoder(ctx, conn);
      decoders.set(conn.id, d);
    }
    return d;
  };
  const reassembler = new TcpReassembler(
    {
      onConnection: (conn) => void get(conn),
      onData: (conn, side, data, t) => get(conn).data(side, data, t),
      onGap: (conn, side, offset, missing, t) => get(conn).gap(side, offset, missing, t),
      onEnd: (conn, side, reason, t) => {
        get(conn).end(side, reason, t);
        // Both sides ended: the connection's decoder has emitted all it will; free it.
        const n = (endedSides.get(conn.id) ?? 0) + 1;
        if (n === 2) {
          decoders.delete(conn.id);
          endedSides.delete(conn.id);
        } else {
          endedSides.set(conn.id, n);
        }
      },
    },
    {
      ...(options.maxTcpBufferedBytes === undefined ? {} : { maxBufferedBytes: options.maxTcpBufferedBytes }),
      ...(options.maxTcpBufferedSegments === undefined ? {} : { maxBufferedSegments: options.maxTcpBufferedSegments }),
      ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
    },
  );
  const first = file.packets[0]?.timestampNs ?? 0n;
  let lastT = 0;
  for (const p of file.packets) {
    stats.packets++;
    const t = Number(p.timestampNs - first) / 1e6;
    lastT = Math.max(lastT, t);
    const r = decodeFrame(p.linkType, p.data);
    if (!r.ok) {
      stats.skippedFrames[r.reason]++;
      continue;
    }
    stats.tcpPackets++;
    reassembler.push(r.segment, t);
  }
  reassembler.finish(lastT);
  Object.assign(stats, reassembler.stats);
  if (file.truncated) {
    warnings.unshift({
      code: ErrorCodes.CAPTURE_TRUNCATED,
      message: `capture ends inside the record at byte ${file.truncatedAt}; that partial record is ignored`,
      session: null,
      offset: file.truncatedAt,
    });
  }
  if (stats.droppedSegments > 0) {
    warnings.push({
      code: ErrorCodes.LIMIT_EXCEEDED,
      message: `${stats.droppedSegments} out-of-order TCP segments (${stats.droppedBytes} bytes) dropped at the reassembly buffer limit`,
      session: null,
      offset: null,
    });
  }
  if (stats.droppedConnections > 0) {
    warnings.push({
      code: ErrorCodes.LIMIT_EXCEEDED,
      message: `${stats.droppedConnections} TCP connections not decoded: connection limit reached`,
      session: null,
      offset: null,
    });
  }
  return { format: file.format, truncated: file.truncated, warnings, stats };
}

/** Decodes a cleartext pcap/pcapng capture into an array of inspect events (see streamCapture). */
export function decodeCapture(buf: Buffer, options: CaptureDecodeOptions = {}): CaptureDecodeResult {
  const events: InspectEvent[] = [];
  const rest = streamCapture(buf, (ev) => events.push(ev), options);
  return { ...rest, events };
}
