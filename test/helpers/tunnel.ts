import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
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

/** A DNS responder on 127.0.0.1 for tests: answers A/AAAA from a table, NXDOMAIN for other names, and stays silent for `silent` names. */
export interface DnsStub {
  port: number;
  server: string;
  close(): Promise<void>;
}

/** Starts a DNS stub (RFC 1035 §4.1) on 127.0.0.1:0. */
export function startDnsStub(records: Record<string, { a?: string[]; aaaa?: string[] }>, silent: string[] = []): Promise<DnsStub> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    let off = 12;
    const labels: string[] = [];
    while (off < msg.length && msg[off] !== 0) {
      const len = msg[off]!;
      labels.push(msg.toString('latin1', off + 1, off + 1 + len));
      off += 1 + len;
    }
    off++;
    if (off + 4 > msg.length) return;
    const qtype = msg.readUInt16BE(off);
    const question = msg.subarray(12, off + 4);
    const name = labels.join('.').toLowerCase();
    if (silent.includes(name)) return;
    const rec = records[name];
    const answers: Buffer[] = [];
    if (rec && qtype === 1) for (const a of rec.a ?? []) answers.push(rr(1, Buffer.from(a.split('.').map(Number))));
    if (rec && qtype === 28) for (const a of rec.aaaa ?? []) answers.push(rr(28, ipv6Bytes(a)));
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0);
    // QR=1, RD copied, RA=1, RCODE 3 (NXDOMAIN) for unknown names.
    header.writeUInt16BE(0x8180 | (msg.readUInt16BE(2) & 0x0100) | (rec ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    socket.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address);
  });
  return new Promise((resolve) => {
    socket.bind(0, '127.0.0.1', () => {
      const port = (socket.address() as net.AddressInfo).port;
      resolve({ port, server: `127.0.0.1:${port}`, close: () => new Promise<void>((r) => socket.close(() => r())) });
    });
  });
}

function rr(type: number, data: Buffer): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0xc00c, 0); // name: pointer to the question
  head.writeUInt16BE(type, 2);
  head.writeUInt16BE(1, 4); // class IN
  head.writeUInt32BE(30, 6);
  head.writeUInt16BE(data.length, 10);
  return Buffer.concat([head, data]);
}

function ipv6Bytes(addr: string): Buffer {
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const h = head ? head.split(':').filter(Boolean) : [];
  const t = tail ? tail.split(':').filter(Boolean) : [];
  const groups = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Counts this process's open TCP and UDP handles (for leak checks). */
export function openHandles(): { tcp: number; udp: number } {
  const info = process.getActiveResourcesInfo();
  return { tcp: info.filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length, udp: info.filter((r) => r === 'UDPWrap').length };
}
