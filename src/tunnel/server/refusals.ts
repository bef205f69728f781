import type { EventEmitter } from 'node:events';
import type { LocalResourceEvent } from '../local-resource.js';
import { formatProxyStatus, type ProxyErrorType } from '../proxy-status.js';
import type { ServerCounters } from './counters.js';
import type { RequestFront } from './request-front.js';

/** Where a refused request wanted to go, and what decided, for the server's log (never sent to the client). */
export interface RefusalTarget {
  /** The target as requested, HOST:PORT. */
  target: string;
  /** The address the policy refused, when the target was a name that resolved. */
  resolved?: string;
  /** The policy rule that decided (`deny CIDR`, `no allow rule matched (...)`, `default: loopback only`, ...). */
  rule?: string;
}

/** TunnelServer's 'refused' event: a request answered with an error status, a reset stream or a GOAWAY. */
export interface RefusedEvent extends Partial<RefusalTarget> {
  /** The status answered, or null for a reset stream or a GOAWAY. */
  status: number | null;
  reset?: 'REFUSED_STREAM';
  goaway?: 'ENHANCE_YOUR_CALM';
  /** RFC 9209 §2.3 error type sent in Proxy-Status. */
  error: ProxyErrorType;
  /** The Proxy-Status details sent to the client. */
  details: string;
  httpVersion: 1 | 2;
  /** The client's address and port. */
  client: string;
}

/**
 * Reports what the server refuses: counts it, emits TunnelServer's 'refused' (or 'local-resource-error') event and
 * answers the request with a Proxy-Status saying why (RFC 9209 §2).
 */
export class Refusals {
  private readonly counters: ServerCounters;
  private readonly events: EventEmitter;

  /** Counts into `counters` and emits on `events` (the TunnelServer). */
  constructor(counters: ServerCounters, events: EventEmitter) {
    this.counters = counters;
    this.events = events;
  }

  /** Counts a refusal answered with `status` and emits 'refused'; the caller sends the answer. */
  count(status: number, error: ProxyErrorType, details: string, httpVersion: 1 | 2, client: string, about?: RefusalTarget): void {
    this.counters.refused[status] = (this.counters.refused[status] ?? 0) + 1;
    this.emitRefused({ status, error, details, httpVersion, client, ...about });
  }

  /** Refuses a request with `status`, saying why in Proxy-Status; `about` names the target in the event only. */
  refuse(
    front: RequestFront,
    status: number,
    error: ProxyErrorType,
    details: string,
    extra: Record<string, string> = {},
    rcode?: string,
    about?: RefusalTarget,
  ): void {
    this.count(status, error, details, front.httpVersion, front.client, about);
    front.refuse(status, { 'proxy-status': formatProxyStatus(error, { ...(rcode ? { rcode } : {}), details }), ...extra });
  }

  /** Emits 'refused' for a stream refused with RST_STREAM(REFUSED_STREAM) at a connection limit; the caller resets it. */
  reset(details: string, httpVersion: 1 | 2, client: string): void {
    this.emitRefused({ status: null, reset: 'REFUSED_STREAM', error: 'connection_limit_reached', details, httpVersion, client });
  }

  /** Emits 'refused' for an HTTP/2 connection sent GOAWAY(ENHANCE_YOUR_CALM) for failed authentications. */
  goaway(details: string, client: string): void {
    this.emitRefused({ status: null, goaway: 'ENHANCE_YOUR_CALM', error: 'http_request_denied', details, httpVersion: 2, client });
  }

  private emitRefused(event: RefusedEvent): void {
    this.events.emit('refused', event);
  }

  /**
   * Counts running short of local resources and reports it as 'local-resource-error' only (not also 'refused'), so
   * a flood of them can be logged sparingly. `front` is the request that hit it, or null for a failed accept.
   */
  localResourceError(err: NodeJS.ErrnoException, front: RequestFront | null): void {
    this.counters.localResourceErrors++;
    const code = err.code ?? 'unknown';
    const syscall = err.syscall ?? 'socket';
    const details = front === null ? `${syscall} ${code}` : `${syscall} ${code}: the proxy is out of local resources; try again later`;
    if (front !== null) {
      this.counters.refused[503] = (this.counters.refused[503] ?? 0) + 1;
      // RFC 9209 §2.3.30: proxy_internal_error, an error of the intermediary unrelated to the target. 503 rather
      // than its recommended 500 (RFC 9209 §2.1.1 allows another code): RFC 9110 §15.6.4, a temporary overload
      // that the same request may get past later.
      front.refuse(503, { 'proxy-status': formatProxyStatus('proxy_internal_error', { details }) });
    }
    const event: LocalResourceEvent = { code, syscall, status: front === null ? null : 503, client: front?.client ?? null, details };
    this.events.emit('local-resource-error', event);
  }
}
