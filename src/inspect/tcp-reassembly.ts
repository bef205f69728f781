import type { Buffer } from 'node:buffer';
import { TCP_FLAG } from './ip-tcp.js';
import type { TcpSegment } from './ip-tcp.js';

/** Side of a connection: 0 = the initiator (sent the SYN, or sent the first segment seen), 1 = the other end. */
export type TcpSide = 0 | 1;

/** How one direction of a connection ended. */
export type TcpEndReason = 'fin' | 'rst' | 'capture-end';

/** An address/port pair. */
export interface TcpEndpoint {
  address: string;
  port: number;
}

/** A tracked TCP connection. */
export interface TcpConnection {
  /** 1-based number in order of first appearance. */
  id: number;
  /** endpoints[0] is side 0 (initiator), endpoints[1] side 1. */
  endpoints: [TcpEndpoint, TcpEndpoint];
  /** True when the SYN or SYN-ACK was seen, so sides and stream starts are certain. */
  handshake: boolean;
}

/** Receives the reassembled byte streams. */
export interface TcpStreamListener {
  /** A new connection was seen. */
  onConnection?(conn: TcpConnection, t: number): void;
  /** The next in-order bytes of one side's stream (a view into captured data). */
  onData(conn: TcpConnection, side: TcpSide, data: Buffer, t: number): void;
  /** Bytes at stream offset `offset` are missing (never captured, or dropped at the buffer limit); `missing` may be 0 if unknown. */
  onGap?(conn: TcpConnection, side: TcpSide, offset: number, missing: number, t: number): void;
  /** One side's stream ended (called once per side). */
  onEnd(conn: TcpConnection, side: TcpSide, reason: TcpEndReason, t: number): void;
}

/** Limits of a TcpReassembler. */
export interface TcpReassemblyOptions {
  /** Out-of-order bytes held per direction; segments beyond it are dropped and counted (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Out-of-order segments held per direction, whatever their size (default 4096). */
  maxBufferedSegments?: number;
  /** Connections tracked at once; closed ones are forgotten first, new ones beyond it are dropped (default 4096). */
  maxConnections?: number;
}

/** Counters of a TcpReassembler. */
export interface TcpReassemblyStats {
  segments: number;
  connections: number;
  /** Segments of connections not tracked because maxConnections was reached. */
  droppedConnectionSegments: number;
  droppedConnections: number;
  retransmittedBytes: number;
  outOfOrderSegments: number;
  /** Out-of-order segments dropped because maxBufferedBytes was reached. */
  droppedSegments: number;
  droppedBytes: number;
  gaps: number;
}

/** Zeroed reassembly counters (also the base of the capture decoder's stats). */
export function emptyTcpReassemblyStats(): TcpReassemblyStats {
  return {
    segments: 0,
    connections: 0,
    droppedConnectionSegments: 0,
    droppedConnections: 0,
    retransmittedBytes: 0,
    outOfOrderSegments: 0,
    droppedSegments: 0,
    droppedBytes: 0,
    gaps: 0,
  };
}

/** Default out-of-order buffer per direction. */
export const DEFAULT_TCP_BUFFER = 1024 * 1024;

/** Default number of out-of-order segments held per direction. */
export const DEFAULT_TCP_BUFFER_SEGMENTS = 4096;

/** Default connection table size. */
export const DEFAULT_MAX_CONNECTIONS = 4096;

interface Pending {
  rel: number;
  data: Buffer;
}

interface Direction {
  nextSeq: number | null;
  offset: number;
  pending: Pending[];
  pendingBytes: number;
  finOffset: number | null;
  ended: boolean;
}

interface ConnState {
  conn: TcpConnection;
  dirs: [Direction, Direction];
  closed: boolean;
  isn0: number | null;
}

function newDirection(): Direction {
  return { nextSeq: null, offset: 0, pending: [], pendingBytes: 0, finOffset: null, ended: false };
}

function endpointKey(address: string, port: number): string {
  return `${address}|${port}`;
}

/**
 * Rebuilds both byte streams of each TCP connection from captured segments using sequence numbers (RFC 9293 §3.4):
 * retransmitted and overlapping bytes are delivered once, out-of-order segments wait in a bounded buffer, FIN ends a
 * direction once every byte before it arrived, RST ends both. Streams picked up mid-connection start at the first
 * segment seen.
 */
export class TcpReassembler {
  private readonly listener: TcpStreamListener;
  private readonly maxBuffered: number;
  private readonly maxBufferedSegments: number;
  private readonly maxConnections: number;
  private readonly table = new Map<string, ConnState>();
  private nextId = 1;
  /** Counters. */
  readonly stats: TcpReassemblyStats = emptyTcpReassemblyStats();

  constructor(listener: TcpStreamListener, options: TcpReassemblyOptions = {}) {
    this.listener = listener;
    this.maxBuffered = options.maxBufferedBytes ?? DEFAULT_TCP_BUFFER;
    this.maxBufferedSegments = options.maxBufferedSegments ?? DEFAULT_TCP_BUFFER_SEGMENTS;
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  }

  /** Feeds one captured segment seen at time `t`. */
  push(seg: TcpSegment, t: number): void {
    this.stats.segments++;
    const a = endpointKey(seg.src, seg.srcPort);
    const b = endpointKey(seg.dst, seg.dstPort);
    const key = a < b ? `${a}/${b}` : `${b}/${a}`;
    const syn = (seg.flags & TCP_FLAG.SYN) !== 0;
    const ackFlag = (seg.flags & TCP_FLAG.ACK) !== 0;
    let st = this.table.get(key);
    if (st !== undefined && syn && !ackFlag && (st.closed || (st.isn0 !== null && st.isn0 !== seg.seq))) {
      // A fresh SYN with a new ISN on a known 4-tuple: the port pair was reused for a new connection.
      this.abandon(st, t);
      this.table.delete(key);
      st = undefined;
    }
    if (st === undefined) {
      if ((seg.flags & TCP_FLAG.RST) !== 0 && seg.payload.length === 0) return;
      st = this.create(key, seg, t);
      if (st === undefined) {
        this.stats.droppedConnectionSegments++;
        return;
      }
    }
    if (st.closed) return;
    const conn = st.conn;
    const side: TcpSide = conn.endpoints[0].address === seg.src && conn.endpoints[0].port === seg.srcPort ? 0 : 1;
    const d = st.dirs[side];
    if ((seg.flags & TCP_FLAG.RST) !== 0) {
      this.closeAll(st, 'rst', t);
      return;
    }
    let seq = seg.seq;
    if (syn) {
      if (side === 0 && !ackFlag) st.isn0 = seg.seq;
      conn.handshake = true;
      if (d.nextSeq === null) d.nextSeq = (seg.seq + 1) >>> 0;
      seq = (seq + 1) >>> 0; // RFC 9293 §3.4: the SYN occupies one sequence number; data follows it.
    } else if (d.nextSeq === null) {
      d.nextSeq = seg.seq;
    }
    if (d.ended) return;
    const len = seg.payload.length;
    const diff = (seq - d.nextSeq!) | 0;
    if ((seg.flags & TCP_FLAG.FIN) !== 0) {
      const fin = d.offset + diff + len;
      if (fin >= d.offset && (d.finOffset === null || fin < d.finOffset)) d.finOffset = fin;
    }
    if (len > 0) {
      if (diff + len <= 0) {
        this.stats.retransmittedBytes += len;
      } else if (diff <= 0) {
        this.stats.retransmittedBytes += -diff;
        this.deliver(st, side, seg.payload.subarray(-diff), t);
        this.drain(st, side, t);
      } else {
        this.buffer(d, d.offset + diff, seg.payload);
      }
    }
    this.checkFin(st, side, t);
  }

  /** Ends every open direction at the end of the capture (reporting gaps for bytes never seen). */
  finish(t: number): void {
    for (const st of this.table.values()) {
      if (st.closed) continue;
      this.closeAll(st, 'capture-end', t);
    }
  }

  private create(key: string, seg: TcpSegment, t: number): ConnState | undefined {
    if (this.table.size >= this.maxConnections) {
      for (const [k, v] of this.table) if (v.closed) this.table.delete(k);
      if (this.table.size >= this.maxConnections) {
        this.stats.droppedConnections++;
        return undefined;
      }
    }
    const from = { address: seg.src, port: seg.srcPort };
    const to = { address: seg.dst, port: seg.dstPort };
    const syn = (seg.flags & TCP_FLAG.SYN) !== 0;
    const synAck = syn && (seg.flags & TCP_FLAG.ACK) !== 0;
    // The SYN-ACK's sender is the responder; otherwise the first sender is taken as the initiator.
    const endpoints: [TcpEndpoint, TcpEndpoint] = synAck ? [to, from] : [from, to];
    const conn: TcpConnection = { id: this.nextId++, endpoints, handshake: syn };
    const st: ConnState = { conn, dirs: [newDirection(), newDirection()], closed: false, isn0: null };
    this.table.set(key, st);
    this.stats.connections++;
    this.listener.onConnection?.(conn, t);
    return st;
  }

  private deliver(st: ConnState, side: TcpSide, data: Buffer, t: number): void {
    const d = st.dirs[side];
    let chunk = data;
    if (d.finOffset !== null && d.offset + chunk.length > d.finOffset) chunk = chunk.subarray(0, Math.max(0, d.finOffset - d.offset));
    if (chunk.length === 0) return;
    d.offset += chunk.length;
    d.nextSeq = (d.nextSeq! + chunk.length) >>> 0;
    this.listener.onData(st.conn, side, chunk, t);
  }

  private buffer(d: Direction, rel: number, data: Buffer): void {
    if (d.finOffset !== null && rel >= d.finOffset) return;
    // An identical or covering segment already waiting makes this one a retransmission.
    for (const p of d.pending) {
      if (p.rel <= rel && p.rel + p.data.length >= rel + data.length) {
        this.stats.retransmittedBytes += data.length;
        return;
      }
    }
    if (d.pendingBytes + data.length > this.maxBuffered || d.pending.length >= this.maxBufferedSegments) {
      this.stats.droppedSegments++;
      this.stats.droppedBytes += data.length;
      return;
    }
    this.stats.outOfOrderSegments++;
    let k = d.pending.length;
    while (k > 0 && d.pending[k - 1]!.rel > rel) k--;
    d.pending.splice(k, 0, { rel, data });
    d.pendingBytes += data.length;
  }

  private drain(st: ConnState, side: TcpSide, t: number): void {
    const d = st.dirs[side];
    while (d.pending.length > 0 && d.pending[0]!.rel <= d.offset) {
      const p = d.pending.shift()!;
      d.pendingBytes -= p.data.length;
      const skipBytes = d.offset - p.rel;
      if (skipBytes >= p.data.length) {
        this.stats.retransmittedBytes += p.data.length;
        continue;
      }
      this.stats.retransmittedBytes += skipBytes;
      this.deliver(st, side, p.data.subarray(skipBytes), t);
    }
  }

  private checkFin(st: ConnState, side: TcpSide, t: number): void {
    const d = st.dirs[side];
    if (d.ended || d.finOffset === null || d.offset < d.finOffset) return;
    this.endDirection(st, side, 'fin', t);
    if (st.dirs[0].ended && st.dirs[1].ended) st.closed = true;
  }

  private endDirection(st: ConnState, side: TcpSide, reason: TcpEndReason, t: number): void {
    const d = st.dirs[side];
    if (d.ended) return;
    const gapEnd = d.pending.length > 0 ? d.pending[0]!.rel : d.finOffset;
    if (gapEnd !== null && gapEnd > d.offset) {
      this.stats.gaps++;
      this.listener.onGap?.(st.conn, side, d.offset, gapEnd - d.offset, t);
    }
    d.ended = true;
    d.pending = [];
    d.pendingBytes = 0;
    this.listener.onEnd(st.conn, side, reason, t);
  }

  private closeAll(st: ConnState, reason: TcpEndReason, t: number): void {
    this.endDirection(st, 0, reason, t);
    this.endDirection(st, 1, reason, t);
    st.closed = true;
  }

  private abandon(st: ConnState, t: number): void {
    if (!st.closed) this.closeAll(st, 'capture-end', t);
  }
}
