/**
 * The reverse tunnel: a local UDP service made reachable at the proxy's public address, over a bound tunnel
 * (draft-ietf-masque-connect-udp-listen). Each remote peer gets its own local socket, as behind a NAT.
 */
import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { formatHostPort, type HostPort } from './address.js';
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import {
  addBoundTunnelCounters,
  BoundTunnel,
  emptyBoundTunnelCounters,
  type BoundContextEvent,
  type BoundSender,
  type BoundTunnelCloseReason,
  type BoundTunnelCounters,
} from './bound-tunnel.js';
import { formatIpPort, type BindTarget } from './codec/bind.js';
import { CLIENT_DEFAULTS } from './defaults.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { IdleTimer } from './idle-timer.js';
import { checkMaxUdpSendQueue } from './limits.js';
import type { Transport, TunnelHandle } from './transport/types.js';
import { literalLookup } from './udp-socket.js';

/** Options of an Exposer. */
export interface ExposerOptions {
  /** Opens the bound tunnels (a new one after each loss). */
  transport: Transport;
  /** The local UDP service remote peers reach. */
  local: HostPort;
  /** A remote peer silent (both ways) this long is forgotten: its socket and context are closed. 0 = never. Default 60 s. */
  idleTimeoutMs?: number;
  /** Remote peers at once; datagrams of further peers are dropped and counted. Default 10000. */
  maxPeers?: number;
  /** Register a compressed context for each remote peer once it sends (saves the address and port per datagram). Default true. */
  compress?: boolean;
  /** Attempts to open the first tunnel in start(). Default 1. */
  maxConnectAttempts?: number;
  /** Delay between attempts, and before reopening a lost tunnel (exponential, jittered). */
  backoff?: BackoffOptions;
  /** Extra request headers; default the transport's own. */
  headers?: [string, string][];
  /** Most contexts open at once on a tunnel (draft §9). Default 256. */
  maxContexts?: number;
  maxCapsuleLength?: number;
  /** Bytes the tunnel's stream may hold unsent before datagrams are dropped. */
  maxStreamBuffer?: number;
  /** Largest UDP payload carried either way; larger ones are dropped and counted. */
  maxDatagram?: number;
  /** Datagrams a peer's local socket may have queued before more for the service are dropped. Default 1024. */
  maxUdpSendQueue?: number;
  /** Whether close() also closes the transport (default true). */
  ownsTransport?: boolean;
  /** Tunnel ids (for diagnostics) are this prefix and a number; default `x`. */
  sessionIdPrefix?: string;
}

/** Exposer's defaults (the connect command's, where an option means the same). */
export const EXPOSER_DEFAULTS = {
  idleTimeoutMs: CLIENT_DEFAULTS.idleTimeoutMs,
  maxPeers: CLIENT_DEFAULTS.maxSessions,
  compress: true,
  maxConnectAttempts: CLIENT_DEFAULTS.maxConnectAttempts,
  backoff: CLIENT_DEFAULTS.backoff,
  maxUdpSendQueue: CLIENT_DEFAULTS.maxUdpSendQueue,
} as const;

/** Datagrams a peer's socket holds while it is being bound and connected; more are dropped (`drops.pending`). */
export const MAX_PENDING_PER_PEER = 64;

/** What 'exposed' reports: where remote peers reach the local service. */
export interface ExposedEvent {
  /** The proxy's public addresses, `IP:PORT` (IPv6 in brackets). */
  public: string[];
  /** The same, parsed. */
  publicAddresses: BindTarget[];
  /** The local service, `HOST:PORT`. */
  local: string;
  /** True after a lost tunnel was replaced (a new binding: the public address may have changed). */
  reopened: boolean;
  /** The tunnel's id. */
  id: string;
  /** The proxy it rides, when the transport knows several. */
  proxy?: string;
}

/** What 'peer-open' reports. */
export interface PeerOpenEvent {
  /** The remote peer, `IP:PORT`. */
  peer: string;
  /** The local socket's port: the source port the service sees for this peer. */
  localPort: number | null;
}

/** What 'peer-close' reports. */
export interface PeerCloseEvent extends PeerOpenEvent {
  /** idle-timeout, tunnel-lost, shutdown, socket-error. */
  reason: string;
  /** Datagrams and bytes from the remote peer, and replies to it. */
  rxDatagrams: number;
  rxBytes: number;
  txDatagrams: number;
  txBytes: number;
  durationMs: number;
  /** The compressed context the peer had, or null. */
  context: number | null;
}

/** Why an Exposer dropped datagrams, beyond what its tunnels count. */
export interface ExposerDrops {
  /** From new remote peers while maxPeers were open. */
  peerLimit: number;
  /** For a peer whose socket was not ready, past MAX_PENDING_PER_PEER. */
  pending: number;
  /** For the service, while the peer's socket had maxUdpSendQueue queued. */
  sendQueue: number;
  /** Lost to a local socket error. */
  socketError: number;
  /** Replies from the service while no tunnel was open. */
  tunnelDown: number;
  /** Replies the tunnel did not take (its counters say why). */
  tunnel: number;
}

/** Counters of an Exposer. */
export interface ExposerCounters {
  /** Tunnels opened (each a binding), lost, and failed attempts to open one. */
  tunnelsOpened: number;
  tunnelsLost: number;
  connectFailures: number;
  /** Remote peers seen in all, open now, and forgotten for being idle. */
  peersTotal: number;
  peersActive: number;
  idleTimeouts: number;
  /** Datagrams and bytes from remote peers. */
  rxDatagrams: number;
  rxBytes: number;
  /** Replies from the service accepted by the tunnel for remote peers. */
  txDatagrams: number;
  txBytes: number;
  drops: ExposerDrops;
}

interface Peer {
  key: string;
  text: string;
  target: { address: string; port: number };
  socket: dgram.Socket;
  ready: boolean;
  /** 'peer-open' was emitted, so 'peer-close' will be. */
  announced: boolean;
  closed: boolean;
  pending: Buffer[];
  idle: IdleTimer;
  context: number | null;
  localPort: number | null;
  openedAt: number;
  rxDatagrams: number;
  rxBytes: number;
  txDatagrams: number;
  txBytes: number;
}

const LOOPBACK_V4 = /^127\./;

/**
 * Exposes a local UDP service through a bound tunnel. start() opens the tunnel and resolves with the public
 * addresses. A lost tunnel is reopened with backoff (a new binding, announced by a new 'exposed'); peers are reset.
 *
 * Events: 'exposed' (ExposedEvent), 'peer-open' (PeerOpenEvent), 'peer-close' (PeerCloseEvent),
 * 'context' (BoundContextEvent of the current tunnel), 'tunnel-lost' ({ id, reason, error?, proxy? }),
 * 'connect-error' ({ error, attempt, willRetry }), 'error' (Error: a tunnel could not be reopened, after which the
 * exposer closes), 'close' ({ reason, error? }).
 */
export class Exposer extends EventEmitter {
  /** What was carried and dropped. */
  readonly counters: ExposerCounters = {
    tunnelsOpened: 0,
    tunnelsLost: 0,
    connectFailures: 0,
    peersTotal: 0,
    peersActive: 0,
    idleTimeouts: 0,
    rxDatagrams: 0,
    rxBytes: 0,
    txDatagrams: 0,
    txBytes: 0,
    drops: { peerLimit: 0, pending: 0, sendQueue: 0, socketError: 0, tunnelDown: 0, tunnel: 0 },
  };
  private readonly opts: ExposerOptions;
  private readonly idleTimeoutMs: number;
  private readonly maxPeers: number;
  private readonly compress: boolean;
  private readonly backoff: BackoffOptions;
  private readonly maxUdpSendQueue: number;
  private readonly abort = new AbortController();
  private readonly peers = new Map<string, Peer>();
  private readonly pastTunnels = emptyBoundTunnelCounters();
  private current: BoundTunnel | null = null;
  private currentId = '';
  private openedAt = 0;
  private lossStreak = 0;
  private nextId = 1;
  /** The local service with its host resolved to an address literal. */
  private service: { host: string; port: number; family: 4 | 6 } | null = null;
  private closing = false;

  constructor(options: ExposerOptions) {
    super();
    this.opts = options;
    this.idleTimeoutMs = options.idleTimeoutMs ?? EXPOSER_DEFAULTS.idleTimeoutMs;
    this.maxPeers = options.maxPeers ?? EXPOSER_DEFAULTS.maxPeers;
    this.compress = options.compress ?? EXPOSER_DEFAULTS.compress;
    this.backoff = options.backoff ?? { ...EXPOSER_DEFAULTS.backoff };
    this.maxUdpSendQueue = checkMaxUdpSendQueue(options.maxUdpSendQueue ?? EXPOSER_DEFAULTS.maxUdpSendQueue);
    for (const [name, v, min] of [
      ['idleTimeoutMs', this.idleTimeoutMs, 0],
      ['maxPeers', this.maxPeers, 1],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < min) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${name} must be an integer of at least ${min}, got ${v}`, { option: name, value: v });
    }
    if (!Number.isInteger(options.local.port) || options.local.port < 1 || options.local.port > 0xffff) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `local port must be 1..65535, got ${options.local.port}`, { option: 'local', value: options.local.port });
    }
  }

  /** The tunnel in use, or null while it is being reopened. */
  get tunnel(): BoundTunnel | null {
    return this.current;
  }

  /** Remote peers with a local socket now. */
  get activePeers(): number {
    return this.peers.size;
  }

  /** The counters of every tunnel so far (ended and current), summed. */
  tunnelCounters(): BoundTunnelCounters {
    const sum = emptyBoundTunnelCounters();
    addBoundTunnelCounters(sum, this.pastTunnels);
    if (this.current) addBoundTunnelCounters(sum, this.current.counters);
    return sum;
  }

  /**
   * Resolves the local service's address, opens the first tunnel (up to maxConnectAttempts times) and resolves with
   * what 'exposed' reports. Rejects with the last error when no tunnel could be opened.
   */
  async start(): Promise<ExposedEvent> {
    if (this.service !== null || this.closing) throw new UdpTunnelError(ErrorCodes.CLOSED, this.closing ? 'exposer is closed' : 'exposer already started');
    const { host, port } = this.opts.local;
    const literal = isIP(host) !== 0 ? host : (await lookup(host)).address;
    this.service = { host: literal, port, family: isIP(literal) === 6 ? 6 : 4 };
    const max = Math.max(1, this.opts.maxConnectAttempts ?? EXPOSER_DEFAULTS.maxConnectAttempts);
    for (let attempt = 1; ; attempt++) {
      try {
        return this.attach(await this.openTunnel(undefined), false);
      } catch (err) {
        const e = asTunnelError(err);
        this.counters.connectFailures++;
        const willRetry = attempt < max && e.retryable && !this.closing;
        this.emit('connect-error', { error: e, attempt, willRetry });
        if (!willRetry || !(await sleep(backoffDelay(attempt, this.backoff), this.abort.signal))) throw e;
      }
    }
  }

  /** Closes every peer socket, the tunnel and (unless ownsTransport is false) the transport. */
  async close(): Promise<void> {
    await this.shutdown('shutdown');
  }

  private async shutdown(reason: string, error?: Error): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.abort.abort();
    for (const p of [...this.peers.values()]) this.closePeer(p, 'shutdown', false);
    const t = this.current;
    if (t) {
      this.current = null;
      t.close();
      addBoundTunnelCounters(this.pastTunnels, t.counters);
    }
    if (this.opts.ownsTransport ?? true) await this.opts.transport.close();
    this.emit('close', { reason, ...(error ? { error } : {}) });
  }

  private async openTunnel(lost: TunnelHandle | undefined): Promise<BoundTunnel> {
    const id = `${this.opts.sessionIdPrefix ?? 'x'}${this.nextId++}`;
    const o = this.opts;
    const tunnel = await BoundTunnel.open({
      transport: o.transport,
      signal: this.abort.signal,
      session: id,
      // The uncompressed context is what lets unknown peers reach the service (draft §4, §8.1).
      uncompressed: true,
      // A refused registration then costs nothing: replies stay uncompressed until the proxy acknowledges.
      awaitAck: true,
      ...(o.headers !== undefined ? { headers: o.headers } : {}),
      ...(lost !== undefined ? { lost } : {}),
      ...(o.maxContexts !== undefined ? { maxContexts: o.maxContexts } : {}),
      ...(o.maxCapsuleLength !== undefined ? { maxCapsuleLength: o.maxCapsuleLength } : {}),
      ...(o.maxStreamBuffer !== undefined ? { maxStreamBuffer: o.maxStreamBuffer } : {}),
      ...(o.maxDatagram !== undefined ? { maxDatagram: o.maxDatagram } : {}),
    });
    this.currentId = id;
    return tunnel;
  }

  private attach(tunnel: BoundTunnel, reopened: boolean): ExposedEvent {
    if (this.closing) {
      tunnel.close();
      throw new UdpTunnelError(ErrorCodes.CLOSED, 'exposer closed while its tunnel was opening');
    }
    // It may have ended between open() resolving and now, before anything listened for its 'close'.
    if (!tunnel.isOpen) throw new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'the bound tunnel ended as soon as it opened');
    this.current = tunnel;
    this.openedAt = Date.now();
    this.counters.tunnelsOpened++;
    const id = this.currentId;
    tunnel.on('message', (payload: Buffer, from: BoundSender) => this.onRemote(payload, from));
    tunnel.on('context', (e: BoundContextEvent) => this.emit('context', { ...e, tunnel: id }));
    tunnel.once('close', (reason: BoundTunnelCloseReason, error?: UdpTunnelError) => this.onTunnelClose(tunnel, id, reason, error));
    const svc = this.service!;
    const event: ExposedEvent = {
      public: tunnel.publicAddresses.map(formatIpPort),
      publicAddresses: [...tunnel.publicAddresses],
      local: formatHostPort(svc.host, svc.port),
      reopened,
      id,
      ...(tunnel.handle.proxy !== undefined ? { proxy: tunnel.handle.proxy } : {}),
    };
    this.emit('exposed', event);
    return event;
  }

  private onTunnelClose(tunnel: BoundTunnel, id: string, reason: BoundTunnelCloseReason, error: UdpTunnelError | undefined): void {
    if (this.current !== tunnel) return;
    this.current = null;
    addBoundTunnelCounters(this.pastTunnels, tunnel.counters);
    if (this.closing) return;
    // The peers' sockets belong to the binding: the next one has another public address, so they start over.
    for (const p of [...this.peers.values()]) this.closePeer(p, 'tunnel-lost', false);
    this.counters.tunnelsLost++;
    // A tunnel that lasted a while starts the backoff over; one lost right away keeps growing it.
    this.lossStreak = Date.now() - this.openedAt >= this.backoff.maxMs ? 1 : this.lossStreak + 1;
    this.emit('tunnel-lost', { id, reason, ...(error ? { error } : {}), ...(tunnel.handle.proxy !== undefined ? { proxy: tunnel.handle.proxy } : {}) });
    void this.reopen(tunnel.handle);
  }

  private async reopen(lost: TunnelHandle): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (!(await sleep(backoffDelay(this.lossStreak + attempt - 1, this.backoff), this.abort.signal))) return;
      try {
        const tunnel = await this.openTunnel(lost);
        this.attach(tunnel, true);
        return;
      } catch (err) {
        if (this.closing) return;
        const e = asTunnelError(err);
        this.counters.connectFailures++;
        this.emit('connect-error', { error: e, attempt, willRetry: e.retryable });
        if (!e.retryable) {
          // Another attempt would meet the same answer (a refusal, a proxy without bind): give up and say so.
          if (this.listenerCount('error') > 0) this.emit('error', e);
          await this.shutdown('failed', e);
          return;
        }
      }
    }
  }

  private onRemote(payload: Buffer, from: BoundSender): void {
    if (this.closing) return;
    const key = `${from.address}|${from.port}`;
    let peer = this.peers.get(key);
    if (peer === undefined) {
      if (this.peers.size >= this.maxPeers) {
        this.counters.drops.peerLimit++;
        return;
      }
      peer = this.openPeer(key, from);
    }
    peer.idle.touch();
    peer.rxDatagrams++;
    peer.rxBytes += payload.length;
    this.counters.rxDatagrams++;
    this.counters.rxBytes += payload.length;
    if (!peer.ready) {
      if (peer.pending.length >= MAX_PENDING_PER_PEER) {
        this.counters.drops.pending++;
        return;
      }
      // Held across turns: a copy, so the stream's buffer is not pinned.
      peer.pending.push(Buffer.from(payload));
      return;
    }
    this.toService(peer, payload);
  }

  private toService(peer: Peer, payload: Buffer): void {
    // Each queued datagram holds its buffer until the kernel takes it: bound the queue, drop beyond it.
    if (peer.socket.getSendQueueCount() >= this.maxUdpSendQueue) {
      this.counters.drops.sendQueue++;
      return;
    }
    peer.socket.send(payload, (err) => {
      if (err) this.counters.drops.socketError++;
    });
  }

  private openPeer(key: string, from: BoundSender): Peer {
    const svc = this.service!;
    const type = svc.family === 6 ? 'udp6' : 'udp4';
    const socket = dgram.createSocket({ type, ipv6Only: type === 'udp6', lookup: literalLookup(svc.family) });
    const peer: Peer = {
      key,
      text: formatHostPort(from.address, from.port),
      target: { address: from.address, port: from.port },
      socket,
      ready: false,
      announced: false,
      closed: false,
      pending: [],
      idle: new IdleTimer(this.idleTimeoutMs, () => {
        this.counters.idleTimeouts++;
        this.closePeer(peer, 'idle-timeout', true);
      }),
      context: null,
      localPort: null,
      openedAt: Date.now(),
      rxDatagrams: 0,
      rxBytes: 0,
      txDatagrams: 0,
      txBytes: 0,
    };
    this.peers.set(key, peer);
    this.counters.peersTotal++;
    this.counters.peersActive = this.peers.size;
    socket.on('error', () => {
      this.counters.drops.socketError += peer.pending.length;
      this.closePeer(peer, 'socket-error', true);
    });
    socket.on('message', (msg) => this.fromService(peer, msg));
    // A loopback service gets a loopback source (nothing else can reach the socket); otherwise the system picks one.
    const loopback = svc.family === 4 ? LOOPBACK_V4.test(svc.host) : svc.host === '::1';
    const bindHost = loopback ? (svc.family === 4 ? '127.0.0.1' : '::1') : svc.family === 4 ? '0.0.0.0' : '::';
    socket.bind(0, bindHost, () => {
      if (peer.closed) return;
      peer.localPort = socket.address().port;
      // Connected: the socket takes datagrams from the service only, and send() needs no address.
      socket.connect(svc.port, svc.host, (err?: Error) => {
        if (peer.closed) return;
        if (err) {
          this.counters.drops.socketError += peer.pending.length;
          this.closePeer(peer, 'socket-error', true);
          return;
        }
        peer.ready = true;
        peer.announced = true;
        this.emit('peer-open', { peer: peer.text, localPort: peer.localPort } satisfies PeerOpenEvent);
        const pending = peer.pending;
        peer.pending = [];
        for (const msg of pending) this.toService(peer, msg);
      });
    });
    // Draft §5: once the peer's address and port are known, name them once instead of in every datagram.
    if (this.compress && this.current) peer.context = this.current.compress(peer.target);
    return peer;
  }

  private fromService(peer: Peer, msg: Buffer): void {
    if (peer.closed) return;
    peer.idle.touch();
    const tunnel = this.current;
    if (tunnel === null) {
      this.counters.drops.tunnelDown++;
      return;
    }
    if (!tunnel.send(msg, peer.target)) {
      this.counters.drops.tunnel++;
      return;
    }
    peer.txDatagrams++;
    peer.txBytes += msg.length;
    this.counters.txDatagrams++;
    this.counters.txBytes += msg.length;
  }

  /** Forgets a peer: closes its socket and, when the tunnel stays, its compressed context (draft §3.3). */
  private closePeer(peer: Peer, reason: string, closeContext: boolean): void {
    if (peer.closed) return;
    peer.closed = true;
    peer.idle.stop();
    peer.pending = [];
    if (this.peers.get(peer.key) === peer) this.peers.delete(peer.key);
    this.counters.peersActive = this.peers.size;
    try {
      peer.socket.close();
    } catch {
      // Already closed by an error.
    }
    if (closeContext && this.current) this.current.decompress(peer.target);
    if (!peer.announced) return;
    const event: PeerCloseEvent = {
      peer: peer.text,
      localPort: peer.localPort,
      reason,
      rxDatagrams: peer.rxDatagrams,
      rxBytes: peer.rxBytes,
      txDatagrams: peer.txDatagrams,
      txBytes: peer.txBytes,
      durationMs: Date.now() - peer.openedAt,
      context: peer.context,
    };
    this.emit('peer-close', event);
  }
}

function asTunnelError(err: unknown): UdpTunnelError {
  return err instanceof UdpTunnelError ? err : new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, String((err as Error)?.message ?? err), {}, { cause: err });
}
