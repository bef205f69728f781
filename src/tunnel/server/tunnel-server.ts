import type { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import type net from 'node:net';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { checkMaxDatagram, checkMaxUdpSendQueue } from '../limits.js';
import { isLocalResourceError } from '../local-resource.js';
import { formatProxyStatus } from '../proxy-status.js';
import { compileTemplateMatcher, type TemplateMatcher } from '../uri-template.js';
import { Admission } from './admission.js';
import { validateConnectUdpRequest, type IncomingTunnelRequest, type PostRoutes } from './connect-udp-request.js';
import { addSessionTotals, emptyServerCounters, type ServerCounters, type ServerSessionTotals } from './counters.js';
import { h1Front, h1Refuse, h1TunnelRequest, readRequestHead } from './h1-front.js';
import { h2Front, h2TunnelRequest, headerListSize, streamEndedWithHeaders } from './h2-front.js';
import { Listener, type ListenerCount } from './listener.js';
import { resolveServerOptions, type ResolvedServerOptions, type TunnelServerOptions } from './options.js';
import { Refusals } from './refusals.js';
import { newConnectionQuota, type ConnectionQuota, type RequestFront, type ServerConnection } from './request-front.js';
import { RelaySessions } from './session.js';
import { BoundSessions } from './bound-session.js';
import { CONNECT_UDP_BIND_HEADER, parseConnectUdpBind } from '../codec/bind.js';

export { H2_PREFACE } from '../http/version-detect.js';
export type { ServerCounters, ServerLimitCounters, ServerSessionStats, ServerSessionTotals } from './counters.js';
export { headerListSize } from './h2-front.js';
export type { ServerTlsOptions } from './listener.js';
export type { RefusalTarget, RefusedEvent } from './refusals.js';
export { SERVER_DEFAULTS, type RequestAuthenticator, type TargetChecker, type TunnelServerOptions } from './options.js';

/**
 * The options TunnelServer#update can change while the server runs; they apply to requests that arrive afterwards.
 * Everything else (host, port, TLS on or off, client certificates on or off, header and idle timeouts of connections,
 * maxConnections, maxHeaderSize, maxStreamBuffer, the failed-authentication budget, DNS) takes a new server.
 */
export type TunnelServerUpdate = Partial<
  Pick<
    TunnelServerOptions,
    | 'tls'
    | 'template'
    | 'policy'
    | 'authenticator'
    | 'postRoutes'
    | 'idleTimeoutMs'
    | 'maxCapsuleLength'
    | 'maxDatagram'
    | 'maxUdpSendQueue'
    | 'maxSessions'
    | 'maxSessionsPerConnection'
    | 'maxStreamsPerConnection'
    | 'maxSessionsPerClient'
    | 'maxAuthFailuresPerConnection'
    | 'allowBind'
    | 'maxBindContexts'
    | 'maxBindResponses'
    | 'maxBoundPorts'
    | 'maxBoundPortsPerClient'
  >
>;

/** The keys of TunnelServerUpdate, for callers that sort a change into what applies now and what needs a restart. */
export const UPDATABLE_SERVER_OPTIONS: readonly (keyof TunnelServerUpdate)[] = [
  'tls',
  'template',
  'policy',
  'authenticator',
  'postRoutes',
  'idleTimeoutMs',
  'maxCapsuleLength',
  'maxDatagram',
  'maxUdpSendQueue',
  'maxSessions',
  'maxSessionsPerConnection',
  'maxStreamsPerConnection',
  'maxSessionsPerClient',
  'maxAuthFailuresPerConnection',
  'allowBind',
  'maxBindContexts',
  'maxBindResponses',
  'maxBoundPorts',
  'maxBoundPortsPerClient',
];

/**
 * The proxy side of udp-tunnel. One listener accepts CONNECT-UDP over HTTP/2 (RFC 9298 §3.4) and HTTP/1.1
 * (RFC 9298 §3.2), and POST tunnels to configured routes; each front hands a validated target and a byte stream to
 * one shared relay that owns the connected UDP socket. Events: 'session-open', 'session-close' (ServerSessionStats),
 * 'refused', 'local-resource-error' (LocalResourceEvent; a request it refuses is not also reported as 'refused'),
 * 'error'.
 */
export class TunnelServer extends EventEmitter {
  readonly counters: ServerCounters = emptyServerCounters();
  private readonly opts: ResolvedServerOptions;
  private matcher: TemplateMatcher;
  private postRoutes: PostRoutes;
  private readonly listener: Listener<ConnectionQuota>;
  private readonly refusals: Refusals;
  private readonly admission: Admission;
  private readonly sessions: RelaySessions;
  private readonly bound: BoundSessions;
  private closing = false;

  constructor(options: TunnelServerOptions) {
    super();
    this.opts = resolveServerOptions(options);
    this.matcher = compileTemplateMatcher(this.opts.template);
    this.postRoutes = options.postRoutes ?? new Map();
    this.refusals = new Refusals(this.counters, this);
    this.admission = new Admission(this.opts, this.counters, this.refusals);
    this.sessions = new RelaySessions(this.opts, this.counters, this.refusals, this);
    this.bound = new BoundSessions(this.opts, this.counters, this.refusals, this, this.sessions);
    const settings: http2.Settings = {
      // RFC 8441 §3: extended CONNECT must be advertised before clients may use :protocol.
      enableConnectProtocol: true,
      // No maxConcurrentStreams: once a peer has acknowledged it, nghttp2 treats a stream over it as a connection
      // error and Node answers with GOAWAY(INTERNAL_ERROR), ending every tunnel on the connection. RFC 9113 §5.1.2
      // makes it a stream error, so Admission enforces maxStreamsPerConnection itself with REFUSED_STREAM.
      // RFC 9113 §6.9.2: the per-stream window bounds what one stream can make us buffer before we read it.
      initialWindowSize: Math.max(65_535, Math.min(this.opts.maxStreamBuffer, 2 ** 31 - 1)),
      maxHeaderListSize: this.opts.maxHeaderSize,
    };
    this.listener = new Listener<ConnectionQuota>({
      host: this.opts.host,
      port: this.opts.port,
      tls: options.tls,
      maxConnections: this.opts.maxConnections,
      headerTimeoutMs: this.opts.headerTimeoutMs,
      connectionIdleTimeoutMs: this.opts.connectionIdleTimeoutMs,
      settingsTimeoutMs: this.opts.headerTimeoutMs,
      h2: http2.createServer({ settings, maxSessionMemory: 64 }),
      hooks: {
        state: newConnectionQuota,
        h1: (conn, initial) => this.onH1Connection(conn, initial),
        h2Stream: (conn, stream, headers, flags, rawHeaders) => this.onH2Stream(conn, stream, headers, flags, rawHeaders),
        count: (what) => this.countListener(what),
        error: (err) => {
          // net.Server reports EMFILE on accept when libuv could not shed the connection itself; it keeps
          // listening, and so does the proxy once descriptors free up.
          if (isLocalResourceError(err)) this.refusals.localResourceError(err, null);
          else this.emit('error', err);
        },
      },
    });
  }

  /** Starts listening; resolves with the bound address (port 0 gives the real port). */
  listen(): Promise<net.AddressInfo> {
    return this.listener.listen();
  }

  /** The bound address. */
  address(): net.AddressInfo {
    return this.listener.address();
  }

  /**
   * Changes options for what comes next: requests that arrive afterwards are authenticated, checked and limited by
   * the new values, and TLS handshakes that start afterwards present the new certificate. Sessions and connections
   * already open keep going as they are. All or nothing: on a bad value it throws UT_ERR_INVALID_OPTION (a bad
   * template: UT_ERR_INVALID_TEMPLATE, as the constructor does) and nothing changed. `tls` needs a TLS server, and `tls.ca` must be set exactly when it was at the start.
   */
  update(changes: TunnelServerUpdate): void {
    const bad = (option: string, message: string): UdpTunnelError => new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${option}: ${message}`, { option });
    if (changes.maxDatagram !== undefined) checkMaxDatagram(changes.maxDatagram);
    if (changes.maxUdpSendQueue !== undefined) checkMaxUdpSendQueue(changes.maxUdpSendQueue);
    const matcher = changes.template !== undefined ? compileTemplateMatcher(changes.template) : this.matcher;
    const t = changes.tls;
    if (t !== undefined) {
      if (!this.opts.tls) throw bad('tls', 'the server listens in cleartext; serving TLS takes a new server');
      if (Boolean(this.opts.tls.ca) !== Boolean(t.ca)) throw bad('tls', 'turning client certificate checks on or off takes a new server');
      try {
        this.listener.setTls(t);
      } catch (err) {
        throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `tls: ${(err as Error).message}`, { option: 'tls' }, { cause: err });
      }
    }
    // Admission, the relay and the request checks read these from the shared options object on every request.
    const { tls: _tls, postRoutes, ...rest } = changes;
    for (const [k, v] of Object.entries(rest)) if (v !== undefined) (this.opts as unknown as Record<string, unknown>)[k] = v;
    if (t !== undefined) this.opts.tls = { ...this.opts.tls, ...t };
    if (postRoutes !== undefined) this.postRoutes = postRoutes;
    this.matcher = matcher;
  }

  /** Number of sessions relaying now. */
  get activeSessions(): number {
    return this.sessions.size + this.bound.size;
  }

  /** Datagrams and bytes relayed, and dropped by reason, over every session so far (computed on demand). */
  sessionTotals(): ServerSessionTotals {
    const t = this.sessions.totals();
    addSessionTotals(t, this.bound.totals());
    return t;
  }

  /** Number of client connections open now (any protocol, including ones still sending their first request). */
  get openConnections(): number {
    return this.listener.openConnections;
  }

  /** Closes the listener, every session and every connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.sessions.shutdown();
    this.bound.shutdown();
    await this.listener.close();
  }

  private countListener(what: ListenerCount): void {
    const c = this.counters;
    switch (what) {
      case 'connection':
        c.connections++;
        return;
      case 'dropped':
        c.limits.connections++;
        return;
      case 'h1':
        c.connectionsH1++;
        return;
      case 'h2':
        c.connectionsH2++;
        return;
      case 'header-timeout':
        c.limits.headerTime++;
        return;
      case 'tls-error':
        c.tlsErrors++;
        return;
      case 'scheme-mismatch':
        c.schemeMismatches++;
        // On the cleartext listener the answer is a 400, counted with the other refusals by status.
        if (!this.opts.tls) c.refused[400] = (c.refused[400] ?? 0) + 1;
        return;
      case 'idle-close':
        c.limits.connectionIdle++;
        return;
      case 'settings-timeout':
        c.limits.settingsTimeout++;
        return;
    }
  }

  private onH2Stream(conn: ServerConnection, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
    if (!this.admission.admitStream(conn, stream)) return;
    const front = h2Front(stream, conn, rawHeaders);
    const size = headerListSize(rawHeaders);
    if (size > this.opts.maxHeaderSize) {
      // Node enforces SETTINGS_MAX_HEADER_LIST_SIZE only once the peer acknowledged our SETTINGS; a peer that never
      // does could send far more. RFC 9113 §10.5.1: refuse with 431 (RFC 6585 §5).
      this.counters.requests++;
      this.counters.limits.headerSize++;
      return this.refusals.refuse(front, 431, 'http_request_error', `header list of ${size} bytes exceeds the limit of ${this.opts.maxHeaderSize}`);
    }
    this.handleRequest(front, h2TunnelRequest(headers), streamEndedWithHeaders(stream, flags));
  }

  /** HTTP/1.1: reads one bounded request head; the connection then carries one tunnel or one refusal. */
  private onH1Connection(conn: ServerConnection, initial: Buffer): void {
    const socket = conn.socket;
    readRequestHead(socket, initial, this.opts.maxHeaderSize, (r) => {
      conn.requestStarted();
      if (r.state === 'error') {
        this.counters.requests++;
        if (r.status === 431) this.counters.limits.headerSize++;
        this.refusals.count(r.status, 'http_request_error', r.details, 1, conn.client);
        return h1Refuse(socket, r.status, { 'proxy-status': formatProxyStatus('http_request_error', { details: r.details }) });
      }
      this.handleRequest(h1Front(socket, conn, r.head), h1TunnelRequest(r.head), false);
    });
  }

  /** Every front ends here: authenticate, validate, apply limits, then relay. */
  private handleRequest(front: RequestFront, req: IncomingTunnelRequest, endedWithHeaders: boolean): void {
    this.counters.requests++;
    if (this.closing) return this.refusals.refuse(front, 503, 'proxy_internal_error', 'shutting down');
    const auth = this.opts.authenticator;
    if (auth?.enabled && !this.admission.authenticate(front, auth)) return;
    const verdict = validateConnectUdpRequest(req, this.matcher, this.postRoutes);
    if (!verdict.ok) {
      return this.refusals.refuse(front, verdict.status, verdict.error, verdict.details, verdict.allow ? { allow: verdict.allow } : {});
    }
    if (endedWithHeaders) return this.refusals.refuse(front, 400, 'http_request_error', 'request stream ended with the headers');
    // Draft §6: bind is asked for with Connect-UDP-Bind: ?1; anything else counts as absent.
    const bind = verdict.mode === 'connect-udp' && this.opts.allowBind && parseConnectUdpBind(fieldValues(front.rawHeaders, CONNECT_UDP_BIND_HEADER)).enabled;
    if (verdict.wildcard && !bind) {
      // Draft §3: `*` names no target, so there is no plain CONNECT-UDP to fall back to.
      const asked = parseConnectUdpBind(fieldValues(front.rawHeaders, CONNECT_UDP_BIND_HEADER)).enabled;
      return asked
        ? this.refusals.refuse(front, 501, 'http_request_error', 'bound UDP proxying is not enabled on this proxy')
        : this.refusals.refuse(front, 400, 'http_request_error', 'target * asks for bound UDP proxying, which needs Connect-UDP-Bind: ?1 (draft-ietf-masque-connect-udp-listen §3)');
    }
    const release = this.admission.reserve(front);
    if (release === null) return;
    const transport = verdict.mode === 'post' ? 'post' : front.httpVersion === 2 ? 'h2' : 'h1';
    const fail = (err: unknown): void => {
      release();
      this.refusals.refuse(front, 500, 'proxy_internal_error', (err as Error)?.message ?? 'internal error');
    };
    if (bind && transport !== 'post') {
      const target = verdict.wildcard ? null : { host: verdict.host, port: verdict.port };
      this.bound
        .open(front, target, transport, release)
        .then((r) => (r === 'fallback' ? this.sessions.open(front, verdict.host, verdict.port, transport, release) : undefined))
        .catch(fail);
      return;
    }
    this.sessions.open(front, verdict.host, verdict.port, transport, release).catch(fail);
  }
}

/** Every value of one field in a raw `[name, value, ...]` list (names compared in lowercase). */
function fieldValues(raw: readonly string[], name: string): string[] | undefined {
  let out: string[] | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) if (String(raw[i]).toLowerCase() === name) (out ??= []).push(String(raw[i + 1]));
  return out;
}
