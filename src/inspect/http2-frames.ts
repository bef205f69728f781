import { Buffer } from 'node:buffer';
import { H2_PREFACE } from '../tunnel/http/version-detect.js';
import { ErrorCodes } from '../tunnel/errors.js';

/** RFC 9113 §6: frame type numbers. */
export const FRAME_TYPE = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** RFC 9113 §6.5.2 / RFC 8441 §3: SETTINGS identifiers inspect cares about. */
export const SETTINGS_ID = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
  ENABLE_CONNECT_PROTOCOL: 0x8,
} as const;

/** RFC 9113 §7: error code names by number. */
export const HTTP2_ERROR_NAMES: ReadonlyMap<number, string> = new Map([
  [0x0, 'NO_ERROR'],
  [0x1, 'PROTOCOL_ERROR'],
  [0x2, 'INTERNAL_ERROR'],
  [0x3, 'FLOW_CONTROL_ERROR'],
  [0x4, 'SETTINGS_TIMEOUT'],
  [0x5, 'STREAM_CLOSED'],
  [0x6, 'FRAME_SIZE_ERROR'],
  [0x7, 'REFUSED_STREAM'],
  [0x8, 'CANCEL'],
  [0x9, 'COMPRESSION_ERROR'],
  [0xa, 'CONNECT_ERROR'],
  [0xb, 'ENHANCE_YOUR_CALM'],
  [0xc, 'INADEQUATE_SECURITY'],
  [0xd, 'HTTP_1_1_REQUIRED'],
]);

/** `NAME (0xN)` for an HTTP/2 error code. */
export function http2ErrorName(code: number): string {
  return `${HTTP2_ERROR_NAMES.get(code) ?? 'UNKNOWN'} (0x${code.toString(16)})`;
}

/** RFC 9113 §4.2: the initial (and smallest allowed) SETTINGS_MAX_FRAME_SIZE. */
export const DEFAULT_MAX_FRAME_SIZE = 16384;

/** RFC 9113 §4.2: the largest SETTINGS_MAX_FRAME_SIZE a peer may advertise. */
export const MAX_ALLOWED_FRAME_SIZE = 16777215;

/** Default limit on a header block assembled from HEADERS/PUSH_PROMISE and CONTINUATION frames. */
export const DEFAULT_MAX_HEADER_BLOCK = 64 * 1024;

interface FrameBase {
  /** Byte offset of the frame header in this direction's byte stream (after the preface, if any, counts it). */
  offset: number;
  streamId: number;
}

/** DATA (RFC 9113 §6.1), padding removed. */
export interface DataFrame extends FrameBase {
  type: 'DATA';
  endStream: boolean;
  data: Buffer;
  padLength: number;
}

/** HEADERS (RFC 9113 §6.2) with its CONTINUATION frames (§6.10) assembled into one header block. */
export interface HeadersFrame extends FrameBase {
  type: 'HEADERS';
  endStream: boolean;
  headerBlock: Buffer;
  priority: { exclusive: boolean; dependency: number; weight: number } | null;
  continuations: number;
}

/** PUSH_PROMISE (RFC 9113 §6.6), header block assembled; decoded only to keep HPACK state in step. */
export interface PushPromiseFrame extends FrameBase {
  type: 'PUSH_PROMISE';
  promisedStreamId: number;
  headerBlock: Buffer;
}

/** RST_STREAM (RFC 9113 §6.4). */
export interface RstStreamFrame extends FrameBase {
  type: 'RST_STREAM';
  errorCode: number;
}

/** SETTINGS (RFC 9113 §6.5). */
export interface SettingsFrame extends FrameBase {
  type: 'SETTINGS';
  ack: boolean;
  settings: Array<[number, number]>;
}

/** PING (RFC 9113 §6.7). */
export interface PingFrame extends FrameBase {
  type: 'PING';
  ack: boolean;
  opaqueHex: string;
}

/** GOAWAY (RFC 9113 §6.8). */
export interface GoawayFrame extends FrameBase {
  type: 'GOAWAY';
  lastStreamId: number;
  errorCode: number;
  debugHex: string;
}

/** WINDOW_UPDATE (RFC 9113 §6.9). */
export interface WindowUpdateFrame extends FrameBase {
  type: 'WINDOW_UPDATE';
  increment: number;
}

/** PRIORITY or an unknown/extension frame type: skipped (RFC 9113 §4.1: unknown types must be ignored). */
export interface SkippedFrame extends FrameBase {
  type: 'SKIPPED';
  frameType: number;
  length: number;
}

/** A framing error; the parser stops after it (a connection error in RFC 9113 terms). */
export interface FrameError {
  type: 'ERROR';
  offset: number;
  code: string;
  /** RFC 9113 error name the receiving endpoint would send, e.g. PROTOCOL_ERROR. */
  h2Error: string;
  reason: string;
  rfc: string;
}

/** What the parser yields. */
export type Http2FrameItem =
  | DataFrame
  | HeadersFrame
  | PushPromiseFrame
  | RstStreamFrame
  | SettingsFrame
  | PingFrame
  | GoawayFrame
  | WindowUpdateFrame
  | SkippedFrame
  | FrameError;

/** Options of an Http2FrameParser. */
export interface Http2FrameParserOptions {
  /** The stream begins with the client connection preface (client-to-server direction). */
  expectPreface: boolean;
  /** Largest frame payload accepted: the receiver's SETTINGS_MAX_FRAME_SIZE (default 16384). */
  maxFrameSize?: number;
  /** Largest header block assembled from HEADERS + CONTINUATION (default 64 KiB). */
  maxHeaderBlock?: number;
}

interface PendingBlock {
  kind: 'HEADERS' | 'PUSH_PROMISE';
  offset: number;
  streamId: number;
  endStream: boolean;
  priority: HeadersFrame['priority'];
  promisedStreamId: number;
  fragments: Buffer[];
  length: number;
  continuations: number;
}

/**
 * Incremental HTTP/2 frame parser for one direction of a connection (RFC 9113 §4). Bytes may be split anywhere.
 * It buffers at most one frame (bounded by maxFrameSize) and one header block (bounded by maxHeaderBlock), never
 * throws on input, and stops at the first framing error, which it reports once.
 */
export class Http2FrameParser {
  private prefaceLeft: number;
  private maxFrameSize: number;
  private readonly maxHeaderBlock: number;
  private parts: Buffer[] = [];
  private partsLen = 0;
  private block: PendingBlock | null = null;
  private failedFlag = false;
  /** Bytes consumed so far: the offset of the next unparsed byte. */
  position = 0;

  constructor(options: Http2FrameParserOptions) {
    this.prefaceLeft = options.expectPreface ? H2_PREFACE.length : 0;
    this.maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.maxHeaderBlock = options.maxHeaderBlock ?? DEFAULT_MAX_HEADER_BLOCK;
  }

  /** True after a framing error. */
  get failed(): boolean {
    return this.failedFlag;
  }

  /** Bytes held for an incomplete frame or header block. */
  get bufferedBytes(): number {
    return this.partsLen + (this.block?.length ?? 0);
  }

  /** True when no frame or header block is partly received. */
  get atBoundary(): boolean {
    return this.partsLen === 0 && this.block === null && this.prefaceLeft === 0;
  }

  /** Applies the receiver's SETTINGS_MAX_FRAME_SIZE (clamped to RFC 9113 §6.5.2 bounds). */
  setMaxFrameSize(size: number): void {
    this.maxFrameSize = Math.min(Math.max(size, DEFAULT_MAX_FRAME_SIZE), MAX_ALLOWED_FRAME_SIZE);
  }

  /** Feeds bytes; returns the complete frames (and at most one error) they finish. */
  push(chunk: Buffer): Http2FrameItem[] {
    const out: Http2FrameItem[] = [];
    if (this.failedFlag || chunk.length === 0) return out;
    let buf = chunk;
    if (this.partsLen > 0) {
      // Copy only once the frame held in parts is complete: a large frame arriving in many segments stays linear.
      this.parts.push(Buffer.from(chunk));
      this.partsLen += chunk.length;
      if (this.partsLen < 9) return out;
      if (this.parts[0]!.length < 9) this.parts = [Buffer.concat(this.parts, this.partsLen)];
      const length = this.parts[0]!.readUIntBE(0, 3);
      if (length <= this.maxFrameSize && this.partsLen < 9 + length) return out;
      buf = Buffer.concat(this.parts, this.partsLen);
      this.parts = [];
      this.partsLen = 0;
    }
    let i = 0;
    if (this.prefaceLeft > 0) {
      const start = H2_PREFACE.length - this.prefaceLeft;
      const n = Math.min(this.prefaceLeft, buf.length);
      for (let k = 0; k < n; k++) {
        if (buf[k] !== H2_PREFACE[start + k]) {
          out.push(this.fail(this.position + k, 'PROTOCOL_ERROR', 'bytes do not match the client connection preface', 'RFC 9113 §3.4'));
          return out;
        }
      }
      this.prefaceLeft -= n;
      this.position += n;
      i = n;
    }
    while (i < buf.length) {
      if (buf.length - i < 9) break;
      const length = buf.readUIntBE(i, 3);
      if (length > this.maxFrameSize) {
        out.push(
          this.fail(this.position, 'FRAME_SIZE_ERROR', `frame of ${length} bytes exceeds the maximum frame size ${this.maxFrameSize}`, 'RFC 9113 §4.2'),
        );
        return out;
      }
      if (buf.length - i < 9 + length) break;
      const type = buf[i + 3]!;
      const flags = buf[i + 4]!;
      const streamId = buf.readUInt32BE(i + 5) & 0x7fff_ffff;
      const payload = buf.subarray(i + 9, i + 9 + length);
      const item = this.frame(type, flags, streamId, payload, this.position);
      i += 9 + length;
      this.position += 9 + length;
      if (item !== null) {
        out.push(item);
        if (item.type === 'ERROR') return out;
      }
    }
    if (i < buf.length) {
      // Keep the partial frame; copy so the caller's chunk can be reused.
      const rest = Buffer.from(buf.subarray(i));
      this.parts = [rest];
      this.partsLen = rest.length;
    }
    return out;
  }

  private fail(offset: number, h2Error: string, reason: string, rfc: string): FrameError {
    this.failedFlag = true;
    this.parts = [];
    this.partsLen = 0;
    this.block = null;
    return { type: 'ERROR', offset, code: ErrorCodes.HTTP2_PROTOCOL, h2Error, reason, rfc };
  }

  private frame(type: number, flags: number, streamId: number, payload: Buffer, offset: number): Http2FrameItem | null {
    // RFC 9113 §6.10: a header block in progress admits only CONTINUATION frames of the same stream.
    if (this.block !== null && (type !== FRAME_TYPE.CONTINUATION || streamId !== this.block.streamId)) {
      return this.fail(offset, 'PROTOCOL_ERROR', `frame type 0x${type.toString(16)} interrupts the header block of stream ${this.block.streamId}`, 'RFC 9113 §6.10');
    }
    switch (type) {
      case FRAME_TYPE.DATA: {
        if (streamId === 0) return this.fail(offset, 'PROTOCOL_ERROR', 'DATA frame on stream 0', 'RFC 9113 §6.1');
        const body = this.unpad(flags, payload);
        if (body === null) return this.fail(offset, 'PROTOCOL_ERROR', 'DATA padding length exceeds the payload', 'RFC 9113 §6.1');
        return { type: 'DATA', offset, streamId, endStream: (flags & 0x1) !== 0, data: body.data, padLength: body.padLength };
      }
      case FRAME_TYPE.HEADERS: {
        if (streamId === 0) return this.fail(offset, 'PROTOCOL_ERROR', 'HEADERS frame on stream 0', 'RFC 9113 §6.2');
        const body = this.unpad(flags, payload);
        if (body === null) return this.fail(offset, 'PROTOCOL_ERROR', 'HEADERS padding length exceeds the payload', 'RFC 9113 §6.2');
        let fragment = body.data;
        let priority: HeadersFrame['priority'] = null;
        if (flags & 0x20) {
          if (fragment.length < 5) return this.fail(offset, 'FRAME_SIZE_ERROR', 'HEADERS priority fields truncated', 'RFC 9113 §6.2');
          const dep = fragment.readUInt32BE(0);
          priority = { exclusive: (dep & 0x8000_0000) !== 0, dependency: dep & 0x7fff_ffff, weight: fragment[4]! + 1 };
          fragment = fragment.subarray(5);
        }
        return this.startBlock({
          kind: 'HEADERS',
          offset,
          streamId,
          endStream: (flags & 0x1) !== 0,
          priority,
          promisedStreamId: 0,
          fragments: [],
          length: 0,
          continuations: 0,
        }, fragment, (flags & 0x4) !== 0);
      }
      case FRAME_TYPE.PUSH_PROMISE: {
        const body = this.unpad(flags, payload);
        if (body === null || body.data.length < 4) return this.fail(offset, 'PROTOCOL_ERROR', 'malformed PUSH_PROMISE', 'RFC 9113 §6.6');
        return this.startBlock({
          kind: 'PUSH_PROMISE',
          offset,
          streamId,
          endStream: false,
          priority: null,
          promisedStreamId: body.data.readUInt32BE(0) & 0x7fff_ffff,
          fragments: [],
          length: 0,
          continuations: 0,
        }, body.data.subarray(4), (flags & 0x4) !== 0);
      }
      case FRAME_TYPE.CONTINUATION: {
        if (this.block === null) return this.fail(offset, 'PROTOCOL_ERROR', 'CONTINUATION without a preceding HEADERS', 'RFC 9113 §6.10');
        this.block.continuations++;
        return this.addFragment(payload, (flags & 0x4) !== 0);
      }
      case FRAME_TYPE.RST_STREAM:
        if (payload.length !== 4) return this.fail(offset, 'FRAME_SIZE_ERROR', `RST_STREAM of ${payload.length} bytes`, 'RFC 9113 §6.4');
        if (streamId === 0) return this.fail(offset, 'PROTOCOL_ERROR', 'RST_STREAM on stream 0', 'RFC 9113 §6.4');
        return { type: 'RST_STREAM', offset, streamId, errorCode: payload.readUInt32BE(0) };
      case FRAME_TYPE.SETTINGS: {
        if (streamId !== 0) return this.fail(offset, 'PROTOCOL_ERROR', 'SETTINGS on a stream', 'RFC 9113 §6.5');
        const ack = (flags & 0x1) !== 0;
        if (payload.length % 6 !== 0 || (ack && payload.length !== 0)) {
          return this.fail(offset, 'FRAME_SIZE_ERROR', `SETTINGS payload of ${payload.length} bytes`, 'RFC 9113 §6.5');
        }
        const settings: Array<[number, number]> = [];
        for (let k = 0; k < payload.length; k += 6) settings.push([payload.readUInt16BE(k), payload.readUInt32BE(k + 2)]);
        return { type: 'SETTINGS', offset, streamId, ack, settings };
      }
      case FRAME_TYPE.PING:
        if (payload.length !== 8) return this.fail(offset, 'FRAME_SIZE_ERROR', `PING of ${payload.length} bytes`, 'RFC 9113 §6.7');
        return { type: 'PING', offset, streamId, ack: (flags & 0x1) !== 0, opaqueHex: payload.toString('hex') };
      case FRAME_TYPE.GOAWAY:
        if (payload.length < 8) return this.fail(offset, 'FRAME_SIZE_ERROR', `GOAWAY of ${payload.length} bytes`, 'RFC 9113 §6.8');
        return {
          type: 'GOAWAY',
          offset,
          streamId,
          lastStreamId: payload.readUInt32BE(0) & 0x7fff_ffff,
          errorCode: payload.readUInt32BE(4),
          debugHex: payload.subarray(8, 8 + 64).toString('hex'),
        };
      case FRAME_TYPE.WINDOW_UPDATE:
        if (payload.length !== 4) return this.fail(offset, 'FRAME_SIZE_ERROR', `WINDOW_UPDATE of ${payload.length} bytes`, 'RFC 9113 §6.9');
        return { type: 'WINDOW_UPDATE', offset, streamId, increment: payload.readUInt32BE(0) & 0x7fff_ffff };
      default:
        return { type: 'SKIPPED', offset, streamId, frameType: type, length: payload.length };
    }
  }

  private unpad(flags: number, payload: Buffer): { data: Buffer; padLength: number } | null {
    if ((flags & 0x8) === 0) return { data: payload, padLength: 0 };
    if (payload.length < 1) return null;
    const pad = payload[0]!;
    if (pad > payload.length - 1) return null;
    return { data: payload.subarray(1, payload.length - pad), padLength: pad };
  }

  private startBlock(block: PendingBlock, fragment: Buffer, endHeaders: boolean): Http2FrameItem | null {
    this.block = block;
    return this.addFragment(fragment, endHeaders);
  }

  private addFragment(fragment: Buffer, endHeaders: boolean): Http2FrameItem | null {
    const b = this.block!;
    if (b.length + fragment.length > this.maxHeaderBlock) {
      const f = this.fail(b.offset, 'ENHANCE_YOUR_CALM', `header block of stream ${b.streamId} exceeds ${this.maxHeaderBlock} bytes`, 'RFC 9113 §10.5.1');
      f.code = ErrorCodes.HEADERS_TOO_LARGE;
      return f;
    }
    b.fragments.push(Buffer.from(fragment));
    b.length += fragment.length;
    if (!endHeaders) return null;
    this.block = null;
    const headerBlock = b.fragments.length === 1 ? b.fragments[0]! : Buffer.concat(b.fragments, b.length);
    if (b.kind === 'PUSH_PROMISE') {
      return { type: 'PUSH_PROMISE', offset: b.offset, streamId: b.streamId, promisedStreamId: b.promisedStreamId, headerBlock };
    }
    return {
      type: 'HEADERS',
      offset: b.offset,
      streamId: b.streamId,
      endStream: b.endStream,
      headerBlock,
      priority: b.priority,
      continuations: b.continuations,
    };
  }
}
