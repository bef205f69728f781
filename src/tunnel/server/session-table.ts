import type dgram from 'node:dgram';
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ChannelDropKind, DatagramChannel } from '../datagram-channel.js';
import { tapChannel } from '../diagnostics.js';
import { ErrorCodes, type UdpTunnelError } from '../errors.js';
import type { IdleTimer } from '../idle-timer.js';
import { addSessionTotals, emptySessionTotals, type ServerCounters, type ServerSessionStats, type ServerSessionTotals } from './counters.js';
import type { ResolvedServerOptions } from './options.js';
import type { Refusals } from './refusals.js';
import type { RequestFront } from './request-front.js';

/** What every relayed tunnel holds: its request's front and stream, its UDP socket, the channel between them. */
export interface TableSession {
  id: string;
  front: RequestFront;
  stream: Duplex;
  udp: dgram.Socket;
  channel: DatagramChannel;
  idle: IdleTimer;
  stats: ServerSessionStats;
  closed: boolean;
  /** Gives back what the session holds (admission slots, a bound port). */
  release: () => void;
}

/** Errors a UDP socket reports for an ICMP destination unreachable (port, host or network). */
const ICMP_UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

/** True for an ICMP destination unreachable reported by a UDP socket. */
export function isIcmpUnreachable(err: Error): boolean {
  return ICMP_UNREACHABLE_CODES.has(String((err as NodeJS.ErrnoException).code));
}

/**
 * The live sessions of one kind of relay (plain or bound) and what they share: traffic totals, the counting of drops
 * and malformed streams, the close routine, and the stream and socket events that end a session.
 */
export abstract class SessionTable<S extends TableSession> {
  protected readonly opts: ResolvedServerOptions;
  protected readonly counters: ServerCounters;
  protected readonly refusals: Refusals;
  protected readonly events: EventEmitter;
  protected readonly sessions = new Set<S>();
  protected closing = false;
  /** The traffic of the sessions that have ended, summed (totals() adds the live ones). */
  private readonly closedTotals: ServerSessionTotals = emptySessionTotals();

  /** Relays by `opts`, counts into `counters`, refuses through `refusals`, emits on `events` (the TunnelServer). */
  constructor(opts: ResolvedServerOptions, counters: ServerCounters, refusals: Refusals, events: EventEmitter) {
    this.opts = opts;
    this.counters = counters;
    this.refusals = refusals;
    this.events = events;
  }

  /** Number of sessions relaying now. */
  get size(): number {
    return this.sessions.size;
  }

  /** Traffic and drops of every session so far; one pass over the live sessions, nothing on the data path. */
  totals(): ServerSessionTotals {
    const t = { ...this.closedTotals };
    for (const s of this.sessions) {
      addSessionTotals(t, s.channel.counters);
      t.dropUdpSend += s.stats.dropUdpSend;
      t.dropSendQueue += s.stats.dropSendQueue;
      t.targetUnreachable += s.stats.targetUnreachable;
    }
    return t;
  }

  /** Closes every session; requests still being set up are refused from now on. */
  shutdown(): void {
    this.closing = true;
    for (const s of [...this.sessions]) this.closeSession(s, 'server-shutdown');
  }

  /** Starts counting a session that is relaying now and tells the server ('session-open' with `open`). */
  protected add(s: S, open: Record<string, unknown>): void {
    this.sessions.add(s);
    this.counters.sessionsTotal++;
    this.counters.sessionsActive++;
    this.events.emit('session-open', open);
  }

  /**
   * Wires what ends a session: its idle timer, the stream closing or resetting, and socket errors. RFC 9298 §3.1:
   * the stream closes once the OS reports the socket unusable, which an ICMP Destination Unreachable does not do to
   * a UDP socket (the error is reported once and the socket keeps working; the target may be restarting), so those
   * are counted and the session stays; the idle timeout ends one left without traffic.
   */
  protected watch(s: S): void {
    s.udp.removeAllListeners('error');
    s.udp.on('error', (err: NodeJS.ErrnoException) => {
      if (isIcmpUnreachable(err)) return this.countUnreachable(s.stats);
      this.closeSession(s, `udp-error:${err.code ?? err.message}`);
    });
    s.stream.on('close', () => {
      const rst = (s.stream as { rstCode?: number }).rstCode;
      this.closeSession(s, rst ? `stream-reset:${rst}` : 'stream-closed');
    });
    s.stream.on('end', () => {
      // The client finished sending; end our half too so the stream closes cleanly.
      if (!s.closed && !s.stream.writableEnded) s.stream.end();
    });
  }

  /** Counts an ICMP unreachable for the session and the server. */
  protected countUnreachable(stats: ServerSessionStats): void {
    stats.targetUnreachable++;
    this.counters.targetUnreachable++;
  }

  /** The channel's drop callback: the server-wide limit counters. */
  protected onDrop(kind: ChannelDropKind): void {
    if (kind === 'oversize') this.counters.limits.datagramSize++;
    else if (kind === 'backpressure') this.counters.limits.streamBuffer++;
  }

  /** A malformed capsule stream: counted, and the session's stream aborted (RFC 9297 §3.3). */
  protected onMalformed(s: S, err: UdpTunnelError): void {
    this.counters.malformedStreams++;
    if (err.code === ErrorCodes.CAPSULE_TOO_LARGE) this.counters.limits.capsuleLength++;
    this.closeSession(s, `malformed: ${err.message}`, 'malformed');
  }

  /** What a kind of session gives back beyond the common parts when it ends. */
  protected onClosed(_s: S): void {}

  /** Ends a session once; `end` says how its stream ends (RFC 9297 §3.3: a malformed one is aborted). */
  protected closeSession(s: S, reason: string, end: 'malformed' | 'close' = 'close'): void {
    if (s.closed) return;
    s.closed = true;
    s.idle.stop();
    s.release();
    this.sessions.delete(s);
    this.counters.sessionsActive--;
    this.onClosed(s);
    try {
      s.udp.close();
    } catch {
      /* already closed */
    }
    s.front.end(end);
    const stats = s.stats;
    Object.assign(stats, s.channel.counters);
    stats.durationMs = Date.now() - stats.openedAt;
    stats.closeReason = reason;
    addSessionTotals(this.closedTotals, stats);
    if (tapChannel.hasSubscribers) tapChannel.publish({ kind: 'close', session: s.id, time: Date.now(), reason });
    this.events.emit('session-close', stats);
  }
}
