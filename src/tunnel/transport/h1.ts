import { Buffer } from 'node:buffer';
import type net from 'node:net';
import { tapChannel } from '../diagnostics.js';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { listsToken, parseResponseHead, type Http1Head } from '../http/http1-head.js';
import { connectProxySocket, connectionError, lastSocketError, speaksTlsError, startsTlsRecord } from './proxy-socket.js';
import { refusedError } from './refusal.js';
import { resolveRequest } from './request.js';
import type { Transport, TransportOptions, TunnelHandle, TunnelRequest } from './types.js';

/** Largest response head the client reads before giving up on a proxy. */
const MAX_RESPONSE_HEAD = 64 * 1024;

/**
 * CONNECT-UDP over HTTP/1.1 Upgrade (RFC 9298 §3.2/§3.3): one TCP or TLS connection per session. The upgraded
 * connection itself is the capsule stream.
 */
export class H1ConnectUdpTransport implements Transport {
  readonly name = 'h1';
  private readonly opts: TransportOptions;
  private readonly sockets = new Set<net.Socket>();
  private closed = false;

  constructor(opts: TransportOptions) {
    this.opts = opts;
  }

  async open(session: string, signal: AbortSignal, request?: TunnelRequest): Promise<TunnelHandle> {
    if (this.closed) throw new UdpTunnelError(ErrorCodes.CLOSED, 'client is closing');
    const { proxy, connectTimeoutMs } = this.opts;
    const { path, headers: extra } = resolveRequest(this.opts, false, session, request);
    const started = Date.now();
    const socket = await connectProxySocket({ proxy, tls: this.opts.tls, alpn: ['http/1.1'], timeoutMs: connectTimeoutMs, signal });
    if (this.closed) {
      socket.destroy();
      throw new UdpTunnelError(ErrorCodes.CLOSED, 'client is closing');
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // RFC 9298 §3.2: GET, one Host, Connection: Upgrade, Upgrade: connect-udp; RFC 9297 §3.4: Capsule-Protocol.
    let head = `GET ${path} HTTP/1.1\r\nHost: ${proxy.host}\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n`;
    for (const [k, v] of extra) head += `${k}: ${v}\r\n`;
    // RFC 9110 §11.7.2: credentials for the proxy travel in Proxy-Authorization over HTTP/1.1.
    if (this.opts.authorization) head += `Proxy-Authorization: ${this.opts.authorization}\r\n`;
    socket.write(`${head}\r\n`);
    const tap = tapChannel.hasSubscribers;
    if (tap) {
      const fields: Record<string, string> = { host: proxy.host, connection: 'Upgrade', upgrade: 'connect-udp', 'capsule-protocol': '?1' };
      for (const [k, v] of extra) fields[k] = v;
      if (this.opts.authorization) fields['proxy-authorization'] = '[redacted]';
      tapChannel.publish({ kind: 'request', session, time: Date.now(), headers: fields, requestLine: { method: 'GET', target: path } });
    }
    const response = await readResponseHead(socket, Math.max(1, connectTimeoutMs - (Date.now() - started)), signal, proxy);
    const h = toRecord(response);
    if (tap && tapChannel.hasSubscribers) tapChannel.publish({ kind: 'response', session, time: Date.now(), http: '1.1', status: response.status, headers: h });
    if (response.status !== 101) {
      socket.destroy();
      throw refusedError(response.status, h, 'CONNECT-UDP over HTTP/1.1', Boolean(this.opts.authorization));
    }
    // RFC 9298 §3.3: success needs both upgrade headers; anything else aborts.
    if (!listsToken(response.headers, 'upgrade', 'connect-udp') || !listsToken(response.headers, 'connection', 'upgrade')) {
      socket.destroy();
      throw new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'proxy answered 101 without Connection: Upgrade and Upgrade: connect-udp', {}, { retryable: false });
    }
    // Bytes that came with the response head already belong to the capsule stream.
    if (response.rest.length > 0) socket.unshift(response.rest);
    return {
      stream: socket,
      responseHeaders: h,
      abort(reason) {
        if (socket.destroyed) return;
        // RFC 9297 §3.3: over HTTP/1.1 a malformed capsule stream closes the connection.
        if (reason === 'malformed') socket.destroy();
        else socket.end(() => socket.destroy());
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}

function toRecord(head: Http1Head): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of head.headers) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

function readResponseHead(socket: net.Socket, timeoutMs: number, signal: AbortSignal, proxy: URL): Promise<Http1Head> {
  return new Promise<Http1Head>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (err: UdpTunnelError | null, head?: Http1Head): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      if (err) {
        socket.destroy();
        reject(err);
        return;
      }
      socket.pause();
      resolve(head!);
    };
    const onData = (chunk: Buffer): void => {
      if (buf.length === 0 && proxy.protocol === 'http:' && startsTlsRecord(chunk)) return finish(speaksTlsError(proxy));
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseResponseHead(buf, MAX_RESPONSE_HEAD);
      if (r.state === 'incomplete') return;
      if (r.state === 'error') {
        return finish(new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, `proxy sent an invalid HTTP/1.1 response: ${r.details}`, {}, { retryable: false }));
      }
      finish(null, r.head);
    };
    const onClose = (): void => {
      const cause = lastSocketError(socket);
      finish(cause ? connectionError(cause, proxy) : new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, `proxy ${proxy.host} closed the connection before answering`));
    };
    const onAbort = (): void => finish(new UdpTunnelError(ErrorCodes.CLOSED, 'session closed while connecting'));
    const timer = setTimeout(() => finish(new UdpTunnelError(ErrorCodes.TIMEOUT, `no response from proxy within ${timeoutMs} ms`, { timeoutMs })), timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}
