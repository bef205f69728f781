import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { CAPSULE_TYPE_DATAGRAM } from './capsule.js';
import { readVarint, readVarintBig, varintWidth } from './varint.js';

/** A capsule as the decoder reports it. */
export interface DecodedCapsule {
  /** Capsule type; a bigint only when it exceeds 2^53-1. */
  type: number | bigint;
  /** Declared value length. */
  length: number;
  /** The value bytes, or null when the type was skipped without buffering. */
  value: Buffer | null;
  /** Byte offset of the capsule's first byte within the whole stream. */
  offset: number;
  /** Encoded widths of the type and length varints (non-minimal encodings are valid, RFC 9297 §1.1). */
  typeWidth: number;
  lengthWidth: number;
}

/** Options of a CapsuleDecoder. */
export interface CapsuleDecoderOptions {
  /** Largest capsule value accepted (a non-negative safe integer); longer declared lengths fail the stream. Default 65536 + 16. */
  maxCapsuleLength?: number;
  /** Which types to deliver with their value; others are skipped as they stream past. Default: DATAGRAM only. */
  deliver?: (type: number | bigint) => boolean;
}

/** Default cap on a capsule value: a full 65535-byte UDP payload plus a context id, with headroom. */
export const DEFAULT_MAX_CAPSULE_LENGTH = 65536 + 16;

const S_HEADER = 0;
const S_VALUE = 1;
const S_SKIP = 2;
const S_FAILED = 3;

const onlyDatagram = (type: number | bigint): boolean => type === CAPSULE_TYPE_DATAGRAM;

/** Smallest accumulator allocated for a value that spans chunks: fewer regrowths for small values, a bounded cost for any. */
export const MIN_VALUE_ACCUMULATOR = 256;

/**
 * Incremental capsule stream decoder (RFC 9297 §3.2). Bytes may be split anywhere: HTTP/2 DATA frames and TCP reads
 * carry no meaning. A value wholly inside one chunk is delivered as a view of that chunk. A value spanning chunks is
 * copied into one accumulator that grows geometrically up to the declared length, never allocated up front: its
 * capacity stays within max(2 x bytes received, MIN_VALUE_ACCUMULATOR), so a peer that declares a large capsule and
 * trickles it in tiny pieces costs about what it sent, not one object per piece. After an error it stays failed.
 */
export class CapsuleDecoder {
  readonly maxCapsuleLength: number;
  private readonly deliver: (type: number | bigint) => boolean;
  private readonly onCapsule: (capsule: DecodedCapsule) => void;
  private state: number = S_HEADER;
  private readonly header = Buffer.alloc(16);
  private headerLen = 0;
  /** Bytes of a value spanning chunks; its length is the capacity, never over the declared length. */
  private acc: Buffer | null = null;
  private accLen = 0;
  private remaining = 0;
  private cur: DecodedCapsule | null = null;
  /** Total bytes consumed so far; the offset of the next byte. */
  position = 0;
  /** Capsules fully decoded (delivered or skipped). */
  capsules = 0;
  /** Capsules whose values were skipped (unknown or undelivered types). */
  skipped = 0;

  constructor(onCapsule: (capsule: DecodedCapsule) => void, options: CapsuleDecoderOptions = {}) {
    this.onCapsule = onCapsule;
    const max = options.maxCapsuleLength ?? DEFAULT_MAX_CAPSULE_LENGTH;
    // NaN or Infinity would make every `length > max` check false and let a peer make us buffer without bound.
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `maxCapsuleLength must be a non-negative safe integer, got ${max}`, {
        option: 'maxCapsuleLength',
        value: String(max),
      });
    }
    this.maxCapsuleLength = max;
    this.deliver = options.deliver ?? onlyDatagram;
  }

  /** True when no capsule is partly received: ending the stream here is clean. */
  get atBoundary(): boolean {
    return this.state === S_HEADER && this.headerLen === 0;
  }

  /** Bytes currently held for a partial capsule (bounded by maxCapsuleLength + 16). */
  get bufferedBytes(): number {
    return this.headerLen + this.accLen;
  }

  /** Bytes allocated for a partial value: at most max(2 x its bytes received, MIN_VALUE_ACCUMULATOR) and its declared length. */
  get bufferedCapacity(): number {
    return this.acc === null ? 0 : this.acc.length;
  }

  /**
   * Feeds bytes; calls onCapsule for each complete capsule. Throws UdpTunnelError on a malformed stream.
   * An error thrown by onCapsule propagates and also fails the decoder (the rest of that chunk was not consumed).
   */
  push(chunk: Buffer): void {
    if (this.state === S_FAILED) throw new UdpTunnelError(ErrorCodes.DECODER_FAILED, 'capsule decoder already failed');
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === S_HEADER) {
        if (this.headerLen === 0) {
          // Fast path: the whole header lies in this chunk.
          const used = this.parseHeader(chunk, i, this.position);
          if (used > 0) {
            i += used;
            this.position += used;
            continue;
          }
        }
        // Slow path: accumulate header bytes one at a time until it parses (at most 16 bytes).
        this.header[this.headerLen++] = chunk[i++]!;
        this.position++;
        const view = this.header.subarray(0, this.headerLen);
        const used = this.parseHeader(view, 0, this.position - this.headerLen);
        if (used > 0) this.headerLen = 0;
        continue;
      }
      if (this.state === S_SKIP) {
        const take = Math.min(this.remaining, n - i);
        i += take;
        this.position += take;
        this.remaining -= take;
        if (this.remaining === 0) this.finish(null);
        continue;
      }
      // S_VALUE
      const take = Math.min(this.remaining, n - i);
      if (this.accLen === 0 && take === this.remaining) {
        // Whole value inside this chunk: deliver a view, no copy.
        const value = chunk.subarray(i, i + take);
        i += take;
        this.position += take;
        this.remaining = 0;
        this.finish(value);
        continue;
      }
      this.append(chunk, i, take);
      i += take;
      this.position += take;
      this.remaining -= take;
      if (this.remaining === 0) {
        // Capacity is capped at the declared length and now holds that many bytes: the buffer is exactly the value.
        const value = this.acc!;
        this.acc = null;
        this.accLen = 0;
        this.finish(value);
      }
    }
  }

  /** Declares the end of the stream. Throws CAPSULE_TRUNCATED if it ends inside a capsule (RFC 9297 §3.3). */
  end(): void {
    if (this.state === S_FAILED) return;
    if (this.atBoundary) return;
    const start = this.cur?.offset ?? this.position - this.headerLen;
    const have = this.position - start;
    const need = this.cur ? this.cur.length + this.cur.typeWidth + this.cur.lengthWidth : undefined;
    this.state = S_FAILED;
    throw new UdpTunnelError(
      ErrorCodes.CAPSULE_TRUNCATED,
      `stream ended inside a capsule starting at byte ${start} (${have} of ${need ?? 'an incomplete header of'} bytes) (RFC 9297 §3.3)`,
      { offset: start, have, need, rfc: 'RFC 9297 §3.3' },
    );
  }

  /** Copies chunk[from, from + take) after the value bytes held so far, growing the accumulator if needed. */
  private append(chunk: Buffer, from: number, take: number): void {
    const need = this.accLen + take;
    const declared = this.cur!.length;
    let acc = this.acc;
    if (acc === null || need > acc.length) {
      // Doubling keeps the copies linear in the value size; the 2x headroom is granted only against bytes already
      // received, so capacity <= max(2 x received, MIN_VALUE_ACCUMULATOR) and never the declared length up front.
      const grown = acc === null ? Math.max(2 * need, MIN_VALUE_ACCUMULATOR) : Math.max(2 * acc.length, need);
      // Unpooled: a pooled slice would pin (and hand the consumer) a shared slab for a small value.
      const next = Buffer.allocUnsafeSlow(Math.min(declared, grown));
      if (acc !== null) acc.copy(next, 0, 0, this.accLen);
      this.acc = acc = next;
    }
    chunk.copy(acc, this.accLen, from, from + take);
    this.accLen = need;
  }

  /** Parses a header at buf[off]; returns bytes used, or 0 if incomplete (or failed). */
  private parseHeader(buf: Buffer, off: number, start: number): number {
    const tw = off < buf.length ? varintWidth(buf[off]!) : 1;
    if (off + tw >= buf.length) return 0;
    const lw = varintWidth(buf[off + tw]!);
    if (off + tw + lw > buf.length) return 0;
    let type: number | bigint = readVarint(buf, off);
    if (type === Infinity) type = readVarintBig(buf, off)!.value;
    const length = readVarint(buf, off + tw);
    if (length > this.maxCapsuleLength) {
      this.state = S_FAILED;
      const declared = length === Infinity ? readVarintBig(buf, off + tw)!.value.toString() : String(length);
      throw new UdpTunnelError(
        ErrorCodes.CAPSULE_TOO_LARGE,
        `capsule at byte ${start} declares length ${declared}, over the limit of ${this.maxCapsuleLength}`,
        { offset: start, declared, limit: this.maxCapsuleLength, type: type.toString() },
      );
    }
    this.cur = { type, length, value: null, offset: start, typeWidth: tw, lengthWidth: lw };
    this.remaining = length;
    this.state = this.deliver(type) ? S_VALUE : S_SKIP;
    if (length === 0) this.finish(this.state === S_VALUE ? Buffer.alloc(0) : null);
    return tw + lw;
  }

  private finish(value: Buffer | null): void {
    const c = this.cur!;
    c.value = value;
    this.cur = null;
    this.state = S_HEADER;
    this.capsules++;
    if (value === null) this.skipped++;
    try {
      this.onCapsule(c);
    } catch (err) {
      // The unread rest of the chunk is lost, so carrying on would parse from the wrong byte.
      this.state = S_FAILED;
      throw err;
    }
  }
}
