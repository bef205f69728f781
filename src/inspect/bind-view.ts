/**
 * CONNECT-UDP Bind (draft-ietf-masque-connect-udp-listen) as inspect sees it: per session, which context IDs the
 * two ends registered, shared by the session's two CapsuleViews, so uncompressed datagrams can be shown with their
 * address and port and the draft's context-ID rules can be checked.
 */
import { BindContexts } from '../tunnel/bind-contexts.js';
import { CONNECT_UDP_BIND_HEADER, type BindTarget, type CompressionAssign } from '../tunnel/codec/bind.js';
import { parseConnectUdpBind } from '../tunnel/codec/bind.js';
import { ErrorCodes, isUdpTunnelError } from '../tunnel/errors.js';
import type { Direction, HeaderList } from './events.js';

/** Options of a BindSession. */
export interface BindSessionOptions {
  /** The request carried `Connect-UDP-Bind: ?1` (draft §6): decode datagrams of uncompressed contexts. */
  enabled: boolean;
  /** Check the draft's context-ID rules and report violations as errors (inspect --strict). */
  rules: boolean;
  /** Both directions are decoded: ACKs can be matched to the other side's ASSIGNs (false for a one-way raw stream). */
  bothDirections: boolean;
  /**
   * The request was seen: when it did not ask for bind, capsule types 0x11-0x13 mean nothing in the session (RFC 9297
   * §3.2: unknown types are skipped), so they are shown but neither checked nor able to stop decoding. Without a
   * request (raw input) they are taken as bind capsules.
   */
  requestSeen?: boolean;
}

/** What a datagram's context ID means in a bind session. */
export type BindDatagramKind = { kind: 'uncompressed' } | { kind: 'compressed'; target: BindTarget } | { kind: 'other' };

/** True when the request's field lines hold exactly one `Connect-UDP-Bind: ?1` (draft §6). */
export function requestsBind(headers: HeaderList): boolean {
  const values = headers.filter(([n]) => n.toLowerCase() === CONNECT_UDP_BIND_HEADER).map(([, v]) => v);
  return parseConnectUdpBind(values).enabled;
}

/**
 * The context-ID state of one inspected session, seen from the client: capsules sent '->' are the client's own,
 * capsules '<-' the proxy's. Bounded by BindContexts' limits; registrations past them are counted, not tracked.
 */
export class BindSession {
  /** Options as given. */
  readonly options: BindSessionOptions;
  /** Registrations not tracked because the context limit was reached. */
  untracked = 0;
  private readonly contexts = new BindContexts({ side: 'client' });

  constructor(options: BindSessionOptions) {
    this.options = options;
  }

  /**
   * Applies a decoded ASSIGN/ACK/CLOSE seen in direction `dir`. Returns the rule it breaks (a BIND_MALFORMED error)
   * when rules are checked, else null; state is kept either way (a broken rule leaves it unchanged).
   */
  apply(dir: Direction, capsule: { kind: 'assign'; assign: CompressionAssign } | { kind: 'ack' | 'close'; contextId: number }): Error | null {
    const fromClient = dir === '->';
    try {
      if (capsule.kind === 'assign') {
        if (fromClient) this.contexts.assignLocal(capsule.assign);
        else this.contexts.receiveAssign(capsule.assign);
      } else if (capsule.kind === 'ack') {
        // An ACK answers the other direction's ASSIGN: with one direction only there is nothing to match it to.
        if (!this.options.bothDirections) return null;
        if (fromClient) this.contexts.ackLocal(capsule.contextId);
        else this.contexts.receiveAck(capsule.contextId);
      } else if (fromClient) {
        this.contexts.closeLocal(capsule.contextId);
      } else {
        this.contexts.receiveClose(capsule.contextId);
      }
    } catch (err) {
      if (isUdpTunnelError(err, ErrorCodes.LIMIT_EXCEEDED)) {
        this.untracked++;
        return null;
      }
      if (isUdpTunnelError(err, ErrorCodes.BIND_MALFORMED)) return this.options.rules ? err : null;
      throw err;
    }
    return null;
  }

  /** What datagrams with this context ID carry (without counting anything). */
  datagram(contextId: number): BindDatagramKind {
    const ctx = contextId === 0 ? undefined : this.contexts.get(contextId);
    if (ctx === undefined) return { kind: 'other' };
    return ctx.target === null ? { kind: 'uncompressed' } : { kind: 'compressed', target: ctx.target };
  }
}
