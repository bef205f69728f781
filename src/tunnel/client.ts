import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { formatHostPort } from './address.js';
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { DatagramChannel, type ChannelCounters } from './datagram-channel.js';
import { tapChannel } from './diagnostics.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { IdleTimer } from './idle-timer.js';
import { checkHeaderTemplates } from './header-template.js';
import type { Transport, TunnelHandle, TunnelRequest } from './transport/types.js';
import { PeerTable } from './peer-table.js';
import { checkMaxDatagram, checkMaxUdpSendQueue, maxDatagramTo } from './limits.js';
import { DEFAULT_SOCKET_BUFFER_BYTES, literalLookup, trySetSocketBuffers } from './udp-socket.js';

/** Envoy `buffer_options`: datagrams held while a session's tunnel is not ready yet. */
export interface BufferOptions {
  enabled: boolean;
  maxDatagrams: number;
  maxBytes: number;
}

/** Options of a TunnelClient. */
export interface TunnelClientOptions {
  /** Local UDP address to listen on. */
  host: string;
  port: number;
  /** Opens tunnels; one per session. */
  transport: Transport;
  /** No datagram either way for this long ends a session (also while connecting); 0 = never. Envoy default 60 s. */
  idleTimeoutMs?: number;
  buffer?: BufferOptions;
  /** Envoy retry_options.max_connect_attempts (default 1: no retry). */
  maxConnectAttempts?: number;
  backoff?: BackoffOptions;
  /** Larger local datagrams are dropped, never truncated (RFC 9298 §5). */
  maxDatagram?: number;
  maxCapsuleLength?: number;
  /** Bytes a stream may hold unsent before datagrams are dropped. */
  maxStreamBuffer?: number;
  /** Concurrent sessions (local peers); further peers are dropped and counted. */
  maxSessions?: number;
  /**
   * Datagrams the local socket may have queued (kernel send buffer full) before tunnel datagrams for local peers
   * are dropped and counted in `drops.sendQueue`. Default 1024.
   */
  maxUdpSendQueue?: number;
  /**
   * What this client's tunnels ask for when the transport is shared by several clients (forwards): their target,
   * POST path and extra headers (which may hold `%NAME%` header templates). Default: the transport's own.
   */
  request?: Omit<TunnelRequest, 'downstream'>;
  /** Whether close() also closes the transport (default true); false when the transport is shared and closed by its owner. */
  ownsTransport?: boolean;
  /** Session ids are this prefix and a number (default `c`: c1, c2, ...). */
  sessionIdPrefix?: string;
}

/** Why datagrams were dropped, per session. */
export interface SessionDrops {
  /** Over --max-datagram, or tunnel datagrams too big for an IPv4 local peer (over 65507 bytes). */
  oversize: number;
  /** Tunnel not ready and buffering off. */
  notReady: number;
  /** Tunnel not ready and the buffer full (Envoy sess_tunnel_buffer_overflow). */
  bufferOverflow: number;
  /** Stream write buffer over its limit. */
  backpressure: number;
  /** Buffered when the session ended without a tunnel. */
  unsent: number;
  /** Tunnel datagrams the local peer could not be sent (socket error). */
  replyFailed: number;
  /** Tunnel datagrams for the local peer dropped because the local socket already had maxUdpSendQueue queued. */
  sendQueue: number;
  /** Datagrams with a context ID other than 0 (RFC 9298 §4). */
  contextId: number;
}

/** A SessionDrops with every count 0. */
export function emptySessionDrops(): SessionDrops {
  return { oversize: 0, notReady: 0, bufferOverflow: 0, backpressure: 0, unsent: 0, replyFailed: 0, sendQueue: 0, contextId: 0 };
}

/** Adds `from`'s counts to `into`, reason by reason. */
export function addDrops(into: SessionDrops, from: SessionDrops): void {
  for (const k of Object.keys(into) as (keyof SessionDrops)[]) into[k] += from[k];
}

/** Statistics of one client session, emitted with 'session-close'. */
export interface ClientSessionStats {
  id: string;
  peer: string;
  /** Datagrams and bytes received from the local peer. */
  rxDatagrams: number;
  rxBytes: number;
  /** Datagrams and bytes handed to the local socket for the local peer (not those dropped in `drops.sendQueue`). */
  txDatagrams: number;
  txBytes: number;
  drops: SessionDrops;
  skippedCapsules: number;
  connectAttempts: number;
  /**
   * The proxy's answer to the last attempt: 101 (HTTP/1.1) or the 2xx of an established tunnel, the status of a
   * refusal, or null when no response came (unreachable, timeout, reset).
   */
  status: number | null;
  openedAt: number;
  readyAfterMs: number | null;
  durationMs: number;
  closeReason: string;
}

/** Client-wide counters, named after Envoy's udp_proxy statistics. */
export interface ClientCounters {
  downstream_sess_total: number;
  downstream_sess_active: number;
  downstream_sess_rx_datagrams: number;
  downstream_sess_rx_bytes: number;
  downstream_sess_tx_datagrams: number;
  downstream_sess_tx_bytes: number;
  downstream_sess_overflow: number;
  idle_timeout: number;
  sess_tunnel_success: number;
  sess_tunnel_failure: number;
  sess_tunnel_buffer_overflow: number;
  upstream_rq_retry: number;
  /** Datagrams dropped either way, for any reason counted in SessionDrops (and peers over maxSessions). */
  datagrams_dropped: number;
}

// 'lost': the tunnel went away and the transport can reopen it; the next datagram does.
type State = 'connecting' | 'open' | 'lost' | 'closed';

interface ClientSession {
  id: string;
  address: string;
  port: number;
  state: State;
  pending: Buffer[];
  pendingBytes: number;
  handle: TunnelHandle | null;
  channel: DatagramChannel | null;
  /** The tunnel lost last, passed to the transport when reopening. */
  lost: TunnelHandle | null;
  idle: IdleTimer;
  abort: AbortController;
  stats: ClientSessionStats;
  sendDone: (err: Error | null) => void;
}

/** TunnelClient's defaults. */
export { CLIENT_DEFAULTS } from './defaults.js';
import { CLIENT_DEFAULTS } from './defaults.js';

/**
 * The client side of udp-tunnel: listens on a local UDP port and gives each local peer (source address and port)
 * its own tunnel, following Envoy's udp_proxy tunneling_config semantics.
 * Events: 'session-open' ({id, peer}), 'session-ready' ({id, peer, attempts, transport, proxy?, reopened}),
 * 'session-close' (ClientSessionStats), 'connect-error' ({id, peer, error, attempt, willRetry}),
 * 'tunnel-lost' ({id, peer, reason, proxy?}: the session stays and reopens on its next datagram).
 */
export class TunnelClient extends EventEmitter {
  readonly counters: ClientCounters = {
    downstream_sess_total: 0,
    downstream_sess_active: 0,
    downstream_sess_rx_datagrams: 0,
    downstream_sess_rx_bytes: 0,
    downstream_sess_tx_datagrams: 0,
    downstream_sess_tx_bytes: 0,
    downstream_sess_overflow: 0,
    idle_timeout: 0,
    sess_tunnel_success: 0,
    sess_tunnel_failure: 0,
    sess_tunnel_buffer_overflow: 0,
    upstream_rq_retry: 0,
    datagrams_dropped: 0,
  };
  private readonly opts: Required<Omit<TunnelClientOptions, 'request' | 'ownsTransport' | 'sessionIdPrefix'>>;
  private readonly request: Omit<TunnelRequest, 'downstream'>;
  private readonly ownsTransport: boolean;
  private readonly sessionIdPrefix: string;
  private local: AddressInfo | null = null;
  private readonly sessions = new Set<ClientSession>();
  private readonly byPeer = new PeerTable<ClientSession>();
  private socket: dgram.Socket | null = null;
  private nextId = 1;
  private closing = false;
  /** Drops of the sessions that have ended, summed (dropsByReason adds the live ones). */
  private readonly closedDrops: SessionDrops = emptySessionDrops();

  constructor(options: TunnelClientOptions) {
    super();
    const { request, ownsTransport, sessionIdPrefix, ...rest } = options;
    this.opts = { ...CLIENT_DEFAULTS, buffer: { ...CLIENT_DEFAULTS.buffer }, backoff: { ...CLIENT_DEFAULTS.backoff }, ...rest };
    this.request = request ?? {};
    this.ownsTransport = ownsTransport ?? true;
    this.sessionIdPrefix = sessionIdPrefix ?? 'c';
    // Refused here, at start, rather than on every session's first datagram.
    if (this.request.headers) checkHeaderTemplates(this.request.headers);
    checkMaxDatagram(this.opts.maxDatagram);
    checkMaxUdpSendQueue(this.opts.maxUdpSendQueue);
  }

  /** Binds the local UDP socket; resolves with the bound address. */
  async start(): Promise<AddressInfo> {
    // Resolved once here, so the socket's lookup only ever sees address literals (see literalLookup).
    const host = isIP(this.opts.host) !== 0 ? this.opts.host : (await lookup(this.opts.host)).address;
    const type = isIP(host) === 6 ? 'udp6' : 'udp4';
    const socket = dgram.createSocket({ type, ipv6Only: type === 'udp6', lookup: literalLookup(type === 'udp6' ? 6 : 4) });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.opts.port, host, () => {
        socket.off('error', reject);
        // A socket error here (rare for UDP) must not kill the process; report it.
        socket.on('error', (err) => this.emit('error', err));
        socket.on('message', (msg, rinfo) => this.onLocalDatagram(msg, rinfo.address, rinfo.port));
        trySetSocketBuffers(socket, DEFAULT_SOCKET_BUFFER_BYTES);
        this.local = socket.address();
        resolve(this.local);
      });
    });
  }

  /** The bound local address. */
  address(): AddressInfo {
    if (!this.socket) throw new UdpTunnelError(ErrorCodes.CLOSED, 'client not started');
    return this.socket.address();
  }

  /** Number of live sessions. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /**
   * Datagrams dropped so far, by reason, over every session (ended and live); computed on demand, so a metrics
   * scrape costs one pass over the live sessions and the data path nothing.
   */
  dropsByReason(): SessionDrops {
    const d = { ...this.closedDrops };
    for (const s of this.sessions) {
      addDrops(d, s.stats.drops);
      if (s.channel) {
        d.backpressure += s.channel.counters.dropBackpressure;
        d.contextId += s.channel.counters.dropContextId;
        d.oversize += s.channel.counters.dropOversize;
      }
    }
    return d;
  }

  /** Closes every session, the transport's connections (unless ownsTransport is false) and the local socket. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const s of [...this.sessions]) this.closeSession(s, 'client-shutdown');
    if (this.ownsTransport) await this.opts.transport.close();
    await new Promise<void>((resolve) => {
      if (!this.socket) return resolve();
      this.socket.close(() => resolve());
    });
  }

  private onLocalDatagram(msg: Buffer, address: string, port: number): void {
    if (this.closing) return;
    let s = this.byPeer.get(address, port);
    if (s === undefined) {
      if (this.sessions.size >= this.opts.maxSessions) {
        this.counters.downstream_sess_overflow++;
        this.counters.datagrams_dropped++;
        return;
      }
      s = this.createSession(address, port);
    }
    s.idle.touch();
    s.stats.rxDatagrams++;
    s.stats.rxBytes += msg.length;
    this.counters.downstream_sess_rx_datagrams++;
    this.counters.downstream_sess_rx_bytes += msg.length;
    if (msg.length > this.opts.maxDatagram) {
      // RFC 9298 §5: too big for the path -> dropped, never truncated.
      s.stats.drops.oversize++;
      this.counters.datagrams_dropped++;
      return;
    }
    if (s.state === 'open') {
      // A refusal is counted through the channel's onDrop.
      s.channel!.send(msg);
      return;
    }
    if (s.state === 'lost') {
      s.state = 'connecting';
      void this.connectSession(s);
    }
    const buf = this.opts.buffer;
    if (!buf.enabled) {
      s.stats.drops.notReady++;
      this.counters.datagrams_dropped++;
      return;
    }
    if (s.pending.length >= buf.maxDatagrams || s.pendingBytes + msg.length > buf.maxBytes) {
      s.stats.drops.bufferOverflow++;
      this.counters.sess_tunnel_buffer_overflow++;
      this.counters.datagrams_dropped++;
      return;
    }
    s.pending.push(msg);
    s.pendingBytes += msg.length;
  }

  private createSession(address: string, port: number): ClientSession {
    const id = `${this.sessionIdPrefix}${this.nextId++}`;
    const s: ClientSession = {
      id,
      address,
      port,
      state: 'connecting',
      pending: [],
      pendingBytes: 0,
      handle: null,
      channel: null,
      lost: null,
      abort: new AbortController(),
      // Envoy #35192: the idle timer also runs while the tunnel is still being set up.
      idle: new IdleTimer(this.opts.idleTimeoutMs, () => {
        this.counters.idle_timeout++;
        this.closeSession(s, 'idle-timeout');
      }),
      stats: {
        id,
        peer: formatHostPort(address, port),
        rxDatagrams: 0,
        rxBytes: 0,
        txDatagrams: 0,
        txBytes: 0,
        drops: emptySessionDrops(),
        skippedCapsules: 0,
        connectAttempts: 0,
        status: null,
        openedAt: Date.now(),
        readyAfterMs: null,
        durationMs: 0,
        closeReason: '',
      },
      sendDone: (err) => {
        if (err) {
          s.stats.drops.replyFailed++;
          this.counters.datagrams_dropped++;
        }
      },
    };
    this.sessions.add(s);
    this.byPeer.add(s);
    this.counters.downstream_sess_total++;
    this.counters.downstream_sess_active = this.sessions.size;
    this.emit('session-open', { id, peer: s.stats.peer });
    void this.connectSession(s);
    return s;
  }

  private async connectSession(s: ClientSession): Promise<void> {
    const max = Math.max(1, this.opts.maxConnectAttempts);
    for (let attempt = 1; attempt <= max; attempt++) {
      if ((s.state as State) === 'closed') return;
      s.stats.connectAttempts = attempt;
      try {
        const local = this.local;
        const request: TunnelRequest = {
          ...this.request,
          ...(local ? { downstream: { remoteAddress: s.address, remotePort: s.port, localAddress: local.address, localPort: local.port } } : {}),
        };
        const handle = await this.opts.transport.open(s.id, s.abort.signal, request, s.lost ? { lost: s.lost } : {});
        if ((s.state as State) === 'closed') {
          handle.abort('close');
          return;
        }
        this.onTunnelReady(s, handle);
        return;
      } catch (err) {
        if ((s.state as State) === 'closed') return;
        const e = err instanceof UdpTunnelError ? err : new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, String((err as Error)?.message ?? err), {}, { cause: err });
        const status = (e.details as { status?: unknown }).status;
        s.stats.status = typeof status === 'number' ? status : null;
        const willRetry = attempt < max && e.retryable;
        this.emit('connect-error', { id: s.id, peer: s.stats.peer, error: e, attempt, willRetry });
        if (!willRetry) {
          this.counters.sess_tunnel_failure++;
          this.closeSession(s, `connect-failed: ${e.message}`);
          return;
        }
        this.counters.upstream_rq_retry++;
        if (!(await sleep(backoffDelay(attempt, this.opts.backoff), s.abort.signal))) return;
      }
    }
  }

  private onTunnelReady(s: ClientSession, handle: TunnelHandle): void {
    this.counters.sess_tunnel_success++;
    s.handle = handle;
    s.state = 'open';
    // A reopened tunnel keeps the first one's set-up time.
    s.stats.readyAfterMs ??= Date.now() - s.stats.openedAt;
    // RFC 9298 §3.3: HTTP/1.1 answers 101, and its transport keeps no pseudo-header; HTTP/2 any 2xx (§3.5).
    const status = Number(handle.responseHeaders[':status']);
    s.stats.status = Number.isInteger(status) ? status : 101;
    const socket = this.socket!;
    const maxQueue = this.opts.maxUdpSendQueue;
    s.channel = new DatagramChannel(handle.stream, {
      session: s.id,
      role: 'client',
      maxCapsuleLength: this.opts.maxCapsuleLength,
      maxWriteBuffer: this.opts.maxStreamBuffer,
      // Tunnel datagrams too big for the local peer's IP version are dropped as oversize before the send; local
      // datagrams already fit it, as they came over that same IP version.
      maxDatagram: maxDatagramTo(s.address, this.opts.maxDatagram),
      onDrop: () => this.counters.datagrams_dropped++,
      onDatagram: (payload) => {
        s.idle.touch();
        // Each queued datagram holds its buffer until the kernel takes it: bound the queue, drop beyond it.
        if (socket.getSendQueueCount() >= maxQueue) {
          s.stats.drops.sendQueue++;
          this.counters.datagrams_dropped++;
          return;
        }
        s.stats.txDatagrams++;
        s.stats.txBytes += payload.length;
        this.counters.downstream_sess_tx_datagrams++;
        this.counters.downstream_sess_tx_bytes += payload.length;
        socket.send(payload, s.port, s.address, s.sendDone);
      },
      onMalformed: (err) => {
        handle.abort('malformed');
        this.closeSession(s, `malformed: ${err.message}`);
      },
    });
    handle.stream.on('close', () => this.onTunnelGone(s, handle, 'tunnel-closed'));
    handle.stream.on('end', () => this.onTunnelGone(s, handle, 'tunnel-ended'));
    const reopened = s.lost !== null;
    s.lost = null;
    this.emit('session-ready', {
      id: s.id,
      peer: s.stats.peer,
      attempts: s.stats.connectAttempts,
      transport: this.opts.transport.name,
      ...(handle.proxy !== undefined ? { proxy: handle.proxy } : {}),
      reopened,
    });
    // Flush what arrived while connecting, in order.
    const pending = s.pending;
    s.pending = [];
    s.pendingBytes = 0;
    for (const msg of pending) s.channel.send(msg);
  }

  /**
   * The tunnel closed or ended under a session. A transport that can reopen tunnels (several proxies) keeps the
   * session: its next datagram opens a new tunnel, so the local peer loses only what was in flight.
   */
  private onTunnelGone(s: ClientSession, handle: TunnelHandle, reason: string): void {
    if (s.state !== 'open' || s.handle !== handle) return;
    if (!this.opts.transport.reopensLostTunnels || this.closing) return this.closeSession(s, reason);
    handle.abort('close');
    this.addChannelStats(s);
    s.handle = null;
    s.channel = null;
    s.lost = handle;
    s.state = 'lost';
    this.emit('tunnel-lost', { id: s.id, peer: s.stats.peer, reason, ...(handle.proxy !== undefined ? { proxy: handle.proxy } : {}) });
  }

  /** Adds what a session's current channel counted to its stats (a session may have several tunnels in turn). */
  private addChannelStats(s: ClientSession): void {
    if (!s.channel) return;
    const c: ChannelCounters = s.channel.counters;
    s.stats.drops.backpressure += c.dropBackpressure;
    s.stats.drops.contextId += c.dropContextId;
    // Tunnel datagrams over --max-datagram or the IPv4 bound (local ones are counted on arrival).
    s.stats.drops.oversize += c.dropOversize;
    s.stats.skippedCapsules += c.skippedCapsules;
  }

  private closeSession(s: ClientSession, reason: string): void {
    if (s.state === 'closed') return;
    s.state = 'closed';
    s.idle.stop();
    s.abort.abort();
    if (this.sessions.delete(s)) this.byPeer.delete(s);
    this.counters.downstream_sess_active = this.sessions.size;
    if (s.pending.length > 0) {
      s.stats.drops.unsent += s.pending.length;
      this.counters.datagrams_dropped += s.pending.length;
      s.pending = [];
      s.pendingBytes = 0;
    }
    if (s.handle) s.handle.abort('close');
    const stats = s.stats;
    this.addChannelStats(s);
    stats.durationMs = Date.now() - stats.openedAt;
    stats.closeReason = reason;
    addDrops(this.closedDrops, stats.drops);
    if (tapChannel.hasSubscribers) tapChannel.publish({ kind: 'close', session: s.id, time: Date.now(), reason });
    this.emit('session-close', stats);
  }
}
