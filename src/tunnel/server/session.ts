import dgram from 'node:dgram';
import type { EventEmitter } from 'node:events';
import type http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { formatHostPort } from '../address.js';
import { DatagramChannel, emptyChannelCounters, type ChannelDropKind } from '../datagram-channel.js';
import { tapChannel } from '../diagnostics.js';
import { ErrorCodes, type UdpTunnelError } from '../errors.js';
import { IdleTimer } from '../idle-timer.js';
import { maxDatagramTo } from '../limits.js';
import { isLocalResourceError } from '../local-resource.js';
import { Resolver, type ResolvedAddress } from '../resolver.js';
import type { TunnelMode } from './connect-udp-request.js';
import { addSessionTotals, emptySessionTotals, type ServerCounters, type ServerSessionStats, type ServerSessionTotals } from './counters.js';
import type { ResolvedServerOptions } from './options.js';
import type { RefusalTarget, Refusals } from './refusals.js';
import type { RequestFront } from './request-front.js';

/** One relayed tunnel: the request's front and stream, its connected UDP socket and the channel between them. */
interface RelaySession {
  id: string;
  front: RequestFront;
  stream: Duplex;
  udp: dgram.Socket;
  channel: DatagramChannel;
  idle: IdleTimer;
  stats: ServerSessionStats;
  closed: boolean;
  /** Gives back the server-wide and per-connection slots. */
  release: () => void;
}

const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization']);

/** Copies headers for the tap with credentials replaced, so a tap never sees secrets. */
function redactHeaders(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const name = String(pairs[i]).toLowerCase();
    const value = CREDENTIAL_HEADERS.has(name) ? '[redacted]' : String(pairs[i + 1]);
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
  }
  return out;
}

/** Tells the tap about an accepted request and its answer (with `extra` response fields), credentials redacted. */
export function publishTapOpen(id: string, front: RequestFront, extra: Record<string, string>): void {
  if (!tapChannel.hasSubscribers) return;
  tapChannel.publish({
    kind: 'request',
    session: id,
    time: Date.now(),
    headers: redactHeaders(front.rawHeaders),
    ...(front.requestLine ? { requestLine: front.requestLine } : {}),
  });
  const h2 = front.httpVersion === 2;
  const headers = h2 ? { ':status': '200', 'capsule-protocol': '?1', ...extra } : { 'capsule-protocol': '?1', ...extra };
  tapChannel.publish({ kind: 'response', session: id, time: Date.now(), http: h2 ? '2' : '1.1', status: h2 ? 200 : 101, headers });
}

/**
 * The server's relay: turns an admitted request into a session (resolve -> policy -> connected UDP socket ->
 * DatagramChannel over the request's stream) and ends it (stream or socket closed, idle, malformed, shutdown).
 * Emits 'session-open' and 'session-close' (ServerSessionStats) on the server.
 */
export class RelaySessions {
  private readonly opts: ResolvedServerOptions;
  private readonly counters: ServerCounters;
  private readonly refusals: Refusals;
  private readonly events: EventEmitter;
  private readonly resolver: Resolver;
  private readonly sessions = new Set<RelaySession>();
  private nextId = 1;
  private closing = false;
  /** The traffic of the sessions that have ended, summed (totals() adds the live ones). */
  private readonly closedTotals: ServerSessionTotals = emptySessionTotals();

  /** Relays by `opts`, counts into `counters`, refuses through `refusals`, emits on `events` (the TunnelServer). */
  constructor(opts: ResolvedServerOptions, counters: ServerCounters, refusals: Refusals, events: EventEmitter) {
    this.opts = opts;
    this.counters = counters;
    this.refusals = refusals;
    this.events = events;
    this.resolver = new Resolver({ ...(opts.dnsServers ? { servers: opts.dnsServers } : {}), timeoutMs: opts.dnsTimeoutMs });
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

  /**
   * The one relay routine: resolve, apply the policy, open the connected UDP socket, answer, relay both ways.
   * `release` gives back the request's admission slots; it is called on every way out, now or when the session ends.
   */
  async open(front: RequestFront, host: string, port: number, transport: TunnelMode | 'h1' | 'h2', release: () => void): Promise<void> {
    const target = await this.resolveAllowed(front, host, port, release);
    if (target === null) return;
    const requested = formatHostPort(host, port);
    const opened = await this.openTargetSocket(target, port);

    if (!('udp' in opened) || front.gone() || this.closing) {
      if ('udp' in opened) opened.udp.close();
      release();
      if ('error' in opened) this.refuseSocketError(front, opened.error, { target: requested, ...(target.address !== host ? { resolved: target.address } : {}) });
      return;
    }
    const udp = opened.udp;
    const id = `s${this.nextId++}`;
    const stats: ServerSessionStats = {
      id,
      client: front.client,
      target: `${host}:${port}`,
      resolved: target.address,
      transport,
      ...emptyChannelCounters(),
      dropUdpSend: 0,
      dropSendQueue: 0,
      targetUnreachable: 0,
      openedAt: Date.now(),
      durationMs: 0,
      closeReason: '',
    };
    const stream = front.accept();
    publishTapOpen(id, front, {});
    const session = { id, front, stream, udp, stats, closed: false, release } as RelaySession;
    const sendDone = (err: Error | null): void => {
      if (!err) return;
      stats.dropUdpSend++;
      // A pending ICMP error is reported by whichever socket call comes first; a send that reports it fails.
      if (isIcmpUnreachable(err)) this.countUnreachable(stats);
    };
    const maxQueue = this.opts.maxUdpSendQueue;
    session.channel = new DatagramChannel(stream, {
      session: id,
      role: 'server',
      maxCapsuleLength: this.opts.maxCapsuleLength,
      maxWriteBuffer: this.opts.maxStreamBuffer,
      // Datagrams too big for the target's IP version are dropped as oversize before the send, not refused by the
      // kernel; what the target sends back already fits that bound.
      maxDatagram: maxDatagramTo(target.address, this.opts.maxDatagram),
      onDrop: (kind) => this.onDrop(kind),
      onDatagram: (payload) => {
        session.idle.touch();
        // Each queued datagram is a view that pins the client's chunk until the kernel takes it: bound the queue.
        if (udp.getSendQueueCount() >= maxQueue) {
          stats.dropSendQueue++;
          this.counters.limits.udpSendQueue++;
          return;
        }
        udp.send(payload, sendDone);
      },
      onMalformed: (err) => this.onMalformed(session, err),
    });
    session.idle = new IdleTimer(this.opts.idleTimeoutMs, () => {
      this.counters.idleTimeouts++;
      this.closeSession(session, 'idle-timeout');
    });
    udp.removeAllListeners('error');
    udp.on('message', (msg) => {
      session.idle.touch();
      session.channel.send(msg);
    });
    udp.on('error', (err: NodeJS.ErrnoException) => {
      // RFC 9298 §3.1: the stream MUST close once the OS reports the socket no longer usable, which an ICMP
      // Destination Unreachable can cause. An unreachable port, host or network does not do that to a connected
      // UDP socket: the OS reports the error once and the socket keeps sending and receiving (the target may be
      // restarting, or its port may open later). UDP is connectionless, so the session stays and the error is
      // counted; closing would only make the client open a new tunnel for its next datagram. The idle timeout ends
      // a session left without traffic. Any other socket error is taken as the socket being unusable.
      if (isIcmpUnreachable(err)) return this.countUnreachable(stats);
      this.closeSession(session, `udp-error:${err.code ?? err.message}`);
    });
    stream.on('close', () => {
      const rst = (stream as Partial<http2.ServerHttp2Stream>).rstCode;
      this.closeSession(session, rst ? `stream-reset:${rst}` : 'stream-closed');
    });
    stream.on('end', () => {
      // The client finished sending; end our half too so the stream closes cleanly.
      if (!session.closed && !stream.writableEnded) stream.end();
    });
    this.sessions.add(session);
    this.counters.sessionsTotal++;
    this.counters.sessionsActive++;
    this.events.emit('session-open', { id, client: stats.client, target: stats.target, resolved: target.address, transport });
  }

  /**
   * Resolves a request's target and applies the policy to its addresses: the first allowed one, or null after the
   * request was refused (or its client left) and `release` was called.
   */
  async resolveAllowed(front: RequestFront, host: string, port: number, release: () => void): Promise<ResolvedAddress | null> {
    // RFC 9298 §3.1: resolve before replying, and apply the policy to the resolved address (§7).
    const res = await this.resolver.resolve(host);
    if (front.gone()) {
      release();
      return null;
    }
    const requested = formatHostPort(host, port);
    if (!res.ok) {
      release();
      this.refusals.refuse(front, res.error === 'dns_timeout' ? 504 : 502, res.error, res.message, {}, res.rcode, { target: requested });
      return null;
    }
    let chosen: ResolvedAddress | undefined;
    // The first refused address speaks for the request: the resolver lists the preferred one first.
    let refused: { address: string; reason: string; rule?: string } | undefined;
    for (const a of res.addresses) {
      const v = this.opts.policy.check(a.address, port);
      if (v.allowed) {
        chosen = a;
        break;
      }
      refused ??= { address: a.address, reason: v.reason, ...(v.rule !== undefined ? { rule: v.rule } : {}) };
    }
    if (!chosen) {
      release();
      const resolved = refused !== undefined && refused.address !== host ? refused.address : undefined;
      const others = res.addresses.length > 1 ? ` (and ${res.addresses.length - 1} more ${res.addresses.length > 2 ? 'addresses' : 'address'})` : '';
      const shown = resolved !== undefined ? `${requested} (${resolved}${others})` : requested;
      // Said to the remote client: the target and why, never the operator's allow list (the rule stays in the log).
      const details = `target ${shown} is not allowed: ${refused?.reason ?? 'the name has no address'}`;
      const about = { target: requested, ...(resolved !== undefined ? { resolved } : {}), ...(refused?.rule !== undefined ? { rule: refused.rule } : {}) };
      this.refusals.refuse(front, 403, 'destination_ip_prohibited', details, {}, undefined, about);
      return null;
    }
    return chosen;
  }

  private countUnreachable(stats: ServerSessionStats): void {
    stats.targetUnreachable++;
    this.counters.targetUnreachable++;
  }

  /**
   * Opens a request's connected UDP socket (RFC 9298 §3.1: one per request). Creating and connecting it may fail by
   * throwing or by an 'error' event (e.g. bind EMFILE); either way the socket is closed and the error returned.
   */
  private openTargetSocket(target: ResolvedAddress, port: number): Promise<{ udp: dgram.Socket } | { error: Error }> {
    return new Promise((resolve) => {
      let udp: dgram.Socket | null = null;
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        if (udp !== null) {
          // A socket that failed may still report errors while it closes; they must not reach the process.
          udp.removeAllListeners('error');
          udp.on('error', () => {});
          try {
            udp.close();
          } catch {
            /* never bound, or already closed */
          }
        }
        resolve({ error: err instanceof Error ? err : new Error(String(err)) });
      };
      try {
        const socket = dgram.createSocket({ type: target.family === 6 ? 'udp6' : 'udp4' });
        udp = socket;
        socket.once('error', fail);
        socket.connect(port, target.address, () => {
          if (settled) return;
          settled = true;
          resolve({ udp: socket });
        });
      } catch (err) {
        fail(err);
      }
    });
  }

  /** Refuses a request whose UDP socket could not be opened: local exhaustion is the proxy's trouble, the rest the route's. */
  private refuseSocketError(front: RequestFront, err: Error, about: RefusalTarget): void {
    if (isLocalResourceError(err)) return this.refusals.localResourceError(err, front);
    this.refusals.refuse(front, 502, 'destination_ip_unroutable', err.message, {}, undefined, about);
  }

  private onDrop(kind: ChannelDropKind): void {
    if (kind === 'oversize') this.counters.limits.datagramSize++;
    else if (kind === 'backpressure') this.counters.limits.streamBuffer++;
  }

  private onMalformed(session: RelaySession, err: UdpTunnelError): void {
    this.counters.malformedStreams++;
    if (err.code === ErrorCodes.CAPSULE_TOO_LARGE) this.counters.limits.capsuleLength++;
    this.closeSession(session, `malformed: ${err.message}`, 'malformed');
  }

  /** Ends a session once; `end` says how its stream ends (RFC 9297 §3.3: a malformed one is aborted). */
  private closeSession(session: RelaySession, reason: string, end: 'malformed' | 'close' = 'close'): void {
    if (session.closed) return;
    session.closed = true;
    session.idle.stop();
    session.release();
    this.sessions.delete(session);
    this.counters.sessionsActive--;
    try {
      session.udp.close();
    } catch {
      /* already closed */
    }
    session.front.end(end);
    const stats = session.stats;
    Object.assign(stats, session.channel.counters);
    stats.durationMs = Date.now() - stats.openedAt;
    stats.closeReason = reason;
    addSessionTotals(this.closedTotals, stats);
    if (tapChannel.hasSubscribers) tapChannel.publish({ kind: 'close', session: session.id, time: Date.now(), reason });
    this.events.emit('session-close', stats);
  }
}

/** Errors a connected UDP socket reports for an ICMP destination unreachable (port, host or network). */
const ICMP_UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

function isIcmpUnreachable(err: Error): boolean {
  return ICMP_UNREACHABLE_CODES.has(String((err as NodeJS.ErrnoException).code));
}
