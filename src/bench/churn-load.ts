import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { DEFAULT_SOCKET_BUFFER_BYTES, trySetSocketBuffers } from '../tunnel/udp-socket.js';
import { SEND_QUEUE_LIMIT } from './generator.js';
import { createProbeBuffer, encodeProbe, readProbe } from './probe.js';
import type { Probe } from './probe.js';
import { LatencyRecorder, SequenceTracker } from './stats.js';

/** Options of a ChurnLoad. */
export interface ChurnLoadOptions {
  /** Where the probes go: an IPv4 or IPv6 literal and a port (a tunnel's local port). */
  host: string;
  port: number;
  /** Datagrams per second over all active peers, sent on schedule whatever the replies do (open loop). */
  rate: number;
  /** UDP payload bytes per probe (see validateProbeSize). */
  size: number;
  /** Peers (local sockets) sending at any time. */
  peers: number;
  /** Peers replaced per second: as many new sockets are opened and the oldest stop sending. */
  churnPerSecond: number;
  /** A peer that stopped sending keeps its socket this long, so replies still on their way are received, ms. */
  lingerMs: number;
  /** Socket buffer size to ask for; refusals are tolerated. Default 4 MiB. */
  socketBufferBytes?: number;
  /** Called just before sockets are closed, with their local ports (e.g. to read their kernel counters one last time). */
  beforeClose?: (ports: readonly number[]) => void;
}

/** Counters of a ChurnLoad so far. */
export interface ChurnLoadCounts {
  /** Probes handed to the sockets. */
  sent: number;
  /** Distinct probes that came back. */
  received: number;
  duplicates: number;
  /** Datagrams received that were not a reply to a probe of this load. */
  invalid: number;
  /** Sends the socket reported as failed (not delivered anywhere). */
  sendErrors: number;
  /** Probes due but not sent: the socket already had SEND_QUEUE_LIMIT sends queued. */
  skippedQueueFull: number;
  /** Probes due but not sent: the sender was more than MAX_BACKLOG_MS behind its schedule. */
  skippedBehind: number;
  peersOpened: number;
  peersClosed: number;
  /** Peers currently sending. */
  peersActive: number;
}

// A sender this far behind its schedule skips ahead instead of bursting, ms.
const MAX_BACKLOG_MS = 50;
// Sends per event-loop turn, so replies are read between bursts.
const MAX_BATCH = 256;

const nowUs = (): number => performance.now() * 1000;

interface Peer {
  socket: Socket;
  port: number;
  flowId: number;
  nextSeq: number;
  tracker: SequenceTracker;
  bufs: (Buffer | undefined)[];
  bufIdx: number;
  /** When it stopped sending (performance.now() ms), or -1 while sending. */
  retiredAtMs: number;
}

/**
 * Open-loop UDP load from a changing set of local peers: `peers` sockets send `rate` probes/s between them, and
 * every second `churnPerSecond` new sockets join while the oldest stop sending, linger for their late replies and
 * close. Each peer is a new source port, so the tunnel sees sessions appear and go all the time.
 */
export class ChurnLoad {
  private readonly active: Peer[] = [];
  private readonly lingering: Peer[] = [];
  private readonly scratch: Probe = { flowId: 0, seq: 0, dueUs: 0, sentUs: 0 };
  private readonly intervalUs: number;
  private readonly flowBase = randomInt(0, 0xffff_ffff);
  private nextFlow = 0;
  private rr = 0;
  private startUs = 0;
  private nextIndex = 0;
  private sending = false;
  private closed = false;
  private tickTimer: NodeJS.Timeout | null = null;
  private tickImmediate: NodeJS.Immediate | null = null;
  private churnTimer: NodeJS.Timeout | null = null;
  private churnDebt = 0;
  private churning = false;
  private markUs = Infinity;
  private readonly onSendDone = (err: Error | null): void => {
    if (err) this.counts.sendErrors++;
  };
  private readonly tick = (): void => this.onTick();
  /** Counters so far. */
  readonly counts: ChurnLoadCounts = {
    sent: 0,
    received: 0,
    duplicates: 0,
    invalid: 0,
    sendErrors: 0,
    skippedQueueFull: 0,
    skippedBehind: 0,
    peersOpened: 0,
    peersClosed: 0,
    peersActive: 0,
  };
  /** Round trip of each first reply, from the moment its probe was handed to the socket, µs. */
  readonly latency = new LatencyRecorder();
  /** When the last reply arrived (performance.now() ms), or null. */
  lastReplyMs: number | null = null;
  /** When the first reply to a probe sent after mark() arrived (performance.now() ms), or null. */
  firstReplyAfterMarkMs: number | null = null;

  constructor(private readonly o: ChurnLoadOptions) {
    if (!Number.isFinite(o.rate) || o.rate <= 0) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `rate must be above 0, got ${String(o.rate)}`, { option: 'rate', value: o.rate });
    if (!Number.isInteger(o.peers) || o.peers < 1) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `peers must be a whole number of at least 1, got ${String(o.peers)}`, { option: 'peers', value: o.peers });
    if (!Number.isFinite(o.churnPerSecond) || o.churnPerSecond < 0) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `churnPerSecond must be 0 or more peers per second, got ${String(o.churnPerSecond)}`, {
        option: 'churnPerSecond',
        value: o.churnPerSecond,
      });
    }
    createProbeBuffer(o.size); // validates the size
    this.intervalUs = 1e6 / o.rate;
  }

  /** Opens the first peers and starts sending. */
  async start(): Promise<void> {
    await this.openPeers(this.o.peers);
    this.startUs = nowUs();
    this.sending = true;
    this.onTick();
    this.churnTimer = setInterval(() => void this.churn(), 1000);
  }

  /** Only replies to probes sent from now on count for firstReplyAfterMarkMs. */
  mark(): void {
    this.markUs = nowUs();
    this.firstReplyAfterMarkMs = null;
  }

  /** Stops sending and churning; sockets stay open for late replies until close(). */
  stopSending(): void {
    this.sending = false;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    if (this.tickImmediate) clearImmediate(this.tickImmediate);
    if (this.churnTimer) clearInterval(this.churnTimer);
    this.tickTimer = null;
    this.tickImmediate = null;
    this.churnTimer = null;
  }

  /** Local ports of every open socket. */
  ports(): number[] {
    return [...this.active, ...this.lingering].map((p) => p.port);
  }

  /** Stops sending and closes every socket. Safe to call more than once. */
  async close(): Promise<void> {
    this.stopSending();
    if (this.closed) return;
    this.closed = true;
    const all = [...this.active.splice(0), ...this.lingering.splice(0)];
    await this.closePeers(all);
    this.counts.peersActive = 0;
  }

  private async openPeers(n: number): Promise<void> {
    const opened = await Promise.allSettled(Array.from({ length: n }, () => this.openPeer()));
    for (const r of opened) {
      if (r.status === 'fulfilled') {
        if (this.closed) {
          // Opened while close() ran: never sent anything.
          r.value.socket.close();
          this.counts.peersClosed++;
        } else {
          this.active.push(r.value);
        }
      }
    }
    const failed = opened.find((r) => r.status === 'rejected');
    this.counts.peersActive = this.active.length;
    if (failed && this.active.length === 0) throw (failed as PromiseRejectedResult).reason;
  }

  private async openPeer(): Promise<Peer> {
    const socket = createSocket({ type: this.o.host.includes(':') ? 'udp6' : 'udp4' });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, this.o.host, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      trySetSocketBuffers(socket, this.o.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER_BYTES);
      // Connected: sends skip the address lookup and only the tunnel's port can answer.
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.connect(this.o.port, this.o.host, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      socket.close();
      throw new UdpTunnelError(ErrorCodes.IO, `cannot open a peer socket to ${this.o.host}:${this.o.port}: ${(err as Error).message}`, {}, { cause: err });
    }
    const peer: Peer = {
      socket,
      port: socket.address().port,
      flowId: (this.flowBase + this.nextFlow++) >>> 0,
      nextSeq: 0,
      tracker: new SequenceTracker(),
      bufs: new Array<Buffer | undefined>(SEND_QUEUE_LIMIT + 1),
      bufIdx: 0,
      retiredAtMs: -1,
    };
    socket.on('message', (msg: Buffer) => this.onReply(peer, msg));
    // ECONNREFUSED and the like: the probe is lost on the way and shows up as not received.
    socket.on('error', () => {});
    this.counts.peersOpened++;
    return peer;
  }

  private async closePeers(peers: Peer[]): Promise<void> {
    if (peers.length === 0) return;
    try {
      this.o.beforeClose?.(peers.map((p) => p.port));
    } catch {
      // A failing observer must not keep sockets open.
    }
    await Promise.all(peers.map((p) => new Promise<void>((resolve) => p.socket.close(() => resolve()))));
    this.counts.peersClosed += peers.length;
  }

  /** Once a second: new peers join, the oldest stop sending, and those past their linger time close. */
  private async churn(): Promise<void> {
    if (!this.sending || this.churning) return;
    this.churning = true;
    try {
      await this.churnOnce();
    } finally {
      this.churning = false;
    }
  }

  private async churnOnce(): Promise<void> {
    const nowMs = performance.now();
    this.churnDebt += this.o.churnPerSecond;
    const n = Math.min(Math.floor(this.churnDebt), this.o.peers);
    this.churnDebt -= Math.floor(this.churnDebt);
    const expired: Peer[] = [];
    while (this.lingering.length > 0 && nowMs - this.lingering[0]!.retiredAtMs >= this.o.lingerMs) expired.push(this.lingering.shift()!);
    await this.closePeers(expired);
    if (n === 0 || !this.sending) return;
    await this.openPeers(n);
    if (!this.sending) return;
    const excess = this.active.length - this.o.peers;
    const retired = excess > 0 ? this.active.splice(0, excess) : [];
    for (const p of retired) p.retiredAtMs = performance.now();
    this.lingering.push(...retired);
    this.counts.peersActive = this.active.length;
  }

  private send(p: Peer, dueUs: number): boolean {
    const socket = p.socket;
    if (socket.getSendQueueCount() >= SEND_QUEUE_LIMIT) return false;
    let buf = p.bufs[p.bufIdx];
    if (buf === undefined) {
      buf = createProbeBuffer(this.o.size);
      p.bufs[p.bufIdx] = buf;
    }
    encodeProbe(buf, p.flowId, p.nextSeq++, dueUs, nowUs());
    socket.send(buf, this.onSendDone);
    // A queued send still needs its buffer: write the next probe into another one.
    if (socket.getSendQueueCount() > 0) p.bufIdx = (p.bufIdx + 1) % p.bufs.length;
    this.counts.sent++;
    return true;
  }

  private onTick(): void {
    this.tickTimer = null;
    this.tickImmediate = null;
    if (!this.sending) return;
    const nowOff = nowUs() - this.startUs;
    // Behind by more than the backlog allows (a stalled event loop): skip ahead and count what was skipped.
    const backlogLimit = Math.max(1, Math.floor((MAX_BACKLOG_MS * 1000) / this.intervalUs));
    const due = Math.floor(nowOff / this.intervalUs) + 1;
    if (due - this.nextIndex > backlogLimit) {
      this.counts.skippedBehind += due - this.nextIndex - backlogLimit;
      this.nextIndex = due - backlogLimit;
    }
    let budget = MAX_BATCH;
    while (budget > 0 && this.nextIndex < due && this.active.length > 0) {
      const p = this.active[this.rr++ % this.active.length]!;
      if (!this.send(p, this.startUs + this.nextIndex * this.intervalUs)) this.counts.skippedQueueFull++;
      this.nextIndex++;
      budget--;
    }
    if (this.nextIndex < due) {
      this.tickImmediate = setImmediate(this.tick);
    } else {
      const waitMs = (this.nextIndex * this.intervalUs - (nowUs() - this.startUs)) / 1000;
      this.tickTimer = setTimeout(this.tick, Math.max(0, waitMs));
    }
  }

  private onReply(p: Peer, msg: Buffer): void {
    const s = this.scratch;
    if (msg.length !== this.o.size || !readProbe(msg, s) || s.flowId !== p.flowId || s.seq >= p.nextSeq) {
      this.counts.invalid++;
      return;
    }
    if (p.tracker.record(s.seq) === 'duplicate') {
      this.counts.duplicates++;
      return;
    }
    this.counts.received++;
    const now = performance.now();
    this.latency.record(now * 1000 - s.sentUs);
    this.lastReplyMs = now;
    if (this.firstReplyAfterMarkMs === null && s.sentUs >= this.markUs) this.firstReplyAfterMarkMs = now;
  }
}
