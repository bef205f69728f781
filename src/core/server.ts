import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { DEFAULT_MAX_CAPSULE_LENGTH } from './codec/capsule-decoder.js';
import { capsuleProtocolEnabled, validateConnectUdpRequest, type IncomingTunnelRequest } from './connect-udp-request.js';
import { DatagramChannel, type ChannelCounters } from './datagram-channel.js';
import { tapChannel } from './diagnostics.js';
import type { UdpTunnelError } from './errors.js';
import { IdleTimer } from './idle-timer.js';
import { formatProxyStatus, type ProxyErrorType } from './proxy-status.js';
import { Resolver, type ResolvedAddress } from './resolver.js';
import { DEFAULT_URI_TEMPLATE, compileTemplateMatcher, type TemplateMatcher } from './uri-template.js';

const HTTP2_HEADER_PROTOCOL = ':protocol';
const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_SCHEME, HTTP2_HEADER_STATUS } =
  http2.constants;

// Passed through to net.Server (the http2 typings omit it): capsules are small and latency-sensitive, and Nagle's
// algorithm would hold one back while earlier bytes are unacknowledged.
const NO_DELAY = { noDelay: true } as http2.ServerOptions;

/** Decides whether a resolved target may be reached (RFC 9298 §7). */
export interface TargetChecker {
  check(address: string, port: number): { allowed: true } | { allowed: false; reason: string };
}

/** Decides whether a request's credentials are acceptable; absent = no authentication. */
export interface RequestAuthenticator {
  readonly enabled: boolean;
  check(headers: Record<string, string | string[] | undefined>): { ok: true; user?: string } | { ok: false; reason: string };
}

/** Options of a TunnelServer. */
export interface TunnelServerOptions {
  host: string;
  port: number;
  /** TLS with ALPN h2; cleartext h2c (prior knowledge) when absent. */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; requestCert?: boolean };
  /** URI template (RFC 9298 §2); default `/.well-known/masque/udp/{target_host}/{target_port}/`. */
  template?: string;
  policy: TargetChecker;
  authenticator?: RequestAuthenticator;
  /** Inactivity in both directions that closes a session; 0 = never. RFC 9298 §3.1 suggests at least 2 minutes. */
  idleTimeoutMs?: number;
  maxCapsuleLength?: number;
  /** Bytes a stream may hold unsent toward the client before datagrams are dropped. */
  maxStreamBuffer?: number;
  /** Sessions across the whole server. */
  maxSessions?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection. */
  maxStreamsPerConnection?: number;
  /** DNS servers for target names; the system resolver when absent. */
  dnsServers?: string[];
  dnsTimeoutMs?: number;
}

/** Statistics of one relayed session, reported when it closes. */
export interface ServerSessionStats extends ChannelCounters {
  id: string;
  client: string;
  target: string;
  resolved: string;
  /** UDP datagrams the target sent that could not be relayed, or that the target refused. */
  dropUdpSend: number;
  openedAt: number;
  durationMs: number;
  closeReason: string;
}

/** Server-wide counters. */
export interface ServerCounters {
  connections: number;
  requests: number;
  sessionsTotal: number;
  sessionsActive: number;
  refused: Record<number, number>;
  malformedStreams: number;
  idleTimeouts: number;
}

interface Session {
  id: string;
  stream: http2.ServerHttp2Stream;
  udp: dgram.Socket;
  channel: DatagramChannel;
  idle: IdleTimer;
  stats: ServerSessionStats;
  closed: boolean;
}

/**
 * The proxy side of udp-tunnel: accepts CONNECT-UDP requests (RFC 9298) over HTTP/2 and relays each stream to its
 * own connected UDP socket. Events: 'session-open', 'session-close' (ServerSessionStats), 'refused', 'error'.
 */
export class TunnelServer extends EventEmitter {
  readonly counters: ServerCounters = {
    connections: 0,
    requests: 0,
    sessionsTotal: 0,
    sessionsActive: 0,
    refused: {},
    malformedStreams: 0,
    idleTimeouts: 0,
  };
  private readonly opts: Required<Omit<TunnelServerOptions, 'tls' | 'authenticator' | 'dnsServers'>> & TunnelServerOptions;
  private readonly matcher: TemplateMatcher;
  private readonly resolver: Resolver;
  private readonly h2: http2.Http2Server | http2.Http2SecureServer;
  private readonly front: net.Server;
  private readonly sessions = new Map<string, Session>();
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  private nextId = 1;
  private closing = false;

  constructor(options: TunnelServerOptions) {
    super();
    this.opts = {
      template: DEFAULT_URI_TEMPLATE,
      idleTimeoutMs: 120_000,
      maxCapsuleLength: DEFAULT_MAX_CAPSULE_LENGTH,
      maxStreamBuffer: 256 * 1024,
      maxSessions: 10_000,
      maxStreamsPerConnection: 100,
      dnsTimeoutMs: 5000,
      ...options,
    };
    this.matcher = compileTemplateMatcher(this.opts.template);
    this.resolver = new Resolver({ ...(options.dnsServers ? { servers: options.dnsServers } : {}), timeoutMs: this.opts.dnsTimeoutMs });
    const settings: http2.Settings = {
      // RFC 8441 §3: extended CONNECT must be advertised before clients may use :protocol.
      enableConnectProtocol: true,
      maxConcurrentStreams: this.opts.maxStreamsPerConnection,
      initialWindowSize: 1 << 20,
    };
    if (options.tls) {
      this.h2 = http2.createSecureServer({ ...options.tls, settings, ALPNProtocols: ['h2'], ...NO_DELAY });
      this.front = this.h2 as unknown as net.Server;
    } else {
      this.h2 = http2.createServer({ settings, ...NO_DELAY });
      this.front = this.h2 as unknown as net.Server;
    }
    this.h2.on('session', (s: http2.ServerHttp2Session) => this.onH2Session(s));
    this.h2.on('stream', (stream, headers, flags) => this.onStream(stream, headers, flags));
    this.h2.on('sessionError', () => {});
    this.front.on('connection', () => this.counters.connections++);
  }

  /** Starts listening; resolves with the bound address (port 0 gives the real port). */
  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.front.once('error', onError);
      this.front.listen({ host: this.opts.host, port: this.opts.port }, () => {
        this.front.off('error', onError);
        this.front.on('error', (err) => this.emit('error', err));
        resolve(this.front.address() as net.AddressInfo);
      });
    });
  }

  /** The bound address. */
  address(): net.AddressInfo {
    return this.front.address() as net.AddressInfo;
  }

  /** Number of sessions relaying now. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Closes the listener, every session and every connection. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const done = new Promise<void>((resolve) => this.front.close(() => resolve()));
    for (const s of [...this.sessions.values()]) this.closeSession(s, 'server-shutdown');
    for (const s of this.h2Sessions) s.close();
    const timer = setTimeout(() => {
      for (const s of this.h2Sessions) s.destroy();
    }, 1000);
    await done;
    clearTimeout(timer);
  }

  private onH2Session(session: http2.ServerHttp2Session): void {
    this.h2Sessions.add(session);
    session.on('close', () => this.h2Sessions.delete(session));
    session.on('error', () => {});
    // Large connection window so one busy stream does not stall the others.
    session.on('connect', () => {
      try {
        session.setLocalWindowSize(16 << 20);
      } catch {
        /* the session may already be closing */
      }
    });
  }

  private refuse(stream: http2.ServerHttp2Stream, status: number, error: ProxyErrorType, details: string, extra: Record<string, string> = {}): void {
    this.counters.refused[status] = (this.counters.refused[status] ?? 0) + 1;
    this.emit('refused', { status, error, details });
    if (stream.destroyed || stream.closed || stream.headersSent) return;
    // RFC 9209 §2: say why in Proxy-Status.
    stream.respond({ [HTTP2_HEADER_STATUS]: status, 'proxy-status': formatProxyStatus(error, { details }), ...extra }, { endStream: true });
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number): void {
    this.counters.requests++;
    stream.on('error', () => {});
    if (this.closing) return this.refuse(stream, 503, 'proxy_internal_error', 'shutting down');
    const req: IncomingTunnelRequest = {
      httpVersion: 2,
      method: String(headers[HTTP2_HEADER_METHOD] ?? ''),
      protocol: headers[HTTP2_HEADER_PROTOCOL] as string | undefined,
      path: headers[HTTP2_HEADER_PATH] as string | undefined,
      authority: headers[HTTP2_HEADER_AUTHORITY] as string | undefined,
      scheme: headers[HTTP2_HEADER_SCHEME] as string | undefined,
      capsuleProtocol: headers['capsule-protocol'],
    };
    const verdict = validateConnectUdpRequest(req, this.matcher);
    if (!verdict.ok) {
      return this.refuse(stream, verdict.status, verdict.error, verdict.details, verdict.allow ? { allow: verdict.allow } : {});
    }
    // RFC 9298 §3.4 / RFC 9113 §8.5: a CONNECT request that ends its stream carries no tunnel: malformed.
    if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM || stream.readableEnded) {
      return this.refuse(stream, 400, 'http_request_error', 'request stream ended with the headers');
    }
    if (this.opts.authenticator?.enabled) {
      const auth = this.opts.authenticator.check(headers as Record<string, string | string[] | undefined>);
      if (!auth.ok) {
        return this.refuse(stream, 401, 'http_request_denied', `authentication ${auth.reason}`, {
          'www-authenticate': 'Bearer realm="udp-tunnel", Basic realm="udp-tunnel"',
        });
      }
    }
    if (this.sessions.size >= this.opts.maxSessions) {
      return this.refuse(stream, 503, 'connection_limit_reached', `server session limit ${this.opts.maxSessions} reached`);
    }
    void this.openTunnel(stream, headers, verdict.host, verdict.port);
  }

  private async openTunnel(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, host: string, port: number): Promise<void> {
    // RFC 9298 §3.1: resolve before replying, and apply the policy to the resolved address (§7).
    const res = await this.resolver.resolve(host);
    if (stream.destroyed || stream.closed) return;
    if (!res.ok) {
      const status = res.error === 'dns_timeout' ? 504 : 502;
      this.counters.refused[status] = (this.counters.refused[status] ?? 0) + 1;
      this.emit('refused', { status, error: res.error, details: res.message });
      stream.respond(
        { [HTTP2_HEADER_STATUS]: status, 'proxy-status': formatProxyStatus(res.error, { ...(res.rcode ? { rcode: res.rcode } : {}), details: res.message }) },
        { endStream: true },
      );
      return;
    }
    let chosen: ResolvedAddress | undefined;
    let reason = 'no address';
    for (const a of res.addresses) {
      const v = this.opts.policy.check(a.address, port);
      if (v.allowed) {
        chosen = a;
        break;
      }
      reason = v.reason;
    }
    if (!chosen) return this.refuse(stream, 403, 'destination_ip_prohibited', reason);
    const target = chosen;
    const udp = dgram.createSocket({ type: target.family === 6 ? 'udp6' : 'udp4' });
    const id = `s${this.nextId++}`;
    const peer = stream.session?.socket;
    const stats: ServerSessionStats = {
      id,
      client: peer ? `${peer.remoteAddress}:${peer.remotePort}` : 'unknown',
      target: `${host}:${port}`,
      resolved: target.address,
      rxDatagrams: 0,
      rxBytes: 0,
      txDatagrams: 0,
      txBytes: 0,
      dropBackpressure: 0,
      dropContextId: 0,
      skippedCapsules: 0,
      dropUdpSend: 0,
      openedAt: Date.now(),
      durationMs: 0,
      closeReason: '',
    };
    const connected = await new Promise<Error | null>((resolve) => {
      udp.once('error', (err) => resolve(err));
      // RFC 9298 §3.1: one connected UDP socket per request.
      udp.connect(port, target.address, () => resolve(null));
    });
    if (connected) {
      udp.close();
      return this.refuse(stream, 502, 'destination_ip_unroutable', connected.message);
    }
    if (stream.destroyed || stream.closed || this.closing) {
      udp.close();
      return;
    }
    stream.respond({ [HTTP2_HEADER_STATUS]: 200, 'capsule-protocol': '?1' });
    if (tapChannel.hasSubscribers) {
      tapChannel.publish({ kind: 'request', session: id, time: Date.now(), headers: { ...headers } });
      tapChannel.publish({ kind: 'response', session: id, time: Date.now(), headers: { ':status': '200', 'capsule-protocol': '?1' } });
    }
    const session = {} as Session;
    const sendDone = (err: Error | null): void => {
      if (err) stats.dropUdpSend++;
    };
    const channel = new DatagramChannel(stream, {
      session: id,
      role: 'server',
      maxCapsuleLength: this.opts.maxCapsuleLength,
      maxWriteBuffer: this.opts.maxStreamBuffer,
      onDatagram: (payload) => {
        session.idle.touch();
        udp.send(payload, sendDone);
      },
      onMalformed: (err) => this.onMalformed(session, err),
    });
    Object.assign(session, {
      id,
      stream,
      udp,
      channel,
      stats,
      closed: false,
      idle: new IdleTimer(this.opts.idleTimeoutMs, () => {
        this.counters.idleTimeouts++;
        this.closeSession(session, 'idle-timeout');
      }),
    });
    udp.removeAllListeners('error');
    udp.on('message', (msg) => {
      session.idle.touch();
      channel.send(msg);
    });
    udp.on('error', (err: NodeJS.ErrnoException) => {
      // RFC 9298 §3.1: when the OS reports the socket unusable (ICMP unreachable), close the stream.
      this.closeSession(session, err.code === 'ECONNREFUSED' ? 'target-unreachable' : `udp-error:${err.code ?? err.message}`);
    });
    stream.on('close', () => this.closeSession(session, stream.rstCode ? `stream-reset:${stream.rstCode}` : 'stream-closed'));
    stream.on('end', () => {
      // The client finished sending; end our half too so the stream closes cleanly.
      if (!session.closed && !stream.writableEnded) stream.end();
    });
    this.sessions.set(id, session);
    this.counters.sessionsTotal++;
    this.counters.sessionsActive = this.sessions.size;
    this.emit('session-open', { id, client: stats.client, target: stats.target, resolved: target.address });
  }

  private onMalformed(session: Session, err: UdpTunnelError): void {
    this.counters.malformedStreams++;
    session.stats.closeReason = `malformed: ${err.message}`;
    // RFC 9297 §3.3 + RFC 9113 §8.1.1: a malformed message is a stream error of type PROTOCOL_ERROR.
    if (!session.stream.destroyed) session.stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
    this.closeSession(session, session.stats.closeReason);
  }

  private closeSession(session: Session, reason: string): void {
    if (session.closed) return;
    session.closed = true;
    session.idle.stop();
    this.sessions.delete(session.id);
    this.counters.sessionsActive = this.sessions.size;
    try {
      session.udp.close();
    } catch {
      /* already closed */
    }
    if (!session.stream.destroyed && !session.stream.closed) session.stream.close(http2.constants.NGHTTP2_NO_ERROR);
    const stats = session.stats;
    Object.assign(stats, session.channel.counters);
    stats.durationMs = Date.now() - stats.openedAt;
    if (!stats.closeReason) stats.closeReason = reason;
    if (tapChannel.hasSubscribers) tapChannel.publish({ kind: 'close', session: session.id, time: Date.now(), reason: stats.closeReason });
    this.emit('session-close', stats);
  }
}

