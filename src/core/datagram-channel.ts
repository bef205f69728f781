import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { CapsuleDecoder, type DecodedCapsule } from './codec/capsule-decoder.js';
import { CONTEXT_ID_UDP, MAX_UDP_PAYLOAD, datagramHeaderLength, parseConnectUdpDatagram, writeDatagramCapsule } from './codec/datagram.js';
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
}

const EMPTY = Buffer.alloc(0);

/**
 * Carries UDP payloads as DATAGRAM capsules (RFC 9297 §3.5, RFC 9298 §5) over any byte stream: an HTTP/2 stream,
 * an upgraded HTTP/1.1 socket or a POST body. Transports only establish the stream; this class does the framing.
 */
export class DatagramChannel {
  readonly counters: ChannelCounters = {
    rxDatagrams: 0,
    rxBytes: 0,
    txDatagrams: 0,
    txBytes: 0,
    dropBackpressure: 0,
    dropContextId: 0,
    skippedCapsules: 0,
    dropOversize: 0,
  };
  private readonly stream: Duplex;
  private readonly opts: DatagramChannelOptions;
  private readonly decoder: CapsuleDecoder;
  private readonly txDir: WireDirection;
  private readonly rxDir: WireDirection;
  private readonly maxDatagram: number;
  private failed = false;

  constructor(stream: Duplex, opts: DatagramChannelOptions) {
    this.stream = stream;
    this.opts = opts;
    this.maxDatagram = Math.min(opts.maxDatagram ?? MAX_UDP_PAYLOAD, MAX_UDP_PAYLOAD);
    this.txDir = opts.role === 'client' ? '->' : '<-';
    this.rxDir = opts.role === 'client' ? '<-' : '->';
    this.decoder = new CapsuleDecoder((c) => this.onCapsule(c), { maxCapsuleLength: opts.maxCapsuleLength });
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onEnd());
    // A front may have paused the stream while reading an HTTP/1.1 head; 'data' alone does not undo an explicit pause.
    stream.resume();
  }

  /** Bytes of a partial capsule currently held by the decoder. */
  get bufferedBytes(): number {
    return this.decoder.bufferedBytes;
  }

  /**
   * Sends one UDP payload as a DATAGRAM capsule. Returns false (and counts a drop) when the stream cannot take it
   * now: datagrams are dropped rather than queued without limit (RFC 9298 §5 allows loss).
   */
  send(payload: Buffer): boolean {
    const stream = this.stream;
    if (payload.length > this.maxDatagram) {
      this.drop('oversize');
      return false;
    }
    if (stream.writableLength > this.opts.maxWriteBuffer || this.failed || !stream.writable) {
      this.drop('backpressure');
      return false;
    }
    // One buffer per capsule: header and payload copied together is cheaper than two writes for small datagrams.
    const out = Buffer.allocUnsafe(datagramHeaderLength(payload.length) + payload.length);
    writeDatagramCapsule(out, 0, payload);
    stream.write(out);
    this.counters.txDatagrams++;
    this.counters.txBytes += payload.length;
    if (tapChannel.hasSubscribers) {
      tapChannel.publish({ kind: 'bytes', session: this.opts.session, time: Date.now(), dir: this.txDir, chunk: out });
    }
    return true;
  }

  /** Writes raw capsule bytes (an intermediary forwarding capsules it does not interpret). */
  sendRaw(bytes: Buffer): boolean {
    if (this.failed || !this.stream.writable) return false;
    this.stream.write(bytes);
    return true;
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
    // Only DATAGRAM capsules are delivered with a value (decoder default).
    const d = parseConnectUdpDatagram(c.value);
    if (d.contextId !== CONTEXT_ID_UDP) {
      this.drop('contextId');
      return;
    }
    if (d.payload.length > this.maxDatagram) {
      // RFC 9298 §5: too big for where it goes next -> dropped and counted, never truncated.
      this.drop('oversize');
      return;
    }
    this.counters.rxDatagrams++;
    this.counters.rxBytes += d.payload.length;
    this.opts.onDatagram(d.payload.length === 0 ? EMPTY : d.payload);
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

/** Re-export for callers that need the RFC 9298 payload limit next to the channel. */
export { MAX_UDP_PAYLOAD };
