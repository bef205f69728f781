import http2 from 'node:http2';
import { AuthFailureLimiter } from '../auth-limiter.js';
import type { ServerCounters } from './counters.js';
import { CLOSE_GRACE_MS } from './listener.js';
import type { RequestAuthenticator, ResolvedServerOptions } from './options.js';
import type { Refusals } from './refusals.js';
import type { RequestFront, ServerConnection } from './request-front.js';

/**
 * Who may open a tunnel: credentials (with a failed-authentication budget per client address and per connection)
 * and the tunnel limits per server, client address, connection and HTTP/2 stream count. Each refusal is answered,
 * counted and reported here; what is admitted holds its slots until the release it was given is called.
 */
export class Admission {
  private readonly opts: ResolvedServerOptions;
  private readonly counters: ServerCounters;
  private readonly refusals: Refusals;
  private readonly authLimiter: AuthFailureLimiter;
  /** Tunnels being set up or relaying (the server-wide limit counts both). */
  private reserved = 0;
  /** Tunnels held per client address (entries leave at zero, so at most maxSessions of them). */
  private readonly clientSessions = new Map<string, number>();

  /** Decides by `opts`, counts into `counters`, refuses through `refusals`. */
  constructor(opts: ResolvedServerOptions, counters: ServerCounters, refusals: Refusals) {
    this.opts = opts;
    this.counters = counters;
    this.refusals = refusals;
    this.authLimiter = new AuthFailureLimiter({
      burst: opts.authFailureBurst,
      refillPerSecond: opts.authFailureRefillPerSecond,
      maxEntries: opts.maxAuthFailureEntries,
    });
  }

  /**
   * Applies maxStreamsPerConnection to a new HTTP/2 stream. Returns false after refusing (and counting as a
   * request) one over the limit; an admitted stream is tracked until it closes.
   */
  admitStream(conn: ServerConnection, stream: http2.ServerHttp2Stream): boolean {
    const live = conn.state.live;
    if (this.overStreamLimit(live)) {
      this.counters.requests++;
      this.counters.limits.connectionStreams++;
      this.refusals.reset(`connection stream limit ${this.opts.maxStreamsPerConnection} reached`, 2, conn.client);
      // RFC 9113 §5.1.2 / §8.7: a stream over the limit is refused on its own; the client may retry it elsewhere.
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return false;
    }
    live.add(stream);
    stream.once('close', () => live.delete(stream));
    return true;
  }

  /** True when a new stream would exceed maxStreamsPerConnection. */
  private overStreamLimit(live: Set<http2.ServerHttp2Stream>): boolean {
    const max = this.opts.maxStreamsPerConnection;
    if (live.size < max) return false;
    // A stream the peer has just reset is closed at once but reports 'close' only later; its slot is free already.
    for (const s of live) if (s.closed || s.destroyed) live.delete(s);
    return live.size >= max;
  }

  /**
   * Checks credentials unless the client address has spent its failed-authentication budget; refuses and returns
   * false when they are missing or wrong. Only wrong credentials spend the budget: a request without any is the
   * usual first step of a challenge (RFC 9110 §11.6.1). Credentials never reach a log or event, only the reason.
   */
  authenticate(front: RequestFront, auth: RequestAuthenticator): boolean {
    const conn = front.conn;
    const quota = conn.state;
    const wait = this.authLimiter.retryAfterMs(quota.address);
    if (wait > 0) {
      this.counters.limits.authRate++;
      const seconds = Number.isFinite(wait) ? Math.ceil(wait / 1000) : 3600;
      // RFC 6585 §4: 429 Too Many Requests, with Retry-After (RFC 9110 §10.2.3) saying when to try again.
      this.refusals.refuse(front, 429, 'http_request_denied', `too many failed authentications from ${quota.address}`, { 'retry-after': String(seconds) });
    } else {
      const r = auth.check(front.rawHeaders);
      if (r.ok) return true;
      this.counters.authFailures++;
      // RFC 9110 §15.5.2 / §15.5.8: 401 with WWW-Authenticate (HTTP/2), 407 with Proxy-Authenticate (HTTP/1.1).
      const c = auth.challenge(front.httpVersion);
      this.refusals.refuse(front, c.status, 'http_request_denied', `authentication ${r.reason}`, c.headers);
      if (r.reason === 'missing') return false;
      this.authLimiter.fail(quota.address);
      this.counters.limits.authEvictions = this.authLimiter.evictions;
    }
    // HTTP/1.1 closes the connection with every refusal; an HTTP/2 connection that keeps guessing is told to go.
    if (++quota.authFailures >= this.opts.maxAuthFailuresPerConnection && conn.h2 !== null) this.goAwayForAuth(conn, conn.h2);
    return false;
  }

  /**
   * RFC 9113 §6.8: GOAWAY with ENHANCE_YOUR_CALM (§7: excessive load) stops new streams; tunnels already open end
   * on their own, and a connection without any is cut off after a short grace.
   */
  private goAwayForAuth(conn: ServerConnection, session: http2.ServerHttp2Session): void {
    if (session.closed || session.destroyed) return;
    this.counters.limits.authConnection++;
    this.refusals.goaway(`${conn.state.authFailures} failed authentications on one connection`, conn.client);
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.close();
    const grace = setTimeout(() => {
      if (conn.state.sessions === 0) session.destroy();
    }, CLOSE_GRACE_MS);
    session.once('close', () => clearTimeout(grace));
  }

  /**
   * Takes a tunnel slot on the server, the client address and the connection, or refuses the request when one of
   * them is full. Returns the release that gives the slots back (idempotent), or null after refusing.
   */
  reserve(front: RequestFront): (() => void) | null {
    if (this.reserved >= this.opts.maxSessions) {
      this.counters.limits.serverSessions++;
      this.refusals.refuse(front, 503, 'connection_limit_reached', `server session limit ${this.opts.maxSessions} reached`);
      return null;
    }
    const quota = front.conn.state;
    const address = quota.address;
    const clientHeld = this.clientSessions.get(address) ?? 0;
    if (clientHeld >= this.opts.maxSessionsPerClient) {
      this.counters.limits.clientSessions++;
      this.refusals.refuse(front, 503, 'connection_limit_reached', `client session limit ${this.opts.maxSessionsPerClient} reached for ${address}`);
      return null;
    }
    if (quota.sessions >= this.opts.maxSessionsPerConnection) {
      this.counters.limits.connectionSessions++;
      this.refusals.reset(`connection session limit ${this.opts.maxSessionsPerConnection} reached`, front.httpVersion, front.client);
      front.refuseRetry();
      return null;
    }
    this.reserved++;
    quota.sessions++;
    this.clientSessions.set(address, clientHeld + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.reserved--;
      quota.sessions--;
      const n = (this.clientSessions.get(address) ?? 1) - 1;
      if (n > 0) this.clientSessions.set(address, n);
      else this.clientSessions.delete(address);
    };
  }
}
