import { Buffer } from 'node:buffer';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { parseResponseHead, type Http1Head } from '../../src/tunnel/http/http1-head.js';

/** Answer of a raw HTTP/1.1 exchange: the parsed head (if any), bytes after it, and whether the server closed. */
export interface RawH1Result {
  head: Http1Head | null;
  rest: Buffer;
  closed: boolean;
  socket: net.Socket;
}

/** Options of rawH1. */
export interface RawH1Options {
  /** Stop waiting after this long (the socket stays open if the server did not close it). */
  waitMs?: number;
  /** Keep the socket open after the head arrived (for tunnel tests); otherwise it is destroyed. */
  keepOpen?: boolean;
  tls?: tls.ConnectionOptions;
  family?: 4 | 6;
}

/** Opens a TCP (or TLS) connection, writes `bytes`, and reads one response head or waits for the close. */
export function rawH1(port: number, bytes: Buffer | string, opts: RawH1Options = {}): Promise<RawH1Result> {
  const host = opts.family === 6 ? '::1' : '127.0.0.1';
  return new Promise((resolve) => {
    const socket = opts.tls ? tls.connect({ host, port, ...opts.tls }) : net.connect({ host, port });
    let buf: Buffer = Buffer.alloc(0);
    let closed = false;
    let head: Http1Head | null = null;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      if (!opts.keepOpen) socket.destroy();
      resolve({ head, rest: head ? head.rest : buf, closed, socket });
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const r = parseResponseHead(buf, 1 << 20);
      if (r.state === 'done') {
        head = r.head;
        if (opts.keepOpen) {
          socket.pause();
          if (r.head.rest.length > 0) socket.unshift(r.head.rest);
          head = { ...r.head, rest: Buffer.alloc(0) };
          finish();
        }
      }
    };
    const timer = setTimeout(finish, opts.waitMs ?? 3000);
    socket.on('error', () => {});
    socket.on('data', onData);
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.once(opts.tls ? 'secureConnect' : 'connect', () => socket.write(bytes));
  });
}

/** Builds an HTTP/1.1 CONNECT-UDP request head with overridable parts. */
export function h1Request(path: string, headers: Array<[string, string]> | null = null, requestLine?: string): string {
  const hs = headers ?? [
    ['Host', '127.0.0.1'],
    ['Connection', 'Upgrade'],
    ['Upgrade', 'connect-udp'],
    ['Capsule-Protocol', '?1'],
  ];
  return `${requestLine ?? `GET ${path} HTTP/1.1`}\r\n${hs.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

/** Outcome of an HTTP/2 request: response headers, or the stream's reset code, or a session failure. */
export interface H2Result {
  status: number | null;
  headers: http2.IncomingHttpHeaders;
  rstCode: number | null;
  endAfterHeaders: boolean;
  stream: http2.ClientHttp2Stream;
}

/** An HTTP/2 client session that waits for the server's SETTINGS (RFC 8441 §3) before requests. */
export async function h2Session(url: string, options: http2.SecureClientSessionOptions = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(url, options);
  session.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    session.once('remoteSettings', () => resolve());
    session.once('error', reject);
  });
  return session;
}

/** Sends one request on `session` and waits for its response or reset. */
export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  opts: { endStream?: boolean; waitMs?: number } = {},
): Promise<H2Result> {
  return new Promise((resolve) => {
    const stream = session.request(headers, { endStream: opts.endStream ?? false });
    let result: H2Result | null = null;
    const timer = setTimeout(() => done(), opts.waitMs ?? 3000);
    const done = (): void => {
      clearTimeout(timer);
      resolve(result ?? { status: null, headers: {}, rstCode: stream.rstCode ?? null, endAfterHeaders: false, stream });
    };
    stream.on('error', () => {});
    // The HEADERS flags tell END_STREAM; stream.endAfterHeaders is not yet set when 'response' fires.
    stream.once('response', (h, flags: number) => {
      result = { status: Number(h[':status']), headers: h, rstCode: null, endAfterHeaders: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0, stream };
      done();
    });
    stream.once('close', () => {
      if (result === null) result = { status: null, headers: {}, rstCode: stream.rstCode ?? null, endAfterHeaders: false, stream };
      done();
    });
  });
}

/** The CONNECT-UDP request headers for a target path on a proxy at `authority`. */
export function connectUdpHeaders(authority: string, path: string, extra: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders {
  return { ':method': 'CONNECT', ':protocol': 'connect-udp', ':scheme': 'http', ':authority': authority, ':path': path, 'capsule-protocol': '?1', ...extra };
}

/** Waits for a stream or socket to close; resolves false after `ms`. */
export function waitClose(emitter: NodeJS.EventEmitter & { destroyed?: boolean; closed?: boolean }, ms = 3000): Promise<boolean> {
  if (emitter.closed === true) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    emitter.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Counts this process's open TCP and UDP handles (for leak checks). */
export function openHandles(): { tcp: number; udp: number } {
  const info = process.getActiveResourcesInfo();
  return { tcp: info.filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length, udp: info.filter((r) => r === 'UDPWrap').length };
}
