import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { BIND_CAPSULE_TYPES, CAPSULE_TYPE_DATAGRAM, encodeCapsule } from './codec/capsule.js';
import { CapsuleDecoder, type DecodedCapsule } from './codec/capsule-decoder.js';
import {
  CONTEXT_ID_UDP,
  MAX_UDP_PAYLOAD,
  datagramHeaderLength,
  encodeDatagramCapsule,
  datagramHeaderLengthFor,
  writeDatagramHeader,
  parseConnectUdpDatagram,
  writeDatagramCapsule,
} from './codec/datagram.js';
import { tapChannel, type WireDirection } from './diagnostics.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';

/** Counters of one capsule stream, both directions. */
export interface ChannelCounters {
  /** DATAGRAM capsules with context 0 received from the stream. */
  rxDatagrams: number;
  rxBytes: number;
  /** Datagrams written to the stream. */
  txDatagrams: number;
  txBytes: number;
  /** Datagrams not written because the stream's write buffer was over its limit. */
  dropBackpressure: number;
  /** Datagrams with a context ID other than 0 (RFC 9298 §4: extensions we do not speak), dropped. */
  dropContextId: number;
  /** Capsules of unknown or GREASE types, skipped (RFC 9297 §3.2). */
  skippedCapsules: number;
  /** Datagrams over `maxDatagram`, either direction: dropped, never truncated (RFC 9298 §5). */
  dropOversize: number;
}

/** Why the channel dropped a datagram. */
export type ChannelDropKind = 'backpressure' | 'contextId' | 'oversize';

/** Options of a DatagramChannel. */
export interface DatagramChannelOptions {
  /** Session id, for the tap. */
  session: string;
  /** Which side we are: decides the wire direction of what we send. */
  role: 'client' | 'server';
  /** Cap on one capsule's value (RFC 9297 §3.2 gives no limit; we need one). */
  maxCapsuleLength: number;
  /** Bytes the stream may hold unsent before new datagrams are dropped rather than queued. */
  maxWriteBuffer: number;
  /** Largest UDP payload carried either way; larger ones are dropped and counted. Default 65527 (RFC 9298 §5). */
  maxDatagram?: number;
  /** Called for every drop, so owners can keep live totals. */
  onDrop?: (kind: ChannelDropKind) => void;
  /** Called for each received UDP payload (context 0). The buffer may be a view; consume it synchronously or copy. */
  onDatagram: (payload: Buffer) => void;
  /** Called once when the incoming capsule stream is malformed; the owner must abort the stream. */
  onMalformed: (err: UdpTunnelError) => void;
  /**
   * Gather the datagrams of one event-loop turn into one write. Default: on, except for HTTP/2 streams, whose
   * session already gathers every frame of a turn into one socket write (see send()).
   */
  coalesceWrites?: boolean;
  /**
   * A bound tunnel (draft-ietf-masque-connect-udp-listen): datagrams with a context ID other than 0 go to
   * `onContextDatagram` instead of being dropped, and COMPRESSION_ASSIGN/ACK/CLOSE capsules to `onBindCapsule`.
   */
  bind?: {
    onContextDatagram: (contextId: number, payload: Buffer) => void;
    onBindCapsule: (type: number, value: Buffer) => void;
  };
}

const deliverBind = (type: number | bigint): boolean => type === CAPSULE_TYPE_DATAGRAM || (typeof type === 'number' && BIND_CAPSULE_TYPES.has(type));

const EMPTY = Buffer.alloc(0);

/** A zeroed ChannelCounters, for channels and for stats records that embed them. */
export function emptyChannelCounters(): ChannelCounters {
  return { rxDatagrams: 0, rxBytes: 0, txDatagrams: 0, txBytes: 0, dropBackpressure: 0, dropContextId: 0, skippedCapsules: 0, dropOversize: 0 };
}

/** True for a node:http2 stream (it has a session and a reset code); its session batches writes itself. */
function isHttp2Stream(stream: Duplex): boolean {
  return 'session' in stream && 'rstCode' in stream;
}

/**
 * Carries UDP payloads as DATAGRAM capsules (RFC 9297 §3.5, RFC 9298 §5) over any byte stream: an HTTP/2 stream,
 * an upgraded HTTP/1.1 socket or a POST body. Transports only establish the stream; this class does the framing.
 */
export class DatagramChannel {
  readonly counters: ChannelCounters = emptyChannelCounters();
  private readonly stream: Duplex;
  private readonly opts: DatagramChannelOptions;
  private readonly decoder: CapsuleDecoder;
  private readonly txDir: WireDirection;
  private readonly rxDir: WireDirection;
  private readonly maxDatagram: number;
  private failed = false;
  private readonly coalesce: boolean;
  /** Payloads accepted in this turn, awaiting the flush at its end; their encoded size. */
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  /** Bytes handed to the stream so far. */
  private written = 0;

  constructor(stream: Duplex, opts: DatagramChannelOptions) {
    this.stream = stream;
    this.opts = opts;
    this.maxDatagram = Math.min(opts.maxDatagram ?? MAX_UDP_PAYLOAD, MAX_UDP_PAYLOAD);
    this.txDir = opts.role === 'client' ? '->' : '<-';
    this.rxDir = opts.role === 'client' ? '<-' : '->';
    this.decoder = new CapsuleDecoder((c) => this.onCapsule(c), {
      maxCapsuleLength: opts.maxCapsuleLength,
      ...(opts.bind ? { deliver: deliverBind } : {}),
    });
    this.coalesce = opts.coalesceWrites ?? !isHttp2Stream(stream);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onEnd());
    // A front may have paused the stream while reading an HTTP/1.1 head; 'data' alone does not undo an explicit pause.
    stream.resume();
  }

  /**
   * Sends one UDP payload as a DATAGRAM capsule. Returns false (and counts a drop) when the stream cannot take it
   * now: datagrams are dropped rather than queued without limit (RFC 9298 §5 allows loss).
   *
   * When coalescing, the datagrams of one event-loop turn are copied into one buffer and written together when
   * the turn ends (setImmediate, same loop iteration): one write and one syscall instead of one per datagram on a
   * socket. An HTTP/2 stream is written through at once instead: its session already sends all frames of a turn in
   * one socket write, and a write made from setImmediate would only leave in the next iteration. RFC 9298 §6:
   * either way nothing waits beyond the current turn, so no burst or delay is added.
   */
  send(payload: Buffer): boolean {
    const stream = this.stream;
    if (payload.length > this.maxDatagram) {
      this.drop('oversize');
      return false;
    }
    if (this.failed || !stream.writable || stream.writableLength + this.pendingBytes > this.opts.maxWriteBuffer) {
      this.drop('backpressure');
      return false;
    }
    // Counted as sent once accepted: a pending batch is part of the stream's write buffer (it counts toward
    // maxWriteBuffer above) and, like that buffer, is lost only if the stream dies first.
    this.counters.txDatagrams++;
    this.counters.txBytes += payload.length;
    if (!this.coalesce) {
      this.write(encodeDatagramCapsule(payload));
      return true;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
    this.pending.push(payload);
    this.pendingBytes += datagramHeaderLength(payload.length) + payload.length;
    return true;
  }

  /**
   * Sends a datagram with a non-zero context ID (a bound tunnel's compressed or uncompressed context). `payload` is
   * the UDP payload; `prefix`, if given, goes before it (the uncompressed context's address and port). Written at
   * once, after the datagrams already accepted in this turn; dropped and counted like send() when over the limits.
   */
  sendContext(contextId: number, payload: Buffer, prefix?: Buffer): boolean {
    const stream = this.stream;
    if (payload.length > this.maxDatagram) {
      this.drop('oversize');
      return false;
    }
    const bodyLength = (prefix?.length ?? 0) + payload.length;
    if (this.failed || !stream.writable || stream.writableLength + this.pendingBytes > this.opts.maxWriteBuffer) {
      this.drop('backpressure');
      return false;
    }
    this.counters.txDatagrams++;
    this.counters.txBytes += payload.length;
    this.writePending();
    // One buffer for the capsule: header, the uncompressed context's address header if any, the payload.
    const out = Buffer.allocUnsafe(datagramHeaderLengthFor(bodyLength, contextId) + bodyLength);
    let off = writeDatagramHeader(out, 0, bodyLength, contextId);
    if (prefix) off += prefix.copy(out, off);
    payload.copy(out, off);
    this.write(out);
    return true;
  }

  /**
   * Sends a control capsule (COMPRESSION_ASSIGN/ACK/CLOSE). Never dropped for backpressure: control capsules are few
   * and bounded by their owner. Returns false only when the stream can no longer be written.
   */
  sendCapsule(type: number, value: Uint8Array): boolean {
    if (this.failed || !this.stream.writable) return false;
    this.writePending();
    this.write(encodeCapsule(type, value));
    return true;
  }

  /** Bytes handed to the stream so far (an offset: what was sent up to some write is known by comparing flushedBytes). */
  get writtenBytes(): number {
    return this.written;
  }

  /** Bytes the stream has passed on (written minus its unsent buffer). */
  get flushedBytes(): number {
    return this.written - this.stream.writableLength;
  }

  /** Bytes waiting to be written to the stream (its buffer and this turn's batch). */
  get bufferedBytes(): number {
    return this.stream.writableLength + this.pendingBytes;
  }

  /** Writes raw capsule bytes (an intermediary forwarding capsules it does not interpret). */
  sendRaw(bytes: Buffer): boolean {
    if (this.failed || !this.stream.writable) return false;
    // Keeps the byte order: datagrams accepted earlier go first.
    this.writePending();
    this.write(bytes);
    return true;
  }

  /** End of the turn: writes the datagrams accepted during it. */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    this.writePending();
  };

  private writePending(): void {
    const n = this.pending.length;
    if (n === 0) return;
    const out = Buffer.allocUnsafe(this.pendingBytes);
    let off = 0;
    for (let i = 0; i < n; i++) off = writeDatagramCapsule(out, off, this.pending[i]!);
    this.pending.length = 0;
    this.pendingBytes = 0;
    if (this.failed || !this.stream.writable) return;
    this.write(out);
  }

  private write(bytes: Buffer): void {
    this.written += bytes.length;
    this.stream.write(bytes);
    if (tapChannel.hasSubscribers) {
      tapChannel.publish({ kind: 'bytes', session: this.opts.session, time: Date.now(), dir: this.txDir, chunk: bytes });
    }
  }

  private onData(chunk: Buffer): void {
    if (this.failed) return;
    if (tapChannel.hasSubscribers) {
      tapChannel.publish({ kind: 'bytes', session: this.opts.session, time: Date.now(), dir: this.rxDir, chunk });
    }
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.fail(err);
    }
  }

  private onEnd(): void {
    if (this.failed) return;
    if (tapChannel.hasSubscribers) {
      tapChannel.publish({ kind: 'end', session: this.opts.session, time: Date.now(), dir: this.rxDir });
    }
    try {
      // RFC 9297 §3.3: a stream that ends inside a capsule is malformed.
      this.decoder.end();
    } catch (err) {
      this.fail(err);
    }
  }

  private onCapsule(c: DecodedCapsule): void {
    if (c.value === null) {
      this.counters.skippedCapsules++;
      return;
    }
    const value = c.value;
    if (c.type !== CAPSULE_TYPE_DATAGRAM) {
      // Only a bound channel asks for other types: the bind capsules.
      this.opts.bind!.onBindCapsule(Number(c.type), value);
      return;
    }
    let payload: Buffer;
    if (value.length > 0 && value[0] === CONTEXT_ID_UDP && value.length - 1 <= MAX_UDP_PAYLOAD) {
      // RFC 9298 §5: a one-byte context ID 0 is what peers send; taken without building a parse result.
      payload = value.subarray(1);
    } else {
      const d = parseConnectUdpDatagram(value);
      if (d.contextId !== CONTEXT_ID_UDP) {
        if (this.opts.bind === undefined) {
          this.drop('contextId');
          return;
        }
        this.opts.bind.onContextDatagram(d.contextId, d.payload);
        return;
      }
      payload = d.payload;
    }
    if (payload.length > this.maxDatagram) {
      // RFC 9298 §5: too big for where it goes next -> dropped and counted, never truncated.
      this.drop('oversize');
      return;
    }
    this.counters.rxDatagrams++;
    this.counters.rxBytes += payload.length;
    this.opts.onDatagram(payload.length === 0 ? EMPTY : payload);
  }

  private drop(kind: ChannelDropKind): void {
    if (kind === 'backpressure') this.counters.dropBackpressure++;
    else if (kind === 'contextId') this.counters.dropContextId++;
    else this.counters.dropOversize++;
    this.opts.onDrop?.(kind);
  }

  private fail(err: unknown): void {
    this.failed = true;
    const e =
      err instanceof UdpTunnelError
        ? err
        : new UdpTunnelError(ErrorCodes.IO, `capsule stream failed: ${(err as Error)?.message ?? String(err)}`, {}, { cause: err });
    this.opts.onMalformed(e);
  }
}
