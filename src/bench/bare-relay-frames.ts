import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';

// The bare relay's wire format: each datagram is a 2-byte big-endian length followed by the payload. Not a
// protocol anyone speaks: it is the least framing a byte stream needs to keep datagram boundaries, so the bench
// can measure what two forwarding processes cost without HTTP or capsules.

/** Bytes of a frame's length prefix. */
export const FRAME_HEADER_BYTES = 2;

/** Largest payload a 2-byte length can describe. */
export const MAX_FRAME_PAYLOAD = 0xffff;

/** Writes one frame (length prefix + payload) into `out` at `offset`; returns the offset after it. */
export function writeFrame(out: Buffer, offset: number, payload: Buffer): number {
  out.writeUInt16BE(payload.length, offset);
  payload.copy(out, offset + FRAME_HEADER_BYTES);
  return offset + FRAME_HEADER_BYTES + payload.length;
}

/** Encodes payloads as one buffer of consecutive frames. Throws RangeError for a payload over MAX_FRAME_PAYLOAD. */
export function encodeFrames(payloads: readonly Buffer[]): Buffer {
  let total = 0;
  for (const p of payloads) {
    if (p.length > MAX_FRAME_PAYLOAD) throw new RangeError(`frame payload of ${p.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
    total += FRAME_HEADER_BYTES + p.length;
  }
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const p of payloads) off = writeFrame(out, off, p);
  return out;
}

/** Options of a FrameDecoder. */
export interface FrameDecoderOptions {
  /** Frames with a longer payload are skipped (never buffered) and reported to onOversize. Default MAX_FRAME_PAYLOAD. */
  maxFrameLength?: number;
  /** Called once per skipped frame. */
  onOversize?: () => void;
}

const HEADER = 0;
const BODY = 1;
const SKIP = 2;

const EMPTY = Buffer.alloc(0);

/**
 * Incremental deframer: push() TCP chunks, get whole payloads. Read boundaries carry no meaning: one chunk may hold
 * many frames and one frame may span many chunks. A frame that lies inside one chunk is delivered as a view of it;
 * one that spans chunks is gathered into a buffer of exactly its size, so at most one frame is ever held
 * (MAX_FRAME_PAYLOAD + FRAME_HEADER_BYTES bytes at the very most).
 */
export class FrameDecoder {
  private state = HEADER;
  /** First length byte, when a chunk ended after it. */
  private headerByte = -1;
  /** The frame being gathered across chunks, and how much of it has arrived. */
  private frame: Buffer = EMPTY;
  private filled = 0;
  /** Bytes of an oversize frame still to discard. */
  private skipLeft = 0;
  private readonly maxFrameLength: number;
  private readonly onFrame: (payload: Buffer) => void;
  private readonly onOversize: (() => void) | undefined;

  constructor(onFrame: (payload: Buffer) => void, options: FrameDecoderOptions = {}) {
    this.onFrame = onFrame;
    this.maxFrameLength = Math.min(options.maxFrameLength ?? MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD);
    this.onOversize = options.onOversize;
  }

  /** Bytes of the current partial frame held (its length prefix included). */
  get bufferedBytes(): number {
    if (this.state === BODY) return FRAME_HEADER_BYTES + this.filled;
    return this.headerByte >= 0 ? 1 : 0;
  }

  /** True between frames: a stream that ends now ends cleanly. */
  get atBoundary(): boolean {
    return this.state === HEADER && this.headerByte < 0;
  }

  /** Feeds one chunk; calls onFrame for each payload completed by it, in order. The payload may be a view of `chunk`. */
  push(chunk: Buffer): void {
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.state === HEADER) {
        let len: number;
        if (this.headerByte >= 0) {
          len = (this.headerByte << 8) | chunk[pos]!;
          this.headerByte = -1;
          pos += 1;
        } else if (n - pos >= FRAME_HEADER_BYTES) {
          len = chunk.readUInt16BE(pos);
          pos += FRAME_HEADER_BYTES;
        } else {
          // Not enough bytes for the length: keep the one we have.
          this.headerByte = chunk[pos]!;
          return;
        }
        if (len > this.maxFrameLength) {
          this.onOversize?.();
          this.skipLeft = len;
          this.state = SKIP;
          continue;
        }
        if (n - pos >= len) {
          // The common case: the whole frame is in this chunk; no copy.
          this.onFrame(len === 0 ? EMPTY : chunk.subarray(pos, pos + len));
          pos += len;
          continue;
        }
        this.frame = Buffer.allocUnsafe(len);
        this.filled = 0;
        this.state = BODY;
      } else if (this.state === BODY) {
        const take = Math.min(this.frame.length - this.filled, n - pos);
        chunk.copy(this.frame, this.filled, pos, pos + take);
        this.filled += take;
        pos += take;
        if (this.filled === this.frame.length) {
          const frame = this.frame;
          this.frame = EMPTY;
          this.filled = 0;
          this.state = HEADER;
          this.onFrame(frame);
        }
      } else {
        const take = Math.min(this.skipLeft, n - pos);
        this.skipLeft -= take;
        pos += take;
        if (this.skipLeft === 0) this.state = HEADER;
      }
    }
  }
}

/** Counters of one FrameWriter. */
export interface FrameWriterCounters {
  /** Frames accepted for writing, and their payload bytes. */
  txFrames: number;
  txBytes: number;
  /** Payloads dropped because the stream already held maxWriteBuffer unsent bytes. */
  dropBackpressure: number;
  /** Payloads dropped for being over maxFrameLength (a 2-byte length cannot describe more than MAX_FRAME_PAYLOAD). */
  dropOversize: number;
  /** Payloads accepted (and counted in txFrames) but never written: the stream closed before the end of their turn. */
  dropUnflushed: number;
}

/** Options of a FrameWriter. */
export interface FrameWriterOptions {
  /** Bytes the stream may hold unsent (its buffer plus this turn's batch) before new payloads are dropped. */
  maxWriteBuffer: number;
  /** Larger payloads are dropped and counted. Default MAX_FRAME_PAYLOAD. */
  maxFrameLength?: number;
}

/**
 * Writes payloads as frames on a byte stream, gathering the payloads of one event-loop turn into one buffer that
 * is written when the turn ends (setImmediate): one write and one syscall per turn rather than per datagram. This
 * is the tunnel's own way of writing to a socket (DatagramChannel with coalesceWrites), so the floor is measured
 * with the same batching. Payloads are dropped, not queued, while the stream holds maxWriteBuffer unsent bytes.
 */
export class FrameWriter {
  /** What was written and dropped. */
  readonly counters: FrameWriterCounters = { txFrames: 0, txBytes: 0, dropBackpressure: 0, dropOversize: 0, dropUnflushed: 0 };
  private readonly stream: Duplex;
  private readonly maxWriteBuffer: number;
  private readonly maxFrameLength: number;
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;

  constructor(stream: Duplex, options: FrameWriterOptions) {
    this.stream = stream;
    this.maxWriteBuffer = options.maxWriteBuffer;
    this.maxFrameLength = Math.min(options.maxFrameLength ?? MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD);
  }

  /** Bytes accepted in this turn and not yet handed to the stream. */
  get batchedBytes(): number {
    return this.pendingBytes;
  }

  /**
   * Accepts one payload for the end-of-turn write; false (and a counted drop) when it is too large or the stream
   * cannot take it now. The payload is copied at the flush, within this turn, so a view is fine.
   */
  send(payload: Buffer): boolean {
    if (payload.length > this.maxFrameLength) {
      this.counters.dropOversize++;
      return false;
    }
    const stream = this.stream;
    if (!stream.writable || stream.writableLength + this.pendingBytes > this.maxWriteBuffer) {
      this.counters.dropBackpressure++;
      return false;
    }
    this.counters.txFrames++;
    this.counters.txBytes += payload.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
    this.pending.push(payload);
    this.pendingBytes += FRAME_HEADER_BYTES + payload.length;
    return true;
  }

  /** Drops what this turn gathered, counted in dropUnflushed (the stream is closing). */
  discard(): void {
    this.counters.dropUnflushed += this.pending.length;
    this.pending.length = 0;
    this.pendingBytes = 0;
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const n = this.pending.length;
    if (n === 0) return;
    if (!this.stream.writable) return this.discard();
    const out = Buffer.allocUnsafe(this.pendingBytes);
    let off = 0;
    for (let i = 0; i < n; i++) off = writeFrame(out, off, this.pending[i]!);
    this.pending.length = 0;
    this.pendingBytes = 0;
    this.stream.write(out);
  };
}
