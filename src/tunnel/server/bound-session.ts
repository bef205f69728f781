import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import type { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { BindContexts } from '../bind-contexts.js';
import {
  CAPSULE_TYPE_COMPRESSION_ACK,
  CAPSULE_TYPE_COMPRESSION_ASSIGN,
  CAPSULE_TYPE_COMPRESSION_CLOSE,
  CONNECT_UDP_BIND_HEADER,
  PROXY_PUBLIC_ADDRESS_HEADER,
  decodeCompressionAck,
  decodeCompressionAssign,
  decodeCompressionClose,
  decodeUncompressedDatagram,
  encodeCompressionAck,
  encodeCompressionClose,
  encodeUncompressedDatagram,
  formatConnectUdpBind,
  formatIp,
  formatIpPort,
  formatProxyPublicAddress,
  parseIpv4,
  parseIpv6,
  type BindTarget,
} from '../codec/bind.js';
import { DatagramChannel } from '../datagram-channel.js';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { IdleTimer } from '../idle-timer.js';
import { maxDatagramTo } from '../limits.js';
import { isLocalResourceError } from '../local-resource.js';
import type { ResolvedAddress } from '../resolver.js';
import { newSessionStats, type ServerCounters, type ServerSessionStats } from './counters.js';
import type { ResolvedServerOptions } from './options.js';
import type { Refusals } from './refusals.js';
import type { RequestFront } from './request-front.js';
import { publishTapOpen, type RelaySessions } from './session.js';
import { SessionTable, type TableSession } from './session-table.js';

/** One bound tunnel (draft-ietf-masque-connect-udp-listen): a public UDP socket, its contexts and the client's stream. */
interface BoundSession extends TableSession {
  /** The bound port, given back on close. */
  port: number;
  contexts: BindContexts;
  /** Context 0's target when the request named one (draft §3), else null (`*`). */
  target: BindTarget | null;
  /** Address families the bound socket can send to. */
  reaches: ReadonlySet<4 | 6>;
  /** Stream offsets at which the compression answers still waiting behind flow control end (draft §9). */
  responses: number[];
  /**
   * Addresses this session sent to or heard from lately, with what was decided about them, and the policy that
   * decided. Keyed by `address port`; by the target object itself for the stable targets of context 0 and of compressed
   * contexts; for an uncompressed IPv4 target by its 6 address and port bytes as one number.
   */
  dests: Map<string | number | BindTarget, Dest>;
  destsOf: unknown;
}

/** One address and port as a bound session uses it, worked out once rather than per datagram. */
interface Dest {
  target: BindTarget;
  /** What send() is given: IPv4 targets of a dual-stack socket as mapped IPv6. */
  sendAddress: string;
  /** Largest payload that can go to it (IPv4 carries less, RFC 9298 §5). */
  maxDatagram: number;
  /** Why it may not be used as a destination or a sender: the policy refused it, or it is port 0. */
  refused: 'policy' | 'port' | null;
  /** The uncompressed-context header naming it (draft §4), made when first needed. */
  prefix: Buffer | null;
}

/** Addresses a bound session remembers; the table starts over when full. */
const MAX_DESTS = 1024;

const EMPTY = Buffer.alloc(0);

/** A UDP sender or target as the bind codec writes it: IPv4-mapped IPv6 as IPv4, IPv6 in RFC 5952 form. */
function bindTargetOf(address: string, port: number): BindTarget | null {
  // The kernel's dotted quads are well formed: only IPv6 text needs the parse (mapped IPv4, RFC 5952 form).
  if (!address.includes(':')) return { ipVersion: 4, address, port };
  if (address.startsWith('::ffff:') && address.includes('.')) address = address.slice(7);
  const v4 = parseIpv4(address);
  if (v4 !== null) return { ipVersion: 4, address, port };
  const v6 = parseIpv6(address);
  return v6 === null ? null : { ipVersion: 6, address: formatIp(v6), port };
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/**
 * The server's bound relay: turns an admitted bound request into a session with its own public UDP port (draft §7),
 * relays per the draft's contexts (§3-§5) with the target policy applied to every destination and registration (§9),
 * and ends it. Emits 'session-open' (with `bound`) and 'session-close' on the server, like the plain relay.
 */
export class BoundSessions extends SessionTable<BoundSession> {
  private readonly relay: RelaySessions;
  /** Bound ports held per client address (maxBoundPortsPerClient). */
  private readonly perClient = new Map<string, number>();
  /** Ports of the range this server holds, so a bind does not try them. */
  private readonly portsInUse = new Set<number>();
  /** Ports bound or being bound now (maxBoundPorts). */
  private reservedPorts = 0;
  private nextId = 1;

  /** Relays by `opts`, counts into `counters`, refuses through `refusals`, emits on `events`; resolves through `relay`. */
  constructor(opts: ResolvedServerOptions, counters: ServerCounters, refusals: Refusals, events: EventEmitter, relay: RelaySessions) {
    super(opts, counters, refusals, events);
    this.relay = relay;
  }

  /** The address bound sockets use: the option, else the listen host (the IPv4 wildcard when that is a name). */
  private bindHost(): string {
    const host = this.opts.bindAddress ?? this.opts.host;
    return isIP(host) === 0 ? '0.0.0.0' : host;
  }

  /**
   * Opens a bound session for an admitted request: `target` is context 0's target, or null for `*`. Resolves 'fallback'
   * (nothing answered, `release` not called) when the target's family cannot be reached from the bind address: the
   * caller relays it as plain CONNECT-UDP, which the client accepted by naming a target (draft §3).
   */
  async open(front: RequestFront, target: { host: string; port: number } | null, transport: 'h1' | 'h2', release: () => void): Promise<'fallback' | void> {
    const clientKey = front.conn.state.address;
    if (this.reservedPorts >= this.opts.maxBoundPorts) {
      release();
      this.counters.limits.boundPorts++;
      return this.refusals.refuse(front, 503, 'connection_limit_reached', `this proxy has ${this.opts.maxBoundPorts} ports bound`);
    }
    const held = this.perClient.get(clientKey) ?? 0;
    if (held >= this.opts.maxBoundPortsPerClient) {
      release();
      this.counters.limits.boundPortsPerClient++;
      return this.refusals.refuse(front, 503, 'connection_limit_reached', `this client holds ${held} bound ports`);
    }
    const host = this.bindHost();
    const family: 4 | 6 = isIP(host) === 6 ? 6 : 4;
    // A socket on the IPv6 wildcard is dual-stack (Node's default): it reaches both families.
    const reaches = new Set<4 | 6>(family === 4 ? [4] : host === '::' ? [4, 6] : [6]);
    let zero: BoundSession['target'] = null;
    if (target !== null) {
      const resolved: ResolvedAddress | null = await this.relay.resolveAllowed(front, target.host, target.port, release);
      if (resolved === null) return;
      if (!reaches.has(resolved.family)) return 'fallback';
      zero = bindTargetOf(resolved.address, target.port);
    }
    this.reservedPorts++;
    this.perClient.set(clientKey, held + 1);
    const giveBack = (port: number | null): void => {
      this.reservedPorts--;
      const n = (this.perClient.get(clientKey) ?? 1) - 1;
      if (n <= 0) this.perClient.delete(clientKey);
      else this.perClient.set(clientKey, n);
      if (port !== null) this.portsInUse.delete(port);
    };
    const bound = await this.bindSocket(host, family);
    if (!('udp' in bound) || front.gone() || this.closing) {
      if ('udp' in bound) {
        bound.udp.close();
        giveBack(bound.port);
      } else giveBack(null);
      release();
      if ('error' in bound) {
        if (isLocalResourceError(bound.error)) return this.refusals.localResourceError(bound.error, front);
        return this.refusals.refuse(front, 503, 'proxy_internal_error', `could not bind a UDP port: ${bound.error.message}`);
      }
      if ('exhausted' in bound) {
        this.counters.limits.boundPorts++;
        return this.refusals.refuse(front, 503, 'connection_limit_reached', 'no port of the bind range is free');
      }
      return;
    }
    const udp = bound.udp;
    const local = udp.address();
    const announced = this.opts.publicAddress ?? (isWildcard(local.address) ? (front.conn.socket.localAddress ?? local.address) : local.address);
    const pub = bindTargetOf(announced, local.port) ?? { ipVersion: family, address: local.address, port: local.port };
    const id = `b${this.nextId++}`;
    const stats: ServerSessionStats = {
      ...newSessionStats(id, front.client, target === null ? '*' : `${target.host}:${target.port}`, zero?.address ?? '', transport),
      bound: formatIpPort(pub),
    };
    // Draft §6 and §7: the proxy grants bind with Connect-UDP-Bind: ?1 and names the tuples it bound.
    const answer = { [CONNECT_UDP_BIND_HEADER]: formatConnectUdpBind(), [PROXY_PUBLIC_ADDRESS_HEADER]: formatProxyPublicAddress([pub]) };
    const stream = front.accept(answer);
    publishTapOpen(id, front, answer);
    const s = {
      id,
      front,
      stream,
      udp,
      port: bound.port,
      stats,
      target: zero,
      reaches,
      responses: [],
      dests: new Map(),
      destsOf: this.opts.policy,
      closed: false,
      release: () => {
        release();
        giveBack(bound.port);
      },
      contexts: new BindContexts({ side: 'proxy', maxContexts: this.opts.maxBindContexts, wildcardTarget: target === null }),
    } as unknown as BoundSession;
    s.channel = new DatagramChannel(stream, {
      session: id,
      role: 'server',
      maxCapsuleLength: this.opts.maxCapsuleLength,
      maxWriteBuffer: this.opts.maxStreamBuffer,
      maxDatagram: this.opts.maxDatagram,
      onDrop: (kind) => this.onDrop(kind),
      onDatagram: (payload) => this.fromClientZero(s, payload),
      onMalformed: (err) => this.onMalformed(s, err),
      bind: {
        onContextDatagram: (contextId, payload) => this.fromClientContext(s, contextId, payload),
        onBindCapsule: (type, value) => this.onCapsule(s, type, value),
      },
    });
    s.idle = new IdleTimer(this.opts.idleTimeoutMs, () => {
      this.counters.idleTimeouts++;
      this.closeSession(s, 'idle-timeout');
    });
    // An unconnected socket may hear ICMP errors of its sends: one target's trouble, not the socket's (see watch()).
    this.watch(s);
    udp.on('message', (msg, rinfo) => this.fromPeer(s, msg, rinfo));
    this.counters.bind.sessions++;
    this.counters.bind.portsInUse++;
    this.add(s, { id, client: stats.client, target: stats.target, resolved: stats.resolved, transport, bound: stats.bound });
  }

  /** What a socket of `family` passes to send() for `address`: IPv4 targets of a dual-stack socket as mapped IPv6. */
  private sendAddress(address: string, family: 4 | 6): string {
    return family === 6 && isIP(address) === 4 ? `::ffff:${address}` : address;
  }

  /**
   * Binds a UDP socket on `host`: any port the OS picks, or a free port of the bind range tried from a random start
   * (bind, never probe-then-bind). `exhausted` when the range has no free port.
   */
  private async bindSocket(host: string, family: 4 | 6): Promise<{ udp: dgram.Socket; port: number } | { error: Error } | { exhausted: true }> {
    const range = this.opts.bindPorts;
    if (range === undefined) {
      const r = await bindOnce(host, family, 0);
      return 'udp' in r ? { udp: r.udp, port: r.udp.address().port } : r;
    }
    const n = range.to - range.from + 1;
    const start = Math.floor(Math.random() * n);
    let busy = 0;
    for (let i = 0; i < n && busy < 64; i++) {
      const port = range.from + ((start + i) % n);
      if (this.portsInUse.has(port)) continue;
      this.portsInUse.add(port);
      const r = await bindOnce(host, family, port);
      if ('udp' in r) return { udp: r.udp, port };
      this.portsInUse.delete(port);
      const code = (r.error as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' && code !== 'EACCES') return r;
      busy++;
    }
    return { exhausted: true };
  }

  /** Context 0 from the client: the request's target (draft §3); on a `*` tunnel the stream is aborted. */
  private fromClientZero(s: BoundSession, payload: Buffer): void {
    if (s.target === null) {
      try {
        s.contexts.routeDatagram(0);
      } catch (err) {
        return this.onMalformed(s, err as UdpTunnelError);
      }
      return;
    }
    s.idle.touch();
    this.sendUdp(s, payload, this.dest(s, s.target, s.target));
  }

  private fromClientContext(s: BoundSession, contextId: number, payload: Buffer): void {
    let route;
    try {
      route = s.contexts.routeDatagram(contextId);
    } catch (err) {
      return this.onMalformed(s, err as UdpTunnelError);
    }
    if (route.kind === 'discard') {
      // Draft §3.3: datagrams for closed (or never registered, §3.1) contexts are discarded silently.
      this.counters.bind.contextDrops++;
      return;
    }
    s.idle.touch();
    if (route.kind === 'compressed') return this.sendUdp(s, payload, this.dest(s, route.target, route.target));
    if (route.kind === 'udp') return this.fromClientZero(s, payload);
    let dest: Dest;
    let body: Buffer;
    if (payload.length >= 7 && payload[0] === 4 && s.reaches.has(4)) {
      // Draft §4, IPv4: version, 4 address bytes, port. Looked up by those bytes, so a known target costs no parse.
      const key = payload.readUInt32BE(1) * 65536 + payload.readUInt16BE(5);
      const known = this.cached(s, key);
      dest = known ?? this.dest(s, { ipVersion: 4, address: `${payload[1]}.${payload[2]}.${payload[3]}.${payload[4]}`, port: payload.readUInt16BE(5) }, key);
      body = payload.subarray(7);
    } else {
      let d;
      try {
        d = decodeUncompressedDatagram(payload);
      } catch {
        this.counters.bind.malformedDatagrams++;
        return;
      }
      if (!s.reaches.has(d.ipVersion)) {
        // Draft §7: a family the proxy did not announce is dropped.
        this.counters.bind.familyDrops++;
        return;
      }
      dest = this.dest(s, d);
      body = d.payload;
    }
    if (dest.refused === 'port') {
      this.counters.bind.malformedDatagrams++;
      return;
    }
    // Draft §9: with the uncompressed context open, every datagram's target passes the policy.
    if (dest.refused === 'policy') {
      this.counters.bind.policyDrops++;
      return;
    }
    this.sendUdp(s, body, dest);
  }

  private sendUdp(s: BoundSession, payload: Buffer, dest: Dest): void {
    if (payload.length > dest.maxDatagram) {
      s.channel.counters.dropOversize++;
      this.counters.limits.datagramSize++;
      return;
    }
    s.channel.counters.rxDatagrams++;
    s.channel.counters.rxBytes += payload.length;
    if (s.udp.getSendQueueCount() >= this.opts.maxUdpSendQueue) {
      s.stats.dropSendQueue++;
      this.counters.limits.udpSendQueue++;
      return;
    }
    s.udp.send(payload, dest.target.port, dest.sendAddress, (err) => {
      if (err) s.stats.dropUdpSend++;
    });
  }

  /** A packet to the public port: its sender's compressed context, context 0, or the uncompressed context (draft §4-§5, §8). */
  private fromPeer(s: BoundSession, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (s.closed) return;
    const from = bindTargetOf(rinfo.address, rinfo.port);
    if (from === null) {
      this.counters.bind.unknownSenderDrops++;
      return;
    }
    s.idle.touch();
    const id = s.contexts.idFor(from);
    if (id !== undefined) {
      s.channel.sendContext(id, msg);
      return;
    }
    const zero = s.target;
    if (zero !== null && zero.port === from.port && zero.address === from.address) {
      s.channel.send(msg);
      return;
    }
    const unc = s.contexts.uncompressed;
    // Draft §8.1: with no uncompressed context only the senders the client registered get through; the policy
    // keeps out senders the client could not have reached itself.
    const dest = unc === null ? null : this.dest(s, from);
    if (dest === null || dest.refused !== null) {
      this.counters.bind.unknownSenderDrops++;
      return;
    }
    dest.prefix ??= encodeUncompressedDatagram(from, EMPTY);
    s.channel.sendContext(unc!, msg, dest.prefix);
  }

  private onCapsule(s: BoundSession, type: number, value: Buffer): void {
    try {
      if (type === CAPSULE_TYPE_COMPRESSION_ASSIGN) {
        const a = decodeCompressionAssign(value);
        const act = s.contexts.receiveAssign(a);
        if (act.action === 'close') {
          if (act.reason === 'limit') this.counters.limits.bindContexts++;
          return this.respond(s, CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionClose(a.contextId));
        }
        if (a.ipVersion !== 0) {
          // Draft §9: a registration's target passes the policy like any target; §7: a family not bound is refused.
          const refused = !s.reaches.has(a.ipVersion) || this.dest(s, { ipVersion: a.ipVersion, address: a.address, port: a.port }).refused !== null;
          if (refused) {
            s.contexts.closeLocal(a.contextId);
            this.counters.bind.assignsRefused++;
            return this.respond(s, CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionClose(a.contextId));
          }
        }
        this.respond(s, CAPSULE_TYPE_COMPRESSION_ACK, encodeCompressionAck(a.contextId));
        if (act.closeOwn !== null) this.respond(s, CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionClose(act.closeOwn));
        return;
      }
      if (type === CAPSULE_TYPE_COMPRESSION_ACK) return s.contexts.receiveAck(decodeCompressionAck(value));
      if (type === CAPSULE_TYPE_COMPRESSION_CLOSE) return s.contexts.receiveClose(decodeCompressionClose(value));
    } catch (err) {
      // Draft §3.1: a malformed bind capsule is a capsule protocol error (RFC 9297 §3.3: abort the stream).
      this.onMalformed(s, err instanceof UdpTunnelError ? err : new UdpTunnelError(ErrorCodes.BIND_MALFORMED, String((err as Error)?.message ?? err), { rule: 'decode', rfc: 'draft-ietf-masque-connect-udp-listen §3' }));
    }
  }

  /** A remembered destination, when the table is still the current policy's. */
  private cached(s: BoundSession, key: string | number | BindTarget): Dest | undefined {
    if (s.destsOf !== this.opts.policy) {
      s.dests.clear();
      s.destsOf = this.opts.policy;
    }
    return s.dests.get(key);
  }

  /**
   * What the session knows about `t`, worked out once: the uncompressed context asks the target policy about every
   * datagram both ways (draft §9), and a peer seldom changes address. A policy reload starts the table over.
   */
  private dest(s: BoundSession, t: BindTarget, key: string | number | BindTarget = `${t.address} ${t.port}`): Dest {
    const known = this.cached(s, key);
    if (known !== undefined) return known;
    if (s.dests.size >= MAX_DESTS) s.dests.clear();
    const refused = t.port === 0 ? 'port' : this.opts.policy.check(t.address, t.port).allowed ? null : 'policy';
    const d: Dest = {
      target: t,
      sendAddress: this.sendAddress(t.address, s.reaches.has(6) ? 6 : 4),
      maxDatagram: maxDatagramTo(t.address, this.opts.maxDatagram),
      refused,
      prefix: null,
    };
    s.dests.set(key, d);
    return d;
  }

  /** Sends a compression answer; past maxBindResponses answers waiting behind flow control the stream is aborted (draft §9). */
  private respond(s: BoundSession, type: number, value: Buffer): void {
    if (s.closed) return;
    const flushed = s.channel.flushedBytes;
    while (s.responses.length > 0 && s.responses[0]! <= flushed) s.responses.shift();
    // Draft §9 bounds the answers that cannot be sent now because of flow control. Answers written while the stream
    // keeps up leave with this turn's writes (a burst of registrations is answered in one go); only those written
    // while the stream is backed up (over its high-water mark) wait, and are counted.
    const stream = s.stream;
    const backedUp = stream.writableNeedDrain || stream.writableLength > stream.writableHighWaterMark;
    if (backedUp && s.responses.length >= this.opts.maxBindResponses) {
      this.counters.limits.bindResponses++;
      return this.closeSession(s, `${s.responses.length} compression answers waiting behind flow control`, 'malformed');
    }
    s.channel.sendCapsule(type, value);
    if (backedUp) s.responses.push(s.channel.writtenBytes);
  }

  protected override onClosed(_s: BoundSession): void {
    this.counters.bind.portsInUse--;
  }
}


/** Binds one UDP socket; a failure (thrown or as an 'error' event) closes it and is returned. */
function bindOnce(host: string, family: 4 | 6, port: number): Promise<{ udp: dgram.Socket } | { error: Error }> {
  return new Promise((resolve) => {
    let settled = false;
    const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      try {
        socket.close();
      } catch {
        /* never bound */
      }
      resolve({ error: err instanceof Error ? err : new Error(String(err)) });
    };
    socket.once('error', fail);
    try {
      socket.bind({ port, address: host, exclusive: true }, () => {
        if (settled) return;
        settled = true;
        resolve({ udp: socket });
      });
    } catch (err) {
      fail(err);
    }
  });
}
