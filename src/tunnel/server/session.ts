import dgram from 'node:dgram';
import type { EventEmitter } from 'node:events';
import { formatHostPort } from '../address.js';
import { DatagramChannel } from '../datagram-channel.js';
import { tapChannel } from '../diagnostics.js';
import { IdleTimer } from '../idle-timer.js';
import { maxDatagramTo } from '../limits.js';
import { isLocalResourceError } from '../local-resource.js';
import { Resolver, type ResolvedAddress } from '../resolver.js';
import type { TunnelMode } from './connect-udp-request.js';
import { newSessionStats, type ServerCounters } from './counters.js';
import type { ResolvedServerOptions } from './options.js';
import type { RefusalTarget, Refusals } from './refusals.js';
import type { RequestFront } from './request-front.js';
import { SessionTable, isIcmpUnreachable, type TableSession } from './session-table.js';

/** One relayed tunnel: the request's front and stream, its connected UDP socket and the channel between them. */
type RelaySession = TableSession;

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
export class RelaySessions extends SessionTable<RelaySession> {
  private readonly resolver: Resolver;
  private nextId = 1;

  /** Relays by `opts`, counts into `counters`, refuses through `refusals`, emits on `events` (the TunnelServer). */
  constructor(opts: ResolvedServerOptions, counters: ServerCounters, refusals: Refusals, events: EventEmitter) {
    super(opts, counters, refusals, events);
    this.resolver = new Resolver({ ...(opts.dnsServers ? { servers: opts.dnsServers } : {}), timeoutMs: opts.dnsTimeoutMs });
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
    const stats = newSessionStats(id, front.client, `${host}:${port}`, target.address, transport);
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
    // RFC 9298 §3.1 and ICMP unreachable: see watch(); an unreachable target keeps its session (counted).
    this.watch(session);
    udp.on('message', (msg) => {
      session.idle.touch();
      session.channel.send(msg);
    });
    this.add(session, { id, client: stats.client, target: stats.target, resolved: target.address, transport });
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
}
