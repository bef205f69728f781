import { EventEmitter } from 'node:events';
import { backoffDelay, type BackoffOptions } from '../backoff.js';
import { FAILOVER_DEFAULTS, type ProxyStrategy } from '../defaults.js';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import type { OpenOptions, Transport, TunnelHandle, TunnelRequest } from './types.js';

export type { ProxyStrategy } from '../defaults.js';
/** FailoverTransport's defaults. */
export { FAILOVER_DEFAULTS } from '../defaults.js';

/** One proxy of a FailoverTransport: its transport and the name it goes by in counters and events. */
export interface FailoverMember {
  /** The proxy URL with credentials redacted. */
  proxy: string;
  transport: Transport;
}

/** Options of a FailoverTransport. */
export interface FailoverOptions {
  /** `failover` (default): the first healthy proxy in order; `round-robin`: the next healthy one in turn. */
  strategy?: ProxyStrategy;
  /**
   * How long a proxy that failed to connect is skipped: exponential over its failures in a row, with jitter
   * (default 1 s, up to 30 s).
   */
  downBackoff?: BackoffOptions;
}

/** Counters of one proxy, as plain data. */
export interface ProxyCounters {
  /** The proxy URL with credentials redacted. */
  proxy: string;
  /** Tunnels established through it (new sessions and sessions moved to it). */
  sessionsOpened: number;
  /** Tunnels through it that are open now. */
  sessionsActive: number;
  /** Attempts that could not reach or set up a tunnel through it. */
  connectFailures: number;
  /** Sessions that lost their tunnel on it and went on through another proxy. */
  sessionsMoved: number;
  /** Marked down: skipped while another proxy is healthy. */
  down: boolean;
  /** Time left until it is tried again (0 when not down). */
  retryInMs: number;
}

/** Payload of the 'proxy-down' event. */
export interface ProxyDownEvent {
  proxy: string;
  index: number;
  error: Error;
  /** Failures in a row so far. */
  failures: number;
  retryInMs: number;
}

interface Member {
  readonly proxy: string;
  readonly transport: Transport;
  opened: number;
  active: number;
  failures: number;
  moved: number;
  /** Failures in a row; sets the backoff. */
  streak: number;
  /** Epoch ms until which the proxy is down; 0 when it is up. */
  downUntil: number;
  /** Bumped on every recorded outcome, so attempts that started before it do not count again. */
  generation: number;
}

/**
 * Whether another proxy may do better: the proxy could not be reached or set up (refused, timed out, TLS, no extended
 * CONNECT, reset before answering) or answered 5xx/429. A 4xx or an authentication failure is the answer for this
 * target and is not failed over, nor is a session closing.
 */
function failsOver(err: unknown): boolean {
  if (!(err instanceof UdpTunnelError)) return true;
  if (err.code === ErrorCodes.CLOSED) return false;
  return err.retryable || err.code === ErrorCodes.TLS || err.code === ErrorCodes.CONNECT_PROTOCOL_DISABLED || err.code === ErrorCodes.HTTP2_PROTOCOL;
}

/**
 * A transport over several proxies, one child transport each. Each open() picks a proxy by the strategy; a proxy
 * that fails to connect is marked down for a backoff period and skipped, and the next one is tried in the same
 * open(). When every proxy is down, the one whose backoff ends first is tried rather than failing outright.
 * A session that lost its tunnel reopens on the proxy after the one it was on.
 * Events: 'proxy-down' (ProxyDownEvent), 'proxy-up' ({proxy, index}), 'session-moved' ({session, from, to}).
 */
export class FailoverTransport extends EventEmitter implements Transport {
  readonly name: string;
  readonly reopensLostTunnels: boolean;
  readonly strategy: ProxyStrategy;
  private readonly members: Member[];
  private readonly backoff: BackoffOptions;
  private readonly origin = new WeakMap<TunnelHandle, number>();
  private cursor = 0;

  constructor(members: readonly FailoverMember[], options: FailoverOptions = {}) {
    super();
    if (members.length === 0) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'at least one proxy is needed', { option: 'proxy' });
    const names = new Set(members.map((m) => m.transport.name));
    if (names.size > 1) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `all proxies must use the same transport, not ${[...names].join(' and ')}`, { option: 'proxy' });
    }
    this.name = members[0]!.transport.name;
    this.members = members.map((m) => ({ proxy: m.proxy, transport: m.transport, opened: 0, active: 0, failures: 0, moved: 0, streak: 0, downUntil: 0, generation: 0 }));
    this.reopensLostTunnels = members.length > 1;
    this.strategy = options.strategy ?? FAILOVER_DEFAULTS.strategy;
    this.backoff = options.downBackoff ?? { ...FAILOVER_DEFAULTS.downBackoff };
    if (!(this.backoff.baseMs > 0) || !(this.backoff.maxMs >= this.backoff.baseMs)) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'downBackoff needs 0 < baseMs <= maxMs', { option: 'downBackoff', value: this.backoff });
    }
  }

  /** Per-proxy counters, in the order the proxies were given. */
  get proxies(): ProxyCounters[] {
    const now = Date.now();
    return this.members.map((m) => ({
      proxy: m.proxy,
      sessionsOpened: m.opened,
      sessionsActive: m.active,
      connectFailures: m.failures,
      sessionsMoved: m.moved,
      down: m.downUntil > now,
      retryInMs: Math.max(0, Math.ceil(m.downUntil - now)),
    }));
  }

  async open(session: string, signal: AbortSignal, request?: TunnelRequest, options: OpenOptions = {}): Promise<TunnelHandle> {
    const from = options.lost !== undefined ? this.origin.get(options.lost) : undefined;
    let lastError: unknown = new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'no proxy to try');
    for (const i of this.order(from)) {
      if (signal.aborted) throw new UdpTunnelError(ErrorCodes.CLOSED, 'session closed while connecting');
      const m = this.members[i]!;
      const generation = m.generation;
      let handle: TunnelHandle;
      try {
        handle = await m.transport.open(session, signal, request);
      } catch (err) {
        if (signal.aborted || !failsOver(err)) throw err;
        this.failed(i, generation, err);
        lastError = err;
        continue;
      }
      this.succeeded(i);
      if (from !== undefined && from !== i) {
        this.members[from]!.moved++;
        this.emit('session-moved', { session, from: this.members[from]!.proxy, to: m.proxy });
      }
      return this.track(handle, i);
    }
    throw lastError;
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.transport.close()));
  }

  /**
   * The proxies to try, in order: the healthy ones starting where the strategy says (after the lost tunnel's proxy
   * for a moved session), then the down one whose backoff ends first.
   */
  private order(from: number | undefined): number[] {
    const n = this.members.length;
    const now = Date.now();
    const start = from !== undefined ? from + 1 : this.strategy === 'round-robin' ? this.cursor : 0;
    const rotated = Array.from({ length: n }, (_, k) => (start + k) % n);
    const healthy = rotated.filter((i) => this.members[i]!.downUntil <= now);
    // Taken now, not after the attempt: sessions opening at the same time spread too.
    if (from === undefined && this.strategy === 'round-robin') this.cursor = ((healthy[0] ?? start) + 1) % n;
    const down = rotated.filter((i) => this.members[i]!.downUntil > now).sort((a, b) => this.members[a]!.downUntil - this.members[b]!.downUntil);
    return down.length > 0 ? [...healthy, down[0]!] : healthy;
  }

  private failed(i: number, generation: number, err: unknown): void {
    const m = this.members[i]!;
    m.failures++;
    // Sessions that tried together fail together: count the episode once, not once per session.
    if (m.generation !== generation) return;
    m.generation++;
    m.streak++;
    const delay = backoffDelay(m.streak, this.backoff);
    m.downUntil = Date.now() + delay;
    const error = err instanceof Error ? err : new Error(String(err));
    this.emit('proxy-down', { proxy: m.proxy, index: i, error, failures: m.streak, retryInMs: Math.round(delay) } satisfies ProxyDownEvent);
  }

  private succeeded(i: number): void {
    const m = this.members[i]!;
    m.generation++;
    m.opened++;
    if (m.streak === 0 && m.downUntil === 0) return;
    m.streak = 0;
    m.downUntil = 0;
    this.emit('proxy-up', { proxy: m.proxy, index: i });
  }

  private track(handle: TunnelHandle, i: number): TunnelHandle {
    const m = this.members[i]!;
    m.active++;
    handle.stream.once('close', () => m.active--);
    const tracked: TunnelHandle = {
      stream: handle.stream,
      responseHeaders: handle.responseHeaders,
      abort: (reason) => handle.abort(reason),
      proxy: m.proxy,
    };
    this.origin.set(tracked, i);
    return tracked;
  }
}
