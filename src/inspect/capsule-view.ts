import { Buffer } from 'node:buffer';
import { CapsuleDecoder, DEFAULT_MAX_CAPSULE_LENGTH } from '../tunnel/codec/capsule-decoder.js';
import type { DecodedCapsule } from '../tunnel/codec/capsule-decoder.js';
import { CAPSULE_TYPE_DATAGRAM, capsuleTypeName } from '../tunnel/codec/capsule.js';
import {
  CAPSULE_TYPE_COMPRESSION_ACK,
  CAPSULE_TYPE_COMPRESSION_ASSIGN,
  CAPSULE_TYPE_COMPRESSION_CLOSE,
  decodeCompressionAck,
  decodeCompressionAssign,
  decodeCompressionClose,
  decodeUncompressedDatagram,
} from '../tunnel/codec/bind.js';
import { CONTEXT_ID_UDP, MAX_UDP_PAYLOAD } from '../tunnel/codec/datagram.js';
import { readVarintBig } from '../tunnel/codec/varint.js';
import { ErrorCodes, UdpTunnelError, isUdpTunnelError } from '../tunnel/errors.js';
import { BindSession } from './bind-view.js';
import type { BindTargetField, CapsuleEvent, Direction, EndEvent, ErrorEvent } from './events.js';

export { DEFAULT_PREVIEW_BYTES } from './defaults.js';
import { DEFAULT_PREVIEW_BYTES } from './defaults.js';

/** Options of a CapsuleView. */
export interface CapsuleViewOptions {
  /** Session id copied into every event. */
  session: string;
  /** Direction of this byte stream. */
  dir: Direction;
  /** Bytes of payload/value shown as hex (default 16). Ignored when `full`. */
  previewBytes?: number;
  /** Show whole payloads/values as hex. */
  full?: boolean;
  /** Largest declared capsule length accepted (the --max-capsule limit); longer is an error. */
  maxCapsuleLength?: number;
  /**
   * CONNECT-UDP Bind state shared with the other direction's view of the session. Without one the view keeps its
   * own, with bind datagrams off and rules unchecked.
   */
  bind?: BindSession;
}

/** Events a CapsuleView emits while bytes arrive. */
export type CapsuleViewEvent = CapsuleEvent | ErrorEvent;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Thrown out of the decoder callback to stop decoding the rest of a chunk after a malformed DATAGRAM. */
class StopDecoding {
  constructor(readonly event: ErrorEvent) {}
}

function minimalVarintWidth(value: number | bigint): number {
  const v = BigInt(value);
  return v <= 63n ? 1 : v <= 16383n ? 2 : v <= 1073741823n ? 4 : 8;
}

function jsonInteger(value: number | bigint): number | string {
  return typeof value === 'bigint' && value > MAX_SAFE ? value.toString() : Number(value);
}

/**
 * Incremental, never-throwing view of one direction of a capsule stream: bytes in (split anywhere), inspect events out.
 * After the first malformed capsule it reports one error and ignores the rest of the direction, counting those bytes.
 */
export class CapsuleView {
  /** Session id of the events. */
  readonly session: string;
  /** Direction of the events. */
  readonly dir: Direction;
  private readonly previewBytes: number;
  private readonly decoder: CapsuleDecoder;
  private readonly bind: BindSession;
  private pending: CapsuleViewEvent[] = [];
  private now = 0;
  private failedAt = -1;
  private endedFlag = false;
  /** Bytes pushed so far (including ignored ones). */
  totalBytes = 0;
  /** Capsule events emitted so far. */
  capsules = 0;

  constructor(options: CapsuleViewOptions) {
    const preview = options.previewBytes ?? DEFAULT_PREVIEW_BYTES;
    if (!Number.isSafeInteger(preview) || preview < 0) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `previewBytes must be a non-negative integer, got ${preview}`, { option: 'previewBytes', value: preview });
    }
    const max = options.maxCapsuleLength ?? DEFAULT_MAX_CAPSULE_LENGTH;
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `maxCapsuleLength must be a non-negative integer, got ${max}`, { option: 'maxCapsuleLength', value: max });
    }
    this.session = options.session;
    this.dir = options.dir;
    this.previewBytes = options.full ? Infinity : preview;
    this.bind = options.bind ?? new BindSession({ enabled: false, rules: false, bothDirections: false });
    this.decoder = new CapsuleDecoder((c) => this.onCapsule(c), { maxCapsuleLength: max, deliver: () => true });
  }

  /** True once an error was reported; later bytes are only counted. */
  get failed(): boolean {
    return this.failedAt >= 0;
  }

  /** True once end() was called. */
  get ended(): boolean {
    return this.endedFlag;
  }

  /** Bytes not decoded because of an earlier error (from the failing capsule's offset on). */
  get ignoredBytes(): number {
    return this.failedAt >= 0 ? this.totalBytes - this.failedAt : 0;
  }

  /** Bytes held for a capsule not yet complete. */
  get bufferedBytes(): number {
    return this.failed ? 0 : this.decoder.bufferedBytes;
  }

  /** Feeds the next bytes of the stream, seen at time `t`; returns the capsule/error events they complete. */
  push(chunk: Uint8Array, t: number): CapsuleViewEvent[] {
    this.totalBytes += chunk.length;
    if (this.failed || this.endedFlag || chunk.length === 0) return [];
    this.now = t;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    try {
      this.decoder.push(buf);
    } catch (err) {
      this.pending.push(this.failFrom(err));
    }
    const out = this.pending;
    this.pending = [];
    return out;
  }

  /**
   * Declares the end of the stream at time `t`. Ending inside a capsule is an error (RFC 9297 §3.3) unless `aborted`
   * (the stream was reset or the source stopped): then the end is just not clean. Returns the error (if any) and `end`.
   */
  end(t: number, options: { aborted?: boolean } = {}): Array<ErrorEvent | EndEvent> {
    if (this.endedFlag) return [];
    this.endedFlag = true;
    this.now = t;
    const out: Array<ErrorEvent | EndEvent> = [];
    let clean = !this.failed;
    if (!this.failed) {
      if (options.aborted) {
        clean = false;
      } else {
        try {
          this.decoder.end();
        } catch (err) {
          out.push(this.failFrom(err));
          clean = false;
        }
      }
    }
    out.push({
      event: 'end',
      tMs: t,
      session: this.session,
      dir: this.dir,
      clean,
      totalBytes: this.totalBytes,
      capsules: this.capsules,
      ignoredBytes: this.ignoredBytes,
    });
    return out;
  }

  private failFrom(err: unknown): ErrorEvent {
    if (err instanceof StopDecoding) {
      this.failedAt = err.event.offset;
      return err.event;
    }
    let offset = this.decoder.position;
    let code: string = ErrorCodes.DECODER_FAILED;
    let reason = 'capsule decoder failed';
    let rfc: string | null = null;
    if (isUdpTunnelError(err)) {
      code = err.code;
      const o = err.details['offset'];
      if (typeof o === 'number') offset = o;
      if (err.code === ErrorCodes.CAPSULE_TRUNCATED) {
        rfc = 'RFC 9297 §3.3';
        reason = `stream ended inside the capsule at byte ${offset}: ${String(err.details['have'])} bytes of ${
          err.details['need'] === undefined ? 'an incomplete header' : `${String(err.details['need'])}`
        }`;
      } else if (err.code === ErrorCodes.CAPSULE_TOO_LARGE) {
        reason = `capsule at byte ${offset} declares length ${String(err.details['declared'])}, over the limit of ${String(
          err.details['limit'],
        )} (--max-capsule)`;
      } else {
        reason = err.message;
      }
    } else if (err instanceof Error) {
      reason = err.message;
    }
    this.failedAt = Math.min(offset, this.totalBytes);
    return this.errorEvent(this.failedAt, code, reason, rfc);
  }

  private errorEvent(offset: number, code: string, reason: string, rfc: string | null): ErrorEvent {
    return { event: 'error', tMs: this.now, session: this.session, dir: this.dir, offset, layer: 'capsule', code, reason, rfc };
  }

  private hexPreview(bytes: Buffer): { hex: string; truncated: boolean } {
    if (bytes.length <= this.previewBytes) return { hex: bytes.toString('hex'), truncated: false };
    return { hex: bytes.subarray(0, this.previewBytes).toString('hex'), truncated: true };
  }

  private onCapsule(c: DecodedCapsule): void {
    const value = c.value ?? Buffer.alloc(0);
    const base = {
      event: 'capsule' as const,
      tMs: this.now,
      session: this.session,
      dir: this.dir,
      offset: c.offset,
      type: jsonInteger(c.type),
      typeName: capsuleTypeName(c.type),
      length: c.length,
      typeWidth: c.typeWidth,
      lengthWidth: c.lengthWidth,
      nonMinimal: c.typeWidth > minimalVarintWidth(c.type) || c.lengthWidth > minimalVarintWidth(c.length),
    };
    if (c.type === CAPSULE_TYPE_COMPRESSION_ASSIGN || c.type === CAPSULE_TYPE_COMPRESSION_ACK || c.type === CAPSULE_TYPE_COMPRESSION_CLOSE) {
      const p = this.hexPreview(value);
      const fields = this.bindCapsule(c.type, value, c.offset);
      this.capsules++;
      this.pending.push({ ...base, ...fields, valueHex: p.hex, previewTruncated: p.truncated });
      return;
    }
    if (c.type !== CAPSULE_TYPE_DATAGRAM) {
      const p = this.hexPreview(value);
      this.capsules++;
      this.pending.push({ ...base, valueHex: p.hex, previewTruncated: p.truncated });
      return;
    }
    // RFC 9298 §5: the HTTP Datagram payload starts with a Context ID; without one the capsule is malformed.
    const ctx = readVarintBig(value, 0);
    if (ctx === null) {
      throw new StopDecoding(
        this.errorEvent(
          c.offset,
          ErrorCodes.DATAGRAM_MALFORMED,
          `DATAGRAM capsule at byte ${c.offset} has a ${c.length}-byte value, too short for its context ID`,
          'RFC 9298 §5',
        ),
      );
    }
    const payload = value.subarray(ctx.length);
    // RFC 9298 §5: a context-0 UDP payload over 65527 bytes must not be sent; the receiver aborts the stream.
    if (ctx.value === BigInt(CONTEXT_ID_UDP) && payload.length > MAX_UDP_PAYLOAD) {
      throw new StopDecoding(
        this.errorEvent(
          c.offset,
          ErrorCodes.DATAGRAM_TOO_LARGE,
          `DATAGRAM capsule at byte ${c.offset} carries a ${payload.length}-byte UDP payload, over ${MAX_UDP_PAYLOAD}`,
          'RFC 9298 §5',
        ),
      );
    }
    let udp = payload;
    let target: BindTargetField | undefined;
    const kind = this.bind.options.enabled && ctx.value <= MAX_SAFE ? this.bind.datagram(Number(ctx.value)) : { kind: 'other' as const };
    if (kind.kind === 'uncompressed') {
      // draft-ietf-masque-connect-udp-listen §4: the datagram starts with the IP version, address and port.
      try {
        const d = decodeUncompressedDatagram(payload);
        target = { ipVersion: d.ipVersion, address: d.address, port: d.port, compressed: false };
        udp = d.payload;
      } catch (err) {
        throw new StopDecoding(this.bindError(c.offset, err, `uncompressed DATAGRAM at byte ${c.offset}`));
      }
    } else if (kind.kind === 'compressed') {
      target = { ...kind.target, compressed: true };
    }
    const p = this.hexPreview(udp);
    this.capsules++;
    this.pending.push({
      ...base,
      contextId: jsonInteger(ctx.value),
      contextIdWidth: ctx.length,
      ...(target !== undefined ? { target } : {}),
      payloadLength: udp.length,
      payloadHex: p.hex,
      previewTruncated: p.truncated,
    });
  }

  private bindError(offset: number, err: unknown, what: string): ErrorEvent {
    if (!isUdpTunnelError(err, ErrorCodes.BIND_MALFORMED)) throw err;
    return this.errorEvent(offset, err.code, `${what}: ${err.message}`, err.details.rfc);
  }

  /**
   * Decodes a COMPRESSION_ASSIGN/ACK/CLOSE value into event fields and applies it to the session's bind state.
   * A value that does not parse stops decoding (draft §3.1: a malformed capsule is a capsule protocol error), as
   * does a broken context-ID rule when rules are checked.
   */
  private bindCapsule(type: number | bigint, value: Buffer, offset: number): Partial<CapsuleEvent> {
    const name = capsuleTypeName(type);
    let fields: Partial<CapsuleEvent>;
    let broken: Error | null;
    if (this.bind.options.requestSeen === true && !this.bind.options.enabled) {
      try {
        if (type !== CAPSULE_TYPE_COMPRESSION_ASSIGN) return { contextId: type === CAPSULE_TYPE_COMPRESSION_ACK ? decodeCompressionAck(value) : decodeCompressionClose(value) };
        const a = decodeCompressionAssign(value);
        return a.ipVersion === 0 ? { contextId: a.contextId, ipVersion: 0, address: null, port: null } : { contextId: a.contextId, ipVersion: a.ipVersion, address: a.address, port: a.port };
      } catch {
        return {};
      }
    }
    try {
      if (type === CAPSULE_TYPE_COMPRESSION_ASSIGN) {
        const a = decodeCompressionAssign(value);
        fields =
          a.ipVersion === 0
            ? { contextId: a.contextId, ipVersion: 0, address: null, port: null }
            : { contextId: a.contextId, ipVersion: a.ipVersion, address: a.address, port: a.port };
        broken = this.bind.apply(this.dir, { kind: 'assign', assign: a });
      } else {
        const id = type === CAPSULE_TYPE_COMPRESSION_ACK ? decodeCompressionAck(value) : decodeCompressionClose(value);
        fields = { contextId: id };
        broken = this.bind.apply(this.dir, { kind: type === CAPSULE_TYPE_COMPRESSION_ACK ? 'ack' : 'close', contextId: id });
      }
    } catch (err) {
      throw new StopDecoding(this.bindError(offset, err, `${name} capsule at byte ${offset}`));
    }
    if (broken !== null) throw new StopDecoding(this.bindError(offset, broken, `${name} capsule at byte ${offset}`));
    return fields;
  }
}
