import { Buffer } from 'node:buffer';
import type net from 'node:net';
import type { IncomingTunnelRequest } from './connect-udp-request.js';
import { formatResponseHead, headerValues, listsToken, parseRequestHead, rawHeaderList, type Http1Head } from '../http/http1-head.js';
import type { RequestFront, ServerConnection } from './request-front.js';

/** A request head read to its end: the head, or why it cannot be one (status 400, 431 or 505). */
export type H1HeadOutcome = Exclude<ReturnType<typeof parseRequestHead>, { state: 'incomplete' }>;

/**
 * Reads one request head of at most `maxHeaderSize` bytes from `socket`, starting with `initial` (bytes already
 * read). Calls `done` once the head is complete or refused, with the socket paused and no data listener left.
 */
export function readRequestHead(socket: net.Socket, initial: Buffer, maxHeaderSize: number, done: (outcome: H1HeadOutcome) => void): void {
  let buf: Buffer = initial;
  let finished = false;
  let scanned = 0;
  const attempt = (): void => {
    const r = parseRequestHead(buf, maxHeaderSize, scanned);
    if (r.state === 'incomplete') {
      scanned = buf.length;
      return;
    }
    finished = true;
    socket.removeListener('data', onData);
    socket.pause();
    done(r);
  };
  const onData = (chunk: Buffer): void => {
    if (finished) return;
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    attempt();
  };
  socket.on('data', onData);
  if (buf.length > 0) attempt();
  socket.resume();
}

/** Answers an HTTP/1.1 request with `status` and closes the connection (one refusal per connection). */
export function h1Refuse(socket: net.Socket, status: number, headers: Record<string, string>): void {
  if (socket.destroyed) return;
  socket.write(formatResponseHead(status, { ...headers, 'content-length': '0', connection: 'close' }));
  socket.end();
  // Drain what the client still sends so it can read the answer; cut off a client that never closes.
  socket.resume();
  const t = setTimeout(() => socket.destroy(), 2000);
  socket.once('close', () => clearTimeout(t));
}

/** The fields of an HTTP/1.1 request head that decide whether it is a tunnel request (RFC 9298 §3.2). */
export function h1TunnelRequest(head: Http1Head): IncomingTunnelRequest {
  let path: string | undefined;
  const hosts = headerValues(head.headers, 'host');
  let authority: string | undefined = hosts[0];
  if (head.target.startsWith('/')) path = head.target;
  else if (/^https?:\/\//i.test(head.target)) {
    // RFC 9112 §3.2.2: absolute-form; its authority replaces Host.
    try {
      const u = new URL(head.target);
      path = `${u.pathname}${u.search}`;
      authority = u.host;
    } catch {
      path = undefined;
    }
  }
  const upgrade = listsToken(head.headers, 'upgrade', 'connect-udp') ? 'connect-udp' : headerValues(head.headers, 'upgrade')[0];
  return {
    httpVersion: 1,
    method: head.method,
    protocol: upgrade,
    path,
    authority,
    hostCount: hosts.length,
    connectionUpgrade: listsToken(head.headers, 'connection', 'upgrade'),
    framingHeaders: headerValues(head.headers, 'content-length').length + headerValues(head.headers, 'transfer-encoding').length > 0,
  };
}

/** The front of a request on an HTTP/1.1 connection: answers are response heads, the tunnel is the connection. */
export function h1Front(socket: net.Socket, conn: ServerConnection, head: Http1Head): RequestFront {
  let accepted = false;
  return {
    httpVersion: 1,
    client: conn.client,
    conn,
    rawHeaders: rawHeaderList(head.headers),
    requestLine: { method: head.method, target: head.target },
    gone: () => socket.destroyed,
    refuse: (status, extra) => h1Refuse(socket, status, extra),
    refuseRetry: () => h1Refuse(socket, 503, {}),
    accept: (extra = {}) => {
      accepted = true;
      // RFC 9298 §3.3: 101 with Connection: Upgrade and Upgrade: connect-udp; RFC 9297 §3.4 Capsule-Protocol.
      socket.write(formatResponseHead(101, { connection: 'Upgrade', upgrade: 'connect-udp', 'capsule-protocol': '?1', ...extra }));
      // Bytes that followed the request head already belong to the capsule stream.
      if (head.rest.length > 0) socket.unshift(head.rest);
      return socket;
    },
    end: (reason) => {
      if (socket.destroyed) return;
      // RFC 9297 §3.3: over HTTP/1.1 a malformed capsule stream closes the connection.
      if (reason === 'malformed' || !accepted) socket.destroy();
      else {
        socket.end();
        const t = setTimeout(() => socket.destroy(), 1000);
        socket.once('close', () => clearTimeout(t));
      }
    },
  };
}
