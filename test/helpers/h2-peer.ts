import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

/** A CONNECT-UDP (or any) request opened by hand, for sending arbitrary capsule bytes. */
export interface RawTunnel {
  session: http2.ClientHttp2Session;
  stream: http2.ClientHttp2Stream;
  /** Response headers (resolves on the final response). */
  response: Promise<{ headers: http2.IncomingHttpHeaders; raw: string[]; endStream: boolean }>;
  /** Response body bytes received so far. */
  received: Buffer[];
  /** Resolves when the response body holds at least `n` bytes. */
  waitBytes(n: number, ms?: number): Promise<Buffer>;
  /** Resolves when the stream closed; gives its rstCode. */
  closed: Promise<number | undefined>;
  close(): Promise<void>;
}

/** Options of openRawTunnel. */
export interface RawTunnelOptions {
  headers?: http2.OutgoingHttpHeaders;
  /** Wait for the server's SETTINGS before sending :protocol (RFC 8441 §3); default true. */
  waitSettings?: boolean;
  ca?: Buffer;
  endStream?: boolean;
}

/** Opens an HTTP/2 connection to `origin` and sends one request (extended CONNECT for connect-udp by default). */
export async function openRawTunnel(origin: string, path: string, options: RawTunnelOptions = {}): Promise<RawTunnel> {
  const session = http2.connect(origin, options.ca ? { ca: options.ca } : {});
  session.on('error', () => {});
  if (options.waitSettings ?? true) {
    await new Promise<void>((resolve, reject) => {
      session.once('remoteSettings', () => resolve());
      session.once('close', () => reject(new Error('connection closed before SETTINGS')));
    });
  }
  const url = new URL(origin);
  const stream = session.request(
    options.headers ?? {
      ':method': 'CONNECT',
      ':protocol': 'connect-udp',
      ':scheme': url.protocol === 'https:' ? 'https' : 'http',
      ':authority': url.host,
      ':path': path,
      'capsule-protocol': '?1',
    },
    { endStream: options.endStream ?? false },
  );
  stream.on('error', () => {});
  const received: Buffer[] = [];
  let total = 0;
  let waiters: Array<{ n: number; resolve: (b: Buffer) => void }> = [];
  stream.on('data', (chunk: Buffer) => {
    received.push(chunk);
    total += chunk.length;
    waiters = waiters.filter((w) => {
      if (total >= w.n) {
        w.resolve(Buffer.concat(received));
        return false;
      }
      return true;
    });
  });
  const response = new Promise<{ headers: http2.IncomingHttpHeaders; raw: string[]; endStream: boolean }>((resolve) => {
    stream.once('response', (headers: http2.IncomingHttpHeaders, flags: number, raw: string[]) =>
      resolve({ headers, raw, endStream: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 }),
    );
  });
  const closed = new Promise<number | undefined>((resolve) => stream.once('close', () => resolve(stream.rstCode)));
  return {
    session,
    stream,
    response,
    received,
    closed,
    waitBytes: (n, ms = 5000) =>
      new Promise<Buffer>((resolve, reject) => {
        if (total >= n) return resolve(Buffer.concat(received));
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} response bytes (got ${total})`)), ms);
        waiters.push({
          n,
          resolve: (b) => {
            clearTimeout(t);
            resolve(b);
          },
        });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        if (session.destroyed) return resolve();
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        const t = setTimeout(() => {
          session.destroy();
          resolve();
        }, 500);
        session.close(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}

/** One request as a scripted upstream saw it. */
export interface SeenRequest {
  headers: http2.IncomingHttpHeaders;
  raw: string[];
  stream: http2.ServerHttp2Stream;
  body: Buffer[];
  ended: boolean;
  /** Resolves when the request body ended or the stream closed. */
  done: Promise<void>;
}

/** A scripted HTTP/2 upstream that records what it receives. */
export interface ScriptedUpstream {
  server: http2.Http2Server;
  port: number;
  requests: SeenRequest[];
  /** Resolves when `n` requests have arrived. */
  waitRequests(n: number, ms?: number): Promise<SeenRequest[]>;
  close(): Promise<void>;
}

/** Options of startScriptedUpstream. */
export interface ScriptedUpstreamOptions {
  /** Advertise RFC 8441 extended CONNECT (default true). */
  extendedConnect?: boolean;
  /** Answers each request; default 200 with capsule-protocol ?1 and the stream left open. */
  respond?: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;
}

/** Starts a scripted h2c upstream on 127.0.0.1, port 0. */
export function startScriptedUpstream(options: ScriptedUpstreamOptions = {}): Promise<ScriptedUpstream> {
  const server = http2.createServer({ settings: { enableConnectProtocol: options.extendedConnect ?? true } });
  const requests: SeenRequest[] = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  let waiters: Array<{ n: number; resolve: (r: SeenRequest[]) => void }> = [];
  server.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
    stream.on('error', () => {});
    const seen = { headers, raw, stream, body: [] as Buffer[], ended: false, done: Promise.resolve() } as SeenRequest;
    seen.done = new Promise<void>((resolve) => {
      stream.on('end', () => {
        seen.ended = true;
        resolve();
      });
      stream.on('close', () => resolve());
    });
    stream.on('data', (chunk: Buffer) => seen.body.push(chunk));
    requests.push(seen);
    waiters = waiters.filter((w) => {
      if (requests.length >= w.n) {
        w.resolve(requests);
        return false;
      }
      return true;
    });
    if (options.respond) options.respond(stream, headers);
    else stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        server,
        port: (server.address() as AddressInfo).port,
        requests,
        waitRequests: (n, ms = 5000) =>
          new Promise<SeenRequest[]>((res, rej) => {
            if (requests.length >= n) return res(requests);
            const t = setTimeout(() => rej(new Error(`timed out waiting for ${n} upstream requests`)), ms);
            waiters.push({
              n,
              resolve: (r) => {
                clearTimeout(t);
                res(r);
              },
            });
          }),
        close: () =>
          new Promise<void>((res) => {
            for (const s of sessions) s.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}
