/**
 * Context-ID state of one bound UDP tunnel (draft-ietf-masque-connect-udp-listen §3-§5), seen from one side.
 * Pure bookkeeping: it sends nothing; callers send the capsules its results call for.
 */
import type { BindTarget, CompressionAssign } from './codec/bind.js';
import { BIND_DRAFT } from './codec/bind.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';

/** Which end of the tunnel a tracker belongs to. */
export type BindSide = 'client' | 'proxy';

/** Default limit on open contexts (draft §9: endpoints MUST limit how many context IDs are open at once). */
export const DEFAULT_MAX_BIND_CONTEXTS = 256;

/** Options of a BindContexts tracker. */
export interface BindContextsOptions {
  /** This end of the tunnel: clients allocate even IDs, proxies odd ones (RFC 9298 §4). */
  side: BindSide;
  /** Most contexts open at once; a peer's registration beyond it is rejected and counted. Default 256. */
  maxContexts?: number;
  /** Closed IDs remembered (to spot reuse and discard late datagrams); older ones are forgotten and counted. Default 4 × maxContexts. */
  maxClosedRemembered?: number;
  /** The request's target_host and target_port were `*` (draft §3: then context ID 0 must not be used). */
  wildcardTarget?: boolean;
}

/** One registered context. */
export interface BindContext {
  /** The context ID. */
  id: number;
  /** Which side registered it. */
  openedBy: BindSide;
  /** The compressed target, or null for the uncompressed context. */
  target: BindTarget | null;
  /** True until the peer acknowledged a context this side registered (the peer's own are acknowledged on receipt). */
  pending: boolean;
}

/** What to answer a received COMPRESSION_ASSIGN with. */
export type ReceivedAssignAction =
  | {
      /** Send COMPRESSION_ACK for the ID (draft §3.1); if `closeOwn` is set, also send COMPRESSION_CLOSE for it. */
      action: 'ack';
      /** This side's context for the same target, to close because the proxy opened it (draft §3.1). */
      closeOwn: number | null;
    }
  | {
      /** Send COMPRESSION_CLOSE for the ID: the registration is rejected (draft §3.1). */
      action: 'close';
      /** Why: over the context limit, a target this side opened too, or after the uncompressed context closed. */
      reason: 'limit' | 'same-target' | 'after-uncompressed-closed';
    };

/** Where a received datagram's context ID leads. */
export type DatagramRoute =
  | { kind: 'udp' }
  | { kind: 'uncompressed' }
  | { kind: 'compressed'; target: BindTarget }
  | { kind: 'discard'; reason: 'closed' | 'unknown' };

/** Counters of a tracker: what it dropped or refused. */
export interface BindContextsCounters {
  /** Datagrams for a closed context, discarded silently (draft §3.3). */
  discardedClosed: number;
  /** Datagrams for a context never registered (or forgotten), dropped (draft §3.1: pre-emptive use may be dropped). */
  discardedUnknown: number;
  /** Peer registrations rejected because maxContexts were open. */
  rejectedOverLimit: number;
  /** Closed IDs forgotten because maxClosedRemembered were kept. */
  forgottenClosed: number;
  /** COMPRESSION_CLOSE capsules for an ID never seen, ignored. */
  unknownCloses: number;
}

function violation(rule: string, section: string, message: string, contextId?: number): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.BIND_MALFORMED, `${message} (${BIND_DRAFT} ${section})`, {
    rule,
    rfc: `${BIND_DRAFT} ${section}`,
    ...(contextId !== undefined ? { contextId: String(contextId) } : {}),
  });
}

const targetKey = (t: BindTarget): string => `${t.ipVersion}/${t.address}/${t.port}`;

/**
 * Tracks the context IDs of one bound tunnel and enforces the draft's rules. Rule violations by the peer throw
 * BIND_MALFORMED (the draft makes them capsule protocol errors: abort the stream); so do this side's own mistakes,
 * which callers should never make. Bounded: at most maxContexts open and maxClosedRemembered closed IDs.
 */
export class BindContexts {
  /** This side. */
  readonly side: BindSide;
  /** Limit on open contexts. */
  readonly maxContexts: number;
  /** Limit on remembered closed IDs. */
  readonly maxClosedRemembered: number;
  /** What was dropped or refused. */
  readonly counters: BindContextsCounters = { discardedClosed: 0, discardedUnknown: 0, rejectedOverLimit: 0, forgottenClosed: 0, unknownCloses: 0 };
  private readonly wildcard: boolean;
  private readonly open = new Map<number, BindContext>();
  private readonly byTarget = new Map<string, number>();
  /** Closed IDs and who opened them, oldest first. */
  private readonly closed = new Map<number, BindSide>();
  private uncompressedId: number | null = null;
  private uncompressedWasClosed = false;
  private highestLocal = 0;
  private nextLocal: number;

  constructor(options: BindContextsOptions) {
    this.side = options.side;
    this.maxContexts = options.maxContexts ?? DEFAULT_MAX_BIND_CONTEXTS;
    this.maxClosedRemembered = options.maxClosedRemembered ?? this.maxContexts * 4;
    for (const [name, v] of [['maxContexts', this.maxContexts], ['maxClosedRemembered', this.maxClosedRemembered]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) {
        throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${name} must be a positive integer, got ${v}`, { option: name, value: v });
      }
    }
    this.wildcard = options.wildcardTarget ?? false;
    this.nextLocal = this.side === 'client' ? 2 : 1;
  }

  /** Contexts open now (registered and not closed). */
  get size(): number {
    return this.open.size;
  }

  /** The open context with this ID, if any. */
  get(id: number): BindContext | undefined {
    return this.open.get(id);
  }

  /** The open compressed context for this address and port, if any (either side's). */
  idFor(target: BindTarget): number | undefined {
    return this.byTarget.get(targetKey(target));
  }

  /** The ID of the open uncompressed context, or null. */
  get uncompressed(): number | null {
    return this.uncompressedId;
  }

  /** The next unused ID of this side's parity (RFC 9298 §4: clients even, proxies odd; never 0). */
  nextId(): number {
    while (this.open.has(this.nextLocal) || this.closed.has(this.nextLocal) || this.nextLocal <= this.highestLocal) this.nextLocal += 2;
    return this.nextLocal;
  }

  private ownsParity(side: BindSide, id: number): boolean {
    return (id % 2 === 0) === (side === 'client');
  }

  /** Checks what any registration must satisfy, whoever sends it. */
  private checkAssign(a: CompressionAssign, by: BindSide): void {
    // §3.1: ID 0 belongs to unextended UDP proxying; RFC 9298 §4: clients allocate even IDs, proxies odd ones.
    if (a.contextId === 0) throw violation('zero-id', '§3.1', 'COMPRESSION_ASSIGN with Context ID 0', 0);
    if (!this.ownsParity(by, a.contextId)) {
      throw violation('parity', '§3', `the ${by} registered Context ID ${a.contextId}, which the ${by === 'client' ? 'proxy' : 'client'} allocates`, a.contextId);
    }
    // §3.1 and §3.3: an ID is registered at most once and never reused after it was closed.
    if (this.open.has(a.contextId) || this.closed.has(a.contextId)) {
      throw violation('duplicate-id', '§3.1', `Context ID ${a.contextId} was already registered`, a.contextId);
    }
    if (a.ipVersion === 0) {
      // §4: only the client asks for an uncompressed context, and one at a time.
      if (by === 'proxy') throw violation('uncompressed-from-proxy', '§4', 'the proxy registered an uncompressed context', a.contextId);
      if (this.uncompressedId !== null) {
        throw violation('second-uncompressed', '§4', `uncompressed context ${this.uncompressedId} is already open`, a.contextId);
      }
    }
  }

  private add(a: CompressionAssign, by: BindSide, pending: boolean): BindContext {
    const target = a.ipVersion === 0 ? null : { ipVersion: a.ipVersion, address: a.address, port: a.port };
    const ctx: BindContext = { id: a.contextId, openedBy: by, target, pending };
    this.open.set(ctx.id, ctx);
    if (target === null) this.uncompressedId = ctx.id;
    else this.byTarget.set(targetKey(target), ctx.id);
    return ctx;
  }

  /**
   * Registers a context this side sends COMPRESSION_ASSIGN for (pending until acknowledged). Throws BIND_MALFORMED
   * when the registration breaks a rule, LIMIT_EXCEEDED when maxContexts are open.
   */
  assignLocal(a: CompressionAssign): BindContext {
    this.checkAssign(a, this.side);
    if (a.ipVersion !== 0) {
      const other = this.byTarget.get(targetKey(a));
      // §3.1: one context per (address, port).
      if (other !== undefined) throw violation('duplicate-target', '§3.1', `context ${other} is already open for ${a.address} port ${a.port}`, a.contextId);
      // §3.1: once the uncompressed context is closed the proxy opens no new compressed ones.
      if (this.side === 'proxy' && this.uncompressedWasClosed && this.uncompressedId === null) {
        throw violation('after-uncompressed-closed', '§3.1', 'the proxy registered a context after the uncompressed one was closed', a.contextId);
      }
    }
    if (this.open.size >= this.maxContexts) {
      throw new UdpTunnelError(ErrorCodes.LIMIT_EXCEEDED, `${this.maxContexts} bind contexts are open (maxContexts)`);
    }
    this.highestLocal = Math.max(this.highestLocal, a.contextId);
    return this.add(a, this.side, true);
  }

  /**
   * Handles a COMPRESSION_ASSIGN from the peer: says whether to acknowledge or reject it. Throws BIND_MALFORMED when
   * the capsule is malformed under the draft's rules (wrong parity, repeated ID, a target the peer already opened, a
   * second or proxy-sent uncompressed registration).
   */
  receiveAssign(a: CompressionAssign): ReceivedAssignAction {
    const peer: BindSide = this.side === 'client' ? 'proxy' : 'client';
    this.checkAssign(a, peer);
    let closeOwn: number | null = null;
    if (a.ipVersion !== 0) {
      const otherId = this.byTarget.get(targetKey(a));
      if (otherId !== undefined) {
        const other = this.open.get(otherId)!;
        // §3.1: a second registration by the peer for a target it already opened is malformed.
        if (other.openedBy === peer) {
          throw violation('duplicate-target', '§3.1', `context ${otherId} is already open for ${a.address} port ${a.port}`, a.contextId);
        }
        // §3.1: both opened one for the same target at once: the proxy's one is closed.
        if (this.side === 'client') {
          this.rememberClosed(a.contextId, peer);
          return { action: 'close', reason: 'same-target' };
        }
        closeOwn = otherId;
      }
      // §3.1: after the uncompressed context is closed the proxy may not open compressed ones; refuse them.
      if (this.side === 'client' && this.uncompressedWasClosed && this.uncompressedId === null) {
        this.rememberClosed(a.contextId, peer);
        return { action: 'close', reason: 'after-uncompressed-closed' };
      }
    }
    // §9: registrations beyond the limit are rejected.
    if (this.open.size - (closeOwn !== null ? 1 : 0) >= this.maxContexts) {
      this.counters.rejectedOverLimit++;
      this.rememberClosed(a.contextId, peer);
      return { action: 'close', reason: 'limit' };
    }
    if (closeOwn !== null) this.closeLocal(closeOwn);
    this.add(a, peer, false);
    return { action: 'ack', closeOwn };
  }

  /** Checks a COMPRESSION_ACK this side sends: it must answer a registration by the peer (draft §3.2). */
  ackLocal(id: number): void {
    const peer: BindSide = this.side === 'client' ? 'proxy' : 'client';
    const ctx = this.open.get(id);
    if ((ctx !== undefined && ctx.openedBy === peer) || this.closed.get(id) === peer) return;
    throw violation('ack-without-assign', '§3.2', `COMPRESSION_ACK for Context ID ${id}, which the ${peer} did not register`, id);
  }

  /**
   * Handles a COMPRESSION_ACK from the peer. Throws BIND_MALFORMED when this side never registered the ID (draft §3.2);
   * an ACK for a context this side closed meanwhile is ignored.
   */
  receiveAck(id: number): void {
    const ctx = this.open.get(id);
    if (ctx !== undefined && ctx.openedBy === this.side) {
      ctx.pending = false;
      return;
    }
    if (this.closed.get(id) === this.side) return;
    // Closed IDs past the memory bound: an ID of this side's parity it has used may have been one of them.
    if (this.counters.forgottenClosed > 0 && this.ownsParity(this.side, id) && id > 0 && id <= this.highestLocal && ctx === undefined) return;
    throw violation('ack-without-assign', '§3.2', `COMPRESSION_ACK for Context ID ${id}, which was not registered by this side`, id);
  }

  /** Closes a context from this side (send COMPRESSION_CLOSE); false when the ID is not open. */
  closeLocal(id: number): boolean {
    return this.closeId(id);
  }

  /** Handles a COMPRESSION_CLOSE from the peer (a rejection or a closure, draft §3.3). Throws BIND_MALFORMED for ID 0. */
  receiveClose(id: number): void {
    if (id === 0) throw violation('zero-id', '§3.3', 'COMPRESSION_CLOSE with Context ID 0', 0);
    if (!this.closeId(id) && !this.closed.has(id)) this.counters.unknownCloses++;
  }

  private closeId(id: number): boolean {
    const ctx = this.open.get(id);
    if (ctx === undefined) return false;
    this.open.delete(id);
    if (ctx.target === null) {
      this.uncompressedId = null;
      this.uncompressedWasClosed = true;
    } else {
      this.byTarget.delete(targetKey(ctx.target));
    }
    this.rememberClosed(id, ctx.openedBy);
    return true;
  }

  private rememberClosed(id: number, by: BindSide): void {
    this.closed.set(id, by);
    if (by === this.side) this.highestLocal = Math.max(this.highestLocal, id);
    if (this.closed.size > this.maxClosedRemembered) {
      this.closed.delete(this.closed.keys().next().value!);
      this.counters.forgottenClosed++;
    }
  }

  /**
   * Where a datagram received with this context ID goes. Closed and unknown contexts are discarded and counted
   * (draft §3.3: silently). Throws BIND_MALFORMED for ID 0 when the target was `*` (draft §3: abort the stream).
   */
  routeDatagram(id: number): DatagramRoute {
    if (id === 0) {
      if (this.wildcard) throw violation('zero-id-datagram', '§3', 'datagram with Context ID 0 on a tunnel without a target', 0);
      return { kind: 'udp' };
    }
    const ctx = this.open.get(id);
    if (ctx !== undefined) return ctx.target === null ? { kind: 'uncompressed' } : { kind: 'compressed', target: ctx.target };
    if (this.closed.has(id)) {
      this.counters.discardedClosed++;
      return { kind: 'discard', reason: 'closed' };
    }
    this.counters.discardedUnknown++;
    return { kind: 'discard', reason: 'unknown' };
  }
}
