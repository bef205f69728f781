import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { formatHostPort } from '../tunnel/address.js';
import { CLIENT_DEFAULTS } from '../tunnel/client.js';
import { SERVER_DEFAULTS } from '../tunnel/server/tunnel-server.js';
import { IdleTimer } from '../tunnel/idle-timer.js';
import { FrameDecoder, FrameWriter, MAX_FRAME_PAYLOAD } from './bare-relay-frames.js';
import { DEFAULT_SOCKET_BUFFER_BYTES, literalLookup, trySetSocketBuffers } from '../tunnel/udp-socket.js';
import { PeerTable } from '../tunnel/peer-table.js';

// A reference floor for the bench, NOT a tunnel: two bare relays in the places of connect and serve, one TCP
// connection per local peer, 2-byte length-prefixed frames, no HTTP. It keeps the tunnel's data-path habits (one
// UDP socket in front with 4 MiB buffers, one connected UDP socket per connection behind, Nagle off, one write
// per event-loop turn, the same write-buffer and pre-connect limits) so that tunnel / relay isolates what HTTP,
// capsules and the tunnel's bookkeeping add over two processes that forward datagrams.

/** Bytes a TCP connection may hold unsent before datagrams are dropped: the tunnel's stream write buffer (maxStreamBuffer). */
export const RELAY_MAX_WRITE_BUFFER = CLIENT_DEFAULTS.maxStreamBuffer;

/** Datagrams and bytes held per peer while its TCP connection is being set up (the client's buffer_options defaults). */
export const RELAY_PENDING_LIMIT = { datagrams: CLIENT_DEFAULTS.buffer.maxDatagrams, bytes: CLIENT_DEFAULTS.buffer.maxBytes } as const;

/** Inactivity that closes a front peer (the client's default) and a back connection (the server's default), ms. */
export const RELAY_IDLE_TIMEOUT_MS = { front: CLIENT_DEFAULTS.idleTimeoutMs, back: SERVER_DEFAULTS.idleTimeoutMs } as const;

/** Local peers (front) and connections (back) held at once: the tunnel's session limit. */
export const RELAY_MAX_SESSIONS = CLIENT_DEFAULTS.maxSessions;

/** Datagrams one relay session dropped, by reason (summed by the bench like a tunnel session's drops). */
export interface RelayDrops {
  /** Over maxDatagram (either direction). */
  oversize: number;
  /** The TCP connection already held maxWriteBuffer unsent bytes. */
  backpressure: number;
  /** Front: the pre-connect queue was full. */
  bufferOverflow: number;
  /** Front: still queued when the session ended without a connection. */
  unsent: number;
  /** Front: the reply could not be sent to the local peer; back: the datagram could not be sent to the target. */
  udpSend: number;
}

/** Statistics of one relay session (a front peer or a back connection), emitted with 'session-close'. */
export interface RelaySessionStats {
  id: string;
  /** Front: the local peer; back: the front's TCP address. */
  peer: string;
  /** Datagrams and payload bytes taken in (front: from the peer; back: frames from TCP). */
  rxDatagrams: number;
  rxBytes: number;
  /** Datagrams and payload bytes passed on back toward the peer (front: UDP to the peer; back: frames on TCP). */
  txDatagrams: number;
  txBytes: number;
  drops: RelayDrops;
  durationMs: number;
  closeReason: string;
}

function emptyDrops(): RelayDrops {
  return { oversize: 0, backpressure: 0, bufferOverflow: 0, unsent: 0, udpSend: 0 };
}

function requireLiteral(host: string, what: string): 4 | 6 {
  const fam = net.isIP(host);
  if (fam !== 4 && fam !== 6) throw new UdpTunnelError(ErrorCodes.INVALID_ADDRESS, `${what} must be an IP address literal, got "${host}"`, { host });
  return fam;
}

function checkMaxDatagram(v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > MAX_FRAME_PAYLOAD) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `maxDatagram must be an integer 0..${MAX_FRAME_PAYLOAD} (2-byte frame length)`, { option: 'maxDatagram', value: v });
  }
  return v;
}

// ---- relay-front ------------------------------------------------------------------------------------------------

/** Options of a RelayFront. */
export interface RelayFrontOptions {
  /** Local UDP address (an IP literal) and port (0 = any). */
  host: string;
  port: number;
  /** The relay-back's TCP address (an IP literal). */
  back: { host: string; port: number };
  /** Speak TLS to the back, trusting this CA (PEM). */
  tls?: { ca: string | Buffer };
  /** No datagram either way for this long closes a peer's connection; 0 = never. Default RELAY_IDLE_TIMEOUT_MS.front. */
  idleTimeoutMs?: number;
  /** Default RELAY_MAX_WRITE_BUFFER. */
  maxWriteBuffer?: number;
  /** Queue per peer while its connection is being set up. Default RELAY_PENDING_LIMIT. */
  pending?: { datagrams: number; bytes: number };
  /** Concurrent peers; datagrams of further peers are dropped and counted. Default RELAY_MAX_SESSIONS. */
  maxPeers?: number;
  /** Larger datagrams are dropped and counted. Default MAX_FRAME_PAYLOAD. */
  maxDatagram?: number;
  /** Receive and send buffer requested for the UDP socket. Default 4 MiB, as the tunnel client's local socket. */
  socketBufferBytes?: number;
}

/** Front-wide counters. */
export interface RelayFrontCounters {
  peersTotal: number;
  peersActive: number;
  /** Datagrams dropped because maxPeers peers were already active. */
  peerOverflow: number;
  /** Datagrams and bytes received from local peers. */
  rxDatagrams: number;
  rxBytes: number;
  /** Datagrams and bytes sent back to local peers. */
  txDatagrams: number;
  txBytes: number;
  /** TCP connections to the back that failed before they were up. */
  connectFailures: number;
  idleTimeouts: number;
  /** All datagrams dropped, any reason (peerOverflow included), as they happen. */
  datagramsDropped: number;
  /** Drops by reason (RelayDrops), summed over closed peers: complete once the front is closed. */
  dropOversize: number;
  dropBackpressure: number;
  dropBufferOverflow: number;
  dropUnsent: number;
  dropUdpSend: number;
}

interface FrontPeer {
  id: string;
  address: string;
  port: number;
  state: 'connecting' | 'open' | 'closed';
  socket: net.Socket;
  writer: FrameWriter | null;
  pending: Buffer[];
  pendingBytes: number;
  idle: IdleTimer;
  stats: RelaySessionStats;
  openedAt: number;
  sendDone: (err: Error | null) => void;
}

/**
 * relay-front, in connect's place: one UDP socket for local peers; per peer (address:port) one TCP connection to
 * the relay-back carrying its datagrams as frames, and the frames coming back sent to the peer from the same socket.
 * Events: 'session-close' (RelaySessionStats), 'error' (UDP socket errors).
 */
export class RelayFront extends EventEmitter {
  /** Front-wide counters. */
  readonly counters: RelayFrontCounters = {
    peersTotal: 0,
    peersActive: 0,
    peerOverflow: 0,
    rxDatagrams: 0,
    rxBytes: 0,
    txDatagrams: 0,
    txBytes: 0,
    connectFailures: 0,
    idleTimeouts: 0,
    datagramsDropped: 0,
    dropOversize: 0,
    dropBackpressure: 0,
    dropBufferOverflow: 0,
    dropUnsent: 0,
    dropUdpSend: 0,
  };
  private readonly opts: Required<Omit<RelayFrontOptions, 'tls'>> & Pick<RelayFrontOptions, 'tls'>;
  private readonly peers = new Set<FrontPeer>();
  // The tunnel client's lookup, so the floor pays what the tunnel pays per datagram.
  private readonly byPeer = new PeerTable<FrontPeer>();
  private udp: dgram.Socket | null = null;
  private nextId = 1;
  private closing = false;

  constructor(options: RelayFrontOptions) {
    super();
    this.opts = {
      idleTimeoutMs: RELAY_IDLE_TIMEOUT_MS.front,
      maxWriteBuffer: RELAY_MAX_WRITE_BUFFER,
      pending: { ...RELAY_PENDING_LIMIT },
      maxPeers: RELAY_MAX_SESSIONS,
      maxDatagram: MAX_FRAME_PAYLOAD,
      socketBufferBytes: DEFAULT_SOCKET_BUFFER_BYTES,
      ...options,
    };
    requireLiteral(this.opts.host, 'the relay-front host');
    requireLiteral(this.opts.back.host, 'the relay-back host');
    checkMaxDatagram(this.opts.maxDatagram);
  }

  /** Binds the UDP socket; resolves with its address. */
  start(): Promise<AddressInfo> {
    const fam = requireLiteral(this.opts.host, 'the relay-front host');
    const type = fam === 6 ? 'udp6' : 'udp4';
    const udp = dgram.createSocket({ type, ipv6Only: type === 'udp6', lookup: literalLookup(fam) });
    this.udp = udp;
    return new Promise((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(this.opts.port, this.opts.host, () => {
        udp.off('error', reject);
        udp.on('error', (err) => this.emit('error', err));
        udp.on('message', (msg, rinfo) => this.onLocalDatagram(msg, rinfo.address, rinfo.port));
        trySetSocketBuffers(udp, this.opts.socketBufferBytes);
        resolve(udp.address());
      });
    });
  }

  /** Number of live peers. */
  get activePeers(): number {
    return this.peers.size;
  }

  /** Closes every peer's connection and the UDP socket. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const p of [...this.peers]) this.closePeer(p, 'shutdown');
    await new Promise<void>((resolve) => (this.udp ? this.udp.close(() => resolve()) : resolve()));
  }

  private onLocalDatagram(msg: Buffer, address: string, port: number): void {
    if (this.closing) return;
    let p = this.byPeer.get(address, port);
    const c = this.counters;
    if (p === undefined) {
      if (this.peers.size >= this.opts.maxPeers) {
        c.peerOverflow++;
        c.datagramsDropped++;
        return;
      }
      p = this.openPeer(address, port);
    }
    p.idle.touch();
    p.stats.rxDatagrams++;
    p.stats.rxBytes += msg.length;
    c.rxDatagrams++;
    c.rxBytes += msg.length;
    if (msg.length > this.opts.maxDatagram) {
      this.drop(p, 'oversize');
      return;
    }
    if (p.state === 'open') {
      // The writer counts its own drops; they join the peer's at close.
      if (!p.writer!.send(msg)) c.datagramsDropped++;
      return;
    }
    const lim = this.opts.pending;
    if (p.pending.length >= lim.datagrams || p.pendingBytes + msg.length > lim.bytes) {
      this.drop(p, 'bufferOverflow');
      return;
    }
    p.pending.push(msg);
    p.pendingBytes += msg.length;
  }

  private drop(p: FrontPeer, kind: keyof RelayDrops, n = 1): void {
    p.stats.drops[kind] += n;
    this.counters.datagramsDropped += n;
  }

  private openPeer(address: string, port: number): FrontPeer {
    const id = `f${this.nextId++}`;
    const { host, port: backPort } = this.opts.back;
    const socket = this.opts.tls ? tls.connect({ host, port: backPort, ca: this.opts.tls.ca }) : net.connect({ host, port: backPort });
    // Frames are small writes on a long-lived connection; Nagle would hold one back behind unacknowledged bytes.
    socket.setNoDelay(true);
    const p: FrontPeer = {
      id,
      address,
      port,
      state: 'connecting',
      socket,
      writer: null,
      pending: [],
      pendingBytes: 0,
      // Runs while connecting too, as the client's does (Envoy #35192).
      idle: new IdleTimer(this.opts.idleTimeoutMs, () => {
        this.counters.idleTimeouts++;
        this.closePeer(p, 'idle-timeout');
      }),
      stats: { id, peer: formatHostPort(address, port), rxDatagrams: 0, rxBytes: 0, txDatagrams: 0, txBytes: 0, drops: emptyDrops(), durationMs: 0, closeReason: '' },
      openedAt: Date.now(),
      sendDone: (err) => {
        if (err) this.drop(p, 'udpSend');
      },
    };
    this.peers.add(p);
    this.byPeer.add(p);
    this.counters.peersTotal++;
    this.counters.peersActive = this.peers.size;
    socket.once(this.opts.tls ? 'secureConnect' : 'connect', () => this.onConnected(p));
    socket.on('error', (err) => {
      if (p.state === 'connecting') this.counters.connectFailures++;
      this.closePeer(p, `tcp-error: ${err.message}`);
    });
    socket.on('close', () => this.closePeer(p, 'tcp-closed'));
    return p;
  }

  private onConnected(p: FrontPeer): void {
    if (p.state !== 'connecting') return;
    p.state = 'open';
    const writer = new FrameWriter(p.socket, { maxWriteBuffer: this.opts.maxWriteBuffer, maxFrameLength: this.opts.maxDatagram });
    p.writer = writer;
    const udp = this.udp!;
    const c = this.counters;
    const decoder = new FrameDecoder(
      (payload) => {
        // A chunk being deframed when the peer closed: its UDP socket may be gone too.
        if (p.state === 'closed') return;
        p.idle.touch();
        p.stats.txDatagrams++;
        p.stats.txBytes += payload.length;
        c.txDatagrams++;
        c.txBytes += payload.length;
        udp.send(payload, p.port, p.address, p.sendDone);
      },
      { maxFrameLength: this.opts.maxDatagram, onOversize: () => this.drop(p, 'oversize') },
    );
    p.socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    p.socket.on('end', () => this.closePeer(p, 'tcp-ended'));
    // What arrived while connecting goes first, in order.
    const queued = p.pending;
    p.pending = [];
    p.pendingBytes = 0;
    for (const msg of queued) if (!writer.send(msg)) this.counters.datagramsDropped++;
  }

  private closePeer(p: FrontPeer, reason: string): void {
    if (p.state === 'closed') return;
    p.state = 'closed';
    p.idle.stop();
    this.peers.delete(p);
    this.byPeer.delete(p);
    this.counters.peersActive = this.peers.size;
    if (p.pending.length > 0) this.drop(p, 'unsent', p.pending.length);
    p.pending = [];
    p.pendingBytes = 0;
    p.socket.destroy();
    const s = p.stats;
    if (p.writer) {
      p.writer.discard();
      s.drops.backpressure += p.writer.counters.dropBackpressure;
      s.drops.oversize += p.writer.counters.dropOversize;
      s.drops.unsent += p.writer.counters.dropUnflushed;
      this.counters.datagramsDropped += p.writer.counters.dropUnflushed;
    }
    const c = this.counters;
    c.dropOversize += s.drops.oversize;
    c.dropBackpressure += s.drops.backpressure;
    c.dropBufferOverflow += s.drops.bufferOverflow;
    c.dropUnsent += s.drops.unsent;
    c.dropUdpSend += s.drops.udpSend;
    s.durationMs = Date.now() - p.openedAt;
    s.closeReason = reason;
    this.emit('session-close', s);
  }
}

// ---- relay-back -------------------------------------------------------------------------------------------------

/** Options of a RelayBack. */
export interface RelayBackOptions {
  /** TCP listen address (an IP literal) and port (0 = any). */
  host: string;
  port: number;
  /** Where every connection's datagrams go: an IP literal and port (the bench's UDP echo). */
  target: { host: string; port: number };
  /** Listen with TLS. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** No datagram either way for this long closes a connection; 0 = never. Default RELAY_IDLE_TIMEOUT_MS.back. */
  idleTimeoutMs?: number;
  /** Default RELAY_MAX_WRITE_BUFFER. */
  maxWriteBuffer?: number;
  /** Concurrent connections; further ones are closed at once and counted. Default RELAY_MAX_SESSIONS. */
  maxConnections?: number;
  /** Larger datagrams are dropped and counted, either direction. Default MAX_FRAME_PAYLOAD. */
  maxDatagram?: number;
}

/** Back-wide counters. */
export interface RelayBackCounters {
  connectionsTotal: number;
  connectionsActive: number;
  /** Connections closed at once because maxConnections were active. */
  connectionsRefused: number;
  /** Frames and payload bytes received on TCP (sent to the target). */
  rxDatagrams: number;
  rxBytes: number;
  /** Target datagrams and bytes written back as frames. */
  txDatagrams: number;
  txBytes: number;
  idleTimeouts: number;
  /** All datagrams dropped, any reason, as they happen. */
  datagramsDropped: number;
  /** Drops by reason (RelayDrops), summed over closed connections: complete once the back is closed. */
  dropOversize: number;
  dropBackpressure: number;
  dropUnsent: number;
  dropUdpSend: number;
}

interface BackConn {
  id: string;
  socket: net.Socket;
  udp: dgram.Socket;
  writer: FrameWriter;
  idle: IdleTimer | null;
  stats: RelaySessionStats;
  openedAt: number;
  closed: boolean;
}

/**
 * relay-back, in serve's place: a TCP listener; each connection gets one connected UDP socket to the target, frames
 * from TCP go out as datagrams and the target's datagrams come back as frames.
 * Events: 'session-close' (RelaySessionStats).
 */
export class RelayBack extends EventEmitter {
  /** Back-wide counters. */
  readonly counters: RelayBackCounters = {
    connectionsTotal: 0,
    connectionsActive: 0,
    connectionsRefused: 0,
    rxDatagrams: 0,
    rxBytes: 0,
    txDatagrams: 0,
    txBytes: 0,
    idleTimeouts: 0,
    datagramsDropped: 0,
    dropOversize: 0,
    dropBackpressure: 0,
    dropUnsent: 0,
    dropUdpSend: 0,
  };
  private readonly opts: Required<Omit<RelayBackOptions, 'tls'>> & Pick<RelayBackOptions, 'tls'>;
  private readonly server: net.Server;
  private readonly conns = new Set<BackConn>();
  private readonly family: 4 | 6;
  private nextId = 1;
  private closing = false;

  constructor(options: RelayBackOptions) {
    super();
    this.opts = {
      idleTimeoutMs: RELAY_IDLE_TIMEOUT_MS.back,
      maxWriteBuffer: RELAY_MAX_WRITE_BUFFER,
      maxConnections: RELAY_MAX_SESSIONS,
      maxDatagram: MAX_FRAME_PAYLOAD,
      ...options,
    };
    requireLiteral(this.opts.host, 'the relay-back host');
    this.family = requireLiteral(this.opts.target.host, 'the relay-back target');
    checkMaxDatagram(this.opts.maxDatagram);
    const t = this.opts.tls;
    this.server = t
      ? tls.createServer({ cert: t.cert, key: t.key }, (s) => this.onConnection(s))
      : net.createServer((s) => this.onConnection(s));
    // The raw TCP connection, also under TLS: Nagle off, as the tunnel server does.
    this.server.on('connection', (raw: net.Socket) => {
      raw.setNoDelay(true);
      raw.on('error', () => {});
    });
    // A failed TLS handshake only loses that connection.
    this.server.on('tlsClientError', () => {});
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Number of live connections. */
  get activeConnections(): number {
    return this.conns.size;
  }

  /** Stops listening and closes every connection and its UDP socket. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of [...this.conns]) this.closeConn(c, 'shutdown');
    await done;
  }

  private onConnection(socket: net.Socket): void {
    socket.on('error', () => {});
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.conns.size >= this.opts.maxConnections) {
      this.counters.connectionsRefused++;
      socket.destroy();
      return;
    }
    // Reading starts once the UDP socket is connected: until then the kernel and the stream's own high-water mark
    // hold the bytes, and nothing here grows.
    socket.pause();
    const id = `b${this.nextId++}`;
    const udp = dgram.createSocket({ type: this.family === 6 ? 'udp6' : 'udp4', lookup: literalLookup(this.family) });
    const c: BackConn = {
      id,
      socket,
      udp,
      writer: new FrameWriter(socket, { maxWriteBuffer: this.opts.maxWriteBuffer, maxFrameLength: this.opts.maxDatagram }),
      idle: null,
      stats: {
        id,
        peer: formatHostPort(socket.remoteAddress ?? '', socket.remotePort ?? 0),
        rxDatagrams: 0,
        rxBytes: 0,
        txDatagrams: 0,
        txBytes: 0,
        drops: emptyDrops(),
        durationMs: 0,
        closeReason: '',
      },
      openedAt: Date.now(),
      closed: false,
    };
    this.conns.add(c);
    this.counters.connectionsTotal++;
    this.counters.connectionsActive = this.conns.size;
    socket.on('close', () => this.closeConn(c, 'tcp-closed'));
    udp.once('error', (err) => this.closeConn(c, `udp-error: ${err.message}`));
    // As the tunnel server: one connected UDP socket per session, default buffer sizes.
    udp.connect(this.opts.target.port, this.opts.target.host, () => this.onUdpConnected(c));
  }

  private onUdpConnected(c: BackConn): void {
    if (c.closed) return;
    const { socket, udp, stats } = c;
    const counters = this.counters;
    c.idle = new IdleTimer(this.opts.idleTimeoutMs, () => {
      counters.idleTimeouts++;
      this.closeConn(c, 'idle-timeout');
    });
    const idle = c.idle;
    const sendDone = (err: Error | null): void => {
      if (err) {
        stats.drops.udpSend++;
        counters.datagramsDropped++;
      }
    };
    const decoder = new FrameDecoder(
      (payload) => {
        if (c.closed) return;
        idle.touch();
        stats.rxDatagrams++;
        stats.rxBytes += payload.length;
        counters.rxDatagrams++;
        counters.rxBytes += payload.length;
        udp.send(payload, sendDone);
      },
      {
        maxFrameLength: this.opts.maxDatagram,
        onOversize: () => {
          stats.drops.oversize++;
          counters.datagramsDropped++;
        },
      },
    );
    udp.removeAllListeners('error');
    // The target unreachable (ICMP -> ECONNREFUSED) or the socket failing ends the connection, as in the server.
    udp.on('error', (err: NodeJS.ErrnoException) => this.closeConn(c, err.code === 'ECONNREFUSED' ? 'target-unreachable' : `udp-error: ${err.code ?? err.message}`));
    udp.on('message', (msg) => {
      idle.touch();
      if (c.writer.send(msg)) {
        stats.txDatagrams++;
        stats.txBytes += msg.length;
        counters.txDatagrams++;
        counters.txBytes += msg.length;
      } else {
        counters.datagramsDropped++;
      }
    });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('end', () => this.closeConn(c, 'tcp-ended'));
    socket.resume();
  }

  private closeConn(c: BackConn, reason: string): void {
    if (c.closed) return;
    c.closed = true;
    c.idle?.stop();
    this.conns.delete(c);
    this.counters.connectionsActive = this.conns.size;
    c.socket.destroy();
    try {
      c.udp.close();
    } catch {
      // Already closed.
    }
    const s = c.stats;
    c.writer.discard();
    s.drops.backpressure += c.writer.counters.dropBackpressure;
    s.drops.oversize += c.writer.counters.dropOversize;
    s.drops.unsent += c.writer.counters.dropUnflushed;
    this.counters.datagramsDropped += c.writer.counters.dropUnflushed;
    this.counters.dropOversize += s.drops.oversize;
    this.counters.dropBackpressure += s.drops.backpressure;
    this.counters.dropUnsent += s.drops.unsent;
    this.counters.dropUdpSend += s.drops.udpSend;
    s.durationMs = Date.now() - c.openedAt;
    s.closeReason = reason;
    this.emit('session-close', s);
  }
}
