/**
 * The client side of one bound UDP tunnel (draft-ietf-masque-connect-udp-listen, "Proxying Bound UDP in HTTP"):
 * one request with target `*` that sends to and receives from any peer through the public address the proxy bound.
 */
import type { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { BindContexts, type BindSide } from './bind-contexts.js';
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
  encodeCompressionAssign,
  encodeCompressionClose,
  encodeUncompressedDatagram,
  formatIp,
  parseConnectUdpBind,
  parseIpv4,
  parseIpv6,
  parseProxyPublicAddress,
  type BindTarget,
} from './codec/bind.js';
import { MAX_UDP_PAYLOAD } from './codec/datagram.js';
import { DatagramChannel } from './datagram-channel.js';
import { CLIENT_DEFAULTS } from './defaults.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { checkMaxDatagram } from './limits.js';
import type { Transport, TunnelHandle } from './transport/types.js';

/** Where a bound tunnel sends a datagram: an IP address literal and a UDP port. */
export interface BoundPeer {
  address: string;
  port: number;
}

/** The sender of a datagram received through a bound tunnel. */
export interface BoundSender extends BoundPeer {
  family: 'IPv4' | 'IPv6';
}

/** Options of BoundTunnel.open. */
export interface BoundTunnelOptions {
  /** Opens the request; the caller owns it (BoundTunnel never closes a transport). */
  transport: Transport;
  /** Aborts the request while it is being set up, and closes the tunnel after. */
  signal?: AbortSignal;
  /** Session id for diagnostics (the inspect tap); default `bind`. */
  session?: string;
  /** Extra request headers; default the transport's own. */
  headers?: [string, string][];
  /** The tunnel this one replaces, so a transport over several proxies can move on from a lost one. */
  lost?: TunnelHandle;
  /** Register the uncompressed context at once (receive from any sender, send to any target). Default true. */
  uncompressed?: boolean;
  /**
   * With `uncompressed`, resolve open() only once the proxy acknowledged the uncompressed context, so senders are
   * delivered from then on (before, the proxy drops them, draft §8). Default true.
   */
  awaitUncompressedAck?: boolean;
  /** How long open() waits for that acknowledgement. Default 10 s. */
  ackTimeoutMs?: number;
  /**
   * Send on a compressed context only once the proxy acknowledged it (until then, on the uncompressed context).
   * Default false: the draft (§3.1) allows using it at once, at the risk of losing what is sent before a refusal.
   */
  awaitAck?: boolean;
  /** Most contexts open at once, both sides' (draft §9); registrations past it are refused. Default 256. */
  maxContexts?: number;
  /** Cap on one capsule's value. */
  maxCapsuleLength?: number;
  /**
   * Bytes the stream may hold unsent: datagrams past it are dropped; a compression response (ACK or CLOSE) past it
   * aborts the tunnel (draft §9: buffered compression responses must be bounded).
   */
  maxStreamBuffer?: number;
  /** Largest UDP payload carried either way; larger ones are dropped and counted. Default 65527. */
  maxDatagram?: number;
}

/** Datagrams a bound tunnel dropped, by reason. */
export interface BoundTunnelDrops {
  /** Received on a context that was closed (draft §3.3: discarded silently). */
  closedContext: number;
  /** Received on a context never registered (draft §3.1: a pre-emptive datagram whose registration did not arrive). */
  unknownContext: number;
  /** Over maxDatagram, either way. */
  oversize: number;
  /** Not sent: the stream held maxStreamBuffer bytes unsent. */
  backpressure: number;
  /** Not sent or registered: the proxy listed no public address of the target's IP family (draft §7). */
  wrongFamily: number;
  /** Not sent: no compressed context for the target and the uncompressed context is closed. */
  noContext: number;
  /** Not sent: the tunnel is closed. */
  notOpen: number;
}

/** Counters of one bound tunnel. */
export interface BoundTunnelCounters {
  /** UDP payloads received from senders, and their bytes (payload only). */
  rxDatagrams: number;
  rxBytes: number;
  /** Of those, how many came on a compressed context. */
  rxCompressed: number;
  /** UDP payloads sent to targets, and their bytes. */
  txDatagrams: number;
  txBytes: number;
  /** Of those, how many went on a compressed context. */
  txCompressed: number;
  /** This side's registrations the proxy answered with COMPRESSION_CLOSE before acknowledging them. */
  registrationsRefused: number;
  /** The proxy's registrations this side answered with COMPRESSION_CLOSE. */
  registrationsRejected: number;
  /** Registrations not made because maxContexts were open. */
  registrationsOverLimit: number;
  drops: BoundTunnelDrops;
}

/** A zeroed BoundTunnelCounters. */
export function emptyBoundTunnelCounters(): BoundTunnelCounters {
  return {
    rxDatagrams: 0,
    rxBytes: 0,
    rxCompressed: 0,
    txDatagrams: 0,
    txBytes: 0,
    txCompressed: 0,
    registrationsRefused: 0,
    registrationsRejected: 0,
    registrationsOverLimit: 0,
    drops: { closedContext: 0, unknownContext: 0, oversize: 0, backpressure: 0, wrongFamily: 0, noContext: 0, notOpen: 0 },
  };
}

/** Adds `from`'s counts to `into`, field by field. */
export function addBoundTunnelCounters(into: BoundTunnelCounters, from: BoundTunnelCounters): void {
  for (const k of Object.keys(into) as (keyof BoundTunnelCounters)[]) {
    if (k !== 'drops') into[k] += from[k];
  }
  for (const k of Object.keys(into.drops) as (keyof BoundTunnelDrops)[]) into.drops[k] += from.drops[k];
}

/** A change of context state, emitted as 'context'. */
export interface BoundContextEvent {
  /** assigned: registered (COMPRESSION_ASSIGN); acked: acknowledged (COMPRESSION_ACK); closed: COMPRESSION_CLOSE. */
  event: 'assigned' | 'acked' | 'closed';
  id: number;
  /** Who sent the capsule: this side (`client`) or the proxy. */
  by: BindSide;
  /** Who registered the context. */
  openedBy: BindSide;
  /** The compressed context's target, or null for the uncompressed context. */
  target: BindTarget | null;
  /** For `closed`: a registration refused before it was acknowledged, and why when this side refused it. */
  refused?: boolean;
  reason?: string;
}

/** Why a bound tunnel closed. */
export type BoundTunnelCloseReason = 'closed' | 'aborted' | 'malformed' | 'tunnel-closed' | 'tunnel-ended' | 'limit';

const EMPTY = new Uint8Array(0);

/** How long open() waits for the proxy to acknowledge the uncompressed context by default. */
export const DEFAULT_ACK_TIMEOUT_MS = 10_000;

/** `target` with its address in the codec's text form, or null when the address is not an IP literal or the port is out of range. */
function normalizeTarget(peer: BoundPeer): BindTarget | null {
  if (!Number.isInteger(peer.port) || peer.port < 0 || peer.port > 0xffff) return null;
  const text = peer.address.startsWith('[') && peer.address.endsWith(']') ? peer.address.slice(1, -1) : peer.address;
  const v4 = parseIpv4(text);
  if (v4 !== null) return { ipVersion: 4, address: formatIp(v4), port: peer.port };
  const v6 = parseIpv6(text);
  if (v6 !== null) return { ipVersion: 6, address: formatIp(v6), port: peer.port };
  return null;
}

function badTarget(peer: BoundPeer): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_ADDRESS, `'${String(peer.address)}' port ${String(peer.port)} is not an IP address literal and UDP port`, {
    host: String(peer.address),
  });
}

function notGranted(header: string, reason: string, status: number | null): UdpTunnelError {
  return new UdpTunnelError(
    ErrorCodes.BIND_NOT_GRANTED,
    `the proxy did not grant bound UDP proxying: ${header === CONNECT_UDP_BIND_HEADER ? 'Connect-UDP-Bind' : 'Proxy-Public-Address'} ${reason}`,
    { header, reason, ...(status !== null ? { status } : {}) },
  );
}

/**
 * One bound UDP tunnel, client side. open() asks the proxy for a binding (Connect-UDP-Bind: ?1, target `*`) and
 * resolves with the public addresses it bound. send() reaches any target; 'message' brings what any sender sent to
 * the public address (while the uncompressed context is open) or what a registered target sent.
 *
 * Events: 'message' (payload, BoundSender) — the payload may be a view: consume it synchronously or copy it;
 * 'context' (BoundContextEvent); 'close' (reason, error?) once, when the tunnel ends for any reason.
 */
export class BoundTunnel extends EventEmitter {
  /** The proxy's public addresses for this tunnel (draft §7), in the order it listed them. */
  readonly publicAddresses: readonly BindTarget[];
  /** What was carried and dropped. */
  readonly counters: BoundTunnelCounters = emptyBoundTunnelCounters();
  /** The context table (draft §3–§5), for inspection. */
  readonly contexts: BindContexts;
  /** The established request. */
  readonly handle: TunnelHandle;
  private readonly channel: DatagramChannel;
  private readonly families: ReadonlySet<4 | 6>;
  private readonly maxDatagram: number;
  private readonly maxStreamBuffer: number;
  private readonly awaitAck: boolean;
  private readonly signal: AbortSignal | undefined;
  /**
   * The parsed form of each peer object send() was given, with the address and port it was parsed from: a caller
   * that keeps one object per peer (as Exposer does) has it parsed once, not once per datagram.
   */
  private readonly parsed = new WeakMap<BoundPeer, { address: string; port: number; target: BindTarget }>();
  private closedWith: BoundTunnelCloseReason | null = null;
  private aborted = false;

  private constructor(handle: TunnelHandle, publicAddresses: BindTarget[], opts: BoundTunnelOptions) {
    super();
    this.handle = handle;
    this.publicAddresses = publicAddresses;
    this.families = new Set(publicAddresses.map((a) => a.ipVersion));
    this.maxDatagram = checkMaxDatagram(opts.maxDatagram ?? MAX_UDP_PAYLOAD);
    this.maxStreamBuffer = opts.maxStreamBuffer ?? CLIENT_DEFAULTS.maxStreamBuffer;
    this.awaitAck = opts.awaitAck ?? false;
    // Draft §3: the target was `*`, so context ID 0 is not used on this tunnel.
    this.contexts = new BindContexts({ side: 'client', wildcardTarget: true, ...(opts.maxContexts !== undefined ? { maxContexts: opts.maxContexts } : {}) });
    this.channel = new DatagramChannel(handle.stream, {
      session: opts.session ?? 'bind',
      role: 'client',
      maxCapsuleLength: opts.maxCapsuleLength ?? CLIENT_DEFAULTS.maxCapsuleLength,
      maxWriteBuffer: this.maxStreamBuffer,
      // Context datagrams are measured here, on their UDP payload; the channel's own check covers context 0 only.
      maxDatagram: MAX_UDP_PAYLOAD,
      onDrop: (kind) => {
        if (kind === 'backpressure') this.counters.drops.backpressure++;
        else if (kind === 'oversize') this.counters.drops.oversize++;
      },
      // Context 0 comes here: routeDatagram throws (draft §3: not on a `*` tunnel), which fails the channel.
      onDatagram: () => this.contexts.routeDatagram(0),
      onMalformed: (err) => this.fail(err),
      bind: {
        onContextDatagram: (id, payload) => this.onContextDatagram(id, payload),
        onBindCapsule: (type, value) => this.onBindCapsule(type, value),
      },
    });
    handle.stream.on('error', () => {});
    handle.stream.once('close', () => this.finish('tunnel-closed'));
    handle.stream.once('end', () => this.finish('tunnel-ended'));
    this.signal = opts.signal;
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /**
   * Opens a bound tunnel and resolves once the proxy answered and (by default) acknowledged the uncompressed context.
   * Rejects with the transport's errors, or with UT_ERR_BIND_NOT_GRANTED when the answer lacks `Connect-UDP-Bind: ?1`
   * (draft §6: the proxy ignored the extension) or a usable Proxy-Public-Address (draft §7), or the proxy refused the
   * uncompressed context; UT_ERR_TIMEOUT when that acknowledgement does not come within ackTimeoutMs.
   */
  static async open(options: BoundTunnelOptions): Promise<BoundTunnel> {
    const signal = options.signal ?? new AbortController().signal;
    const handle = await options.transport.open(
      options.session ?? 'bind',
      signal,
      { bind: true, ...(options.headers !== undefined ? { headers: options.headers } : {}) },
      options.lost !== undefined ? { lost: options.lost } : {},
    );
    const h = handle.responseHeaders;
    const statusNum = Number(h[':status']);
    const status = Number.isInteger(statusNum) ? statusNum : null;
    let addresses: BindTarget[];
    try {
      // Draft §6: the extension is on only when both sides sent `?1`; anything else counts as absent.
      const bind = parseConnectUdpBind(h[CONNECT_UDP_BIND_HEADER]);
      if (!bind.enabled) throw notGranted(CONNECT_UDP_BIND_HEADER, bind.reason ?? 'absent', status);
      // Draft §7: a proxy that accepts the request MUST list at least one public address.
      const pub = parseProxyPublicAddress(h[PROXY_PUBLIC_ADDRESS_HEADER]);
      if (pub.addresses === null) throw notGranted(PROXY_PUBLIC_ADDRESS_HEADER, pub.reason, status);
      addresses = pub.addresses;
    } catch (err) {
      handle.abort('close');
      throw err;
    }
    const tunnel = new BoundTunnel(handle, addresses, options);
    if (signal.aborted) {
      tunnel.close();
      throw new UdpTunnelError(ErrorCodes.CLOSED, 'bound tunnel closed while opening');
    }
    if (options.uncompressed ?? true) {
      const id = tunnel.openUncompressed()!;
      if (options.awaitUncompressedAck ?? true) {
        try {
          await tunnel.acknowledged(id, options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS);
        } catch (err) {
          tunnel.close();
          throw err;
        }
      }
    }
    return tunnel;
  }

  /** Resolves when the proxy acknowledges context `id`; rejects when it refuses it, the tunnel ends, or `timeoutMs` pass. */
  private acknowledged(id: number, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (err: UdpTunnelError | null): void => {
        clearTimeout(timer);
        this.off('context', onContext);
        this.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onContext = (e: BoundContextEvent): void => {
        if (e.id !== id) return;
        if (e.event === 'acked') done(null);
        else if (e.event === 'closed') {
          done(new UdpTunnelError(ErrorCodes.BIND_NOT_GRANTED, 'the proxy did not grant bound UDP proxying: it refused the uncompressed context (COMPRESSION_CLOSE)', { reason: 'uncompressed context refused' }));
        }
      };
      const onClose = (reason: BoundTunnelCloseReason, error?: UdpTunnelError): void =>
        done(error ?? new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, `the bound tunnel ended (${reason}) before the proxy acknowledged its uncompressed context`));
      const timer = setTimeout(
        () => done(new UdpTunnelError(ErrorCodes.TIMEOUT, `the proxy did not acknowledge the uncompressed context within ${timeoutMs} ms`, { timeoutMs })),
        timeoutMs,
      );
      this.on('context', onContext);
      this.on('close', onClose);
    });
  }

  /** True until the tunnel closed. */
  get isOpen(): boolean {
    return this.closedWith === null;
  }

  /** The ID of the open uncompressed context, or null. */
  get uncompressedContext(): number | null {
    return this.contexts.uncompressed;
  }

  /** The open compressed context for a target, or null. */
  contextFor(peer: BoundPeer): number | null {
    const t = normalizeTarget(peer);
    return t === null ? null : this.lookup(t);
  }

  /**
   * Sends a UDP payload to `to` through the proxy's public address: on the target's compressed context when one is
   * open (draft §5), else on the uncompressed context with the address and port in front (draft §4). Returns false
   * when it was dropped (counted by reason). Throws UT_ERR_INVALID_ADDRESS when `to` is not an IP literal and port.
   */
  send(payload: Buffer, to: BoundPeer): boolean {
    let target: BindTarget | null;
    const known = this.parsed.get(to);
    if (known !== undefined && known.address === to.address && known.port === to.port) target = known.target;
    else {
      target = normalizeTarget(to);
      if (target === null) throw badTarget(to);
      this.parsed.set(to, { address: to.address, port: to.port, target });
    }
    const drops = this.counters.drops;
    if (this.closedWith !== null) {
      drops.notOpen++;
      return false;
    }
    if (payload.length > this.maxDatagram) {
      drops.oversize++;
      return false;
    }
    // Draft §7: the proxy drops datagrams for a family it listed no address of.
    if (!this.families.has(target.ipVersion)) {
      drops.wrongFamily++;
      return false;
    }
    const id = this.lookup(target);
    // Draft §3.1: a context not yet acknowledged may be used at once, unless awaitAck asks to wait.
    if (id !== null && !(this.awaitAck && this.contexts.get(id)!.pending)) {
      if (!this.channel.sendContext(id, payload)) return false;
      this.counters.txCompressed++;
    } else {
      const unc = this.contexts.uncompressed;
      if (unc === null) {
        drops.noContext++;
        return false;
      }
      if (!this.channel.sendContext(unc, payload, encodeUncompressedDatagram(target, EMPTY))) return false;
    }
    this.counters.txDatagrams++;
    this.counters.txBytes += payload.length;
    return true;
  }

  /**
   * Registers a compressed context for a target (COMPRESSION_ASSIGN, draft §3.1) and returns its ID; returns the
   * open one when the target has one already. Returns null when it cannot be registered: the tunnel is closed, the
   * proxy listed no address of the target's family (draft §7), or maxContexts are open (counted).
   */
  compress(peer: BoundPeer): number | null {
    const target = normalizeTarget(peer);
    if (target === null) throw badTarget(peer);
    if (this.closedWith !== null) return null;
    const open = this.lookup(target);
    if (open !== null) return open;
    if (!this.families.has(target.ipVersion)) {
      this.counters.drops.wrongFamily++;
      return null;
    }
    if (this.contexts.size >= this.contexts.maxContexts) {
      this.counters.registrationsOverLimit++;
      return null;
    }
    const ctx = this.contexts.assignLocal({ contextId: this.contexts.nextId(), ...target });
    this.channel.sendCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, encodeCompressionAssign({ contextId: ctx.id, ...target }));
    this.emitContext({ event: 'assigned', id: ctx.id, by: 'client', openedBy: 'client', target });
    return ctx.id;
  }

  /** Closes the compressed context of a target (COMPRESSION_CLOSE, draft §3.3), whoever opened it; false when none is open. */
  decompress(peer: BoundPeer): boolean {
    const target = normalizeTarget(peer);
    if (target === null) throw badTarget(peer);
    const id = this.lookup(target);
    return id !== null && this.closeContext(id);
  }

  /**
   * Registers the uncompressed context (draft §4) unless one is open; returns its ID, or null when the tunnel is
   * closed or maxContexts are open. A closed one may be reopened under a new ID.
   */
  openUncompressed(): number | null {
    if (this.closedWith !== null) return null;
    const open = this.contexts.uncompressed;
    if (open !== null) return open;
    if (this.contexts.size >= this.contexts.maxContexts) {
      this.counters.registrationsOverLimit++;
      return null;
    }
    const ctx = this.contexts.assignLocal({ contextId: this.contexts.nextId(), ipVersion: 0 });
    this.channel.sendCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, encodeCompressionAssign({ contextId: ctx.id, ipVersion: 0 }));
    this.emitContext({ event: 'assigned', id: ctx.id, by: 'client', openedBy: 'client', target: null });
    return ctx.id;
  }

  /**
   * Closes the uncompressed context (draft §8.1, "restricting IPs"): from then on the proxy delivers only what the
   * targets of compressed contexts send, and this side sends only to them. False when none was open.
   */
  closeUncompressed(): boolean {
    const id = this.contexts.uncompressed;
    return id !== null && this.closeContext(id);
  }

  /** Ends the tunnel (the request stream is closed normally). */
  close(): void {
    this.finish('closed');
  }

  private readonly onAbort = (): void => this.finish('aborted');

  /** Ends the request stream once: as a protocol error (RFC 9297 §3.3) or normally. */
  private abortStream(how: 'malformed' | 'close'): void {
    if (this.aborted) return;
    this.aborted = true;
    this.handle.abort(how);
  }

  private lookup(target: BindTarget): number | null {
    return this.contexts.idFor(target) ?? null;
  }

  private closeContext(id: number): boolean {
    const ctx = this.contexts.get(id);
    if (ctx === undefined || this.closedWith !== null) return false;
    this.contexts.closeLocal(id);
    this.channel.sendCapsule(CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionClose(id));
    this.emitContext({ event: 'closed', id, by: 'client', openedBy: ctx.openedBy, target: ctx.target });
    return true;
  }

  private onContextDatagram(id: number, payload: Buffer): void {
    // Throws BIND_MALFORMED for what the draft makes a capsule protocol error, which fails the channel.
    const route = this.contexts.routeDatagram(id);
    let target: BindTarget;
    let data: Buffer;
    switch (route.kind) {
      case 'uncompressed': {
        const d = decodeUncompressedDatagram(payload);
        target = d;
        data = d.payload;
        break;
      }
      case 'compressed':
        target = route.target;
        data = payload;
        this.counters.rxCompressed++;
        break;
      case 'discard':
        // Draft §3.3: datagrams for a closed context are discarded silently; §3.1: so may pre-emptive ones be.
        if (route.reason === 'closed') this.counters.drops.closedContext++;
        else this.counters.drops.unknownContext++;
        return;
      default:
        // Context 0, which routeDatagram refuses on a `*` tunnel; not reached.
        return;
    }
    if (data.length > this.maxDatagram) {
      if (route.kind === 'compressed') this.counters.rxCompressed--;
      this.counters.drops.oversize++;
      return;
    }
    this.counters.rxDatagrams++;
    this.counters.rxBytes += data.length;
    this.emit('message', data, { address: target.address, port: target.port, family: target.ipVersion === 4 ? 'IPv4' : 'IPv6' } satisfies BoundSender);
  }

  private onBindCapsule(type: number, value: Buffer): void {
    // Every decoder and BindContexts call below throws BIND_MALFORMED for a capsule the draft calls malformed.
    if (type === CAPSULE_TYPE_COMPRESSION_ASSIGN) {
      // Draft §4: an uncompressed registration from the proxy is malformed; receiveAssign refuses it.
      const a = decodeCompressionAssign(value);
      const answer = this.contexts.receiveAssign(a);
      const target = a.ipVersion === 0 ? null : { ipVersion: a.ipVersion, address: a.address, port: a.port };
      if (answer.action === 'ack') {
        this.contexts.ackLocal(a.contextId);
        this.sendResponse(CAPSULE_TYPE_COMPRESSION_ACK, encodeCompressionAck(a.contextId));
        this.emitContext({ event: 'assigned', id: a.contextId, by: 'proxy', openedBy: 'proxy', target });
        this.emitContext({ event: 'acked', id: a.contextId, by: 'client', openedBy: 'proxy', target });
      } else {
        // Draft §3.1: a registration this side rejects is answered with COMPRESSION_CLOSE.
        this.counters.registrationsRejected++;
        this.sendResponse(CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionClose(a.contextId));
        this.emitContext({ event: 'closed', id: a.contextId, by: 'client', openedBy: 'proxy', target, refused: true, reason: answer.reason });
      }
      return;
    }
    if (type === CAPSULE_TYPE_COMPRESSION_ACK) {
      const id = decodeCompressionAck(value);
      const ctx = this.contexts.get(id);
      const wasPending = ctx !== undefined && ctx.openedBy === 'client' && ctx.pending;
      this.contexts.receiveAck(id);
      if (wasPending) this.emitContext({ event: 'acked', id, by: 'proxy', openedBy: 'client', target: ctx.target });
      return;
    }
    if (type === CAPSULE_TYPE_COMPRESSION_CLOSE) {
      const id = decodeCompressionClose(value);
      const ctx = this.contexts.get(id);
      this.contexts.receiveClose(id);
      if (ctx === undefined) return;
      // Draft §3.1: a COMPRESSION_CLOSE in answer to a registration is its rejection.
      const refused = ctx.openedBy === 'client' && ctx.pending;
      if (refused) this.counters.registrationsRefused++;
      this.emitContext({ event: 'closed', id, by: 'proxy', openedBy: ctx.openedBy, target: ctx.target, ...(refused ? { refused } : {}) });
    }
  }

  /** Sends an ACK or CLOSE the proxy's capsule calls for; past maxStreamBuffer unsent, the tunnel is aborted (draft §9). */
  private sendResponse(type: number, value: Buffer): void {
    if (this.channel.bufferedBytes > this.maxStreamBuffer) {
      throw new UdpTunnelError(ErrorCodes.LIMIT_EXCEEDED, `compression responses would exceed ${this.maxStreamBuffer} unsent bytes (maxStreamBuffer)`);
    }
    this.channel.sendCapsule(type, value);
  }

  private emitContext(e: BoundContextEvent): void {
    this.emit('context', e);
  }

  private fail(err: UdpTunnelError): void {
    if (this.closedWith !== null) return;
    const limit = err.code === ErrorCodes.LIMIT_EXCEEDED;
    // RFC 9297 §3.3 (and draft §3.1 for bind capsules): a malformed capsule stream aborts the request stream.
    this.abortStream(err.code === ErrorCodes.IO || limit ? 'close' : 'malformed');
    this.finish(limit ? 'limit' : 'malformed', err);
  }

  private finish(reason: BoundTunnelCloseReason, err?: UdpTunnelError): void {
    if (this.closedWith !== null) return;
    this.closedWith = reason;
    // A stream the proxy ended or reset is closed on this side too, so nothing of it lingers.
    this.abortStream('close');
    this.signal?.removeEventListener('abort', this.onAbort);
    this.emit('close', reason, err);
  }
}
